//! Soak: beacon under steady, realistic churn for a long time, with a
//! kill -9 and restart in the middle; every answer is checked against what
//! should be live.
//!
//! Run: `cargo bench --bench soak` (BENCH_SOAK_SECS, default 1800; the
//! smoke run takes 12 s). While it runs:
//! - BENCH_SOAK_INSTANCES (10,000) instances in services of 20 beat every
//!   3 s with 10 s leases; every second 1 in 500 of them leaves (half
//!   with `down`, half by going silent) and as many join;
//! - a zone fragment is rewritten every second with a new name, which
//!   must answer within a second and a half;
//! - BENCH_SOAK_QPS (1,000) UDP queries a second ask a random service's A
//!   records or the newest fragment name, and each answer is checked: an
//!   instance live for over a second must be in it, one that sent `down`
//!   over a second ago or went silent over its lease plus a second ago
//!   must not (the guard against mass failure is off, with
//!   `--protect-threshold 0`, so that silence always means gone);
//! - halfway, the server is killed with SIGKILL and started again on the
//!   same ports and state directory;
//! - RSS is sampled every 10 s.
//!
//! BENCH_BEACON_ARGS adds flags to the server's.
//!
//! It reports wrong answers (the target is 0), unanswered queries, the
//! answer gap across the restart (from the kill to the first answer, and
//! whether that first answer held every instance) and RSS over time with
//! its growth after warm-up. Everything listens on 127.0.0.1 and stops by
//! itself.

#![allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]

mod harness;
mod load;

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use harness::{Server, env_or, free_port, rss_kib, start_beacon_at, udp_drops};
use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RData, RecordType};

const PER_SERVICE: usize = 20;
const LEASE: Duration = Duration::from_secs(10);
const INTERVAL: Duration = Duration::from_secs(3);
/// Time allowed for a change to show in answers.
const GRACE: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    /// Beating; in answers once `since` + GRACE has passed.
    Live { since: Instant },
    /// Sent `down` at `since` (reached the server).
    Down { since: Instant },
    /// Stopped beating at `since` (or its down was lost): gone after its
    /// lease plus GRACE.
    Silent { since: Instant },
}

struct World {
    /// (service, instance) → status; instance addresses are derived.
    instances: HashMap<(usize, usize), Status>,
    /// When the server was killed and when it listened again.
    outage: Option<(Instant, Option<Instant>)>,
    /// The newest fragment name and when it was written.
    fragment: Option<(u64, Instant)>,
}

fn address(service: usize, instance: usize) -> String {
    format!("10.{}.{}.{}", service / 250, service % 250, instance)
}

fn beat(service: usize, instance: usize, down: bool) -> String {
    format!(
        "beacon/1 service=s{service} instance=i{instance} port=80 addr={} ttl={}{}",
        address(service, instance),
        LEASE.as_secs(),
        if down { " state=down" } else { "" }
    )
}

/// How long after a change the registry snapshot may still lack it
/// (written at most 0.5 s after a change, plus the write itself): what a
/// kill -9 may lose, and what the issue's target leaves out ("registered
/// at least 1 s before the kill").
const SNAPSHOT_WINDOW: Duration = Duration::from_secs(1);

/// True when a change at `since` may be missing after a kill at `killed`
/// and a restart at `back`: made during the outage or within
/// [`SNAPSHOT_WINDOW`] before the kill.
fn at_risk(since: Instant, killed: Instant, back: Instant) -> bool {
    since + SNAPSHOT_WINDOW >= killed && since < back
}

fn start(zones: &Path, state: &Path, dns: &str, heartbeat: &str) -> Server {
    // BENCH_BEACON_ARGS adds flags (`--answer-cache 1` to see how much of
    // the RSS is the answer caches filling up).
    let extra = std::env::var("BENCH_BEACON_ARGS").unwrap_or_default();
    let mut flags = vec!["--protect-threshold", "0"];
    flags.extend(extra.split_whitespace());
    start_beacon_at(zones, state, (dns, heartbeat), &flags).0
}

fn main() {
    let smoke = harness::smoke();
    let seconds: u64 = env_or("BENCH_SOAK_SECS", if smoke { 12 } else { 1800 });
    let total: usize = env_or("BENCH_SOAK_INSTANCES", if smoke { 200 } else { 10_000 });
    let qps: u64 = env_or("BENCH_SOAK_QPS", if smoke { 200 } else { 1_000 });
    let services = total.div_ceil(PER_SERVICE);
    let dir = tempfile::tempdir().expect("temp dir");
    let zones = dir.path().join("zones");
    let state = dir.path().join("state");
    std::fs::create_dir_all(&zones).expect("zones");
    let dns: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let heartbeat: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let (dns_text, heartbeat_text) = (dns.to_string(), heartbeat.to_string());
    let server = Arc::new(Mutex::new(start(
        &zones,
        &state,
        &dns_text,
        &heartbeat_text,
    )));
    let started = Instant::now();
    let world = Arc::new(Mutex::new(World {
        instances: HashMap::new(),
        outage: None,
        fragment: None,
    }));
    {
        let mut w = world.lock().expect("world");
        for s in 0..services {
            for i in 0..PER_SERVICE {
                // First beats are spread over one interval.
                w.instances.insert(
                    (s, i),
                    Status::Live {
                        since: started + INTERVAL,
                    },
                );
            }
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let drops_before = udp_drops();
    println!(
        "soak: {total} instances in {services} services, {qps} queries/s, {seconds} s, kill -9 and restart at {} s",
        seconds / 2
    );

    // Heartbeats and churn.
    let beater = {
        let (world, stop) = (world.clone(), stop.clone());
        thread::spawn(move || {
            let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
            let mut rng = fastrand::Rng::with_seed(7);
            let mut last_churn = Instant::now();
            let mut next_beat = HashMap::new();
            while !stop.load(Ordering::Relaxed) {
                let now = Instant::now();
                let mut sends = Vec::new();
                {
                    let mut w = world.lock().expect("world");
                    let down_now = w.outage.is_some_and(|(_, back)| back.is_none());
                    if now.duration_since(last_churn) >= Duration::from_secs(1) {
                        last_churn = now;
                        for _ in 0..(total / 500).max(1) {
                            let key = (rng.usize(0..services), rng.usize(0..PER_SERVICE));
                            let status = w.instances.get(&key).copied();
                            match status {
                                Some(Status::Live { .. }) if rng.bool() => {
                                    sends.push(beat(key.0, key.1, true));
                                    // A down sent while the server is down is lost.
                                    let since = now;
                                    w.instances.insert(
                                        key,
                                        if down_now {
                                            Status::Silent { since }
                                        } else {
                                            Status::Down { since }
                                        },
                                    );
                                }
                                Some(Status::Live { .. }) => {
                                    w.instances.insert(key, Status::Silent { since: now });
                                }
                                _ => {
                                    w.instances.insert(key, Status::Live { since: now });
                                    next_beat.insert(key, now);
                                }
                            }
                        }
                    }
                    for (key, status) in &w.instances {
                        if let Status::Live { .. } = status {
                            let due = next_beat
                                .entry(*key)
                                .or_insert_with(|| now + Duration::from_millis(rng.u64(0..3000)));
                            if *due <= now {
                                *due = now + INTERVAL;
                                sends.push(beat(key.0, key.1, false));
                            }
                        }
                    }
                }
                for datagram in sends {
                    let _ = socket.send_to(datagram.as_bytes(), heartbeat);
                }
                thread::sleep(Duration::from_millis(20));
            }
        })
    };

    // A fragment rewritten every second.
    let writer = {
        let (world, stop, zones) = (world.clone(), stop.clone(), zones.clone());
        thread::spawn(move || {
            let mut generation = 0u64;
            while !stop.load(Ordering::Relaxed) {
                generation += 1;
                let text = format!(
                    "$TTL 5\nsoak 5 IN TXT \"generation {generation}\"\ngen-{generation} 5 IN A 10.255.{}.{}\n",
                    (generation / 250) % 250,
                    generation % 250
                );
                let temporary = zones.join(".soak.zone.tmp");
                std::fs::write(&temporary, text).expect("write fragment");
                std::fs::rename(&temporary, zones.join("soak.zone")).expect("rename");
                world.lock().expect("world").fragment = Some((generation, Instant::now()));
                thread::sleep(Duration::from_secs(1));
            }
        })
    };

    // RSS every 10 s.
    let sampler = {
        let (server, stop) = (server.clone(), stop.clone());
        thread::spawn(move || {
            let mut samples = Vec::new();
            let begun = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                let pid = server.lock().expect("server").child.id();
                if std::path::Path::new(&format!("/proc/{pid}/status")).exists() {
                    samples.push((begun.elapsed().as_secs(), rss_kib(pid)));
                }
                for _ in 0..100 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    thread::sleep(Duration::from_millis(100));
                }
            }
            samples
        })
    };

    // Queries, checked.
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    socket.connect(dns).expect("connect");
    let mut rng = fastrand::Rng::with_seed(11);
    let (mut asked, mut wrong, mut unanswered) = (0u64, 0u64, 0u64);
    let mut examples: Vec<String> = Vec::new();
    let mut restarted = false;
    let mut first_after_restart: Option<(Duration, bool)> = None;
    let mut buffer = vec![0u8; 4096];
    let period = Duration::from_secs_f64(1.0 / qps as f64);
    let mut next = Instant::now();
    let end = started + Duration::from_secs(seconds);
    while Instant::now() < end {
        if !restarted && started.elapsed() >= Duration::from_secs(seconds / 2) {
            restarted = true;
            let killed = Instant::now();
            world.lock().expect("world").outage = Some((killed, None));
            {
                let mut guard = server.lock().expect("server");
                let _ = guard.child.kill();
                let _ = guard.child.wait();
                *guard = start(&zones, &state, &dns_text, &heartbeat_text);
            }
            let back = Instant::now();
            world.lock().expect("world").outage = Some((killed, Some(back)));
            println!(
                "killed at {:.1} s; listening again after {:.0} ms",
                killed.duration_since(started).as_secs_f64(),
                back.duration_since(killed).as_secs_f64() * 1000.0
            );
        }
        next += period;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
        let fragment_turn = rng.u8(0..10) == 0;
        let (name, service) = if fragment_turn {
            let Some((generation, _)) = world.lock().expect("world").fragment else {
                continue;
            };
            (format!("gen-{generation}.svc.internal."), None)
        } else {
            let s = rng.usize(0..services);
            (format!("s{s}.svc.internal."), Some(s))
        };
        let asked_at = Instant::now();
        let mut query = Message::new(rng.u16(..), MessageType::Query, OpCode::Query);
        query.metadata.recursion_desired = false;
        query.add_query(Query::query(
            Name::from_ascii(&name).expect("name"),
            RecordType::A,
        ));
        let _ = socket.send(&query.to_vec().expect("encode"));
        asked += 1;
        let reply = loop {
            match socket.recv(&mut buffer) {
                Ok(n) => match Message::from_vec(&buffer[..n]) {
                    Ok(m) if m.metadata.id == query.metadata.id => break Some(m),
                    _ => {}
                },
                Err(_) => break None,
            }
        };
        let Some(reply) = reply else {
            unanswered += 1;
            continue;
        };
        let got: Vec<String> = reply
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(a.to_string()),
                _ => None,
            })
            .collect();
        let w = world.lock().expect("world");
        let outage_end = w.outage.and_then(|(_, back)| back);
        let problem = match service {
            None => {
                // The newest fragment name: written over GRACE + 0.5 s ago must answer.
                let (generation, written) = w.fragment.expect("a fragment");
                let expected = format!("10.255.{}.{}", (generation / 250) % 250, generation % 250);
                (asked_at.duration_since(written) > GRACE + Duration::from_millis(500)
                    && got != [expected.clone()])
                .then(|| format!("{name}: {got:?}, expected [{expected}]"))
            }
            Some(s) => {
                let mut missing = Vec::new();
                let mut extra = Vec::new();
                for i in 0..PER_SERVICE {
                    let addr = address(s, i);
                    let present = got.contains(&addr);
                    match w.instances.get(&(s, i)) {
                        Some(Status::Live { since }) => {
                            // Joined while the server was down, or too
                            // shortly before the kill for the snapshot to
                            // hold it: its first beat after the restart
                            // registers it. (Later joins keep their own
                            // time.)
                            let since = match (w.outage, outage_end) {
                                (Some((killed, _)), Some(back))
                                    if at_risk(*since, killed, back) =>
                                {
                                    back + INTERVAL
                                }
                                _ => *since,
                            };
                            if !present && asked_at.duration_since(since) > GRACE {
                                missing.push(format!(
                                    "{addr} (live since {:.1} s)",
                                    since.saturating_duration_since(started).as_secs_f64()
                                ));
                            }
                        }
                        Some(Status::Down { since })
                            if present && asked_at.duration_since(*since) > GRACE =>
                        {
                            // A down too shortly before the kill for the
                            // snapshot to hold it: the instance comes back
                            // from the snapshot and stays until its lease
                            // runs out (it never beats again).
                            let restored = match (w.outage, outage_end) {
                                (Some((killed, _)), Some(back)) => at_risk(*since, killed, back),
                                _ => false,
                            };
                            if !restored || asked_at.duration_since(*since) > LEASE + GRACE {
                                extra.push(addr);
                            }
                        }
                        Some(Status::Silent { since })
                            if present && asked_at.duration_since(*since) > LEASE + GRACE =>
                        {
                            extra.push(addr);
                        }
                        _ => {}
                    }
                }
                (!missing.is_empty() || !extra.is_empty())
                    .then(|| format!("{name}: missing {missing:?}, should be gone {extra:?}"))
            }
        };
        drop(w);
        if restarted && first_after_restart.is_none() {
            let killed = world
                .lock()
                .expect("world")
                .outage
                .map(|(k, _)| k)
                .expect("killed");
            first_after_restart = Some((asked_at.duration_since(killed), problem.is_none()));
        }
        if let Some(problem) = problem {
            wrong += 1;
            if examples.len() < 10 {
                examples.push(format!(
                    "{:.1} s: {problem}",
                    asked_at.duration_since(started).as_secs_f64()
                ));
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = beater.join();
    let _ = writer.join();
    let samples = sampler.join().unwrap_or_default();
    {
        let mut guard = server.lock().expect("server");
        let _ = guard.child.kill();
        let _ = guard.child.wait();
    }

    let drops = udp_drops() - drops_before;
    println!();
    println!(
        "| queries | wrong | unanswered | first answer after the kill | it held every instance | UDP datagrams dropped by the kernel (any socket) |"
    );
    println!("|---|---|---|---|---|---|");
    let (gap, whole) = first_after_restart.unwrap_or_default();
    println!(
        "| {asked} | {wrong} | {unanswered} | {:.0} ms | {} | {drops} |",
        gap.as_secs_f64() * 1000.0,
        if whole { "yes" } else { "no" }
    );
    for example in &examples {
        println!("wrong: {example}");
    }
    println!();
    println!("| seconds | RSS MiB |");
    println!("|---|---|");
    for (at, kib) in &samples {
        println!("| {at} | {:.1} |", *kib as f64 / 1024.0);
    }
    // Growth after warm-up: the first sixth of each half (the restart
    // starts a new process) against the end of that half.
    let half = seconds / 2;
    for (label, from, to) in [
        ("before the restart", 0, half),
        ("after the restart", half, seconds),
    ] {
        let part: Vec<f64> = samples
            .iter()
            .filter(|(at, _)| *at >= from + (to - from) / 6 && *at < to)
            .map(|(_, kib)| *kib as f64)
            .collect();
        if part.len() >= 2 {
            let first = part[0];
            let peak = part.iter().copied().fold(0.0, f64::max);
            let last = part[part.len() - 1];
            println!(
                "RSS {label}: {:.1} MiB after warm-up, {:.1} MiB at the end, peak {:.1} MiB: growth {:+.1}%",
                first / 1024.0,
                last / 1024.0,
                peak / 1024.0,
                100.0 * (last - first) / first
            );
        }
    }
    if smoke {
        assert_eq!(wrong, 0, "wrong answers: {examples:?}");
    }
}
