//! Heartbeat intake on one core: how many heartbeats a second beacon
//! absorbs, and how soon a new instance answers, under query load.
//!
//! Run: `cargo bench --bench intake`.
//!
//! 1. Absorption: 10,000 registered instances (100 services × 100) are
//!    renewed at increasing rates for 2 s each, from CPU 0 with batched
//!    `sendmmsg`; beacon runs on CPU 1. Lost heartbeats are the kernel's
//!    receive-buffer drops (`RcvbufErrors` in /proc/net/snmp; nothing else
//!    sends UDP to a full socket on this machine during the run). Each
//!    rate runs twice, alternating: unsigned heartbeats to a beacon
//!    without keys, then signed ones (hmac-sha256, a later `ts` each
//!    round, signed before the timed send) to a beacon with `--keys`;
//!    a refused heartbeat would show in the last column.
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

use beacon::keys::{Algorithm, Key};
use harness::{
    FirstAnswer, blast, count_answers, cpu_jiffies, env_numbers, env_or, pin_self, refusals_logged,
    start_beacon, udp_drops,
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

/// The bench's key: any 32 bytes will do.
const SECRET: [u8; 32] = [42; 32];

fn unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0))
}

/// `rounds` renewals of every instance, signed, each round with a later
/// timestamp (so none is a replay), in the order they will be sent.
fn signed_rounds(key: &Key, rounds: usize) -> Vec<Vec<u8>> {
    let base = unix_millis();
    let mut out = Vec::with_capacity(rounds * SERVICES * PER_SERVICE);
    for round in 0..rounds {
        let ts = base + round as u64;
        for s in 0..SERVICES {
            for i in 0..PER_SERVICE {
                let body = format!("{} key=bench ts={ts}", beat(s, i));
                let tag = data_encoding::BASE64URL_NOPAD.encode(key.sign(body.as_bytes()).as_ref());
                out.push(format!("{body} auth={tag}").into_bytes());
            }
        }
    }
    out
}

/// Sends everyone's heartbeats (made afresh each round by `datagrams`)
/// until every service answers whole.
fn register_all(server: &harness::Server, mut datagrams: impl FnMut() -> Vec<Vec<u8>>) {
    let target = server.heartbeat.expect("heartbeat port");
    for _round in 0..30 {
        blast(target, &datagrams(), 50_000, Duration::from_millis(250));
        thread::sleep(Duration::from_millis(300));
        let whole = (0..SERVICES)
            .all(|s| count_answers(server, &format!("s{s}.svc.internal.")) == PER_SERVICE);
        if whole {
            return;
        }
    }
    panic!("{} never registered every instance", server.name);
}

/// Offers `datagrams` at `rate` for 2 s: (sent, dropped by the kernel,
/// absorbed per second, beacon's core busy in %).
fn absorb(target: std::net::SocketAddr, datagrams: &[Vec<u8>], rate: u64) -> (u64, u64, f64, f64) {
    let drops = udp_drops();
    let (busy0, total0) = cpu_jiffies(1);
    let start = Instant::now();
    let sent = blast(target, datagrams, rate, Duration::from_secs(2));
    let elapsed = start.elapsed();
    // Let the queue drain before counting.
    thread::sleep(Duration::from_millis(300));
    let (busy1, total1) = cpu_jiffies(1);
    let dropped = udp_drops() - drops;
    let absorbed = sent.saturating_sub(dropped) as f64 / elapsed.as_secs_f64();
    let busy = 100.0 * (busy1 - busy0) as f64 / (total1 - total0).max(1) as f64;
    (sent, dropped, absorbed, busy)
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
    let key_file = dir.path().join("bench.key");
    std::fs::write(
        &key_file,
        format!(
            "key \"bench\" {{ algorithm hmac-sha256; secret \"{}\"; }};\n",
            data_encoding::BASE64.encode(&SECRET)
        ),
    )
    .expect("key file");
    let key = Key::new("bench", Algorithm::HmacSha256, &SECRET).expect("key");
    let key_path = key_file.display().to_string();
    let mut signed_args = args.clone();
    signed_args.extend(["--keys", key_path.as_str()]);
    let mut signed = start_beacon(dir.path(), &signed_args);
    signed.name = "beacon --keys";
    if cpus >= 2 {
        server.pin_to(1);
        signed.pin_to(1);
        pin_self(0);
    }
    let target = server.heartbeat.expect("heartbeat port");
    let datagrams: Vec<Vec<u8>> = (0..SERVICES)
        .flat_map(|s| (0..PER_SERVICE).map(move |i| beat(s, i).into_bytes()))
        .collect();
    register_all(&server, || datagrams.clone());
    // Two rounds: the registration blast sends more than one round's worth,
    // and a wrap-around would repeat timestamps (replays).
    register_all(&signed, || signed_rounds(&key, 2));
    let refusals_before = refusals_logged();
    println!(
        "heartbeat intake: {} instances registered on each beacon; beacon on CPU 1, sender on CPU 0",
        datagrams.len()
    );
    println!();
    println!(
        "| offered heartbeats/s | unsigned: dropped by the kernel | absorbed/s | core busy | signed: dropped by the kernel | absorbed/s | core busy | refusals logged |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for rate in rates {
        let (_, dropped, absorbed, busy) = absorb(target, &datagrams, rate);
        // Enough rounds that the send never wraps around to a timestamp
        // already used.
        let rounds = (rate as usize * 2) / datagrams.len() + 2;
        let signed_datagrams = signed_rounds(&key, rounds);
        let signed_target = signed.heartbeat.expect("heartbeat port");
        let (_, signed_dropped, signed_absorbed, signed_busy) =
            absorb(signed_target, &signed_datagrams, rate);
        println!(
            "| {rate} | {dropped} | {absorbed:.0} | {busy:.0}% | {signed_dropped} | {signed_absorbed:.0} | {signed_busy:.0}% | {} |",
            refusals_logged() - refusals_before
        );
    }
    let _ = signed.child.kill();
    let _ = signed.child.wait();

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
