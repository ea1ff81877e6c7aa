//! Restarts lose nothing: the registry snapshot in the state directory,
//! through the real binary (kill -9 and clean stops, expired leases, a
//! damaged snapshot, replays across a restart).

mod common;

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{TestServer, signal, wait_until};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

fn start_in(state: &Path, extra: &[&str]) -> TestServer {
    let dir = state.display().to_string();
    let mut flags = vec!["--state-dir", dir.as_str()];
    flags.extend_from_slice(extra);
    TestServer::start(&flags)
}

/// Waits until the snapshot file lists `instances` live instances.
fn snapshot_holds(state: &Path, instances: usize) {
    let needle = format!("\nend {instances} ");
    let found = wait_until(Duration::from_secs(5), || {
        std::fs::read_to_string(state.join("registry"))
            .ok()
            .filter(|text| text.contains(&needle))
    });
    assert!(
        found.is_some(),
        "the snapshot never listed {instances} instances: {:?}",
        std::fs::read_to_string(state.join("registry"))
    );
}

fn count(server: &TestServer, name: &str) -> usize {
    server.query_tcp(name, RecordType::A).answers.len()
}

#[test]
fn kill_dash_nine_loses_no_instance() {
    let state = tempfile::tempdir().expect("state dir");
    let server = start_in(state.path(), &[]);
    let mut datagrams = Vec::new();
    for s in 0..5 {
        for i in 0..10 {
            datagrams.push(format!(
                "beacon/1 service=svc{s} instance=i{i} port=80 addr=10.0.{s}.{i} ttl=60 meta.v=1%202"
            ));
        }
    }
    for s in 0..5 {
        server.beat_until_all(
            &format!("svc{s}.svc.internal."),
            &datagrams[s * 10..s * 10 + 10],
        );
    }
    server.beat(
        "beacon/1 service=svc0 instance=i9 port=80 addr=10.0.0.9 ttl=60 state=drain meta.v=1%202",
    );
    server.await_reply("svc0.svc.internal.", RecordType::A, |m| {
        m.answers.len() == 9
    });
    let serial = server.serial();
    snapshot_holds(state.path(), 50);
    // The drain above must be in it too: wait for a snapshot after it.
    let drained = wait_until(Duration::from_secs(5), || {
        std::fs::read_to_string(state.path().join("registry"))
            .ok()
            .filter(|t| t.contains("instance=i9 port=80 addr=10.0.0.9 proto=tcp ttl=60 weight=1 priority=0 state=drain"))
    });
    assert!(drained.is_some());
    signal(server.pid(), "KILL");
    drop(server);

    let restarted = start_in(state.path(), &[]);
    // The very first answers hold every instance.
    assert_eq!(
        count(&restarted, "svc0.svc.internal."),
        9,
        "the drained one stays out"
    );
    for s in 1..5 {
        assert_eq!(count(&restarted, &format!("svc{s}.svc.internal.")), 10);
    }
    assert_eq!(count(&restarted, "i9.svc0.svc.internal."), 1);
    let txt = restarted.query_tcp("i3._svc2._tcp.svc.internal.", RecordType::TXT);
    assert_eq!(common::rdatas(&txt.answers), ["v=1 2"]);
    assert!(common::serial_gt(restarted.serial(), serial));
    restarted.wait_for_log("registry restored from its snapshot restored=50 expired=0");
}

#[test]
fn leases_that_ran_out_while_down_are_not_restored() {
    let state = tempfile::tempdir().expect("state dir");
    let server = start_in(state.path(), &[]);
    server.beat_until_all(
        "short.svc.internal.",
        &["beacon/1 service=short instance=s port=80 ttl=1".to_string()],
    );
    server.beat_until_all(
        "long.svc.internal.",
        &["beacon/1 service=long instance=l port=80 ttl=600".to_string()],
    );
    snapshot_holds(state.path(), 2);
    signal(server.pid(), "KILL");
    drop(server);
    std::thread::sleep(Duration::from_millis(1_200));
    let restarted = start_in(state.path(), &[]);
    assert_eq!(count(&restarted, "long.svc.internal."), 1);
    assert_eq!(
        restarted
            .query_tcp("short.svc.internal.", RecordType::A)
            .response_code,
        ResponseCode::NXDomain
    );
    restarted.wait_for_log("restored=1 expired=1");
}

#[test]
fn a_clean_stop_writes_the_latest_renewals() {
    let state = tempfile::tempdir().expect("state dir");
    let server = start_in(state.path(), &[]);
    let beat = "beacon/1 service=web instance=w port=80 ttl=30".to_string();
    server.beat_until_all("web.svc.internal.", std::slice::from_ref(&beat));
    snapshot_holds(state.path(), 1);
    let first = std::fs::read_to_string(state.path().join("registry")).expect("snapshot");
    // A renewal only moves the lease: batched, but a clean stop writes it.
    std::thread::sleep(Duration::from_millis(50));
    server.beat(&beat);
    std::thread::sleep(Duration::from_millis(100));
    let log = server.terminate_and_log();
    assert!(
        log.contains("registry snapshot written at shutdown instances=1"),
        "{log}"
    );
    let last = std::fs::read_to_string(state.path().join("registry")).expect("snapshot");
    let lease_end = |text: &str| -> u64 {
        let line = text
            .lines()
            .find(|l| l.starts_with("i "))
            .expect("an instance line");
        line.split(' ')
            .nth(1)
            .and_then(|v| v.parse().ok())
            .expect("lease end")
    };
    assert!(lease_end(&last) > lease_end(&first), "{first}\n{last}");
    assert!(last.starts_with("beacon-registry 1\nserial "));
}

#[test]
fn a_damaged_snapshot_is_set_aside_and_the_server_starts_empty() {
    for damaged in [
        "beacon-registry 1\ni 99999999999999 - 0 beacon/1 service=a instance=b port=1 addr=10.0.0.1\n",
        "beacon-registry 9\nend 0 0\n",
        "\u{0}\u{1}garbage",
    ] {
        let state = tempfile::tempdir().expect("state dir");
        std::fs::write(state.path().join("registry"), damaged).expect("write");
        let server = start_in(state.path(), &[]);
        server.wait_for_log("the registry snapshot is unreadable");
        assert!(state.path().join("registry.corrupt").exists());
        assert_eq!(
            server
                .query_tcp("a.svc.internal.", RecordType::A)
                .response_code,
            ResponseCode::NXDomain
        );
        server.beat_until_all(
            "fresh.svc.internal.",
            &["beacon/1 service=fresh instance=f port=80".to_string()],
        );
    }
}

#[test]
fn a_replay_stays_a_replay_across_a_restart() {
    let state = tempfile::tempdir().expect("state dir");
    let keys = tempfile::tempdir().expect("key dir");
    let secret = [9u8; 32];
    let file = keys.path().join("k.key");
    std::fs::write(
        &file,
        format!(
            "key \"k\" {{ algorithm hmac-sha256; secret \"{}\"; }};\n",
            data_encoding::BASE64.encode(&secret)
        ),
    )
    .expect("write");
    let key =
        beacon::keys::Key::new("k", beacon::keys::Algorithm::HmacSha256, &secret).expect("key");
    let sign = |body: &str, ts: u64| {
        let message = format!("{body} key=k ts={ts}");
        let tag = data_encoding::BASE64URL_NOPAD.encode(key.sign(message.as_bytes()).as_ref());
        format!("{message} auth={tag}\n")
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).expect("ms"))
        .expect("clock");
    let key_file = file.display().to_string();
    let flags = [
        "--keys",
        key_file.as_str(),
        "--state-dir",
        &state.path().display().to_string(),
    ]
    .map(str::to_string);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let server = TestServer::start(&flags);
    let captured = sign(
        "beacon/1 service=pay instance=p port=80 addr=10.0.0.1 ttl=60",
        now,
    );
    server.beat(&captured);
    server.await_reply("pay.svc.internal.", RecordType::A, |m| {
        !m.answers.is_empty()
    });
    // Its owner moves it on: a later ts.
    server.beat(&sign(
        "beacon/1 service=pay instance=p port=80 addr=10.0.0.2 ttl=60",
        now + 10,
    ));
    server.await_reply("pay.svc.internal.", RecordType::A, |m| {
        common::rdatas(&m.answers) == ["10.0.0.2"]
    });
    let snapshot = wait_until(Duration::from_secs(5), || {
        std::fs::read_to_string(state.path().join("registry"))
            .ok()
            .filter(|t| t.contains(&format!(" k {} beacon/1 service=pay", now + 10)))
    });
    assert!(
        snapshot.is_some(),
        "the owner and its last ts are in the snapshot"
    );
    signal(server.pid(), "KILL");
    drop(server);

    let restarted = TestServer::start_with_env(
        &flags,
        &[(
            "RUST_LOG",
            "info,beacon::intake=debug,hickory_server=warn,hickory_net=warn,hickory_proto=warn",
        )],
    );
    let seen = wait_until(Duration::from_secs(5), || {
        restarted.beat(&captured);
        restarted.log().contains("reason=replayed").then_some(())
    });
    assert!(seen.is_some(), "{}", restarted.log());
    assert_eq!(
        common::rdatas(
            &restarted
                .query_tcp("pay.svc.internal.", RecordType::A)
                .answers
        ),
        ["10.0.0.2"]
    );
}

/// Sends the datagrams in `beating` every 300 ms until `stop` is set.
fn beat_loop(
    server: std::net::SocketAddr,
    beating: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let datagrams = beating.lock().expect("lock").clone();
            for datagram in datagrams {
                common::send_datagram(server, datagram.as_bytes());
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    })
}

#[test]
fn the_protect_threshold_keeps_a_service_that_goes_silent_at_once() {
    let server = TestServer::start(&["--protect-threshold", "0.5", "--protect-max", "30"]);
    let datagram =
        |i: usize| format!("beacon/1 service=guarded instance=g{i} port=80 addr=10.0.0.{i} ttl=2");
    let all: Vec<String> = (0..10).map(datagram).collect();
    let beating = std::sync::Arc::new(std::sync::Mutex::new(all.clone()));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sender = beat_loop(server.heartbeat, beating.clone(), stop.clone());
    server.await_reply("guarded.svc.internal.", RecordType::A, |m| {
        m.answers.len() == 10
    });
    // Nine stop at once (a partition); one goes on beating.
    *beating.lock().expect("lock") = vec![datagram(0)];
    std::thread::sleep(Duration::from_millis(3_500));
    assert_eq!(
        count(&server, "guarded.svc.internal."),
        10,
        "all ten still answered after the TTL"
    );
    server.wait_for_log("protect threshold: so many instances stopped beating at once");
    assert_eq!(
        server.log().matches("protect threshold: so many").count(),
        1,
        "said once per service"
    );
    // A down removes at once, protected or not.
    server.beat("beacon/1 service=guarded instance=g9 port=80 state=down");
    server.await_reply("guarded.svc.internal.", RecordType::A, |m| {
        m.answers.len() == 9
    });
    // Enough come back: protection ends and the still-silent ones leave.
    *beating.lock().expect("lock") = (0..6).map(datagram).collect();
    server.await_reply("guarded.svc.internal.", RecordType::A, |m| {
        m.answers.len() == 6
    });
    server.wait_for_log("protect threshold: enough instances are back");
    server.wait_for_log("reason=\"its protection ended");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    sender.join().expect("sender");
}

#[test]
fn protection_lasts_at_most_protect_max_and_can_be_off() {
    let server = TestServer::start(&["--protect-max", "2"]);
    let off = TestServer::start(&["--protect-threshold", "0"]);
    for target in [&server, &off] {
        target.beat_until_all(
            "pair.svc.internal.",
            &[
                "beacon/1 service=pair instance=a port=80 ttl=1".to_string(),
                "beacon/1 service=pair instance=b port=80 addr=10.0.0.2 ttl=1".to_string(),
            ],
        );
    }
    // Both stop: the default guard keeps them, stale, for 2 s; with the
    // guard off they leave at their TTL.
    std::thread::sleep(Duration::from_millis(1_600));
    assert_eq!(count(&server, "pair.svc.internal."), 2);
    assert_eq!(
        off.query_tcp("pair.svc.internal.", RecordType::A)
            .response_code,
        ResponseCode::NXDomain
    );
    server.await_reply("pair.svc.internal.", RecordType::A, |m| {
        m.response_code == ResponseCode::NXDomain
    });
}
