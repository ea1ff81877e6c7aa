//! Zone fragments, changed the ways editors and tools change them, with a
//! DNS query after each change; broken files keep the last good data.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{BEACON, TestServer, assert_status, lines, rdatas, signal};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use tempfile::TempDir;

/// A zones folder in a fresh temporary directory.
struct Zones {
    dir: TempDir,
}

impl Zones {
    fn new() -> Zones {
        Zones {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes in place (truncate and write), as `echo >` or many tools do.
    fn write(&self, name: &str, text: &str) {
        let path = self.path(name);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("mkdir");
        }
        fs::write(path, text).expect("write");
    }

    /// Writes a temporary file, then renames it over the target, as vim,
    /// editors with atomic save, and configuration tools do.
    fn write_and_rename(&self, name: &str, text: &str) {
        let temp = self.path(&format!(".{name}.tmp"));
        fs::write(&temp, text).expect("write temp");
        fs::rename(&temp, self.path(name)).expect("rename");
    }

    fn remove(&self, name: &str) {
        fs::remove_file(self.path(name)).expect("remove");
    }

    fn serve(&self, extra: &[&str]) -> TestServer {
        let dir = self.dir.path().to_str().expect("utf-8 path");
        let mut args = vec!["--zones", dir];
        args.extend_from_slice(extra);
        TestServer::start(&args)
    }

    fn check(&self) -> (bool, String) {
        let out = Command::new(BEACON)
            .args(["check", self.dir.path().to_str().expect("path")])
            .output()
            .expect("run check");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }
}

fn sorted_rdatas(m: &Message) -> Vec<String> {
    let mut v = rdatas(&m.answers);
    v.sort();
    v
}

fn a_is(server: &TestServer, name: &str, expected: &[&str]) -> Message {
    server.await_reply(name, RecordType::A, |m| sorted_rdatas(m) == expected)
}

#[test]
fn every_kind_of_edit_takes_effect() {
    let zones = Zones::new();
    zones.write("db.zone", "db A 10.1.0.1\n");
    let server = zones.serve(&[]);
    a_is(&server, "db.svc.internal.", &["10.1.0.1"]);

    // Write in place.
    zones.write("db.zone", "db A 10.1.0.2\n");
    a_is(&server, "db.svc.internal.", &["10.1.0.2"]);

    // Write to a temporary file, then rename over.
    zones.write_and_rename("db.zone", "db A 10.1.0.3\ndb A 10.1.0.4\n");
    a_is(&server, "db.svc.internal.", &["10.1.0.3", "10.1.0.4"]);

    // A new file in a new subfolder.
    zones.write("teams/payments/api.zone", "api.payments A 10.2.0.1\n");
    a_is(&server, "api.payments.svc.internal.", &["10.2.0.1"]);

    // Rename a file: same records, new path.
    fs::rename(zones.path("db.zone"), zones.path("database.zone")).expect("rename");
    std::thread::sleep(std::time::Duration::from_millis(200));
    a_is(&server, "db.svc.internal.", &["10.1.0.3", "10.1.0.4"]);

    // Delete: its records are gone.
    zones.remove("database.zone");
    let gone = server.await_reply("db.svc.internal.", RecordType::A, |m| m.answers.is_empty());
    assert_status(&gone, ResponseCode::NXDomain, true);
    a_is(&server, "api.payments.svc.internal.", &["10.2.0.1"]);

    // Files not named *.zone are not fragments.
    zones.write("notes.txt", "db A 10.9.9.9\n");
    zones.write("backup.zone~", "db A 10.9.9.9\n");
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(
        server
            .query("db.svc.internal.", RecordType::A)
            .answers
            .is_empty()
    );
}

#[test]
fn a_burst_of_edits_ends_on_the_last_version() {
    let zones = Zones::new();
    zones.write("burst.zone", "burst A 10.0.0.1\n");
    let server = zones.serve(&[]);
    a_is(&server, "burst.svc.internal.", &["10.0.0.1"]);
    let serial = server.serial();
    for i in 0..100 {
        let text = format!("burst A 10.0.1.{i}\n");
        if i % 2 == 0 {
            zones.write("burst.zone", &text);
        } else {
            zones.write_and_rename("burst.zone", &text);
        }
    }
    a_is(&server, "burst.svc.internal.", &["10.0.1.99"]);
    assert!(
        server.serial() > serial,
        "the serial grows when fragments change"
    );
}

#[test]
fn a_broken_file_keeps_its_last_good_version_and_check_names_the_line() {
    let zones = Zones::new();
    zones.write("web.zone", "$TTL 60\nwww A 10.0.0.1\nwww A 10.0.0.2\n");
    zones.write("other.zone", "other TXT \"fine\"\n");
    let server = zones.serve(&[]);
    a_is(&server, "www.svc.internal.", &["10.0.0.1", "10.0.0.2"]);
    assert!(zones.check().0);

    zones.write("web.zone", "$TTL 60\nwww A 10.0.0.1\nwww A 10.0.0.300\n");
    server.wait_for_log("web.zone:3: network address parse error");
    let reply = server.query("www.svc.internal.", RecordType::A);
    assert_eq!(sorted_rdatas(&reply), ["10.0.0.1", "10.0.0.2"]);

    let (ok, report) = zones.check();
    assert!(!ok, "check must fail on a broken file");
    assert!(
        report.contains("web.zone:3: network address parse error"),
        "{report}"
    );
    assert!(report.contains("1 problems"), "{report}");

    // The fix is picked up.
    zones.write("web.zone", "$TTL 60\nwww A 10.0.0.3\n");
    a_is(&server, "www.svc.internal.", &["10.0.0.3"]);
    assert!(zones.check().0);
}

#[test]
fn a_file_that_never_loaded_serves_nothing_until_fixed() {
    let zones = Zones::new();
    zones.write("bad.zone", "bad A 10.0.0.1\nworse AAAA nonsense\n");
    let server = zones.serve(&[]);
    server.wait_for_log("bad.zone:2:");
    assert_status(
        &server.query("bad.svc.internal.", RecordType::A),
        ResponseCode::NXDomain,
        true,
    );
    zones.write("bad.zone", "bad A 10.0.0.1\n");
    a_is(&server, "bad.svc.internal.", &["10.0.0.1"]);
}

#[test]
fn odd_files_behave_sensibly_and_say_so() {
    let zones = Zones::new();
    zones.write("good.zone", "good A 10.0.0.1\n");
    // Empty: loads, with no records.
    zones.write("empty.zone", "");
    // Binary garbage.
    fs::write(
        zones.path("garbage.zone"),
        [0u8, 159, 146, 150, 0, 1, 2, 255],
    )
    .expect("write");
    // Over the size limit (50 MB, sparse so the test stays fast).
    let big = fs::File::create(zones.path("big.zone")).expect("create");
    big.set_len(50 * 1024 * 1024).expect("grow");
    // A symlink to a file elsewhere, and one to nothing.
    let elsewhere = tempfile::tempdir().expect("temp dir");
    fs::write(elsewhere.path().join("linked.zone"), "linked A 10.0.0.5\n").expect("write");
    std::os::unix::fs::symlink(
        elsewhere.path().join("linked.zone"),
        zones.path("linked.zone"),
    )
    .expect("symlink");
    std::os::unix::fs::symlink("/nonexistent/nowhere.zone", zones.path("dangling.zone"))
        .expect("symlink");
    // Something that is not a regular file (reading a FIFO would block).
    let fifo = zones.path("pipe.zone");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo")
            .success()
    );
    // Unreadable: permissions (ignored when tests run as root).
    zones.write("secret.zone", "secret A 10.0.0.9\n");
    fs::set_permissions(
        zones.path("secret.zone"),
        std::os::unix::fs::PermissionsExt::from_mode(0o000),
    )
    .expect("chmod");
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout == b"0\n");

    let server = zones.serve(&[]);
    a_is(&server, "good.svc.internal.", &["10.0.0.1"]);
    a_is(&server, "linked.svc.internal.", &["10.0.0.5"]);
    server.wait_for_log("file=");
    let log = server.log();
    assert!(log.contains("empty.zone records=0"), "{log}");
    assert!(log.contains("garbage.zone:1: not a text file"), "{log}");
    assert!(
        log.contains("big.zone: file is 50.0 MiB, over the 16 MiB limit"),
        "{log}"
    );
    assert!(log.contains("dangling.zone: broken symlink"), "{log}");
    assert!(log.contains("pipe.zone: not a regular file"), "{log}");
    if !root {
        assert!(log.contains("secret.zone: cannot read"), "{log}");
    }

    let (ok, report) = zones.check();
    assert!(!ok);
    for expected in [
        "garbage.zone:1:",
        "big.zone:",
        "dangling.zone:",
        "pipe.zone:",
    ] {
        assert!(report.contains(expected), "{expected} not in {report}");
    }
}

/// How often each record of `name`'s A RRset comes first in `queries`
/// answers, in descending order.
fn leads(server: &TestServer, name: &str, queries: usize) -> Vec<usize> {
    let mut firsts = std::collections::HashMap::new();
    for _ in 0..queries {
        let reply = server.query(name, RecordType::A);
        *firsts.entry(reply.answers[0].data.to_string()).or_insert(0) += 1;
    }
    let mut counts: Vec<usize> = firsts.into_values().collect();
    counts.sort_unstable_by(|a, b| b.cmp(a));
    counts
}

#[test]
fn static_and_live_data_share_names_and_rotate_together() {
    let zones = Zones::new();
    zones.write(
        "web.zone",
        "$TTL 30\n\
         web A 10.0.0.100\n\
         w1.web A 10.0.0.101\n\
         _db._tcp SRV 0 1 5432 db-static.db\n\
         db-static.db A 10.1.0.100\n",
    );
    let server = zones.serve(&[]);
    server.beat("beacon/1 service=web instance=w1 port=80 addr=10.0.0.1");
    server.beat("beacon/1 service=db instance=d1 port=5432 addr=10.1.0.1");
    let a = a_is(&server, "web.svc.internal.", &["10.0.0.1", "10.0.0.100"]);
    // One TTL for the merged RRset: min(30, answer TTL 5).
    assert!(a.answers.iter().all(|r| r.ttl == 5), "{:?}", a.answers);
    let srv = server.await_reply("_db._tcp.svc.internal.", RecordType::SRV, |m| {
        m.answers.len() == 2
    });
    let mut glue = rdatas(&srv.additionals);
    glue.sort();
    assert_eq!(glue, ["10.1.0.1", "10.1.0.100"]);

    // Both lead equally often.
    assert_eq!(leads(&server, "web.svc.internal.", 40), [20, 20]);
    // Also at the instance's own name, where a static A joins its address.
    a_is(&server, "w1.web.svc.internal.", &["10.0.0.1", "10.0.0.101"]);
    assert_eq!(leads(&server, "w1.web.svc.internal.", 40), [20, 20]);

    // When the instance leaves, the static records stay.
    server.beat("beacon/1 service=web instance=w1 port=80 state=down");
    a_is(&server, "web.svc.internal.", &["10.0.0.100"]);
    a_is(&server, "w1.web.svc.internal.", &["10.0.0.101"]);
}

#[test]
fn records_that_cannot_coexist_are_refused_with_both_places() {
    let zones = Zones::new();
    zones.write("a.zone", "alias CNAME db\n");
    let server = zones.serve(&[]);
    server.beat("beacon/1 service=web instance=w1 port=80 addr=10.0.0.1");
    server.await_reply("web.svc.internal.", RecordType::A, |m| {
        !m.answers.is_empty()
    });

    // CNAME beside other data in another file.
    zones.write("b.zone", "alias TXT \"no\"\n");
    server.wait_for_log("b.zone:1: TXT at alias.svc.internal. cannot coexist with the CNAME at");
    // In the same file.
    zones.write("c.zone", "x CNAME db\nx A 10.0.0.1\n");
    server.wait_for_log("c.zone:1: CNAME at x.svc.internal. cannot coexist with A at");
    // CNAME on a live service's name.
    zones.write("d.zone", "web CNAME db\n");
    server.wait_for_log(
        "d.zone:1: CNAME at web.svc.internal. cannot coexist with the live name web.svc.internal.",
    );
    assert_eq!(
        rdatas(&server.query("web.svc.internal.", RecordType::A).answers),
        ["10.0.0.1"]
    );
    // A heartbeat for a name a CNAME holds is refused, naming the file.
    server.beat("beacon/1 service=alias instance=a1 port=80 addr=10.0.0.2");
    server.wait_for_log("alias.svc.internal. is a CNAME at");
    let reply = server.query("alias.svc.internal.", RecordType::A);
    assert_eq!(
        lines(&reply.answers),
        ["alias.svc.internal. 3600 IN CNAME db.svc.internal."]
    );
    // The SOA is the server's; names outside the zone are errors.
    zones.write(
        "e.zone",
        "@ SOA ns hostmaster 1 2 3 4 5\nexample.com. A 10.0.0.1\n",
    );
    server.wait_for_log("e.zone:1: SOA records are not allowed");
    server.wait_for_log("e.zone:2: example.com. is outside the served zone");
}

#[test]
fn common_types_answer_and_cnames_are_followed() {
    let zones = Zones::new();
    zones.write(
        "types.zone",
        "$ORIGIN svc.internal.\n\
         $TTL 120\n\
         mail      MX    10 mx1\n\
         mx1       A     10.3.0.1\n\
         @         CAA   0 issue \"letsencrypt.org\"\n\
         1.0.10.in-addr PTR host.svc.internal.\n\
         info      TXT   ( \"a=1\"\n\
         \x20                \"b=2\" )\n\
         v6        AAAA  2001:db8::1\n\
         www       CNAME web\n\
         web       A     10.0.0.1\n\
         ext       CNAME www.example.com.\n\
         loop1     CNAME loop2\n\
         loop2     CNAME loop1\n",
    );
    let server = zones.serve(&[]);
    server.await_reply("v6.svc.internal.", RecordType::AAAA, |m| {
        !m.answers.is_empty()
    });
    let mx = server.query("mail.svc.internal.", RecordType::MX);
    assert_eq!(rdatas(&mx.answers), ["10 mx1.svc.internal."]);
    assert_eq!(
        rdatas(
            &mx.additionals
                .into_iter()
                .filter(|r| r.record_type() == RecordType::A)
                .collect::<Vec<_>>()
        ),
        ["10.3.0.1"]
    );
    assert_eq!(
        server.query("svc.internal.", RecordType::CAA).answers.len(),
        1
    );
    let ptr = server.query("1.0.10.in-addr.svc.internal.", RecordType::PTR);
    assert_eq!(rdatas(&ptr.answers), ["host.svc.internal."]);
    assert_eq!(
        server
            .query("info.svc.internal.", RecordType::TXT)
            .answers
            .len(),
        1
    );

    // In-zone CNAME: the chain and the target's records, AA set.
    let www = server.query("www.svc.internal.", RecordType::A);
    assert_status(&www, ResponseCode::NoError, true);
    assert_eq!(
        lines(&www.answers),
        [
            "www.svc.internal. 120 IN CNAME web.svc.internal.",
            "web.svc.internal. 120 IN A 10.0.0.1"
        ]
    );
    // Asking for the CNAME itself.
    assert_eq!(
        server
            .query("www.svc.internal.", RecordType::CNAME)
            .answers
            .len(),
        1
    );
    // Target without the type: CNAME plus the SOA.
    let nodata = server.query("www.svc.internal.", RecordType::AAAA);
    assert_eq!(nodata.answers.len(), 1);
    assert_eq!(nodata.authorities[0].record_type(), RecordType::SOA);
    // Out-of-zone target: just the CNAME.
    assert_eq!(
        rdatas(&server.query("ext.svc.internal.", RecordType::A).answers),
        ["www.example.com."]
    );
    // A loop ends without hanging.
    let looped = server.query("loop1.svc.internal.", RecordType::A);
    assert!(looped.answers.len() >= 2);
}

#[test]
fn delegations_give_referrals() {
    let zones = Zones::new();
    zones.write(
        "sub.zone",
        "lab NS ns1.lab\n\
         ns1.lab A 10.5.0.53\n",
    );
    let server = zones.serve(&[]);
    let reply = server.await_reply("host.lab.svc.internal.", RecordType::A, |m| {
        !m.authorities.is_empty()
    });
    assert_status(&reply, ResponseCode::NoError, false);
    assert!(reply.answers.is_empty());
    assert_eq!(
        lines(&reply.authorities),
        ["lab.svc.internal. 3600 IN NS ns1.lab.svc.internal."]
    );
    assert!(
        lines(&reply.additionals)
            .contains(&"ns1.lab.svc.internal. 3600 IN A 10.5.0.53".to_string())
    );
    // Heartbeats cannot put names under the delegation.
    zones.write("hidden.zone", "www.lab TXT \"hidden\"\n");
    server.wait_for_log("hidden.zone:1: TXT at www.lab.svc.internal. is hidden by the delegation of lab.svc.internal.");
}

#[test]
fn rescan_and_sighup_catch_what_the_watcher_cannot_see() {
    // The folder does not exist at start, so nothing can be watched: the
    // periodic rescan finds it.
    let parent = tempfile::tempdir().expect("temp dir");
    let dir = parent.path().join("zones");
    let dir_str = dir.to_str().expect("path").to_string();
    let server = TestServer::start(&["--zones", &dir_str, "--rescan", "0.3"]);
    fs::create_dir(&dir).expect("mkdir");
    fs::write(dir.join("late.zone"), "late A 10.0.0.7\n").expect("write");
    a_is(&server, "late.svc.internal.", &["10.0.0.7"]);

    // SIGHUP re-reads everything at once.
    let parent2 = tempfile::tempdir().expect("temp dir");
    let dir2 = parent2.path().join("zones");
    let server2 = TestServer::start(&["--zones", dir2.to_str().expect("path"), "--rescan", "3600"]);
    fs::create_dir(&dir2).expect("mkdir");
    fs::write(dir2.join("hup.zone"), "hup A 10.0.0.8\n").expect("write");
    std::thread::sleep(std::time::Duration::from_millis(100));
    signal(server2.pid(), "HUP");
    a_is(&server2, "hup.svc.internal.", &["10.0.0.8"]);
    server2.wait_for_log("SIGHUP: reloading every zone fragment");
}

#[test]
fn check_reports_what_it_loaded() {
    let zones = Zones::new();
    zones.write("a.zone", "a A 10.0.0.1\na A 10.0.0.2\n");
    zones.write("sub/b.zone", "b TXT \"x\"\n");
    let (ok, report) = zones.check();
    assert!(ok, "{report}");
    assert!(
        report.contains(": 2 files, 3 records, 2 names loaded for svc.internal.; no problems"),
        "{report}"
    );
    // The repository's example folder is clean.
    let out = Command::new(BEACON)
        .args(["check", "zones"])
        .output()
        .expect("check");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(Path::new("zones").is_dir());
}

/// A file rewritten in place the slow way (open with truncation, write the
/// first line, pause, write the rest) is never served half-written: names
/// the file keeps answer every time, and a broken rewrite keeps the last
/// good version.
#[test]
fn files_rewritten_in_place_are_read_only_when_whole() {
    use std::io::Write;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    /// Rewrites `path` in place the slow way: truncate, first line, pause,
    /// the rest.
    fn slow_rewrite(path: &Path, rest: &str) {
        let mut file = fs::File::create(path).expect("open for rewrite");
        file.write_all(b"$TTL 60\n").expect("first line");
        file.flush().expect("flush");
        std::thread::sleep(Duration::from_millis(20));
        file.write_all(rest.as_bytes()).expect("rest");
    }

    let zones = Zones::new();
    let body = |round: usize| {
        format!(
            "kept A 10.0.0.1\nalso A 10.0.0.2\nround A 10.9.{}.{}\n",
            round / 250,
            round % 250
        )
    };
    zones.write("slow.zone", &format!("$TTL 60\n{}", body(0)));
    let server = zones.serve(&[]);
    a_is(&server, "kept.svc.internal.", &["10.0.0.1"]);

    let done = Arc::new(AtomicBool::new(false));
    let path = zones.path("slow.zone");
    let writer = {
        let done = done.clone();
        std::thread::spawn(move || {
            for round in 1..=50 {
                // Every fifth rewrite is broken: the last good one stays.
                let rest = if round % 5 == 0 {
                    "kept A 10.0.0.1\nalso A 10.0.0.300\n".to_string()
                } else {
                    body(round)
                };
                slow_rewrite(&path, &rest);
                // Mostly time for the whole version to load before the next
                // rewrite; every other one starts right after the close.
                let gap = if round % 2 == 1 { 2 } else { 30 };
                std::thread::sleep(Duration::from_millis(gap));
            }
            done.store(true, Ordering::Relaxed);
        })
    };
    let (mut answers, mut nxdomain) = (0, 0);
    while !done.load(Ordering::Relaxed) {
        for name in ["kept.svc.internal.", "also.svc.internal."] {
            let reply = server.query(name, RecordType::A);
            answers += 1;
            if reply.metadata.response_code == ResponseCode::NXDomain || reply.answers.is_empty() {
                nxdomain += 1;
            }
        }
    }
    writer.join().expect("writer");
    assert!(answers > 200, "only {answers} answers");
    assert_eq!(
        nxdomain,
        0,
        "{nxdomain} of {answers} answers missed a kept name\n{}",
        server.log()
    );
    server.wait_for_log("slow.zone:3: network address parse error");
    // Then, one at a time: a whole version serves; a broken one after it
    // (its bad line at line 5, seen nowhere before) leaves it serving.
    let path = zones.path("slow.zone");
    slow_rewrite(&path, &body(999));
    a_is(&server, "round.svc.internal.", &["10.9.3.249"]);
    slow_rewrite(&path, "kept A 10.0.0.1\n\n\nalso A 10.0.0.300\n");
    server.wait_for_log("slow.zone:5: network address parse error");
    a_is(&server, "round.svc.internal.", &["10.9.3.249"]);
    a_is(&server, "also.svc.internal.", &["10.0.0.2"]);
}

/// The number of inotify watches `pid` holds.
fn inotify_watches(pid: u32) -> usize {
    let mut watches = 0;
    for entry in fs::read_dir(format!("/proc/{pid}/fdinfo")).expect("fdinfo") {
        let text = fs::read_to_string(entry.expect("entry").path()).unwrap_or_default();
        watches += text
            .lines()
            .filter(|l| l.starts_with("inotify wd:"))
            .count();
    }
    watches
}

/// A symlinked folder inside the zones folder is neither loaded nor
/// watched: linking a big tree costs nothing.
#[test]
fn symlinked_folders_are_not_walked() {
    let zones = Zones::new();
    zones.write("own.zone", "own A 10.0.0.1\n");
    zones.write("sub/nested.zone", "nested A 10.0.0.2\n");
    let tree = tempfile::tempdir().expect("temp dir");
    for i in 0..300 {
        fs::create_dir_all(tree.path().join(format!("d{i}/e"))).expect("mkdir");
    }
    fs::write(tree.path().join("d0/linked.zone"), "linked A 10.0.0.3\n").expect("write");
    std::os::unix::fs::symlink(tree.path(), zones.path("tree")).expect("symlink");

    let server = zones.serve(&[]);
    a_is(&server, "own.svc.internal.", &["10.0.0.1"]);
    a_is(&server, "nested.svc.internal.", &["10.0.0.2"]);
    let reply = server.query("linked.svc.internal.", RecordType::A);
    assert_status(&reply, ResponseCode::NXDomain, true);
    // The folder and its one real subfolder; none of the 600 linked ones.
    let watches = inotify_watches(server.pid());
    assert!(watches <= 4, "{watches} inotify watches");
    // A new link made while running is not followed either.
    std::os::unix::fs::symlink(tree.path(), zones.path("later")).expect("symlink");
    zones.write("after.zone", "after A 10.0.0.4\n");
    a_is(&server, "after.svc.internal.", &["10.0.0.4"]);
    let watches = inotify_watches(server.pid());
    assert!(watches <= 4, "{watches} inotify watches after a new link");
}

#[test]
fn live_services_answer_while_the_first_load_runs_and_sighups_coalesce() {
    let zones = Zones::new();
    zones.write("static.zone", "www A 10.1.1.1\n");
    // Written a while ago: a reload reads it at once, as it cannot be
    // half written.
    fs::File::options()
        .write(true)
        .open(zones.path("static.zone"))
        .and_then(|f| {
            f.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(60))
        })
        .expect("set mtime");
    // The first load waits while this file exists (a debug-build hook).
    let hold = tempfile::NamedTempFile::new().expect("hold file");
    let hold_spec = format!("first-load:{}", hold.path().display());
    let dir = zones.dir.path().to_str().expect("utf-8 path");
    let server = TestServer::start_with_env(
        &["--zones", dir, "--rescan", "3600"],
        &[("BEACON_TEST_HOLD", &hold_spec)],
    );
    server.beat("beacon/1 service=web instance=a port=80 addr=10.0.0.1");
    server.await_reply("web.svc.internal.", RecordType::A, |m| {
        rdatas(&m.answers) == ["10.0.0.1"]
    });
    // What the fragments may hold cannot be denied yet: SERVFAIL, which
    // resolvers retry, never an NXDOMAIN or NODATA they would cache.
    for (name, rtype) in [
        ("www.svc.internal.", RecordType::A),
        ("nothere.svc.internal.", RecordType::A),
        ("web.svc.internal.", RecordType::TXT),
    ] {
        assert_status(&server.query(name, rtype), ResponseCode::ServFail, false);
        assert_status(
            &server.query_tcp(name, rtype),
            ResponseCode::ServFail,
            false,
        );
    }
    let soa = server.query("svc.internal.", RecordType::SOA);
    assert_status(&soa, ResponseCode::NoError, true);
    assert!(!server.log().contains("zone fragments loaded"));

    // SIGHUPs while loading neither kill the server nor queue a reload
    // each: they come down to one.
    for _ in 0..10 {
        signal(server.pid(), "HUP");
    }
    server.wait_for_log("SIGHUP: reloading every zone fragment");
    drop(hold);
    server.wait_for_log("serving the zone fragments");
    a_is(&server, "www.svc.internal.", &["10.1.1.1"]);
    assert_status(
        &server.query("nothere.svc.internal.", RecordType::A),
        ResponseCode::NXDomain,
        true,
    );
    let reads = || server.log().matches("loaded zone fragment file=").count();
    common::wait_until(std::time::Duration::from_secs(5), || {
        (reads() >= 2).then_some(())
    })
    .expect("the SIGHUP reload");
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(reads(), 2, "{}", server.log());
}
