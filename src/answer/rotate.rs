//! Load spreading: the order in which one answer lists an RRset's members.
//!
//! Takes an [`RrSet`] from the view (or the fast path's encoded members)
//! and how many members the answer can list; produces a per-answer order
//! of at most that many. It never reorders the view itself: every answer
//! gets its own list of references, so concurrent queries cannot disturb
//! each other or the snapshot.
//!
//! - Equal priority and weight everywhere: round-robin. Successive answers
//!   start one member further on, so over any `n` consecutive answers each of
//!   the `n` members comes first exactly once. O(listed).
//! - Otherwise RFC 2782: priority groups in ascending order; inside a group
//!   with equal weights, round-robin; inside a group with unequal weights,
//!   a weighted random order with the distribution of RFC 2782's repeated
//!   selection (each next member picked with probability proportional to
//!   its weight among those left), drawn in one pass: every member gets an
//!   exponential random key with rate equal to its weight, and the members
//!   are listed by key (Efraimidis and Spirakis' weighted sampling). That is
//!   O(n log n) instead of the O(n²) of repeated running sums, needs no
//!   sums (nothing overflows), and only the members that will be listed are
//!   sorted. Members of weight 0 come after the others of their group, in
//!   random order (RFC 2782 gives them "a very small chance"; here, none
//!   while a weighted member is left); a group whose weights are all 0 is
//!   shuffled evenly.

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

/// The first `take` members of `set` in the order this answer should
/// list them.
pub fn order(set: &RrSet, take: usize) -> Vec<&Member> {
    order_by(&set.members, set.policy, set.cursor.next(), take)
}

/// The first `take` of `items` (sorted by priority) in the order one answer
/// should list them, under `policy`, with `offset` taken from the RRset's
/// cursor.
pub fn order_by<T: Ranked>(items: &[T], policy: Policy, offset: usize, take: usize) -> Vec<&T> {
    let take = take.min(items.len());
    let mut out = Vec::with_capacity(take);
    match policy {
        Policy::Fixed => out.extend(items.iter().take(take)),
        Policy::RoundRobin => rotated_into(items, offset, take, &mut out),
        Policy::Weighted => {
            for group in items.chunk_by(|a, b| a.priority() == b.priority()) {
                let left = take - out.len();
                if left == 0 {
                    break;
                }
                if group.windows(2).all(|w| w[0].weight() == w[1].weight()) {
                    rotated_into(group, offset, left, &mut out);
                } else {
                    weighted_into(group, left, &mut out, fastrand::f64);
                }
            }
        }
    }
    out
}

/// The first `take` of `members`, starting at `offset` and wrapping.
fn rotated_into<'a, T>(members: &'a [T], offset: usize, take: usize, out: &mut Vec<&'a T>) {
    if members.is_empty() {
        return;
    }
    let (head, tail) = members.split_at(offset % members.len());
    out.extend(tail.iter().chain(head.iter()).take(take));
}

/// RFC 2782 weighted order of one priority group, its first `take`
/// members only; `uniform` returns a number in `[0, 1)` (injectable for
/// tests).
fn weighted_into<'a, T: Ranked>(
    group: &'a [T],
    take: usize,
    out: &mut Vec<&'a T>,
    mut uniform: impl FnMut() -> f64,
) {
    let all_zero = group.iter().all(|m| m.weight() == 0);
    // An exponential "arrival time" with rate = weight: the member whose
    // time comes first is picked with probability weight / sum, and so on
    // for the rest. Weight 0 arrives after every weighted member.
    let mut keyed: Vec<(bool, f64, &T)> = group
        .iter()
        .map(|m| {
            let weight = if all_zero { 1.0 } else { f64::from(m.weight()) };
            // 1 - u lies in (0, 1]: its logarithm is finite.
            let time = -(1.0 - uniform()).ln();
            (
                weight == 0.0,
                if weight == 0.0 { time } else { time / weight },
                m,
            )
        })
        .collect();
    let by_time =
        |a: &(bool, f64, &T), b: &(bool, f64, &T)| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1));
    if take < keyed.len() {
        // Only the members that will be listed are sorted.
        keyed.select_nth_unstable_by(take, by_time);
        keyed.truncate(take);
    }
    keyed.sort_unstable_by(by_time);
    out.extend(keyed.into_iter().map(|(_, _, m)| m));
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

    /// How often each member (by last octet) comes first in `draws` orders.
    fn firsts(group: &[Member], draws: usize, seed: u64) -> std::collections::BTreeMap<u8, usize> {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut counts = std::collections::BTreeMap::new();
        for _ in 0..draws {
            let mut out = Vec::new();
            weighted_into(group, 1, &mut out, || rng.f64());
            *counts.entry(first_octets(&out)[0]).or_insert(0) += 1;
        }
        counts
    }

    #[test]
    fn first_places_follow_the_weights() {
        let group = [member(1, 0, 1), member(2, 0, 3), member(3, 0, 6)];
        let counts = firsts(&group, 100_000, 7);
        for (octet, weight) in [(1, 0.1), (2, 0.3), (3, 0.6)] {
            let share = counts[&octet] as f64 / 100_000.0;
            assert!(
                (share - weight).abs() < 0.01,
                "{octet}: {share} for {weight}"
            );
        }
    }

    #[test]
    fn second_places_follow_rfc_2782_selection_without_replacement() {
        // After the weight-6 member, the weight-1 one is second 1/4 of the
        // time (1 of the 4 left); after the weight-1 member, 3/9.
        let group = [member(1, 0, 1), member(2, 0, 3), member(3, 0, 6)];
        let mut rng = fastrand::Rng::with_seed(11);
        let (mut after_heavy, mut light_second) = (0, 0);
        for _ in 0..100_000 {
            let mut out = Vec::new();
            weighted_into(&group, 3, &mut out, || rng.f64());
            let octets = first_octets(&out);
            if octets[0] == 3 {
                after_heavy += 1;
                if octets[1] == 1 {
                    light_second += 1;
                }
            }
        }
        let share = f64::from(light_second) / f64::from(after_heavy);
        assert!((share - 0.25).abs() < 0.01, "{share}");
    }

    #[test]
    fn zero_weights_come_last_unless_all_are_zero() {
        let group = [member(1, 0, 0), member(2, 0, 5), member(3, 0, 0)];
        let mut rng = fastrand::Rng::with_seed(3);
        for _ in 0..1000 {
            let mut out = Vec::new();
            weighted_into(&group, 3, &mut out, || rng.f64());
            assert_eq!(first_octets(&out)[0], 2);
        }
        let zeros = [member(1, 0, 0), member(2, 0, 0)];
        let counts = firsts(&zeros, 10_000, 5);
        assert!(counts[&1] > 4_500 && counts[&2] > 4_500, "{counts:?}");
    }

    #[test]
    fn only_what_is_listed_is_ordered_and_priorities_come_first() {
        let members: Vec<Member> = (0..50)
            .map(|i| member(i, u16::from(i / 10), u16::from(i % 3) + 1))
            .collect();
        let set = RrSet::new(hickory_proto::rr::RecordType::A, members, true);
        assert_eq!(set.policy, Policy::Weighted);
        let listed = order(&set, 12);
        assert_eq!(listed.len(), 12);
        // Priority 0 (octets 0..10) first, then two of priority 1.
        let octets = first_octets(&listed);
        assert!(octets[..10].iter().all(|o| *o < 10), "{octets:?}");
        assert!(
            octets[10..].iter().all(|o| (10..20).contains(o)),
            "{octets:?}"
        );
        // A very large group with large weights: no sum to overflow.
        let heavy: Vec<Member> = (0..2000u16)
            .map(|i| member(1, 0, u16::MAX - i % 2))
            .collect();
        let set = RrSet::new(hickory_proto::rr::RecordType::A, heavy, true);
        assert_eq!(order(&set, usize::MAX).len(), 2000);
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
                let order = order(&set, 3);
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
