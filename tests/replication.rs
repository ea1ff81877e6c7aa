//! Zone transfers to real secondaries: Knot (`knotd`) and NSD, configured
//! as secondaries of beacon on loopback from the config files below, take
//! the zone by AXFR, follow changes by IXFR after NOTIFY, and answer what
//! beacon answers; TSIG is required when configured; a secondary further
//! behind than the history gets the whole zone; two primaries.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use common::{
    TestServer, free_port, have_tool, lines, query_tcp, query_udp, question, readme_block, signal,
    wait_until,
};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};

const SECRET: &str = "c2VjcmV0LXNoYXJlZC1ieS1iZWFjb24tYW5kLWtub3Q=";
const WRONG_SECRET: &str = "d3Jvbmctc2VjcmV0LXdyb25nLXNlY3JldC13cm9uZyE=";

/// The names and types every comparison asks both servers.
const QUESTIONS: &[(&str, RecordType)] = &[
    ("web.svc.internal.", RecordType::A),
    ("web.svc.internal.", RecordType::AAAA),
    ("_web._tcp.svc.internal.", RecordType::SRV),
    ("_web._tcp.svc.internal.", RecordType::PTR),
    ("w1.web.svc.internal.", RecordType::A),
    ("w2.web.svc.internal.", RecordType::AAAA),
    ("w3.web.svc.internal.", RecordType::A),
    ("w1._web._tcp.svc.internal.", RecordType::SRV),
    ("w1._web._tcp.svc.internal.", RecordType::TXT),
    ("w3._web._tcp.svc.internal.", RecordType::SRV),
    ("_services._dns-sd._udp.svc.internal.", RecordType::PTR),
    ("db.svc.internal.", RecordType::A),
    ("_db._tcp.svc.internal.", RecordType::SRV),
];

fn zones_dir() -> String {
    format!("{}/zones", env!("CARGO_MANIFEST_DIR"))
}

/// A secondary server process (Knot or NSD), stopped on drop.
struct Secondary {
    child: Child,
    dns: SocketAddr,
    log: Arc<Mutex<String>>,
    /// Its config, zone storage and journal.
    dir: tempfile::TempDir,
    name: &'static str,
}

impl Secondary {
    /// `knotd` following `primaries`, TSIG-signing with `key` (name,
    /// secret) when given, in `dir`.
    fn knot(
        port: u16,
        primaries: &[SocketAddr],
        key: Option<(&str, &str)>,
        dir: tempfile::TempDir,
    ) -> Self {
        let d = dir.path().display();
        let key_block = key.map_or(String::new(), |(name, secret)| {
            format!("key:\n  - id: {name}\n    algorithm: hmac-sha256\n    secret: {secret}\n")
        });
        let key_ref = key.map_or(String::new(), |(name, _)| format!("    key: {name}\n"));
        let remotes: String = primaries
            .iter()
            .enumerate()
            .map(|(i, p)| {
                format!(
                    "  - id: primary{i}\n    address: {}@{}\n{key_ref}",
                    p.ip(),
                    p.port()
                )
            })
            .collect();
        let acls: String = primaries
            .iter()
            .enumerate()
            .map(|(i, p)| {
                format!(
                    "  - id: notify{i}\n    address: {}\n    action: notify\n{key_ref}",
                    p.ip()
                )
            })
            .collect();
        let ids = |prefix: &str| {
            let list: Vec<String> = (0..primaries.len())
                .map(|i| format!("{prefix}{i}"))
                .collect();
            format!("[{}]", list.join(", "))
        };
        let conf = format!(
            "server:\n  rundir: \"{d}\"\n  listen: 127.0.0.1@{port}\n  udp-workers: 1\n  tcp-workers: 1\n  background-workers: 1\n\
             log:\n  - target: stderr\n    any: info\n\
             database:\n  storage: \"{d}\"\n\
             {key_block}\
             remote:\n{remotes}\
             acl:\n{acls}\
             zone:\n  - domain: svc.internal\n    storage: \"{d}\"\n    master: {}\n    acl: {}\n    zonefile-load: none\n    zonefile-sync: -1\n    journal-content: all\n",
            ids("primary"),
            ids("notify"),
        );
        std::fs::write(dir.path().join("knot.conf"), conf).expect("knot.conf");
        let mut command = Command::new("knotd");
        command.args(["-c", &dir.path().join("knot.conf").display().to_string()]);
        Secondary::spawn(command, port, dir, "knotd")
    }

    /// `nsd` following `primary` (IXFR first), with `key` when given.
    fn nsd(
        port: u16,
        primary: SocketAddr,
        key: Option<(&str, &str)>,
        dir: tempfile::TempDir,
    ) -> Self {
        let d = dir.path().display();
        let (key_block, key_ref) = match key {
            Some((name, secret)) => (
                format!("key:\n  name: {name}\n  algorithm: hmac-sha256\n  secret: \"{secret}\"\n"),
                name.to_string(),
            ),
            None => (String::new(), "NOKEY".to_string()),
        };
        let conf = format!(
            "server:\n  ip-address: 127.0.0.1@{port}\n  zonesdir: \"{d}\"\n  pidfile: \"{d}/nsd.pid\"\n  xfrdfile: \"{d}/xfrd.state\"\n  xfrdir: \"{d}\"\n  zonelistfile: \"{d}/zone.list\"\n  database: \"\"\n  username: \"\"\n  chroot: \"\"\n  logfile: \"{d}/nsd.log\"\n  verbosity: 2\n  server-count: 1\n\
             remote-control:\n  control-enable: no\n\
             {key_block}\
             zone:\n  name: svc.internal\n  zonefile: \"svc.internal.zone\"\n  request-xfr: {}@{} {key_ref}\n  allow-notify: {} {key_ref}\n",
            primary.ip(),
            primary.port(),
            primary.ip(),
        );
        std::fs::write(dir.path().join("nsd.conf"), conf).expect("nsd.conf");
        let mut command = Command::new("nsd");
        command.args([
            "-d",
            "-c",
            &dir.path().join("nsd.conf").display().to_string(),
        ]);
        Secondary::spawn(command, port, dir, "nsd")
    }

    fn spawn(mut command: Command, port: u16, dir: tempfile::TempDir, name: &'static str) -> Self {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let sink = log.clone();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut log = sink.lock().expect("log");
                log.push_str(&line);
                log.push('\n');
            }
        });
        Secondary {
            child,
            dns: SocketAddr::from(([127, 0, 0, 1], port)),
            log,
            dir,
            name,
        }
    }

    /// Everything it logged (stderr, and NSD's log file).
    fn log(&self) -> String {
        let mut log = self.log.lock().expect("log").clone();
        if let Ok(file) = std::fs::read_to_string(self.dir.path().join("nsd.log")) {
            log.push_str(&file);
        }
        log
    }

    /// Its SOA serial, once it serves the zone.
    fn serial(&self) -> Option<u32> {
        let reply = std::panic::catch_unwind(|| {
            query_udp(self.dns, &question("svc.internal.", RecordType::SOA, false))
        })
        .ok()?;
        match reply.answers.first().map(|r| &r.data) {
            Some(RData::SOA(soa)) => Some(soa.serial),
            _ => None,
        }
    }

    /// Waits until it serves `serial`.
    fn wait_serial(&self, serial: u32, what: &str) {
        let reached = wait_until(Duration::from_secs(15), || {
            (self.serial() == Some(serial)).then_some(())
        });
        assert!(
            reached.is_some(),
            "{} never reached serial {serial} ({what}); it has {:?}; log:\n{}",
            self.name,
            self.serial(),
            self.log()
        );
    }

    /// Stops it (SIGTERM) and hands back its folder (zone and journal).
    fn stop(mut self) -> tempfile::TempDir {
        signal(self.child.id(), "TERM");
        let stopped = wait_until(Duration::from_secs(10), || {
            self.child.try_wait().ok().flatten()
        });
        if stopped.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let dir = tempfile::tempdir().expect("dir");
        std::mem::replace(&mut self.dir, dir)
    }
}

impl Drop for Secondary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The answer section of `name` `rtype` from `server` over TCP, as sorted
/// zone-file lines (rotation does not matter; the set does).
fn answer_set(server: SocketAddr, name: &str, rtype: RecordType) -> (ResponseCode, Vec<String>) {
    let reply: Message = query_tcp(server, &question(name, rtype, true));
    let mut set = lines(&reply.answers);
    set.sort();
    (reply.metadata.response_code, set)
}

/// Asserts that `secondary` answers every question as `primary` does.
fn assert_same_answers(primary: SocketAddr, secondary: &Secondary, when: &str) {
    for (name, rtype) in QUESTIONS {
        let ours = answer_set(primary, name, *rtype);
        let theirs = answer_set(secondary.dns, name, *rtype);
        assert_eq!(
            ours, theirs,
            "{when}: {} answers {name} {rtype} differently from beacon",
            secondary.name
        );
    }
}

fn beacon(extra: &[&str]) -> TestServer {
    let zones = zones_dir();
    let mut args = vec![
        "--zones",
        zones.as_str(),
        "--allow-transfer",
        "127.0.0.1/32",
    ];
    args.extend_from_slice(extra);
    TestServer::start(&args)
}

/// Registers W1 and W2 (one IPv4, one IPv6 instance).
fn register_first_two(server: &TestServer) {
    server.beat(W1);
    server.beat(W2);
    server.await_reply("_web._tcp.svc.internal.", RecordType::SRV, |reply| {
        reply.answers.len() == 2
    });
}

const W1: &str = "beacon/1 service=web instance=w1 port=8080 addr=10.0.0.1 meta.version=1.2";
const W2: &str = "beacon/1 service=web instance=w2 port=8080 addr=2001:db8::2";

#[test]
fn knot_follows_every_change_by_ixfr_and_answers_as_beacon_does() {
    if !have_tool("knotd") {
        return;
    }
    let notify_port = free_port();
    let notify = format!("127.0.0.1:{notify_port}");
    // A zones folder of its own: a fragment is edited below.
    let zones = tempfile::tempdir().expect("zones");
    let db = zones.path().join("db.zone");
    std::fs::copy(format!("{}/db.zone", zones_dir()), &db).expect("copy");
    let zones_path = zones.path().display().to_string();
    let server = TestServer::start(&[
        "--zones",
        &zones_path,
        "--allow-transfer",
        "127.0.0.1/32",
        "--notify",
        &notify,
    ]);
    register_first_two(&server);

    // Knot on the port beacon notifies.
    let dir = tempfile::tempdir().expect("dir");
    let knot = Secondary::knot(notify_port, &[server.dns], None, dir);
    knot.wait_serial(server.serial(), "first load");
    assert!(knot.log().contains("AXFR, incoming"), "{}", knot.log());
    assert_same_answers(server.dns, &knot, "after the first AXFR");

    // Register, change, remove: each reaches Knot by NOTIFY and IXFR.
    let steps = [
        (
            "a new instance",
            "beacon/1 service=web instance=w3 port=9090 addr=10.0.0.3 weight=5",
        ),
        (
            "a changed port",
            "beacon/1 service=web instance=w1 port=8443 addr=10.0.0.1 meta.version=1.3",
        ),
        (
            "a removal",
            "beacon/1 service=web instance=w2 port=8080 state=down",
        ),
    ];
    for (what, datagram) in steps {
        let before = server.serial();
        server.beat(datagram);
        let after = wait_until(Duration::from_secs(5), || {
            let now = server.serial();
            (now != before).then_some(now)
        })
        .unwrap_or_else(|| panic!("{what}: beacon's serial never moved"));
        knot.wait_serial(after, what);
        assert_same_answers(server.dns, &knot, what);
    }
    // A fragment edit (static data) reaches it too.
    let before = server.serial();
    let text = std::fs::read_to_string(&db).expect("read") + "db IN A 10.1.0.13\n";
    let edited = zones.path().join("db.zone.new");
    std::fs::write(&edited, text).expect("write");
    std::fs::rename(&edited, &db).expect("rename");
    let after = next_serial(&server, before, "a fragment edit");
    knot.wait_serial(after, "a fragment edit");
    assert_same_answers(server.dns, &knot, "a fragment edit");
    assert_eq!(
        answer_set(knot.dns, "db.svc.internal.", RecordType::A)
            .1
            .len(),
        3
    );
    let log = knot.log();
    let transfers = |kind: &str| {
        log.lines()
            .filter(|l| l.contains(&format!("{kind}, incoming")) && l.contains("finished"))
            .count()
    };
    assert_eq!(transfers("AXFR"), 1, "one AXFR, the first load:\n{log}");
    assert!(transfers("IXFR") >= 4, "every change by IXFR:\n{log}");
    let ours = server.log();
    assert!(ours.contains("mode=incremental"), "{ours}");
}

/// Waits until beacon's serial differs from `before` and returns it.
fn next_serial(server: &TestServer, before: u32, what: &str) -> u32 {
    wait_until(Duration::from_secs(5), || {
        let now = server.serial();
        (now != before).then_some(now)
    })
    .unwrap_or_else(|| panic!("{what}: beacon's serial never moved"))
}

#[test]
fn nsd_follows_changes_by_ixfr_and_answers_as_beacon_does() {
    if !have_tool("nsd") {
        return;
    }
    let nsd_port = free_port();
    let notify = format!("127.0.0.1:{nsd_port}");
    let server = beacon(&["--notify", &notify]);
    register_first_two(&server);
    let nsd = Secondary::nsd(
        nsd_port,
        server.dns,
        None,
        tempfile::tempdir().expect("dir"),
    );
    nsd.wait_serial(server.serial(), "first load");
    assert_same_answers(server.dns, &nsd, "after the first transfer");
    for (what, datagram) in [
        (
            "a new instance",
            "beacon/1 service=web instance=w3 port=9090 addr=10.0.0.3",
        ),
        (
            "a removal",
            "beacon/1 service=web instance=w1 port=8080 state=down",
        ),
    ] {
        let before = server.serial();
        server.beat(datagram);
        let after = next_serial(&server, before, what);
        nsd.wait_serial(after, what);
        assert_same_answers(server.dns, &nsd, what);
        let theirs = nsd.log();
        assert!(
            theirs.contains(&format!("received update to serial {after}")),
            "{what}: NSD's log:\n{theirs}"
        );
    }
    let ours = server.log();
    let incremental = ours
        .lines()
        .filter(|l| l.contains("kind=IXFR mode=incremental"))
        .count();
    // NSD's log does not name the kind of transfer; ours does.
    assert!(incremental >= 2, "NSD took the changes by IXFR:\n{ours}");
}

/// A BIND-format key file for `secret`, named `xfr`.
fn key_file(dir: &Path, secret: &str) -> String {
    let path = dir.join("xfr.key");
    std::fs::write(
        &path,
        format!("key \"xfr\" {{ algorithm hmac-sha256; secret \"{secret}\"; }};\n"),
    )
    .expect("key file");
    path.display().to_string()
}

/// A beacon whose transfers need key `xfr` (secret [`SECRET`], in a key
/// file in the returned folder); unsigned heartbeats still register.
fn keyed_beacon() -> (tempfile::TempDir, TestServer) {
    let keys = tempfile::tempdir().expect("dir");
    let key = key_file(keys.path(), SECRET);
    let server = beacon(&[
        "--keys",
        &key,
        "--auth",
        "optional",
        "--transfer-key",
        "xfr",
    ]);
    (keys, server)
}

/// kdig's AXFR of the service zone over TCP with `extra` flags (a key):
/// everything it printed.
fn kdig_axfr(server: &TestServer, extra: &[&str]) -> String {
    let output = Command::new("kdig")
        .args(["@127.0.0.1", "-p", &server.dns.port().to_string(), "+tcp"])
        .args(extra)
        .args(["svc.internal.", "AXFR"])
        .output()
        .expect("kdig");
    String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
}

#[test]
fn with_a_transfer_key_only_signed_transfers_pass_and_replies_are_signed() {
    if !have_tool("knotd") || !have_tool("kdig") {
        return;
    }
    let (_keys, server) = keyed_beacon();
    register_first_two(&server);

    // Knot with the key: loads the zone, signed.
    let good = Secondary::knot(
        free_port(),
        &[server.dns],
        Some(("xfr", SECRET)),
        tempfile::tempdir().expect("dir"),
    );
    good.wait_serial(server.serial(), "signed AXFR");
    assert_same_answers(server.dns, &good, "signed AXFR");

    // Knot with the wrong secret: refused, and its log says why.
    let bad = Secondary::knot(
        free_port(),
        &[server.dns],
        Some(("xfr", WRONG_SECRET)),
        tempfile::tempdir().expect("dir"),
    );
    let said = wait_until(Duration::from_secs(10), || {
        let log = bad.log();
        (log.contains("BADSIG") || log.contains("bad signature") || log.contains("TSIG"))
            .then_some(log)
    });
    assert!(said.is_some(), "Knot's log:\n{}", bad.log());
    assert_eq!(
        bad.serial(),
        None,
        "the wrongly keyed secondary has no zone"
    );

    // kdig: unsigned is refused; signed gets a signed transfer (kdig
    // checks every message's TSIG).
    let kdig = |extra: &[&str]| kdig_axfr(&server, extra);
    let unsigned = kdig(&[]);
    assert!(unsigned.contains("REFUSED"), "{unsigned}");
    let signed = kdig(&["-y", &format!("hmac-sha256:xfr:{SECRET}")]);
    assert!(
        signed.contains("_web._tcp.svc.internal.") && !signed.contains("failed"),
        "{signed}"
    );
    let wrong = kdig(&["-y", &format!("hmac-sha256:xfr:{WRONG_SECRET}")]);
    assert!(
        wrong.contains("NOTAUTH") || wrong.contains("BADSIG"),
        "{wrong}"
    );
    let ours = server.log();
    assert!(ours.contains("refused a zone transfer"), "{ours}");
}

#[test]
fn a_secondary_behind_the_history_gets_the_whole_zone_and_catches_up() {
    if !have_tool("knotd") {
        return;
    }
    let port = free_port();
    let notify = format!("127.0.0.1:{port}");
    let server = beacon(&["--notify", &notify, "--ixfr-history", "2"]);
    register_first_two(&server);
    let knot = Secondary::knot(port, &[server.dns], None, tempfile::tempdir().expect("dir"));
    knot.wait_serial(server.serial(), "first load");
    let dir = knot.stop();

    // Four changes while it is down: more than the two serials kept.
    for i in 3..7 {
        let before = server.serial();
        server.beat(&format!(
            "beacon/1 service=web instance=w{i} port=8080 addr=10.0.0.{i}"
        ));
        next_serial(&server, before, "a change while the secondary is down");
    }
    let knot = Secondary::knot(port, &[server.dns], None, dir);
    knot.wait_serial(server.serial(), "after its restart");
    assert_same_answers(server.dns, &knot, "after catching up");
    let ours = server.log();
    assert!(
        ours.lines().any(|l| l.contains("kind=IXFR mode=full")),
        "an IXFR from a serial older than the history got the whole zone:\n{ours}"
    );
    assert!(knot.log().contains("IXFR, incoming"), "{}", knot.log());
}

#[test]
fn a_secondary_of_two_primaries_follows_the_one_left_and_both_catch_up() {
    if !have_tool("knotd") {
        return;
    }
    let port = free_port();
    let notify = format!("127.0.0.1:{port}");
    // Two primaries on different loopback addresses; every heartbeat goes
    // to both (as `beacon beat --server A --server B` sends them).
    let one = beacon(&["--notify", &notify, "--dns", "127.0.0.1:0"]);
    let two = beacon(&[
        "--notify",
        &notify,
        "--dns",
        "127.0.0.2:0",
        "--heartbeat",
        "127.0.0.2:0",
    ]);
    for datagram in [W1, W2] {
        one.beat(datagram);
        two.beat(datagram);
    }
    for server in [&one, &two] {
        server.await_reply("_web._tcp.svc.internal.", RecordType::SRV, |r| {
            r.answers.len() == 2
        });
    }
    // Put the second primary's serial ahead (a service that comes and
    // goes), so that the secondary loads from it and, once it is gone,
    // must be brought past it by the first: every run takes that path.
    let mut ahead = two.serial();
    for state in ["up", "down", "up", "down"] {
        two.beat(&format!(
            "beacon/1 service=bump instance=b2 port=1 addr=10.0.0.9 state={state}"
        ));
        ahead = next_serial(&two, ahead, "the second primary moving ahead");
    }
    let knot = Secondary::knot(
        port,
        &[one.dns, two.dns],
        None,
        tempfile::tempdir().expect("dir"),
    );
    let newest = |a: u32, b: u32| if common::serial_gt(a, b) { a } else { b };
    knot.wait_serial(newest(one.serial(), two.serial()), "first load");

    // One primary goes away: changes still arrive through the other.
    let (dns, heartbeat) = (two.dns.to_string(), two.heartbeat.to_string());
    let two_log = two.terminate_and_log();
    assert!(two_log.contains("shutting down"));
    let before = one.serial();
    let loaded = knot.serial().expect("serial");
    one.beat("beacon/1 service=web instance=w3 port=9090 addr=10.0.0.3");
    let mut after = next_serial(&one, before, "a change with one primary down");
    // The secondary follows the primary with the higher serial (README,
    // Replication): if it last loaded the other one's, which was ahead,
    // changes that leave nothing behind (a service that comes and goes)
    // move this one's serial past it.
    while !common::serial_gt(after, loaded) {
        for state in ["up", "down"] {
            let before = after;
            one.beat(&format!(
                "beacon/1 service=bump instance=b1 port=1 addr=10.0.0.9 state={state}"
            ));
            after = next_serial(&one, before, "a change to pass the other primary");
        }
    }
    knot.wait_serial(after, "a change with one primary down");
    assert_same_answers(one.dns, &knot, "with one primary down");

    // It comes back (same address, a fresh state directory) and catches
    // up from the beats alone, as senders send them every interval.
    let two = beacon(&[
        "--notify",
        &notify,
        "--dns",
        &dns,
        "--heartbeat",
        &heartbeat,
    ]);
    for datagram in [
        W1,
        W2,
        "beacon/1 service=web instance=w3 port=9090 addr=10.0.0.3",
    ] {
        two.beat(datagram);
    }
    two.await_reply("_web._tcp.svc.internal.", RecordType::SRV, |r| {
        r.answers.len() == 3
    });
    for (name, rtype) in QUESTIONS {
        assert_eq!(
            answer_set(one.dns, name, *rtype),
            answer_set(two.dns, name, *rtype),
            "the restarted primary answers {name} {rtype} as the other does"
        );
    }
    // Another change, through both: the secondary follows it.
    let before = knot.serial().expect("serial");
    for server in [&one, &two] {
        server.beat("beacon/1 service=web instance=w1 port=8080 state=down");
    }
    let moved = wait_until(Duration::from_secs(15), || {
        knot.serial().filter(|now| common::serial_gt(*now, before))
    });
    assert!(
        moved.is_some(),
        "the secondary never moved on:\n{}",
        knot.log()
    );
    let settled = wait_until(Duration::from_secs(15), || {
        QUESTIONS
            .iter()
            .all(|(name, rtype)| {
                answer_set(one.dns, name, *rtype) == answer_set(knot.dns, name, *rtype)
            })
            .then_some(())
    });
    assert!(
        settled.is_some(),
        "the secondary never matched:\n{}",
        knot.log()
    );
    assert_same_answers(two.dns, &knot, "both primaries back");
}

#[test]
fn beat_sends_every_heartbeat_to_every_server() {
    let one = TestServer::start(&[]);
    let two = TestServer::start(&["--dns", "127.0.0.2:0", "--heartbeat", "127.0.0.2:0"]);
    let status = Command::new(common::BEACON)
        .args([
            "beat",
            "--once",
            "--service",
            "web",
            "--port",
            "80",
            "--instance",
            "a",
        ])
        .args(["--addr", "10.0.0.1"])
        .args(["--server", &one.heartbeat.to_string()])
        .args(["--server", &two.heartbeat.to_string()])
        .stderr(Stdio::null())
        .status()
        .expect("beat");
    assert!(status.success());
    for server in [&one, &two] {
        server.await_reply("web.svc.internal.", RecordType::A, |r| r.answers.len() == 1);
    }
}

/// Inside its own mount and network namespaces: two beacons on 127.0.0.1
/// and 127.0.0.2, a private /etc/hosts naming `primaries`, and `beacon
/// beat --server primaries:5301`; then a second address is added to the
/// name while beat runs.
const RESOLVE_SCRIPT: &str = r#"
set -u
ip link set lo up
tmp=$(mktemp -d)
echo "127.0.0.1 primaries" > "$tmp/hosts"
echo "hosts: files" > "$tmp/nsswitch.conf"
mount --bind "$tmp/hosts" /etc/hosts
mount --bind "$tmp/nsswitch.conf" /etc/nsswitch.conf
"$BEACON" serve --dns 127.0.0.1:53 --heartbeat 127.0.0.1:5301 --zones /nonexistent --state-dir "$tmp/s1" 2>"$tmp/log1" &
one=$!
"$BEACON" serve --dns 127.0.0.2:53 --heartbeat 127.0.0.2:5301 --http off --zones /nonexistent --state-dir "$tmp/s2" 2>"$tmp/log2" &
two=$!
for _ in $(seq 100); do grep -q "serving the zone fragments" "$tmp/log1" && grep -q "serving the zone fragments" "$tmp/log2" && break; sleep 0.05; done
"$BEACON" beat --service web --port 80 --instance a --addr 10.0.0.1 --server primaries:5301 --interval 0.2 2>"$tmp/beat" &
beat=$!
sleep 1
echo "== before"; grep -c "registered service=web" "$tmp/log1"; grep -c "registered service=web" "$tmp/log2"
printf '127.0.0.1 primaries\n127.0.0.2 primaries\n' > "$tmp/hosts"
sleep 1
echo "== after"; grep -c "registered service=web" "$tmp/log1"; grep -c "registered service=web" "$tmp/log2"
kill "$beat"; wait "$beat"
sleep 0.3
echo "== down"; grep -c "deregistered" "$tmp/log1"; grep -c "deregistered" "$tmp/log2"
kill "$one" "$two"; wait "$one" "$two"
echo "== end"
"#;

#[test]
fn beat_looks_server_names_up_again_at_every_interval() {
    if !(have_tool("unshare") && have_tool("ip")) {
        return;
    }
    let out = Command::new("unshare")
        .args(["--mount", "--net", "--fork", "bash", "-c", RESOLVE_SCRIPT])
        .env("BEACON", common::BEACON)
        .output()
        .expect("run unshare");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !stdout.contains("== end") {
        assert!(
            std::env::var_os("CI").is_none(),
            "namespace test failed:\n{stdout}\n{stderr}"
        );
        eprintln!("skipping: cannot create namespaces here: {stderr}");
        return;
    }
    let section = |name: &str| -> Vec<String> {
        stdout
            .split(&format!("== {name}\n"))
            .nth(1)
            .unwrap_or_default()
            .lines()
            .take(2)
            .map(str::to_string)
            .collect()
    };
    assert_eq!(
        section("before"),
        ["1", "0"],
        "only the first address at first:\n{stdout}"
    );
    assert_eq!(
        section("after"),
        ["1", "1"],
        "the added address gets beats:\n{stdout}"
    );
    assert_eq!(
        section("down"),
        ["1", "1"],
        "the final down reaches both:\n{stdout}"
    );
}

/// Waits until `secondary` answers every question as `primary` does.
fn wait_same_answers(primary: SocketAddr, secondary: &Secondary, when: &str) {
    let same = wait_until(Duration::from_secs(20), || {
        // Until it listens, a query panics (connection refused).
        std::panic::catch_unwind(|| {
            QUESTIONS.iter().all(|(name, rtype)| {
                answer_set(primary, name, *rtype) == answer_set(secondary.dns, name, *rtype)
            })
        })
        .unwrap_or(false)
        .then_some(())
    });
    if same.is_none() {
        eprintln!("{} log:\n{}", secondary.name, secondary.log());
        assert_same_answers(primary, secondary, when);
    }
}

#[test]
fn readme_secondary_configs_work_as_written() {
    if !(have_tool("knotd") && have_tool("nsd") && have_tool("named")) {
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    let key_text = Command::new(common::BEACON)
        .args(["keygen", "xfr"])
        .output()
        .expect("keygen")
        .stdout;
    let key_text = String::from_utf8(key_text).expect("utf-8");
    let key_path = dir.path().join("xfr.key");
    std::fs::write(&key_path, &key_text).expect("key file");
    let secret = key_text
        .split("secret \"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a secret in the key file")
        .to_string();

    // The two primaries, with the README's flags on free ports.
    let port = loop {
        let port = free_port();
        if std::net::UdpSocket::bind(("127.0.0.2", port)).is_ok()
            && std::net::TcpListener::bind(("127.0.0.2", port)).is_ok()
        {
            break port;
        }
    };
    let (knot_port, nsd_port, bind_port) = (free_port(), free_port(), free_port());
    let command = readme_block("sh", "--transfer-key");
    let command = command
        .replace("\\\n", " ")
        .replace("127.0.0.1:5353", &format!("127.0.0.1:{knot_port}"))
        .replace(
            "127.0.0.1:5354",
            &format!("127.0.0.1:{nsd_port} --notify 127.0.0.1:{bind_port}"),
        )
        .replace("xfr.key", &key_path.display().to_string());
    let args: Vec<String> = command
        .split_whitespace()
        .skip_while(|word| *word != "serve")
        .skip(1)
        .map(str::to_string)
        .collect();
    let start = |ip: &str| {
        let mut flags: Vec<String> = args
            .iter()
            .map(|a| a.replace("127.0.0.1:5300", &format!("{ip}:{port}")))
            .collect();
        flags.extend([
            "--heartbeat".into(),
            format!("{ip}:0"),
            "--zones".into(),
            zones_dir(),
        ]);
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        TestServer::start(&flags)
    };
    let a = start("127.0.0.1");
    let b = start("127.0.0.2");
    for server in [&a, &b] {
        server.beat(W1);
        server.beat(W2);
        server.await_reply("_web._tcp.svc.internal.", RecordType::SRV, |r| {
            r.answers.len() == 2
        });
    }

    // Knot, as written.
    let knot_dir = tempfile::tempdir().expect("dir");
    let d = knot_dir.path().display().to_string();
    let conf = readme_block("yaml", "master: [beacon-a, beacon-b]")
        .replace("server:\n", &format!("server:\n    rundir: {d}\n"))
        .replace("127.0.0.1@5353", &format!("127.0.0.1@{knot_port}"))
        .replace("@5300", &format!("@{port}"))
        .replace("/var/lib/knot", &d)
        .replace("SECRET-FROM-xfr.key", &secret)
        + "\nlog:\n  - target: stderr\n    any: info\n";
    std::fs::write(knot_dir.path().join("knot.conf"), conf).expect("conf");
    let mut command = Command::new("knotd");
    command.args(["-c", &format!("{d}/knot.conf")]);
    let knot = Secondary::spawn(command, knot_port, knot_dir, "knotd");

    // NSD, as written (with the paths its package would add).
    let nsd_dir = tempfile::tempdir().expect("dir");
    let d = nsd_dir.path().display().to_string();
    let conf = readme_block("conf", "request-xfr")
        .replace(
            "    zonesdir: /var/lib/nsd\n",
            &format!(
                "    zonesdir: {d}\n    pidfile: {d}/nsd.pid\n    xfrdfile: {d}/xfrd.state\n    xfrdir: {d}\n    zonelistfile: {d}/zone.list\n    database: \"\"\n    username: \"\"\n    chroot: \"\"\n    logfile: {d}/nsd.log\n    verbosity: 2\n"
            ),
        )
        .replace("127.0.0.1@5354", &format!("127.0.0.1@{nsd_port}"))
        .replace("@5300", &format!("@{port}"))
        .replace("SECRET-FROM-xfr.key", &secret)
        + "\nremote-control:\n    control-enable: no\n";
    std::fs::write(nsd_dir.path().join("nsd.conf"), conf).expect("conf");
    let mut command = Command::new("nsd");
    command.args(["-d", "-c", &format!("{d}/nsd.conf")]);
    let nsd = Secondary::spawn(command, nsd_port, nsd_dir, "nsd");

    // BIND, as written (with the files it would keep under /run).
    let bind_dir = tempfile::tempdir().expect("dir");
    let d = bind_dir.path().display().to_string();
    let conf = readme_block("conf", "type secondary")
        .replace("/etc/bind/xfr.key", &key_path.display().to_string())
        .replace(
            "    directory \"/var/cache/bind\";\n",
            &format!(
                "    directory \"{d}\";\n    pid-file \"{d}/named.pid\";\n    session-keyfile \"{d}/session.key\";\n    listen-on-v6 {{ none; }};\n"
            ),
        )
        .replace("port 5355", &format!("port {bind_port}"))
        .replace("port 5300", &format!("port {port}"));
    std::fs::write(bind_dir.path().join("named.conf"), conf).expect("conf");
    let mut command = Command::new("named");
    command.args(["-g", "-c", &format!("{d}/named.conf")]);
    let bind = Secondary::spawn(command, bind_port, bind_dir, "named");

    for secondary in [&knot, &nsd, &bind] {
        wait_same_answers(a.dns, secondary, "the first load, signed");
    }
    // A change through both primaries reaches every secondary.
    for server in [&a, &b] {
        server.beat("beacon/1 service=web instance=w3 port=9090 addr=10.0.0.3");
    }
    for secondary in [&knot, &nsd, &bind] {
        wait_same_answers(a.dns, secondary, "a change, notified");
    }
    let logs = a.log() + &b.log();
    assert!(
        logs.contains("signed=true"),
        "transfers were signed:\n{logs}"
    );
    assert!(!logs.contains("signed=false"), "{logs}");
    assert!(!logs.contains("refused a zone transfer"), "{logs}");
}

/// The records of an AXFR or IXFR over TCP, read with kdig (which checks
/// the framing and the SOA at both ends).
fn kdig_transfer(server: SocketAddr, zone: &str, kind: &str) -> Vec<String> {
    let output = Command::new("kdig")
        .args([
            "@127.0.0.1",
            "-p",
            &server.port().to_string(),
            "+noall",
            "+answer",
        ])
        .args([zone, kind])
        .output()
        .expect("kdig");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

#[test]
fn transfers_cover_reverse_zones_and_answer_every_shape_of_request() {
    if !have_tool("kdig") {
        return;
    }
    let server = beacon(&["--reverse-zone", "10.in-addr.arpa"]);
    register_first_two(&server);
    // The reverse zone, whole: SOA first and last, a PTR per address.
    let records = kdig_transfer(server.dns, "10.in-addr.arpa.", "AXFR");
    assert!(
        records.first().is_some_and(|r| r.contains(" SOA ")),
        "{records:?}"
    );
    assert!(
        records.last().is_some_and(|r| r.contains(" SOA ")),
        "{records:?}"
    );
    assert!(
        records.contains(&"1.0.0.10.in-addr.arpa. 5 IN PTR w1.web.svc.internal.".to_string()),
        "{records:?}"
    );

    // IXFR from the current serial: the SOA alone; over UDP: the SOA.
    let serial = server.serial();
    let current = kdig_transfer(server.dns, "svc.internal.", &format!("IXFR={serial}"));
    assert_eq!(current.len(), 1, "{current:?}");
    let mut ixfr = question("svc.internal.", RecordType::IXFR, false);
    let soa = hickory_proto::rr::rdata::SOA::new(
        hickory_proto::rr::Name::root(),
        hickory_proto::rr::Name::root(),
        serial.wrapping_sub(5),
        0,
        0,
        0,
        0,
    );
    ixfr.add_authority(hickory_proto::rr::Record::from_rdata(
        hickory_proto::rr::Name::from_ascii("svc.internal.").expect("name"),
        0,
        RData::SOA(soa),
    ));
    let over_udp = query_udp(server.dns, &ixfr);
    assert_eq!(over_udp.answers.len(), 1);
    assert_eq!(over_udp.answers[0].record_type(), RecordType::SOA);
    let axfr_udp = query_udp(
        server.dns,
        &question("svc.internal.", RecordType::AXFR, false),
    );
    assert_eq!(axfr_udp.metadata.response_code, ResponseCode::FormErr);

    // A change, then IXFR from the serial before it: just that change.
    server.beat("beacon/1 service=web instance=w3 port=9090 addr=10.0.0.3");
    let after = next_serial(&server, serial, "a new instance");
    let changes = wait_until(Duration::from_secs(5), || {
        let records = kdig_transfer(server.dns, "svc.internal.", &format!("IXFR={serial}"));
        records
            .first()
            .is_some_and(|r| r.contains(&after.to_string()))
            .then_some(records)
    })
    .expect("an IXFR up to the new serial");
    assert!(
        changes
            .iter()
            .any(|r| r.starts_with("w3.web.svc.internal. 5 IN A 10.0.0.3")),
        "{changes:?}"
    );
    assert!(changes.len() < 15, "only the change: {changes:?}");
    let reverse = kdig_transfer(server.dns, "10.in-addr.arpa.", &format!("IXFR={serial}"));
    assert!(
        reverse.contains(&"3.0.0.10.in-addr.arpa. 5 IN PTR w3.web.svc.internal.".to_string()),
        "{reverse:?}"
    );
    // A zone not served.
    let other = query_tcp(
        server.dns,
        &question("other.example.", RecordType::AXFR, false),
    );
    assert_eq!(other.metadata.response_code, ResponseCode::NotAuth);

    // Without --allow-transfer: REFUSED.
    let closed = TestServer::start(&[]);
    let refused = query_tcp(
        closed.dns,
        &question("svc.internal.", RecordType::AXFR, false),
    );
    assert_eq!(refused.metadata.response_code, ResponseCode::Refused);
    let log = closed.log();
    assert!(log.contains("refused a zone transfer"), "{log}");
}

#[test]
fn sighup_rereads_the_transfer_key() {
    if !have_tool("kdig") {
        return;
    }
    let (keys, server) = keyed_beacon();
    let kdig = |secret: &str| kdig_axfr(&server, &["-y", &format!("hmac-sha256:xfr:{secret}")]);
    assert!(kdig(SECRET).contains("IN\tSOA"), "{}", kdig(SECRET));
    key_file(keys.path(), WRONG_SECRET);
    common::signal(server.pid(), "HUP");
    server.wait_for_log("SIGHUP: key files read again");
    let new_key = kdig(WRONG_SECRET);
    assert!(
        new_key.contains("IN\tSOA") && !new_key.contains("NOTAUTH"),
        "{new_key}"
    );
    let old_key = kdig(SECRET);
    assert!(
        old_key.contains("NOTAUTH") || old_key.contains("BADSIG"),
        "{old_key}"
    );
}
