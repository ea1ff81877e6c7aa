//! DNS UPDATE through real clients: BIND's `nsupdate -k` with a key from
//! `beacon keygen`, Knot's `knsupdate -y`, dnspython building RFC 9665
//! (SRP) shaped updates with the update-lease option; each change then
//! read back with `dig`, the status API, `/metrics`, a zone transfer and
//! a restart. Refusals are checked rcode by rcode, all or nothing.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{TestServer, have_tool, python_with, readme_block, wait_until};

const BEACON: &str = env!("CARGO_BIN_EXE_beacon");

/// The secret of the test keys (32 bytes, base64).
const SECRET: &str = "c2VydmljZS1kaXNjb3Zlcnktc2hhcmVkLXNlY3JldCE=";

/// `dig +short` of `name` `rtype` at `server`, lines sorted.
fn dig(server: &TestServer, name: &str, rtype: &str) -> Vec<String> {
    let output = Command::new("dig")
        .args([
            "@127.0.0.1",
            "-p",
            &server.dns.port().to_string(),
            "+short",
            name,
            rtype,
        ])
        .output()
        .expect("dig");
    let mut lines: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

/// A BIND key file `name.key` in `dir` with [`SECRET`].
fn key_file(dir: &Path, name: &str) -> String {
    let path = dir.join(format!("{name}.key"));
    std::fs::write(
        &path,
        format!("key \"{name}\" {{ algorithm hmac-sha256; secret \"{SECRET}\"; }};\n"),
    )
    .expect("key file");
    path.display().to_string()
}

/// Runs `nsupdate` with `args` on `script`: exit status and stderr.
fn nsupdate(args: &[&str], script: &str) -> (bool, String) {
    run_with_stdin("nsupdate", args, script)
}

fn run_with_stdin(program: &str, args: &[&str], input: &str) -> (bool, String) {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    std::io::Write::write_all(child.stdin.as_mut().expect("stdin"), input.as_bytes())
        .expect("write");
    let output = child.wait_with_output().expect("wait");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr),
    )
}

/// `curl -s` of `path` on the server's HTTP endpoint.
/// (JSON comes without its whitespace, to match on.)
fn http_get(server: &TestServer, path: &str) -> String {
    let (_, body) = server.http_get(path);
    if body.trim_start().starts_with('{') {
        body.split_whitespace().collect()
    } else {
        body
    }
}

fn update_script(server: &TestServer, body: &str) -> String {
    format!(
        "server 127.0.0.1 {}\nzone svc.internal\n{body}\nsend\n",
        server.dns.port()
    )
}

#[test]
fn nsupdate_with_a_keygen_key_registers_changes_and_deletes() {
    if !have_tool("nsupdate") || !have_tool("dig") || !have_tool("curl") {
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    let key = dir.path().join("deploy.key");
    let made = Command::new(BEACON)
        .args(["keygen", "deploy"])
        .output()
        .expect("keygen");
    assert!(made.status.success());
    std::fs::write(&key, &made.stdout).expect("write key");
    let key = key.display().to_string();
    let server = TestServer::start(&["--keys", &key]);

    let add = update_script(
        &server,
        "update add web-9.web.svc.internal 60 A 10.0.0.9\n\
         update add _web._tcp.svc.internal 60 SRV 0 5 8080 web-9.web.svc.internal.\n\
         update add web-9.web.svc.internal 60 TXT \"version=1.4.2\" \"tags=canary,eu\"",
    );
    // nsupdate checks the reply's TSIG: success means it was signed right.
    let (ok, out) = nsupdate(&["-k", &key], &add);
    assert!(ok, "nsupdate failed: {out}\n{}", server.log());
    // Answerable as soon as nsupdate has its reply.
    assert_eq!(dig(&server, "web.svc.internal", "A"), ["10.0.0.9"]);
    assert_eq!(
        dig(&server, "_web._tcp.svc.internal", "SRV"),
        ["0 5 8080 web-9.web.svc.internal."]
    );
    assert_eq!(
        dig(&server, "_web._tcp.svc.internal", "PTR"),
        ["web-9._web._tcp.svc.internal."]
    );
    assert_eq!(
        dig(&server, "web-9._web._tcp.svc.internal", "TXT"),
        ["\"tags=canary,eu\" \"version=1.4.2\""]
    );
    assert_eq!(
        dig(&server, "canary.eu._tag.web.svc.internal", "A"),
        ["10.0.0.9"]
    );
    assert_eq!(
        dig(&server, "_canary._sub._web._tcp.svc.internal", "PTR"),
        ["web-9._web._tcp.svc.internal."]
    );
    server.wait_for_log("registered service=web instance=web-9");
    assert!(server.log().contains("key=deploy reason=\"dns update\""));

    // The status API and the metrics see it as they see a heartbeat's.
    let status = http_get(&server, "/v1/services/web");
    assert!(status.contains("\"id\":\"web-9\""), "{status}");
    assert!(status.contains("\"key\":\"deploy\""), "{status}");
    assert!(status.contains("\"tags\":[\"canary\",\"eu\"]"), "{status}");
    // Without the update-lease option: the default lease, an hour.
    let lease: f64 = status
        .split("\"lease_remaining_s\":")
        .nth(1)
        .and_then(|rest| rest.split([',', '}']).next())
        .and_then(|n| n.parse().ok())
        .expect("a lease in the status");
    assert!((3590.0..=3600.0).contains(&lease), "{status}");
    let metrics = http_get(&server, "/metrics");
    assert!(
        metrics.contains("beacon_updates_total{rcode=\"NOERROR\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("beacon_instances 1"), "{metrics}");

    // A port change, then a deletion of the name.
    let (ok, out) = nsupdate(
        &["-k", &key],
        &update_script(
            &server,
            "update delete _web._tcp.svc.internal SRV 0 5 8080 web-9.web.svc.internal.\n\
             update add _web._tcp.svc.internal 60 SRV 0 5 9090 web-9.web.svc.internal.",
        ),
    );
    assert!(ok, "{out}");
    assert_eq!(
        dig(&server, "_web._tcp.svc.internal", "SRV"),
        ["0 5 9090 web-9.web.svc.internal."]
    );
    let (ok, out) = nsupdate(
        &["-k", &key],
        &update_script(&server, "update delete web-9.web.svc.internal"),
    );
    assert!(ok, "{out}");
    assert!(dig(&server, "web.svc.internal", "A").is_empty());
    server.wait_for_log("deregistered service=web instance=web-9");

    // Unsigned, while keys are configured: REFUSED.
    let (ok, out) = nsupdate(
        &[],
        &update_script(
            &server,
            "update add web-1.web.svc.internal 60 A 10.0.0.1\n\
             update add _web._tcp.svc.internal 60 SRV 0 1 80 web-1.web.svc.internal.",
        ),
    );
    assert!(!ok && out.contains("REFUSED"), "{out}");
    // A wrong secret under the same name: NOTAUTH (BADSIG).
    let wrong = dir.path().join("wrong.key");
    std::fs::write(
        &wrong,
        "key \"deploy\" { algorithm hmac-sha256; secret \"d3Jvbmctc2VjcmV0LXdyb25nLXNlY3JldC13cm9uZyE=\"; };\n",
    )
    .expect("key");
    let (ok, out) = nsupdate(
        &["-k", &wrong.display().to_string()],
        &update_script(&server, "update delete web-1.web.svc.internal"),
    );
    assert!(!ok, "{out}");
    assert!(
        out.contains("NOTAUTH") || out.contains("BADSIG") || out.contains("tsig"),
        "{out}"
    );
    assert!(dig(&server, "web-1.web.svc.internal", "A").is_empty());
}

#[test]
fn knsupdate_with_the_same_secret_registers_and_removes_rrsets() {
    if !have_tool("knsupdate") || !have_tool("dig") {
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    let key = key_file(dir.path(), "ops");
    let server = TestServer::start(&["--keys", &key, "--auth", "optional"]);
    let port = server.dns.port();
    let secret = format!("hmac-sha256:ops:{SECRET}");
    let script = format!(
        "server 127.0.0.1 {port}\nzone svc.internal.\norigin svc.internal.\n\
         update add api-1.api 30 A 10.0.1.1\n\
         update add _api._udp 30 SRV 1 10 53 api-1.api\n\
         update add api-2.api 30 AAAA 2001:db8::2\n\
         update add _api._udp 30 SRV 1 10 53 api-2.api\n\
         send\nanswer\n"
    );
    let (ok, out) = run_with_stdin("knsupdate", &["-y", &secret], &script);
    assert!(ok, "knsupdate failed: {out}\n{}", server.log());
    assert!(out.contains("NOERROR"), "{out}");
    assert_eq!(dig(&server, "api.svc.internal", "A"), ["10.0.1.1"]);
    assert_eq!(dig(&server, "api.svc.internal", "AAAA"), ["2001:db8::2"]);
    assert_eq!(
        dig(&server, "_api._udp.svc.internal", "SRV"),
        [
            "1 10 53 api-1.api.svc.internal.",
            "1 10 53 api-2.api.svc.internal."
        ]
    );
    // An unsigned heartbeat cannot touch what a key registered.
    server.beat("beacon/1 service=api instance=api-1 port=53 addr=10.9.9.9 proto=udp");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(dig(&server, "api-1.api.svc.internal", "A"), ["10.0.1.1"]);
    // Deleting the SRV RRset removes every instance of the type.
    let script = format!(
        "server 127.0.0.1 {port}\nzone svc.internal.\n\
         update delete _api._udp.svc.internal. SRV\nsend\nanswer\n"
    );
    let (ok, out) = run_with_stdin("knsupdate", &["-y", &secret], &script);
    assert!(ok && out.contains("NOERROR"), "{out}");
    assert!(dig(&server, "api.svc.internal", "A").is_empty());
    assert!(dig(&server, "_api._udp.svc.internal", "SRV").is_empty());
    // A key the server does not know: NOTAUTH with BADKEY, nothing changes.
    let script = format!(
        "server 127.0.0.1 {port}\nzone svc.internal.\n\
         update add api-3.api.svc.internal. 30 A 10.0.1.3\n\
         update add _api._udp.svc.internal. 30 SRV 1 10 53 api-3.api.svc.internal.\nsend\nanswer\n"
    );
    let (ok, out) = run_with_stdin(
        "knsupdate",
        &["-y", &format!("hmac-sha256:nobody:{SECRET}")],
        &script,
    );
    assert!(!ok || out.contains("NOTAUTH"), "{out}");
    assert!(out.contains("BADKEY") || out.contains("NOTAUTH"), "{out}");
    assert!(dig(&server, "api.svc.internal", "A").is_empty());
}

/// dnspython: an SRP-shaped update (RFC 9665 §3.3: PTR, SRV and TXT at the
/// instance, the host's address, a KEY) with the update-lease option,
/// TSIG-signed; prints the rcode and the granted lease, or raises.
const SRP_UPDATE: &str = r#"
import struct, sys
import dns.edns, dns.message, dns.query, dns.rcode, dns.rdatatype, dns.tsigkeyring, dns.update

port, secret, lease, instance = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
keyring = dns.tsigkeyring.from_text({"srp": secret})
zone = "svc.internal."
update = dns.update.UpdateMessage(zone, keyring=keyring, keyname="srp", keyalgorithm="hmac-sha256")
# Service description: the type's PTR and a subtype.
update.add("_ipp._tcp." + zone, 60, "PTR", f"{instance}._ipp._tcp.{zone}")
update.add("_color._sub._ipp._tcp." + zone, 60, "PTR", f"{instance}._ipp._tcp.{zone}")
# Service instance: delete whatever it had, then SRV and TXT.
update.delete(f"{instance}._ipp._tcp.{zone}")
update.add(f"{instance}._ipp._tcp.{zone}", 60, "SRV", f"0 0 631 host-{instance}.{zone}")
update.add(f"{instance}._ipp._tcp.{zone}", 60, "TXT", '"rp=printers/1" "note=second floor"')
# Host description: its addresses and SIG(0) key (accepted, not kept).
update.delete(f"host-{instance}.{zone}")
update.add(f"host-{instance}.{zone}", 60, "AAAA", "2001:db8::631")
update.add(f"host-{instance}.{zone}", 60, "KEY", "\\# 68 0201030d" + "00" * 64)
update.use_edns(0, options=[dns.edns.GenericOption(2, struct.pack("!II", lease, 1209600))])
reply = dns.query.udp(update, "127.0.0.1", port=port, timeout=5)
granted = [o for o in reply.options if o.otype == 2]
print(dns.rcode.to_text(reply.rcode()), struct.unpack("!II", granted[0].data) if granted else "-")
"#;

fn srp_update(python: &str, server: &TestServer, lease: u32, instance: &str) -> String {
    let output = Command::new(python)
        .args([
            "-c",
            SRP_UPDATE,
            &server.dns.port().to_string(),
            SECRET,
            &lease.to_string(),
            instance,
        ])
        .output()
        .expect("python");
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stderr),
        server.log()
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

#[test]
fn srp_shaped_updates_from_dnspython_get_a_clamped_lease_renew_and_expire() {
    let Some(python) = python_with("dns.update") else {
        return;
    };
    if !have_tool("dig") {
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    let key = key_file(dir.path(), "srp");
    let server = TestServer::start(&["--keys", &key, "--min-lease", "2", "--max-lease", "600"]);
    // Asked for 1 s: granted the minimum, 2 s; the key lease is echoed.
    assert_eq!(
        srp_update(python, &server, 1, "printer-1"),
        "NOERROR (2, 1209600)"
    );
    assert_eq!(
        dig(&server, "_ipp._tcp.svc.internal", "PTR"),
        ["printer-1._ipp._tcp.svc.internal."]
    );
    assert_eq!(
        dig(&server, "_color._sub._ipp._tcp.svc.internal", "PTR"),
        ["printer-1._ipp._tcp.svc.internal."]
    );
    assert_eq!(
        dig(&server, "printer-1._ipp._tcp.svc.internal", "SRV"),
        ["0 0 631 printer-1.ipp.svc.internal."]
    );
    assert_eq!(
        dig(&server, "printer-1.ipp.svc.internal", "AAAA"),
        ["2001:db8::631"]
    );
    assert_eq!(
        dig(&server, "printer-1._ipp._tcp.svc.internal", "TXT"),
        ["\"tags=color\" \"note=second floor\" \"rp=printers/1\""]
    );
    // Sending it again renews it (SRP's model): still there after the
    // first lease would have run out.
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(1000));
        assert_eq!(
            srp_update(python, &server, 2, "printer-1"),
            "NOERROR (2, 1209600)"
        );
    }
    assert_eq!(
        dig(&server, "printer-1.ipp.svc.internal", "AAAA"),
        ["2001:db8::631"]
    );
    // Then it expires as a heartbeat instance does.
    server.wait_for_log("expired service=ipp instance=printer-1");
    // (The expiry is logged just before the view without it is published.)
    assert!(
        wait_until(Duration::from_secs(2), || dig(
            &server,
            "_ipp._tcp.svc.internal",
            "PTR"
        )
        .is_empty()
        .then_some(()))
        .is_some()
    );
    // Asked for more than --max-lease: granted the maximum.
    assert_eq!(
        srp_update(python, &server, 100_000, "printer-2"),
        "NOERROR (600, 1209600)"
    );
    let status = http_get(&server, "/v1/services/ipp");
    assert!(status.contains("\"id\":\"printer-2\""), "{status}");
}

/// dnspython with no key (the server allows 127.0.0.0/8): sends one UPDATE
/// described in Python and prints its rcode.
const PLAIN_UPDATE: &str = r#"
import sys
import dns.edns, dns.query, dns.rcode, dns.update
port, zone, code = int(sys.argv[1]), sys.argv[2], sys.argv[3]
u = dns.update.UpdateMessage(zone)
exec(code)
reply = dns.query.tcp(u, "127.0.0.1", port=port, timeout=5)
print(dns.rcode.to_text(reply.rcode()))
"#;

fn plain_update(python: &str, server: &TestServer, zone: &str, code: &str) -> String {
    let output = Command::new(python)
        .args([
            "-c",
            PLAIN_UPDATE,
            &server.dns.port().to_string(),
            zone,
            code,
        ])
        .output()
        .expect("python");
    assert!(
        output.status.success(),
        "{code}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

#[test]
fn prerequisites_and_refusals_answer_the_right_rcode_and_change_nothing() {
    let Some(python) = python_with("dns.update") else {
        return;
    };
    if !have_tool("dig") {
        return;
    }
    let zones = concat!(env!("CARGO_MANIFEST_DIR"), "/zones");
    let server = TestServer::start(&["--allow-update", "127.0.0.0/8", "--zones", zones]);
    let z = "svc.internal.";
    let web1 = "u.add('web-1.web', 30, 'A', '10.0.0.1'); u.add('_web._tcp', 30, 'SRV', '0 1 80 web-1.web.svc.internal.')";
    assert_eq!(plain_update(python, &server, z, web1), "NOERROR");
    assert_eq!(dig(&server, "web.svc.internal", "A"), ["10.0.0.1"]);

    // (what the message does, the rcode it must get)
    let cases: &[(&str, &str, &str)] = &[
        // Prerequisites (RFC 2136 §3.2), against what the zone serves.
        (
            z,
            "u.present('nope.web'); u.add('web-2.web', 30, 'A', '10.0.0.2')",
            "NXDOMAIN",
        ),
        (
            z,
            "u.absent('web-1.web'); u.add('web-2.web', 30, 'A', '10.0.0.2')",
            "YXDOMAIN",
        ),
        (
            z,
            "u.present('web-1.web', 'AAAA'); u.add('web-2.web', 30, 'A', '10.0.0.2')",
            "NXRRSET",
        ),
        (
            z,
            "u.absent('web-1.web', 'A'); u.add('web-2.web', 30, 'A', '10.0.0.2')",
            "YXRRSET",
        ),
        (
            z,
            "u.present('web-1.web', 'A', '10.0.0.9'); u.add('web-2.web', 30, 'A', '10.0.0.2')",
            "NXRRSET",
        ),
        // Names zone fragments hold, the apex, other zones, other shapes.
        (z, "u.add('db', 30, 'A', '10.1.0.99')", "REFUSED"),
        (z, "u.add('@', 30, 'TXT', 'hello')", "REFUSED"),
        ("other.zone.", "u.add('x', 30, 'A', '10.0.0.1')", "NOTAUTH"),
        (z, "u.add('x.other.zone.', 30, 'A', '10.0.0.1')", "NOTZONE"),
        (z, "u.add('web-2.web', 30, 'CNAME', 'web-1.web')", "REFUSED"),
        (z, "u.add('web', 30, 'A', '10.0.0.3')", "REFUSED"),
        // A new instance needs its address and its SRV together.
        (z, "u.add('web-2.web', 30, 'A', '10.0.0.2')", "REFUSED"),
        // The service name of the name server is reserved.
        (
            z,
            "u.add('a-1.ns', 30, 'A', '10.0.0.2'); u.add('_ns._tcp', 30, 'SRV', '0 1 80 a-1.ns.svc.internal.')",
            "REFUSED",
        ),
        // All or nothing: one good instance and one bad record.
        (
            z,
            "u.add('web-3.web', 30, 'A', '10.0.0.3'); u.add('_web._tcp', 30, 'SRV', '0 1 80 web-3.web.svc.internal.'); u.add('db', 30, 'A', '10.1.0.99')",
            "REFUSED",
        ),
        (
            z,
            "u.add('web-3.web', 30, 'A', '0.0.0.0'); u.add('_web._tcp', 30, 'SRV', '0 1 80 web-3.web.svc.internal.')",
            "REFUSED",
        ),
        // An update-lease option of the wrong size.
        (
            z,
            "u.use_edns(0, options=[dns.edns.GenericOption(2, b'abc')]); u.add('web-3.web', 30, 'A', '10.0.0.3'); u.add('_web._tcp', 30, 'SRV', '0 1 80 web-3.web.svc.internal.')",
            "FORMERR",
        ),
    ];
    for (zone, code, rcode) in cases {
        assert_eq!(
            plain_update(python, &server, zone, code),
            *rcode,
            "{code}\n{}",
            server.log()
        );
    }
    assert_eq!(dig(&server, "web.svc.internal", "A"), ["10.0.0.1"]);
    assert!(dig(&server, "web-3.web.svc.internal", "A").is_empty());
    assert_eq!(dig(&server, "db-2.db.svc.internal", "A"), ["10.1.0.12"]);
    server.wait_for_log("refused a DNS UPDATE");

    // Satisfied prerequisites let the update through.
    let guarded = "u.present('web-1.web', 'A', '10.0.0.1'); u.absent('web-2.web'); \
                   u.add('web-2.web', 30, 'A', '10.0.0.2'); u.add('_web._tcp', 30, 'SRV', '0 1 80 web-2.web.svc.internal.')";
    assert_eq!(plain_update(python, &server, z, guarded), "NOERROR");
    assert_eq!(
        dig(&server, "web.svc.internal", "A"),
        ["10.0.0.1", "10.0.0.2"]
    );
}

#[test]
fn without_allow_update_or_keys_updates_are_refused() {
    let Some(python) = python_with("dns.update") else {
        return;
    };
    if !have_tool("dig") {
        return;
    }
    let server = TestServer::start(&[]);
    let web1 = "u.add('web-1.web', 30, 'A', '10.0.0.1'); u.add('_web._tcp', 30, 'SRV', '0 1 80 web-1.web.svc.internal.')";
    assert_eq!(
        plain_update(python, &server, "svc.internal.", web1),
        "REFUSED"
    );
    assert!(dig(&server, "web.svc.internal", "A").is_empty());
    server.wait_for_log("refused an unsigned UPDATE");
    assert!(server.log().contains("the client is not in --allow-update"));
}

#[test]
fn keys_scope_and_ownership_hold_for_updates_as_for_heartbeats() {
    let Some(python) = python_with("dns.update") else {
        return;
    };
    if !have_tool("dig") {
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    let a = key_file(dir.path(), "team-a");
    let b = key_file(dir.path(), "team-b");
    let server = TestServer::start(&["--keys", &a, "--keys", &b, "--key-scope", "team-b=api"]);
    let signed = |key: &str, code: &str| {
        let script = format!(
            "import dns.tsigkeyring\nu.keyring = dns.tsigkeyring.from_text({{'{key}': '{SECRET}'}})\nu.use_tsig(u.keyring, keyname='{key}', algorithm='hmac-sha256')\n{code}"
        );
        plain_update(python, &server, "svc.internal.", &script)
    };
    let web1 = "u.add('web-1.web', 30, 'A', '10.0.0.1'); u.add('_web._tcp', 30, 'SRV', '0 1 80 web-1.web.svc.internal.')";
    assert_eq!(signed("team-a", web1), "NOERROR");
    // team-b may register only `api`.
    assert_eq!(signed("team-b", web1), "REFUSED");
    // team-a's instance is team-a's: team-b cannot delete it even in scope.
    let api1 = "u.add('api-1.api', 30, 'A', '10.0.1.1'); u.add('_api._tcp', 30, 'SRV', '0 1 80 api-1.api.svc.internal.')";
    assert_eq!(signed("team-a", api1), "NOERROR");
    assert_eq!(signed("team-b", "u.delete('api-1.api')"), "REFUSED");
    assert_eq!(dig(&server, "api.svc.internal", "A"), ["10.0.1.1"]);
    assert_eq!(signed("team-a", "u.delete('api-1.api')"), "NOERROR");
    // Signed 1,000 s ago (outside the 300 s fudge): NOTAUTH with BADTIME,
    // in a reply signed with the key, which dnspython checks.
    let stale = format!(
        "import dns.tsig, dns.tsigkeyring, time\n\
         real = time.time\n\
         time.time = lambda: real() - 1000\n\
         u.use_tsig(dns.tsigkeyring.from_text({{'team-a': '{SECRET}'}}), keyname='team-a', algorithm='hmac-sha256')\n\
         u.delete('web-1.web')\n\
         try:\n    dns.query.tcp(u, '127.0.0.1', port=port, timeout=5)\nexcept dns.tsig.PeerBadTime:\n    print('BADTIME'); sys.exit(0)\n"
    );
    assert_eq!(
        plain_update(python, &server, "svc.internal.", &stale),
        "BADTIME"
    );
    assert!(dig(&server, "api.svc.internal", "A").is_empty());
    assert_eq!(dig(&server, "web.svc.internal", "A"), ["10.0.0.1"]);
}

#[test]
fn update_registered_instances_transfer_and_survive_a_restart() {
    let Some(python) = python_with("dns.update") else {
        return;
    };
    if !have_tool("dig") || !have_tool("kdig") {
        return;
    }
    let state = tempfile::tempdir().expect("dir");
    let state_dir = state.path().display().to_string();
    let flags = [
        "--allow-update",
        "127.0.0.0/8",
        "--allow-transfer",
        "127.0.0.0/8",
        "--state-dir",
        &state_dir,
    ];
    let server = TestServer::start(&flags);
    let web1 = "u.add('web-1.web', 300, 'A', '10.0.0.1'); u.add('_web._tcp', 300, 'SRV', '0 1 80 web-1.web.svc.internal.'); u.add('_blue._sub._web._tcp', 300, 'PTR', 'web-1._web._tcp.svc.internal.')";
    assert_eq!(
        plain_update(python, &server, "svc.internal.", web1),
        "NOERROR"
    );
    let axfr = Command::new("kdig")
        .args([
            "@127.0.0.1",
            "-p",
            &server.dns.port().to_string(),
            "+tcp",
            "+noall",
            "+answer",
            "svc.internal.",
            "AXFR",
        ])
        .output()
        .expect("kdig");
    let axfr = String::from_utf8_lossy(&axfr.stdout);
    for expected in [
        "web-1.web.svc.internal.",
        "_web._tcp.svc.internal.",
        "_blue._sub._web._tcp.svc.internal.",
        "blue._tag.web.svc.internal.",
    ] {
        assert!(axfr.contains(expected), "{expected} not in {axfr}");
    }
    let log = server.terminate_and_log();
    assert!(log.contains("reason=\"dns update\""), "{log}");
    let again = TestServer::start(&flags);
    assert_eq!(dig(&again, "web.svc.internal", "A"), ["10.0.0.1"]);
    assert_eq!(dig(&again, "blue._tag.web.svc.internal", "A"), ["10.0.0.1"]);
}

/// The README's UPDATE session, run as written against a server with the
/// README's key (ports replaced).
#[test]
fn readme_nsupdate_session_runs_as_written() {
    if !have_tool("nsupdate") || !have_tool("dig") {
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    let setup = readme_block("sh", "beacon keygen deploy");
    let mut lines = setup.lines();
    assert_eq!(lines.next(), Some("beacon keygen deploy > deploy.key"));
    assert_eq!(lines.next(), Some("beacon serve --keys deploy.key"));
    let made = Command::new(BEACON)
        .args(["keygen", "deploy"])
        .output()
        .expect("keygen");
    std::fs::write(dir.path().join("deploy.key"), &made.stdout).expect("key");
    let key = dir.path().join("deploy.key").display().to_string();
    let server = TestServer::start(&["--keys", &key]);
    let session = readme_block("sh", "nsupdate -k deploy.key")
        .replace("5300", &server.dns.port().to_string());
    let output = Command::new("bash")
        .args(["-e", "-c", &session])
        .current_dir(dir.path())
        .output()
        .expect("bash");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The session's dig prints what its comment says.
    let expected: Vec<&str> = session
        .lines()
        .filter_map(|l| l.strip_prefix("# prints: "))
        .collect();
    assert!(!expected.is_empty());
    let printed: Vec<&str> = stdout.lines().collect();
    assert_eq!(printed, expected);
}
