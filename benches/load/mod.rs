//! The project's own DNS load generator: closed-loop or fixed-rate UDP with
//! batched `sendmmsg`/`recvmmsg`, and pipelined TCP. Loopback only, bounded
//! in time, and every reply is checked: its ID must be one we sent and
//! still wait for, its question must be ours, and its rcode the expected one.

#![allow(dead_code)] // each bench uses a different part

use std::io::{IoSlice, IoSliceMut, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg};

/// Datagrams per system call.
pub const BATCH: usize = 32;

/// A query is lost when no reply came within this long.
const LOST_AFTER: Duration = Duration::from_secs(1);

/// One question of the mix, encoded with ID 0.
#[derive(Clone)]
pub struct Question {
    pub wire: Vec<u8>,
    /// Where the question section ends (an OPT record may follow).
    pub question_end: usize,
    pub rcode: u8,
}

impl Question {
    /// `name`/`rtype` without EDNS; `rcode` is what the answer must carry.
    pub fn new(name: &str, rtype: RecordType, rcode: u8) -> Question {
        let mut msg = Message::new(0, MessageType::Query, OpCode::Query);
        let name = Name::from_ascii(name).expect("benchmark names are valid");
        msg.add_query(Query::query(name, rtype));
        let wire = msg.to_vec().expect("encodes");
        Question {
            question_end: wire.len(),
            wire,
            rcode,
        }
    }

    /// [`Question::new`] as validating resolvers ask: EDNS with a
    /// 1232-byte payload and the DO bit.
    pub fn with_do(name: &str, rtype: RecordType, rcode: u8) -> Question {
        let mut question = Question::new(name, rtype, rcode);
        question.wire[11] = 1; // ARCOUNT
        // OPT: root owner, type 41, payload 1232, version 0, DO, no options.
        question
            .wire
            .extend_from_slice(&[0, 0, 41, 0x04, 0xD0, 0, 0, 0x80, 0, 0, 0]);
        question
    }
}

/// What one run measured.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    pub sent: u64,
    pub answered: u64,
    pub lost: u64,
    /// Replies with an unexpected rcode or question (counted, not answered).
    pub wrong: u64,
    pub elapsed: Duration,
    /// Latencies in microseconds.
    pub latencies: Vec<u32>,
}

impl Outcome {
    pub fn qps(&self) -> f64 {
        self.answered as f64 / self.elapsed.as_secs_f64()
    }

    /// The `p`-th percentile latency in milliseconds.
    pub fn percentile_ms(&mut self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        self.latencies.sort_unstable();
        let rank = ((p / 100.0) * (self.latencies.len() - 1) as f64).round() as usize;
        f64::from(self.latencies[rank]) / 1000.0
    }

    pub fn average_ms(&self) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let sum: u64 = self.latencies.iter().map(|&l| u64::from(l)).sum();
        sum as f64 / self.latencies.len() as f64 / 1000.0
    }
}

/// In-flight bookkeeping: one slot per 16-bit ID.
struct InFlight {
    sent_at: Vec<Option<(Instant, u32)>>,
    next_id: u16,
    count: usize,
}

impl InFlight {
    fn new() -> Self {
        InFlight {
            sent_at: vec![None; 65_536],
            next_id: 0,
            count: 0,
        }
    }

    fn take_id(&mut self, now: Instant, question: u32) -> u16 {
        loop {
            self.next_id = self.next_id.wrapping_add(1);
            let slot = &mut self.sent_at[usize::from(self.next_id)];
            if slot.is_none() {
                *slot = Some((now, question));
                self.count += 1;
                return self.next_id;
            }
        }
    }

    fn complete(&mut self, id: u16) -> Option<(Instant, u32)> {
        let taken = self.sent_at[usize::from(id)].take();
        if taken.is_some() {
            self.count -= 1;
        }
        taken
    }

    /// Forgets queries older than [`LOST_AFTER`]; returns how many.
    fn expire(&mut self, now: Instant) -> u64 {
        let mut lost = 0;
        for slot in &mut self.sent_at {
            if slot.is_some_and(|(at, _)| now - at > LOST_AFTER) {
                *slot = None;
                lost += 1;
            }
        }
        self.count -= lost as usize;
        lost
    }
}

/// Checks one reply against the question it answers.
fn check(reply: &[u8], question: &Question) -> bool {
    let q = &question.wire[..question.question_end];
    reply.len() >= q.len()
        && reply[2] & 0x80 != 0
        && reply[3] & 0x0F == question.rcode
        && reply[12..q.len()] == q[12..]
}

/// Sends the mix to `target` over UDP for `duration`: closed loop with
/// `outstanding` queries in flight, or at `rate` queries a second.
pub fn udp(
    target: SocketAddr,
    mix: &[Question],
    duration: Duration,
    outstanding: usize,
    rate: Option<u64>,
) -> Outcome {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind the generator socket");
    socket.connect(target).expect("connect");
    let _ = socket2::SockRef::from(&socket).set_recv_buffer_size(4 * 1024 * 1024);
    socket
        .set_read_timeout(Some(Duration::from_millis(1)))
        .expect("timeout");
    let fd = socket.as_raw_fd();
    let mut out = Outcome::default();
    let mut flight = InFlight::new();
    let mut send_bufs = vec![[0u8; 512]; BATCH];
    let mut send_lens = [0usize; BATCH];
    let mut recv_bufs = vec![[0u8; 4096]; BATCH];
    let mut send_headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    let mut recv_headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    let no_addresses: [Option<SockaddrStorage>; BATCH] = [None; BATCH];
    let mut next_question = 0usize;
    let start = Instant::now();
    let end = start + duration;
    let mut last_expiry = start;
    let mut now = start;
    while now < end {
        // Send what the loop or the rate allows, one batch at most.
        let allowed = match rate {
            None => outstanding.saturating_sub(flight.count),
            Some(rate) => {
                let due = (now - start).as_secs_f64() * rate as f64;
                (due as u64).saturating_sub(out.sent) as usize
            }
        };
        let n = allowed.min(BATCH);
        if n > 0 {
            for i in 0..n {
                let question = next_question % mix.len();
                next_question += 1;
                let wire = &mix[question].wire;
                let id = flight.take_id(now, question as u32);
                send_bufs[i][..wire.len()].copy_from_slice(wire);
                send_bufs[i][..2].copy_from_slice(&id.to_be_bytes());
                send_lens[i] = wire.len();
            }
            let slices: Vec<[IoSlice<'_>; 1]> = (0..n)
                .map(|i| [IoSlice::new(&send_bufs[i][..send_lens[i]])])
                .collect();
            let mut done = 0;
            while done < n {
                match sendmmsg(
                    fd,
                    &mut send_headers,
                    slices[done..].iter(),
                    &no_addresses[..n - done],
                    [],
                    MsgFlags::empty(),
                ) {
                    Ok(results) => done += results.count().max(1),
                    Err(_) => break,
                }
            }
            out.sent += n as u64;
        }
        // Receive: wait briefly only when there is nothing to send.
        let flags = if n == 0 {
            MsgFlags::MSG_WAITFORONE
        } else {
            MsgFlags::MSG_DONTWAIT
        };
        let mut lens = [0usize; BATCH];
        let got = {
            let mut slices: Vec<[IoSliceMut<'_>; 1]> = recv_bufs
                .iter_mut()
                .map(|b| [IoSliceMut::new(&mut b[..])])
                .collect();
            match recvmmsg(fd, &mut recv_headers, slices.iter_mut(), flags, None) {
                Ok(results) => {
                    let mut got = 0;
                    for (len, message) in lens.iter_mut().zip(results) {
                        *len = message.bytes;
                        got += 1;
                    }
                    got
                }
                Err(_) => 0,
            }
        };
        now = Instant::now();
        for (buf, &len) in recv_bufs.iter().zip(&lens[..got]) {
            let reply = &buf[..len];
            if len < 12 {
                out.wrong += 1;
                continue;
            }
            let id = u16::from_be_bytes([reply[0], reply[1]]);
            match flight.complete(id) {
                Some((at, question)) if check(reply, &mix[question as usize]) => {
                    out.answered += 1;
                    out.latencies
                        .push(u32::try_from((now - at).as_micros()).unwrap_or(u32::MAX));
                }
                Some(_) | None => out.wrong += 1,
            }
        }
        if now - last_expiry > Duration::from_millis(200) {
            out.lost += flight.expire(now);
            last_expiry = now;
        }
    }
    out.elapsed = now - start;
    // Late replies still count as answered; what never comes is lost.
    let drain_end = Instant::now() + LOST_AFTER;
    while flight.count > 0 && Instant::now() < drain_end {
        let mut buf = [0u8; 4096];
        if let Ok(len) = socket.recv(&mut buf)
            && len >= 12
        {
            let id = u16::from_be_bytes([buf[0], buf[1]]);
            if flight.complete(id).is_some() {
                out.answered += 1;
            }
        }
    }
    out.lost += flight.count as u64;
    out
}

/// Sends the mix over `connections` TCP connections for `duration`, keeping
/// `pipeline` queries in flight on each (written as replies come back, so
/// the stream never stalls waiting on delayed ACKs).
pub fn tcp(
    target: SocketAddr,
    mix: &[Question],
    duration: Duration,
    connections: usize,
    pipeline: usize,
) -> Outcome {
    struct Conn {
        stream: TcpStream,
        in_flight: std::collections::HashMap<u16, (usize, Instant)>,
        pending: Vec<u8>,
        read: Vec<u8>,
        next_id: u16,
        dead: bool,
    }
    let mut conns: Vec<Conn> = (0..connections)
        .map(|c| {
            let stream = TcpStream::connect(target).expect("connect over TCP");
            stream.set_nodelay(true).expect("nodelay");
            stream.set_nonblocking(true).expect("nonblocking");
            Conn {
                stream,
                in_flight: std::collections::HashMap::new(),
                pending: Vec::new(),
                read: Vec::with_capacity(65_536),
                next_id: u16::try_from(c * 4096).unwrap_or(0),
                dead: false,
            }
        })
        .collect();
    let mut out = Outcome::default();
    let mut next_question = 0usize;
    let start = Instant::now();
    let end = start + duration;
    let mut chunk = vec![0u8; 65_536];
    let mut now = start;
    let drain_end = end + LOST_AFTER;
    let owed = |conns: &[Conn]| conns.iter().any(|c| !c.dead && !c.in_flight.is_empty());
    while (now < end || (now < drain_end && owed(&conns))) && conns.iter().any(|c| !c.dead) {
        let mut progress = false;
        for conn in conns.iter_mut().filter(|c| !c.dead) {
            // Top up to `pipeline` queries in flight (none once time is up:
            // then only the replies still owed are read).
            while now < end && conn.in_flight.len() < pipeline {
                let question = next_question % mix.len();
                next_question += 1;
                conn.next_id = conn.next_id.wrapping_add(1);
                let wire = &mix[question].wire;
                conn.pending
                    .extend_from_slice(&u16::try_from(wire.len()).unwrap_or(0).to_be_bytes());
                let at = conn.pending.len();
                conn.pending.extend_from_slice(wire);
                conn.pending[at..at + 2].copy_from_slice(&conn.next_id.to_be_bytes());
                conn.in_flight.insert(conn.next_id, (question, now));
                out.sent += 1;
            }
            if !conn.pending.is_empty() {
                match conn.stream.write(&conn.pending) {
                    Ok(n) => {
                        conn.pending.drain(..n);
                        progress = true;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => conn.dead = true,
                }
            }
            match conn.stream.read(&mut chunk) {
                Ok(0) => conn.dead = true,
                Ok(n) => {
                    conn.read.extend_from_slice(&chunk[..n]);
                    progress = true;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => conn.dead = true,
            }
            let received = Instant::now();
            let mut at = 0;
            while let Some(head) = conn.read.get(at..at + 2) {
                let len = usize::from(u16::from_be_bytes([head[0], head[1]]));
                let Some(reply) = conn.read.get(at + 2..at + 2 + len) else {
                    break;
                };
                at += 2 + len;
                if len < 12 {
                    out.wrong += 1;
                    continue;
                }
                let id = u16::from_be_bytes([reply[0], reply[1]]);
                match conn.in_flight.remove(&id) {
                    Some((question, sent)) if check(reply, &mix[question]) => {
                        out.answered += 1;
                        out.latencies
                            .push(u32::try_from((received - sent).as_micros()).unwrap_or(u32::MAX));
                    }
                    _ => out.wrong += 1,
                }
            }
            conn.read.drain(..at);
        }
        if !progress {
            std::thread::sleep(Duration::from_micros(50));
        }
        now = Instant::now();
    }
    out.elapsed = (now - start).min(duration);
    out.lost = conns.iter().map(|c| c.in_flight.len() as u64).sum();
    out
}
