//! Every bound on what the network can make the server hold, through the
//! real binary: TCP connections (in all, per address, slow clients,
//! clients that never read), forwards waiting for a silent upstream, the
//! general path's queue, instances per service and static records.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use common::{TestServer, query_tcp, question, rdatas, wait_until};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;

/// A TCP connection from `local` (a loopback address of ours) to `server`.
fn connect_from(local: [u8; 4], server: SocketAddr) -> TcpStream {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket
        .bind(&SocketAddr::from((local, 0)).into())
        .expect("bind a loopback address");
    socket.connect(&server.into()).expect("connect");
    let stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    stream
}

/// True when the server closed `stream` (reading gives end of file or a
/// reset) within a few seconds.
fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(stream.read(&mut byte), Ok(0) | Err(_))
}

/// Asks `name` A over `stream` and returns the reply.
fn ask(stream: &mut TcpStream, name: &str) -> Option<Message> {
    let query = question(name, RecordType::A, true)
        .to_vec()
        .expect("encode");
    let len = u16::try_from(query.len()).expect("short").to_be_bytes();
    stream.write_all(&len).ok()?;
    stream.write_all(&query).ok()?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).ok()?;
    let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut reply).ok()?;
    Message::from_vec(&reply).ok()
}

fn web_server(extra: &[&str]) -> TestServer {
    let server = TestServer::start(extra);
    server.beat("beacon/1 service=web instance=w1 port=80 addr=10.0.0.1 ttl=300");
    server.await_reply("web.svc.internal.", RecordType::A, |m| {
        !m.answers.is_empty()
    });
    server
}

#[test]
fn tcp_connections_are_capped_in_all_and_per_address() {
    let server = web_server(&[
        "--tcp-connections",
        "5",
        "--tcp-per-client",
        "3",
        "--tcp-message-timeout",
        "30",
    ]);
    let mut held: Vec<TcpStream> = (0..3)
        .map(|_| connect_from([127, 0, 0, 1], server.dns))
        .collect();
    // A fourth from the same address is closed at once...
    let mut fourth = connect_from([127, 0, 0, 1], server.dns);
    assert!(
        closed_by_server(&mut fourth),
        "a fourth connection from one address"
    );
    // ...while other addresses are served, up to the total.
    let mut other = connect_from([127, 0, 0, 2], server.dns);
    assert_eq!(
        rdatas(
            &ask(&mut other, "web.svc.internal.")
                .expect("answer")
                .answers
        ),
        ["10.0.0.1"]
    );
    held.push(other);
    held.push(connect_from([127, 0, 0, 3], server.dns));
    let mut sixth = connect_from([127, 0, 0, 4], server.dns);
    assert!(closed_by_server(&mut sixth), "a sixth connection in all");
    // One leaves: its address may connect again.
    held.remove(0);
    let again = wait_until(Duration::from_secs(5), || {
        let mut stream = connect_from([127, 0, 0, 1], server.dns);
        ask(&mut stream, "web.svc.internal.").map(|_| ())
    });
    assert!(
        again.is_some(),
        "a place freed by a closed connection is reused"
    );
    server.wait_for_log("closed a DNS TCP connection over --tcp-connections or --tcp-per-client");
}

/// Slowloris: hundreds of connections from one address trickle a byte at
/// a time. They are closed within the message timeout, they cannot take
/// more than their address's share, and a client elsewhere is answered
/// throughout.
#[test]
fn slow_clients_are_closed_and_others_still_answered() {
    let server = web_server(&["--tcp-message-timeout", "1"]);
    let dns = server.dns;
    let attack = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(4);
        let mut trickling: Vec<TcpStream> = Vec::new();
        let mut lifetimes = Vec::new();
        while Instant::now() < deadline {
            while trickling.len() < 300 {
                trickling.push(connect_from([127, 0, 0, 2], dns));
            }
            let started = Instant::now();
            // One byte each, then see who is still open.
            trickling.retain_mut(|stream| {
                stream
                    .set_read_timeout(Some(Duration::from_millis(1)))
                    .expect("timeout");
                let alive = stream.write_all(&[0]).is_ok()
                    && matches!(stream.read(&mut [0u8; 1]), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
                if !alive {
                    lifetimes.push(started.elapsed());
                }
                alive
            });
            std::thread::sleep(Duration::from_millis(300));
        }
        trickling.len()
    });
    let started = Instant::now();
    let mut answered = 0;
    while started.elapsed() < Duration::from_secs(4) {
        let reply = query_tcp(dns, &question("web.svc.internal.", RecordType::A, true));
        assert_eq!(rdatas(&reply.answers), ["10.0.0.1"]);
        answered += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    let still_open = attack.join().expect("attacker");
    assert!(answered > 40, "only {answered} answers during the attack");
    // Of the 300 attempts at a time, at most the per-address share lives.
    assert!(still_open <= 32, "{still_open} slow connections still open");
}

/// Clients that pipeline queries for a large answer and never read their
/// replies hold a bounded buffer each, then are closed.
#[test]
fn clients_that_never_read_hold_a_bounded_buffer() {
    let server = TestServer::start(&["--tcp-idle", "2", "--tcp-buffer", "64"]);
    let beats: Vec<String> = (0..2000)
        .map(|i| {
            format!(
                "beacon/1 service=big instance=i{i:04} port=80 ttl=300 addr=10.0.{}.{}",
                i / 256,
                i % 256
            )
        })
        .collect();
    server.beat_until_all("big.svc.internal.", &beats);
    let rss = || common::rss_kib(server.pid());
    let before = rss();
    let query = question("_big._tcp.svc.internal.", RecordType::SRV, true)
        .to_vec()
        .expect("encode");
    let mut framed = u16::try_from(query.len())
        .expect("short")
        .to_be_bytes()
        .to_vec();
    framed.extend_from_slice(&query);
    let pipeline: Vec<u8> = framed.repeat(200);
    // 30 clients × 200 queries × ~80 KiB of replies: 480 MB if buffered.
    let mut clients: Vec<TcpStream> = (0..30)
        .map(|i| {
            let mut stream = connect_from([127, 0, 1, i], server.dns);
            stream.write_all(&pipeline).expect("pipeline");
            stream
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    let during = rss();
    assert!(
        during < before + 64 * 1024,
        "RSS grew from {before} KiB to {during} KiB"
    );
    // After the idle time without reading, each is closed: reading now
    // drains what the kernel holds, then ends.
    std::thread::sleep(Duration::from_secs(3));
    for stream in &mut clients {
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        let mut sink = vec![0u8; 1 << 20];
        let closed = wait_until(Duration::from_secs(5), || match stream.read(&mut sink) {
            Ok(0) => Some(()),
            Err(e) if e.kind() != std::io::ErrorKind::WouldBlock => Some(()),
            _ => None,
        });
        assert!(
            closed.is_some(),
            "a client that never read is still connected"
        );
    }
}

/// A UDP socket that takes queries and never answers: a dead upstream.
fn silent_upstream() -> (UdpSocket, SocketAddr) {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = socket.local_addr().expect("addr");
    (socket, addr)
}

fn recursive(name: &str) -> Vec<u8> {
    let mut q = question(name, RecordType::A, true);
    q.metadata.recursion_desired = true;
    q.to_vec().expect("encode")
}

/// Sends `count` recursive queries over UDP from one socket and collects
/// the replies' rcodes for `listen`.
fn udp_burst(server: SocketAddr, count: usize, listen: Duration) -> Vec<ResponseCode> {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    for i in 0..count {
        socket
            .send_to(&recursive(&format!("q{i}.example.org.")), server)
            .expect("send");
    }
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let deadline = Instant::now() + listen;
    let mut rcodes = Vec::new();
    let mut buffer = [0u8; 4096];
    while Instant::now() < deadline {
        if let Ok(len) = socket.recv(&mut buffer)
            && let Ok(reply) = Message::from_vec(&buffer[..len])
        {
            rcodes.push(reply.metadata.response_code);
        }
    }
    rcodes
}

#[test]
fn forwards_waiting_for_a_silent_upstream_are_capped() {
    let (_upstream, addr) = silent_upstream();
    let server = TestServer::start(&["--forward", &addr.to_string(), "--forward-concurrency", "2"]);
    // Ten at once: eight SERVFAIL at once; two wait out the upstream timeout.
    let rcodes = udp_burst(server.dns, 10, Duration::from_millis(800));
    assert_eq!(rcodes.len(), 8, "{rcodes:?}");
    assert!(rcodes.iter().all(|r| *r == ResponseCode::ServFail));
    server.wait_for_log("--forward-concurrency");
}

#[test]
fn the_general_paths_queue_is_bounded() {
    let (_upstream, addr) = silent_upstream();
    let server = TestServer::start(&[
        "--forward",
        &addr.to_string(),
        "--general-queue",
        "3",
        "--forward-concurrency",
        "100",
    ]);
    // Three queue and get SERVFAIL once the upstream times out (2 s); the
    // other seven are dropped.
    let rcodes = udp_burst(server.dns, 10, Duration::from_millis(3500));
    assert_eq!(rcodes, [ResponseCode::ServFail; 3]);
    server.wait_for_log("--general-queue");
}

#[test]
fn one_service_cannot_take_every_place() {
    let server = TestServer::start(&["--max-instances-per-service", "2"]);
    for i in 1..=3 {
        server.beat(&format!(
            "beacon/1 service=web instance=w{i} port=80 addr=10.0.0.{i}"
        ));
    }
    server.beat("beacon/1 service=api instance=a1 port=80 addr=10.0.1.1");
    server.await_reply("api.svc.internal.", RecordType::A, |m| {
        !m.answers.is_empty()
    });
    server.wait_for_log("--max-instances-per-service");
    let web = server.query("web.svc.internal.", RecordType::A);
    assert_eq!(web.answers.len(), 2);
}

#[test]
fn static_records_are_capped_in_all() {
    let zones = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        zones.path().join("a.zone"),
        "a1 A 10.0.0.1\na2 A 10.0.0.2\na3 A 10.0.0.3\n",
    )
    .expect("write");
    std::fs::write(
        zones.path().join("b.zone"),
        "b1 A 10.0.1.1\nb2 A 10.0.1.2\n",
    )
    .expect("write");
    let dir = zones.path().display().to_string();
    let server = TestServer::start(&["--zones", &dir, "--max-static-records", "4"]);
    server.wait_for_log("over the limit of 4 (--max-static-records)");
    // a.zone loaded first (path order); b.zone would have made it 5.
    assert_eq!(
        rdatas(&server.query("a1.svc.internal.", RecordType::A).answers),
        ["10.0.0.1"]
    );
    assert!(
        server
            .query("b1.svc.internal.", RecordType::A)
            .answers
            .is_empty()
    );
}
