//! Supervision: when a part of the server dies, the server goes with it.
//!
//! Takes the long-lived parts of `beacon serve` (the intake task, the UDP
//! workers, the TCP acceptor, the fragment watcher, the signal task), each
//! holding a [`Guard`]; produces one [`Death`] notice as soon as any of them
//! ends while the server is meant to run, by a panic (with its message) or
//! by returning. The server then logs it at ERROR and exits with
//! [`EXIT_DIED`], so that systemd or another supervisor restarts it: a
//! server whose intake died would otherwise go on serving frozen data.
//!
//! Work for one client (a query on the general path, a TCP connection) is
//! not a part: a panic there is logged at ERROR by the hook installed here
//! and costs that client its answer, not everyone their server.
//!
//! It also holds the test builds' fault points ([`fault_point`]), which
//! make a named part panic on demand so that tests exercise supervision
//! deterministically; release builds compile them away.

use std::cell::RefCell;

use tokio::sync::mpsc;
use tracing::error;

pub use crate::config::EXIT_DIED;

thread_local! {
    /// The message of the panic unwinding this thread, for its guard.
    static PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Logs every panic at ERROR, with its message, thread and place, and
/// remembers the message for the panicking thread's guards. Install once,
/// first thing in `main`.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".to_string());
        let thread = std::thread::current();
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        error!(
            thread = thread.name().unwrap_or("unnamed"),
            %location,
            "panicked: {message}"
        );
        PANIC.with(|last| *last.borrow_mut() = Some(message));
    }));
}

/// A part of the server that ended while it should have been running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Death {
    /// Which part.
    pub part: &'static str,
    /// Its panic message, or how it ended.
    pub reason: String,
}

/// Receives the death notices of every part it handed a guard to.
#[derive(Debug)]
pub struct Supervisor {
    sender: mpsc::UnboundedSender<Death>,
    deaths: mpsc::UnboundedReceiver<Death>,
}

impl Default for Supervisor {
    fn default() -> Self {
        let (sender, deaths) = mpsc::unbounded_channel();
        Supervisor { sender, deaths }
    }
}

impl Supervisor {
    /// A guard for the part called `part`.
    pub fn guard(&self, part: &'static str) -> Guard {
        Guard {
            part,
            sender: self.sender.clone(),
            done: false,
        }
    }

    /// Waits for the first death.
    pub async fn death(&mut self) -> Death {
        match self.deaths.recv().await {
            Some(death) => death,
            // Unreachable while `self` holds a sender; wait forever then.
            None => std::future::pending().await,
        }
    }
}

/// Held by one part for as long as it runs; dropping it without
/// [`Guard::done`] (a panic unwinding, or an early return) reports a death.
#[derive(Debug)]
pub struct Guard {
    part: &'static str,
    sender: mpsc::UnboundedSender<Death>,
    done: bool,
}

impl Guard {
    /// The part ended as it should (the server is stopping).
    pub fn done(mut self) {
        self.done = true;
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let reason = if std::thread::panicking() {
            PANIC
                .with(|last| last.borrow_mut().take())
                .map_or_else(|| "panicked".to_string(), |m| format!("panicked: {m}"))
        } else {
            "stopped unexpectedly".to_string()
        };
        let _ = self.sender.send(Death {
            part: self.part,
            reason,
        });
    }
}

/// Makes the calling part panic when a test build runs with
/// `BEACON_TEST_FAULT=<point>`: the supervision tests' way to kill one
/// part on cue. Compiled away in release builds.
///
/// # Panics
/// That is its purpose, when asked to.
#[cfg(debug_assertions)]
#[track_caller]
pub fn fault_point(point: &str) {
    static FAULT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let fault = FAULT.get_or_init(|| std::env::var("BEACON_TEST_FAULT").ok());
    if fault.as_deref() == Some(point) {
        panic!("injected fault at {point} (BEACON_TEST_FAULT)");
    }
}

/// Release builds have no fault points.
#[cfg(not(debug_assertions))]
#[inline(always)]
pub fn fault_point(_point: &str) {}

/// Makes the calling part wait at `point` while the file `path` exists,
/// when a test build runs with `BEACON_TEST_HOLD=<point>:<path>` (at most
/// a minute): how tests look at the server in the middle of something
/// that is usually too quick to catch. Compiled away in release builds.
#[cfg(debug_assertions)]
pub fn hold_point(point: &str) {
    let Ok(spec) = std::env::var("BEACON_TEST_HOLD") else {
        return;
    };
    let Some((at, path)) = spec.split_once(':') else {
        return;
    };
    if at != point {
        return;
    }
    let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::path::Path::new(path).exists() && std::time::Instant::now() < until {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Release builds have no hold points.
#[cfg(not(debug_assertions))]
#[inline(always)]
pub fn hold_point(_point: &str) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_part_reports_its_message_and_a_finished_one_nothing() {
        install_panic_hook();
        let mut supervisor = Supervisor::default();
        let finished = supervisor.guard("finished");
        finished.done();
        let guard = supervisor.guard("worker");
        let thread = std::thread::spawn(move || {
            let _guard = guard;
            panic!("boom");
        });
        assert!(thread.join().is_err());
        let death = supervisor.death().await;
        assert_eq!(death.part, "worker");
        assert_eq!(death.reason, "panicked: boom");
        let quiet = supervisor.guard("quiet");
        drop(quiet);
        assert_eq!(supervisor.death().await.reason, "stopped unexpectedly");
    }
}
