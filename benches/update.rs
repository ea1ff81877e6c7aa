//! DNS UPDATE: how many TSIG-signed UPDATEs a second beacon applies on one
//! core, beside Knot applying the same changes in the same run, and how
//! soon after its reply an UPDATE-registered instance is answered while
//! queries load the server.
//!
//! Run: `cargo bench --bench update` (BENCH_UPDATE_SECS per throughput
//! round, default 5; BENCH_UPDATE_WINDOW UPDATEs in flight, default 32;
//! BENCH_UPDATE_LATENCY UPDATEs timed one by one, default 1000;
//! BENCH_UPDATE_LOAD background queries a second, default 50000, sent
//! in 1 ms ticks). Steps,
//! all on 127.0.0.1, each server pinned to CPU 0 and this client to CPU 1:
//! 1. throughput: UPDATEs signed with hmac-sha256, each registering one
//!    new instance (an A record and an SRV record; services of 100), sent over UDP with a
//!    window of UPDATEs in flight, to beacon and then to a Knot primary of
//!    the same zone (its `acl` allows the key to update); NOERROR replies
//!    a second;
//! 2. answerable: a fresh beacon with ten `web` instances (heartbeats)
//!    whose name takes a background query load; UPDATEs one at a time;
//!    after each reply, the new instance's name is asked until it answers:
//!    time from the reply to the first answer with the address (one query's
//!    round trip when the change is visible at once), p50, p99, max, and
//!    how many questions it took.
//!
//! Every process stops by itself (dropped servers are killed by PID).

#![allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]

mod harness;
mod load;

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use beacon::keys::{Algorithm, Key};
use harness::{Server, env_or, free_port, pin_self, smoke, start_beacon, start_peer};
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, SRV};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

const ZONE: &str = "svc.internal.";
const SECRET: &str = "c2VydmljZS1kaXNjb3Zlcnktc2hhcmVkLXNlY3JldCE=";

fn key() -> Key {
    let secret = data_encoding::BASE64
        .decode(SECRET.as_bytes())
        .expect("base64");
    Key::new("bench", Algorithm::HmacSha256, &secret).expect("key")
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The host name of instance `n`: services of 100 instances (`b<n/100>`),
/// so a long run stays below the per-service cap.
fn host_of(n: usize) -> String {
    format!("i{n}.b{}.{ZONE}", n / 100)
}

/// A signed UPDATE registering instance `n`: an A record at its host name
/// and an SRV at its service's `_b<k>._tcp.<zone>`.
fn update_message(key: &Key, id: u16, n: usize, now: u64) -> Vec<u8> {
    let zone = Name::from_ascii(ZONE).expect("zone");
    let mut message = Message::new(id, MessageType::Query, OpCode::Update);
    let mut question = Query::query(zone.clone(), RecordType::SOA);
    question.set_query_class(DNSClass::IN);
    message.add_query(question);
    let host = Name::from_ascii(host_of(n)).expect("host");
    let addr = std::net::Ipv4Addr::from(0x0a00_0000 + u32::try_from(n).unwrap_or(0) + 1);
    message.add_authority(Record::from_rdata(host.clone(), 60, RData::A(A(addr))));
    let srv = Name::from_ascii(format!("_b{}._tcp.{ZONE}", n / 100)).expect("srv");
    message.add_authority(Record::from_rdata(
        srv,
        60,
        RData::SRV(SRV::new(0, 1, 8080, host)),
    ));
    let (signature, _) = key.tsig().sign_message(&message, now).expect("sign");
    message.signature = Some(signature);
    message.to_vec().expect("encode")
}

/// UPDATEs to `server` for `secs`, `window` in flight: NOERROR replies a
/// second, and how many replies were something else.
fn throughput(server: SocketAddr, secs: f64, window: usize) -> (f64, u64) {
    let key = key();
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.connect(server).expect("connect");
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let start = Instant::now();
    let mut in_flight: HashMap<u16, Instant> = HashMap::new();
    let (mut next, mut ok, mut other) = (0usize, 0u64, 0u64);
    let mut buffer = [0u8; 4096];
    let now = unix_now();
    while start.elapsed().as_secs_f64() < secs {
        while in_flight.len() < window {
            let id = (next % 65_536) as u16;
            let bytes = update_message(&key, id, next, now);
            if socket.send(&bytes).is_ok() {
                in_flight.insert(id, Instant::now());
            }
            next += 1;
        }
        match socket.recv(&mut buffer) {
            Ok(len) if len >= 12 => {
                let id = u16::from_be_bytes([buffer[0], buffer[1]]);
                if in_flight.remove(&id).is_some() {
                    if buffer[3] & 0x0f == 0 {
                        ok += 1;
                    } else {
                        other += 1;
                    }
                }
            }
            _ => {
                // Lost: give the window back.
                let stale = Instant::now() - Duration::from_millis(500);
                in_flight.retain(|_, sent| *sent > stale);
            }
        }
    }
    (ok as f64 / start.elapsed().as_secs_f64(), other)
}

/// One UPDATE, waited for: its rcode, and when its reply came.
fn update_once(socket: &UdpSocket, key: &Key, n: usize) -> (ResponseCode, Instant) {
    let id = fastrand::u16(..);
    socket
        .send(&update_message(key, id, n, unix_now()))
        .expect("send");
    let mut buffer = [0u8; 4096];
    loop {
        let len = socket.recv(&mut buffer).expect("an UPDATE reply");
        let at = Instant::now();
        if len >= 12 && u16::from_be_bytes([buffer[0], buffer[1]]) == id {
            return (ResponseCode::from(0, buffer[3] & 0x0f), at);
        }
    }
}

/// Asks `name` A until an answer holds an address: the time it took and
/// how many questions.
fn until_answered(socket: &UdpSocket, name: &Name) -> (Duration, usize) {
    let start = Instant::now();
    let mut asked = 0;
    let mut buffer = [0u8; 4096];
    loop {
        let mut query = Message::query();
        query.metadata.id = fastrand::u16(..);
        query.add_query(Query::query(name.clone(), RecordType::A));
        socket.send(&query.to_vec().expect("query")).expect("send");
        asked += 1;
        if let Ok(len) = socket.recv(&mut buffer)
            && let Ok(reply) = Message::from_vec(&buffer[..len])
            && reply.metadata.id == query.metadata.id
            && !reply.answers.is_empty()
        {
            return (start.elapsed(), asked);
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{name} never answered"
        );
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Knot as a primary of the zone, taking UPDATEs signed with the key.
fn start_knot_primary(dir: &Path) -> Server {
    let port = free_port();
    let run = dir.join("knot");
    std::fs::create_dir_all(run.join("db")).expect("knot dir");
    std::fs::write(
        run.join("svc.internal.zone"),
        format!(
            "$ORIGIN {ZONE}\n$TTL 60\n@ SOA ns hostmaster 1 60 10 300 5\n@ NS ns\nns A 127.0.0.1\n"
        ),
    )
    .expect("zone file");
    let conf = format!(
        "server:\n    rundir: \"{run}\"\n    listen: 127.0.0.1@{port}\n    udp-workers: 1\n    tcp-workers: 1\n    background-workers: 1\n\
         key:\n  - id: bench\n    algorithm: hmac-sha256\n    secret: {SECRET}\n\
         acl:\n  - id: update\n    key: bench\n    action: update\n\
         database:\n    storage: \"{run}/db\"\n\
         log:\n  - target: stderr\n    any: warning\n\
         template:\n  - id: default\n    storage: \"{run}\"\n    zonefile-sync: -1\n    journal-content: none\n    semantic-checks: off\n\
         zone:\n  - domain: {ZONE}\n    file: svc.internal.zone\n    acl: update\n",
        run = run.display(),
    );
    let conf_path = run.join("knot.conf");
    std::fs::write(&conf_path, conf).expect("knot.conf");
    let mut command = Command::new("knotd");
    command.arg("-c").arg(&conf_path);
    let server = start_peer("knot", command, port);
    harness::wait_for(Duration::from_secs(10), || {
        let socket = UdpSocket::bind("127.0.0.1:0").ok()?;
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .ok()?;
        let mut query = Message::query();
        query.add_query(Query::query(Name::from_ascii(ZONE).ok()?, RecordType::SOA));
        socket.send_to(&query.to_vec().ok()?, server.dns).ok()?;
        let mut buffer = [0u8; 512];
        socket.recv(&mut buffer).ok().map(|_| ())
    })
    .expect("knot answers");
    server
}

fn main() {
    let smoke = smoke();
    let secs: f64 = if smoke {
        0.3
    } else {
        env_or("BENCH_UPDATE_SECS", 5.0)
    };
    let window: usize = env_or("BENCH_UPDATE_WINDOW", 32);
    let timed: usize = if smoke {
        20
    } else {
        env_or("BENCH_UPDATE_LATENCY", 1000)
    };
    let load_rate: u64 = if smoke {
        2_000
    } else {
        env_or("BENCH_UPDATE_LOAD", 50_000)
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let key_file = dir.path().join("bench.key");
    std::fs::write(
        &key_file,
        format!("key \"bench\" {{ algorithm hmac-sha256; secret \"{SECRET}\"; }};\n"),
    )
    .expect("key file");
    let key_path = key_file.display().to_string();
    pin_self(1);

    // 1. Throughput, beacon then Knot, same messages.
    let start = |extra: &[&str]| {
        let flags = [
            &["--keys", &key_path, "--udp-workers", "1", "--http", "off"],
            extra,
        ]
        .concat();
        start_beacon(dir.path(), &flags)
    };
    let beacon = start(&["--max-instances", "1000000"]);
    beacon.pin_to(0);
    let (beacon_rate, beacon_other) = throughput(beacon.dns, secs, window);
    println!(
        "update throughput, hmac-sha256, {window} in flight, one core: beacon {beacon_rate:.0} UPDATEs/s ({beacon_other} not NOERROR)"
    );
    assert!(beacon_rate > 0.0, "beacon applied no UPDATE");
    assert_eq!(beacon_other, 0, "beacon refused UPDATEs");
    let have_knot = Command::new("sh")
        .args(["-c", "command -v knotd"])
        .output()
        .is_ok_and(|o| o.status.success());
    if have_knot {
        let knot = start_knot_primary(dir.path());
        knot.pin_to(0);
        let (knot_rate, knot_other) = throughput(knot.dns, secs, window);
        println!(
            "update throughput: knot {knot_rate:.0} UPDATEs/s ({knot_other} not NOERROR); beacon/knot = {:.2}x",
            beacon_rate / knot_rate.max(1.0)
        );
        assert!(knot_rate > 0.0, "knot applied no UPDATE");
    } else {
        assert!(
            std::env::var_os("CI").is_none(),
            "knotd is required when CI is set"
        );
        println!("knotd not installed: no comparison");
    }

    // 2. Reply → answerable, under query load: a fresh server, whose
    // `web` (ten instances, by heartbeat) takes the load.
    drop(beacon);
    let beacon = start(&["--auth", "optional"]);
    beacon.pin_to(0);
    let beats = UdpSocket::bind("127.0.0.1:0").expect("bind");
    for i in 0..10 {
        let beat = format!(
            "beacon/1 service=web instance=web-{i} port=8080 addr=10.1.0.{} ttl=600",
            i + 1
        );
        beats
            .send_to(
                beat.as_bytes(),
                beacon.heartbeat.expect("heartbeat address"),
            )
            .expect("beat");
    }
    let load = {
        let mut query = Message::query();
        query.add_query(Query::query(
            Name::from_ascii(format!("web.{ZONE}")).expect("name"),
            RecordType::A,
        ));
        let bytes = query.to_vec().expect("query");
        let target = beacon.dns;
        let duration = Duration::from_secs_f64(if smoke { 2.0 } else { 600.0 });
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopping = stop.clone();
        // Paced by sleeping, not spinning: the client shares its core
        // with the thread that times the UPDATEs.
        let handle = std::thread::spawn(move || {
            let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
            socket.connect(target).expect("connect");
            let per_tick = (load_rate / 1000).max(1);
            let start = Instant::now();
            let mut sent = 0u64;
            let mut tick = 0u64;
            while !stopping.load(std::sync::atomic::Ordering::Relaxed) && start.elapsed() < duration
            {
                for _ in 0..per_tick {
                    sent += u64::from(socket.send(&bytes).is_ok());
                }
                tick += 1;
                let next = start + Duration::from_millis(tick);
                if let Some(wait) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
            sent
        });
        (stop, handle)
    };
    let key = key();
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.connect(beacon.dns).expect("connect");
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let mut waits = Vec::with_capacity(timed);
    let mut most_asked = 0;
    for i in 0..timed {
        let n = 10_000_000 + i;
        let (rcode, _) = update_once(&socket, &key, n);
        assert_eq!(rcode, ResponseCode::NoError);
        let name = Name::from_ascii(host_of(n)).expect("name");
        let (wait, asked) = until_answered(&socket, &name);
        waits.push(wait);
        most_asked = most_asked.max(asked);
    }
    load.0.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = load.1.join().expect("load thread");
    waits.sort();
    println!(
        "reply -> answered, {timed} UPDATEs under {load_rate} queries/s ({sent} sent): p50 {:?}, p99 {:?}, max {:?}; at most {most_asked} question(s) until answered",
        percentile(&waits, 0.5),
        percentile(&waits, 0.99),
        waits[waits.len() - 1]
    );
}
