//! The bridge from zone fragments to views: the static layer, kept current.
//!
//! Takes each new set of good fragments from the watcher thread (with the
//! names whose records changed) and the current view; produces a patched
//! [`StaticZone`] on a watch channel, which the intake task picks up and
//! publishes, and tells the fragment loader which names heartbeats hold
//! (a fragment may not put a CNAME on one). It never reads files itself
//! and never publishes a view: the intake task owns publishing.

use std::sync::Arc;

use hickory_proto::rr::{LowerName, Name};
use tokio::sync::watch;

use super::publish::ViewHandle;
use super::{StaticZone, View};
use crate::fragments::watch::Feed;
use crate::fragments::{FragmentSet, LiveNames, NameSet};

/// Turns fragment sets into static layers, for the watcher thread.
pub struct StaticFeed {
    zone: Name,
    views: ViewHandle,
    current: Arc<StaticZone>,
    sender: watch::Sender<Arc<StaticZone>>,
}

impl StaticFeed {
    /// A feed for `zone`, patching the static layer `sender` holds and
    /// sending each new one there; live names come from `views`.
    pub fn new(zone: Name, views: ViewHandle, sender: watch::Sender<Arc<StaticZone>>) -> Self {
        let current = sender.borrow().clone();
        StaticFeed {
            zone,
            views,
            current,
            sender,
        }
    }
}

impl Feed for StaticFeed {
    fn live(&self) -> Box<dyn LiveNames + '_> {
        Box::new(LiveView(self.views.load()))
    }

    fn publish(&mut self, set: &FragmentSet, changed: &NameSet) -> bool {
        let next = Arc::new(self.current.update(&self.zone, set, changed));
        self.current = next.clone();
        self.sender.send(next).is_ok()
    }
}

/// Names heartbeats hold in one view.
struct LiveView(Arc<View>);

impl LiveNames for LiveView {
    fn at(&self, name: &LowerName) -> Option<String> {
        self.0
            .is_live_owner(name)
            .then(|| format!("the live name {name} (registered by heartbeats)"))
    }

    fn under(&self, name: &LowerName) -> Option<String> {
        self.0
            .live_owner_under(name)
            .map(|n| format!("the live name {n} (registered by heartbeats)"))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};
    use std::path::PathBuf;

    use super::*;
    use crate::fragments::{Loader, NoLiveNames, RescanRequest, Signature};

    /// Reads `whole` (and whatever else changed) at once.
    fn request<'a>(
        whole: &'a HashMap<PathBuf, Option<Signature>>,
        hold: &'a HashSet<PathBuf>,
    ) -> RescanRequest<'a> {
        RescanRequest {
            whole,
            force_all: false,
            hold,
            settle: std::time::Duration::ZERO,
        }
    }

    /// Fragment edits patched in by name give exactly what a fresh build gives.
    #[test]
    fn incremental_reloads_match_a_fresh_load() {
        let dir = tempfile::tempdir().expect("temp dir");
        let zone = Name::from_ascii("svc.internal.").expect("zone");
        let versions = [
            "$TTL 60\na A 10.0.0.1\nb.deep.down A 10.0.0.2\nc CNAME a\n",
            // change one, add a deep name, drop the CNAME, change $TTL
            "$TTL 30\na A 10.0.0.9\nb.deep.down A 10.0.0.2\nx.deep.down A 10.0.0.3\n",
            // remove the deep names: their empty non-terminals must go too
            "$TTL 30\na A 10.0.0.9\n",
            // same records, moved lines, blank owners
            "\n\n$TTL 30\na A 10.0.0.9\n  A 10.0.0.10\n$ORIGIN sub\nm MX 10 a\n",
        ];
        let path = dir.path().join("f.zone");
        let mut loader = Loader::new(dir.path().to_path_buf(), zone.clone());
        let mut statics = StaticZone::default();
        for (i, text) in versions.iter().enumerate() {
            std::fs::write(&path, text).expect("write");
            let whole = HashMap::from([(path.clone(), None)]);
            let rescan = loader.rescan(&request(&whole, &HashSet::new()), &NoLiveNames);
            assert!(
                rescan.problems.is_empty(),
                "version {i}: {:?}",
                rescan.problems
            );
            statics = statics.update(&zone, loader.set(), &rescan.changed_names);
            let fresh = StaticZone::build(&zone, loader.set());
            assert_eq!(statics.dump(), fresh.dump(), "version {i}");
        }
        std::fs::remove_file(&path).expect("remove");
        let rescan = loader.rescan(&request(&HashMap::new(), &HashSet::new()), &NoLiveNames);
        statics = statics.update(&zone, loader.set(), &rescan.changed_names);
        assert!(statics.dump().is_empty(), "{:?}", statics.dump());
    }

    /// A broken version in between does not confuse what changed.
    #[test]
    fn a_failed_version_in_between_keeps_the_diff_right() {
        let dir = tempfile::tempdir().expect("temp dir");
        let zone = Name::from_ascii("svc.internal.").expect("zone");
        let path = dir.path().join("f.zone");
        let mut loader = Loader::new(dir.path().to_path_buf(), zone.clone());
        let mut statics = StaticZone::default();
        for text in [
            "a A 10.0.0.1\nb A 10.0.0.2\n",
            "a A 10.0.0.5\nb A 10.0.0.300\n",
            "a A 10.0.0.5\nb A 10.0.0.2\n",
        ] {
            std::fs::write(&path, text).expect("write");
            let whole = HashMap::from([(path.clone(), None)]);
            let rescan = loader.rescan(&request(&whole, &HashSet::new()), &NoLiveNames);
            statics = statics.update(&zone, loader.set(), &rescan.changed_names);
        }
        assert_eq!(
            statics.dump(),
            StaticZone::build(&zone, loader.set()).dump()
        );
        assert!(statics.dump().iter().any(|l| l.contains("10.0.0.5")));
    }
}
