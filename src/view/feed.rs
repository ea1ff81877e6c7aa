//! The bridge from zone fragments to views: the static layer, kept current.
//!
//! Takes each new version of the [`StaticZone`] from the watcher thread
//! and the current view; puts the static zone on a watch channel, which
//! the intake task picks up and publishes, and tells the fragment loader
//! which names heartbeats hold (a fragment may not put a CNAME on one). It
//! never reads files itself and never publishes a view: the intake task
//! owns publishing.

use std::sync::Arc;

use hickory_proto::rr::LowerName;
use tokio::sync::watch;

use super::publish::ViewHandle;
use super::{StaticZone, View};
use crate::fragments::LiveNames;
use crate::fragments::watch::Feed;

/// Hands static zones to the intake task, for the watcher thread.
pub struct StaticFeed {
    views: ViewHandle,
    sender: watch::Sender<Arc<StaticZone>>,
}

impl StaticFeed {
    /// A feed sending each new static zone to `sender`; live names come
    /// from `views`.
    pub fn new(views: ViewHandle, sender: watch::Sender<Arc<StaticZone>>) -> Self {
        StaticFeed { views, sender }
    }
}

impl Feed for StaticFeed {
    fn live(&self) -> Box<dyn LiveNames + '_> {
        Box::new(LiveView(self.views.load()))
    }

    fn publish(&mut self, statics: &StaticZone) -> bool {
        self.sender.send(Arc::new(statics.clone())).is_ok()
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
