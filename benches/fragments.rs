//! Zone fragment benchmark: start-up load of 100,000 records, and how soon
//! an edit is answered over DNS.
//!
//! Run with `cargo bench --bench fragments`. It starts the real `beacon`
//! binary on loopback port 0 with generated fragments in a temporary
//! folder, edits them the ways editors do, and after each write asks over
//! UDP, without pause, until the answer shows the change. The time from the
//! end of the write to that answer is the edit latency. Where
//! `named-checkzone` (Debian bind9-utils) is installed, it loads the same
//! 100,000 records in the same run, as a yardstick for the load figure.
//! Last, memory: the RSS beacon and Knot (when `knotd` is installed) need
//! for BENCH_MEMORY_RECORDS (1,000,000) A records, each less its RSS with
//! none, and beacon's RSS once the files are deleted again.
//!
//! Bounded: every wait gives up after 10 s, every loop has a fixed count,
//! and the server is killed at the end.

// Rates, shares and percentiles are f64; turning them back into counts
// and indices truncates on purpose.
#![allow(clippy::cast_possible_truncation)]

mod harness;
mod load;

use std::fmt::Write as _;
use std::fs;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::str::FromStr;
use std::thread;
use std::time::{Duration, Instant};

use harness::{Server, env_or, log_field, rss_kib, start_beacon_in, start_knot};
use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};

const FULL_RECORDS: usize = 100_000;
const FULL_EDITS_PER_KIND: usize = 100;

/// A started beacon and what its start-up took.
struct Started {
    server: Server,
    /// Fragment load time, as the server logs it.
    load_ms: f64,
    /// From spawning the process to its listening and fragments-loaded lines.
    start_ms: f64,
}

fn start(dir: &Path) -> Started {
    let began = Instant::now();
    let (server, startup) = start_beacon_in(dir, &[]);
    let start_ms = began.elapsed().as_secs_f64() * 1000.0;
    let load_ms = startup
        .iter()
        .find(|line| line.contains("zone fragments loaded"))
        .and_then(|line| log_field(line, "elapsed_ms"))
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN);
    Started {
        server,
        load_ms,
        start_ms,
    }
}

fn ask(socket: &UdpSocket, server: SocketAddr, name: &Name, id: u16) -> String {
    let mut msg = Message::new(id, MessageType::Query, OpCode::Query);
    msg.add_query(Query::query(name.clone(), RecordType::A));
    socket
        .send_to(&msg.to_vec().expect("encode"), server)
        .expect("send");
    let mut buf = [0u8; 4096];
    loop {
        let Ok((len, _)) = socket.recv_from(&mut buf) else {
            return String::new();
        };
        let Ok(reply) = Message::from_vec(&buf[..len]) else {
            continue;
        };
        if reply.metadata.id == id {
            return reply
                .answers
                .first()
                .map(|r| r.data.to_string())
                .unwrap_or_default();
        }
    }
}

/// Milliseconds from now until `name` answers `expected` (polled every
/// half millisecond).
fn wait_for(server: SocketAddr, name: &str, expected: &str) -> f64 {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let name = Name::from_str(name).expect("name");
    let began = Instant::now();
    let mut id = 0u16;
    while began.elapsed() < Duration::from_secs(10) {
        id = id.wrapping_add(1);
        if ask(&socket, server, &name, id) == expected {
            return began.elapsed().as_secs_f64() * 1000.0;
        }
        // A short pause: a client hammering the server would compete for
        // the two cores with the reload being measured.
        thread::sleep(Duration::from_micros(500));
    }
    panic!("{name} never answered {expected:?}");
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn summary(label: &str, mut samples: Vec<f64>) -> String {
    samples.sort_by(f64::total_cmp);
    format!(
        "| {label} | {} | {:.1} | {:.1} | {:.1} |",
        samples.len(),
        percentile(&samples, 50.0),
        percentile(&samples, 99.0),
        samples.last().copied().unwrap_or(f64::NAN)
    )
}

/// `count` A records named `h<first>`.. in `$ORIGIN`-relative form.
/// The address `records` gives record `i`.
fn address_of(i: usize) -> String {
    format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255)
}

fn records(first: usize, count: usize) -> String {
    let mut text = String::with_capacity(count * 32);
    text.push_str("$TTL 300\n");
    for i in first..first + count {
        let _ = writeln!(text, "h{i} IN A {}", address_of(i));
    }
    text
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Memory per record: beacon and Knot serving `count` A records, each
/// less its RSS serving none, and beacon after the files are deleted.
fn memory(base: &Path, count: usize) {
    const PER_FILE: usize = 250_000;
    let last = count - 1;
    let last_name = format!("h{last}.svc.internal.");
    let empty = base.join("memory-empty");
    let full = base.join("memory-full");
    fs::create_dir(&empty).expect("mkdir");
    fs::create_dir(&full).expect("mkdir");
    for first in (0..count).step_by(PER_FILE) {
        fs::write(
            full.join(format!("part{first}.zone")),
            records(first, PER_FILE.min(count - first)),
        )
        .expect("write");
    }
    let idle = start(&empty).server;
    let beacon_idle = rss_kib(idle.child.id());
    drop(idle);
    let loaded = start(&full);
    wait_for(loaded.server.dns, &last_name, &address_of(last));
    let beacon_full = rss_kib(loaded.server.child.id());
    for entry in fs::read_dir(&full).expect("read dir").flatten() {
        fs::remove_file(entry.path()).expect("remove");
    }
    wait_for(loaded.server.dns, &last_name, "");
    // The watcher gives freed memory back 2 s after a change.
    thread::sleep(Duration::from_secs(4));
    let beacon_after = rss_kib(loaded.server.child.id());
    drop(loaded);

    let per_record =
        |full: u64, idle: u64| (full.saturating_sub(idle) * 1024) as f64 / count as f64;
    println!("\n## Memory for {count} A records (RSS, MiB)\n");
    println!(
        "| server | serving none | serving them | bytes per record | vs Knot | after deleting the files |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    let beacon_bytes = per_record(beacon_full, beacon_idle);
    let mib = |kib: u64| kib as f64 / 1024.0;
    let knotd = Command::new("sh")
        .args(["-c", "command -v knotd"])
        .output()
        .is_ok_and(|o| o.status.success());
    let knot = knotd.then(|| {
        let head = "$ORIGIN svc.internal.\n@ 300 IN SOA ns hostmaster 1 60 10 86400 5\n@ 300 IN NS ns\nns 300 IN A 127.0.0.1\n";
        let rss_of = |label: &str, body: &str, probe: (&str, &str)| {
            let dir = base.join(format!("knot-{label}"));
            fs::create_dir_all(&dir).expect("mkdir");
            let zone = dir.join("svc.internal.zone");
            fs::write(&zone, format!("{head}{body}")).expect("write");
            let server = start_knot(&dir, "svc.internal.", &zone);
            wait_for(server.dns, probe.0, probe.1);
            rss_kib(server.child.id())
        };
        let idle = rss_of("empty", "", ("ns.svc.internal.", "127.0.0.1"));
        let full = rss_of("full", &records(0, count), (&last_name, &address_of(last)));
        (idle, full)
    });
    let versus = knot.map_or_else(
        || "–".to_string(),
        |(idle, full)| format!("{:.2}", beacon_bytes / per_record(full, idle)),
    );
    println!(
        "| beacon | {:.0} | {:.0} | {beacon_bytes:.0} | {versus} | {:.0} |",
        mib(beacon_idle),
        mib(beacon_full),
        mib(beacon_after)
    );
    if let Some((idle, full)) = knot {
        println!(
            "| Knot | {:.0} | {:.0} | {:.0} | 1.00 | – |",
            mib(idle),
            mib(full),
            per_record(full, idle)
        );
    } else {
        println!("\n(knotd is not installed: `apt-get install -y knot` to compare)");
    }
}

fn main() {
    // Run as a test (`cargo test --all-targets` passes no --bench), every
    // step runs at a small size, so a broken benchmark fails the suite.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let (per_file, records_total, edits_per_kind) = if smoke {
        (20, 2_000, 5)
    } else {
        (1000, FULL_RECORDS, FULL_EDITS_PER_KIND)
    };
    let base = tempfile::tempdir().expect("temp dir");

    // 1. Start-up load: 100 files of 1,000 records, and one file of 100,000.
    let many = base.path().join("many");
    fs::create_dir(&many).expect("mkdir");
    for f in 0..100 {
        fs::write(
            many.join(format!("part{f:03}.zone")),
            records(f * per_file, per_file),
        )
        .expect("write");
    }
    let one = base.path().join("one");
    fs::create_dir(&one).expect("mkdir");
    fs::write(one.join("big.zone"), records(0, records_total)).expect("write");

    println!("## Start-up load of {records_total} A records (median of 3 starts)\n");
    println!(
        "| layout | load (ms, reported by the server) | start to answering, fragments loaded (ms) |"
    );
    println!("| --- | --- | --- |");
    let last = records_total - 1;
    let many_label = format!("100 files × {per_file}");
    let one_label = format!("1 file × {records_total}");
    for (label, dir) in [(&many_label, &many), (&one_label, &one)] {
        let runs: Vec<(f64, f64)> = (0..3)
            .map(|_| {
                let started = start(dir);
                wait_for(
                    started.server.dns,
                    &format!("h{last}.svc.internal."),
                    &address_of(last),
                );
                (started.load_ms, started.start_ms)
            })
            .collect();
        println!(
            "| {label} | {:.0} | {:.0} |",
            median(runs.iter().map(|r| r.0).collect()),
            median(runs.iter().map(|r| r.1).collect())
        );
    }
    if Command::new("named-checkzone").arg("-v").output().is_ok() {
        let zone = base.path().join("peer.zone");
        let mut text = String::from(
            "$ORIGIN svc.internal.\n@ 300 IN SOA ns hostmaster 1 60 10 86400 5\n@ 300 IN NS ns\nns 300 IN A 127.0.0.1\n",
        );
        text.push_str(&records(0, records_total));
        fs::write(&zone, text).expect("write");
        let runs: Vec<f64> = (0..3)
            .map(|_| {
                let began = Instant::now();
                let ok = Command::new("named-checkzone")
                    .args(["-q", "svc.internal"])
                    .arg(&zone)
                    .status()
                    .is_ok_and(|s| s.success());
                assert!(ok, "named-checkzone rejected the peer zone");
                began.elapsed().as_secs_f64() * 1000.0
            })
            .collect();
        println!(
            "| peer: named-checkzone, {one_label} (whole process) | {:.0} | |",
            median(runs)
        );
    }

    // 2. Edit latency with 100,000 records loaded.
    let server = start(&many).server;
    let small = many.join("edit.zone");
    let mut in_place = Vec::new();
    let mut renamed = Vec::new();
    let mut created = Vec::new();
    let mut deleted = Vec::new();
    for i in 0..edits_per_kind {
        let octet = i % 250 + 1;
        fs::write(&small, format!("edit A 10.200.0.{octet}\n")).expect("write");
        in_place.push(wait_for(
            server.dns,
            "edit.svc.internal.",
            &format!("10.200.0.{octet}"),
        ));

        let temp = many.join(".edit.zone.tmp");
        fs::write(&temp, format!("edit A 10.201.0.{octet}\n")).expect("write");
        fs::rename(&temp, &small).expect("rename");
        renamed.push(wait_for(
            server.dns,
            "edit.svc.internal.",
            &format!("10.201.0.{octet}"),
        ));

        fs::remove_file(&small).expect("remove");
        deleted.push(wait_for(server.dns, "edit.svc.internal.", ""));

        fs::write(&small, format!("edit A 10.202.0.{octet}\n")).expect("write");
        created.push(wait_for(
            server.dns,
            "edit.svc.internal.",
            &format!("10.202.0.{octet}"),
        ));
    }
    println!("\n## Edit to answer, with {records_total} records loaded (ms)\n");
    println!("| edit | samples | p50 | p99 | max |");
    println!("| --- | --- | --- | --- | --- |");
    println!("{}", summary("write in place", in_place));
    println!("{}", summary("write temp + rename", renamed));
    println!("{}", summary("delete", deleted));
    println!("{}", summary("create", created));
    drop(server);

    // 3. One line changed in a 100,000-record file.
    let server = start(&one).server;
    let big = one.join("big.zone");
    let original = fs::read_to_string(&big).expect("read");
    let mut samples = Vec::new();
    let middle = records_total / 2;
    for i in 0..edits_per_kind.min(50) {
        let text = original.replacen(
            &format!("h{middle} IN A {}", address_of(middle)),
            &format!("h{middle} IN A 10.99.0.{}", i + 1),
            1,
        );
        fs::write(&big, text).expect("write");
        samples.push(wait_for(
            server.dns,
            &format!("h{middle}.svc.internal."),
            &format!("10.99.0.{}", i + 1),
        ));
    }
    println!(
        "{}",
        summary(
            &format!("one line of a {records_total}-record file"),
            samples
        )
    );
    drop(server);

    // 4. Memory per record, beside Knot.
    let count = if smoke {
        20_000
    } else {
        env_or("BENCH_MEMORY_RECORDS", 1_000_000)
    };
    memory(base.path(), count);
}
