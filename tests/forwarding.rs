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
            "--http",
            "off",
        ])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--forward"));
}

/// The (ID, source port) of every query an upstream saw.
type Seen = std::sync::Arc<std::sync::Mutex<Vec<(u16, u16)>>>;

/// An upstream that answers every query twice: first with our ID but
/// another question (what an off-path spoofer who guessed the ID and port
/// would send), then properly. Returns its address and how many queries
/// it saw, with their IDs and source ports.
fn two_faced_upstream() -> (std::net::SocketAddr, Seen) {
    use hickory_proto::op::Query;
    use hickory_proto::rr::{Name, RData, Record, rdata::A};
    use std::str::FromStr;

    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = socket.local_addr().expect("addr");
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        while let Ok((len, from)) = socket.recv_from(&mut buffer) {
            let Ok(query) = Message::from_vec(&buffer[..len]) else {
                continue;
            };
            log.lock()
                .expect("lock")
                .push((query.metadata.id, from.port()));
            let mut spoofed = query.clone();
            spoofed.metadata.message_type = hickory_proto::op::MessageType::Response;
            spoofed.queries = vec![Query::query(
                Name::from_str("evil.example.").expect("name"),
                RecordType::A,
            )];
            spoofed.answers = vec![Record::from_rdata(
                Name::from_str("evil.example.").expect("name"),
                60,
                RData::A(A::new(6, 6, 6, 6)),
            )];
            let _ = socket.send_to(&spoofed.to_vec().expect("encode"), from);
            let mut real = query.clone();
            real.metadata.message_type = hickory_proto::op::MessageType::Response;
            real.answers = vec![Record::from_rdata(
                query.queries[0].name().clone(),
                60,
                RData::A(A::new(10, 1, 2, 3)),
            )];
            let _ = socket.send_to(&real.to_vec().expect("encode"), from);
        }
    });
    (addr, seen)
}

#[test]
fn replies_to_another_question_are_dropped_and_counted() {
    let (upstream, seen) = two_faced_upstream();
    let server = TestServer::start(&["--forward", &upstream.to_string()]);
    for _ in 0..20 {
        let reply = query_udp(server.dns, &recursive("www.example.org.", RecordType::A));
        assert_eq!(rdatas(&reply.answers), ["10.1.2.3"], "{reply:?}");
    }
    server.wait_for_log("dropped a forwarded reply whose question is not the one asked");
    server.wait_for_log("total=16");
    // IDs and source ports vary from query to query (drawn at random:
    // 20 draws from 65,536 and 64,512 values repeat with odds below 1%).
    let seen = seen.lock().expect("lock");
    let ids: std::collections::HashSet<u16> = seen.iter().map(|(id, _)| *id).collect();
    let ports: std::collections::HashSet<u16> = seen.iter().map(|(_, port)| *port).collect();
    assert!(ids.len() >= 18 && ports.len() >= 18, "{seen:?}");
    assert!(ports.iter().all(|port| *port >= 1024), "{seen:?}");
}
