//! Pre-encoded answers: the fast path for UDP and TCP queries.
//!
//! Takes one raw query datagram and the current [`View`]; produces the
//! reply's bytes when the query has the common shape, or `None` to leave the
//! datagram to the general path ([`super::handler`]). The common shape: a
//! standard query with one question of class IN, no EDNS or EDNS version 0
//! without the DO bit, for a name in our zones whose answer is one plain
//! RRset (rotated as usual) or a negative answer (NXDOMAIN, NODATA), and
//! whose reply fits (over UDP) the client's payload size. Everything else (ANY, CNAME
//! chains, referrals, forwarding, truncation, odd headers) stays on the
//! general path, which gives the same answers more slowly.
//!
//! The records come from the general path's own `resolve`, encoded by
//! hickory-proto, and are kept per worker thread in a hash map keyed by the
//! lower-cased wire name and type. An entry remembers what it was built
//! from (one live service's names, the static layer, or just that view)
//! and is rebuilt only when that changed, so a heartbeat that changes one
//! service costs the cache that service's answers, not all of them. A reply is then the query's
//! header and question (echoed byte for byte, so the client's letter case
//! survives) followed by copies of those bytes in this answer's rotation
//! order. Owner names are compressed against the question, whose position
//! never changes, so the pieces can be put in any order.
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
use crate::view::{Cursor, Origin, Policy, ServiceNames, StaticZone, View};

/// Cached answers per worker thread before the cache starts over; bounds
/// the memory a flood of distinct names can take.
const MAX_CACHED_ANSWERS: usize = 100_000;

/// Cached bytes per worker thread before the cache starts over.
const MAX_CACHED_BYTES: usize = 64 * 1024 * 1024;

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
    /// The client's EDNS payload size, if it sent EDNS.
    edns_payload: Option<u16>,
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
    let edns_payload = if additionals == 1 {
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
        edns_payload,
    })
}

/// Parses an OPT record that is all that is left of the query: version 0,
/// DO clear, options well formed. Returns the client's payload size.
fn parse_opt(record: &[u8]) -> Option<u16> {
    let fixed = record.get(..11)?;
    if fixed[0] != 0 || u16::from_be_bytes([fixed[1], fixed[2]]) != OPT {
        return None;
    }
    // Extended rcode, version, then the flags (DO is the top bit).
    if fixed[5] != 0 || fixed[6] != 0 || fixed[7] & 0x80 != 0 {
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
    Some(payload)
}

/// One member of an RRset, encoded: where its answer record and its glue
/// lie in the entry's bytes (the glue follows the record). 16 bytes, since
/// a big RRset has one per member in every worker's cache.
#[derive(Debug)]
struct EncodedMember {
    priority: u16,
    weight: u16,
    answer_start: u32,
    glue_start: u32,
    glue_end: u32,
}

impl EncodedMember {
    fn answer(&self) -> Range<usize> {
        self.answer_start as usize..self.glue_start as usize
    }

    fn glue(&self) -> Range<usize> {
        self.glue_start as usize..self.glue_end as usize
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
    members: Vec<EncodedMember>,
    authority: Range<usize>,
    authority_count: u16,
    glue_count: u16,
    /// Length of everything after the question, without the OPT record.
    sections_len: usize,
    /// True when some glue was looked up at other names.
    looked_up: bool,
    bytes: Vec<u8>,
}

/// What the cache knows about a name and type.
#[derive(Debug)]
enum Entry {
    /// The general path answers it.
    General,
    /// Pre-encoded.
    Ready(Encoded),
}

/// What an entry was built from: it stays valid while that is unchanged.
#[derive(Debug)]
enum Source {
    /// One view only (apex data, negative answers with the SOA serial,
    /// reverse zones, answers whose glue was looked up elsewhere).
    View(Arc<View>),
    /// One live service's names, shared by views until the service changes.
    Service(String, Arc<ServiceNames>),
    /// The static layer, shared by views until a fragment changes, for a
    /// name no live service could claim: the keys of the services that
    /// would take it over (merging its records) if they appeared.
    Statics(Arc<StaticZone>, Vec<String>),
}

impl Source {
    fn still_holds(&self, view: &Arc<View>) -> bool {
        match self {
            Source::View(built) => Arc::ptr_eq(built, view),
            Source::Service(key, names) => view
                .service_names(key)
                .is_some_and(|now| Arc::ptr_eq(now, names)),
            Source::Statics(statics, keys) => {
                Arc::ptr_eq(statics, &view.statics)
                    && keys.iter().all(|key| view.service_names(key).is_none())
            }
        }
    }
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
    cache: HashMap<Box<[u8]>, (Source, Entry, u32), ahash::RandomState>,
    cached_bytes: usize,
    max_udp_payload: u16,
    key: Vec<u8>,
}

impl FastPath {
    /// A fast path offering UDP clients at most `max_udp_payload` bytes.
    pub fn new(max_udp_payload: u16) -> Self {
        FastPath {
            cache: HashMap::default(),
            cached_bytes: 0,
            max_udp_payload,
            key: Vec::with_capacity(260),
        }
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
        let Some(query) = parse(datagram, &mut self.key) else {
            return false;
        };
        // ANY, zone transfers, meta types: the general path.
        if matches!(query.qtype, 41 | 249..=255) {
            return false;
        }
        let fresh = match self.cache.get_mut(self.key.as_slice()) {
            Some((_, _, checked)) if *checked == view.serial => true,
            Some((source, _, checked)) if source.still_holds(view) => {
                *checked = view.serial;
                true
            }
            _ => false,
        };
        if !fresh {
            if self.cache.len() >= MAX_CACHED_ANSWERS || self.cached_bytes >= MAX_CACHED_BYTES {
                self.cache.clear();
                self.cached_bytes = 0;
            }
            let (source, entry) = encode(view, &self.key, query.qtype);
            let size = |entry: &Entry| match entry {
                Entry::Ready(encoded) => encoded.bytes.len(),
                Entry::General => 0,
            };
            self.cached_bytes += size(&entry) + self.key.len();
            let replaced = self.cache.insert(
                self.key.clone().into_boxed_slice(),
                (source, entry, view.serial),
            );
            if let Some((_, old, _)) = replaced {
                self.cached_bytes = self
                    .cached_bytes
                    .saturating_sub(size(&old) + self.key.len());
            }
        }
        let Some((_, Entry::Ready(encoded), _)) = self.cache.get(self.key.as_slice()) else {
            return false;
        };
        // The OPT record offers the same size over both transports; only
        // UDP replies must fit in it.
        let offered = query
            .edns_payload
            .map(|payload| payload.clamp(512, self.max_udp_payload));
        let limit = match (over_tcp, offered) {
            (true, _) => usize::from(u16::MAX),
            (false, Some(offered)) => usize::from(offered),
            (false, None) => 512,
        };
        let question_end = HEADER_LEN + query.question_len;
        let opt_len = if offered.is_some() { 11 } else { 0 };
        if question_end + encoded.sections_len + opt_len > limit {
            return false; // the general path decides what to leave out
        }
        assemble(encoded, datagram, question_end, offered, out);
        true
    }
}

/// Writes one reply: the query's header and question, then `encoded`.
fn assemble(
    encoded: &Encoded,
    datagram: &[u8],
    question_end: usize,
    edns_payload: Option<u16>,
    out: &mut Vec<u8>,
) {
    out.clear();
    out.extend_from_slice(&datagram[..2]);
    // QR, AA as resolved, RD copied; CD copied, the rcode.
    out.push(0x80 | if encoded.authoritative { 0x04 } else { 0 } | (datagram[2] & 0x01));
    out.push((datagram[3] & 0x10) | encoded.rcode);
    let members = u16::try_from(encoded.members.len()).unwrap_or(u16::MAX);
    let additionals = encoded.glue_count + u16::from(edns_payload.is_some());
    for count in [1, members, encoded.authority_count, additionals] {
        out.extend_from_slice(&count.to_be_bytes());
    }
    out.extend_from_slice(&datagram[HEADER_LEN..question_end]);
    let bytes = &encoded.bytes;
    let n = encoded.members.len();
    match encoded.policy {
        Policy::Fixed | Policy::RoundRobin => {
            let offset = if n == 0 { 0 } else { encoded.cursor.next() % n };
            let order = (offset..n).chain(0..offset);
            for i in order.clone() {
                out.extend_from_slice(&bytes[encoded.members[i].answer()]);
            }
            out.extend_from_slice(&bytes[encoded.authority.clone()]);
            for i in order {
                out.extend_from_slice(&bytes[encoded.members[i].glue()]);
            }
        }
        Policy::Weighted => {
            let order = order_by(&encoded.members, encoded.policy, encoded.cursor.next());
            for member in &order {
                out.extend_from_slice(&bytes[member.answer()]);
            }
            out.extend_from_slice(&bytes[encoded.authority.clone()]);
            for member in &order {
                out.extend_from_slice(&bytes[member.glue()]);
            }
        }
    }
    if let Some(payload) = edns_payload {
        // OPT: root owner, our payload size, version 0, no flags, no options.
        out.extend_from_slice(&[0, 0, 41]);
        out.extend_from_slice(&payload.to_be_bytes());
        out.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    }
}

/// Resolves `key` (lower-cased wire name and type) through the general
/// path's `resolve` and encodes the result, if it has a shape the fast
/// path serves.
fn encode(view: &Arc<View>, key: &[u8], qtype: u16) -> (Source, Entry) {
    let this_view = || Source::View(view.clone());
    let wire_name = &key[..key.len() - 2];
    let Ok(name) = Name::read(&mut BinDecoder::new(wire_name)) else {
        return (this_view(), Entry::General);
    };
    let qname = LowerName::from(&name);
    let entry = encode_entry(view, &qname, wire_name, qtype);
    // Positive answers from one part of the zone, with no glue looked up
    // elsewhere, stay valid while that part does; the rest live one view.
    let source = match (&entry, view.node_origin(&qname)) {
        (Entry::Ready(encoded), Some(origin))
            if !encoded.members.is_empty() && !encoded.looked_up =>
        {
            match origin {
                Origin::Service(names) => Source::Service(names.key().to_string(), names.clone()),
                Origin::Statics(statics) => {
                    let keys: Vec<String> = view
                        .service_keys_of(&qname)
                        .map(|k| String::from_utf8_lossy(k).into_owned())
                        .collect();
                    if keys.iter().any(|key| view.service_names(key).is_some()) {
                        this_view()
                    } else {
                        Source::Statics(statics.clone(), keys)
                    }
                }
                Origin::Apex => this_view(),
            }
        }
        _ => this_view(),
    };
    (source, entry)
}

/// Encodes the answer to `qname`/`qtype`, if the fast path serves it.
fn encode_entry(view: &View, qname: &LowerName, wire_name: &[u8], qtype: u16) -> Entry {
    let rtype = RecordType::from(qtype);
    let resolution = resolve_in_order(view, qname, rtype, true);
    let rcode = match resolution.rcode {
        ResponseCode::NoError => 0,
        ResponseCode::NXDomain => 3,
        _ => return Entry::General,
    };
    if resolution.outside_zones || !resolution.authoritative {
        return Entry::General;
    }
    let mut encoded = Encoded {
        authoritative: true,
        rcode,
        policy: Policy::Fixed,
        cursor: Cursor::default(),
        members: Vec::new(),
        authority: 0..0,
        authority_count: 0,
        glue_count: 0,
        sections_len: 0,
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
                && matches!(
                    member.record.data,
                    RData::SRV(_) | RData::MX(_) | RData::NS(_) | RData::PTR(_)
                );
            for record in &glue_records {
                if encode_record(record, wire_name, bytes).is_none() {
                    return Entry::General;
                }
            }
            let glue_count = u16::try_from(glue_records.len()).unwrap_or(u16::MAX);
            encoded.glue_count = encoded.glue_count.saturating_add(glue_count);
            // Replies are at most 64 KiB, so offsets fit in u32; anything
            // bigger is left to the general path.
            let (Ok(answer_start), Ok(glue_start), Ok(glue_end)) = (
                u32::try_from(start),
                u32::try_from(answer_end),
                u32::try_from(bytes.len()),
            ) else {
                return Entry::General;
            };
            encoded.members.push(EncodedMember {
                priority: member.priority,
                weight: member.weight,
                answer_start,
                glue_start,
                glue_end,
            });
        }
        encoded.authority = bytes.len()..bytes.len();
        encoded.policy = set.policy;
        encoded.cursor = set.cursor.clone();
    }
    encoded.sections_len = encoded.bytes.len();
    // Entries live long and there may be many: no spare capacity.
    encoded.bytes.shrink_to_fit();
    Entry::Ready(encoded)
}

/// Appends `record` to `out`: rdata as hickory-proto encodes it without
/// compression, the owner name compressed against the question name
/// (`question`, lower-cased wire form at offset 12 of every reply).
fn encode_record(record: &Record, question: &[u8], out: &mut Vec<u8>) -> Option<()> {
    let mut wire = Vec::with_capacity(64);
    let mut encoder = BinEncoder::new(&mut wire);
    encoder.set_name_encoding(NameEncoding::Uncompressed);
    record.emit(&mut encoder).ok()?;
    let owner_len = name_len(&wire)?;
    let owner = &wire[..owner_len];
    let boundaries = label_starts(question);
    let mut at = 0;
    loop {
        let suffix = &owner[at..];
        if suffix.len() > 1 && suffix.len() <= question.len() {
            let start = question.len() - suffix.len();
            if boundaries.contains(&start) && question[start..].eq_ignore_ascii_case(suffix) {
                out.extend_from_slice(&owner[..at]);
                let pointer = 0xC000 | u16::try_from(HEADER_LEN + start).ok()?;
                out.extend_from_slice(&pointer.to_be_bytes());
                break;
            }
        }
        let len = usize::from(owner[at]);
        if len == 0 {
            out.extend_from_slice(owner);
            break;
        }
        at += len + 1;
    }
    out.extend_from_slice(&wire[owner_len..]);
    Some(())
}

/// Length of the uncompressed wire name at the start of `wire`.
fn name_len(wire: &[u8]) -> Option<usize> {
    let mut at = 0;
    loop {
        let len = usize::from(*wire.get(at)?);
        at += 1;
        if len == 0 {
            return Some(at);
        }
        if len > 63 {
            return None;
        }
        at += len;
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
        assert_eq!(parsed.edns_payload, None);
        assert_eq!(&key[..4], b"\x03web");
        let parsed = parse(&query("web.svc.internal.", 33, &OPT_1232, 1), &mut key).expect("edns");
        assert_eq!(parsed.edns_payload, Some(1232));
    }

    #[test]
    fn rare_shapes_are_left_to_the_general_path() {
        let mut key = Vec::new();
        let mut do_bit = OPT_1232;
        do_bit[7] = 0x80;
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
            ("DO bit", query("a.", 1, &do_bit, 1)),
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
