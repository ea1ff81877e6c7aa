//! Heartbeat intake: the thread that owns the registry.
//!
//! Takes datagrams from the heartbeat socket and the passing of time;
//! produces registry changes, the audit log (INFO: register, change, drain,
//! deregister, expiry; summed up under a flood, see [`audit`]) and,
//! whenever answers may differ, a newly published view. It never answers
//! DNS and never blocks the answering path: the only thing it shares with
//! it is the published view.
//!
//! It runs on a thread of its own (with a single-threaded Tokio runtime
//! for its socket and timers), so that a flood of heartbeats never takes
//! CPU time from the tasks that answer DNS over TCP, and one thread owns
//! the [`Registry`], so nothing in it is locked. Each round it reads what
//! the socket holds (up to [`DRAIN_BUDGET`] datagrams), applies heartbeats
//! of known instances at once (renewals cost no rebuild), queues new
//! instances (at most [`MAX_PENDING`]; beyond that they are dropped and
//! counted, and their senders retry at their next beat), admits up to
//! [`ADMIT_BUDGET`] of them, expires up to [`EXPIRE_BUDGET`] leases, and
//! publishes once. So when the intake is behind, renewals of live
//! instances still get in, and no round is long: a lone heartbeat is
//! published at once, a flood costs bounded work per round, and shutdown
//! is seen within a round.
//!
//! Every datagram is authenticated before it can change anything: the
//! [`Policy`] checks key, MAC and clock window, the registry replay and
//! ownership, the policy the key's scope between them (the documented
//! order). A refused datagram is dropped whole, counted per reason and
//! logged at WARN at most once per 10 s per reason, naming the source and
//! the key, never a secret. SIGHUP hands the intake a new policy.
//!
//! DNS UPDATE is the second way in: the answering path hands each
//! authenticated UPDATE over a bounded queue; the intake maps it onto the
//! registry ([`crate::update::plan`]), checks every change as it would a
//! heartbeat, applies all or none, publishes, and only then answers, so a
//! client that reads NOERROR finds its change in the next query.

pub mod audit;
pub mod receive;
pub mod wire;

use std::collections::{HashSet, VecDeque};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::auth::{Policy, Rejection, Signer};
use crate::config::{MAX_HEARTBEAT_BYTES, RECENT_EVENTS};
use crate::metrics::Metrics;
use crate::registry::announcement::{Announcement, State, check_instance_addr};
use crate::registry::status::{EventRecord, Status};
use crate::registry::{Event, Forgotten, Kept, Refusal, Registry};
use crate::supervise::Guard;
use crate::update::{UpdateRequest, plan};
use crate::view::StaticZone;
use crate::view::publish::Publisher;
use audit::{Audit, Kind};
use hickory_proto::op::ResponseCode;
use receive::{Batch, RECV_BATCH};
use wire::WireError;

/// Most datagrams read in one round (then the round's other work runs).
pub const DRAIN_BUDGET: usize = 8192;

/// Most new instances admitted in one round.
pub const ADMIT_BUDGET: usize = 512;

/// Most leases expired in one round.
pub const EXPIRE_BUDGET: usize = 4096;

/// Most DNS UPDATEs applied in one round (then the view is published and
/// they are answered): a burst shares one view rebuild.
pub const UPDATE_BATCH: usize = 64;

/// Most new instances waiting to be admitted; beyond it, heartbeats of
/// new instances are dropped (their senders retry at the next beat).
pub const MAX_PENDING: usize = 16_384;

/// Longest a change that answers show (a registration, a change, a
/// removal) waits before it is in a registry snapshot.
pub const SNAPSHOT_AFTER_CHANGE: Duration = Duration::from_millis(500);

/// Longest a renewal (which moves only a lease's end) waits before it is
/// in a registry snapshot: renewals are many, and batched.
pub const SNAPSHOT_AFTER_RENEWAL: Duration = Duration::from_secs(5);

/// When the snapshot writer is busy, how soon to offer again.
const SNAPSHOT_RETRY: Duration = Duration::from_millis(100);

/// Where registry snapshots go (the state directory's writer).
pub trait SnapshotSink: Send + std::fmt::Debug {
    /// True when an offer would be taken now (so the registry is exported
    /// only then).
    fn ready(&self) -> bool;
    /// Offers a snapshot; false when the writer is busy.
    fn offer(
        &mut self,
        serial: u32,
        now_ms: u64,
        kept: Vec<Kept>,
        forgotten: Vec<Forgotten>,
    ) -> bool;
    /// Writes the last snapshot at shutdown, after any write under way.
    fn finish(&mut self, serial: u32, now_ms: u64, kept: Vec<Kept>, forgotten: Vec<Forgotten>);
}

/// Shortest gap between two WARN lines about bad datagrams or refusals;
/// in between they are counted and logged at DEBUG.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Logs a WARN line at most once per [`WARN_EVERY`], DEBUG otherwise.
#[derive(Debug)]
struct RateLimitedWarn {
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimitedWarn {
    fn new() -> Self {
        RateLimitedWarn {
            last: None,
            suppressed: 0,
        }
    }

    /// Returns how many events were suppressed since the last WARN, when a
    /// WARN may be written now.
    fn allow(&mut self, now: Instant) -> Option<u64> {
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < WARN_EVERY)
        {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// A heartbeat of an instance not registered yet, waiting its turn.
struct NewInstance {
    announcement: Announcement,
    addr: IpAddr,
    src: SocketAddr,
    signer: Signer,
}

/// Heartbeats refused by authentication: a count and a WARN limiter per reason.
struct Rejections {
    counts: [u64; Rejection::ALL.len()],
    warns: [RateLimitedWarn; Rejection::ALL.len()],
}

impl Rejections {
    fn new() -> Self {
        Rejections {
            counts: [0; Rejection::ALL.len()],
            warns: std::array::from_fn(|_| RateLimitedWarn::new()),
        }
    }

    fn record(&mut self, reason: Rejection, src: SocketAddr, key: &str, hb: (&str, &str)) {
        let index = reason.index();
        self.counts[index] += 1;
        let total = self.counts[index];
        let (service, instance) = hb;
        match self.warns[index].allow(Instant::now()) {
            Some(suppressed) => warn!(
                %src, %key, %service, %instance, reason = %reason.as_str(), total, suppressed,
                "refused a heartbeat: {reason} (more for this reason are logged at DEBUG for 10 s)"
            ),
            None => {
                debug!(%src, %key, %service, %instance, reason = %reason.as_str(), total, "refused a heartbeat");
            }
        }
    }
}

impl Rejections {
    /// One line with every reason's count, at shutdown, if any was refused.
    fn summarise(&self) {
        if self.counts.iter().all(|&n| n == 0) {
            return;
        }
        let counts: Vec<String> = Rejection::ALL
            .iter()
            .zip(self.counts)
            .filter(|(_, n)| *n > 0)
            .map(|(reason, n)| format!("{}={n}", reason.as_str()))
            .collect();
        info!(refused = %counts.join(","), "heartbeats refused by authentication since start");
    }
}

/// The server's clock as Unix time in milliseconds, for signed timestamps
/// and snapshots.
pub fn unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The intake's state.
pub struct Intake {
    /// The heartbeat socket, until the intake's runtime takes it over.
    socket: Option<std::net::UdpSocket>,
    registry: Registry,
    publisher: Publisher,
    statics: watch::Receiver<Arc<StaticZone>>,
    /// Who may register what; replaced on SIGHUP through `policies`.
    policy: Arc<Policy>,
    policies: watch::Receiver<Arc<Policy>>,
    rejections: Rejections,
    /// Where registry snapshots go, if anywhere, and when the next is due.
    snapshots: Option<Box<dyn SnapshotSink>>,
    snapshot_due: Option<Instant>,
    /// New instances waiting to be admitted, oldest first.
    pending: VecDeque<NewInstance>,
    /// True while due leases are left for the next round.
    expiry_backlog: bool,
    audit: Audit,
    /// Datagrams dropped as malformed or invalid, for the log.
    malformed: u64,
    /// Heartbeats refused by the registry (cap, reserved or claimed name).
    refused: u64,
    /// Heartbeats of new instances dropped because too many were waiting.
    overflowed: u64,
    malformed_warn: RateLimitedWarn,
    refused_warn: RateLimitedWarn,
    overflow_warn: RateLimitedWarn,
    /// Counters for `/metrics`.
    metrics: Arc<Metrics>,
    /// Requests for the registry's status (the HTTP status API).
    status_requests: Option<mpsc::Receiver<StatusRequest>>,
    /// DNS UPDATE messages, authenticated, from the answering path.
    updates: Option<mpsc::Receiver<UpdateRequest>>,
    /// WARN lines about refused UPDATEs, at most one per 10 s.
    update_warn: RateLimitedWarn,
    /// The latest registry events, oldest first, for the status API.
    recent: VecDeque<EventRecord>,
}

/// Which intake a change came through, for the audit log and the status API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// A heartbeat datagram.
    Heartbeat,
    /// A DNS UPDATE message.
    Update,
}

impl Source {
    /// Why `event` happened, in the audit log's words.
    fn reason(self, event: &Event) -> String {
        match (self, event) {
            (_, Event::Changed(fields)) => fields.join(","),
            (Source::Heartbeat, Event::Registered) => "first heartbeat".into(),
            (Source::Heartbeat, Event::Drained) => "sender is draining".into(),
            (Source::Heartbeat, _) => "sender said down".into(),
            (Source::Update, Event::Registered) => "dns update".into(),
            (Source::Update, _) => "dns update deleted it".into(),
        }
    }
}

/// A request for the registry's status: the answer goes back on it.
pub type StatusRequest = oneshot::Sender<Arc<Status>>;

impl Intake {
    /// An intake reading `socket` (non-blocking), applying to `registry`
    /// and publishing through `publisher`, with the fragments' static
    /// data from `statics` and the authentication policy from `policies`.
    pub fn new(
        socket: std::net::UdpSocket,
        mut registry: Registry,
        publisher: Publisher,
        statics: watch::Receiver<Arc<StaticZone>>,
        mut policies: watch::Receiver<Arc<Policy>>,
    ) -> Self {
        let policy = policies.borrow_and_update().clone();
        registry.set_replay_memory(policy.replay_memory());
        // Instances restored from a snapshot may belong to keys no longer configured.
        registry.orphan_keys(|key| policy.keyring().get(key).is_none());
        Intake {
            socket: Some(socket),
            registry,
            publisher,
            statics,
            policy,
            policies,
            rejections: Rejections::new(),
            snapshots: None,
            snapshot_due: None,
            pending: VecDeque::new(),
            expiry_backlog: false,
            audit: Audit::default(),
            malformed: 0,
            refused: 0,
            overflowed: 0,
            malformed_warn: RateLimitedWarn::new(),
            refused_warn: RateLimitedWarn::new(),
            overflow_warn: RateLimitedWarn::new(),
            metrics: Arc::default(),
            status_requests: None,
            updates: None,
            update_warn: RateLimitedWarn::new(),
            recent: VecDeque::with_capacity(RECENT_EVENTS),
        }
    }

    /// Counts into `metrics`.
    #[must_use]
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Answers status requests from `requests`.
    #[must_use]
    pub fn with_status(mut self, requests: mpsc::Receiver<StatusRequest>) -> Self {
        self.status_requests = Some(requests);
        self
    }

    /// Takes DNS UPDATE messages from `requests`.
    #[must_use]
    pub fn with_updates(mut self, requests: mpsc::Receiver<UpdateRequest>) -> Self {
        self.updates = Some(requests);
        self
    }

    /// Keeps registry snapshots with `sink`.
    #[must_use]
    pub fn with_snapshots(mut self, sink: Box<dyn SnapshotSink>) -> Self {
        self.snapshots = Some(sink);
        self
    }

    /// Keeps a registry event for the status API (the newest
    /// [`RECENT_EVENTS`]).
    fn remember(&mut self, event: &'static str, service: &str, instance: &str, reason: String) {
        if self.recent.len() == RECENT_EVENTS {
            self.recent.pop_front();
        }
        self.recent.push_back(EventRecord {
            at_ms: unix_millis(),
            event,
            service: service.to_string(),
            instance: instance.to_string(),
            reason,
        });
    }

    /// Notes that the registry changed: a snapshot is due within `within`.
    fn snapshot_within(&mut self, within: Duration) {
        if self.snapshots.is_none() {
            return;
        }
        let due = Instant::now() + within;
        self.snapshot_due = Some(self.snapshot_due.map_or(due, |d| d.min(due)));
    }

    /// Offers a snapshot when one is due and the writer can take it.
    fn snapshot_if_due(&mut self) {
        let now = Instant::now();
        let (Some(sink), Some(due)) = (self.snapshots.as_mut(), self.snapshot_due) else {
            return;
        };
        if due > now {
            return;
        }
        if sink.ready() {
            let (kept, forgotten) = self.registry.export(now);
            if sink.offer(self.publisher.serial(), unix_millis(), kept, forgotten) {
                self.snapshot_due = None;
                return;
            }
        }
        self.snapshot_due = Some(now + SNAPSHOT_RETRY);
    }

    /// Runs the intake on a thread of its own until `shutdown` is
    /// cancelled; `guard` reports it if it ends otherwise.
    ///
    /// # Errors
    /// When the thread or its runtime cannot be started.
    pub fn spawn(
        self,
        shutdown: CancellationToken,
        guard: Guard,
    ) -> io::Result<std::thread::JoinHandle<()>> {
        // The I/O driver is polled at every yield, so a busy round still
        // sees datagrams that arrived during it.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .event_interval(1)
            .build()?;
        std::thread::Builder::new()
            .name("heartbeat-intake".into())
            .spawn(move || {
                yield_to_answering();
                runtime.block_on(self.run(shutdown.clone()));
                if shutdown.is_cancelled() {
                    guard.done();
                }
            })
    }

    /// Runs until `shutdown` is cancelled.
    async fn run(mut self, shutdown: CancellationToken) {
        let socket = match self.socket.take().map(UdpSocket::from_std) {
            Some(Ok(socket)) => socket,
            Some(Err(error)) => {
                tracing::error!(%error, "cannot use the heartbeat socket");
                return;
            }
            None => return,
        };
        let mut batch = Batch::default();
        // Services whose instances changed since the last view.
        let mut changed: HashSet<String> = HashSet::new();
        // Verdicts on UPDATEs, sent once the view holding their changes is
        // published: a client that gets NOERROR can query the change at once.
        let mut verdicts: Vec<(oneshot::Sender<ResponseCode>, ResponseCode)> = Vec::new();
        loop {
            let behind = self.behind();
            let deadline = self.registry.next_deadline();
            let snapshot_due = self.snapshot_due;
            let mut dirty = false;
            changed.clear();
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                update = self.statics.changed() => {
                    if update.is_err() {
                        // The fragment watcher is gone: keep the last static data.
                        self.statics.mark_unchanged();
                    } else {
                        let statics = self.statics.borrow_and_update().clone();
                        self.publisher.set_statics(statics);
                        dirty = true;
                    }
                }
                update = self.policies.changed() => {
                    if update.is_err() {
                        self.policies.mark_unchanged();
                    } else {
                        self.policy = self.policies.borrow_and_update().clone();
                        self.registry.set_replay_memory(self.policy.replay_memory());
                        let keyring = self.policy.keyring();
                        let orphaned = self.registry.orphan_keys(|key| keyring.get(key).is_none());
                        if orphaned > 0 {
                            info!(orphaned, "instances whose key is gone stay until their leases end; the next heartbeat signed by a configured key takes each over");
                        }
                    }
                }
                ready = socket.readable() => {
                    if let Err(error) = ready {
                        debug!(%error, "heartbeat socket error");
                    }
                }
                () = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() && !behind => {}
                () = std::future::ready(()), if behind => {}
                () = sleep_until(snapshot_due.unwrap_or_else(Instant::now)), if snapshot_due.is_some() => {}
                Some(reply) = next_request(&mut self.status_requests) => {
                    let mut status = self.registry.status(Instant::now(), self.publisher.serial());
                    status.recent_events = self.recent.iter().rev().cloned().collect();
                    let _ = reply.send(Arc::new(status));
                }
                Some(first) = next_update(&mut self.updates) => {
                    // Those waiting behind it share its view rebuild.
                    let mut next = Some(first);
                    while let Some(request) = next.take() {
                        // Prerequisites are checked against the published
                        // view: publish what this round changed first.
                        if dirty && !request.message.answers.is_empty() {
                            self.publish(&changed);
                            changed.clear();
                            dirty = false;
                        }
                        let (rcode, touched) = self.update(&request.message, request.key.as_ref(), request.lease, request.src, &mut changed);
                        dirty |= touched;
                        verdicts.push((request.reply, rcode));
                        if verdicts.len() < UPDATE_BATCH {
                            next = self.updates.as_mut().and_then(|u| u.try_recv().ok());
                        }
                    }
                }
            }
            dirty |= self.drain(&socket, &mut batch, &mut changed);
            dirty |= self.admit(&mut changed);
            dirty |= self.expire(&mut changed);
            if dirty {
                self.publish(&changed);
            }
            for (reply, rcode) in verdicts.drain(..) {
                let _ = reply.send(rcode);
            }
            self.audit.flush(Instant::now());
            self.snapshot_if_due();
            if self.behind() {
                // Let the runtime look at the socket and the clock.
                tokio::task::yield_now().await;
            }
        }
        self.publisher.settle();
        if let Some(mut sink) = self.snapshots.take() {
            let (kept, forgotten) = self.registry.export(Instant::now());
            sink.finish(self.publisher.serial(), unix_millis(), kept, forgotten);
        }
        self.rejections.summarise();
    }

    /// Publishes a view with the changes to `changed` services.
    fn publish(&mut self, changed: &HashSet<String>) {
        let started = std::time::Instant::now();
        let serial = self.publisher.publish(&self.registry, changed);
        self.metrics
            .publish_seconds
            .observe(started.elapsed().as_secs_f64());
        self.metrics.instances.store(
            self.registry.len() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        self.metrics.services.store(
            self.registry.service_count() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        debug!(
            serial,
            instances = self.registry.len(),
            build_us = started.elapsed().as_micros(),
            "published a new view"
        );
    }

    /// True when work is left for the next round whatever arrives.
    fn behind(&self) -> bool {
        !self.pending.is_empty() || self.expiry_backlog
    }

    /// Expires up to [`EXPIRE_BUDGET`] leases that ran out.
    fn expire(&mut self, changed: &mut HashSet<String>) -> bool {
        let now = Instant::now();
        let expired = self.registry.expire_some(now, EXPIRE_BUDGET);
        self.expiry_backlog = expired.len() == EXPIRE_BUDGET;
        if !expired.is_empty() {
            self.snapshot_within(SNAPSHOT_AFTER_CHANGE);
        }
        for gone in &expired {
            self.metrics.event("expired");
            let reason = if gone.was_stale {
                "its protection ended"
            } else {
                "no heartbeat within its ttl"
            };
            self.remember("expired", &gone.service, &gone.instance, reason.into());
            changed.insert(gone.service.clone());
            if self.audit.allow(Kind::Expired, now) {
                let reason = if gone.was_stale {
                    "its protection ended (--protect-max, or enough instances are back)"
                } else {
                    "no heartbeat within its ttl"
                };
                info!(
                    service = %gone.service,
                    instance = %gone.instance,
                    addr = %gone.addr,
                    key = %gone.key.as_deref().unwrap_or("-"),
                    reason,
                    late_ms = gone.late_by.as_millis(),
                    "expired"
                );
            }
        }
        for (service, healthy, peak) in self.registry.take_protected() {
            warn!(
                %service, healthy, peak, stale = self.registry.stale(),
                "protect threshold: so many instances stopped beating at once that their leases running out would leave too few; they stay in the answers, stale, until they beat again, enough are back, or --protect-max passes (a network problem between them and beacon is the likely cause)"
            );
        }
        for service in self.registry.take_unprotected() {
            info!(%service, "protect threshold: enough instances are back; the stale ones leave the answers");
        }
        !expired.is_empty()
    }

    /// Reads what the socket holds, up to [`DRAIN_BUDGET`] datagrams, read
    /// [`RECV_BATCH`] at a time; returns true when the view must be rebuilt.
    fn drain(
        &mut self,
        socket: &UdpSocket,
        batch: &mut Batch,
        changed: &mut HashSet<String>,
    ) -> bool {
        let mut dirty = false;
        let mut handled = 0;
        let now_ms = unix_millis();
        while handled < DRAIN_BUDGET {
            let count = match batch.receive(socket) {
                Ok(count) => count,
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(error) => {
                    debug!(%error, "heartbeat socket receive error");
                    break;
                }
            };
            for index in 0..count {
                let (bytes, received) = batch.datagram(index);
                let Some(src) = received.from else { continue };
                if received.len > MAX_HEARTBEAT_BYTES {
                    self.malformed(&WireError::Oversized(received.len), src);
                } else {
                    dirty |= self.datagram(bytes, src, now_ms, changed);
                }
            }
            handled += count;
            if count < RECV_BATCH {
                break;
            }
        }
        dirty
    }

    /// Handles one datagram: a known instance's heartbeat (or any `down`)
    /// is applied now, a new instance's waits its turn. Returns true when
    /// the view must be rebuilt.
    fn datagram(
        &mut self,
        bytes: &[u8],
        src: SocketAddr,
        now_ms: u64,
        changed: &mut HashSet<String>,
    ) -> bool {
        crate::supervise::fault_point("intake");
        let (hb, signer) = match wire::decode_signed(bytes) {
            Ok(decoded) => {
                let claim = decoded.signature.as_ref().map(wire::Signature::claim);
                let key = claim.map_or("-", |c| c.key);
                match self.authenticate(&decoded.announcement, claim, now_ms) {
                    Ok(signer) => (decoded.announcement, signer),
                    Err(reason) => {
                        let hb = &decoded.announcement;
                        self.rejections
                            .record(reason, src, key, (&hb.service, &hb.instance));
                        return false;
                    }
                }
            }
            Err(error) => {
                self.malformed(&error, src);
                return false;
            }
        };
        let addr = match hb.addr.map_or_else(|| check_instance_addr(src.ip()), Ok) {
            Ok(addr) => addr,
            Err(reason) => {
                self.malformed(
                    &WireError::BadValue {
                        field: "addr".into(),
                        reason,
                    },
                    src,
                );
                return false;
            }
        };
        if hb.state == State::Down || self.registry.contains(&hb.service, &hb.instance) {
            // Checked just now by `authenticate`, against this registry.
            let changed_service = self.heartbeat(hb, addr, src, &signer, true, Source::Heartbeat);
            let dirty = changed_service.is_some();
            changed.extend(changed_service);
            return dirty;
        }
        if self.pending.len() >= MAX_PENDING {
            self.overflowed += 1;
            self.metrics.rejected("overflow");
            let total = self.overflowed;
            match self.overflow_warn.allow(Instant::now()) {
                Some(suppressed) => warn!(
                    %src, total, suppressed,
                    "dropped a heartbeat of a new instance: {MAX_PENDING} new instances are waiting (renewals still get in; its sender retries at its next beat)"
                ),
                None => debug!(%src, total, "dropped a heartbeat of a new instance"),
            }
            return false;
        }
        self.pending.push_back(NewInstance {
            announcement: hb,
            addr,
            src,
            signer,
        });
        false
    }

    /// Runs the authentication checks in the documented order: key, MAC
    /// and clock window (the policy), replay (the registry), scope (the
    /// policy), ownership (the registry).
    fn authenticate(
        &self,
        hb: &Announcement,
        claim: Option<crate::auth::Claim<'_>>,
        now_ms: u64,
    ) -> Result<Signer, Rejection> {
        let signer = self.policy.verify(claim, now_ms)?;
        if self.registry.replayed(&hb.service, &hb.instance, &signer) {
            return Err(Rejection::Replayed);
        }
        if !self.policy.in_scope(&signer, &hb.service) {
            return Err(Rejection::OutOfScope);
        }
        if self
            .registry
            .owned_by_another(&hb.service, &hb.instance, &signer)
        {
            return Err(Rejection::NotOwner);
        }
        Ok(signer)
    }

    /// Admits up to [`ADMIT_BUDGET`] waiting new instances; returns true
    /// when the view must be rebuilt.
    fn admit(&mut self, changed: &mut HashSet<String>) -> bool {
        let mut dirty = false;
        for _ in 0..ADMIT_BUDGET {
            let Some(new) = self.pending.pop_front() else {
                break;
            };
            if let Some(service) = self.heartbeat(
                new.announcement,
                new.addr,
                new.src,
                &new.signer,
                false,
                Source::Heartbeat,
            ) {
                changed.insert(service);
                dirty = true;
            }
        }
        dirty
    }

    fn malformed(&mut self, error: &WireError, src: SocketAddr) {
        self.malformed += 1;
        self.metrics.rejected("malformed");
        let total = self.malformed;
        match self.malformed_warn.allow(Instant::now()) {
            Some(suppressed) => warn!(
                %src, %error, total, suppressed,
                "dropped a malformed heartbeat (further ones are logged at DEBUG for 10 s)"
            ),
            None => debug!(%src, %error, total, "dropped a malformed heartbeat"),
        }
    }

    /// Why a fragment forbids the names this heartbeat would create, if it does.
    fn claimed(&self, hb: &Announcement) -> Option<String> {
        let statics = self.publisher.statics();
        if hb.state == State::Down || !statics.has_claims() {
            return None;
        }
        let zone = self.publisher.zone();
        let srv_service = format!("_{}", hb.service);
        let srv_proto = format!("_{}", hb.proto.as_str());
        let names = [
            vec![hb.service.as_str()],
            vec![hb.instance.as_str(), hb.service.as_str()],
            vec![srv_service.as_str(), srv_proto.as_str()],
        ];
        names
            .iter()
            .find_map(|labels| statics.claim(&crate::view::child_name(labels, zone)?, zone))
    }

    /// Applies one heartbeat whose instance is to be served at `addr`;
    /// returns its service when the view must change.
    fn heartbeat(
        &mut self,
        hb: Announcement,
        addr: IpAddr,
        src: SocketAddr,
        signer: &Signer,
        authenticated: bool,
        source: Source,
    ) -> Option<String> {
        let service = hb.service.clone();
        let instance = hb.instance.clone();
        let key = signer.key_name();
        let now = Instant::now();
        // Names a fragment claims are checked when an instance arrives (a
        // change of proto moves its SRV name: checked again then).
        let known = self.registry.get(&service, &instance).map(|i| i.proto);
        let event = match (known != Some(hb.proto))
            .then(|| self.claimed(&hb))
            .flatten()
        {
            Some(reason) => Event::Refused(Refusal::Claimed(reason)),
            None if authenticated => self.registry.apply_authenticated(hb, addr, signer, now),
            None => self.registry.apply_signed(hb, addr, signer, now),
        };
        let counted = match &event {
            Event::Registered => Some("registered"),
            Event::Changed(_) => Some("changed"),
            Event::Drained => Some("drained"),
            Event::Deregistered(_) => Some("deregistered"),
            Event::Renewed => None,
            Event::Rejected(reason) => {
                self.metrics.rejected(reason.as_str());
                None
            }
            Event::Refused(_) => {
                self.metrics.rejected("refused");
                None
            }
            Event::UnknownDown => None,
        };
        if let Some(kind) = counted {
            self.metrics.event(kind);
            self.remember(kind, &service, &instance, source.reason(&event));
        }
        if source == Source::Heartbeat && (counted.is_some() || matches!(event, Event::Renewed)) {
            self.metrics
                .heartbeats_accepted
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let mut audit = |kind| self.audit.allow(kind, now);
        match &event {
            Event::Registered => {
                if audit(Kind::Registered) {
                    info!(%service, %instance, %addr, %src, %key, reason = source.reason(&event).as_str(), "registered");
                }
            }
            Event::Changed(_) => {
                if audit(Kind::Changed) {
                    info!(%service, %instance, %addr, %src, %key, reason = %source.reason(&event), "changed");
                }
            }
            Event::Drained => {
                if audit(Kind::Drained) {
                    info!(%service, %instance, %addr, %src, %key, reason = source.reason(&event).as_str(), "drained");
                }
            }
            Event::Deregistered(addr) => {
                if audit(Kind::Deregistered) {
                    info!(%service, %instance, %addr, %src, %key, reason = source.reason(&event).as_str(), "deregistered");
                }
            }
            Event::Renewed | Event::UnknownDown => {}
            Event::Rejected(reason) => {
                self.rejections
                    .record(*reason, src, key, (&service, &instance));
            }
            Event::Refused(refusal) => {
                self.refused += 1;
                let total = self.refused;
                match self.refused_warn.allow(Instant::now()) {
                    Some(suppressed) => warn!(
                        %service, %instance, %addr, %src, reason = %refusal, total, suppressed,
                        "refused a heartbeat (further refusals are logged at DEBUG for 10 s)"
                    ),
                    None => {
                        debug!(%service, %instance, %addr, reason = %refusal, "refused a heartbeat");
                    }
                }
            }
        }
        match &event {
            Event::Renewed => self.snapshot_within(SNAPSHOT_AFTER_RENEWAL),
            event if event.changes_view() => self.snapshot_within(SNAPSHOT_AFTER_CHANGE),
            _ => {}
        }
        event.changes_view().then_some(service)
    }
}
impl Intake {
    /// Applies one authenticated UPDATE, all or nothing: maps it onto the
    /// registry ([`plan::plan`], against the view as published), checks
    /// every change as a heartbeat would be (key scope, ownership, names
    /// fragments claim, caps) and only then applies them. Returns the
    /// rcode and whether the view must be rebuilt.
    fn update(
        &mut self,
        message: &hickory_proto::op::Message,
        key: Option<&Arc<str>>,
        lease: u32,
        src: SocketAddr,
        changed: &mut HashSet<String>,
    ) -> (ResponseCode, bool) {
        let view = self.publisher.handle().load();
        let key_name = key.map_or("-", |k| &**k).to_string();
        let checked = plan::plan(message, &view, &self.registry, lease).and_then(|changes| {
            self.check_update(&changes, key)?;
            Ok(changes)
        });
        let changes = match checked {
            Ok(changes) => changes,
            Err(refused) => {
                match self.update_warn.allow(Instant::now()) {
                    Some(suppressed) => warn!(
                        %src, key = %key_name, rcode = %refused.rcode, reason = %refused, suppressed,
                        "refused a DNS UPDATE (further refusals are logged at DEBUG for 10 s)"
                    ),
                    None => {
                        debug!(%src, key = %key_name, rcode = %refused.rcode, reason = %refused, "refused a DNS UPDATE");
                    }
                }
                return (refused.rcode, false);
            }
        };
        let mut dirty = false;
        for change in changes {
            let hb = change.announcement;
            let signer = Signer {
                key: key.cloned(),
                ts: self.registry.last_ts(&hb.service, &hb.instance),
            };
            if let Some(service) =
                self.heartbeat(hb, change.addr, src, &signer, true, Source::Update)
            {
                changed.insert(service);
                dirty = true;
            }
        }
        (ResponseCode::NoError, dirty)
    }

    /// The checks a heartbeat would meet, for every change of an UPDATE.
    fn check_update(
        &self,
        changes: &[plan::Change],
        key: Option<&Arc<str>>,
    ) -> Result<(), plan::Refused> {
        let signer = Signer {
            key: key.cloned(),
            ts: 0,
        };
        for change in changes {
            let hb = &change.announcement;
            let who = format!("instance {} of {}", hb.instance, hb.service);
            if !self.policy.in_scope(&signer, &hb.service) {
                return Err(plan::refused(format!(
                    "{who}: key {} may not register service {}",
                    signer.key_name(),
                    hb.service
                )));
            }
            if self
                .registry
                .owned_by_another(&hb.service, &hb.instance, &signer)
            {
                return Err(plan::refused(format!(
                    "{who} belongs to another key (registered signed)"
                )));
            }
            if let Some(reason) = self.claimed(hb) {
                return Err(plan::refused(format!("{who}: {reason}")));
            }
        }
        self.registry
            .check_room(
                changes
                    .iter()
                    .filter(|c| c.new && c.announcement.state != State::Down)
                    .map(|c| c.announcement.service.as_str()),
            )
            .map_err(|refusal| plan::refused(refusal.to_string()))
    }
}

/// The next UPDATE, or never when none can come.
async fn next_update(
    requests: &mut Option<mpsc::Receiver<UpdateRequest>>,
) -> Option<UpdateRequest> {
    match requests {
        Some(requests) => requests.recv().await,
        None => std::future::pending().await,
    }
}

/// The next status request, or never when none can come.
async fn next_request(
    requests: &mut Option<mpsc::Receiver<StatusRequest>>,
) -> Option<StatusRequest> {
    match requests {
        Some(requests) => requests.recv().await,
        None => std::future::pending().await,
    }
}

/// Puts the calling thread (the intake) in the batch scheduling class: it
/// keeps its fair share of the CPU, but a heartbeat arriving no longer
/// preempts an answering thread in the middle of a batch. The intake then
/// wakes a little later and reads several heartbeats at once: fewer
/// context switches per DNS answer on a busy core, and no change on an
/// idle one. If the system refuses, the thread runs as before.
fn yield_to_answering() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: sched_setscheduler only reads `param`, which lives across
    // the call; pid 0 is the calling thread.
    let status = unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &raw const param) };
    if status != 0 {
        debug!(error = %io::Error::last_os_error(), "the intake keeps the normal scheduling class");
    }
}
