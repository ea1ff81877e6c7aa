//! Heartbeat authentication: who may register which service.
//!
//! Takes the keyring ([`crate::keys`]), the scopes given with
//! `--key-scope`, the policy (`--auth`) and the clock window
//! (`--auth-window`); for each heartbeat's [`Claim`] (its signature
//! fields, decoded by `intake::wire`) and the server's time, produces the
//! [`Signer`] the registry records as the instance's owner, or the
//! [`Rejection`] that drops the datagram. The checks that need no
//! registry run here, in the documented order (unknown key, bad MAC, clock
//! window); the registry checks replay and ownership ([`crate::registry`]),
//! and [`Policy::in_scope`] sits between them.
//!
//! It never reads the clock (time is passed in), never logs, and never
//! sees a secret: keys sign and verify behind [`crate::keys::Key`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::keys::Keyring;

/// What a signed heartbeat claims: its signature fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim<'a> {
    /// The key's name, as sent.
    pub key: &'a str,
    /// The sender's Unix time in milliseconds.
    pub ts: u64,
    /// The bytes the tag covers.
    pub signed: &'a [u8],
    /// The tag.
    pub tag: &'a [u8],
}

/// Who sent a heartbeat that passed [`Policy::verify`]: the key and its
/// timestamp, or nobody (unsigned). The registry keeps it with the
/// instance to check replays and ownership.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Signer {
    /// The key's name (lower case), `None` for an unsigned heartbeat.
    pub key: Option<Arc<str>>,
    /// The heartbeat's `ts` (0 when unsigned).
    pub ts: u64,
}

impl Signer {
    /// An unsigned heartbeat's signer.
    pub fn unsigned() -> Signer {
        Signer::default()
    }

    /// The key's name for the audit log: `-` when unsigned.
    pub fn key_name(&self) -> &str {
        self.key.as_deref().unwrap_or("-")
    }
}

/// Whether unsigned heartbeats are accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// No keys configured: every heartbeat is accepted, as without auth.
    Open,
    /// Keys configured, unsigned heartbeats accepted too, but never for
    /// an instance a key registered (for migrating a fleet).
    Optional,
    /// Only signed heartbeats are accepted (the default with keys).
    Required,
}

impl Mode {
    /// Its name in the log and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Open => "open",
            Mode::Optional => "optional",
            Mode::Required => "required",
        }
    }
}

/// Why a heartbeat was refused by authentication, in the order the checks run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Unsigned, while `--auth required`.
    Unsigned,
    /// `key=` names no configured key.
    UnknownKey,
    /// `auth=` is not the HMAC of the datagram with that key.
    BadMac,
    /// `ts=` is further than `--auth-window` from the server's clock.
    OutsideWindow,
    /// `ts=` is not later than the last accepted one for the instance.
    Replayed,
    /// The key's scope does not cover the service.
    OutOfScope,
    /// The instance belongs to another key (or to a key, for an
    /// unsigned heartbeat).
    NotOwner,
}

impl Rejection {
    /// Every reason, in check order.
    pub const ALL: [Rejection; 7] = [
        Rejection::Unsigned,
        Rejection::UnknownKey,
        Rejection::BadMac,
        Rejection::OutsideWindow,
        Rejection::Replayed,
        Rejection::OutOfScope,
        Rejection::NotOwner,
    ];

    /// A short name for logs and counters.
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::Unsigned => "unsigned",
            Rejection::UnknownKey => "unknown-key",
            Rejection::BadMac => "bad-mac",
            Rejection::OutsideWindow => "outside-window",
            Rejection::Replayed => "replayed",
            Rejection::OutOfScope => "out-of-scope",
            Rejection::NotOwner => "not-owner",
        }
    }

    /// Its position in [`Rejection::ALL`], for counter arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// What it means, for the log.
    pub fn explain(self) -> &'static str {
        match self {
            Rejection::Unsigned => "unsigned heartbeat while --auth is required",
            Rejection::UnknownKey => "no key of that name is configured",
            Rejection::BadMac => "auth= is not the HMAC of the datagram with that key",
            Rejection::OutsideWindow => "ts= is outside --auth-window of the server's clock",
            Rejection::Replayed => "ts= is not later than the last accepted heartbeat's",
            Rejection::OutOfScope => "the key's --key-scope does not cover the service",
            Rejection::NotOwner => "the instance belongs to another key",
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.explain())
    }
}

/// The services one key may register: shell-style globs on service names.
#[derive(Debug, Clone)]
pub struct Scope {
    /// The key's name (lower case).
    pub key: String,
    /// The patterns, as given (lower case).
    pub patterns: Vec<glob::Pattern>,
}

impl Scope {
    /// Parses `NAME=PATTERN[,PATTERN...]`.
    ///
    /// # Errors
    /// A message naming what is wrong.
    pub fn parse(text: &str) -> Result<Scope, String> {
        let (key, patterns) = text
            .split_once('=')
            .ok_or_else(|| format!("`{text}` is not NAME=PATTERN[,PATTERN...]"))?;
        let key = crate::keys::check_key_name(key)?;
        let patterns = patterns
            .split(',')
            .map(|p| {
                if p.is_empty() {
                    return Err(format!("`{text}` has an empty pattern"));
                }
                glob::Pattern::new(&p.to_ascii_lowercase())
                    .map_err(|e| format!("pattern `{p}` in `{text}`: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Scope { key, patterns })
    }

    fn allows(&self, service: &str) -> bool {
        self.patterns.iter().any(|p| p.matches(service))
    }
}

/// How heartbeats are authenticated: immutable; SIGHUP builds a new one.
#[derive(Debug, Clone)]
pub struct Policy {
    keyring: Arc<Keyring>,
    scopes: Vec<Scope>,
    mode: Mode,
    window: Duration,
}

impl Policy {
    /// Registration open to anyone: no keys.
    pub fn open() -> Policy {
        Policy {
            keyring: Arc::new(Keyring::default()),
            scopes: Vec::new(),
            mode: Mode::Open,
            window: Duration::ZERO,
        }
    }

    /// A policy over `keyring`. `mode` `None` means required with keys,
    /// open without.
    ///
    /// # Errors
    /// A message when a scope names no key, or a mode is asked for
    /// without keys.
    pub fn new(
        keyring: Keyring,
        scopes: Vec<Scope>,
        mode: Option<Mode>,
        window: Duration,
    ) -> Result<Policy, String> {
        let mode = match (mode, keyring.is_empty()) {
            (None | Some(Mode::Open), true) => Mode::Open,
            (Some(mode), true) => {
                return Err(format!("--auth {} needs --keys", mode.as_str()));
            }
            (None, false) => Mode::Required,
            (Some(mode), false) => mode,
        };
        let policy = Policy {
            keyring: Arc::new(keyring),
            scopes,
            mode,
            window,
        };
        if let Some(missing) = policy.unknown_scope_keys().first() {
            return Err(format!(
                "--key-scope names key `{missing}`, which no --keys file defines"
            ));
        }
        Ok(policy)
    }

    /// The same policy with the keys of `keyring` (after SIGHUP).
    #[must_use]
    pub fn with_keyring(&self, keyring: Keyring) -> Policy {
        Policy {
            keyring: Arc::new(keyring),
            ..self.clone()
        }
    }

    /// Scopes naming keys the keyring lacks (harmless after a key is
    /// removed, a typo at start).
    pub fn unknown_scope_keys(&self) -> Vec<&str> {
        self.scopes
            .iter()
            .filter(|s| self.keyring.get(&s.key).is_none())
            .map(|s| s.key.as_str())
            .collect()
    }

    /// The keyring.
    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// The keyring, shared (TSIG checks hold it across a transfer).
    pub fn shared_keyring(&self) -> Arc<Keyring> {
        self.keyring.clone()
    }

    /// The mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The clock window.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// How long a removed instance's last timestamp must be remembered so
    /// that no heartbeat signed before it can be replayed: a timestamp
    /// may run a window ahead of the clock, and is refused once it is a
    /// window behind it.
    pub fn replay_memory(&self) -> Duration {
        if self.mode == Mode::Open {
            Duration::ZERO
        } else {
            self.window * 2
        }
    }

    /// Checks what needs no registry, in order: unknown key, bad MAC, the
    /// clock window (`now_ms`: the server's Unix time in milliseconds);
    /// an unsigned heartbeat passes unless signatures are required.
    ///
    /// # Errors
    /// The first [`Rejection`] that applies.
    pub fn verify(&self, claim: Option<Claim<'_>>, now_ms: u64) -> Result<Signer, Rejection> {
        let Some(signature) = claim else {
            return match self.mode {
                Mode::Required => Err(Rejection::Unsigned),
                Mode::Open | Mode::Optional => Ok(Signer::unsigned()),
            };
        };
        let key = self
            .keyring
            .get(signature.key)
            .ok_or(Rejection::UnknownKey)?;
        if !key.verify(signature.signed, signature.tag) {
            return Err(Rejection::BadMac);
        }
        let window = u64::try_from(self.window.as_millis()).unwrap_or(u64::MAX);
        if signature.ts.abs_diff(now_ms) > window {
            return Err(Rejection::OutsideWindow);
        }
        Ok(Signer {
            key: Some(key.name().clone()),
            ts: signature.ts,
        })
    }

    /// True when `signer` may register `service`: unsigned heartbeats (in
    /// open or optional mode) and keys without a scope may register any.
    pub fn in_scope(&self, signer: &Signer, service: &str) -> bool {
        let Some(key) = signer.key.as_deref() else {
            return true;
        };
        let mut scopes = self.scopes.iter().filter(|s| s.key == key).peekable();
        scopes.peek().is_none() || scopes.any(|s| s.allows(service))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{Algorithm, Key};

    fn key(name: &str) -> Key {
        Key::new(name, Algorithm::HmacSha256, &[7u8; 32]).expect("key")
    }

    /// A datagram as text: the signed part, then ` auth=<tag as hex>`.
    fn signed(key: &Key, body: &str, ts: u64) -> String {
        let message = format!("{body} key={} ts={ts}", key.name());
        let tag = data_encoding::HEXLOWER.encode(key.sign(message.as_bytes()).as_ref());
        format!("{message} auth={tag}")
    }

    fn policy(mode: Option<Mode>, scopes: &[&str]) -> Policy {
        Policy::new(
            Keyring::from_keys([key("web-team"), key("ops")]),
            scopes
                .iter()
                .map(|s| Scope::parse(s).expect("scope"))
                .collect(),
            mode,
            Duration::from_secs(30),
        )
        .expect("policy")
    }

    /// Splits the test datagram as the wire decoder would, then verifies.
    fn check(policy: &Policy, datagram: &str, now_ms: u64) -> Result<Signer, Rejection> {
        let Some((signed, tag)) = datagram.rsplit_once(" auth=") else {
            return policy.verify(None, now_ms);
        };
        let tag = data_encoding::HEXLOWER.decode(tag.as_bytes()).expect("hex");
        let (rest, ts) = signed.rsplit_once(" ts=").expect("ts");
        let (_, key) = rest.rsplit_once(" key=").expect("key");
        let claim = Claim {
            key,
            ts: ts.parse().expect("ts"),
            signed: signed.as_bytes(),
            tag: &tag,
        };
        policy.verify(Some(claim), now_ms)
    }

    const BODY: &str = "beacon/1 service=web instance=web-1 port=80";
    const NOW: u64 = 1_700_000_000_000;

    #[test]
    fn checks_key_then_mac_then_window() {
        let p = policy(None, &[]);
        let good = signed(&key("web-team"), BODY, NOW);
        let signer = check(&p, &good, NOW).expect("accepted");
        assert_eq!((signer.key.as_deref(), signer.ts), (Some("web-team"), NOW));
        let stranger = Key::new("nobody", Algorithm::HmacSha256, &[7u8; 32]).expect("key");
        assert_eq!(
            check(&p, &signed(&stranger, BODY, NOW), NOW),
            Err(Rejection::UnknownKey)
        );
        // Right name, wrong secret; and a tampered body.
        let forged = Key::new("web-team", Algorithm::HmacSha256, &[8u8; 32]).expect("key");
        assert_eq!(
            check(&p, &signed(&forged, BODY, NOW), NOW),
            Err(Rejection::BadMac)
        );
        let tampered = good.replace("port=80", "port=81");
        assert_eq!(check(&p, &tampered, NOW), Err(Rejection::BadMac));
        // The window's edges, both sides.
        assert!(check(&p, &good, NOW + 30_000).is_ok());
        assert!(check(&p, &good, NOW - 30_000).is_ok());
        assert_eq!(
            check(&p, &good, NOW + 30_001),
            Err(Rejection::OutsideWindow)
        );
        assert_eq!(
            check(&p, &good, NOW - 30_001),
            Err(Rejection::OutsideWindow)
        );
        // A stale datagram with an unknown key is reported as unknown key.
        assert_eq!(
            check(&p, &signed(&stranger, BODY, 0), NOW),
            Err(Rejection::UnknownKey)
        );
    }

    #[test]
    fn unsigned_heartbeats_follow_the_mode() {
        let unsigned = BODY.to_string();
        assert_eq!(
            check(&policy(None, &[]), &unsigned, NOW),
            Err(Rejection::Unsigned)
        );
        assert_eq!(
            check(&policy(Some(Mode::Optional), &[]), &unsigned, NOW),
            Ok(Signer::unsigned())
        );
        assert_eq!(
            check(&Policy::open(), &unsigned, NOW),
            Ok(Signer::unsigned())
        );
        assert!(
            Policy::new(
                Keyring::default(),
                vec![],
                Some(Mode::Required),
                Duration::from_secs(1)
            )
            .is_err()
        );
    }

    #[test]
    fn scopes_are_globs_per_key() {
        let p = policy(None, &["web-team=web,web-*", "web-team=api"]);
        let web = Signer {
            key: Some("web-team".into()),
            ts: 1,
        };
        let ops = Signer {
            key: Some("ops".into()),
            ts: 1,
        };
        for service in ["web", "web-canary", "api"] {
            assert!(p.in_scope(&web, service), "{service}");
        }
        for service in ["payments", "webx", "api-2"] {
            assert!(!p.in_scope(&web, service), "{service}");
        }
        assert!(
            p.in_scope(&ops, "payments"),
            "a key without a scope may register any service"
        );
        assert!(p.in_scope(&Signer::unsigned(), "payments"));
        let error = Policy::new(
            Keyring::from_keys([key("ops")]),
            vec![Scope::parse("typo=web").expect("scope")],
            None,
            Duration::from_secs(30),
        )
        .expect_err("unknown key in scope");
        assert!(error.contains("`typo`"), "{error}");
        assert!(Scope::parse("web-team").is_err());
        assert!(Scope::parse("web-team=web,").is_err());
        assert!(Scope::parse("web-team=[").is_err());
    }
}
