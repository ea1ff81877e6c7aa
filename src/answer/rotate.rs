//! Load spreading: the order in which one answer lists an RRset's members.
//!
//! Takes an [`RrSet`] from the view; produces a per-answer order of its
//! members. It never reorders the view itself: every answer gets its own list
//! of references, so concurrent queries cannot disturb each other or the
//! snapshot.
//!
//! - Equal priority and weight everywhere: round-robin. Successive answers
//!   start one member further on, so over any `n` consecutive answers each of
//!   the `n` members comes first exactly once.
//! - Otherwise RFC 2782: priority groups in ascending order; inside a group
//!   with equal weights, round-robin; inside a group with unequal weights,
//!   repeated weighted random selection (zero weights first, running sums),
//!   so the first record is chosen with probability proportional to its
//!   weight. RFC 2782 draws the random number from `0..=sum`, which favours
//!   the first nonzero member by one part in `sum + 1`; we draw from
//!   `1..=sum` unless zero-weight members remain, and only those can win a
//!   draw of 0, which gives them the RFC's "very small chance" without
//!   skewing the others.

use crate::view::{Member, Policy, RrSet};

/// What ordering needs to know about an RRset member: its RFC 2782
/// priority and weight. Members of the view and the fast path's
/// pre-encoded records both have them.
pub trait Ranked {
    /// Lower comes first.
    fn priority(&self) -> u16;
    /// Share of first places within a priority.
    fn weight(&self) -> u16;
}

impl Ranked for Member {
    fn priority(&self) -> u16 {
        self.priority
    }
    fn weight(&self) -> u16 {
        self.weight
    }
}

/// The members of `set` in the order this answer should list them.
pub fn order(set: &RrSet) -> Vec<&Member> {
    order_by(&set.members, set.policy, set.cursor.next())
}

/// `items` (sorted by priority) in the order one answer should list them,
/// under `policy`, with `offset` taken from the RRset's cursor.
pub fn order_by<T: Ranked>(items: &[T], policy: Policy, offset: usize) -> Vec<&T> {
    let mut out = Vec::with_capacity(items.len());
    match policy {
        Policy::Fixed => out.extend(items.iter()),
        Policy::RoundRobin => rotated_into(items, offset, &mut out),
        Policy::Weighted => {
            for group in items.chunk_by(|a, b| a.priority() == b.priority()) {
                if group.windows(2).all(|w| w[0].weight() == w[1].weight()) {
                    rotated_into(group, offset, &mut out);
                } else {
                    weighted_into(group, &mut out, |lo, hi| fastrand::u32(lo..=hi));
                }
            }
        }
    }
    out
}

fn rotated_into<'a, T>(members: &'a [T], offset: usize, out: &mut Vec<&'a T>) {
    if members.is_empty() {
        return;
    }
    let (head, tail) = members.split_at(offset % members.len());
    out.extend(tail.iter().chain(head.iter()));
}

/// RFC 2782 weighted ordering of one priority group; `pick(lo, hi)` returns
/// a uniform random number in `lo..=hi` (injectable for tests).
fn weighted_into<'a, T: Ranked>(
    group: &'a [T],
    out: &mut Vec<&'a T>,
    mut pick: impl FnMut(u32, u32) -> u32,
) {
    // Zero weights first, as the RFC asks; otherwise stored order.
    let mut remaining: Vec<&T> = group.iter().filter(|m| m.weight() == 0).collect();
    remaining.extend(group.iter().filter(|m| m.weight() != 0));
    while !remaining.is_empty() {
        let sum: u32 = remaining.iter().map(|m| u32::from(m.weight())).sum();
        let lowest = if remaining[0].weight() == 0 { 0 } else { 1 };
        let target = pick(lowest.min(sum), sum);
        let mut running = 0;
        let chosen = remaining
            .iter()
            .position(|m| {
                running += u32::from(m.weight());
                running >= target
            })
            .unwrap_or(remaining.len() - 1);
        out.push(remaining.remove(chosen));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::{Name, RData, Record, rdata::A};

    fn member(last_octet: u8, priority: u16, weight: u16) -> Member {
        Member {
            record: Record::from_rdata(Name::root(), 5, RData::A(A::new(10, 0, 0, last_octet))),
            priority,
            weight,
            glue: Vec::new(),
        }
    }

    fn first_octets(order: &[&Member]) -> Vec<u8> {
        order
            .iter()
            .map(|m| match &m.record.data {
                RData::A(a) => a.0.octets()[3],
                _ => 0,
            })
            .collect()
    }

    #[test]
    fn weighted_pick_follows_running_sums() {
        let group = [member(1, 0, 0), member(2, 0, 1), member(3, 0, 3)];
        // sum 4; target 0 → the zero-weight member (running sum 0 >= 0).
        let mut out = Vec::new();
        weighted_into(&group, &mut out, |lo, _| lo);
        assert_eq!(first_octets(&out), [1, 2, 3]);
        // target = sum each time → always the last remaining one.
        let mut out = Vec::new();
        weighted_into(&group, &mut out, |_, hi| hi);
        assert_eq!(first_octets(&out), [3, 2, 1]);
        // target 2 of 4 → member 3 (running sums 0, 1, 4); then 0 → the
        // zero-weight member.
        let mut out = Vec::new();
        let mut targets = [2, 0, 1].into_iter();
        weighted_into(&group, &mut out, |_, _| targets.next().unwrap_or(0));
        assert_eq!(first_octets(&out), [3, 1, 2]);
    }

    #[test]
    fn rotation_does_not_mutate_the_rrset() {
        use hickory_proto::rr::RecordType;
        for weights in [[1, 1, 1], [1, 2, 3]] {
            let members = weights
                .iter()
                .zip(1..)
                .map(|(w, i)| member(i, 0, *w))
                .collect();
            let set = RrSet::new(RecordType::A, members, true);
            let before = first_octets(&set.members.iter().collect::<Vec<_>>());
            let mut firsts = std::collections::HashSet::new();
            for _ in 0..60 {
                let order = order(&set);
                assert_eq!(order.len(), 3);
                firsts.insert(first_octets(&order)[0]);
            }
            assert_eq!(firsts.len(), 3, "every member led at least once");
            assert_eq!(
                first_octets(&set.members.iter().collect::<Vec<_>>()),
                before
            );
        }
    }
}
