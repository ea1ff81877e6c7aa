//! Zone transfers: AXFR (RFC 5936) and IXFR (RFC 1995) of every zone
//! served, from the change history; NOTIFY to secondaries ([`notify`]).
//!
//! Takes a transfer query (raw bytes, the client's address, the
//! transport) and the [`History`] (the newest view and the changes that
//! led to it); produces the reply messages. AXFR sends the zone as
//! queries see it (live and static data merged, TTLs as answered, every
//! RRset whole), SOA first and last, in as many messages as it takes
//! (each at most [`MAX_TRANSFER_MESSAGE`] bytes). IXFR sends the changes
//! since the client's serial as one condensed difference sequence; a
//! client that is current gets the single SOA; a serial the history does
//! not reach gets the whole zone in IXFR form (RFC 1995 §4). Over UDP,
//! IXFR gets the SOA alone (the client then asks over TCP) and AXFR is
//! refused (FORMERR: RFC 5936 defines no AXFR over UDP).
//!
//! Access: REFUSED unless the client is in `--allow-transfer`, and, with
//! `--transfer-key`, unless the query is TSIG-signed with that key; the
//! replies to a signed query are signed, every message of a transfer
//! (RFC 8945 §5.3.1). At most [`MAX_TRANSFERS`] run at once.
//!
//! It never builds a view and never reads the registry: it lists and
//! compares the views the history keeps.

pub mod notify;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use hickory_proto::ProtoError;
use hickory_proto::op::{
    Header, HeaderCounts, Message, MessageType, Metadata, OpCode, ResponseCode,
};
use hickory_proto::rr::rdata::SOA;
use hickory_proto::rr::{DNSClass, LowerName, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};
use hickory_server::net::xfer::Protocol;
use tracing::{info, warn};

use crate::config::{MAX_TRANSFER_MESSAGE, MAX_TRANSFERS, TransferConfig};
use crate::keys::Keyring;
use crate::metrics::Metrics;
use crate::net::canonical_ip;
use crate::tsig::{self, ReplySigner, Verdict};
use crate::view::history::{History, HistoryHandle, Since};

/// True when `message` is a query whose one question asks for AXFR or
/// IXFR: read from the raw bytes, so other queries pay a few byte reads.
pub fn is_transfer(message: &[u8]) -> bool {
    transfer_type(message).is_some()
}

fn transfer_type(message: &[u8]) -> Option<RecordType> {
    let header = message.get(..12)?;
    let is_query = header[2] & 0x80 == 0 && (header[2] >> 3) & 0x0f == 0;
    if !is_query || u16::from_be_bytes([header[4], header[5]]) != 1 {
        return None;
    }
    match RecordType::from(crate::metrics::question_type(message)?) {
        rtype @ (RecordType::AXFR | RecordType::IXFR) => Some(rtype),
        _ => None,
    }
}

/// Serves zone transfers.
#[derive(Debug)]
pub struct Transfers {
    config: TransferConfig,
    keyring: Arc<Keyring>,
    /// The policy after SIGHUP, whose keyring replaces `keyring`.
    policies: Option<tokio::sync::watch::Receiver<Arc<crate::auth::Policy>>>,
    /// `None` when transfers are off (nobody is allowed).
    history: Option<HistoryHandle>,
    running: AtomicUsize,
    refused: AtomicU64,
    metrics: Arc<Metrics>,
}

impl Transfers {
    /// Transfers under `config`, checking TSIG with `keyring`, from
    /// `history` (`None` when no history is kept: every transfer is
    /// refused).
    pub fn new(
        config: TransferConfig,
        keyring: Arc<Keyring>,
        history: Option<HistoryHandle>,
    ) -> Self {
        Transfers {
            config,
            keyring,
            policies: None,
            history,
            running: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
            metrics: Arc::default(),
        }
    }

    /// Counts transfers into `metrics`.
    #[must_use]
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Transfers refused to everyone, with no keys.
    pub fn off() -> Self {
        Transfers::new(
            TransferConfig::default(),
            Arc::new(Keyring::default()),
            None,
        )
    }

    /// Follows the keys SIGHUP reads again.
    #[must_use]
    pub fn with_policies(
        mut self,
        policies: tokio::sync::watch::Receiver<Arc<crate::auth::Policy>>,
    ) -> Self {
        self.policies = Some(policies);
        self
    }

    /// The keyring signed queries are checked with: the latest one read.
    pub fn keyring(&self) -> Arc<Keyring> {
        match &self.policies {
            Some(policies) => policies.borrow().shared_keyring(),
            None => self.keyring.clone(),
        }
    }

    /// The reply messages to the transfer query `bytes` from `peer` over
    /// `protocol` (one message over UDP; none for a message that is not
    /// worth answering).
    pub fn answer(&self, bytes: &[u8], peer: SocketAddr, protocol: Protocol) -> Vec<Vec<u8>> {
        let mut messages = Vec::new();
        self.answer_into(bytes, peer, protocol, &mut messages);
        messages
    }

    /// [`Transfers::answer`], handing each message to `sink` as soon as it
    /// is built (a large zone is listed, encoded and sent at once, not
    /// built whole first); stops when the sink refuses one.
    pub fn answer_into(
        &self,
        bytes: &[u8],
        peer: SocketAddr,
        protocol: Protocol,
        sink: &mut dyn Sink,
    ) {
        for message in self.reply(bytes, peer, protocol, sink) {
            if !sink.send(message) {
                return;
            }
        }
    }

    /// Checks the query and streams a transfer into `sink`; returns the
    /// reply messages still to send (a refusal, or the UDP reply).
    fn reply(
        &self,
        bytes: &[u8],
        peer: SocketAddr,
        protocol: Protocol,
        sink: &mut dyn Sink,
    ) -> Vec<Vec<u8>> {
        let Ok(request) = Message::from_vec(bytes) else {
            return Vec::new();
        };
        let Some(query) = request.queries.first() else {
            return Vec::new();
        };
        let qtype = query.query_type();
        let zone = LowerName::from(query.name());
        let refuse = |why: &str, signer: Option<ReplySigner>| {
            self.log_refusal(peer, &zone, qtype, why);
            vec![reply_with(&request, ResponseCode::Refused, signer)]
        };
        if !self.allows(peer.ip()) {
            return refuse("the client is not in --allow-transfer", None);
        }
        let now = tsig::unix_now();
        let signer = match tsig::verify(bytes, &request, &self.keyring(), now) {
            Verdict::Refused { refusal, reply } => {
                self.log_refusal(peer, &zone, qtype, &refusal.to_string());
                return vec![reply];
            }
            Verdict::Unsigned => None,
            Verdict::Signed { key, signer } => Some((key, signer)),
        };
        let signer = match (&self.config.key, signer) {
            (Some(required), Some((key, signer))) if key.name().as_ref() == required => {
                Some(signer)
            }
            (Some(required), Some((key, signer))) => {
                return refuse(
                    &format!(
                        "signed with key {}, not --transfer-key {required}",
                        key.name()
                    ),
                    Some(signer),
                );
            }
            (Some(required), None) => {
                return refuse(&format!("not signed with --transfer-key {required}"), None);
            }
            (None, signed) => signed.map(|(_, signer)| signer),
        };
        let Some(history) = self.history.as_ref().map(HistoryHandle::load) else {
            return refuse("transfers are off", signer);
        };
        if query.query_class() != DNSClass::IN || request.metadata.op_code != OpCode::Query {
            return vec![reply_with(&request, ResponseCode::Refused, signer)];
        }
        let Some(soa) = history.newest.soa_of(&zone) else {
            return vec![reply_with(&request, ResponseCode::NotAuth, signer)];
        };
        if protocol == Protocol::Udp {
            if qtype == RecordType::AXFR {
                return vec![reply_with(&request, ResponseCode::FormErr, signer)];
            }
            let mut single = Vec::new();
            let mut stream = Stream::new(&request, signer, &mut single);
            stream.push([soa]);
            stream.finish();
            return single;
        }
        let started = std::time::Instant::now();
        let Some(_slot) = Slot::take(&self.running) else {
            warn!(%peer, %zone, "refused a zone transfer: {MAX_TRANSFERS} are running");
            return vec![reply_with(&request, ResponseCode::Refused, signer)];
        };
        let client = match qtype {
            RecordType::IXFR => match client_serial(&request) {
                Some(serial) => Some(serial),
                None => return vec![reply_with(&request, ResponseCode::FormErr, signer)],
            },
            _ => None,
        };
        let signed = signer.is_some();
        let mut stream = Stream::new(&request, signer, sink);
        let mode = match client {
            Some(client_serial) => send_ixfr(&mut stream, &history, &zone, soa, client_serial),
            None => {
                send_axfr(&mut stream, &history, &zone, soa);
                "full"
            }
        };
        let sent = stream.finish();
        self.metrics.transfers.fetch_add(1, Ordering::Relaxed);
        info!(
            %peer,
            %zone,
            kind = %qtype,
            mode = %mode,
            serial = history.newest.serial,
            records = sent.records,
            messages = sent.messages,
            bytes = sent.bytes,
            signed,
            complete = sent.complete,
            took_ms = started.elapsed().as_millis(),
            "zone transfer"
        );
        Vec::new()
    }

    /// True when `address` may transfer.
    fn allows(&self, address: IpAddr) -> bool {
        let address = canonical_ip(address);
        self.config.allow.iter().any(|net| net.contains(&address))
    }

    /// Logs a refused transfer: the 1st, 2nd, 4th, 8th … (a client
    /// retrying cannot flood the log).
    fn log_refusal(&self, peer: SocketAddr, zone: &LowerName, qtype: RecordType, why: &str) {
        self.metrics
            .transfers_refused
            .fetch_add(1, Ordering::Relaxed);
        let total = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
        if total.is_power_of_two() {
            warn!(%peer, %zone, kind = %qtype, total, reason = %why, "refused a zone transfer");
        }
    }
}

/// One of the [`MAX_TRANSFERS`] transfer slots, given back when dropped.
struct Slot<'a>(&'a AtomicUsize);

impl<'a> Slot<'a> {
    fn take(running: &'a AtomicUsize) -> Option<Slot<'a>> {
        running
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_TRANSFERS).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(running))
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The serial of the SOA in the query's authority section (RFC 1995 §3).
fn client_serial(request: &Message) -> Option<u32> {
    request
        .authorities
        .iter()
        .find_map(|record| match &record.data {
            RData::SOA(soa) => Some(soa.serial),
            _ => None,
        })
}

/// The whole zone: SOA, every other record (listed name by name as it
/// goes out), SOA.
fn send_axfr(stream: &mut Stream<'_>, history: &History, zone: &LowerName, soa: Record) {
    stream.push([soa.clone()]);
    for name in history.newest.zone_names(zone).unwrap_or_default() {
        if !stream.push(history.newest.records_at(&name)) {
            return;
        }
    }
    stream.push([soa]);
}

/// What takes a secondary at `client_serial` to the newest serial; says
/// how: `current` (the SOA alone), `incremental` or `full` (the whole zone
/// in IXFR form, RFC 1995 §4).
fn send_ixfr(
    stream: &mut Stream<'_>,
    history: &History,
    zone: &LowerName,
    soa: Record,
    client_serial: u32,
) -> &'static str {
    match history.since(client_serial) {
        Since::Current => {
            stream.push([soa]);
            "current"
        }
        Since::Unknown => {
            send_axfr(stream, history, zone, soa);
            "full"
        }
        Since::Changes(delta) => {
            let in_zone = |record: &&Record| {
                let name = LowerName::from(&record.name);
                zone.zone_of(&name)
                    && history
                        .newest
                        .zones()
                        .filter(|other| zone.zone_of(other) && *other != zone)
                        .all(|inner| !inner.zone_of(&name))
            };
            let mut old_soa = soa.clone();
            if let RData::SOA(new) = &soa.data {
                old_soa.data = RData::SOA(SOA::new(
                    new.mname.clone(),
                    new.rname.clone(),
                    client_serial,
                    new.refresh,
                    new.retry,
                    new.expire,
                    new.minimum,
                ));
            }
            stream.push([soa.clone(), old_soa]);
            stream.push(delta.removed.iter().filter(in_zone).cloned());
            stream.push([soa.clone()]);
            stream.push(delta.added.iter().filter(in_zone).cloned());
            stream.push([soa]);
            "incremental"
        }
    }
}

/// Where the messages of a reply go, in order.
pub trait Sink {
    /// Takes one message; false when the client is gone (the transfer
    /// stops).
    fn send(&mut self, message: Vec<u8>) -> bool;
}

impl Sink for Vec<Vec<u8>> {
    fn send(&mut self, message: Vec<u8>) -> bool {
        self.push(message);
        true
    }
}

/// Records queued this many at a time before they are encoded.
const BATCH: usize = 1024;

/// What a transfer sent.
#[derive(Debug, Default, Clone, Copy)]
struct Sent {
    records: usize,
    messages: usize,
    bytes: usize,
    /// False when the client went away or encoding failed.
    complete: bool,
}

/// Turns records into full messages as they come, signs them and hands
/// them to the sink.
struct Stream<'a> {
    request: &'a Message,
    signer: Option<ReplySigner>,
    sink: &'a mut dyn Sink,
    pending: Vec<Record>,
    sent: Sent,
    failed: bool,
}

impl<'a> Stream<'a> {
    fn new(request: &'a Message, signer: Option<ReplySigner>, sink: &'a mut dyn Sink) -> Self {
        Stream {
            request,
            signer,
            sink,
            pending: Vec::with_capacity(BATCH),
            sent: Sent::default(),
            failed: false,
        }
    }

    /// Queues `records`; false once the transfer cannot go on.
    fn push(&mut self, records: impl IntoIterator<Item = Record>) -> bool {
        if self.failed {
            return false;
        }
        self.pending.extend(records);
        if self.pending.len() >= BATCH {
            self.flush(false);
        }
        !self.failed
    }

    /// Encodes what is queued into messages (only full ones unless `last`).
    fn flush(&mut self, last: bool) {
        let first = self.sent.messages == 0;
        let (messages, written) = match encode_messages(self.request, &self.pending, first, last) {
            Ok(encoded) => encoded,
            Err(error) => {
                warn!(%error, "a zone transfer could not be encoded");
                self.failed = true;
                if first {
                    let reply =
                        reply_with(self.request, ResponseCode::ServFail, self.signer.take());
                    self.sink.send(reply);
                }
                return;
            }
        };
        self.pending.drain(..written);
        self.sent.records += written;
        let now = tsig::unix_now();
        for mut message in messages {
            if let Some(signer) = self.signer.as_mut()
                && signer.sign(&mut message, now).is_err()
            {
                self.failed = true;
                return;
            }
            self.sent.messages += 1;
            self.sent.bytes += message.len();
            if !self.sink.send(message) {
                self.failed = true;
                return;
            }
        }
    }

    /// Sends what is left; what was sent.
    fn finish(mut self) -> Sent {
        if !self.failed {
            self.flush(true);
        }
        self.sent.complete = !self.failed;
        self.sent
    }
}

/// `records` as reply messages to `request`: the question in the first
/// message of the reply (`first`), as many whole records in each as fit
/// in [`MAX_TRANSFER_MESSAGE`] bytes (names compressed within each
/// message); a record larger than that goes alone in a larger message.
/// Unless `last`, a message that is not full is left for later: returns
/// the messages and how many records they hold.
fn encode_messages(
    request: &Message,
    records: &[Record],
    first: bool,
    last: bool,
) -> Result<(Vec<Vec<u8>>, usize), ProtoError> {
    if records.is_empty() {
        return Ok((Vec::new(), 0));
    }
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.authoritative = true;
    metadata.recursion_available = false;
    let mut messages = Vec::new();
    let mut written_in_all = 0;
    let mut rest = records;
    // Raised for one message when a record does not fit the usual size.
    let mut limit = MAX_TRANSFER_MESSAGE;
    loop {
        let with_question = first && messages.is_empty();
        let mut bytes = Vec::with_capacity(usize::from(limit));
        let mut encoder = BinEncoder::new(&mut bytes);
        encoder.set_max_size(limit);
        Header {
            metadata,
            counts: HeaderCounts::default(),
        }
        .emit(&mut encoder)?;
        if with_question {
            for query in &request.queries {
                query.emit(&mut encoder)?;
            }
        }
        let (written, full) = match encoder.emit_iter(&mut rest.iter()) {
            Ok(count) => (count, false),
            Err(ProtoError::NotAllRecordsWritten { count, .. }) => (count, true),
            Err(error) => return Err(error),
        };
        // A record that did not fit was rolled back to the offset, but its
        // bytes stay in the buffer until trimmed.
        encoder.trim();
        if written == 0 && !rest.is_empty() {
            if limit == LARGEST_TRANSFER_MESSAGE {
                return Err(ProtoError::from("a record does not fit in a message"));
            }
            limit = LARGEST_TRANSFER_MESSAGE;
            continue;
        }
        limit = MAX_TRANSFER_MESSAGE;
        if !full && !last {
            break; // not full: these records wait for more
        }
        let questions = if with_question {
            request.queries.len()
        } else {
            0
        };
        set_count(&mut bytes, 4, questions);
        set_count(&mut bytes, 6, written);
        messages.push(bytes);
        written_in_all += written;
        rest = &rest[written..];
        if rest.is_empty() {
            break;
        }
    }
    Ok((messages, written_in_all))
}

/// The largest message a transfer sends, leaving room for a TSIG record.
const LARGEST_TRANSFER_MESSAGE: u16 = u16::MAX - 512;

fn set_count(bytes: &mut [u8], at: usize, count: usize) {
    let count = u16::try_from(count).unwrap_or(u16::MAX).to_be_bytes();
    bytes[at..at + 2].copy_from_slice(&count);
}

/// A reply with `rcode` and the question only, signed when `signer` is
/// given.
fn reply_with(request: &Message, rcode: ResponseCode, signer: Option<ReplySigner>) -> Vec<u8> {
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.response_code = rcode;
    let mut reply = Message::new(metadata.id, MessageType::Response, metadata.op_code);
    reply.metadata = metadata;
    reply.queries.clone_from(&request.queries);
    let mut bytes = reply.to_vec().unwrap_or_default();
    if let Some(mut signer) = signer {
        let _ = signer.sign(&mut bytes, tsig::unix_now());
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;
    use hickory_proto::rr::Name;

    fn query(rtype: RecordType) -> Vec<u8> {
        let mut message = Message::query();
        message.add_query(Query::query(
            Name::from_ascii("svc.internal.").expect("name"),
            rtype,
        ));
        message.to_vec().expect("encode")
    }

    #[test]
    fn transfers_split_into_whole_messages_and_big_records_go_alone() {
        use hickory_proto::rr::rdata::{A, TXT};
        let request = Message::from_vec(&query(RecordType::AXFR)).expect("decode");
        let zone = Name::from_ascii("svc.internal.").expect("name");
        let mut records: Vec<Record> = (0..3000u32)
            .map(|i| {
                let name = Name::from_ascii(format!("i{i}.web.svc.internal.")).expect("name");
                Record::from_rdata(name, 5, RData::A(A::from(std::net::Ipv4Addr::from(i))))
            })
            .collect();
        let big = TXT::new(vec!["x".repeat(250); 20]);
        records.insert(1500, Record::from_rdata(zone, 5, RData::TXT(big)));
        let (messages, written) = encode_messages(&request, &records, true, true).expect("encode");
        assert_eq!(written, records.len());
        assert!(messages.len() > 10);
        let mut seen = 0;
        for (i, bytes) in messages.iter().enumerate() {
            let message = Message::from_vec(bytes).expect("every message decodes whole");
            assert_eq!(message.queries.len(), usize::from(i == 0));
            let big_one = message
                .answers
                .iter()
                .any(|r| r.record_type() == RecordType::TXT);
            assert!(big_one || bytes.len() <= usize::from(MAX_TRANSFER_MESSAGE));
            seen += message.answers.len();
        }
        assert_eq!(seen, records.len());
    }

    #[test]
    fn transfer_questions_are_told_from_the_bytes() {
        assert!(is_transfer(&query(RecordType::AXFR)));
        assert!(is_transfer(&query(RecordType::IXFR)));
        assert!(!is_transfer(&query(RecordType::SOA)));
        assert!(!is_transfer(&[0; 5]));
        let mut response = query(RecordType::AXFR);
        response[2] |= 0x80;
        assert!(!is_transfer(&response));
    }
}
