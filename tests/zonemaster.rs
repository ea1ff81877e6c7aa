//! Zonemaster's undelegated test of the zone, run inside a private network
//! namespace so that every query stays on loopback. The README records the
//! outcome; this test keeps it true: the only ERROR or CRITICAL results are
//! the two that cannot apply to one authoritative server on loopback.

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use common::{BEACON, have_tool};

/// Results that cannot apply here, with the README's reason for each.
const NOT_APPLICABLE: &[&str] = &["ADDRESS01", "DELEGATION01"];

const SCRIPT: &str = r#"
ip link set lo up
"$BEACON" serve --dns 127.0.0.1:53 --heartbeat 127.0.0.1:5301 --state-dir off 2>/dev/null &
pid=$!
for _ in $(seq 100); do "$BEACON" beat --once --service web --port 80 --instance w1 --addr 10.0.0.1 2>/dev/null && break; sleep 0.05; done
sleep 0.3
timeout 300 zonemaster-cli --no-ipv6 --ns ns.svc.internal/127.0.0.1 --level NOTICE --show-testcase --no-progress svc.internal
echo "zonemaster-exit=$?"
kill $pid
"#;

#[test]
fn zonemaster_finds_no_error_that_applies() {
    if !(have_tool("zonemaster-cli") && have_tool("unshare")) {
        return;
    }
    let out = Command::new("unshare")
        .args(["--net", "--fork", "bash", "-c", SCRIPT])
        .env("BEACON", BEACON)
        .output()
        .expect("run unshare");
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !stdout.contains("zonemaster-exit=") {
        assert!(
            std::env::var_os("CI").is_none(),
            "could not run zonemaster:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("skipping: cannot create a network namespace here");
        return;
    }
    assert!(stdout.contains("zonemaster-exit=0"), "{stdout}");
    assert!(
        stdout.contains("ZONE"),
        "zonemaster ran no zone tests:\n{stdout}"
    );
    let failing: BTreeSet<&str> = stdout
        .lines()
        .filter(|l| l.contains(" ERROR ") || l.contains(" CRITICAL "))
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    let unexpected: Vec<&&str> = failing
        .iter()
        .filter(|t| !NOT_APPLICABLE.contains(t))
        .collect();
    assert!(
        unexpected.is_empty(),
        "new ERROR/CRITICAL results {unexpected:?}:\n{stdout}"
    );
    let readme = include_str!("../README.md");
    for testcase in NOT_APPLICABLE {
        assert!(readme.contains(testcase), "README must explain {testcase}");
    }
}
