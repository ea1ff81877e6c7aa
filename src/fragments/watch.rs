//! Watching the zones folder: the thread that keeps fragments current.
//!
//! Takes the [`Loader`] after its first load, filesystem events (inotify,
//! through notify), a periodic rescan and SIGHUP requests; hands each new
//! version of the static zone to a [`Feed`] whenever it changes, and logs every problem once per change of the file
//! at fault.
//!
//! A file is read only once it is whole: its writer closed it, or it was
//! renamed into place, and it has not changed since (its size and times
//! are taken the moment the close is seen, and the loader reads it only if
//! they still hold, and only if they hold through the read). A file a
//! writer keeps open is read once it has not changed for [`HOLD_LIMIT`].
//! Until then its last good version keeps serving, so a file rewritten in
//! place (truncate, write, pause, write) is never loaded half-written.
//! Changes a rescan finds without an event are read once the file is
//! [`SETTLE`] old. Events for one file are gathered for [`DEBOUNCE`] so a
//! burst of edits costs one reload. Symlinked folders are not walked (a
//! link to `/usr` would add thousands of watches); symlinked files are.
//!
//! It runs on its own thread because parsing a large file takes real CPU
//! time, which must not stall the async tasks that answer queries. It
//! never touches the answering path or the view: the feed (built by the
//! view) turns fragments into served data.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode, CreateKind, MetadataKind, ModifyKind};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher as _};
use tracing::{debug, info, warn};

use super::{LiveNames, Loader, Rescan, RescanRequest, Signature, StaticZone};
use crate::metrics::Metrics;
use crate::supervise::{Guard, fault_point};
use std::sync::Arc;

/// Quiet time after a file's last event before it is read: a burst of
/// edits (or an editor's write, rename and chmod) costs one reload.
pub const DEBOUNCE: Duration = Duration::from_millis(10);

/// How long a file a writer keeps open may go without changing before it
/// is read anyway.
pub const HOLD_LIMIT: Duration = Duration::from_secs(1);

/// How old a change found by a rescan (no event named it) must be before
/// the file is read: a writer may still be at work.
pub const SETTLE: Duration = Duration::from_millis(100);

/// How long after a file was read again or removed its old records are
/// given back to the system: by then every view that held them is gone.
pub const RELEASE_DELAY: Duration = Duration::from_secs(2);

/// What one event says about a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Written to (or created): a writer may still have it open.
    Written,
    /// Complete: its writer closed it, or it was renamed into place,
    /// removed, or had its metadata changed. The signature is the file's
    /// as the event was seen (none if it is gone).
    Whole(Option<Signature>),
}

/// Requests to the watcher thread.
#[derive(Debug)]
pub enum Request {
    /// What the folder watch saw.
    Event(PathBuf, Change),
    /// The watch lost events: look at everything that changed.
    Overflow,
    /// Re-read every file (SIGHUP).
    ReloadAll,
    /// Stop the thread.
    Stop,
}

/// What the watcher thread needs besides the folder: the names heartbeats
/// hold (fragments may not clash with them), and where each changed set of
/// good fragments goes.
pub trait Feed: Send + 'static {
    /// The names live data holds now.
    fn live(&self) -> Box<dyn LiveNames + '_>;
    /// The static zone is now `statics` (a clone is a snapshot: O(1)).
    /// Returns false when nobody listens any more (the thread then ends).
    fn publish(&mut self, statics: &StaticZone) -> bool;
}

/// Logs what a load did; every problem at WARN, once (the loader reports
/// a file's problems only when that file changed).
pub fn log_rescan(rescan: &Rescan, elapsed: Duration, metrics: &Metrics) {
    let count = |counter: &std::sync::atomic::AtomicU64, n: usize| {
        counter.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
    };
    count(&metrics.fragment_loads, rescan.loaded.len());
    count(&metrics.fragment_failures, rescan.problems.len());
    for (file, records) in &rescan.loaded {
        info!(%file, records, elapsed_ms = elapsed.as_millis(), "loaded zone fragment");
    }
    for file in &rescan.removed {
        info!(%file, "zone fragment removed; its records are gone");
    }
    for problem in &rescan.problems {
        warn!("{problem} (the file's last good version, if any, keeps serving)");
    }
}

/// Whether an event says a file is being written, or is whole. Opening and
/// reading files (our own loads included) also raise events; reacting to
/// those would reload forever.
fn is_write(kind: EventKind) -> Option<bool> {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => Some(false),
        EventKind::Access(_)
        | EventKind::Modify(ModifyKind::Metadata(MetadataKind::AccessTime)) => None,
        EventKind::Modify(ModifyKind::Data(_) | ModifyKind::Any)
        | EventKind::Create(CreateKind::File | CreateKind::Any) => Some(true),
        _ => Some(false),
    }
}

fn start_watching(dir: &Path, requests: &mpsc::Sender<Request>) -> Option<RecommendedWatcher> {
    let sender = requests.clone();
    // Runs on notify's thread as each event is read: the signature of a
    // whole file is taken now, before any next writer can start.
    let handler = move |result: notify::Result<notify::Event>| {
        let event = match result {
            Ok(event) if !event.need_rescan() => event,
            // The watcher lost track (queue overflow, …): re-check everything.
            _ => {
                let _ = sender.send(Request::Overflow);
                return;
            }
        };
        let Some(write) = is_write(event.kind) else {
            return;
        };
        for path in event.paths {
            // A new symlink raises only a create: it is whole.
            let change = if write && !is_symlink(&path) {
                Change::Written
            } else {
                Change::Whole(Signature::of_path(&path))
            };
            let _ = sender.send(Request::Event(path, change));
        }
    };
    // No symlinked folders: the README promises they are not walked.
    let config = notify::Config::default().with_follow_symlinks(false);
    let mut watcher = match RecommendedWatcher::new(handler, config) {
        Ok(watcher) => watcher,
        Err(error) => {
            warn!(%error, "cannot watch zone fragments; relying on the periodic rescan");
            return None;
        }
    };
    match watcher.watch(dir, RecursiveMode::Recursive) {
        Ok(()) => {
            info!(dir = %dir.display(), "watching zone fragments");
            Some(watcher)
        }
        Err(error) => {
            warn!(dir = %dir.display(), %error, "cannot watch zone fragments; relying on the periodic rescan");
            None
        }
    }
}

/// The folder watch, started before the first load so that no change made
/// during or after that load can be missed.
pub struct Watcher {
    requests: mpsc::Sender<Request>,
    inbox: mpsc::Receiver<Request>,
    watch: Option<RecommendedWatcher>,
}

impl Watcher {
    /// Starts watching `dir` (if it exists; otherwise the rescans look for it).
    pub fn start(dir: &Path) -> Watcher {
        let (requests, inbox) = mpsc::channel();
        let watch = if dir.is_dir() {
            start_watching(dir, &requests)
        } else {
            None
        };
        Watcher {
            requests,
            inbox,
            watch,
        }
    }

    /// A sender for SIGHUP reloads and for stopping the thread.
    pub fn requests(&self) -> mpsc::Sender<Request> {
        self.requests.clone()
    }

    /// Runs the watcher thread: reloads on events, on requests and every
    /// `rescan_every`, and hands each new set of fragments to `feed`.
    ///
    /// # Errors
    /// When the thread cannot be started.
    pub fn spawn(
        self,
        loader: Loader,
        feed: impl Feed,
        rescan_every: Duration,
        guard: Guard,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<thread::JoinHandle<()>> {
        let mut state = WatchLoop {
            own_sender: self.requests,
            inbox: self.inbox,
            watch: self.watch,
            loader,
            feed,
            rescan_every,
            next_rescan: Instant::now() + rescan_every,
            pending: HashMap::new(),
            retry_at: None,
            release_at: None,
            warned_missing: false,
            metrics,
        };
        thread::Builder::new()
            .name("zone-fragments".into())
            .spawn(move || {
                if state.first_load() {
                    state.run();
                }
                guard.done();
            })
    }
}

/// A file events named that is not read yet.
#[derive(Debug)]
struct Pending {
    /// When its last event came.
    last_event: Instant,
    /// Its state: being written, or whole with this signature.
    change: Change,
}

/// The watcher thread's state.
struct WatchLoop<F> {
    own_sender: mpsc::Sender<Request>,
    inbox: mpsc::Receiver<Request>,
    watch: Option<RecommendedWatcher>,
    loader: Loader,
    feed: F,
    rescan_every: Duration,
    next_rescan: Instant,
    /// Files named by events, not read yet.
    pending: HashMap<PathBuf, Pending>,
    /// When to look again at files a rescan found too fresh.
    retry_at: Option<Instant>,
    /// When to hand memory freed by a change back to the system.
    release_at: Option<Instant>,
    warned_missing: bool,
    metrics: Arc<Metrics>,
}

impl<F: Feed> WatchLoop<F> {
    /// Reads every file, logs the outcome and publishes the first static
    /// zone (views serve a stand-in until then); false when the feed
    /// stopped listening.
    fn first_load(&mut self) -> bool {
        crate::supervise::hold_point("first-load");
        let started = Instant::now();
        let rescan = self
            .loader
            .rescan(&RescanRequest::everything(), self.feed.live().as_ref());
        log_rescan(&rescan, started.elapsed(), &self.metrics);
        let set = self.loader.set();
        info!(
            dir = %self.loader.dir().display(),
            files = set.file_count(),
            records = set.record_count(),
            problems = rescan.problems.len(),
            elapsed_ms = started.elapsed().as_millis(),
            "zone fragments loaded"
        );
        self.feed.publish(self.loader.statics())
    }

    fn run(&mut self) {
        loop {
            self.follow_folder();
            let mut force_all = false;
            let mut scan = false;
            match self.inbox.recv_timeout(self.wake_in()) {
                Ok(first) => {
                    // Take whatever else is already queued.
                    let mut next = Some(first);
                    while let Some(request) = next {
                        match request {
                            Request::Stop => return,
                            Request::ReloadAll => force_all = true,
                            Request::Overflow => scan = true,
                            Request::Event(path, change) => {
                                self.pending.insert(
                                    path,
                                    Pending {
                                        last_event: Instant::now(),
                                        change,
                                    },
                                );
                            }
                        }
                        next = self.inbox.try_recv().ok();
                    }
                }
                Err(RecvTimeoutError::Disconnected) => return,
                Err(RecvTimeoutError::Timeout) => {}
            }
            let now = Instant::now();
            if now >= self.next_rescan {
                self.next_rescan = now + self.rescan_every;
                scan = true;
            }
            if self.release_at.is_some_and(|at| now >= at) {
                self.release_at = None;
                release_freed_memory();
            }
            if self.retry_at.is_some_and(|at| now >= at) {
                self.retry_at = None;
                scan = true;
            }
            let (whole, hold) = self.ready(now);
            if whole.is_empty() && !force_all && !scan {
                continue;
            }
            if !self.reload(&whole, &hold, force_all) {
                return;
            }
        }
    }

    /// How long to sleep: until the next rescan, retry, or pending file
    /// that may be ready.
    fn wake_in(&self) -> Duration {
        let pending = self.pending.values().map(|p| {
            p.last_event
                + match p.change {
                    Change::Written => HOLD_LIMIT,
                    Change::Whole(_) => DEBOUNCE,
                }
        });
        let wake = pending
            .chain(self.retry_at)
            .chain(self.release_at)
            .chain([self.next_rescan])
            .min()
            .unwrap_or(self.next_rescan);
        wake.saturating_duration_since(Instant::now())
    }

    /// Splits the pending files: those to read now (with the signature
    /// they must still have, if known), and those to hold back.
    fn ready(&mut self, now: Instant) -> (HashMap<PathBuf, Option<Signature>>, HashSet<PathBuf>) {
        let mut whole = HashMap::new();
        let mut hold = HashSet::new();
        self.pending.retain(|path, pending| {
            let quiet = now.duration_since(pending.last_event);
            match &pending.change {
                Change::Whole(signature) if quiet >= DEBOUNCE => {
                    whole.insert(path.clone(), *signature);
                    false
                }
                // A writer went quiet without closing: read what is there.
                Change::Written if quiet >= HOLD_LIMIT => {
                    whole.insert(path.clone(), None);
                    false
                }
                _ => {
                    hold.insert(path.clone());
                    true
                }
            }
        });
        (whole, hold)
    }

    /// Starts or stops watching as the folder appears and disappears.
    fn follow_folder(&mut self) {
        if !self.loader.dir().is_dir() {
            // Dropping the watcher stops a watch on a vanished folder.
            self.watch = None;
            if !self.warned_missing {
                info!(dir = %self.loader.dir().display(), "zones folder does not exist; checking again at each rescan");
                self.warned_missing = true;
            }
        } else if self.watch.is_none() {
            self.watch = start_watching(self.loader.dir(), &self.own_sender);
            if self.warned_missing {
                // It appeared: load what it holds now.
                let _ = self.own_sender.send(Request::ReloadAll);
                self.warned_missing = false;
            }
        }
    }

    /// Rescans: reads the `whole` files, keeps the `hold` ones as they
    /// were; false when the feed stopped listening.
    fn reload(
        &mut self,
        whole: &HashMap<PathBuf, Option<Signature>>,
        hold: &HashSet<PathBuf>,
        force_all: bool,
    ) -> bool {
        fault_point("watcher");
        let started = Instant::now();
        let request = RescanRequest {
            whole,
            force_all,
            hold,
            settle: SETTLE,
        };
        let rescan = self.loader.rescan(&request, self.feed.live().as_ref());
        log_rescan(&rescan, started.elapsed(), &self.metrics);
        if !rescan.loaded.is_empty() || !rescan.removed.is_empty() {
            // Counted from the end of the reload: the views holding the
            // old records go only once the new static zone is published.
            self.release_at = Some(Instant::now() + RELEASE_DELAY);
        }
        if !rescan.deferred.is_empty() {
            debug!(
                files = rescan.deferred.len(),
                "changed files not settled yet; looking again shortly"
            );
            self.retry_at.get_or_insert(started + SETTLE);
        }
        if rescan.changed() {
            let listening = self.feed.publish(self.loader.statics());
            debug!(
                elapsed_us = started.elapsed().as_micros(),
                "fragments changed"
            );
            return listening;
        }
        true
    }
}

/// Gives memory the process freed back to the system. Records are
/// allocated by this thread (the loader runs here), and a file's old
/// version may be millions of them; the allocator keeps freed pages for
/// reuse unless told.
fn release_freed_memory() {
    // SAFETY: mi_collect only walks the allocator's own structures; it is
    // safe to call at any time, from any thread, whatever allocator the
    // process uses for Rust (without mimalloc it finds nothing to free).
    unsafe { libmimalloc_sys::mi_collect(true) };
}

/// True when `path` is a symlink (not followed).
fn is_symlink(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|meta| meta.file_type().is_symlink())
}
