//! Supervision: a part of the server that dies takes the server down at
//! once (logged at ERROR with the panic message, exit status 70), so a
//! supervisor restarts it instead of it serving frozen data; a panic while
//! answering one query costs only that query.
//!
//! Faults are injected with `BEACON_TEST_FAULT=<point>`, which test
//! (debug) builds honour and release builds compile away: each point
//! panics when its part first does its work, so nothing here depends on
//! timing luck.

mod common;

use std::net::{TcpStream, UdpSocket};
use std::time::Duration;

use common::{TestServer, question, signal};
use hickory_proto::rr::RecordType;

/// Status of a server whose part died.
const EXIT_DIED: i32 = 70;

/// Starts a server whose `point` panics, triggers it, and checks that the
/// server logged the panic and `part` at ERROR and exited with 70 within
/// a second.
fn dies_when(point: &str, part: &str, trigger: impl FnOnce(&TestServer)) {
    let mut server = TestServer::start_with_env(&[], &[("BEACON_TEST_FAULT", point)]);
    trigger(&server);
    let (status, took) = server.wait_exit(Duration::from_secs(5)).unwrap_or_else(|| {
        panic!(
            "the server kept running after {point} died:\n{}",
            server.log()
        )
    });
    assert_eq!(status.code(), Some(EXIT_DIED), "{}", server.log());
    assert!(
        took <= Duration::from_secs(1),
        "exit took {took:?} after {point} died"
    );
    let log = server.log();
    let message = format!("injected fault at {point}");
    assert!(
        log.lines()
            .any(|l| l.contains("ERROR") && l.contains(&message) && l.contains(part)),
        "no ERROR line naming {part} and the panic:\n{log}"
    );
}

fn send_query(server: &TestServer) {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let bytes = question("web.svc.internal.", RecordType::A, true)
        .to_vec()
        .expect("encode");
    socket.send_to(&bytes, server.dns).expect("send");
}

#[test]
fn a_dead_intake_stops_the_server() {
    dies_when("intake", "heartbeat intake", |server| {
        server.beat("beacon/1 service=web instance=w1 port=80 addr=10.0.0.1");
    });
}

#[test]
fn a_dead_udp_worker_stops_the_server() {
    dies_when("udp-worker", "DNS UDP worker", send_query);
}

#[test]
fn a_dead_tcp_listener_stops_the_server() {
    dies_when("tcp-listener", "DNS TCP listener", |server| {
        let _connection = TcpStream::connect(server.dns).expect("connect");
    });
}

#[test]
fn a_dead_fragment_watcher_stops_the_server() {
    dies_when("watcher", "zone fragment watcher", |server| {
        signal(server.pid(), "HUP");
    });
}

#[test]
fn a_panic_answering_one_query_costs_only_that_query() {
    for point in ["answer", "general"] {
        let server = TestServer::start_with_env(&[], &[("BEACON_TEST_FAULT", point)]);
        server.beat("beacon/1 service=web instance=w1 port=80 addr=10.0.0.1");
        // "answer" fails on the fast path; ANY always takes the general path.
        let rtype = if point == "answer" {
            RecordType::A
        } else {
            RecordType::ANY
        };
        for _ in 0..3 {
            let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
            socket
                .set_read_timeout(Some(Duration::from_millis(300)))
                .expect("timeout");
            let bytes = question("web.svc.internal.", rtype, true)
                .to_vec()
                .expect("encode");
            socket.send_to(&bytes, server.dns).expect("send");
            let mut buffer = [0u8; 512];
            assert!(
                socket.recv(&mut buffer).is_err(),
                "{point}: a reply despite the panic"
            );
        }
        server.wait_for_log(&format!("injected fault at {point}"));
        // Still alive: heartbeats are taken, and the fault-free path answers.
        server.beat("beacon/1 service=web instance=w2 port=80 addr=10.0.0.2");
        server.wait_for_log("registered service=web instance=w2");
        let log = server.log();
        assert!(log.contains("ERROR"), "{log}");
        assert!(!log.contains("exiting so that a supervisor"), "{log}");
    }
}
