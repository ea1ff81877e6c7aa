//! The published view: one immutable snapshot of everything the zone serves.
//!
//! Takes the zone settings, the live registry and the static data of the
//! zone fragments; produces a [`View`], which finds the node (the RRsets)
//! at a lower-case owner name. Apex data are kept as records with their
//! final TTLs; static data stay in the fragments' compact records, and the
//! names of live services in the instances the view shares with the
//! registry: nodes of both are built when a lookup asks for them. Once built, a view is never changed: the answering path reads
//! it without locks, and any change means building a new view and
//! publishing it through [`publish::ViewHandle`].
//!
//! A view has these parts, each shared between views until it changes:
//! - the apex node (SOA with this view's serial, NS), built per view, with
//!   the [`SharedApex`] names (the name server's address, DNS-SD browsing
//!   entry points), rebuilt only when fragments change;
//! - one [`ServiceNames`] per live service ([`live`]): its instances and
//!   rotation cursors, from which a lookup builds the records of one of its
//!   names, with any static RRsets at that name merged in (so a static
//!   record and live instances at one name and type form one RRset that
//!   rotates across both); rebuilt only when that service changes, in a
//!   persistent map whose copy per view is O(1);
//! - indexes over all services, updated per changed service: the
//!   [`LiveIndex`] (DNS-SD service types, shared empty non-terminals) and,
//!   when reverse zones are served, the [`AddressIndex`] ([`reverse`]);
//! - the [`StaticZone`] from the fragments, rebuilt (by changed name) only
//!   when a fragment changes; a change there rebuilds every service too.
//!
//! A lookup tries the apex names, then the service the name belongs to
//! (found from its labels), then the static layer, then the shared empty
//! non-terminals.
//!
//! The only interior mutability is each RRset's rotation cursor, an atomic
//! counter that picks where the next answer starts; the records themselves
//! are never reordered.

pub mod feed;
pub mod history;
pub mod live;
pub mod publish;
pub mod reverse;

use std::borrow::Cow;
use std::collections::HashMap;
use std::iter;
use std::sync::Arc;

use hickory_proto::rr::rdata::{NS, PTR, SOA};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};

use crate::config::{MAX_LISTED_RECORDS, SOA_EXPIRE, SOA_REFRESH, SOA_RETRY, ServeConfig};
pub use crate::fragments::StaticZone;
use crate::registry::Registry;
pub use crate::rrset::{Cursor, Member, Node, Policy, RrSet, merge_sets, next_generation, rotates};
use live::address_record;
pub use live::{LiveIndex, ServiceIndex, ServiceNames};
pub use reverse::{AddressIndex, ReverseZone};

/// Maps keyed by owner name. ahash: several times faster than SipHash on
/// names, and still seeded per process against collision flooding.
pub type NameMap<V> = HashMap<LowerName, V, ahash::RandomState>;

/// Adds every missing name between each owner and the apex to `nodes`
/// (the live layer), unless `elsewhere` (the static layer) has it.
fn add_empty_non_terminals(
    nodes: &mut NameMap<Node>,
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

/// The service keys a name inside the zone may belong to: the label just
/// above the apex (`web` for `web.<zone>` and `i1.web.<zone>`), and for
/// `_<service>._tcp` and `_<service>._udp` names the service label.
fn service_keys(name: &LowerName, apex_labels: u8) -> impl Iterator<Item = &[u8]> {
    let depth = usize::from(name.num_labels().saturating_sub(apex_labels));
    let mut labels = name.iter().skip(depth.saturating_sub(2));
    let (second, top) = match depth {
        0 => (None, None),
        1 => (None, labels.next()),
        _ => (labels.next(), labels.next()),
    };
    let dnssd = match (second, top) {
        (Some(service), Some(b"_tcp" | b"_udp")) => service.strip_prefix(b"_"),
        _ => None,
    };
    top.into_iter().chain(dnssd)
}

/// Static RRsets at live names join them (a static A beside live
/// instances rotates with them); the static layer keeps its own copy.
fn merge_statics(nodes: &mut NameMap<Node>, statics: &StaticZone) {
    for (name, node) in nodes.iter_mut() {
        let Some(static_node) = statics.node(name) else {
            continue;
        };
        for set in &static_node.rrsets {
            node.extend(set.rtype, set.members.clone());
        }
    }
}

/// What an answer cached outside the view (the fast path's pre-encoded
/// replies) was built from, so the view can tell later whether it still
/// holds: see [`View::stamp`] and [`View::still_holds`]. It names the part
/// of the zone by number and keeps nothing of it alive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerStamp(Stamp);

impl AnswerStamp {
    /// A stamp good for `view` only.
    pub fn for_view(view: &View) -> AnswerStamp {
        AnswerStamp(Stamp::Serial(view.serial))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Stamp {
    /// Good for one view only (apex data, negative answers, which carry
    /// the serial, reverse zones, answers with data from other names).
    Serial(u32),
    /// One live service's names, until that service changes.
    Service { key: Box<str>, generation: u64 },
    /// The static layer, until a fragment changes, at a name no live
    /// service holds: the keys of the services that would take the name
    /// over (merging its records into theirs) if they appeared.
    Statics {
        generation: u64,
        keys: Vec<Box<str>>,
    },
    /// The DNS-SD list of service types, until the set of types or the
    /// static layer changes.
    TypeList { types: u64, statics: u64 },
}

/// Which part of a view a name's node lives in. Parts are shared between
/// views until they change, so an answer built from one part stays valid
/// while the next view still holds the same part.
#[derive(Debug)]
enum Origin<'v> {
    /// The apex layer, rebuilt for every view.
    Apex,
    /// The DNS-SD list of service types (`_services._dns-sd._udp`).
    TypeList,
    /// A live service's names.
    Service(&'v Arc<ServiceNames>),
    /// The static layer from the fragments.
    Statics(&'v Arc<StaticZone>),
}

/// Live services by (lower-case) name, each with the names it creates.
/// A persistent map: a view's copy is O(1), and replacing one service
/// copies a path of the tree, not every entry.
pub type ServiceMap = imbl::HashMap<String, Arc<ServiceNames>>;

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
    /// The apex (SOA, NS), the name server's address, the DNS-SD browsing
    /// names and the empty non-terminals services share: rebuilt per view.
    apex: NameMap<Arc<Node>>,
    /// Names created by heartbeats, per service.
    services: ServiceMap,
    /// Service types and shared empty non-terminals of the live services.
    index: LiveIndex,
    /// `_services._dns-sd._udp.<zone>`, whose PTR records list `index`'s types.
    type_list: LowerName,
    /// TTL of the records built from live data.
    answer_ttl: u32,
    /// Most A/AAAA/SRV records one answer lists (`--max-answers`).
    pub max_answers: Option<usize>,
    /// The reverse zones served, each with PTR records for live instances.
    pub reverse: Vec<ReverseZone>,
}

/// A node as a lookup finds it: shared with the view (apex and static
/// names), or built for this lookup (a live service's names).
pub type NodeRef<'v> = Cow<'v, Node>;

impl View {
    /// The node at `name` (lower case, absolute), if the name exists.
    pub fn node(&self, name: &LowerName) -> Option<NodeRef<'_>> {
        self.locate(name).map(|(_, node)| node)
    }

    /// Where the node at `name` comes from (see [`View::node`]).
    fn node_origin(&self, name: &LowerName) -> Option<Origin<'_>> {
        self.locate(name).map(|(origin, _)| origin)
    }

    /// What an answer at `name` built from this view depends on.
    /// `self_contained` says the answer holds only records of `name`
    /// itself (no negative answer, which carries the serial in its SOA;
    /// no data looked up at other names); only such answers may outlive
    /// this view.
    pub fn stamp(&self, name: &LowerName, self_contained: bool) -> AnswerStamp {
        let this_view = AnswerStamp(Stamp::Serial(self.serial));
        if !self_contained {
            return this_view;
        }
        match self.node_origin(name) {
            Some(Origin::Service(names)) => AnswerStamp(Stamp::Service {
                key: names.key().into(),
                generation: names.generation(),
            }),
            Some(Origin::Statics(statics)) => {
                let keys: Vec<Box<str>> = self
                    .service_keys_of(name)
                    .map(|key| String::from_utf8_lossy(key).into())
                    .collect();
                if keys
                    .iter()
                    .any(|key| self.services.contains_key(key.as_ref()))
                {
                    this_view
                } else {
                    AnswerStamp(Stamp::Statics {
                        generation: statics.generation(),
                        keys,
                    })
                }
            }
            Some(Origin::TypeList) => AnswerStamp(Stamp::TypeList {
                types: self.index.types_generation(),
                statics: self.statics.generation(),
            }),
            Some(Origin::Apex) | None => this_view,
        }
    }

    /// True when an answer stamped by [`View::stamp`] (in this view or an
    /// earlier one) is still what this view would answer.
    pub fn still_holds(&self, stamp: &AnswerStamp) -> bool {
        match &stamp.0 {
            Stamp::Serial(serial) => *serial == self.serial,
            Stamp::Service { key, generation } => self
                .services
                .get(key.as_ref())
                .is_some_and(|now| now.generation() == *generation),
            Stamp::TypeList { types, statics } => {
                self.index.types_generation() == *types && self.statics.generation() == *statics
            }
            Stamp::Statics { generation, keys } => {
                self.statics.generation() == *generation
                    && keys
                        .iter()
                        .all(|key| !self.services.contains_key(key.as_ref()))
            }
        }
    }

    /// The node at `name` and the layer holding it: the apex names, then
    /// the service the name belongs to, then the static layer.
    fn locate(&self, name: &LowerName) -> Option<(Origin<'_>, NodeRef<'_>)> {
        // Service keys come from a name's labels; outside the zone (a
        // reverse name, say) they would name a service by accident.
        if !self.origin.zone_of(name) {
            return None;
        }
        if let Some(node) = self.apex.get(name) {
            if *name == self.type_list {
                return Some((Origin::TypeList, Cow::Owned(self.type_list_node(node))));
            }
            return Some((Origin::Apex, Cow::Borrowed(node.as_ref())));
        }
        let apex_labels = self.origin.num_labels();
        let live = service_keys(name, apex_labels).find_map(|key| {
            let names = self.services.get(std::str::from_utf8(key).ok()?)?;
            let node = names.node(name, apex_labels, &self.statics)?;
            Some((Origin::Service(names), Cow::Owned(node)))
        });
        live.or_else(|| {
            self.statics
                .node(name)
                .map(|node| (Origin::Statics(&self.statics), Cow::Owned(node)))
        })
        .or_else(|| {
            self.index
                .needs(name)
                .then(|| (Origin::Apex, Cow::Owned(Node::default())))
        })
    }

    /// `_services._dns-sd._udp`: a PTR to every browsable service type
    /// (RFC 6763 §9), before any static records `shared` holds there, at
    /// most [`MAX_LISTED_RECORDS`] (no reply holds more). Built per
    /// lookup; the fast path keeps the answer while the types are the same.
    fn type_list_node(&self, shared: &Node) -> Node {
        let owner = Name::from(&self.type_list);
        let types: Vec<Member> = self
            .index
            .types()
            .take(MAX_LISTED_RECORDS)
            .map(|t| {
                let ptr = RData::PTR(PTR(t.clone()));
                Member::plain(Record::from_rdata(owner.clone(), self.answer_ttl, ptr))
            })
            .collect();
        let mut sets = vec![(RecordType::PTR, types)];
        merge_sets(&mut sets, shared);
        Node::from_sets(sets, |_| None)
    }

    /// The live services `name` would belong to, by key (whether or not
    /// they are live now).
    fn service_keys_of<'n>(&self, name: &'n LowerName) -> impl Iterator<Item = &'n [u8]> {
        service_keys(name, self.origin.num_labels())
    }

    /// True when `name` is the DNS-SD list of service types, whose PTR
    /// records get no additional data (RFC 6763 §12 names none).
    pub fn is_type_list(&self, name: &LowerName) -> bool {
        *name == self.type_list
    }

    /// True when heartbeats created `name` (not the apex or the NS host).
    pub fn is_live_owner(&self, name: &LowerName) -> bool {
        let apex_labels = self.origin.num_labels();
        service_keys(name, apex_labels).any(|key| {
            std::str::from_utf8(key)
                .ok()
                .and_then(|key| self.services.get(key))
                .is_some_and(|names| names.creates(name, apex_labels))
        })
    }

    /// A live owner name at or below `name`, if any.
    pub fn live_owner_under(&self, name: &LowerName) -> Option<LowerName> {
        self.services
            .values()
            .find_map(|names| names.owner_under(name))
    }

    /// The zones this view serves: the service zone, then each reverse zone.
    pub fn zones(&self) -> impl Iterator<Item = &LowerName> {
        iter::once(&self.origin).chain(self.reverse.iter().map(|zone| &zone.origin))
    }

    /// The SOA of the zone at `apex` (with the TTL queries see), if this
    /// view serves that zone.
    pub fn soa_of(&self, apex: &LowerName) -> Option<Record> {
        self.zones().any(|zone| zone == apex).then_some(())?;
        let node = self.records_node(apex)?;
        let set = node.rrset(RecordType::SOA)?;
        set.members.first().map(|member| member.record.clone())
    }

    /// Every record of the zone at `apex` but its SOA, name by name, each
    /// RRset whole (no rotation, no `--max-answers`): what a zone transfer
    /// sends. `None` if this view does not serve that zone.
    pub fn zone_records(&self, apex: &LowerName) -> Option<Vec<Record>> {
        let names = self.zone_names(apex)?;
        Some(
            names
                .iter()
                .flat_map(|name| self.records_at(name))
                .collect(),
        )
    }

    /// Every owner name of the zone at `apex` (some may hold no records),
    /// each once, in no particular order (a transfer needs none: sorting
    /// hundreds of thousands of names in DNS order costs more than
    /// building their records). `None` if this view does not serve that
    /// zone.
    pub fn zone_names(&self, apex: &LowerName) -> Option<Vec<LowerName>> {
        if *apex == self.origin {
            return Some(self.service_zone_names());
        }
        let reverse = self.reverse.iter().find(|zone| zone.origin == *apex)?;
        Some(
            iter::once(reverse.origin.clone())
                .chain(reverse.names())
                .collect(),
        )
    }

    /// Every owner name of the service zone, each once (some may hold no
    /// records): the apex first, then service by service, then the names
    /// only fragments hold.
    fn service_zone_names(&self) -> Vec<LowerName> {
        let mut seen: std::collections::HashSet<LowerName, ahash::RandomState> =
            std::collections::HashSet::default();
        let mut names = Vec::new();
        let mut add = |name: LowerName| {
            if seen.insert(name.clone()) {
                names.push(name);
            }
        };
        add(self.origin.clone());
        self.apex.keys().cloned().for_each(&mut add);
        for service in self.services.values() {
            service
                .candidate_names()
                .for_each(|name| add(LowerName::from(&name)));
        }
        self.statics
            .keys()
            .iter()
            .filter_map(crate::fragments::compact::NameKey::name)
            .for_each(&mut add);
        names
    }

    /// The owner names, in every zone served, that a change to the
    /// services with `keys` may add, change or remove records at in this
    /// view; with the apex layer's names (SOA serial, the DNS-SD type
    /// list), which any change may touch. Compared between two views,
    /// these names hold every difference between them when only those
    /// services changed.
    pub fn names_touched_by<'k>(&self, keys: impl Iterator<Item = &'k str>) -> Vec<LowerName> {
        let mut names: Vec<LowerName> = self.apex.keys().cloned().collect();
        for key in keys {
            let Some(service) = self.services.get(key) else {
                continue;
            };
            names.extend(service.candidate_names().map(|name| LowerName::from(&name)));
            for zone in &self.reverse {
                names.push(zone.origin.clone());
                names.extend(
                    service
                        .instances()
                        .iter()
                        .map(|instance| LowerName::from(Name::from(instance.addr)))
                        .filter(|name| zone.origin.zone_of(name)),
                );
            }
        }
        names
    }

    /// Every owner name of every zone served (for a change of the static
    /// layer, which may touch any name).
    pub fn all_names(&self) -> Vec<LowerName> {
        let mut names = self.service_zone_names();
        for zone in &self.reverse {
            names.push(zone.origin.clone());
            names.extend(zone.names());
        }
        names
    }

    /// The records at `name`, in whichever zone served holds it, every
    /// RRset whole, SOA records left out. An RRset holds no record twice
    /// (RFC 2181 §5): instances sharing an address give one A record.
    pub fn records_at(&self, name: &LowerName) -> Vec<Record> {
        let Some(node) = self.records_node(name) else {
            return Vec::new();
        };
        // Nodes of live names are built for this call: take their records
        // rather than copy them (a zone transfer lists every one).
        let mut records = Vec::new();
        for set in node.into_owned().rrsets {
            if set.rtype == RecordType::SOA {
                continue;
            }
            if set.members.len() == 1 {
                records.extend(set.members.into_iter().map(|member| member.record));
                continue;
            }
            let keep: Vec<bool> = {
                let mut seen = std::collections::HashSet::with_capacity(set.members.len());
                set.members
                    .iter()
                    .map(|member| seen.insert(&member.record.data))
                    .collect()
            };
            records.extend(
                set.members
                    .into_iter()
                    .zip(keep)
                    .filter_map(|(member, keep)| keep.then_some(member.record)),
            );
        }
        records
    }

    /// The node at `name` in the service zone or a reverse zone.
    fn records_node(&self, name: &LowerName) -> Option<NodeRef<'_>> {
        if self.origin.zone_of(name) {
            return self.node(name);
        }
        self.reverse
            .iter()
            .find(|zone| zone.origin.zone_of(name))
            .and_then(|zone| zone.node(name))
    }

    /// Builds the view for `serial` from every service in `registry`: what
    /// a first view, or a change of the static layer, needs.
    pub fn build(
        config: &ServeConfig,
        serial: u32,
        registry: &Registry,
        statics: Arc<StaticZone>,
    ) -> View {
        let services = all_services(config, registry, &statics);
        let index = LiveIndex::of(services.values());
        let addresses = AddressIndex::when_served(config, services.values());
        let shared = SharedApex::build(config, &statics);
        View::from_services(
            config, serial, services, index, &addresses, &shared, statics,
        )
    }

    /// Builds the view for `serial` from already built services, their
    /// indexes and the shared apex names: only the apexes (their SOAs
    /// carry the serial) are built here.
    pub fn from_services(
        config: &ServeConfig,
        serial: u32,
        services: ServiceMap,
        index: LiveIndex,
        addresses: &AddressIndex,
        shared: &SharedApex,
        statics: Arc<StaticZone>,
    ) -> View {
        let apex = &config.zone;
        let soa = soa_record(config, serial, config.soa_ttl);
        let negative_soa = soa_record(config, serial, config.negative_ttl());
        let ns = Record::from_rdata(
            apex.clone(),
            config.soa_ttl,
            RData::NS(NS(config.primary_ns.clone())),
        );
        let mut top = Node::default();
        top.extend(RecordType::SOA, vec![Member::plain(soa)]);
        top.extend(RecordType::NS, vec![Member::plain(ns)]);
        let origin = LowerName::from(apex);
        if let Some(static_top) = statics.node(&origin) {
            for set in &static_top.rrsets {
                top.extend(set.rtype, set.members.clone());
            }
        }
        let mut nodes = shared.nodes.clone();
        nodes.insert(origin.clone(), Arc::new(top));
        let reverse = config
            .reverse_zones
            .iter()
            .map(|reverse_apex| {
                let mut top = Node::default();
                let soa = soa_record_at(reverse_apex, config, serial, config.soa_ttl);
                let ns = Record::from_rdata(
                    reverse_apex.clone(),
                    config.soa_ttl,
                    RData::NS(NS(config.primary_ns.clone())),
                );
                top.extend(RecordType::SOA, vec![Member::plain(soa)]);
                top.extend(RecordType::NS, vec![Member::plain(ns)]);
                ReverseZone::new(
                    LowerName::from(reverse_apex),
                    soa_record_at(reverse_apex, config, serial, config.negative_ttl()),
                    top,
                    addresses.clone(),
                    apex.clone(),
                    config.answer_ttl,
                )
            })
            .collect();
        View {
            origin: origin.clone(),
            serial,
            negative_soa,
            statics,
            apex: nodes,
            services,
            index,
            type_list: child_name(&["_services", "_dns-sd", "_udp"], apex)
                .map_or_else(|| origin.clone(), |name| LowerName::from(&name)),
            answer_ttl: config.answer_ttl,
            max_answers: config.max_answers,
            reverse,
        }
    }
}

/// The apex layer's names other than the apex itself: the name server's
/// address and the DNS-SD browsing entry points, with any static records
/// there. They change only with the fragments, so views share them.
#[derive(Debug, Default, Clone)]
pub struct SharedApex {
    nodes: NameMap<Arc<Node>>,
}

impl SharedApex {
    /// Builds the shared apex names.
    pub fn build(config: &ServeConfig, statics: &StaticZone) -> SharedApex {
        let mut builder = LiveBuilder::new(config);
        let apex = &config.zone;
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
        builder.browsing();
        let mut nodes = builder.nodes;
        merge_statics(&mut nodes, statics);
        add_empty_non_terminals(&mut nodes, apex, |n| statics.contains(n));
        nodes.remove(&LowerName::from(apex));
        SharedApex {
            nodes: nodes.into_iter().map(|(k, v)| (k, Arc::new(v))).collect(),
        }
    }
}

/// The names of every service in `registry`.
pub fn all_services(config: &ServeConfig, registry: &Registry, statics: &StaticZone) -> ServiceMap {
    registry
        .services()
        .map(|(service, instances)| {
            (
                service.to_string(),
                Arc::new(ServiceNames::build(config, service, instances, statics)),
            )
        })
        .collect()
}

fn soa_record(config: &ServeConfig, serial: u32, ttl: u32) -> Record {
    soa_record_at(&config.zone, config, serial, ttl)
}

fn soa_record_at(apex: &Name, config: &ServeConfig, serial: u32, ttl: u32) -> Record {
    Record::from_rdata(
        apex.clone(),
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
    nodes: NameMap<Node>,
}

impl<'c> LiveBuilder<'c> {
    fn new(config: &'c ServeConfig) -> Self {
        LiveBuilder {
            config,
            nodes: NameMap::default(),
        }
    }

    fn node(&mut self, name: &Name) -> &mut Node {
        self.nodes.entry(LowerName::from(name)).or_default()
    }

    /// DNS-SD browsing entry points (RFC 6763 §9 and §11): the name of
    /// the list of service types (its PTR records are built per lookup
    /// from the [`LiveIndex`]), and the browsing domains, which point at
    /// the zone.
    fn browsing(&mut self) {
        let zone = self.config.zone.clone();
        if let Some(services) = child_name(&["_services", "_dns-sd", "_udp"], &zone) {
            self.node(&services);
        }
        for label in ["b", "lb"] {
            if let Some(domain) = child_name(&[label, "_dns-sd", "_udp"], &zone) {
                let ptr = Record::from_rdata(
                    domain.clone(),
                    self.config.soa_ttl,
                    RData::PTR(PTR(zone.clone())),
                );
                self.node(&domain)
                    .extend(RecordType::PTR, vec![Member::plain(ptr)]);
            }
        }
    }
}
