//! Zone fragments: the `*.zone` files of the zones folder, loaded and checked.
//!
//! Takes the zones folder, the served zone and a way to ask which names live
//! instances hold; produces the [`StaticZone`] (every good file's records by
//! owner name, a persistent snapshot views share) and the [`Problem`]s of
//! the files that failed. A file that fails to read, parse or validate
//! keeps its last good version (or none, if it never loaded). Only files
//! whose signature (size, times, inode) changed are read again, and within
//! a file only changed entries are parsed again. Records are kept once, in
//! the file they came from, compactly ([`compact`]). [`Loader`] is shared by
//! `beacon serve` (through [`watch`]) and `beacon check`. It never touches
//! the view or the answering path.

pub mod compact;
pub mod parse;
pub mod watch;
pub mod zone;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hickory_proto::rr::{LowerName, Name, RecordType};

use crate::config::MAX_FRAGMENT_BYTES;
use compact::{NameKey, PassThroughBuild};
use parse::LineRecord;
pub use zone::StaticZone;

/// Where a record came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file, as shown to people (relative to the zones folder's parent).
    pub file: Arc<str>,
    /// 1-based line.
    pub line: u32,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// One thing wrong with one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file, as shown to people.
    pub file: Arc<str>,
    /// The line, when the problem has one.
    pub line: Option<u32>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.file, line, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// What identifies one version of a file without reading it: size,
/// modification and change times, inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signature {
    len: u64,
    mtime_ns: i128,
    ctime_ns: i128,
    inode: u64,
}

impl Signature {
    /// True when the file was last written less than `settle` before
    /// `now` (a time in the future counts as long ago: clocks differ on
    /// network file systems, and such a file must not wait forever).
    fn written_within(&self, settle: Duration, now: SystemTime) -> bool {
        let Ok(now) = now.duration_since(SystemTime::UNIX_EPOCH) else {
            return false;
        };
        let age_ns = i128::try_from(now.as_nanos()).unwrap_or(i128::MAX) - self.mtime_ns;
        (0..i128::try_from(settle.as_nanos()).unwrap_or(0)).contains(&age_ns)
    }

    /// The signature of the file at `path` (symlinks followed), if any.
    pub fn of_path(path: &Path) -> Option<Self> {
        fs::metadata(path).ok().map(|meta| Signature::of(&meta))
    }

    fn of(meta: &fs::Metadata) -> Self {
        Signature {
            len: meta.len(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            ctime_ns: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
            inode: meta.ino(),
        }
    }
}

/// A set of owner names (keyed by the hash each key carries).
pub type NameSet = HashSet<NameKey, PassThroughBuild>;

/// The last good version of one file.
#[derive(Debug)]
pub struct Fragment {
    /// The file's path.
    pub path: Arc<Path>,
    /// The file, as shown to people.
    pub file: Arc<str>,
    /// Its records, with lines.
    records: Vec<LineRecord>,
    /// Owner-name hash → index of the first record with that hash; `next`
    /// chains the others (names of one hash share a chain, and readers
    /// compare owners), so there is no allocation per name.
    by_name: HashMap<u64, u32, PassThroughBuild>,
    /// For each record, the index of the next record of the same hash, or
    /// `u32::MAX`.
    next: Vec<u32>,
    signature: Signature,
}

impl Fragment {
    fn new(path: &Path, file: Arc<str>, records: Vec<LineRecord>, signature: Signature) -> Self {
        let mut by_name: HashMap<u64, u32, PassThroughBuild> = HashMap::default();
        by_name.reserve(records.len());
        let mut next = vec![u32::MAX; records.len()];
        // Backwards, so each chain runs in file order.
        for (i, r) in records.iter().enumerate().rev() {
            let i = u32::try_from(i).unwrap_or(u32::MAX);
            let hash = NameKey::from_wire(r.record.owner()).hash();
            if let Some(head) = by_name.insert(hash, i) {
                next[i as usize] = head;
            }
        }
        Fragment {
            path: Arc::from(path),
            file,
            records,
            by_name,
            next,
            signature,
        }
    }

    /// The record at `index`.
    pub fn record(&self, index: u32) -> Option<&LineRecord> {
        self.records.get(index as usize)
    }

    /// The records, in file order.
    pub fn records(&self) -> &[LineRecord] {
        &self.records
    }

    /// True when some record's owner has hash `hash`.
    fn holds_hash(&self, hash: u64) -> bool {
        self.by_name.contains_key(&hash)
    }

    /// Indexes from `first` along its hash chain (owners may differ).
    fn chain_from(&self, first: u32) -> impl Iterator<Item = u32> + '_ {
        std::iter::successors(Some(first), |i| {
            self.next
                .get(*i as usize)
                .copied()
                .filter(|n| *n != u32::MAX)
        })
    }

    /// Indexes of the records at `key`, in file order.
    fn indexes<'a>(&'a self, key: &'a NameKey) -> impl Iterator<Item = u32> + 'a {
        self.by_name
            .get(&key.hash())
            .into_iter()
            .flat_map(move |first| self.chain_from(*first))
            .filter(move |i| self.records[*i as usize].record.has_owner(key))
    }

    /// The index of the first record at `key`.
    fn first_at(&self, key: &NameKey) -> Option<u32> {
        self.indexes(key).next()
    }

    /// The records at `key`.
    fn at<'a>(&'a self, key: &'a NameKey) -> impl Iterator<Item = &'a LineRecord> + 'a {
        self.indexes(key).map(|i| &self.records[i as usize])
    }

    /// One key for each owner name, in file order of first appearance.
    fn names(&self) -> impl Iterator<Item = NameKey> + '_ {
        self.records.iter().enumerate().filter_map(|(i, r)| {
            let key = NameKey::from_wire(r.record.owner());
            (self.first_at(&key) == u32::try_from(i).ok()).then_some(key)
        })
    }

    fn location(&self, line: u32) -> Location {
        Location {
            file: self.file.clone(),
            line,
        }
    }

    /// Names whose records differ between `old` and `new` (either may be
    /// absent).
    fn changed_names(old: Option<&Fragment>, new: Option<&Fragment>) -> NameSet {
        let mut changed = NameSet::default();
        let same = |a: &Fragment, b: &Fragment, key: &NameKey| {
            let x: Vec<_> = a.at(key).map(|r| &r.record).collect();
            let mut y = b.at(key).map(|r| &r.record);
            // Usually one record, in the same order; otherwise compare as sets.
            if x.len() == 1 {
                return y.next() == Some(x[0]) && y.next().is_none();
            }
            let y: Vec<_> = y.collect();
            x.len() == y.len() && x.iter().all(|r| y.contains(r)) && y.iter().all(|r| x.contains(r))
        };
        match (old, new) {
            (Some(old), Some(new)) => {
                for key in new.names() {
                    if !same(old, new, &key) {
                        changed.insert(key);
                    }
                }
                for key in old.names() {
                    if new.first_at(&key).is_none() {
                        changed.insert(key);
                    }
                }
            }
            (Some(only), None) | (None, Some(only)) => changed.extend(only.names()),
            (None, None) => {}
        }
        changed
    }
}

/// Every file's last good version, by path.
#[derive(Debug, Default, Clone)]
pub struct FragmentSet {
    files: BTreeMap<PathBuf, Arc<Fragment>>,
}

impl FragmentSet {
    /// Number of files loaded.
    pub fn file_count(&self) -> usize {
        self.files.len()
    }

    /// Number of records loaded.
    pub fn record_count(&self) -> usize {
        self.files.values().map(|f| f.records.len()).sum()
    }

    /// The files, by path.
    pub fn files(&self) -> impl Iterator<Item = &Arc<Fragment>> {
        self.files.values()
    }
}

/// Answers "does live data (registered by heartbeats) sit here?" for
/// validation: `at(name)` for the name itself, `under(name)` for the name
/// or anything below it. Each returns a description for the message.
pub trait LiveNames {
    /// Live data exactly at `name`.
    fn at(&self, name: &LowerName) -> Option<String>;
    /// Live data at or below `name`.
    fn under(&self, name: &LowerName) -> Option<String>;
}

/// No live data (for `beacon check` and the first load).
pub struct NoLiveNames;

impl LiveNames for NoLiveNames {
    fn at(&self, _: &LowerName) -> Option<String> {
        None
    }
    fn under(&self, _: &LowerName) -> Option<String> {
        None
    }
}

/// What a rescan should look at.
#[derive(Debug, Clone, Copy)]
pub struct RescanRequest<'a> {
    /// Files known to be whole (their writer closed them, or they were
    /// renamed into place), with their signature at that moment if known:
    /// read them even if they look unchanged, unless they changed since
    /// (a writer is back at them, and its events will follow).
    pub whole: &'a HashMap<PathBuf, Option<Signature>>,
    /// Read every file (SIGHUP, the first load, `beacon check`).
    pub force_all: bool,
    /// Files a writer still has open: their last good version stays.
    pub hold: &'a HashSet<PathBuf>,
    /// A changed file not in `whole` whose last write is more recent than
    /// this may still be being written: it is left for later
    /// ([`Rescan::deferred`]). Zero reads every file at once.
    pub settle: Duration,
}

impl RescanRequest<'_> {
    /// Every file, now, whatever its age: the first load and `beacon check`.
    pub fn everything() -> RescanRequest<'static> {
        static NO_FILES: std::sync::LazyLock<HashSet<PathBuf>> =
            std::sync::LazyLock::new(HashSet::new);
        static NO_SIGNATURES: std::sync::LazyLock<HashMap<PathBuf, Option<Signature>>> =
            std::sync::LazyLock::new(HashMap::new);
        RescanRequest {
            whole: &NO_SIGNATURES,
            force_all: true,
            hold: &NO_FILES,
            settle: Duration::ZERO,
        }
    }
}

/// What a rescan did.
#[derive(Debug, Default)]
pub struct Rescan {
    /// Files loaded or reloaded, with their record counts.
    pub loaded: Vec<(Arc<str>, usize)>,
    /// Files removed from the set because they are gone.
    pub removed: Vec<Arc<str>>,
    /// Problems of files read this time (each change is reported once).
    pub problems: Vec<Problem>,
    /// How many owner names' records changed.
    pub changed: usize,
    /// Changed files left alone because they were written too recently
    /// (see [`RescanRequest::settle`]) or changed while being read: look
    /// again later.
    pub deferred: Vec<PathBuf>,
}

/// Loads and reloads the fragments of one folder.
#[derive(Debug)]
pub struct Loader {
    dir: PathBuf,
    zone: Name,
    set: FragmentSet,
    /// What was last reported for each file that failed, so the same broken
    /// version is not parsed and reported again.
    failed: BTreeMap<PathBuf, Failure>,
    /// Every good file's records by owner name: what views serve.
    statics: StaticZone,
    /// The apex's key.
    apex: NameKey,
    /// Each loaded file's slot in the static zone.
    slots: HashMap<PathBuf, zone::Slot>,
    /// Slots of removed files, for reuse.
    free_slots: Vec<zone::Slot>,
    /// Per file, the parsed entries of its last read, so an edit re-parses
    /// only the entries that changed.
    caches: BTreeMap<PathBuf, parse::EntryCache>,
    /// Most records all files may hold together (`--max-static-records`).
    max_records: usize,
}

/// The last failure reported for one file.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Failure {
    /// This version of the file did not load.
    Version(Signature),
    /// The path could not be used at all, for this reason.
    Unusable(String),
}

/// Why one file did not load.
enum LoadError {
    /// It is broken: these problems.
    Problems(Vec<Problem>),
    /// It changed while being read: try again later.
    Changing,
}

/// What the folder scan found for one path.
enum Found {
    File(Signature),
    Unusable(String),
}

impl Rescan {
    /// True when served data changed (some owner name's records differ).
    pub fn changed(&self) -> bool {
        self.changed > 0
    }
}

impl Loader {
    /// A loader for `dir` serving `zone`; nothing is loaded until [`Loader::rescan`].
    pub fn new(dir: PathBuf, zone: Name) -> Self {
        let apex = NameKey::of(&LowerName::from(&zone));
        Loader {
            dir,
            zone,
            set: FragmentSet::default(),
            failed: BTreeMap::new(),
            statics: StaticZone::default(),
            apex,
            slots: HashMap::new(),
            free_slots: Vec::new(),
            caches: BTreeMap::new(),
            max_records: usize::MAX,
        }
    }

    /// Refuses any file that would bring the set past `max` records in all.
    #[must_use]
    pub fn with_max_records(mut self, max: usize) -> Self {
        self.max_records = max;
        self
    }

    /// The folder watched.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The current set of last good versions.
    pub fn set(&self) -> &FragmentSet {
        &self.set
    }

    /// The static zone the good versions make (a snapshot is a clone: O(1)).
    pub fn statics(&self) -> &StaticZone {
        &self.statics
    }

    /// Puts the new version of the file at `path` (`None`: it is gone)
    /// in the set and the static zone, where the records at `changed` differ.
    fn replace(&mut self, path: &Path, fragment: Option<Fragment>, changed: &NameSet) {
        let slot = match self.slots.get(path) {
            Some(slot) => *slot,
            None => {
                let slot = self
                    .free_slots
                    .pop()
                    .unwrap_or_else(|| u32::try_from(self.slots.len()).unwrap_or(u32::MAX));
                self.slots.insert(path.to_path_buf(), slot);
                slot
            }
        };
        let fragment = fragment.map(Arc::new);
        match &fragment {
            Some(fragment) => {
                self.set.files.insert(path.to_path_buf(), fragment.clone());
            }
            None => {
                self.set.files.remove(path);
                self.slots.remove(path);
                self.free_slots.push(slot);
            }
        }
        self.statics
            .replace_file(&self.apex, slot, fragment, changed);
    }

    fn display(&self, path: &Path) -> Arc<str> {
        let base = self.dir.parent().unwrap_or(Path::new(""));
        let shown = path.strip_prefix(base).unwrap_or(path);
        Arc::from(shown.to_string_lossy().as_ref())
    }

    /// Every `*.zone` file under the folder (subfolders too; hidden files,
    /// such as editors' `.#name.zone` locks, and symlinked folders skipped).
    fn scan(&self) -> BTreeMap<PathBuf, Found> {
        let mut found = BTreeMap::new();
        let mut pending = vec![self.dir.clone()];
        while let Some(dir) = pending.pop() {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if name.starts_with('.') {
                    continue;
                }
                let Ok(kind) = entry.file_type() else {
                    continue;
                };
                if kind.is_dir() {
                    pending.push(path);
                    continue;
                }
                if !name.ends_with(".zone") {
                    continue;
                }
                let found_here = match fs::metadata(&path) {
                    // fs::metadata follows symlinks: a link to a file is that file.
                    Ok(meta) if meta.is_file() => Found::File(Signature::of(&meta)),
                    Ok(meta) if meta.is_dir() => continue,
                    Ok(_) => Found::Unusable(
                        "not a regular file (a FIFO, socket or device); skipped".into(),
                    ),
                    Err(e) if kind.is_symlink() => Found::Unusable(format!("broken symlink: {e}")),
                    Err(e) => Found::Unusable(format!("cannot read: {e}")),
                };
                found.insert(path, found_here);
            }
        }
        found
    }

    /// Scans the folder and reloads what changed, as `request` says; `live`
    /// tells which names heartbeats hold.
    pub fn rescan(&mut self, request: &RescanRequest<'_>, live: &dyn LiveNames) -> Rescan {
        let RescanRequest {
            whole,
            force_all,
            hold,
            settle,
        } = *request;
        let now = SystemTime::now();
        let found = self.scan();
        let mut rescan = Rescan::default();
        let gone: Vec<PathBuf> = self
            .set
            .files
            .keys()
            .filter(|p| !matches!(found.get(*p), Some(Found::File(_))))
            .cloned()
            .collect();
        for path in gone {
            if matches!(found.get(&path), Some(Found::Unusable(_))) {
                // Present but unusable: report below, keep the last good version.
                continue;
            }
            let names = Fragment::changed_names(self.set.files.get(&path).map(AsRef::as_ref), None);
            self.replace(&path, None, &names);
            rescan.changed += names.len();
            self.caches.remove(&path);
            rescan.removed.push(self.display(&path));
        }
        self.failed.retain(|p, _| found.contains_key(p));

        for (path, what) in found {
            let file = self.display(&path);
            match what {
                Found::Unusable(message) => {
                    // Report once per distinct state.
                    let failure = Failure::Unusable(message.clone());
                    if self.failed.get(&path) != Some(&failure)
                        || force_all
                        || whole.contains_key(&path)
                    {
                        self.failed.insert(path, failure);
                        rescan.problems.push(Problem {
                            file,
                            line: None,
                            message,
                        });
                    }
                }
                Found::File(signature) => {
                    let current = self.set.files.get(&path).map(|f| f.signature);
                    let unchanged = current == Some(signature)
                        || self.failed.get(&path) == Some(&Failure::Version(signature));
                    let known_whole = whole.get(&path);
                    if unchanged && !force_all && known_whole.is_none() {
                        continue;
                    }
                    // Half written, or written again since it was whole:
                    // never let it become the last good version. Its
                    // writer's events bring it back.
                    if hold.contains(&path)
                        || known_whole.is_some_and(|seen| seen.is_some_and(|s| s != signature))
                    {
                        continue;
                    }
                    if known_whole.is_none() && signature.written_within(settle, now) {
                        rescan.deferred.push(path);
                        continue;
                    }
                    match self.load(&path, &file, signature, live) {
                        Err(LoadError::Changing) => rescan.deferred.push(path),
                        Ok((fragment, names)) => {
                            self.failed.remove(&path);
                            rescan.loaded.push((file, fragment.records.len()));
                            self.replace(&path, Some(fragment), &names);
                            rescan.changed += names.len();
                        }
                        Err(LoadError::Problems(problems)) => {
                            self.failed.insert(path, Failure::Version(signature));
                            rescan.problems.extend(problems);
                        }
                    }
                }
            }
        }
        if rescan.changed() {
            self.statics.renumber();
        }
        rescan
    }

    /// Reads, parses and validates one file, which the scan saw with
    /// `signature`.
    fn load(
        &mut self,
        path: &Path,
        file: &Arc<str>,
        signature: Signature,
        live: &dyn LiveNames,
    ) -> Result<(Fragment, NameSet), LoadError> {
        let problem = |line: Option<u32>, message: String| Problem {
            file: file.clone(),
            line,
            message,
        };
        if signature.len > MAX_FRAGMENT_BYTES {
            return Err(LoadError::Problems(vec![problem(
                None,
                format!(
                    "file is {:.1} MiB, over the {} MiB limit for one fragment; split it into several files",
                    signature.len as f64 / 1_048_576.0,
                    MAX_FRAGMENT_BYTES / 1_048_576
                ),
            )]));
        }
        let bytes = fs::read(path)
            .map_err(|e| LoadError::Problems(vec![problem(None, format!("cannot read: {e}"))]))?;
        // Written while we read: what we have may be half of each version.
        if Signature::of_path(path) != Some(signature) {
            return Err(LoadError::Changing);
        }
        let text = match std::str::from_utf8(&bytes) {
            Ok(text) if !text.contains('\0') => text,
            Ok(text) => {
                let line = text[..text.find('\0').unwrap_or(0)].lines().count().max(1);
                return Err(LoadError::Problems(vec![problem(
                    u32::try_from(line).ok(),
                    "not a text file (NUL byte); is this really a zone fragment?".into(),
                )]));
            }
            Err(e) => {
                let line = bytes[..e.valid_up_to()]
                    .iter()
                    .filter(|b| **b == b'\n')
                    .count()
                    + 1;
                return Err(LoadError::Problems(vec![problem(
                    u32::try_from(line).ok(),
                    format!(
                        "not a text file (invalid UTF-8 at byte {}); is this really a zone fragment?",
                        e.valid_up_to()
                    ),
                )]));
            }
        };
        // The cache always matches the version in the set: it is stored
        // only when a version loads, and dropped when one fails.
        let previous_cache = self.caches.remove(path);
        let current = self.set.files.get(path).cloned();
        let previous = match (&previous_cache, &current) {
            (Some(cache), Some(fragment)) => Some((cache, fragment.records())),
            _ => None,
        };
        let cached = previous.is_some();
        let (parsed, cache) = parse::parse_cached(text, &self.zone, previous);
        let mut problems: Vec<Problem> = parsed
            .problems
            .into_iter()
            .map(|(line, message)| problem(Some(line), message))
            .collect();
        if !problems.is_empty() {
            problems.sort_by_key(|p| p.line);
            return Err(LoadError::Problems(problems));
        }
        let others =
            self.set.record_count() - self.set.files.get(path).map_or(0, |old| old.records.len());
        if others + parsed.records.len() > self.max_records {
            return Err(LoadError::Problems(vec![problem(
                None,
                format!(
                    "its {} records would bring the zone fragments to {} records, over the limit of {} (--max-static-records)",
                    parsed.records.len(),
                    others + parsed.records.len(),
                    self.max_records
                ),
            )]));
        }
        let fragment = Fragment::new(path, file.clone(), parsed.records, signature);
        let changed = if cached {
            parsed.changed_names.into_iter().collect()
        } else {
            Fragment::changed_names(self.set.files.get(path).map(AsRef::as_ref), Some(&fragment))
        };
        problems.extend(self.validate(path, file, &fragment, &changed, live));
        if problems.is_empty() {
            self.caches.insert(path.to_path_buf(), cache);
            Ok((fragment, changed))
        } else {
            problems.sort_by_key(|p| p.line);
            Err(LoadError::Problems(problems))
        }
    }

    /// Rules that involve more than one record: CNAME alone at its name,
    /// delegations not hiding data, no clash with live instances. Only the
    /// `changed` names need checking: the rest were valid before and the
    /// other files have not changed since.
    fn validate(
        &self,
        path: &Path,
        file: &Arc<str>,
        fragment: &Fragment,
        changed: &NameSet,
        live: &dyn LiveNames,
    ) -> Vec<Problem> {
        let apex = &self.apex;
        let mut problems = Vec::new();
        let mut report = |line: u32, message: String| {
            problems.push(Problem {
                file: file.clone(),
                line: Some(line),
                message,
            });
        };
        // The line of this file's NS record at `key`, if any.
        let own_ns_at = |key: &NameKey| {
            fragment
                .at(key)
                .find(|r| r.record.rtype() == RecordType::NS)
                .map(|r| r.line)
        };
        let new_delegations: Vec<(&NameKey, u32)> = changed
            .iter()
            .filter(|key| *key != apex)
            .filter_map(|key| own_ns_at(key).map(|line| (key, line)))
            .collect();
        let had_own_delegations = self.set.files.get(path).is_some_and(|old| {
            old.records
                .iter()
                .any(|r| r.record.rtype() == RecordType::NS && !r.record.has_owner(apex))
        });
        let has_delegations =
            !new_delegations.is_empty() || had_own_delegations || self.statics.has_delegations();

        for key in changed {
            let types: Vec<(RecordType, u32)> = fragment
                .at(key)
                .map(|r| (r.record.rtype(), r.line))
                .collect();
            if types.is_empty() {
                continue;
            }
            let others = self.statics.others_at(key, path);
            for &(rtype, line) in &types {
                if rtype == RecordType::CNAME {
                    if key == apex {
                        report(
                            line,
                            "a CNAME cannot sit at the zone apex, which holds the SOA and NS"
                                .into(),
                        );
                        continue;
                    }
                    let mine = types
                        .iter()
                        .find(|(t, l)| *l != line || *t != RecordType::CNAME);
                    if let Some((t, l)) = mine {
                        report(
                            line,
                            format!("CNAME at {key} cannot coexist with {t} at {file}:{l}"),
                        );
                    } else if let Some((t, l)) = others.first() {
                        report(
                            line,
                            format!("CNAME at {key} cannot coexist with {t} at {l}"),
                        );
                    } else if let Some(what) = key.name().and_then(|name| live.at(&name)) {
                        report(line, format!("CNAME at {key} cannot coexist with {what}"));
                    }
                } else if let Some((_, l)) = others.iter().find(|(t, _)| *t == RecordType::CNAME) {
                    report(
                        line,
                        format!("{rtype} at {key} cannot coexist with the CNAME at {l}"),
                    );
                }
            }
            if has_delegations {
                // Data at or below a delegation point is not ours to serve,
                // except the NS set itself, DS, and address glue below it.
                let mut cut = Some(key.clone());
                while let Some(here) = cut.filter(|c| c.labels() > apex.labels()) {
                    let delegated_here = own_ns_at(&here)
                        .map(|line| format!("{file}:{line}"))
                        .or_else(|| {
                            self.statics
                                .others_at(&here, path)
                                .into_iter()
                                .find(|(t, _)| *t == RecordType::NS)
                                .map(|(_, l)| l.to_string())
                        });
                    if let Some(at) = delegated_here {
                        for &(rtype, line) in &types {
                            let allowed = if here == *key {
                                matches!(rtype, RecordType::NS | RecordType::DS)
                            } else {
                                matches!(rtype, RecordType::A | RecordType::AAAA)
                            };
                            if !allowed {
                                report(
                                    line,
                                    format!(
                                        "{rtype} at {key} is hidden by the delegation of {here} at {at}"
                                    ),
                                );
                            }
                        }
                        break;
                    }
                    cut = here.parent();
                }
            }
        }
        if new_delegations.is_empty() {
            return problems;
        }
        // What other files hold below a new delegation: a scan of every
        // name, as new delegations are rare.
        let keys = self.statics.keys();
        for (cut, line) in &new_delegations {
            if let Some(what) = cut.name().and_then(|name| live.under(&name)) {
                report(*line, format!("delegating {cut} would hide {what}"));
            }
            for below in keys.iter().filter(|k| k.is_at_or_below(cut)) {
                for (t, at) in self.statics.others_at(below, path) {
                    let glue = below != *cut && matches!(t, RecordType::A | RecordType::AAAA);
                    let at_cut = below == *cut && matches!(t, RecordType::NS | RecordType::DS);
                    if !glue && !at_cut {
                        report(*line, format!("delegating {cut} would hide {t} at {at}"));
                    }
                }
            }
        }
        problems
    }
}
