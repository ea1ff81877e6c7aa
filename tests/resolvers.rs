//! Caching resolvers in front of beacon, configured with the README's own
//! snippets: Unbound with a stub-zone, dnsmasq with a per-domain server.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{TestServer, free_port, have_tool, query_udp, question, rdatas, wait_until};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

const README: &str = include_str!("../README.md");

/// The README's fenced block of `lang`, with the quick-start port replaced.
fn snippet(lang: &str, dns: SocketAddr) -> String {
    let start = README
        .find(&format!("```{lang}\n"))
        .unwrap_or_else(|| panic!("no {lang} block"))
        + lang.len()
        + 4;
    let end = start + README[start..].find("```").expect("closing fence");
    README[start..end].replace("5300", &dns.port().to_string())
}

/// Kills the resolver on drop.
struct Resolver(Child);

impl Drop for Resolver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn beacon_with_web() -> TestServer {
    let server = TestServer::start(&[]);
    server.beat("beacon/1 service=web instance=w1 port=8080 addr=10.0.0.1");
    server.await_reply("web.svc.internal.", RecordType::A, |m| {
        !m.answers.is_empty()
    });
    server
}

/// A query with RD set, as stub resolvers send to a caching resolver.
fn recursive(name: &str, rtype: RecordType) -> hickory_proto::op::Message {
    let mut q = question(name, rtype, true);
    q.metadata.recursion_desired = true;
    q
}

fn check_through(resolver: SocketAddr) {
    let ready = wait_until(Duration::from_secs(10), || {
        let socket = UdpSocket::bind("127.0.0.1:0").ok()?;
        socket
            .set_read_timeout(Some(Duration::from_millis(300)))
            .ok()?;
        let q = recursive("web.svc.internal.", RecordType::A);
        socket.send_to(&q.to_vec().ok()?, resolver).ok()?;
        let mut buf = [0u8; 1500];
        socket.recv_from(&mut buf).ok().map(|_| ())
    });
    assert!(ready.is_some(), "resolver at {resolver} never answered");
    let a = query_udp(resolver, &recursive("web.svc.internal.", RecordType::A));
    assert_eq!(rdatas(&a.answers), ["10.0.0.1"], "{a:?}");
    let srv = query_udp(
        resolver,
        &recursive("_web._tcp.svc.internal.", RecordType::SRV),
    );
    assert_eq!(rdatas(&srv.answers), ["0 1 8080 w1.web.svc.internal."]);
    let nx = query_udp(resolver, &recursive("nope.svc.internal.", RecordType::A));
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
}

#[test]
fn unbound_with_the_readme_stub_zone() {
    if !have_tool("unbound") {
        return;
    }
    let server = beacon_with_web();
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let config = format!(
        "server:\n    interface: 127.0.0.1@{port}\n    port: {port}\n    do-daemonize: no\n    use-syslog: no\n    logfile: \"\"\n    username: \"\"\n    chroot: \"\"\n    directory: \"{dir}\"\n    pidfile: \"\"\n    access-control: 127.0.0.0/8 allow\n{readme}",
        dir = dir.path().display(),
        readme = snippet("unbound", server.dns)
    );
    let path = dir.path().join("unbound.conf");
    std::fs::write(&path, config).expect("write");
    let check = Command::new("unbound-checkconf").arg(&path).output();
    if let Ok(out) = check {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let child = Command::new("unbound")
        .args(["-d", "-c"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start unbound");
    let _unbound = Resolver(child);
    check_through(SocketAddr::from(([127, 0, 0, 1], port)));
}

#[test]
fn dnsmasq_with_the_readme_server_line() {
    if !have_tool("dnsmasq") {
        return;
    }
    let server = beacon_with_web();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("dnsmasq.conf");
    std::fs::write(&path, snippet("dnsmasq", server.dns)).expect("write");
    let port = free_port();
    let child = Command::new("dnsmasq")
        .arg("--no-daemon")
        .arg(format!("--port={port}"))
        .args([
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            "--no-resolv",
            "--no-hosts",
            "--user=root",
        ])
        .arg(format!("--conf-file={}", path.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start dnsmasq");
    let _dnsmasq = Resolver(child);
    check_through(SocketAddr::from(([127, 0, 0, 1], port)));
}

/// HAProxy's servers in backend `web`: (fqdn, address, port) of each slot
/// that holds a resolved server, read through its runtime API.
fn haproxy_servers(socket: &std::path::Path) -> Vec<(String, String, String)> {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::os::unix::net::UnixStream::connect(socket) else {
        return Vec::new();
    };
    let _ = stream.write_all(b"show servers state web\n");
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    text.lines()
        .filter(|line| line.starts_with(|c: char| c.is_ascii_digit()))
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // srv_addr is field 5, srv_fqdn 18, srv_port 19 (1-based).
            let (addr, fqdn, port) = (fields.get(4)?, fields.get(17)?, fields.get(18)?);
            (*addr != "0.0.0.0" && *fqdn != "-")
                .then(|| (fqdn.to_string(), addr.to_string(), port.to_string()))
        })
        .collect()
}

/// HAProxy's `server-template` following an SRV name, with the README's
/// `resolvers` block, for a service far larger than one UDP reply (HAProxy
/// never retries a truncated UDP answer over TCP: the README's block asks
/// over TCP).
#[test]
fn haproxy_follows_a_service_larger_than_one_udp_reply() {
    if !have_tool("haproxy") {
        return;
    }
    let server = TestServer::start(&[]);
    let beats: Vec<String> = (1..=100)
        .map(|i| {
            format!(
                "beacon/1 service=web instance=w{i} port={} ttl=300 addr=10.0.{}.{}",
                8000 + i,
                i / 256,
                i % 256
            )
        })
        .collect();
    server.beat_until_all("web.svc.internal.", &beats);
    let udp = server.query("_web._tcp.svc.internal.", RecordType::SRV);
    assert!(
        udp.metadata.truncation,
        "the service must not fit one UDP reply"
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let socket = dir.path().join("admin.sock");
    let config = format!(
        "global\n    stats socket {} mode 600 level admin\n\ndefaults\n    mode tcp\n    timeout connect 1s\n    timeout client 10s\n    timeout server 10s\n\n{}",
        socket.display(),
        snippet("haproxy", server.dns)
    );
    let path = dir.path().join("haproxy.cfg");
    std::fs::write(&path, config).expect("write");
    let check = Command::new("haproxy")
        .arg("-c")
        .arg("-f")
        .arg(&path)
        .output()
        .expect("haproxy -c");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let child = Command::new("haproxy")
        .arg("-db")
        .arg("-f")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start haproxy");
    let _haproxy = Resolver(child);

    let all = wait_until(Duration::from_secs(15), || {
        let servers = haproxy_servers(&socket);
        (servers.len() == 100).then_some(servers)
    })
    .unwrap_or_else(|| panic!("HAProxy resolved {:?}", haproxy_servers(&socket)));
    for (fqdn, addr, port) in &all {
        let i: u16 = fqdn
            .strip_prefix('w')
            .and_then(|rest| rest.split('.').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("odd name {fqdn}"));
        assert_eq!(port, &(8000 + i).to_string(), "{fqdn}");
        assert_eq!(addr, &format!("10.0.{}.{}", i / 256, i % 256), "{fqdn}");
    }
    // An instance that leaves leaves HAProxy too.
    server.beat("beacon/1 service=web instance=w7 port=8007 state=down");
    let left = wait_until(Duration::from_secs(15), || {
        let servers = haproxy_servers(&socket);
        (servers.len() == 99 && servers.iter().all(|(fqdn, _, _)| !fqdn.starts_with("w7.")))
            .then_some(())
    });
    assert!(
        left.is_some(),
        "HAProxy kept w7: {:?}",
        haproxy_servers(&socket)
    );
}
