//! `beacon beat`: announce one instance by sending heartbeats.
//!
//! Takes a validated [`Announcement`] and where to send it; produces a datagram
//! every interval until stopped. On Ctrl-C or SIGTERM it sends a final
//! `state=down`, so the instance leaves the answers at once instead of when
//! its lease runs out. With a key, every heartbeat (the final `down`
//! included) is signed, each with a later timestamp than the one before.
//! It never waits for replies: heartbeats are fire-and-forget, and a
//! server that is down simply misses some.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::net::UdpSocket;
use tokio::signal::unix::{SignalKind, signal};
use tracing::{debug, info, warn};

use crate::intake::wire;
use crate::keys::Key;
use crate::registry::announcement::{Announcement, State};

/// What `beacon beat` does.
#[derive(Debug, Clone)]
pub struct BeatConfig {
    /// The heartbeat to send (its state is the state of every beat but the last).
    pub heartbeat: Announcement,
    /// The server's heartbeat address.
    pub server: SocketAddr,
    /// Time between heartbeats.
    pub interval: Duration,
    /// Send one heartbeat and exit.
    pub once: bool,
    /// Sign every heartbeat with this key.
    pub key: Option<Arc<Key>>,
}

/// Why beating failed.
#[derive(Debug, thiserror::Error)]
pub enum BeatError {
    /// The local socket could not be set up.
    #[error("cannot open a UDP socket towards {server}: {source}")]
    Socket {
        /// The server address.
        server: SocketAddr,
        /// The system's reason.
        source: io::Error,
    },
    /// Sending the single heartbeat of `--once` failed.
    #[error("cannot send the heartbeat to {server}: {source}")]
    Send {
        /// The server address.
        server: SocketAddr,
        /// The system's reason.
        source: io::Error,
    },
}

/// The instance id used when none is given: `<hostname>-<port>`, cut down
/// to a valid DNS label.
pub fn default_instance(port: u16) -> String {
    let host = gethostname::gethostname()
        .to_string_lossy()
        .to_ascii_lowercase();
    let host = host.split('.').next().unwrap_or_default();
    let suffix = format!("-{port}");
    let mut label: String = host
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    label.truncate(63 - suffix.len());
    let label = label.trim_matches('-');
    let label = if label.is_empty() { "instance" } else { label };
    format!("{label}{suffix}")
}

/// Encodes heartbeats, signing them when a key is given.
struct Sender {
    key: Option<Arc<Key>>,
    /// The last timestamp sent: each is later than the one before, even
    /// if the clock steps back or two beats share a millisecond.
    last_ts: u64,
}

impl Sender {
    fn encode(&mut self, hb: &Announcement) -> String {
        let Some(key) = &self.key else {
            return wire::encode(hb);
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self.last_ts = now.max(self.last_ts + 1);
        wire::encode_signed(hb, key, self.last_ts)
    }

    async fn send(&mut self, socket: &UdpSocket, hb: &Announcement) -> io::Result<()> {
        socket.send(self.encode(hb).as_bytes()).await.map(|_| ())
    }
}

/// Sends heartbeats until Ctrl-C or SIGTERM (or once, with `--once`).
///
/// # Errors
/// [`BeatError`] when no socket can be opened, or when the only heartbeat of
/// `--once` cannot be sent. Send errors while beating are logged and retried
/// at the next interval, since the server may come back.
pub async fn run(config: BeatConfig) -> Result<(), BeatError> {
    let server = config.server;
    let local: SocketAddr = if server.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local)
        .await
        .map_err(|source| BeatError::Socket { server, source })?;
    socket
        .connect(server)
        .await
        .map_err(|source| BeatError::Socket { server, source })?;
    let hb = &config.heartbeat;
    let mut sender = Sender {
        key: config.key.clone(),
        last_ts: 0,
    };

    if config.once {
        sender
            .send(&socket, hb)
            .await
            .map_err(|source| BeatError::Send { server, source })?;
        info!(service = %hb.service, instance = %hb.instance, state = hb.state.as_str(), %server, key = %config.key.as_ref().map_or("-", |k| &**k.name()), "sent one heartbeat");
        return Ok(());
    }

    let mut terminate =
        signal(SignalKind::terminate()).map_err(|source| BeatError::Socket { server, source })?;
    let mut interrupt =
        signal(SignalKind::interrupt()).map_err(|source| BeatError::Socket { server, source })?;
    info!(
        service = %hb.service, instance = %hb.instance, port = hb.port, %server,
        interval_ms = config.interval.as_millis(), ttl = hb.ttl,
        key = %config.key.as_ref().map_or("-", |k| &**k.name()),
        "beating (Ctrl-C or SIGTERM sends a final down)"
    );
    let mut ticker = tokio::time::interval(config.interval);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                match sender.send(&socket, hb).await {
                    Ok(()) => {
                        if failing {
                            info!(%server, "heartbeats are getting through again");
                        }
                        failing = false;
                        debug!(%server, "heartbeat sent");
                    }
                    Err(error) if !failing => {
                        failing = true;
                        warn!(%server, %error, "cannot send heartbeats; will keep trying");
                    }
                    Err(_) => {}
                }
            }
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
    }
    let down = Announcement {
        state: State::Down,
        ..hb.clone()
    };
    match sender.send(&socket, &down).await {
        Ok(()) => info!(service = %hb.service, instance = %hb.instance, "sent down; stopping"),
        Err(error) => {
            warn!(%server, %error, "could not send the final down; the instance expires after its ttl");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::announcement::check_instance;

    #[test]
    fn default_instance_is_a_valid_label() {
        let id = default_instance(8080);
        assert!(id.ends_with("-8080"), "{id}");
        assert_eq!(check_instance(&id).as_deref(), Ok(id.as_str()));
    }
}
