//! What a sender announces about one instance, and the rules its fields obey.
//!
//! Takes nothing but values; produces [`Announcement`]s and the checks every
//! intake (the heartbeat wire format, DNS UPDATE) applies before
//! it hands one to the registry: service and instance names that make valid
//! DNS names, and addresses an instance can really serve on. It never does
//! I/O and knows nothing of any wire format.

use std::net::IpAddr;

use crate::config::{
    DEFAULT_LEASE, DEFAULT_WEIGHT, MAX_INSTANCE_LABEL, MAX_SERVICE_LABEL, MAX_TAG_LABEL, MAX_TAGS,
};
use crate::net::canonical_ip;

/// Transport protocol of a service, as in `_web._tcp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    /// `_tcp`
    Tcp,
    /// `_udp`
    Udp,
}

impl Proto {
    /// The protocol's name as written on the wire and in SRV owner names.
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// What the sender says about its instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Serving: part of its service's answers.
    Up,
    /// Shutting down gracefully: still resolvable by its own name, but left
    /// out of its service's answers so no new clients pick it.
    Drain,
    /// Gone: deregister now.
    Down,
}

impl State {
    /// The state's name as written on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Up => "up",
            State::Drain => "drain",
            State::Down => "down",
        }
    }
}

/// One instance as its sender describes it, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    /// Service name: one DNS label of at most [`MAX_SERVICE_LABEL`]
    /// characters, lower case.
    pub service: String,
    /// Instance id, unique within the service: one DNS label, lower case.
    pub instance: String,
    /// The instance's address; `None` means "where the announcement came from".
    pub addr: Option<IpAddr>,
    /// Port the instance serves on (1..=65535).
    pub port: u16,
    /// Transport protocol, which picks `_tcp` or `_udp` for SRV.
    pub proto: Proto,
    /// Lease in seconds: the instance expires this long after its last announcement.
    pub ttl: u32,
    /// RFC 2782 weight.
    pub weight: u16,
    /// RFC 2782 priority (lower is preferred).
    pub priority: u16,
    /// Metadata, sorted by key, keys unique.
    pub meta: Vec<(String, String)>,
    /// Tags (lower-case labels), sorted, unique: DNS-SD subtypes and
    /// filtered names.
    pub tags: Vec<String>,
    /// What the sender says about the instance.
    pub state: State,
}

impl Announcement {
    /// An announcement with the defaults for every optional field.
    pub fn new(service: &str, instance: &str, port: u16) -> Self {
        Announcement {
            service: service.to_string(),
            instance: instance.to_string(),
            addr: None,
            port,
            proto: Proto::Tcp,
            ttl: DEFAULT_LEASE,
            weight: DEFAULT_WEIGHT,
            priority: 0,
            meta: Vec::new(),
            tags: Vec::new(),
            state: State::Up,
        }
    }
}

/// Checks that `label` is a hostname label (RFC 952/1123: letters, digits
/// and inner hyphens) of 1 to `max` characters, and returns it in lower case.
fn check_label(label: &str, max: usize) -> Result<String, String> {
    if label.is_empty() {
        return Err("empty".into());
    }
    if label.len() > max {
        return Err(format!("{} characters, at most {max}", label.len()));
    }
    if let Some(c) = label
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
    {
        return Err(format!(
            "character {c:?} not allowed (letters, digits and hyphens only)"
        ));
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err("must not start or end with a hyphen".into());
    }
    Ok(label.to_ascii_lowercase())
}

/// Checks a service name: a hostname label short enough that `_<service>`
/// is one too (its SRV and DNS-SD names), returned in lower case.
///
/// # Errors
/// A sentence saying what is wrong with the name.
pub fn check_service(name: &str) -> Result<String, String> {
    check_label(name, MAX_SERVICE_LABEL)
}

/// Checks an instance id: a hostname label, returned in lower case.
///
/// # Errors
/// A sentence saying what is wrong with the id.
pub fn check_instance(id: &str) -> Result<String, String> {
    check_label(id, MAX_INSTANCE_LABEL)
}

/// Checks a metadata key: 1 to 64 letters, digits, `-`, `_` and `.`;
/// `tags` is taken (a DNS-SD TXT string `tags=a,b` lists the tags).
///
/// # Errors
/// A sentence saying what is wrong with the key.
pub fn check_meta_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > 64 {
        return Err("key must be 1 to 64 characters".into());
    }
    if key.eq_ignore_ascii_case("tags") {
        return Err("key `tags` is taken: tags are given as tags=a,b".into());
    }
    if key
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        Ok(())
    } else {
        Err(format!(
            "key `{key}` may hold only letters, digits, `-`, `_` and `.`"
        ))
    }
}

/// Checks a tag: a hostname label of at most [`MAX_TAG_LABEL`]
/// characters, returned in lower case.
///
/// # Errors
/// A sentence saying what is wrong with the tag.
pub fn check_tag(tag: &str) -> Result<String, String> {
    check_label(tag, MAX_TAG_LABEL)
}

/// Checks a list of tags (each with [`check_tag`], no repeats, at most
/// [`MAX_TAGS`]) and returns them sorted, in lower case.
///
/// # Errors
/// A sentence naming the first problem.
pub fn check_tags<'t>(tags: impl IntoIterator<Item = &'t str>) -> Result<Vec<String>, String> {
    let mut checked = Vec::new();
    for tag in tags {
        let tag = check_tag(tag).map_err(|e| format!("tag `{tag}`: {e}"))?;
        if checked.contains(&tag) {
            return Err(format!("tag `{tag}` is given twice"));
        }
        if checked.len() == MAX_TAGS {
            return Err(format!("more than {MAX_TAGS} tags"));
        }
        checked.push(tag);
    }
    checked.sort();
    Ok(checked)
}

/// Checks that clients could reach an instance at `ip`: not unspecified
/// (`0.0.0.0`, `::`), not in `0.0.0.0/8` ("this network"), not the
/// broadcast address, not multicast. Returns the canonical form.
///
/// # Errors
/// A sentence saying why the address cannot be an instance's.
pub fn check_instance_addr(ip: IpAddr) -> Result<IpAddr, String> {
    let ip = canonical_ip(ip);
    let unusable = match ip {
        IpAddr::V4(v4) => {
            v4.octets()[0] == 0 || v4.is_broadcast() || v4.is_multicast() || v4.is_unspecified()
        }
        IpAddr::V6(v6) => v6.is_unspecified() || v6.is_multicast(),
    };
    if unusable {
        return Err(format!(
            "{ip} cannot be an instance's address (unspecified, broadcast or multicast)"
        ));
    }
    Ok(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_leave_room_for_the_underscore() {
        assert!(check_service(&"a".repeat(62)).is_ok());
        assert!(check_service(&"a".repeat(63)).is_err());
        assert!(check_instance(&"a".repeat(63)).is_ok());
        assert!(check_instance(&"a".repeat(64)).is_err());
        assert_eq!(check_service("Web-1").as_deref(), Ok("web-1"));
        for bad in ["", "-a", "a-", "a_b", "a.b", "a b"] {
            assert!(check_service(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn unreachable_addresses_are_refused() {
        for bad in [
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "224.0.0.1",
            "239.1.2.3",
            "::",
            "ff02::1",
            "::ffff:0.0.0.0",
            "::ffff:224.0.0.1",
        ] {
            let ip: IpAddr = bad.parse().expect("ip");
            assert!(check_instance_addr(ip).is_err(), "{bad}");
        }
        for good in [
            "10.0.0.1",
            "127.0.0.1",
            "192.168.1.255",
            "2001:db8::1",
            "::1",
        ] {
            let ip: IpAddr = good.parse().expect("ip");
            assert!(check_instance_addr(ip).is_ok(), "{good}");
        }
        assert_eq!(
            check_instance_addr("::ffff:10.1.2.3".parse().expect("ip")),
            Ok("10.1.2.3".parse().expect("ip"))
        );
    }
}
