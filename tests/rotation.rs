//! Load spreading seen from a client: round-robin fairness with equal
//! weights, RFC 2782 proportions with unequal ones, priorities first.

mod common;

use std::collections::HashMap;

use common::TestServer;
use hickory_proto::rr::{RData, RecordType};

fn first_rdata(server: &TestServer, name: &str, rtype: RecordType) -> String {
    let reply = server.query(name, rtype);
    match reply.answers.first().map(|r| &r.data) {
        Some(RData::SRV(srv)) => srv.target.to_string(),
        Some(data) => data.to_string(),
        None => panic!("no answer for {name} {rtype}"),
    }
}

fn count_first(
    server: &TestServer,
    name: &str,
    rtype: RecordType,
    queries: usize,
) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for _ in 0..queries {
        *counts.entry(first_rdata(server, name, rtype)).or_default() += 1;
    }
    counts
}

#[test]
fn equal_weights_rotate_so_every_instance_leads_equally_often() {
    let server = TestServer::start(&[]);
    for i in 1..=4 {
        server.beat(&format!(
            "beacon/1 service=web instance=w{i} port=80 addr=10.0.0.{i}"
        ));
        server.beat(&format!(
            "beacon/1 service=web instance=v{i} port=80 addr=2001:db8::{i}"
        ));
    }
    server.await_reply("web.svc.internal.", RecordType::A, |m| m.answers.len() == 4);
    server.await_reply("web.svc.internal.", RecordType::AAAA, |m| {
        m.answers.len() == 4
    });
    server.await_reply("_web._tcp.svc.internal.", RecordType::SRV, |m| {
        m.answers.len() == 8
    });

    for (rtype, members) in [
        (RecordType::A, 4),
        (RecordType::AAAA, 4),
        (RecordType::SRV, 8),
    ] {
        let name = if rtype == RecordType::SRV {
            "_web._tcp.svc.internal."
        } else {
            "web.svc.internal."
        };
        let counts = count_first(&server, name, rtype, members * 50);
        assert_eq!(counts.len(), members, "{rtype}: {counts:?}");
        assert!(counts.values().all(|&n| n == 50), "{rtype}: {counts:?}");
    }

    // Successive answers are rotations of one another: each starts one
    // member further on and keeps the cyclic order.
    let a = server.query("web.svc.internal.", RecordType::A);
    let b = server.query("web.svc.internal.", RecordType::A);
    let a: Vec<String> = a.answers.iter().map(|r| r.data.to_string()).collect();
    let b: Vec<String> = b.answers.iter().map(|r| r.data.to_string()).collect();
    let mut rotated = a.clone();
    rotated.rotate_left(1);
    assert_eq!(b, rotated);
}

#[test]
fn unequal_weights_lead_in_proportion_to_weight() {
    let server = TestServer::start(&[]);
    server.beat("beacon/1 service=api instance=light port=80 addr=10.0.0.1 weight=1");
    server.beat("beacon/1 service=api instance=heavy port=80 addr=10.0.0.2 weight=3");
    server.await_reply("_api._tcp.svc.internal.", RecordType::SRV, |m| {
        m.answers.len() == 2
    });

    let queries = 2000;
    // Expected share 0.75; the binomial standard deviation is about 0.0097,
    // so ±0.05 is over five deviations: a real failure, not bad luck.
    for (name, rtype, heavy) in [
        ("api.svc.internal.", RecordType::A, "10.0.0.2"),
        (
            "_api._tcp.svc.internal.",
            RecordType::SRV,
            "heavy.api.svc.internal.",
        ),
    ] {
        let counts = count_first(&server, name, rtype, queries);
        let share = counts.get(heavy).copied().unwrap_or(0) as f64 / queries as f64;
        assert!(
            (share - 0.75).abs() < 0.05,
            "{rtype}: heavy led {share:.3} of answers: {counts:?}"
        );
    }

    // Every answer still lists both instances.
    let srv = server.query("_api._tcp.svc.internal.", RecordType::SRV);
    assert_eq!(srv.answers.len(), 2);
}

#[test]
fn lower_priority_numbers_always_come_first() {
    let server = TestServer::start(&[]);
    server.beat("beacon/1 service=db instance=primary port=5432 addr=10.0.0.1 priority=0");
    server.beat("beacon/1 service=db instance=spare1 port=5432 addr=10.0.0.2 priority=10");
    server.beat("beacon/1 service=db instance=spare2 port=5432 addr=10.0.0.3 priority=10");
    server.await_reply("_db._tcp.svc.internal.", RecordType::SRV, |m| {
        m.answers.len() == 3
    });
    let mut second = HashMap::new();
    for _ in 0..40 {
        let reply = server.query("_db._tcp.svc.internal.", RecordType::SRV);
        let targets: Vec<String> = reply
            .answers
            .iter()
            .map(|r| match &r.data {
                RData::SRV(srv) => srv.target.to_string(),
                other => other.to_string(),
            })
            .collect();
        assert_eq!(targets[0], "primary.db.svc.internal.");
        *second.entry(targets[1].clone()).or_insert(0) += 1;
        assert_eq!(
            first_rdata(&server, "db.svc.internal.", RecordType::A),
            "10.0.0.1"
        );
    }
    // The equal-weight spares take turns behind the primary.
    assert_eq!(
        second.values().copied().collect::<Vec<_>>(),
        [20, 20],
        "{second:?}"
    );
}
