//! The audit trail: one INFO line per change to the registry, summed up
//! under a flood.
//!
//! Takes each registry event (registered, changed, drained, deregistered,
//! expired) as it happens; says whether its line may be written now, and
//! writes a summary line for the events it held back. Up to
//! [`AUDIT_LINES_PER_SECOND`] lines a second are written one by one, the
//! rest are counted by kind and summed up once a second, so a flood of
//! registrations or expiries cannot make logging the bottleneck (nor fill
//! the disk). It never touches the registry.

use std::time::Duration;

use tokio::time::Instant;
use tracing::info;

use crate::config::AUDIT_LINES_PER_SECOND;

/// The kinds of audit events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A new instance.
    Registered,
    /// An instance's data changed.
    Changed,
    /// An instance started draining.
    Drained,
    /// An instance said down.
    Deregistered,
    /// An instance's lease ran out.
    Expired,
}

const KINDS: usize = 5;

/// The audit trail's budget and what it held back.
#[derive(Debug)]
pub struct Audit {
    window_start: Option<Instant>,
    written: u32,
    held_back: [u64; KINDS],
}

impl Default for Audit {
    fn default() -> Self {
        Audit {
            window_start: None,
            written: 0,
            held_back: [0; KINDS],
        }
    }
}

impl Audit {
    /// True when the line for an event of `kind` at `now` may be written;
    /// otherwise the event is counted for the next summary.
    pub fn allow(&mut self, kind: Kind, now: Instant) -> bool {
        self.roll(now);
        if self.written < AUDIT_LINES_PER_SECOND {
            self.written += 1;
            true
        } else {
            self.held_back[kind as usize] += 1;
            false
        }
    }

    /// Writes the summary of what was held back once its second is over.
    pub fn flush(&mut self, now: Instant) {
        self.roll(now);
    }

    /// Starts a new second when the current one is over, summing up what
    /// the old one held back.
    fn roll(&mut self, now: Instant) {
        let start = *self.window_start.get_or_insert(now);
        if now.duration_since(start) < Duration::from_secs(1) {
            return;
        }
        let [registered, changed, drained, deregistered, expired] =
            std::mem::take(&mut self.held_back);
        if registered + changed + drained + deregistered + expired > 0 {
            info!(
                registered,
                changed,
                drained,
                deregistered,
                expired,
                "audit lines held back in the last second (over {AUDIT_LINES_PER_SECOND} a second), summed up"
            );
        }
        self.window_start = Some(now);
        self.written = 0;
    }

    /// How many events are held back now (for tests).
    #[cfg(test)]
    fn held(&self) -> u64 {
        self.held_back.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_the_budget_events_are_counted_then_summed_up() {
        let t0 = Instant::now();
        let mut audit = Audit::default();
        let allowed = (0..1000)
            .filter(|_| audit.allow(Kind::Registered, t0))
            .count();
        assert_eq!(allowed, AUDIT_LINES_PER_SECOND as usize);
        assert_eq!(audit.held(), 1000 - u64::from(AUDIT_LINES_PER_SECOND));
        audit.flush(t0 + Duration::from_millis(999));
        assert!(audit.held() > 0);
        audit.flush(t0 + Duration::from_secs(1));
        assert_eq!(audit.held(), 0);
        assert!(audit.allow(Kind::Expired, t0 + Duration::from_secs(1)));
    }
}
