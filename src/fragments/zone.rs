//! The static zone: every good fragment's records by owner name, with the
//! rules about names the records imply, as one persistent snapshot.
//!
//! Takes the loader's changes (a file's new version, or its removal, with
//! the owner names whose records changed); produces [`StaticZone`]
//! snapshots that views share: the files (each holding its records once,
//! compactly, with its own index by owner name), which files hold records
//! at each owner-name hash, which names exist only as empty
//! non-terminals, which names fragments claim (a CNAME there, or a
//! delegation at or above), and cursors for static RRsets that rotate. All
//! maps are persistent, so a snapshot costs O(1), a changed name copies a
//! path of a tree, and a new version of a file replaces one entry (names
//! it holds unchanged keep pointing at its slot). Nodes are built when a
//! lookup asks ([`StaticZone::node`]). It never reads files.

use std::sync::Arc;

use hickory_proto::rr::{LowerName, Name, RecordType};

use super::compact::{NameKey, PassThroughBuild};
use super::{Fragment, Location, NameSet};
use crate::rrset::{Cursor, Member, Node, next_generation, rotates};

/// A file's place in the zone: stable across its versions, reused after
/// it is removed.
pub type Slot = u32;

/// The slots of the files holding names of one hash, in path order. One
/// file is the usual case; two live inline.
type Slots = smallvec::SmallVec<[Slot; 2]>;

/// A persistent map keyed by owner-name hashes (already hashed: passed
/// through).
type ByHash<V> = imbl::GenericHashMap<u64, V, PassThroughBuild, imbl::shared_ptr::DefaultSharedPtr>;

/// What fragments hold at one kind of name that heartbeats may not take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// "a CNAME" or "a delegation".
    pub what: &'static str,
    /// The fragment line that makes it.
    pub location: Location,
}

/// One version of the zone's static data.
#[derive(Debug, Clone, Default)]
pub struct StaticZone {
    /// Every good file's last version, by slot.
    files: imbl::HashMap<Slot, Arc<Fragment>>,
    /// Owner-name hash → the files holding names of that hash.
    names: ByHash<Slots>,
    /// Names with data: for counting.
    with_data: usize,
    /// For each name with data below it: how many names with data lie
    /// strictly below. A name whose count drops to 0 and that holds no
    /// data itself stops existing (an empty non-terminal only lives while
    /// something lies below it).
    below: imbl::HashMap<NameKey, u32>,
    /// Names heartbeats may not take, with why: CNAME owners and
    /// delegation points, with the fragment line that claims them.
    claims: imbl::HashMap<NameKey, Claim>,
    /// Owners of NS records below the apex: delegation points.
    delegations: imbl::HashSet<NameKey>,
    /// Rotation cursors of rotating RRsets with several members, kept
    /// across lookups (nodes are built per lookup).
    cursors: imbl::HashMap<NameKey, Arc<[(RecordType, Cursor)]>>,
    /// This version's number (see [`next_generation`]).
    generation: u64,
    /// True for the stand-in served while the first load runs: the zone
    /// cannot yet vouch that a name or type does not exist.
    loading: bool,
}

impl StaticZone {
    /// The stand-in served until the first load of the folder is done:
    /// empty, and [`StaticZone::is_loading`].
    pub fn loading() -> StaticZone {
        StaticZone {
            loading: true,
            generation: next_generation(),
            ..StaticZone::default()
        }
    }

    /// True while the first load is still running: a name or type missing
    /// here may be in a file not read yet.
    pub fn is_loading(&self) -> bool {
        self.loading
    }

    /// This version's number: a change gets a new one.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Number of names holding records.
    pub fn name_count(&self) -> usize {
        self.with_data
    }

    /// The records at `key`, in path order, then record order.
    fn records<'z>(&'z self, key: &'z NameKey) -> impl Iterator<Item = (&'z Fragment, u32)> + 'z {
        self.names
            .get(&key.hash())
            .into_iter()
            .flatten()
            .filter_map(|slot| self.files.get(slot))
            .flat_map(move |fragment| {
                let fragment = fragment.as_ref();
                fragment.indexes(key).map(move |i| (fragment, i))
            })
    }

    /// True when fragments hold records at `key`.
    fn has_data(&self, key: &NameKey) -> bool {
        self.records(key).next().is_some()
    }

    /// The node at `name` as fragments define it, built now (records in
    /// file order, one TTL per RRset, rotating RRsets with their lasting
    /// cursor); an empty node for an empty non-terminal; `None` if the
    /// fragments do not make the name exist.
    pub fn node(&self, name: &LowerName) -> Option<Node> {
        let key = NameKey::of(name);
        let mut sets: Vec<(RecordType, Vec<Member>)> = Vec::new();
        for (fragment, index) in self.records(&key) {
            let Some(record) = fragment.record(index).and_then(|r| r.record.record()) else {
                continue;
            };
            let rtype = record.record_type();
            let member = Member::plain(record);
            match sets.iter_mut().find(|(t, _)| *t == rtype) {
                Some((_, members)) => members.push(member),
                None => sets.push((rtype, vec![member])),
            }
        }
        if sets.is_empty() {
            return self.below.contains_key(&key).then(Node::default);
        }
        let cursors = self.cursors.get(&key);
        Some(Node::from_sets(sets, |rtype| {
            cursors?
                .iter()
                .find(|(t, _)| *t == rtype)
                .map(|(_, cursor)| cursor)
        }))
    }

    /// True when `name` exists in the static data (records, or names with
    /// records below it).
    pub fn contains(&self, name: &LowerName) -> bool {
        let key = NameKey::of(name);
        self.below.contains_key(&key) || self.has_data(&key)
    }

    /// True when fragments claim any name (CNAME or delegation).
    pub fn has_claims(&self) -> bool {
        !self.claims.is_empty()
    }

    /// True when some fragment delegates part of the zone.
    pub fn has_delegations(&self) -> bool {
        !self.delegations.is_empty()
    }

    /// True when `name` is a delegation point.
    pub fn is_delegation(&self, name: &LowerName) -> bool {
        self.delegations.contains(&NameKey::of(name))
    }

    /// Why heartbeats may not create `name`, if a fragment claims it (a
    /// CNAME there, or a delegation at or above it).
    pub fn claim(&self, name: &Name, zone: &Name) -> Option<String> {
        if self.claims.is_empty() {
            return None;
        }
        let mut probe = name.clone();
        while probe.num_labels() > zone.num_labels() {
            if let Some(claim) = self.claims.get(&NameKey::of(&LowerName::from(&probe))) {
                let exact = probe == *name;
                if exact || claim.what == "a delegation" {
                    return Some(format!("{probe} is {} at {}", claim.what, claim.location));
                }
            }
            probe = probe.base_name();
        }
        None
    }

    /// Every name that holds records, one key each (for the rare scans a
    /// new delegation needs).
    pub fn keys(&self) -> Vec<NameKey> {
        let mut keys: Vec<NameKey> = self
            .files
            .values()
            .flat_map(|fragment| fragment.records())
            .map(|r| NameKey::from_wire(r.record.owner()))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        keys
    }

    /// What other files than `path` hold at `key`: (type, location) of
    /// each record.
    pub fn others_at(&self, key: &NameKey, path: &std::path::Path) -> Vec<(RecordType, Location)> {
        self.records(key)
            .filter(|(fragment, _)| fragment.path.as_ref() != path)
            .filter_map(|(fragment, index)| {
                let record = fragment.record(index)?;
                Some((record.record.rtype(), fragment.location(record.line)))
            })
            .collect()
    }

    /// Puts `fragment` (a file's new version; `None`: the file is gone)
    /// in `slot`, and brings what the zone knows about the `changed` names
    /// up to date: which files hold them, whether they are claimed or
    /// delegated, their cursors, and the empty non-terminals above them.
    /// `apex` is the zone's.
    pub(super) fn replace_file(
        &mut self,
        apex: &NameKey,
        slot: Slot,
        fragment: Option<Arc<Fragment>>,
        changed: &NameSet,
    ) {
        let had_data: Vec<bool> = changed.iter().map(|key| self.has_data(key)).collect();
        let placed = fragment.clone();
        match fragment {
            Some(fragment) => self.files.insert(slot, fragment),
            None => self.files.remove(&slot),
        };
        for (key, had_data) in changed.iter().zip(had_data) {
            self.place(slot, placed.as_deref(), key);
            self.patch(apex, key, had_data);
        }
    }

    /// Lists (or unlists) `slot` among the files holding `key`'s hash.
    fn place(&mut self, slot: Slot, fragment: Option<&Fragment>, key: &NameKey) {
        let mut slots = self.names.get(&key.hash()).cloned().unwrap_or_default();
        slots.retain(|s| *s != slot);
        if let Some(fragment) = fragment.filter(|f| f.holds_hash(key.hash())) {
            let path = &fragment.path;
            let at = slots
                .iter()
                .position(|s| self.files.get(s).is_some_and(|f| f.path > *path))
                .unwrap_or(slots.len());
            slots.insert(at, slot);
        }
        if slots.is_empty() {
            self.names.remove(&key.hash());
        } else {
            self.names.insert(key.hash(), slots);
        }
    }

    /// Rebuilds the claim, delegation, cursors and counts of `key` from
    /// the files now holding it.
    fn patch(&mut self, apex: &NameKey, key: &NameKey, had_data: bool) {
        let mut claim = None;
        let mut delegated = false;
        let mut counts: Vec<(RecordType, usize)> = Vec::new();
        for (fragment, index) in self.records(key) {
            let Some(record) = fragment.record(index) else {
                continue;
            };
            let rtype = record.record.rtype();
            match rtype {
                RecordType::CNAME => {
                    claim.get_or_insert(Claim {
                        what: "a CNAME",
                        location: fragment.location(record.line),
                    });
                }
                RecordType::NS if key != apex => {
                    delegated = true;
                    claim = Some(Claim {
                        what: "a delegation",
                        location: fragment.location(record.line),
                    });
                }
                _ => {}
            }
            match counts.iter_mut().find(|(t, _)| *t == rtype) {
                Some((_, n)) => *n += 1,
                None => counts.push((rtype, 1)),
            }
        }
        match claim {
            Some(claim) => self.claims.insert(key.clone(), claim),
            None => self.claims.remove(key),
        };
        if delegated {
            self.delegations.insert(key.clone());
        } else {
            self.delegations.remove(key);
        }
        let rotating: Vec<(RecordType, Cursor)> = counts
            .iter()
            .filter(|(t, n)| rotates(*t) && *n > 1)
            .map(|(t, n)| (*t, Cursor::starting_below(*n)))
            .collect();
        if rotating.is_empty() {
            self.cursors.remove(key);
        } else {
            self.cursors.insert(key.clone(), rotating.into());
        }
        let has_data = !counts.is_empty();
        match (had_data, has_data) {
            (false, true) => {
                self.with_data += 1;
                self.count_below(apex, key, true);
            }
            (true, false) => {
                self.with_data -= 1;
                self.count_below(apex, key, false);
            }
            _ => {}
        }
    }

    /// Counts a name with data in (or out of) each ancestor below the
    /// apex, so empty non-terminals appear and vanish with what is below.
    fn count_below(&mut self, apex: &NameKey, key: &NameKey, added: bool) {
        let mut ancestor = key.parent();
        while let Some(name) = ancestor {
            if name.labels() <= apex.labels() {
                break;
            }
            let count = self.below.get(&name).copied().unwrap_or(0);
            if added {
                self.below.insert(name.clone(), count + 1);
            } else if count <= 1 {
                self.below.remove(&name);
            } else {
                self.below.insert(name.clone(), count - 1);
            }
            ancestor = name.parent();
        }
    }

    /// Marks the end of a round of patches: a new version number.
    pub(super) fn renumber(&mut self) {
        self.generation = next_generation();
    }

    /// Every name and record as sorted text, for comparing two versions.
    #[cfg(test)]
    pub(crate) fn dump(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .keys()
            .into_iter()
            .flat_map(|key| {
                self.records(&key)
                    .filter_map(|(f, i)| f.record(i)?.record.record())
                    .map(|r| r.to_string())
                    .collect::<Vec<_>>()
            })
            .collect();
        out.extend(
            self.below
                .keys()
                .filter(|k| !self.has_data(k))
                .filter_map(NameKey::name)
                .map(|n| format!("{n} (empty non-terminal)")),
        );
        out.extend(
            self.claims
                .keys()
                .filter_map(NameKey::name)
                .map(|n| format!("claim {n}")),
        );
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};
    use std::path::PathBuf;

    use hickory_proto::rr::Name;

    use crate::fragments::{Loader, NoLiveNames, RescanRequest, Signature};

    /// What a new loader makes of the folder, read from scratch.
    fn fresh_load(dir: &std::path::Path, zone: &Name) -> Vec<String> {
        let mut fresh = Loader::new(dir.to_path_buf(), zone.clone());
        fresh.rescan(&RescanRequest::everything(), &NoLiveNames);
        fresh.statics().dump()
    }

    /// Reads `whole` (and whatever else changed) at once.
    fn request<'a>(
        whole: &'a HashMap<PathBuf, Option<Signature>>,
        hold: &'a HashSet<PathBuf>,
    ) -> RescanRequest<'a> {
        RescanRequest {
            whole,
            force_all: false,
            hold,
            settle: std::time::Duration::ZERO,
        }
    }

    /// Fragment edits patched in by name give exactly what a fresh build gives.
    #[test]
    fn incremental_reloads_match_a_fresh_load() {
        let dir = tempfile::tempdir().expect("temp dir");
        let zone = Name::from_ascii("svc.internal.").expect("zone");
        let versions = [
            "$TTL 60\na A 10.0.0.1\nb.deep.down A 10.0.0.2\nc CNAME a\n",
            // change one, add a deep name, drop the CNAME, change $TTL
            "$TTL 30\na A 10.0.0.9\nb.deep.down A 10.0.0.2\nx.deep.down A 10.0.0.3\n",
            // remove the deep names: their empty non-terminals must go too
            "$TTL 30\na A 10.0.0.9\n",
            // same records, moved lines, blank owners
            "\n\n$TTL 30\na A 10.0.0.9\n  A 10.0.0.10\n$ORIGIN sub\nm MX 10 a\n",
        ];
        let path = dir.path().join("f.zone");
        let mut loader = Loader::new(dir.path().to_path_buf(), zone.clone());
        for (i, text) in versions.iter().enumerate() {
            std::fs::write(&path, text).expect("write");
            let whole = HashMap::from([(path.clone(), None)]);
            let rescan = loader.rescan(&request(&whole, &HashSet::new()), &NoLiveNames);
            assert!(
                rescan.problems.is_empty(),
                "version {i}: {:?}",
                rescan.problems
            );
            assert_eq!(
                loader.statics().dump(),
                fresh_load(dir.path(), &zone),
                "version {i}"
            );
        }
        std::fs::remove_file(&path).expect("remove");
        let rescan = loader.rescan(&request(&HashMap::new(), &HashSet::new()), &NoLiveNames);
        assert!(rescan.changed());
        let dump = loader.statics().dump();
        assert!(dump.is_empty(), "{dump:?}");
    }

    /// A broken version in between does not confuse what changed.
    #[test]
    fn a_failed_version_in_between_keeps_the_diff_right() {
        let dir = tempfile::tempdir().expect("temp dir");
        let zone = Name::from_ascii("svc.internal.").expect("zone");
        let path = dir.path().join("f.zone");
        let mut loader = Loader::new(dir.path().to_path_buf(), zone.clone());
        for text in [
            "a A 10.0.0.1\nb A 10.0.0.2\n",
            "a A 10.0.0.5\nb A 10.0.0.300\n",
            "a A 10.0.0.5\nb A 10.0.0.2\n",
        ] {
            std::fs::write(&path, text).expect("write");
            let whole = HashMap::from([(path.clone(), None)]);
            loader.rescan(&request(&whole, &HashSet::new()), &NoLiveNames);
        }
        let dump = loader.statics().dump();
        assert_eq!(dump, fresh_load(dir.path(), &zone));
        assert!(dump.iter().any(|l| l.contains("10.0.0.5")));
    }

    /// A file edited one name at a time keeps no old version alive: names
    /// it did not change follow it to its new version.
    #[test]
    fn old_versions_of_a_file_are_released() {
        let dir = tempfile::tempdir().expect("temp dir");
        let zone = Name::from_ascii("svc.internal.").expect("zone");
        let path = dir.path().join("f.zone");
        let mut loader = Loader::new(dir.path().to_path_buf(), zone.clone());
        let mut first = None;
        for i in 0..5 {
            let text: String = (0..20)
                .map(|n| format!("h{n} A 10.0.{}.{n}\n", u8::from(n == i)))
                .collect();
            std::fs::write(&path, text).expect("write");
            let whole = HashMap::from([(path.clone(), None)]);
            loader.rescan(&request(&whole, &HashSet::new()), &NoLiveNames);
            let now = loader.set().files().next().expect("loaded").clone();
            first.get_or_insert_with(|| std::sync::Arc::downgrade(&now));
        }
        assert!(
            first.expect("first").upgrade().is_none(),
            "the first version is still held"
        );
        assert_eq!(loader.statics().dump(), fresh_load(dir.path(), &zone));
    }
}
