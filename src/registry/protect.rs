//! The mass-failure guard (`--protect-threshold`): when lease expiry would
//! take a service below a share of the instances it had recently, the
//! expiring instances stay, marked stale.
//!
//! Takes, from the registry, each service's live count as it changes and
//! each instance whose lease is running out; produces the decision to keep
//! it (stale) or let it go, the services that just entered or left
//! protection (for the log), and the stale instances to let go once enough
//! instances are back. It never touches the leases or the clock: the
//! registry owns both and passes time in.
//!
//! Why: heartbeats that stop for many instances of a service at once mean,
//! far more often than a mass crash, that the path between them and
//! beacon broke (a partition, a firewall change, a congested link). The
//! instances are probably fine; dropping them all would turn a monitoring
//! problem into an outage. Eureka's self-preservation and Nacos' protect
//! threshold exist for the same reason.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// Fewest instances of a service going silent together for the guard to
/// act: a service whose only instance stops is not protected.
pub const MIN_SILENT: usize = 2;

/// A moment, in the registry's ticks (nanoseconds after its epoch).
pub type Ticks = u64;

/// One service's recent peak and its stale instances.
#[derive(Debug, Default)]
struct ServiceGuard {
    /// The most live instances it had within the window, and when.
    peak: usize,
    peak_at: Ticks,
    /// Instances kept after their lease ran out.
    stale: HashSet<Box<str>>,
    /// Enough instances are back: the stale ones go at their next check.
    released: bool,
}

/// The guard's settings and per-service state.
#[derive(Debug)]
pub struct Protection {
    ratio: f64,
    window: Ticks,
    /// How long an instance may stay stale.
    pub max: Duration,
    services: HashMap<Arc<str>, ServiceGuard>,
    /// Services that entered protection since last asked: (service, live,
    /// peak).
    entered: Vec<(Arc<str>, usize, usize)>,
    /// Services whose protection ended since last asked.
    released: Vec<Arc<str>>,
}

impl Protection {
    /// A guard keeping services at `ratio` of their peak within `window`,
    /// each stale instance for at most `max`.
    pub fn new(ratio: f64, window: Duration, max: Duration) -> Protection {
        Protection {
            ratio,
            window: Ticks::try_from(window.as_nanos()).unwrap_or(Ticks::MAX),
            max,
            services: HashMap::new(),
            entered: Vec::new(),
            released: Vec::new(),
        }
    }

    /// Records that `service` has `live` instances at `now`.
    pub fn note(&mut self, service: &Arc<str>, live: usize, now: Ticks) {
        if live == 0 {
            self.services.remove(service);
            return;
        }
        let guard = self.services.entry(service.clone()).or_default();
        if live >= guard.peak || now.saturating_sub(guard.peak_at) > self.window {
            guard.peak = live;
            guard.peak_at = now;
        }
    }

    /// True when `id` of `service` is stale.
    pub fn is_stale(&self, service: &str, id: &str) -> bool {
        self.services
            .get(service)
            .is_some_and(|guard| guard.stale.contains(id))
    }

    /// Whether `id`, whose lease ran out, stays (as stale). `live` counts
    /// every instance of `service` (this one, the stale ones); `at_risk`
    /// counts its non-stale instances with more than half their lease gone
    /// (this one included): those are about to go too, since a sender
    /// beats every third of its lease or so. A service already under
    /// protection keeps every instance that runs out.
    pub fn keep(
        &mut self,
        service: &Arc<str>,
        id: &str,
        live: usize,
        at_risk: impl FnOnce() -> usize,
        now: Ticks,
    ) -> bool {
        self.note(service, live, now);
        let ratio = self.ratio;
        let Some(guard) = self.services.get_mut(service) else {
            return false;
        };
        if guard.released {
            return false;
        }
        if guard.stale.is_empty() {
            let silent = at_risk();
            // One silent sender is a crash far more often than a partition.
            if silent < MIN_SILENT {
                return false;
            }
            let healthy = live.saturating_sub(silent);
            #[allow(clippy::cast_precision_loss)]
            if (healthy as f64) >= ratio * guard.peak as f64 {
                return false;
            }
            self.entered.push((service.clone(), healthy, guard.peak));
        }
        guard.stale.insert(id.into());
        true
    }

    /// `id` of `service` beat again: no longer stale.
    pub fn fresh_again(&mut self, service: &str, id: &str) {
        if let Some(guard) = self.services.get_mut(service) {
            guard.stale.remove(id);
        }
    }

    /// `id` of `service` is gone (a `down`, an expiry, the end of its
    /// protection); `live` instances remain.
    pub fn gone(&mut self, service: &Arc<str>, id: &str, live: usize, now: Ticks) {
        if let Some(guard) = self.services.get_mut(service) {
            guard.stale.remove(id);
            if guard.stale.is_empty() {
                guard.released = false;
            }
        }
        self.note(service, live, now);
    }

    /// Whether `service` is under protection (holds stale instances that
    /// have not been let go yet).
    pub fn protecting(&self, service: &str) -> bool {
        self.services
            .get(service)
            .is_some_and(|guard| !guard.stale.is_empty() && !guard.released)
    }

    /// The stale instances of `service` to let go now, when `healthy` of
    /// its instances (neither stale nor about to run out) reach the
    /// threshold again; `live` counts them all.
    pub fn recovered(
        &mut self,
        service: &Arc<str>,
        live: usize,
        healthy: usize,
        now: Ticks,
    ) -> Vec<Box<str>> {
        self.note(service, live, now);
        let ratio = self.ratio;
        let Some(guard) = self.services.get_mut(service) else {
            return Vec::new();
        };
        #[allow(clippy::cast_precision_loss)]
        let enough = (healthy as f64) >= ratio * guard.peak as f64;
        if guard.stale.is_empty() || guard.released || !enough {
            return Vec::new();
        }
        guard.released = true;
        self.released.push(service.clone());
        guard.stale.iter().cloned().collect()
    }

    /// Services that entered protection since the last call: (service,
    /// live instances, peak).
    pub fn take_entered(&mut self) -> Vec<(Arc<str>, usize, usize)> {
        std::mem::take(&mut self.entered)
    }

    /// Services whose protection ended since the last call.
    pub fn take_released(&mut self) -> Vec<Arc<str>> {
        std::mem::take(&mut self.released)
    }

    /// Stale instances now.
    pub fn stale_count(&self) -> usize {
        self.services.values().map(|g| g.stale.len()).sum()
    }
}
