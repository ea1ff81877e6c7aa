//! Signed heartbeats through the real binary: keys from BIND and Knot key
//! files, `beacon beat --key-file`, every rejection reason (each shown to
//! leave the registry as it was), replays, the clock window's edges, key
//! rotation by SIGHUP, `--auth optional`, and bad key files at start and
//! at SIGHUP.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use beacon::keys::{Algorithm, Key};
use common::{BEACON, TestServer, have_tool, signal, wait_until};
use hickory_proto::rr::RecordType;

const WEB_SECRET: &str = "d2ViLXRlYW0tc2VjcmV0LWZvci10ZXN0cy0wMDAwMDA=";
const OPS_SECRET: &str = "b3BzLXNlY3JldC1mb3ItdGVzdHMtMDAwMDAwMDAwMDA=";

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).expect("ms"))
        .expect("clock")
}

fn key(name: &str, secret: &str) -> Key {
    let secret = data_encoding::BASE64
        .decode(secret.as_bytes())
        .expect("base64");
    Key::new(name, Algorithm::HmacSha256, &secret).expect("key")
}

/// `body` signed with `key` at `ts`, as the README describes it.
fn signed(key: &Key, body: &str, ts: u64) -> String {
    let message = format!("{body} key={} ts={ts}", key.name());
    let tag = data_encoding::BASE64URL_NOPAD.encode(key.sign(message.as_bytes()).as_ref());
    format!("{message} auth={tag}\n")
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write key file");
    path
}

fn bind_key(name: &str, secret: &str) -> String {
    format!("key \"{name}\" {{\n\talgorithm hmac-sha256;\n\tsecret \"{secret}\";\n}};\n")
}

/// The A records of `name`, over TCP (no UDP loss to mistake for a change).
fn addresses(server: &TestServer, name: &str) -> Vec<String> {
    let mut found = common::rdatas(&server.query_tcp(name, RecordType::A).answers);
    found.sort();
    found
}

/// Sends `datagram` and waits for the WARN naming `reason`, so the
/// datagram has surely been handled before the registry is checked.
fn refused(server: &TestServer, datagram: &str, reason: &str) {
    let needle = format!("reason={reason} ");
    let before = server.log().matches(&needle).count();
    let seen = wait_until(Duration::from_secs(5), || {
        server.beat(datagram);
        (server.log().matches(&needle).count() > before).then_some(())
    });
    assert!(
        seen.is_some(),
        "no refusal with reason {reason} for {datagram:?}; log:\n{}",
        server.log()
    );
}

/// A server whose refusals are all in the log: after the first WARN per
/// reason, the next 10 s of them are at DEBUG.
fn start(flags: &[&str]) -> TestServer {
    TestServer::start_with_env(
        flags,
        &[(
            "RUST_LOG",
            "info,beacon::intake=debug,hickory_server=warn,hickory_net=warn,hickory_proto=warn",
        )],
    )
}

struct Keys {
    _dir: tempfile::TempDir,
    file: PathBuf,
    web: Key,
    ops: Key,
}

fn keys() -> Keys {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = write(
        dir.path(),
        "beacon.key",
        &(bind_key("web-team", WEB_SECRET) + &bind_key("ops", OPS_SECRET)),
    );
    Keys {
        _dir: dir,
        file,
        web: key("web-team", WEB_SECRET),
        ops: key("ops", OPS_SECRET),
    }
}

#[test]
fn every_rejection_is_counted_and_changes_nothing() {
    let k = keys();
    let file = k.file.display().to_string();
    let server = start(&[
        "--keys",
        &file,
        "--key-scope",
        "web-team=web,web-*",
        "--auth-window",
        "5",
    ]);
    server.wait_for_log("heartbeats are authenticated auth=required keys=ops,web-team");
    let body = "beacon/1 service=web instance=web-1 port=80 addr=10.0.0.1";
    let first = signed(&k.web, body, now_ms());
    server.beat(&first);
    server.await_reply("web-1.web.svc.internal.", RecordType::A, |m| {
        !m.answers.is_empty()
    });
    server.wait_for_log("registered service=web instance=web-1 addr=10.0.0.1");
    assert!(
        server
            .log()
            .contains("key=web-team reason=\"first heartbeat\"")
    );
    let serial = server.serial();

    // Each would move web-1 to 10.9.9.9 (or register something) if accepted.
    let moved = "beacon/1 service=web instance=web-1 port=80 addr=10.9.9.9";
    let stranger = key("stranger", WEB_SECRET);
    let forged = key("web-team", OPS_SECRET);
    let cases: Vec<(String, &str)> = vec![
        (format!("{moved}\n"), "unsigned"),
        (signed(&stranger, moved, now_ms()), "unknown-key"),
        (signed(&forged, moved, now_ms()), "bad-mac"),
        (
            signed(&k.web, moved, now_ms()).replace("addr=10.9.9.9", "addr=10.9.9.8"),
            "bad-mac",
        ),
        (signed(&k.web, moved, now_ms() + 8_000), "outside-window"),
        (signed(&k.web, moved, now_ms() - 8_000), "outside-window"),
        // The captured first heartbeat, replayed as is.
        (first.clone(), "replayed"),
        (
            signed(
                &k.web,
                "beacon/1 service=payments instance=p-1 port=80 addr=10.9.9.9",
                now_ms(),
            ),
            "out-of-scope",
        ),
        // A valid key whose scope would allow it, but web-1 is web-team's.
        (signed(&k.ops, moved, now_ms()), "not-owner"),
        (
            signed(
                &k.ops,
                "beacon/1 service=web instance=web-1 port=80 state=down",
                now_ms(),
            ),
            "not-owner",
        ),
    ];
    for (datagram, reason) in &cases {
        refused(&server, datagram, reason);
        assert_eq!(
            addresses(&server, "web.svc.internal."),
            ["10.0.0.1"],
            "{reason}: {datagram}"
        );
    }
    assert_eq!(
        server
            .query_tcp("payments.svc.internal.", RecordType::A)
            .response_code,
        hickory_proto::op::ResponseCode::NXDomain
    );
    assert_eq!(
        server.serial(),
        serial,
        "no refused datagram changed the zone"
    );
    let log = server.log();
    assert!(!log.contains(WEB_SECRET) && !log.contains(OPS_SECRET));
    assert!(log.contains("refused a heartbeat: no key of that name is configured"));
    assert!(log.contains("key=stranger"), "the key name is logged");

    // The owner still can: a later timestamp moves it, and its down removes it.
    server.beat(&signed(&k.web, moved, now_ms()));
    server.await_reply("web.svc.internal.", RecordType::A, |m| {
        common::rdatas(&m.answers) == ["10.9.9.9"]
    });
    server.wait_for_log("reason=addr");
    let down = "beacon/1 service=web instance=web-1 port=80 state=down";
    server.beat(&signed(&k.web, down, now_ms()));
    server.wait_for_log("deregistered service=web instance=web-1 addr=10.9.9.9 src=");
    assert!(
        server
            .log()
            .contains("key=web-team reason=\"sender said down\"")
    );
    // And the heartbeats sent before that down cannot bring it back.
    refused(
        &server,
        &signed(&k.web, moved, now_ms() - 1_000),
        "replayed",
    );
    assert!(addresses(&server, "web.svc.internal.").is_empty());
    // Each reason has its own count, summed up as the server stops.
    let log = server.terminate_and_log();
    let summary = log
        .lines()
        .find(|l| l.contains("heartbeats refused by authentication since start"))
        .unwrap_or_else(|| panic!("no summary:\n{log}"));
    for reason in [
        "unsigned=",
        "unknown-key=",
        "bad-mac=",
        "outside-window=",
        "replayed=",
        "out-of-scope=",
        "not-owner=",
    ] {
        assert!(summary.contains(reason), "{reason} missing from {summary}");
    }
}

#[test]
fn clock_skew_is_accepted_up_to_the_window_on_both_sides() {
    let k = keys();
    let file = k.file.display().to_string();
    let server = start(&["--keys", &file, "--auth-window", "5"]);
    // A second inside each edge and a second and a half beyond it: room
    // for the time the datagram takes, not for a slow clock.
    let body = |n| format!("beacon/1 service=skew instance=s-{n} port=80 addr=10.0.0.{n}");
    let now = now_ms();
    server.beat(&signed(&k.web, &body(1), now + 4_000));
    server.beat(&signed(&k.web, &body(2), now - 4_000));
    server.await_reply("skew.svc.internal.", RecordType::A, |m| {
        m.answers.len() == 2
    });
    refused(
        &server,
        &signed(&k.web, &body(3), now_ms() + 6_500),
        "outside-window",
    );
    refused(
        &server,
        &signed(&k.web, &body(4), now_ms() - 6_500),
        "outside-window",
    );
    assert_eq!(
        addresses(&server, "skew.svc.internal."),
        ["10.0.0.1", "10.0.0.2"]
    );
}

#[test]
fn beat_signs_every_heartbeat_and_its_final_down() {
    let k = keys();
    let file = k.file.display().to_string();
    let server = start(&["--keys", &file]);
    // Two keys in the file: beat must be told which.
    let out = Command::new(BEACON)
        .args(["beat", "--service", "web", "--port", "8080", "--once"])
        .args(["--key-file", &file])
        .output()
        .expect("beat");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("holds 2 keys (ops, web-team): choose one with --key NAME"),
        "{stderr}"
    );

    let mut beat = common::spawn_quiet(
        Command::new(BEACON)
            .args([
                "beat",
                "--service",
                "web",
                "--port",
                "8080",
                "--instance",
                "web-1",
            ])
            .args([
                "--interval",
                "0.2",
                "--key-file",
                &file,
                "--key",
                "web-team",
            ])
            .arg("--server")
            .arg(server.heartbeat.to_string()),
    );
    server.await_reply("web-1.web.svc.internal.", RecordType::A, |m| {
        !m.answers.is_empty()
    });
    server.wait_for_log("registered service=web instance=web-1");
    // Several renewals, each with a later timestamp: none is a replay.
    std::thread::sleep(Duration::from_millis(700));
    signal(beat.id(), "TERM");
    assert!(beat.wait().expect("wait").success());
    server.wait_for_log("deregistered service=web instance=web-1");
    let log = server.log();
    assert!(
        log.contains("key=web-team reason=\"sender said down\""),
        "{log}"
    );
    assert!(!log.contains("refused a heartbeat"), "{log}");
}

#[test]
fn keys_from_tsig_keygen_and_knot_lines_are_read() {
    if !have_tool("tsig-keygen") {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let out = Command::new("tsig-keygen")
        .arg("bind-made")
        .output()
        .expect("tsig-keygen");
    assert!(out.status.success());
    let bind = write(
        dir.path(),
        "bind.key",
        &String::from_utf8_lossy(&out.stdout),
    );
    let knot = write(
        dir.path(),
        "knot.key",
        &format!("hmac-sha256:knot-made:{OPS_SECRET}\n"),
    );
    let server = start(&[
        "--keys",
        &bind.display().to_string(),
        "--keys",
        &knot.display().to_string(),
    ]);
    server.wait_for_log("keys=bind-made,knot-made");
    for (file, n) in [(&bind, 1), (&knot, 2)] {
        let status = Command::new(BEACON)
            .args(["beat", "--service", "tools", "--port", "80", "--once"])
            .args([
                "--instance",
                &format!("t-{n}"),
                "--addr",
                &format!("10.0.0.{n}"),
            ])
            .arg("--key-file")
            .arg(file)
            .arg("--server")
            .arg(server.heartbeat.to_string())
            .status()
            .expect("beat");
        assert!(status.success());
    }
    server.await_reply("tools.svc.internal.", RecordType::A, |m| {
        m.answers.len() == 2
    });
    let log = server.log();
    assert!(log.contains("key=bind-made") && log.contains("key=knot-made"));
}

#[test]
fn keygen_prints_a_key_bind_and_beacon_both_read() {
    let out = Command::new(BEACON)
        .args(["keygen", "web-team"])
        .output()
        .expect("keygen");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.starts_with("key \"web-team\" {\n\talgorithm hmac-sha256;\n\tsecret \""));
    let dir = tempfile::tempdir().expect("temp dir");
    let file = write(dir.path(), "web-team.key", &text);
    if have_tool("named-checkconf") {
        let status = Command::new("named-checkconf")
            .arg(&file)
            .status()
            .expect("named-checkconf");
        assert!(status.success(), "named-checkconf refused:\n{text}");
    }
    let server = start(&["--keys", &file.display().to_string()]);
    let status = Command::new(BEACON)
        .args(["beat", "--service", "gen", "--port", "80", "--once"])
        .arg("--key-file")
        .arg(&file)
        .arg("--server")
        .arg(server.heartbeat.to_string())
        .status()
        .expect("beat");
    assert!(status.success());
    server.await_reply("gen.svc.internal.", RecordType::A, |m| {
        !m.answers.is_empty()
    });
    let bad = Command::new(BEACON)
        .args(["keygen", "no spaces"])
        .output()
        .expect("keygen");
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("may hold only letters"));
}

#[test]
fn key_rotation_by_sighup_keeps_instances_under_the_new_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = write(
        dir.path(),
        "web.key",
        &(bind_key("web-old", WEB_SECRET) + &bind_key("web-new", OPS_SECRET)),
    );
    let old = key("web-old", WEB_SECRET);
    let new = key("web-new", OPS_SECRET);
    let server = start(&[
        "--keys",
        &file.display().to_string(),
        "--key-scope",
        "web-old=web",
        "--key-scope",
        "web-new=web",
    ]);
    let body = |n| format!("beacon/1 service=web instance=web-{n} port=80 addr=10.0.0.{n} ttl=60");
    server.beat(&signed(&old, &body(1), now_ms()));
    server.beat(&signed(&old, &body(2), now_ms()));
    server.await_reply("web.svc.internal.", RecordType::A, |m| m.answers.len() == 2);
    // While the old key is configured, the instances are its own.
    refused(&server, &signed(&new, &body(1), now_ms()), "not-owner");

    // The old key leaves the file: its instances stay, and move to the
    // new key at their next beat.
    write(dir.path(), "web.key", &bind_key("web-new", OPS_SECRET));
    signal(server.pid(), "HUP");
    server.wait_for_log("SIGHUP: key files read again keys=web-new");
    server.wait_for_log("takes each over orphaned=2");
    assert_eq!(
        addresses(&server, "web.svc.internal."),
        ["10.0.0.1", "10.0.0.2"]
    );
    server.beat(&signed(&new, &body(1), now_ms()));
    server.wait_for_log("changed service=web instance=web-1 addr=10.0.0.1");
    assert!(server.log().contains("key=web-new reason=key"));
    refused(&server, &signed(&old, &body(2), now_ms()), "unknown-key");
    server.beat(&signed(&new, &body(2), now_ms()));
    server.wait_for_log("changed service=web instance=web-2 addr=10.0.0.2");
    assert_eq!(
        addresses(&server, "web.svc.internal."),
        ["10.0.0.1", "10.0.0.2"]
    );
}

#[test]
fn optional_auth_accepts_unsigned_but_never_over_a_signed_instance() {
    let k = keys();
    let file = k.file.display().to_string();
    let server = start(&["--keys", &file, "--auth", "optional"]);
    server.wait_for_log("auth=optional");
    server.beat("beacon/1 service=mixed instance=plain port=80 addr=10.0.0.1\n");
    server.beat(&signed(
        &k.web,
        "beacon/1 service=mixed instance=signed port=80 addr=10.0.0.2",
        now_ms(),
    ));
    server.await_reply("mixed.svc.internal.", RecordType::A, |m| {
        m.answers.len() == 2
    });
    refused(
        &server,
        "beacon/1 service=mixed instance=signed port=80 addr=10.9.9.9\n",
        "not-owner",
    );
    refused(
        &server,
        "beacon/1 service=mixed instance=signed port=80 state=down\n",
        "not-owner",
    );
    server.beat("beacon/1 service=mixed instance=plain port=80 addr=10.0.0.3\n");
    server.await_reply("mixed.svc.internal.", RecordType::A, |m| {
        let mut found = common::rdatas(&m.answers);
        found.sort();
        found == ["10.0.0.2", "10.0.0.3"]
    });
}

#[test]
fn registration_is_open_without_keys_and_says_so() {
    let server = start(&[]);
    server.wait_for_log("registration is open");
    server.beat("beacon/1 service=open instance=o-1 port=80\n");
    server.await_reply("open.svc.internal.", RecordType::A, |m| {
        !m.answers.is_empty()
    });
    // A signed heartbeat names a key this server does not have.
    let k = key("web-team", WEB_SECRET);
    refused(
        &server,
        &signed(&k, "beacon/1 service=open instance=o-2 port=80", now_ms()),
        "unknown-key",
    );
}

#[test]
fn bad_key_files_stop_the_start_and_are_survived_at_sighup() {
    let dir = tempfile::tempdir().expect("temp dir");
    let broken = write(
        dir.path(),
        "broken.key",
        "key \"web-team\" {\n\talgorithm hmac-sha256;\n\tsecret \"not base64!\";\n};\n",
    );
    let flags: [&[&str]; 4] = [
        &["--keys", &broken.display().to_string()],
        &["--keys", "/nonexistent/beacon.key"],
        &["--auth", "required"],
        &["--key-scope", "web-team=web"],
    ];
    let expected = [
        format!("error: {}:3: secret is not base64", broken.display()),
        "error: /nonexistent/beacon.key: cannot read the key file".to_string(),
        "error: --auth: --auth required needs --keys FILE".to_string(),
        "error: --key-scope: needs --keys FILE".to_string(),
    ];
    for (flags, expected) in flags.iter().zip(&expected) {
        let out = Command::new(BEACON)
            .args([
                "serve",
                "--dns",
                "127.0.0.1:0",
                "--heartbeat",
                "127.0.0.1:0",
                "--http",
                "off",
            ])
            .args(*flags)
            .output()
            .expect("serve");
        assert_eq!(out.status.code(), Some(2), "{flags:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.starts_with(expected.as_str()), "{flags:?}: {stderr}");
    }

    let k = keys();
    let file = k.file.display().to_string();
    let server = start(&["--keys", &file]);
    std::fs::write(&k.file, "key \"web-team\" {\n\talgorithm hmac-md5;\n").expect("write");
    signal(server.pid(), "HUP");
    server.wait_for_log("SIGHUP: the key files were not reloaded; the keys in use stay");
    assert!(
        server
            .log()
            .contains(&format!("{file}:2: algorithm `hmac-md5` is not supported")),
        "{}",
        server.log()
    );
    server.beat(&signed(
        &k.web,
        "beacon/1 service=kept instance=k-1 port=80",
        now_ms(),
    ));
    server.await_reply("kept.svc.internal.", RecordType::A, |m| {
        !m.answers.is_empty()
    });
}
