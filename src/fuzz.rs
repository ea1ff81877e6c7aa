//! Entry points for fuzzing: the cargo-fuzz targets in `fuzz/` and the
//! corpus replay in `tests/fuzz_corpus.rs` call the same functions.
//!
//! Each takes arbitrary bytes, runs one parser or path exactly as the
//! server does, and panics only when an invariant the server relies on
//! breaks (a panic inside the code under test counts too). They never
//! touch the network or the disk beyond reading the example `zones/` once.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hickory_proto::op::Message;
use hickory_proto::rr::Name;
use hickory_server::net::xfer::Protocol;

use crate::answer::fast::FastPath;
use crate::answer::handler::DnsHandler;
use crate::answer::tcp::{Frame, frame};
use crate::auth::{Policy, Signer};
use crate::config::{ServeConfig, parse_domain};
use crate::intake::wire;
use crate::keys::{Algorithm, Key, Keyring};
use crate::registry::Registry;
use crate::registry::announcement::Announcement;
use crate::state::snapshot;
use crate::view::StaticZone;
use crate::view::View;
use crate::view::publish::ViewHandle;

/// The key the heartbeat target verifies with.
pub const FUZZ_SECRET: [u8; 32] = [7; 32];

/// A heartbeat datagram, signed or not: decoded, verified, and what
/// decodes must encode back to itself.
///
/// # Panics
/// When what decodes does not encode back to itself.
pub fn heartbeat(data: &[u8]) {
    static POLICY: OnceLock<Policy> = OnceLock::new();
    let policy = POLICY.get_or_init(|| {
        let key = Key::new("fuzz", Algorithm::HmacSha256, &FUZZ_SECRET).expect("key");
        Policy::new(
            Keyring::from_keys([key]),
            Vec::new(),
            None,
            Duration::from_secs(30),
        )
        .expect("policy")
    });
    let Ok(decoded) = wire::decode_signed(data) else {
        return;
    };
    let claim = decoded.signature.as_ref().map(wire::Signature::claim);
    let _ = policy.verify(claim, 1_764_547_200_000);
    let again = wire::decode(wire::encode(&decoded.announcement).as_bytes())
        .expect("an announcement encodes to a datagram that decodes");
    assert_eq!(again, decoded.announcement, "encoding round-trips");
}

/// A zone fragment's text: parsed as the loader parses a file.
///
/// # Panics
/// When a problem names a line outside the file.
pub fn fragment(data: &[u8]) {
    static ZONE: OnceLock<Name> = OnceLock::new();
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let zone = ZONE.get_or_init(|| parse_domain("svc.internal").expect("zone"));
    let parsed = crate::fragments::parse::parse(text, zone);
    for (line, _) in &parsed.problems {
        assert!(
            usize::try_from(*line).is_ok_and(|l| l <= text.lines().count() + 1),
            "problem line {line} is in the file"
        );
    }
}

/// A registry snapshot: read; what reads is restored into a registry,
/// written again, and reads back the same.
///
/// # Panics
/// When a written snapshot does not read back whole.
pub fn snapshot(data: &[u8]) {
    let Ok(read) = snapshot::decode(data) else {
        return;
    };
    let now = tokio::time::Instant::now();
    let mut registry = Registry::new(1_000, vec![]);
    registry.set_replay_memory(Duration::from_secs(60));
    for kept in &read.instances {
        if let Some(addr) = kept.announcement.addr {
            registry.restore(
                kept.announcement.clone(),
                addr,
                Duration::from_secs(60),
                &kept.signer,
                now,
            );
        }
    }
    let (kept, forgotten) = registry.export(now);
    let again = snapshot::decode(&snapshot::encode(
        read.serial,
        read.taken_ms,
        &kept,
        &forgotten,
    ))
    .expect("a written snapshot reads back");
    assert_eq!(again.instances.len(), registry.len());
}

/// A TCP byte stream: split into messages as a connection splits it.
///
/// # Panics
/// When a message's range disagrees with its length prefix.
pub fn tcp_framing(data: &[u8]) {
    let mut at = 0;
    loop {
        match frame(data, at) {
            Frame::Message(range) => {
                assert_eq!(range.start, at + 2);
                assert!(range.end <= data.len() && range.len() >= 12);
                let prefix = usize::from(u16::from_be_bytes([data[at], data[at + 1]]));
                assert_eq!(range.len(), prefix);
                at = range.end;
            }
            Frame::Incomplete => {
                assert!(
                    data.len() < at + 2 || {
                        let prefix = usize::from(u16::from_be_bytes([data[at], data[at + 1]]));
                        data.len() < at + 2 + prefix
                    }
                );
                return;
            }
            Frame::TooShort(len) => {
                assert!(len < 12);
                return;
            }
        }
    }
}

/// The served data the query target answers from: the example fragments
/// and a few live services.
struct QueryFixture {
    view: Arc<View>,
    registry: Registry,
    handler: DnsHandler,
    runtime: tokio::runtime::Runtime,
}

fn query_fixture() -> &'static QueryFixture {
    static FIXTURE: OnceLock<QueryFixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let zone = parse_domain("svc.internal").expect("zone");
        let mut config = ServeConfig::new(zone.clone());
        config.ns_addrs.push(IpAddr::V4(Ipv4Addr::LOCALHOST));
        config
            .reverse_zones
            .push(parse_domain("10.in-addr.arpa").expect("reverse"));
        let mut loader = crate::fragments::Loader::new(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("zones"),
            zone,
        );
        loader.rescan(
            &crate::fragments::RescanRequest::everything(),
            &crate::fragments::NoLiveNames,
        );
        let statics: StaticZone = loader.statics().clone();
        let mut registry = Registry::new(1_000, vec![]);
        let now = tokio::time::Instant::now();
        for (service, instances, weight) in [("web", 3, 1), ("api", 2, 5), ("big", 40, 1)] {
            for i in 0..instances {
                let mut hb = Announcement::new(service, &format!("{service}-{i}"), 8080);
                let addr = IpAddr::V4(Ipv4Addr::new(10, 9, instances, i));
                hb.addr = Some(addr);
                hb.weight = weight;
                hb.meta = vec![("v".into(), "1".into())];
                hb.tags = match i % 3 {
                    0 => vec!["canary".into(), "eu".into()],
                    1 => vec!["eu".into()],
                    _ => Vec::new(),
                };
                registry.apply_signed(hb, addr, &Signer::unsigned(), now);
            }
        }
        let statics = Arc::new(statics);
        let handle = ViewHandle::new(View::build(&config, 7, &registry, statics.clone()));
        let view = handle.load();
        let handler = DnsHandler::new(
            handle,
            None,
            1232,
            std::sync::Arc::new(crate::transfer::Transfers::off()),
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        QueryFixture {
            view,
            registry,
            handler,
            runtime,
        }
    })
}

/// What two replies must share: header fields, question, and each section
/// as a set (rotation orders them differently), names in lower case.
fn comparable(reply: &Message) -> (String, Vec<String>, [Vec<String>; 3]) {
    let header = format!(
        "{:?} aa={} tc={} rd={} ra={} op={:?} edns={:?}",
        reply.metadata.response_code,
        reply.metadata.authoritative,
        reply.metadata.truncation,
        reply.metadata.recursion_desired,
        reply.metadata.recursion_available,
        reply.metadata.op_code,
        reply
            .edns
            .as_ref()
            .map(|e| (e.max_payload(), e.flags().dnssec_ok)),
    );
    let questions = reply.queries.iter().map(ToString::to_string).collect();
    // Owner names compared without regard to case (RFC 4343): the fast
    // path echoes the question's case, the general path the zone's.
    let set = |records: &[hickory_proto::rr::Record]| {
        let mut lines: Vec<String> = records
            .iter()
            .map(|r| r.to_string().to_ascii_lowercase())
            .collect();
        lines.sort();
        lines
    };
    (
        header,
        questions,
        [
            set(&reply.answers),
            set(&reply.authorities),
            set(&reply.additionals),
        ],
    )
}

/// A DNS query over UDP: any bytes get a well-formed reply that fits, or
/// none; when the fast path answers, the general path answers the same.
///
/// # Panics
/// When a reply does not decode or fit, or the two paths disagree.
pub fn query(data: &[u8]) {
    if data.len() > 65_535 {
        return;
    }
    let fixture = query_fixture();
    let mut fast = FastPath::new(1232, 1 << 20);
    let mut fast_reply = Vec::new();
    let answered = fast.answer(&fixture.view, data, false, &mut fast_reply);
    let src = SocketAddr::from((Ipv4Addr::LOCALHOST, 53_000));
    let general = fixture.runtime.block_on(fixture.handler.answer_raw(
        data.to_vec(),
        src,
        Protocol::Udp,
    ));
    if let Some(reply) = &general {
        assert!(
            reply.len() <= 1232 || reply.len() <= 512,
            "a UDP reply fits"
        );
        Message::from_vec(reply).expect("the general path's reply decodes");
    }
    if !answered {
        return;
    }
    assert!(fast_reply.len() <= 1232, "a UDP reply fits");
    let fast_message = Message::from_vec(&fast_reply).expect("the fast path's reply decodes");
    let general = general.expect("the general path answers what the fast path answers");
    let general_message = Message::from_vec(&general).expect("decodes");
    assert_eq!(fast_message.metadata.id, general_message.metadata.id);
    assert_eq!(
        comparable(&fast_message),
        comparable(&general_message),
        "the fast and general paths agree"
    );
}

/// A DNS UPDATE message, planned against the query target's zone (the
/// example fragments and live services): whatever the bytes, planning
/// returns a plan or an rcode, and every instance a plan registers is one
/// a heartbeat could announce (it encodes to a datagram that decodes to
/// the same announcement).
///
/// # Panics
/// When a planned announcement does not round-trip through the wire format.
pub fn update(data: &[u8]) {
    let fixture = query_fixture();
    let Ok(message) = Message::from_vec(data) else {
        return;
    };
    let Ok(changes) = crate::update::plan::plan(&message, &fixture.view, &fixture.registry, 60)
    else {
        return;
    };
    for change in changes {
        if change.announcement.state == crate::registry::announcement::State::Down {
            continue;
        }
        let again = wire::decode(wire::encode(&change.announcement).as_bytes())
            .expect("a planned instance encodes to a datagram that decodes");
        assert_eq!(again, change.announcement, "planned instances round-trip");
    }
}
