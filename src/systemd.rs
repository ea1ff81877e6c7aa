//! systemd's notify protocol (`Type=notify`), when systemd runs us.
//!
//! Takes `NOTIFY_SOCKET` and `WATCHDOG_USEC` from the environment (set
//! by systemd; without them every call here does nothing); produces
//! `READY=1` once the server answers from loaded zone fragments,
//! `WATCHDOG=1` at half the watchdog interval while the runtime runs, and
//! `STOPPING=1` at shutdown. It never blocks the caller on systemd.

use std::time::Duration;

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::view::publish::ViewHandle;

/// Tells systemd that the server is ready once `views` serve the loaded
/// zone fragments, and keeps its watchdog fed until `shutdown`.
pub fn start(views: ViewHandle, status: String, shutdown: &CancellationToken) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    let stopping = shutdown.clone();
    tokio::spawn(async move {
        while views.load().statics.is_loading() {
            tokio::select! {
                () = stopping.cancelled() => return,
                () = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        }
        send(&[NotifyState::Ready, NotifyState::Status(&status)]);
    });
    if let Some(interval) = sd_notify::watchdog_enabled() {
        let stopping = shutdown.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval / 2);
            loop {
                tokio::select! {
                    () = stopping.cancelled() => return,
                    _ = ticker.tick() => send(&[NotifyState::Watchdog]),
                }
            }
        });
    }
}

/// Tells systemd that the server is stopping.
pub fn stopping() {
    send(&[NotifyState::Stopping]);
}

fn send(states: &[NotifyState<'_>]) {
    if let Err(error) = sd_notify::notify(states) {
        warn!(%error, "cannot notify systemd");
    }
}
