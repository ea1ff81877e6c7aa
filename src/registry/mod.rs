//! The live registry: which instances are alive, and until when.
//!
//! Takes [`Announcement`]s (from heartbeats, with the address they resolve
//! to) and the current time; produces an [`Event`] per announcement saying
//! what changed, the list of instances whose lease ran out, and read access
//! to the live instances for the view builder. It never does I/O and never reads the
//! clock itself: time is passed in, so expiry is exact and testable.
//!
//! Expiry is driven by deadlines: every lease's deadline sits in a min-heap,
//! and [`Registry::next_deadline`] tells the intake task exactly when to wake.
//! Each instance has one heap entry: a renewal only moves its lease's
//! deadline (no allocation, no heap work), and an entry that surfaces
//! before its lease's deadline is re-armed at that deadline. A lease whose
//! deadline moves earlier (a shorter TTL) gets a second entry; entries of
//! removed instances are dropped when they surface.
//!
//! It also owns the rule of who may change an instance: an instance
//! registered by a signed heartbeat belongs to that key ([`Signer`]) while
//! it lives; only heartbeats signed with the same key, each with a later
//! timestamp than the last, may renew, change, drain or remove it. A removed
//! signed instance's last timestamp is remembered for the replay memory
//! (twice the clock window) so that none of its old heartbeats can bring
//! it back.
//!
//! Memory per instance is what limits scale, so an instance is one shared
//! allocation ([`Instance`], also held by the views that serve it): the
//! per-service set is ordered by the instance's own id (no separate key),
//! and deadlines are 8-byte offsets from the registry's first heartbeat.

use std::borrow::Borrow;
use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

pub mod announcement;
pub mod protect;
pub mod status;

pub use crate::auth::Signer;
use announcement::{Announcement, Proto, State};
use protect::Protection;

/// One live instance, as the registry keeps it. Shared (`Arc`) with the
/// views that serve it, which build its records from it when asked: an
/// instance is kept once, not once per record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// Instance id (a lower-case DNS label), unique within the service.
    pub id: Box<str>,
    /// Service name (lower case), shared by the service's instances.
    pub service: Arc<str>,
    /// Address served for the instance.
    pub addr: IpAddr,
    /// Port served in SRV.
    pub port: u16,
    /// `_tcp` or `_udp`.
    pub proto: Proto,
    /// Lease length in seconds (also caps the answer TTL).
    pub ttl: u32,
    /// RFC 2782 weight.
    pub weight: u16,
    /// RFC 2782 priority.
    pub priority: u16,
    /// Metadata pairs, sorted by key.
    pub meta: Box<[(String, String)]>,
    /// Tags, sorted (lower-case labels).
    pub tags: Box<[Box<str>]>,
    /// True while draining: resolvable by its own name, not in its service.
    pub draining: bool,
}

impl Instance {
    fn from_announcement(id: Box<str>, service: Arc<str>, hb: Announcement, addr: IpAddr) -> Self {
        Instance {
            id,
            service,
            addr,
            port: hb.port,
            proto: hb.proto,
            ttl: hb.ttl,
            weight: hb.weight,
            priority: hb.priority,
            meta: hb.meta.into_boxed_slice(),
            tags: hb.tags.into_iter().map(String::into_boxed_str).collect(),
            draining: hb.state == State::Drain,
        }
    }

    /// The announcement that would register this instance as it is (its
    /// address always given).
    pub fn announcement(&self) -> Announcement {
        Announcement {
            service: self.service.to_string(),
            instance: self.id.to_string(),
            port: self.port,
            addr: Some(self.addr),
            proto: self.proto,
            ttl: self.ttl,
            weight: self.weight,
            priority: self.priority,
            state: if self.draining {
                State::Drain
            } else {
                State::Up
            },
            meta: self.meta.to_vec(),
            tags: self.tags.iter().map(ToString::to_string).collect(),
        }
    }

    /// Names of the fields that differ between `self` and announcement `hb`
    /// from `addr`, for the log; empty for a plain renewal.
    fn changed_fields(&self, hb: &Announcement, addr: IpAddr) -> Vec<&'static str> {
        let mut fields = Vec::new();
        if self.addr != addr {
            fields.push("addr");
        }
        if self.port != hb.port {
            fields.push("port");
        }
        if self.proto != hb.proto {
            fields.push("proto");
        }
        if self.ttl != hb.ttl {
            fields.push("ttl");
        }
        if self.weight != hb.weight {
            fields.push("weight");
        }
        if self.priority != hb.priority {
            fields.push("priority");
        }
        if *self.meta != *hb.meta {
            fields.push("meta");
        }
        if !self
            .tags
            .iter()
            .map(AsRef::as_ref)
            .eq(hb.tags.iter().map(String::as_str))
        {
            fields.push("tags");
        }
        if self.draining != (hb.state == State::Drain) {
            fields.push("state");
        }
        fields
    }
}

/// An instance as the key of its service's lease map: ordered and looked
/// up by id, so the id is stored once, inside the instance.
#[derive(Debug, Clone)]
struct ById(Arc<Instance>);

impl Borrow<str> for ById {
    fn borrow(&self) -> &str {
        &self.0.id
    }
}

impl PartialEq for ById {
    fn eq(&self, other: &Self) -> bool {
        self.0.id == other.0.id
    }
}

impl Eq for ById {}

impl PartialOrd for ById {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ById {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.id.cmp(&other.0.id)
    }
}

/// Stale expiry entries tolerated beyond one per live instance before the
/// heap is rebuilt (so tiny registries do not rebuild at every change).
const DEADLINE_SLACK: usize = 64;

/// A lease deadline: nanoseconds after the registry's epoch.
type Ticks = u64;

/// An instance's lease: when it ends, and who holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Lease {
    deadline: Ticks,
    /// The key that registered it and the last accepted timestamp;
    /// `None` for an instance registered unsigned (boxed: most
    /// registries have none, and a lease stays 16 bytes).
    owner: Option<Box<Owner>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Owner {
    key: Arc<str>,
    last_ts: u64,
    /// Its key is no longer configured (removed at SIGHUP): the next
    /// heartbeat signed by a configured key takes the instance over, so
    /// a key can be rotated without the instances going away.
    orphaned: bool,
}

impl Lease {
    fn new(deadline: Ticks, signer: &Signer) -> Lease {
        Lease {
            deadline,
            owner: signer.key.as_ref().map(|key| {
                Box::new(Owner {
                    key: key.clone(),
                    last_ts: signer.ts,
                    orphaned: false,
                })
            }),
        }
    }
}

/// The last timestamp of a signed instance that is gone, kept for the
/// replay memory.
#[derive(Debug)]
struct Gone {
    service: Arc<str>,
    instance: Box<str>,
    at: Ticks,
}

/// An entry of the expiry heap: when an instance's lease may end.
#[derive(Debug)]
struct Due {
    at: Ticks,
    instance: Arc<Instance>,
}

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}

impl Eq for Due {}

impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Due {
    fn cmp(&self, other: &Self) -> Ordering {
        self.at.cmp(&other.at)
    }
}

/// What one heartbeat did to the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A new instance (state up or drain).
    Registered,
    /// Same data as before: only the lease moved. Nothing visible changed.
    Renewed,
    /// Data changed (the named fields); draining changes are [`Event::Drained`].
    Changed(Vec<&'static str>),
    /// The instance entered the draining state.
    Drained,
    /// `down` for a registered instance: it is gone. Carries the address
    /// it had, for the audit log.
    Deregistered(IpAddr),
    /// `down` for an instance the registry does not know: nothing to do.
    UnknownDown,
    /// Not admitted; the registry is unchanged.
    Refused(Refusal),
    /// Refused by authentication (replay or ownership); the registry is
    /// unchanged.
    Rejected(crate::auth::Rejection),
}

impl Event {
    /// True when answers may differ after this event.
    pub fn changes_view(&self) -> bool {
        matches!(
            self,
            Event::Registered | Event::Changed(_) | Event::Drained | Event::Deregistered(_)
        )
    }
}

/// Why a heartbeat was not admitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The instance cap is reached; known instances still renew.
    #[error("instance cap of {0} reached (--max-instances)")]
    CapReached(usize),
    /// The service holds as many instances as one service may.
    #[error("service holds {0} instances already (--max-instances-per-service)")]
    ServiceFull(usize),
    /// The service name is taken by the zone itself (the name server's host name).
    #[error("service name `{0}` is reserved by the zone")]
    Reserved(String),
    /// A zone fragment claims one of the instance's names (a CNAME there,
    /// or a delegation above it).
    #[error("{0}")]
    Claimed(String),
}

/// An instance removed because its lease ran out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expired {
    /// Service name.
    pub service: String,
    /// Instance id.
    pub instance: String,
    /// Its last address.
    pub addr: IpAddr,
    /// The key that owned it, if it was registered signed.
    pub key: Option<Arc<str>>,
    /// True when it was kept stale by the protect threshold, and now goes
    /// (after `--protect-max`, or because enough instances are back).
    pub was_stale: bool,
    /// How late the removal ran relative to the deadline.
    pub late_by: Duration,
}

/// One live instance as a snapshot keeps it: what it announced, how long
/// its lease has left, and who owns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    /// The instance's data.
    pub instance: Arc<Instance>,
    /// Time left on its lease (zero if due).
    pub remaining: Duration,
    /// The key that registered it and the last accepted `ts`.
    pub signer: Signer,
}

/// A removed signed instance's last timestamp, as a snapshot keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forgotten {
    /// Service name.
    pub service: Arc<str>,
    /// Instance id.
    pub instance: Box<str>,
    /// The last accepted `ts`.
    pub last_ts: u64,
    /// How much longer it must be remembered.
    pub remaining: Duration,
}

/// The set of live instances, grouped by service.
#[derive(Debug)]
pub struct Registry {
    /// Sorted maps keep the built view deterministic, which makes answers
    /// and tests reproducible; lookups here are per heartbeat, not per
    /// query. Each service maps its instances to their lease deadlines.
    services: BTreeMap<Arc<str>, BTreeMap<ById, Lease>>,
    deadlines: BinaryHeap<Reverse<Due>>,
    /// Last timestamps of removed signed instances, for
    /// `replay_memory`: by name, and in removal order to forget them.
    gone: HashMap<(Arc<str>, Box<str>), (u64, Ticks)>,
    gone_order: VecDeque<Gone>,
    replay_memory: Duration,
    /// What deadlines count from: the first heartbeat's time.
    epoch: Option<Instant>,
    len: usize,
    max_instances: usize,
    max_per_service: usize,
    reserved: Vec<String>,
    /// The mass-failure guard, when on.
    protection: Option<Protection>,
}

impl Registry {
    /// An empty registry admitting at most `max_instances` instances.
    /// Services named in `reserved` are refused.
    pub fn new(max_instances: usize, reserved: Vec<String>) -> Self {
        Registry {
            services: BTreeMap::new(),
            deadlines: BinaryHeap::new(),
            gone: HashMap::new(),
            gone_order: VecDeque::new(),
            replay_memory: Duration::ZERO,
            epoch: None,
            len: 0,
            max_instances,
            max_per_service: max_instances,
            reserved,
            protection: None,
        }
    }

    /// Turns on the mass-failure guard: expiry never takes a service below
    /// `ratio` of the most instances it had within `window`; the instances
    /// kept are stale for at most `max`. A ratio of 0 leaves it off.
    #[must_use]
    pub fn with_protection(mut self, ratio: f64, window: Duration, max: Duration) -> Self {
        self.protection = (ratio > 0.0).then(|| Protection::new(ratio, window, max));
        self
    }

    /// Services that entered protection since the last call: (service,
    /// live instances, recent peak).
    pub fn take_protected(&mut self) -> Vec<(Arc<str>, usize, usize)> {
        self.protection
            .as_mut()
            .map(Protection::take_entered)
            .unwrap_or_default()
    }

    /// Services whose protection ended since the last call.
    pub fn take_unprotected(&mut self) -> Vec<Arc<str>> {
        self.protection
            .as_mut()
            .map(Protection::take_released)
            .unwrap_or_default()
    }

    /// Instances kept stale by the guard now.
    pub fn stale(&self) -> usize {
        self.protection.as_ref().map_or(0, Protection::stale_count)
    }

    /// True when `instance` of `service` is kept stale by the guard.
    pub fn is_stale(&self, service: &str, instance: &str) -> bool {
        self.protection
            .as_ref()
            .is_some_and(|p| p.is_stale(service, instance))
    }

    /// After `service` gained an instance (or one beat again): when it has
    /// enough again, its stale instances go at the next expiry.
    fn check_recovery(&mut self, service: &str, now: Instant) {
        let now_ticks = self.ticks(now);
        if !self
            .protection
            .as_ref()
            .is_some_and(|p| p.protecting(service))
        {
            return;
        }
        let at_risk = self.at_risk(service, now_ticks);
        let Some(protection) = self.protection.as_mut() else {
            return;
        };
        let Some((name, instances)) = self.services.get_key_value(service) else {
            return;
        };
        let live = instances.len();
        let stale = instances
            .keys()
            .filter(|key| protection.is_stale(service, &key.0.id))
            .count();
        let healthy = live.saturating_sub(stale).saturating_sub(at_risk);
        let release = protection.recovered(&name.clone(), live, healthy, now_ticks);
        if release.is_empty() {
            return;
        }
        let Some(instances) = self.services.get_mut(service) else {
            return;
        };
        for id in release {
            let Some(instance) = instances.get_key_value(&*id).map(|(key, _)| key.0.clone()) else {
                continue;
            };
            if let Some(lease) = instances.get_mut(&*id) {
                lease.deadline = now_ticks;
            }
            self.deadlines.push(Reverse(Due {
                at: now_ticks,
                instance,
            }));
        }
    }

    /// Admits at most `max` instances into any one service.
    #[must_use]
    pub fn with_max_per_service(mut self, max: usize) -> Self {
        self.max_per_service = max;
        self
    }

    /// Remembers a removed signed instance's last timestamp this long
    /// (at most `--max-instances` of them; the oldest are forgotten first).
    pub fn set_replay_memory(&mut self, memory: Duration) {
        self.replay_memory = memory;
    }

    /// Number of removed signed instances whose last timestamps are kept.
    pub fn remembered(&self) -> usize {
        self.gone.len()
    }

    /// Number of live instances.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Number of live services.
    pub fn service_count(&self) -> usize {
        self.services.len()
    }

    /// True when no instance is live.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// `at` as ticks after the epoch (0 before it).
    fn ticks(&self, at: Instant) -> Ticks {
        self.epoch.map_or(0, |epoch| {
            Ticks::try_from(at.saturating_duration_since(epoch).as_nanos()).unwrap_or(Ticks::MAX)
        })
    }

    fn instant(&self, ticks: Ticks) -> Instant {
        let epoch = self.epoch.unwrap_or_else(Instant::now);
        epoch + Duration::from_nanos(ticks)
    }

    /// Applies one unsigned announcement received at `now`; `addr` is the
    /// address to serve (the announcement's own, or where it came from).
    pub fn apply(&mut self, hb: Announcement, addr: IpAddr, now: Instant) -> Event {
        self.apply_signed(hb, addr, &Signer::unsigned(), now)
    }

    /// True when `signer`'s timestamp is not later than the last one
    /// accepted for the instance (alive, or removed within the replay
    /// memory). Unsigned heartbeats carry none and are never replays.
    pub fn replayed(&self, service: &str, instance: &str, signer: &Signer) -> bool {
        if signer.key.is_none() {
            return false;
        }
        let last = match self.lease(service, instance) {
            Some(lease) => lease.owner.as_ref().map(|o| o.last_ts),
            None if self.gone.is_empty() => None,
            None => self
                .gone
                .get(&(Arc::from(service), Box::from(instance)))
                .map(|&(ts, _)| ts),
        };
        last.is_some_and(|last| signer.ts <= last)
    }

    /// Whether the new instances of `services` (one entry per new
    /// instance) would all be admitted now: no reserved name, room under
    /// both caps. Lets an intake that must apply several changes all or
    /// nothing check before it applies any.
    ///
    /// # Errors
    /// The [`Refusal`] the first one that would not fit would get.
    pub fn check_room<'s>(&self, services: impl Iterator<Item = &'s str>) -> Result<(), Refusal> {
        let mut per_service: BTreeMap<&str, usize> = BTreeMap::new();
        let mut total = 0;
        for service in services {
            if self.reserved.iter().any(|r| r == service) {
                return Err(Refusal::Reserved(service.to_string()));
            }
            total += 1;
            *per_service.entry(service).or_default() += 1;
        }
        if self.len + total > self.max_instances {
            return Err(Refusal::CapReached(self.max_instances));
        }
        for (service, adding) in per_service {
            let held = self.services.get(service).map_or(0, BTreeMap::len);
            if held + adding > self.max_per_service {
                return Err(Refusal::ServiceFull(self.max_per_service));
            }
        }
        Ok(())
    }

    /// The last accepted timestamp of a live signed instance (0 when it
    /// is unsigned or unknown).
    pub fn last_ts(&self, service: &str, instance: &str) -> u64 {
        self.lease(service, instance)
            .and_then(|lease| lease.owner.as_ref())
            .map_or(0, |owner| owner.last_ts)
    }

    /// True when the instance is alive and belongs to someone else: a
    /// signed instance to another key, or to any key for an unsigned
    /// heartbeat. (A signed heartbeat may adopt an unsigned instance:
    /// that is how a fleet moves to signing.)
    pub fn owned_by_another(&self, service: &str, instance: &str, signer: &Signer) -> bool {
        self.lease(service, instance)
            .and_then(|lease| lease.owner.as_ref())
            .is_some_and(|owner| match &signer.key {
                None => true,
                Some(key) => !owner.orphaned && *key != owner.key,
            })
    }

    /// Marks the instances of keys that `is_gone` as orphaned: each stays
    /// until its lease ends, and the next heartbeat signed by a configured
    /// key takes it over (key rotation). Returns how many were marked.
    /// O(live instances); run when the keys change.
    pub fn orphan_keys(&mut self, is_gone: impl Fn(&str) -> bool) -> usize {
        let mut marked = 0;
        for lease in self.services.values_mut().flat_map(BTreeMap::values_mut) {
            if let Some(owner) = &mut lease.owner {
                let gone = is_gone(&owner.key);
                marked += usize::from(gone && !owner.orphaned);
                owner.orphaned = gone;
            }
        }
        marked
    }

    fn lease(&self, service: &str, instance: &str) -> Option<&Lease> {
        self.services.get(service)?.get(instance)
    }

    /// Applies one announcement from `signer` received at `now` (see
    /// [`Registry::apply`]); a replay or a heartbeat for an instance
    /// another key owns is [`Event::Rejected`] and changes nothing.
    pub fn apply_signed(
        &mut self,
        hb: Announcement,
        addr: IpAddr,
        signer: &Signer,
        now: Instant,
    ) -> Event {
        self.epoch.get_or_insert(now);
        self.forget_gone(now);
        if self.replayed(&hb.service, &hb.instance, signer) {
            return Event::Rejected(crate::auth::Rejection::Replayed);
        }
        if self.owned_by_another(&hb.service, &hb.instance, signer) {
            return Event::Rejected(crate::auth::Rejection::NotOwner);
        }
        self.apply_authenticated(hb, addr, signer, now)
    }

    /// [`Registry::apply_signed`] for a heartbeat the caller has just
    /// checked with [`Registry::replayed`] and
    /// [`Registry::owned_by_another`], with no change to the registry in
    /// between (the intake's path for known instances: it saves two
    /// lookups per heartbeat).
    pub fn apply_authenticated(
        &mut self,
        hb: Announcement,
        addr: IpAddr,
        signer: &Signer,
        now: Instant,
    ) -> Event {
        self.epoch.get_or_insert(now);
        if hb.state == State::Down {
            return self.remove(&hb.service, &hb.instance, signer.ts, now);
        }
        if self.reserved.contains(&hb.service) {
            return Event::Refused(Refusal::Reserved(hb.service));
        }
        let deadline = self.ticks(now + Duration::from_secs(u64::from(hb.ttl)));
        let lease = self
            .services
            .get_mut(hb.service.as_str())
            .and_then(|s| s.get_key_value(hb.instance.as_str()))
            .map(|(key, lease)| (key.0.clone(), lease.deadline));
        if let Some((instance, at)) = lease {
            return self.renew(&instance, at, hb, addr, signer, now);
        }
        if self.len >= self.max_instances {
            return Event::Refused(Refusal::CapReached(self.max_instances));
        }
        if self
            .services
            .get(hb.service.as_str())
            .is_some_and(|instances| instances.len() >= self.max_per_service)
        {
            return Event::Refused(Refusal::ServiceFull(self.max_per_service));
        }
        let service = hb.service.clone();
        self.insert_new(hb, addr, deadline, signer);
        self.check_recovery(&service, now);
        Event::Registered
    }

    /// Adds an instance the registry does not hold (caps already checked).
    fn insert_new(&mut self, hb: Announcement, addr: IpAddr, deadline: Ticks, signer: &Signer) {
        let service = match self.services.get_key_value(hb.service.as_str()) {
            Some((service, _)) => service.clone(),
            None => Arc::from(hb.service.as_str()),
        };
        let id = hb.instance.as_str().into();
        let instance = Arc::new(Instance::from_announcement(id, service.clone(), hb, addr));
        self.deadlines.push(Reverse(Due {
            at: deadline,
            instance: instance.clone(),
        }));
        self.services
            .entry(service)
            .or_default()
            .insert(ById(instance), Lease::new(deadline, signer));
        self.len += 1;
    }

    /// Renews `instance`, whose lease ran until `at`; its data is replaced
    /// only if it changed, so a plain renewal allocates nothing.
    fn renew(
        &mut self,
        instance: &Arc<Instance>,
        at: Ticks,
        hb: Announcement,
        addr: IpAddr,
        signer: &Signer,
        now: Instant,
    ) -> Event {
        let deadline = self.ticks(now + Duration::from_secs(u64::from(hb.ttl)));
        // One heap entry per instance: a renewal only moves the lease's
        // deadline, and the entry is re-armed when it surfaces early
        // (see `drop_stale_deadlines`). Only a deadline that moves earlier
        // (a shorter TTL) needs an entry of its own.
        if deadline < at {
            self.deadlines.push(Reverse(Due {
                at: deadline,
                instance: instance.clone(),
            }));
            self.compact_deadlines();
        }
        if let Some(protection) = self.protection.as_mut()
            && protection.is_stale(&instance.service, &instance.id)
        {
            protection.fresh_again(&instance.service, &instance.id);
            let service = instance.service.clone();
            self.check_recovery(&service, now);
        }
        let fields = instance.changed_fields(&hb, addr);
        let Some(leases) = self.services.get_mut(hb.service.as_str()) else {
            return Event::UnknownDown;
        };
        if fields.is_empty() {
            let Some(lease) = leases.get_mut(hb.instance.as_str()) else {
                return Event::UnknownDown;
            };
            lease.deadline = deadline;
            return match (&mut lease.owner, &signer.key) {
                (Some(owner), Some(key)) if owner.key == *key => {
                    owner.last_ts = signer.ts;
                    Event::Renewed
                }
                // Adopted (unsigned before) or taken over (its key is gone).
                (_, Some(_)) => {
                    *lease = Lease::new(deadline, signer);
                    Event::Changed(vec!["key"])
                }
                (_, None) => Event::Renewed,
            };
        }
        let drained = !instance.draining && hb.state == State::Drain;
        let new =
            Instance::from_announcement(instance.id.clone(), instance.service.clone(), hb, addr);
        let mut fields = fields;
        let mut lease = leases
            .remove(&*new.id)
            .unwrap_or_else(|| Lease::new(deadline, signer));
        lease.deadline = deadline;
        if let Some(key) = &signer.key {
            if lease.owner.as_ref().is_none_or(|owner| owner.key != *key) {
                fields.push("key");
            }
            lease = Lease::new(deadline, signer);
        }
        leases.insert(ById(Arc::new(new)), lease);
        if drained && fields == ["state"] {
            Event::Drained
        } else {
            Event::Changed(fields)
        }
    }

    /// Removes an instance; `ts` is the timestamp of the `down` that
    /// removed it (0 for an expiry, which keeps the last heartbeat's).
    fn remove(&mut self, service: &str, instance: &str, ts: u64, now: Instant) -> Event {
        let Some(instances) = self.services.get_mut(service) else {
            return Event::UnknownDown;
        };
        let Some((removed, lease)) = instances.remove_entry(instance) else {
            return Event::UnknownDown;
        };
        let left = instances.len();
        if instances.is_empty() {
            self.services.remove(service);
        }
        self.len -= 1;
        if let Some(protection) = self.protection.as_mut() {
            let now_ticks = self.epoch.map_or(0, |epoch| {
                Ticks::try_from(now.saturating_duration_since(epoch).as_nanos())
                    .unwrap_or(Ticks::MAX)
            });
            protection.gone(&removed.0.service, &removed.0.id, left, now_ticks);
        }
        if let Some(owner) = lease.owner {
            self.remember_gone(&removed.0, owner.last_ts.max(ts), now);
        }
        // Its heap entries are now stale: dropped when they surface, or
        // when they pile up.
        self.compact_deadlines();
        Event::Deregistered(removed.0.addr)
    }

    /// Keeps a removed signed instance's last timestamp for the replay
    /// memory, forgetting the oldest beyond `max_instances` of them.
    fn remember_gone(&mut self, instance: &Instance, last_ts: u64, now: Instant) {
        if self.replay_memory.is_zero() {
            return;
        }
        while self.gone_order.len() >= self.max_instances.max(1) {
            self.forget_oldest();
        }
        let at = self.ticks(now);
        let key = (instance.service.clone(), instance.id.clone());
        self.gone.insert(key, (last_ts, at));
        self.gone_order.push_back(Gone {
            service: instance.service.clone(),
            instance: instance.id.clone(),
            at,
        });
    }

    fn forget_oldest(&mut self) {
        if let Some(gone) = self.gone_order.pop_front() {
            let key = (gone.service, gone.instance);
            // A later removal of the same name has its own, later entry.
            if self.gone.get(&key).is_some_and(|&(_, at)| at == gone.at) {
                self.gone.remove(&key);
            }
        }
    }

    /// Forgets the timestamps of instances removed longer ago than the
    /// replay memory: by then the clock window refuses their heartbeats.
    fn forget_gone(&mut self, now: Instant) {
        let memory = u64::try_from(self.replay_memory.as_nanos()).unwrap_or(u64::MAX);
        let now = self.ticks(now);
        while self
            .gone_order
            .front()
            .is_some_and(|gone| now.saturating_sub(gone.at) > memory)
        {
            self.forget_oldest();
        }
    }

    /// Rebuilds the expiry heap with one entry per live instance once stale
    /// entries make up more than half of it: a sender alternating long and
    /// short leases adds an entry per shortening, and those would otherwise
    /// pile up until their (long) deadlines surface. O(live) now and then,
    /// so the heap never holds more than twice the live instances (plus a
    /// little slack).
    fn compact_deadlines(&mut self) {
        if self.deadlines.len() <= 2 * self.len + DEADLINE_SLACK {
            return;
        }
        let live: Vec<Reverse<Due>> = self
            .services
            .values()
            .flat_map(|instances| {
                instances.iter().map(|(key, lease)| {
                    Reverse(Due {
                        at: lease.deadline,
                        instance: key.0.clone(),
                    })
                })
            })
            .collect();
        self.deadlines = BinaryHeap::from(live);
    }

    /// The current lease of `instance` (by service and id): its data and
    /// deadline.
    fn lease_of(&self, instance: &Instance) -> Option<(&Arc<Instance>, Ticks)> {
        self.services
            .get(&instance.service)?
            .get_key_value(&*instance.id)
            .map(|(key, lease)| (&key.0, lease.deadline))
    }

    /// The earliest moment a lease may run out, if any instance is live.
    pub fn next_deadline(&mut self) -> Option<Instant> {
        self.drop_stale_deadlines();
        self.deadlines
            .peek()
            .map(|Reverse(due)| self.instant(due.at))
    }

    /// Brings a valid entry to the top of the heap: entries of removed
    /// instances are dropped, and entries of renewed ones are re-armed at
    /// their lease's current deadline.
    fn drop_stale_deadlines(&mut self) {
        while let Some(Reverse(due)) = self.deadlines.peek() {
            let current = self.lease_of(&due.instance);
            if current.is_some_and(|(_, at)| at == due.at) {
                return;
            }
            let later =
                current
                    .filter(|&(_, deadline)| deadline > due.at)
                    .map(|(instance, deadline)| Due {
                        at: deadline,
                        instance: instance.clone(),
                    });
            self.deadlines.pop();
            if let Some(later) = later {
                self.deadlines.push(Reverse(later));
            }
        }
    }

    /// Removes every instance whose lease ended at or before `now`.
    pub fn expire(&mut self, now: Instant) -> Vec<Expired> {
        self.expire_some(now, usize::MAX)
    }

    /// [`Registry::expire`], at most `limit` instances this time (the
    /// rest stay due, for the next call), so a mass expiry is done in
    /// bounded steps.
    pub fn expire_some(&mut self, now: Instant, limit: usize) -> Vec<Expired> {
        self.forget_gone(now);
        let mut expired = Vec::new();
        while expired.len() < limit
            && let Some(at) = self.next_deadline()
        {
            if at > now {
                break;
            }
            let Some(Reverse(due)) = self.deadlines.pop() else {
                break;
            };
            let Some(addr) = self.lease_of(&due.instance).map(|(inst, _)| inst.addr) else {
                continue;
            };
            let was_stale = self.is_stale(&due.instance.service, &due.instance.id);
            if !was_stale && self.protect(&due.instance, now) {
                continue;
            }
            let key = self
                .lease(&due.instance.service, &due.instance.id)
                .and_then(|lease| lease.owner.as_ref())
                .map(|owner| owner.key.clone());
            self.remove(&due.instance.service, &due.instance.id, 0, now);
            expired.push(Expired {
                service: due.instance.service.to_string(),
                instance: due.instance.id.to_string(),
                addr,
                key,
                was_stale,
                late_by: now.saturating_duration_since(at),
            });
        }
        expired
    }

    /// Every live instance and every remembered removal, as of `now`, for
    /// a snapshot. O(live instances); the result shares the instances.
    pub fn export(&self, now: Instant) -> (Vec<Kept>, Vec<Forgotten>) {
        let now_ticks = self.ticks(now);
        let left = |until: Ticks| Duration::from_nanos(until.saturating_sub(now_ticks));
        let kept = self
            .services
            .values()
            .flat_map(BTreeMap::iter)
            .map(|(key, lease)| Kept {
                instance: key.0.clone(),
                remaining: left(lease.deadline),
                signer: lease
                    .owner
                    .as_ref()
                    .map(|owner| Signer {
                        key: Some(owner.key.clone()),
                        ts: owner.last_ts,
                    })
                    .unwrap_or_default(),
            })
            .collect();
        let memory = u64::try_from(self.replay_memory.as_nanos()).unwrap_or(u64::MAX);
        let forgotten = self
            .gone
            .iter()
            .map(|((service, instance), &(last_ts, at))| Forgotten {
                service: service.clone(),
                instance: instance.clone(),
                last_ts,
                remaining: left(at.saturating_add(memory)),
            })
            .collect();
        (kept, forgotten)
    }

    /// Puts back an instance from a snapshot, with `remaining` left on its
    /// lease and its owner; returns false (and changes nothing) when its
    /// lease has passed, it is already live, or a cap is reached.
    pub fn restore(
        &mut self,
        hb: Announcement,
        addr: IpAddr,
        remaining: Duration,
        signer: &Signer,
        now: Instant,
    ) -> bool {
        if remaining.is_zero()
            || hb.state == State::Down
            || self.len >= self.max_instances
            || self.contains(&hb.service, &hb.instance)
            || self.reserved.contains(&hb.service)
            || self
                .services
                .get(hb.service.as_str())
                .is_some_and(|instances| instances.len() >= self.max_per_service)
        {
            return false;
        }
        self.epoch.get_or_insert(now);
        let deadline = self.ticks(now + remaining);
        self.insert_new(hb, addr, deadline, signer);
        true
    }

    /// Puts back a remembered removal from a snapshot.
    pub fn restore_forgotten(&mut self, forgotten: Forgotten, now: Instant) {
        if self.replay_memory.is_zero() || forgotten.remaining.is_zero() {
            return;
        }
        self.epoch.get_or_insert(now);
        // Dated so that it is forgotten when the snapshot said.
        let forget_at = now + forgotten.remaining;
        let at = self
            .ticks(forget_at)
            .saturating_sub(u64::try_from(self.replay_memory.as_nanos()).unwrap_or(u64::MAX));
        while self.gone_order.len() >= self.max_instances.max(1) {
            self.forget_oldest();
        }
        self.gone.insert(
            (forgotten.service.clone(), forgotten.instance.clone()),
            (forgotten.last_ts, at),
        );
        self.gone_order.push_back(Gone {
            service: forgotten.service,
            instance: forgotten.instance,
            at,
        });
    }

    /// The non-stale instances of `service` with more than half their
    /// lease gone at `now`: about to run out, if their senders stopped.
    fn at_risk(&self, service: &str, now: Ticks) -> usize {
        let Some(instances) = self.services.get(service) else {
            return 0;
        };
        instances
            .iter()
            .filter(|(key, lease)| {
                let half = u64::from(key.0.ttl) * 500_000_000;
                lease.deadline.saturating_sub(half) <= now && !self.is_stale(service, &key.0.id)
            })
            .count()
    }

    /// Asks the guard whether `instance`, whose lease ran out, stays; if
    /// so its lease runs on, stale, for `--protect-max`.
    fn protect(&mut self, instance: &Arc<Instance>, now: Instant) -> bool {
        let now_ticks = self.ticks(now);
        if self.protection.is_none() {
            return false;
        }
        let live = self
            .services
            .get(&instance.service)
            .map_or(0, BTreeMap::len);
        // Counted only when the guard asks (a service not yet protected).
        let mut at_risk = None;
        if !self
            .protection
            .as_ref()
            .is_some_and(|p| p.protecting(&instance.service))
        {
            at_risk = Some(self.at_risk(&instance.service, now_ticks));
        }
        let Some(protection) = self.protection.as_mut() else {
            return false;
        };
        let kept = protection.keep(
            &instance.service,
            &instance.id,
            live,
            || at_risk.unwrap_or(0),
            now_ticks,
        );
        if !kept {
            return false;
        }
        let max = protection.max;
        let until = self.ticks(now + max);
        if let Some(lease) = self
            .services
            .get_mut(&instance.service)
            .and_then(|instances| instances.get_mut(&*instance.id))
        {
            lease.deadline = until;
        }
        self.deadlines.push(Reverse(Due {
            at: until,
            instance: instance.clone(),
        }));
        true
    }

    /// Live services in name order, each with its instances in id order.
    pub fn services(&self) -> impl Iterator<Item = (&str, impl Iterator<Item = &Arc<Instance>>)> {
        self.services
            .iter()
            .map(|(name, instances)| (name.as_ref(), instances.keys().map(|key| &key.0)))
    }

    /// The instances of one live service, in id order.
    pub fn service(&self, name: &str) -> Option<impl Iterator<Item = &Arc<Instance>>> {
        self.services
            .get(name)
            .map(|instances| instances.keys().map(|key| &key.0))
    }

    /// True when `instance` of `service` is live.
    pub fn contains(&self, service: &str, instance: &str) -> bool {
        self.services
            .get(service)
            .is_some_and(|instances| instances.contains_key(instance))
    }

    /// One instance, if live.
    pub fn get(&self, service: &str, instance: &str) -> Option<&Instance> {
        self.services
            .get(service)?
            .get_key_value(instance)
            .map(|(key, _)| key.0.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    fn hb(instance: &str, ttl: u32) -> Announcement {
        let mut hb = Announcement::new("web", instance, 80);
        hb.ttl = ttl;
        hb
    }

    #[test]
    fn register_renew_change_drain_down() {
        let now = Instant::now();
        let mut reg = Registry::new(10, vec![]);
        assert_eq!(reg.apply(hb("a", 5), A, now), Event::Registered);
        assert_eq!(reg.apply(hb("a", 5), A, now), Event::Renewed);
        assert!(!Event::Renewed.changes_view());
        assert_eq!(reg.apply(hb("a", 5), B, now), Event::Changed(vec!["addr"]));
        let mut drain = hb("a", 5);
        drain.state = State::Drain;
        assert_eq!(reg.apply(drain.clone(), B, now), Event::Drained);
        assert!(reg.get("web", "a").is_some_and(|i| i.draining));
        assert_eq!(reg.apply(hb("a", 5), B, now), Event::Changed(vec!["state"]));
        let mut down = hb("a", 5);
        down.state = State::Down;
        assert_eq!(reg.apply(down.clone(), A, now), Event::Deregistered(B));
        assert_eq!(reg.apply(down, B, now), Event::UnknownDown);
        assert!(reg.is_empty());
        assert_eq!(reg.next_deadline(), None);
    }

    #[test]
    fn expiry_follows_the_latest_renewal() {
        let t0 = Instant::now();
        let mut reg = Registry::new(10, vec![]);
        reg.apply(hb("a", 2), A, t0);
        reg.apply(hb("b", 5), A, t0);
        reg.apply(hb("a", 2), A, t0 + Duration::from_secs(1));
        assert_eq!(reg.next_deadline(), Some(t0 + Duration::from_secs(3)));
        assert!(reg.expire(t0 + Duration::from_millis(2999)).is_empty());
        let gone = reg.expire(t0 + Duration::from_secs(3));
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].instance, "a");
        assert_eq!(reg.len(), 1);
        assert_eq!(reg.next_deadline(), Some(t0 + Duration::from_secs(5)));
    }

    #[test]
    fn renewals_keep_one_heap_entry_and_shorter_ttls_still_expire_on_time() {
        let t0 = Instant::now();
        let mut reg = Registry::new(10, vec![]);
        reg.apply(hb("a", 10), A, t0);
        for second in 1..50 {
            reg.apply(hb("a", 10), A, t0 + Duration::from_secs(second));
        }
        assert_eq!(reg.deadlines.len(), 1);
        assert_eq!(reg.next_deadline(), Some(t0 + Duration::from_secs(59)));
        // The TTL drops to 2 s: the lease must end at 52 s, not at 59 s.
        reg.apply(hb("a", 2), A, t0 + Duration::from_secs(50));
        assert_eq!(reg.next_deadline(), Some(t0 + Duration::from_secs(52)));
        assert_eq!(reg.expire(t0 + Duration::from_secs(52)).len(), 1);
        assert!(reg.is_empty());
        assert_eq!(reg.next_deadline(), None);
    }

    #[test]
    fn alternating_leases_keep_the_expiry_heap_bounded() {
        let t0 = Instant::now();
        let mut reg = Registry::new(10, vec![]);
        reg.apply(hb("other", 60), A, t0);
        for i in 0..200_000u64 {
            let ttl = if i % 2 == 0 { 86_400 } else { 1 };
            reg.apply(hb("a", ttl), A, t0 + Duration::from_micros(i));
            assert!(reg.deadlines.len() <= 2 * reg.len() + DEADLINE_SLACK);
        }
        // The last heartbeat asked for 1 s: it expires then, not in a day.
        let last = t0 + Duration::from_micros(199_999);
        assert_eq!(reg.next_deadline(), Some(last + Duration::from_secs(1)));
        assert_eq!(reg.expire(last + Duration::from_secs(1)).len(), 1);
        assert_eq!(reg.len(), 1);
    }

    #[test]
    fn instances_that_leave_do_not_pile_up_in_the_expiry_heap() {
        let now = Instant::now();
        let mut reg = Registry::new(10, vec![]);
        for i in 0..10_000 {
            let id = format!("i{i}");
            reg.apply(hb(&id, 86_400), A, now);
            let mut down = hb(&id, 86_400);
            down.state = State::Down;
            reg.apply(down, A, now);
            assert!(reg.deadlines.len() <= 2 * reg.len() + DEADLINE_SLACK);
        }
    }

    #[test]
    fn cap_refuses_new_instances_but_renews_known_ones() {
        let now = Instant::now();
        let mut reg = Registry::new(1, vec!["ns".into()]);
        assert_eq!(reg.apply(hb("a", 5), A, now), Event::Registered);
        assert_eq!(
            reg.apply(hb("b", 5), A, now),
            Event::Refused(Refusal::CapReached(1))
        );
        assert_eq!(reg.apply(hb("a", 5), A, now), Event::Renewed);
        let mut per_service = Registry::new(10, vec![]).with_max_per_service(2);
        for id in ["a", "b"] {
            assert_eq!(per_service.apply(hb(id, 5), A, now), Event::Registered);
        }
        assert_eq!(
            per_service.apply(hb("c", 5), A, now),
            Event::Refused(Refusal::ServiceFull(2))
        );
        let mut other = hb("c", 5);
        other.service = "api".into();
        assert_eq!(per_service.apply(other, A, now), Event::Registered);
        let reserved = Announcement::new("ns", "x", 53);
        assert!(matches!(
            reg.apply(reserved, A, now),
            Event::Refused(Refusal::Reserved(_))
        ));
        assert_eq!(reg.len(), 1);
    }

    fn signer(key: &str, ts: u64) -> Signer {
        Signer {
            key: Some(key.into()),
            ts,
        }
    }

    #[test]
    fn a_signed_instance_belongs_to_its_key_and_refuses_old_timestamps() {
        use crate::auth::Rejection::{NotOwner, Replayed};
        let now = Instant::now();
        let mut reg = Registry::new(10, vec![]);
        reg.set_replay_memory(Duration::from_secs(60));
        let web = |ts| signer("web-team", ts);
        assert_eq!(
            reg.apply_signed(hb("a", 5), A, &web(100), now),
            Event::Registered
        );
        assert_eq!(
            reg.apply_signed(hb("a", 5), A, &web(100), now),
            Event::Rejected(Replayed)
        );
        assert_eq!(
            reg.apply_signed(hb("a", 5), B, &web(99), now),
            Event::Rejected(Replayed)
        );
        assert_eq!(
            reg.apply_signed(hb("a", 5), A, &web(101), now),
            Event::Renewed
        );
        // Another key, even with a fresh timestamp; and an unsigned heartbeat.
        assert_eq!(
            reg.apply_signed(hb("a", 5), B, &signer("ops", 500), now),
            Event::Rejected(NotOwner)
        );
        let mut down = hb("a", 5);
        down.state = State::Down;
        assert_eq!(reg.apply(down.clone(), A, now), Event::Rejected(NotOwner));
        assert_eq!(reg.get("web", "a").map(|i| i.addr), Some(A));
        // The owner's down removes it; its old heartbeats cannot bring it back.
        assert_eq!(
            reg.apply_signed(down.clone(), A, &web(102), now),
            Event::Deregistered(A)
        );
        assert_eq!(
            reg.apply_signed(hb("a", 5), A, &web(101), now),
            Event::Rejected(Replayed)
        );
        assert_eq!(reg.remembered(), 1);
        // Once the replay memory has passed, the name is free again.
        let later = now + Duration::from_secs(61);
        assert_eq!(
            reg.apply_signed(hb("a", 5), A, &signer("ops", 50), later),
            Event::Registered
        );
        assert_eq!(reg.remembered(), 0);
    }

    #[test]
    fn expired_signed_instances_are_remembered_and_unsigned_ones_adopted() {
        let now = Instant::now();
        let mut reg = Registry::new(2, vec![]);
        reg.set_replay_memory(Duration::from_secs(60));
        assert_eq!(
            reg.apply_signed(hb("a", 1), A, &signer("k", 10), now),
            Event::Registered
        );
        let expired = reg.expire(now + Duration::from_secs(2));
        assert_eq!(expired[0].key.as_deref(), Some("k"));
        assert!(reg.replayed("web", "a", &signer("k", 10)));
        assert!(!reg.replayed("web", "a", &signer("k", 11)));
        // An unsigned instance is adopted by the first key that signs for it.
        assert_eq!(reg.apply(hb("b", 5), A, now), Event::Registered);
        assert!(!reg.owned_by_another("web", "b", &signer("k", 1)));
        assert_eq!(
            reg.apply_signed(hb("b", 5), A, &signer("k", 1), now),
            Event::Changed(vec!["key"])
        );
        assert_eq!(
            reg.apply_signed(hb("b", 5), A, &signer("k", 2), now),
            Event::Renewed
        );
        assert!(reg.owned_by_another("web", "b", &Signer::unsigned()));
        assert!(reg.owned_by_another("web", "b", &signer("other", 3)));
        // Its key removed, the instance is taken over by the next signed
        // heartbeat of a configured key (never by an unsigned one).
        assert_eq!(reg.orphan_keys(|key| key == "k"), 1);
        assert!(reg.owned_by_another("web", "b", &Signer::unsigned()));
        assert!(!reg.owned_by_another("web", "b", &signer("new", 3)));
        assert_eq!(
            reg.apply_signed(hb("b", 5), B, &signer("new", 3), now),
            Event::Changed(vec!["addr", "key"])
        );
        assert!(reg.owned_by_another("web", "b", &signer("k", 4)));
        // The memory holds at most --max-instances names.
        for (i, name) in ["c", "d", "e"].into_iter().enumerate() {
            let ts = 100 + u64::try_from(i).unwrap_or(0);
            reg.apply_signed(hb(name, 5), A, &signer("k", ts), now);
            let mut down = hb(name, 5);
            down.state = State::Down;
            reg.apply_signed(down, A, &signer("k", ts + 10), now);
        }
        assert_eq!(reg.remembered(), 2);
    }

    #[test]
    fn the_protect_threshold_keeps_a_service_whose_instances_go_silent_together() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut reg = Registry::new(100, vec![]).with_protection(
            0.5,
            Duration::from_secs(300),
            Duration::from_secs(60),
        );
        // Ten instances with 6 s leases, beating every 2 s until t=10 s;
        // then i1..i9 stop (their last beats spread over 1.8 s), i0 goes on.
        let names: Vec<String> = (0..10).map(|i| format!("i{i}")).collect();
        for round in 0..5u64 {
            for (i, name) in names.iter().enumerate() {
                reg.apply(hb(name, 6), A, at(round * 2000 + 200 * i as u64));
            }
        }
        for ms in (10_000..40_000).step_by(2000) {
            reg.apply(hb("i0", 6), A, at(ms));
            assert!(
                reg.expire(at(ms + 100)).is_empty(),
                "nothing leaves at {ms} ms"
            );
        }
        assert_eq!(reg.len(), 10);
        assert_eq!(reg.stale(), 9);
        assert_eq!(reg.take_protected().len(), 1, "entered once");
        // A down always removes at once.
        let mut down = hb("i9", 6);
        down.state = State::Down;
        assert_eq!(reg.apply(down, A, at(40_000)), Event::Deregistered(A));
        // Beating again ends an instance's protection; enough back ends
        // the service's, and the rest leave.
        for name in ["i1", "i2", "i3", "i4"] {
            reg.apply(hb(name, 6), A, at(40_500));
        }
        assert!(!reg.is_stale("web", "i1"));
        let left = reg.expire(at(40_600));
        assert_eq!(left.len(), 4, "{left:?}");
        assert!(left.iter().all(|e| e.was_stale));
        assert_eq!(reg.take_unprotected().len(), 1);
        assert_eq!(reg.len(), 5);
    }

    #[test]
    fn protection_ends_after_protect_max_and_spares_lone_crashes() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut reg = Registry::new(100, vec![]).with_protection(
            0.5,
            Duration::from_secs(300),
            Duration::from_secs(60),
        );
        for name in ["a", "b", "c"] {
            reg.apply(hb(name, 5), A, t0);
        }
        // All three stop: kept, stale, for at most 60 s.
        assert!(reg.expire(at(6)).is_empty());
        assert_eq!(reg.stale(), 3);
        assert!(reg.expire(at(65)).is_empty());
        assert_eq!(reg.expire(at(66)).len(), 3);
        // A service whose only instance stops is not protected.
        reg.apply(hb("solo", 5), A, at(100));
        assert_eq!(reg.expire(at(106)).len(), 1);
        // Nor is one instance of a healthy service.
        let mut other = Registry::new(100, vec![]).with_protection(
            0.5,
            Duration::from_secs(300),
            Duration::from_secs(60),
        );
        for name in ["a", "b", "c", "d"] {
            other.apply(hb(name, 5), A, t0);
        }
        for s in [2, 4] {
            for name in ["a", "b", "c"] {
                other.apply(hb(name, 5), A, at(s));
            }
        }
        assert_eq!(other.expire(at(6)).len(), 1);
        // Off: everything expires.
        let mut off = Registry::new(100, vec![]).with_protection(
            0.0,
            Duration::from_secs(300),
            Duration::from_secs(60),
        );
        for name in ["a", "b"] {
            off.apply(hb(name, 5), A, t0);
        }
        assert_eq!(off.expire(at(6)).len(), 2);
    }
}
