//! The record-set model: what one name holds, as answers need it.
//!
//! Takes records (from zone fragments, or built from live instances);
//! produces [`Node`]s of [`RrSet`]s whose [`Member`]s carry what load
//! spreading needs (RFC 2782 priority and weight, glue), with each RRset's
//! rotation [`Cursor`] and ordering [`Policy`]. Shared by the static zone,
//! the view and the answering path; it never does I/O.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use hickory_proto::rr::{RData, Record, RecordType};

use crate::config::DEFAULT_WEIGHT;

/// One record of an RRset, with what load spreading needs to order it.
#[derive(Debug, Clone)]
pub struct Member {
    /// The record as served.
    pub record: Record,
    /// RFC 2782 priority (lower first).
    pub priority: u16,
    /// RFC 2782 weight.
    pub weight: u16,
    /// Address records of the target, for the additional section, when known
    /// at build time (live SRV). Static SRV, MX and NS targets are looked up
    /// when answering, so an edited address is never stale in the glue.
    pub glue: Vec<Record>,
}

impl Member {
    /// A member for `record`: SRV priority and weight, or the defaults.
    pub fn plain(record: Record) -> Self {
        let (priority, weight) = match &record.data {
            RData::SRV(srv) => (srv.priority, srv.weight),
            _ => (0, DEFAULT_WEIGHT),
        };
        Member {
            record,
            priority,
            weight,
            glue: Vec::new(),
        }
    }
}

/// How the members of an RRset are ordered in each answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Always in stored order.
    Fixed,
    /// One priority, one weight: plain round-robin.
    RoundRobin,
    /// Several priorities or weights: RFC 2782 order per answer.
    Weighted,
}

/// All records of one type at one name.
#[derive(Debug, Clone)]
pub struct RrSet {
    /// The type of every member.
    pub rtype: RecordType,
    /// Members, sorted by priority (stable, so equal priorities keep their order).
    pub members: Vec<Member>,
    /// How answers order the members.
    pub policy: Policy,
    /// Where the next rotation starts.
    pub cursor: Cursor,
}

/// An RRset's rotation cursor, shared by the general answering path and the
/// pre-encoded answers of the fast path, so both take turns from one count.
/// Fixed RRsets (one member, or a type that does not rotate) have none and
/// cost no allocation: most names hold exactly one record.
#[derive(Debug, Clone, Default)]
pub struct Cursor(Option<Arc<AtomicUsize>>);

impl Cursor {
    /// A cursor starting at a random point below `len`, so that frequent
    /// view rebuilds do not keep favouring the first member.
    pub fn starting_below(len: usize) -> Self {
        Cursor(Some(Arc::new(AtomicUsize::new(fastrand::usize(
            ..len.max(1),
        )))))
    }

    /// Takes the next rotation offset (wrapping); always 0 for fixed sets.
    pub fn next(&self) -> usize {
        self.0
            .as_ref()
            .map_or(0, |c| c.fetch_add(1, Ordering::Relaxed))
    }
}

/// Types whose answers rotate for load spreading (and that `--max-answers`
/// caps).
pub fn rotates(rtype: RecordType) -> bool {
    matches!(rtype, RecordType::A | RecordType::AAAA | RecordType::SRV)
}

impl RrSet {
    /// An RRset of `members` (rotating if `rotate` and it has several).
    pub fn new(rtype: RecordType, members: Vec<Member>, rotate: bool) -> Self {
        Self::with_cursor(rtype, members, rotate, None)
    }

    /// [`RrSet::new`], rotating with `cursor` (if it rotates at all) rather
    /// than a new one: RRsets built per lookup keep their turn this way.
    pub fn with_cursor(
        rtype: RecordType,
        mut members: Vec<Member>,
        rotate: bool,
        cursor: Option<&Cursor>,
    ) -> Self {
        members.sort_by_key(|m| m.priority);
        let uniform = members
            .windows(2)
            .all(|w| (w[0].priority, w[0].weight) == (w[1].priority, w[1].weight));
        let policy = match (rotate && members.len() > 1, uniform) {
            (false, _) => Policy::Fixed,
            (true, true) => Policy::RoundRobin,
            (true, false) => Policy::Weighted,
        };
        let cursor = match (policy, cursor) {
            (Policy::Fixed, _) => Cursor::default(),
            (_, Some(cursor)) if cursor.0.is_some() => cursor.clone(),
            _ => Cursor::starting_below(members.len()),
        };
        RrSet {
            rtype,
            members,
            policy,
            cursor,
        }
    }
}

/// Everything at one owner name. An empty node is an empty non-terminal:
/// the name exists (NODATA, not NXDOMAIN) but holds no records.
#[derive(Debug, Default, Clone)]
pub struct Node {
    /// RRsets, at most one per type.
    pub rrsets: Vec<RrSet>,
}

impl Node {
    /// The RRset of `rtype`, if any.
    pub fn rrset(&self, rtype: RecordType) -> Option<&RrSet> {
        self.rrsets.iter().find(|set| set.rtype == rtype)
    }

    /// A node from RRsets in order (empty ones left out), each with one TTL
    /// (the smallest of its members') and, if it rotates, the cursor
    /// `cursor_of` gives for its type.
    pub fn from_sets<'c>(
        sets: Vec<(RecordType, Vec<Member>)>,
        cursor_of: impl Fn(RecordType) -> Option<&'c Cursor>,
    ) -> Node {
        let rrsets = sets
            .into_iter()
            .filter(|(_, members)| !members.is_empty())
            .map(|(rtype, mut members)| {
                let ttl = members.iter().map(|m| m.record.ttl).min().unwrap_or(0);
                members.iter_mut().for_each(|m| m.record.ttl = ttl);
                RrSet::with_cursor(rtype, members, rotates(rtype), cursor_of(rtype))
            })
            .collect();
        Node { rrsets }
    }

    /// Adds members to the RRset of `rtype`, creating it if needed. Every
    /// member then carries the smallest TTL among them: RFC 2181 §5.2 wants
    /// one TTL per RRset.
    pub fn extend(&mut self, rtype: RecordType, members: Vec<Member>) {
        if members.is_empty() {
            return;
        }
        let mut all = match self.rrsets.iter().position(|s| s.rtype == rtype) {
            Some(i) => self.rrsets.swap_remove(i).members,
            None => Vec::new(),
        };
        all.extend(members);
        let ttl = all.iter().map(|m| m.record.ttl).min().unwrap_or(0);
        all.iter_mut().for_each(|m| m.record.ttl = ttl);
        self.rrsets.push(RrSet::new(rtype, all, rotates(rtype)));
    }
}

/// Appends the members of each RRset of `node` to the set of the same
/// type in `sets` (after the members already there), or as a new set:
/// static records joining records built for a lookup.
pub fn merge_sets(sets: &mut Vec<(RecordType, Vec<Member>)>, node: &Node) {
    for set in &node.rrsets {
        match sets.iter_mut().find(|(rtype, _)| *rtype == set.rtype) {
            Some((_, members)) => members.extend(set.members.iter().cloned()),
            None => sets.push((set.rtype, set.members.clone())),
        }
    }
}

/// A number no other part of any view has had: each service's names and
/// each version of the static zone get one when built, so a cached answer
/// can tell whether the part it came from is still the one served without
/// keeping that part alive.
pub fn next_generation() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}
