//! The heartbeat wire format, version 1: one UDP datagram of ASCII text.
//!
//! Takes the bytes of one datagram and produces a validated [`Heartbeat`], or
//! a [`WireError`] that says what is wrong. Also encodes a `Heartbeat` back to
//! bytes for `beacon beat`. It never touches the registry, the clock or a
//! socket: malformed datagrams are ordinary traffic, so decoding is a pure
//! function with its own error enum.
//!
//! # Format
//!
//! ```text
//! beacon/1 service=web instance=web-1 port=8080 [addr=10.0.0.5] [proto=tcp]
//!          [ttl=15] [weight=1] [priority=0] [state=up] [meta.KEY=VALUE ...]
//! ```
//!
//! Fields are separated by spaces or tabs; one trailing newline is allowed
//! (so `printf '...\n'` works). Values are printable ASCII without spaces;
//! `%XX` in a metadata value stands for the byte `XX` (`%20` is a space).
//! Field names are case-sensitive, names of services and instances are not
//! (they are stored in lower case). The token `auth=` is reserved: a later
//! version will append an authentication tag as the last field, and servers
//! will keep accepting version 1 datagrams without it.

use std::fmt::Write as _;
use std::net::IpAddr;

/// The first token of every version 1 datagram.
pub const MAGIC_V1: &str = "beacon/1";

/// Longest datagram accepted. Fits one unfragmented packet on any common
/// path, and bounds the work a sender can cause.
pub const MAX_DATAGRAM: usize = 1400;

/// Lease length, in seconds, when a heartbeat names none.
pub const DEFAULT_TTL: u32 = 15;

/// Longest lease a heartbeat may ask for: one day. Anything longer is a
/// mistake (or a sender pretending to be permanent), so it is refused.
pub const MAX_TTL: u32 = 86_400;

/// Weight when a heartbeat names none (RFC 2782 weights are relative).
pub const DEFAULT_WEIGHT: u16 = 1;

/// Most metadata pairs one heartbeat may carry.
pub const MAX_META: usize = 32;

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

/// One decoded and validated heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    /// Service name: one DNS label, lower case.
    pub service: String,
    /// Instance id, unique within the service: one DNS label, lower case.
    pub instance: String,
    /// The instance's address; `None` means "the datagram's source address".
    pub addr: Option<IpAddr>,
    /// Port the instance serves on (1..=65535).
    pub port: u16,
    /// Transport protocol, which picks `_tcp` or `_udp` for SRV.
    pub proto: Proto,
    /// Lease in seconds: the instance expires this long after its last heartbeat.
    pub ttl: u32,
    /// RFC 2782 weight.
    pub weight: u16,
    /// RFC 2782 priority (lower is preferred).
    pub priority: u16,
    /// Metadata, sorted by key, keys unique.
    pub meta: Vec<(String, String)>,
    /// What the sender says about the instance.
    pub state: State,
}

/// Why a datagram was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Longer than [`MAX_DATAGRAM`].
    #[error("datagram of {0} bytes is over the {MAX_DATAGRAM}-byte limit")]
    Oversized(usize),
    /// Not ASCII text.
    #[error("datagram is not printable ASCII text")]
    NotText,
    /// The first token is not `beacon/N`.
    #[error("datagram does not start with `{MAGIC_V1}`")]
    NoMagic,
    /// `beacon/N` with an N this server does not speak.
    #[error("unsupported heartbeat version `{0}` (this server speaks version 1)")]
    UnsupportedVersion(String),
    /// A token without `=`.
    #[error("field `{0}` is not of the form name=value")]
    NotAField(String),
    /// A field name this version does not define.
    #[error("unknown field `{0}`")]
    UnknownField(String),
    /// The same field twice.
    #[error("field `{0}` appears twice")]
    DuplicateField(String),
    /// A required field is absent.
    #[error("required field `{0}` is missing")]
    MissingField(&'static str),
    /// A field's value is not acceptable.
    #[error("bad value for `{field}`: {reason}")]
    BadValue {
        /// The field's name.
        field: String,
        /// What is wrong with the value.
        reason: String,
    },
}

fn bad(field: &str, reason: impl Into<String>) -> WireError {
    WireError::BadValue {
        field: field.to_string(),
        reason: reason.into(),
    }
}

/// Checks that `label` is a hostname label (RFC 952/1123: letters, digits and
/// inner hyphens, 1 to 63 characters) and returns it in lower case.
///
/// # Errors
/// A sentence saying what is wrong with the label.
pub fn check_label(label: &str) -> Result<String, String> {
    if label.is_empty() {
        return Err("empty".into());
    }
    if label.len() > 63 {
        return Err(format!("{} characters, at most 63", label.len()));
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

fn parse_num<T: std::str::FromStr>(field: &str, value: &str) -> Result<T, WireError> {
    value
        .parse()
        .map_err(|_| bad(field, format!("`{value}` is not a number in range")))
}

fn check_meta_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > 64 {
        return Err("key must be 1 to 64 characters".into());
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

fn percent_decode(value: &str) -> Result<String, String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| "`%` must be followed by two hex digits".to_string())?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "value is not UTF-8 once decoded".to_string())
}

fn percent_encode(value: &str, out: &mut String) {
    for b in value.bytes() {
        if b.is_ascii_graphic() && b != b'%' {
            out.push(char::from(b));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{b:02X}");
        }
    }
}

impl Heartbeat {
    /// A heartbeat with the defaults for every optional field.
    pub fn new(service: &str, instance: &str, port: u16) -> Self {
        Heartbeat {
            service: service.to_string(),
            instance: instance.to_string(),
            addr: None,
            port,
            proto: Proto::Tcp,
            ttl: DEFAULT_TTL,
            weight: DEFAULT_WEIGHT,
            priority: 0,
            meta: Vec::new(),
            state: State::Up,
        }
    }

    /// Decodes and validates one datagram.
    ///
    /// # Errors
    /// [`WireError`] naming the first problem found.
    pub fn decode(datagram: &[u8]) -> Result<Heartbeat, WireError> {
        if datagram.len() > MAX_DATAGRAM {
            return Err(WireError::Oversized(datagram.len()));
        }
        let text = datagram.strip_suffix(b"\n").unwrap_or(datagram);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        if !text
            .iter()
            .all(|b| b.is_ascii_graphic() || *b == b' ' || *b == b'\t')
        {
            return Err(WireError::NotText);
        }
        // Checked above: every byte is ASCII.
        let text = std::str::from_utf8(text).map_err(|_| WireError::NotText)?;
        let mut tokens = text.split([' ', '\t']).filter(|t| !t.is_empty());
        match tokens.next() {
            Some(MAGIC_V1) => {}
            Some(other) if other.starts_with("beacon/") => {
                return Err(WireError::UnsupportedVersion(
                    other["beacon/".len()..].into(),
                ));
            }
            _ => return Err(WireError::NoMagic),
        }

        let mut service = None;
        let mut instance = None;
        let mut port = None;
        let mut hb = Heartbeat::new("", "", 0);
        let mut seen: Vec<&str> = Vec::with_capacity(10);
        for token in tokens {
            let (name, value) = token
                .split_once('=')
                .ok_or_else(|| WireError::NotAField(token.to_string()))?;
            if seen.contains(&name) {
                return Err(WireError::DuplicateField(name.to_string()));
            }
            seen.push(name);
            match name {
                "service" => service = Some(check_label(value).map_err(|e| bad(name, e))?),
                "instance" => instance = Some(check_label(value).map_err(|e| bad(name, e))?),
                "port" => {
                    let p: u16 = parse_num(name, value)?;
                    if p == 0 {
                        return Err(bad(name, "port 0 is not a port"));
                    }
                    port = Some(p);
                }
                "addr" => {
                    let ip: IpAddr = value
                        .parse()
                        .map_err(|_| bad(name, format!("`{value}` is not an IP address")))?;
                    if ip.is_unspecified() || ip.is_multicast() {
                        return Err(bad(name, format!("{ip} cannot be an instance's address")));
                    }
                    hb.addr = Some(canonical_ip(ip));
                }
                "proto" => {
                    hb.proto = match value {
                        "tcp" => Proto::Tcp,
                        "udp" => Proto::Udp,
                        _ => return Err(bad(name, format!("`{value}` is neither tcp nor udp"))),
                    }
                }
                "ttl" => {
                    let ttl: u32 = parse_num(name, value)?;
                    if ttl == 0 || ttl > MAX_TTL {
                        return Err(bad(name, format!("{ttl} s is outside 1..={MAX_TTL} s")));
                    }
                    hb.ttl = ttl;
                }
                "weight" => hb.weight = parse_num(name, value)?,
                "priority" => hb.priority = parse_num(name, value)?,
                "state" => {
                    hb.state = match value {
                        "up" => State::Up,
                        "drain" => State::Drain,
                        "down" => State::Down,
                        _ => {
                            return Err(bad(
                                name,
                                format!("`{value}` is not one of up, drain, down"),
                            ));
                        }
                    }
                }
                _ => {
                    let Some(key) = name.strip_prefix("meta.") else {
                        return Err(WireError::UnknownField(name.to_string()));
                    };
                    check_meta_key(key).map_err(|e| bad(name, e))?;
                    let value = percent_decode(value).map_err(|e| bad(name, e))?;
                    // A DNS-SD TXT string holds at most 255 bytes of key=value.
                    if key.len() + 1 + value.len() > 255 {
                        return Err(bad(name, "key=value is longer than 255 bytes"));
                    }
                    if hb.meta.len() == MAX_META {
                        return Err(bad(name, format!("more than {MAX_META} metadata pairs")));
                    }
                    hb.meta.push((key.to_string(), value));
                }
            }
        }
        hb.service = service.ok_or(WireError::MissingField("service"))?;
        hb.instance = instance.ok_or(WireError::MissingField("instance"))?;
        hb.port = port.ok_or(WireError::MissingField("port"))?;
        hb.meta.sort();
        Ok(hb)
    }

    /// Encodes the heartbeat as a version 1 datagram (with a trailing newline).
    pub fn encode(&self) -> String {
        let mut out = format!(
            "{MAGIC_V1} service={} instance={} port={}",
            self.service, self.instance, self.port
        );
        // Writing to a String cannot fail.
        if let Some(addr) = self.addr {
            let _ = write!(out, " addr={addr}");
        }
        let _ = write!(
            out,
            " proto={} ttl={} weight={} priority={} state={}",
            self.proto.as_str(),
            self.ttl,
            self.weight,
            self.priority,
            self.state.as_str()
        );
        for (key, value) in &self.meta {
            let _ = write!(out, " meta.{key}=");
            percent_encode(value, &mut out);
        }
        out.push('\n');
        out
    }
}

/// Maps an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, what a dual-stack
/// socket reports for IPv4 peers) to plain IPv4, so it is served as A.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(s: &str) -> Result<Heartbeat, WireError> {
        Heartbeat::decode(s.as_bytes())
    }

    #[test]
    fn minimal_datagram_takes_defaults() {
        let hb = decode("beacon/1 service=Web instance=web-1 port=8080\n").expect("valid");
        assert_eq!(hb, Heartbeat::new("web", "web-1", 8080));
    }

    #[test]
    fn every_field_round_trips() {
        let mut hb = Heartbeat::new("api", "a1", 443);
        hb.addr = Some("2001:db8::5".parse().expect("ip"));
        hb.proto = Proto::Udp;
        hb.ttl = 30;
        hb.weight = 7;
        hb.priority = 2;
        hb.state = State::Drain;
        hb.meta = vec![
            ("path".into(), "/a b%c".into()),
            ("version".into(), "1.2".into()),
        ];
        let wire = hb.encode();
        assert!(wire.contains("meta.path=/a%20b%25c"), "{wire}");
        assert_eq!(decode(&wire), Ok(hb));
    }

    #[test]
    fn refuses_what_it_should() {
        let cases: &[(&str, &str)] = &[
            ("", "does not start"),
            ("hello", "does not start"),
            (
                "beacon/2 service=a instance=b port=1",
                "unsupported heartbeat version `2`",
            ),
            ("beacon/1 service=a instance=b", "`port` is missing"),
            ("beacon/1 service=a port=1", "`instance` is missing"),
            ("beacon/1 service=a instance=b port=0", "port 0"),
            ("beacon/1 service=a instance=b port=70000", "`port`"),
            ("beacon/1 service=a_b instance=b port=1", "not allowed"),
            ("beacon/1 service=-a instance=b port=1", "hyphen"),
            ("beacon/1 service=a instance=b port=1 ttl=0", "outside"),
            ("beacon/1 service=a instance=b port=1 ttl=999999", "outside"),
            (
                "beacon/1 service=a instance=b port=1 state=gone",
                "not one of",
            ),
            ("beacon/1 service=a instance=b port=1 proto=sctp", "neither"),
            (
                "beacon/1 service=a instance=b port=1 addr=0.0.0.0",
                "cannot be",
            ),
            (
                "beacon/1 service=a instance=b port=1 addr=nope",
                "not an IP",
            ),
            (
                "beacon/1 service=a instance=b port=1 colour=red",
                "unknown field",
            ),
            ("beacon/1 service=a instance=b port=1 port=2", "twice"),
            ("beacon/1 service=a instance=b port=1 junk", "name=value"),
            ("beacon/1 service=a instance=b port=1 meta.k=%zz", "hex"),
            (
                "beacon/1 service=a instance=b port=1 auth=00",
                "unknown field",
            ),
        ];
        for (input, expected) in cases {
            let err = decode(input).expect_err(input).to_string();
            assert!(
                err.contains(expected),
                "{input:?}: {err:?} lacks {expected:?}"
            );
        }
        let long = format!("beacon/1 service={} instance=b port=1", "a".repeat(64));
        assert!(decode(&long).is_err());
        assert_eq!(
            Heartbeat::decode(&[b'x'; MAX_DATAGRAM + 1]),
            Err(WireError::Oversized(MAX_DATAGRAM + 1))
        );
        assert_eq!(Heartbeat::decode(b"beacon/1 \xff"), Err(WireError::NotText));
    }

    #[test]
    fn maps_v4_mapped_addresses_to_v4() {
        let hb = decode("beacon/1 service=a instance=b port=1 addr=::ffff:10.1.2.3").expect("ok");
        assert_eq!(hb.addr, Some("10.1.2.3".parse().expect("ip")));
    }
}
