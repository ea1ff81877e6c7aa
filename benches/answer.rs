//! Criterion micro-benchmarks of the two hot paths, so regressions show:
//! answering from a view (`resolve`, rotation included) and decoding a
//! heartbeat datagram. Run with `cargo bench --bench answer`.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use beacon::answer::resolve;
use beacon::config::{ServeConfig, parse_domain};
use beacon::intake::wire::Heartbeat;
use beacon::registry::Registry;
use beacon::view::{StaticZone, View};
use criterion::{Criterion, criterion_group, criterion_main};
use hickory_proto::rr::{LowerName, Name, RecordType};
use tokio::time::Instant;

/// 200 services × 3 instances, as in the load benchmark.
fn view() -> View {
    let mut config = ServeConfig::new(parse_domain("svc.internal").expect("zone"));
    config.ns_addrs.push(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let mut registry = Registry::new(100_000, vec![]);
    let now = Instant::now();
    for s in 0..200u32 {
        for i in 0..3u32 {
            let mut hb = Heartbeat::new(&format!("svc{s}"), &format!("i{i}"), 8080);
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
    View::build(&config, 1, &registry, Arc::new(StaticZone::default()))
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
        b.iter(|| black_box(resolve(&view, black_box(&a), RecordType::A).answers.len()))
    });
    c.bench_function("resolve SRV (3 instances + glue)", |b| {
        b.iter(|| {
            black_box(
                resolve(&view, black_box(&srv), RecordType::SRV)
                    .answers
                    .len(),
            )
        })
    });
    c.bench_function("resolve NXDOMAIN", |b| {
        b.iter(|| black_box(resolve(&view, black_box(&missing), RecordType::A).rcode))
    });
}

fn decoding(c: &mut Criterion) {
    let datagram = b"beacon/1 service=web instance=web-1 port=8080 addr=10.0.0.1 ttl=15 weight=1 meta.version=1.4.2\n";
    c.bench_function("decode heartbeat", |b| {
        b.iter(|| black_box(Heartbeat::decode(black_box(datagram)).is_ok()))
    });
}

criterion_group!(benches, answering, decoding);
criterion_main!(benches);
