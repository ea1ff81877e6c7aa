//! Benchmark harness: starting servers on loopback, pinning them and the
//! generator to CPUs, and reading how busy a CPU was.
//!
//! Every benchmark also runs as a smoke test: `cargo test --all-targets`
//! runs it without `--bench`, and it then does the same steps at a tiny
//! size, so a broken benchmark fails the test suite rather than the next
//! person who measures.

#![allow(dead_code)] // each bench uses a different part

use std::io::{BufRead, BufReader, IoSlice};
use std::os::fd::AsRawFd;

use hickory_proto::rr::RecordType;
use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, sendmmsg};

use crate::load::Question;

/// `name` from the environment, parsed, or `default`.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `name` from the environment (or `default`) as a comma-separated list
/// of numbers; entries that do not parse are left out.
pub fn env_numbers<T: std::str::FromStr>(name: &str, default: &str) -> Vec<T> {
    env_list(name, default)
        .iter()
        .filter_map(|entry| entry.parse().ok())
        .collect()
}

/// `name` from the environment (or `default`) as a comma-separated list.
pub fn env_list(name: &str, default: &str) -> Vec<String> {
    std::env::var(name)
        .unwrap_or_else(|_| default.to_string())
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// True when run by `cargo test` (no `--bench` argument): do everything, small.
pub fn smoke() -> bool {
    !std::env::args().any(|a| a == "--bench")
}
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// A free loopback port for UDP and TCP.
pub fn free_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let port = udp.local_addr().expect("addr").port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

pub fn pin_self(cpu: usize) {
    let mut set = nix::sched::CpuSet::new();
    if set.set(cpu).is_ok() {
        let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set);
    }
}

/// Pins every thread of `pid` to `cpu`.
pub fn pin_process(pid: u32, cpu: usize) {
    let status = Command::new("taskset")
        .args(["-a", "-p", "-c", &cpu.to_string(), &pid.to_string()])
        .stdout(Stdio::null())
        .status();
    if !status.is_ok_and(|s| s.success()) {
        eprintln!("warning: could not pin process {pid} to CPU {cpu}");
    }
}

/// Busy and total jiffies of one CPU, from /proc/stat.
pub fn cpu_jiffies(cpu: usize) -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let label = format!("cpu{cpu} ");
    let Some(line) = stat.lines().find(|l| l.starts_with(&label)) else {
        return (0, 0);
    };
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let total: u64 = fields.iter().take(8).sum();
    let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// The resident memory of `pid`, in KiB (0 once it is gone).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A server process under test, stopped on drop.
pub struct Server {
    pub name: &'static str,
    pub child: Child,
    pub dns: SocketAddr,
    pub heartbeat: Option<SocketAddr>,
}

impl Server {
    /// Pins every thread of the server's process tree to `cpu` (servers
    /// such as Knot pin their own threads, so this runs after start-up).
    pub fn pin_to(&self, cpu: usize) {
        for pid in process_tree(self.child.id()) {
            pin_process(pid, cpu);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the beacon under test with `extra` flags and an empty zones folder.
pub fn start_beacon(dir: &Path, extra: &[&str]) -> Server {
    let zones = dir.join("beacon-zones");
    std::fs::create_dir_all(&zones).expect("zones dir");
    start_beacon_in(&zones, extra).0
}

/// The value of `key=` in a log line.
pub fn log_field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let start = line.find(&format!("{key}="))? + key.len() + 1;
    line[start..].split_whitespace().next()
}

/// WARN lines about refused heartbeats logged by every beacon started so
/// far (each reason is logged at most once per 10 s: any at all means a
/// benchmark's heartbeats were not all accepted).
static REFUSALS_LOGGED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// See [`REFUSALS_LOGGED`].
pub fn refusals_logged() -> u64 {
    REFUSALS_LOGGED.load(std::sync::atomic::Ordering::Relaxed)
}

/// Starts the beacon under test on the fragments in `zones` with `extra`
/// flags; returns it and its log up to the line that says it listens.
pub fn start_beacon_in(zones: &Path, extra: &[&str]) -> (Server, Vec<String>) {
    // A state directory of its own beside the zones (benches start several
    // servers, and must not write into the home directory).
    static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let state = zones
        .parent()
        .unwrap_or(zones)
        .join(format!("beacon-state-{n}"));
    start_beacon_at(zones, &state, ("127.0.0.1:0", "127.0.0.1:0"), extra)
}

/// [`start_beacon_in`] with a given state directory and addresses (DNS,
/// heartbeats): a benchmark that restarts the server keeps both.
pub fn start_beacon_at(
    zones: &Path,
    state: &Path,
    addresses: (&str, &str),
    extra: &[&str],
) -> (Server, Vec<String>) {
    // BENCH_BEACON_BIN runs another build (an earlier commit, for an A/B
    // comparison in the same conditions).
    let binary = std::env::var("BENCH_BEACON_BIN").ok();
    start_beacon_binary(binary.as_deref(), zones, state, addresses, extra)
}

/// Starts `binary` (default: this build) with an empty zones folder under
/// `dir`: another build beside this one in the same rounds.
pub fn start_beacon_build(binary: Option<&str>, dir: &Path, extra: &[&str]) -> Server {
    let zones = dir.join("beacon-zones");
    std::fs::create_dir_all(&zones).expect("zones dir");
    let state = dir.join(format!("beacon-state-{}", free_port()));
    start_beacon_binary(
        binary,
        &zones,
        &state,
        ("127.0.0.1:0", "127.0.0.1:0"),
        extra,
    )
    .0
}

/// [`start_beacon_at`] for `binary` (default: this build).
fn start_beacon_binary(
    binary: Option<&str>,
    zones: &Path,
    state: &Path,
    (dns, heartbeat): (&str, &str),
    extra: &[&str],
) -> (Server, Vec<String>) {
    let mut command = Command::new(binary.unwrap_or(env!("CARGO_BIN_EXE_beacon")));
    command.args(["serve", "--dns", dns, "--heartbeat", heartbeat]);
    // Extra flags may choose their own (`--state-dir off`, to compare).
    if !extra.contains(&"--state-dir") {
        command.arg("--state-dir").arg(state);
    }
    // Several servers may run at once; builds from before the HTTP
    // endpoint (another binary) do not know the flag.
    if binary.is_none() && !extra.contains(&"--http") {
        command.args(["--http", "127.0.0.1:0"]);
    }
    let mut child = command
        .args(extra)
        .arg("--zones")
        .arg(zones)
        .env(
            "RUST_LOG",
            std::env::var("BENCH_BEACON_LOG").unwrap_or_else(|_| "warn".into())
                + ",beacon::server=info,beacon::fragments::watch=info,beacon::view::publish=info",
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start beacon");
    let stderr = child.stderr.take().expect("piped");
    let mut lines = BufReader::new(stderr).lines();
    // Its addresses, then the end of the first fragment load (which runs
    // after the sockets answer), in either order.
    let mut startup = Vec::new();
    for line in lines.by_ref().map_while(Result::ok) {
        startup.push(line);
        let seen = |what: &str| startup.iter().any(|l| l.contains(what));
        if seen(" listening ") && seen("serving the zone fragments") {
            break;
        }
    }
    let line = startup
        .iter()
        .find(|l| l.contains(" listening "))
        .expect("beacon reports its addresses")
        .clone();
    // Keep draining its log so it never blocks on a full pipe.
    // With BENCH_BEACON_LOG set, its log goes to our stderr.
    let echo = std::env::var("BENCH_BEACON_LOG").is_ok();
    thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            if line.contains("refused a heartbeat") {
                REFUSALS_LOGGED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            if echo {
                eprintln!("beacon: {line}");
            }
        }
    });
    let address = |key: &str| -> SocketAddr {
        log_field(&line, key)
            .and_then(|v| v.parse().ok())
            .expect("address")
    };
    let server = Server {
        name: "beacon",
        dns: address("dns_udp"),
        heartbeat: Some(address("heartbeat")),
        child,
    };
    (server, startup)
}

/// Every process (the server and its children, such as NSD's workers).
pub fn process_tree(pid: u32) -> Vec<u32> {
    let mut all = vec![pid];
    let mut i = 0;
    while i < all.len() {
        let children = std::fs::read_to_string(format!("/proc/{p}/task/{p}/children", p = all[i]))
            .unwrap_or_default();
        all.extend(
            children
                .split_whitespace()
                .filter_map(|c| c.parse::<u32>().ok()),
        );
        i += 1;
    }
    all
}

/// Receive-buffer drops so far, from /proc/net/snmp.
pub fn udp_drops() -> u64 {
    let snmp = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(name, _)| *name == "RcvbufErrors")
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(0)
}

/// Sends `datagrams` round-robin to `target` at `rate` a second for
/// `duration`; returns how many were sent.
pub fn blast(target: SocketAddr, datagrams: &[Vec<u8>], rate: u64, duration: Duration) -> u64 {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.connect(target).expect("connect");
    let fd = socket.as_raw_fd();
    let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(crate::load::BATCH, None);
    let none: [Option<SockaddrStorage>; crate::load::BATCH] = [None; crate::load::BATCH];
    let start = Instant::now();
    let mut sent = 0u64;
    let mut next = 0usize;
    while start.elapsed() < duration {
        let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
        if due <= sent {
            std::hint::spin_loop();
            continue;
        }
        let n = usize::try_from(due - sent)
            .unwrap_or(crate::load::BATCH)
            .min(crate::load::BATCH);
        let slices: Vec<[IoSlice<'_>; 1]> = (0..n)
            .map(|i| [IoSlice::new(&datagrams[(next + i) % datagrams.len()])])
            .collect();
        if let Ok(results) = sendmmsg(
            fd,
            &mut headers,
            slices.iter(),
            &none[..n],
            [],
            MsgFlags::empty(),
        ) {
            let done = results.count();
            sent += done as u64;
            next += done;
        }
    }
    sent
}

pub fn count_answers(server: &Server, name: &str) -> usize {
    use std::io::{Read, Write};
    let q = Question::new(name, RecordType::A, 0);
    let mut msg = hickory_proto::op::Message::from_vec(&q.wire).expect("decodes");
    msg.metadata.id = 1;
    let wire = msg.to_vec().expect("encodes");
    let mut stream = std::net::TcpStream::connect(server.dns).expect("connect");
    let len = u16::try_from(wire.len()).unwrap_or(0).to_be_bytes();
    stream.write_all(&len).expect("write");
    stream.write_all(&wire).expect("write");
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).expect("read");
    let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut reply).expect("read");
    hickory_proto::op::Message::from_vec(&reply).map_or(0, |m| m.answers.len())
}

/// Times how soon a new instance answers: sends its heartbeat, then asks
/// for its name every [`PROBE_EVERY`] without waiting for replies, until a
/// reply holds a record. Waiting for each reply before asking again would
/// add a round trip (and its tail) per negative answer to the figure.
pub struct FirstAnswer {
    sender: UdpSocket,
    asker: UdpSocket,
    id: u16,
}

/// How often [`FirstAnswer`] asks while it waits.
pub const PROBE_EVERY: Duration = Duration::from_micros(25);

impl FirstAnswer {
    pub fn new() -> Self {
        let asker = UdpSocket::bind("127.0.0.1:0").expect("bind");
        asker.set_nonblocking(true).expect("non-blocking");
        FirstAnswer {
            sender: UdpSocket::bind("127.0.0.1:0").expect("bind"),
            asker,
            id: 0,
        }
    }

    /// Sends `heartbeat` to `server`, then asks `name` A until it answers;
    /// returns the time from the heartbeat to that answer.
    pub fn time(&mut self, server: &Server, heartbeat: &str, name: &str) -> Duration {
        let question = Question::new(name, RecordType::A, 0);
        let mut query = question.wire.clone();
        let target = server.heartbeat.expect("heartbeat port");
        let start = Instant::now();
        self.sender
            .send_to(heartbeat.as_bytes(), target)
            .expect("send");
        let mut next_ask = start;
        let mut buf = [0u8; 512];
        loop {
            let now = Instant::now();
            if now >= next_ask {
                self.id = self.id.wrapping_add(1);
                query[..2].copy_from_slice(&self.id.to_be_bytes());
                let _ = self.asker.send_to(&query, server.dns);
                next_ask = now + PROBE_EVERY;
            }
            // Replies to earlier names may still arrive: only this name's
            // question counts.
            while let Ok(len) = self.asker.recv(&mut buf) {
                let reply = &buf[..len];
                let same_question = reply.get(12..query.len()) == query.get(12..);
                let positive = len > 12 && reply[3] & 0x0F == 0 && reply[6..8] != [0, 0];
                if same_question && positive {
                    return start.elapsed();
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "{name} never answered"
            );
            std::hint::spin_loop();
        }
    }
}

/// Starts Knot (one UDP and one TCP worker) serving `zone_name` from the
/// zone file `zone`, with its run directory under `dir`, on a free
/// loopback port.
pub fn start_knot(dir: &Path, zone_name: &str, zone: &Path) -> Server {
    let port = free_port();
    let run = dir.join("knot");
    std::fs::create_dir_all(run.join("db")).expect("knot dir");
    let conf = format!(
        "server:\n    rundir: \"{run}\"\n    listen: 127.0.0.1@{port}\n    udp-workers: 1\n    tcp-workers: 1\n    background-workers: 1\n\
         database:\n    storage: \"{run}/db\"\n\
         log:\n  - target: stderr\n    any: warning\n\
         template:\n  - id: default\n    storage: \"{zones}\"\n    zonefile-sync: -1\n    journal-content: none\n    semantic-checks: off\n\
         zone:\n  - domain: {zone_name}\n    file: \"{file}\"\n",
        run = run.display(),
        zones = zone.parent().expect("dir").display(),
        file = zone.file_name().expect("name").to_string_lossy(),
    );
    let conf_path = run.join("knot.conf");
    std::fs::write(&conf_path, conf).expect("knot.conf");
    let mut command = Command::new("knotd");
    command.arg("-c").arg(&conf_path);
    start_peer("knot", command, port)
}

/// Runs a peer server's `command` (its output discarded) that listens on
/// 127.0.0.1 at `port`.
pub fn start_peer(name: &'static str, mut command: Command, port: u16) -> Server {
    let child = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|error| panic!("start {name}: {error}"));
    Server {
        name,
        child,
        dns: SocketAddr::from(([127, 0, 0, 1], port)),
        heartbeat: None,
    }
}

/// Polls `f` every 20 ms until it returns `Some`, or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, f: impl FnMut() -> Option<T>) -> Option<T> {
    wait_every(Duration::from_millis(20), timeout, f)
}

/// Polls `f` every `every` until it returns `Some`, or `timeout` passes.
pub fn wait_every<T>(
    every: Duration,
    timeout: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = f() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(every);
    }
}

/// A heartbeat for instance `instance` of service `s<service>` (lease
/// 10 minutes), each with an address of its own: what the registry
/// benchmarks fill servers with.
pub fn numbered_beat(service: usize, instance: usize) -> Vec<u8> {
    format!(
        "beacon/1 service=s{service} instance=i{instance} port=80 addr=10.{}.{}.{} ttl=600",
        service / 250,
        service % 250,
        instance
    )
    .into_bytes()
}

/// The instance count on a registry snapshot's `end` line, if it has one
/// (a whole snapshot has been written).
pub fn snapshot_count(file: &Path) -> Option<usize> {
    use std::io::{Read, Seek, SeekFrom};
    let mut handle = std::fs::File::open(file).ok()?;
    let len = handle.metadata().ok()?.len();
    handle.seek(SeekFrom::Start(len.saturating_sub(64))).ok()?;
    let mut tail = String::new();
    handle.read_to_string(&mut tail).ok()?;
    let end = tail.lines().last()?.strip_prefix("end ")?;
    end.split(' ').next()?.parse().ok()
}
