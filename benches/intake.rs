//! Heartbeat intake on one core: how many heartbeats a second beacon
//! absorbs, and how soon a new instance answers, under query load.
//!
//! Run: `cargo bench --bench intake`.
//!
//! 1. Absorption: 10,000 registered instances (100 services × 100) are
//!    renewed at increasing rates for 2 s each, from CPU 0 with batched
//!    `sendmmsg`; beacon runs on CPU 1. Lost heartbeats are the kernel's
//!    receive-buffer drops (`RcvbufErrors` in /proc/net/snmp; nothing else
//!    sends UDP to a full socket on this machine during the run).
//! 2. Freshness: while the generator asks beacon 20,000 questions a second
//!    (instance names of the registered services), new instances announce
//!    themselves one at a time; each is then asked for every 25 µs,
//!    without waiting for replies, until an answer holds it (see
//!    `harness::FirstAnswer`). Time from heartbeat to first answer:
//!    p50, p99, max over 1,000 instances, which join 100 small services.
//!    Beside it, the same measurement for names that already answer (a
//!    renewal, then the question): what the query path alone takes.
//!
//! Knobs: BENCH_RATES (100000,200000,300000,400000,600000), BENCH_FRESH (1000),
//! BENCH_FRESH_QPS (20000; 0 for no query load), BENCH_BEACON_ARGS (extra
//! flags for beacon, such as `--fast-path off`).

// Rates, shares and percentiles are f64; turning them back into counts
// and indices truncates on purpose.
#![allow(clippy::cast_possible_truncation)]

mod harness;
mod load;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use harness::{
    FirstAnswer, blast, count_answers, cpu_jiffies, env_numbers, env_or, pin_self, start_beacon,
    udp_drops,
};
use hickory_proto::rr::RecordType;
use load::Question;

const SERVICES: usize = 100;
const PER_SERVICE: usize = 100;

fn beat(service: usize, instance: usize) -> String {
    format!(
        "beacon/1 service=s{service} instance=i{instance} port=80 addr=10.{}.{}.{} ttl=60",
        service,
        instance / 256,
        instance % 256
    )
}

fn main() {
    let smoke = harness::smoke();
    let default_rates = if smoke {
        "20000"
    } else {
        "100000,200000,300000,400000,600000"
    };
    let rates: Vec<u64> = env_numbers("BENCH_RATES", default_rates);
    let fresh: usize = env_or("BENCH_FRESH", if smoke { 20 } else { 1000 });
    let cpus = thread::available_parallelism().map_or(1, usize::from);
    let dir = tempfile::tempdir().expect("temp dir");
    let extra = std::env::var("BENCH_BEACON_ARGS").unwrap_or_default();
    let mut args = vec!["--udp-workers", "1", "--max-instances", "1000000"];
    args.extend(extra.split_whitespace());
    let server = start_beacon(dir.path(), &args);
    if cpus >= 2 {
        server.pin_to(1);
        pin_self(0);
    }
    let target = server.heartbeat.expect("heartbeat port");
    let datagrams: Vec<Vec<u8>> = (0..SERVICES)
        .flat_map(|s| (0..PER_SERVICE).map(move |i| beat(s, i).into_bytes()))
        .collect();
    // Register everyone (re-sending until every service is whole).
    for _round in 0..30 {
        blast(target, &datagrams, 50_000, Duration::from_millis(250));
        thread::sleep(Duration::from_millis(300));
        let whole = (0..SERVICES)
            .all(|s| count_answers(&server, &format!("s{s}.svc.internal.")) == PER_SERVICE);
        if whole {
            break;
        }
    }
    println!(
        "heartbeat intake: {} instances registered; beacon on CPU 1, sender on CPU 0",
        datagrams.len()
    );
    println!();
    println!(
        "| offered heartbeats/s | sent | dropped by the kernel | absorbed/s | beacon core busy |"
    );
    println!("|---|---|---|---|---|");
    for rate in rates {
        let drops = udp_drops();
        let (busy0, total0) = cpu_jiffies(1);
        let start = Instant::now();
        let sent = blast(target, &datagrams, rate, Duration::from_secs(2));
        let elapsed = start.elapsed();
        // Let the queue drain before counting.
        thread::sleep(Duration::from_millis(300));
        let (busy1, total1) = cpu_jiffies(1);
        let dropped = udp_drops() - drops;
        let absorbed = sent.saturating_sub(dropped) as f64 / elapsed.as_secs_f64();
        println!(
            "| {rate} | {sent} | {dropped} | {absorbed:.0} | {:.0}% |",
            100.0 * (busy1 - busy0) as f64 / (total1 - total0).max(1) as f64
        );
    }

    // Freshness under query load.
    let stop = Arc::new(AtomicBool::new(false));
    let mix: Vec<Question> = (0..1000)
        .map(|n| {
            let name = format!("i{}.s{}.svc.internal.", n % PER_SERVICE, (n * 7) % SERVICES);
            Question::new(&name, RecordType::A, 0)
        })
        .collect();
    let loader = {
        let stop = stop.clone();
        let dns = server.dns;
        thread::spawn(move || {
            let mut answered = 0;
            // A fixed rate leaves the generator's core room for the asker
            // below; a closed loop would keep that core busy and time the
            // asker's own scheduling instead of beacon.
            let rate: u64 = env_or("BENCH_FRESH_QPS", 20_000);
            while rate > 0 && !stop.load(Ordering::Relaxed) {
                answered +=
                    load::udp(dns, &mix, Duration::from_millis(500), 100_000, Some(rate)).answered;
            }
            answered
        })
    };
    let mut prober = FirstAnswer::new();
    let mut waits: Vec<Duration> = Vec::with_capacity(fresh);
    // Interleaved with those, a baseline: the same heartbeat-then-ask for
    // an instance that already answers (a renewal). Its spread is what
    // the query path and scheduling on this machine add by themselves.
    let mut baseline: Vec<Duration> = Vec::with_capacity(fresh);
    for k in 0..fresh {
        // New instances join 100 small services (3 each by the end), the
        // shape of the side-by-side data.
        let heartbeat = format!(
            "beacon/1 service=fresh{} instance=n{k} port=80 addr=10.200.{}.{} ttl=60",
            k % 100,
            k / 256,
            k % 256
        );
        let name = format!("n{k}.fresh{}.svc.internal.", k % 100);
        waits.push(prober.time(&server, &heartbeat, &name));
        thread::sleep(Duration::from_millis(5));
        baseline.push(prober.time(&server, &heartbeat, &name));
        thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::Relaxed);
    let answered = loader.join().unwrap_or(0);
    println!();
    for (what, mut times) in [
        ("new instance answerable after its first heartbeat", waits),
        ("baseline, an existing instance after a renewal", baseline),
    ] {
        times.sort();
        let at = |p: f64| times[((times.len() - 1) as f64 * p) as usize].as_secs_f64() * 1000.0;
        println!(
            "{what}, under query load ({answered} background queries answered): \
             p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms over {} instances",
            at(0.5),
            at(0.99),
            at(1.0),
            times.len()
        );
    }
}
