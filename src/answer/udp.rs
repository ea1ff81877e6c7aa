//! The UDP answering loop: batched receive, answer, batched send.
//!
//! Takes datagrams from one or more SO_REUSEPORT sockets on the DNS
//! address, one worker thread per socket; produces replies. Each worker
//! receives up to [`BATCH`] datagrams with one `recvmmsg`, loads the
//! current view once for the batch, answers what it can through its own
//! [`FastPath`], and sends the replies with one `sendmmsg`. A datagram the
//! fast path leaves alone goes to the general path ([`DnsHandler`]) on the
//! Tokio runtime, which replies on its own; the worker never waits for it.
//!
//! The workers never lock, never touch the disk and never block on anything
//! but their own socket. They check for shutdown between batches (the
//! socket's receive timeout bounds how long that takes). Each is a
//! supervised part of the server: if one dies, the server exits. A panic
//! while answering one query (a bug) costs only that query: it is caught,
//! logged, and the worker's cache is emptied.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use std::io::{IoSlice, IoSliceMut};

use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg};
use tracing::{debug, warn};

use hickory_server::net::xfer::Protocol;

use super::fast::{FastPath, slip_reply};
use super::handler::DnsHandler;
use super::rrl::{Class, RateLimiter, Verdict};
use crate::config::Limits;
use crate::dnstap::Tap;
use crate::metrics::{AnswerCounters, Metrics};
use crate::supervise::{Guard, fault_point};
use crate::view::publish::ViewHandle;

/// Datagrams per `recvmmsg`/`sendmmsg`.
pub const BATCH: usize = 32;

/// Largest query we read; longer datagrams are dropped (no DNS client sends
/// a query this long over UDP).
const MAX_QUERY: usize = 4096;

/// How often an idle worker looks at the shutdown flag.
const IDLE_CHECK: Duration = Duration::from_millis(100);

/// Binds `count` UDP sockets to `addr` with SO_REUSEPORT (port 0: the
/// first one picks the port, the others join it), so the kernel spreads
/// queries across the workers.
///
/// # Errors
/// The socket error of the first bind that fails.
pub fn bind_reuseport(addr: SocketAddr, count: usize) -> io::Result<Vec<UdpSocket>> {
    let mut sockets = Vec::with_capacity(count);
    let mut bind_to = addr;
    for _ in 0..count.max(1) {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(bind_to),
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )?;
        socket.set_reuse_port(true)?;
        if bind_to.is_ipv6() {
            socket.set_only_v6(true)?;
        }
        // Room for a burst of queries while the worker is busy; the kernel
        // caps it at net.core.rmem_max.
        let _ = socket.set_recv_buffer_size(4 * 1024 * 1024);
        socket.bind(&bind_to.into())?;
        let socket: UdpSocket = socket.into();
        socket.set_read_timeout(Some(IDLE_CHECK))?;
        bind_to = socket.local_addr()?;
        sockets.push(socket);
    }
    Ok(sockets)
}

/// What every UDP worker is set up with.
#[derive(Debug)]
pub struct WorkerSettings {
    /// Largest UDP reply offered.
    pub max_udp_payload: u16,
    /// Whether common queries take the fast path.
    pub fast_path: bool,
    /// The answer cache's size and the general path's queue.
    pub limits: Limits,
    /// Response rate limiting, when on.
    pub rrl: Option<Arc<RateLimiter>>,
    /// Where each worker's counters are registered.
    pub metrics: Arc<Metrics>,
    /// dnstap, when on.
    pub tap: Option<Tap>,
}

/// The running workers; [`Workers::stop`] ends them.
#[derive(Debug)]
pub struct Workers {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Workers {
    /// Starts one worker per socket.
    ///
    /// # Errors
    /// When a thread cannot be spawned.
    pub fn start(
        sockets: Vec<UdpSocket>,
        views: &ViewHandle,
        general: &DnsHandler,
        settings: &WorkerSettings,
        mut guard: impl FnMut(usize) -> Guard,
    ) -> io::Result<Workers> {
        let WorkerSettings {
            max_udp_payload,
            fast_path,
            limits,
            rrl,
            metrics,
            tap,
        } = settings;
        let (max_udp_payload, fast_path) = (*max_udp_payload, *fast_path);
        let stop = Arc::new(AtomicBool::new(false));
        let general_queue = Arc::new(GeneralQueue {
            waiting: AtomicUsize::new(0),
            bound: limits.general_queue,
            dropped: AtomicU64::new(0),
        });
        let runtime = tokio::runtime::Handle::current();
        let mut threads = Vec::with_capacity(sockets.len());
        for (index, socket) in sockets.into_iter().enumerate() {
            let worker = Worker {
                socket: Arc::new(socket),
                views: views.clone(),
                general: general.clone(),
                general_queue: general_queue.clone(),
                rrl: rrl.clone(),
                max_udp_payload,
                runtime: runtime.clone(),
                fast: fast_path.then(|| FastPath::new(max_udp_payload, limits.answer_cache)),
                stop: stop.clone(),
                counters: metrics.udp_worker(),
                tap: tap.clone(),
            };
            let guard = guard(index);
            threads.push(
                std::thread::Builder::new()
                    .name(format!("dns-udp-{index}"))
                    .spawn(move || {
                        worker.run();
                        guard.done();
                    })?,
            );
        }
        Ok(Workers { stop, threads })
    }

    /// Asks every worker to stop and waits until they have.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads {
            if thread.join().is_err() {
                tracing::error!("a UDP worker panicked");
            }
        }
    }
}

struct Worker {
    socket: Arc<UdpSocket>,
    views: ViewHandle,
    general: DnsHandler,
    /// Queries handed to the general path and not yet answered, shared by
    /// every worker, and how many that must wait.
    general_queue: Arc<GeneralQueue>,
    /// Response rate limiting, shared by every worker (`--rrl`).
    rrl: Option<Arc<RateLimiter>>,
    max_udp_payload: u16,
    runtime: tokio::runtime::Handle,
    fast: Option<FastPath>,
    stop: Arc<AtomicBool>,
    /// This worker's counters (its own: no cache line shared with others).
    counters: Arc<AnswerCounters>,
    tap: Option<Tap>,
}

/// The general path's work queue: queries handed over and not answered
/// yet, bounded (`--general-queue`) so a flood of rare queries (or slow
/// forwards) cannot pile up tasks without end. Beyond the bound a query
/// is dropped and counted, as Knot does.
#[derive(Debug)]
struct GeneralQueue {
    waiting: AtomicUsize,
    bound: usize,
    dropped: AtomicU64,
}

impl GeneralQueue {
    /// Takes a place in the queue, if there is one.
    fn enter(self: &Arc<Self>) -> Option<QueuePlace> {
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.bound {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            // Logarithmic: a flood cannot flood the log.
            if dropped.is_power_of_two() {
                warn!(
                    total = dropped,
                    "dropped a query: the general path's queue is full (--general-queue)"
                );
            }
            return None;
        }
        Some(QueuePlace(self.clone()))
    }
}

/// A place in the general path's queue, given back when dropped.
struct QueuePlace(Arc<GeneralQueue>);

impl Drop for QueuePlace {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Where one received datagram came from and how long it is.
#[derive(Clone, Copy)]
struct Received {
    len: usize,
    from: Option<SocketAddr>,
    truncated: bool,
}

impl Worker {
    fn run(mut self) {
        let fd = self.socket.as_raw_fd();
        let mut queries = vec![[0u8; MAX_QUERY]; BATCH];
        let mut replies: Vec<Vec<u8>> = (0..BATCH).map(|_| Vec::with_capacity(512)).collect();
        let mut received = [Received {
            len: 0,
            from: None,
            truncated: false,
        }; BATCH];
        let mut receive_headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
        let mut send_headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
        let mut destinations: Vec<Option<SockaddrStorage>> = Vec::with_capacity(BATCH);
        let mut ready: Vec<usize> = Vec::with_capacity(BATCH);
        while !self.stop.load(Ordering::Relaxed) {
            let count = {
                let mut slices: Vec<[IoSliceMut<'_>; 1]> = queries
                    .iter_mut()
                    .map(|q| [IoSliceMut::new(&mut q[..])])
                    .collect();
                match recvmmsg(
                    fd,
                    &mut receive_headers,
                    slices.iter_mut(),
                    MsgFlags::MSG_WAITFORONE,
                    None,
                ) {
                    Ok(results) => {
                        let mut count = 0;
                        for (slot, message) in received.iter_mut().zip(results) {
                            *slot = Received {
                                len: message.bytes,
                                from: message.address.as_ref().and_then(crate::net::socket_addr),
                                truncated: message.flags.contains(MsgFlags::MSG_TRUNC),
                            };
                            count += 1;
                        }
                        count
                    }
                    Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => continue,
                    Err(error) => {
                        warn!(%error, "receiving DNS queries failed");
                        std::thread::sleep(IDLE_CHECK);
                        continue;
                    }
                }
            };
            fault_point("udp-worker");
            let view = self.views.load();
            ready.clear();
            destinations.clear();
            for (index, slot) in received[..count].iter().enumerate() {
                let Some(from) = slot.from else { continue };
                if slot.truncated || slot.len < 12 {
                    debug!(%from, len = slot.len, "dropped an unusable datagram");
                    continue;
                }
                let query = &queries[index][..slot.len];
                let answered = match self.fast.as_mut() {
                    None => false,
                    Some(fast) => {
                        let reply = &mut replies[index];
                        let attempt = panic::catch_unwind(AssertUnwindSafe(|| {
                            fast.answer(&view, query, false, reply)
                        }));
                        match attempt {
                            Ok(answered) => answered,
                            Err(_) => {
                                // Logged by the panic hook; the cache may
                                // be half-updated, so start it afresh.
                                fast.clear();
                                continue;
                            }
                        }
                    }
                };
                self.counters.fast_path(answered);
                if !answered {
                    self.hand_to_general(query.to_vec(), from);
                    continue;
                }
                if let Some(rrl) = &self.rrl {
                    match rrl.check(from.ip(), Class::of(&replies[index])) {
                        Verdict::Send => {}
                        Verdict::Slip => {
                            self.counters.rate_limited(true);
                            slip_reply(query, self.max_udp_payload, &mut replies[index]);
                        }
                        Verdict::Drop => {
                            self.counters.rate_limited(false);
                            continue;
                        }
                    }
                }
                self.counters.reply(&replies[index]);
                if let Some(tap) = &self.tap {
                    tap.record(from, false, query, &replies[index]);
                }
                ready.push(index);
                destinations.push(Some(SockaddrStorage::from(from)));
            }
            drop(view);
            send_replies(fd, &mut send_headers, &replies, &ready, &destinations);
        }
    }

    /// Lets the general path answer `query` and send the reply itself.
    fn hand_to_general(&self, query: Vec<u8>, from: SocketAddr) {
        let Some(place) = self.general_queue.enter() else {
            return;
        };
        let general = self.general.clone();
        let socket = self.socket.clone();
        let rrl = self.rrl.clone();
        let max_udp_payload = self.max_udp_payload;
        let counters = self.counters.clone();
        let tap = self.tap.clone();
        self.runtime.spawn(async move {
            let _place = place;
            // Kept only when a slip may have to be built from it.
            let asked = (rrl.is_some() || tap.is_some()).then(|| query.clone());
            let Some(mut reply) = general.answer_raw(query, from, Protocol::Udp).await else {
                return;
            };
            if let (Some(rrl), Some(asked)) = (rrl, asked.as_ref()) {
                match rrl.check(from.ip(), Class::of(&reply)) {
                    Verdict::Send => {}
                    Verdict::Slip => {
                        counters.rate_limited(true);
                        if !slip_reply(asked, max_udp_payload, &mut reply) {
                            return;
                        }
                    }
                    Verdict::Drop => {
                        counters.rate_limited(false);
                        return;
                    }
                }
            }
            counters.reply(&reply);
            if let (Some(tap), Some(asked)) = (&tap, &asked) {
                tap.record(from, false, asked, &reply);
            }
            if let Err(error) = socket.send_to(&reply, from) {
                debug!(%error, %from, "sending a DNS reply failed");
            }
        });
    }
}

/// Sends the replies at `ready` (indices into `replies`) in one call,
/// looping over partial sends.
fn send_replies(
    fd: i32,
    headers: &mut MultiHeaders<SockaddrStorage>,
    replies: &[Vec<u8>],
    ready: &[usize],
    destinations: &[Option<SockaddrStorage>],
) {
    let mut sent = 0;
    while sent < ready.len() {
        let slices: Vec<[IoSlice<'_>; 1]> = ready[sent..]
            .iter()
            .map(|&i| [IoSlice::new(&replies[i])])
            .collect();
        match sendmmsg(
            fd,
            headers,
            slices.iter(),
            &destinations[sent..],
            [],
            MsgFlags::empty(),
        ) {
            Ok(results) => {
                let n = results.count();
                if n == 0 {
                    break;
                }
                sent += n;
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(error) => {
                // One bad destination must not cost the rest their
                // replies: skip it and go on.
                debug!(%error, "sending a DNS reply failed");
                sent += 1;
            }
        }
    }
}
