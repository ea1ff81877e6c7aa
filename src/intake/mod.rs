//! Heartbeat intake: the task that owns the registry.
//!
//! Takes datagrams from the heartbeat socket and the passing of time;
//! produces registry changes, the audit log (INFO: register, change, drain,
//! deregister, expiry) and, whenever answers may differ, a newly published
//! view. It never answers DNS and never blocks the answering path: the only
//! thing it shares with it is the published view.
//!
//! One task owns the [`Registry`], so nothing in it is locked. After each
//! wake-up it drains every datagram already queued on the socket before
//! publishing, so a burst of heartbeats costs one view rebuild, while a lone
//! heartbeat is published at once (well under a millisecond). A plain renewal
//! publishes nothing.

pub mod receive;
pub mod wire;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::MAX_HEARTBEAT_BYTES;
use crate::registry::announcement::{Announcement, State, check_instance_addr};
use crate::registry::{Event, Refusal, Registry};
use crate::view::StaticZone;
use crate::view::publish::Publisher;
use receive::{Batch, RECV_BATCH};
use wire::WireError;

/// Most datagrams handled before the view is republished, so a flood of
/// changes still publishes regularly.
const BATCH: usize = 1024;

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

/// The intake task's state.
pub struct Intake {
    socket: UdpSocket,
    registry: Registry,
    publisher: Publisher,
    statics: watch::Receiver<Arc<StaticZone>>,
    /// Datagrams dropped as malformed or invalid, for the log.
    malformed: u64,
    /// Heartbeats refused by the registry (cap, reserved or claimed name).
    refused: u64,
    malformed_warn: RateLimitedWarn,
    refused_warn: RateLimitedWarn,
}

impl Intake {
    /// An intake reading `socket`, applying to `registry` and publishing
    /// through `publisher`, with the fragments' static data from `statics`.
    pub fn new(
        socket: UdpSocket,
        registry: Registry,
        publisher: Publisher,
        statics: watch::Receiver<Arc<StaticZone>>,
    ) -> Self {
        Intake {
            socket,
            registry,
            publisher,
            statics,
            malformed: 0,
            refused: 0,
            malformed_warn: RateLimitedWarn::new(),
            refused_warn: RateLimitedWarn::new(),
        }
    }

    /// Runs until `shutdown` is cancelled.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut batch = Batch::default();
        // Services whose instances changed since the last view.
        let mut changed: HashSet<String> = HashSet::new();
        loop {
            let deadline = self.registry.next_deadline();
            let mut dirty = false;
            changed.clear();
            tokio::select! {
                () = shutdown.cancelled() => break,
                ready = self.socket.readable() => {
                    if let Err(error) = ready {
                        debug!(%error, "heartbeat socket error");
                    }
                    dirty |= self.drain(&mut batch, &mut changed);
                }
                () = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {}
                changed = self.statics.changed() => {
                    if changed.is_err() {
                        // The fragment watcher is gone: keep the last static data.
                        self.statics.mark_unchanged();
                        continue;
                    }
                    let statics = self.statics.borrow_and_update().clone();
                    self.publisher.set_statics(statics);
                    dirty = true;
                }
            }
            dirty |= self.expire(&mut changed);
            if dirty {
                let started = std::time::Instant::now();
                let serial = self.publisher.publish(&self.registry, &changed);
                debug!(
                    serial,
                    instances = self.registry.len(),
                    build_us = started.elapsed().as_micros(),
                    "published a new view"
                );
            }
        }
        self.publisher.settle();
    }

    fn expire(&mut self, changed: &mut HashSet<String>) -> bool {
        let expired = self.registry.expire(Instant::now());
        for gone in &expired {
            changed.insert(gone.service.clone());
            info!(
                service = %gone.service,
                instance = %gone.instance,
                addr = %gone.addr,
                reason = "no heartbeat within its ttl",
                late_ms = gone.late_by.as_millis(),
                "expired"
            );
        }
        !expired.is_empty()
    }

    /// Handles what the socket holds, up to [`BATCH`] datagrams, read
    /// [`RECV_BATCH`] at a time; returns true when the view must be rebuilt.
    fn drain(&mut self, batch: &mut Batch, changed: &mut HashSet<String>) -> bool {
        let mut dirty = false;
        let mut handled = 0;
        while handled < BATCH {
            let count = match batch.receive(&self.socket) {
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
                    dirty |= self.datagram(bytes, src, changed);
                }
            }
            handled += count;
            if count < RECV_BATCH {
                break;
            }
        }
        dirty
    }

    /// Handles one datagram; returns true when the view must be rebuilt.
    fn datagram(&mut self, bytes: &[u8], src: SocketAddr, changed: &mut HashSet<String>) -> bool {
        crate::supervise::fault_point("intake");
        match wire::decode(bytes) {
            Ok(hb) => {
                let changed_service = self.heartbeat(hb, src);
                let dirty = changed_service.is_some();
                changed.extend(changed_service);
                dirty
            }
            Err(error) => {
                self.malformed(&error, src);
                false
            }
        }
    }

    fn malformed(&mut self, error: &WireError, src: SocketAddr) {
        self.malformed += 1;
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

    /// Applies one heartbeat; returns its service when the view must change.
    fn heartbeat(&mut self, hb: Announcement, src: SocketAddr) -> Option<String> {
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
                return None;
            }
        };
        let service = hb.service.clone();
        let instance = hb.instance.clone();
        let event = match self.claimed(&hb) {
            Some(reason) => Event::Refused(Refusal::Claimed(reason)),
            None => self.registry.apply(hb, addr, Instant::now()),
        };
        match &event {
            Event::Registered => {
                info!(%service, %instance, %addr, %src, reason = "first heartbeat", "registered");
            }
            Event::Changed(fields) => {
                info!(%service, %instance, %addr, %src, reason = %fields.join(","), "changed");
            }
            Event::Drained => {
                info!(%service, %instance, %addr, %src, reason = "sender is draining", "drained");
            }
            Event::Deregistered(addr) => {
                info!(%service, %instance, %addr, %src, reason = "sender said down", "deregistered");
            }
            Event::Renewed | Event::UnknownDown => {}
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
        event.changes_view().then_some(service)
    }
}
