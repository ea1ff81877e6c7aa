//! DNS answering: from a question and one snapshot to the records of a reply.
//!
//! Takes a [`View`] and a question (lower-case name and type); produces a
//! [`Resolution`]: the rcode and the records of each section, as references
//! into the view. [`resolve`] is pure and synchronous: it never locks,
//! waits, allocates more than the answer's own lists, or touches the
//! registry or the disk. [`handler`] is the only module that speaks
//! hickory-server's traits; it turns a `Resolution` into a reply on the wire.

pub mod handler;
pub mod rotate;

use hickory_proto::rr::{LowerName, Record, RecordType};

use crate::view::View;

/// What the zone says about one question.
#[derive(Debug)]
pub enum Resolution<'v> {
    /// The name is outside every zone served here.
    Refused,
    /// NOERROR with records (answer and additional sections).
    Answer {
        /// Answer section, already ordered for load spreading.
        answers: Vec<&'v Record>,
        /// Additional section (addresses of SRV targets and NS hosts).
        additionals: Vec<&'v Record>,
    },
    /// NOERROR without records: the name exists, the type does not. The SOA
    /// goes in the authority section.
    NoData(&'v Record),
    /// The name does not exist. The SOA goes in the authority section.
    NxDomain(&'v Record),
}

/// Answers `qtype` at `qname` (lower case) from `view`.
pub fn resolve<'v>(view: &'v View, qname: &LowerName, qtype: RecordType) -> Resolution<'v> {
    if !view.origin.zone_of(qname) {
        return Resolution::Refused;
    }
    let Some(node) = view.node(qname) else {
        return Resolution::NxDomain(&view.negative_soa);
    };
    let mut answers = Vec::new();
    let mut additionals = Vec::new();
    let mut collect = |set: &'v crate::view::RrSet| {
        for member in rotate::order(set) {
            answers.push(&member.record);
            additionals.extend(member.glue.as_ref());
        }
    };
    if qtype == RecordType::ANY {
        node.rrsets.iter().for_each(&mut collect);
    } else if let Some(set) = node.rrset(qtype) {
        collect(set);
    }
    if answers.is_empty() {
        return Resolution::NoData(&view.negative_soa);
    }
    if qtype == RecordType::NS {
        add_host_addresses(view, &answers, &mut additionals);
    }
    Resolution::Answer {
        answers,
        additionals,
    }
}

/// Adds the in-zone addresses of NS targets to the additional section.
fn add_host_addresses<'v>(
    view: &'v View,
    answers: &[&'v Record],
    additionals: &mut Vec<&'v Record>,
) {
    for record in answers {
        let hickory_proto::rr::RData::NS(ns) = &record.data else {
            continue;
        };
        if let Some(node) = view.node(&LowerName::from(&ns.0)) {
            for rtype in [RecordType::A, RecordType::AAAA] {
                if let Some(set) = node.rrset(rtype) {
                    additionals.extend(set.members.iter().map(|m| &m.record));
                }
            }
        }
    }
}
