//! The published view: one immutable snapshot of everything the zone serves.
//!
//! Takes the zone settings, the live registry and the static data of the
//! zone fragments; produces a [`View`]: lower-case owner name → the RRsets
//! at that name, records already built with their final TTLs and the
//! addresses that go in the additional section. Once built, a view is never
//! changed: the answering path reads it without locks, and any change means
//! building a new view and publishing it through [`publish::ViewHandle`].
//!
//! A view has two layers. The [`StaticZone`] is built from the fragments
//! only when a fragment changes, and is shared by every view until then.
//! The live layer is rebuilt on each registry change; it holds the apex
//! (SOA, NS), every name that heartbeats create, and, at those names, a
//! merged copy of any static RRsets, so that a static record and live
//! instances at the same name and type form one RRset that rotates across
//! both. A lookup tries the live layer, then the static one.
//!
//! The only interior mutability is each RRset's rotation cursor, an atomic
//! counter that picks where the next answer starts; the records themselves
//! are never reordered.

pub mod publish;

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use hickory_proto::rr::rdata::{A, AAAA, NS, SOA, SRV};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};

use crate::config::{SOA_EXPIRE, SOA_REFRESH, SOA_RETRY, ServeConfig};
use crate::fragments::{FragmentSet, Location};
use crate::intake::wire::{DEFAULT_WEIGHT, Proto};
use crate::registry::{Instance, Registry};

/// One record of an RRset, with what load spreading needs to order it.
#[derive(Debug, Clone)]
pub struct Member {
    /// The record as served.
    pub record: Record,
    /// RFC 2782 priority (lower first).
    pub priority: u16,
    /// RFC 2782 weight.
    pub weight: u16,
    /// Address records of the target (SRV, MX, NS), for the additional section.
    pub glue: Vec<Record>,
}

impl Member {
    fn plain(record: Record) -> Self {
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

/// Types whose answers rotate for load spreading.
fn rotates(rtype: RecordType) -> bool {
    matches!(rtype, RecordType::A | RecordType::AAAA | RecordType::SRV)
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

    /// Adds members to the RRset of `rtype`, creating it if needed. Every
    /// member then carries the smallest TTL among them: RFC 2181 §5.2 wants
    /// one TTL per RRset.
    fn extend(&mut self, rtype: RecordType, members: Vec<Member>) {
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

/// Adds every missing name between each owner and the apex to `nodes`,
/// unless `elsewhere` already has it.
fn add_empty_non_terminals(
    nodes: &mut HashMap<LowerName, Node>,
    apex: &Name,
    elsewhere: impl Fn(&LowerName) -> bool,
) {
    let apex_labels = apex.num_labels();
    let owners: Vec<Name> = nodes.keys().map(|k| Name::from(k.clone())).collect();
    for owner in owners {
        let mut name = owner.base_name();
        while name.num_labels() > apex_labels {
            let key = LowerName::from(&name);
            if nodes.contains_key(&key) || elsewhere(&key) {
                break;
            }
            nodes.insert(key, Node::default());
            name = name.base_name();
        }
    }
}

/// Fills each SRV, MX and NS member's glue with its target's in-zone
/// addresses, found through `lookup`.
fn attach_glue<'n>(node: &mut Node, lookup: impl Fn(&LowerName) -> Option<&'n Node>) {
    for set in &mut node.rrsets {
        for member in &mut set.members {
            let target = match &member.record.data {
                RData::SRV(srv) => &srv.target,
                RData::MX(mx) => &mx.exchange,
                RData::NS(ns) => &ns.0,
                _ => continue,
            };
            if let Some(target_node) = lookup(&LowerName::from(target)) {
                member.glue = [RecordType::A, RecordType::AAAA]
                    .iter()
                    .filter_map(|t| target_node.rrset(*t))
                    .flat_map(|s| s.members.iter().map(|m| m.record.clone()))
                    .collect();
            }
        }
    }
}

/// The zone's data from fragments: built when a fragment changes, shared by
/// every view until the next change.
#[derive(Debug, Default)]
pub struct StaticZone {
    nodes: HashMap<LowerName, Node>,
    /// Owners of NS records below the apex: delegation points.
    delegations: HashSet<LowerName>,
    /// Names heartbeats may not take, with why: CNAME owners and delegated
    /// subtrees, with the fragment line that claims them.
    claims: HashMap<LowerName, (&'static str, Location)>,
}

impl StaticZone {
    /// Builds the static layer of `zone` from `fragments`.
    pub fn build(zone: &Name, fragments: &FragmentSet) -> StaticZone {
        let apex = LowerName::from(zone);
        let mut grouped: HashMap<(LowerName, RecordType), Vec<Member>> = HashMap::new();
        let mut claims = HashMap::new();
        let mut delegations = HashSet::new();
        for (location, line_record) in fragments.records() {
            let record = &line_record.record;
            let owner = LowerName::from(&record.name);
            match record.record_type() {
                RecordType::CNAME => {
                    claims.insert(owner.clone(), ("a CNAME", location));
                }
                RecordType::NS if owner != apex => {
                    delegations.insert(owner.clone());
                    claims.insert(owner.clone(), ("a delegation", location));
                }
                _ => {}
            }
            grouped
                .entry((owner, record.record_type()))
                .or_default()
                .push(Member::plain(record.clone()));
        }
        let mut nodes: HashMap<LowerName, Node> = HashMap::new();
        for ((owner, rtype), members) in grouped {
            nodes.entry(owner).or_default().extend(rtype, members);
        }
        add_empty_non_terminals(&mut nodes, zone, |_| false);
        let names: Vec<LowerName> = nodes.keys().cloned().collect();
        for name in names {
            if let Some(mut node) = nodes.remove(&name) {
                attach_glue(&mut node, |target| nodes.get(target));
                nodes.insert(name, node);
            }
        }
        StaticZone {
            nodes,
            delegations,
            claims,
        }
    }

    /// The node at `name`, if fragments define it.
    pub fn node(&self, name: &LowerName) -> Option<&Node> {
        self.nodes.get(name)
    }

    /// True when fragments claim any name (CNAME or delegation).
    pub fn has_claims(&self) -> bool {
        !self.claims.is_empty()
    }

    /// True when some fragment delegates part of the zone.
    pub fn has_delegations(&self) -> bool {
        !self.delegations.is_empty()
    }

    /// True when `name` is a delegation point.
    pub fn is_delegation(&self, name: &LowerName) -> bool {
        self.delegations.contains(name)
    }

    /// Why heartbeats may not create `name`, if a fragment claims it (a
    /// CNAME there, or a delegation at or above it).
    pub fn claim(&self, name: &Name, zone: &Name) -> Option<String> {
        let mut probe = name.clone();
        while probe.num_labels() > zone.num_labels() {
            let key = LowerName::from(&probe);
            if let Some((what, location)) = self.claims.get(&key) {
                let exact = probe == *name;
                if exact || *what == "a delegation" {
                    return Some(format!("{probe} is {what} at {location}"));
                }
            }
            probe = probe.base_name();
        }
        None
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
    /// Data from the fragments.
    pub statics: Arc<StaticZone>,
    /// Names from the apex and the registry (with static data merged in).
    live: HashMap<LowerName, Node>,
    /// Owner names created by heartbeats, for fragment validation.
    live_owners: HashSet<LowerName>,
}

impl View {
    /// The node at `name` (lower case, absolute), if the name exists.
    pub fn node(&self, name: &LowerName) -> Option<&Node> {
        self.live.get(name).or_else(|| self.statics.node(name))
    }

    /// True when heartbeats created `name` (not the apex or the NS host).
    pub fn is_live_owner(&self, name: &LowerName) -> bool {
        self.live_owners.contains(name)
    }

    /// Live owner names at or below `name`.
    pub fn live_owners_under<'a>(
        &'a self,
        name: &'a LowerName,
    ) -> impl Iterator<Item = &'a LowerName> + 'a {
        self.live_owners.iter().filter(move |n| name.zone_of(n))
    }

    /// Builds the view for `serial` from the settings, the registry and the
    /// static layer.
    pub fn build(
        config: &ServeConfig,
        serial: u32,
        registry: &Registry,
        statics: Arc<StaticZone>,
    ) -> View {
        let mut builder = LiveBuilder {
            config,
            nodes: HashMap::new(),
            owners: HashSet::new(),
        };
        let apex = &config.zone;
        let soa = soa_record(config, serial, config.soa_ttl);
        let negative_soa = soa_record(config, serial, config.negative_ttl());
        builder
            .node(apex)
            .extend(RecordType::SOA, vec![Member::plain(soa)]);
        let ns = Record::from_rdata(
            apex.clone(),
            config.soa_ttl,
            RData::NS(NS(config.primary_ns.clone())),
        );
        builder
            .node(apex)
            .extend(RecordType::NS, vec![Member::plain(ns)]);
        if config.zone.zone_of(&config.primary_ns) {
            let addresses: Vec<Member> = config
                .ns_addrs
                .iter()
                .map(|ip| Member::plain(address_record(&config.primary_ns, config.soa_ttl, *ip)))
                .collect();
            for family in [RecordType::A, RecordType::AAAA] {
                let of_family = addresses
                    .iter()
                    .filter(|m| m.record.record_type() == family)
                    .cloned()
                    .collect();
                builder.node(&config.primary_ns).extend(family, of_family);
            }
        }
        for (service, instances) in registry.services() {
            builder.service(service, instances, &statics);
        }
        let LiveBuilder {
            mut nodes, owners, ..
        } = builder;

        // Static RRsets at live names join them (a static A beside live
        // instances rotates with them); the static layer keeps its own copy.
        for (name, node) in &mut nodes {
            let Some(static_node) = statics.node(name) else {
                continue;
            };
            for set in &static_node.rrsets {
                node.extend(set.rtype, set.members.clone());
            }
        }
        add_empty_non_terminals(&mut nodes, apex, |n| statics.node(n).is_some());
        // The apex NS set now includes the fragments' NS records: give every
        // NS target its address.
        if let Some(mut apex_node) = nodes.remove(&LowerName::from(apex)) {
            attach_glue(&mut apex_node, |t| nodes.get(t).or_else(|| statics.node(t)));
            nodes.insert(LowerName::from(apex), apex_node);
        }

        View {
            origin: LowerName::from(apex),
            serial,
            negative_soa,
            statics,
            live: nodes,
            live_owners: owners,
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

/// `labels` (leftmost first) followed by `zone`: the names heartbeats
/// create. `None` if a label is not a valid label or the name is too long.
pub fn child_name(labels: &[&str], zone: &Name) -> Option<Name> {
    let mut name = Name::from_labels(labels.iter().map(|l| l.as_bytes())).ok()?;
    name.set_fqdn(false);
    name.append_domain(zone).ok()
}

/// Collects the live layer's RRsets by name.
struct LiveBuilder<'c> {
    config: &'c ServeConfig,
    nodes: HashMap<LowerName, Node>,
    owners: HashSet<LowerName>,
}

impl LiveBuilder<'_> {
    fn node(&mut self, name: &Name) -> &mut Node {
        self.nodes.entry(LowerName::from(name)).or_default()
    }

    fn child(&self, labels: &[&str]) -> Name {
        child_name(labels, &self.config.zone)
            .expect("labels were validated when the heartbeat was decoded, and the zone leaves room for two")
    }

    /// Adds the names of one service. Names a fragment claims (a CNAME, a
    /// delegated subtree) are skipped: the intake refuses such heartbeats,
    /// and this keeps a view consistent if a fragment claimed a name after
    /// the instance registered.
    fn service<'r>(
        &mut self,
        service: &str,
        instances: impl Iterator<Item = (&'r str, &'r Instance)>,
        statics: &StaticZone,
    ) {
        let zone = self.config.zone.clone();
        let service_name = self.child(&[service]);
        let answer_ttl = self.config.answer_ttl;
        let mut by_family: [Vec<Member>; 2] = [Vec::new(), Vec::new()];
        let mut srv: [Vec<Member>; 2] = [Vec::new(), Vec::new()];
        for (id, instance) in instances {
            let ttl = answer_ttl.min(instance.ttl);
            let instance_name = self.child(&[id, service]);
            if statics.claim(&instance_name, &zone).is_some() {
                continue;
            }
            let address = address_record(&instance_name, ttl, instance.addr);
            let rtype = record_type_of(instance.addr);
            self.owners.insert(LowerName::from(&instance_name));
            self.node(&instance_name)
                .extend(rtype, vec![Member::plain(address.clone())]);
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
                glue: Vec::new(),
            });
            let srv_record = Record::from_rdata(
                Name::root(), // owner set in rrset_at
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
                glue: vec![address],
            });
        }
        if statics.claim(&service_name, &zone).is_none() {
            self.owners.insert(LowerName::from(&service_name));
            for (family, members) in [RecordType::A, RecordType::AAAA].into_iter().zip(by_family) {
                self.rrset_at(&service_name, family, members);
            }
        }
        for (proto, members) in [Proto::Tcp, Proto::Udp].into_iter().zip(srv) {
            if members.is_empty() {
                continue;
            }
            let owner = self.child(&[&format!("_{service}"), &format!("_{}", proto.as_str())]);
            if statics.claim(&owner, &zone).is_some() {
                continue;
            }
            self.owners.insert(LowerName::from(&owner));
            self.rrset_at(&owner, RecordType::SRV, members);
        }
    }

    /// Adds members under `owner` (whose names are placeholders until now).
    fn rrset_at(&mut self, owner: &Name, rtype: RecordType, mut members: Vec<Member>) {
        for member in &mut members {
            member.record.name = owner.clone();
        }
        self.node(owner).extend(rtype, members);
    }
}
