//! The TCP answering loop: length-prefixed queries in, replies out.
//!
//! Takes connections from the DNS TCP listener; produces replies on the same
//! connection, in the order the queries came (RFC 7766 allows any order; in
//! order is simplest for clients that pipeline). Every query the bytes read
//! so far hold is answered before the replies go out in one write, so a
//! client that pipelines gets its replies in few segments. Common queries
//! take the fast path (one per Tokio worker thread, no locks); the rest go
//! through the general path ([`DnsHandler`]). A connection idle for longer
//! than the configured time is closed, as is one whose client stops reading
//! replies for that long, or that sends a message shorter than a DNS header.
//!
//! It never touches the disk and never holds a lock across an await. The
//! listener is a supervised part of the server; a panic while serving one
//! connection (a bug) ends that connection only.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hickory_server::net::xfer::Protocol;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::fast::FastPath;
use super::handler::DnsHandler;
use crate::config::MAX_TCP_CONNECTIONS;
use crate::view::publish::ViewHandle;

thread_local! {
    /// The fast path of this Tokio worker thread.
    static FAST: RefCell<Option<FastPath>> = const { RefCell::new(None) };
}

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
    /// How long a connection may stay idle.
    pub idle: Duration,
}

/// Accepts connections until `shutdown` is cancelled.
pub async fn serve(listener: TcpListener, service: TcpService, shutdown: CancellationToken) {
    let open = Arc::new(AtomicUsize::new(0));
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
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
        if open.fetch_add(1, Ordering::Relaxed) >= MAX_TCP_CONNECTIONS {
            open.fetch_sub(1, Ordering::Relaxed);
            debug!(%peer, "too many TCP connections; closing the new one");
            continue;
        }
        let service = service.clone();
        let open = open.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = connection(stream, peer, &service) => {}
            }
            open.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// Serves one connection until the client closes it, it idles out, or it
/// sends something that is not DNS.
async fn connection(mut stream: TcpStream, peer: SocketAddr, service: &TcpService) {
    let _ = stream.set_nodelay(true);
    let mut input: Vec<u8> = Vec::with_capacity(4096);
    let mut output: Vec<u8> = Vec::with_capacity(4096);
    let mut reply: Vec<u8> = Vec::with_capacity(512);
    loop {
        let read = tokio::time::timeout(service.idle, stream.read_buf(&mut input)).await;
        match read {
            Ok(Ok(0)) | Err(_) => return, // closed, or idle too long
            Ok(Err(error)) => {
                debug!(%peer, %error, "TCP read failed");
                return;
            }
            Ok(Ok(_)) => {}
        }
        let mut at = 0;
        output.clear();
        while let Some(head) = input.get(at..at + 2) {
            let len = usize::from(u16::from_be_bytes([head[0], head[1]]));
            let Some(message) = input.get(at + 2..at + 2 + len) else {
                break;
            };
            at += 2 + len;
            if len < 12 {
                debug!(%peer, len, "message shorter than a DNS header; closing");
                return;
            }
            let answered = service.fast_path && fast_answer(service, message, &mut reply);
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
                continue; // cannot be framed; the general path never builds one
            };
            output.extend_from_slice(&prefix.to_be_bytes());
            output.extend_from_slice(&reply);
        }
        input.drain(..at);
        if !output.is_empty() {
            // A client that stops reading gets the idle time to resume,
            // then loses the connection (it must not hold a task forever).
            match tokio::time::timeout(service.idle, stream.write_all(&output)).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    debug!(%peer, %error, "TCP write failed");
                    return;
                }
                Err(_) => {
                    debug!(%peer, "TCP client stopped reading; closing");
                    return;
                }
            }
        }
    }
}

/// The fast path of the current worker thread, made on first use.
fn fast_answer(service: &TcpService, message: &[u8], reply: &mut Vec<u8>) -> bool {
    let view = service.views.load();
    FAST.with(|fast| {
        let mut fast = fast.borrow_mut();
        let fast = fast.get_or_insert_with(|| FastPath::new(service.max_udp_payload));
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
