//! The zone at serial N: the newest published view and the changes that
//! led to it, for zone transfers (AXFR, IXFR) and NOTIFY.
//!
//! Takes each published view, with which services changed since the one
//! before (or that the static layer did); produces [`History`]: the newest
//! view it has caught up with and a bounded queue of [`Delta`]s (records
//! removed and added, serial to serial), which [`History::since`] merges
//! into one difference on demand (RFC 1995's condensed form). A model is
//! routinator's payload history; Knot's journal does the same on disk.
//!
//! The differences are found by comparing two immutable views at the
//! names the changed services hold in either (a change of fragments
//! compares every name), in a thread of its own ([`Recorder`]): the
//! intake task only hands over the views, and when it publishes faster
//! than differences are found, consecutive changes are taken together
//! (their intermediate serials are then not in the history; a secondary
//! holding one gets a full transfer). Readers load one history snapshot
//! without locks.
//!
//! Bounds: at most `--ixfr-history` serials and [`MAX_HISTORY_RECORDS`]
//! records; the oldest changes go first. It never touches the disk and
//! never mutates a view.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Condvar, Mutex};

use arc_swap::ArcSwap;
use hickory_proto::rr::{LowerName, Record};
use hickory_proto::serialize::binary::BinEncodable;
use tracing::{debug, warn};

use super::View;
use crate::config::MAX_HISTORY_RECORDS;

/// What changed between two serials of the zone (all zones served
/// together; a transfer keeps the records of the zone it sends).
#[derive(Debug)]
pub struct Delta {
    /// The serial before.
    pub from: u32,
    /// The serial after.
    pub to: u32,
    /// Records that were there at `from` and are not at `to`.
    pub removed: Vec<Record>,
    /// Records that are there at `to` and were not at `from`.
    pub added: Vec<Record>,
}

impl Delta {
    fn records(&self) -> usize {
        self.removed.len() + self.added.len()
    }
}

/// How a secondary holding some serial catches up.
#[derive(Debug)]
pub enum Since {
    /// It holds the newest serial already.
    Current,
    /// One difference takes it to the newest serial.
    Changes(Delta),
    /// The history does not reach back to its serial: a full transfer.
    Unknown,
}

/// The newest view the history has caught up with, and the changes that
/// led to it, oldest first.
#[derive(Debug, Clone)]
pub struct History {
    /// The zone at the newest serial.
    pub newest: Arc<View>,
    deltas: imbl::Vector<Arc<Delta>>,
    records: usize,
}

impl History {
    /// A history that starts at `view`.
    pub fn starting_at(view: Arc<View>) -> Self {
        History {
            newest: view,
            deltas: imbl::Vector::new(),
            records: 0,
        }
    }

    /// The serials the history can take a secondary from, oldest first.
    pub fn serials(&self) -> impl Iterator<Item = u32> + '_ {
        self.deltas.iter().map(|delta| delta.from)
    }

    /// How a secondary holding `serial` reaches the newest serial: the
    /// changes since then merged into one difference (a record added and
    /// removed again in between appears in neither list).
    pub fn since(&self, serial: u32) -> Since {
        if serial == self.newest.serial {
            return Since::Current;
        }
        let Some(start) = self.deltas.iter().position(|delta| delta.from == serial) else {
            return Since::Unknown;
        };
        let mut removed: HashMap<Vec<u8>, Record> = HashMap::new();
        let mut added: HashMap<Vec<u8>, Record> = HashMap::new();
        for delta in self.deltas.iter().skip(start) {
            for record in &delta.removed {
                let key = wire(record);
                if added.remove(&key).is_none() {
                    removed.insert(key, record.clone());
                }
            }
            for record in &delta.added {
                let key = wire(record);
                if removed.remove(&key).is_none() {
                    added.insert(key, record.clone());
                }
            }
        }
        let mut removed: Vec<(Vec<u8>, Record)> = removed.into_iter().collect();
        let mut added: Vec<(Vec<u8>, Record)> = added.into_iter().collect();
        removed.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        added.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Since::Changes(Delta {
            from: serial,
            to: self.newest.serial,
            removed: removed.into_iter().map(|(_, r)| r).collect(),
            added: added.into_iter().map(|(_, r)| r).collect(),
        })
    }

    /// The history with `view` as the newest and `delta` leading to it,
    /// the oldest changes dropped to keep within `max_serials` and
    /// [`MAX_HISTORY_RECORDS`].
    fn advance(&self, view: Arc<View>, delta: Delta, max_serials: usize) -> History {
        let mut next = self.clone();
        next.newest = view;
        next.records += delta.records();
        next.deltas.push_back(Arc::new(delta));
        while next.deltas.len() > max_serials || next.records > MAX_HISTORY_RECORDS {
            match next.deltas.pop_front() {
                Some(oldest) => next.records -= oldest.records(),
                None => break,
            }
        }
        next
    }
}

/// A record's uncompressed wire form: how records are compared.
fn wire(record: &Record) -> Vec<u8> {
    record.to_bytes().unwrap_or_default()
}

/// The records in `old` and not in `new`, and those in `new` and not in
/// `old`, each list in wire order.
fn difference(old: Vec<Record>, new: Vec<Record>) -> (Vec<Record>, Vec<Record>) {
    let mut old: Vec<(Vec<u8>, Record)> = old.into_iter().map(|r| (wire(&r), r)).collect();
    let mut new: Vec<(Vec<u8>, Record)> = new.into_iter().map(|r| (wire(&r), r)).collect();
    old.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    new.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    old.dedup_by(|a, b| a.0 == b.0);
    new.dedup_by(|a, b| a.0 == b.0);
    let (mut removed, mut added) = (Vec::new(), Vec::new());
    let (mut old, mut new) = (old.into_iter().peekable(), new.into_iter().peekable());
    loop {
        match (old.peek(), new.peek()) {
            (Some(a), Some(b)) => match a.0.cmp(&b.0) {
                std::cmp::Ordering::Less => removed.extend(old.next().map(|(_, r)| r)),
                std::cmp::Ordering::Greater => added.extend(new.next().map(|(_, r)| r)),
                std::cmp::Ordering::Equal => {
                    old.next();
                    new.next();
                }
            },
            (Some(_), None) => removed.extend(old.next().map(|(_, r)| r)),
            (None, Some(_)) => added.extend(new.next().map(|(_, r)| r)),
            (None, None) => break,
        }
    }
    (removed, added)
}

/// What changed from `old` to `new`, given which services changed
/// (`None`: the static layer did, so any name may have).
pub fn delta(old: &View, new: &View, changed: Option<&HashSet<String>>) -> Delta {
    let mut names: Vec<LowerName> = match changed {
        None => {
            let mut all = old.all_names();
            all.extend(new.all_names());
            all
        }
        Some(changed) => {
            let mut touched = old.names_touched_by(changed.iter().map(String::as_str));
            touched.extend(new.names_touched_by(changed.iter().map(String::as_str)));
            touched
        }
    };
    names.sort_unstable();
    names.dedup();
    let (mut removed, mut added) = (Vec::new(), Vec::new());
    for name in &names {
        let (gone, came) = difference(old.records_at(name), new.records_at(name));
        removed.extend(gone);
        added.extend(came);
    }
    Delta {
        from: old.serial,
        to: new.serial,
        removed,
        added,
    }
}

/// Lock-free access to the current [`History`], for transfers and NOTIFY.
#[derive(Debug, Clone)]
pub struct HistoryHandle(Arc<ArcSwap<History>>);

impl HistoryHandle {
    /// A handle whose history starts at `view`.
    pub fn starting_at(view: Arc<View>) -> Self {
        HistoryHandle(Arc::new(ArcSwap::from_pointee(History::starting_at(view))))
    }

    /// The current history.
    pub fn load(&self) -> Arc<History> {
        self.0.load_full()
    }
}

/// Views published but not yet compared: the first one's predecessor
/// and the latest, with what changed in between.
#[derive(Debug)]
struct Pending {
    latest: Arc<View>,
    /// `None` once the static layer changed.
    changed: Option<HashSet<String>>,
}

/// Hands published views to the history thread. Dropping it ends the
/// thread.
#[derive(Debug)]
pub struct Recorder {
    shared: Arc<(Mutex<Mailbox>, Condvar)>,
}

#[derive(Debug, Default)]
struct Mailbox {
    pending: Option<Pending>,
    closed: bool,
}

impl Recorder {
    /// Starts the history thread at `view`, keeping `max_serials` changes,
    /// and calls `on_change` with each new history (NOTIFY listens there).
    ///
    /// # Errors
    /// When the thread cannot be started.
    pub fn start(
        view: Arc<View>,
        max_serials: usize,
        on_change: impl Fn(&History) + Send + 'static,
    ) -> std::io::Result<(Recorder, HistoryHandle)> {
        let handle = HistoryHandle::starting_at(view);
        let shared = Arc::new((Mutex::new(Mailbox::default()), Condvar::new()));
        let thread_shared = shared.clone();
        let thread_handle = handle.clone();
        std::thread::Builder::new()
            .name("history".into())
            .spawn(move || record(&thread_shared, &thread_handle, max_serials, &on_change))?;
        Ok((Recorder { shared }, handle))
    }

    /// Offers a newly published `view`; `changed` names the services that
    /// changed since the view before (`None`: the static layer changed).
    pub fn offer(&self, view: Arc<View>, changed: Option<&HashSet<String>>) {
        let (lock, wake) = &*self.shared;
        let Ok(mut mailbox) = lock.lock() else {
            return;
        };
        match &mut mailbox.pending {
            Some(pending) => {
                pending.latest = view;
                match (&mut pending.changed, changed) {
                    (Some(all), Some(more)) => all.extend(more.iter().cloned()),
                    (slot, _) => *slot = None,
                }
            }
            None => {
                mailbox.pending = Some(Pending {
                    latest: view,
                    changed: changed.cloned(),
                });
            }
        }
        wake.notify_one();
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        let (lock, wake) = &*self.shared;
        if let Ok(mut mailbox) = lock.lock() {
            mailbox.closed = true;
        }
        wake.notify_one();
    }
}

/// The history thread: compares each offered view with the newest one
/// recorded.
fn record(
    shared: &(Mutex<Mailbox>, Condvar),
    handle: &HistoryHandle,
    max_serials: usize,
    on_change: &dyn Fn(&History),
) {
    let (lock, wake) = shared;
    loop {
        let pending = {
            let Ok(mut mailbox) = lock.lock() else {
                return;
            };
            loop {
                if let Some(pending) = mailbox.pending.take() {
                    break pending;
                }
                if mailbox.closed {
                    return;
                }
                mailbox = match wake.wait(mailbox) {
                    Ok(mailbox) => mailbox,
                    Err(_) => return,
                };
            }
        };
        let history = handle.load();
        let started = std::time::Instant::now();
        let delta = delta(&history.newest, &pending.latest, pending.changed.as_ref());
        let took = started.elapsed();
        if took > std::time::Duration::from_millis(500) {
            warn!(
                ?took,
                records = delta.records(),
                "finding a zone change took long"
            );
        }
        debug!(
            from = delta.from,
            to = delta.to,
            removed = delta.removed.len(),
            added = delta.added.len(),
            "zone change recorded"
        );
        let next = history.advance(pending.latest, delta, max_serials);
        let next = Arc::new(next);
        handle.0.store(next.clone());
        on_change(&next);
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use hickory_proto::rr::Name;

    use super::*;
    use crate::config::ServeConfig;
    use crate::registry::Registry;
    use crate::registry::announcement::{Announcement, State};
    use crate::view::StaticZone;
    use crate::view::publish::Publisher;

    /// Every record of every zone `view` serves, in wire form, sorted.
    fn everything(view: &View) -> Vec<Vec<u8>> {
        let mut all: Vec<Vec<u8>> = view
            .zones()
            .flat_map(|zone| view.zone_records(zone).unwrap_or_default())
            .map(|record| wire(&record))
            .collect();
        all.sort();
        all
    }

    /// `records` with `delta` applied.
    fn apply(records: &[Vec<u8>], delta: &Delta) -> Vec<Vec<u8>> {
        let removed: HashSet<Vec<u8>> = delta.removed.iter().map(wire).collect();
        let mut out: Vec<Vec<u8>> = records
            .iter()
            .filter(|r| !removed.contains(*r))
            .cloned()
            .collect();
        out.extend(delta.added.iter().map(wire));
        out.sort();
        out
    }

    #[test]
    fn changes_found_per_service_are_every_change_and_condense() {
        let mut config = ServeConfig::new(Name::from_ascii("svc.internal.").expect("zone"));
        config.reverse_zones = vec![Name::from_ascii("10.in-addr.arpa.").expect("zone")];
        let config = Arc::new(config);
        let mut registry = Registry::new(1000, Vec::new());
        let mut publisher = Publisher::new(config, &registry, Arc::new(StaticZone::default()));
        let mut history = History::starting_at(publisher.handle().load());
        let mut zones = vec![(history.newest.serial, everything(&history.newest))];
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..300 {
            let service = format!("s{}", rng.u8(0..4));
            let mut hb = Announcement::new(&service, &format!("i{}", rng.u8(0..6)), rng.u16(1..4));
            hb.addr = Some(IpAddr::from([10, 0, 0, rng.u8(1..5)]));
            hb.weight = rng.u16(1..3);
            hb.ttl = [15, 3][rng.usize(0..2)];
            hb.state = [State::Up, State::Up, State::Drain, State::Down][rng.usize(0..4)];
            registry.apply(
                hb,
                IpAddr::from([127, 0, 0, 1]),
                tokio::time::Instant::now(),
            );
            let old = publisher.handle().load();
            publisher.publish(&registry, &HashSet::from([service.clone()]));
            let new = publisher.handle().load();
            let targeted = delta(&old, &new, Some(&HashSet::from([service])));
            let full = delta(&old, &new, None);
            let key = |d: &Delta| {
                let mut r: Vec<Vec<u8>> = d.removed.iter().map(wire).collect();
                let mut a: Vec<Vec<u8>> = d.added.iter().map(wire).collect();
                r.sort();
                a.sort();
                (r, a)
            };
            assert_eq!(
                key(&targeted),
                key(&full),
                "per-service comparison misses a change"
            );
            assert_eq!(apply(&everything(&old), &targeted), everything(&new));
            history = history.advance(new.clone(), targeted, 50);
            zones.push((new.serial, everything(&new)));
        }
        // From every serial the history reaches, the condensed difference
        // takes that zone to the newest; older ones get a full transfer.
        let newest = everything(&history.newest);
        let reachable: HashSet<u32> = history.serials().collect();
        assert_eq!(reachable.len(), 50);
        for (serial, records) in &zones {
            match history.since(*serial) {
                Since::Current => assert_eq!(*serial, history.newest.serial),
                Since::Changes(delta) => {
                    assert!(reachable.contains(serial));
                    assert_eq!(apply(records, &delta), newest, "from serial {serial}");
                }
                Since::Unknown => assert!(!reachable.contains(serial)),
            }
        }
    }
}
