//! The state directory: what must outlive the process.
//!
//! Takes a folder; produces a [`StateDir`] that holds it (an exclusive lock
//! on `lock` inside, so two servers never share one) and reads and writes
//! what is kept there. Today that is the SOA serial ceiling (the file
//! `serial`): the highest serial the server may have served, reserved
//! ahead of use, so a restart (even after kill -9) continues above it and
//! secondaries and caches never see the serial go back.
//!
//! Every write is atomic: a temporary file, fsync, rename over the old
//! one, fsync of the folder. A file that cannot be read back is moved
//! aside (`serial.corrupt`), logged at WARN, and treated as missing: a bad
//! state file never stops the server. It never touches the answering path.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use tracing::warn;

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
        })
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `contents` to `name` atomically.
    fn write_atomically(&self, name: &str, contents: &[u8]) -> io::Result<()> {
        let target = self.path.join(name);
        let temporary = self.path.join(format!(".{name}.tmp"));
        {
            let mut file = File::create(&temporary)?;
            file.write_all(contents)?;
            file.sync_all()?;
        }
        fs::rename(&temporary, &target)?;
        File::open(&self.path)?.sync_all()
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

/// The serial file's text: `serial <n>` and a newline.
fn parse_serial(text: &str) -> Option<u32> {
    text.strip_prefix("serial ")?
        .strip_suffix('\n')?
        .parse()
        .ok()
}

impl SerialStore for StateDir {
    fn ceiling(&mut self) -> Option<u32> {
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

    fn reserve(&mut self, ceiling: u32) -> io::Result<()> {
        self.write_atomically(SERIAL_FILE, format!("serial {ceiling}\n").as_bytes())
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
