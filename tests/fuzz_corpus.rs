//! Every file of the fuzz corpora (`fuzz/corpus/<target>/`: the seeds, and
//! what fuzzing runs found worth keeping) replayed through the same entry
//! points the cargo-fuzz targets call (`beacon::fuzz`), on stable, so a
//! regression an old fuzz run caught fails `cargo test`.

use std::path::Path;

fn replay(target: &str, entry: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("corpus entry").path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} holds no corpus", dir.display());
    for file in &files {
        let data = std::fs::read(file).expect("corpus file");
        let outcome = std::panic::catch_unwind(|| entry(&data));
        assert!(outcome.is_ok(), "{} fails its target", file.display());
    }
}

#[test]
fn heartbeat_corpus() {
    replay("heartbeat", beacon::fuzz::heartbeat);
}

#[test]
fn fragment_corpus() {
    replay("fragment", beacon::fuzz::fragment);
}

#[test]
fn query_corpus() {
    replay("query", beacon::fuzz::query);
}

#[test]
fn tcp_framing_corpus() {
    replay("tcp_framing", beacon::fuzz::tcp_framing);
}

#[test]
fn snapshot_corpus() {
    replay("snapshot", beacon::fuzz::snapshot);
}

#[test]
fn update_corpus() {
    replay("update", beacon::fuzz::update);
}
