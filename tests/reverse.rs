//! Reverse lookups: PTR for live instances' addresses in the reverse zones
//! the server is told to serve.

mod common;

use common::{TestServer, assert_status, lines, rdatas};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

fn server() -> TestServer {
    let server = TestServer::start(&[
        "--reverse-zone",
        "10.in-addr.arpa",
        "--reverse-zone",
        "8.b.d.0.1.0.0.2.ip6.arpa",
    ]);
    server.beat("beacon/1 service=web instance=w1 port=80 addr=10.0.0.1");
    server.beat("beacon/1 service=api instance=a1 port=80 addr=10.0.0.1");
    server.beat("beacon/1 service=web instance=w2 port=80 addr=2001:db8::2");
    server.await_reply("1.0.0.10.in-addr.arpa.", RecordType::PTR, |m| {
        m.answers.len() == 2
    });
    server
}

#[test]
fn ptr_names_the_instances_on_an_address() {
    let server = server();
    let v4 = server.query("1.0.0.10.in-addr.arpa.", RecordType::PTR);
    assert_status(&v4, ResponseCode::NoError, true);
    let mut names = rdatas(&v4.answers);
    names.sort();
    assert_eq!(names, ["a1.api.svc.internal.", "w1.web.svc.internal."]);
    let v6 = server.query(
        "2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.",
        RecordType::PTR,
    );
    assert_eq!(rdatas(&v6.answers), ["w2.web.svc.internal."]);
}

#[test]
fn reverse_zones_have_their_own_soa_and_negative_answers() {
    let server = server();
    let soa = server.query("10.in-addr.arpa.", RecordType::SOA);
    assert!(lines(&soa.answers)[0].starts_with("10.in-addr.arpa. 60 IN SOA ns.svc.internal. "));
    let ns = server.query("10.in-addr.arpa.", RecordType::NS);
    assert_eq!(rdatas(&ns.answers), ["ns.svc.internal."]);
    let nx = server.query("9.0.0.10.in-addr.arpa.", RecordType::PTR);
    assert_status(&nx, ResponseCode::NXDomain, true);
    assert_eq!(nx.authorities[0].name.to_string(), "10.in-addr.arpa.");
    // Empty non-terminal above a PTR: NODATA.
    let ent = server.query("0.0.10.in-addr.arpa.", RecordType::PTR);
    assert_status(&ent, ResponseCode::NoError, true);
    assert!(ent.answers.is_empty());
    // Not configured: refused.
    let other = server.query("1.0.168.192.in-addr.arpa.", RecordType::PTR);
    assert_status(&other, ResponseCode::Refused, false);
}

#[test]
fn ptr_records_leave_with_their_instance() {
    let server = server();
    server.beat("beacon/1 service=api instance=a1 port=80 state=down");
    let reply = server.await_reply("1.0.0.10.in-addr.arpa.", RecordType::PTR, |m| {
        m.answers.len() == 1
    });
    assert_eq!(rdatas(&reply.answers), ["w1.web.svc.internal."]);
}

#[test]
fn ptr_records_follow_an_address_change() {
    let server = server();
    server.beat("beacon/1 service=web instance=w1 port=80 addr=10.0.1.7");
    let moved = server.await_reply("7.1.0.10.in-addr.arpa.", RecordType::PTR, |m| {
        m.answers.len() == 1
    });
    assert_eq!(rdatas(&moved.answers), ["w1.web.svc.internal."]);
    let old = server.query("1.0.0.10.in-addr.arpa.", RecordType::PTR);
    assert_eq!(rdatas(&old.answers), ["a1.api.svc.internal."]);
    // The new address's parent exists now (NODATA); a sibling does not.
    let ent = server.query("1.0.10.in-addr.arpa.", RecordType::PTR);
    assert_status(&ent, ResponseCode::NoError, true);
    assert!(ent.answers.is_empty());
    let sibling = server.query("2.0.10.in-addr.arpa.", RecordType::PTR);
    assert_status(&sibling, ResponseCode::NXDomain, true);
    // A name that is not how an address is written: NXDOMAIN.
    let odd = server.query("07.1.0.10.in-addr.arpa.", RecordType::PTR);
    assert_status(&odd, ResponseCode::NXDomain, true);
}
