//! Batched receive of heartbeat datagrams.
//!
//! Takes the intake's Tokio UDP socket once it is readable; produces up to
//! [`RECV_BATCH`] datagrams per `recvmmsg` call, each with its sender and
//! its real length (a datagram longer than the room is cut, but reported at
//! its full size so the intake can refuse it as oversized). It never
//! blocks: an empty socket returns `WouldBlock` through Tokio's readiness.

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg};
use tokio::io::Interest;
use tokio::net::UdpSocket;

use crate::config::MAX_HEARTBEAT_BYTES;

/// Datagrams read per `recvmmsg`.
pub const RECV_BATCH: usize = 64;

/// Room per datagram: one byte more than a heartbeat may have, so any
/// longer datagram shows as cut.
const ROOM: usize = MAX_HEARTBEAT_BYTES + 1;

/// One received datagram: its sender and its real length.
#[derive(Debug, Clone, Copy)]
pub struct Received {
    /// Full length on the wire (may exceed the bytes kept).
    pub len: usize,
    /// The sender, if the kernel gave one.
    pub from: Option<SocketAddr>,
}

/// Buffers for one batch, reused across calls. (nix's message headers
/// hold raw pointers, which are not `Send`, so they are built per call:
/// one allocation per batch, not per datagram.)
pub struct Batch {
    buffers: Vec<[u8; ROOM]>,
    received: Vec<Received>,
}

impl Default for Batch {
    fn default() -> Self {
        Batch {
            buffers: vec![[0u8; ROOM]; RECV_BATCH],
            received: Vec::with_capacity(RECV_BATCH),
        }
    }
}

impl Batch {
    /// Reads what the socket holds, up to [`RECV_BATCH`] datagrams.
    ///
    /// # Errors
    /// `WouldBlock` when nothing is queued; other socket errors as is.
    pub fn receive(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        let fd = socket.as_raw_fd();
        let Batch { buffers, received } = self;
        socket.try_io(Interest::READABLE, || {
            let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(RECV_BATCH, None);
            let mut slices: Vec<[IoSliceMut<'_>; 1]> = buffers
                .iter_mut()
                .map(|buffer| [IoSliceMut::new(&mut buffer[..])])
                .collect();
            // MSG_TRUNC: report each datagram's real length, even when cut.
            let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_TRUNC;
            let results = recvmmsg(fd, &mut headers, slices.iter_mut(), flags, None)
                .map_err(io::Error::from)?;
            received.clear();
            received.extend(results.map(|message| Received {
                len: message.bytes,
                from: message.address.as_ref().and_then(crate::net::socket_addr),
            }));
            Ok(received.len())
        })
    }

    /// Datagram `index` of the last batch: its bytes (at most the room)
    /// and what was received.
    pub fn datagram(&self, index: usize) -> (&[u8], Received) {
        let received = self.received[index];
        let kept = received.len.min(ROOM);
        (&self.buffers[index][..kept], received)
    }
}
