//! Reverse zones (`--reverse-zone`): PTR records from live instances'
//! addresses to their names.
//!
//! Takes each changed service's instances; produces an [`AddressIndex`]
//! (address → the instances on it, a persistent ordered map updated per
//! changed service, so a change costs work for its service only) and, per
//! view, the [`ReverseZone`]s that answer from it. A lookup turns the
//! reverse name into an address prefix: a whole address gets its PTR
//! records, built then; a shorter prefix is an empty non-terminal when some
//! live address falls under it (a range query). It never keeps a record
//! per instance and never reads the registry.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use hickory_proto::rr::rdata::PTR;
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};

use super::live::ServiceIndex;
use super::{Member, Node, NodeRef, ServiceNames, child_name};
use crate::config::ServeConfig;
use crate::registry::Instance;

/// Live instances by address, each address's instances in (service, id)
/// order. Kept only when reverse zones are served.
#[derive(Debug, Default, Clone)]
pub struct AddressIndex {
    by_address: imbl::OrdMap<IpAddr, Arc<[Arc<Instance>]>>,
}

impl AddressIndex {
    /// [`AddressIndex::of`] when `config` serves reverse zones, else empty:
    /// the index costs memory per instance.
    pub fn when_served<'s>(
        config: &ServeConfig,
        services: impl Iterator<Item = &'s Arc<ServiceNames>>,
    ) -> Self {
        if config.reverse_zones.is_empty() {
            AddressIndex::default()
        } else {
            AddressIndex::of(services)
        }
    }
}

impl ServiceIndex for AddressIndex {
    fn replace(&mut self, old: Option<&ServiceNames>, new: Option<&ServiceNames>) {
        for instance in old
            .into_iter()
            .flat_map(super::live::ServiceNames::instances)
        {
            let Some(present) = self.by_address.get(&instance.addr) else {
                continue;
            };
            let kept: Vec<Arc<Instance>> = present
                .iter()
                .filter(|other| !same_instance(other, instance))
                .cloned()
                .collect();
            if kept.is_empty() {
                self.by_address.remove(&instance.addr);
            } else {
                self.by_address.insert(instance.addr, kept.into());
            }
        }
        for instance in new
            .into_iter()
            .flat_map(super::live::ServiceNames::instances)
        {
            let mut all: Vec<Arc<Instance>> = self
                .by_address
                .get(&instance.addr)
                .map(|present| present.to_vec())
                .unwrap_or_default();
            let key = |i: &Arc<Instance>| (i.service.clone(), i.id.clone());
            let at = all.partition_point(|other| key(other) < key(instance));
            all.insert(at, instance.clone());
            self.by_address.insert(instance.addr, all.into());
        }
    }
}

fn same_instance(a: &Instance, b: &Instance) -> bool {
    a.service == b.service && a.id == b.id
}

/// One reverse zone as one view serves it.
#[derive(Debug)]
pub struct ReverseZone {
    /// The reverse zone's apex.
    pub origin: LowerName,
    /// Its SOA, with the negative-caching TTL.
    pub negative_soa: Record,
    /// SOA and NS, built per view (the SOA carries the serial).
    apex: Node,
    addresses: AddressIndex,
    /// The forward zone, for the PTR targets.
    zone: Name,
    answer_ttl: u32,
}

impl ReverseZone {
    /// The reverse zone at `origin` with `apex` (SOA and NS) over
    /// `addresses`; PTR targets are named in `zone`.
    pub fn new(
        origin: LowerName,
        negative_soa: Record,
        apex: Node,
        addresses: AddressIndex,
        zone: Name,
        answer_ttl: u32,
    ) -> Self {
        ReverseZone {
            origin,
            negative_soa,
            apex,
            addresses,
            zone,
            answer_ttl,
        }
    }

    /// The names of this zone's PTR records: one per live address in it.
    pub fn names(&self) -> impl Iterator<Item = LowerName> + '_ {
        self.addresses
            .by_address
            .keys()
            .map(|addr| LowerName::from(Name::from(*addr)))
            .filter(|name| self.origin.zone_of(name))
    }

    /// The node at `name` (inside this zone), if the name exists.
    pub fn node(&self, name: &LowerName) -> Option<NodeRef<'_>> {
        if *name == self.origin {
            return Some(Cow::Borrowed(&self.apex));
        }
        let prefix = Prefix::of(name)?;
        let (low, high) = prefix.range();
        let (_, instances) = self.addresses.by_address.range(low..=high).next()?;
        if !prefix.whole {
            return Some(Cow::Owned(Node::default()));
        }
        // A whole address: the range holds just that address.
        let owner = Name::from(name);
        let members = instances
            .iter()
            .filter_map(|instance| {
                let target = child_name(&[&instance.id, &instance.service], &self.zone)?;
                let ttl = self.answer_ttl.min(instance.ttl);
                let ptr = Record::from_rdata(owner.clone(), ttl, RData::PTR(PTR(target)));
                Some(Member::plain(ptr))
            })
            .collect();
        Some(Cow::Owned(Node::from_sets(
            vec![(RecordType::PTR, members)],
            |_| None,
        )))
    }
}

/// The addresses a reverse name stands for: its labels read as the
/// leading octets (`in-addr.arpa`) or nibbles (`ip6.arpa`) of an address.
#[derive(Debug, PartialEq, Eq)]
struct Prefix {
    /// The address with the named part filled in, the rest zero.
    bits: u128,
    /// How many bits the name gives.
    len: u32,
    v6: bool,
    /// True when the name gives the whole address.
    whole: bool,
}

impl Prefix {
    /// Parses `name` as written by `Name::from(IpAddr)`: canonical decimal
    /// octets or single lower-case hex nibbles. Anything else names no
    /// address.
    fn of(name: &LowerName) -> Option<Prefix> {
        let labels: Vec<&[u8]> = name.iter().collect();
        let (suffix, parts) = labels.split_at(labels.len().checked_sub(2)?);
        let (v6, width, max) = match parts {
            [b"in-addr", b"arpa"] => (false, 8, 4),
            [b"ip6", b"arpa"] => (true, 4, 32),
            _ => return None,
        };
        if suffix.len() > max {
            return None;
        }
        let mut bits: u128 = 0;
        for label in suffix.iter().rev() {
            let value = if v6 {
                match label {
                    [digit] => char::from(*digit).to_digit(16)?,
                    _ => return None,
                }
            } else {
                let text = std::str::from_utf8(label).ok()?;
                if text.len() > 1 && text.starts_with('0') {
                    return None;
                }
                u32::from(text.parse::<u8>().ok()?)
            };
            bits = (bits << width) | u128::from(value);
        }
        let len = u32::try_from(suffix.len()).ok()? * width;
        let total = if v6 { 128 } else { 32 };
        Some(Prefix {
            bits: if len == 0 { 0 } else { bits << (total - len) },
            len,
            v6,
            whole: len == total,
        })
    }

    /// The lowest and highest address under the prefix.
    fn range(&self) -> (IpAddr, IpAddr) {
        let total = if self.v6 { 128 } else { 32 };
        let host_bits = total - self.len;
        let high = if host_bits == 0 {
            self.bits
        } else {
            self.bits | (u128::MAX >> (128 - host_bits))
        };
        if self.v6 {
            (
                IpAddr::V6(Ipv6Addr::from(self.bits)),
                IpAddr::V6(Ipv6Addr::from(high)),
            )
        } else {
            let v4 = |bits: u128| IpAddr::V4(Ipv4Addr::from(u32::try_from(bits).unwrap_or(0)));
            (v4(self.bits), v4(high))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(text: &str) -> Option<Prefix> {
        Prefix::of(&LowerName::from(Name::from_ascii(text).expect("name")))
    }

    #[test]
    fn reverse_names_read_as_address_ranges() {
        let whole = prefix("1.0.0.10.in-addr.arpa.").expect("v4");
        assert!(whole.whole);
        let one: IpAddr = "10.0.0.1".parse().expect("ip");
        assert_eq!(whole.range(), (one, one));
        let ent = prefix("0.10.in-addr.arpa.").expect("v4 prefix");
        assert!(!ent.whole);
        let (low, high): (IpAddr, IpAddr) = (
            "10.0.0.0".parse().expect("ip"),
            "10.0.255.255".parse().expect("ip"),
        );
        assert_eq!(ent.range(), (low, high));
        let v6 = prefix("8.b.d.0.1.0.0.2.ip6.arpa.").expect("v6 prefix");
        let (low, high): (IpAddr, IpAddr) = (
            "2001:db8::".parse().expect("ip"),
            "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"
                .parse()
                .expect("ip"),
        );
        assert_eq!(v6.range(), (low, high));
        let addr: IpAddr = "2001:db8::2".parse().expect("ip");
        let full = Prefix::of(&LowerName::from(Name::from(addr))).expect("v6");
        assert!(full.whole);
        assert_eq!(full.range(), (addr, addr));
        // Not how an address is written: no address.
        for odd in [
            "01.0.0.10.in-addr.arpa.",
            "256.0.0.10.in-addr.arpa.",
            "1.1.0.0.10.in-addr.arpa.",
            "ab.8.b.d.0.1.0.0.2.ip6.arpa.",
            "x.in-addr.arpa.",
            "example.com.",
        ] {
            assert_eq!(prefix(odd), None, "{odd}");
        }
    }
}
