//! Test harness: runs the real `beacon` binary on loopback port 0, sends real
//! heartbeat datagrams and asks real DNS questions over UDP and TCP.
//!
//! Messages are built and parsed with hickory-proto, so the tests check the
//! bytes on the wire, not our own structures.

#![allow(dead_code)] // each test file uses a different part of the harness

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

/// Path of the binary under test.
pub const BEACON: &str = env!("CARGO_BIN_EXE_beacon");

/// A running `beacon serve`, killed on drop.
pub struct TestServer {
    child: Child,
    /// DNS address (UDP and TCP).
    pub dns: SocketAddr,
    /// Heartbeat address.
    pub heartbeat: SocketAddr,
    /// The HTTP endpoint, unless `--http off`.
    pub http: Option<SocketAddr>,
    log: Arc<Mutex<String>>,
    /// The `listening` log line.
    pub listening: String,
    /// The state directory made for this server, removed with it.
    state: Option<tempfile::TempDir>,
}

impl TestServer {
    /// Starts `beacon serve` on port 0 with extra flags (and a state
    /// directory of its own unless they name one).
    pub fn start(extra: &[&str]) -> TestServer {
        TestServer::start_with_env(extra, &[])
    }

    /// [`TestServer::start`] with extra environment variables.
    pub fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> TestServer {
        let mut args = Vec::new();
        for (flag, default) in [
            ("--dns", "127.0.0.1:0"),
            ("--heartbeat", "127.0.0.1:0"),
            ("--http", "127.0.0.1:0"),
        ] {
            if !extra.contains(&flag) {
                args.extend_from_slice(&[flag, default]);
            }
        }
        if !extra.contains(&"--zones") {
            args.extend_from_slice(&["--zones", "/nonexistent-beacon-test-zones"]);
        }
        let state = (!extra.contains(&"--state-dir"))
            .then(|| tempfile::tempdir().expect("state directory"));
        let state_path = state.as_ref().map(|dir| dir.path().display().to_string());
        if let Some(path) = &state_path {
            args.extend_from_slice(&["--state-dir", path]);
        }
        args.extend_from_slice(extra);
        let mut server = TestServer::spawn(&args, env);
        server.state = state;
        server
    }

    /// Starts `beacon serve` with exactly these flags (none: the embedded
    /// default, on the fixed default ports).
    /// Its default state directory is a fresh temporary one (through
    /// `$XDG_STATE_HOME`), so no other run's registry snapshot is restored.
    pub fn start_exactly(args: &[&str]) -> TestServer {
        let state = tempfile::tempdir().expect("state home");
        let home = state.path().display().to_string();
        let mut server = TestServer::spawn(args, &[("XDG_STATE_HOME", &home)]);
        server.state = Some(state);
        server
    }

    fn spawn(args: &[&str], env: &[(&str, &str)]) -> TestServer {
        let mut child = Command::new(BEACON)
            .arg("serve")
            .args(args)
            .env(
                "RUST_LOG",
                "info,hickory_server=warn,hickory_net=warn,hickory_proto=warn",
            )
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start beacon");
        let stderr = child.stderr.take().expect("stderr is piped");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if !sent && line.contains(" listening ") {
                    let _ = tx.send(line.clone());
                    sent = true;
                }
                let mut log = sink.lock().expect("log lock");
                log.push_str(&line);
                log.push('\n');
            }
        });
        let Ok(line) = rx.recv_timeout(Duration::from_secs(20)) else {
            let _ = child.kill();
            panic!(
                "beacon did not report its addresses; log:\n{}",
                log.lock().expect("log")
            );
        };
        let server = TestServer {
            listening: line.clone(),
            child,
            dns: field(&line, "dns_udp"),
            heartbeat: field(&line, "heartbeat"),
            http: line
                .split("http=")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|addr| addr.parse().ok()),
            log,
            state: None,
        };
        // The first load of the fragments runs after the sockets answer;
        // tests start from a loaded zone unless they hold the load back.
        if !env.iter().any(|(key, _)| *key == "BEACON_TEST_HOLD") {
            server.wait_for_log("serving the zone fragments");
        }
        server
    }

    /// Everything the server has logged so far.
    pub fn log(&self) -> String {
        self.log.lock().expect("log lock").clone()
    }

    /// Waits until the log contains `needle`.
    pub fn wait_for_log(&self, needle: &str) {
        let log = wait_until(Duration::from_secs(5), || {
            let log = self.log();
            log.contains(needle).then_some(log)
        });
        assert!(
            log.is_some(),
            "log never showed {needle:?}:\n{}",
            self.log()
        );
    }

    /// Sends one heartbeat datagram.
    pub fn beat(&self, datagram: &str) {
        send_datagram(self.heartbeat, datagram.as_bytes());
    }

    /// Asks over UDP with EDNS (payload 1232), like dig does by default.
    pub fn query(&self, name: &str, rtype: RecordType) -> Message {
        query_udp(self.dns, &question(name, rtype, true))
    }

    /// Asks over TCP.
    pub fn query_tcp(&self, name: &str, rtype: RecordType) -> Message {
        query_tcp(self.dns, &question(name, rtype, true))
    }

    /// Queries until `check` accepts the reply (heartbeats are applied
    /// asynchronously), panicking with the last reply after 5 s.
    pub fn await_reply(
        &self,
        name: &str,
        rtype: RecordType,
        check: impl Fn(&Message) -> bool,
    ) -> Message {
        let mut last = None;
        let found = wait_until(Duration::from_secs(5), || {
            let reply = self.query(name, rtype);
            if check(&reply) {
                Some(reply)
            } else {
                last = Some(reply);
                None
            }
        });
        found.unwrap_or_else(|| panic!("no acceptable reply for {name} {rtype}; last: {last:?}"))
    }

    /// Sends `datagrams`, re-sending them (as real senders do every
    /// interval) until `name` A answers with one record per datagram.
    /// Heartbeats are UDP: a busy machine may drop or delay some.
    pub fn beat_until_all(&self, name: &str, datagrams: &[String]) {
        for _round in 0..10 {
            for datagram in datagrams {
                self.beat(datagram);
            }
            let complete = wait_until(Duration::from_secs(2), || {
                let tcp = query_tcp(self.dns, &question(name, RecordType::A, true));
                (tcp.answers.len() == datagrams.len()).then_some(())
            });
            if complete.is_some() {
                return;
            }
        }
        panic!(
            "{} instances of {name} never all registered",
            datagrams.len()
        );
    }

    /// `curl -s` of `path` on the HTTP endpoint: the status code and the body.
    pub fn http_get(&self, path: &str) -> (u16, String) {
        let http = self.http.expect("an HTTP endpoint");
        let output = Command::new("curl")
            .args([
                "-s",
                "-w",
                "\n%{http_code}",
                &format!("http://{http}{path}"),
            ])
            .output()
            .expect("curl");
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').expect("a status line");
        (
            code.trim().parse().expect("a status code"),
            body.to_string(),
        )
    }

    /// The current SOA serial.
    pub fn serial(&self) -> u32 {
        let reply = self.query("svc.internal.", RecordType::SOA);
        match reply.answers.first().map(|r| &r.data) {
            Some(RData::SOA(soa)) => soa.serial,
            other => panic!("no SOA answer: {other:?}"),
        }
    }

    /// The process id, for signals.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to `timeout` for the server to exit by itself; returns its
    /// status and how long that took.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<(std::process::ExitStatus, Duration)> {
        let started = Instant::now();
        wait_until(timeout, || {
            self.child
                .try_wait()
                .ok()
                .flatten()
                .map(|status| (status, started.elapsed()))
        })
    }

    /// Stops the server with SIGTERM and returns its exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        signal(self.child.id(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            assert!(Instant::now() < deadline, "server did not stop on SIGTERM");
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl TestServer {
    /// Stops the server with SIGTERM and returns everything it logged.
    pub fn terminate_and_log(self) -> String {
        let log = self.log.clone();
        let status = self.terminate();
        assert!(status.success(), "server exited with {status}");
        // The reader thread may still be copying the last lines.
        thread::sleep(Duration::from_millis(100));
        log.lock().expect("log lock").clone()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!("--- beacon log ---\n{}", self.log());
        }
    }
}

/// The resident memory of process `pid`, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

/// Sends `sig` (e.g. "TERM") to `pid`.
pub fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{sig} {pid} failed");
}

fn field(line: &str, name: &str) -> SocketAddr {
    let start = line
        .find(&format!("{name}="))
        .unwrap_or_else(|| panic!("no {name} in {line:?}"))
        + name.len()
        + 1;
    let value: String = line[start..]
        .chars()
        .take_while(|c| !c.is_whitespace())
        .collect();
    value
        .parse()
        .unwrap_or_else(|_| panic!("bad address {value:?}"))
}

/// RFC 1982: serial `a` is greater than `b`.
pub fn serial_gt(a: u32, b: u32) -> bool {
    a != b && a.wrapping_sub(b) < 0x8000_0000
}

/// Polls `f` every 10 ms until it returns `Some`, or `timeout` passes.
pub fn wait_until<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = f() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// A local address on loopback, port 0, of `peer`'s family.
pub fn loopback_for(peer: SocketAddr) -> SocketAddr {
    if peer.is_ipv6() {
        SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 0))
    } else {
        SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, 0))
    }
}

/// Starts `command` in the background with no input and its output
/// discarded (a sender such as `beacon beat`, stopped by the test).
pub fn spawn_quiet(command: &mut Command) -> Child {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start a background command")
}

/// Sends one UDP datagram to `to` from a fresh socket.
pub fn send_datagram(to: SocketAddr, bytes: &[u8]) {
    let socket = UdpSocket::bind(loopback_for(to)).expect("bind");
    socket.send_to(bytes, to).expect("send");
}

/// A query message for `name`/`rtype`, with EDNS (1232 bytes) if `edns`.
pub fn question(name: &str, rtype: RecordType, edns: bool) -> Message {
    let mut msg = Message::new(fastrand_id(), MessageType::Query, OpCode::Query);
    msg.add_query(Query::query(Name::from_str(name).expect("name"), rtype));
    if edns {
        let mut e = Edns::new();
        e.set_max_payload(1232);
        msg.set_edns(e);
    }
    msg
}

/// A query for `name`/`rtype` in `class`.
pub fn question_in_class(name: &str, rtype: RecordType, class: DNSClass) -> Message {
    let mut msg = Message::new(fastrand_id(), MessageType::Query, OpCode::Query);
    let mut q = Query::query(Name::from_str(name).expect("name"), rtype);
    q.set_query_class(class);
    msg.add_query(q);
    msg
}

fn fastrand_id() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(1);
    NEXT.fetch_add(7919, Ordering::Relaxed)
}

/// Sends raw bytes over UDP and returns the raw reply (None on timeout).
pub fn exchange_raw(server: SocketAddr, bytes: &[u8], timeout: Duration) -> Option<Vec<u8>> {
    let socket = UdpSocket::bind(loopback_for(server)).expect("bind");
    socket.set_read_timeout(Some(timeout)).expect("timeout");
    socket.send_to(bytes, server).expect("send");
    let mut buf = vec![0u8; 65_535];
    match socket.recv_from(&mut buf) {
        Ok((len, _)) => Some(buf[..len].to_vec()),
        Err(_) => None,
    }
}

/// Sends `msg` over UDP and parses the reply, checking its ID.
///
/// A datagram with another ID is skipped, as a real client does: a fresh
/// socket may reuse the port of an earlier one whose reply comes late.
pub fn query_udp(server: SocketAddr, msg: &Message) -> Message {
    let bytes = msg.to_vec().expect("encode query");
    for _ in 0..3 {
        let socket = UdpSocket::bind(loopback_for(server)).expect("bind");
        socket
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        socket.send_to(&bytes, server).expect("send");
        let mut buf = vec![0u8; 65_535];
        while let Ok((len, from)) = socket.recv_from(&mut buf) {
            if from != server || len < 2 || buf[..2] != msg.metadata.id.to_be_bytes() {
                continue;
            }
            return Message::from_vec(&buf[..len]).expect("decode reply");
        }
    }
    panic!("no UDP reply from {server}");
}

/// Sends `msg` over TCP (two-byte length prefix) and parses the reply.
pub fn query_tcp(server: SocketAddr, msg: &Message) -> Message {
    let bytes = msg.to_vec().expect("encode query");
    let mut stream = TcpStream::connect(server).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let len = u16::try_from(bytes.len())
        .expect("short query")
        .to_be_bytes();
    stream.write_all(&len).expect("write");
    stream.write_all(&bytes).expect("write");
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).expect("read length");
    let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut reply).expect("read reply");
    let reply = Message::from_vec(&reply).expect("decode reply");
    assert_eq!(reply.metadata.id, msg.metadata.id);
    reply
}

/// The answer section as zone-file text, one record per line, in order.
pub fn lines(records: &[Record]) -> Vec<String> {
    records.iter().map(ToString::to_string).collect()
}

/// The rdata of each record as text, in order.
pub fn rdatas(records: &[Record]) -> Vec<String> {
    records.iter().map(|r| r.data.to_string()).collect()
}

/// Asserts the reply's rcode and AA bit.
pub fn assert_status(reply: &Message, rcode: ResponseCode, authoritative: bool) {
    assert_eq!(reply.metadata.response_code, rcode, "rcode of {reply:?}");
    assert_eq!(
        reply.metadata.authoritative, authoritative,
        "AA of {reply:?}"
    );
    assert_eq!(reply.metadata.message_type, MessageType::Response);
}

/// True when an external tool is on PATH. Under CI a missing tool is a
/// failure, not a skip.
pub fn have_tool(tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "{tool} is required when CI is set (install it: see .ci/run)"
        );
        eprintln!("skipping: {tool} is not installed");
    }
    found
}

/// A Python interpreter that can import `module` (Debian's python3 first,
/// where Debian's python3-* packages live). Under CI a missing one is a
/// failure, not a skip.
pub fn python_with(module: &str) -> Option<&'static str> {
    let found = ["/usr/bin/python3", "python3"].into_iter().find(|python| {
        Command::new(python)
            .args(["-c", &format!("import {module}")])
            .status()
            .is_ok_and(|s| s.success())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "python3 with {module} is required when CI is set (see .ci/run)"
        );
        eprintln!("skipping: no python3 with {module}");
    }
    found
}

/// A port the OS has just handed out on 127.0.0.1, for a peer (Knot,
/// NSD, a resolver) that must be told its port before it starts: free
/// for both UDP and TCP at the time of asking.
pub fn free_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let port = udp.local_addr().expect("addr").port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// The README, as the tests read its examples.
pub const README: &str = include_str!("../../README.md");

/// The README's fenced block of `lang` holding `needle`.
pub fn readme_block(lang: &str, needle: &str) -> String {
    README
        .split(&format!("```{lang}\n"))
        .skip(1)
        .filter_map(|rest| rest.split("\n```").next())
        .find(|block| block.contains(needle))
        .unwrap_or_else(|| panic!("no {lang} block with {needle:?} in the README"))
        .to_string()
}
