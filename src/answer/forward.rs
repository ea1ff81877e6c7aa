//! Forwarding: questions outside our zones, relayed to configured upstreams.
//!
//! Takes the raw bytes of a client's query and its question; produces the
//! upstream's reply, parsed by hickory-proto. Upstreams are tried in the
//! order given; each gets the query over UDP from a fresh socket on a
//! random port with a random ID, both drawn from a cryptographic generator
//! (so an off-path attacker must guess 32 bits at once), and over TCP when
//! the UDP reply is truncated. A reply is taken only from the upstream's
//! address, with our ID and our question; anything else is dropped and
//! counted. Upstreams come only from `--forward`, never from the system's
//! resolv.conf (which may point at us: a loop), and only clients in the
//! allowed networks are served, so beacon is never an open resolver. It
//! never touches the view.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use hickory_proto::op::{Message, Query};
use ipnet::IpNet;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio::time::{Instant, timeout, timeout_at};

use crate::config::UPSTREAM_TIMEOUT;

/// Why no upstream answered.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// Every upstream failed or timed out; the last reason.
    #[error("no upstream answered: {0}")]
    NoAnswer(String),
    /// As many forwards as `--forward-concurrency` allows are waiting.
    #[error("too many forwarded queries waiting (--forward-concurrency)")]
    Busy,
}

/// The configured upstreams and who may use them.
#[derive(Debug, Clone)]
pub struct Forwarder {
    upstreams: Vec<SocketAddr>,
    allowed: Vec<IpNet>,
    /// Replies with our ID from the upstream's address that answered
    /// another question: spoofing attempts, or a confused upstream.
    mismatched: Arc<AtomicU64>,
    /// Forwards and failures, for `/metrics`.
    metrics: Arc<crate::metrics::Metrics>,
    /// One permit per forward that may wait for an upstream at once (each
    /// holds a socket and a task): a silent upstream cannot make the
    /// server hold file descriptors and memory without end.
    waiting: Arc<Semaphore>,
    /// Queries refused a permit.
    busy: Arc<AtomicU64>,
}

impl Forwarder {
    /// Forwards to `upstreams`, for clients in `allowed`, at most
    /// `concurrency` queries at once.
    pub fn new(upstreams: Vec<SocketAddr>, allowed: Vec<IpNet>, concurrency: usize) -> Self {
        Forwarder {
            upstreams,
            allowed,
            mismatched: Arc::default(),
            metrics: Arc::default(),
            waiting: Arc::new(Semaphore::new(concurrency)),
            busy: Arc::default(),
        }
    }

    /// Counts a dropped reply; logs at WARN on the 1st, 2nd, 4th, 8th …
    /// so that a flood of them cannot flood the log.
    fn count_mismatch(&self, upstream: SocketAddr) {
        let total = self.mismatched.fetch_add(1, Ordering::Relaxed) + 1;
        if total.is_power_of_two() {
            tracing::warn!(
                %upstream,
                total,
                "dropped a forwarded reply whose question is not the one asked (spoofed, or a confused upstream)"
            );
        }
    }

    /// True when `client` may have its questions forwarded.
    pub fn allows(&self, client: IpAddr) -> bool {
        let client = crate::net::canonical_ip(client);
        self.allowed.iter().any(|net| net.contains(&client))
    }

    /// Relays `query` (a client's query, as received, asking `question`)
    /// and returns the reply.
    ///
    /// # Errors
    /// [`ForwardError`] when no upstream gives a usable reply in time.
    pub async fn forward(&self, query: &[u8], question: &Query) -> Result<Message, ForwardError> {
        self.metrics.forwarded.fetch_add(1, Ordering::Relaxed);
        let result = self.forward_to_any(query, question).await;
        if result.is_err() {
            self.metrics
                .upstream_failures
                .fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// Counts forwards and failures into `metrics`.
    #[must_use]
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    async fn forward_to_any(
        &self,
        query: &[u8],
        question: &Query,
    ) -> Result<Message, ForwardError> {
        let Ok(_permit) = self.waiting.try_acquire() else {
            let busy = self.busy.fetch_add(1, Ordering::Relaxed) + 1;
            // Logarithmic: a flood cannot flood the log.
            if busy.is_power_of_two() {
                tracing::warn!(total = busy, "{}", ForwardError::Busy);
            }
            return Err(ForwardError::Busy);
        };
        let mut last = String::from("no upstreams");
        for upstream in &self.upstreams {
            match self.ask(*upstream, query, question).await {
                Ok(reply) => return Ok(reply),
                Err(reason) => last = format!("{upstream}: {reason}"),
            }
        }
        Err(ForwardError::NoAnswer(last))
    }

    /// True when `reply` answers `question`; counts it when not.
    fn answers(&self, reply: &Message, question: &Query, upstream: SocketAddr) -> bool {
        let ours = matches!(reply.queries.as_slice(), [asked]
            if asked.name() == question.name()
                && asked.query_type() == question.query_type()
                && asked.query_class() == question.query_class());
        if !ours {
            self.count_mismatch(upstream);
        }
        ours
    }

    async fn ask(
        &self,
        upstream: SocketAddr,
        query: &[u8],
        question: &Query,
    ) -> Result<Message, String> {
        let (bytes, id) = with_new_id(query)?;
        let socket = bind_random_port(upstream).await?;
        socket
            .send_to(&bytes, upstream)
            .await
            .map_err(|e| e.to_string())?;
        let deadline = Instant::now() + UPSTREAM_TIMEOUT;
        let mut buffer = vec![0u8; UDP_REPLY_ROOM];
        loop {
            let (len, from) = timeout_at(deadline, socket.recv_from(&mut buffer))
                .await
                .map_err(|_| "timed out".to_string())?
                .map_err(|e| e.to_string())?;
            // Anything not from the upstream, or not our ID, is not our reply.
            if from != upstream || len < 2 || buffer[..2] != id.to_be_bytes() {
                continue;
            }
            if len == buffer.len() {
                // Perhaps cut short: fetch the whole reply over TCP.
                return self.ask_tcp(upstream, query, question).await;
            }
            let Ok(reply) = Message::from_vec(&buffer[..len]) else {
                continue;
            };
            if !self.answers(&reply, question, upstream) {
                continue;
            }
            if reply.metadata.truncation {
                return self.ask_tcp(upstream, query, question).await;
            }
            return Ok(reply);
        }
    }

    async fn ask_tcp(
        &self,
        upstream: SocketAddr,
        query: &[u8],
        question: &Query,
    ) -> Result<Message, String> {
        let (bytes, id) = with_new_id(query)?;
        let exchange = async {
            let mut stream = TcpStream::connect(upstream)
                .await
                .map_err(|e| e.to_string())?;
            let len = u16::try_from(bytes.len()).map_err(|_| "query too long".to_string())?;
            stream
                .write_all(&len.to_be_bytes())
                .await
                .map_err(|e| e.to_string())?;
            stream.write_all(&bytes).await.map_err(|e| e.to_string())?;
            let mut len = [0u8; 2];
            stream
                .read_exact(&mut len)
                .await
                .map_err(|e| e.to_string())?;
            let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
            stream
                .read_exact(&mut reply)
                .await
                .map_err(|e| e.to_string())?;
            if reply.len() < 2 || reply[..2] != id.to_be_bytes() {
                return Err("reply with a different ID".to_string());
            }
            let reply = Message::from_vec(&reply).map_err(|e| e.to_string())?;
            if !self.answers(&reply, question, upstream) {
                return Err("reply to another question".to_string());
            }
            Ok(reply)
        };
        timeout(UPSTREAM_TIMEOUT, exchange)
            .await
            .map_err(|_| "timed out over TCP".to_string())?
    }
}

/// Our query with a fresh ID from a cryptographic generator; returns the
/// bytes and the ID.
fn with_new_id(query: &[u8]) -> Result<(Vec<u8>, u16), String> {
    if query.len() < 12 {
        return Err("query too short".into());
    }
    let id: u16 = rand::random();
    let mut bytes = query.to_vec();
    bytes[..2].copy_from_slice(&id.to_be_bytes());
    Ok((bytes, id))
}

/// Room for an upstream's UDP reply. A reply that fills it may have been
/// cut, and is fetched again over TCP; most replies are far smaller, and
/// each forward waiting holds this much.
const UDP_REPLY_ROOM: usize = 4096;

/// Source ports drawn for forwarded queries: above the privileged ones.
const SOURCE_PORTS: std::ops::RangeInclusive<u16> = 1024..=65_535;

/// A UDP socket towards `upstream` on a port drawn from a cryptographic
/// generator (a few tries, since a drawn port may be taken; then one the
/// kernel picks).
async fn bind_random_port(upstream: SocketAddr) -> Result<UdpSocket, String> {
    let any: IpAddr = match upstream {
        SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    for _ in 0..8 {
        let port = rand::random_range(SOURCE_PORTS);
        if let Ok(socket) = UdpSocket::bind((any, port)).await {
            return Ok(socket);
        }
    }
    UdpSocket::bind((any, 0)).await.map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_allowed_networks_are_served() {
        let forwarder = Forwarder::new(
            vec![],
            vec![
                "127.0.0.0/8".parse().expect("net"),
                "::1/128".parse().expect("net"),
            ],
            1,
        );
        assert!(forwarder.allows("127.0.0.1".parse().expect("ip")));
        assert!(forwarder.allows("::1".parse().expect("ip")));
        assert!(forwarder.allows("::ffff:127.0.0.5".parse().expect("ip")));
        assert!(!forwarder.allows("10.0.0.1".parse().expect("ip")));
    }
}
