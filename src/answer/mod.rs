//! DNS answering: from a question and one snapshot to the records of a reply.
//!
//! Takes a [`View`] and a question (lower-case name and type); produces a
//! [`Resolution`]: rcode, AA bit and the records of each section: borrowed
//! from the view where it keeps them (apex and fragment data), built for
//! this answer where the view builds them on demand (live services' names).
//! [`resolve`] is pure and synchronous: it never locks, waits, or touches
//! the registry or the disk. [`handler`] is the only module that speaks
//! hickory-server's traits; it turns a `Resolution` into a reply on the wire.
//!
//! Beyond plain lookups it follows CNAMEs inside the zone (RFC 1034 §4.3.2,
//! at most [`MAX_CNAME_CHAIN`] links) and answers names at or below a
//! delegation from a fragment with a referral (AA clear, the NS set in the
//! authority section, glue in the additional section).

pub mod fast;
pub mod forward;
pub mod handler;
pub mod rotate;
pub mod rrl;
pub mod tcp;
pub mod udp;

use std::borrow::Cow;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{LowerName, RData, Record, RecordType};

use crate::view::{Member, Node, NodeRef, ReverseZone, RrSet, View};

/// Longest CNAME chain followed inside the zone.
pub const MAX_CNAME_CHAIN: usize = 8;

/// What the zone says about one question.
#[derive(Debug, Default)]
pub struct Resolution<'v> {
    /// NOERROR, NXDOMAIN, REFUSED, or SERVFAIL while the first load runs.
    pub rcode: ResponseCode,
    /// The AA bit: set for every answer from our data, clear for referrals
    /// and refusals.
    pub authoritative: bool,
    /// Answer section, already ordered for load spreading.
    pub answers: Vec<Cow<'v, Record>>,
    /// Authority section: the SOA of negative answers, or a referral's NS set.
    pub authorities: Vec<Cow<'v, Record>>,
    /// Additional section: addresses of SRV, MX and NS targets.
    pub additionals: Vec<Cow<'v, Record>>,
    /// True when the name lies outside every zone served here (the
    /// question may then be forwarded).
    pub outside_zones: bool,
    /// List members in stored order and leave the rotation cursors alone
    /// (the fast path encodes an RRset once and rotates it per reply).
    stored_order: bool,
}

impl<'v> Resolution<'v> {
    fn refused() -> Self {
        Resolution {
            rcode: ResponseCode::Refused,
            outside_zones: true,
            ..Resolution::default()
        }
    }

    /// Adds the RRset `pick` chooses from `node` to the answer section,
    /// with its glue; false when there is none.
    fn add(
        &mut self,
        node: &NodeRef<'v>,
        pick: impl Fn(&Node) -> Option<&RrSet>,
        view: &'v View,
    ) -> bool {
        let stored_order = self.stored_order;
        match node {
            Cow::Borrowed(node) => {
                let Some(set) = pick(node) else { return false };
                for member in ordered(set, stored_order, view.max_answers) {
                    self.answers.push(Cow::Borrowed(&member.record));
                    glue(member, view, &mut self.additionals);
                }
            }
            Cow::Owned(node) => {
                let Some(set) = pick(node) else { return false };
                for member in ordered(set, stored_order, view.max_answers) {
                    self.answers.push(Cow::Owned(member.record.clone()));
                    glue(member, view, &mut self.additionals);
                }
            }
        }
        true
    }
}

/// The members of `set` as this answer lists them: in stored order (for
/// the fast path, which rotates and caps per reply), or rotated now and,
/// for A, AAAA and SRV, cut to the first `max_answers` (a rotated window).
fn ordered(set: &RrSet, stored_order: bool, max_answers: Option<usize>) -> Vec<&Member> {
    if stored_order {
        return set.members.iter().collect();
    }
    let take = max_answers
        .filter(|_| crate::view::rotates(set.rtype))
        .unwrap_or(usize::MAX);
    rotate::order(set, take)
}

/// Appends the records of `node`'s RRset of `rtype` to `out`: borrowed
/// when the view keeps the node, copied when it was built for this lookup.
fn records_of<'v>(node: &NodeRef<'v>, rtype: RecordType, out: &mut Vec<Cow<'v, Record>>) {
    match node {
        Cow::Borrowed(node) => {
            if let Some(set) = node.rrset(rtype) {
                out.extend(set.members.iter().map(|m| Cow::Borrowed(&m.record)));
            }
        }
        Cow::Owned(node) => {
            if let Some(set) = node.rrset(rtype) {
                out.extend(set.members.iter().map(|m| Cow::Owned(m.record.clone())));
            }
        }
    }
}

/// The addresses of a member's target (SRV, MX, NS) for the additional
/// section: prebuilt glue if any, else whatever the zone holds there. For
/// a PTR to a DNS-SD service instance (a name with SRV and TXT), the SRV,
/// the TXT and the SRV target's addresses (RFC 6763 §12.1).
pub fn glue<'v>(member: &Member, view: &'v View, out: &mut Vec<Cow<'v, Record>>) {
    if !member.glue.is_empty() {
        out.extend(member.glue.iter().cloned().map(Cow::Owned));
        return;
    }
    if let RData::PTR(ptr) = &member.record.data {
        if view.is_type_list(&LowerName::from(&member.record.name)) {
            return;
        }
        let target = LowerName::from(&ptr.0);
        if !view.origin.zone_of(&target) {
            return;
        }
        let Some(node) = view.node(&target) else {
            return;
        };
        if let (Some(srv), Some(_)) = (node.rrset(RecordType::SRV), node.rrset(RecordType::TXT)) {
            records_of(&node, RecordType::SRV, out);
            records_of(&node, RecordType::TXT, out);
            for srv_member in &srv.members {
                glue(srv_member, view, out);
            }
        }
        return;
    }
    let target = match &member.record.data {
        RData::SRV(srv) => &srv.target,
        RData::MX(mx) => &mx.exchange,
        RData::NS(ns) => &ns.0,
        _ => return,
    };
    let target = LowerName::from(target);
    if !view.origin.zone_of(&target) {
        return;
    }
    if let Some(node) = view.node(&target) {
        for rtype in [RecordType::A, RecordType::AAAA] {
            records_of(&node, rtype, out);
        }
    }
}

/// The node holding the RRset that a plain positive answer at `qname`
/// comes from (no CNAME, no referral), in the zone or a reverse zone.
pub fn direct_node<'v>(view: &'v View, qname: &LowerName) -> Option<NodeRef<'v>> {
    if view.origin.zone_of(qname) {
        view.node(qname)
    } else {
        view.reverse
            .iter()
            .find(|zone| zone.origin.zone_of(qname))
            .and_then(|zone| zone.node(qname))
    }
}

/// Answers from a reverse zone: PTR, its SOA and NS, negative answers.
fn resolve_reverse<'v>(
    view: &'v View,
    zone: &'v ReverseZone,
    qname: &LowerName,
    qtype: RecordType,
    stored_order: bool,
) -> Resolution<'v> {
    let mut resolution = Resolution {
        authoritative: true,
        stored_order,
        ..Resolution::default()
    };
    let Some(node) = zone.node(qname) else {
        resolution.rcode = ResponseCode::NXDomain;
        resolution
            .authorities
            .push(Cow::Borrowed(&zone.negative_soa));
        return resolution;
    };
    let found = resolution.add(&node, |node| pick(node, qtype), view);
    if !found {
        resolution
            .authorities
            .push(Cow::Borrowed(&zone.negative_soa));
    }
    resolution
}

/// The delegation point at or above `qname`, if a fragment delegates it.
fn delegation(view: &View, qname: &LowerName, qtype: RecordType) -> Option<Node> {
    if !view.statics.has_delegations() {
        return None;
    }
    let mut name = qname.clone();
    while name.num_labels() > view.origin.num_labels() {
        // DS at the cut belongs to the parent side: answer it ourselves.
        let parent_side = name == *qname && qtype == RecordType::DS;
        if view.statics.is_delegation(&name) && !parent_side {
            return view.statics.node(&name);
        }
        name = name.base_name();
    }
    None
}

/// The RRset answering `qtype` at a node: for ANY, one RRset is a
/// complete answer (RFC 8482).
fn pick(node: &Node, qtype: RecordType) -> Option<&RrSet> {
    if qtype == RecordType::ANY {
        node.rrsets.first()
    } else {
        node.rrset(qtype)
    }
}

/// Answers `qtype` at `qname` (lower case) from `view`.
pub fn resolve<'v>(view: &'v View, qname: &LowerName, qtype: RecordType) -> Resolution<'v> {
    resolve_in_order(view, qname, qtype, false)
}

/// [`resolve`], with RRsets in stored order (`stored_order`) or rotated.
pub(crate) fn resolve_in_order<'v>(
    view: &'v View,
    qname: &LowerName,
    qtype: RecordType,
    stored_order: bool,
) -> Resolution<'v> {
    if !view.origin.zone_of(qname) {
        return match view.reverse.iter().find(|zone| zone.origin.zone_of(qname)) {
            Some(zone) => resolve_reverse(view, zone, qname, qtype, stored_order),
            None => Resolution::refused(),
        };
    }
    let resolution = resolve_in_zone(view, qname, qtype, stored_order);
    let negative = resolution.rcode == ResponseCode::NXDomain || resolution.answers.is_empty();
    if view.statics.is_loading() && resolution.authoritative && negative {
        // The first load of the fragments is still running: what is
        // missing may be in a file not read yet. SERVFAIL, which
        // resolvers retry, rather than a negative answer they would cache.
        return Resolution {
            rcode: ResponseCode::ServFail,
            ..Resolution::default()
        };
    }
    resolution
}

/// [`resolve_in_order`] for a name inside the service zone.
fn resolve_in_zone<'v>(
    view: &'v View,
    qname: &LowerName,
    qtype: RecordType,
    stored_order: bool,
) -> Resolution<'v> {
    let mut resolution = Resolution {
        authoritative: true,
        stored_order,
        ..Resolution::default()
    };
    let mut name = qname.clone();
    for _ in 0..=MAX_CNAME_CHAIN {
        if let Some(cut) = delegation(view, &name, qtype) {
            if resolution.answers.is_empty() {
                // A referral: not our answer to give.
                resolution.authoritative = false;
                if let Some(ns) = cut.rrset(RecordType::NS) {
                    for member in &ns.members {
                        resolution
                            .authorities
                            .push(Cow::Owned(member.record.clone()));
                        glue(member, view, &mut resolution.additionals);
                    }
                }
            }
            return resolution;
        }
        let Some(node) = view.node(&name) else {
            resolution.rcode = ResponseCode::NXDomain;
            resolution
                .authorities
                .push(Cow::Borrowed(&view.negative_soa));
            return resolution;
        };
        let found = if resolution.add(&node, |node| pick(node, qtype), view) {
            true
        } else if let Some(cname) = node.rrset(RecordType::CNAME) {
            resolution.add(&node, |node| node.rrset(RecordType::CNAME), view);
            let target = cname.members.first().and_then(|m| match &m.record.data {
                RData::CNAME(target) => Some(LowerName::from(&target.0)),
                _ => None,
            });
            match target {
                Some(target) if view.origin.zone_of(&target) => {
                    name = target;
                    continue;
                }
                // Outside the zone: the client's resolver follows it.
                _ => return resolution,
            }
        } else {
            false
        };
        if !found {
            // NODATA (possibly at the end of a CNAME chain).
            resolution
                .authorities
                .push(Cow::Borrowed(&view.negative_soa));
        }
        return resolution;
    }
    // A chain longer than we follow (or a loop): what we have is the answer.
    resolution
}
