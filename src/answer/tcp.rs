//! The TCP answering loop: length-prefixed queries in, replies out.
//!
//! Takes connections from the DNS TCP listener; produces replies on the same
//! connection, in the order the queries came (RFC 7766 allows any order; in
//! order is simplest for clients that pipeline). Every query the bytes read
//! so far hold is answered before the replies go out in one write, so a
//! client that pipelines gets its replies in few segments. Common queries
//! take the fast path (one per Tokio worker thread, no locks); the rest go
//! through the general path ([`DnsHandler`]).
//!
//! What one client can hold is bounded ([`Limits`]): connections at once
//! (in all, and per address); buffered bytes per connection each way
//! (answering pauses while a client's unread replies reach the buffer, and
//! reading pauses while its unanswered queries do, so a client that
//! pipelines and never reads holds one buffer, then is closed after the
//! idle time); and time: a query must arrive whole within the message
//! timeout of its first byte (a new connection, within that time of
//! opening), and a connection silent between queries for the idle time is
//! closed. A client trickling bytes (slowloris) therefore holds a slot for
//! seconds, not forever. A connection that sends a message shorter than a
//! DNS header is closed too.
//!
//! It never touches the disk and never holds a lock: per-address counts
//! belong to the accepting task, which hears of closed connections over a
//! channel. The listener is a supervised part of the server; a panic while
//! serving one connection (a bug) ends that connection only.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_server::net::xfer::Protocol;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::fast::FastPath;
use super::handler::DnsHandler;
use crate::config::{Limits, MAX_TCP_MESSAGE};
use crate::metrics::AnswerCounters;
use crate::net::canonical_ip;
use crate::view::publish::ViewHandle;
use std::sync::Arc;

thread_local! {
    /// The fast path of this Tokio worker thread.
    static FAST: RefCell<Option<FastPath>> = const { RefCell::new(None) };
}

/// Bytes read from a socket at a time.
const READ_CHUNK: usize = 16 * 1024;

/// What every connection task shares.
#[derive(Debug, Clone)]
pub struct TcpService {
    /// The current view.
    pub views: ViewHandle,
    /// The general path.
    pub general: DnsHandler,
    /// EDNS payload size offered (also over TCP, as the general path does).
    pub max_udp_payload: u16,
    /// Whether common queries take the fast path.
    pub fast_path: bool,
    /// How long a connection may stay silent between queries.
    pub idle: Duration,
    /// Bounds on connections, buffers and the answer cache.
    pub limits: Limits,
    /// Counters of every connection's replies.
    pub counters: Arc<AnswerCounters>,
    /// dnstap, when on.
    pub tap: Option<crate::dnstap::Tap>,
}

/// Tells the accepting task, when dropped, that a connection from this
/// address closed.
struct Departure {
    address: IpAddr,
    closed: mpsc::UnboundedSender<IpAddr>,
}

impl Drop for Departure {
    fn drop(&mut self) {
        let _ = self.closed.send(self.address);
    }
}

/// Open connections: in all and per client address. Owned by the
/// accepting task alone.
#[derive(Debug, Default)]
struct Open {
    total: usize,
    per_address: HashMap<IpAddr, usize, ahash::RandomState>,
}

impl Open {
    /// Counts a new connection from `address`, if the limits allow it.
    fn admit(&mut self, address: IpAddr, limits: &Limits) -> bool {
        let mine = self.per_address.get(&address).copied().unwrap_or(0);
        if self.total >= limits.tcp_connections || mine >= limits.tcp_per_client {
            return false;
        }
        self.total += 1;
        self.per_address.insert(address, mine + 1);
        true
    }

    fn close(&mut self, address: IpAddr) {
        self.total = self.total.saturating_sub(1);
        if let Some(count) = self.per_address.get_mut(&address) {
            *count -= 1;
            if *count == 0 {
                self.per_address.remove(&address);
            }
        }
    }
}

/// Accepts connections until `shutdown` is cancelled.
pub async fn serve(listener: TcpListener, service: TcpService, shutdown: CancellationToken) {
    let mut open = Open::default();
    let (closed_tx, mut closed_rx) = mpsc::unbounded_channel();
    let mut refused: u64 = 0;
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            Some(address) = closed_rx.recv() => {
                open.close(address);
                continue;
            }
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => {
                crate::supervise::fault_point("tcp-listener");
                accepted
            }
            Err(error) => {
                // Out of file descriptors and the like: back off briefly.
                warn!(%error, "accepting a DNS TCP connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Take every close already announced before judging this one.
        while let Ok(address) = closed_rx.try_recv() {
            open.close(address);
        }
        let address = canonical_ip(peer.ip());
        if !open.admit(address, &service.limits) {
            refused += 1;
            // Logarithmic: a flood of connections cannot flood the log.
            if refused.is_power_of_two() {
                warn!(
                    %peer,
                    total = refused,
                    "closed a DNS TCP connection over --tcp-connections or --tcp-per-client"
                );
            }
            continue;
        }
        let departure = Departure {
            address,
            closed: closed_tx.clone(),
        };
        let service = service.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _departure = departure;
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = connection(stream, peer, &service) => {}
            }
        });
    }
}

/// Serves one connection until the client closes it, falls silent or slow,
/// stops reading, or sends something that is not DNS.
async fn connection(mut stream: TcpStream, peer: SocketAddr, service: &TcpService) {
    let _ = stream.set_nodelay(true);
    let limits = service.limits;
    let mut input: Vec<u8> = Vec::with_capacity(4096);
    let mut output: Vec<u8> = Vec::with_capacity(4096);
    let mut reply: Vec<u8> = Vec::with_capacity(512);
    // When the first byte of the query not yet whole came (a new
    // connection counts from its opening): it must be whole by then plus
    // the message timeout.
    let mut message_started = Some(Instant::now());
    loop {
        // Answer what is buffered, pausing once the replies fill a buffer.
        let mut at = 0;
        while output.len() < limits.tcp_buffer {
            let message = match frame(&input, at) {
                Frame::Incomplete => break,
                Frame::TooShort(len) => {
                    debug!(%peer, len, "message shorter than a DNS header; closing");
                    return;
                }
                Frame::Message(range) => {
                    at = range.end;
                    &input[range]
                }
            };
            let answered = service.fast_path && fast_answer(service, message, &mut reply);
            service.counters.fast_path(answered);
            if !answered && crate::transfer::is_transfer(message) {
                // A zone transfer: many messages, listed and encoded off
                // the answering threads while this task writes them (a
                // bounded channel: a slow reader slows the listing).
                let transfers = service.general.transfers().clone();
                let query = message.to_vec();
                let (sender, mut messages) = mpsc::channel(TRANSFER_QUEUE);
                let producer = tokio::task::spawn_blocking(move || {
                    transfers.answer_into(&query, peer, Protocol::Tcp, &mut ChannelSink(sender));
                });
                while let Some(message) = messages.recv().await {
                    let Ok(prefix) = u16::try_from(message.len()) else {
                        return;
                    };
                    output.extend_from_slice(&prefix.to_be_bytes());
                    output.extend_from_slice(&message);
                    if output.len() >= limits.tcp_buffer
                        && !flush(&mut stream, &mut output, peer, service.idle).await
                    {
                        return;
                    }
                }
                if producer.await.is_err() {
                    return;
                }
                continue;
            }
            if !answered {
                match service
                    .general
                    .answer_raw(message.to_vec(), peer, Protocol::Tcp)
                    .await
                {
                    Some(general) => reply = general,
                    None => continue,
                }
            }
            let Ok(prefix) = u16::try_from(reply.len()) else {
                continue; // cannot be framed; neither path builds one
            };
            service.counters.reply(&reply);
            if let Some(tap) = &service.tap {
                tap.record(peer, true, message, &reply);
            }
            output.extend_from_slice(&prefix.to_be_bytes());
            output.extend_from_slice(&reply);
        }
        if at > 0 {
            input.drain(..at);
            // What is left began in the latest read (or nothing is left).
            message_started = (!input.is_empty()).then(Instant::now);
        }
        if !output.is_empty() {
            if !flush(&mut stream, &mut output, peer, service.idle).await {
                return;
            }
            continue;
        }
        // Read more, never past one buffer plus one whole message.
        let room = (limits.tcp_buffer + 2 + MAX_TCP_MESSAGE).saturating_sub(input.len());
        let wait = match message_started {
            Some(started) => {
                (started + limits.tcp_message_timeout).saturating_duration_since(Instant::now())
            }
            None => service.idle,
        };
        let before = input.len();
        input.resize(before + room.min(READ_CHUNK), 0);
        let read = tokio::time::timeout(wait, stream.read(&mut input[before..])).await;
        let got = match read {
            Ok(Ok(0)) => return, // closed
            Ok(Ok(got)) => got,
            Ok(Err(error)) => {
                debug!(%peer, %error, "TCP read failed");
                return;
            }
            Err(_) => {
                debug!(
                    %peer,
                    slow = message_started.is_some(),
                    "TCP client too slow or idle too long; closing"
                );
                return;
            }
        };
        input.truncate(before + got);
        if before == 0 {
            message_started = Some(Instant::now());
        }
    }
}

/// Transfer messages built ahead of the writer, at most.
const TRANSFER_QUEUE: usize = 64;

/// Hands transfer messages from the building thread to the connection.
struct ChannelSink(mpsc::Sender<Vec<u8>>);

impl crate::transfer::Sink for ChannelSink {
    fn send(&mut self, message: Vec<u8>) -> bool {
        self.0.blocking_send(message).is_ok()
    }
}

/// Writes `output` and clears it; false when the connection is done for.
/// A client that stops reading gets the idle time to resume, then loses
/// the connection (it must not hold a task forever).
async fn flush(
    stream: &mut TcpStream,
    output: &mut Vec<u8>,
    peer: SocketAddr,
    idle: Duration,
) -> bool {
    match tokio::time::timeout(idle, stream.write_all(output)).await {
        Ok(Ok(())) => {
            output.clear();
            true
        }
        Ok(Err(error)) => {
            debug!(%peer, %error, "TCP write failed");
            false
        }
        Err(_) => {
            debug!(%peer, "TCP client stopped reading; closing");
            false
        }
    }
}

/// One step of reading DNS messages from a TCP stream (RFC 1035 4.2.2:
/// each message follows its length as two bytes, network order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A whole message at this range of the input; the next starts at its end.
    Message(std::ops::Range<usize>),
    /// The input ends before the message does: read more.
    Incomplete,
    /// A length shorter than a DNS header: the stream is not DNS.
    TooShort(usize),
}

/// The message that starts at `at` in `input`, if it is whole.
pub fn frame(input: &[u8], at: usize) -> Frame {
    let Some(head) = input.get(at..at.saturating_add(2)) else {
        return Frame::Incomplete;
    };
    let len = usize::from(u16::from_be_bytes([head[0], head[1]]));
    if len < 12 {
        return Frame::TooShort(len);
    }
    let range = at + 2..at + 2 + len;
    if range.end > input.len() {
        return Frame::Incomplete;
    }
    Frame::Message(range)
}

/// The fast path of the current worker thread, made on first use.
fn fast_answer(service: &TcpService, message: &[u8], reply: &mut Vec<u8>) -> bool {
    let view = service.views.load();
    FAST.with(|fast| {
        let mut fast = fast.borrow_mut();
        let fast = fast.get_or_insert_with(|| {
            FastPath::new(service.max_udp_payload, service.limits.answer_cache)
        });
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            fast.answer(&view, message, true, reply)
        })) {
            Ok(answered) => answered,
            Err(panic) => {
                // The cache is shared by this thread's connections and may
                // be half-updated: start it afresh, then end this connection.
                fast.clear();
                std::panic::resume_unwind(panic)
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_counted_in_all_and_per_address() {
        let limits = Limits {
            tcp_connections: 3,
            tcp_per_client: 2,
            ..Limits::default()
        };
        let (a, b, c): (IpAddr, IpAddr, IpAddr) = (
            "10.0.0.1".parse().expect("ip"),
            "10.0.0.2".parse().expect("ip"),
            "10.0.0.3".parse().expect("ip"),
        );
        let mut open = Open::default();
        assert!(open.admit(a, &limits));
        assert!(open.admit(a, &limits));
        assert!(!open.admit(a, &limits), "per address");
        assert!(open.admit(b, &limits));
        assert!(!open.admit(c, &limits), "in all");
        open.close(a);
        assert!(open.admit(c, &limits));
        open.close(a);
        open.close(b);
        open.close(c);
        assert_eq!(open.total, 0);
        assert!(open.per_address.is_empty());
    }
}
