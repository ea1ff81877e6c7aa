//! Large answers, at the sizes people run: a service of 5,000 and one of
//! 50,000 instances, and 100,000 services. Every reply must be a
//! well-formed message (no trailing bytes, whole records, the OPT when the
//! query had one): over UDP, TC with no records when the answer does not
//! fit; over TCP, as many records as fit in 65,535 bytes, in rotation
//! order, never TC. `--max-answers` gives a rotated window that fits UDP.
//! Checked on the raw bytes, by dnspython and by kdig.

mod common;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::Command;
use std::time::Duration;

use common::{TestServer, exchange_raw, question, wait_until};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;

/// Largest DNS message over TCP.
const MAX_TCP: usize = 65_535;

/// Sends `count` heartbeats made by `datagram` (with leases long enough
/// that nothing expires during a test), a thousand at a time,
/// re-sending a thousand (as real senders do every interval) until its
/// first, middle and last instance answer by their own names. (The test
/// build is unoptimised: one burst of 50,000 would overflow the socket.)
fn register(
    server: &TestServer,
    count: usize,
    datagram: impl Fn(usize) -> String,
    name: impl Fn(usize) -> String,
) {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    for chunk in (0..count).collect::<Vec<_>>().chunks(1000) {
        let probes = [chunk[0], chunk[chunk.len() / 2], chunk[chunk.len() - 1]];
        let mut registered = false;
        for _round in 0..10 {
            for &i in chunk {
                socket
                    .send_to(datagram(i).as_bytes(), server.heartbeat)
                    .expect("send");
            }
            registered = wait_until(Duration::from_secs(3), || {
                probes
                    .iter()
                    .all(|&i| !server.query(&name(i), RecordType::A).answers.is_empty())
                    .then_some(())
            })
            .is_some();
            if registered {
                break;
            }
        }
        assert!(registered, "instances {}.. never registered", chunk[0]);
    }
}

/// The raw reply to `query` over TCP.
fn tcp_raw(server: SocketAddr, query: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(server).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let len = u16::try_from(query.len()).expect("short").to_be_bytes();
    stream.write_all(&len).expect("write");
    stream.write_all(query).expect("write");
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).expect("read length");
    let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut reply).expect("read reply");
    reply
}

/// Decodes a reply and checks what every reply must be: our ID, no
/// trailing bytes (hickory re-encodes to the same length at most), and
/// the OPT record, since every query here has one.
fn well_formed(reply: &[u8], query: &Message) -> Message {
    let message = Message::from_vec(reply).expect("the reply decodes");
    assert_eq!(message.metadata.id, query.metadata.id);
    assert!(message.edns.is_some(), "the OPT record is missing");
    let records = message.answers.len() + message.authorities.len() + message.additionals.len();
    let reencoded = message.to_vec().expect("re-encodes");
    assert!(
        reencoded.len() <= reply.len() + 2 * records,
        "trailing bytes: {} bytes on the wire for {} encoded",
        reply.len(),
        reencoded.len()
    );
    message
}

/// What one query gets over UDP and over TCP, checked as the README
/// promises; returns the TCP answers' record data.
fn udp_truncates_and_tcp_fills(
    server: &TestServer,
    name: &str,
    rtype: RecordType,
    record_room: usize,
) -> Vec<String> {
    let query = question(name, rtype, true);
    let bytes = query.to_vec().expect("encode");
    let udp = exchange_raw(server.dns, &bytes, Duration::from_secs(5)).expect("UDP reply");
    assert!(udp.len() <= 1232, "UDP reply of {} bytes", udp.len());
    let udp = well_formed(&udp, &query);
    assert!(udp.metadata.truncation, "{name} {rtype} over UDP fits?");
    assert!(
        udp.answers.is_empty() && udp.additionals.is_empty(),
        "TC replies carry no records"
    );

    let raw = tcp_raw(server.dns, &bytes);
    assert!(raw.len() <= MAX_TCP);
    let tcp = well_formed(&raw, &query);
    assert!(!tcp.metadata.truncation, "TC over TCP");
    assert_eq!(tcp.metadata.response_code, ResponseCode::NoError);
    assert!(tcp.answers.iter().all(|r| r.record_type() == rtype));
    // As many as fit: the room left is smaller than one more record.
    assert!(
        raw.len() + record_room > MAX_TCP,
        "{} answers in {} bytes: another would have fit",
        tcp.answers.len(),
        raw.len()
    );
    tcp.answers.iter().map(|r| r.data.to_string()).collect()
}

/// Successive TCP answers start at different places: the window rotates.
fn tcp_windows_rotate(server: &TestServer, name: &str, rtype: RecordType) {
    let query = question(name, rtype, true);
    let bytes = query.to_vec().expect("encode");
    let mut firsts = HashSet::new();
    let mut seen = HashSet::new();
    for _ in 0..4 {
        let reply = well_formed(&tcp_raw(server.dns, &bytes), &query);
        firsts.insert(reply.answers[0].data.to_string());
        seen.extend(reply.answers.iter().map(|r| r.data.to_string()));
    }
    assert_eq!(firsts.len(), 4, "the first record should move on");
    assert!(seen.len() > 1000, "the window covers more of the set");
}

/// Queries with dnspython (strict: trailing bytes are an error) and
/// returns, per line of `queries` ("name type udp|tcp"), "answers tc".
fn dnspython(server: SocketAddr, queries: &[&str]) -> Vec<String> {
    let Some(python) = common::python_with("dns.query") else {
        return Vec::new();
    };
    let script = r#"
import sys, dns.message, dns.query, dns.flags
host, port = sys.argv[1], int(sys.argv[2])
for line in sys.argv[3:]:
    name, rtype, transport = line.split()
    q = dns.message.make_query(name, rtype, use_edns=0, payload=1232)
    if transport == "tcp":
        r = dns.query.tcp(q, host, port=port, timeout=20)
    else:
        r = dns.query.udp(q, host, port=port, timeout=5, ignore_trailing=False)
    assert r.edns == 0, "no OPT"
    print(sum(len(s) for s in r.answer), int(bool(r.flags & dns.flags.TC)))
"#;
    let out = Command::new(python)
        .args([
            "-c",
            script,
            &server.ip().to_string(),
            &server.port().to_string(),
        ])
        .args(queries)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "dnspython: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// What kdig saw: the answer count, and whether TC was set.
#[derive(Debug, PartialEq, Eq)]
struct Kdig {
    answers: usize,
    truncated: bool,
}

/// Asks with kdig (with EDNS) and fails on any warning or error it prints
/// (it reports malformed replies, and a missing OPT record); `None` when
/// kdig is not installed outside CI.
fn kdig(server: SocketAddr, args: &[&str]) -> Option<Kdig> {
    if !common::have_tool("kdig") {
        return None;
    }
    let out = Command::new("kdig")
        .arg(format!("@{}", server.ip()))
        .args([
            "-p",
            &server.port().to_string(),
            "+timeout=20",
            "+retry=0",
            "+edns",
        ])
        .args(args)
        .output()
        .expect("run kdig");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "kdig {args:?}: {text}");
    assert!(
        !text.contains(";; WARNING") && !text.contains(";; ERROR"),
        "kdig {args:?}: {text}"
    );
    assert!(text.contains(";; EDNS PSEUDOSECTION:"), "no OPT: {text}");
    let flags = text
        .lines()
        .find(|l| l.starts_with(";; Flags:"))
        .unwrap_or_else(|| panic!("kdig {args:?}: {text}"));
    let answers = flags
        .split("ANSWER:")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no answer count in {flags:?}"));
    Some(Kdig {
        answers,
        truncated: flags.contains(" tc "),
    })
}

/// kdig's view over TCP and over UDP (without retrying over TCP).
fn kdig_both(server: SocketAddr, name: &str, rtype: &str) -> Option<(Kdig, Kdig)> {
    let tcp = kdig(server, &["+tcp", name, rtype])?;
    let udp = kdig(server, &["+notcp", "+ignore", name, rtype])?;
    Some((tcp, udp))
}

/// What a UDP reply that does not fit looks like to kdig.
const KDIG_TRUNCATED: Kdig = Kdig {
    answers: 0,
    truncated: true,
};

/// What a TCP reply of `answers` records looks like to kdig.
fn kdig_whole(answers: usize) -> Kdig {
    Kdig {
        answers,
        truncated: false,
    }
}

/// A distinct address in 10.0.0.0/8 for each `i`.
fn address(i: usize) -> String {
    format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256)
}

fn big_service(count: usize, extra: &[&str]) -> TestServer {
    let cap = (count + 10).to_string();
    let caps = ["--max-instances", &cap, "--max-instances-per-service", &cap];
    let server = TestServer::start(&[&caps[..], extra].concat());
    register(
        &server,
        count,
        |i| {
            format!(
                "beacon/1 service=big instance=i{i:05} port=80 ttl=3600 addr={}",
                address(i)
            )
        },
        |i| format!("i{i:05}.big.svc.internal."),
    );
    server
}

/// A: 16 bytes each; SRV to `i01234.big.svc.internal.`: 43 (instance ids
/// of one length, so every record of a set has the same size and the
/// count that fits does not depend on where the rotation starts).
const A_ROOM: usize = 16;
const SRV_ROOM: usize = 43;

#[test]
fn five_thousand_instances() {
    let server = big_service(5000, &[]);
    let a = udp_truncates_and_tcp_fills(&server, "big.svc.internal.", RecordType::A, A_ROOM);
    assert!(a.len() > 4000 && a.len() < 5000, "{} A records", a.len());
    let srv = udp_truncates_and_tcp_fills(
        &server,
        "_big._tcp.svc.internal.",
        RecordType::SRV,
        SRV_ROOM,
    );
    assert!(srv.len() > 1400, "{} SRV records", srv.len());
    tcp_windows_rotate(&server, "_big._tcp.svc.internal.", RecordType::SRV);

    let python = dnspython(
        server.dns,
        &[
            "big.svc.internal A udp",
            "big.svc.internal A tcp",
            "_big._tcp.svc.internal SRV udp",
            "_big._tcp.svc.internal SRV tcp",
        ],
    );
    if !python.is_empty() {
        assert_eq!(python[0], "0 1");
        assert_eq!(python[1], format!("{} 0", a.len()));
        assert_eq!(python[2], "0 1");
        assert_eq!(python[3], format!("{} 0", srv.len()));
    }
    if let Some((tcp, udp)) = kdig_both(server.dns, "big.svc.internal", "A") {
        assert_eq!(tcp, kdig_whole(a.len()));
        assert_eq!(udp, KDIG_TRUNCATED);
    }
    if let Some((tcp, udp)) = kdig_both(server.dns, "_big._tcp.svc.internal", "SRV") {
        assert_eq!(tcp, kdig_whole(srv.len()));
        assert_eq!(udp, KDIG_TRUNCATED);
    }
}

#[test]
fn fifty_thousand_instances() {
    let server = big_service(50_000, &[]);
    let a = udp_truncates_and_tcp_fills(&server, "big.svc.internal.", RecordType::A, A_ROOM);
    assert!(a.len() > 4000, "{} A records", a.len());
    let srv = udp_truncates_and_tcp_fills(
        &server,
        "_big._tcp.svc.internal.",
        RecordType::SRV,
        SRV_ROOM,
    );
    tcp_windows_rotate(&server, "big.svc.internal.", RecordType::A);
    let python = dnspython(
        server.dns,
        &["big.svc.internal A udp", "_big._tcp.svc.internal SRV tcp"],
    );
    if !python.is_empty() {
        assert_eq!(python[0], "0 1");
        assert!(python[1].ends_with(" 0"), "{python:?}");
    }
    if let Some((tcp, udp)) = kdig_both(server.dns, "_big._tcp.svc.internal", "SRV") {
        assert_eq!(tcp, kdig_whole(srv.len()));
        assert_eq!(udp, KDIG_TRUNCATED);
    }
}

/// The general path (every query, with the fast path off) keeps the same
/// promises. It compresses only the first 120 names of a message (as
/// hickory-proto does, against CPU exhaustion), so an A record takes up
/// to 34 bytes there.
#[test]
fn five_thousand_instances_on_the_general_path() {
    let server = big_service(5000, &["--fast-path", "off"]);
    let a = udp_truncates_and_tcp_fills(&server, "big.svc.internal.", RecordType::A, 34);
    assert!(a.len() > 1800 && a.len() < 5000, "{} A records", a.len());
    let srv = udp_truncates_and_tcp_fills(
        &server,
        "_big._tcp.svc.internal.",
        RecordType::SRV,
        // The owner is uncompressed past the 120th name: 22 bytes more.
        SRV_ROOM + 22,
    );
    assert!(srv.len() > 1000, "{} SRV records", srv.len());
    tcp_windows_rotate(&server, "big.svc.internal.", RecordType::A);
    if let Some((tcp, udp)) = kdig_both(server.dns, "_big._tcp.svc.internal", "SRV") {
        assert_eq!(tcp, kdig_whole(srv.len()));
        assert_eq!(udp, KDIG_TRUNCATED);
    }
}

#[test]
fn max_answers_gives_a_rotating_window_that_fits_udp() {
    // Twelve SRV records with their targets' addresses fit in 1,232 bytes.
    let server = TestServer::start(&["--max-answers", "12"]);
    register(
        &server,
        300,
        |i| {
            format!(
                "beacon/1 service=web instance=w{i} port=80 ttl=3600 addr=10.0.{}.{}",
                i / 256,
                i % 256
            )
        },
        |i| format!("w{i}.web.svc.internal."),
    );
    let mut seen = HashSet::new();
    // Each answer starts one instance further on, so over 300 answers
    // every instance comes first once, and every one is listed.
    for _ in 0..300 {
        let reply = server.query("_web._tcp.svc.internal.", RecordType::SRV);
        assert!(!reply.metadata.truncation);
        assert_eq!(reply.answers.len(), 12);
        // Each SRV's target address comes along.
        assert_eq!(
            reply
                .additionals
                .iter()
                .filter(|r| r.record_type() == RecordType::A)
                .count(),
            12
        );
        seen.extend(reply.answers.iter().map(|r| r.data.to_string()));
        let a = server.query("web.svc.internal.", RecordType::A);
        assert_eq!(a.answers.len(), 12);
    }
    assert_eq!(seen.len(), 300);
    // Over TCP the same cap applies.
    assert_eq!(
        server
            .query_tcp("web.svc.internal.", RecordType::A)
            .answers
            .len(),
        12
    );
}

#[test]
fn a_hundred_thousand_services() {
    let server = TestServer::start(&["--max-instances", "100010"]);
    register(
        &server,
        100_000,
        |i| {
            format!(
                "beacon/1 service=s{i} instance=a port=80 ttl=3600 addr={}",
                address(i)
            )
        },
        |i| format!("s{i}.svc.internal."),
    );
    // `_s12345._tcp.svc.internal.` compressed against the question: at
    // most 27 bytes a record.
    let types = udp_truncates_and_tcp_fills(
        &server,
        "_services._dns-sd._udp.svc.internal.",
        RecordType::PTR,
        27,
    );
    assert!(types.len() > 2000, "{} service types", types.len());
    let python = dnspython(
        server.dns,
        &[
            "_services._dns-sd._udp.svc.internal PTR udp",
            "_services._dns-sd._udp.svc.internal PTR tcp",
        ],
    );
    if !python.is_empty() {
        assert_eq!(python, ["0 1".to_string(), format!("{} 0", types.len())]);
    }
    if let Some((tcp, udp)) = kdig_both(server.dns, "_services._dns-sd._udp.svc.internal", "PTR") {
        assert_eq!(tcp, kdig_whole(types.len()));
        assert_eq!(udp, KDIG_TRUNCATED);
    }
}
