//! DNS UPDATE (RFC 2136): the registry's second way in, beside heartbeats.
//!
//! Takes UPDATE messages from the answering path (raw bytes, over UDP or
//! TCP) and the client's address; checks TSIG (RFC 8945) against the same
//! keyring as signed heartbeats (as SIGHUP last read it), or, with no keys
//! configured, the client's network against `--allow-update`; reads the
//! update-lease option (RFC 9664) and grants a lease within `--min-lease`
//! and `--max-lease`; hands the message to the intake, which owns the
//! registry, maps it with [`plan`] and publishes the change before it
//! answers; produces the reply's bytes (signed when the request was, with
//! the granted lease when one was asked for). It never touches the
//! registry or a view itself, and never waits on the intake longer than
//! [`UPDATE_TIMEOUT`]; a full queue ([`UPDATE_QUEUE`]) answers SERVFAIL.

pub mod plan;

use std::net::SocketAddr;
use std::sync::Arc;

use hickory_proto::op::{Edns, Header, Message, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, warn};

use crate::auth::Policy;
use crate::config::UpdateConfig;
pub use crate::config::{UPDATE_QUEUE, UPDATE_TIMEOUT};
use crate::metrics::Metrics;
use crate::tsig::{self, Verdict};

/// The update-lease EDNS option's code (RFC 9664 §4).
const UPDATE_LEASE: u16 = 2;

/// An UPDATE that passed authentication, on its way to the intake.
#[derive(Debug)]
pub struct UpdateRequest {
    /// The decoded message.
    pub message: Message,
    /// The key that signed it (`None`: unsigned, from an allowed network).
    pub key: Option<Arc<str>>,
    /// The lease granted to the instances it registers or renews.
    pub lease: u32,
    /// Who sent it (for the audit log).
    pub src: SocketAddr,
    /// Where the intake's verdict goes.
    pub reply: oneshot::Sender<ResponseCode>,
}

/// The requested lease and key lease of an update-lease option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LeaseOption {
    lease: u32,
    key_lease: Option<u32>,
}

/// Reads the update-lease option: `Ok(None)` when absent.
fn lease_option(message: &Message) -> Result<Option<LeaseOption>, ()> {
    let Some(edns) = &message.edns else {
        return Ok(None);
    };
    match edns.option(EdnsCode::from(UPDATE_LEASE)) {
        None => Ok(None),
        Some(EdnsOption::Unknown(_, data)) => {
            let word = |at: usize| {
                data.get(at..at + 4)
                    .and_then(|b| b.try_into().ok())
                    .map(u32::from_be_bytes)
            };
            match data.len() {
                4 => Ok(Some(LeaseOption {
                    lease: word(0).ok_or(())?,
                    key_lease: None,
                })),
                8 => Ok(Some(LeaseOption {
                    lease: word(0).ok_or(())?,
                    key_lease: word(4),
                })),
                _ => Err(()),
            }
        }
        Some(_) => Err(()),
    }
}

/// Answers UPDATE messages (see the module documentation).
#[derive(Debug)]
pub struct Updates {
    config: UpdateConfig,
    policies: watch::Receiver<Arc<Policy>>,
    queue: mpsc::Sender<UpdateRequest>,
    metrics: Arc<Metrics>,
    /// When the last WARN about a turned-away UPDATE was logged (Unix
    /// seconds): at most one per [`WARN_EVERY_SECS`], DEBUG in between.
    last_warn: AtomicU64,
}

/// Shortest gap, in seconds, between WARN lines about UPDATEs turned away
/// before they reach the intake (unsigned, badly signed, queue full).
const WARN_EVERY_SECS: u64 = 10;

impl Updates {
    /// Updates under `config`, checked with the keys of `policies`,
    /// handed to the intake through `queue`.
    pub fn new(
        config: UpdateConfig,
        policies: watch::Receiver<Arc<Policy>>,
        queue: mpsc::Sender<UpdateRequest>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Updates {
            config,
            policies,
            queue,
            metrics,
            last_warn: AtomicU64::new(0),
        }
    }

    /// True when a WARN line may be logged now (see `last_warn`).
    fn may_warn(&self) -> bool {
        let now = tsig::unix_now();
        let last = self.last_warn.load(Ordering::Relaxed);
        now >= last + WARN_EVERY_SECS
            && self
                .last_warn
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    /// The reply to the UPDATE message `bytes` from `src`; `None` when
    /// nothing is worth answering (not even a header).
    pub async fn answer(&self, bytes: &[u8], src: SocketAddr) -> Option<Vec<u8>> {
        let Ok(message) = Message::from_vec(bytes) else {
            debug!(%src, "undecodable UPDATE");
            let header = Header::read(&mut BinDecoder::new(bytes)).ok()?;
            let metadata = Metadata::response_from_request(&header.metadata);
            return self.finish(error_reply(metadata, ResponseCode::FormErr), None);
        };
        let now = tsig::unix_now();
        let keyring = self.policies.borrow().shared_keyring();
        let (key, signer) = match tsig::verify(bytes, &message, &keyring, now) {
            Verdict::Refused { refusal, reply } => {
                if self.may_warn() {
                    warn!(%src, %refusal, "refused a signed UPDATE (further ones are logged at DEBUG for 10 s)");
                } else {
                    debug!(%src, %refusal, "refused a signed UPDATE");
                }
                self.metrics.update(u16::from(ResponseCode::NotAuth));
                return Some(reply);
            }
            Verdict::Signed { key, signer } => (Some(key.name().clone()), Some(signer)),
            Verdict::Unsigned => (None, None),
        };
        let mut metadata = Metadata::response_from_request(&message.metadata);
        metadata.op_code = OpCode::Update;
        if key.is_none() {
            let allowed =
                keyring.is_empty() && self.config.allow.iter().any(|net| net.contains(&src.ip()));
            if !allowed {
                let reason = if keyring.is_empty() {
                    "the client is not in --allow-update"
                } else {
                    "keys are configured: UPDATE must be TSIG-signed"
                };
                if self.may_warn() {
                    warn!(%src, reason, "refused an unsigned UPDATE (further ones are logged at DEBUG for 10 s)");
                } else {
                    debug!(%src, reason, "refused an unsigned UPDATE");
                }
                return self.finish(error_reply(metadata, ResponseCode::Refused), None);
            }
        }
        let Ok(requested) = lease_option(&message) else {
            let reply = reply(&message, metadata, ResponseCode::FormErr, None);
            return self.finish(reply, signer);
        };
        let lease = self.config.grant(requested.map(|r| r.lease));
        let (reply_tx, reply_rx) = oneshot::channel();
        let zone = message.queries.clone();
        let had_edns = message.edns.is_some();
        let request = UpdateRequest {
            message,
            key,
            lease,
            src,
            reply: reply_tx,
        };
        let rcode = if self.queue.try_send(request).is_ok() {
            match tokio::time::timeout(UPDATE_TIMEOUT, reply_rx).await {
                Ok(Ok(rcode)) => rcode,
                _ => ResponseCode::ServFail,
            }
        } else {
            if self.may_warn() {
                warn!(%src, "answered an UPDATE with SERVFAIL: {UPDATE_QUEUE} are waiting for the intake (further ones are logged at DEBUG for 10 s)");
            } else {
                debug!(%src, "UPDATE queue full");
            }
            ResponseCode::ServFail
        };
        let mut shell = Message::new(metadata.id, MessageType::Response, OpCode::Update);
        shell.queries = zone;
        let granted = requested.map(|r| LeaseOption {
            lease,
            key_lease: r.key_lease.map(|k| k.max(lease)),
        });
        let reply = reply_with(shell, metadata, rcode, granted, had_edns);
        self.finish(reply, signer)
    }

    /// Signs `reply` when the request was signed, and counts it.
    fn finish(&self, reply: Option<Vec<u8>>, signer: Option<tsig::ReplySigner>) -> Option<Vec<u8>> {
        let mut reply = reply?;
        if let Some(mut signer) = signer {
            signer.sign(&mut reply, tsig::unix_now()).ok()?;
        }
        let rcode = reply.get(3).map_or(0, |b| u16::from(b & 0x0f));
        self.metrics.update(rcode);
        Some(reply)
    }
}

/// The reply to `request` with `rcode`.
fn reply(
    request: &Message,
    metadata: Metadata,
    rcode: ResponseCode,
    granted: Option<LeaseOption>,
) -> Option<Vec<u8>> {
    let mut shell = Message::new(metadata.id, MessageType::Response, OpCode::Update);
    shell.queries = request.queries.clone();
    reply_with(shell, metadata, rcode, granted, request.edns.is_some())
}

/// `message` (the reply's zone section) as a reply with `rcode`, with an
/// OPT record when `edns` (the request had one), holding the granted lease.
fn reply_with(
    mut message: Message,
    mut metadata: Metadata,
    rcode: ResponseCode,
    granted: Option<LeaseOption>,
    edns: bool,
) -> Option<Vec<u8>> {
    metadata.response_code = rcode;
    metadata.message_type = MessageType::Response;
    metadata.op_code = OpCode::Update;
    message.metadata = metadata;
    if edns {
        let mut opt = Edns::new();
        opt.set_version(0);
        opt.set_max_payload(crate::config::DEFAULT_MAX_UDP_PAYLOAD);
        if let Some(granted) = granted.filter(|_| rcode == ResponseCode::NoError) {
            let mut data = granted.lease.to_be_bytes().to_vec();
            if let Some(key_lease) = granted.key_lease {
                data.extend_from_slice(&key_lease.to_be_bytes());
            }
            opt.options_mut()
                .insert(EdnsOption::Unknown(UPDATE_LEASE, data));
        }
        message.edns = Some(opt);
    }
    message.to_vec().ok()
}

/// A reply with no sections but the header.
fn error_reply(metadata: Metadata, rcode: ResponseCode) -> Option<Vec<u8>> {
    let mut message = Message::new(metadata.id, MessageType::Response, metadata.op_code);
    message.metadata = metadata;
    message.metadata.response_code = rcode;
    message.metadata.message_type = MessageType::Response;
    message.to_vec().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_options_read_four_or_eight_bytes() {
        let mut message = Message::query();
        assert_eq!(lease_option(&message), Ok(None));
        let mut edns = Edns::new();
        edns.options_mut()
            .insert(EdnsOption::Unknown(UPDATE_LEASE, vec![0, 0, 0x0e, 0x10]));
        message.edns = Some(edns.clone());
        assert_eq!(
            lease_option(&message),
            Ok(Some(LeaseOption {
                lease: 3600,
                key_lease: None
            }))
        );
        let mut edns = Edns::new();
        edns.options_mut().insert(EdnsOption::Unknown(
            UPDATE_LEASE,
            vec![0, 0, 0, 60, 0, 0x12, 0x75, 0],
        ));
        message.edns = Some(edns);
        assert_eq!(
            lease_option(&message),
            Ok(Some(LeaseOption {
                lease: 60,
                key_lease: Some(1_209_600)
            }))
        );
        let mut edns = Edns::new();
        edns.options_mut()
            .insert(EdnsOption::Unknown(UPDATE_LEASE, vec![0, 0, 1]));
        message.edns = Some(edns);
        assert_eq!(lease_option(&message), Err(()));
    }
}
