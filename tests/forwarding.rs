//! Forwarding names outside our zones to configured upstreams, for allowed
//! clients only. The upstream is a second beacon serving another zone.

mod common;

use std::net::UdpSocket;

use common::{TestServer, query_tcp, query_udp, question, rdatas};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;

fn upstream() -> TestServer {
    let server = TestServer::start(&["--zone", "other.internal", "--max-instances", "1000"]);
    server.beat("beacon/1 service=db instance=d1 port=5432 addr=10.9.0.1");
    server.await_reply("db.other.internal.", RecordType::A, |m| {
        !m.answers.is_empty()
    });
    server
}

fn recursive(name: &str, rtype: RecordType) -> Message {
    let mut q = question(name, rtype, true);
    q.metadata.recursion_desired = true;
    q
}

#[test]
fn outside_names_are_forwarded_with_ra() {
    let up = upstream();
    let server = TestServer::start(&["--forward", &up.dns.to_string()]);
    let reply = query_udp(server.dns, &recursive("db.other.internal.", RecordType::A));
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert!(reply.metadata.recursion_available);
    assert!(!reply.metadata.authoritative);
    assert_eq!(rdatas(&reply.answers), ["10.9.0.1"]);
    // Negative answers pass through with the upstream's SOA.
    let nx = query_udp(
        server.dns,
        &recursive("nope.other.internal.", RecordType::A),
    );
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(nx.authorities[0].name.to_string(), "other.internal.");
    // Our own zone is still ours: authoritative, RA clear.
    let own = query_udp(server.dns, &recursive("svc.internal.", RecordType::SOA));
    assert!(own.metadata.authoritative);
    assert!(!own.metadata.recursion_available);
}

#[test]
fn without_rd_or_from_other_networks_it_is_refused() {
    let up = upstream();
    let server = TestServer::start(&["--forward", &up.dns.to_string()]);
    let no_rd = query_udp(
        server.dns,
        &question("db.other.internal.", RecordType::A, true),
    );
    assert_eq!(no_rd.metadata.response_code, ResponseCode::Refused);

    // Loopback is not in the allowed networks here.
    let closed = TestServer::start(&[
        "--forward",
        &up.dns.to_string(),
        "--forward-allow",
        "10.0.0.0/8",
    ]);
    let reply = query_udp(closed.dns, &recursive("db.other.internal.", RecordType::A));
    assert_eq!(reply.metadata.response_code, ResponseCode::Refused);
    assert!(!reply.metadata.recursion_available);
}

#[test]
fn a_dead_upstream_gives_servfail_and_none_gives_refused() {
    let dead = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let dead_addr = dead.local_addr().expect("addr");
    drop(dead);
    let server = TestServer::start(&["--forward", &dead_addr.to_string()]);
    let reply = query_udp(server.dns, &recursive("db.other.internal.", RecordType::A));
    assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);

    let plain = TestServer::start(&[]);
    let refused = query_udp(plain.dns, &recursive("db.other.internal.", RecordType::A));
    assert_eq!(refused.metadata.response_code, ResponseCode::Refused);
}

#[test]
fn big_upstream_answers_are_fetched_over_tcp() {
    let up = upstream();
    let datagrams: Vec<String> = (0..300)
        .map(|i| {
            format!(
                "beacon/1 service=big instance=i{i} port=80 addr=10.8.{}.{}",
                i / 256,
                i % 256
            )
        })
        .collect();
    up.beat_until_all("big.other.internal.", &datagrams);
    let server = TestServer::start(&["--forward", &up.dns.to_string()]);
    // Over UDP we pass the TC on; over TCP the client gets everything,
    // which beacon itself fetched from the upstream over TCP.
    let udp = query_udp(server.dns, &recursive("big.other.internal.", RecordType::A));
    assert!(udp.metadata.truncation);
    let tcp = query_tcp(server.dns, &recursive("big.other.internal.", RecordType::A));
    assert_eq!(tcp.answers.len(), 300);
}

#[test]
fn forwarding_to_ourselves_is_refused_at_start() {
    let out = std::process::Command::new(common::BEACON)
        .args([
            "serve",
            "--dns",
            "127.0.0.1:5399",
            "--heartbeat",
            "127.0.0.1:0",
            "--forward",
            "127.0.0.1:5399",
        ])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--forward"));
}
