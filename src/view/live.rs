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
//! - `<id>._web._tcp.Z`: DNS-SD SRV and TXT, also while draining;
//! - `<tag>[.<tag>…]._tag.web.Z`: A/AAAA of the instances that are up and
//!   carry every one of those tags; `<tag>[.<tag>…]._tag._web._tcp.Z`: their
//!   SRV; `_<tag>._sub._web._tcp.Z`: the DNS-SD subtype browse list (RFC 6763
//!   §7.1). Labels starting with `_` are never instance ids, so these names
//!   cannot collide with instance names.
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
use crate::config::{DEFAULT_WEIGHT, MAX_LISTED_RECORDS, TAG_CURSOR_SLOTS};
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
    /// `<tag>…._tag.<service>.<zone>`: the number of tag labels in front.
    Tagged(usize),
    /// `<tag>…._tag._<service>._<proto>.<zone>`.
    TaggedType(usize, usize),
    /// `_<tag>._sub._<service>._<proto>.<zone>` (the tag without `_`).
    Subtype(usize, &'n [u8]),
    /// `_tag.<service>.<zone>`, `_tag._<service>._<proto>.<zone>` and
    /// `_sub._<service>._<proto>.<zone>`: empty non-terminals (`None`:
    /// any protocol) while some instance has tags.
    TagParent(Option<usize>),
}

/// The label under which tag-filtered names sit.
const TAG_LABEL: &[u8] = b"_tag";
/// The label under which DNS-SD subtypes sit (RFC 6763 §7.1).
const SUB_LABEL: &[u8] = b"_sub";

/// True when `inst` carries every tag in `tags` (lower-case labels).
fn has_tags<'t>(inst: &Instance, mut tags: impl Iterator<Item = &'t [u8]>) -> bool {
    tags.all(|tag| {
        inst.tags
            .binary_search_by(|own| own.as_bytes().cmp(tag))
            .is_ok()
    })
}

/// The cursor slot of a tag combination: order-independent, so `a.b` and
/// `b.a` (the same set) rotate together.
fn tag_slot<'t>(tags: impl Iterator<Item = &'t [u8]>, slots: usize) -> usize {
    let sum = tags.fold(0u64, |sum, tag| {
        let hash = tag.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        sum.wrapping_add(hash)
    });
    usize::try_from(sum % slots.max(1) as u64).unwrap_or(0)
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
    /// Cursors of tag-filtered RRsets: slots of four (A, AAAA, SRV tcp,
    /// SRV udp), two slots per distinct tag up to [`TAG_CURSOR_SLOTS`], so
    /// a service with one tag keeps 8 cursors, not 128; empty when no
    /// instance has tags.
    tag_cursors: Box<[Cursor]>,
    /// Distinct tags of the instances, sorted (for transfers' name lists).
    tags: Vec<Box<str>>,
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
            tag_cursors: Box::default(),
            tags: Vec::new(),
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
        let mut tags: Vec<Box<str>> = names
            .instances
            .iter()
            .flat_map(|inst| inst.tags.iter().cloned())
            .collect();
        tags.sort_unstable();
        tags.dedup();
        if !tags.is_empty() {
            let len = names.instances.len();
            let slots = (tags.len() * 2).min(TAG_CURSOR_SLOTS);
            names.tag_cursors = (0..slots * 4)
                .map(|_| Cursor::starting_below(len))
                .collect();
        }
        names.tags = tags;
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
                if second == key && first == TAG_LABEL {
                    Some(Shape::TagParent(None))
                } else if second == key {
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
                    let p = proto(transport)?;
                    if id == TAG_LABEL || id == SUB_LABEL {
                        Some(Shape::TagParent(Some(p)))
                    } else {
                        Some(Shape::DnsSd(p, id))
                    }
                } else if service == TAG_LABEL && transport == key {
                    Some(Shape::Tagged(1))
                } else {
                    None
                }
            }
            _ => self.tag_shape(name, depth),
        }
    }

    /// The tag names among this service's names (depth 2 and 4 or more).
    fn tag_shape<'n>(&self, name: &'n LowerName, depth: usize) -> Option<Shape<'n>> {
        let key = self.key.as_bytes();
        let labels: Vec<&[u8]> = name.iter().take(depth).collect();
        let dashed = |label: &[u8]| label.strip_prefix(b"_") == Some(key);
        let proto = |label: &[u8]| match label {
            b"_tcp" => Some(0),
            b"_udp" => Some(1),
            _ => None,
        };
        let last = *labels.last()?;
        if depth < 4 {
            return None;
        }
        if last == key && labels[depth - 2] == TAG_LABEL {
            return Some(Shape::Tagged(depth - 2));
        }
        let p = proto(last)?;
        if !dashed(labels[depth - 2]) {
            return None;
        }
        if labels[depth - 3] == TAG_LABEL {
            return Some(Shape::TaggedType(p, depth - 3));
        }
        if depth == 4 && labels[1] == SUB_LABEL {
            return Some(Shape::Subtype(p, labels[0].strip_prefix(b"_")?));
        }
        None
    }

    /// Instances that are up, with `proto` if given, and carrying every
    /// one of the first `count` labels of `name` as a tag.
    fn tagged<'s>(
        &'s self,
        name: &'s LowerName,
        count: usize,
        proto: Option<Proto>,
    ) -> impl Iterator<Item = (usize, &'s Arc<Instance>)> + 's {
        self.instances.iter().enumerate().filter(move |(_, inst)| {
            !inst.draining
                && proto.is_none_or(|p| inst.proto == p)
                && has_tags(inst, name.iter().take(count))
        })
    }

    /// The tag cursor for `kind` (0 A, 1 AAAA, 2 + protocol SRV) of the
    /// combination of the first `count` labels of `name`.
    fn tag_cursor(&self, name: &LowerName, count: usize, kind: usize) -> Option<&Cursor> {
        self.tag_cursors
            .get(tag_slot(name.iter().take(count), self.tag_cursors.len() / 4) * 4 + kind)
    }

    /// True when the tag name may be served (no fragment claims it).
    fn tag_name_free(&self, name: &LowerName, statics: &StaticZone) -> bool {
        !statics.has_claims()
            || statics
                .claim(&Name::from(name), &self.base.base_name())
                .is_none()
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
            Some(Shape::Tagged(count)) => self.tagged(name, count, None).next().is_some(),
            Some(Shape::TaggedType(p, count)) => {
                self.type_names[p].is_some()
                    && self.tagged(name, count, Some(PROTOS[p])).next().is_some()
            }
            Some(Shape::Subtype(p, tag)) => {
                self.type_names[p].is_some() && self.subtype_members(p, tag).next().is_some()
            }
            Some(Shape::TagParent(_)) | None => false,
        }
    }

    /// Browsable instances of protocol `p` that carry `tag`.
    fn subtype_members<'s>(
        &'s self,
        p: usize,
        tag: &'s [u8],
    ) -> impl Iterator<Item = (usize, &'s Arc<Instance>)> + 's {
        self.members_of(PROTOS[p]).filter(move |(i, inst)| {
            !self.dnssd_claimed.contains(i) && has_tags(inst, std::iter::once(tag))
        })
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
        own.into_iter()
            .chain(instances)
            .chain(types)
            .chain(dnssd)
            .chain(self.tag_names())
    }

    /// The single-tag names (filtered A/AAAA and SRV, DNS-SD subtypes) of
    /// each tag some instance carries. Names of several tags together are
    /// built only when asked for: their number grows as the power set.
    fn tag_names(&self) -> impl Iterator<Item = Name> + '_ {
        self.tags.iter().flat_map(move |tag| {
            let filtered = self
                .base
                .prepend_label("_tag")
                .and_then(|n| n.prepend_label(tag.as_ref()))
                .ok();
            let per_type = self.type_names.iter().flatten().flat_map(move |type_name| {
                let tagged = type_name
                    .prepend_label("_tag")
                    .and_then(|n| n.prepend_label(tag.as_ref()))
                    .ok();
                let sub = type_name
                    .prepend_label("_sub")
                    .and_then(|n| n.prepend_label(format!("_{tag}")))
                    .ok();
                tagged.into_iter().chain(sub)
            });
            filtered.into_iter().chain(per_type)
        })
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
                let (v4, v6) = self.address_sets(
                    &self.base,
                    self.instances.iter().filter(|inst| !inst.draining),
                );
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
                        browse.extend(self.browse_member(type_name, inst));
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
                let strings = txt_strings(inst);
                let txt = Record::from_rdata(
                    owner.clone(),
                    self.ttl(inst),
                    RData::TXT(TXT::new(strings)),
                );
                sets.push((RecordType::SRV, vec![self.srv_member(&owner, inst, target)]));
                sets.push((RecordType::TXT, vec![plain(txt)]));
            }
            Shape::Tagged(count) => {
                if !self.tag_name_free(name, statics) {
                    return None;
                }
                let owner = Name::from(name);
                let (v4, v6) =
                    self.address_sets(&owner, self.tagged(name, count, None).map(|(_, inst)| inst));
                if v4.is_empty() && v6.is_empty() {
                    return None;
                }
                sets.push((RecordType::A, v4));
                sets.push((RecordType::AAAA, v6));
            }
            Shape::TaggedType(p, count) => {
                if self.type_names[p].is_none() || !self.tag_name_free(name, statics) {
                    return None;
                }
                let owner = Name::from(name);
                let srv: Vec<Member> = self
                    .tagged(name, count, Some(PROTOS[p]))
                    .filter_map(|(_, inst)| {
                        let target = self.instance_name(inst)?;
                        Some(self.srv_member(&owner, inst, target))
                    })
                    .collect();
                if srv.is_empty() {
                    return None;
                }
                sets.push((RecordType::SRV, srv));
            }
            Shape::Subtype(p, tag) => {
                if self.type_names[p].is_none() || !self.tag_name_free(name, statics) {
                    return None;
                }
                let owner = Name::from(name);
                let browse: Vec<Member> = self
                    .subtype_members(p, tag)
                    .take(MAX_LISTED_RECORDS)
                    .filter_map(|(_, inst)| self.browse_member(&owner, inst))
                    .collect();
                if browse.is_empty() {
                    return None;
                }
                sets.push((RecordType::PTR, browse));
            }
            Shape::TagParent(proto) => {
                let tagged = self.instances.iter().any(|inst| {
                    !inst.draining
                        && !inst.tags.is_empty()
                        && proto.is_none_or(|p| inst.proto == PROTOS[p])
                });
                let parent_served = match proto {
                    Some(p) => self.type_names[p].is_some(),
                    None => true,
                };
                if !tagged || !parent_served {
                    return None;
                }
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
            (Shape::Tagged(count), RecordType::A) => self.tag_cursor(name, count, 0),
            (Shape::Tagged(count), RecordType::AAAA) => self.tag_cursor(name, count, 1),
            (Shape::TaggedType(p, count), RecordType::SRV) => self.tag_cursor(name, count, 2 + p),
            _ => merged?
                .iter()
                .find(|(t, _)| *t == rtype)
                .map(|(_, cursor)| cursor),
        }))
    }

    /// The A and AAAA members at `owner` of `instances`, each with its
    /// weight and priority.
    fn address_sets<'i>(
        &self,
        owner: &Name,
        instances: impl Iterator<Item = &'i Arc<Instance>>,
    ) -> (Vec<Member>, Vec<Member>) {
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for inst in instances {
            let member = Member {
                record: address_record(owner, self.ttl(inst), inst.addr),
                priority: inst.priority,
                weight: inst.weight,
                glue: Vec::new(),
            };
            match inst.addr {
                IpAddr::V4(_) => v4.push(member),
                IpAddr::V6(_) => v6.push(member),
            }
        }
        (v4, v6)
    }

    /// A DNS-SD browse entry at `owner`: a PTR to the instance's DNS-SD
    /// name (its SRV, TXT and address go in the additional section,
    /// looked up when answering).
    fn browse_member(&self, owner: &Name, inst: &Instance) -> Option<Member> {
        let dnssd = self.dnssd_name(inst)?;
        let ptr = Record::from_rdata(owner.clone(), self.ttl(inst), RData::PTR(PTR(dnssd)));
        Some(Member {
            record: ptr,
            priority: 0,
            weight: 0,
            glue: Vec::new(),
        })
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

/// The DNS-SD TXT strings of an instance: `tags=a,b` when it has tags,
/// then each metadata pair as `key=value`; one empty string when there is
/// nothing (RFC 6763 §6.1).
pub fn txt_strings(inst: &Instance) -> Vec<String> {
    let tags = (!inst.tags.is_empty()).then(|| format!("tags={}", inst.tags.join(",")));
    let strings: Vec<String> = tags
        .into_iter()
        .chain(inst.meta.iter().map(|(k, v)| format!("{k}={v}")))
        .collect();
    if strings.is_empty() {
        vec![String::new()]
    } else {
        strings
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
