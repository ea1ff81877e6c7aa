//! The state directory: what must outlive the process.
//!
//! Takes a folder; produces a [`StateDir`] that holds it (an exclusive lock
//! on `lock` inside, so two servers never share one) and reads and writes
//! what is kept there: the SOA serial ceiling (the file `serial`: the
//! highest serial the server may have served, reserved ahead of use, so a
//! restart, even after kill -9, continues above it and secondaries and
//! caches never see the serial go back), and the registry snapshot (the
//! file `registry`, see [`snapshot`]), written by a thread of its own
//! ([`SnapshotWriter`]) so the intake never waits for the disk.
//!
//! Every write is atomic: a temporary file, fsync, rename over the old
//! one, fsync of the folder. A file that cannot be read back is moved
//! aside (`serial.corrupt`), logged at WARN, and treated as missing: a bad
//! state file never stops the server. It never touches the answering path.

pub mod snapshot;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::Instant;

use tracing::{debug, error, info, warn};

use crate::intake::SnapshotSink;
use crate::metrics::Metrics;
use crate::registry::{Forgotten, Kept};
use crate::view::publish::SerialStore;

/// The serial file's name inside the folder.
const SERIAL_FILE: &str = "serial";

/// Why the state directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The folder cannot be created or opened.
    #[error("cannot use the state directory {path}: {source}")]
    Folder {
        /// The folder.
        path: PathBuf,
        /// The system's reason.
        source: io::Error,
    },
    /// Another process holds the folder.
    #[error(
        "the state directory {path} is in use by another beacon (each server needs its own: pass --state-dir)"
    )]
    Locked {
        /// The folder.
        path: PathBuf,
    },
}

/// An open, locked state directory.
#[derive(Debug)]
pub struct StateDir {
    path: PathBuf,
    /// Held for the life of the process; the lock goes with the handle.
    _lock: File,
    /// The serial of the restored snapshot: serials continue above it too.
    floor: Option<u32>,
}

impl StateDir {
    /// Creates `path` if needed and takes its lock.
    ///
    /// # Errors
    /// [`StateError`] when the folder cannot be created or another
    /// process holds it.
    pub fn open(path: &Path) -> Result<StateDir, StateError> {
        let folder = |source| StateError::Folder {
            path: path.to_path_buf(),
            source,
        };
        fs::create_dir_all(path).map_err(folder)?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path.join("lock"))
            .map_err(folder)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(StateError::Locked {
                    path: path.to_path_buf(),
                });
            }
            Err(fs::TryLockError::Error(source)) => return Err(folder(source)),
        }
        Ok(StateDir {
            path: path.to_path_buf(),
            _lock: lock,
            floor: None,
        })
    }

    /// Reads the registry snapshot, if there is one. A snapshot that
    /// cannot be read is moved aside (`registry.corrupt`) and logged at
    /// WARN: the server then starts empty, never refuses to start.
    pub fn read_snapshot(&mut self) -> Option<snapshot::Snapshot> {
        let bytes = match fs::read(self.path.join(snapshot::FILE)) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return None,
            Err(error) => {
                warn!(dir = %self.path.display(), %error, "cannot read the registry snapshot; starting empty");
                return None;
            }
        };
        match snapshot::decode(&bytes) {
            Ok(snapshot) => {
                self.floor = Some(snapshot.serial);
                Some(snapshot)
            }
            Err(error) => {
                self.set_aside(
                    snapshot::FILE,
                    &format!("the registry snapshot is unreadable ({error})"),
                );
                None
            }
        }
    }

    /// A writer of registry snapshots into this folder.
    ///
    /// # Errors
    /// When its thread cannot be started.
    pub fn snapshot_writer(&self, metrics: Arc<Metrics>) -> io::Result<SnapshotWriter> {
        SnapshotWriter::start(self.path.clone(), metrics)
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `contents` to `name` atomically.
    fn write_atomically(&self, name: &str, contents: &[u8]) -> io::Result<()> {
        write_atomically(&self.path, name, contents)
    }

    /// Moves an unreadable file aside so the next write does not lose
    /// the evidence, and says so.
    fn set_aside(&self, name: &str, why: &str) {
        let from = self.path.join(name);
        let to = self.path.join(format!("{name}.corrupt"));
        match fs::rename(&from, &to) {
            Ok(()) => {
                warn!(file = %from.display(), moved_to = %to.display(), "{why}; starting without it");
            }
            Err(error) => {
                warn!(file = %from.display(), %error, "{why}; it could not be moved aside");
            }
        }
    }
}

/// Writes `contents` to `name` in `dir` atomically: a temporary file,
/// fsync, rename over the old one, fsync of the folder.
fn write_atomically(dir: &Path, name: &str, contents: &[u8]) -> io::Result<()> {
    let target = dir.join(name);
    let temporary = dir.join(format!(".{name}.tmp"));
    {
        let mut file = File::create(&temporary)?;
        file.write_all(contents)?;
        file.sync_all()?;
    }
    fs::rename(&temporary, &target)?;
    File::open(dir)?.sync_all()
}

/// What the intake hands the writer: the registry's content at a moment.
struct Taken {
    serial: u32,
    now_ms: u64,
    kept: Vec<Kept>,
    forgotten: Vec<Forgotten>,
}

/// Writes registry snapshots on a thread of its own, one at a time: the
/// intake offers one, and while a write is under way (or the writer rests
/// after it, four times as long as it took, so snapshots never take more
/// than a fifth of a core) offers are declined and made again later.
#[derive(Debug)]
pub struct SnapshotWriter {
    dir: PathBuf,
    sender: Option<SyncSender<Taken>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// True while the writer waits for a snapshot.
    waiting: Arc<AtomicBool>,
}

impl std::fmt::Debug for Taken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Taken")
            .field("serial", &self.serial)
            .field("instances", &self.kept.len())
            .finish_non_exhaustive()
    }
}

impl SnapshotWriter {
    fn start(dir: PathBuf, metrics: Arc<Metrics>) -> io::Result<SnapshotWriter> {
        let (sender, receiver) = sync_channel(1);
        let folder = dir.clone();
        let waiting = Arc::new(AtomicBool::new(true));
        let flag = waiting.clone();
        let thread = std::thread::Builder::new()
            .name("registry-snapshot".into())
            .spawn(move || write_loop(&folder, &receiver, &flag, &metrics))?;
        Ok(SnapshotWriter {
            dir,
            sender: Some(sender),
            thread: Some(thread),
            waiting,
        })
    }
}

fn write_snapshot(dir: &Path, taken: &Taken) -> io::Result<usize> {
    let bytes = snapshot::encode(taken.serial, taken.now_ms, &taken.kept, &taken.forgotten);
    write_atomically(dir, snapshot::FILE, &bytes)?;
    Ok(bytes.len())
}

fn write_loop(dir: &Path, offers: &Receiver<Taken>, waiting: &AtomicBool, metrics: &Metrics) {
    let mut failing = false;
    while let Ok(taken) = offers.recv() {
        waiting.store(false, Ordering::Release);
        let started = Instant::now();
        match write_snapshot(dir, &taken) {
            Ok(bytes) => {
                metrics.snapshot_writes.fetch_add(1, Ordering::Relaxed);
                if failing {
                    info!(dir = %dir.display(), "the registry snapshot is written again");
                }
                failing = false;
                debug!(
                    instances = taken.kept.len(),
                    bytes,
                    took_ms = started.elapsed().as_millis(),
                    "registry snapshot written"
                );
            }
            Err(error) => {
                if !failing {
                    error!(dir = %dir.display(), %error, "cannot write the registry snapshot; a restart would start from an older one");
                }
                failing = true;
            }
        }
        std::thread::sleep(started.elapsed() * 4);
        waiting.store(true, Ordering::Release);
    }
}

impl SnapshotSink for SnapshotWriter {
    fn ready(&self) -> bool {
        self.sender.is_some() && self.waiting.load(Ordering::Acquire)
    }

    fn offer(
        &mut self,
        serial: u32,
        now_ms: u64,
        kept: Vec<Kept>,
        forgotten: Vec<Forgotten>,
    ) -> bool {
        let Some(sender) = &self.sender else {
            return false;
        };
        let taken = Taken {
            serial,
            now_ms,
            kept,
            forgotten,
        };
        match sender.try_send(taken) {
            Ok(()) => {
                self.waiting.store(false, Ordering::Release);
                true
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
        }
    }

    fn finish(&mut self, serial: u32, now_ms: u64, kept: Vec<Kept>, forgotten: Vec<Forgotten>) {
        // Let a write under way end first, so this one is the last.
        self.sender = None;
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            error!("the registry snapshot writer failed");
        }
        let taken = Taken {
            serial,
            now_ms,
            kept,
            forgotten,
        };
        match write_snapshot(&self.dir, &taken) {
            Ok(_) => info!(
                instances = taken.kept.len(),
                "registry snapshot written at shutdown"
            ),
            Err(error) => {
                error!(dir = %self.dir.display(), %error, "cannot write the registry snapshot at shutdown");
            }
        }
    }
}

/// The serial file's text: `serial <n>` and a newline.
fn parse_serial(text: &str) -> Option<u32> {
    text.strip_prefix("serial ")?
        .strip_suffix('\n')?
        .parse()
        .ok()
}

impl SerialStore for StateDir {
    fn ceiling(&mut self) -> Option<u32> {
        let stored = self.stored_ceiling();
        match (stored, self.floor) {
            (Some(stored), Some(floor)) if crate::view::publish::serial_gt(floor, stored) => {
                Some(floor)
            }
            (None, floor) => floor,
            (stored, _) => stored,
        }
    }

    fn reserve(&mut self, ceiling: u32) -> io::Result<()> {
        self.write_atomically(SERIAL_FILE, format!("serial {ceiling}\n").as_bytes())
    }
}

impl StateDir {
    fn stored_ceiling(&mut self) -> Option<u32> {
        match fs::read_to_string(self.path.join(SERIAL_FILE)) {
            Ok(text) => {
                let parsed = parse_serial(&text);
                if parsed.is_none() {
                    self.set_aside(SERIAL_FILE, "the stored serial is unreadable");
                }
                parsed
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => None,
            Err(error) => {
                warn!(dir = %self.path.display(), %error, "cannot read the stored serial; starting from the clock");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_round_trip_and_bad_files_are_set_aside() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut state = StateDir::open(dir.path()).expect("opens");
        assert_eq!(state.ceiling(), None);
        state.reserve(1_700_000_123).expect("writes");
        assert_eq!(state.ceiling(), Some(1_700_000_123));
        fs::write(dir.path().join(SERIAL_FILE), "serial 12x\n").expect("write");
        assert_eq!(state.ceiling(), None);
        assert!(dir.path().join("serial.corrupt").exists());
        assert!(!dir.path().join(SERIAL_FILE).exists());
    }

    #[test]
    fn one_folder_serves_one_process_at_a_time() {
        let dir = tempfile::tempdir().expect("temp dir");
        let held = StateDir::open(dir.path()).expect("opens");
        assert!(matches!(
            StateDir::open(dir.path()),
            Err(StateError::Locked { .. })
        ));
        drop(held);
        StateDir::open(dir.path()).expect("free again");
    }
}
