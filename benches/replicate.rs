//! Replication: how fast a change reaches a Knot secondary, what one
//! change costs as IXFR in a large zone, and a full AXFR of that zone from
//! beacon beside Knot as the primary.
//!
//! Run: `cargo bench --bench replicate` (BENCH_REPLICATE_INSTANCES,
//! default 100000; BENCH_REPLICATE_CHANGES, default 200; the smoke run in
//! `cargo test` uses 1,000 and 10). Steps, all on 127.0.0.1:
//! 1. a release beacon (`--allow-transfer 127.0.0.1/32 --notify` to the
//!    secondary, default `--notify-delay`) registers the instances
//!    (services of 100);
//! 2. a Knot secondary starts and loads the zone by AXFR (its log gives
//!    time, messages and bytes);
//! 3. changes one at a time: a heartbeat registers a new instance, and the
//!    secondary is asked every 2 ms until it answers it; p50, p99, max;
//! 4. one more change, then an IXFR from the serial before it (our own
//!    TCP client): bytes and records;
//! 5. beacon's AXFR saved as a zone file, loaded by a Knot primary, and a
//!    fresh Knot secondary loads the same records from it: time and size
//!    beside step 2's.
//!
//! Every process stops by itself (dropped servers are killed by PID).

#![allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]

mod harness;
mod load;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use harness::{
    Server, blast, env_or, free_port, numbered_beat, snapshot_count, start_beacon_in, start_peer,
    wait_every, wait_for,
};
use hickory_proto::op::{Message, Query};
use hickory_proto::rr::rdata::SOA;
use hickory_proto::rr::{Name, RData, Record, RecordType};

const PER_SERVICE: usize = 100;
const ZONE: &str = "svc.internal.";

/// One UDP question; the reply, if one came within 200 ms.
fn ask(server: SocketAddr, name: &str, rtype: RecordType) -> Option<Message> {
    let socket = UdpSocket::bind("127.0.0.1:0").ok()?;
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .ok()?;
    let mut query = Message::query();
    query.metadata.id = fastrand::u16(..);
    query.add_query(Query::query(Name::from_ascii(name).ok()?, rtype));
    socket.send_to(&query.to_vec().ok()?, server).ok()?;
    let mut buffer = [0u8; 4096];
    let (len, _) = socket.recv_from(&mut buffer).ok()?;
    Message::from_vec(&buffer[..len]).ok()
}

fn serial(server: SocketAddr) -> Option<u32> {
    let reply = ask(server, ZONE, RecordType::SOA)?;
    match reply.answers.first().map(|r| &r.data) {
        Some(RData::SOA(soa)) => Some(soa.serial),
        _ => None,
    }
}

/// A Knot secondary of `primary` in `dir`, notified on its port, logging
/// to `dir/knot.log`.
fn knot_secondary(dir: &Path, primary: SocketAddr, port: u16) -> Server {
    std::fs::create_dir_all(dir).expect("dir");
    let d = dir.display();
    let conf = format!(
        "server:\n  rundir: \"{d}\"\n  listen: 127.0.0.1@{port}\n  udp-workers: 1\n  tcp-workers: 1\n  background-workers: 1\n\
         log:\n  - target: \"{d}/knot.log\"\n    any: info\n\
         database:\n  storage: \"{d}\"\n\
         remote:\n  - id: primary\n    address: {}@{}\n\
         acl:\n  - id: notify\n    address: {}\n    action: notify\n\
         zone:\n  - domain: {ZONE}\n    storage: \"{d}\"\n    master: primary\n    acl: notify\n    zonefile-load: none\n    zonefile-sync: -1\n    journal-content: all\n    semantic-checks: off\n",
        primary.ip(),
        primary.port(),
        primary.ip(),
    );
    let path = dir.join("knot.conf");
    std::fs::write(&path, conf).expect("knot.conf");
    let mut command = Command::new("knotd");
    command.arg("-c").arg(&path);
    start_peer("knot", command, port)
}

/// A Knot primary serving `zone_file`, allowing transfers from loopback.
fn knot_primary(dir: &Path, zone_file: &Path) -> Server {
    std::fs::create_dir_all(dir).expect("dir");
    let port = free_port();
    let d = dir.display();
    let conf = format!(
        "server:\n  rundir: \"{d}\"\n  listen: 127.0.0.1@{port}\n  udp-workers: 1\n  tcp-workers: 1\n  background-workers: 1\n\
         log:\n  - target: \"{d}/knot.log\"\n    any: info\n\
         database:\n  storage: \"{d}\"\n\
         acl:\n  - id: transfer\n    address: 127.0.0.1\n    action: transfer\n\
         zone:\n  - domain: {ZONE}\n    file: \"{}\"\n    acl: transfer\n    zonefile-sync: -1\n    journal-content: none\n    semantic-checks: off\n",
        zone_file.display(),
    );
    let path = dir.join("knot.conf");
    std::fs::write(&path, conf).expect("knot.conf");
    let mut command = Command::new("knotd");
    command.arg("-c").arg(&path);
    start_peer("knot", command, port)
}

/// What a Knot log says of its incoming AXFR: the line's "finished, …".
fn axfr_logged(log: &Path) -> String {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .find(|l| l.contains("AXFR, incoming") && l.contains("finished"))
        .and_then(|l| l.split("finished, ").nth(1))
        .unwrap_or("–")
        .to_string()
}

/// Waits until `server` serves serial `target` (or a later one).
fn wait_serial(server: SocketAddr, target: u32, timeout: Duration) -> bool {
    wait_for(timeout, || {
        serial(server)
            .filter(|s| *s == target || s.wrapping_sub(target) < 0x8000_0000)
            .map(|_| ())
    })
    .is_some()
}

/// An IXFR from `from` over TCP: bytes and records of every message
/// (read until the server falls silent for 300 ms).
fn ixfr(server: SocketAddr, from: u32) -> (usize, usize) {
    let mut query = Message::query();
    query.metadata.id = 7;
    let zone = Name::from_ascii(ZONE).expect("zone");
    query.add_query(Query::query(zone.clone(), RecordType::IXFR));
    let soa = SOA::new(Name::root(), Name::root(), from, 0, 0, 0, 0);
    query.add_authority(Record::from_rdata(zone, 0, RData::SOA(soa)));
    let bytes = query.to_vec().expect("encode");
    let mut stream = TcpStream::connect(server).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&bytes);
    stream.write_all(&framed).expect("send");
    let (mut total, mut records) = (0, 0);
    loop {
        let mut len = [0u8; 2];
        if stream.read_exact(&mut len).is_err() {
            break;
        }
        let mut message = vec![0u8; usize::from(u16::from_be_bytes(len))];
        if stream.read_exact(&mut message).is_err() {
            break;
        }
        total += message.len() + 2;
        records += Message::from_vec(&message).map_or(0, |m| m.answers.len());
    }
    (total, records)
}

/// Beacon's AXFR as a zone file Knot can load (kdig's output, comments
/// and the closing SOA left out).
fn save_axfr(server: SocketAddr, file: &Path) -> usize {
    let output = Command::new("kdig")
        .args(["@127.0.0.1", "-p", &server.port().to_string(), ZONE, "AXFR"])
        .args(["+nocomments", "+nostats"])
        .stderr(Stdio::null())
        .output()
        .expect("kdig");
    let text = String::from_utf8_lossy(&output.stdout);
    let mut records: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
        .collect();
    records.pop(); // the closing SOA
    std::fs::write(file, records.join("\n") + "\n").expect("zone file");
    records.len()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[at.min(sorted.len() - 1)]
}

fn main() {
    let smoke = harness::smoke();
    let instances: usize = env_or(
        "BENCH_REPLICATE_INSTANCES",
        if smoke { 1_000 } else { 100_000 },
    );
    let changes: usize = env_or("BENCH_REPLICATE_CHANGES", if smoke { 10 } else { 200 });
    let dir = tempfile::tempdir().expect("temp dir");
    let zones = dir.path().join("zones");
    std::fs::create_dir_all(&zones).expect("zones");
    let secondary_port = free_port();
    let notify = format!("127.0.0.1:{secondary_port}");
    let cap = (instances * 2).to_string();
    let (beacon, _) = start_beacon_in(
        &zones,
        &[
            "--allow-transfer",
            "127.0.0.1/32",
            "--notify",
            &notify,
            "--max-instances",
            &cap,
            "--max-instances-per-service",
            "1000",
            "--protect-threshold",
            "0",
        ],
    );
    let state: PathBuf = zones.parent().expect("parent").join("beacon-state-0");
    let datagrams: Vec<Vec<u8>> = (0..instances.div_ceil(PER_SERVICE))
        .flat_map(|s| (0..PER_SERVICE).map(move |i| numbered_beat(s, i)))
        .take(instances)
        .collect();
    let target = beacon.heartbeat.expect("heartbeat address");
    for _round in 0..60 {
        let seconds = (datagrams.len() as f64 / 200_000.0).max(0.05);
        blast(
            target,
            &datagrams,
            200_000,
            Duration::from_secs_f64(seconds),
        );
        let whole = wait_for(Duration::from_secs(10), || {
            (snapshot_count(&state.join("registry")) == Some(instances)).then_some(())
        });
        if whole.is_some() {
            break;
        }
    }
    assert_eq!(
        snapshot_count(&state.join("registry")),
        Some(instances),
        "all registered"
    );

    // The secondary's first load.
    let secondary_dir = dir.path().join("secondary");
    let started = Instant::now();
    let secondary = knot_secondary(&secondary_dir, beacon.dns, secondary_port);
    let current = serial(beacon.dns).expect("beacon serial");
    assert!(
        wait_serial(
            secondary.dns,
            current,
            Duration::from_secs(env_or("BENCH_REPLICATE_WAIT", 120))
        ),
        "the secondary loaded the zone; its log:\n{}",
        std::fs::read_to_string(secondary_dir.join("knot.log")).unwrap_or_default()
    );
    let first_load = started.elapsed();
    let from_beacon = axfr_logged(&secondary_dir.join("knot.log"));

    // Heartbeat → answered by the secondary.
    let socket = UdpSocket::bind("127.0.0.1:0").expect("socket");
    let mut latencies = Vec::with_capacity(changes);
    let mut missed = 0;
    for k in 0..changes {
        let datagram = format!(
            "beacon/1 service=lat instance=n{k} port=80 addr=10.250.{}.{} ttl=600",
            k / 250,
            k % 250 + 1
        );
        let name = format!("n{k}.lat.{ZONE}");
        let sent = Instant::now();
        socket.send_to(datagram.as_bytes(), target).expect("send");
        let answered = wait_every(Duration::from_millis(2), Duration::from_secs(10), || {
            ask(secondary.dns, &name, RecordType::A)
                .filter(|r| !r.answers.is_empty())
                .map(|_| ())
        });
        match answered {
            Some(()) => latencies.push(sent.elapsed()),
            None => missed += 1,
        }
        thread::sleep(Duration::from_millis(150));
    }
    latencies.sort();

    // One change as IXFR.
    let before = serial(beacon.dns).expect("serial");
    socket
        .send_to(
            b"beacon/1 service=s0 instance=extra port=80 addr=10.251.0.1 ttl=600",
            target,
        )
        .expect("send");
    wait_for(Duration::from_secs(5), || {
        serial(beacon.dns).filter(|s| *s != before).map(|_| ())
    })
    .expect("serial moved");
    thread::sleep(Duration::from_millis(300)); // the history catches up
    let (ixfr_bytes, ixfr_records) = ixfr(beacon.dns, before);

    // The same records from a Knot primary to a fresh Knot secondary.
    let zone_file = dir.path().join("knot-primary").join("svc.internal.zone");
    std::fs::create_dir_all(zone_file.parent().expect("dir")).expect("dir");
    let saved = save_axfr(beacon.dns, &zone_file);
    let knot = knot_primary(&dir.path().join("knot-primary"), &zone_file);
    let knot_serial = wait_for(
        Duration::from_secs(env_or("BENCH_REPLICATE_WAIT", 120)),
        || serial(knot.dns),
    )
    .expect("knot serves");
    let second_dir = dir.path().join("secondary-of-knot");
    let started = Instant::now();
    let second = knot_secondary(&second_dir, knot.dns, free_port());
    assert!(
        wait_serial(
            second.dns,
            knot_serial,
            Duration::from_secs(env_or("BENCH_REPLICATE_WAIT", 120))
        ),
        "the second secondary loaded the zone; its log:\n{}",
        std::fs::read_to_string(second_dir.join("knot.log")).unwrap_or_default()
    );
    let first_load_knot = started.elapsed();
    let from_knot = axfr_logged(&second_dir.join("knot.log"));

    println!("replication, {instances} instances ({saved} records in the zone)");
    println!("| measure | beacon | Knot as primary |");
    println!("|---|---|---|");
    println!(
        "| AXFR to a Knot secondary (its log: time, messages, bytes) | {from_beacon} | {from_knot} |"
    );
    println!(
        "| secondary start → serving the zone | {:.2} s | {:.2} s |",
        first_load.as_secs_f64(),
        first_load_knot.as_secs_f64()
    );
    println!("| IXFR for one new instance | {ixfr_bytes} bytes, {ixfr_records} records | – |");
    println!(
        "| heartbeat → answered by the secondary ({} changes, default --notify-delay) | p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms, {missed} missed | – |",
        latencies.len(),
        percentile(&latencies, 0.5).as_secs_f64() * 1000.0,
        percentile(&latencies, 0.99).as_secs_f64() * 1000.0,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1000.0,
    );
    if smoke {
        assert_eq!(missed, 0, "every change reached the secondary");
        assert!(
            ixfr_records > 0 && ixfr_records < 20,
            "one change is a small IXFR"
        );
    }
    drop((second, knot, secondary, beacon));
}
