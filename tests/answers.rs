//! What the server answers for live instances: A, AAAA, SRV with additional
//! records, instance names, SOA/NS, negative answers, REFUSED, letter case.

mod common;

use common::{TestServer, assert_status, lines, query_tcp, query_udp, question_in_class, rdatas};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{DNSClass, RData, RecordType};

/// web: two IPv4 instances and one IPv6 one; dns: one UDP instance.
fn server_with_instances() -> TestServer {
    let server = TestServer::start(&[]);
    server.beat("beacon/1 service=web instance=web-1 port=8080 addr=10.0.0.1");
    server.beat("beacon/1 service=web instance=web-2 port=8080 addr=10.0.0.2");
    server.beat("beacon/1 service=web instance=web-6 port=8443 addr=2001:db8::6");
    server.beat("beacon/1 service=dns instance=d1 port=53 addr=10.0.1.1 proto=udp ttl=3");
    server.await_reply("d1.dns.svc.internal.", RecordType::A, |m| {
        !m.answers.is_empty()
    });
    server.await_reply("_web._tcp.svc.internal.", RecordType::SRV, |m| {
        m.answers.len() == 3
    });
    server
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[test]
fn service_name_answers_a_and_aaaa_of_its_instances() {
    let server = server_with_instances();
    let a = server.query("web.svc.internal.", RecordType::A);
    assert_status(&a, ResponseCode::NoError, true);
    assert_eq!(
        sorted(lines(&a.answers)),
        [
            "web.svc.internal. 5 IN A 10.0.0.1",
            "web.svc.internal. 5 IN A 10.0.0.2",
        ]
    );
    let aaaa = server.query("web.svc.internal.", RecordType::AAAA);
    assert_status(&aaaa, ResponseCode::NoError, true);
    assert_eq!(
        lines(&aaaa.answers),
        ["web.svc.internal. 5 IN AAAA 2001:db8::6"]
    );
}

#[test]
fn srv_lists_every_instance_with_target_addresses_in_additional() {
    let server = server_with_instances();
    let srv = server.query("_web._tcp.svc.internal.", RecordType::SRV);
    assert_status(&srv, ResponseCode::NoError, true);
    assert_eq!(
        sorted(lines(&srv.answers)),
        [
            "_web._tcp.svc.internal. 5 IN SRV 0 1 8080 web-1.web.svc.internal.",
            "_web._tcp.svc.internal. 5 IN SRV 0 1 8080 web-2.web.svc.internal.",
            "_web._tcp.svc.internal. 5 IN SRV 0 1 8443 web-6.web.svc.internal.",
        ]
    );
    let glue: Vec<String> = srv
        .additionals
        .iter()
        .filter(|r| r.record_type() != RecordType::OPT)
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        sorted(glue),
        [
            "web-1.web.svc.internal. 5 IN A 10.0.0.1",
            "web-2.web.svc.internal. 5 IN A 10.0.0.2",
            "web-6.web.svc.internal. 5 IN AAAA 2001:db8::6",
        ]
    );
    // Additional records follow the SRV order, so a client reading both in
    // step finds each target's address beside it.
    let targets: Vec<String> = srv
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::SRV(srv) => Some(srv.target.to_string()),
            _ => None,
        })
        .collect();
    let glue_owners: Vec<String> = srv
        .additionals
        .iter()
        .take(3)
        .map(|r| r.name.to_string())
        .collect();
    assert_eq!(targets, glue_owners);
}

#[test]
fn udp_services_answer_under_udp_and_not_tcp() {
    let server = server_with_instances();
    let srv = server.query("_dns._udp.svc.internal.", RecordType::SRV);
    assert_eq!(
        lines(&srv.answers),
        ["_dns._udp.svc.internal. 3 IN SRV 0 1 53 d1.dns.svc.internal."]
    );
    // The answer TTL (5 s) is capped by the instance's 3 s lease.
    let tcp = server.query("_dns._tcp.svc.internal.", RecordType::SRV);
    assert_status(&tcp, ResponseCode::NXDomain, true);
}

#[test]
fn instance_names_answer_their_own_address() {
    let server = server_with_instances();
    let a = server.query("web-2.web.svc.internal.", RecordType::A);
    assert_status(&a, ResponseCode::NoError, true);
    assert_eq!(
        lines(&a.answers),
        ["web-2.web.svc.internal. 5 IN A 10.0.0.2"]
    );
    let aaaa = server.query("web-6.web.svc.internal.", RecordType::AAAA);
    assert_eq!(
        lines(&aaaa.answers),
        ["web-6.web.svc.internal. 5 IN AAAA 2001:db8::6"]
    );
}

#[test]
fn negative_answers_carry_the_soa_with_the_negative_ttl() {
    let server = server_with_instances();
    // NXDOMAIN: the name does not exist.
    let nx = server.query("nothing.svc.internal.", RecordType::A);
    assert_status(&nx, ResponseCode::NXDomain, true);
    assert!(nx.answers.is_empty());
    assert_eq!(nx.authorities.len(), 1);
    let soa = &nx.authorities[0];
    assert_eq!(soa.record_type(), RecordType::SOA);
    assert_eq!(soa.name.to_string(), "svc.internal.");
    // min(SOA TTL 60, MINIMUM 5)
    assert_eq!(soa.ttl, 5);

    // NODATA: the name exists, the type does not.
    for (name, rtype) in [
        ("web-1.web.svc.internal.", RecordType::AAAA),
        ("web-1.web.svc.internal.", RecordType::TXT),
        ("_web._tcp.svc.internal.", RecordType::A),
        ("web.svc.internal.", RecordType::SRV),
        // Empty non-terminal: exists because _web._tcp exists below it.
        ("_tcp.svc.internal.", RecordType::SRV),
    ] {
        let reply = server.query(name, rtype);
        assert_status(&reply, ResponseCode::NoError, true);
        assert!(reply.answers.is_empty(), "{name} {rtype}");
        assert_eq!(reply.authorities.len(), 1, "{name} {rtype}");
        assert_eq!(reply.authorities[0].record_type(), RecordType::SOA);
        assert_eq!(reply.authorities[0].ttl, 5);
    }
}

#[test]
fn names_outside_the_zone_are_refused() {
    let server = server_with_instances();
    for name in [
        "example.com.",
        "internal.",
        "web.svc.internal.example.",
        ".",
    ] {
        let reply = server.query(name, RecordType::A);
        assert_status(&reply, ResponseCode::Refused, false);
        assert!(reply.answers.is_empty());
    }
}

#[test]
fn other_classes_are_refused() {
    let server = server_with_instances();
    let reply = query_udp(
        server.dns,
        &question_in_class("web.svc.internal.", RecordType::A, DNSClass::CH),
    );
    assert_status(&reply, ResponseCode::Refused, false);
}

#[test]
fn names_are_case_insensitive_and_the_question_keeps_its_case() {
    let server = server_with_instances();
    let reply = server.query("WeB-1.wEb.SVC.Internal.", RecordType::A);
    assert_status(&reply, ResponseCode::NoError, true);
    assert_eq!(rdatas(&reply.answers), ["10.0.0.1"]);
    // The question is echoed byte for byte (dig shows it; checked on the raw
    // bytes because decoding may normalise case).
    // Hand-made bytes: hickory's encoder may write names in canonical case.
    let mut query = vec![0x12, 0x34, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    query.extend_from_slice(b"\x05WeB-1\x03wEb\x03SVC\x08Internal\x00\x00\x01\x00\x01");
    let raw =
        common::exchange_raw(server.dns, &query, std::time::Duration::from_secs(2)).expect("reply");
    assert_eq!(&raw[..2], [0x12, 0x34]);
    assert_eq!(
        &raw[12..12 + 7],
        b"\x05WeB-1\x03",
        "question bytes of {raw:?}"
    );
    let srv = server.query("_WEB._TCP.svc.internal.", RecordType::SRV);
    assert_eq!(srv.answers.len(), 3);
}

#[test]
fn apex_serves_soa_and_ns_with_the_name_server_address() {
    let server = server_with_instances();
    let soa = server.query("svc.internal.", RecordType::SOA);
    assert_status(&soa, ResponseCode::NoError, true);
    let text = lines(&soa.answers);
    assert_eq!(text.len(), 1);
    assert!(
        text[0].starts_with("svc.internal. 60 IN SOA ns.svc.internal. hostmaster.svc.internal. "),
        "{text:?}"
    );
    assert!(text[0].ends_with(" 60 10 300 5"), "{text:?}");

    let ns = server.query("svc.internal.", RecordType::NS);
    assert_eq!(
        lines(&ns.answers),
        ["svc.internal. 60 IN NS ns.svc.internal."]
    );
    assert!(
        lines(&ns.additionals).contains(&"ns.svc.internal. 60 IN A 127.0.0.1".to_string()),
        "{:?}",
        ns.additionals
    );
    let host = server.query("ns.svc.internal.", RecordType::A);
    assert_eq!(rdatas(&host.answers), ["127.0.0.1"]);
}

#[test]
fn the_soa_contact_and_primary_are_configurable() {
    let server = TestServer::start(&[
        "--soa-primary",
        "ns1.example.net",
        "--soa-contact",
        "ops@example.net",
        "--soa-ttl",
        "30",
        "--soa-minimum",
        "120",
    ]);
    let soa = server.query("svc.internal.", RecordType::SOA);
    let text = lines(&soa.answers);
    assert!(
        text[0].starts_with("svc.internal. 30 IN SOA ns1.example.net. ops.example.net. "),
        "{text:?}"
    );
    // Negative TTL = min(30, 120).
    let nx = server.query("nope.svc.internal.", RecordType::A);
    assert_eq!(nx.authorities[0].ttl, 30);
}

#[test]
fn tcp_gives_the_same_answers() {
    let server = server_with_instances();
    let udp = server.query("_web._tcp.svc.internal.", RecordType::SRV);
    let tcp = server.query_tcp("_web._tcp.svc.internal.", RecordType::SRV);
    assert_status(&tcp, ResponseCode::NoError, true);
    assert_eq!(sorted(lines(&udp.answers)), sorted(lines(&tcp.answers)));
    let nx = query_tcp(
        server.dns,
        &common::question("x.svc.internal.", RecordType::A, false),
    );
    assert_status(&nx, ResponseCode::NXDomain, true);
}

#[test]
fn answer_ttl_is_configurable_and_capped_by_the_lease() {
    let server = TestServer::start(&["--answer-ttl", "30"]);
    server.beat("beacon/1 service=api instance=a port=80 addr=10.0.0.1 ttl=60");
    server.beat("beacon/1 service=api instance=b port=80 addr=10.0.0.2 ttl=20");
    let reply = server.await_reply("api.svc.internal.", RecordType::A, |m| m.answers.len() == 2);
    // One TTL for the whole RRset: the smallest of min(30, lease).
    assert!(
        reply.answers.iter().all(|r| r.ttl == 20),
        "{:?}",
        reply.answers
    );
    let a = server.query("a.api.svc.internal.", RecordType::A);
    assert_eq!(a.answers[0].ttl, 30);
}

#[test]
fn serial_grows_when_data_changes_and_not_on_renewal() {
    let server = TestServer::start(&[]);
    let first = server.serial();
    server.beat("beacon/1 service=web instance=a port=80 addr=10.0.0.1");
    server.await_reply("web.svc.internal.", RecordType::A, |m| {
        !m.answers.is_empty()
    });
    let second = server.serial();
    assert!(second > first, "{second} > {first}");
    // A plain renewal changes nothing visible: same serial.
    server.beat("beacon/1 service=web instance=a port=80 addr=10.0.0.1");
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert_eq!(server.serial(), second);
    // A changed weight is a change.
    server.beat("beacon/1 service=web instance=a port=80 addr=10.0.0.1 weight=5");
    server.await_reply("_web._tcp.svc.internal.", RecordType::SRV, |m| {
        m.answers
            .iter()
            .any(|r| r.data.to_string().starts_with("0 5 "))
    });
    assert!(server.serial() > second);
}
