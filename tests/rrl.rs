//! Response rate limiting: a flood from one network is limited (most
//! replies dropped, every second one slipped as an empty truncated reply)
//! while a client in another network is answered in full at the same time,
//! and the limited client still gets its answer over TCP.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::{TestServer, question, rdatas};
use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;

/// What a client bound to `local` got for `count` queries sent every
/// `every`: (full answers, truncated slips).
fn client(local: [u8; 4], server: SocketAddr, count: usize, every: Duration) -> (usize, usize) {
    let socket = UdpSocket::bind(SocketAddr::from((local, 0))).expect("bind a loopback address");
    socket.set_nonblocking(true).expect("non-blocking");
    let query = question("web.svc.internal.", RecordType::A, true)
        .to_vec()
        .expect("encode");
    let (mut full, mut slipped) = (0, 0);
    let mut buffer = [0u8; 2048];
    let mut take = |socket: &UdpSocket| {
        while let Ok(len) = socket.recv(&mut buffer) {
            let reply = Message::from_vec(&buffer[..len]).expect("well formed");
            if reply.metadata.truncation {
                assert!(reply.answers.is_empty(), "a slip carries no records");
                assert!(reply.edns.is_some(), "a slip keeps the OPT record");
                slipped += 1;
            } else {
                assert_eq!(rdatas(&reply.answers), ["10.0.0.1"], "{reply:?}");
                full += 1;
            }
        }
    };
    for _ in 0..count {
        socket.send_to(&query, server).expect("send");
        take(&socket);
        if !every.is_zero() {
            std::thread::sleep(every);
        }
    }
    let deadline = Instant::now() + Duration::from_millis(300);
    while Instant::now() < deadline {
        take(&socket);
        std::thread::sleep(Duration::from_millis(5));
    }
    (full, slipped)
}

#[test]
fn a_flood_is_limited_while_another_network_is_answered() {
    let server = TestServer::start(&["--rrl", "20", "--rrl-slip", "2"]);
    server.beat("beacon/1 service=web instance=w1 port=80 addr=10.0.0.1 ttl=300");
    server.await_reply("web.svc.internal.", RecordType::A, |m| {
        !m.answers.is_empty()
    });
    let dns = server.dns;
    let flood = std::thread::spawn(move || client([127, 0, 0, 2], dns, 2000, Duration::ZERO));
    // Meanwhile, 15 queries in about a second from another /24: under 20 a
    // second, so every one is answered.
    let calm = client([127, 0, 5, 3], dns, 15, Duration::from_millis(60));
    let (full, slipped) = flood.join().expect("flood");
    assert_eq!(calm, (15, 0), "the client in another network");
    // 20 at once plus 20 a second while the flood lasts.
    assert!(full <= 80, "{full} full answers to the flood");
    assert!(
        slipped >= 500,
        "{slipped} slips (every second limited reply)"
    );
    server.wait_for_log("rate-limited UDP responses (--rrl)");
    // The limited client asks again over TCP, which is never limited.
    for _ in 0..5 {
        let tcp = tcp_from([127, 0, 0, 2], dns);
        assert_eq!(rdatas(&tcp.answers), ["10.0.0.1"]);
    }
}

/// Asks `web.svc.internal.` A over TCP from the local address `local`.
fn tcp_from(local: [u8; 4], server: SocketAddr) -> Message {
    use std::io::{Read, Write};
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket
        .bind(&SocketAddr::from((local, 0)).into())
        .expect("bind");
    socket.connect(&server.into()).expect("connect");
    let mut stream: std::net::TcpStream = socket.into();
    let query = question("web.svc.internal.", RecordType::A, true)
        .to_vec()
        .expect("encode");
    stream
        .write_all(&u16::try_from(query.len()).expect("short").to_be_bytes())
        .expect("write");
    stream.write_all(&query).expect("write");
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).expect("read");
    let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut reply).expect("read");
    Message::from_vec(&reply).expect("decode")
}
