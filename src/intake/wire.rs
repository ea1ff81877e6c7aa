//! The heartbeat wire format, version 1: one UDP datagram of ASCII text.
//!
//! Takes the bytes of one datagram and produces a validated
//! [`Announcement`], or a [`WireError`] that says what is wrong. Also
//! encodes an `Announcement` back to bytes for `beacon beat`. It never
//! touches the registry, the clock or a socket: malformed datagrams are
//! ordinary traffic, so decoding is a pure function with its own error enum.
//!
//! # Grammar
//!
//! ```text
//! datagram = "beacon/1" 1*( " " field ) [ signature ] [ "\n" ]
//! signature = " key=" keyname " ts=" number " auth=" base64url
//! field    = name "=" value
//! value    = *( %x21-7E )            ; printable ASCII, no space
//! number   = "0" / %x31-39 *DIGIT    ; no sign, no leading zeros
//! ```
//!
//! Exactly one space separates fields; tabs, carriage returns, leading,
//! trailing or doubled spaces are errors, as is anything after one final
//! newline. Field names are case-sensitive, names of services and
//! instances are not (they are stored in lower case), nor are tags
//! (`tags=canary,eu`, comma-separated labels). `%XX` in a metadata
//! value stands for the byte `XX` (`%20` is a space). A signed datagram
//! ends with `key`, `ts` and `auth`, in that order; `auth` is the HMAC of
//! every byte before ` auth=`, checked by [`crate::auth`], not here.

use std::fmt::Write as _;
use std::net::IpAddr;

use data_encoding::BASE64URL_NOPAD;

use crate::config::{MAX_HEARTBEAT_BYTES, MAX_LEASE, MAX_META_PAIRS};
use crate::keys::{Key, check_key_name};
use crate::registry::announcement::{
    Announcement, Proto, State, check_instance, check_instance_addr, check_meta_key, check_service,
    check_tags,
};

/// The first token of every version 1 datagram.
pub const MAGIC_V1: &str = "beacon/1";

/// Why a datagram was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Longer than [`MAX_HEARTBEAT_BYTES`].
    #[error("datagram of {0} bytes is over the {MAX_HEARTBEAT_BYTES}-byte limit")]
    Oversized(usize),
    /// Not printable ASCII with single spaces and one final newline.
    #[error("datagram is not a line of printable ASCII: {0}")]
    NotText(&'static str),
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

/// Longest tag accepted (hmac-sha512's).
pub const MAX_TAG_BYTES: usize = 64;

/// The signature fields of a signed datagram, borrowed from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature<'a> {
    /// The key's name, as sent.
    pub key: &'a str,
    /// The sender's Unix time in milliseconds.
    pub ts: u64,
    /// Every byte before ` auth=`: what the tag covers.
    pub signed: &'a [u8],
    tag: [u8; MAX_TAG_BYTES],
    tag_len: usize,
}

impl Signature<'_> {
    /// The tag, decoded from base64url.
    pub fn tag(&self) -> &[u8] {
        &self.tag[..self.tag_len]
    }

    /// What it claims, for [`crate::auth::Policy::verify`].
    pub fn claim(&self) -> crate::auth::Claim<'_> {
        crate::auth::Claim {
            key: self.key,
            ts: self.ts,
            signed: self.signed,
            tag: self.tag(),
        }
    }
}

/// A decoded datagram: the announcement and, when signed, its signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded<'a> {
    /// What the datagram announces.
    pub announcement: Announcement,
    /// The signature fields, if any.
    pub signature: Option<Signature<'a>>,
}

fn bad(field: &str, reason: impl Into<String>) -> WireError {
    WireError::BadValue {
        field: field.to_string(),
        reason: reason.into(),
    }
}

/// A decimal number as the grammar allows it: digits only, no sign, no
/// leading zeros, within `T`'s range.
fn parse_num<T: std::str::FromStr>(field: &str, value: &str) -> Result<T, WireError> {
    let canonical = !value.is_empty()
        && value.bytes().all(|b| b.is_ascii_digit())
        && (value == "0" || !value.starts_with('0'));
    if !canonical {
        return Err(bad(
            field,
            format!(
                "`{value}` is not a plain decimal number (digits only, no sign, no leading zeros)"
            ),
        ));
    }
    value
        .parse()
        .map_err(|_| bad(field, format!("{value} is out of range")))
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

/// The datagram as one line of text: printable ASCII and single spaces,
/// with at most one final newline.
fn as_line(datagram: &[u8]) -> Result<&str, WireError> {
    let text = datagram.strip_suffix(b"\n").unwrap_or(datagram);
    // The common case in one pass the compiler vectorises; the loop
    // below only runs to say what is wrong.
    let printable = text.iter().all(|&b| (b' '..=0x7E).contains(&b));
    for &byte in if printable { &[][..] } else { text } {
        match byte {
            b' ' | 0x21..=0x7E => {}
            b'\t' => return Err(WireError::NotText("tab (separate fields with one space)")),
            b'\r' => return Err(WireError::NotText("carriage return (end with \\n alone)")),
            b'\n' => return Err(WireError::NotText("newline before the end")),
            _ => return Err(WireError::NotText("control or non-ASCII byte")),
        }
    }
    // Checked above: every byte is ASCII.
    std::str::from_utf8(text).map_err(|_| WireError::NotText("not UTF-8"))
}

/// Decodes and validates one unsigned datagram (a signed one is refused:
/// its signature would go unchecked).
///
/// # Errors
/// [`WireError`] naming the first problem found.
pub fn decode(datagram: &[u8]) -> Result<Announcement, WireError> {
    let decoded = decode_signed(datagram)?;
    if decoded.signature.is_some() {
        return Err(WireError::NotText(
            "signed datagram where an unsigned one was expected",
        ));
    }
    Ok(decoded.announcement)
}

/// `text.split(' ')` for ASCII text, with a plain byte loop (the
/// datagrams are short: a general searcher costs more than it saves).
struct SpaceSeparated<'a> {
    text: &'a str,
    /// Where the next token starts; `None` once the last was returned.
    at: Option<usize>,
}

impl<'a> Iterator for SpaceSeparated<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let start = self.at?;
        let rest = &self.text.as_bytes()[start..];
        match rest.iter().position(|&b| b == b' ') {
            Some(length) => {
                self.at = Some(start + length + 1);
                Some(&self.text[start..start + length])
            }
            None => {
                self.at = None;
                Some(&self.text[start..])
            }
        }
    }
}

/// The fields of version 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Service,
    Instance,
    Port,
    Addr,
    Proto,
    Ttl,
    Weight,
    Priority,
    State,
    Key,
    Ts,
    Auth,
    Meta,
    Tags,
    Unknown,
}

impl Field {
    fn of(name: &str) -> Field {
        match name {
            "service" => Field::Service,
            "instance" => Field::Instance,
            "port" => Field::Port,
            "addr" => Field::Addr,
            "proto" => Field::Proto,
            "ttl" => Field::Ttl,
            "weight" => Field::Weight,
            "priority" => Field::Priority,
            "state" => Field::State,
            "key" => Field::Key,
            "ts" => Field::Ts,
            "auth" => Field::Auth,
            "tags" => Field::Tags,
            _ if name.starts_with("meta.") => Field::Meta,
            _ => Field::Unknown,
        }
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// Why `key` is not a key name, without allocating when it is one (the
/// keyring's own check, [`check_key_name`], is the reference).
fn key_name_problem(key: &str) -> Option<String> {
    let plain = !key.is_empty()
        && key.len() <= crate::keys::MAX_KEY_NAME
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if plain {
        None
    } else {
        check_key_name(key).err()
    }
}

/// The order of the signature fields, and where `auth`'s value begins.
#[derive(Debug, Default)]
struct SignatureFields<'a> {
    key: Option<&'a str>,
    ts: Option<u64>,
    signed_len: usize,
    tag: Option<([u8; MAX_TAG_BYTES], usize)>,
}

const SIGNATURE_ORDER: &str = "`key`, `ts` and `auth` must be the last three fields, in that order";

/// Decodes and validates one datagram, signed or not; the signature's
/// fields are checked for form only.
///
/// # Errors
/// [`WireError`] naming the first problem found.
pub fn decode_signed(datagram: &[u8]) -> Result<Decoded<'_>, WireError> {
    if datagram.len() > MAX_HEARTBEAT_BYTES {
        return Err(WireError::Oversized(datagram.len()));
    }
    let text = as_line(datagram)?;
    let mut tokens = SpaceSeparated { text, at: Some(0) };
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
    let mut hb = Announcement::new("", "", 0);
    // Fields seen so far, one bit per [`Field`] (metadata keys are checked
    // against the pairs kept).
    let mut seen: u16 = 0;
    let mut sig = SignatureFields::default();
    // Where the current token starts in `text`.
    let mut offset = MAGIC_V1.len() + 1;
    for token in tokens {
        let start = offset;
        offset += token.len() + 1;
        if token.is_empty() {
            return Err(WireError::NotText(
                "empty field (leading, trailing or doubled space)",
            ));
        }
        let equals = token
            .bytes()
            .position(|b| b == b'=')
            .ok_or_else(|| WireError::NotAField(token.to_string()))?;
        let (name, value) = (&token[..equals], &token[equals + 1..]);
        let field = Field::of(name);
        let duplicate = match field {
            Field::Meta => name
                .strip_prefix("meta.")
                .is_some_and(|key| hb.meta.iter().any(|(k, _)| k == key)),
            Field::Unknown => false,
            known => {
                let before = seen;
                seen |= known.bit();
                before & known.bit() != 0
            }
        };
        if duplicate {
            return Err(WireError::DuplicateField(name.to_string()));
        }
        // After `key`, only `ts` then `auth` may follow.
        let expected = match (sig.key.is_some(), sig.ts.is_some(), sig.tag.is_some()) {
            (false, _, _) => None,
            (true, false, _) => Some(Field::Ts),
            (true, true, false) => Some(Field::Auth),
            (true, true, true) => Some(Field::Unknown),
        };
        if expected.is_some_and(|e| e != field)
            || (expected.is_none() && matches!(field, Field::Ts | Field::Auth))
        {
            return Err(bad(name, SIGNATURE_ORDER));
        }
        match field {
            Field::Key => sig.key = Some(value),
            Field::Ts => sig.ts = Some(parse_num(name, value)?),
            Field::Auth => {
                let mut tag = [0u8; MAX_TAG_BYTES];
                let len = BASE64URL_NOPAD
                    .decode_len(value.len())
                    .ok()
                    .filter(|&len| len <= MAX_TAG_BYTES)
                    .ok_or_else(|| bad(name, "not an HMAC tag in unpadded base64url"))?;
                let len = BASE64URL_NOPAD
                    .decode_mut(value.as_bytes(), &mut tag[..len])
                    .map_err(|_| bad(name, "not an HMAC tag in unpadded base64url"))?;
                sig.tag = Some((tag, len));
                sig.signed_len = start - 1;
            }
            Field::Service => service = Some(check_service(value).map_err(|e| bad(name, e))?),
            Field::Instance => instance = Some(check_instance(value).map_err(|e| bad(name, e))?),
            Field::Port => {
                let p: u16 = parse_num(name, value)?;
                if p == 0 {
                    return Err(bad(name, "port 0 is not a port"));
                }
                port = Some(p);
            }
            Field::Addr => {
                let ip: IpAddr = value
                    .parse()
                    .map_err(|_| bad(name, format!("`{value}` is not an IP address")))?;
                hb.addr = Some(check_instance_addr(ip).map_err(|e| bad(name, e))?);
            }
            Field::Proto => {
                hb.proto = match value {
                    "tcp" => Proto::Tcp,
                    "udp" => Proto::Udp,
                    _ => return Err(bad(name, format!("`{value}` is neither tcp nor udp"))),
                }
            }
            Field::Ttl => {
                let ttl: u32 = parse_num(name, value)?;
                if ttl == 0 || ttl > MAX_LEASE {
                    return Err(bad(name, format!("{ttl} s is outside 1..={MAX_LEASE} s")));
                }
                hb.ttl = ttl;
            }
            Field::Weight => hb.weight = parse_num(name, value)?,
            Field::Priority => hb.priority = parse_num(name, value)?,
            Field::State => {
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
            Field::Tags => {
                hb.tags = check_tags(value.split(',')).map_err(|e| bad(name, e))?;
            }
            Field::Unknown => return Err(WireError::UnknownField(name.to_string())),
            Field::Meta => {
                let Some(key) = name.strip_prefix("meta.") else {
                    return Err(WireError::UnknownField(name.to_string()));
                };
                check_meta_key(key).map_err(|e| bad(name, e))?;
                let value = percent_decode(value).map_err(|e| bad(name, e))?;
                // A DNS-SD TXT string holds at most 255 bytes of key=value.
                if key.len() + 1 + value.len() > 255 {
                    return Err(bad(name, "key=value is longer than 255 bytes"));
                }
                if hb.meta.len() == MAX_META_PAIRS {
                    return Err(bad(
                        name,
                        format!("more than {MAX_META_PAIRS} metadata pairs"),
                    ));
                }
                hb.meta.push((key.to_string(), value));
            }
        }
    }
    hb.service = service.ok_or(WireError::MissingField("service"))?;
    hb.instance = instance.ok_or(WireError::MissingField("instance"))?;
    hb.port = port.ok_or(WireError::MissingField("port"))?;
    hb.meta.sort();
    let signature = match sig {
        SignatureFields { key: None, .. } => None,
        SignatureFields {
            key: Some(key),
            ts: Some(ts),
            tag: Some((tag, tag_len)),
            signed_len,
        } => {
            if let Some(reason) = key_name_problem(key) {
                return Err(bad("key", reason));
            }
            Some(Signature {
                key,
                ts,
                signed: &text.as_bytes()[..signed_len],
                tag,
                tag_len,
            })
        }
        SignatureFields { ts: None, .. } => return Err(WireError::MissingField("ts")),
        SignatureFields { .. } => return Err(WireError::MissingField("auth")),
    };
    Ok(Decoded {
        announcement: hb,
        signature,
    })
}

/// Encodes `hb` as a version 1 datagram signed with `key` at `ts_ms`
/// (Unix time in milliseconds), with a trailing newline.
pub fn encode_signed(hb: &Announcement, key: &Key, ts_ms: u64) -> String {
    let mut out = encode(hb);
    out.pop();
    let _ = write!(out, " key={} ts={ts_ms}", key.name());
    let tag = BASE64URL_NOPAD.encode(key.sign(out.as_bytes()).as_ref());
    let _ = writeln!(out, " auth={tag}");
    out
}

/// Encodes `hb` as a version 1 datagram (with a trailing newline).
pub fn encode(hb: &Announcement) -> String {
    let mut out = format!(
        "{MAGIC_V1} service={} instance={} port={}",
        hb.service, hb.instance, hb.port
    );
    // Writing to a String cannot fail.
    if let Some(addr) = hb.addr {
        let _ = write!(out, " addr={addr}");
    }
    let _ = write!(
        out,
        " proto={} ttl={} weight={} priority={} state={}",
        hb.proto.as_str(),
        hb.ttl,
        hb.weight,
        hb.priority,
        hb.state.as_str()
    );
    if !hb.tags.is_empty() {
        let _ = write!(out, " tags={}", hb.tags.join(","));
    }
    for (key, value) in &hb.meta {
        let _ = write!(out, " meta.{key}=");
        percent_encode(value, &mut out);
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_str(s: &str) -> Result<Announcement, WireError> {
        decode(s.as_bytes())
    }

    #[test]
    fn minimal_datagram_takes_defaults() {
        let hb = decode_str("beacon/1 service=Web instance=web-1 port=8080\n").expect("valid");
        assert_eq!(hb, Announcement::new("web", "web-1", 8080));
        assert!(decode_str("beacon/1 service=web instance=web-1 port=8080").is_ok());
    }

    #[test]
    fn every_field_round_trips() {
        let mut hb = Announcement::new("api", "a1", 443);
        hb.addr = Some("2001:db8::5".parse().expect("ip"));
        hb.proto = Proto::Udp;
        hb.ttl = 30;
        hb.weight = 7;
        hb.priority = 2;
        hb.state = State::Drain;
        hb.meta = vec![
            ("empty".into(), String::new()),
            ("path".into(), "/a b%c".into()),
            ("version".into(), "1.2".into()),
        ];
        let wire = encode(&hb);
        assert!(wire.contains("meta.path=/a%20b%25c"), "{wire}");
        assert_eq!(decode_str(&wire), Ok(hb));
    }

    #[test]
    fn refuses_what_the_grammar_does_not_allow() {
        let ok = "beacon/1 service=a instance=b port=1";
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
            ("beacon/1 service=a instance=b port=70000", "out of range"),
            ("beacon/1 service=a instance=b port=+80", "plain decimal"),
            ("beacon/1 service=a instance=b port=-80", "plain decimal"),
            ("beacon/1 service=a instance=b port=080", "leading zeros"),
            ("beacon/1 service=a instance=b port=", "plain decimal"),
            (
                "beacon/1 service=a instance=b port=1 ttl=015",
                "leading zeros",
            ),
            (
                "beacon/1 service=a instance=b port=1 weight=1e3",
                "plain decimal",
            ),
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
                "beacon/1 service=a instance=b port=1 addr=0.1.2.3",
                "cannot be",
            ),
            (
                "beacon/1 service=a instance=b port=1 addr=255.255.255.255",
                "cannot be",
            ),
            (
                "beacon/1 service=a instance=b port=1 addr=224.0.0.5",
                "cannot be",
            ),
            (
                "beacon/1 service=a instance=b port=1 addr=ff02::1",
                "cannot be",
            ),
            ("beacon/1 service=a instance=b port=1 addr=::", "cannot be"),
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
                "must be the last three",
            ),
            (
                "beacon/1 service=a instance=b port=1 key=k ts=1 auth=AA port=2",
                "twice",
            ),
            (
                "beacon/1 service=a instance=b port=1 key=k ts=1 auth=AA ttl=2",
                "must be the last three",
            ),
            (
                "beacon/1 service=a instance=b key=k ts=1 auth=AA port=1",
                "must be the last three",
            ),
            (
                "beacon/1 service=a instance=b port=1 key=k auth=AA ts=1",
                "must be the last three",
            ),
            (
                "beacon/1 service=a instance=b port=1 ts=1",
                "must be the last three",
            ),
            (
                "beacon/1 service=a instance=b port=1 key=k",
                "`ts` is missing",
            ),
            (
                "beacon/1 service=a instance=b port=1 key=k ts=1",
                "`auth` is missing",
            ),
            (
                "beacon/1 service=a instance=b port=1 key=k ts=01 auth=AA",
                "leading zeros",
            ),
            (
                "beacon/1 service=a instance=b port=1 key=k ts=1 auth=A+==",
                "base64url",
            ),
            (
                "beacon/1 service=a instance=b port=1 key=k/x ts=1 auth=AA",
                "may hold only",
            ),
            ("beacon/1\tservice=a instance=b port=1", "tab"),
            (
                "beacon/1 service=a instance=b port=1\r\n",
                "carriage return",
            ),
            ("beacon/1 service=a instance=b port=1\n\n", "newline"),
            ("beacon/1  service=a instance=b port=1", "empty field"),
            (" beacon/1 service=a instance=b port=1", "does not start"),
            ("beacon/1 service=a instance=b port=1 ", "empty field"),
            ("beacon/1 service=a instance=b port=1 \n", "empty field"),
        ];
        assert!(decode_str(ok).is_ok());
        for (input, expected) in cases {
            let err = decode_str(input).expect_err(input).to_string();
            assert!(
                err.contains(expected),
                "{input:?}: {err:?} lacks {expected:?}"
            );
        }
        let long = format!("beacon/1 service={} instance=b port=1", "a".repeat(63));
        assert!(decode_str(&long).is_err());
        let longest = format!("beacon/1 service={} instance=b port=1", "a".repeat(62));
        assert!(decode_str(&longest).is_ok());
        assert_eq!(
            decode(&[b'x'; MAX_HEARTBEAT_BYTES + 1]),
            Err(WireError::Oversized(MAX_HEARTBEAT_BYTES + 1))
        );
        assert!(matches!(
            decode(b"beacon/1 \xff"),
            Err(WireError::NotText(_))
        ));
    }

    #[test]
    fn signed_datagrams_keep_what_the_tag_covers() {
        let key =
            Key::new("Web-Team", crate::keys::Algorithm::HmacSha256, &[1u8; 32]).expect("key");
        let hb = Announcement::new("web", "web-1", 8080);
        let wire = encode_signed(&hb, &key, 1_700_000_000_123);
        let (body, tag) = wire.trim_end().rsplit_once(" auth=").expect("auth field");
        assert!(body.ends_with(" key=web-team ts=1700000000123"), "{body}");
        let decoded = decode_signed(wire.as_bytes()).expect("decodes");
        assert_eq!(decoded.announcement, hb);
        let sig = decoded.signature.expect("signed");
        assert_eq!(
            (sig.key, sig.ts, sig.signed),
            ("web-team", 1_700_000_000_123, body.as_bytes())
        );
        assert_eq!(BASE64URL_NOPAD.encode(sig.tag()), tag);
        assert!(key.verify(sig.signed, sig.tag()));
        assert!(
            decode(wire.as_bytes()).is_err(),
            "decode refuses what it would not check"
        );
        assert_eq!(
            decode_signed(encode(&hb).as_bytes())
                .expect("unsigned")
                .signature,
            None
        );
    }

    #[test]
    fn maps_v4_mapped_addresses_to_v4() {
        let hb =
            decode_str("beacon/1 service=a instance=b port=1 addr=::ffff:10.1.2.3").expect("ok");
        assert_eq!(hb.addr, Some("10.1.2.3".parse().expect("ip")));
    }
}
