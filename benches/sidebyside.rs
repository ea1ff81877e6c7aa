//! Side by side: beacon, Knot DNS, NSD and (when installed) the hickory-dns
//! reference server serving the same data on one core each, under the same
//! load from the project's own generator.
//!
//! Run: `cargo bench --bench sidebyside` (needs `apt-get install -y knot nsd`;
//! hickory-dns joins when `hickory-dns` is on PATH or BENCH_HICKORY_BIN
//! names it: `cargo install hickory-dns --version 0.26.3 --locked`; it runs
//! with `-q`, since at INFO it logs every query; dnsperf, if installed,
//! gives a second opinion with `BENCH_DNSPERF=1`).
//!
//! The data: 200 services × 3 instances. beacon gets them as real
//! heartbeats; the others read the same names from a zone file: A records
//! at `svcN`, SRV at `_svcN._tcp` with targets `iK.svcN` and their A
//! records. The mix: 50% A for a service, 30% SRV, 10% A for an instance,
//! 10% names that do not exist (NXDOMAIN). No EDNS, like dnsperf; in the
//! `udp-do` mode the same mix carries EDNS with the DO bit, as validating
//! resolvers (Unbound, Knot Resolver) send every query.
//!
//! The server runs on CPU 1 (every thread re-pinned after start, since Knot
//! pins its own), the generator and the heartbeat sender on CPU 0. Servers
//! alternate within each round (beacon, knot, nsd, beacon, …). During
//! beacon's runs, heartbeats renew its instances at 10,000/s.
//!
//! Knobs (environment): BENCH_ROUNDS (3), BENCH_SECONDS (10),
//! BENCH_MODES (udp,udp-do,rate,tcp), BENCH_SERVERS (beacon,knot,nsd, plus hickory
//! when found),
//! BENCH_OUTSTANDING (200), BENCH_RATE (20000), BENCH_HEARTBEATS (10000),
//! BENCH_RRL (1000000: the `--rrl` rate of the `beacon-rrl` server, which
//! joins with BENCH_SERVERS=beacon,beacon-rrl,knot to show what rate
//! limiting costs below its rate, in the same rounds). The
//! `beacon-dnstap` server writes every query and reply with `--dnstap`
//! (BENCH_SERVERS=beacon,beacon-dnstap,knot shows what that costs). The
//! `beacon-baseline` server is another build, BENCH_BASELINE_BIN (an
//! earlier commit's binary), in the same rounds: what a change costs.
//! Everything listens on 127.0.0.1 and stops when the run ends.

// Rates, shares and percentiles are f64; turning them back into counts
// and indices truncates on purpose.
#![allow(clippy::cast_possible_truncation)]

mod harness;
mod load;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use harness::{
    Server, cpu_jiffies, env_list, env_or, free_port, pin_self, start_beacon, start_beacon_build,
    start_knot, start_peer,
};
use hickory_proto::rr::RecordType;
use load::{Outcome, Question};

const SERVICES: usize = 200;
const INSTANCES: usize = 3;
const ZONE: &str = "svc.internal.";
const SERVER_CPU: usize = 1;
const GENERATOR_CPU: usize = 0;

fn address(service: usize, instance: usize) -> String {
    format!("10.{}.{}.{}", service / 256, service % 256, instance + 1)
}

/// The zone file Knot and NSD serve: the same names beacon builds.
fn zone_file() -> String {
    let mut z = format!(
        "$ORIGIN {ZONE}\n$TTL 5\n@ 60 IN SOA ns hostmaster 1 60 10 86400 5\n@ 60 IN NS ns\nns 60 IN A 127.0.0.1\n"
    );
    for s in 0..SERVICES {
        for i in 0..INSTANCES {
            let addr = address(s, i);
            // Writing to a String cannot fail.
            let _ = writeln!(z, "svc{s} IN A {addr}");
            let _ = writeln!(z, "i{i}.svc{s} IN A {addr}");
            let _ = writeln!(z, "_svc{s}._tcp IN SRV 0 1 8080 i{i}.svc{s}");
        }
    }
    z
}

/// 50% A for a service, 30% SRV, 10% A for an instance, 10% NXDOMAIN,
/// interleaved and spread over the services: (name, type, rcode).
fn mix_text() -> Vec<(String, RecordType, u8)> {
    (0..2000)
        .map(|n| {
            let s = (n * 7919) % SERVICES;
            match n % 10 {
                0..=4 => (format!("svc{s}.{ZONE}"), RecordType::A, 0),
                5..=7 => (format!("_svc{s}._tcp.{ZONE}"), RecordType::SRV, 0),
                8 => (
                    format!("i{}.svc{s}.{ZONE}", n % INSTANCES),
                    RecordType::A,
                    0,
                ),
                _ => (format!("nothing{n}.{ZONE}"), RecordType::A, 3),
            }
        })
        .collect()
}

/// dnsperf's opinion of `server`'s UDP throughput (one client, 100 in
/// flight, pinned to the generator's CPU), if dnsperf is installed.
fn dnsperf(server: &Server, queries: &Path, seconds: u64) -> Option<f64> {
    let out = Command::new("taskset")
        .args([
            "-c",
            &GENERATOR_CPU.to_string(),
            "dnsperf",
            "-s",
            "127.0.0.1",
        ])
        .args(["-p", &server.dns.port().to_string(), "-d"])
        .arg(queries)
        .args(["-l", &seconds.to_string(), "-c", "1", "-q", "100"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.trim_start().starts_with("Queries per second:"))
        .and_then(|l| l.split(':').nth(1))
        .and_then(|v| v.trim().parse().ok())
}

fn wait_until_answering(server: &Server, probe: &Question) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let out = load::udp(
            server.dns,
            std::slice::from_ref(probe),
            Duration::from_millis(50),
            1,
            None,
        );
        if out.answered > 0 && out.wrong == 0 {
            return;
        }
        thread::sleep(Duration::from_millis(100));
    }
    panic!("{} never answered {}", server.name, server.dns);
}

fn heartbeat(service: usize, instance: usize) -> String {
    format!(
        "beacon/1 service=svc{service} instance=i{instance} port=8080 addr={} ttl=60",
        address(service, instance)
    )
}

fn register_all(server: &Server) {
    let target = server.heartbeat.expect("beacon has a heartbeat port");
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let probe = Question::new(
        &format!("_svc{}._tcp.{ZONE}", SERVICES - 1),
        RecordType::SRV,
        0,
    );
    for _round in 0..20 {
        for s in 0..SERVICES {
            for i in 0..INSTANCES {
                let _ = socket.send_to(heartbeat(s, i).as_bytes(), target);
            }
            thread::sleep(Duration::from_micros(200));
        }
        thread::sleep(Duration::from_millis(200));
        if load::udp(
            server.dns,
            std::slice::from_ref(&probe),
            Duration::from_millis(50),
            1,
            None,
        )
        .answered
            > 0
        {
            return;
        }
    }
    panic!("beacon never registered all instances");
}

/// Renews beacon's instances at `rate` heartbeats a second until stopped.
fn heartbeat_load(target: SocketAddr, rate: u64, stop: Arc<AtomicBool>) -> thread::JoinHandle<u64> {
    thread::spawn(move || {
        pin_self(GENERATOR_CPU);
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let beats: Vec<String> = (0..SERVICES)
            .flat_map(|s| (0..INSTANCES).map(move |i| heartbeat(s, i)))
            .collect();
        let start = Instant::now();
        let mut sent = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
            while sent < due {
                let beat = &beats[(sent as usize) % beats.len()];
                let _ = socket.send_to(beat.as_bytes(), target);
                sent += 1;
            }
            thread::sleep(Duration::from_millis(1));
        }
        sent
    })
}

fn start_nsd(dir: &Path, zone: &Path) -> Server {
    let port = free_port();
    let run = dir.join("nsd");
    std::fs::create_dir_all(&run).expect("nsd dir");
    let conf = format!(
        "server:\n    ip-address: 127.0.0.1@{port}\n    do-ip6: no\n    server-count: 1\n    username: \"\"\n    chroot: \"\"\n\
         \x20   zonesdir: \"{zones}\"\n    database: \"\"\n    zonelistfile: \"{run}/zone.list\"\n    xfrdfile: \"{run}/xfrd.state\"\n\
         \x20   xfrdir: \"{run}\"\n    pidfile: \"{run}/nsd.pid\"\n    logfile: \"{run}/nsd.log\"\n    verbosity: 1\n    tcp-count: 1000\n\
         \x20   # Debian's NSD has response-rate-limiting on: off for a load test\n    rrl-ratelimit: 0\n    rrl-whitelist-ratelimit: 0\n\
         remote-control:\n    control-enable: no\n\
         zone:\n    name: {ZONE}\n    zonefile: {file}\n",
        run = run.display(),
        zones = zone.parent().expect("dir").display(),
        file = zone.file_name().expect("name").to_string_lossy(),
    );
    let conf_path = run.join("nsd.conf");
    std::fs::write(&conf_path, conf).expect("nsd.conf");
    let mut command = Command::new("nsd");
    command.args(["-d", "-c"]).arg(&conf_path);
    start_peer("nsd", command, port)
}

/// The hickory-dns binary: BENCH_HICKORY_BIN, else `hickory-dns` on PATH
/// or where `cargo install` puts it.
fn hickory_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("BENCH_HICKORY_BIN") {
        return Some(PathBuf::from(path));
    }
    let on_path = Command::new("sh")
        .args(["-c", "command -v hickory-dns"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    on_path.or_else(|| {
        let installed = PathBuf::from(std::env::var_os("HOME")?).join(".cargo/bin/hickory-dns");
        installed.exists().then_some(installed)
    })
}

/// hickory-dns 0.26 as shipped, one worker, warnings only.
fn start_hickory(dir: &Path, zone: &Path, binary: &Path) -> Server {
    let port = free_port();
    let run = dir.join("hickory");
    std::fs::create_dir_all(&run).expect("hickory dir");
    let conf = format!(
        "listen_addrs_ipv4 = [\"127.0.0.1\"]\nlisten_port = {port}\ndirectory = \"{zones}\"\n\
         drop_privileges = false\n\n[[zones]]\nzone = \"{ZONE}\"\nzone_type = \"Primary\"\n\
         stores = {{ type = \"file\", zone_path = \"{file}\" }}\n",
        zones = zone.parent().expect("dir").display(),
        file = zone.file_name().expect("name").to_string_lossy(),
    );
    let conf_path = run.join("hickory.toml");
    std::fs::write(&conf_path, conf).expect("hickory.toml");
    let mut command = Command::new(binary);
    command.args(["-q", "--workers", "1", "-c"]).arg(&conf_path);
    start_peer("hickory", command, port)
}

/// One measured run.
struct Row {
    server: &'static str,
    mode: String,
    /// Which round (servers take turns within a round, so the rounds pair
    /// runs made under the same machine conditions).
    round: usize,
    outcome: Outcome,
    server_busy: f64,
    heartbeats: u64,
}

/// The query mix, plain and as validating resolvers send it.
struct Mixes {
    plain: Vec<Question>,
    dnssec_ok: Vec<Question>,
}

fn measure(server: &Server, mode: &str, mixes: &Mixes, seconds: u64, heartbeats: u64) -> Row {
    let mix = &mixes.plain;
    let duration = Duration::from_secs(seconds);
    let stop = Arc::new(AtomicBool::new(false));
    let beats = match (server.heartbeat, heartbeats) {
        (Some(target), rate) if rate > 0 => Some(heartbeat_load(target, rate, stop.clone())),
        _ => None,
    };
    let (busy0, total0) = cpu_jiffies(SERVER_CPU);
    let outcome = match mode {
        "udp" => load::udp(
            server.dns,
            mix,
            duration,
            env_or("BENCH_OUTSTANDING", 200),
            None,
        ),
        "udp-do" => load::udp(
            server.dns,
            &mixes.dnssec_ok,
            duration,
            env_or("BENCH_OUTSTANDING", 200),
            None,
        ),
        "rate" => load::udp(
            server.dns,
            mix,
            duration,
            100_000,
            Some(env_or("BENCH_RATE", 20_000)),
        ),
        "tcp" => load::tcp(server.dns, mix, duration, 10, 20),
        other => panic!("unknown mode {other} (udp, udp-do, rate, tcp)"),
    };
    let (busy1, total1) = cpu_jiffies(SERVER_CPU);
    stop.store(true, Ordering::Relaxed);
    let sent_beats = beats.map_or(0, |h| h.join().unwrap_or(0));
    Row {
        round: 0,
        server: server.name,
        mode: mode.to_string(),
        outcome,
        server_busy: (busy1 - busy0) as f64 / (total1 - total0).max(1) as f64,
        heartbeats: (sent_beats as f64 / seconds as f64) as u64,
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    // `cargo bench` passes --bench; a filter argument is not ours to use.
    let cpus = thread::available_parallelism().map_or(1, usize::from);
    let smoke = harness::smoke();
    let rounds: usize = env_or("BENCH_ROUNDS", if smoke { 1 } else { 3 });
    let seconds: u64 = env_or("BENCH_SECONDS", if smoke { 1 } else { 10 });
    let modes = env_list("BENCH_MODES", "udp,udp-do,rate,tcp");
    let hickory = hickory_binary();
    let default_servers = if hickory.is_some() {
        "beacon,knot,nsd,hickory"
    } else {
        eprintln!(
            "hickory-dns not found: it is left out (`cargo install hickory-dns --version 0.26.3 \
             --locked`, or BENCH_HICKORY_BIN, to include it)"
        );
        "beacon,knot,nsd"
    };
    let names = env_list("BENCH_SERVERS", default_servers);
    let heartbeat_rate: u64 = env_or("BENCH_HEARTBEATS", 10_000);
    for tool in ["knotd", "nsd", "taskset"] {
        let wanted = match tool {
            "knotd" => names.iter().any(|n| n == "knot"),
            "nsd" => names.iter().any(|n| n == "nsd"),
            _ => true,
        };
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if wanted && !found {
            eprintln!(
                "{tool} is missing: install it with `apt-get install -y knot nsd util-linux` \
                 (or leave it out with BENCH_SERVERS=beacon)"
            );
            // As a smoke test outside CI a missing peer skips; a benchmark
            // run, or CI, fails.
            if smoke && std::env::var_os("CI").is_none() {
                return;
            }
            std::process::exit(1);
        }
    }
    if cpus < 2 {
        eprintln!("warning: fewer than 2 CPUs; server and generator share one");
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let zone_dir = dir.path().join("zones");
    std::fs::create_dir_all(&zone_dir).expect("zones");
    let zone_path: PathBuf = zone_dir.join("svc.internal.zone");
    std::fs::write(&zone_path, zone_file()).expect("zone file");
    let text = mix_text();
    let mixes = Mixes {
        plain: text
            .iter()
            .map(|(name, rtype, rcode)| Question::new(name, *rtype, *rcode))
            .collect(),
        dnssec_ok: text
            .iter()
            .map(|(name, rtype, rcode)| Question::with_do(name, *rtype, *rcode))
            .collect(),
    };
    let queries = dir.path().join("queries.txt");
    let lines: Vec<String> = text.iter().map(|(n, t, _)| format!("{n} {t}")).collect();
    std::fs::write(&queries, lines.join("\n") + "\n").expect("query file");
    let probe = Question::new(&format!("svc0.{ZONE}"), RecordType::A, 0);

    let mut servers: Vec<Server> = Vec::new();
    for name in &names {
        let server = match name.as_str() {
            "beacon" | "beacon-rrl" | "beacon-dnstap" | "beacon-baseline" => {
                let rrl = if name == "beacon-rrl" {
                    env_or("BENCH_RRL", 1_000_000u32).to_string()
                } else {
                    "0".to_string()
                };
                let tap = dir.path().join("beacon.dnstap").display().to_string();
                let mut flags = vec![
                    "--udp-workers",
                    "1",
                    "--max-instances",
                    "10000",
                    "--rrl",
                    &rrl,
                ];
                if name == "beacon-dnstap" {
                    flags.extend(["--dnstap", tap.as_str()]);
                }
                let baseline = std::env::var("BENCH_BASELINE_BIN").ok();
                let mut server = if name == "beacon-baseline" {
                    let binary = baseline
                        .as_deref()
                        .expect("beacon-baseline needs BENCH_BASELINE_BIN (another build)");
                    start_beacon_build(Some(binary), dir.path(), &flags)
                } else {
                    start_beacon(dir.path(), &flags)
                };
                server.name = match name.as_str() {
                    "beacon-rrl" => "beacon-rrl",
                    "beacon-dnstap" => "beacon-dnstap",
                    "beacon-baseline" => "beacon-baseline",
                    _ => "beacon",
                };
                server
            }
            "knot" => start_knot(dir.path(), ZONE, &zone_path),
            "nsd" => start_nsd(dir.path(), &zone_path),
            "hickory" => match &hickory {
                Some(binary) => start_hickory(dir.path(), &zone_path, binary),
                None => panic!(
                    "hickory-dns is missing: `cargo install hickory-dns --version 0.26.3 --locked`"
                ),
            },
            other => panic!(
                "unknown server {other} (beacon, beacon-rrl, beacon-dnstap, beacon-baseline, knot, nsd, hickory)"
            ),
        };
        if server.heartbeat.is_some() {
            register_all(&server);
        }
        wait_until_answering(&server, &probe);
        if cpus >= 2 {
            server.pin_to(SERVER_CPU);
        }
        servers.push(server);
    }
    if cpus >= 2 {
        pin_self(GENERATOR_CPU);
    }
    println!(
        "side by side: {SERVICES} services x {INSTANCES} instances, {rounds} rounds x {seconds} s, \
         server on CPU {SERVER_CPU}, generator on CPU {GENERATOR_CPU}, heartbeats to beacon at {heartbeat_rate}/s"
    );

    let mut rows: Vec<Row> = Vec::new();
    for mode in &modes {
        for round in 0..rounds {
            for server in &servers {
                // Warm up caches and the kernel's socket state.
                let _ = load::udp(
                    server.dns,
                    &mixes.plain,
                    Duration::from_millis(300),
                    50,
                    None,
                );
                let mut row = measure(server, mode, &mixes, seconds, heartbeat_rate);
                row.round = round;
                eprintln!(
                    "  {mode} round {} {:<7} {:>9.0} qps  lost {} wrong {}",
                    round + 1,
                    row.server,
                    row.outcome.qps(),
                    row.outcome.lost,
                    row.outcome.wrong
                );
                rows.push(row);
            }
        }
    }
    report(&modes, &servers, &mut rows);
    let wrong: u64 = rows.iter().map(|r| r.outcome.wrong).sum();
    assert_eq!(wrong, 0, "some replies had the wrong ID, question or rcode");
    assert!(
        rows.iter().all(|r| r.outcome.answered > 0),
        "a server answered nothing in some run"
    );
    if std::env::var("BENCH_DNSPERF").is_ok_and(|v| v == "1") {
        println!();
        println!("| server | dnsperf QPS (-c 1 -q 100, UDP, {seconds} s) | vs knot |");
        println!("|---|---|---|");
        let results: Vec<(&str, Option<f64>)> = servers
            .iter()
            .map(|server| (server.name, dnsperf(server, &queries, seconds)))
            .collect();
        let knot = results
            .iter()
            .find(|(n, _)| *n == "knot")
            .and_then(|(_, q)| *q);
        for (name, qps) in results {
            match (qps, knot) {
                (Some(q), Some(k)) => println!("| {name} | {q:.0} | {:.2} |", q / k),
                (Some(q), None) => println!("| {name} | {q:.0} | – |"),
                (None, _) => println!("| {name} | dnsperf failed or is missing | – |"),
            }
        }
    }
}

fn report(modes: &[String], servers: &[Server], rows: &mut [Row]) {
    println!();
    println!(
        "| mode | server | QPS (median) | min–max | vs knot | vs knot, per round (median) | server-core µs/query | lost / sent | wrong | avg ms | p50 ms | p99 ms | p99.9 ms | heartbeats/s |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for mode in modes {
        let mut knot_qps = None;
        let mut lines = BTreeMap::new();
        for (order, server) in servers.iter().enumerate() {
            let mut mine: Vec<&mut Row> = rows
                .iter_mut()
                .filter(|r| r.server == server.name && &r.mode == mode)
                .collect();
            if mine.is_empty() {
                continue;
            }
            let mut qps: Vec<f64> = mine.iter().map(|r| r.outcome.qps()).collect();
            let med = median(&mut qps);
            let (lo, hi) = (qps[0], qps[qps.len() - 1]);
            let mut per_query: Vec<f64> = mine
                .iter()
                .map(|r| {
                    r.server_busy * r.outcome.elapsed.as_secs_f64() * 1e6
                        / r.outcome.answered.max(1) as f64
                })
                .collect();
            let us = median(&mut per_query);
            let lost: u64 = mine.iter().map(|r| r.outcome.lost).sum();
            let sent: u64 = mine.iter().map(|r| r.outcome.sent).sum();
            let wrong: u64 = mine.iter().map(|r| r.outcome.wrong).sum();
            let beats = mine.iter().map(|r| r.heartbeats).max().unwrap_or(0);
            // Latency from the median run.
            mine.sort_by(|a, b| a.outcome.qps().total_cmp(&b.outcome.qps()));
            let mid = mine.len() / 2;
            let o = &mut mine[mid].outcome;
            let lat = (
                o.average_ms(),
                o.percentile_ms(50.0),
                o.percentile_ms(99.0),
                o.percentile_ms(99.9),
            );
            if server.name == "knot" {
                knot_qps = Some((med, lat));
            }
            lines.insert(
                order,
                (server.name, med, lo, hi, us, lost, sent, wrong, lat, beats),
            );
        }
        // Knot's QPS in each round, to pair each run with Knot's run of the
        // same round: the machine's drift between rounds cancels out.
        let knot_rounds: BTreeMap<usize, f64> = rows
            .iter()
            .filter(|r| r.server == "knot" && &r.mode == mode)
            .map(|r| (r.round, r.outcome.qps()))
            .collect();
        for (name, med, lo, hi, us, lost, sent, wrong, lat, beats) in lines.into_values() {
            let mut paired: Vec<f64> = rows
                .iter()
                .filter(|r| r.server == name && &r.mode == mode)
                .filter_map(|r| Some(r.outcome.qps() / knot_rounds.get(&r.round)?))
                .collect();
            let paired = if paired.is_empty() || mode == "rate" {
                "–".to_string()
            } else {
                format!("{:.2}", median(&mut paired))
            };
            let ratio = match (mode.as_str(), knot_qps) {
                // At a fixed rate QPS is the rate; compare latency instead.
                ("rate", Some((_, k))) => format!(
                    "avg {:.2}×, p99 {:.2}× knot's latency",
                    lat.0 / k.0,
                    lat.2 / k.2
                ),
                (_, Some((k, _))) => format!("{:.2}", med / k),
                _ => "–".into(),
            };
            println!(
                "| {mode} | {name} | {med:.0} | {lo:.0}–{hi:.0} | {ratio} | {paired} | {us:.2} | {lost} / {sent} | {wrong} | {:.3} | {:.3} | {:.3} | {:.3} | {} |",
                lat.0,
                lat.1,
                lat.2,
                lat.3,
                if name.starts_with("beacon") {
                    beats.to_string()
                } else {
                    "–".into()
                }
            );
        }
    }
}
