//! Abuse: what an attacker, or a careless client, can make beacon hold or
//! miss. Each pattern runs against a fresh release beacon on loopback for
//! BENCH_SECONDS (60; the smoke run takes 2) while the server's resident
//! memory is sampled twice a second; a pattern passes when, after the
//! first sixth of the run (warm-up), RSS stays within 10% of where it was,
//! or under the documented bound.
//!
//! Patterns (BENCH_PATTERNS, comma-separated, default all):
//! - `names`: a 99,000-instance service with one instance flapping its
//!   address every 10 ms, while 5,000 queries a second ask distinct
//!   missing names (fills the answer cache with negative entries).
//! - `ttl`: one instance alternating a lease of a day and of a second,
//!   10,000 heartbeats a second (the expiry structure).
//! - `unread`: 300 TCP connections each pipelining 60 queries for a
//!   2,000-instance SRV set and never reading (reconnecting when closed).
//! - `slowloris`: 1,000 TCP connections at a time from one address,
//!   sending a byte every second, while another client asks over TCP
//!   (its p99 is reported).
//! - `forward`: forwarding towards an upstream that never answers, 5,000
//!   recursive queries a second (open file descriptors are reported).
//! - `churn`: new service names with 1 s leases at rising rates while 1,000
//!   instances renew 3 s leases and probes ask over UDP and TCP: renewals
//!   lost (live instances missing from answers), DNS p99, kernel drops,
//!   and how long SIGTERM takes at the end.
//!
//! Run: `cargo bench --bench abuse`. Everything listens on 127.0.0.1 and
//! stops by itself.

// Rates, shares and percentiles are f64; turning them back into counts
// and indices truncates on purpose.
#![allow(clippy::cast_possible_truncation)]

mod harness;
mod load;

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use harness::{Server, blast, env_list, env_or, rss_kib, start_beacon, udp_drops};
use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;
use load::Question;

/// Open file descriptors of `pid`.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

/// RSS samples of one run: (seconds since start, KiB).
struct Rss(Vec<(f64, u64)>);

impl Rss {
    /// Samples `pid` twice a second until `stop`.
    fn sample(pid: u32, stop: Arc<AtomicBool>) -> thread::JoinHandle<Rss> {
        thread::spawn(move || {
            let start = Instant::now();
            let mut samples = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                samples.push((start.elapsed().as_secs_f64(), rss_kib(pid)));
                thread::sleep(Duration::from_millis(500));
            }
            samples.push((start.elapsed().as_secs_f64(), rss_kib(pid)));
            Rss(samples)
        })
    }

    /// (RSS at the end of warm-up, highest after it, last), in MiB, and
    /// the growth after warm-up in percent.
    fn summary(&self) -> (f64, f64, f64, f64) {
        let end = self.0.last().map_or(0.0, |(t, _)| *t);
        let warm_at = end / 6.0;
        let after: Vec<u64> = self
            .0
            .iter()
            .filter(|(t, _)| *t >= warm_at)
            .map(|(_, kib)| *kib)
            .collect();
        let warm = after.first().copied().unwrap_or(0) as f64 / 1024.0;
        let high = after.iter().copied().max().unwrap_or(0) as f64 / 1024.0;
        let last = after.last().copied().unwrap_or(0) as f64 / 1024.0;
        let growth = if warm > 0.0 {
            (high - warm) / warm * 100.0
        } else {
            0.0
        };
        (warm, high, last, growth)
    }
}

/// One pattern's result.
struct Row {
    pattern: &'static str,
    rss: Rss,
    /// Pattern-specific figures, as text.
    notes: String,
}

/// Runs `drive` for `seconds` against `server` while sampling its RSS.
fn with_rss(server: &Server, drive: impl FnOnce()) -> Rss {
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = Rss::sample(server.child.id(), stop.clone());
    drive();
    stop.store(true, Ordering::Relaxed);
    sampler.join().expect("sampler")
}

/// Sends `datagrams` once each, a few times over, to `target`.
fn register(target: SocketAddr, datagrams: &[Vec<u8>], rate: u64) {
    let seconds = (datagrams.len() as f64 / rate as f64).max(0.05);
    for _ in 0..3 {
        blast(target, datagrams, rate, Duration::from_secs_f64(seconds));
    }
}

/// Sends one UDP query and waits for its reply: the round trip, if any.
fn udp_round_trip(socket: &UdpSocket, server: SocketAddr, query: &[u8]) -> Option<Duration> {
    let started = Instant::now();
    socket.send_to(query, server).ok()?;
    let mut buffer = [0u8; 4096];
    loop {
        let (len, _) = socket.recv_from(&mut buffer).ok()?;
        if len >= 2 && buffer[..2] == query[..2] {
            return Some(started.elapsed());
        }
    }
}

/// One query over an open TCP connection: the round trip and the reply.
fn tcp_round_trip(stream: &mut TcpStream, query: &[u8]) -> Option<(Duration, Message)> {
    let started = Instant::now();
    // Length and query in one write, without Nagle's delay: the probe
    // must measure the server, not the client's TCP stack.
    let _ = stream.set_nodelay(true);
    let mut framed = u16::try_from(query.len()).ok()?.to_be_bytes().to_vec();
    framed.extend_from_slice(query);
    stream.write_all(&framed).ok()?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).ok()?;
    let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut reply).ok()?;
    Some((started.elapsed(), Message::from_vec(&reply).ok()?))
}

/// A query with `id` for `name`/`rtype`, EDNS, as bytes.
fn query(name: &str, rtype: RecordType, id: u16) -> Vec<u8> {
    let mut wire = Question::new(name, rtype, 0).wire;
    wire[..2].copy_from_slice(&id.to_be_bytes());
    wire
}

/// p99 of `samples`, in ms.
fn p99_ms(samples: &mut [Duration]) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    samples.sort();
    samples[(samples.len() - 1) * 99 / 100].as_secs_f64() * 1000.0
}

fn names(dir: &std::path::Path, seconds: u64) -> Row {
    let instances = if harness::smoke() { 2_000 } else { 99_000 };
    let server = start_beacon(
        dir,
        &[
            "--max-instances",
            "200000",
            "--max-instances-per-service",
            "200000",
        ],
    );
    let target = server.heartbeat.expect("heartbeat port");
    let beats: Vec<Vec<u8>> = (0..instances)
        .map(|i| {
            format!(
                "beacon/1 service=big instance=i{i} port=80 ttl=600 addr=10.{}.{}.{}",
                i / 65536,
                (i / 256) % 256,
                i % 256
            )
            .into_bytes()
        })
        .collect();
    register(target, &beats, 200_000);
    let dns = server.dns;
    let rss = with_rss(&server, || {
        let stop = Arc::new(AtomicBool::new(false));
        let flapper = {
            let stop = stop.clone();
            thread::spawn(move || {
                let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
                let mut n = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    let beat = format!(
                        "beacon/1 service=big instance=flap port=80 ttl=600 addr=10.200.0.{}",
                        n % 2 + 1
                    );
                    let _ = socket.send_to(beat.as_bytes(), target);
                    n += 1;
                    thread::sleep(Duration::from_millis(10));
                }
            })
        };
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        socket.set_nonblocking(true).expect("non-blocking");
        let started = Instant::now();
        let mut sent = 0u64;
        let mut sink = [0u8; 4096];
        while started.elapsed() < Duration::from_secs(seconds) {
            let due = (started.elapsed().as_secs_f64() * 5_000.0) as u64;
            while sent < due {
                let q = query(
                    &format!("missing-{sent}.svc.internal."),
                    RecordType::A,
                    sent as u16,
                );
                let _ = socket.send_to(&q, dns);
                sent += 1;
            }
            while socket.recv(&mut sink).is_ok() {}
            thread::sleep(Duration::from_millis(2));
        }
        stop.store(true, Ordering::Relaxed);
        let _ = flapper.join();
    });
    Row {
        pattern: "names",
        rss,
        notes: format!(
            "{instances} instances, one flapping every 10 ms, 5,000 distinct missing names/s"
        ),
    }
}

fn ttl(dir: &std::path::Path, seconds: u64) -> Row {
    let server = start_beacon(dir, &[]);
    let target = server.heartbeat.expect("heartbeat port");
    let beats = vec![
        b"beacon/1 service=flip instance=a port=80 ttl=86400 addr=10.0.0.1".to_vec(),
        b"beacon/1 service=flip instance=a port=80 ttl=1 addr=10.0.0.1".to_vec(),
    ];
    let mut sent = 0;
    let rss = with_rss(&server, || {
        sent = blast(target, &beats, 10_000, Duration::from_secs(seconds));
    });
    Row {
        pattern: "ttl",
        rss,
        notes: format!("{sent} heartbeats alternating ttl=86400 and ttl=1"),
    }
}

fn unread(dir: &std::path::Path, seconds: u64) -> Row {
    let server = start_beacon(dir, &[]);
    let target = server.heartbeat.expect("heartbeat port");
    let beats: Vec<Vec<u8>> = (0..2000)
        .map(|i| {
            format!(
                "beacon/1 service=big instance=i{i:04} port=80 ttl=600 addr=10.0.{}.{}",
                i / 256,
                i % 256
            )
            .into_bytes()
        })
        .collect();
    register(target, &beats, 100_000);
    let dns = server.dns;
    let q = query("_big._tcp.svc.internal.", RecordType::SRV, 1);
    let mut framed = u16::try_from(q.len())
        .expect("short")
        .to_be_bytes()
        .to_vec();
    framed.extend_from_slice(&q);
    let pipeline = framed.repeat(60);
    let connections = if harness::smoke() { 20 } else { 300 };
    let mut reconnects = 0;
    let rss = with_rss(&server, || {
        let started = Instant::now();
        let mut open: Vec<TcpStream> = Vec::new();
        while started.elapsed() < Duration::from_secs(seconds) {
            // Keep the connections open and stuffed; replace closed ones.
            open.retain_mut(|stream| stream.write_all(&framed).is_ok());
            while open.len() < connections {
                let Ok(mut stream) = TcpStream::connect(dns) else {
                    break;
                };
                let _ = stream.set_nonblocking(true);
                let _ = stream.write_all(&pipeline);
                open.push(stream);
                reconnects += 1;
            }
            thread::sleep(Duration::from_millis(200));
        }
    });
    Row {
        pattern: "unread",
        rss,
        notes: format!(
            "{connections} connections × 60 pipelined SRV queries (~64 KiB replies), never read; {reconnects} connections opened"
        ),
    }
}

/// A TCP connection from `local` to `server`.
fn connect_from(local: [u8; 4], server: SocketAddr) -> Option<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).ok()?;
    socket.bind(&SocketAddr::from((local, 0)).into()).ok()?;
    socket.connect(&server.into()).ok()?;
    Some(socket.into())
}

fn slowloris(dir: &std::path::Path, seconds: u64) -> Row {
    let server = start_beacon(dir, &[]);
    let target = server.heartbeat.expect("heartbeat port");
    register(
        target,
        &[b"beacon/1 service=web instance=w1 port=80 ttl=600 addr=10.0.0.1".to_vec()],
        1000,
    );
    let dns = server.dns;
    let stop = Arc::new(AtomicBool::new(false));
    let mut latencies = Vec::new();
    let mut failures = 0;
    let rss = with_rss(&server, || {
        let attacker = {
            let stop = stop.clone();
            thread::spawn(move || {
                let mut slow: Vec<TcpStream> = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    while slow.len() < 1000 {
                        match connect_from([127, 0, 0, 2], dns) {
                            Some(stream) => slow.push(stream),
                            None => break,
                        }
                    }
                    slow.retain_mut(|stream| stream.write_all(&[0]).is_ok());
                    thread::sleep(Duration::from_secs(1));
                }
            })
        };
        let started = Instant::now();
        let mut id = 0u16;
        while started.elapsed() < Duration::from_secs(seconds) {
            id = id.wrapping_add(1);
            let answered = TcpStream::connect(dns).ok().and_then(|mut stream| {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                tcp_round_trip(&mut stream, &query("web.svc.internal.", RecordType::A, id))
            });
            match answered {
                Some((took, _)) => latencies.push(took),
                None => failures += 1,
            }
            thread::sleep(Duration::from_millis(20));
        }
        stop.store(true, Ordering::Relaxed);
        let _ = attacker.join();
    });
    Row {
        pattern: "slowloris",
        rss,
        notes: format!(
            "1,000 trickling connections at a time from 127.0.0.2; another client: {} TCP answers, {failures} failed, p99 {:.2} ms",
            latencies.len(),
            p99_ms(&mut latencies)
        ),
    }
}

fn forward(dir: &std::path::Path, seconds: u64) -> Row {
    let upstream = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let upstream_addr = upstream.local_addr().expect("addr");
    let server = start_beacon(dir, &["--forward", &upstream_addr.to_string()]);
    let dns = server.dns;
    let pid = server.child.id();
    let mut most_fds = 0;
    let rss = with_rss(&server, || {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        socket.set_nonblocking(true).expect("non-blocking");
        let started = Instant::now();
        let mut sent = 0u64;
        let mut sink = [0u8; 4096];
        while started.elapsed() < Duration::from_secs(seconds) {
            let due = (started.elapsed().as_secs_f64() * 5_000.0) as u64;
            while sent < due {
                let mut q = query(&format!("n{sent}.example.org."), RecordType::A, sent as u16);
                q[2] |= 0x01; // RD
                let _ = socket.send_to(&q, dns);
                sent += 1;
            }
            while socket.recv(&mut sink).is_ok() {}
            most_fds = most_fds.max(open_fds(pid));
            thread::sleep(Duration::from_millis(5));
        }
    });
    drop(upstream);
    Row {
        pattern: "forward",
        rss,
        notes: format!(
            "5,000 recursive queries/s to a silent upstream; at most {most_fds} open files"
        ),
    }
}

/// The legitimate instances in churn: 10 services × 100, 3 s leases.
fn legit_beats() -> Vec<Vec<u8>> {
    (0..10)
        .flat_map(|s| {
            (0..100).map(move |i| {
                format!("beacon/1 service=legit{s} instance=i{i} port=80 ttl=3 addr=10.1.{s}.{i}")
                    .into_bytes()
            })
        })
        .collect()
}

fn churn(dir: &std::path::Path, seconds: u64) -> Row {
    let server = start_beacon(dir, &[]);
    let target = server.heartbeat.expect("heartbeat port");
    let dns = server.dns;
    let legit = legit_beats();
    register(target, &legit, 100_000);
    let rates: Vec<u64> = harness::env_numbers("BENCH_FLOOD_RATES", "50000,100000,200000,400000");
    let step = Duration::from_secs((seconds / rates.len() as u64).max(1));
    let stop = Arc::new(AtomicBool::new(false));
    // Renewals: every instance once a second.
    let renewer = {
        let stop = stop.clone();
        let legit = legit.clone();
        thread::spawn(move || {
            let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
            while !stop.load(Ordering::Relaxed) {
                for beat in &legit {
                    let _ = socket.send_to(beat, target);
                }
                thread::sleep(Duration::from_secs(1));
            }
        })
    };
    let mut lines = Vec::new();
    let mut exit = None;
    let rss = with_rss(&server, || {
        for (n, rate) in rates.iter().enumerate() {
            let flood: Vec<Vec<u8>> = (0..200_000)
                .map(|i| {
                    format!(
                        "beacon/1 service=f{n}x{i} instance=x port=1 ttl=1 addr=10.9.{}.{}",
                        i / 256 % 256,
                        i % 256
                    )
                    .into_bytes()
                })
                .collect();
            let drops_before = udp_drops();
            let probe_stop = Arc::new(AtomicBool::new(false));
            // Probes: UDP and TCP round trips, and the live legit count.
            let udp_probe = {
                let stop = probe_stop.clone();
                thread::spawn(move || {
                    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
                    socket
                        .set_read_timeout(Some(Duration::from_millis(500)))
                        .expect("timeout");
                    let (mut times, mut lost) = (Vec::new(), 0);
                    let mut id = 0u16;
                    while !stop.load(Ordering::Relaxed) {
                        id = id.wrapping_add(1);
                        match udp_round_trip(
                            &socket,
                            dns,
                            &query("legit0.svc.internal.", RecordType::A, id),
                        ) {
                            Some(t) => times.push(t),
                            None => lost += 1,
                        }
                        thread::sleep(Duration::from_millis(2));
                    }
                    (times, lost)
                })
            };
            let tcp_probe = {
                let stop = probe_stop.clone();
                thread::spawn(move || {
                    let (mut times, mut fewest) = (Vec::new(), usize::MAX);
                    let Ok(mut stream) = TcpStream::connect(dns) else {
                        return (times, fewest);
                    };
                    stream
                        .set_read_timeout(Some(Duration::from_secs(2)))
                        .expect("timeout");
                    let mut id = 0u16;
                    while !stop.load(Ordering::Relaxed) {
                        let mut live = 0;
                        for s in 0..10 {
                            id = id.wrapping_add(1);
                            let name = format!("legit{s}.svc.internal.");
                            match tcp_round_trip(&mut stream, &query(&name, RecordType::A, id)) {
                                Some((t, reply)) => {
                                    times.push(t);
                                    live += reply.answers.len();
                                }
                                None => {
                                    // Closed (or gone, after SIGTERM).
                                    let Ok(again) = TcpStream::connect(dns) else {
                                        return (times, fewest);
                                    };
                                    stream = again;
                                    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                                }
                            }
                        }
                        fewest = fewest.min(live);
                        thread::sleep(Duration::from_millis(50));
                    }
                    (times, fewest)
                })
            };
            let last = n + 1 == rates.len();
            let sent = if last {
                // SIGTERM in the middle of the last flood.
                let flooder = {
                    let flood = flood.clone();
                    let rate = *rate;
                    thread::spawn(move || blast(target, &flood, rate, step))
                };
                thread::sleep(step / 2);
                let asked = Instant::now();
                let _ = std::process::Command::new("kill")
                    .arg(server.child.id().to_string())
                    .status();
                let gone = (0..500).find(|_| {
                    thread::sleep(Duration::from_millis(10));
                    std::fs::metadata(format!("/proc/{}/stat", server.child.id())).is_err()
                        || std::fs::read_to_string(format!("/proc/{}/stat", server.child.id()))
                            .is_ok_and(|s| s.contains(") Z "))
                });
                exit = gone.map(|_| asked.elapsed());
                flooder.join().unwrap_or(0)
            } else {
                blast(target, &flood, *rate, step)
            };
            probe_stop.store(true, Ordering::Relaxed);
            let (mut udp_times, udp_lost) = udp_probe.join().expect("udp probe");
            let (mut tcp_times, fewest) = tcp_probe.join().expect("tcp probe");
            lines.push(format!(
                "| {rate} | {:.0} | {} | {} of 1000 | {:.2} ms ({udp_lost} unanswered) | {:.2} ms |",
                sent as f64 / step.as_secs_f64(),
                udp_drops().saturating_sub(drops_before),
                if fewest == usize::MAX { 0 } else { fewest },
                p99_ms(&mut udp_times),
                p99_ms(&mut tcp_times),
            ));
        }
    });
    stop.store(true, Ordering::Relaxed);
    let _ = renewer.join();
    let mut notes = String::from(
        "\n\n| flood rate asked | sent/s | kernel drops | fewest legit instances answered | UDP p99 | TCP p99 |\n|---|---|---|---|---|---|\n",
    );
    notes.push_str(&lines.join("\n"));
    let exit = exit.map_or("more than 5 s".to_string(), |t| {
        format!("{:.0} ms", t.as_secs_f64() * 1000.0)
    });
    // Writing to a String cannot fail.
    let _ = write!(
        notes,
        "\n\nSIGTERM during the last flood: exited after {exit}"
    );
    Row {
        pattern: "churn",
        rss,
        notes,
    }
}

fn main() {
    let smoke = harness::smoke();
    let seconds: u64 = env_or("BENCH_SECONDS", if smoke { 2 } else { 60 });
    let patterns = env_list("BENCH_PATTERNS", "names,ttl,unread,slowloris,forward,churn");
    let dir = tempfile::tempdir().expect("temp dir");
    let mut rows = Vec::new();
    for pattern in &patterns {
        let run = dir.path().join(pattern);
        std::fs::create_dir_all(&run).expect("dir");
        eprintln!("abuse: {pattern} for {seconds} s");
        let row = match pattern.as_str() {
            "names" => names(&run, seconds),
            "ttl" => ttl(&run, seconds),
            "unread" => unread(&run, seconds),
            "slowloris" => slowloris(&run, seconds),
            "forward" => forward(&run, seconds),
            "churn" => churn(&run, seconds),
            other => panic!("unknown pattern {other}"),
        };
        rows.push(row);
    }
    println!();
    println!("| pattern | RSS after warm-up | highest after | at the end | growth | what |");
    println!("|---|---|---|---|---|---|");
    for row in &rows {
        let (warm, high, last, growth) = row.rss.summary();
        let what = row.notes.lines().next().unwrap_or_default();
        println!(
            "| {} | {warm:.1} MiB | {high:.1} MiB | {last:.1} MiB | {growth:+.1}% | {what} |",
            row.pattern
        );
    }
    if std::env::var_os("BENCH_RSS_TRACE").is_some() {
        for row in &rows {
            let trace: Vec<String> = row
                .rss
                .0
                .iter()
                .map(|(t, kib)| format!("{t:.0}s:{}", kib / 1024))
                .collect();
            println!("\n{} RSS (MiB): {}", row.pattern, trace.join(" "));
        }
    }
    for row in &rows {
        if row.notes.contains('\n') {
            println!("\n{}:{}", row.pattern, row.notes);
        }
    }
}
