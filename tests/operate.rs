//! The HTTP endpoint through real clients: curl for `/health`, `/ready`,
//! `/metrics` and the JSON API, headless Chromium for the status page.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{TestServer, have_tool, readme_block, wait_until};
use hickory_proto::rr::RecordType;

fn register(server: &TestServer) {
    server
        .beat("beacon/1 service=web instance=w1 port=8080 addr=10.0.0.1 weight=3 meta.version=1.2");
    server.beat("beacon/1 service=web instance=w2 port=8080 addr=10.0.0.2 state=drain");
    server.beat("beacon/1 service=db instance=d1 port=5432 addr=10.0.1.1");
    server.await_reply("web.svc.internal.", RecordType::A, |r| r.answers.len() == 1);
    server.await_reply("db.svc.internal.", RecordType::A, |r| r.answers.len() == 1);
}

#[test]
fn health_ready_metrics_and_the_services_api() {
    if !have_tool("curl") {
        return;
    }
    let zones = tempfile::tempdir().expect("zones");
    std::fs::write(zones.path().join("www.zone"), "www 60 IN A 10.9.9.9\n").expect("fragment");
    let zones_path = zones.path().display().to_string();
    let server = TestServer::start(&["--zones", &zones_path, "--rrl", "5", "--rrl-slip", "2"]);
    assert!(
        server.listening.contains(" http=127.0.0.1:"),
        "{}",
        server.listening
    );
    register(&server);
    assert_eq!(server.http_get("/health"), (200, "ok\n".to_string()));
    assert_eq!(server.http_get("/ready").0, 200);

    // Queries over both transports, one of them NXDOMAIN.
    for _ in 0..3 {
        server.query("web.svc.internal.", RecordType::A);
    }
    server.query("nope.svc.internal.", RecordType::A);
    server.query_tcp("_web._tcp.svc.internal.", RecordType::SRV);
    let (code, metrics) = server.http_get("/metrics");
    assert_eq!(code, 200);
    let value = |line: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(line))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {line} in:\n{metrics}"))
    };
    assert!(value(r#"beacon_queries_total{transport="udp",type="A",rcode="NOERROR"}"#) >= 3.0);
    assert!(value(r#"beacon_queries_total{transport="udp",type="A",rcode="NXDOMAIN"}"#) >= 1.0);
    assert!(value(r#"beacon_queries_total{transport="tcp",type="SRV",rcode="NOERROR"}"#) >= 1.0);
    assert!(value("beacon_fast_path_hits_total") >= 3.0);
    assert_eq!(value("beacon_instances"), 3.0);
    assert_eq!(value("beacon_services"), 2.0);
    assert_eq!(
        value(r#"beacon_registry_events_total{event="registered"}"#),
        3.0
    );
    assert!(value("beacon_heartbeats_accepted_total") >= 3.0);
    assert!(value("beacon_view_publish_seconds_count") >= 1.0);
    assert!(value("beacon_process_resident_memory_bytes") > 1e6);

    assert_eq!(
        value("beacon_fragment_loads_total"),
        1.0,
        "the one fragment"
    );
    assert_eq!(value("beacon_fragment_failures_total"), 0.0);
    // Over the rate limit (5 a second for this client): some dropped,
    // some slipped.
    for _ in 0..40 {
        let _ = common::exchange_raw(
            server.dns,
            &common::question("www.svc.internal.", RecordType::A, true)
                .to_vec()
                .expect("encode"),
            Duration::from_millis(20),
        );
    }
    let limited = wait_until(Duration::from_secs(5), || {
        let (_, metrics) = server.http_get("/metrics");
        let read = |name: &str| -> f64 {
            metrics
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.rsplit(' ').next()?.parse().ok())
                .unwrap_or(0.0)
        };
        (read("beacon_rrl_drops_total") > 0.0
            && read("beacon_rrl_slips_total") > 0.0
            && read("beacon_snapshot_writes_total") >= 1.0)
            .then_some(())
    });
    assert!(
        limited.is_some(),
        "rate limiting and snapshot writes are counted:\n{}",
        server.http_get("/metrics").1
    );
    server.beat("beacon/1 service=web instance=w1 port=8080 addr=10.0.0.1 key=x auth=AAAA");
    let rejected = wait_until(Duration::from_secs(5), || {
        let (_, metrics) = server.http_get("/metrics");
        metrics
            .lines()
            .any(|l| l.starts_with(r#"beacon_heartbeats_rejected_total{reason="malformed"} 1"#))
            .then_some(())
    });
    assert!(rejected.is_some(), "a malformed heartbeat is counted");

    // The JSON API.
    let (code, body) = server.http_get("/v1/services");
    assert_eq!(code, 200);
    let status: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(status["instances"], 3);
    let web = status["services"]
        .as_array()
        .expect("services")
        .iter()
        .find(|s| s["name"] == "web")
        .expect("web");
    let w1 = &web["instances"][0];
    assert_eq!(w1["id"], "w1");
    assert_eq!(w1["address"], "10.0.0.1");
    assert_eq!(w1["port"], 8080);
    assert_eq!(w1["proto"], "tcp");
    assert_eq!(w1["weight"], 3);
    assert_eq!(w1["state"], "live");
    assert_eq!(w1["metadata"]["version"], "1.2");
    assert!(w1["lease_remaining_s"].as_f64().expect("lease") > 10.0);
    assert_eq!(web["instances"][1]["state"], "draining");
    let (code, body) = server.http_get("/v1/services/db");
    assert_eq!(code, 200);
    let db: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(db["instances"][0]["address"], "10.0.1.1");
    assert_eq!(server.http_get("/v1/services/nope").0, 404);
}

#[test]
fn http_off_and_a_taken_port_fail_clearly() {
    let off = TestServer::start(&["--http", "off"]);
    assert!(off.listening.contains(" http=off "), "{}", off.listening);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let out = Command::new(common::BEACON)
        .args([
            "serve",
            "--dns",
            "127.0.0.1:0",
            "--heartbeat",
            "127.0.0.1:0",
            "--http",
            &addr,
        ])
        .args(["--state-dir", "off"])
        .output()
        .expect("serve");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--http"), "{stderr}");
}

/// The page as headless Chromium renders it, after its script ran.
fn rendered(server: &TestServer) -> String {
    let http = server.http.expect("HTTP");
    let profile = tempfile::tempdir().expect("profile");
    let output = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=3000",
            &format!("--user-data-dir={}", profile.path().display()),
            "--dump-dom",
            &format!("http://{http}/"),
        ])
        .output()
        .expect("chromium");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn the_status_page_renders_instances_and_follows_changes() {
    if !have_tool("chromium") {
        return;
    }
    let server = TestServer::start(&[]);
    register(&server);
    let page = rendered(&server);
    assert!(page.contains("3 instances"), "{page}");
    assert!(page.contains(r#"data-id="web/w1""#), "{page}");
    assert!(page.contains(r#"data-id="db/d1""#), "{page}");
    assert!(
        page.contains(r#"<td class="draining">draining</td>"#),
        "{page}"
    );
    assert!(
        !page.contains("http://") || !page.contains("<script src"),
        "no external assets"
    );

    server.beat("beacon/1 service=db instance=d1 port=5432 state=down");
    server.await_reply("db.svc.internal.", RecordType::A, |r| r.answers.is_empty());
    let page = rendered(&server);
    assert!(page.contains("2 instances"), "{page}");
    assert!(!page.contains(r#"data-id="db/d1""#), "{page}");
    assert!(
        page.contains("<td>deregistered</td><td>db</td><td>d1</td><td>sender said down</td>"),
        "the recent events show the removal: {page}"
    );
}

#[test]
fn beacon_status_prints_the_registry_as_a_table() {
    let server = TestServer::start(&[]);
    register(&server);
    let http = server.http.expect("HTTP").to_string();
    let out = Command::new(common::BEACON)
        .args(["status", "--http", &http])
        .output()
        .expect("status");
    assert!(out.status.success());
    let table = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0][..3], ["SERVICE", "INSTANCE", "ADDRESS"], "{table}");
    assert!(
        lines
            .iter()
            .any(|l| l[..4] == ["web", "w1", "10.0.0.1", "8080"] && l[7] == "live"),
        "{table}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l[..2] == ["web", "w2"] && l[7] == "draining"),
        "{table}"
    );
    assert!(
        table.contains("2 services, 3 instances, serial "),
        "{table}"
    );
    // Nothing listening: a clear error, non-zero.
    let out = Command::new(common::BEACON)
        .args(["status", "--http", "127.0.0.1:1"])
        .output()
        .expect("status");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is `beacon serve` running"));
}

#[test]
fn json_logs_are_one_object_per_line_with_the_same_fields() {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(common::BEACON)
        .args(["serve", "--log-format", "json", "--dns", "127.0.0.1:0"])
        .args([
            "--heartbeat",
            "127.0.0.1:0",
            "--http",
            "off",
            "--state-dir",
            "off",
        ])
        .args(["--zones", "/nonexistent"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("serve");
    let stderr = child.stderr.take().expect("stderr");
    let mut listening = None;
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        let object: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        assert!(
            object["timestamp"].is_string() && object["level"].is_string(),
            "{line}"
        );
        if object["message"] == "listening" {
            listening = Some(object);
            break;
        }
    }
    common::signal(child.id(), "TERM");
    let _ = child.wait();
    let listening = listening.expect("a listening line");
    assert!(
        listening["dns_udp"]
            .as_str()
            .is_some_and(|a| a.starts_with("127.0.0.1:"))
    );
    assert_eq!(listening["http"], "off");
    assert_eq!(listening["zone"], "svc.internal.");
}

/// The keys of every object along the first element of each array.
fn shape(value: &serde_json::Value, path: &str, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, inner) in map {
                out.push(format!("{path}.{key}"));
                if key != "metadata" {
                    shape(inner, &format!("{path}.{key}"), out);
                }
            }
        }
        serde_json::Value::Array(items) => {
            if let Some(first) = items.first() {
                shape(first, &format!("{path}[]"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn readme_examples_of_the_api_and_the_table_are_what_the_server_gives() {
    if !have_tool("curl") {
        return;
    }
    let server = TestServer::start(&[]);
    register(&server);
    let example: serde_json::Value =
        serde_json::from_str(&readme_block("json", "\"lease_remaining_s\"")).expect("README JSON");
    let (_, body) = server.http_get("/v1/services");
    let real: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let (mut want, mut got) = (Vec::new(), Vec::new());
    shape(&example, "", &mut want);
    shape(&real, "", &mut got);
    want.sort();
    got.sort();
    assert_eq!(want, got, "the README's example has the reply's fields");

    let http = server.http.expect("HTTP").to_string();
    let out = Command::new(common::BEACON)
        .args(["status", "--http", &http])
        .output()
        .expect("status");
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    let documented = readme_block("text", "SERVICE  INSTANCE");
    let rows = |text: &str| -> Vec<Vec<String>> {
        text.lines()
            .map(|l| {
                l.split_whitespace()
                    .map(|w| {
                        if w.ends_with('s') && w.contains('.') {
                            "LEASE".into()
                        } else {
                            w.to_string()
                        }
                    })
                    .collect()
            })
            .filter(|r: &Vec<String>| !r.contains(&"serial".to_string()))
            .collect()
    };
    assert_eq!(rows(&documented), rows(&table), "{table}");
}

#[test]
fn systemd_is_told_ready_watchdog_and_stopping_over_a_real_notify_socket() {
    use std::os::unix::net::UnixDatagram;
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("notify");
    let socket = UnixDatagram::bind(&path).expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let path = path.display().to_string();
    let server = TestServer::start_with_env(
        &["--zones", &format!("{}/zones", env!("CARGO_MANIFEST_DIR"))],
        &[("NOTIFY_SOCKET", &path), ("WATCHDOG_USEC", "200000")],
    );
    let mut seen = String::new();
    let mut buffer = [0u8; 4096];
    while !(seen.contains("READY=1") && seen.matches("WATCHDOG=1").count() >= 2) {
        let len = socket
            .recv(&mut buffer)
            .expect("a notify message within 10 s");
        seen.push_str(&String::from_utf8_lossy(&buffer[..len]));
        seen.push('\n');
    }
    assert!(seen.contains("STATUS=serving svc.internal."), "{seen}");
    let log = server.terminate_and_log();
    assert!(log.contains("shutting down"));
    let mut stopping = false;
    while let Ok(len) = socket.recv(&mut buffer) {
        if String::from_utf8_lossy(&buffer[..len]).contains("STOPPING=1") {
            stopping = true;
            break;
        }
    }
    assert!(stopping, "STOPPING=1 at shutdown; before it: {seen}");
}

#[test]
fn the_shipped_systemd_unit_verifies() {
    if !have_tool("systemd-analyze") {
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    // As shipped, with the binary where this build has it.
    let unit = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/dist/beacon.service"))
        .expect("unit")
        .replace("/usr/local/bin/beacon", common::BEACON);
    assert!(unit.contains("Type=notify") && unit.contains("DynamicUser=yes"));
    assert!(unit.contains("StateDirectory=beacon") && unit.contains("ProtectSystem=strict"));
    assert!(unit.contains("AmbientCapabilities=CAP_NET_BIND_SERVICE"));
    assert!(unit.contains("ExecReload=/bin/kill -HUP $MAINPID"));
    let shipped =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/dist/beacon.service"))
            .expect("unit");
    assert_eq!(
        readme_block("ini", "Type=notify").trim_end(),
        shipped.trim_end(),
        "the README shows the unit as shipped"
    );
    let path = dir.path().join("beacon.service");
    std::fs::write(&path, unit).expect("write");
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .expect("systemd-analyze");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let problems: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("beacon.service"))
        .collect();
    assert!(out.status.success() && problems.is_empty(), "{stderr}");
}

#[test]
fn the_readme_config_file_works_as_written_and_flags_win() {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("beacon.toml");
    // As written; only its fixed ports are made free ones.
    let text = readme_block("toml", "ixfr-history")
        .replace("127.0.0.1:5300", "127.0.0.1:0")
        .replace("127.0.0.1:5301", "127.0.0.1:0")
        .replace("127.0.0.1:5380", "127.0.0.1:0")
        .replace("answer-ttl = 5", "answer-ttl = 7");
    std::fs::write(&file, &text).expect("write");
    let path = file.display().to_string();
    let out = Command::new(common::BEACON)
        .args(["check", "--config", &path])
        .output()
        .expect("check");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("no problems"));

    // The file's settings apply (answer-ttl, the reverse zone) ...
    let server = TestServer::start(&["--config", &path]);
    server.beat("beacon/1 service=web instance=w1 port=80 addr=10.0.0.1");
    let reply = server.await_reply("web.svc.internal.", RecordType::A, |r| {
        !r.answers.is_empty()
    });
    assert_eq!(reply.answers[0].ttl, 7);
    let reverse = server.await_reply("1.0.0.10.in-addr.arpa.", RecordType::PTR, |r| {
        !r.answers.is_empty()
    });
    assert_eq!(common::rdatas(&reverse.answers), ["w1.web.svc.internal."]);
    // ... and a flag on the command line wins over the file.
    let flagged = TestServer::start(&["--config", &path, "--answer-ttl", "9"]);
    flagged.beat("beacon/1 service=web instance=w1 port=80 addr=10.0.0.1");
    let reply = flagged.await_reply("web.svc.internal.", RecordType::A, |r| {
        !r.answers.is_empty()
    });
    assert_eq!(reply.answers[0].ttl, 9);

    // Problems name their place.
    for (bad, expected) in [
        (
            "frobnicate = 1\n",
            "beacon.toml:1:1: unknown key `frobnicate`",
        ),
        (
            "max-udp-payload = \"big\"\n",
            "beacon.toml:1:19: `max-udp-payload`",
        ),
        (
            "answer-ttl = 5\nmax-udp-payload = 99\n",
            "beacon.toml:2:1: --max-udp-payload",
        ),
        (
            "zone = [\"a.\"]\n",
            "beacon.toml:1:8: `zone` takes one value",
        ),
    ] {
        std::fs::write(&file, bad).expect("write");
        let out = Command::new(common::BEACON)
            .args(["serve", "--config", &path])
            .output()
            .expect("serve");
        assert_eq!(out.status.code(), Some(2), "{bad}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{bad}: {stderr}");
    }
}

#[test]
fn dnstap_records_queries_and_replies_that_dnstap_read_reads() {
    if !have_tool("dnstap-read") {
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("beacon.dnstap");
    let path = file.display().to_string();
    let server = TestServer::start(&["--dnstap", &path]);
    server.beat("beacon/1 service=web instance=w1 port=8080 addr=10.0.0.1");
    server.await_reply("web.svc.internal.", RecordType::A, |r| {
        !r.answers.is_empty()
    });
    server.query_tcp("_web._tcp.svc.internal.", RecordType::SRV);
    server.query("nope.svc.internal.", RecordType::TXT);
    // Written by a thread of its own: wait until the file holds them.
    let seen = wait_until(Duration::from_secs(5), || {
        let out = Command::new("dnstap-read")
            .args(["-y", &path])
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (text.contains("_web._tcp.svc.internal") && text.contains("nope.svc.internal"))
            .then_some(text)
    });
    let text = seen.unwrap_or_else(|| {
        let out = Command::new("dnstap-read")
            .arg(&path)
            .output()
            .expect("dnstap-read");
        panic!(
            "dnstap-read never showed the queries: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(text.contains("type: AUTH_QUERY"), "{text}");
    assert!(text.contains("type: AUTH_RESPONSE"), "{text}");
    assert!(text.contains("socket_protocol: TCP"), "{text}");
    assert!(text.contains("socket_protocol: UDP"), "{text}");
    assert!(
        text.contains("NXDOMAIN"),
        "the reply is recorded whole: {text}"
    );
    let short = Command::new("dnstap-read")
        .arg(&path)
        .output()
        .expect("dnstap-read");
    let short = String::from_utf8_lossy(&short.stdout);
    assert!(short.contains("AQ ") && short.contains("AR "), "{short}");
}
