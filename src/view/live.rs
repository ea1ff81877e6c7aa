//! The live layer: the names one service's heartbeats create.
//!
//! Takes one service's live instances (the registry's own `Arc`s) and the
//! static layer; produces [`ServiceNames`]: the instances sorted by id, the
//! rotation cursors of the service's RRsets, and which of its names
//! fragments claim. Records are built only when a lookup asks for one of
//! its names ([`ServiceNames::node`]); the fast path keeps the encoded
//! answers, so building happens on cache misses and on the general path.
//! A live instance therefore costs one pointer here, not a copy of each of
//! the records it appears in (a hickory `Record` is 272 bytes, and an
//! instance appears in up to eight).
//!
//! Names of service `web` in zone `Z`:
//! - `web.Z`: A/AAAA of every instance that is up;
//! - `<id>.web.Z`: the instance's address, also while draining;
//! - `_web._tcp.Z`, `_web._udp.Z`: SRV (targets' addresses as glue) and
//!   the DNS-SD PTR browse list of the instances that are up;
//! - `<id>._web._tcp.Z`: DNS-SD SRV and TXT, also while draining.
//!
//! Static RRsets at these names join the live ones (one RRset per type,
//! rotating across both). It never changes once built, never reads the
//! registry again, and never keeps a record.

use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::rr::rdata::{A, AAAA, PTR, SRV, TXT};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};

use super::{Cursor, Member, NameMap, Node, StaticZone, child_name, merge_sets, rotates};
use crate::config::ServeConfig;
use crate::config::{DEFAULT_WEIGHT, MAX_LISTED_RECORDS};
use crate::registry::Instance;
use crate::registry::announcement::Proto;

/// The two transports, in the order of every per-protocol array here.
const PROTOS: [Proto; 2] = [Proto::Tcp, Proto::Udp];

fn proto_index(proto: Proto) -> usize {
    usize::from(proto == Proto::Udp)
}

/// Which of a service's names a lookup asks for.
#[derive(Debug, Clone, Copy)]
enum Shape<'n> {
    /// `<service>.<zone>`.
    Service,
    /// `<id>.<service>.<zone>`.
    Instance(&'n [u8]),
    /// `_<service>._<proto>.<zone>` (index into [`PROTOS`]).
    Type(usize),
    /// `<id>._<service>._<proto>.<zone>`.
    DnsSd(usize, &'n [u8]),
}

/// The names of one live service, with what building their records needs.
/// Built only when that service changes, and shared by every view until
/// then: a change costs work in proportion to its service.
#[derive(Debug)]
pub struct ServiceNames {
    /// The service label (lower case).
    key: Box<str>,
    /// `<service>.<zone>`, the parent of the instance names.
    base: Name,
    /// False when a fragment claims `<service>.<zone>` itself.
    base_served: bool,
    /// `_<service>._tcp.<zone>` and `_udp`, unless a fragment claims them.
    type_names: [Option<Name>; 2],
    /// Answer TTL cap; each record takes the smaller of it and its lease.
    answer_ttl: u32,
    /// Live instances whose own names no fragment claims, sorted by id.
    instances: Vec<Arc<Instance>>,
    /// Indices into `instances` whose DNS-SD name a fragment claims (rare).
    dnssd_claimed: Vec<usize>,
    /// Rotation cursors: A and AAAA at the service name, SRV at each type
    /// name. Kept here because records are built per lookup, while
    /// round-robin needs one count per RRset across lookups.
    cursors: [Cursor; 4],
    /// Cursors of other rotating RRsets where static records sit at one
    /// of this service's names (a static A beside an instance's own).
    merged: NameMap<Vec<(RecordType, Cursor)>>,
    /// This version's number (see [`super::next_generation`]).
    generation: u64,
    /// `_<service>._<proto>` names with browsable instances.
    pub(super) browsable: Vec<Name>,
    /// Ancestors outside this service's names that must exist as empty
    /// non-terminals (`_tcp.<zone>`), unless something else holds them.
    pub(super) outer: Vec<LowerName>,
}

impl ServiceNames {
    /// Builds the names of `service` from its live `instances` (in id
    /// order). Names a fragment claims (a CNAME, a delegated subtree) are
    /// left out: the intake refuses such heartbeats, and this keeps a view
    /// consistent if a fragment claimed a name after the instance registered.
    ///
    /// # Panics
    /// Never for a validated configuration and announcement: the zone
    /// leaves room for the longest names (`--zone` is checked), and
    /// service names are checked labels.
    pub fn build<'r>(
        config: &ServeConfig,
        service: &str,
        instances: impl Iterator<Item = &'r Arc<Instance>>,
        statics: &StaticZone,
    ) -> ServiceNames {
        let zone = &config.zone;
        let base = child_name(&[service], zone)
            .expect("labels were validated when the heartbeat was decoded");
        let service_label = format!("_{service}");
        let type_names = PROTOS.map(|proto| {
            child_name(&[&service_label, &format!("_{}", proto.as_str())], zone)
                .filter(|name| statics.claim(name, zone).is_none())
        });
        let check_instances = statics.has_claims();
        let instances: Vec<Arc<Instance>> = instances
            .filter(|instance| {
                !check_instances
                    || base
                        .prepend_label(instance.id.as_ref())
                        .is_ok_and(|name| statics.claim(&name, zone).is_none())
            })
            .cloned()
            .collect();
        let mut names = ServiceNames {
            key: service.into(),
            base_served: statics.claim(&base, zone).is_none(),
            base,
            type_names,
            answer_ttl: config.answer_ttl,
            dnssd_claimed: Vec::new(),
            cursors: std::array::from_fn(|_| Cursor::starting_below(instances.len())),
            instances,
            merged: NameMap::default(),
            generation: super::next_generation(),
            browsable: Vec::new(),
            outer: Vec::new(),
        };
        if check_instances {
            names.dnssd_claimed = (0..names.instances.len())
                .filter(|&i| {
                    names
                        .dnssd_name(&names.instances[i])
                        .is_some_and(|name| statics.claim(&name, zone).is_some())
                })
                .collect();
        }
        for (p, proto) in PROTOS.into_iter().enumerate() {
            let Some(type_name) = &names.type_names[p] else {
                continue;
            };
            let browsable = names.instances.iter().enumerate().any(|(i, inst)| {
                inst.proto == proto && !inst.draining && !names.dnssd_claimed.contains(&i)
            });
            if browsable {
                names.browsable.push(type_name.clone());
            }
            if names.instances.iter().any(|inst| inst.proto == proto) {
                let outer = LowerName::from(type_name.base_name());
                if !statics.contains(&outer) {
                    names.outer.push(outer);
                }
            }
        }
        names.merged = names.merged_cursors(statics);
        names
    }

    /// Cursors for rotating static RRsets at this service's names that
    /// have no cursor of their own here. Only names below a static name
    /// can hold static data, so most services look at two names.
    fn merged_cursors(&self, statics: &StaticZone) -> NameMap<Vec<(RecordType, Cursor)>> {
        let mut merged = NameMap::default();
        let mut add = |name: &Name, own: &[RecordType]| {
            let key = LowerName::from(name);
            let Some(node) = statics.node(&key) else {
                return;
            };
            let cursors: Vec<(RecordType, Cursor)> = node
                .rrsets
                .iter()
                .filter(|set| rotates(set.rtype) && !own.contains(&set.rtype))
                .map(|set| (set.rtype, Cursor::starting_below(set.members.len() + 1)))
                .collect();
            if !cursors.is_empty() {
                merged.insert(key, cursors);
            }
        };
        if statics.contains(&LowerName::from(&self.base)) {
            add(&self.base, &[RecordType::A, RecordType::AAAA]);
            for instance in &self.instances {
                if let Ok(name) = self.base.prepend_label(instance.id.as_ref()) {
                    add(&name, &[]);
                }
            }
        }
        for type_name in self.type_names.iter().flatten() {
            if statics.contains(&LowerName::from(type_name)) {
                add(type_name, &[RecordType::SRV]);
                for instance in &self.instances {
                    if let Ok(name) = type_name.prepend_label(instance.id.as_ref()) {
                        add(&name, &[]);
                    }
                }
            }
        }
        merged
    }

    /// The service label this was built for.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// This version's number: a rebuilt service gets a new one.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// What `name` is among this service's names, from its labels.
    fn shape<'n>(&self, name: &'n LowerName, apex_labels: u8) -> Option<Shape<'n>> {
        let depth = usize::from(name.num_labels().checked_sub(apex_labels)?);
        let mut labels = name.iter();
        let key = self.key.as_bytes();
        let dashed = |label: &[u8]| label.strip_prefix(b"_") == Some(key);
        let proto = |label: &[u8]| match label {
            b"_tcp" => Some(0),
            b"_udp" => Some(1),
            _ => None,
        };
        match depth {
            1 => (labels.next()? == key).then_some(Shape::Service),
            2 => {
                let (first, second) = (labels.next()?, labels.next()?);
                if second == key {
                    Some(Shape::Instance(first))
                } else if dashed(first) {
                    proto(second).map(Shape::Type)
                } else {
                    None
                }
            }
            3 => {
                let (id, service, transport) = (labels.next()?, labels.next()?, labels.next()?);
                if dashed(service) {
                    proto(transport).map(|p| Shape::DnsSd(p, id))
                } else {
                    None
                }
            }
            _ => None,
        }
    }

    /// The instance with `id`, and its index.
    fn instance(&self, id: &[u8]) -> Option<(usize, &Arc<Instance>)> {
        let i = self
            .instances
            .binary_search_by(|inst| inst.id.as_bytes().cmp(id))
            .ok()?;
        Some((i, &self.instances[i]))
    }

    fn ttl(&self, instance: &Instance) -> u32 {
        self.answer_ttl.min(instance.ttl)
    }

    fn instance_name(&self, instance: &Instance) -> Option<Name> {
        self.base.prepend_label(instance.id.as_ref()).ok()
    }

    fn dnssd_name(&self, instance: &Instance) -> Option<Name> {
        self.type_names[proto_index(instance.proto)]
            .as_ref()?
            .prepend_label(instance.id.as_ref())
            .ok()
    }

    /// True when the instance at `index` has a DNS-SD name here.
    fn has_dnssd(&self, index: usize) -> bool {
        self.type_names[proto_index(self.instances[index].proto)].is_some()
            && !self.dnssd_claimed.contains(&index)
    }

    /// True when heartbeats created `name` here (names that exist only as
    /// empty non-terminals do not count).
    pub fn creates(&self, name: &LowerName, apex_labels: u8) -> bool {
        match self.shape(name, apex_labels) {
            Some(Shape::Service) => self.base_served,
            Some(Shape::Instance(id)) => self.instance(id).is_some(),
            Some(Shape::Type(p)) => {
                self.type_names[p].is_some() && self.members_of(PROTOS[p]).next().is_some()
            }
            Some(Shape::DnsSd(p, id)) => self
                .instance(id)
                .is_some_and(|(i, inst)| inst.proto == PROTOS[p] && self.has_dnssd(i)),
            None => false,
        }
    }

    /// A name heartbeats created here at or below `name`, if any.
    pub fn owner_under(&self, name: &LowerName) -> Option<LowerName> {
        let related = |top: &Name| {
            let top = LowerName::from(top);
            name.zone_of(&top) || top.zone_of(name)
        };
        let below = |owner: LowerName| name.zone_of(&owner).then_some(owner);
        if related(&self.base) {
            let own = self.base_served.then(|| LowerName::from(&self.base));
            let instances = self
                .instances
                .iter()
                .filter_map(|inst| self.instance_name(inst).map(LowerName::from));
            if let Some(owner) = own.into_iter().chain(instances).find_map(below) {
                return Some(owner);
            }
        }
        for (p, type_name) in self.type_names.iter().enumerate() {
            let Some(type_name) = type_name.as_ref().filter(|t| related(t)) else {
                continue;
            };
            let own =
                (self.members_of(PROTOS[p]).next().is_some()).then(|| LowerName::from(type_name));
            let dnssd = (0..self.instances.len())
                .filter(|&i| self.instances[i].proto == PROTOS[p] && self.has_dnssd(i))
                .filter_map(|i| self.dnssd_name(&self.instances[i]).map(LowerName::from));
            if let Some(owner) = own.into_iter().chain(dnssd).find_map(below) {
                return Some(owner);
            }
        }
        None
    }

    /// Every name this service may hold records at: its own name, each
    /// instance's name, the DNS-SD type names and instance names (some
    /// may hold nothing, such as the service name when every instance
    /// drains).
    pub fn candidate_names(&self) -> impl Iterator<Item = Name> + '_ {
        let own = self.base_served.then(|| self.base.clone());
        let instances = self
            .instances
            .iter()
            .filter_map(|inst| self.instance_name(inst));
        let types = self.type_names.iter().flatten().cloned();
        let dnssd = (0..self.instances.len())
            .filter(|&i| self.has_dnssd(i))
            .filter_map(|i| self.dnssd_name(&self.instances[i]));
        own.into_iter().chain(instances).chain(types).chain(dnssd)
    }

    /// The live instances served, in id order.
    pub fn instances(&self) -> &[Arc<Instance>] {
        &self.instances
    }

    /// Instances that are up, with `proto`, with their indices.
    fn members_of(&self, proto: Proto) -> impl Iterator<Item = (usize, &Arc<Instance>)> {
        self.instances
            .iter()
            .enumerate()
            .filter(move |(_, inst)| inst.proto == proto && !inst.draining)
    }

    /// The node at `name` (lower case, inside the zone), if this service
    /// creates it, built now, with `statics`' RRsets at that name merged in.
    pub fn node(&self, name: &LowerName, apex_labels: u8, statics: &StaticZone) -> Option<Node> {
        let shape = self.shape(name, apex_labels)?;
        let mut sets: Vec<(RecordType, Vec<Member>)> = Vec::new();
        match shape {
            Shape::Service => {
                if !self.base_served {
                    return None;
                }
                let (mut v4, mut v6) = (Vec::new(), Vec::new());
                for inst in self.instances.iter().filter(|inst| !inst.draining) {
                    let member = Member {
                        record: address_record(&self.base, self.ttl(inst), inst.addr),
                        priority: inst.priority,
                        weight: inst.weight,
                        glue: Vec::new(),
                    };
                    match inst.addr {
                        IpAddr::V4(_) => v4.push(member),
                        IpAddr::V6(_) => v6.push(member),
                    }
                }
                sets.push((RecordType::A, v4));
                sets.push((RecordType::AAAA, v6));
            }
            Shape::Instance(id) => {
                let (_, inst) = self.instance(id)?;
                let owner = self.instance_name(inst)?;
                let record = address_record(&owner, self.ttl(inst), inst.addr);
                let rtype = record.record_type();
                sets.push((rtype, vec![plain(record)]));
            }
            Shape::Type(p) => {
                let type_name = self.type_names[p].as_ref()?;
                let mut srv = Vec::new();
                let mut browse = Vec::new();
                for (i, inst) in self.members_of(PROTOS[p]) {
                    let Some(target) = self.instance_name(inst) else {
                        continue;
                    };
                    srv.push(self.srv_member(type_name, inst, target));
                    // The browse list does not rotate: no reply holds more.
                    if browse.len() < MAX_LISTED_RECORDS && !self.dnssd_claimed.contains(&i) {
                        let Some(dnssd) = self.dnssd_name(inst) else {
                            continue;
                        };
                        let ptr = Record::from_rdata(
                            type_name.clone(),
                            self.ttl(inst),
                            RData::PTR(PTR(dnssd)),
                        );
                        // Its SRV, TXT and address go in the additional
                        // section, looked up when answering.
                        browse.push(Member {
                            record: ptr,
                            priority: 0,
                            weight: 0,
                            glue: Vec::new(),
                        });
                    }
                }
                let exists = !srv.is_empty()
                    || (0..self.instances.len())
                        .any(|i| self.instances[i].proto == PROTOS[p] && self.has_dnssd(i));
                if !exists {
                    return None;
                }
                sets.push((RecordType::SRV, srv));
                sets.push((RecordType::PTR, browse));
            }
            Shape::DnsSd(p, id) => {
                let (i, inst) = self.instance(id)?;
                if inst.proto != PROTOS[p] || !self.has_dnssd(i) {
                    return None;
                }
                let owner = self.dnssd_name(inst)?;
                let target = self.instance_name(inst)?;
                let strings: Vec<String> = if inst.meta.is_empty() {
                    vec![String::new()]
                } else {
                    inst.meta.iter().map(|(k, v)| format!("{k}={v}")).collect()
                };
                let txt = Record::from_rdata(
                    owner.clone(),
                    self.ttl(inst),
                    RData::TXT(TXT::new(strings)),
                );
                sets.push((RecordType::SRV, vec![self.srv_member(&owner, inst, target)]));
                sets.push((RecordType::TXT, vec![plain(txt)]));
            }
        }
        if let Some(static_node) = statics.node(name) {
            merge_sets(&mut sets, &static_node);
        }
        let merged = self.merged.get(name);
        Some(Node::from_sets(sets, |rtype| match (shape, rtype) {
            (Shape::Service, RecordType::A) => Some(&self.cursors[0]),
            (Shape::Service, RecordType::AAAA) => Some(&self.cursors[1]),
            (Shape::Type(p), RecordType::SRV) => Some(&self.cursors[2 + p]),
            _ => merged?
                .iter()
                .find(|(t, _)| *t == rtype)
                .map(|(_, cursor)| cursor),
        }))
    }

    /// An SRV member at `owner` pointing at the instance, with its address
    /// as glue.
    fn srv_member(&self, owner: &Name, inst: &Instance, target: Name) -> Member {
        let ttl = self.ttl(inst);
        let glue = vec![address_record(&target, ttl, inst.addr)];
        let srv = SRV::new(inst.priority, inst.weight, inst.port, target);
        Member {
            record: Record::from_rdata(owner.clone(), ttl, RData::SRV(srv)),
            priority: inst.priority,
            weight: inst.weight,
            glue,
        }
    }
}

fn plain(record: Record) -> Member {
    Member {
        record,
        priority: 0,
        weight: DEFAULT_WEIGHT,
        glue: Vec::new(),
    }
}

/// An A or AAAA record for `ip` at `name`.
pub(super) fn address_record(name: &Name, ttl: u32, ip: IpAddr) -> Record {
    let rdata = match ip {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    };
    Record::from_rdata(name.clone(), ttl, rdata)
}

/// What the zone's shared names need from all live services together: the
/// DNS-SD service types with browsable instances (for
/// `_services._dns-sd._udp`) and the empty non-terminals services share
/// (`_tcp.<zone>`), with how many services need each. Persistent sets
/// updated per changed service, so a service appearing or going costs
/// O(log services), and a view's copy is O(1).
#[derive(Debug, Default, Clone)]
pub struct LiveIndex {
    types: imbl::OrdSet<Name>,
    /// Changes whenever `types` does, so the type list's answer can be
    /// kept while it holds.
    types_generation: u64,
    outer: imbl::HashMap<LowerName, u32>,
}

/// An index over every live service, kept current one changed service
/// at a time (so a change costs work for that service only).
pub trait ServiceIndex: Default {
    /// Accounts for `old` (if any) being replaced by `new` (if any).
    fn replace(&mut self, old: Option<&ServiceNames>, new: Option<&ServiceNames>);

    /// The index of every service in `services`.
    fn of<'s>(services: impl Iterator<Item = &'s Arc<ServiceNames>>) -> Self {
        let mut index = Self::default();
        for names in services {
            index.replace(None, Some(names));
        }
        index
    }
}

impl ServiceIndex for LiveIndex {
    fn replace(&mut self, old: Option<&ServiceNames>, new: Option<&ServiceNames>) {
        let before = old.map_or(&[][..], |n| n.browsable.as_slice());
        let after = new.map_or(&[][..], |n| n.browsable.as_slice());
        if before != after {
            self.types_generation = super::next_generation();
        }
        if let Some(old) = old {
            for name in &old.browsable {
                self.types.remove(name);
            }
            for name in &old.outer {
                let count = self.outer.get(name).copied().unwrap_or(0);
                if count <= 1 {
                    self.outer.remove(name);
                } else {
                    self.outer.insert(name.clone(), count - 1);
                }
            }
        }
        if let Some(new) = new {
            for name in &new.browsable {
                self.types.insert(name.clone());
            }
            for name in &new.outer {
                *self.outer.entry(name.clone()).or_insert(0) += 1;
            }
        }
    }
}

impl LiveIndex {
    /// The browsable service types, in canonical order.
    pub fn types(&self) -> impl Iterator<Item = &Name> {
        self.types.iter()
    }

    /// A number that changes whenever the set of types does.
    pub fn types_generation(&self) -> u64 {
        self.types_generation
    }

    /// True when some live service needs `name` as an empty non-terminal.
    pub fn needs(&self, name: &LowerName) -> bool {
        self.outer.contains_key(name)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::registry::Registry;
    use crate::registry::announcement::{Announcement, State};
    use crate::view::AnswerStamp;
    use crate::view::publish::Publisher;

    fn beat(registry: &mut Registry, service: &str, id: &str, proto: Proto) {
        let mut hb = Announcement::new(service, id, 80);
        hb.proto = proto;
        let addr = IpAddr::from([10, 0, 0, 1]);
        registry.apply(hb, addr, tokio::time::Instant::now());
    }

    fn down(registry: &mut Registry, service: &str, id: &str) {
        let mut hb = Announcement::new(service, id, 80);
        hb.state = State::Down;
        registry.apply(hb, IpAddr::from([10, 0, 0, 1]), tokio::time::Instant::now());
    }

    fn name(text: &str) -> LowerName {
        LowerName::from(Name::from_ascii(text).expect("valid name"))
    }

    #[test]
    fn names_outside_the_zone_never_reach_a_service() {
        // A zone of four labels: `1.0.0.10.in-addr.arpa.` then has the
        // shape of instance `1` of service `0` (its first two labels).
        let zone = Name::from_ascii("svc.corp.example.com.").expect("zone");
        let config = Arc::new(ServeConfig::new(zone));
        let mut registry = Registry::new(100, Vec::new());
        beat(&mut registry, "0", "1", Proto::Tcp);
        let publisher = Publisher::new(config, &registry, Arc::new(StaticZone::default()));
        let view = publisher.handle().load();
        assert!(view.node(&name("1.0.svc.corp.example.com.")).is_some());
        assert!(view.node(&name("1.0.0.10.in-addr.arpa.")).is_none());
        assert!(view.node_origin(&name("1.0.0.10.in-addr.arpa.")).is_none());
        // A stamp for a reverse name never ties it to that service.
        let stamp = view.stamp(&name("1.0.0.10.in-addr.arpa."), true);
        assert_eq!(stamp, AnswerStamp(super::super::Stamp::Serial(view.serial)));
    }

    #[test]
    fn service_types_and_shared_names_follow_services_one_by_one() {
        let zone = Name::from_ascii("svc.internal.").expect("zone");
        let config = Arc::new(ServeConfig::new(zone));
        let mut registry = Registry::new(100, Vec::new());
        let mut publisher = Publisher::new(config, &registry, Arc::new(StaticZone::default()));
        let changed = |names: &[&str]| {
            names
                .iter()
                .map(std::string::ToString::to_string)
                .collect::<HashSet<_>>()
        };
        let types = |publisher: &Publisher| {
            let view = publisher.handle().load();
            let node = view
                .node(&name("_services._dns-sd._udp.svc.internal."))
                .expect("the type list always exists");
            let ptrs: Vec<String> = node
                .rrset(RecordType::PTR)
                .map(|set| {
                    set.members
                        .iter()
                        .map(|m| m.record.data.to_string())
                        .collect()
                })
                .unwrap_or_default();
            ptrs
        };
        let tcp_exists = |publisher: &Publisher| {
            publisher
                .handle()
                .load()
                .node(&name("_tcp.svc.internal."))
                .is_some()
        };
        assert!(types(&publisher).is_empty());
        assert!(!tcp_exists(&publisher));

        beat(&mut registry, "web", "a", Proto::Tcp);
        beat(&mut registry, "db", "a", Proto::Tcp);
        beat(&mut registry, "dns", "a", Proto::Udp);
        publisher.publish(&registry, &changed(&["web", "db", "dns"]));
        assert_eq!(
            types(&publisher),
            // DNS canonical order: by the rightmost labels first.
            [
                "_db._tcp.svc.internal.",
                "_web._tcp.svc.internal.",
                "_dns._udp.svc.internal."
            ]
        );
        assert!(tcp_exists(&publisher));

        // `_tcp` stays while one TCP service is left, and goes with it.
        down(&mut registry, "web", "a");
        publisher.publish(&registry, &changed(&["web"]));
        assert!(tcp_exists(&publisher));
        down(&mut registry, "db", "a");
        publisher.publish(&registry, &changed(&["db"]));
        assert!(!tcp_exists(&publisher));
        assert_eq!(types(&publisher), ["_dns._udp.svc.internal."]);
    }
}
