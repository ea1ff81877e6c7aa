//! Counters and gauges, kept where the work happens and summed when
//! scraped.
//!
//! Takes counts from the answering threads (each UDP worker its own
//! [`AnswerCounters`], so no cache line is shared between threads on the
//! answering path), the TCP connections, the heartbeat intake and the
//! transfer code; produces the Prometheus text exposition (names
//! prefixed `beacon_`) through prometheus-client's encoder, at scrape
//! time ([`Metrics::encode`]). Counting is a relaxed atomic add; nothing
//! here locks on the answering path or allocates per query.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Query types counted by name; the rest count as `other`.
const QTYPES: [(u16, &str); 11] = [
    (1, "A"),
    (28, "AAAA"),
    (33, "SRV"),
    (12, "PTR"),
    (16, "TXT"),
    (6, "SOA"),
    (2, "NS"),
    (5, "CNAME"),
    (255, "ANY"),
    (252, "AXFR"),
    (251, "IXFR"),
];
const OTHER_TYPE: usize = QTYPES.len();

/// Response codes counted by name; the rest count as `other`.
const RCODES: [&str; 11] = [
    "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "YXDOMAIN", "YXRRSET",
    "NXRRSET", "NOTAUTH", "NOTZONE",
];
const OTHER_RCODE: usize = RCODES.len();

/// Why a heartbeat was turned away, as the metric's `reason` label:
/// malformed datagrams, refusals by the registry (caps, reserved or
/// claimed names), new instances dropped while too many wait, and each
/// authentication reason ([`crate::auth::Rejection`]).
pub const REJECTIONS: [&str; 10] = [
    "malformed",
    "refused",
    "overflow",
    "unsigned",
    "unknown-key",
    "bad-mac",
    "outside-window",
    "replayed",
    "out-of-scope",
    "not-owner",
];

/// Registry events, as the metric's `event` label.
pub const EVENTS: [&str; 5] = [
    "registered",
    "changed",
    "drained",
    "deregistered",
    "expired",
];

/// What one answering thread (or all TCP connections) counted.
#[derive(Debug)]
pub struct AnswerCounters {
    queries: [[AtomicU64; OTHER_RCODE + 1]; OTHER_TYPE + 1],
    fast_hits: AtomicU64,
    fast_misses: AtomicU64,
    truncated: AtomicU64,
    rrl_drops: AtomicU64,
    rrl_slips: AtomicU64,
}

impl Default for AnswerCounters {
    fn default() -> Self {
        AnswerCounters {
            queries: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            fast_hits: AtomicU64::new(0),
            fast_misses: AtomicU64::new(0),
            truncated: AtomicU64::new(0),
            rrl_drops: AtomicU64::new(0),
            rrl_slips: AtomicU64::new(0),
        }
    }
}

impl AnswerCounters {
    /// Counts `reply` (an encoded reply to one query): its question's
    /// type, its response code, whether it was truncated.
    pub fn reply(&self, reply: &[u8]) {
        let Some(header) = reply.get(..12) else {
            return;
        };
        let rcode = usize::from(header[3] & 0x0f).min(OTHER_RCODE);
        let qtype = question_type(reply).map_or(OTHER_TYPE, |t| {
            QTYPES
                .iter()
                .position(|(code, _)| *code == t)
                .unwrap_or(OTHER_TYPE)
        });
        self.queries[qtype][rcode].fetch_add(1, Ordering::Relaxed);
        if header[2] & 0x02 != 0 {
            self.truncated.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a reply response rate limiting dropped (`slipped` false)
    /// or sent truncated.
    pub fn rate_limited(&self, slipped: bool) {
        let counter = if slipped {
            &self.rrl_slips
        } else {
            &self.rrl_drops
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a query the fast path answered (`true`) or left to the
    /// general path.
    pub fn fast_path(&self, hit: bool) {
        let counter = if hit {
            &self.fast_hits
        } else {
            &self.fast_misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// The type of the first question of `message`, read from its bytes
/// (a query's name is never compressed; a pointer there means no).
pub fn question_type(message: &[u8]) -> Option<u16> {
    if message.get(4..6)? == [0, 0] {
        return None;
    }
    let mut at = 12;
    loop {
        let len = usize::from(*message.get(at)?);
        if len == 0 {
            at += 1;
            break;
        }
        if len & 0xc0 != 0 {
            return None;
        }
        at += 1 + len;
    }
    Some(u16::from_be_bytes([
        *message.get(at)?,
        *message.get(at + 1)?,
    ]))
}

/// Everything counted, across the server.
#[derive(Debug)]
pub struct Metrics {
    udp: Mutex<Vec<Arc<AnswerCounters>>>,
    /// Every TCP connection's queries.
    pub tcp: Arc<AnswerCounters>,
    /// Heartbeats that changed or renewed an instance.
    pub heartbeats_accepted: AtomicU64,
    rejected: [AtomicU64; REJECTIONS.len()],
    events: [AtomicU64; EVENTS.len()],
    /// Live instances, as of the last view.
    pub instances: AtomicU64,
    /// Live services, as of the last view.
    pub services: AtomicU64,
    /// Seconds it took to build and publish each view.
    pub publish_seconds: Histogram,
    /// Zone transfers served, and refused.
    pub transfers: AtomicU64,
    /// Zone transfers refused.
    pub transfers_refused: AtomicU64,
    /// NOTIFYs not acknowledged in time.
    pub notify_failures: AtomicU64,
    /// DNS UPDATE messages answered, by rcode.
    updates: [AtomicU64; OTHER_RCODE + 1],
    /// Registry snapshots written.
    pub snapshot_writes: AtomicU64,
    /// Zone fragment files (re)loaded, and those that failed.
    pub fragment_loads: AtomicU64,
    /// Zone fragment files that failed to load.
    pub fragment_failures: AtomicU64,
    /// Queries relayed to an upstream (`--forward`).
    pub forwarded: AtomicU64,
    /// Forwarded queries no upstream answered (or too many waiting).
    pub upstream_failures: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            udp: Mutex::new(Vec::new()),
            tcp: Arc::default(),
            heartbeats_accepted: AtomicU64::new(0),
            rejected: std::array::from_fn(|_| AtomicU64::new(0)),
            events: std::array::from_fn(|_| AtomicU64::new(0)),
            instances: AtomicU64::new(0),
            services: AtomicU64::new(0),
            publish_seconds: Histogram::new([
                0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0,
            ]),
            transfers: AtomicU64::new(0),
            transfers_refused: AtomicU64::new(0),
            notify_failures: AtomicU64::new(0),
            updates: std::array::from_fn(|_| AtomicU64::new(0)),
            snapshot_writes: AtomicU64::new(0),
            fragment_loads: AtomicU64::new(0),
            fragment_failures: AtomicU64::new(0),
            forwarded: AtomicU64::new(0),
            upstream_failures: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    /// Counters for one more UDP answering thread.
    pub fn udp_worker(&self) -> Arc<AnswerCounters> {
        let counters = Arc::new(AnswerCounters::default());
        if let Ok(mut all) = self.udp.lock() {
            all.push(counters.clone());
        }
        counters
    }

    /// Counts a heartbeat turned away for `reason` (one of [`REJECTIONS`]).
    pub fn rejected(&self, reason: &str) {
        if let Some(i) = REJECTIONS.iter().position(|r| *r == reason) {
            self.rejected[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts an UPDATE answered with `rcode` (its low four bits).
    pub fn update(&self, rcode: u16) {
        let index = usize::from(rcode & 0x0f).min(OTHER_RCODE);
        self.updates[index].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a registry event (one of [`EVENTS`]).
    pub fn event(&self, event: &str) {
        if let Some(i) = EVENTS.iter().position(|e| *e == event) {
            self.events[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The Prometheus text exposition of everything.
    pub fn encode(self: &Arc<Self>) -> String {
        let mut registry = Registry::with_prefix("beacon");
        registry.register(
            "view_publish_seconds",
            "Time to build and publish a view",
            self.publish_seconds.clone(),
        );
        registry.register_collector(Box::new(Scrape(self.clone())));
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &registry).is_err() {
            let _ = writeln!(text, "# encoding failed");
        }
        text
    }
}

/// The counters read at scrape time.
#[derive(Debug)]
struct Scrape(Arc<Metrics>);

fn counter(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let counter = ConstCounter::new(value);
    counter.encode(encoder.encode_descriptor(name, help, None, counter.metric_type())?)
}

fn gauge(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: i64,
) -> Result<(), std::fmt::Error> {
    let gauge = ConstGauge::new(value);
    gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)
}

fn load(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let metrics = &self.0;
        let udp: Vec<Arc<AnswerCounters>> = metrics
            .udp
            .lock()
            .map(|all| all.clone())
            .unwrap_or_default();
        let transports: [(&str, Vec<&AnswerCounters>); 2] = [
            ("udp", udp.iter().map(AsRef::as_ref).collect()),
            ("tcp", vec![metrics.tcp.as_ref()]),
        ];
        {
            let probe = ConstCounter::new(0u64);
            let mut family = encoder.encode_descriptor(
                "queries",
                "DNS queries answered, by transport, question type and response code",
                None,
                probe.metric_type(),
            )?;
            for (transport, counters) in &transports {
                for (t, type_name) in QTYPES.iter().map(|(_, n)| *n).chain(["other"]).enumerate() {
                    for (r, rcode) in RCODES.iter().copied().chain(["other"]).enumerate() {
                        let value: u64 = counters.iter().map(|c| load(&c.queries[t][r])).sum();
                        if value == 0 {
                            continue;
                        }
                        let labels = [
                            ("transport", *transport),
                            ("type", type_name),
                            ("rcode", rcode),
                        ];
                        ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
                    }
                }
            }
        }
        let sum = |f: fn(&AnswerCounters) -> &AtomicU64| -> u64 {
            transports
                .iter()
                .flat_map(|(_, counters)| counters.iter())
                .map(|c| load(f(c)))
                .sum()
        };
        counter(
            &mut encoder,
            "fast_path_hits",
            "Queries answered from pre-encoded replies",
            sum(|c| &c.fast_hits),
        )?;
        counter(
            &mut encoder,
            "fast_path_misses",
            "Queries left to the general path",
            sum(|c| &c.fast_misses),
        )?;
        counter(
            &mut encoder,
            "truncated_replies",
            "Replies sent with TC set",
            sum(|c| &c.truncated),
        )?;
        counter(
            &mut encoder,
            "rrl_drops",
            "Replies dropped by response rate limiting",
            sum(|c| &c.rrl_drops),
        )?;
        counter(
            &mut encoder,
            "rrl_slips",
            "Replies sent truncated by response rate limiting",
            sum(|c| &c.rrl_slips),
        )?;
        counter(
            &mut encoder,
            "forwarded_queries",
            "Queries relayed to an upstream",
            load(&metrics.forwarded),
        )?;
        counter(
            &mut encoder,
            "upstream_failures",
            "Forwarded queries no upstream answered",
            load(&metrics.upstream_failures),
        )?;
        counter(
            &mut encoder,
            "heartbeats_accepted",
            "Heartbeats that registered, changed or renewed an instance",
            load(&metrics.heartbeats_accepted),
        )?;
        {
            let probe = ConstCounter::new(0u64);
            let mut family = encoder.encode_descriptor(
                "heartbeats_rejected",
                "Heartbeats turned away, by reason",
                None,
                probe.metric_type(),
            )?;
            for (i, reason) in REJECTIONS.iter().enumerate() {
                ConstCounter::new(load(&metrics.rejected[i]))
                    .encode(family.encode_family(&[("reason", *reason)])?)?;
            }
        }
        {
            let probe = ConstCounter::new(0u64);
            let mut family = encoder.encode_descriptor(
                "registry_events",
                "Registry changes, by event",
                None,
                probe.metric_type(),
            )?;
            for (i, event) in EVENTS.iter().enumerate() {
                ConstCounter::new(load(&metrics.events[i]))
                    .encode(family.encode_family(&[("event", *event)])?)?;
            }
        }
        gauge(
            &mut encoder,
            "instances",
            "Live instances",
            i64::try_from(load(&metrics.instances)).unwrap_or(i64::MAX),
        )?;
        gauge(
            &mut encoder,
            "services",
            "Live services",
            i64::try_from(load(&metrics.services)).unwrap_or(i64::MAX),
        )?;
        counter(
            &mut encoder,
            "zone_transfers",
            "Zone transfers served (AXFR and IXFR)",
            load(&metrics.transfers),
        )?;
        counter(
            &mut encoder,
            "zone_transfers_refused",
            "Zone transfers refused",
            load(&metrics.transfers_refused),
        )?;
        {
            let probe = ConstCounter::new(0u64);
            let mut family = encoder.encode_descriptor(
                "updates",
                "DNS UPDATE messages answered, by response code",
                None,
                probe.metric_type(),
            )?;
            for (r, rcode) in RCODES.iter().copied().chain(["other"]).enumerate() {
                ConstCounter::new(load(&metrics.updates[r]))
                    .encode(family.encode_family(&[("rcode", rcode)])?)?;
            }
        }
        counter(
            &mut encoder,
            "notify_failures",
            "NOTIFYs not acknowledged in time",
            load(&metrics.notify_failures),
        )?;
        counter(
            &mut encoder,
            "snapshot_writes",
            "Registry snapshots written",
            load(&metrics.snapshot_writes),
        )?;
        counter(
            &mut encoder,
            "fragment_loads",
            "Zone fragment files loaded",
            load(&metrics.fragment_loads),
        )?;
        counter(
            &mut encoder,
            "fragment_failures",
            "Zone fragment files that failed to load",
            load(&metrics.fragment_failures),
        )?;
        gauge(
            &mut encoder,
            "process_resident_memory_bytes",
            "Resident memory of the process",
            resident_bytes(),
        )?;
        Ok(())
    }
}

/// The process's resident memory, from /proc (0 where there is none).
fn resident_bytes() -> i64 {
    let pages: i64 = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|text| text.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0);
    pages.saturating_mul(4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_counted_by_type_and_rcode_and_scraped() {
        let metrics = Arc::new(Metrics::default());
        let worker = metrics.udp_worker();
        // A reply to `web.svc.internal. A`, NXDOMAIN, truncated.
        let mut reply = vec![0, 1, 0x84 | 0x02, 0x03, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in ["web", "svc", "internal"] {
            reply.push(u8::try_from(label.len()).expect("short"));
            reply.extend_from_slice(label.as_bytes());
        }
        reply.extend_from_slice(&[0, 0, 1, 0, 1]);
        worker.reply(&reply);
        worker.fast_path(true);
        metrics.rejected("bad-mac");
        let text = metrics.encode();
        assert!(
            text.contains(r#"beacon_queries_total{transport="udp",type="A",rcode="NXDOMAIN"} 1"#),
            "{text}"
        );
        assert!(text.contains("beacon_truncated_replies_total 1"), "{text}");
        assert!(text.contains("beacon_fast_path_hits_total 1"), "{text}");
        assert!(
            text.contains(r#"beacon_heartbeats_rejected_total{reason="bad-mac"} 1"#),
            "{text}"
        );
        assert!(
            text.contains("beacon_process_resident_memory_bytes "),
            "{text}"
        );
    }
}
