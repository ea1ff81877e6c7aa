//! The published view: one immutable snapshot of everything the zone serves.
//!
//! Takes the zone settings and the live registry; produces a [`View`], a map
//! from lower-case owner name to the RRsets at that name, with SOA and NS at
//! the apex, every empty non-terminal present, and records already built with
//! their final TTLs. Once built, a view is never changed: the answering path
//! reads it without locks, and a change anywhere means building a new view
//! and publishing it through [`publish::ViewHandle`].
//!
//! The only interior mutability is each RRset's rotation cursor, an atomic
//! counter that picks where the next answer starts; the records themselves
//! are never reordered.

pub mod publish;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use hickory_proto::rr::rdata::{A, AAAA, NS, SOA, SRV};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};

use crate::config::{SOA_EXPIRE, SOA_REFRESH, SOA_RETRY, ServeConfig};
use crate::intake::wire::Proto;
use crate::registry::{Instance, Registry};

/// One record of an RRset, with what load spreading needs to order it.
#[derive(Debug)]
pub struct Member {
    /// The record as served.
    pub record: Record,
    /// RFC 2782 priority of the instance behind it (lower first).
    pub priority: u16,
    /// RFC 2782 weight of the instance behind it.
    pub weight: u16,
    /// Address record of an SRV target, for the additional section.
    pub glue: Option<Record>,
}

/// How the members of an RRset are ordered in each answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Always in stored order (SOA, NS).
    Fixed,
    /// One priority, one weight: plain round-robin.
    RoundRobin,
    /// Several priorities or weights: RFC 2782 order per answer.
    Weighted,
}

/// All records of one type at one name.
#[derive(Debug)]
pub struct RrSet {
    /// The type of every member.
    pub rtype: RecordType,
    /// Members, sorted by priority (stable, so equal priorities keep their order).
    pub members: Vec<Member>,
    /// How answers order the members.
    pub policy: Policy,
    /// Where the next rotation starts. Starts at a random point, so that
    /// frequent view rebuilds do not keep favouring the first member.
    cursor: AtomicUsize,
}

impl RrSet {
    pub(crate) fn new(rtype: RecordType, mut members: Vec<Member>, rotate: bool) -> Self {
        members.sort_by_key(|m| m.priority);
        let uniform = members
            .windows(2)
            .all(|w| (w[0].priority, w[0].weight) == (w[1].priority, w[1].weight));
        let policy = match (rotate, uniform) {
            (false, _) => Policy::Fixed,
            (true, true) => Policy::RoundRobin,
            (true, false) => Policy::Weighted,
        };
        let start = if members.is_empty() {
            0
        } else {
            fastrand::usize(..members.len())
        };
        RrSet {
            rtype,
            members,
            policy,
            cursor: AtomicUsize::new(start),
        }
    }

    /// Takes the next rotation offset (wrapping), for round-robin ordering.
    pub fn next_offset(&self) -> usize {
        self.cursor.fetch_add(1, Ordering::Relaxed)
    }
}

/// Everything at one owner name. An empty node is an empty non-terminal:
/// the name exists (NODATA, not NXDOMAIN) but holds no records.
#[derive(Debug, Default)]
pub struct Node {
    /// RRsets, at most one per type.
    pub rrsets: Vec<RrSet>,
}

impl Node {
    /// The RRset of `rtype`, if any.
    pub fn rrset(&self, rtype: RecordType) -> Option<&RrSet> {
        self.rrsets.iter().find(|set| set.rtype == rtype)
    }
}

/// One immutable snapshot of the served zone.
#[derive(Debug)]
pub struct View {
    /// The zone's apex.
    pub origin: LowerName,
    /// The SOA serial of this snapshot.
    pub serial: u32,
    /// The SOA with the TTL for negative answers (RFC 2308).
    pub negative_soa: Record,
    nodes: HashMap<LowerName, Node>,
}

impl View {
    /// The node at `name` (lower case, absolute), if the name exists.
    pub fn node(&self, name: &LowerName) -> Option<&Node> {
        self.nodes.get(name)
    }

    /// Number of names in the view (empty non-terminals included).
    pub fn name_count(&self) -> usize {
        self.nodes.len()
    }

    /// Builds the view for `serial` from the settings and the registry.
    pub fn build(config: &ServeConfig, serial: u32, registry: &Registry) -> View {
        let mut builder = Builder::new(config);
        let soa = soa_record(config, serial, config.soa_ttl);
        let negative_soa = soa_record(config, serial, config.negative_ttl());
        builder.fixed(&config.zone, RecordType::SOA, vec![soa]);
        let ns = Record::from_rdata(
            config.zone.clone(),
            config.soa_ttl,
            RData::NS(NS(config.primary_ns.clone())),
        );
        builder.fixed(&config.zone, RecordType::NS, vec![ns]);
        if config.zone.zone_of(&config.primary_ns) {
            for family in [RecordType::A, RecordType::AAAA] {
                let records: Vec<Record> = config
                    .ns_addrs
                    .iter()
                    .filter(|ip| record_type_of(**ip) == family)
                    .map(|ip| address_record(&config.primary_ns, config.soa_ttl, *ip))
                    .collect();
                builder.fixed(&config.primary_ns, family, records);
            }
        }

        for (service, instances) in registry.services() {
            builder.service(service, instances);
        }

        View {
            origin: LowerName::from(&config.zone),
            serial,
            negative_soa,
            nodes: builder.finish(),
        }
    }
}

fn soa_record(config: &ServeConfig, serial: u32, ttl: u32) -> Record {
    Record::from_rdata(
        config.zone.clone(),
        ttl,
        RData::SOA(SOA::new(
            config.primary_ns.clone(),
            config.contact.clone(),
            serial,
            SOA_REFRESH,
            SOA_RETRY,
            SOA_EXPIRE,
            config.soa_minimum,
        )),
    )
}

fn record_type_of(ip: IpAddr) -> RecordType {
    match ip {
        IpAddr::V4(_) => RecordType::A,
        IpAddr::V6(_) => RecordType::AAAA,
    }
}

fn address_record(name: &Name, ttl: u32, ip: IpAddr) -> Record {
    let rdata = match ip {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    };
    Record::from_rdata(name.clone(), ttl, rdata)
}

/// Collects RRsets by name, then adds the empty non-terminals.
struct Builder<'c> {
    config: &'c ServeConfig,
    nodes: HashMap<LowerName, Node>,
}

impl<'c> Builder<'c> {
    fn new(config: &'c ServeConfig) -> Self {
        Builder {
            config,
            nodes: HashMap::new(),
        }
    }

    fn add(&mut self, name: &Name, set: RrSet) {
        if set.members.is_empty() {
            // The name still exists: answer NODATA, not NXDOMAIN.
            self.nodes.entry(LowerName::from(name)).or_default();
            return;
        }
        self.nodes
            .entry(LowerName::from(name))
            .or_default()
            .rrsets
            .push(set);
    }

    fn fixed(&mut self, name: &Name, rtype: RecordType, records: Vec<Record>) {
        let members = records
            .into_iter()
            .map(|record| Member {
                record,
                priority: 0,
                weight: 0,
                glue: None,
            })
            .collect();
        self.add(name, RrSet::new(rtype, members, false));
    }

    fn child(&self, labels: &[&str]) -> Name {
        let mut name = Name::from_labels(labels.iter().map(|l| l.as_bytes()))
            .expect("labels were validated when the heartbeat was decoded");
        name.set_fqdn(false);
        name.append_domain(&self.config.zone)
            .expect("zone length was validated to leave room for two labels")
    }

    fn service<'r>(
        &mut self,
        service: &str,
        instances: impl Iterator<Item = (&'r str, &'r Instance)>,
    ) {
        let service_name = self.child(&[service]);
        let answer_ttl = self.config.answer_ttl;
        let mut by_family: [Vec<Member>; 2] = [Vec::new(), Vec::new()];
        let mut srv: [Vec<Member>; 2] = [Vec::new(), Vec::new()];
        for (id, instance) in instances {
            let ttl = answer_ttl.min(instance.ttl);
            let instance_name = self.child(&[id, service]);
            let address = address_record(&instance_name, ttl, instance.addr);
            let rtype = record_type_of(instance.addr);
            self.fixed(&instance_name, rtype, vec![address.clone()]);
            if instance.draining {
                continue;
            }
            let family = usize::from(rtype == RecordType::AAAA);
            let mut service_address = address.clone();
            service_address.name = service_name.clone();
            by_family[family].push(Member {
                record: service_address,
                priority: instance.priority,
                weight: instance.weight,
                glue: None,
            });
            let srv_record = Record::from_rdata(
                Name::root(), // owner set below, per protocol
                ttl,
                RData::SRV(SRV::new(
                    instance.priority,
                    instance.weight,
                    instance.port,
                    instance_name,
                )),
            );
            srv[usize::from(instance.proto == Proto::Udp)].push(Member {
                record: srv_record,
                priority: instance.priority,
                weight: instance.weight,
                glue: Some(address),
            });
        }
        for (family, members) in [RecordType::A, RecordType::AAAA].into_iter().zip(by_family) {
            self.rrset_with_shared_ttl(&service_name, family, members);
        }
        for (proto, members) in [Proto::Tcp, Proto::Udp].into_iter().zip(srv) {
            if members.is_empty() {
                continue;
            }
            let owner = self.child(&[&format!("_{service}"), &format!("_{}", proto.as_str())]);
            self.rrset_with_shared_ttl(&owner, RecordType::SRV, members);
        }
    }

    /// Adds a rotated RRset whose members all carry the smallest TTL among
    /// them: RFC 2181 §5.2 wants one TTL per RRset.
    fn rrset_with_shared_ttl(&mut self, owner: &Name, rtype: RecordType, mut members: Vec<Member>) {
        if members.is_empty() {
            return;
        }
        let ttl = members.iter().map(|m| m.record.ttl).min().unwrap_or(0);
        for member in &mut members {
            member.record.name = owner.clone();
            member.record.ttl = ttl;
        }
        self.add(owner, RrSet::new(rtype, members, true));
    }

    /// Adds every missing name between each owner and the apex.
    fn finish(mut self) -> HashMap<LowerName, Node> {
        let apex = self.config.zone.num_labels();
        let owners: Vec<Name> = self.nodes.keys().map(|k| Name::from(k.clone())).collect();
        for owner in owners {
            let mut name = owner.base_name();
            while name.num_labels() > apex {
                let key = LowerName::from(&name);
                if self.nodes.contains_key(&key) {
                    break;
                }
                self.nodes.insert(key, Node::default());
                name = name.base_name();
            }
        }
        self.nodes
    }
}
