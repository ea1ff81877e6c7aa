//! Criterion micro-benchmarks of the hot paths, so regressions show:
//! answering from a view (`resolve`, rotation included), the fast path's
//! reply from pre-encoded records (query bytes in, reply bytes out), a view
//! rebuild after one service changes, decoding a heartbeat datagram, and
//! ordering large weighted sets (5,000 and 50,000 members, all of them or
//! the first 20 an answer lists).
//! Run with `cargo bench --bench answer`.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use std::collections::HashSet;

use beacon::answer::fast::FastPath;
use beacon::answer::resolve;
use beacon::answer::rotate::{Ranked, order_by};
use beacon::config::{ServeConfig, parse_domain};
use beacon::intake::wire;
use beacon::registry::Registry;
use beacon::registry::announcement::Announcement;
use beacon::view::publish::Publisher;
use beacon::view::{Policy, StaticZone, View};
use criterion::{Criterion, criterion_group, criterion_main};
use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{LowerName, Name, RecordType};
use tokio::time::Instant;

/// 200 services × 3 instances, as in the load benchmark.
fn view() -> View {
    let mut config = ServeConfig::new(parse_domain("svc.internal").expect("zone"));
    config.ns_addrs.push(IpAddr::V4(Ipv4Addr::LOCALHOST));
    View::build(&config, 1, &registry(), Arc::new(StaticZone::default()))
}

fn registry() -> Registry {
    let mut registry = Registry::new(100_000, vec![]);
    let now = Instant::now();
    for s in 0..200u32 {
        for i in 0..3u32 {
            let mut hb = Announcement::new(&format!("svc{s}"), &format!("i{i}"), 8080);
            hb.addr = Some(IpAddr::V4(Ipv4Addr::new(
                10,
                0,
                u8::try_from(s % 256).unwrap_or(0),
                u8::try_from(i).unwrap_or(0),
            )));
            let addr = hb.addr.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
            registry.apply(hb, addr, now);
        }
    }
    registry
}

fn name(text: &str) -> LowerName {
    LowerName::from(Name::from_ascii(text).expect("name"))
}

fn answering(c: &mut Criterion) {
    let view = view();
    let a = name("svc42.svc.internal.");
    let srv = name("_svc42._tcp.svc.internal.");
    let missing = name("nothing-here.svc.internal.");
    c.bench_function("resolve A (3 instances, rotated)", |b| {
        b.iter(|| black_box(resolve(&view, black_box(&a), RecordType::A).answers.len()));
    });
    c.bench_function("resolve SRV (3 instances + glue)", |b| {
        b.iter(|| {
            black_box(
                resolve(&view, black_box(&srv), RecordType::SRV)
                    .answers
                    .len(),
            )
        });
    });
    c.bench_function("resolve NXDOMAIN", |b| {
        b.iter(|| black_box(resolve(&view, black_box(&missing), RecordType::A).rcode));
    });
}

fn fast_path(c: &mut Criterion) {
    let view = Arc::new(view());
    let mut fast = FastPath::new(1232, 32 << 20);
    let mut reply = Vec::with_capacity(512);
    for (label, qname, rtype) in [
        (
            "fast path A (3 instances, rotated)",
            "svc42.svc.internal.",
            RecordType::A,
        ),
        (
            "fast path SRV (3 instances + glue)",
            "_svc42._tcp.svc.internal.",
            RecordType::SRV,
        ),
        (
            "fast path NXDOMAIN",
            "nothing-here.svc.internal.",
            RecordType::A,
        ),
    ] {
        let mut query = Message::new(7, MessageType::Query, OpCode::Query);
        query.add_query(Query::query(Name::from_ascii(qname).expect("name"), rtype));
        let query = query.to_vec().expect("encodes");
        assert!(
            fast.answer(&view, &query, false, &mut reply),
            "{label} takes the fast path"
        );
        c.bench_function(label, |b| {
            b.iter(|| black_box(fast.answer(&view, black_box(&query), false, &mut reply)));
        });
    }
}

fn rebuilding(c: &mut Criterion) {
    let mut config = ServeConfig::new(parse_domain("svc.internal").expect("zone"));
    config.ns_addrs.push(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let config = Arc::new(config);
    let registry = registry();
    let mut publisher = Publisher::new(config, &registry, Arc::new(StaticZone::default()));
    let changed: HashSet<String> = ["svc42".to_string()].into();
    c.bench_function("publish after one service changed (200 × 3)", |b| {
        b.iter(|| black_box(publisher.publish(&registry, &changed)));
    });
}

fn decoding(c: &mut Criterion) {
    let datagram = b"beacon/1 service=web instance=web-1 port=8080 addr=10.0.0.1 ttl=15 weight=1 meta.version=1.4.2\n";
    c.bench_function("decode heartbeat", |b| {
        b.iter(|| black_box(wire::decode(black_box(datagram)).is_ok()));
    });
    let key = beacon::keys::Key::new("bench", beacon::keys::Algorithm::HmacSha256, &[42; 32])
        .expect("key");
    let policy = beacon::auth::Policy::new(
        beacon::keys::Keyring::from_keys([key]),
        Vec::new(),
        None,
        Duration::from_secs(30),
    )
    .expect("policy");
    let hb = wire::decode(datagram).expect("valid");
    let signer = beacon::keys::Key::new("bench", beacon::keys::Algorithm::HmacSha256, &[42; 32])
        .expect("key");
    let now = 1_764_547_200_000;
    let signed = wire::encode_signed(&hb, &signer, now);
    c.bench_function("decode and verify a signed heartbeat", |b| {
        b.iter(|| {
            let decoded = wire::decode_signed(black_box(signed.as_bytes())).expect("decodes");
            let claim = decoded.signature.as_ref().map(wire::Signature::claim);
            black_box(policy.verify(claim, now).is_ok())
        });
    });
    c.bench_function("hmac-sha256 of a heartbeat", |b| {
        b.iter(|| black_box(signer.sign(black_box(signed.as_bytes()))));
    });
}

/// A member for the ordering benchmark: a priority and a weight.
struct Weighted(u16, u16);

impl Ranked for Weighted {
    fn priority(&self) -> u16 {
        self.0
    }
    fn weight(&self) -> u16 {
        self.1
    }
}

fn ordering(c: &mut Criterion) {
    for size in [5_000u16, 50_000] {
        // Two priorities, weights 1 to 100.
        let members: Vec<Weighted> = (0..size)
            .map(|i| Weighted(u16::from(i >= size / 2), i % 100 + 1))
            .collect();
        for (label, take) in [("all", usize::MAX), ("first 20", 20)] {
            c.bench_function(&format!("weighted order of {size} ({label})"), |b| {
                b.iter(|| black_box(order_by(&members, Policy::Weighted, 0, take).len()));
            });
        }
        c.bench_function(&format!("round-robin order of {size} (all)"), |b| {
            b.iter(|| black_box(order_by(&members, Policy::RoundRobin, 7, usize::MAX).len()));
        });
    }
}

criterion_group!(
    benches, answering, fast_path, rebuilding, decoding, ordering
);
criterion_main!(benches);
