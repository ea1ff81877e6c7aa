//! Bad input never hurts: garbage heartbeats and malformed DNS packets are
//! dropped or answered with the right error, and the server keeps serving.

mod common;

use std::time::Duration;

use common::{TestServer, assert_status, exchange_raw, query_udp, question, rdatas};
use hickory_proto::op::{Edns, Message, OpCode, ResponseCode};
use hickory_proto::rr::RecordType;

#[test]
fn a_burst_of_garbage_heartbeats_changes_nothing() {
    let server = TestServer::start(&[]);
    server.beat("beacon/1 service=web instance=a port=80 addr=10.0.0.1");
    server.await_reply("web.svc.internal.", RecordType::A, |m| {
        !m.answers.is_empty()
    });
    let serial = server.serial();

    let mut rng = fastrand::Rng::with_seed(7);
    let mut garbage: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"beacon/1".to_vec(),
        b"beacon/9 service=web instance=a port=80".to_vec(),
        b"beacon/1 service=web instance=a port=0 addr=10.6.6.6".to_vec(),
        b"beacon/1 service=web instance=a port=80 ttl=0 addr=10.6.6.6".to_vec(),
        b"beacon/1 service=web instance=a port=80 ttl=99999999 addr=10.6.6.6".to_vec(),
        b"beacon/1 service=web instance=a port=80 state=maybe addr=10.6.6.6".to_vec(),
        b"beacon/1 service=we.b instance=a port=80 addr=10.6.6.6".to_vec(),
        b"beacon/1 service=web instance=a port=80 state=down extra".to_vec(),
        format!(
            "beacon/1 service=web instance=a port=80 addr=10.6.6.6 meta.k={}",
            "x".repeat(1400)
        )
        .into_bytes(),
        vec![0u8; 9000],
        // Outside the grammar the README documents.
        b"beacon/1 service=web instance=a port=+80 addr=10.6.6.6".to_vec(),
        b"beacon/1 service=web instance=a port=080 addr=10.6.6.6".to_vec(),
        b"beacon/1\tservice=web instance=a port=80 addr=10.6.6.6".to_vec(),
        b"beacon/1 service=web instance=a port=80 addr=10.6.6.6\r\n".to_vec(),
        b"beacon/1  service=web instance=a port=80 addr=10.6.6.6".to_vec(),
        b"beacon/1 service=web instance=a port=80 addr=10.6.6.6 ".to_vec(),
        // Addresses no client could reach.
        b"beacon/1 service=web instance=a port=80 addr=255.255.255.255".to_vec(),
        b"beacon/1 service=web instance=a port=80 addr=0.0.0.0".to_vec(),
        b"beacon/1 service=web instance=a port=80 addr=0.1.2.3".to_vec(),
        b"beacon/1 service=web instance=a port=80 addr=224.0.0.1".to_vec(),
        b"beacon/1 service=web instance=a port=80 addr=ff02::1".to_vec(),
        // A service name whose `_<service>` would not be a DNS label.
        format!("beacon/1 service={} instance=a port=80", "s".repeat(63)).into_bytes(),
    ];
    for _ in 0..500 {
        let len = rng.usize(0..1500);
        garbage.push((0..len).map(|_| rng.u8(..)).collect());
    }
    for datagram in &garbage {
        common::send_datagram(server.heartbeat, datagram);
    }
    server.wait_for_log("dropped a malformed heartbeat");

    // The registry and the answers are as before the burst.
    let reply = server.query("web.svc.internal.", RecordType::A);
    assert_status(&reply, ResponseCode::NoError, true);
    assert_eq!(rdatas(&reply.answers), ["10.0.0.1"]);
    assert_eq!(server.serial(), serial);
    // Rate-limited: one warning line, not one per datagram.
    let warns = server
        .log()
        .matches("dropped a malformed heartbeat")
        .count();
    assert_eq!(warns, 1, "{}", server.log());
    // And new heartbeats still get in.
    server.beat("beacon/1 service=web instance=b port=80 addr=10.0.0.2");
    server.await_reply("web.svc.internal.", RecordType::A, |m| m.answers.len() == 2);
}

#[test]
fn an_oversized_heartbeat_is_refused_with_its_real_size() {
    let server = TestServer::start(&[]);
    // Received into a buffer just over the limit, yet reported in full.
    common::send_datagram(server.heartbeat, &[b'x'; 9000]);
    server.wait_for_log("datagram of 9000 bytes is over the 1400-byte limit");
    server.beat("beacon/1 service=web instance=a port=80 addr=10.0.0.1");
    server.await_reply("web.svc.internal.", RecordType::A, |m| {
        !m.answers.is_empty()
    });
}

#[test]
fn malformed_dns_packets_never_stop_the_server() {
    // Its 60 connections come from one address faster than the server sees
    // them close: over the default --tcp-per-client (tests/limits.rs).
    let server = TestServer::start(&["--tcp-per-client", "100"]);
    server.beat("beacon/1 service=web instance=a port=80 addr=10.0.0.1");
    server.await_reply("web.svc.internal.", RecordType::A, |m| {
        !m.answers.is_empty()
    });

    let mut rng = fastrand::Rng::with_seed(11);
    let valid = question("web.svc.internal.", RecordType::A, true)
        .to_vec()
        .expect("encode");
    for i in 0..600 {
        let packet: Vec<u8> = match i % 3 {
            // Random bytes.
            0 => (0..rng.usize(0..600)).map(|_| rng.u8(..)).collect(),
            // A valid query cut short.
            1 => valid[..rng.usize(0..valid.len())].to_vec(),
            // A valid query with random bytes flipped.
            _ => {
                let mut p = valid.clone();
                for _ in 0..3 {
                    let at = rng.usize(0..p.len());
                    p[at] = rng.u8(..);
                }
                p
            }
        };
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        socket.send_to(&packet, server.dns).expect("send");
    }
    // Over TCP: garbage, a length prefix promising more than comes, a
    // message shorter than a header, and flipped queries, each on its own
    // connection that the client then drops.
    for i in 0..60 {
        use std::io::Write;
        let Ok(mut stream) = std::net::TcpStream::connect(server.dns) else {
            continue;
        };
        let packet: Vec<u8> = match i % 4 {
            0 => (0..rng.usize(0..300)).map(|_| rng.u8(..)).collect(),
            1 => [&[0x40, 0x00][..], &valid[..]].concat(),
            2 => vec![0, 3, 1, 2, 3],
            _ => {
                let mut p = valid.clone();
                let at = rng.usize(0..p.len());
                p[at] = rng.u8(..);
                let len = u16::try_from(p.len()).unwrap_or(0).to_be_bytes();
                [&len[..], &p[..]].concat()
            }
        };
        let _ = stream.write_all(&packet);
    }
    let reply = server.query("web.svc.internal.", RecordType::A);
    assert_eq!(rdatas(&reply.answers), ["10.0.0.1"]);
    let tcp = server.query_tcp("web.svc.internal.", RecordType::A);
    assert_eq!(rdatas(&tcp.answers), ["10.0.0.1"]);
}

#[test]
fn header_errors_get_their_rcodes() {
    let server = TestServer::start(&[]);

    // No question: FORMERR.
    let mut none = Message::query();
    none.metadata.id = 99;
    let reply = query_udp(server.dns, &none);
    assert_eq!(reply.metadata.response_code, ResponseCode::FormErr);

    // Two questions: FORMERR.
    let mut two = question("a.svc.internal.", RecordType::A, false);
    two.add_query(question("b.svc.internal.", RecordType::A, false).queries[0].clone());
    assert_eq!(
        query_udp(server.dns, &two).metadata.response_code,
        ResponseCode::FormErr
    );

    // Opcodes we do not serve: NOTIMP. UPDATE from a client that
    // --allow-update does not let in: REFUSED.
    for (op, rcode) in [
        (OpCode::Status, ResponseCode::NotImp),
        (OpCode::Notify, ResponseCode::NotImp),
        (OpCode::Update, ResponseCode::Refused),
    ] {
        let mut msg = question("svc.internal.", RecordType::SOA, false);
        msg.metadata.op_code = op;
        let reply = query_udp(server.dns, &msg);
        assert_eq!(reply.metadata.response_code, rcode, "{op:?}");
    }

    // EDNS version 1: BADVERS, with an OPT record in the reply.
    let mut v1 = question("web.svc.internal.", RecordType::A, false);
    let mut edns = Edns::new();
    edns.set_version(1);
    v1.set_edns(edns);
    let raw = exchange_raw(
        server.dns,
        &v1.to_vec().expect("encode"),
        Duration::from_secs(2),
    )
    .expect("reply");
    let reply = Message::from_vec(&raw).expect("decode");
    // BADVERS and BADSIG share the value 16; the decoder names it BADSIG.
    assert_eq!(
        u16::from(reply.metadata.response_code),
        u16::from(ResponseCode::BADVERS)
    );
    assert_eq!(reply.edns.as_ref().map(Edns::version), Some(0));

    // A response (QR=1) sent to us is not answered at all.
    let mut response = question("web.svc.internal.", RecordType::A, false);
    response.metadata.message_type = hickory_proto::op::MessageType::Response;
    assert!(
        exchange_raw(
            server.dns,
            &response.to_vec().expect("encode"),
            Duration::from_millis(300)
        )
        .is_none()
    );
}

#[test]
fn the_payload_size_is_clamped_to_1232() {
    let server = TestServer::start(&[]);
    let mut msg = question("svc.internal.", RecordType::SOA, false);
    let mut edns = Edns::new();
    edns.set_max_payload(65_000);
    msg.set_edns(edns);
    let reply = query_udp(server.dns, &msg);
    assert_eq!(reply.edns.as_ref().map(Edns::max_payload), Some(1232));
    // Configurable; and a client offering less gets what it offered.
    let bigger = TestServer::start(&["--max-udp-payload", "4096"]);
    let reply = query_udp(bigger.dns, &msg);
    assert_eq!(reply.edns.as_ref().map(Edns::max_payload), Some(4096));
    let mut small = question("svc.internal.", RecordType::SOA, false);
    let mut edns = Edns::new();
    edns.set_max_payload(800);
    small.set_edns(edns);
    assert_eq!(
        query_udp(server.dns, &small)
            .edns
            .as_ref()
            .map(Edns::max_payload),
        Some(800)
    );
}
