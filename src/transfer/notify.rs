//! NOTIFY (RFC 1996): telling secondaries that the zones changed.
//!
//! Takes the serials the change history reaches (a watch channel the
//! history thread feeds) and the `--notify` targets; produces NOTIFY
//! messages over UDP, one task per target. Changes coming faster than
//! `--notify-delay` share one NOTIFY (per zone served). A NOTIFY not
//! acknowledged in time is sent again after a wait that doubles each time
//! (from [`NOTIFY_TIMEOUT`] up to [`NOTIFY_MAX_BACKOFF`]) until the target
//! answers or a newer serial supersedes it; every unanswered attempt is
//! counted ([`Notifier::failures`]) and logged at WARN (the 1st, 2nd, 4th
//! … per target). NOTIFYs go out from the DNS address's IP, so a
//! secondary's ACL naming the primary's address accepts them, and are
//! TSIG-signed with `--transfer-key` when there is one.
//!
//! It never waits on the answering path and never reads a view: the
//! secondaries then ask for the SOA and the changes like any client.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::SOA;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::auth::Policy;
use crate::config::{NOTIFY_MAX_BACKOFF, NOTIFY_TIMEOUT};
use crate::keys::Key;
use crate::metrics::Metrics;

/// Sends NOTIFYs; counts those that went unanswered, across targets, in
/// [`Metrics::notify_failures`].
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    metrics: Arc<Metrics>,
}

impl Notifier {
    /// A notifier counting into `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Notifier { metrics }
    }

    /// Unanswered NOTIFY attempts so far.
    pub fn failures(&self) -> u64 {
        self.metrics.notify_failures.load(Ordering::Relaxed)
    }

    /// Starts one task per target of `plan`: each sends NOTIFY for every
    /// zone (with the serial) when `serials` changes, at most once per
    /// delay, until `shutdown`.
    pub fn start(&self, plan: &Plan, serials: &watch::Receiver<u32>, shutdown: &CancellationToken) {
        for &target in &plan.targets {
            let task = Target {
                key: plan.key.clone(),
                policies: plan.policies.clone(),
                target,
                zones: plan.zones.clone(),
                source: plan.source,
                delay: plan.delay,
                metrics: self.metrics.clone(),
                failed_here: 0,
            };
            let serials = serials.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                tokio::select! {
                    () = shutdown.cancelled() => {}
                    () = task.run(serials) => {}
                }
            });
        }
    }
}

/// Whom to notify of which zones, and how.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The secondaries (`--notify`).
    pub targets: Vec<SocketAddr>,
    /// The zones served.
    pub zones: Vec<Name>,
    /// The IP NOTIFYs are sent from (the DNS address's).
    pub source: IpAddr,
    /// Changes within this share one NOTIFY (`--notify-delay`).
    pub delay: Duration,
    /// Signs every NOTIFY with this key (`--transfer-key`)...
    pub key: Option<String>,
    /// ... as the keyring has it now (SIGHUP reads the key files again).
    pub policies: watch::Receiver<Arc<Policy>>,
}

/// How one NOTIFY ended.
enum Outcome {
    Acknowledged,
    /// A newer serial came before the acknowledgement.
    Superseded,
    /// The history is gone (the server stops).
    Stopped,
}

/// One secondary to notify.
struct Target {
    /// Signs every NOTIFY with this key (`--transfer-key`): a secondary
    /// that requires the key for transfers usually requires it for NOTIFY
    /// too.
    key: Option<String>,
    policies: watch::Receiver<Arc<Policy>>,
    target: SocketAddr,
    zones: Vec<Name>,
    source: IpAddr,
    delay: Duration,
    metrics: Arc<Metrics>,
    failed_here: u64,
}

impl Target {
    async fn run(mut self, mut serials: watch::Receiver<u32>) {
        let socket = match self.bind().await {
            Ok(socket) => socket,
            Err(error) => {
                warn!(target = %self.target, %error, "cannot open a socket for NOTIFY; this secondary is not notified");
                return;
            }
        };
        let mut last = None::<Instant>;
        // True when a newer serial came while an older one was retried.
        let mut superseded = false;
        loop {
            if !superseded && serials.changed().await.is_err() {
                return;
            }
            // Coalesce: at most one NOTIFY round per delay.
            if let Some(last) = last {
                tokio::time::sleep_until(last + self.delay).await;
            }
            last = Some(Instant::now());
            let serial = *serials.borrow_and_update();
            superseded = false;
            for zone in self.zones.clone() {
                match self
                    .notify_until_answered(&socket, &zone, serial, &mut serials)
                    .await
                {
                    Outcome::Acknowledged => {}
                    Outcome::Superseded => {
                        superseded = true;
                        break;
                    }
                    Outcome::Stopped => return,
                }
            }
        }
    }

    /// A socket on the DNS address's IP (any port), of the target's family.
    async fn bind(&self) -> std::io::Result<UdpSocket> {
        let ip = match (self.source, self.target) {
            (source, target)
                if source.is_ipv4() == target.is_ipv4() && !source.is_unspecified() =>
            {
                source
            }
            (_, SocketAddr::V4(_)) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            (_, SocketAddr::V6(_)) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        UdpSocket::bind(SocketAddr::new(ip, 0)).await
    }

    /// Sends NOTIFY for `zone` at `serial` until the target acknowledges
    /// it or a newer serial comes.
    async fn notify_until_answered(
        &mut self,
        socket: &UdpSocket,
        zone: &Name,
        serial: u32,
        serials: &mut watch::Receiver<u32>,
    ) -> Outcome {
        let mut wait = NOTIFY_TIMEOUT;
        loop {
            let id: u16 = rand::random();
            let mut message = notify_message(id, zone, serial);
            let key: Option<Arc<Key>> = self
                .key
                .as_ref()
                .and_then(|name| self.policies.borrow().keyring().get(name).cloned());
            if let Some(key) = &key {
                let Ok((signature, _)) = key.tsig().sign_message(&message, crate::tsig::unix_now())
                else {
                    return Outcome::Stopped;
                };
                message.signature = Some(signature);
            }
            let Ok(bytes) = message.to_vec() else {
                return Outcome::Stopped;
            };
            let sent = socket.send_to(&bytes, self.target).await.is_ok();
            // A newer serial ends the wait at once: it goes out instead.
            let acknowledged = tokio::select! {
                acknowledged = self.acknowledged(socket, id, wait), if sent => acknowledged,
                () = tokio::time::sleep(wait), if !sent => false,
                changed = serials.changed() => {
                    return if changed.is_ok() { Outcome::Superseded } else { Outcome::Stopped };
                }
            };
            if acknowledged {
                debug!(target = %self.target, %zone, serial, "NOTIFY acknowledged");
                if self.failed_here > 0 {
                    info!(target = %self.target, %zone, serial, "NOTIFY acknowledged again");
                    self.failed_here = 0;
                }
                return Outcome::Acknowledged;
            }
            let total = self.metrics.notify_failures.fetch_add(1, Ordering::Relaxed) + 1;
            self.failed_here += 1;
            if self.failed_here.is_power_of_two() {
                warn!(
                    target = %self.target,
                    %zone,
                    serial,
                    attempts = self.failed_here,
                    total,
                    "NOTIFY not acknowledged; retrying"
                );
            }
            wait = (wait * 2).min(NOTIFY_MAX_BACKOFF);
        }
    }

    /// Waits up to `wait` for the target's reply to NOTIFY `id`.
    async fn acknowledged(&self, socket: &UdpSocket, id: u16, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        let mut buffer = [0u8; 4096];
        loop {
            let received = tokio::time::timeout_at(deadline, socket.recv_from(&mut buffer)).await;
            let Ok(Ok((len, from))) = received else {
                return false;
            };
            if from != self.target {
                continue;
            }
            let Ok(reply) = Message::from_vec(&buffer[..len]) else {
                continue;
            };
            if reply.metadata.id == id
                && reply.metadata.message_type == MessageType::Response
                && reply.metadata.op_code == OpCode::Notify
            {
                return true;
            }
        }
    }
}

/// A NOTIFY for `zone` carrying its new SOA serial (RFC 1996 §3.7: the
/// answer section may hold the SOA; the secondary asks for it anyway).
fn notify_message(id: u16, zone: &Name, serial: u32) -> Message {
    let mut message = Message::new(id, MessageType::Query, OpCode::Notify);
    message.metadata.authoritative = true;
    message.add_query(Query::query(zone.clone(), RecordType::SOA));
    let soa = SOA::new(Name::root(), Name::root(), serial, 0, 0, 0, 0);
    message.add_answer(Record::from_rdata(zone.clone(), 0, RData::SOA(soa)));
    message
}
