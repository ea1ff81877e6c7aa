//! The registry snapshot: the file that lets a restart lose nothing.
//!
//! Takes what the registry exports (live instances with their leases and
//! owners, remembered removals) and the SOA serial; produces the text of
//! the `registry` file in the state directory, and reads it back into a
//! [`Snapshot`], or a [`SnapshotError`] naming the line at fault. It never
//! touches the registry or the disk itself (the state directory and the
//! intake do), so the reader can be fuzzed as a pure function.
//!
//! # Format, version 1
//!
//! ```text
//! beacon-registry 1
//! serial <SOA serial when taken>
//! taken <Unix time in ms>
//! i <lease end, Unix ms> <key or -> <last ts or 0> <heartbeat, as on the wire>
//! g <forget at, Unix ms> <last ts> <service> <instance>
//! end <number of i lines> <number of g lines>
//! ```
//!
//! An `i` line carries the instance as a version 1 heartbeat (address
//! always given, `state=up` or `state=drain`), read back with the
//! heartbeat decoder; a `g` line is a removed signed instance whose last
//! timestamp must still refuse replays. The `end` line guards against a
//! truncated file.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use crate::auth::Signer;
use crate::intake::wire;
use crate::registry::announcement::Announcement;
use crate::registry::{Forgotten, Kept};

/// The first line of version 1.
pub const HEADER: &str = "beacon-registry 1";

/// The snapshot's file name inside the state directory.
pub const FILE: &str = "registry";

/// A snapshot as read back: times are absolute (Unix milliseconds).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The SOA serial when it was taken.
    pub serial: u32,
    /// When it was taken.
    pub taken_ms: u64,
    /// Live instances.
    pub instances: Vec<Instance>,
    /// Remembered removals.
    pub gone: Vec<Gone>,
}

/// One live instance in a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// What it announced (address included).
    pub announcement: Announcement,
    /// When its lease ends.
    pub expires_ms: u64,
    /// Its owner and last accepted `ts`.
    pub signer: Signer,
}

/// One remembered removal in a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gone {
    /// Service name.
    pub service: String,
    /// Instance id.
    pub instance: String,
    /// The last accepted `ts`.
    pub last_ts: u64,
    /// When it may be forgotten.
    pub forget_ms: u64,
}

/// Why a snapshot cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// The first line is not a version this server reads.
    #[error("line 1: not a beacon registry snapshot of a known version (expected `{HEADER}`)")]
    UnknownVersion,
    /// A line is malformed.
    #[error("line {line}: {message}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The file ends before its `end` line, or the counts differ.
    #[error("the snapshot is truncated: {0}")]
    Truncated(String),
}

/// Writes a snapshot of `kept` and `forgotten` (taken at `now_ms`) with
/// `serial`.
pub fn encode(serial: u32, now_ms: u64, kept: &[Kept], forgotten: &[Forgotten]) -> Vec<u8> {
    let mut out = String::with_capacity(64 + kept.len() * 160 + forgotten.len() * 64);
    let at = |left: Duration| now_ms.saturating_add(u64::try_from(left.as_millis()).unwrap_or(0));
    // Writing to a String cannot fail.
    let _ = writeln!(out, "{HEADER}\nserial {serial}\ntaken {now_ms}");
    for entry in kept {
        let heartbeat = wire::encode(&entry.instance.announcement());
        let _ = write!(
            out,
            "i {} {} {} {heartbeat}",
            at(entry.remaining),
            entry.signer.key_name(),
            entry.signer.ts
        );
    }
    for gone in forgotten {
        let _ = writeln!(
            out,
            "g {} {} {} {}",
            at(gone.remaining),
            gone.last_ts,
            gone.service,
            gone.instance
        );
    }
    let _ = writeln!(out, "end {} {}", kept.len(), forgotten.len());
    out.into_bytes()
}

fn number<T: std::str::FromStr>(
    line: usize,
    what: &str,
    text: Option<&str>,
) -> Result<T, SnapshotError> {
    let text = text.unwrap_or_default();
    text.parse().map_err(|_| SnapshotError::Line {
        line,
        message: format!("{what} `{text}` is not a number"),
    })
}

/// Reads a snapshot.
///
/// # Errors
/// [`SnapshotError`] for an unknown version, a malformed line or a
/// truncated file; the caller sets the file aside and starts empty.
pub fn decode(bytes: &[u8]) -> Result<Snapshot, SnapshotError> {
    let text = std::str::from_utf8(bytes).map_err(|e| SnapshotError::Line {
        line: 1 + bytes[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count(),
        message: "not UTF-8".into(),
    })?;
    let mut lines = text
        .split_inclusive('\n')
        .enumerate()
        .map(|(i, l)| (i + 1, l));
    match lines.next() {
        Some((_, first)) if first.trim_end_matches('\n') == HEADER => {}
        _ => return Err(SnapshotError::UnknownVersion),
    }
    let mut snapshot = Snapshot::default();
    let mut ended = None;
    for (line, raw) in lines {
        let Some(content) = raw.strip_suffix('\n') else {
            return Err(SnapshotError::Truncated(format!("line {line} has no end")));
        };
        if ended.is_some() {
            return Err(SnapshotError::Line {
                line,
                message: "text after the `end` line".into(),
            });
        }
        let (kind, rest) = content.split_once(' ').unwrap_or((content, ""));
        match kind {
            "serial" => snapshot.serial = number(line, "serial", Some(rest))?,
            "taken" => snapshot.taken_ms = number(line, "time", Some(rest))?,
            "i" => {
                let mut fields = rest.splitn(4, ' ');
                let expires_ms = number(line, "lease end", fields.next())?;
                let key = fields.next().unwrap_or_default();
                let ts = number(line, "ts", fields.next())?;
                let heartbeat = fields.next().unwrap_or_default();
                let announcement =
                    wire::decode(heartbeat.as_bytes()).map_err(|e| SnapshotError::Line {
                        line,
                        message: e.to_string(),
                    })?;
                if announcement.addr.is_none() {
                    return Err(SnapshotError::Line {
                        line,
                        message: "the instance has no address".into(),
                    });
                }
                let signer = match key {
                    "-" => Signer::unsigned(),
                    key => Signer {
                        key: Some(Arc::from(
                            crate::keys::check_key_name(key)
                                .map_err(|message| SnapshotError::Line { line, message })?,
                        )),
                        ts,
                    },
                };
                snapshot.instances.push(Instance {
                    announcement,
                    expires_ms,
                    signer,
                });
            }
            "g" => {
                let mut fields = rest.split(' ');
                let forget_ms = number(line, "forget time", fields.next())?;
                let last_ts = number(line, "ts", fields.next())?;
                let (Some(service), Some(instance), None) =
                    (fields.next(), fields.next(), fields.next())
                else {
                    return Err(SnapshotError::Line {
                        line,
                        message: "expected `g <forget at> <ts> <service> <instance>`".into(),
                    });
                };
                snapshot.gone.push(Gone {
                    service: service.to_string(),
                    instance: instance.to_string(),
                    last_ts,
                    forget_ms,
                });
            }
            "end" => {
                let mut fields = rest.split(' ');
                let instances: usize = number(line, "count", fields.next())?;
                let gone: usize = number(line, "count", fields.next())?;
                ended = Some((instances, gone));
            }
            other => {
                return Err(SnapshotError::Line {
                    line,
                    message: format!("unknown line kind `{other}`"),
                });
            }
        }
    }
    match ended {
        Some((instances, gone))
            if instances == snapshot.instances.len() && gone == snapshot.gone.len() =>
        {
            Ok(snapshot)
        }
        Some((instances, gone)) => Err(SnapshotError::Truncated(format!(
            "`end` counts {instances} instances and {gone} removals, the file holds {} and {}",
            snapshot.instances.len(),
            snapshot.gone.len()
        ))),
        None => Err(SnapshotError::Truncated("no `end` line".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;
    use tokio::time::Instant;

    #[test]
    fn a_registry_round_trips_through_a_snapshot() {
        let now = Instant::now();
        let mut registry = Registry::new(10, vec![]);
        registry.set_replay_memory(Duration::from_secs(60));
        let mut web = Announcement::new("web", "web-1", 8080);
        web.meta = vec![("path".into(), "/a b".into())];
        web.state = crate::registry::announcement::State::Drain;
        registry.apply(web, "10.0.0.1".parse().expect("ip"), now);
        let signer = Signer {
            key: Some("ops".into()),
            ts: 77,
        };
        let mut api = Announcement::new("api", "a", 9);
        api.ttl = 60;
        registry.apply_signed(
            api.clone(),
            "2001:db8::1".parse().expect("ip"),
            &signer,
            now,
        );
        let mut gone = Announcement::new("api", "b", 9);
        registry.apply_signed(gone.clone(), "10.0.0.2".parse().expect("ip"), &signer, now);
        gone.state = crate::registry::announcement::State::Down;
        let late = Signer {
            ts: 90,
            ..signer.clone()
        };
        registry.apply_signed(gone, "10.0.0.2".parse().expect("ip"), &late, now);

        let (kept, forgotten) = registry.export(now);
        let bytes = encode(42, 1_000_000, &kept, &forgotten);
        let snapshot = decode(&bytes).expect("reads back");
        assert_eq!((snapshot.serial, snapshot.taken_ms), (42, 1_000_000));
        assert_eq!(snapshot.instances.len(), 2);
        let api_back = snapshot
            .instances
            .iter()
            .find(|i| i.announcement.service == "api")
            .expect("api");
        assert_eq!(api_back.expires_ms, 1_060_000);
        assert_eq!(api_back.signer, signer);
        let web_back = snapshot
            .instances
            .iter()
            .find(|i| i.announcement.service == "web")
            .expect("web");
        assert_eq!(
            web_back.announcement,
            kept.iter()
                .find(|k| &*k.instance.service == "web")
                .expect("web")
                .instance
                .announcement()
        );
        assert_eq!(
            snapshot.gone,
            [Gone {
                service: "api".into(),
                instance: "b".into(),
                last_ts: 90,
                forget_ms: 1_060_000
            }]
        );
    }

    #[test]
    fn damaged_snapshots_are_errors_not_panics() {
        let good = "beacon-registry 1\nserial 1\ntaken 5\ni 9 - 0 beacon/1 service=a instance=b port=1 addr=10.0.0.1\nend 1 0\n";
        assert!(decode(good.as_bytes()).is_ok());
        let cases = [
            ("beacon-registry 2\nend 0 0\n", "known version"),
            ("", "known version"),
            (&good[..good.len() - 1], "truncated"),
            (&good[..good.len() - 8], "truncated"),
            ("beacon-registry 1\nend 1 0\n", "truncated"),
            (
                "beacon-registry 1\nserial x\nend 0 0\n",
                "line 2: serial `x`",
            ),
            (
                "beacon-registry 1\ni 9 - 0 beacon/1 service=a port=1\nend 1 0\n",
                "line 2: required field `instance`",
            ),
            (
                "beacon-registry 1\ni 9 - 0 beacon/1 service=a instance=b port=1\nend 1 0\n",
                "no address",
            ),
            (
                "beacon-registry 1\ni 9 bad/key 0 beacon/1 service=a instance=b port=1 addr=10.0.0.1\nend 1 0\n",
                "may hold only",
            ),
            (
                "beacon-registry 1\ng 1 2 a\nend 0 1\n",
                "line 2: expected `g",
            ),
            ("beacon-registry 1\nx\nend 0 0\n", "unknown line kind"),
            ("beacon-registry 1\nend 0 0\nserial 1\n", "after the `end`"),
        ];
        for (text, expected) in cases {
            let error = decode(text.as_bytes()).expect_err(text).to_string();
            assert!(
                error.contains(expected),
                "{text:?}: {error:?} lacks {expected:?}"
            );
        }
        assert!(decode(b"beacon-registry 1\n\xff\n").is_err());
    }
}
