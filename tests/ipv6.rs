//! IPv6 transport: DNS over UDP and TCP and heartbeats on `[::1]`, as on
//! 127.0.0.1. An instance that beats from an IPv6 address without `addr=`
//! is served at that address (AAAA).

mod common;

use std::process::{Command, Stdio};

use common::{BEACON, TestServer, assert_status, rdatas};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

fn server_on_v6() -> TestServer {
    let server = TestServer::start(&["--dns", "[::1]:0", "--heartbeat", "[::1]:0"]);
    assert!(
        server.dns.is_ipv6() && server.heartbeat.is_ipv6(),
        "{}",
        server.listening
    );
    server
}

#[test]
fn dns_and_heartbeats_work_over_ipv6() {
    let server = server_on_v6();
    // From [::1] without addr=: served at ::1.
    server.beat("beacon/1 service=web instance=w1 port=8080");
    server.beat("beacon/1 service=web instance=w2 port=8080 addr=10.0.0.2");
    let aaaa = server.await_reply("web.svc.internal.", RecordType::AAAA, |m| {
        !m.answers.is_empty()
    });
    assert_eq!(rdatas(&aaaa.answers), ["::1"]);
    let a = server.query("web.svc.internal.", RecordType::A);
    assert_eq!(rdatas(&a.answers), ["10.0.0.2"]);
    let tcp = server.query_tcp("_web._tcp.svc.internal.", RecordType::SRV);
    assert_status(&tcp, ResponseCode::NoError, true);
    assert_eq!(tcp.answers.len(), 2);
    // The name server's address is the one DNS listens on.
    let ns = server.query("ns.svc.internal.", RecordType::AAAA);
    assert_eq!(rdatas(&ns.answers), ["::1"]);

    // `beacon beat` towards an IPv6 server.
    let status = Command::new(BEACON)
        .args(["beat", "--once", "--service", "api", "--port", "9000"])
        .args([
            "--instance",
            "a1",
            "--server",
            &server.heartbeat.to_string(),
        ])
        .stderr(Stdio::null())
        .status()
        .expect("run beat");
    assert!(status.success());
    let api = server.await_reply("api.svc.internal.", RecordType::AAAA, |m| {
        !m.answers.is_empty()
    });
    assert_eq!(rdatas(&api.answers), ["::1"]);
}

#[test]
fn dig_and_kdig_ask_over_ipv6() {
    let server = server_on_v6();
    server.beat("beacon/1 service=web instance=w1 port=8080 addr=2001:db8::1");
    server.await_reply("web.svc.internal.", RecordType::AAAA, |m| {
        !m.answers.is_empty()
    });
    let port = server.dns.port().to_string();
    for (tool, transport) in [
        ("dig", "+notcp"),
        ("dig", "+tcp"),
        ("kdig", "+notcp"),
        ("kdig", "+tcp"),
    ] {
        if !common::have_tool(tool) {
            continue;
        }
        let out = Command::new(tool)
            .args([
                "@::1",
                "-p",
                &port,
                transport,
                "+short",
                "web.svc.internal",
                "AAAA",
            ])
            .output()
            .expect("run");
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(text.trim(), "2001:db8::1", "{tool} {transport}: {text}");
    }
}
