//! Protocol behaviour that resolvers and client libraries rely on:
//! truncation with TC and OPT, complete answers over TCP, pipelined TCP,
//! idle timeouts, RFC 8482 ANY.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{TestServer, have_tool, query_tcp, query_udp, question};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;

/// Registers `instances` instances of `big`.
fn big_service(server: &TestServer, instances: usize) {
    let datagrams: Vec<String> = (0..instances)
        .map(|i| {
            format!(
                "beacon/1 service=big instance=i{i} port=8080 addr=10.{}.{}.{}",
                i / 65536,
                (i / 256) % 256,
                i % 256
            )
        })
        .collect();
    server.beat_until_all("big.svc.internal.", &datagrams);
}

#[test]
fn answers_too_big_for_udp_set_tc_keep_opt_and_come_whole_over_tcp() {
    let server = TestServer::start(&["--max-instances", "1000"]);
    big_service(&server, 500);

    for rtype in [RecordType::A, RecordType::SRV] {
        let name = if rtype == RecordType::A {
            "big.svc.internal."
        } else {
            "_big._tcp.svc.internal."
        };
        // With EDNS: TC, no partial RRset, the OPT record still there.
        let udp = query_udp(server.dns, &question(name, rtype, true));
        assert!(udp.metadata.truncation, "{rtype}: TC expected");
        assert!(udp.answers.is_empty(), "{rtype}: no partial RRset");
        assert_eq!(
            udp.edns.as_ref().map(hickory_proto::op::Edns::max_payload),
            Some(1232),
            "{rtype}: OPT kept"
        );
        // Without EDNS: TC, and no OPT.
        let plain = query_udp(server.dns, &question(name, rtype, false));
        assert!(plain.metadata.truncation);
        assert!(plain.edns.is_none());
        // Over TCP: the whole RRset.
        let tcp = query_tcp(server.dns, &question(name, rtype, true));
        assert!(!tcp.metadata.truncation);
        assert_eq!(tcp.answers.len(), 500, "{rtype} over TCP");
        assert_eq!(tcp.metadata.response_code, ResponseCode::NoError);
    }
}

#[test]
fn dig_and_kdig_retry_over_tcp_and_get_everything() {
    if !(have_tool("dig") && have_tool("kdig")) {
        return;
    }
    let server = TestServer::start(&["--max-instances", "1000"]);
    big_service(&server, 500);
    let at = format!("@{}", server.dns.ip());
    let port = server.dns.port().to_string();
    for (tool, extra) in [
        ("dig", &[][..]),
        ("kdig", &[][..]),
        ("dig", &["+notcp"][..]),
    ] {
        for (name, rtype) in [("big.svc.internal", "A"), ("_big._tcp.svc.internal", "SRV")] {
            let out = Command::new(tool)
                .args([&at, "-p", &port, "+short", name, rtype])
                .args(extra)
                .output()
                .expect("run");
            assert!(out.status.success(), "{tool} {name}");
            let stdout = String::from_utf8_lossy(&out.stdout);
            let stderr = String::from_utf8_lossy(&out.stderr);
            // Data lines only; kdig notes the TCP retry in a `;;` line.
            let lines = stdout
                .lines()
                .filter(|l| !l.is_empty() && !l.starts_with(';'))
                .count();
            assert_eq!(lines, 500, "{tool} {name} {rtype}: {stdout}");
            for complaint in ["rror", "alformed", "nvalid", "failed"] {
                assert!(
                    !stderr.contains(complaint) && !stdout.contains(complaint),
                    "{tool}: {stderr}{stdout}"
                );
            }
        }
    }
    // The truncated UDP reply itself parses cleanly.
    let out = Command::new("dig")
        .args([
            &at,
            "-p",
            &port,
            "+ignore",
            "+notcp",
            "big.svc.internal",
            "A",
        ])
        .output()
        .expect("dig");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("flags: qr aa tc rd;"), "{text}");
    assert!(text.contains("ANSWER: 0"), "{text}");
    assert!(
        text.contains("; EDNS: version: 0, flags:; udp: 1232"),
        "{text}"
    );
    assert!(!text.contains("WARNING: Message has"), "{text}");
}

#[test]
fn additional_records_are_dropped_before_setting_tc() {
    let server = TestServer::start(&[]);
    let mut dropped_glue = false;
    for n in 1..=40usize {
        server.beat(&format!(
            "beacon/1 service=s instance=instance-{n:02} port=80 addr=10.0.0.{n}"
        ));
        let reply = server.await_reply("_s._tcp.svc.internal.", RecordType::SRV, |m| {
            m.metadata.truncation || m.answers.len() == n
        });
        let plain = query_udp(
            server.dns,
            &question("_s._tcp.svc.internal.", RecordType::SRV, false),
        );
        let _ = reply;
        if plain.metadata.truncation {
            assert!(plain.answers.is_empty(), "{n}: partial RRset with TC");
        } else {
            assert_eq!(plain.answers.len(), n, "{n}: the whole RRset");
            assert!(
                plain.additionals.is_empty() || plain.additionals.len() == n,
                "{n}: glue is all or nothing"
            );
            dropped_glue |= plain.additionals.is_empty();
        }
    }
    assert!(
        dropped_glue,
        "some size must fit the SRV set but not its glue in 512 bytes"
    );
}

#[test]
fn tcp_answers_many_pipelined_queries_on_one_connection() {
    let server = TestServer::start(&[]);
    server.beat("beacon/1 service=web instance=a port=80 addr=10.0.0.1");
    server.await_reply("web.svc.internal.", RecordType::A, |m| {
        !m.answers.is_empty()
    });
    let mut stream = TcpStream::connect(server.dns).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut ids = Vec::new();
    let mut bytes = Vec::new();
    for _ in 0..50 {
        let q = question("web.svc.internal.", RecordType::A, true);
        ids.push(q.metadata.id);
        let wire = q.to_vec().expect("encode");
        bytes.extend_from_slice(&u16::try_from(wire.len()).expect("len").to_be_bytes());
        bytes.extend_from_slice(&wire);
    }
    // All 50 in one write: pipelined, not one at a time.
    stream.write_all(&bytes).expect("write");
    let mut seen = Vec::new();
    for _ in 0..50 {
        let mut len = [0u8; 2];
        stream.read_exact(&mut len).expect("length");
        let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
        stream.read_exact(&mut reply).expect("reply");
        let reply = Message::from_vec(&reply).expect("decode");
        assert_eq!(reply.answers.len(), 1);
        seen.push(reply.metadata.id);
    }
    seen.sort_unstable();
    ids.sort_unstable();
    assert_eq!(seen, ids);
}

#[test]
fn idle_tcp_connections_are_closed() {
    let server = TestServer::start(&["--tcp-idle", "1"]);
    let mut stream = TcpStream::connect(server.dns).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let started = Instant::now();
    let mut buf = [0u8; 2];
    let read = stream.read(&mut buf).expect("read");
    assert_eq!(read, 0, "the server closes an idle connection");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(4),
        "{waited:?}"
    );
}

#[test]
fn a_client_that_stops_reading_is_disconnected() {
    let server = TestServer::start(&["--tcp-idle", "1"]);
    let mut stream = TcpStream::connect(server.dns).expect("connect");
    // Far more replies than the socket buffers hold, none of them read.
    let query = question("svc.internal.", RecordType::SOA, false)
        .to_vec()
        .expect("encode");
    let len = u16::try_from(query.len()).expect("short").to_be_bytes();
    let reply_len = query_tcp(
        server.dns,
        &question("svc.internal.", RecordType::SOA, false),
    )
    .to_vec()
    .expect("encode")
    .len();
    let queries = 300_000;
    let mut burst = Vec::new();
    for _ in 0..queries {
        burst.extend_from_slice(&len);
        burst.extend_from_slice(&query);
    }
    stream
        .set_write_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    // Count what reaches the kernel: the replies owed are for those queries.
    let mut written = 0;
    while written < burst.len() {
        match stream.write(&burst[written..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => written += n,
        }
    }
    std::thread::sleep(Duration::from_secs(3));
    // Reading now drains what was sent before the server gave up, then
    // ends: the connection was closed, not kept waiting for us.
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut received = 0usize;
    let mut buf = vec![0u8; 65_536];
    let closed = loop {
        match stream.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => received += n,
            // Closing with our queries unread makes the kernel reset.
            Err(e) => break e.kind() == std::io::ErrorKind::ConnectionReset,
        }
    };
    assert!(closed, "the server kept the stalled connection open");
    let owed = written / (query.len() + 2) * (reply_len + 2);
    assert!(
        received < owed,
        "got every reply owed ({received} of {owed} bytes): the server waited for the stalled client"
    );
    // And the server still serves others.
    let reply = query_tcp(
        server.dns,
        &question("svc.internal.", RecordType::SOA, false),
    );
    assert_eq!(reply.answers.len(), 1);
}

#[test]
fn any_gets_one_rrset_as_rfc_8482_allows() {
    let server = TestServer::start(&[]);
    server.beat("beacon/1 service=web instance=a port=80 addr=10.0.0.1");
    server.beat("beacon/1 service=web instance=b port=80 addr=2001:db8::2");
    server.await_reply("web.svc.internal.", RecordType::AAAA, |m| {
        !m.answers.is_empty()
    });
    let reply = server.query("web.svc.internal.", RecordType::ANY);
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert!(reply.metadata.authoritative);
    assert_eq!(reply.answers.len(), 1, "{:?}", reply.answers);
    let nx = server.query("nope.svc.internal.", RecordType::ANY);
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
}
