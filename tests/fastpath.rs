//! The UDP fast path answers exactly as the general path does.
//!
//! Two servers hold the same data (the example fragments plus the same
//! heartbeats); one runs with `--fast-path off`. Every query shape we serve
//! goes to both as the same raw bytes, and the replies must agree: header
//! flags and rcode, the question echoed byte for byte, every section (as
//! sets: rotation orders them differently), and the OPT record.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{TestServer, exchange_raw, question};
use hickory_proto::op::Message;
use hickory_proto::rr::{RData, Record, RecordType};

fn pair() -> (TestServer, TestServer) {
    let flags = ["--zones", "zones", "--reverse-zone", "10.in-addr.arpa"];
    let fast = TestServer::start(&flags);
    let general = TestServer::start(&[&flags[..], &["--fast-path", "off"]].concat());
    for server in [&fast, &general] {
        let beats: Vec<String> = (0..3)
            .map(|i| {
                format!("beacon/1 service=web instance=w{i} port=8080 addr=10.0.0.{i} meta.v=1")
            })
            .chain((0..2).map(|i| {
                format!("beacon/1 service=web instance=v6-{i} port=8080 addr=2001:db8::{i}")
            }))
            .chain(["beacon/1 service=dns instance=d0 port=53 proto=udp addr=10.0.1.1".into()])
            .chain(["beacon/1 service=heavy instance=h0 port=80 addr=10.0.2.1 weight=1".into()])
            .chain(["beacon/1 service=heavy instance=h1 port=80 addr=10.0.2.2 weight=9".into()])
            .chain(
                (0..60)
                    .map(|i| format!("beacon/1 service=big instance=b{i} port=80 addr=10.0.3.{i}")),
            )
            .collect();
        // 3 + 2 web, 60 big: wait for the last service to be whole.
        server.beat_until_all("big.svc.internal.", &beats[8..]);
        for beat in &beats[..8] {
            server.beat(beat);
        }
        server.await_reply("heavy.svc.internal.", RecordType::A, |m| {
            m.answers.len() == 2
        });
        server.await_reply("web.svc.internal.", RecordType::AAAA, |m| {
            m.answers.len() == 2
        });
        server.await_reply("dns.svc.internal.", RecordType::A, |m| m.answers.len() == 1);
        server.await_reply("web.svc.internal.", RecordType::A, |m| m.answers.len() == 3);
    }
    (fast, general)
}

/// An OPT record: payload size, DO bit, options as (code, data).
fn opt(payload: u16, dnssec_ok: bool, options: &[(u16, &[u8])]) -> Vec<u8> {
    let mut rdata = Vec::new();
    for (code, data) in options {
        rdata.extend_from_slice(&code.to_be_bytes());
        rdata.extend_from_slice(&u16::try_from(data.len()).expect("short").to_be_bytes());
        rdata.extend_from_slice(data);
    }
    let mut opt = vec![0, 0, 41];
    opt.extend_from_slice(&payload.to_be_bytes());
    opt.extend_from_slice(&[0, 0, if dnssec_ok { 0x80 } else { 0 }, 0]);
    opt.extend_from_slice(&u16::try_from(rdata.len()).expect("short").to_be_bytes());
    opt.extend_from_slice(&rdata);
    opt
}

/// A raw query for `name`/`rtype` (letter case kept) with header `flags`
/// OR-ed into bytes 2–3 and `edns` appended as the additional record.
fn raw(name: &str, rtype: RecordType, flags: u16, edns: Option<Vec<u8>>) -> Vec<u8> {
    let mut bytes = question(name, rtype, false).to_vec().expect("encode");
    let header = u16::from_be_bytes([bytes[2], bytes[3]]) | flags;
    bytes[2..4].copy_from_slice(&header.to_be_bytes());
    if let Some(opt) = edns {
        bytes[11] = 1;
        bytes.extend_from_slice(&opt);
    }
    bytes
}

fn ask(server: SocketAddr, query: &[u8]) -> Vec<u8> {
    for _ in 0..3 {
        if let Some(reply) = exchange_raw(server, query, Duration::from_secs(2))
            && reply[..2] == query[..2]
        {
            return reply;
        }
    }
    panic!("no reply from {server}");
}

/// A section as sorted lower-case lines; SOA serials are left out (each
/// server starts its own from the clock and counts its own changes).
fn section(records: &[Record]) -> Vec<String> {
    let mut lines: Vec<String> = records
        .iter()
        .map(|r| {
            let mut r = r.clone();
            if let RData::SOA(soa) = &mut r.data {
                soa.serial = 0;
            }
            r.to_string().to_ascii_lowercase()
        })
        .collect();
    lines.sort();
    lines
}

/// Everything a client can see in a reply, with sections as sorted sets.
fn visible(reply: &[u8], question_len: usize) -> String {
    let message = Message::from_vec(reply).expect("decodes");
    let m = &message.metadata;
    let edns = message.edns.as_ref().map(|e| {
        (
            e.max_payload(),
            e.version(),
            e.flags().dnssec_ok,
            e.options().as_ref().len(),
        )
    });
    format!(
        "id={} qr={:?} op={:?} aa={} tc={} rd={} ra={} ad={} cd={} rcode={:?}\n\
         question={:?}\nanswers={:#?}\nauthorities={:#?}\nadditionals={:#?}\nedns={:?}",
        m.id,
        m.message_type,
        m.op_code,
        m.authoritative,
        m.truncation,
        m.recursion_desired,
        m.recursion_available,
        m.authentic_data,
        m.checking_disabled,
        m.response_code,
        &reply[12..12 + question_len],
        section(&message.answers),
        section(&message.authorities),
        section(&message.additionals),
        edns,
    )
}

#[test]
fn fast_and_general_paths_give_the_same_answers() {
    let (fast, general) = pair();
    let names = [
        ("web.svc.internal.", RecordType::A),
        ("WeB.SvC.InTeRnAl.", RecordType::A),
        ("web.svc.internal.", RecordType::AAAA),
        ("_web._tcp.svc.internal.", RecordType::SRV),
        ("_WEB._Tcp.svc.internal.", RecordType::SRV),
        ("_dns._udp.svc.internal.", RecordType::SRV),
        ("w1.web.svc.internal.", RecordType::A),
        ("w1.web.svc.internal.", RecordType::AAAA),
        ("w1._web._tcp.svc.internal.", RecordType::TXT),
        ("w1._web._tcp.svc.internal.", RecordType::SRV),
        ("_web._tcp.svc.internal.", RecordType::PTR),
        ("_services._dns-sd._udp.svc.internal.", RecordType::PTR),
        ("heavy.svc.internal.", RecordType::A),
        ("_heavy._tcp.svc.internal.", RecordType::SRV),
        ("big.svc.internal.", RecordType::A),
        ("_big._tcp.svc.internal.", RecordType::SRV),
        ("db.svc.internal.", RecordType::A),
        ("_db._tcp.svc.internal.", RecordType::SRV),
        ("postgres.svc.internal.", RecordType::A),
        ("svc.internal.", RecordType::SOA),
        ("svc.internal.", RecordType::NS),
        ("svc.internal.", RecordType::TXT),
        ("svc.internal.", RecordType::ANY),
        ("nothing.svc.internal.", RecordType::A),
        ("web.svc.internal.", RecordType::MX),
        ("_tcp.svc.internal.", RecordType::A),
        ("1.0.0.10.in-addr.arpa.", RecordType::PTR),
        ("9.9.9.10.in-addr.arpa.", RecordType::PTR),
        ("example.com.", RecordType::A),
    ];
    let cookie: &[u8] = &[1, 2, 3, 4, 5, 6, 7, 8];
    let shapes: Vec<(&str, u16, Option<Vec<u8>>)> = vec![
        ("plain", 0, None),
        ("RD", 0x0100, None),
        ("CD and RD", 0x0110, None),
        ("AD", 0x0020, None),
        ("EDNS 1232", 0, Some(opt(1232, false, &[]))),
        ("EDNS 4096", 0, Some(opt(4096, false, &[]))),
        ("EDNS 100", 0, Some(opt(100, false, &[]))),
        (
            "EDNS cookie",
            0x0100,
            Some(opt(1232, false, &[(10, cookie)])),
        ),
        // What validating resolvers (Unbound, Knot Resolver) send.
        ("EDNS DO", 0, Some(opt(1232, true, &[]))),
        ("EDNS DO, RD, CD", 0x0110, Some(opt(1232, true, &[]))),
        ("EDNS DO 4096", 0, Some(opt(4096, true, &[]))),
        ("EDNS DO 512", 0, Some(opt(512, true, &[]))),
    ];
    let mut checked = 0;
    for (name, rtype) in names {
        for (shape, flags, edns) in &shapes {
            let query = raw(name, rtype, *flags, edns.clone());
            let question_len = question(name, rtype, false).to_vec().expect("encode").len() - 12;
            let fast_reply = ask(fast.dns, &query);
            let a = visible(&fast_reply, question_len);
            let b = visible(&ask(general.dns, &query), question_len);
            assert_eq!(a, b, "{name} {rtype} ({shape}): fast path vs general path");
            if shape.contains("DO") {
                // RFC 3225: the DO bit comes back.
                let reply = Message::from_vec(&fast_reply).expect("decodes");
                let edns = reply.edns.expect("OPT in the reply");
                assert!(edns.flags().dnssec_ok, "{name} {rtype} ({shape}): DO");
            }
            checked += 1;
        }
    }
    assert_eq!(checked, names.len() * shapes.len());
}

#[test]
fn malformed_and_odd_datagrams_get_the_same_treatment() {
    let (fast, general) = pair();
    let mut response = raw("web.svc.internal.", RecordType::A, 0x8000, None);
    response[0] = 0x77;
    let mut trailing = raw("web.svc.internal.", RecordType::A, 0, None);
    trailing.push(0);
    let mut chaos = raw("web.svc.internal.", RecordType::A, 0, None);
    let len = chaos.len();
    chaos[len - 1] = 3;
    let mut bad_version = opt(1232, false, &[]);
    bad_version[6] = 1;
    let version1 = raw("web.svc.internal.", RecordType::A, 0, Some(bad_version));
    let truncated_name = raw("web.svc.internal.", RecordType::A, 0, None)[..20].to_vec();
    for (what, query) in [
        ("class CH", chaos),
        ("EDNS version 1", version1),
        ("trailing byte", trailing),
        ("cut-off name", truncated_name),
    ] {
        let a = ask(fast.dns, &query);
        let b = ask(general.dns, &query);
        let (ma, mb) = (
            Message::from_vec(&a).expect("decodes"),
            Message::from_vec(&b).expect("decodes"),
        );
        assert_eq!(
            ma.metadata.response_code, mb.metadata.response_code,
            "{what}"
        );
        assert_eq!(section(&ma.answers), section(&mb.answers), "{what}");
    }
    // A response is never answered, on either path.
    for server in [fast.dns, general.dns] {
        assert!(exchange_raw(server, &response, Duration::from_millis(300)).is_none());
    }
}

/// Cached answers outlive views only while what they came from is
/// unchanged: each step below first fills the cache, then changes one
/// thing, and the next answer must show it.
#[test]
fn cached_answers_follow_every_change() {
    let zones = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        zones.path().join("static.zone"),
        "db IN A 10.1.0.1\n_db._tcp IN SRV 0 1 5432 replica\nreplica IN A 10.1.0.9\n",
    )
    .expect("write");
    let dir = zones.path().to_string_lossy().to_string();
    let server = TestServer::start(&["--zones", &dir, "--udp-workers", "1"]);
    let addresses = |name: &str| {
        let mut found = common::rdatas(&server.query(name, RecordType::A).answers);
        found.sort();
        found
    };
    let warm = |name: &str, rtype: RecordType| {
        for _ in 0..5 {
            server.query(name, rtype);
        }
    };

    // A static name, then a live service appears at it: the records merge.
    warm("db.svc.internal.", RecordType::A);
    assert_eq!(addresses("db.svc.internal."), ["10.1.0.1"]);
    server.beat("beacon/1 service=db instance=live port=5432 addr=10.1.0.2");
    server.await_reply("db.svc.internal.", RecordType::A, |m| m.answers.len() == 2);

    // A live service stays cached while another service changes...
    server.beat("beacon/1 service=web instance=a port=80 addr=10.0.0.1");
    server.await_reply("web.svc.internal.", RecordType::A, |m| m.answers.len() == 1);
    warm("web.svc.internal.", RecordType::A);
    server.beat("beacon/1 service=api instance=a port=80 addr=10.0.9.1");
    server.await_reply("api.svc.internal.", RecordType::A, |m| m.answers.len() == 1);
    assert_eq!(addresses("web.svc.internal."), ["10.0.0.1"]);
    // ...and changes with its own instances.
    server.beat("beacon/1 service=web instance=b port=80 addr=10.0.0.2");
    server.await_reply("web.svc.internal.", RecordType::A, |m| m.answers.len() == 2);
    server.beat("beacon/1 service=web instance=a port=80 addr=10.0.0.1 state=drain");
    server.await_reply("web.svc.internal.", RecordType::A, |m| {
        common::rdatas(&m.answers) == ["10.0.0.2"]
    });

    // Glue looked up at answer time follows the name it comes from.
    warm("_db._tcp.svc.internal.", RecordType::SRV);
    std::fs::write(
        zones.path().join("static.zone"),
        "db IN A 10.1.0.1\n_db._tcp IN SRV 0 1 5432 replica\nreplica IN A 10.1.0.10\n",
    )
    .expect("rewrite");
    server.await_reply("_db._tcp.svc.internal.", RecordType::SRV, |m| {
        common::rdatas(&m.additionals).contains(&"10.1.0.10".to_string())
    });

    // The DNS-SD type list follows service types coming and going.
    let types = |server: &TestServer| {
        common::rdatas(
            &server
                .query("_services._dns-sd._udp.svc.internal.", RecordType::PTR)
                .answers,
        )
    };
    warm("_services._dns-sd._udp.svc.internal.", RecordType::PTR);
    assert!(!types(&server).contains(&"_new._tcp.svc.internal.".to_string()));
    server.beat("beacon/1 service=new instance=n port=80 addr=10.0.6.1");
    server.await_reply(
        "_services._dns-sd._udp.svc.internal.",
        RecordType::PTR,
        |m| common::rdatas(&m.answers).contains(&"_new._tcp.svc.internal.".to_string()),
    );
    server.beat("beacon/1 service=new instance=n port=80 state=down");
    server.await_reply(
        "_services._dns-sd._udp.svc.internal.",
        RecordType::PTR,
        |m| !common::rdatas(&m.answers).contains(&"_new._tcp.svc.internal.".to_string()),
    );

    // A negative answer turns positive, and back.
    warm("late.svc.internal.", RecordType::A);
    server.beat("beacon/1 service=late instance=x port=80 addr=10.0.5.1");
    server.await_reply("late.svc.internal.", RecordType::A, |m| {
        m.answers.len() == 1
    });
    server.beat("beacon/1 service=late instance=x port=80 state=down");
    server.await_reply("late.svc.internal.", RecordType::A, |m| {
        m.metadata.response_code == hickory_proto::op::ResponseCode::NXDomain
    });
}
