//! Pre-encoded answers: the fast path for UDP and TCP queries.
//!
//! Takes one raw query and the current [`View`]; produces the reply's
//! bytes when the query has the common shape, or `false` to leave it to
//! the general path ([`super::handler`]). The common shape: a standard
//! query with one question of class IN, no EDNS or EDNS version 0 (the DO
//! bit is copied into the reply, as RFC 3225 asks; our zones are unsigned),
//! for a name in our zones whose answer is one plain RRset (rotated as
//! usual) or a negative answer (NXDOMAIN, NODATA). Everything else (ANY,
//! CNAME chains, referrals, forwarding, EDNS options it does not know,
//! odd headers) stays on the general path, which gives the same answers
//! more slowly.
//!
//! The records come from the general path's own `resolve`, encoded by
//! hickory-proto, and are kept per worker thread in a hash map keyed by the
//! lower-cased wire name and type. Each entry carries the view's stamp of
//! what it was built from and is rebuilt only when the view says it no
//! longer holds, so a heartbeat that changes one service costs the cache
//! that service's answers, not all of them. A reply is then the query's
//! header and question (echoed byte for byte, so the client's letter case
//! survives) followed by copies of those bytes in this answer's rotation
//! order. Owner names (and PTR targets) are compressed against the
//! question, whose position never changes, so the pieces can be put in any
//! order.
//!
//! It applies the same size rules as the general path: `--max-answers`
//! cuts A, AAAA and SRV answers to a rotated window; a reply that does not
//! fit loses its glue first, then a UDP reply is truncated (TC, no records
//! but the OPT) and a TCP reply carries as many records as fit, in this
//! answer's rotation order.
//!
//! It never locks, never waits, never touches the disk and, on a hit, never
//! allocates (except for RFC 2782 weighted ordering). The rotation cursor is
//! the RRset's own, shared with the general path.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::NameEncoding;
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder};

use super::rotate::{Ranked, order_by};
use super::{direct_node, glue, resolve_in_order};
use crate::config::MAX_TCP_MESSAGE;
use crate::fragments::compact::wire_name_len;
use crate::view::{AnswerStamp, Cursor, Policy, View};

/// Header length, and where the question (and so its name) starts.
const HEADER_LEN: usize = 12;

/// The EDNS OPT record type.
const OPT: u16 = 41;

/// The EDNS Client Subnet option, which hickory parses (and may reject).
const OPTION_CLIENT_SUBNET: u16 = 8;

/// A query parsed just far enough to answer it.
struct Parsed {
    /// Length of the question section (name, type, class).
    question_len: usize,
    /// The question type.
    qtype: u16,
    /// The client's EDNS, if it sent any.
    edns: Option<ClientEdns>,
}

/// What the fast path reads from a client's OPT record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ClientEdns {
    /// The payload size offered.
    payload: u16,
    /// The DO bit.
    dnssec_ok: bool,
}

/// Parses `datagram` if it has the fast path's shape, writing the
/// lower-cased question name and type to `key`.
fn parse(datagram: &[u8], key: &mut Vec<u8>) -> Option<Parsed> {
    let header = datagram.get(..HEADER_LEN)?;
    // QR clear, opcode QUERY, TC clear.
    if header[2] & 0xFA != 0 {
        return None;
    }
    let count = |at: usize| u16::from_be_bytes([header[at], header[at + 1]]);
    let additionals = count(10);
    if count(4) != 1 || count(6) != 0 || count(8) != 0 || additionals > 1 {
        return None;
    }
    // The name: plain labels (queries never compress), at most 255 bytes.
    let mut at = HEADER_LEN;
    loop {
        let len = usize::from(*datagram.get(at)?);
        if len == 0 {
            at += 1;
            break;
        }
        if len > 63 {
            return None;
        }
        at += len + 1;
        if at - HEADER_LEN > 254 {
            return None;
        }
    }
    let fixed = datagram.get(at..at + 4)?;
    let qtype = u16::from_be_bytes([fixed[0], fixed[1]]);
    if u16::from_be_bytes([fixed[2], fixed[3]]) != 1 {
        return None; // not class IN
    }
    let question_end = at + 4;
    let edns = if additionals == 1 {
        Some(parse_opt(datagram.get(question_end..)?)?)
    } else if datagram.len() == question_end {
        None
    } else {
        return None; // trailing bytes
    };
    key.clear();
    // Length bytes are below 64, so lower-casing leaves them alone.
    key.extend(datagram[HEADER_LEN..at].iter().map(u8::to_ascii_lowercase));
    key.extend_from_slice(&fixed[..2]);
    Some(Parsed {
        question_len: question_end - HEADER_LEN,
        qtype,
        edns,
    })
}

/// Parses an OPT record that is all that is left of the query: version 0,
/// extended rcode 0, only the DO flag, options well formed and none the
/// general path would act on.
fn parse_opt(record: &[u8]) -> Option<ClientEdns> {
    let fixed = record.get(..11)?;
    if fixed[0] != 0 || u16::from_be_bytes([fixed[1], fixed[2]]) != OPT {
        return None;
    }
    // Extended rcode, version, then the flags: DO (the top bit) alone.
    if fixed[5] != 0 || fixed[6] != 0 || fixed[7] & 0x7F != 0 || fixed[8] != 0 {
        return None;
    }
    let payload = u16::from_be_bytes([fixed[3], fixed[4]]);
    let rdlen = usize::from(u16::from_be_bytes([fixed[9], fixed[10]]));
    let mut options = record.get(11..)?;
    if options.len() != rdlen {
        return None;
    }
    while !options.is_empty() {
        let head = options.get(..4)?;
        let code = u16::from_be_bytes([head[0], head[1]]);
        let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
        if code == OPTION_CLIENT_SUBNET {
            return None;
        }
        options = options.get(4 + len..)?;
    }
    Some(ClientEdns {
        payload,
        dnssec_ok: fixed[7] & 0x80 != 0,
    })
}

/// One member of an RRset, encoded: where its answer record lies in the
/// entry's bytes, and its glue right after it. 16 bytes, since a big RRset
/// has one per member in every worker's cache.
#[derive(Debug)]
struct EncodedMember {
    answer_start: u32,
    answer_len: u16,
    glue_len: u16,
    glue_count: u16,
    priority: u16,
    weight: u16,
}

impl EncodedMember {
    fn answer(&self) -> Range<usize> {
        let start = self.answer_start as usize;
        start..start + usize::from(self.answer_len)
    }

    fn glue(&self) -> Range<usize> {
        let start = self.answer().end;
        start..start + usize::from(self.glue_len)
    }
}

impl Ranked for EncodedMember {
    fn priority(&self) -> u16 {
        self.priority
    }
    fn weight(&self) -> u16 {
        self.weight
    }
}

/// The answer to one name and type, ready to copy into replies.
#[derive(Debug)]
struct Encoded {
    authoritative: bool,
    rcode: u8,
    policy: Policy,
    cursor: Cursor,
    /// True for A, AAAA and SRV, which `--max-answers` caps.
    capped: bool,
    members: Vec<EncodedMember>,
    authority: Range<usize>,
    authority_count: u16,
    /// Bytes of every member's answer record, and of every member's glue,
    /// and how many glue records there are.
    answers_len: usize,
    glue_len: usize,
    glue_count: usize,
    /// True when some glue was looked up at other names.
    looked_up: bool,
    bytes: Vec<u8>,
}

/// What one cache entry costs: its key, its encoded bytes and member
/// table, and the map slot holding it all (with the table's control byte
/// and the allocator's headers, rounded up).
fn entry_cost(key_len: usize, entry: &Entry) -> usize {
    const SLOT: usize = std::mem::size_of::<(Box<[u8]>, (AnswerStamp, Entry, u32))>() + 48;
    SLOT + key_len
        + match entry {
            Entry::Ready(encoded) => {
                encoded.bytes.len() + encoded.members.len() * std::mem::size_of::<EncodedMember>()
            }
            Entry::General | Entry::Outside => 0,
        }
}

/// What the cache knows about a name and type.
#[derive(Debug)]
enum Entry {
    /// The general path answers it.
    General,
    /// A name outside our zones (refused or forwarded by the general
    /// path): not kept, so a stream of distinct outside names (a
    /// forwarding flood) costs the cache nothing.
    Outside,
    /// Pre-encoded.
    Ready(Encoded),
}

/// The fast path of one worker thread: its cache of pre-encoded answers.
/// Entries outlive views: each is checked against the view of the query
/// and rebuilt only when the part of the zone it came from changed, so a
/// heartbeat that changes one service leaves every other answer cached.
#[derive(Debug)]
pub struct FastPath {
    /// Entries with what they came from and the serial of the last view
    /// they were found valid for (checking again is needed only when the
    /// view changed).
    cache: HashMap<Box<[u8]>, (AnswerStamp, Entry, u32), ahash::RandomState>,
    cached_bytes: usize,
    /// What the cache may hold, in bytes as [`entry_cost`] counts them.
    max_bytes: usize,
    max_udp_payload: u16,
    key: Vec<u8>,
}

impl FastPath {
    /// A fast path offering UDP clients at most `max_udp_payload` bytes and
    /// keeping at most `max_bytes` of pre-encoded answers.
    pub fn new(max_udp_payload: u16, max_bytes: usize) -> Self {
        FastPath {
            cache: HashMap::default(),
            cached_bytes: 0,
            max_bytes,
            max_udp_payload,
            key: Vec::with_capacity(260),
        }
    }

    /// Empties the cache (after a panic left it in doubt, or when full),
    /// giving its memory back.
    pub fn clear(&mut self) {
        self.cache = HashMap::default();
        self.cached_bytes = 0;
    }

    /// What the cache holds now, in bytes as [`entry_cost`] counts them.
    pub fn cached_bytes(&self) -> usize {
        self.cached_bytes
    }

    /// Writes the reply to `datagram` (a query received over UDP, or over
    /// TCP if `over_tcp`) from `view` into `out` and returns true, or
    /// returns false to leave the query to the general path.
    pub fn answer(
        &mut self,
        view: &Arc<View>,
        datagram: &[u8],
        over_tcp: bool,
        out: &mut Vec<u8>,
    ) -> bool {
        // While the first load runs, negative answers are SERVFAIL: the
        // general path's rule.
        if view.statics.is_loading() {
            return false;
        }
        let Some(query) = parse(datagram, &mut self.key) else {
            return false;
        };
        crate::supervise::fault_point("answer");
        // ANY, zone transfers, meta types: the general path.
        if matches!(query.qtype, 41 | 249..=255) {
            return false;
        }
        let fresh = match self.cache.get_mut(self.key.as_slice()) {
            Some((_, _, checked)) if *checked == view.serial => true,
            Some((stamp, _, checked)) if view.still_holds(stamp) => {
                *checked = view.serial;
                true
            }
            _ => false,
        };
        if !fresh {
            let (stamp, entry) = encode(view, &self.key, query.qtype);
            if matches!(entry, Entry::Outside) {
                return false;
            }
            let cost = entry_cost(self.key.len(), &entry);
            if self.cached_bytes + cost > self.max_bytes {
                // Start over (dropping the table too): a flood of distinct
                // names costs at most the cap, and what is asked often
                // comes back at once.
                self.clear();
            }
            self.cached_bytes += cost;
            let replaced = self.cache.insert(
                self.key.clone().into_boxed_slice(),
                (stamp, entry, view.serial),
            );
            if let Some((_, old, _)) = replaced {
                self.cached_bytes = self
                    .cached_bytes
                    .saturating_sub(entry_cost(self.key.len(), &old));
            }
        }
        let Some((_, Entry::Ready(encoded), _)) = self.cache.get(self.key.as_slice()) else {
            return false;
        };
        // The OPT record offers the same size over both transports; only
        // UDP replies must fit in it.
        let opt = query.edns.map(|edns| ClientEdns {
            payload: edns.payload.clamp(512, self.max_udp_payload),
            dnssec_ok: edns.dnssec_ok,
        });
        let limit = match (over_tcp, opt) {
            (true, _) => MAX_TCP_MESSAGE,
            (false, Some(opt)) => usize::from(opt.payload),
            (false, None) => 512,
        };
        let reply = Reply {
            datagram,
            question_end: HEADER_LEN + query.question_len,
            opt,
            limit,
            over_tcp,
        };
        let cap = view.max_answers.filter(|_| encoded.capped);
        reply.assemble(encoded, cap, out);
        true
    }
}

/// A truncated, empty reply to `datagram` (a query of the fast path's
/// shape): the query's header with QR and TC set, its question, and an
/// OPT record offering `max_udp_payload` if the query had one. What rate
/// limiting sends instead of a reply (a slip); false for a query of
/// another shape (then nothing is sent).
pub fn slip_reply(datagram: &[u8], max_udp_payload: u16, out: &mut Vec<u8>) -> bool {
    let mut key = Vec::new();
    let Some(query) = parse(datagram, &mut key) else {
        return false;
    };
    let question_end = HEADER_LEN + query.question_len;
    out.clear();
    out.extend_from_slice(&datagram[..2]);
    // QR and TC; RD and CD copied; NOERROR.
    out.push(0x80 | 0x02 | (datagram[2] & 0x01));
    out.push(datagram[3] & 0x10);
    let arcount = u16::from(query.edns.is_some());
    for count in [1, 0, 0, arcount] {
        out.extend_from_slice(&count.to_be_bytes());
    }
    out.extend_from_slice(&datagram[HEADER_LEN..question_end]);
    if let Some(edns) = query.edns {
        out.extend_from_slice(&[0, 0, 41]);
        out.extend_from_slice(&edns.payload.clamp(512, max_udp_payload).to_be_bytes());
        out.extend_from_slice(&[0, 0, if edns.dnssec_ok { 0x80 } else { 0 }, 0, 0, 0]);
    }
    true
}

/// Which members one reply lists, in order: a rotation of all of them
/// (round-robin, or fixed with offset 0), or an explicit RFC 2782 order.
enum Order<'e> {
    Rotated { offset: usize, count: usize },
    Listed(Vec<&'e EncodedMember>),
}

impl<'e> Order<'e> {
    /// This reply's order of the first `count` of `encoded`'s members
    /// (only those are ordered).
    fn of(encoded: &'e Encoded, count: usize) -> Order<'e> {
        let n = encoded.members.len();
        match encoded.policy {
            Policy::Fixed | Policy::RoundRobin => {
                let offset = if n == 0 { 0 } else { encoded.cursor.next() % n };
                Order::Rotated { offset, count }
            }
            Policy::Weighted => Order::Listed(order_by(
                &encoded.members,
                encoded.policy,
                encoded.cursor.next(),
                count,
            )),
        }
    }

    /// Calls `visit` with the first `take` members in order.
    fn visit(
        &self,
        all: &'e [EncodedMember],
        take: usize,
        mut visit: impl FnMut(&'e EncodedMember),
    ) {
        match self {
            Order::Rotated { offset, count } => {
                let n = all.len();
                for i in (0..(*count).min(take)).map(|i| (offset + i) % n.max(1)) {
                    visit(&all[i]);
                }
            }
            Order::Listed(order) => order.iter().take(take).for_each(|m| visit(m)),
        }
    }
}

/// One reply being put together: the query it answers and its size limit.
struct Reply<'q> {
    datagram: &'q [u8],
    question_end: usize,
    /// The reply's OPT: the client's DO bit, our payload size.
    opt: Option<ClientEdns>,
    limit: usize,
    over_tcp: bool,
}

impl Reply<'_> {
    /// Writes the reply from `encoded` into `out`: everything if it fits,
    /// else without glue, else (UDP) truncated or (TCP) the first records.
    /// Members are ordered only when the reply lists them: with the whole
    /// set chosen, the sizes are known beforehand, and a UDP reply that
    /// will be truncated orders nothing.
    fn assemble(&self, encoded: &Encoded, cap: Option<usize>, out: &mut Vec<u8>) {
        let all = &encoded.members;
        let chosen = cap.map_or(all.len(), |cap| cap.min(all.len()));
        let fixed = self.question_end + self.opt.map_or(0, |_| 11) + encoded.authority.len();
        let whole_set = chosen == all.len();
        if whole_set && !self.over_tcp && fixed + encoded.answers_len > self.limit {
            self.truncated(encoded, out);
            return;
        }
        let order = Order::of(encoded, chosen);
        let (answers_len, glue_len, glue_count) = if whole_set {
            (encoded.answers_len, encoded.glue_len, encoded.glue_count)
        } else {
            let (mut answers, mut glue, mut count) = (0, 0, 0);
            order.visit(all, chosen, |m| {
                answers += usize::from(m.answer_len);
                glue += usize::from(m.glue_len);
                count += usize::from(m.glue_count);
            });
            (answers, glue, count)
        };
        if fixed + answers_len + glue_len <= self.limit {
            self.write(encoded, &order, chosen, Some(glue_count), out);
        } else if fixed + answers_len <= self.limit {
            // RFC 2181 §9: additional data is optional.
            self.write(encoded, &order, chosen, None, out);
        } else if !self.over_tcp {
            self.truncated(encoded, out);
        } else {
            let mut room = self.limit.saturating_sub(fixed);
            let mut fitting = 0;
            order.visit(all, chosen, |m| {
                let len = usize::from(m.answer_len);
                if len <= room && room > 0 {
                    room -= len;
                    fitting += 1;
                } else {
                    room = 0;
                }
            });
            if fitting == 0 {
                self.truncated(encoded, out);
            } else {
                self.write(encoded, &order, fitting, None, out);
            }
        }
    }

    /// The header: the query's ID, QR, AA as resolved, TC if asked, RD and
    /// CD copied, the rcode, and the section counts.
    fn header(&self, encoded: &Encoded, truncated: bool, counts: [usize; 3], out: &mut Vec<u8>) {
        let query = self.datagram;
        out.clear();
        out.extend_from_slice(&query[..2]);
        out.push(
            0x80 | if encoded.authoritative { 0x04 } else { 0 }
                | if truncated { 0x02 } else { 0 }
                | (query[2] & 0x01),
        );
        out.push((query[3] & 0x10) | encoded.rcode);
        let opt = usize::from(self.opt.is_some());
        for count in [1, counts[0], counts[1], counts[2] + opt] {
            out.extend_from_slice(&u16::try_from(count).unwrap_or(u16::MAX).to_be_bytes());
        }
        out.extend_from_slice(&query[HEADER_LEN..self.question_end]);
    }

    /// The OPT record, if the query had one: root owner, our payload size,
    /// version 0, the client's DO bit, no options.
    fn opt(&self, out: &mut Vec<u8>) {
        if let Some(opt) = self.opt {
            out.extend_from_slice(&[0, 0, 41]);
            out.extend_from_slice(&opt.payload.to_be_bytes());
            out.extend_from_slice(&[0, 0, if opt.dnssec_ok { 0x80 } else { 0 }, 0, 0, 0]);
        }
    }

    /// A reply with the first `take` members of `order`, the authority
    /// section, and the members' glue when `glue_count` says there is room.
    fn write(
        &self,
        encoded: &Encoded,
        order: &Order<'_>,
        take: usize,
        glue_count: Option<usize>,
        out: &mut Vec<u8>,
    ) {
        let counts = [
            take,
            usize::from(encoded.authority_count),
            glue_count.unwrap_or(0),
        ];
        self.header(encoded, false, counts, out);
        let bytes = &encoded.bytes;
        order.visit(&encoded.members, take, |m| {
            out.extend_from_slice(&bytes[m.answer()]);
        });
        out.extend_from_slice(&bytes[encoded.authority.clone()]);
        if glue_count.is_some() {
            order.visit(&encoded.members, take, |m| {
                out.extend_from_slice(&bytes[m.glue()]);
            });
        }
        self.opt(out);
    }

    /// TC, no records but the OPT: the client should ask over TCP.
    fn truncated(&self, encoded: &Encoded, out: &mut Vec<u8>) {
        self.header(encoded, true, [0, 0, 0], out);
        self.opt(out);
    }
}

/// Resolves `key` (lower-cased wire name and type) through the general
/// path's `resolve` and encodes the result, if it has a shape the fast
/// path serves, with what the view says the answer depends on.
fn encode(view: &View, key: &[u8], qtype: u16) -> (AnswerStamp, Entry) {
    let wire_name = &key[..key.len() - 2];
    let Ok(name) = Name::read(&mut BinDecoder::new(wire_name)) else {
        return (AnswerStamp::for_view(view), Entry::General);
    };
    let qname = LowerName::from(&name);
    let entry = encode_entry(view, &qname, wire_name, qtype);
    // Positive answers with no data looked up at other names may outlive
    // this view; the view says for how long.
    let self_contained = matches!(
        &entry,
        Entry::Ready(encoded) if !encoded.members.is_empty() && !encoded.looked_up
    );
    (view.stamp(&qname, self_contained), entry)
}

/// Encodes the answer to `qname`/`qtype`, if the fast path serves it.
fn encode_entry(view: &View, qname: &LowerName, wire_name: &[u8], qtype: u16) -> Entry {
    let rtype = RecordType::from(qtype);
    let resolution = resolve_in_order(view, qname, rtype, true);
    if resolution.outside_zones {
        return Entry::Outside;
    }
    let rcode = match resolution.rcode {
        ResponseCode::NoError => 0,
        ResponseCode::NXDomain => 3,
        _ => return Entry::General,
    };
    if !resolution.authoritative {
        return Entry::General;
    }
    let mut encoded = Encoded {
        authoritative: true,
        rcode,
        policy: Policy::Fixed,
        cursor: Cursor::default(),
        capped: crate::view::rotates(rtype),
        members: Vec::new(),
        authority: 0..0,
        authority_count: 0,
        answers_len: 0,
        glue_len: 0,
        glue_count: 0,
        looked_up: false,
        bytes: Vec::with_capacity(256),
    };
    let bytes = &mut encoded.bytes;
    if resolution.answers.is_empty() {
        if !resolution.additionals.is_empty() {
            return Entry::General;
        }
        for record in &resolution.authorities {
            if encode_record(record, wire_name, bytes).is_none() {
                return Entry::General;
            }
        }
        encoded.authority = 0..bytes.len();
        encoded.authority_count = u16::try_from(resolution.authorities.len()).unwrap_or(0);
    } else {
        // A plain answer: every record from the one RRset at the name.
        let Some(node) = direct_node(view, qname) else {
            return Entry::General;
        };
        let Some(set) = node.rrset(rtype) else {
            return Entry::General;
        };
        let plain = resolution.authorities.is_empty()
            && resolution.answers.len() == set.members.len()
            && resolution
                .answers
                .iter()
                .all(|r| r.record_type() == rtype && LowerName::from(&r.name) == *qname);
        if !plain {
            return Entry::General;
        }
        let mut glue_records = Vec::new();
        encoded.members.reserve_exact(set.members.len());
        for member in &set.members {
            let start = bytes.len();
            if encode_record(&member.record, wire_name, bytes).is_none() {
                return Entry::General;
            }
            let answer_end = bytes.len();
            glue_records.clear();
            glue(member, view, &mut glue_records);
            // Glue found at answer time lives in other names, maybe other
            // parts of the zone: such an answer is good for one view only.
            encoded.looked_up |= member.glue.is_empty()
                && match member.record.data {
                    RData::SRV(_) | RData::MX(_) | RData::NS(_) => true,
                    RData::PTR(_) => !view.is_type_list(qname),
                    _ => false,
                };
            for record in &glue_records {
                if encode_record(record, wire_name, bytes).is_none() {
                    return Entry::General;
                }
            }
            // A record, or one member's glue, longer than a message cannot
            // be sent anyway; such odd data goes to the general path.
            let (Ok(answer_start), Ok(answer_len), Ok(glue_len), Ok(glue_count)) = (
                u32::try_from(start),
                u16::try_from(answer_end - start),
                u16::try_from(bytes.len() - answer_end),
                u16::try_from(glue_records.len()),
            ) else {
                return Entry::General;
            };
            encoded.answers_len += usize::from(answer_len);
            encoded.glue_len += usize::from(glue_len);
            encoded.glue_count += usize::from(glue_count);
            encoded.members.push(EncodedMember {
                answer_start,
                answer_len,
                glue_len,
                glue_count,
                priority: member.priority,
                weight: member.weight,
            });
        }
        encoded.authority = bytes.len()..bytes.len();
        encoded.policy = set.policy;
        encoded.cursor = set.cursor.clone();
    }
    // Entries live long and there may be many: no spare capacity.
    encoded.bytes.shrink_to_fit();
    Entry::Ready(encoded)
}

/// Appends `record` to `out`: as hickory-proto encodes it without
/// compression, except that the owner name, and a PTR record's target, are
/// compressed against the question name (`question`, lower-cased wire form
/// at offset 12 of every reply), the one name whose place never changes.
fn encode_record(record: &Record, question: &[u8], out: &mut Vec<u8>) -> Option<()> {
    let mut wire = Vec::with_capacity(64);
    let mut encoder = BinEncoder::new(&mut wire);
    encoder.set_name_encoding(NameEncoding::Uncompressed);
    record.emit(&mut encoder).ok()?;
    let owner_len = wire_name_len(&wire)?;
    compress_against(&wire[..owner_len], question, out)?;
    let fixed = wire.get(owner_len..owner_len + 10)?;
    if record.record_type() != RecordType::PTR {
        out.extend_from_slice(&wire[owner_len..]);
        return Some(());
    }
    // TYPE, CLASS, TTL; then RDLENGTH for the compressed target.
    out.extend_from_slice(&fixed[..8]);
    let target = wire.get(owner_len + 10..)?;
    let mut rdata = Vec::with_capacity(target.len());
    compress_against(target, question, &mut rdata)?;
    out.extend_from_slice(&u16::try_from(rdata.len()).ok()?.to_be_bytes());
    out.extend_from_slice(&rdata);
    Some(())
}

/// Appends the uncompressed wire name `name`, its longest suffix that
/// ends the question replaced by a pointer into the question.
fn compress_against(name: &[u8], question: &[u8], out: &mut Vec<u8>) -> Option<()> {
    let boundaries = label_starts(question);
    let mut at = 0;
    loop {
        let suffix = name.get(at..)?;
        if suffix.len() > 1 && suffix.len() <= question.len() {
            let start = question.len() - suffix.len();
            if boundaries.contains(&start) && question[start..].eq_ignore_ascii_case(suffix) {
                out.extend_from_slice(&name[..at]);
                let pointer = 0xC000 | u16::try_from(HEADER_LEN + start).ok()?;
                out.extend_from_slice(&pointer.to_be_bytes());
                return Some(());
            }
        }
        let len = usize::from(*name.get(at)?);
        if len == 0 {
            out.extend_from_slice(name);
            return Some(());
        }
        at += len + 1;
    }
}

/// Offsets where each label of the wire name `name` starts.
fn label_starts(name: &[u8]) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut at = 0;
    while let Some(&len) = name.get(at) {
        if len == 0 {
            break;
        }
        starts.push(at);
        at += usize::from(len) + 1;
    }
    starts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, qtype: u16, extra: &[u8], arcount: u16) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0];
        q.extend_from_slice(&arcount.to_be_bytes());
        for label in name.split('.').filter(|l| !l.is_empty()) {
            q.push(u8::try_from(label.len()).unwrap_or(0));
            q.extend_from_slice(label.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&[0, 1]);
        q.extend_from_slice(extra);
        q
    }

    const OPT_1232: [u8; 11] = [0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0];

    #[test]
    fn common_queries_parse_and_lower_case_the_key() {
        let mut key = Vec::new();
        let parsed = parse(&query("Web.SVC.internal.", 1, &[], 0), &mut key).expect("parses");
        assert_eq!(parsed.qtype, 1);
        assert_eq!(parsed.edns, None);
        assert_eq!(&key[..4], b"\x03web");
        let parsed = parse(&query("web.svc.internal.", 33, &OPT_1232, 1), &mut key).expect("edns");
        assert_eq!(
            parsed.edns,
            Some(ClientEdns {
                payload: 1232,
                dnssec_ok: false
            })
        );
        let mut do_bit = OPT_1232;
        do_bit[7] = 0x80;
        let parsed = parse(&query("web.svc.internal.", 1, &do_bit, 1), &mut key).expect("DO");
        assert!(parsed.edns.is_some_and(|edns| edns.dnssec_ok));
    }

    #[test]
    fn rare_shapes_are_left_to_the_general_path() {
        let mut key = Vec::new();
        let mut other_flag = OPT_1232;
        other_flag[8] = 0x01;
        let mut version1 = OPT_1232;
        version1[6] = 1;
        let mut response = query("a.", 1, &[], 0);
        response[2] |= 0x80;
        let mut notify = query("a.", 1, &[], 0);
        notify[2] = 4 << 3;
        let mut chaos = query("a.", 1, &[], 0);
        let len = chaos.len();
        chaos[len - 1] = 3;
        let mut subnet = OPT_1232.to_vec();
        subnet[10] = 8;
        subnet.extend_from_slice(&[0, 8, 0, 4, 0, 1, 0, 0]);
        for (what, datagram) in [
            ("an unknown EDNS flag", query("a.", 1, &other_flag, 1)),
            ("EDNS version 1", query("a.", 1, &version1, 1)),
            ("a response", response),
            ("NOTIFY", notify),
            ("class CH", chaos),
            ("client subnet", query("a.", 1, &subnet, 1)),
            ("trailing bytes", query("a.", 1, &[0], 0)),
            ("missing OPT", query("a.", 1, &[], 1)),
            ("short", vec![0; 11]),
        ] {
            assert!(parse(&datagram, &mut key).is_none(), "{what}");
        }
    }

    /// A view with one service of three instances, as a test's server.
    fn view_with_web() -> Arc<View> {
        use crate::registry::Registry;
        use crate::registry::announcement::Announcement;
        use crate::view::StaticZone;
        use crate::view::publish::Publisher;
        let zone = Name::from_ascii("svc.internal.").expect("zone");
        let config = Arc::new(crate::config::ServeConfig::new(zone));
        let mut registry = Registry::new(100, Vec::new());
        for i in 1..=3 {
            let mut hb = Announcement::new("web", &format!("w{i}"), 80);
            hb.addr = Some(std::net::IpAddr::from([10, 0, 0, i]));
            registry.apply(
                hb,
                std::net::IpAddr::from([10, 0, 0, i]),
                tokio::time::Instant::now(),
            );
        }
        Publisher::new(config, &registry, Arc::new(StaticZone::default()))
            .handle()
            .load()
    }

    #[test]
    fn do_queries_take_the_fast_path_with_do_copied() {
        let view = view_with_web();
        let mut fast = FastPath::new(1232, 1 << 20);
        let mut do_bit = OPT_1232;
        do_bit[7] = 0x80;
        let mut out = Vec::new();
        let datagram = query("web.svc.internal.", 1, &do_bit, 1);
        assert!(fast.answer(&view, &datagram, false, &mut out));
        let reply = hickory_proto::op::Message::from_vec(&out).expect("decodes");
        assert_eq!(reply.answers.len(), 3);
        assert!(reply.edns.expect("OPT").flags().dnssec_ok);
        // Without DO, none comes back.
        let datagram = query("web.svc.internal.", 1, &OPT_1232, 1);
        assert!(fast.answer(&view, &datagram, false, &mut out));
        let reply = hickory_proto::op::Message::from_vec(&out).expect("decodes");
        assert!(!reply.edns.expect("OPT").flags().dnssec_ok);
    }

    #[test]
    fn the_cache_holds_no_more_than_its_bound() {
        let view = view_with_web();
        let bound = 1 << 20;
        let mut fast = FastPath::new(1232, bound);
        let mut out = Vec::new();
        for i in 0..50_000 {
            // Distinct missing names: each a negative entry.
            let datagram = query(&format!("missing-{i}.svc.internal."), 1, &[], 0);
            assert!(fast.answer(&view, &datagram, false, &mut out));
            assert!(fast.cached_bytes() <= bound);
        }
        // Each entry is counted at least at its key, map slot and bytes.
        assert!(
            fast.cache.len() * 100 <= bound,
            "{} entries",
            fast.cache.len()
        );
    }

    #[test]
    fn owners_compress_against_the_question() {
        let question = b"\x04_web\x04_tcp\x03svc\x08internal\x00";
        let record = Record::from_rdata(
            Name::from_ascii("i1.web.svc.internal.").expect("name"),
            5,
            hickory_proto::rr::RData::A(hickory_proto::rr::rdata::A::new(10, 0, 0, 1)),
        );
        let mut out = Vec::new();
        encode_record(&record, question, &mut out).expect("encodes");
        // "i1", "web", then a pointer to "svc.internal." at 12 + 10.
        assert_eq!(&out[..9], b"\x02i1\x03web\xc0\x16");
        assert_eq!(out.len(), 9 + 10 + 4);
    }
}
