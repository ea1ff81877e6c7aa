//! dnstap (`--dnstap PATH`): every query and reply, for query logs.
//!
//! Takes each query and its reply from the answering paths (UDP and TCP,
//! fast and general); produces dnstap messages (AUTH_QUERY and
//! AUTH_RESPONSE, protobuf as in dnstap.proto) written as a
//! uni-directional Frame Streams file, what `dnstap-read` and other
//! dnstap tools read. The answering threads only hand a copy of the two
//! messages to a bounded queue ([`QUEUE`]); a thread of its own encodes
//! and writes. When the queue is full the event is dropped and counted,
//! never waited for. Off (no `--dnstap`), the answering paths skip it
//! with one branch.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{SystemTime, UNIX_EPOCH};

use prost::Message as _;
use tracing::{error, warn};

/// Events waiting for the writer, at most.
pub const QUEUE: usize = 65_536;

/// The Frame Streams content type of dnstap.
const CONTENT_TYPE: &[u8] = b"protobuf:dnstap.Dnstap";

/// dnstap.proto's `Dnstap` (the fields beacon sets).
#[derive(Clone, PartialEq, prost::Message)]
struct Dnstap {
    #[prost(bytes = "vec", optional, tag = "1")]
    identity: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "2")]
    version: Option<Vec<u8>>,
    #[prost(message, optional, tag = "14")]
    message: Option<Message>,
    /// MESSAGE = 1.
    #[prost(int32, required, tag = "15")]
    r#type: i32,
}

/// dnstap.proto's `Message` (the fields beacon sets).
#[derive(Clone, PartialEq, prost::Message)]
struct Message {
    /// AUTH_QUERY = 1, AUTH_RESPONSE = 2.
    #[prost(int32, required, tag = "1")]
    r#type: i32,
    /// INET = 1, INET6 = 2.
    #[prost(int32, optional, tag = "2")]
    socket_family: Option<i32>,
    /// UDP = 1, TCP = 2.
    #[prost(int32, optional, tag = "3")]
    socket_protocol: Option<i32>,
    #[prost(bytes = "vec", optional, tag = "4")]
    query_address: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "5")]
    response_address: Option<Vec<u8>>,
    #[prost(uint32, optional, tag = "6")]
    query_port: Option<u32>,
    #[prost(uint32, optional, tag = "7")]
    response_port: Option<u32>,
    #[prost(uint64, optional, tag = "8")]
    query_time_sec: Option<u64>,
    #[prost(fixed32, optional, tag = "9")]
    query_time_nsec: Option<u32>,
    #[prost(bytes = "vec", optional, tag = "10")]
    query_message: Option<Vec<u8>>,
    #[prost(uint64, optional, tag = "12")]
    response_time_sec: Option<u64>,
    #[prost(fixed32, optional, tag = "13")]
    response_time_nsec: Option<u32>,
    #[prost(bytes = "vec", optional, tag = "14")]
    response_message: Option<Vec<u8>>,
}

/// One answered query.
struct Event {
    client: SocketAddr,
    server: SocketAddr,
    tcp: bool,
    at: SystemTime,
    query: Vec<u8>,
    reply: Vec<u8>,
}

/// Hands answered queries to the dnstap writer; cheap to clone.
#[derive(Debug, Clone)]
pub struct Tap {
    queue: SyncSender<Event>,
    dropped: Arc<AtomicU64>,
    server: SocketAddr,
}

impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Event")
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

impl Tap {
    /// Opens `path` (created or truncated) and starts the writer thread;
    /// `server` is the DNS address events name as the responder.
    ///
    /// # Errors
    /// When the file cannot be created or the thread started.
    pub fn start(path: &Path, server: SocketAddr) -> std::io::Result<Tap> {
        let mut file = BufWriter::new(File::create(path)?);
        // Frame Streams: an escape, then a START control frame naming the
        // content type.
        let mut start = Vec::new();
        start.extend_from_slice(&2u32.to_be_bytes()); // START
        start.extend_from_slice(&1u32.to_be_bytes()); // CONTENT_TYPE field
        start.extend_from_slice(&u32::try_from(CONTENT_TYPE.len()).unwrap_or(0).to_be_bytes());
        start.extend_from_slice(CONTENT_TYPE);
        file.write_all(&0u32.to_be_bytes())?;
        file.write_all(&u32::try_from(start.len()).unwrap_or(0).to_be_bytes())?;
        file.write_all(&start)?;
        file.flush()?;
        let (queue, events) = sync_channel(QUEUE);
        let name = path.to_path_buf();
        std::thread::Builder::new()
            .name("dnstap".into())
            .spawn(move || write_loop(&name, file, &events))?;
        Ok(Tap {
            queue,
            dropped: Arc::default(),
            server,
        })
    }

    /// Records `query` from `client` and its `reply` (never waits: a full
    /// queue drops the event and counts it).
    pub fn record(&self, client: SocketAddr, tcp: bool, query: &[u8], reply: &[u8]) {
        let event = Event {
            client,
            server: self.server,
            tcp,
            at: SystemTime::now(),
            query: query.to_vec(),
            reply: reply.to_vec(),
        };
        match self.queue.try_send(event) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if dropped.is_power_of_two() {
                    warn!(
                        total = dropped,
                        "dnstap: dropped events (the writer is behind)"
                    );
                }
            }
        }
    }
}

/// The writer thread: two frames per event, flushed whenever the queue
/// runs dry; the STOP frame when every sender is gone.
fn write_loop(path: &Path, mut file: BufWriter<File>, events: &Receiver<Event>) {
    let mut failing = false;
    while let Ok(event) = events.recv() {
        let mut batch = vec![event];
        while let Ok(more) = events.try_recv() {
            batch.push(more);
            if batch.len() >= 1024 {
                break;
            }
        }
        let written: std::io::Result<()> = batch.iter().try_for_each(|event| {
            for frame in frames(event) {
                file.write_all(&u32::try_from(frame.len()).unwrap_or(0).to_be_bytes())?;
                file.write_all(&frame)?;
            }
            Ok(())
        });
        let written = written.and_then(|()| file.flush());
        match written {
            Ok(()) => failing = false,
            Err(error) if !failing => {
                error!(path = %path.display(), %error, "dnstap: cannot write");
                failing = true;
            }
            Err(_) => {}
        }
    }
    // STOP.
    let _ = file.write_all(&0u32.to_be_bytes());
    let _ = file.write_all(&4u32.to_be_bytes());
    let _ = file.write_all(&3u32.to_be_bytes());
    let _ = file.flush();
}

/// The AUTH_QUERY and AUTH_RESPONSE frames of one event.
fn frames(event: &Event) -> [Vec<u8>; 2] {
    let since = event.at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let (sec, nsec) = (since.as_secs(), since.subsec_nanos());
    let family = |ip: IpAddr| if ip.is_ipv4() { 1 } else { 2 };
    let octets = |ip: IpAddr| match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    };
    let base = Message {
        r#type: 1,
        socket_family: Some(family(event.client.ip())),
        socket_protocol: Some(if event.tcp { 2 } else { 1 }),
        query_address: Some(octets(event.client.ip())),
        response_address: Some(octets(event.server.ip())),
        query_port: Some(u32::from(event.client.port())),
        response_port: Some(u32::from(event.server.port())),
        query_time_sec: Some(sec),
        query_time_nsec: Some(nsec),
        query_message: Some(event.query.clone()),
        response_time_sec: None,
        response_time_nsec: None,
        response_message: None,
    };
    let response = Message {
        r#type: 2,
        response_time_sec: Some(sec),
        response_time_nsec: Some(nsec),
        response_message: Some(event.reply.clone()),
        ..base.clone()
    };
    [base, response].map(|message| {
        Dnstap {
            identity: Some(b"beacon".to_vec()),
            version: Some(
                concat!("beacon ", env!("CARGO_PKG_VERSION"))
                    .as_bytes()
                    .to_vec(),
            ),
            message: Some(message),
            r#type: 1,
        }
        .encode_to_vec()
    })
}
