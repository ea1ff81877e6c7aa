//! Forwarding: questions outside our zones, relayed to configured upstreams.
//!
//! Takes the raw bytes of a client's query; produces the upstream's reply,
//! parsed by hickory-proto. Upstreams are tried in the order given; each
//! gets the query over UDP from a fresh socket with a fresh random ID (so
//! an off-path attacker must guess port and ID), and over TCP when the UDP
//! reply is truncated. Upstreams come only from `--forward`, never from the
//! system's resolv.conf (which may point at us: a loop), and only clients in
//! the allowed networks are served, so beacon is never an open resolver. It
//! never touches the view.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use hickory_proto::op::Message;
use ipnet::IpNet;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{Instant, timeout, timeout_at};

use crate::config::UPSTREAM_TIMEOUT;

/// Why no upstream answered.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// Every upstream failed or timed out; the last reason.
    #[error("no upstream answered: {0}")]
    NoAnswer(String),
}

/// The configured upstreams and who may use them.
#[derive(Debug, Clone)]
pub struct Forwarder {
    upstreams: Vec<SocketAddr>,
    allowed: Vec<IpNet>,
}

impl Forwarder {
    /// Forwards to `upstreams`, for clients in `allowed`.
    pub fn new(upstreams: Vec<SocketAddr>, allowed: Vec<IpNet>) -> Self {
        Forwarder { upstreams, allowed }
    }

    /// True when `client` may have its questions forwarded.
    pub fn allows(&self, client: IpAddr) -> bool {
        let client = crate::net::canonical_ip(client);
        self.allowed.iter().any(|net| net.contains(&client))
    }

    /// Relays `query` (a client's query, as received) and returns the reply.
    ///
    /// # Errors
    /// [`ForwardError`] when no upstream gives a usable reply in time.
    pub async fn forward(&self, query: &[u8]) -> Result<Message, ForwardError> {
        let mut last = String::from("no upstreams");
        for upstream in &self.upstreams {
            match ask(*upstream, query).await {
                Ok(reply) => return Ok(reply),
                Err(reason) => last = format!("{upstream}: {reason}"),
            }
        }
        Err(ForwardError::NoAnswer(last))
    }
}

/// Our query with a fresh ID; returns the bytes and the ID.
fn with_new_id(query: &[u8]) -> Result<(Vec<u8>, u16), String> {
    if query.len() < 12 {
        return Err("query too short".into());
    }
    let id = fastrand::u16(..);
    let mut bytes = query.to_vec();
    bytes[..2].copy_from_slice(&id.to_be_bytes());
    Ok((bytes, id))
}

async fn ask(upstream: SocketAddr, query: &[u8]) -> Result<Message, String> {
    let (bytes, id) = with_new_id(query)?;
    let local: SocketAddr = match upstream {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).await.map_err(|e| e.to_string())?;
    socket
        .send_to(&bytes, upstream)
        .await
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + UPSTREAM_TIMEOUT;
    let mut buffer = vec![0u8; 65_535];
    loop {
        let (len, from) = timeout_at(deadline, socket.recv_from(&mut buffer))
            .await
            .map_err(|_| "timed out".to_string())?
            .map_err(|e| e.to_string())?;
        // Anything not from the upstream, or not our ID, is not our reply.
        if from != upstream || len < 2 || buffer[..2] != id.to_be_bytes() {
            continue;
        }
        let reply = Message::from_vec(&buffer[..len]).map_err(|e| e.to_string())?;
        if reply.metadata.truncation {
            return ask_tcp(upstream, query).await;
        }
        return Ok(reply);
    }
}

async fn ask_tcp(upstream: SocketAddr, query: &[u8]) -> Result<Message, String> {
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
        Message::from_vec(&reply).map_err(|e| e.to_string())
    };
    timeout(UPSTREAM_TIMEOUT, exchange)
        .await
        .map_err(|_| "timed out over TCP".to_string())?
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
        );
        assert!(forwarder.allows("127.0.0.1".parse().expect("ip")));
        assert!(forwarder.allows("::1".parse().expect("ip")));
        assert!(forwarder.allows("::ffff:127.0.0.5".parse().expect("ip")));
        assert!(!forwarder.allows("10.0.0.1".parse().expect("ip")));
    }
}
