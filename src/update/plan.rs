//! What one DNS UPDATE means for the registry.
//!
//! Takes a decoded UPDATE message (RFC 2136), the view it is checked
//! against (what the zone serves) and read access to the registry; produces
//! either the list of instances to register, change or remove, or the
//! rcode that refuses the whole message. It never changes anything and
//! never does I/O: the intake applies a plan only once every record of
//! the message mapped onto an instance (all or nothing).
//!
//! Names in the service zone `Z` that an UPDATE may touch:
//! - `<id>.<service>.Z`: A or AAAA (the instance's one address), TXT
//!   (metadata `key=value`, tags as `tags=a,b`);
//! - `_<service>._<proto>.Z`: SRV whose target is `<id>.<service>.Z` (port,
//!   weight, priority), PTR to `<id>._<service>._<proto>.Z` (DNS-SD);
//! - `<id>._<service>._<proto>.Z`: SRV (any target host in the zone) and
//!   TXT, the DNS-SD / SRP shape (RFC 9665 §3.3);
//! - `_<tag>._sub._<service>._<proto>.Z`: PTR to the instance's DNS-SD name
//!   (a DNS-SD subtype, which is a tag);
//! - any other name in the zone, only as the target host of an SRV in the
//!   same message: its A/AAAA give that instance's address (KEY records
//!   there, which SRP clients send for SIG(0), are accepted and not kept).
//!
//! Anything else (the apex, names zone fragments hold, other types) is
//! refused. Deleting a name's records, an instance's address or its SRV
//! removes the instance, as `state=down` does.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{DNSClass, LowerName, Name, RData, Record, RecordType};

use crate::registry::Registry;
use crate::registry::announcement::{
    Announcement, Proto, State, check_instance, check_instance_addr, check_meta_key, check_service,
    check_tag, check_tags,
};
use crate::view::View;

/// Why an UPDATE changes nothing: the rcode to answer and a sentence
/// for the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Refused {
    /// The reply's rcode.
    pub rcode: ResponseCode,
    /// What was wrong, naming the record.
    pub reason: String,
}

/// A refusal with REFUSED, the rcode of most (also the intake's own
/// checks: scope, ownership, claims, caps).
pub fn refused(reason: impl Into<String>) -> Refused {
    refuse(ResponseCode::Refused, reason)
}

fn refuse(rcode: ResponseCode, reason: impl Into<String>) -> Refused {
    Refused {
        rcode,
        reason: reason.into(),
    }
}

/// One change to the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The instance as it will be (`state` up), or `state` down to remove it.
    pub announcement: Announcement,
    /// The address to serve (for a removal: any).
    pub addr: IpAddr,
    /// True when the registry does not hold the instance yet.
    pub new: bool,
}

/// What an owner name is, among the names an UPDATE may touch.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Owner {
    Apex,
    Instance {
        service: String,
        id: String,
    },
    Type {
        service: String,
        proto: Proto,
    },
    DnsSd {
        service: String,
        proto: Proto,
        id: String,
    },
    Subtype {
        service: String,
        proto: Proto,
        tag: String,
    },
    /// Any other name in the zone: an SRV target host, at most.
    Host,
}

fn proto_of(label: &str) -> Option<Proto> {
    match label {
        "_tcp" => Some(Proto::Tcp),
        "_udp" => Some(Proto::Udp),
        _ => None,
    }
}

/// The service of a `_<service>` label.
fn dashed_service(label: &str) -> Option<String> {
    check_service(label.strip_prefix('_')?).ok()
}

/// Reads `name` (inside `zone`) as one of the names an UPDATE may touch.
fn classify(name: &LowerName, zone: &LowerName) -> Owner {
    let depth = usize::from(name.num_labels() - zone.num_labels());
    let labels: Vec<String> = name
        .iter()
        .take(depth)
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect();
    let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
    match labels[..] {
        [] => Owner::Apex,
        [id, service] => match (check_instance(id), check_service(service)) {
            (Ok(id), Ok(service)) => Owner::Instance { service, id },
            _ => match (dashed_service(id), proto_of(service)) {
                (Some(service), Some(proto)) => Owner::Type { service, proto },
                _ => Owner::Host,
            },
        },
        [id, service, proto] => {
            match (check_instance(id), dashed_service(service), proto_of(proto)) {
                (Ok(id), Some(service), Some(proto)) => Owner::DnsSd { service, proto, id },
                _ => Owner::Host,
            }
        }
        [tag, "_sub", service, proto] => {
            let tag = tag.strip_prefix('_').and_then(|t| check_tag(t).ok());
            match (tag, dashed_service(service), proto_of(proto)) {
                (Some(tag), Some(service), Some(proto)) => Owner::Subtype {
                    service,
                    proto,
                    tag,
                },
                _ => Owner::Host,
            }
        }
        _ => Owner::Host,
    }
}

/// A field of an instance as the message leaves it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Field<T> {
    /// Not mentioned: as the registry holds it.
    Keep,
    /// Given by the message.
    Set(T),
    /// Deleted by the message.
    Cleared,
}

impl<T: Clone> Field<T> {
    fn resolve(&self, existing: Option<T>) -> Option<T> {
        match self {
            Field::Keep => existing,
            Field::Set(value) => Some(value.clone()),
            Field::Cleared => None,
        }
    }
}

/// Port, weight, priority and protocol from an SRV.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Service {
    proto: Proto,
    port: u16,
    weight: u16,
    priority: u16,
}

impl Service {
    fn of(proto: Proto, srv: &hickory_proto::rr::rdata::SRV) -> Service {
        Service {
            proto,
            port: srv.port,
            weight: srv.weight,
            priority: srv.priority,
        }
    }
}

/// One instance as the message leaves it.
#[derive(Debug)]
struct Draft {
    existing: Option<Announcement>,
    addr: Field<IpAddr>,
    srv: Field<Service>,
    /// The SRV's target, when it is a host name rather than the instance's
    /// own name.
    host: Option<LowerName>,
    meta: Field<Vec<(String, String)>>,
    tags: Field<Vec<String>>,
    /// Tags added and dropped through DNS-SD subtype PTRs: kept apart from
    /// `tags` because an SRP update names the subtypes before it replaces
    /// the instance's records (RFC 9665 §3.3), and they still count.
    subtypes_added: Vec<String>,
    subtypes_dropped: Vec<String>,
}

/// A host name's addresses as the message leaves them.
#[derive(Debug, Default)]
struct Host {
    addrs: Vec<IpAddr>,
    cleared: bool,
    /// True once some SRV in the message points at it.
    used: bool,
}

/// The update section's work in progress.
struct Plan<'r> {
    registry: &'r Registry,
    zone: LowerName,
    drafts: BTreeMap<(String, String), Draft>,
    hosts: HashMap<LowerName, Host>,
}

impl Plan<'_> {
    fn draft(&mut self, service: &str, id: &str) -> &mut Draft {
        let registry = self.registry;
        self.drafts
            .entry((service.to_string(), id.to_string()))
            .or_insert_with(|| Draft {
                existing: registry
                    .get(service, id)
                    .map(crate::registry::Instance::announcement),
                addr: Field::Keep,
                srv: Field::Keep,
                host: None,
                meta: Field::Keep,
                tags: Field::Keep,
                subtypes_added: Vec::new(),
                subtypes_dropped: Vec::new(),
            })
    }

    /// Every live instance of `service` with `proto`: the targets of a
    /// deletion at the service's type name.
    fn instances_of(&self, service: &str, proto: Proto) -> Vec<String> {
        self.registry
            .service(service)
            .map(|instances| {
                instances
                    .filter(|i| i.proto == proto)
                    .map(|i| i.id.to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The instance a name in the zone belongs to as a target (`<id>.<service>.Z`).
    fn instance_target(&self, target: &Name) -> Option<(String, String)> {
        let target = LowerName::from(target);
        if !self.zone.zone_of(&target) {
            return None;
        }
        match classify(&target, &self.zone) {
            Owner::Instance { service, id } => Some((service, id)),
            _ => None,
        }
    }

    /// The DNS-SD instance a PTR points at.
    fn dnssd_target(&self, target: &Name) -> Option<(String, Proto, String)> {
        let target = LowerName::from(target);
        if !self.zone.zone_of(&target) {
            return None;
        }
        match classify(&target, &self.zone) {
            Owner::DnsSd { service, proto, id } => Some((service, proto, id)),
            _ => None,
        }
    }

    fn add(&mut self, record: &Record, owner: &Owner) -> Result<(), Refused> {
        let name = &record.name;
        let unmappable = || {
            refused(format!(
                "{name} {}: not a record beacon keeps for an instance",
                record.record_type()
            ))
        };
        match (owner, &record.data) {
            (Owner::Instance { service, id }, RData::A(_) | RData::AAAA(_)) => {
                let ip = address_of(record)?;
                let draft = self.draft(service, id);
                if matches!(&draft.addr, Field::Set(other) if *other != ip) {
                    return Err(refused(format!("{name}: an instance has one address")));
                }
                draft.addr = Field::Set(ip);
            }
            (Owner::Host, RData::A(_) | RData::AAAA(_)) => {
                let ip = address_of(record)?;
                let host = self.hosts.entry(LowerName::from(name)).or_default();
                if !host.addrs.contains(&ip) {
                    host.addrs.push(ip);
                }
            }
            (Owner::Host | Owner::Instance { .. } | Owner::DnsSd { .. }, _)
                if record.record_type() == RecordType::KEY =>
            {
                // SRP's SIG(0) key: accepted, not kept (TSIG authenticates).
            }
            (Owner::Type { service, proto }, RData::SRV(srv)) => {
                let Some((target_service, id)) = self.instance_target(&srv.target) else {
                    return Err(refused(format!(
                        "{name} SRV: the target {} is not an instance name <id>.{service}.{}",
                        srv.target,
                        Name::from(&self.zone)
                    )));
                };
                if target_service != *service {
                    return Err(refused(format!(
                        "{name} SRV: the target {} belongs to another service",
                        srv.target
                    )));
                }
                let draft = self.draft(service, &id);
                draft.srv = Field::Set(Service::of(*proto, srv));
                draft.host = None;
            }
            (Owner::DnsSd { service, proto, id }, RData::SRV(srv)) => {
                let target = LowerName::from(&srv.target);
                let host = match self.instance_target(&srv.target) {
                    Some((s, i)) if s == *service && i == *id => None,
                    Some(_) => {
                        return Err(refused(format!(
                            "{name} SRV: the target {} is another instance's name",
                            srv.target
                        )));
                    }
                    None if self.zone.zone_of(&target) && target != self.zone => Some(target),
                    None => {
                        return Err(refused(format!(
                            "{name} SRV: the target {} is not a host in the zone",
                            srv.target
                        )));
                    }
                };
                if let Some(host) = &host {
                    self.hosts.entry(host.clone()).or_default().used = true;
                }
                let draft = self.draft(service, id);
                draft.srv = Field::Set(Service::of(*proto, srv));
                draft.host = host;
            }
            (
                Owner::Instance { service, id } | Owner::DnsSd { service, id, .. },
                RData::TXT(txt),
            ) => {
                let (meta, tags) = read_txt(name, txt)?;
                let draft = self.draft(service, id);
                draft.meta = Field::Set(meta);
                draft.tags = Field::Set(tags);
            }
            (Owner::Type { service, proto }, RData::PTR(ptr)) => match self.dnssd_target(&ptr.0) {
                Some((s, p, _)) if s == *service && p == *proto => {}
                _ => {
                    return Err(refused(format!(
                        "{name} PTR: the target {} is not an instance of this type",
                        ptr.0
                    )));
                }
            },
            (
                Owner::Subtype {
                    service,
                    proto,
                    tag,
                },
                RData::PTR(ptr),
            ) => {
                let Some((_, _, id)) = self
                    .dnssd_target(&ptr.0)
                    .filter(|(s, p, _)| s == service && p == proto)
                else {
                    return Err(refused(format!(
                        "{name} PTR: the target {} is not an instance of this type",
                        ptr.0
                    )));
                };
                let draft = self.draft(service, &id);
                draft.subtypes_dropped.retain(|t| t != tag);
                if !draft.subtypes_added.contains(tag) {
                    draft.subtypes_added.push(tag.clone());
                }
            }
            _ => return Err(unmappable()),
        }
        Ok(())
    }

    /// A deletion: class ANY (a whole name with type ANY, or one RRset) or
    /// class NONE (one record).
    fn delete(&mut self, record: &Record, owner: Owner) -> Result<(), Refused> {
        let rtype = record.record_type();
        let one = record.dns_class == DNSClass::NONE;
        let whole_name = !one && rtype == RecordType::ANY;
        let name = &record.name;
        match owner {
            Owner::Apex => apex_refused(name),
            Owner::Instance { service, id } => {
                let draft = self.draft(&service, &id);
                match rtype {
                    _ if whole_name => {
                        draft.addr = Field::Cleared;
                        draft.meta = Field::Cleared;
                        draft.tags = Field::Cleared;
                    }
                    RecordType::A | RecordType::AAAA => {
                        let current = draft
                            .addr
                            .resolve(draft.existing.as_ref().and_then(|a| a.addr));
                        // Only the RRset of the address's own family holds it.
                        let family =
                            current.is_some_and(|ip| ip.is_ipv4() == (rtype == RecordType::A));
                        let matches = family && (!one || address_of(record).ok() == current);
                        if matches {
                            draft.addr = Field::Cleared;
                        }
                    }
                    RecordType::TXT => {
                        draft.meta = Field::Cleared;
                        draft.tags = Field::Cleared;
                    }
                    _ => {}
                }
                Ok(())
            }
            Owner::Type { service, proto } => {
                let targets: Vec<String> = match (&record.data, rtype) {
                    (RData::SRV(srv), _) if one => self
                        .instance_target(&srv.target)
                        .filter(|(s, _)| *s == service)
                        .map(|(_, id)| id)
                        .into_iter()
                        .collect(),
                    (RData::PTR(ptr), _) if one => self
                        .dnssd_target(&ptr.0)
                        .filter(|(s, p, _)| *s == service && *p == proto)
                        .map(|(_, _, id)| id)
                        .into_iter()
                        .collect(),
                    (_, RecordType::SRV | RecordType::PTR) if !one => {
                        self.instances_of(&service, proto)
                    }
                    _ if whole_name => self.instances_of(&service, proto),
                    _ => Vec::new(),
                };
                for id in targets {
                    self.draft(&service, &id).srv = Field::Cleared;
                }
                Ok(())
            }
            Owner::DnsSd { service, id, .. } => {
                let draft = self.draft(&service, &id);
                match rtype {
                    _ if whole_name => {
                        draft.srv = Field::Cleared;
                        draft.meta = Field::Cleared;
                        draft.tags = Field::Cleared;
                    }
                    RecordType::SRV => draft.srv = Field::Cleared,
                    RecordType::TXT => {
                        draft.meta = Field::Cleared;
                        draft.tags = Field::Cleared;
                    }
                    _ => {}
                }
                Ok(())
            }
            Owner::Subtype {
                service,
                proto,
                tag,
            } => {
                let ids: Vec<String> = match &record.data {
                    RData::PTR(ptr) if one => self
                        .dnssd_target(&ptr.0)
                        .filter(|(s, p, _)| *s == service && *p == proto)
                        .map(|(_, _, id)| id)
                        .into_iter()
                        .collect(),
                    _ => self.instances_of(&service, proto),
                };
                for id in ids {
                    let draft = self.draft(&service, &id);
                    draft.subtypes_added.retain(|t| *t != tag);
                    draft.subtypes_dropped.push(tag.clone());
                }
                Ok(())
            }
            Owner::Host => {
                let host = self.hosts.entry(LowerName::from(name)).or_default();
                match (&record.data, rtype) {
                    (RData::A(_) | RData::AAAA(_), _) if one => {
                        let ip = address_of(record)?;
                        host.addrs.retain(|a| *a != ip);
                    }
                    (_, RecordType::A | RecordType::AAAA | RecordType::ANY) => {
                        host.addrs.clear();
                        host.cleared = true;
                    }
                    _ => {}
                }
                Ok(())
            }
        }
    }

    /// The changes once every record is read.
    fn finish(self, lease: u32) -> Result<Vec<Change>, Refused> {
        if let Some((name, _)) = self
            .hosts
            .iter()
            .find(|(_, host)| !host.used && !host.addrs.is_empty())
        {
            return Err(refused(format!(
                "{name}: addresses of a host no SRV in this UPDATE points at"
            )));
        }
        let mut changes = Vec::new();
        for ((service, id), draft) in self.drafts {
            let existing = draft.existing.as_ref();
            let mut addr = draft.addr.resolve(existing.and_then(|a| a.addr));
            if let Some(host) = draft.host.as_ref().and_then(|h| self.hosts.get(h))
                && !matches!(draft.addr, Field::Set(_))
            {
                let before = if host.cleared { None } else { addr };
                addr = host.addrs.first().copied().or(before);
            }
            let srv = draft.srv.resolve(existing.map(|a| Service {
                proto: a.proto,
                port: a.port,
                weight: a.weight,
                priority: a.priority,
            }));
            let (Some(addr), Some(srv)) = (addr, srv) else {
                if let Some(existing) = existing {
                    let mut down = existing.clone();
                    down.state = State::Down;
                    changes.push(Change {
                        addr: existing.addr.unwrap_or(IpAddr::from([0, 0, 0, 0])),
                        announcement: down,
                        new: false,
                    });
                    continue;
                }
                let given = !draft.subtypes_added.is_empty()
                    || matches!(draft.addr, Field::Set(_))
                    || matches!(draft.srv, Field::Set(_))
                    || matches!(draft.meta, Field::Set(_))
                    || matches!(draft.tags, Field::Set(_));
                if given {
                    return Err(refused(format!(
                        "instance {id} of {service}: a new instance needs an address and an SRV record in the same UPDATE"
                    )));
                }
                continue;
            };
            let addr = check_instance_addr(addr)
                .map_err(|e| refused(format!("instance {id} of {service}: {e}")))?;
            let mut hb = Announcement::new(&service, &id, srv.port);
            hb.addr = Some(addr);
            hb.proto = srv.proto;
            hb.weight = srv.weight;
            hb.priority = srv.priority;
            hb.ttl = lease;
            hb.meta = draft
                .meta
                .resolve(existing.map(|a| a.meta.clone()))
                .unwrap_or_default();
            let mut tags = draft
                .tags
                .resolve(existing.map(|a| a.tags.clone()))
                .unwrap_or_default();
            tags.extend(draft.subtypes_added.iter().cloned());
            tags.sort();
            tags.dedup();
            tags.retain(|t| !draft.subtypes_dropped.contains(t));
            hb.tags = check_tags(tags.iter().map(String::as_str))
                .map_err(|e| refused(format!("instance {id} of {service}: {e}")))?;
            if srv.port == 0 {
                return Err(refused(format!(
                    "instance {id} of {service}: port 0 is not a port"
                )));
            }
            changes.push(Change {
                announcement: hb,
                addr,
                new: existing.is_none(),
            });
        }
        Ok(changes)
    }
}

fn apex_refused(name: &Name) -> Result<(), Refused> {
    Err(refused(format!(
        "{name}: the apex belongs to the zone fragments"
    )))
}

fn address_of(record: &Record) -> Result<IpAddr, Refused> {
    match &record.data {
        RData::A(a) => Ok(IpAddr::V4(a.0)),
        RData::AAAA(a) => Ok(IpAddr::V6(a.0)),
        _ => Err(refuse(
            ResponseCode::FormErr,
            format!("{}: an address record without an address", record.name),
        )),
    }
}

/// Metadata pairs, sorted by key.
type Metadata = Vec<(String, String)>;

/// Metadata and tags from a TXT record's strings (`key=value`; `tags=a,b`;
/// a string without `=` is a key with an empty value; an empty string is
/// nothing, as DNS-SD writes an empty TXT).
fn read_txt(
    name: &Name,
    txt: &hickory_proto::rr::rdata::TXT,
) -> Result<(Metadata, Vec<String>), Refused> {
    let bad = |e: String| refused(format!("{name} TXT: {e}"));
    let mut meta: Vec<(String, String)> = Vec::new();
    let mut tags = Vec::new();
    for string in txt.txt_data.iter() {
        let text = std::str::from_utf8(string).map_err(|_| bad("a string is not UTF-8".into()))?;
        if text.is_empty() {
            continue;
        }
        let (key, value) = text.split_once('=').unwrap_or((text, ""));
        if key.eq_ignore_ascii_case("tags") {
            tags = check_tags(value.split(',').filter(|t| !t.is_empty())).map_err(bad)?;
            continue;
        }
        check_meta_key(key).map_err(bad)?;
        if meta.iter().any(|(k, _)| k == key) {
            return Err(bad(format!("key `{key}` is given twice")));
        }
        if meta.len() == crate::config::MAX_META_PAIRS {
            return Err(bad(format!(
                "more than {} metadata pairs",
                crate::config::MAX_META_PAIRS
            )));
        }
        meta.push((key.to_string(), value.to_string()));
    }
    meta.sort();
    Ok((meta, tags))
}

/// Checks the prerequisite section (RFC 2136 §3.2) against `view`.
fn check_prerequisites(message: &Message, view: &View, zone: &LowerName) -> Result<(), Refused> {
    // Value-dependent prerequisites, gathered per RRset (§3.2.3).
    let mut exact: BTreeMap<(LowerName, RecordType), Vec<&RData>> = BTreeMap::new();
    for record in &message.answers {
        let name = LowerName::from(&record.name);
        if !zone.zone_of(&name) {
            return Err(refuse(
                ResponseCode::NotZone,
                format!("prerequisite {name} is outside the zone"),
            ));
        }
        if record.ttl != 0 {
            return Err(refuse(
                ResponseCode::FormErr,
                format!("prerequisite {name}: TTL must be 0"),
            ));
        }
        let rtype = record.record_type();
        let served = view.records_at(&name);
        let has_type = |t: RecordType| {
            served.iter().any(|r| r.record_type() == t) || (t == RecordType::SOA && name == *zone)
        };
        let in_use = !served.is_empty() || name == *zone;
        match (record.dns_class, rtype) {
            (DNSClass::ANY, RecordType::ANY) if !in_use => {
                return Err(refuse(
                    ResponseCode::NXDomain,
                    format!("{name} is not in use"),
                ));
            }
            (DNSClass::ANY, RecordType::ANY) => {}
            (DNSClass::ANY, t) if !has_type(t) => {
                return Err(refuse(ResponseCode::NXRRSet, format!("{name} has no {t}")));
            }
            (DNSClass::ANY, _) => {}
            (DNSClass::NONE, RecordType::ANY) if in_use => {
                return Err(refuse(ResponseCode::YXDomain, format!("{name} is in use")));
            }
            (DNSClass::NONE, RecordType::ANY) => {}
            (DNSClass::NONE, t) if has_type(t) => {
                return Err(refuse(ResponseCode::YXRRSet, format!("{name} has {t}")));
            }
            (DNSClass::NONE, _) => {}
            (DNSClass::IN, t) => exact.entry((name, t)).or_default().push(&record.data),
            (class, _) => {
                return Err(refuse(
                    ResponseCode::FormErr,
                    format!("prerequisite {name}: class {class}"),
                ));
            }
        }
    }
    for ((name, rtype), wanted) in exact {
        let served: Vec<RData> = if rtype == RecordType::SOA && name == *zone {
            view.soa_of(zone).map(|r| r.data).into_iter().collect()
        } else {
            view.records_at(&name)
                .into_iter()
                .filter(|r| r.record_type() == rtype)
                .map(|r| r.data)
                .collect()
        };
        let same =
            wanted.iter().all(|w| served.contains(w)) && served.iter().all(|s| wanted.contains(&s));
        if !same {
            return Err(refuse(
                ResponseCode::NXRRSet,
                format!("{name} {rtype} is not the RRset the prerequisite names"),
            ));
        }
    }
    Ok(())
}

/// Checks the update section's form (RFC 2136 §3.4.1) for one record.
fn check_form(record: &Record, zone: &LowerName) -> Result<LowerName, Refused> {
    let name = LowerName::from(&record.name);
    if !zone.zone_of(&name) {
        return Err(refuse(
            ResponseCode::NotZone,
            format!("{name} is outside the zone {zone}"),
        ));
    }
    let rtype = record.record_type();
    let empty = matches!(record.data, RData::Update0(_));
    match record.dns_class {
        DNSClass::IN => {
            if matches!(
                rtype,
                RecordType::ANY | RecordType::AXFR | RecordType::IXFR | RecordType::OPT
            ) || empty
            {
                return Err(refuse(
                    ResponseCode::FormErr,
                    format!("{name}: cannot add a {rtype} record"),
                ));
            }
        }
        DNSClass::ANY => {
            if record.ttl != 0 || !empty {
                return Err(refuse(
                    ResponseCode::FormErr,
                    format!("{name}: a deletion of class ANY has TTL 0 and no data"),
                ));
            }
        }
        DNSClass::NONE => {
            if record.ttl != 0 {
                return Err(refuse(
                    ResponseCode::FormErr,
                    format!("{name}: a deletion of class NONE has TTL 0"),
                ));
            }
        }
        class => {
            return Err(refuse(
                ResponseCode::FormErr,
                format!("{name}: class {class} in an update"),
            ));
        }
    }
    Ok(name)
}

/// The registry changes `message` asks for, checked against `view` (the
/// zone as served, whose apex is the zone the message must name) and
/// `registry` (what each instance is now), each registered or renewed
/// instance leased for `lease` seconds.
///
/// # Errors
/// [`Refused`] with the rcode for the first record that does not map, or
/// the first prerequisite that fails; then nothing may change.
pub fn plan(
    message: &Message,
    view: &View,
    registry: &Registry,
    lease: u32,
) -> Result<Vec<Change>, Refused> {
    let zone = view.origin.clone();
    let [question] = &message.queries[..] else {
        return Err(refuse(
            ResponseCode::FormErr,
            "the zone section holds one zone",
        ));
    };
    if question.query_type() != RecordType::SOA {
        return Err(refuse(
            ResponseCode::FormErr,
            "the zone section's type is SOA",
        ));
    }
    if LowerName::from(question.name()) != zone || question.query_class() != DNSClass::IN {
        return Err(refuse(
            ResponseCode::NotAuth,
            format!(
                "{} is not the zone beacon takes updates for ({zone})",
                question.name()
            ),
        ));
    }
    check_prerequisites(message, view, &zone)?;
    let mut plan = Plan {
        registry,
        zone: zone.clone(),
        drafts: BTreeMap::new(),
        hosts: HashMap::new(),
    };
    for record in &message.authorities {
        let name = check_form(record, &zone)?;
        let owner = classify(&name, &zone);
        if owner == Owner::Apex {
            apex_refused(&record.name)?;
        }
        if view.statics.node(&name).is_some() {
            return Err(refused(format!(
                "{name} holds records from a zone fragment; fragments stay files"
            )));
        }
        if record.dns_class == DNSClass::IN {
            plan.add(record, &owner)?;
        } else {
            plan.delete(record, owner)?;
        }
    }
    plan.finish(lease)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ServeConfig;
    use crate::fragments::StaticZone;
    use crate::registry::Signer;
    use hickory_proto::op::{MessageType, OpCode, Query};
    use std::sync::Arc;

    /// One update-section record as text: `+` adds, `-` deletes the
    /// record (class NONE), `-*` the RRset or, with type ANY, the name
    /// (class ANY): `+ web-1.web A 10.0.0.1`, `-* web-1.web ANY`.
    fn record(line: &str) -> Record {
        let mut words = line.splitn(4, ' ');
        let (op, owner, rtype) = (
            words.next().expect("op"),
            words.next().expect("owner"),
            words.next().expect("type"),
        );
        let name = match owner {
            "@" => Name::from_ascii("svc.internal.").expect("zone"),
            owner => Name::from_ascii(format!("{owner}.svc.internal.")).expect("name"),
        };
        let rtype: RecordType = rtype.parse().expect("type");
        let data = match words.next() {
            Some(text) => RData::try_from_str(rtype, text).expect("rdata"),
            None => RData::Update0(rtype),
        };
        let mut record = Record::from_rdata(name, if op == "+" { 60 } else { 0 }, data);
        record.dns_class = match op {
            "+" => DNSClass::IN,
            "-" => DNSClass::NONE,
            _ => DNSClass::ANY,
        };
        record
    }

    fn message(lines: &[&str]) -> Message {
        let mut message = Message::new(1, MessageType::Query, OpCode::Update);
        let zone = Name::from_ascii("svc.internal.").expect("zone");
        message.add_query(Query::query(zone, RecordType::SOA));
        for line in lines {
            message.add_authority(record(line));
        }
        message
    }

    /// A registry holding `web-1` (10.0.0.1:8080, tags `a`) and its view.
    fn fixture() -> (Registry, View) {
        let config = ServeConfig::new(Name::from_ascii("svc.internal.").expect("zone"));
        let mut registry = Registry::new(100, vec!["ns".into()]);
        let mut web1 = Announcement::new("web", "web-1", 8080);
        web1.addr = Some("10.0.0.1".parse().expect("ip"));
        web1.tags = vec!["a".into()];
        let addr = web1.addr.expect("addr");
        registry.apply_signed(web1, addr, &Signer::unsigned(), tokio::time::Instant::now());
        let view = View::build(&config, 1, &registry, Arc::new(StaticZone::default()));
        (registry, view)
    }

    /// (update section, the changes as `instance addr:port tags state`, or
    /// the rcode refusing it).
    type Case<'a> = (&'a [&'a str], Result<&'a [&'a str], ResponseCode>);

    #[test]
    fn updates_map_onto_instances_all_or_nothing() {
        let (registry, view) = fixture();
        let cases: &[Case<'_>] = &[
            (
                &[
                    "+ web-2.web A 10.0.0.2",
                    "+ _web._tcp SRV 0 1 80 web-2.web.svc.internal.",
                ],
                Ok(&["web-2 10.0.0.2:80 - up"]),
            ),
            // An existing instance changes one part and keeps the rest.
            (
                &["+ web-1.web A 10.0.0.9"],
                Ok(&["web-1 10.0.0.9:8080 a up"]),
            ),
            (&["-* web-1.web ANY"], Ok(&["web-1 10.0.0.1:8080 a down"])),
            (
                &["- web-1.web A 10.0.0.1"],
                Ok(&["web-1 10.0.0.1:8080 a down"]),
            ),
            // Deleting an address it does not have changes nothing.
            (
                &["- web-1.web A 10.0.0.7"],
                Ok(&["web-1 10.0.0.1:8080 a up"]),
            ),
            (&["-* web-1.web AAAA"], Ok(&["web-1 10.0.0.1:8080 a up"])),
            (&["-* web-1.web A"], Ok(&["web-1 10.0.0.1:8080 a down"])),
            (&["-* _web._tcp SRV"], Ok(&["web-1 10.0.0.1:8080 a down"])),
            (
                &["-* web-1._web._tcp TXT"],
                Ok(&["web-1 10.0.0.1:8080 - up"]),
            ),
            // SRP: the subtype is named before the instance is replaced.
            (
                &[
                    "+ _ipp._tcp PTR p-1._ipp._tcp.svc.internal.",
                    "+ _color._sub._ipp._tcp PTR p-1._ipp._tcp.svc.internal.",
                    "-* p-1._ipp._tcp ANY",
                    "+ p-1._ipp._tcp SRV 0 0 631 host-1.svc.internal.",
                    "+ p-1._ipp._tcp TXT note=x",
                    "-* host-1 ANY",
                    "+ host-1 AAAA 2001:db8::1",
                ],
                Ok(&["p-1 [2001:db8::1]:631 color up"]),
            ),
            // Nothing half done: the first refusal wins.
            (
                &[
                    "+ web-3.web A 10.0.0.3",
                    "+ _web._tcp SRV 0 1 80 web-3.web.svc.internal.",
                    "+ web CNAME x.example.",
                ],
                Err(ResponseCode::Refused),
            ),
            (&["+ web-3.web A 10.0.0.3"], Err(ResponseCode::Refused)),
            (&["+ host-9 A 10.0.0.3"], Err(ResponseCode::Refused)),
            (
                &["+ web-1.web A 10.0.0.1", "+ web-1.web A 10.0.0.2"],
                Err(ResponseCode::Refused),
            ),
            (&["+ @ TXT x"], Err(ResponseCode::Refused)),
            (
                &["+ web-1.web TXT tags=Bad_tag"],
                Err(ResponseCode::Refused),
            ),
        ];
        for (lines, expected) in cases {
            let got = plan(&message(lines), &view, &registry, 60).map(|changes| {
                changes
                    .iter()
                    .map(|c| {
                        let a = &c.announcement;
                        let tags = if a.tags.is_empty() {
                            "-".to_string()
                        } else {
                            a.tags.join(",")
                        };
                        format!(
                            "{} {} {tags} {}",
                            a.instance,
                            std::net::SocketAddr::new(c.addr, a.port),
                            a.state.as_str()
                        )
                    })
                    .collect::<Vec<_>>()
            });
            match expected {
                Ok(want) => assert_eq!(
                    got.map_err(|e| e.rcode),
                    Ok(want.iter().map(ToString::to_string).collect()),
                    "{lines:?}"
                ),
                Err(rcode) => assert_eq!(got.map_err(|e| e.rcode).err(), Some(*rcode), "{lines:?}"),
            }
        }
    }
}
