//! Tags through real sockets: heartbeats with `tags=`, then the
//! tag-filtered A/AAAA and SRV names (one tag, several together), DNS-SD
//! subtypes, rotation on the filtered sets, the fast path, and the
//! datagrams with bad tags that must be dropped.

mod common;

use std::collections::HashSet;

use common::{TestServer, assert_status, lines, query_tcp, question, rdatas};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

fn beat(server: &TestServer, instance: &str, addr: &str, extra: &str) {
    server.beat(&format!(
        "beacon/1 service=web instance={instance} port=8080 addr={addr} ttl=60 {extra}"
    ));
}

/// Four instances: `canary` (which is also a tag name) tagged canary+eu,
/// web-2 eu, web-3 us, web-4 canary+us over udp.
fn tagged_server() -> TestServer {
    let server = TestServer::start(&[]);
    beat(&server, "canary", "10.0.0.1", "tags=canary,eu");
    beat(&server, "web-2", "10.0.0.2", "tags=eu");
    beat(&server, "web-3", "10.0.0.3", "tags=US");
    beat(&server, "web-4", "10.0.0.4", "tags=canary,us proto=udp");
    server.await_reply("web.svc.internal.", RecordType::A, |m| m.answers.len() == 4);
    server
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[test]
fn tag_names_answer_the_instances_carrying_every_tag() {
    let server = tagged_server();
    // (question, the answer as zone-file text): the README's names table.
    let cases: &[(&str, RecordType, &[&str])] = &[
        (
            "eu._tag.web.svc.internal.",
            RecordType::A,
            &[
                "eu._tag.web.svc.internal. 5 IN A 10.0.0.1",
                "eu._tag.web.svc.internal. 5 IN A 10.0.0.2",
            ],
        ),
        (
            "canary._tag.web.svc.internal.",
            RecordType::A,
            &[
                "canary._tag.web.svc.internal. 5 IN A 10.0.0.1",
                "canary._tag.web.svc.internal. 5 IN A 10.0.0.4",
            ],
        ),
        (
            "canary.eu._tag.web.svc.internal.",
            RecordType::A,
            &["canary.eu._tag.web.svc.internal. 5 IN A 10.0.0.1"],
        ),
        (
            "eu.canary._tag.web.svc.internal.",
            RecordType::A,
            &["eu.canary._tag.web.svc.internal. 5 IN A 10.0.0.1"],
        ),
        (
            "canary.us._tag.web.svc.internal.",
            RecordType::A,
            &["canary.us._tag.web.svc.internal. 5 IN A 10.0.0.4"],
        ),
        // The instance named `canary` keeps its own name.
        (
            "canary.web.svc.internal.",
            RecordType::A,
            &["canary.web.svc.internal. 5 IN A 10.0.0.1"],
        ),
        (
            "us._tag._web._tcp.svc.internal.",
            RecordType::SRV,
            &["us._tag._web._tcp.svc.internal. 5 IN SRV 0 1 8080 web-3.web.svc.internal."],
        ),
        (
            "canary._tag._web._udp.svc.internal.",
            RecordType::SRV,
            &["canary._tag._web._udp.svc.internal. 5 IN SRV 0 1 8080 web-4.web.svc.internal."],
        ),
        (
            "_canary._sub._web._tcp.svc.internal.",
            RecordType::PTR,
            &["_canary._sub._web._tcp.svc.internal. 5 IN PTR canary._web._tcp.svc.internal."],
        ),
        (
            "canary._web._tcp.svc.internal.",
            RecordType::TXT,
            &["canary._web._tcp.svc.internal. 5 IN TXT tags=canary,eu"],
        ),
    ];
    for (name, rtype, expected) in cases {
        let reply = server.query(name, *rtype);
        assert_status(&reply, ResponseCode::NoError, true);
        assert_eq!(sorted(lines(&reply.answers)), *expected, "{name} {rtype}");
    }
    // Case does not matter.
    let reply = server.query("CANARY.Us._tag.web.svc.internal.", RecordType::A);
    assert_eq!(rdatas(&reply.answers), ["10.0.0.4"]);
    // SRV carries the targets' addresses as glue.
    let srv = server.query("canary._tag._web._tcp.svc.internal.", RecordType::SRV);
    assert_eq!(rdatas(&srv.answers), ["0 1 8080 canary.web.svc.internal."]);
    assert_eq!(rdatas(&srv.additionals), ["10.0.0.1"]);
    // DNS-SD subtypes, with the instances' SRV, TXT and address as
    // additional data.
    let ptr = server.query("_eu._sub._web._tcp.svc.internal.", RecordType::PTR);
    assert_eq!(
        sorted(rdatas(&ptr.answers)),
        [
            "canary._web._tcp.svc.internal.",
            "web-2._web._tcp.svc.internal."
        ]
    );
    assert!(
        ptr.additionals
            .iter()
            .any(|r| r.record_type() == RecordType::SRV)
    );

    // Names that exist without data, and names that do not exist.
    let nodata = server.query("_tag.web.svc.internal.", RecordType::A);
    assert_status(&nodata, ResponseCode::NoError, true);
    assert!(nodata.answers.is_empty());
    let nodata = server.query("_sub._web._tcp.svc.internal.", RecordType::PTR);
    assert_status(&nodata, ResponseCode::NoError, true);
    for missing in [
        "asia._tag.web.svc.internal.",
        "eu.us._tag.web.svc.internal.",
        "_asia._sub._web._tcp.svc.internal.",
        "eu._tag._web._udp.svc.internal.",
    ] {
        let reply = server.query(missing, RecordType::A);
        assert_status(&reply, ResponseCode::NXDomain, true);
    }
}

#[test]
fn filtered_answers_rotate_and_come_from_the_fast_path() {
    let server = TestServer::start(&[]);
    for i in 1..=5 {
        beat(
            &server,
            &format!("web-{i}"),
            &format!("10.0.1.{i}"),
            "tags=eu",
        );
    }
    beat(&server, "web-6", "10.0.1.6", "tags=us");
    server.await_reply("eu._tag.web.svc.internal.", RecordType::A, |m| {
        m.answers.len() == 5
    });
    // Over 5 successive answers each of the 5 comes first once.
    let firsts: HashSet<String> = (0..5)
        .map(|_| {
            let reply = server.query("eu._tag.web.svc.internal.", RecordType::A);
            rdatas(&reply.answers)[0].clone()
        })
        .collect();
    assert_eq!(firsts.len(), 5, "{firsts:?}");
    let firsts: HashSet<String> = (0..5)
        .map(|_| {
            let reply = server.query("eu._tag._web._tcp.svc.internal.", RecordType::SRV);
            rdatas(&reply.answers)[0].clone()
        })
        .collect();
    assert_eq!(firsts.len(), 5, "{firsts:?}");
    // A tag change moves the instance; a drain takes it out.
    beat(&server, "web-1", "10.0.1.1", "tags=us");
    beat(&server, "web-2", "10.0.1.2", "tags=eu state=drain");
    server.await_reply("eu._tag.web.svc.internal.", RecordType::A, |m| {
        sorted(rdatas(&m.answers)) == ["10.0.1.3", "10.0.1.4", "10.0.1.5"]
    });
    server.await_reply("us._tag.web.svc.internal.", RecordType::A, |m| {
        sorted(rdatas(&m.answers)) == ["10.0.1.1", "10.0.1.6"]
    });
    let (_, metrics) = server.http_get("/metrics");
    let hits: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("beacon_fast_path_hits_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("the fast path counter");
    assert!(hits >= 8, "fast path hits: {hits}");
}

#[test]
fn datagrams_with_bad_tags_are_dropped_whole() {
    let server = TestServer::start(&[]);
    let many: Vec<String> = (0..17).map(|i| format!("t{i}")).collect();
    for bad in [
        "tags=".to_string(),
        "tags=a_b".to_string(),
        "tags=-a".to_string(),
        "tags=a,a".to_string(),
        "tags=a,,b".to_string(),
        format!("tags={}", "a".repeat(58)),
        format!("tags={}", many.join(",")),
        "meta.tags=x".to_string(),
        "tags=a tags=b".to_string(),
    ] {
        beat(&server, "web-1", "10.0.0.1", &bad);
    }
    beat(
        &server,
        "web-2",
        "10.0.0.2",
        &format!("tags={}", "a".repeat(57)),
    );
    server.await_reply("web.svc.internal.", RecordType::A, |m| {
        !m.answers.is_empty()
    });
    assert_eq!(
        rdatas(&server.query("web.svc.internal.", RecordType::A).answers),
        ["10.0.0.2"]
    );
    server.wait_for_log("dropped a malformed heartbeat");
}

/// 2,000 instances of one service, every one tagged `all`, the even ones
/// `even`, every tenth `ten`: filtered answers over TCP hold exactly the
/// tagged instances, and over UDP they truncate as any large answer does.
#[test]
fn tag_names_hold_their_instances_at_two_thousand() {
    let server = TestServer::start(&["--max-instances-per-service", "5000"]);
    let datagrams: Vec<String> = (0..2000)
        .map(|i| {
            let mut tags = vec!["all"];
            if i % 2 == 0 {
                tags.push("even");
            }
            if i % 10 == 0 {
                tags.push("ten");
            }
            format!(
                "beacon/1 service=big instance=i{i:05} port=80 ttl=3600 addr=10.2.{}.{} tags={}",
                i / 256,
                i % 256,
                tags.join(",")
            )
        })
        .collect();
    server.beat_until_all("big.svc.internal.", &datagrams);
    let tcp = |name: &str, rtype: RecordType| {
        let reply = query_tcp(server.dns, &question(name, rtype, true));
        assert_status(&reply, ResponseCode::NoError, true);
        assert!(!reply.metadata.truncation);
        reply.answers.len()
    };
    let cases: &[(&str, RecordType, usize)] = &[
        ("all._tag.big.svc.internal.", RecordType::A, 2000),
        ("even._tag.big.svc.internal.", RecordType::A, 1000),
        ("ten._tag.big.svc.internal.", RecordType::A, 200),
        ("ten.even._tag.big.svc.internal.", RecordType::A, 200),
        ("all.even.ten._tag.big.svc.internal.", RecordType::A, 200),
        ("even._tag._big._tcp.svc.internal.", RecordType::SRV, 1000),
        ("_ten._sub._big._tcp.svc.internal.", RecordType::PTR, 200),
        ("_all._sub._big._tcp.svc.internal.", RecordType::PTR, 2000),
    ];
    for (name, rtype, count) in cases {
        assert_eq!(tcp(name, *rtype), *count, "{name} {rtype}");
    }
    let udp = server.query("ten._tag.big.svc.internal.", RecordType::A);
    assert!(udp.metadata.truncation && udp.answers.is_empty());
}
