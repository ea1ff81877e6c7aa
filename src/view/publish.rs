//! Publishing views: the one place where the served snapshot is replaced.
//!
//! Takes new [`View`]s from the builders; gives readers the current one.
//! Readers ([`ViewHandle::load`]) never lock or wait: the handle is an
//! `ArcSwap`, so a load is an atomic reference-count increment, and a reader
//! keeps its snapshot alive for as long as it holds the `Arc`. Writers build
//! a whole new view outside any lock and swap it in.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;

use std::collections::HashSet;

use super::{
    AddressIndex, LiveIndex, ServiceIndex, ServiceMap, ServiceNames, SharedApex, StaticZone, View,
    all_services,
};
use crate::config::ServeConfig;
use crate::registry::Registry;

/// Shared, lock-free access to the current view.
#[derive(Debug, Clone)]
pub struct ViewHandle(Arc<ArcSwap<View>>);

impl ViewHandle {
    /// A handle serving `view`.
    pub fn new(view: View) -> Self {
        ViewHandle(Arc::new(ArcSwap::from_pointee(view)))
    }

    /// The current snapshot. Hold it for the whole of one query.
    pub fn load(&self) -> Arc<View> {
        self.0.load_full()
    }

    fn store(&self, view: View) {
        self.0.store(Arc::new(view));
    }
}

/// Builds and publishes views, and owns the SOA serial.
#[derive(Debug)]
pub struct Publisher {
    config: Arc<ServeConfig>,
    handle: ViewHandle,
    serial: u32,
    statics: Arc<StaticZone>,
    /// The names of every live service, as the last view has them.
    services: ServiceMap,
    /// Service types and shared empty non-terminals, updated per service.
    index: LiveIndex,
    /// Instances by address, for reverse zones (empty when none is served).
    addresses: AddressIndex,
    /// The apex names views share, rebuilt when fragments change.
    shared: SharedApex,
    /// True when the static layer changed since the last view: every
    /// service's names are rebuilt (static data merges into them).
    statics_changed: bool,
}

/// A serial that only grows, starting from the wall clock (seconds since the
/// epoch) so that it also grows across restarts, as secondaries expect.
fn next_serial(previous: Option<u32>) -> u32 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX));
    match previous {
        None => now.max(1),
        // More than one change a second runs ahead of the clock; RFC 1982
        // arithmetic would let it wrap, but u32 seconds last until 2106.
        Some(prev) => now.max(prev.wrapping_add(1)),
    }
}

impl Publisher {
    /// Publishes the first view (from `registry` and `statics`) and
    /// returns the publisher.
    pub fn new(config: Arc<ServeConfig>, registry: &Registry, statics: Arc<StaticZone>) -> Self {
        let serial = next_serial(None);
        let services = all_services(&config, registry, &statics);
        let index = LiveIndex::of(services.values());
        let addresses = AddressIndex::when_served(&config, services.values());
        let shared = SharedApex::build(&config, &statics);
        let handle = ViewHandle::new(View::from_services(
            &config,
            serial,
            services.clone(),
            index.clone(),
            addresses.clone(),
            &shared,
            statics.clone(),
        ));
        Publisher {
            config,
            handle,
            serial,
            statics,
            services,
            index,
            addresses,
            shared,
            statics_changed: false,
        }
    }

    /// Replaces the static layer used by the next [`Publisher::publish`].
    pub fn set_statics(&mut self, statics: Arc<StaticZone>) {
        self.statics = statics;
        self.statics_changed = true;
    }

    /// The static layer in use.
    pub fn statics(&self) -> &StaticZone {
        &self.statics
    }

    /// The served zone.
    pub fn zone(&self) -> &hickory_proto::rr::Name {
        &self.config.zone
    }

    /// A handle for readers.
    pub fn handle(&self) -> ViewHandle {
        self.handle.clone()
    }

    /// Builds a view with a new serial and publishes it. Only the services
    /// in `changed` are rebuilt from `registry` (all of them after a change
    /// of the static layer); the others are shared with the last view.
    pub fn publish(&mut self, registry: &Registry, changed: &HashSet<String>) -> u32 {
        self.serial = next_serial(Some(self.serial));
        if std::mem::take(&mut self.statics_changed) {
            self.services = all_services(&self.config, registry, &self.statics);
            self.index = LiveIndex::of(self.services.values());
            self.addresses = AddressIndex::when_served(&self.config, self.services.values());
            self.shared = SharedApex::build(&self.config, &self.statics);
        } else {
            for service in changed {
                let new = registry.service(service).map(|instances| {
                    Arc::new(ServiceNames::build(
                        &self.config,
                        service,
                        instances,
                        &self.statics,
                    ))
                });
                let old = match &new {
                    Some(names) => self.services.insert(service.clone(), names.clone()),
                    None => self.services.remove(service),
                };
                self.index.replace(old.as_deref(), new.as_deref());
                if !self.config.reverse_zones.is_empty() {
                    self.addresses.replace(old.as_deref(), new.as_deref());
                }
            }
        }
        self.handle.store(View::from_services(
            &self.config,
            self.serial,
            self.services.clone(),
            self.index.clone(),
            self.addresses.clone(),
            &self.shared,
            self.statics.clone(),
        ));
        self.serial
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_always_grows() {
        let first = next_serial(None);
        let second = next_serial(Some(first));
        assert!(second > first);
        assert!(next_serial(Some(second)) > second);
    }
}
