//! Restart: how much of the registry answers at the first query after a
//! kill -9, and how long the restore takes.
//!
//! Run: `cargo bench --bench restart` (BENCH_RESTART_SIZES, default
//! 10000,1000000; the smoke run uses 1,000). For each size: a release
//! beacon with a state directory registers that many instances (services
//! of 100, leases of 10 minutes), the snapshot is awaited, the server is
//! killed with SIGKILL and started again on the same ports and state
//! directory, and at once a sample of services (1,000, or all) is asked
//! for its A records: the share of instances answered, the restore time
//! the server logs, the time from start to answering, and the snapshot's
//! size. Everything listens on 127.0.0.1 and stops by itself.

#![allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]

mod harness;
mod load;

use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use harness::{
    blast, count_answers, env_numbers, free_port, log_field, numbered_beat, snapshot_count,
    start_beacon_at,
};

const PER_SERVICE: usize = 100;

fn main() {
    let smoke = harness::smoke();
    let sizes: Vec<usize> = env_numbers(
        "BENCH_RESTART_SIZES",
        if smoke { "1000" } else { "10000,1000000" },
    );
    println!(
        "| instances | snapshot | restore (logged) | start → listening | services asked | instances answered at the first query |"
    );
    println!("|---|---|---|---|---|---|");
    for size in sizes {
        let dir = tempfile::tempdir().expect("temp dir");
        let zones = dir.path().join("zones");
        let state = dir.path().join("state");
        std::fs::create_dir_all(&zones).expect("zones");
        let dns = format!("127.0.0.1:{}", free_port());
        let heartbeat = format!("127.0.0.1:{}", free_port());
        let cap = (size * 2).to_string();
        let flags = [
            "--max-instances",
            cap.as_str(),
            "--max-instances-per-service",
            "1000",
            "--protect-threshold",
            "0",
        ];
        let (mut server, _) = start_beacon_at(&zones, &state, (&dns, &heartbeat), &flags);
        let services = size.div_ceil(PER_SERVICE);
        let datagrams: Vec<Vec<u8>> = (0..services)
            .flat_map(|s| (0..PER_SERVICE).map(move |i| numbered_beat(s, i)))
            .take(size)
            .collect();
        let target: SocketAddr = heartbeat.parse().expect("addr");
        let snapshot = state.join("registry");
        // Register (re-sending what the kernel dropped) until the snapshot
        // holds everyone.
        for _round in 0..60 {
            let rate = 200_000;
            let seconds = (datagrams.len() as f64 / rate as f64).max(0.05);
            blast(target, &datagrams, rate, Duration::from_secs_f64(seconds));
            let whole = harness::wait_for(Duration::from_secs(10), || {
                (snapshot_count(&snapshot) == Some(size)).then_some(())
            });
            if whole.is_some() {
                break;
            }
        }
        assert_eq!(
            snapshot_count(&snapshot),
            Some(size),
            "every instance in the snapshot"
        );
        let snapshot_bytes = std::fs::metadata(&snapshot).map_or(0, |m| m.len());
        thread::sleep(Duration::from_secs(1));
        let _ = server.child.kill();
        let _ = server.child.wait();

        let started = Instant::now();
        let (restarted, startup) = start_beacon_at(&zones, &state, (&dns, &heartbeat), &flags);
        let listening = started.elapsed();
        let asked: Vec<usize> = if services <= 1_000 {
            (0..services).collect()
        } else {
            (0..1_000).map(|k| k * services / 1_000).collect()
        };
        let expected: usize = asked
            .iter()
            .map(|&s| PER_SERVICE.min(size - s * PER_SERVICE))
            .sum();
        let answered: usize = asked
            .iter()
            .map(|&s| count_answers(&restarted, &format!("s{s}.svc.internal.")))
            .sum();
        let restore_ms = startup
            .iter()
            .find(|l| l.contains("registry restored from its snapshot"))
            .and_then(|l| log_field(l, "took_ms"))
            .unwrap_or("–")
            .to_string();
        println!(
            "| {size} | {:.1} MB | {restore_ms} ms | {:.0} ms | {} | {answered} of {expected} ({:.1}%) |",
            snapshot_bytes as f64 / 1e6,
            listening.as_secs_f64() * 1000.0,
            asked.len(),
            100.0 * answered as f64 / expected as f64
        );
        if smoke {
            assert_eq!(
                answered, expected,
                "every instance answers after the restart"
            );
        }
        drop(restarted);
    }
}
