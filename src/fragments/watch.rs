//! Watching the zones folder: the thread that keeps fragments current.
//!
//! Takes the [`Loader`] after its first load, filesystem events (notify,
//! through a debouncer that merges an editor's write-to-temp-then-rename
//! into one change), a periodic rescan and SIGHUP requests; hands each new
//! set of good fragments, with the names that changed, to a [`Feed`]
//! whenever it changes, and logs every problem once per change of the file
//! at fault.
//!
//! It runs on its own thread because parsing a large file takes real CPU
//! time, which must not stall the async tasks that answer queries. It
//! never touches the answering path or the view: the feed (built by the
//! view) turns fragments into served data.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use notify_debouncer_full::notify::event::{MetadataKind, ModifyKind};
use notify_debouncer_full::notify::{EventKind, RecursiveMode};
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};
use tracing::{debug, info, warn};

use super::{FragmentSet, LiveNames, Loader, NameSet, Rescan};
use crate::supervise::{Guard, fault_point};

/// Quiet time after the last event before a change is loaded. Short,
/// because edits must be live within 50 ms; long enough to see the rename
/// that ends an editor's save together with the write before it.
pub const DEBOUNCE: Duration = Duration::from_millis(10);

/// Requests to the watcher thread.
#[derive(Debug)]
pub enum Request {
    /// Files changed (from the watcher).
    Changed(HashSet<PathBuf>),
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
    /// The good fragments are now `set`; the records at `changed` differ.
    /// Returns false when nobody listens any more (the thread then ends).
    fn publish(&mut self, set: &FragmentSet, changed: &NameSet) -> bool;
}

/// Logs what a load did; every problem at WARN, once (the loader reports
/// a file's problems only when that file changed).
pub fn log_rescan(rescan: &Rescan, elapsed: Duration) {
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

/// True for events that may change what a file holds. Opening and reading
/// files (our own loads included) also raise events; reacting to those
/// would reload forever.
fn changes_content(kind: &EventKind) -> bool {
    !matches!(
        kind,
        EventKind::Access(_) | EventKind::Modify(ModifyKind::Metadata(MetadataKind::AccessTime))
    )
}

type FolderWatch = Debouncer<notify_debouncer_full::notify::RecommendedWatcher, RecommendedCache>;

fn start_watching(dir: &Path, requests: &mpsc::Sender<Request>) -> Option<FolderWatch> {
    let sender = requests.clone();
    let handler = move |result: DebounceEventResult| {
        let request = match result {
            Ok(events) => {
                let paths: HashSet<PathBuf> = events
                    .into_iter()
                    .filter(|e| changes_content(&e.event.kind))
                    .flat_map(|e| e.event.paths)
                    .collect();
                if paths.is_empty() {
                    return;
                }
                Request::Changed(paths)
            }
            // The watcher lost track (queue overflow, …): re-check everything.
            Err(_) => Request::Changed(HashSet::new()),
        };
        let _ = sender.send(request);
    };
    let mut debouncer = match new_debouncer(DEBOUNCE, None, handler) {
        Ok(d) => d,
        Err(error) => {
            warn!(%error, "cannot watch zone fragments; relying on the periodic rescan");
            return None;
        }
    };
    match debouncer.watch(dir, RecursiveMode::Recursive) {
        Ok(()) => {
            info!(dir = %dir.display(), "watching zone fragments");
            Some(debouncer)
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
    watch: Option<FolderWatch>,
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
    pub fn spawn(
        self,
        mut loader: Loader,
        mut feed: impl Feed,
        rescan_every: Duration,
        guard: Guard,
    ) -> std::io::Result<thread::JoinHandle<()>> {
        let Watcher {
            requests: own_sender,
            inbox,
            watch: mut debouncer,
        } = self;
        thread::Builder::new()
        .name("zone-fragments".into())
        .spawn(move || {
            let run = move || {
            let mut warned_missing = false;
            loop {
                let dir_exists = loader.dir().is_dir();
                if !dir_exists {
                    // Dropping the debouncer stops a watch on a vanished folder.
                    debouncer = None;
                    if !warned_missing {
                        info!(dir = %loader.dir().display(), "zones folder does not exist; checking again at each rescan");
                        warned_missing = true;
                    }
                } else if debouncer.is_none() {
                    debouncer = start_watching(loader.dir(), &own_sender);
                    if warned_missing {
                        // It appeared: load what it holds now.
                        let _ = own_sender.send(Request::ReloadAll);
                        warned_missing = false;
                    }
                }
                let (force, force_all) = match inbox.recv_timeout(rescan_every) {
                    Ok(Request::Stop) | Err(RecvTimeoutError::Disconnected) => break,
                    Ok(Request::ReloadAll) => (HashSet::new(), true),
                    Ok(Request::Changed(mut paths)) => {
                        // Merge whatever else is already queued.
                        let mut all = false;
                        while let Ok(more) = inbox.try_recv() {
                            match more {
                                Request::Changed(p) => paths.extend(p),
                                Request::ReloadAll => all = true,
                                Request::Stop => return,
                            }
                        }
                        (paths, all)
                    }
                    Err(RecvTimeoutError::Timeout) => (HashSet::new(), false),
                };
                fault_point("watcher");
                let started = Instant::now();
                let rescan = loader.rescan(&force, force_all, feed.live().as_ref());
                log_rescan(&rescan, started.elapsed());
                if rescan.changed() {
                    let listening = feed.publish(loader.set(), &rescan.changed_names);
                    debug!(elapsed_us = started.elapsed().as_micros(), "fragments changed");
                    if !listening {
                        break;
                    }
                }
            }
            drop(debouncer);
            };
            run();
            guard.done();
        })
    }
}
