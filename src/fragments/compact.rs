//! Records kept compactly, and the owner-name keys that find them.
//!
//! Takes hickory records as the parser makes them; produces [`Compact`]
//! records in wire form (owner as written, type, TTL, RDATA with names
//! uncompressed): about 40 bytes for an A record instead of the 270-odd
//! of a hickory `Record` plus its name, since a fragment folder may hold
//! millions. They turn back into hickory records when an answer needs
//! them. [`NameKey`] is an owner name as the indexes know it: lower-case
//! wire form and a keyed hash. It never does I/O.

use std::sync::LazyLock;

use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{
    BinDecodable, BinDecoder, BinEncodable, BinEncoder, NameEncoding, Restrict,
};

/// Hashes owner names for every index of the process (seeded per process,
/// against collision flooding by whoever writes fragments).
static HASHER: LazyLock<ahash::RandomState> = LazyLock::new(ahash::RandomState::new);

/// One record: owner (wire, as written), type (2 bytes), TTL (4 bytes),
/// RDATA. The class is always IN (fragments allow no other).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compact(Box<[u8]>);

impl Compact {
    /// The compact form of `record`, if it encodes.
    pub fn new(record: &Record) -> Option<Compact> {
        let mut bytes = Vec::with_capacity(48);
        let mut encoder = BinEncoder::new(&mut bytes);
        encoder.set_name_encoding(NameEncoding::Uncompressed);
        record.name.emit(&mut encoder).ok()?;
        encoder.emit_u16(record.record_type().into()).ok()?;
        encoder.emit_u32(record.ttl).ok()?;
        record.data.emit(&mut encoder).ok()?;
        Some(Compact(bytes.into_boxed_slice()))
    }

    /// Length of the owner name at the start.
    fn owner_len(&self) -> usize {
        wire_name_len(&self.0).unwrap_or(0)
    }

    /// The owner name in wire form, as written.
    pub fn owner(&self) -> &[u8] {
        &self.0[..self.owner_len()]
    }

    /// True when the owner is `key`'s name (letter case aside).
    pub fn has_owner(&self, key: &NameKey) -> bool {
        self.owner().eq_ignore_ascii_case(key.wire())
    }

    /// The record type.
    pub fn rtype(&self) -> RecordType {
        let at = self.owner_len();
        RecordType::from(u16::from_be_bytes([self.0[at], self.0[at + 1]]))
    }

    /// The record back in hickory's form (`None` only if the bytes were
    /// not made by [`Compact::new`]).
    pub fn record(&self) -> Option<Record> {
        let mut decoder = BinDecoder::new(&self.0);
        let name = Name::read(&mut decoder).ok()?;
        let rtype = RecordType::from(decoder.read_u16().ok()?.unverified());
        let ttl = decoder.read_u32().ok()?.unverified();
        let length = u16::try_from(decoder.len()).ok()?;
        let data = RData::read(&mut decoder, rtype, Restrict::new(length)).ok()?;
        Some(Record::from_rdata(name, ttl, data))
    }

    /// Bytes held, for accounting.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Never true: every record has an owner.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Length of the uncompressed wire name at the start of `wire` (`None`
/// if it is cut short or has a label over 63 bytes).
pub fn wire_name_len(wire: &[u8]) -> Option<usize> {
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

/// An owner name as indexes know it: lower-case wire form, and its hash.
/// It hashes as its stored hash (see [`PassThrough`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct NameKey {
    wire: Box<[u8]>,
    hash: u64,
}

impl NameKey {
    /// The key of wire name `wire` (any letter case).
    pub fn from_wire(wire: &[u8]) -> NameKey {
        let wire: Box<[u8]> = wire.iter().map(u8::to_ascii_lowercase).collect();
        let hash = HASHER.hash_one(&wire);
        NameKey { wire, hash }
    }

    /// The key of `name`.
    pub fn of(name: &LowerName) -> NameKey {
        let mut wire = Vec::with_capacity(64);
        for label in name.iter() {
            // Labels are at most 63 bytes: their length fits.
            wire.push(u8::try_from(label.len()).unwrap_or(63));
            wire.extend(label.iter().map(u8::to_ascii_lowercase));
        }
        wire.push(0);
        let wire = wire.into_boxed_slice();
        let hash = HASHER.hash_one(&wire);
        NameKey { wire, hash }
    }

    /// The lower-case wire form.
    pub fn wire(&self) -> &[u8] {
        &self.wire
    }

    /// The hash every index uses.
    pub fn hash(&self) -> u64 {
        self.hash
    }

    /// The name, as hickory has it.
    pub fn name(&self) -> Option<LowerName> {
        Name::read(&mut BinDecoder::new(&self.wire))
            .ok()
            .map(|name| LowerName::from(&name))
    }

    /// The parent name's key (`None` at the root).
    pub fn parent(&self) -> Option<NameKey> {
        let first = usize::from(*self.wire.first()?);
        (first > 0).then(|| NameKey::from_wire(&self.wire[first + 1..]))
    }

    /// Number of labels (the root has none).
    pub fn labels(&self) -> usize {
        let mut count = 0;
        let mut at = 0;
        while let Some(&len) = self.wire.get(at) {
            if len == 0 {
                break;
            }
            count += 1;
            at += usize::from(len) + 1;
        }
        count
    }

    /// True when this name is `other` or below it.
    pub fn is_at_or_below(&self, other: &NameKey) -> bool {
        self.wire.ends_with(&other.wire)
            && (self.wire.len() == other.wire.len() || {
                // The suffix must start at a label boundary.
                let mut at = 0;
                while at < self.wire.len() - other.wire.len() {
                    at += usize::from(self.wire[at]) + 1;
                }
                at == self.wire.len() - other.wire.len()
            })
    }
}

impl std::hash::Hash for NameKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl std::fmt::Display for NameKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name}"),
            None => f.write_str("(bad name)"),
        }
    }
}

/// A hasher for keys that are already hashes: it passes them through.
#[derive(Debug, Clone, Copy, Default)]
pub struct PassThrough(u64);

impl std::hash::Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are hashed with it; fold anything else in.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

/// Builds [`PassThrough`] hashers.
pub type PassThroughBuild = std::hash::BuildHasherDefault<PassThrough>;

#[cfg(test)]
mod tests {
    use super::*;

    fn record(text: &str, rtype: RecordType, rdata: &str) -> Record {
        let name = Name::from_ascii(text).expect("name");
        Record::from_rdata(name, 60, RData::try_from_str(rtype, rdata).expect("rdata"))
    }

    #[test]
    fn records_round_trip_compactly() {
        for (rtype, rdata) in [
            (RecordType::A, "10.0.0.1"),
            (RecordType::AAAA, "2001:db8::1"),
            (RecordType::CNAME, "db.svc.internal."),
            (RecordType::SRV, "0 5 5432 db.svc.internal."),
            (RecordType::TXT, "\"a b\" c"),
            (RecordType::MX, "10 mail.example."),
        ] {
            let original = record("Web.SVC.internal.", rtype, rdata);
            let compact = Compact::new(&original).expect("encodes");
            assert_eq!(compact.record(), Some(original.clone()), "{rtype}");
            assert_eq!(compact.rtype(), rtype);
            assert!(compact.has_owner(&NameKey::of(&LowerName::from(&original.name))));
        }
        let a = Compact::new(&record("h1.svc.internal.", RecordType::A, "10.0.0.1")).expect("a");
        assert!(a.len() < 40, "{} bytes", a.len());
    }

    #[test]
    fn keys_know_their_place() {
        let key = NameKey::of(&LowerName::from(
            Name::from_ascii("A.b.svc.internal.").expect("name"),
        ));
        let zone = NameKey::of(&LowerName::from(
            Name::from_ascii("svc.internal.").expect("name"),
        ));
        assert_eq!(key.labels(), 4);
        assert!(key.is_at_or_below(&zone));
        assert!(!zone.is_at_or_below(&key));
        let fake = NameKey::of(&LowerName::from(
            Name::from_ascii("xsvc.internal.").expect("name"),
        ));
        assert!(!fake.is_at_or_below(&zone));
        assert_eq!(key.parent().and_then(|p| p.parent()), Some(zone.clone()));
        assert_eq!(
            key.name().map(|n| n.to_string()),
            Some("a.b.svc.internal.".into())
        );
    }
}
