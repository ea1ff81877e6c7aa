//! Health probes in `beacon beat`, against a real HTTP server, a real TCP
//! listener and a real command, each stopped and started again.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{TestServer, free_port, have_tool, python_with, wait_until};
use hickory_proto::rr::RecordType;

/// `beacon beat` for instance `id` of `web` at `addr`, probing fast.
fn beat(server: &TestServer, id: &str, addr: &str, probe: &[&str]) -> Child {
    Command::new(common::BEACON)
        .args([
            "beat",
            "--service",
            "web",
            "--port",
            "80",
            "--instance",
            id,
            "--addr",
            addr,
        ])
        .args([
            "--server",
            &server.heartbeat.to_string(),
            "--interval",
            "1",
            "--ttl",
            "15",
        ])
        .args(["--check-interval", "0.2", "--check-timeout", "0.2"])
        .args(["--check-failures", "2", "--check-successes", "1"])
        .args(probe)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("beat")
}

/// The addresses `web` answers with.
fn web(server: &TestServer) -> Vec<String> {
    let mut addrs = common::rdatas(&server.query("web.svc.internal.", RecordType::A).answers);
    addrs.sort();
    addrs
}

fn wait_web(server: &TestServer, want: &[&str], what: &str) {
    let reached = wait_until(Duration::from_secs(5), || {
        (web(server) == want).then_some(())
    });
    assert!(
        reached.is_some(),
        "{what}: web answers {:?}, expected {want:?}",
        web(server)
    );
}

fn stop(child: Child) -> String {
    common::signal(child.id(), "TERM");
    let output = child.wait_with_output().expect("wait");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn tcp_and_exec_probes_drain_or_remove_and_bring_back() {
    let server = TestServer::start(&[]);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let flag = tempfile::NamedTempFile::new().expect("flag file");
    let flag_path = flag.path().display().to_string();
    let tcp = beat(
        &server,
        "t1",
        "10.0.0.1",
        &["--check-tcp", &format!("127.0.0.1:{port}")],
    );
    let exec = beat(
        &server,
        "e1",
        "10.0.0.2",
        &[
            "--check-exec",
            &format!("test -f {flag_path}"),
            "--on-failure",
            "down",
        ],
    );
    wait_web(&server, &["10.0.0.1", "10.0.0.2"], "both healthy");

    // The listener goes away: t1 drains (still resolvable by its name).
    drop(listener);
    wait_web(&server, &["10.0.0.2"], "TCP probe failing");
    let own = server.query("t1.web.svc.internal.", RecordType::A);
    assert_eq!(
        common::rdatas(&own.answers),
        ["10.0.0.1"],
        "a drained instance keeps its own name"
    );
    // The file goes away: e1 is removed outright.
    drop(flag);
    wait_web(&server, &[], "both failing");
    let own = server.query("e1.web.svc.internal.", RecordType::A);
    assert!(own.answers.is_empty(), "--on-failure down removes it");

    // Both come back.
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).expect("rebind");
    std::fs::write(&flag_path, "").expect("flag again");
    wait_web(&server, &["10.0.0.1", "10.0.0.2"], "both healthy again");
    drop(listener);
    let log = stop(tcp);
    assert!(
        log.contains("health probes fail; announcing at once"),
        "{log}"
    );
    assert!(log.contains("health probes pass again"), "{log}");
    let _ = std::fs::remove_file(&flag_path);
    stop(exec);
}

#[test]
fn an_http_probe_follows_a_real_web_server() {
    let Some(python) = python_with("http.server") else {
        return;
    };
    if !have_tool("curl") {
        return;
    }
    let server = TestServer::start(&[]);
    let port = free_port();
    let site = tempfile::tempdir().expect("site");
    let serve = |dir: &std::path::Path| {
        Command::new(python)
            .args([
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                &port.to_string(),
            ])
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("http.server")
    };
    let mut web_server = serve(site.path());
    let url = format!("http://127.0.0.1:{port}/");
    let up = wait_until(Duration::from_secs(5), || {
        Command::new("curl")
            .args(["-sf", &url])
            .status()
            .ok()?
            .success()
            .then_some(())
    });
    assert!(up.is_some(), "the web server came up");
    let beat = beat(&server, "h1", "10.0.0.3", &["--check-http", &url]);
    wait_web(&server, &["10.0.0.3"], "HTTP healthy");
    let _ = web_server.kill();
    let _ = web_server.wait();
    wait_web(&server, &[], "HTTP server stopped");
    let mut web_server = serve(site.path());
    wait_web(&server, &["10.0.0.3"], "HTTP server back");
    let _ = web_server.kill();
    let _ = web_server.wait();
    stop(beat);
}
