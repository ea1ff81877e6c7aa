//! SOA serials never go back: under churn they may run ahead of the
//! clock, and a restart (clean, or kill -9) continues above the last one
//! served, as the README promises.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{TestServer, serial_gt, signal, wait_until};

fn unix_now() -> u32 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    u32::try_from(secs).expect("before 2106")
}

/// `changes` visible changes, each published on its own (the next one is
/// sent once the serial moved), so the serial runs ahead of the clock.
fn churn(server: &TestServer, changes: u32) -> u32 {
    let mut serial = server.serial();
    for i in 0..changes {
        server.beat(&format!(
            "beacon/1 service=churn instance=c port=80 addr=10.0.{}.{}",
            i / 200,
            i % 200 + 1
        ));
        serial = wait_until(Duration::from_secs(5), || {
            let now = server.serial();
            serial_gt(now, serial).then_some(now)
        })
        .expect("every change bumps the serial");
    }
    serial
}

fn start_in(state: &std::path::Path) -> TestServer {
    TestServer::start(&["--state-dir", &state.display().to_string()])
}

#[test]
fn serials_grow_across_kill_and_clean_restarts() {
    let state = tempfile::tempdir().expect("state directory");

    let server = start_in(state.path());
    let before_kill = churn(&server, 300);
    assert!(
        serial_gt(before_kill, unix_now() + 50),
        "300 changes in a few seconds run the serial ahead of the clock ({before_kill})"
    );
    signal(server.pid(), "KILL");
    drop(server);

    let server = start_in(state.path());
    let after_kill = server.serial();
    assert!(
        serial_gt(after_kill, before_kill),
        "after kill -9: {after_kill} is not above {before_kill}"
    );

    let before_stop = churn(&server, 50);
    assert!(server.terminate().success());
    let server = start_in(state.path());
    let after_stop = server.serial();
    assert!(
        serial_gt(after_stop, before_stop),
        "after SIGTERM: {after_stop} is not above {before_stop}"
    );
    assert!(
        after_stop.wrapping_sub(before_stop) <= 2,
        "a clean stop stores the exact serial: {before_stop} then {after_stop}"
    );
}

#[test]
fn an_unusable_state_directory_stops_the_server_at_start() {
    let file = tempfile::NamedTempFile::new().expect("temp file");
    let output = std::process::Command::new(common::BEACON)
        .args([
            "serve",
            "--dns",
            "127.0.0.1:0",
            "--heartbeat",
            "127.0.0.1:0",
        ])
        .args(["--zones", "/nonexistent-beacon-test-zones"])
        .args(["--state-dir", &file.path().display().to_string()])
        .output()
        .expect("run beacon");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot use the state directory") && stderr.contains("--state-dir off"),
        "{stderr}"
    );
}

#[test]
fn two_servers_cannot_share_a_state_directory() {
    let state = tempfile::tempdir().expect("state directory");
    let _first = start_in(state.path());
    let output = std::process::Command::new(common::BEACON)
        .args([
            "serve",
            "--dns",
            "127.0.0.1:0",
            "--heartbeat",
            "127.0.0.1:0",
        ])
        .args(["--zones", "/nonexistent-beacon-test-zones"])
        .args(["--state-dir", &state.path().display().to_string()])
        .output()
        .expect("run beacon");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("in use by another beacon"), "{stderr}");
}
