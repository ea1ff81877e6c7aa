//! The bridge to hickory-server: the only module that implements its traits.
//!
//! Takes each query the fast path leaves alone (raw bytes from the UDP
//! workers and TCP connections, decoded into hickory's `Request`);
//! produces the reply's bytes. Per request it loads one view snapshot,
//! checks the header (opcode, question count, EDNS version, class), calls
//! [`resolve`], makes the reply fit (see [`fit`]) and builds the message.
//! It never logs per query above DEBUG, never locks and never touches the
//! disk. Zone transfers go to [`crate::transfer`] and UPDATE messages to
//! [`crate::update`] before any of this.
//!
//! What fits: a UDP reply fits the client's EDNS payload size (clamped to
//! `--max-udp-payload`; 512 bytes without EDNS), a TCP reply 65,535 bytes.
//! When everything does not fit, the additional section goes first; if the
//! answer still does not fit, a UDP reply has TC set and no records but
//! the OPT (the client retries over TCP), and a TCP reply carries the
//! first records of the answer, in this answer's rotation order, as many
//! as fit (whole records only). Replies always carry the OPT record when
//! the query had one, with the query's DO bit copied (RFC 3225).

use std::borrow::Cow;
use std::iter;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use hickory_proto::op::{
    Edns, Header, HeaderCounts, Message, MessageType, Metadata, OpCode, ResponseCode,
};
use hickory_proto::rr::{DNSClass, Record};
use hickory_server::net::NetError;
use hickory_server::net::runtime::{Time, TokioTime};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use tracing::debug;

use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder};
use hickory_server::net::xfer::Protocol;

use super::forward::Forwarder;
use super::{Resolution, resolve};
use crate::config::MAX_TCP_MESSAGE;
use crate::transfer::{self, Transfers};
use crate::tsig::{self, Verdict};
use crate::update::Updates;
use crate::view::publish::ViewHandle;

/// Answers queries from the current view, and forwards the rest when
/// upstreams are configured.
#[derive(Debug, Clone)]
pub struct DnsHandler {
    views: ViewHandle,
    forwarder: Option<Forwarder>,
    max_udp_payload: u16,
    transfers: Arc<Transfers>,
    /// DNS UPDATE, when the server takes it (`None`: NOTIMP).
    updates: Option<Arc<Updates>>,
}

impl DnsHandler {
    /// A handler serving whatever `views` holds at the time of each query,
    /// offering UDP clients at most `max_udp_payload` bytes.
    pub fn new(
        views: ViewHandle,
        forwarder: Option<Forwarder>,
        max_udp_payload: u16,
        transfers: Arc<Transfers>,
    ) -> Self {
        DnsHandler {
            views,
            forwarder,
            max_udp_payload,
            transfers,
            updates: None,
        }
    }

    /// Takes DNS UPDATE messages to `updates`.
    #[must_use]
    pub fn with_updates(mut self, updates: Arc<Updates>) -> Self {
        self.updates = Some(updates);
        self
    }

    /// Zone transfers (AXFR and IXFR questions over TCP go there).
    pub fn transfers(&self) -> &Arc<Transfers> {
        &self.transfers
    }
}

impl DnsHandler {
    /// Answers one raw message (a UDP datagram, or a TCP message without
    /// its length prefix) through the general path: the same handling
    /// hickory-server's own loops give it (responses are ignored,
    /// undecodable queries get FORMERR), for the queries the fast path
    /// leaves to us. `None` means no reply is sent.
    pub async fn answer_raw(
        &self,
        bytes: Vec<u8>,
        src: SocketAddr,
        protocol: Protocol,
    ) -> Option<Vec<u8>> {
        crate::supervise::fault_point("general");
        let header = Header::read(&mut BinDecoder::new(&bytes)).ok()?;
        if header.metadata.message_type == MessageType::Response {
            // Never answer a response: that is how reflection loops start.
            return None;
        }
        if transfer::is_transfer(&bytes) {
            // Over TCP the connection streams every message; here (UDP)
            // there is one.
            return self
                .transfers
                .answer(&bytes, src, protocol)
                .into_iter()
                .next();
        }
        if header.metadata.op_code == OpCode::Update
            && let Some(updates) = &self.updates
        {
            return updates.answer(&bytes, src).await;
        }
        let capture = Capture::default();
        let mut signer = None;
        match Request::from_bytes(bytes, src, protocol) {
            Ok(request) => {
                // A TSIG-signed query (a secondary's SOA check) is checked,
                // and its reply signed with the same key. Only signed
                // queries are decoded a second time, as TSIG needs.
                if request.signature.is_some() {
                    let message = Message::from_vec(request.as_slice()).ok()?;
                    let keyring = self.transfers.keyring();
                    match tsig::verify(request.as_slice(), &message, &keyring, tsig::unix_now()) {
                        Verdict::Unsigned => {}
                        Verdict::Signed { signer: s, .. } => signer = Some(s),
                        Verdict::Refused { refusal, reply } => {
                            debug!(%src, %refusal, "refused a signed query");
                            return Some(reply);
                        }
                    }
                }
                self.handle_request::<_, TokioTime>(&request, capture.clone())
                    .await;
            }
            Err(error) => {
                debug!(%src, %error, "undecodable query");
                let mut metadata = Metadata::response_from_request(&header.metadata);
                metadata.response_code = ResponseCode::FormErr;
                let mut message =
                    Message::new(metadata.id, MessageType::Response, metadata.op_code);
                message.metadata = metadata;
                return message.to_vec().ok();
            }
        }
        let mut reply = capture.0.get().cloned()?;
        if let Some(mut signer) = signer
            && signer.sign(&mut reply, tsig::unix_now()).is_err()
        {
            return None;
        }
        Some(reply)
    }
}

/// A response handler that keeps the encoded reply instead of sending it.
#[derive(Clone, Default)]
struct Capture(Arc<OnceLock<Vec<u8>>>);

#[async_trait::async_trait]
impl ResponseHandler for Capture {
    async fn send_response<'a>(
        &mut self,
        response: hickory_server::zone_handler::MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        let mut bytes = Vec::with_capacity(512);
        // `fit` has already made the reply fit the client's payload size.
        let info = response.destructive_emit(&mut BinEncoder::new(&mut bytes))?;
        let _ = self.0.set(bytes);
        Ok(info)
    }
}

/// The OPT record of a reply: version 0, the client's payload size clamped
/// to `512..=max`, the client's DO bit (RFC 3225: copied, although our
/// zones are unsigned), no options.
fn reply_edns(request: &Request, max: u16) -> Option<Edns> {
    request.edns.as_ref().map(|client| {
        let mut edns = Edns::new();
        edns.set_version(0);
        edns.set_max_payload(client.max_payload().clamp(512, max));
        edns.set_dnssec_ok(client.flags().dnssec_ok);
        edns
    })
}

/// What to say before looking at the zone, if the header alone decides it.
fn header_rcode(request: &Request) -> Option<ResponseCode> {
    if request.metadata.op_code != OpCode::Query {
        return Some(ResponseCode::NotImp);
    }
    if request.queries.len() != 1 {
        return Some(ResponseCode::FormErr);
    }
    if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
        return Some(ResponseCode::BADVERS);
    }
    None
}

#[async_trait::async_trait]
impl RequestHandler for DnsHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let edns = reply_edns(request, self.max_udp_payload);
        let builder = MessageResponseBuilder::new(&request.queries, edns.as_ref());
        let mut metadata = Metadata::response_from_request(&request.metadata);

        if let Some(rcode) = header_rcode(request) {
            debug!(src = %request.src(), %rcode, "refusing request by its header");
            metadata.response_code = rcode;
            let response = builder.build_no_records(metadata);
            return send(&mut response_handle, response, metadata).await;
        }
        let query = &request.queries.queries()[0];
        if query.query_class() != DNSClass::IN {
            metadata.response_code = ResponseCode::Refused;
            let response = builder.build_no_records(metadata);
            return send(&mut response_handle, response, metadata).await;
        }

        let view = self.views.load();
        let mut resolution = resolve(&view, query.name(), query.query_type());
        // Names outside our zones: forward, for allowed clients asking for
        // recursion; the reply's records live in `upstream`.
        let upstream = match &self.forwarder {
            Some(forwarder)
                if resolution.outside_zones
                    && request.metadata.recursion_desired
                    && forwarder.allows(request.src().ip()) =>
            {
                match forwarder
                    .forward(request.as_slice(), query.original())
                    .await
                {
                    Ok(reply) => Some(reply),
                    Err(error) => {
                        debug!(%error, "forwarding failed");
                        metadata.response_code = ResponseCode::ServFail;
                        metadata.recursion_available = true;
                        let response = builder.build_no_records(metadata);
                        return send(&mut response_handle, response, metadata).await;
                    }
                }
            }
            _ => None,
        };
        if let Some(reply) = &upstream {
            metadata.recursion_available = true;
            resolution = Resolution {
                rcode: reply.metadata.response_code,
                authoritative: false,
                answers: reply.answers.iter().map(Cow::Borrowed).collect(),
                authorities: reply.authorities.iter().map(Cow::Borrowed).collect(),
                additionals: reply.additionals.iter().map(Cow::Borrowed).collect(),
                outside_zones: true,
                ..Resolution::default()
            };
        }
        metadata.response_code = resolution.rcode;
        metadata.authoritative = resolution.authoritative;
        match fit(request, edns.as_ref(), metadata, &resolution) {
            Fit::All => {}
            // RFC 2181 §9: additional data is optional; leave it out
            // rather than set TC.
            Fit::WithoutAdditionals => resolution.additionals.clear(),
            // Over TCP there is nowhere else to go: the first records, in
            // this answer's rotation order, so load still spreads.
            Fit::FirstAnswers(count) => {
                resolution.answers.truncate(count);
                resolution.additionals.clear();
            }
            // Not even the answer fits: TC with no records (never a partial
            // RRset) but with the OPT record, so the client retries over TCP
            // knowing our EDNS support.
            Fit::Nothing => {
                metadata.truncation = true;
                let response = builder.build_no_records(metadata);
                return send(&mut response_handle, response, metadata).await;
            }
        }
        let response = builder.build(
            metadata,
            resolution.answers.iter().map(AsRef::as_ref),
            resolution.authorities.iter().map(AsRef::as_ref),
            iter::empty(),
            resolution.additionals.iter().map(AsRef::as_ref),
        );
        send(&mut response_handle, response, metadata).await
    }
}

/// How much of a resolution fits in one reply.
#[derive(Debug, PartialEq, Eq)]
enum Fit {
    /// Everything.
    All,
    /// Everything but the additional section.
    WithoutAdditionals,
    /// Over TCP: this many answer records, the authority section, no
    /// additional section.
    FirstAnswers(usize),
    /// Nothing: TC, no records but the OPT.
    Nothing,
}

/// Decides what fits the reply's size limit: the client's EDNS size (as
/// clamped) or 512 bytes over UDP, 65,535 bytes over TCP. Trial replies
/// are encoded exactly as the real one will be.
fn fit(
    request: &Request,
    edns: Option<&Edns>,
    metadata: Metadata,
    resolution: &Resolution<'_>,
) -> Fit {
    let over_udp = request.protocol() == Protocol::Udp;
    let limit = if over_udp {
        edns.map_or(512, Edns::max_payload)
    } else {
        u16::try_from(MAX_TCP_MESSAGE).unwrap_or(u16::MAX)
    };
    let fits = |answers: usize, additionals: usize| {
        let mut buffer = Vec::with_capacity(usize::from(limit).min(4096));
        let mut encoder = BinEncoder::new(&mut buffer);
        encoder.set_max_size(limit);
        let trial = MessageResponseBuilder::new(&request.queries, edns).build(
            metadata,
            resolution.answers[..answers].iter().map(AsRef::as_ref),
            resolution.authorities.iter().map(AsRef::as_ref),
            iter::empty(),
            resolution.additionals[..additionals]
                .iter()
                .map(AsRef::as_ref),
        );
        trial
            .destructive_emit(&mut encoder)
            .is_ok_and(|info| !info.truncation)
    };
    let answers = resolution.answers.len();
    if fits(answers, resolution.additionals.len()) {
        return Fit::All;
    }
    if !resolution.additionals.is_empty() && fits(answers, 0) {
        return Fit::WithoutAdditionals;
    }
    if over_udp {
        return Fit::Nothing;
    }
    // The estimate is exact but for the authority section's compression;
    // step back in the rare case it was too kind.
    let mut count = answers_that_fit(request, edns, resolution, usize::from(limit));
    while count > 0 && !fits(count, 0) {
        count -= 1;
    }
    if count == 0 {
        Fit::Nothing
    } else {
        Fit::FirstAnswers(count)
    }
}

/// How many of the resolution's answer records, from the first, fit in
/// `limit` bytes with the header, the question, the authority section
/// (counted uncompressed) and the OPT record: one encoding pass, reading
/// the length after each record.
fn answers_that_fit(
    request: &Request,
    edns: Option<&Edns>,
    resolution: &Resolution<'_>,
    limit: usize,
) -> usize {
    let mut reserve = edns.map_or(0, |_| 11);
    for record in &resolution.authorities {
        let mut alone = Vec::new();
        let mut encoder = BinEncoder::new(&mut alone);
        if record.emit(&mut encoder).is_err() {
            return 0;
        }
        reserve += alone.len();
    }
    let mut buffer = Vec::with_capacity(limit);
    let mut encoder = BinEncoder::new(&mut buffer);
    if encoder.emit_vec(&[0; 12]).is_err() {
        return 0;
    }
    for query in request.queries.queries() {
        if query.original().emit(&mut encoder).is_err() {
            return 0;
        }
    }
    let mut count = 0;
    for record in &resolution.answers {
        if record.emit(&mut encoder).is_err() || encoder.len() + reserve > limit {
            break;
        }
        count += 1;
    }
    count
}

/// Sends `response`; on failure reports SERVFAIL to hickory's bookkeeping
/// (the client gets nothing, as with any lost datagram).
async fn send<'a, R: ResponseHandler>(
    handle: &mut R,
    response: hickory_server::zone_handler::MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
    >,
    mut metadata: Metadata,
) -> ResponseInfo {
    match handle.send_response(response).await {
        Ok(info) => info,
        Err(error) => {
            debug!(%error, "could not send a reply");
            metadata.response_code = ResponseCode::ServFail;
            ResponseInfo::from(Header {
                metadata,
                counts: HeaderCounts::default(),
            })
        }
    }
}
