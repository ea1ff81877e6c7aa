//! An instance's life as clients see it: registration, expiry on time,
//! drain, down, `beacon beat` stopping cleanly, the instance cap, and the
//! audit trail in the log.

mod common;

use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::{BEACON, TestServer, assert_status, rdatas, signal, wait_until};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

/// Runs `beacon beat --once` with `args` against `server`.
fn beat_once(server: &TestServer, args: &[&str]) {
    let status = Command::new(BEACON)
        .args(["beat", "--once"])
        .args(args)
        .args(["--server", &server.heartbeat.to_string()])
        .stderr(Stdio::null())
        .status()
        .expect("run beat");
    assert!(status.success(), "beat --once {args:?}: {status}");
}

fn has_answer(server: &TestServer, name: &str, rtype: RecordType) -> bool {
    !server.query(name, rtype).answers.is_empty()
}

#[test]
fn instance_expires_within_a_second_of_its_deadline() {
    let server = TestServer::start(&[]);
    let sent = Instant::now();
    server.beat("beacon/1 service=tmp instance=t1 port=80 addr=10.0.0.9 ttl=2");
    server.await_reply("tmp.svc.internal.", RecordType::A, |m| {
        !m.answers.is_empty()
    });
    // Still there shortly before the deadline...
    thread::sleep(Duration::from_millis(1500).saturating_sub(sent.elapsed()));
    assert!(
        has_answer(&server, "tmp.svc.internal.", RecordType::A),
        "gone before its lease ran out"
    );
    // ...and gone within 1 s after it.
    let gone = wait_until(Duration::from_secs(4), || {
        (!has_answer(&server, "t1.tmp.svc.internal.", RecordType::A)).then(Instant::now)
    })
    .expect("instance never expired");
    let after_send = gone.duration_since(sent);
    assert!(
        after_send >= Duration::from_millis(1900),
        "expired early: {after_send:?}"
    );
    assert!(
        after_send <= Duration::from_secs(3),
        "expired late: {after_send:?}"
    );
    let reply = server.query("tmp.svc.internal.", RecordType::A);
    assert_status(&reply, ResponseCode::NXDomain, true);
    server.wait_for_log("expired service=tmp instance=t1 addr=10.0.0.9");
}

#[test]
fn renewals_keep_an_instance_alive() {
    let server = TestServer::start(&[]);
    let beat = "beacon/1 service=kept instance=k port=80 addr=10.0.0.1 ttl=1";
    server.beat(beat);
    server.await_reply("kept.svc.internal.", RecordType::A, |m| {
        !m.answers.is_empty()
    });
    for _ in 0..8 {
        thread::sleep(Duration::from_millis(300));
        server.beat(beat);
        assert!(
            has_answer(&server, "kept.svc.internal.", RecordType::A),
            "expired despite renewals"
        );
    }
}

#[test]
fn draining_instances_leave_their_service_but_keep_their_name() {
    let server = TestServer::start(&[]);
    server.beat("beacon/1 service=web instance=a port=80 addr=10.0.0.1");
    server.beat("beacon/1 service=web instance=b port=80 addr=10.0.0.2");
    server.await_reply("web.svc.internal.", RecordType::A, |m| m.answers.len() == 2);
    server.beat("beacon/1 service=web instance=b port=80 addr=10.0.0.2 state=drain");
    let a = server.await_reply("web.svc.internal.", RecordType::A, |m| m.answers.len() == 1);
    assert_eq!(rdatas(&a.answers), ["10.0.0.1"]);
    let srv = server.query("_web._tcp.svc.internal.", RecordType::SRV);
    assert_eq!(srv.answers.len(), 1);
    assert_eq!(
        rdatas(&server.query("b.web.svc.internal.", RecordType::A).answers),
        ["10.0.0.2"]
    );
    server.wait_for_log("drained service=web instance=b addr=10.0.0.2");

    // Draining the last instance leaves the service name in place, empty.
    server.beat("beacon/1 service=web instance=a port=80 addr=10.0.0.1 state=drain");
    let empty = server.await_reply("web.svc.internal.", RecordType::A, |m| m.answers.is_empty());
    assert_status(&empty, ResponseCode::NoError, true);

    // Back up: back in the answers.
    server.beat("beacon/1 service=web instance=b port=80 addr=10.0.0.2 state=up");
    server.await_reply("web.svc.internal.", RecordType::A, |m| m.answers.len() == 1);
}

#[test]
fn down_removes_an_instance_at_once() {
    let server = TestServer::start(&[]);
    server.beat("beacon/1 service=web instance=a port=80 addr=10.0.0.1 ttl=600");
    server.await_reply("web.svc.internal.", RecordType::A, |m| {
        !m.answers.is_empty()
    });
    server.beat("beacon/1 service=web instance=a port=80 state=down");
    let reply = server.await_reply("web.svc.internal.", RecordType::A, |m| m.answers.is_empty());
    assert_status(&reply, ResponseCode::NXDomain, true);
    server.wait_for_log("deregistered service=web instance=a addr=10.0.0.1");
}

#[test]
fn source_address_is_used_when_the_heartbeat_has_none() {
    let server = TestServer::start(&[]);
    server.beat("beacon/1 service=web instance=a port=80");
    let reply = server.await_reply("a.web.svc.internal.", RecordType::A, |m| {
        !m.answers.is_empty()
    });
    assert_eq!(rdatas(&reply.answers), ["127.0.0.1"]);
}

#[test]
fn beat_registers_and_sends_down_on_sigterm() {
    let server = TestServer::start(&[]);
    let mut beat = common::spawn_quiet(
        Command::new(BEACON)
            .args([
                "beat",
                "--service",
                "pay",
                "--port",
                "9000",
                "--instance",
                "p1",
                "--addr",
                "10.9.0.1",
            ])
            .args([
                "--ttl",
                "300",
                "--interval",
                "0.2",
                "--server",
                &server.heartbeat.to_string(),
            ]),
    );
    server.await_reply("_pay._tcp.svc.internal.", RecordType::SRV, |m| {
        m.answers.len() == 1
    });
    signal(beat.id(), "TERM");
    let status = beat.wait().expect("wait for beat");
    assert!(status.success(), "beat exit status: {status}");
    // With a 300 s lease only the final "down" can remove it this fast.
    server.await_reply("pay.svc.internal.", RecordType::A, |m| m.answers.is_empty());
    server.wait_for_log("deregistered service=pay instance=p1");
}

#[test]
fn beat_once_sends_one_heartbeat_and_exits() {
    let server = TestServer::start(&[]);
    beat_once(
        &server,
        &[
            "--service",
            "cron",
            "--port",
            "1",
            "--instance",
            "c1",
            "--meta",
            "team=ops",
            "--weight",
            "3",
            "--priority",
            "2",
            "--proto",
            "udp",
        ],
    );
    let srv = server.await_reply("_cron._udp.svc.internal.", RecordType::SRV, |m| {
        !m.answers.is_empty()
    });
    assert_eq!(rdatas(&srv.answers), ["2 3 1 c1.cron.svc.internal."]);
    beat_once(
        &server,
        &[
            "--state",
            "down",
            "--service",
            "cron",
            "--port",
            "1",
            "--instance",
            "c1",
        ],
    );
    server.await_reply("_cron._udp.svc.internal.", RecordType::SRV, |m| {
        m.answers.is_empty()
    });
}

#[test]
fn the_cap_refuses_new_instances_and_says_why() {
    let server = TestServer::start(&["--max-instances", "2"]);
    for i in 1..=3 {
        server.beat(&format!(
            "beacon/1 service=web instance=w{i} port=80 addr=10.0.0.{i}"
        ));
    }
    server.wait_for_log("instance cap of 2 reached");
    let reply = server.query("web.svc.internal.", RecordType::A);
    assert_eq!(reply.answers.len(), 2);
    assert!(!has_answer(&server, "w3.web.svc.internal.", RecordType::A));
    // Known instances still renew and change.
    server.beat("beacon/1 service=web instance=w1 port=80 addr=10.0.0.11");
    server.await_reply("w1.web.svc.internal.", RecordType::A, |m| {
        rdatas(&m.answers) == ["10.0.0.11"]
    });
    // Room again once one leaves.
    server.beat("beacon/1 service=web instance=w2 port=80 state=down");
    server.beat("beacon/1 service=web instance=w3 port=80 addr=10.0.0.3");
    server.await_reply("w3.web.svc.internal.", RecordType::A, |m| {
        !m.answers.is_empty()
    });
}

#[test]
fn the_audit_trail_logs_every_change_at_info() {
    let server = TestServer::start(&[]);
    server.beat("beacon/1 service=web instance=a port=80 addr=10.0.0.1");
    server.wait_for_log("registered service=web instance=a addr=10.0.0.1");
    server.beat("beacon/1 service=web instance=a port=81 addr=10.0.0.1");
    server.wait_for_log("changed service=web instance=a addr=10.0.0.1");
    server.wait_for_log("reason=port");
    // Queries are not logged at INFO.
    for _ in 0..5 {
        server.query("web.svc.internal.", RecordType::A);
    }
    thread::sleep(Duration::from_millis(100));
    let log = server.log();
    assert!(
        !log.contains("web.svc.internal"),
        "per-query logging at INFO:\n{log}"
    );
}

#[test]
fn serve_stops_cleanly_on_sigterm() {
    let server = TestServer::start(&[]);
    let status = server.terminate();
    assert!(status.success(), "{status}");
}
