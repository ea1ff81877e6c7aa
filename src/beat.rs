//! `beacon beat`: announce one instance by sending heartbeats.
//!
//! Takes a validated [`Announcement`] and where to send it; produces a datagram
//! every interval until stopped. On Ctrl-C or SIGTERM it sends a final
//! `state=down`, so the instance leaves the answers at once instead of when
//! its lease runs out. With a key, every heartbeat (the final `down`
//! included) is signed, each with a later timestamp than the one before.
//! It never waits for replies: heartbeats are fire-and-forget, and a
//! server that is down simply misses some.

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::net::UdpSocket;
use tokio::signal::unix::{SignalKind, signal};
use tracing::{debug, info, warn};

use crate::intake::wire;
use crate::keys::Key;
use crate::probe::{self, Health, Probe};
use crate::registry::announcement::{Announcement, State};

/// What `beacon beat` does.
#[derive(Debug, Clone)]
pub struct BeatConfig {
    /// The heartbeat to send (its state is the state of every beat but the last).
    pub heartbeat: Announcement,
    /// The servers' heartbeat addresses: each gets every heartbeat.
    pub servers: Vec<Target>,
    /// Time between heartbeats.
    pub interval: Duration,
    /// Send one heartbeat and exit.
    pub once: bool,
    /// Sign every heartbeat with this key.
    pub key: Option<Arc<Key>>,
    /// Health probes, and what a failing instance announces.
    pub checks: Checks,
}

/// Health probes (none: the instance is announced as configured).
#[derive(Debug, Clone)]
pub struct Checks {
    /// Every probe must pass.
    pub probes: Vec<Probe>,
    /// Time between rounds.
    pub interval: Duration,
    /// Time one probe may take.
    pub timeout: Duration,
    /// Failed rounds in a row that make the instance unhealthy.
    pub failures: u32,
    /// Passed rounds in a row that make it healthy again.
    pub successes: u32,
    /// `drain` or `down`: what an unhealthy instance announces.
    pub on_failure: State,
}

/// A server to beat to: `HOST:PORT`, where HOST is an address or a name
/// looked up again before every heartbeat (every address it has gets the
/// heartbeat), so adding a server to a name needs no change here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    host: String,
    port: u16,
}

impl Target {
    /// Parses `HOST:PORT` (`[v6]:PORT` for an IPv6 address).
    ///
    /// # Errors
    /// A message saying what is wrong.
    pub fn parse(text: &str) -> Result<Target, String> {
        if let Ok(addr) = text.parse::<SocketAddr>() {
            return Ok(Target::from(addr));
        }
        let (host, port) = text
            .rsplit_once(':')
            .ok_or_else(|| format!("`{text}` has no port: give HOST:PORT"))?;
        let port: u16 = port
            .parse()
            .map_err(|_| format!("`{port}` in `{text}` is not a port"))?;
        let valid = !host.is_empty()
            && host.len() <= 253
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
        if !valid || port == 0 {
            return Err(format!(
                "`{text}` is not HOST:PORT (an address, [IPv6]:PORT, or a host name)"
            ));
        }
        Ok(Target {
            host: host.to_string(),
            port,
        })
    }

    /// Its addresses now (a name is looked up again at each call).
    async fn resolve(&self) -> io::Result<Vec<SocketAddr>> {
        if let Ok(ip) = self.host.parse::<std::net::IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, self.port)]);
        }
        Ok(tokio::net::lookup_host((self.host.as_str(), self.port))
            .await?
            .collect())
    }
}

impl From<SocketAddr> for Target {
    fn from(addr: SocketAddr) -> Self {
        Target {
            host: addr.ip().to_string(),
            port: addr.port(),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Why beating failed.
#[derive(Debug, thiserror::Error)]
pub enum BeatError {
    /// The local socket could not be set up.
    #[error("cannot open a UDP socket: {0}")]
    Socket(io::Error),
    /// The single heartbeat of `--once` reached no server.
    #[error("cannot send the heartbeat: {0}")]
    Send(String),
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

/// Encodes heartbeats, signing them when a key is given, and sends each
/// to every address of every server.
struct Sender {
    key: Option<Arc<Key>>,
    /// The last timestamp sent: each is later than the one before, even
    /// if the clock steps back or two beats share a millisecond.
    last_ts: u64,
    servers: Vec<Target>,
    v4: UdpSocket,
    /// `None` where the host has no IPv6.
    v6: Option<UdpSocket>,
    /// Per server: the last failure logged, so a failing server is
    /// logged when it starts and stops failing, not at every beat.
    failing: Vec<Option<String>>,
}

impl Sender {
    async fn new(servers: Vec<Target>, key: Option<Arc<Key>>) -> Result<Sender, BeatError> {
        let v4 = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
            .await
            .map_err(BeatError::Socket)?;
        let v6 = UdpSocket::bind((Ipv6Addr::UNSPECIFIED, 0)).await.ok();
        Ok(Sender {
            key,
            last_ts: 0,
            failing: vec![None; servers.len()],
            servers,
            v4,
            v6,
        })
    }

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

    /// Sends `hb` to every address of every server (names looked up
    /// now); returns how many addresses it reached and the problems.
    async fn send(&mut self, hb: &Announcement) -> (usize, Vec<String>) {
        let datagram = self.encode(hb);
        let mut reached = 0;
        let mut problems = Vec::new();
        for (i, server) in self.servers.iter().enumerate() {
            let outcome = match server.resolve().await {
                Ok(addrs) if addrs.is_empty() => Err(format!("{server}: the name has no address")),
                Ok(addrs) => {
                    let mut sent = 0;
                    let mut last_error = None;
                    for addr in &addrs {
                        let socket = match addr {
                            SocketAddr::V4(_) => Some(&self.v4),
                            SocketAddr::V6(_) => self.v6.as_ref(),
                        };
                        let result = match socket {
                            Some(socket) => socket.send_to(datagram.as_bytes(), addr).await,
                            None => Err(io::Error::other("no IPv6 on this host")),
                        };
                        match result {
                            Ok(_) => sent += 1,
                            Err(error) => last_error = Some(format!("{addr}: {error}")),
                        }
                    }
                    reached += sent;
                    match last_error {
                        Some(error) => Err(format!("{server}: {error}")),
                        None => {
                            debug!(%server, addresses = sent, "heartbeat sent");
                            Ok(())
                        }
                    }
                }
                Err(error) => Err(format!("{server}: cannot look the name up: {error}")),
            };
            match outcome {
                Ok(()) => {
                    if self.failing[i].take().is_some() {
                        info!(%server, "heartbeats are getting through again");
                    }
                }
                Err(problem) => {
                    if self.failing[i].is_none() {
                        warn!(problem = %problem, "cannot send heartbeats; will keep trying");
                    }
                    self.failing[i] = Some(problem.clone());
                    problems.push(problem);
                }
            }
        }
        (reached, problems)
    }
}

/// Sends heartbeats until Ctrl-C or SIGTERM (or once, with `--once`).
///
/// # Errors
/// [`BeatError`] when no socket can be opened, or when the only heartbeat of
/// `--once` reaches no server. Send errors while beating are logged and
/// retried at the next interval, since a server may come back.
pub async fn run(config: BeatConfig) -> Result<(), BeatError> {
    let hb = &config.heartbeat;
    let servers = config
        .servers
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let mut sender = Sender::new(config.servers.clone(), config.key.clone()).await?;
    let key = config.key.as_ref().map_or("-", |k| &**k.name()).to_string();

    if config.once {
        let (reached, problems) = sender.send(hb).await;
        if reached == 0 {
            return Err(BeatError::Send(problems.join("; ")));
        }
        info!(service = %hb.service, instance = %hb.instance, state = hb.state.as_str(), server = %servers, key = %key, "sent one heartbeat");
        return Ok(());
    }

    let mut terminate = signal(SignalKind::terminate()).map_err(BeatError::Socket)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(BeatError::Socket)?;
    info!(
        service = %hb.service, instance = %hb.instance, port = hb.port, server = %servers,
        interval_ms = config.interval.as_millis(), ttl = hb.ttl,
        key = %key,
        "beating (Ctrl-C or SIGTERM sends a final down)"
    );
    let mut ticker = tokio::time::interval(config.interval);
    let checks = &config.checks;
    let mut probing = tokio::time::interval(checks.interval);
    let mut health = Health::new(checks.failures, checks.successes);
    // What the instance announces now: as configured, or the failure
    // state while its probes fail.
    let mut announced = hb.clone();
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                sender.send(&announced).await;
            }
            _ = probing.tick(), if !checks.probes.is_empty() => {
                let result = probe::round(&checks.probes, checks.timeout).await;
                if health.record(result.is_ok()) {
                    announced.state = if health.healthy() { hb.state } else { checks.on_failure };
                    match &result {
                        Ok(()) => info!(service = %hb.service, instance = %hb.instance, state = announced.state.as_str(), "health probes pass again; announcing at once"),
                        Err(why) => warn!(service = %hb.service, instance = %hb.instance, state = announced.state.as_str(), problem = %why, "health probes fail; announcing at once"),
                    }
                    sender.send(&announced).await;
                    ticker.reset();
                } else if let Err(why) = &result {
                    debug!(problem = %why, "a health probe failed");
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
    let (reached, problems) = sender.send(&down).await;
    if reached > 0 {
        info!(service = %hb.service, instance = %hb.instance, "sent down; stopping");
    } else {
        warn!(problems = %problems.join("; "), "could not send the final down; the instance expires after its ttl");
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

    #[test]
    fn targets_are_addresses_or_names_with_a_port() {
        assert_eq!(
            Target::parse("127.0.0.1:5301").map(|t| t.to_string()),
            Ok("127.0.0.1:5301".to_string())
        );
        assert_eq!(
            Target::parse("[::1]:5301").map(|t| t.to_string()),
            Ok("[::1]:5301".to_string())
        );
        assert_eq!(
            Target::parse("beacon.svc.internal:5301").map(|t| t.to_string()),
            Ok("beacon.svc.internal:5301".to_string())
        );
        for bad in [
            "beacon",
            "beacon:",
            "beacon:0",
            ":5301",
            "be acon:5301",
            "::1:99999",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }
}
