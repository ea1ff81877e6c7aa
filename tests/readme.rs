//! Every example in README.md, run for real.
//!
//! `console` blocks are transcripts: each `$ ` line is run with bash against
//! a server on free ports (5300 and 5301 in the text are replaced by the
//! ports actually bound, `beacon` by the binary under test), and the lines
//! after it are its expected output, compared as a set because answers
//! rotate. A command ending in `&` runs in the background until the test
//! ends, then gets SIGTERM. Commands are retried for a few seconds until the
//! output matches, since heartbeats are applied asynchronously.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{BEACON, TestServer, have_tool, signal, wait_until};
use hickory_proto::rr::RecordType;

const README: &str = include_str!("../README.md");

/// One `$` command and the output that follows it.
#[derive(Debug)]
struct Step {
    command: String,
    expected: Vec<String>,
}

/// The fenced blocks of `lang`, each as its lines.
fn blocks(lang: &str) -> Vec<Vec<&'static str>> {
    let mut out = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    for line in README.lines() {
        match (&mut current, line.trim_start()) {
            (None, l) if l == format!("```{lang}") => current = Some(Vec::new()),
            (Some(_), "```") => out.extend(current.take()),
            (Some(block), _) => block.push(line),
            _ => {}
        }
    }
    out
}

fn steps(block: &[&str]) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    for line in block {
        if let Some(command) = line.strip_prefix("$ ") {
            steps.push(Step {
                command: command.to_string(),
                expected: Vec::new(),
            });
        } else if let Some(step) = steps.last_mut() {
            step.expected.push(line.to_string());
        }
    }
    steps
}

fn localise(command: &str, server: &TestServer) -> String {
    let command = command
        .replace("5300", &server.dns.port().to_string())
        .replace("5301", &server.heartbeat.port().to_string());
    match command.strip_prefix("beacon ") {
        Some(rest) => format!("{BEACON} {rest}"),
        None => command,
    }
}

fn sorted(mut lines: Vec<String>) -> Vec<String> {
    lines.retain(|l| !l.is_empty());
    lines.sort();
    lines
}

fn run(command: &str) -> (bool, Vec<String>) {
    let out = Command::new("bash")
        .args(["-c", command])
        .stdin(Stdio::null())
        .output()
        .expect("run bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    (
        out.status.success(),
        stdout.lines().map(str::to_string).collect(),
    )
}

fn run_transcripts(server: &TestServer) -> usize {
    let mut background: Vec<Child> = Vec::new();
    let mut count = 0;
    for block in blocks("console") {
        for step in steps(&block) {
            count += 1;
            let command = localise(&step.command, server);
            if let Some(command) = command.strip_suffix('&') {
                let child = Command::new("bash")
                    .args(["-c", &format!("exec {command}")])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("spawn background command");
                background.push(child);
                continue;
            }
            let expected = sorted(step.expected.clone());
            let mut last = (false, Vec::new());
            let ok = wait_until(Duration::from_secs(5), || {
                last = run(&command);
                (last.0 && sorted(last.1.clone()) == expected).then_some(())
            });
            if ok.is_none() {
                for child in &mut background {
                    let _ = child.kill();
                }
                panic!(
                    "README command `{}` (run as `{command}`): success={}, output {:?}, expected {:?}",
                    step.command, last.0, last.1, step.expected
                );
            }
        }
    }
    for mut child in background {
        signal(child.id(), "TERM");
        let status = child.wait().expect("wait");
        assert!(
            status.success(),
            "a background README command failed: {status}"
        );
    }
    count
}

#[test]
fn readme_python_example_registers_an_instance() {
    if !have_tool("python3") {
        return;
    }
    let server = TestServer::start(&[]);
    let unsigned: Vec<_> = blocks("python")
        .into_iter()
        .filter(|b| !b.join("\n").contains("hmac"))
        .collect();
    assert_eq!(unsigned.len(), 1);
    let script = unsigned[0]
        .join("\n")
        .replace("5301", &server.heartbeat.port().to_string());
    let status = Command::new("python3")
        .args(["-c", &script])
        .status()
        .expect("python3");
    assert!(status.success());
    let reply = server.await_reply("api-1.api.svc.internal.", RecordType::A, |m| {
        !m.answers.is_empty()
    });
    assert_eq!(common::rdatas(&reply.answers), ["127.0.0.1"]);
}

#[test]
fn readme_heartbeat_example_decodes() {
    let example = blocks("text")
        .into_iter()
        .flatten()
        .find(|l| l.starts_with("beacon/1 "))
        .expect("a heartbeat example in a text block");
    let server = TestServer::start(&[]);
    server.beat(example);
    let reply = server.await_reply("_web._tcp.svc.internal.", RecordType::SRV, |m| {
        !m.answers.is_empty()
    });
    assert_eq!(
        common::rdatas(&reply.answers),
        ["0 1 8080 web-1.web.svc.internal."]
    );
}

/// The quick start as a new user meets it: `beacon serve` with no flags
/// (default ports, the repository's `zones/`), the documented log line, then
/// every transcript of the README run against it as written.
#[test]
fn quick_start_and_transcripts_run_as_written() {
    assert!(README.contains("cargo run --release -- serve\n"));
    assert!(README.contains("\ncargo test --all-targets\n"));
    if !(have_tool("dig") && have_tool("nc") && have_tool("socat")) {
        return;
    }
    let server = TestServer::start_exactly(&[]);
    let documented = blocks("text")
        .into_iter()
        .flatten()
        .find(|l| l.contains(" listening "))
        .expect("the listening line in a text block")
        .trim()
        .to_string();
    // Drop the timestamp, compare the rest.
    let logged = server
        .listening
        .trim()
        .split_once(' ')
        .map(|(_, rest)| rest.trim())
        .unwrap_or_default();
    assert_eq!(logged, documented, "full line: {}", server.listening);

    let steps = run_transcripts(&server);
    assert!(steps >= 10, "only {steps} README commands found");
    // The senders were stopped with SIGTERM: their final "down" removed them.
    server.await_reply("web.svc.internal.", RecordType::A, |m| m.answers.is_empty());
    server.wait_for_log("deregistered service=web instance=web-1");
}

/// The fragment shown in the README is the repository's `zones/db.zone`,
/// which the transcripts above query.
#[test]
fn readme_fragment_is_the_served_example() {
    let shown = blocks("zone");
    assert_eq!(shown.len(), 1, "one zone block");
    let file = std::fs::read_to_string("zones/db.zone").expect("zones/db.zone");
    assert_eq!(shown[0].join("\n") + "\n", file);
}

/// The README's example error is what `beacon check` and the server say
/// when that example breaks.
#[test]
fn readme_error_example_is_what_check_prints() {
    let warn = blocks("text")
        .into_iter()
        .flatten()
        .find(|l| l.contains("WARN"))
        .expect("the WARN example in a text block");
    let base = tempfile::tempdir().expect("temp dir");
    let zones = base.path().join("zones");
    std::fs::create_dir(&zones).expect("mkdir");
    let broken = std::fs::read_to_string("zones/db.zone")
        .expect("zones/db.zone")
        .replace("IN A     10.1.0.12\n", "IN A     10.1.0.300\n");
    std::fs::write(zones.join("db.zone"), broken).expect("write");
    let out = Command::new(BEACON)
        .arg("check")
        .arg(&zones)
        .output()
        .expect("check");
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let problem = stdout.lines().next().expect("a problem line");
    assert!(
        warn.contains(problem),
        "README shows {warn:?}, check printed {problem:?}"
    );
}

/// The configuration table documents every flag `beacon serve` and
/// `beacon beat` take, so the README cannot fall behind `--help`.
#[test]
fn readme_documents_every_flag() {
    for command in ["serve", "beat"] {
        let out = Command::new(BEACON)
            .args([command, "--help"])
            .output()
            .expect("run --help");
        let help = String::from_utf8_lossy(&out.stdout);
        let flags: Vec<&str> = help
            .split_whitespace()
            .filter(|w| w.starts_with("--") && w.len() > 2)
            .map(|w| w.trim_end_matches([',', '.', ')', ':', ';']))
            .filter(|w| *w != "--help")
            .collect();
        assert!(flags.len() > 5, "{command} --help lists flags: {help}");
        for flag in flags {
            let flag = flag.split(['=', '<']).next().unwrap_or(flag);
            assert!(
                README.contains(&format!("`{flag}")),
                "README does not document `beacon {command} {flag}`"
            );
        }
    }
}

/// The block of `lang` whose text contains `needle`.
fn block_with(lang: &str, needle: &str) -> String {
    blocks(lang)
        .into_iter()
        .map(|b| b.join("\n"))
        .find(|b| b.contains(needle))
        .unwrap_or_else(|| panic!("no {lang} block with {needle:?}"))
}

/// The worked example's tag is what the README's key makes of its bytes,
/// in both of the key's forms.
#[test]
fn readme_signed_example_recomputes() {
    let example = blocks("text")
        .into_iter()
        .flatten()
        .find(|l| l.starts_with("beacon/1 ") && l.contains(" auth="))
        .expect("a signed heartbeat in a text block");
    let (body, tag) = example.rsplit_once(" auth=").expect("auth field");
    // The key files (the secondaries' configs are conf blocks too).
    let keys: Vec<_> = blocks("conf")
        .into_iter()
        .filter(|block| !block.iter().any(|l| l.contains("zone")))
        .collect();
    assert_eq!(keys.len(), 2, "the key as a BIND block and as a Knot line");
    for key_file in keys {
        let keys = beacon::keys::parse(&key_file.join("\n"), std::path::Path::new("README"))
            .expect("the README's key parses");
        assert_eq!(keys.len(), 1);
        assert_eq!(&**keys[0].name(), "web-team");
        let computed =
            data_encoding::BASE64URL_NOPAD.encode(keys[0].sign(body.as_bytes()).as_ref());
        assert_eq!(computed, tag, "README's tag for {body:?}");
    }
    let decoded = beacon::intake::wire::decode_signed(example.as_bytes()).expect("decodes");
    assert_eq!(decoded.signature.map(|s| s.ts), Some(1_764_547_200_000));
}

/// The signed-heartbeat commands as written: keygen, serve with the key
/// and a scope, beat with the key file, then the openssl and Python
/// snippets, run in a folder holding the generated key.
#[test]
fn readme_signed_heartbeats_run_as_written() {
    if !(have_tool("openssl") && have_tool("python3")) {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let commands = block_with("sh", "beacon keygen web-team");
    let lines: Vec<&str> = commands.lines().collect();
    assert_eq!(lines.len(), 3, "keygen, serve, beat");
    let in_dir = |command: &str| {
        let command = command.replacen("beacon ", &format!("{BEACON} "), 1);
        let status = Command::new("bash")
            .args(["-c", &command])
            .current_dir(dir.path())
            .status()
            .expect("bash");
        assert!(status.success(), "{command}");
    };
    in_dir(lines[0]);

    let key_file = dir.path().join("web-team.key").display().to_string();
    let serve: Vec<String> = lines[1]
        .strip_prefix("beacon serve ")
        .expect("a serve command")
        .split_whitespace()
        .map(|w| w.trim_matches('\'').replace("web-team.key", &key_file))
        .collect();
    let serve: Vec<&str> = serve.iter().map(String::as_str).collect();
    let server = TestServer::start(&serve);
    server.wait_for_log("heartbeats are authenticated auth=required keys=web-team");

    let beat = lines[2].replacen("beacon ", &format!("{BEACON} "), 1);
    let mut beat = common::spawn_quiet(
        Command::new("bash")
            .args([
                "-c",
                &format!("exec {beat} --server {} --interval 0.5", server.heartbeat),
            ])
            .current_dir(dir.path()),
    );
    server.await_reply("web-1.web.svc.internal.", RecordType::A, |m| {
        !m.answers.is_empty()
    });

    let heartbeat_port = server.heartbeat.port().to_string();
    in_dir(&block_with("sh", "openssl dgst").replace("5301", &heartbeat_port));
    let python = block_with("python", "hmac").replace("5301", &heartbeat_port);
    let status = Command::new("python3")
        .args(["-c", &python])
        .current_dir(dir.path())
        .status()
        .expect("python3");
    assert!(status.success());
    server.await_reply("_web._tcp.svc.internal.", RecordType::SRV, |m| {
        m.answers.len() == 3
    });
    signal(beat.id(), "TERM");
    assert!(beat.wait().expect("wait").success());
    server.wait_for_log("deregistered service=web instance=web-1");
    let log = server.log();
    for instance in ["web-1", "web-2", "web-3"] {
        assert!(
            log.contains(&format!(
                "registered service={instance_service} instance={instance}",
                instance_service = "web"
            )),
            "{instance} never registered:\n{log}"
        );
    }
    assert_eq!(
        log.matches("key=web-team reason=\"first heartbeat\"")
            .count(),
        3,
        "{log}"
    );
    assert!(!log.contains("refused a heartbeat"), "{log}");
}

/// The snapshot shown in the README is one the server reads.
#[test]
fn readme_snapshot_example_reads() {
    let example = block_with("text", "beacon-registry 1");
    let snapshot = beacon::state::snapshot::decode(format!("{example}\n").as_bytes())
        .expect("the README's snapshot reads");
    assert_eq!(snapshot.instances.len(), 2);
    assert_eq!(snapshot.gone.len(), 1);
    assert_eq!(
        snapshot.instances[1].signer.key.as_deref(),
        Some("web-team")
    );
}
