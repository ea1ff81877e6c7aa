//! Bad flags fail at start, before anything is bound or sent, with a message
//! that names the flag and says what to fix.

mod common;

use std::net::UdpSocket;
use std::process::Command;

use common::BEACON;

/// Runs beacon with `args`, expecting failure; returns stderr.
fn fails(args: &[&str]) -> String {
    let out = Command::new(BEACON)
        .args(args)
        .output()
        .expect("run beacon");
    assert!(!out.status.success(), "{args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn bad_serve_flags_say_what_to_fix() {
    let cases: &[(&[&str], &str)] = &[
        (&["serve", "--dns", "localhost"], "--dns"),
        (&["serve", "--dns", "127.0.0.1:99999"], "--dns"),
        (&["serve", "--zone", "bad..name"], "--zone"),
        (&["serve", "--zone", "."], "root zone"),
        (&["serve", "--answer-ttl", "100000"], "--answer-ttl"),
        (&["serve", "--answer-ttl=-1"], "--answer-ttl"),
        (&["serve", "--max-instances", "0"], "--max-instances"),
        (&["serve", "--heartbeat", "127.0.0.1:5300"], "--heartbeat"),
        (&["serve", "--soa-contact", "a.b@c"], "--soa-contact"),
        (
            &["serve", "--dns", "0.0.0.0:0", "--heartbeat", "127.0.0.1:0"],
            "--ns-addr",
        ),
        (&["serve", "--frobnicate"], "--frobnicate"),
        (&["serve", "--udp-workers", "0"], "--udp-workers"),
        (&["serve", "--udp-workers", "100000"], "--udp-workers"),
        (&["serve", "--fast-path", "maybe"], "--fast-path"),
        (&["serve", "--min-lease", "0"], "--min-lease"),
        (
            &["serve", "--min-lease", "100", "--max-lease", "50"],
            "--min-lease",
        ),
        (&["serve", "--max-lease", "100000"], "--max-lease"),
        (&["serve", "--update-lease", "0"], "--update-lease"),
        (&["serve", "--allow-update", "everyone"], "--allow-update"),
    ];
    for (args, expected) in cases {
        let err = fails(args);
        assert!(
            err.contains(expected),
            "{args:?}: {err:?} lacks {expected:?}"
        );
    }
}

#[test]
fn a_dns_port_in_use_is_a_clear_error() {
    // A plain UDP socket (no SO_REUSEPORT) holds the port: our workers'
    // sockets cannot join it.
    let taken = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let err = fails(&["serve", "--dns", &addr, "--heartbeat", "127.0.0.1:0"]);
    assert!(err.contains("--dns"), "{err}");
    // Another process's TCP listener on the port.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let err = fails(&["serve", "--dns", &addr, "--heartbeat", "127.0.0.1:0"]);
    assert!(err.contains("--dns") && err.contains("TCP"), "{err}");
}

#[test]
fn an_address_in_use_is_a_clear_error() {
    let taken = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let err = fails(&["serve", "--dns", "127.0.0.1:0", "--heartbeat", &addr]);
    assert!(err.contains("cannot listen for heartbeats"), "{err}");
    assert!(err.contains("--heartbeat"), "{err}");
}

#[test]
fn bad_beat_flags_say_what_to_fix() {
    let cases: &[(&[&str], &str)] = &[
        (&["beat", "--port", "80"], "--service"),
        (&["beat", "--service", "web"], "--port"),
        (&["beat", "--service", "web_1", "--port", "80"], "--service"),
        (&["beat", "--service", "web", "--port", "0"], "--port"),
        (
            &["beat", "--service", "web", "--port", "80", "--tag", "a_b"],
            "--tag",
        ),
        (
            &[
                "beat",
                "--service",
                "web",
                "--port",
                "80",
                "--instance",
                "a.b",
            ],
            "--instance",
        ),
        (
            &["beat", "--service", "web", "--port", "80", "--ttl", "0"],
            "--ttl",
        ),
        (
            &[
                "beat",
                "--service",
                "web",
                "--port",
                "80",
                "--ttl",
                "5",
                "--interval",
                "5",
            ],
            "--interval",
        ),
        (
            &[
                "beat",
                "--service",
                "web",
                "--port",
                "80",
                "--meta",
                "novalue",
            ],
            "--meta",
        ),
        (
            &[
                "beat",
                "--service",
                "web",
                "--port",
                "80",
                "--meta",
                "bad key=v",
            ],
            "meta",
        ),
        (
            &[
                "beat",
                "--service",
                "web",
                "--port",
                "80",
                "--proto",
                "sctp",
            ],
            "--proto",
        ),
        (
            &["beat", "--service", "web", "--port", "80", "--addr", "nope"],
            "--addr",
        ),
        (
            &[
                "beat",
                "--service",
                "web",
                "--port",
                "80",
                "--state",
                "down",
            ],
            "--once",
        ),
    ];
    for (args, expected) in cases {
        let err = fails(args);
        assert!(
            err.contains(expected),
            "{args:?}: {err:?} lacks {expected:?}"
        );
    }
}
