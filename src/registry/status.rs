//! What is registered, for people and tools: the status API and page.
//!
//! Takes the registry at one moment; produces a [`Status`]: every service
//! and its instances with what heartbeats set, their state (live,
//! draining, stale), lease left, last heartbeat and owning key. Built on
//! the intake thread when asked (it owns the registry), read anywhere
//! (it is plain data, serialisable as JSON). It never changes the
//! registry.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::time::Instant;

use super::Registry;

/// Everything registered at one moment.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// The SOA serial of the zone at that moment.
    pub serial: u32,
    /// Unix time of the moment, in milliseconds.
    pub at_ms: u64,
    /// Live instances in all.
    pub instances: usize,
    /// Services, by name.
    pub services: Vec<ServiceStatus>,
    /// The latest registry events, newest first (at most
    /// [`crate::config::RECENT_EVENTS`]).
    pub recent_events: Vec<EventRecord>,
}

/// One registry event, as the audit trail logs it.
#[derive(Debug, Clone, Serialize)]
pub struct EventRecord {
    /// Unix time, in milliseconds.
    pub at_ms: u64,
    /// `registered`, `changed`, `drained`, `deregistered` or `expired`.
    pub event: &'static str,
    /// Service name.
    pub service: String,
    /// Instance id.
    pub instance: String,
    /// Why, as the log says it.
    pub reason: String,
}

/// One service.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceStatus {
    /// Its name.
    pub name: String,
    /// Its instances, by id.
    pub instances: Vec<InstanceStatus>,
}

/// One instance.
#[derive(Debug, Clone, Serialize)]
pub struct InstanceStatus {
    /// Instance id.
    pub id: String,
    /// Address served.
    pub address: String,
    /// Port served.
    pub port: u16,
    /// `tcp` or `udp`.
    pub proto: &'static str,
    /// RFC 2782 weight.
    pub weight: u16,
    /// RFC 2782 priority.
    pub priority: u16,
    /// Metadata pairs.
    pub metadata: BTreeMap<String, String>,
    /// Tags.
    pub tags: Vec<String>,
    /// `live`, `draining` or `stale` (kept by the protect threshold).
    pub state: &'static str,
    /// Seconds left on its lease.
    pub lease_remaining_s: f64,
    /// Unix time of its last heartbeat, in milliseconds (from the lease:
    /// a heartbeat renews it to the full TTL).
    pub last_heartbeat_ms: u64,
    /// The key that registered it, if signed.
    pub key: Option<String>,
}

impl Status {
    /// The services named `name`, if live.
    pub fn service(&self, name: &str) -> Option<&ServiceStatus> {
        self.services
            .iter()
            .find(|s| s.name.eq_ignore_ascii_case(name))
    }
}

impl Registry {
    /// Everything registered at `now` (with the zone at `serial`).
    pub fn status(&self, now: Instant, serial: u32) -> Status {
        let unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let (kept, _) = self.export(now);
        let mut services: BTreeMap<String, Vec<InstanceStatus>> = BTreeMap::new();
        for entry in kept {
            let instance = &entry.instance;
            let state = if self.is_stale(&instance.service, &instance.id) {
                "stale"
            } else if instance.draining {
                "draining"
            } else {
                "live"
            };
            let since_beat =
                Duration::from_secs(u64::from(instance.ttl)).saturating_sub(entry.remaining);
            services
                .entry(instance.service.to_string())
                .or_default()
                .push(InstanceStatus {
                    id: instance.id.to_string(),
                    address: instance.addr.to_string(),
                    port: instance.port,
                    proto: instance.proto.as_str(),
                    weight: instance.weight,
                    priority: instance.priority,
                    metadata: instance.meta.iter().cloned().collect(),
                    tags: instance.tags.iter().map(ToString::to_string).collect(),
                    state,
                    lease_remaining_s: (entry.remaining.as_millis() as f64) / 1000.0,
                    last_heartbeat_ms: unix_ms
                        .saturating_sub(u64::try_from(since_beat.as_millis()).unwrap_or(0)),
                    key: entry.signer.key.as_ref().map(ToString::to_string),
                });
        }
        let services: Vec<ServiceStatus> = services
            .into_iter()
            .map(|(name, mut instances)| {
                instances.sort_by(|a, b| a.id.cmp(&b.id));
                ServiceStatus { name, instances }
            })
            .collect();
        Status {
            serial,
            at_ms: unix_ms,
            instances: services.iter().map(|s| s.instances.len()).sum(),
            services,
            recent_events: Vec::new(),
        }
    }
}
