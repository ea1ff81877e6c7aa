//! Publishing views: the one place where the served snapshot is replaced.
//!
//! Takes new [`View`]s from the builders; gives readers the current one.
//! Readers ([`ViewHandle::load`]) never lock or wait: the handle is an
//! `ArcSwap`, so a load is an atomic reference-count increment, and a reader
//! keeps its snapshot alive for as long as it holds the `Arc`. Writers build
//! a whole new view outside any lock and swap it in.
//!
//! It also owns the SOA serial. Each view gets a serial above the last
//! one (RFC 1982 arithmetic): the current Unix time when that is higher,
//! else the last plus one, so under churn it may run ahead of the clock.
//! Serials never go back across restarts: a [`SerialStore`] keeps a
//! ceiling reserved ahead of use ([`SERIAL_RESERVE`] serials at a time,
//! so it is written rarely), and the first serial after a start lies above
//! the stored ceiling. A clean stop stores the exact last serial.

use std::collections::HashSet;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use tracing::{error, info};

use super::history::Recorder;
use super::{
    AddressIndex, LiveIndex, ServiceIndex, ServiceMap, ServiceNames, SharedApex, StaticZone, View,
    all_services,
};
use crate::config::{SERIAL_RESERVE, ServeConfig};
use crate::registry::Registry;

/// Where serial ceilings persist (the state directory).
pub trait SerialStore: Debug + Send {
    /// The ceiling stored by an earlier run, if any.
    fn ceiling(&mut self) -> Option<u32>;
    /// Stores `ceiling`: no serial above it may be served until the next
    /// call.
    ///
    /// # Errors
    /// Why it could not be stored.
    fn reserve(&mut self, ceiling: u32) -> std::io::Result<()>;
}

/// True when serial `a` is greater than `b` in RFC 1982 arithmetic.
pub fn serial_gt(a: u32, b: u32) -> bool {
    a != b && a.wrapping_sub(b) < 0x8000_0000
}

/// The SOA serial and its persisted ceiling.
#[derive(Debug)]
struct Serials {
    current: u32,
    /// The stored ceiling, when a store is in use.
    ceiling: Option<u32>,
    store: Option<Box<dyn SerialStore>>,
    /// Set while storing fails, so the failure is logged once.
    failing: bool,
}

impl Serials {
    /// The first serial: above the stored ceiling, and at least the clock.
    fn start(mut store: Option<Box<dyn SerialStore>>) -> Serials {
        let stored = store.as_mut().and_then(|store| store.ceiling());
        let now = unix_now();
        let current = match stored {
            Some(stored) if !serial_gt(now, stored) => {
                info!(
                    stored,
                    "continuing serials above the stored one (it ran ahead of the clock)"
                );
                stored.wrapping_add(1)
            }
            _ => now.max(1),
        };
        let mut serials = Serials {
            current,
            ceiling: None,
            store,
            failing: false,
        };
        serials.cover(current);
        serials
    }

    /// Makes sure the stored ceiling is at least `serial`.
    fn cover(&mut self, serial: u32) {
        let Some(store) = self.store.as_mut() else {
            return;
        };
        if self
            .ceiling
            .is_some_and(|ceiling| !serial_gt(serial, ceiling))
        {
            return;
        }
        let ceiling = serial.wrapping_add(SERIAL_RESERVE);
        match store.reserve(ceiling) {
            Ok(()) => {
                self.ceiling = Some(ceiling);
                self.failing = false;
            }
            Err(error) => {
                if !self.failing {
                    error!(%error, "cannot store the SOA serial; after a restart it may go back");
                }
                self.failing = true;
            }
        }
    }

    /// The next serial, covered by the stored ceiling.
    fn advance(&mut self) -> u32 {
        let now = unix_now();
        self.current = if serial_gt(now, self.current) {
            now
        } else {
            self.current.wrapping_add(1)
        };
        self.cover(self.current);
        self.current
    }

    /// Stores the exact current serial (at a clean stop), so the next start
    /// continues right above it.
    fn settle(&mut self) {
        let current = self.current;
        if let Some(store) = self.store.as_mut()
            && let Err(error) = store.reserve(current)
        {
            error!(%error, "cannot store the SOA serial at shutdown");
        }
    }
}

/// Seconds since the Unix epoch, as a serial.
fn unix_now() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u32::try_from(d.as_secs() % (1 << 32)).unwrap_or(0))
}

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
    serials: Serials,
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
    /// True when the next view is the first with the fragments loaded
    /// (it is logged: tests and operators wait for it).
    first_load_done: bool,
    /// Keeps the change history for transfers, when they are on.
    recorder: Option<Recorder>,
}

impl Publisher {
    /// Publishes the first view (from `registry` and `statics`) and
    /// returns the publisher; serials are not kept across restarts.
    pub fn new(config: Arc<ServeConfig>, registry: &Registry, statics: Arc<StaticZone>) -> Self {
        Self::with_store(config, registry, statics, None)
    }

    /// [`Publisher::new`], with serials kept in `store` so that they never
    /// go back across restarts.
    pub fn with_store(
        config: Arc<ServeConfig>,
        registry: &Registry,
        statics: Arc<StaticZone>,
        store: Option<Box<dyn SerialStore>>,
    ) -> Self {
        let serials = Serials::start(store);
        let serial = serials.current;
        let services = all_services(&config, registry, &statics);
        let index = LiveIndex::of(services.values());
        let addresses = AddressIndex::when_served(&config, services.values());
        let shared = SharedApex::build(&config, &statics);
        let handle = ViewHandle::new(View::from_services(
            &config,
            serial,
            services.clone(),
            index.clone(),
            &addresses,
            &shared,
            statics.clone(),
        ));
        Publisher {
            config,
            handle,
            serials,
            statics,
            services,
            index,
            addresses,
            shared,
            statics_changed: false,
            first_load_done: false,
            recorder: None,
        }
    }

    /// Hands every view published from now on to `recorder` (the change
    /// history for zone transfers).
    pub fn record_with(&mut self, recorder: Recorder) {
        self.recorder = Some(recorder);
    }

    /// Replaces the static layer used by the next [`Publisher::publish`].
    pub fn set_statics(&mut self, statics: Arc<StaticZone>) {
        self.first_load_done |= self.statics.is_loading() && !statics.is_loading();
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

    /// The serial of the last published view.
    pub fn serial(&self) -> u32 {
        self.serials.current
    }

    /// A handle for readers.
    pub fn handle(&self) -> ViewHandle {
        self.handle.clone()
    }

    /// Builds a view with a new serial and publishes it. Only the services
    /// in `changed` are rebuilt from `registry` (all of them after a change
    /// of the static layer); the others are shared with the last view.
    pub fn publish(&mut self, registry: &Registry, changed: &HashSet<String>) -> u32 {
        let serial = self.serials.advance();
        let statics_changed = self.statics_changed;
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
            serial,
            self.services.clone(),
            self.index.clone(),
            &self.addresses,
            &self.shared,
            self.statics.clone(),
        ));
        if let Some(recorder) = &self.recorder {
            recorder.offer(self.handle.load(), (!statics_changed).then_some(changed));
        }
        if std::mem::take(&mut self.first_load_done) {
            info!(serial, "serving the zone fragments");
        }
        serial
    }

    /// Stores the exact last serial; call when the server stops cleanly.
    pub fn settle(&mut self) {
        self.serials.settle();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store in memory that can be told to fail.
    #[derive(Debug, Default, Clone)]
    struct Memory(Arc<std::sync::Mutex<(Option<u32>, bool)>>);

    impl SerialStore for Memory {
        fn ceiling(&mut self) -> Option<u32> {
            self.0.lock().expect("lock").0
        }
        fn reserve(&mut self, ceiling: u32) -> std::io::Result<()> {
            let mut stored = self.0.lock().expect("lock");
            if stored.1 {
                return Err(std::io::Error::other("disk full"));
            }
            stored.0 = Some(ceiling);
            Ok(())
        }
    }

    #[test]
    fn serials_grow_and_never_go_back_across_restarts() {
        let memory = Memory::default();
        let mut serials = Serials::start(Some(Box::new(memory.clone())));
        let first = serials.current;
        // Churn: a thousand changes in well under a second run ahead of
        // the clock.
        let mut last = first;
        for _ in 0..3000 {
            let next = serials.advance();
            assert!(serial_gt(next, last));
            last = next;
        }
        assert!(serial_gt(last, unix_now()));
        let stored = memory.0.lock().expect("lock").0.expect("stored");
        assert!(
            !serial_gt(last, stored),
            "the ceiling covers what was served"
        );
        // A crash now: the next run starts above everything served.
        let again = Serials::start(Some(Box::new(memory.clone())));
        assert!(serial_gt(again.current, last));
        // A clean stop stores the exact serial: the next start is right above.
        let mut clean = again;
        clean.settle();
        let after = Serials::start(Some(Box::new(memory.clone())));
        assert_eq!(after.current, clean.current.wrapping_add(1));
    }

    #[test]
    fn serial_comparison_wraps() {
        assert!(serial_gt(1, u32::MAX));
        assert!(serial_gt(5, 4));
        assert!(!serial_gt(4, 5));
        assert!(!serial_gt(7, 7));
    }

    #[test]
    fn a_failing_store_does_not_stop_publishing() {
        let memory = Memory::default();
        memory.0.lock().expect("lock").1 = true;
        let mut serials = Serials::start(Some(Box::new(memory.clone())));
        let first = serials.current;
        assert!(serial_gt(serials.advance(), first));
        assert!(serials.failing);
    }
}
