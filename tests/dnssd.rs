//! DNS-SD (RFC 6763) browsing over unicast, fed by live heartbeats: service
//! types, instance lists, SRV and TXT per instance, the additional section
//! of §12, browsing domains; and a real DNS-SD browse with dnspython.

mod common;

use std::process::Command;

use common::{TestServer, lines, rdatas};
use hickory_proto::rr::RecordType;

fn server_with_services() -> TestServer {
    let server = TestServer::start(&[]);
    server.beat("beacon/1 service=web instance=w1 port=8080 addr=10.0.0.1 meta.version=1.2 meta.path=/api%20v2");
    server.beat("beacon/1 service=web instance=w2 port=8080 addr=2001:db8::2");
    server.beat("beacon/1 service=web instance=old port=8080 addr=10.0.0.9 state=drain");
    server.beat("beacon/1 service=dns instance=d1 port=53 addr=10.0.1.1 proto=udp");
    server.await_reply(
        "_services._dns-sd._udp.svc.internal.",
        RecordType::PTR,
        |m| m.answers.len() == 2,
    );
    server.await_reply("_web._tcp.svc.internal.", RecordType::PTR, |m| {
        m.answers.len() == 2
    });
    server.await_reply("old._web._tcp.svc.internal.", RecordType::TXT, |m| {
        !m.answers.is_empty()
    });
    server
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[test]
fn service_types_and_instances_are_browsable() {
    let server = server_with_services();
    let types = server.query("_services._dns-sd._udp.svc.internal.", RecordType::PTR);
    assert!(types.metadata.authoritative);
    assert_eq!(
        sorted(rdatas(&types.answers)),
        ["_dns._udp.svc.internal.", "_web._tcp.svc.internal."]
    );

    // The draining instance is not offered to browsers.
    let web = server.query("_web._tcp.svc.internal.", RecordType::PTR);
    assert_eq!(
        sorted(rdatas(&web.answers)),
        ["w1._web._tcp.svc.internal.", "w2._web._tcp.svc.internal."]
    );
    // RFC 6763 §12.1: SRV, TXT and addresses of each instance in additional.
    let additional = sorted(lines(
        &web.additionals
            .iter()
            .filter(|r| r.record_type() != RecordType::OPT)
            .cloned()
            .collect::<Vec<_>>(),
    ));
    assert_eq!(
        additional,
        [
            "w1._web._tcp.svc.internal. 5 IN SRV 0 1 8080 w1.web.svc.internal.",
            "w1._web._tcp.svc.internal. 5 IN TXT path=/api v2version=1.2",
            "w1.web.svc.internal. 5 IN A 10.0.0.1",
            "w2._web._tcp.svc.internal. 5 IN SRV 0 1 8080 w2.web.svc.internal.",
            "w2._web._tcp.svc.internal. 5 IN TXT ",
            "w2.web.svc.internal. 5 IN AAAA 2001:db8::2",
        ]
    );
    // The SRV records at `_web._tcp` are still there for plain SRV clients.
    assert_eq!(
        server
            .query("_web._tcp.svc.internal.", RecordType::SRV)
            .answers
            .len(),
        2
    );
}

#[test]
fn each_instance_has_srv_and_txt() {
    let server = server_with_services();
    let srv = server.query("w1._web._tcp.svc.internal.", RecordType::SRV);
    assert_eq!(rdatas(&srv.answers), ["0 1 8080 w1.web.svc.internal."]);
    // §12.2: the target's address in additional.
    assert!(rdatas(&srv.additionals).contains(&"10.0.0.1".to_string()));

    let txt = server.query("w1._web._tcp.svc.internal.", RecordType::TXT);
    let strings: Vec<Vec<u8>> = match &txt.answers[0].data {
        hickory_proto::rr::RData::TXT(t) => t.txt_data.iter().map(|s| s.to_vec()).collect(),
        other => panic!("{other:?}"),
    };
    assert_eq!(strings, [b"path=/api v2".to_vec(), b"version=1.2".to_vec()]);

    // No metadata: one empty string, as RFC 6763 §6.1 asks.
    let empty = server.query("d1._dns._udp.svc.internal.", RecordType::TXT);
    match &empty.answers[0].data {
        hickory_proto::rr::RData::TXT(t) => assert_eq!(t.txt_data.len(), 1),
        other => panic!("{other:?}"),
    }
    // A draining instance keeps its own names.
    assert_eq!(
        server
            .query("old._web._tcp.svc.internal.", RecordType::SRV)
            .answers
            .len(),
        1
    );
}

#[test]
fn browsing_domains_point_at_the_zone() {
    let server = server_with_services();
    for name in [
        "b._dns-sd._udp.svc.internal.",
        "lb._dns-sd._udp.svc.internal.",
    ] {
        let reply = server.query(name, RecordType::PTR);
        assert_eq!(rdatas(&reply.answers), ["svc.internal."], "{name}");
    }
}

#[test]
fn types_come_and_go_with_their_instances() {
    let server = server_with_services();
    server.beat("beacon/1 service=dns instance=d1 port=53 state=down");
    server.await_reply(
        "_services._dns-sd._udp.svc.internal.",
        RecordType::PTR,
        |m| m.answers.len() == 1,
    );
    let gone = server.query("d1._dns._udp.svc.internal.", RecordType::TXT);
    assert_eq!(
        gone.metadata.response_code,
        hickory_proto::op::ResponseCode::NXDomain
    );
}

/// A DNS-SD browse as a client library does it, with dnspython.
const BROWSE: &str = r#"
import sys
import dns.resolver
ip, port, zone = sys.argv[1], int(sys.argv[2]), sys.argv[3]
r = dns.resolver.Resolver(configure=False)
r.nameservers = [ip]
r.port = port
for t in sorted(str(p.target) for p in r.resolve("_services._dns-sd._udp." + zone, "PTR")):
    for i in sorted(str(p.target) for p in r.resolve(t, "PTR")):
        srv = r.resolve(i, "SRV")[0]
        txt = b" ".join(s for rr in r.resolve(i, "TXT") for s in rr.strings).decode()
        host = str(srv.target)
        addrs = []
        for rtype in ("A", "AAAA"):
            try:
                addrs += [a.to_text() for a in r.resolve(host, rtype)]
            except dns.resolver.NoAnswer:
                pass
        print(t, i, host, srv.port, repr(txt), ",".join(addrs))
"#;

#[test]
fn dnspython_browses_end_to_end() {
    let Some(python) = common::python_with("dns.resolver") else {
        return;
    };
    let server = server_with_services();
    let out = Command::new(python)
        .args([
            "-c",
            BROWSE,
            &server.dns.ip().to_string(),
            &server.dns.port().to_string(),
            "svc.internal.",
        ])
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        got,
        [
            "_dns._udp.svc.internal. d1._dns._udp.svc.internal. d1.dns.svc.internal. 53 '' 10.0.1.1",
            "_web._tcp.svc.internal. w1._web._tcp.svc.internal. w1.web.svc.internal. 8080 'path=/api v2 version=1.2' 10.0.0.1",
            "_web._tcp.svc.internal. w2._web._tcp.svc.internal. w2.web.svc.internal. 8080 '' 2001:db8::2",
        ]
    );
}
