//! Real clients other than our own: kdig over UDP and TCP, and the glibc stub
//! resolver (`getent`) inside a private network and mount namespace whose
//! resolv.conf points at beacon on port 53.

mod common;

use std::process::Command;

use common::{BEACON, TestServer, have_tool};
use hickory_proto::rr::RecordType;

fn output(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().expect("run");
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sorted_lines(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    lines.retain(|l| !l.is_empty());
    lines.sort();
    lines
}

#[test]
fn kdig_reads_a_aaaa_and_srv_over_udp_and_tcp() {
    if !have_tool("kdig") {
        return;
    }
    let server = TestServer::start(&[]);
    server.beat("beacon/1 service=web instance=a port=8080 addr=10.0.0.1");
    server.beat("beacon/1 service=web instance=b port=8080 addr=2001:db8::2");
    server.await_reply("_web._tcp.svc.internal.", RecordType::SRV, |m| {
        m.answers.len() == 2
    });
    let at = format!("@{}", server.dns.ip());
    let port = server.dns.port().to_string();
    for transport in ["+notcp", "+tcp"] {
        let kdig = |name: &str, rtype: &str| {
            output(
                "kdig",
                &[&at, "-p", &port, transport, "+short", name, rtype],
            )
        };
        assert_eq!(sorted_lines(&kdig("web.svc.internal", "A")), ["10.0.0.1"]);
        assert_eq!(
            sorted_lines(&kdig("web.svc.internal", "AAAA")),
            ["2001:db8::2"]
        );
        assert_eq!(
            sorted_lines(&kdig("_web._tcp.svc.internal", "SRV")),
            [
                "0 1 8080 a.web.svc.internal.",
                "0 1 8080 b.web.svc.internal."
            ]
        );
        // The full reply parses cleanly: flags and the additional section.
        let full = output(
            "kdig",
            &[&at, "-p", &port, transport, "_web._tcp.svc.internal", "SRV"],
        );
        assert!(full.contains("status: NOERROR"), "{full}");
        assert!(full.contains("Flags: qr aa"), "{full}");
        assert!(
            full.contains("a.web.svc.internal.") && full.contains("10.0.0.1"),
            "{full}"
        );
        let nx = output(
            "kdig",
            &[&at, "-p", &port, transport, "nope.svc.internal", "A"],
        );
        assert!(nx.contains("status: NXDOMAIN"), "{nx}");
    }
}

/// The script run inside the namespace: loopback up, a private resolv.conf
/// and nsswitch.conf, beacon on 127.0.0.1:53, then getent.
const GLIBC_SCRIPT: &str = r#"
set -u
ip link set lo up
# getaddrinfo's AI_ADDRCONFIG skips a family the host has no non-loopback
# address of; give the namespace one of each, as a real host has.
ip addr add 192.0.2.1/32 dev lo
ip addr add 2001:db8:ffff::1/128 dev lo
tmp=$(mktemp -d)
echo "nameserver 127.0.0.1" > "$tmp/resolv.conf"
echo "hosts: files dns" > "$tmp/nsswitch.conf"
mount --bind "$tmp/resolv.conf" /etc/resolv.conf
mount --bind "$tmp/nsswitch.conf" /etc/nsswitch.conf
# A second server for another zone, reached only through forwarding.
"$BEACON" serve --zone other.internal --dns 127.0.0.2:53 --heartbeat 127.0.0.2:5301 --http off --zones /nonexistent --state-dir "$tmp/state2" 2>"$tmp/log2" &
upstream=$!
"$BEACON" serve --dns 127.0.0.1:53 --heartbeat 127.0.0.1:5301 --reverse-zone 10.in-addr.arpa --forward 127.0.0.2:53 --state-dir "$tmp/state" 2>"$tmp/log" &
server=$!
for _ in $(seq 100); do grep -q "serving the zone fragments" "$tmp/log" && grep -q "serving the zone fragments" "$tmp/log2" && break; sleep 0.05; done
"$BEACON" beat --once --service db --port 5432 --instance d1 --addr 10.9.0.1 --server 127.0.0.2:5301 2>/dev/null
"$BEACON" beat --once --service web --port 80 --instance a --addr 10.0.0.1 2>/dev/null
"$BEACON" beat --once --service web --port 80 --instance b --addr 2001:db8::2 2>/dev/null
sleep 0.2
echo "== hosts"; getent hosts web.svc.internal
echo "== ahosts"; getent ahosts web.svc.internal
echo "== ahostsv4"; getent ahostsv4 web.svc.internal
echo "== instance"; getent hosts a.web.svc.internal
echo "== reverse"; getent hosts 10.0.0.1
echo "== forwarded"; getent hosts db.other.internal
echo "== missing"; getent hosts nope.svc.internal; echo "exit=$?"
"$BEACON" beat --once --state down --service web --port 80 --instance a 2>/dev/null
sleep 0.2
echo "== after-down"; getent ahostsv4 web.svc.internal; echo "exit=$?"
kill "$server" "$upstream"; wait "$server" "$upstream"
echo "== end"
"#;

fn section<'a>(out: &'a str, name: &str) -> Vec<&'a str> {
    out.split(&format!("== {name}\n"))
        .nth(1)
        .unwrap_or_else(|| panic!("no section {name} in:\n{out}"))
        .split("== ")
        .next()
        .unwrap_or_default()
        .lines()
        .collect()
}

#[test]
fn glibc_resolver_finds_services_through_resolv_conf() {
    if !(have_tool("unshare") && have_tool("ip") && have_tool("getent")) {
        return;
    }
    let out = Command::new("unshare")
        .args(["--mount", "--net", "--fork", "bash", "-c", GLIBC_SCRIPT])
        .env("BEACON", BEACON)
        .output()
        .expect("run unshare");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() || !stdout.contains("== end") {
        let stderr = String::from_utf8_lossy(&out.stderr);
        // Without the privilege to make namespaces this cannot run at all.
        assert!(
            std::env::var_os("CI").is_none(),
            "namespace test failed:\n{stdout}\n{stderr}"
        );
        eprintln!("skipping: cannot create namespaces here: {stderr}");
        return;
    }
    let hosts = section(&stdout, "hosts");
    assert_eq!(hosts.len(), 1, "{stdout}");
    assert!(hosts[0].contains("web.svc.internal"), "{stdout}");
    let ahosts = section(&stdout, "ahosts").join("\n");
    assert!(
        ahosts.contains("10.0.0.1") && ahosts.contains("2001:db8::2"),
        "{stdout}"
    );
    assert_eq!(
        sorted_lines(&section(&stdout, "ahostsv4").join("\n")),
        [
            "10.0.0.1 DGRAM",
            "10.0.0.1 RAW",
            "10.0.0.1 STREAM web.svc.internal"
        ]
    );
    assert_eq!(
        sorted_lines(&section(&stdout, "instance").join("\n")),
        ["10.0.0.1 a.web.svc.internal"]
    );
    assert_eq!(
        sorted_lines(&section(&stdout, "reverse").join("\n")),
        ["10.0.0.1 a.web.svc.internal"]
    );
    assert_eq!(
        sorted_lines(&section(&stdout, "forwarded").join("\n")),
        ["10.9.0.1 db.other.internal"]
    );
    assert_eq!(section(&stdout, "missing"), ["exit=2"], "{stdout}");
    assert_eq!(section(&stdout, "after-down"), ["exit=2"], "{stdout}");
}

/// dig and kdig read every record type beacon serves, over UDP and TCP.
#[test]
fn dig_and_kdig_read_every_served_type_over_udp_and_tcp() {
    if !(have_tool("kdig") && have_tool("dig")) {
        return;
    }
    let zones = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        zones.path().join("types.zone"),
        "$TTL 60\n\
         mail MX 10 mx1\n\
         mx1 A 10.3.0.1\n\
         @ CAA 0 issue \"example.net\"\n\
         txt TXT \"a=1\" \"b=2\"\n\
         alias CNAME web\n\
         ptr PTR web.svc.internal.\n\
         lab NS ns1.lab\n\
         ns1.lab A 10.5.0.53\n",
    )
    .expect("write");
    let dir = zones.path().to_str().expect("path").to_string();
    let server = TestServer::start(&["--zones", &dir, "--reverse-zone", "10.in-addr.arpa"]);
    server.beat("beacon/1 service=web instance=a port=8080 addr=10.0.0.1 meta.k=v");
    server.beat("beacon/1 service=web instance=b port=8080 addr=2001:db8::2");
    server.await_reply("_web._tcp.svc.internal.", RecordType::PTR, |m| {
        m.answers.len() == 2
    });
    let at = format!("@{}", server.dns.ip());
    let port = server.dns.port().to_string();
    let cases: &[(&str, &str, &str)] = &[
        ("web.svc.internal", "A", "10.0.0.1"),
        ("web.svc.internal", "AAAA", "2001:db8::2"),
        (
            "_web._tcp.svc.internal",
            "SRV",
            "0 1 8080 a.web.svc.internal.",
        ),
        ("_web._tcp.svc.internal", "PTR", "a._web._tcp.svc.internal."),
        ("a._web._tcp.svc.internal", "TXT", "\"k=v\""),
        (
            "svc.internal",
            "SOA",
            "ns.svc.internal. hostmaster.svc.internal.",
        ),
        ("svc.internal", "NS", "ns.svc.internal."),
        ("svc.internal", "CAA", "0 issue \"example.net\""),
        ("mail.svc.internal", "MX", "10 mx1.svc.internal."),
        ("txt.svc.internal", "TXT", "\"a=1\" \"b=2\""),
        ("alias.svc.internal", "CNAME", "web.svc.internal."),
        ("ptr.svc.internal", "PTR", "web.svc.internal."),
        ("1.0.0.10.in-addr.arpa", "PTR", "a.web.svc.internal."),
    ];
    for transport in ["+notcp", "+tcp"] {
        for tool in ["kdig", "dig"] {
            for (name, rtype, expected) in cases {
                let out = Command::new(tool)
                    .args([&at, "-p", &port, transport, *name, *rtype])
                    .output()
                    .expect("run");
                let text = String::from_utf8_lossy(&out.stdout);
                assert!(
                    out.status.success(),
                    "{tool} {name} {rtype} {transport}: {text}"
                );
                assert!(
                    text.contains("status: NOERROR"),
                    "{tool} {name} {rtype} {transport}: {text}"
                );
                assert!(
                    text.contains(expected),
                    "{tool} {name} {rtype} {transport}: {expected} not in {text}"
                );
                assert!(
                    !text.contains("WARNING: Message"),
                    "{tool} {name} {rtype} {transport}: {text}"
                );
                assert!(!text.contains(";; WARNING: malformed"), "{tool}: {text}");
            }
        }
        // A referral: no AA, the delegation in the authority section.
        let out = Command::new("kdig")
            .args([&at, "-p", &port, transport, "host.lab.svc.internal", "A"])
            .output()
            .expect("kdig");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("AUTHORITY SECTION") && text.contains("ns1.lab.svc.internal."),
            "{text}"
        );
        assert!(!text.contains("Flags: qr aa"), "{text}");
    }
}
