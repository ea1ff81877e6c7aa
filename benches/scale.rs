//! Scale: the same queries against 1,000 and against 1,000,000 live
//! instances (100 per service), on one server core.
//!
//! Run: `cargo bench --bench scale` (about two minutes).
//!
//! For each size, a fresh beacon (CPU 1) gets every instance by heartbeat
//! (sent service by service from CPU 0), and stays up; then:
//! - memory: resident set growth per live instance (VmRSS after
//!   registering, minus VmRSS before);
//! - QPS: 5 s closed loop, 200 in flight, over the same number of distinct
//!   names at every size (A for instance names, and names that do not
//!   exist), in rounds that alternate between the sizes (median reported);
//! - change cost: time from a heartbeat that adds an instance to an existing
//!   100-instance service to its first answer, without query load (p50 and
//!   p99 of 50): the work a change costs at that size.
//!
//! Knobs: BENCH_SETTLE (seconds between registering and timing, 5),
//! BENCH_SIZES (1000,100000; `BENCH_SIZES=1000,1000000` for the issue's
//! figure: ~300 MB and a few minutes), BENCH_ROUNDS (3), BENCH_SECONDS (5).

// Rates, shares and percentiles are f64; turning them back into counts
// and indices truncates on purpose.
#![allow(clippy::cast_possible_truncation)]

mod harness;
mod load;

use std::thread;
use std::time::{Duration, Instant};

use harness::{
    FirstAnswer, Server, blast, count_answers, env_numbers, env_or, pin_self, rss_kib, start_beacon,
};
use hickory_proto::rr::RecordType;
use load::Question;

const PER_SERVICE: usize = 100;
const DISTINCT_NAMES: usize = 2000;

fn beat(service: usize, instance: usize) -> Vec<u8> {
    format!(
        "beacon/1 service=s{service} instance=i{instance} port=80 addr=10.{}.{}.{} ttl=600",
        service / 256,
        service % 256,
        instance + 1
    )
    .into_bytes()
}

/// Registers `services` × [`PER_SERVICE`] instances, service by service.
fn register(server: &Server, services: usize) {
    let target = server.heartbeat.expect("heartbeat port");
    let mut missing: Vec<usize> = (0..services).collect();
    for _round in 0..10 {
        for chunk in missing.chunks(100) {
            let datagrams: Vec<Vec<u8>> = chunk
                .iter()
                .flat_map(|&s| (0..PER_SERVICE).map(move |i| beat(s, i)))
                .collect();
            blast(
                target,
                &datagrams,
                100_000,
                Duration::from_secs_f64(datagrams.len() as f64 / 100_000.0),
            );
        }
        thread::sleep(Duration::from_secs(1));
        // Every service must be whole (a full A answer of 100 comes over
        // TCP); heartbeats are UDP, so re-send the services still short.
        missing.retain(|s| count_answers(server, &format!("s{s}.svc.internal.")) != PER_SERVICE);
        if missing.is_empty() {
            return;
        }
    }
    panic!("{} services never got all their instances", missing.len());
}

fn change_cost(server: &Server, services: usize) -> (f64, f64) {
    let mut prober = FirstAnswer::new();
    let mut waits = Vec::new();
    for k in 0..50 {
        let service = (k * 7919) % services;
        let heartbeat = format!(
            "beacon/1 service=s{service} instance=new{k} port=80 addr=10.250.0.{} ttl=600",
            k + 1
        );
        let name = format!("new{k}.s{service}.svc.internal.");
        waits.push(prober.time(server, &heartbeat, &name).as_secs_f64() * 1000.0);
        thread::sleep(Duration::from_millis(20));
    }
    waits.sort_by(f64::total_cmp);
    (waits[waits.len() / 2], waits[waits.len() * 99 / 100])
}

/// One size under test: its server and what registering it cost.
struct Size {
    instances: usize,
    services: usize,
    server: Server,
    per_instance: f64,
    register_time: Duration,
    mix: Vec<Question>,
    qps: Vec<f64>,
    lost: u64,
}

fn main() {
    let smoke = harness::smoke();
    let default_sizes = if smoke { "1000" } else { "1000,100000" };
    let sizes: Vec<usize> = env_numbers("BENCH_SIZES", default_sizes);
    let rounds: usize = env_or("BENCH_ROUNDS", if smoke { 1 } else { 3 });
    let cpus = thread::available_parallelism().map_or(1, usize::from);
    let dir = tempfile::tempdir().expect("temp dir");
    if cpus >= 2 {
        pin_self(0);
    }
    // Every size gets its own server, registered one after the other and
    // then kept up, so timed rounds can alternate between sizes: drift on
    // a shared machine then hits every size alike.
    let mut under_test: Vec<Size> = sizes
        .iter()
        .map(|&size| {
            let services = (size / PER_SERVICE).max(1);
            let server = start_beacon(
                dir.path(),
                &["--udp-workers", "1", "--max-instances", "2000000"],
            );
            if cpus >= 2 {
                server.pin_to(1);
            }
            let before = rss_kib(server.child.id());
            let started = Instant::now();
            register(&server, services);
            let register_time = started.elapsed();
            let after = rss_kib(server.child.id());
            let per_instance =
                (after.saturating_sub(before) * 1024) as f64 / (services * PER_SERVICE) as f64;
            let mix = (0..DISTINCT_NAMES)
                .map(|n| {
                    let service = (n * 7919) % services;
                    if n % 10 == 9 {
                        Question::new(&format!("nothing{n}.svc.internal."), RecordType::A, 3)
                    } else {
                        Question::new(
                            &format!("i{}.s{service}.svc.internal.", (n * 31) % PER_SERVICE),
                            RecordType::A,
                            0,
                        )
                    }
                })
                .collect();
            Size {
                instances: services * PER_SERVICE,
                services,
                server,
                per_instance,
                register_time,
                mix,
                qps: Vec::new(),
                lost: 0,
            }
        })
        .collect();
    // Let the kernel finish with the fresh memory before timing.
    thread::sleep(Duration::from_secs(env_or(
        "BENCH_SETTLE",
        if smoke { 0 } else { 5 },
    )));
    let timed = Duration::from_secs(env_or("BENCH_SECONDS", if smoke { 1 } else { 5 }));
    for _round in 0..rounds {
        for size in &mut under_test {
            let _ = load::udp(
                size.server.dns,
                &size.mix,
                Duration::from_millis(500),
                50,
                None,
            );
            let outcome = load::udp(size.server.dns, &size.mix, timed, 200, None);
            assert_eq!(
                outcome.wrong, 0,
                "wrong replies at {} instances",
                size.instances
            );
            size.qps.push(outcome.qps());
            size.lost += outcome.lost;
        }
    }
    println!(
        "| live instances | services | RSS growth per instance | register time | QPS (median of {rounds}) | lost | change → answer p50 | p99 |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mut baseline = None;
    for size in &mut under_test {
        size.qps.sort_by(f64::total_cmp);
        let qps = size.qps[size.qps.len() / 2];
        let (p50, p99) = change_cost(&size.server, size.services);
        let ratio = match baseline {
            None => {
                baseline = Some(qps);
                String::new()
            }
            Some(base) => format!(" ({:.2}× the first size)", qps / base),
        };
        println!(
            "| {} | {} | {:.0} bytes | {:.1} s | {qps:.0}{ratio} | {} | {p50:.2} ms | {p99:.2} ms |",
            size.instances,
            size.services,
            size.per_instance,
            size.register_time.as_secs_f64(),
            size.lost,
        );
    }
}
