//! Response rate limiting (RRL) for UDP, in the manner of Knot's and
//! BIND's: a bound on what a spoofed query stream can make the server send
//! to its victim.
//!
//! Takes the client address and the class of each UDP reply (positive,
//! NODATA, NXDOMAIN, error); says whether to send it, send a truncated
//! empty reply instead (a slip: a real client retries over TCP, which is
//! never limited, while a spoofed victim gets a few small datagrams), or
//! drop it. Each client network (/24 for IPv4, /56 for IPv6) and class has
//! a token bucket of `rate` responses a second (a second's worth of
//! burst); every `slip`-th limited response slips, the others are dropped.
//!
//! One table serves every UDP worker and the general path, so a client's
//! rate is the same whichever socket its queries land on. It never locks:
//! each bucket is one atomic word (time, tokens, slip count) updated with
//! compare-and-swap, in a fixed table ([`TABLE_SLOTS`]) indexed by a keyed
//! hash, so memory does not grow with the number of clients; networks that
//! collide share a bucket, as in BIND and Knot.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::net::canonical_ip;

/// Buckets in the table (a power of two): 512 KiB.
pub const TABLE_SLOTS: usize = 1 << 16;

/// What a reply says, for rate limiting: clients are limited per class, so
/// a flood of NXDOMAIN does not limit a client's positive answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// NOERROR with records in the answer section.
    Positive,
    /// NOERROR without answers.
    NoData,
    /// NXDOMAIN.
    NxDomain,
    /// Any other rcode.
    Error,
}

impl Class {
    /// The class of a reply, from its header.
    pub fn of(reply: &[u8]) -> Class {
        let rcode = reply.get(3).map_or(2, |b| b & 0x0F);
        let answers = reply
            .get(6..8)
            .map_or(0, |c| u16::from_be_bytes([c[0], c[1]]));
        match (rcode, answers) {
            (0, 0) => Class::NoData,
            (0, _) => Class::Positive,
            (3, _) => Class::NxDomain,
            _ => Class::Error,
        }
    }
}

/// What to do with one reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within the rate: send it.
    Send,
    /// Over the rate, slip: send a truncated empty reply instead.
    Slip,
    /// Over the rate: send nothing.
    Drop,
}

/// The shared rate limiter.
#[derive(Debug)]
pub struct RateLimiter {
    /// Responses a second per network and class.
    rate: u32,
    /// Every `slip`-th limited response slips (0: none does).
    slip: u32,
    buckets: Box<[AtomicU64]>,
    hasher: ahash::RandomState,
    epoch: Instant,
    limited: AtomicU64,
    slipped: AtomicU64,
}

/// A bucket in one word: milliseconds since the epoch when its tokens were
/// last counted (32 bits), tokens (24 bits), slip count (8 bits). Zero is
/// a bucket never used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Bucket {
    at_ms: u32,
    tokens: u32,
    slips: u8,
}

/// Most tokens a bucket holds (24 bits): rates are capped to it.
const MAX_RATE: u32 = (1 << 24) - 1;

impl Bucket {
    fn unpack(word: u64) -> Bucket {
        Bucket {
            at_ms: (word & 0xFFFF_FFFF) as u32,
            tokens: ((word >> 32) & u64::from(MAX_RATE)) as u32,
            slips: (word >> 56) as u8,
        }
    }

    fn pack(self) -> u64 {
        u64::from(self.at_ms)
            | (u64::from(self.tokens.min(MAX_RATE)) << 32)
            | (u64::from(self.slips) << 56)
    }
}

impl RateLimiter {
    /// A limiter of `rate` responses a second per network and class
    /// (1 to 16,777,215), slipping every `slip`-th limited one.
    pub fn new(rate: u32, slip: u32) -> RateLimiter {
        RateLimiter {
            rate: rate.clamp(1, MAX_RATE),
            slip,
            buckets: (0..TABLE_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            hasher: ahash::RandomState::new(),
            epoch: Instant::now(),
            limited: AtomicU64::new(0),
            slipped: AtomicU64::new(0),
        }
    }

    /// The network a client belongs to: /24 for IPv4, /56 for IPv6.
    fn network(client: IpAddr) -> u128 {
        match canonical_ip(client) {
            IpAddr::V4(v4) => u128::from(u32::from(v4) & 0xFFFF_FF00),
            // Tagged so an IPv6 network never equals an IPv4 one.
            IpAddr::V6(v6) => (u128::from(v6) & !((1u128 << 72) - 1)) | 1,
        }
    }

    /// Milliseconds since the epoch, wrapping (buckets compare with
    /// wrapping arithmetic; a bucket idle for 49 days starts full).
    fn now_ms(&self) -> u32 {
        (self.epoch.elapsed().as_millis() & 0xFFFF_FFFF) as u32
    }

    /// Decides the fate of one reply of `class` to `client`.
    pub fn check(&self, client: IpAddr, class: Class) -> Verdict {
        self.check_at(client, class, self.now_ms())
    }

    fn check_at(&self, client: IpAddr, class: Class, now_ms: u32) -> Verdict {
        let key = self.hasher.hash_one((Self::network(client), class as u8));
        let index = key & (TABLE_SLOTS as u64 - 1);
        let slot = &self.buckets[usize::try_from(index).unwrap_or(0)];
        let mut old = slot.load(Ordering::Relaxed);
        loop {
            let (new, verdict) = self.spend(old, now_ms);
            match slot.compare_exchange_weak(old, new, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => {
                    match verdict {
                        Verdict::Send => {}
                        Verdict::Slip => {
                            self.slipped.fetch_add(1, Ordering::Relaxed);
                            self.count_limited(client);
                        }
                        Verdict::Drop => self.count_limited(client),
                    }
                    return verdict;
                }
                Err(current) => old = current,
            }
        }
    }

    /// The bucket after one more response at `now_ms`, and its verdict.
    fn spend(&self, word: u64, now_ms: u32) -> (u64, Verdict) {
        let mut bucket = if word == 0 {
            Bucket {
                at_ms: now_ms,
                tokens: self.rate,
                slips: 0,
            }
        } else {
            Bucket::unpack(word)
        };
        let elapsed = u64::from(now_ms.wrapping_sub(bucket.at_ms));
        if elapsed >= 1000 {
            bucket.tokens = self.rate;
            bucket.at_ms = now_ms;
        } else {
            // Whole tokens earned since the last count; the clock moves on
            // only by the time they took, so slow rates lose nothing.
            let earned = elapsed * u64::from(self.rate) / 1000;
            if earned > 0 {
                let tokens = (u64::from(bucket.tokens) + earned).min(u64::from(self.rate));
                bucket.tokens = u32::try_from(tokens).unwrap_or(self.rate);
                // Under a second's worth: fits.
                let took = earned * 1000 / u64::from(self.rate);
                bucket.at_ms = bucket.at_ms.wrapping_add(u32::try_from(took).unwrap_or(0));
            }
        }
        let verdict = if bucket.tokens > 0 {
            bucket.tokens -= 1;
            Verdict::Send
        } else if self.slip == 0 {
            Verdict::Drop
        } else {
            bucket.slips = bucket.slips.wrapping_add(1);
            if u32::from(bucket.slips) >= self.slip {
                bucket.slips = 0;
                Verdict::Slip
            } else {
                Verdict::Drop
            }
        };
        // A zero word means "never used": keep a used one non-zero.
        let mut packed = bucket.pack();
        if packed == 0 {
            packed = 1 << 56;
        }
        (packed, verdict)
    }

    /// Counts a limited response; logs at WARN on the 1st, 2nd, 4th, …,
    /// so that a flood cannot flood the log.
    fn count_limited(&self, client: IpAddr) {
        let limited = self.limited.fetch_add(1, Ordering::Relaxed) + 1;
        if limited.is_power_of_two() {
            tracing::warn!(
                %client,
                total = limited,
                slipped = self.slipped.load(Ordering::Relaxed),
                "rate-limited UDP responses (--rrl)"
            );
        }
    }

    /// Responses limited so far (dropped or slipped), and of those slipped.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.limited.load(Ordering::Relaxed),
            self.slipped.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("ip")
    }

    #[test]
    fn a_network_gets_its_rate_then_slips_every_nth() {
        let rrl = RateLimiter::new(10, 2);
        let verdicts: Vec<Verdict> = (0..20)
            .map(|_| rrl.check_at(ip("192.0.2.7"), Class::Positive, 5))
            .collect();
        assert!(verdicts[..10].iter().all(|v| *v == Verdict::Send));
        let slips = verdicts[10..]
            .iter()
            .filter(|v| **v == Verdict::Slip)
            .count();
        let drops = verdicts[10..]
            .iter()
            .filter(|v| **v == Verdict::Drop)
            .count();
        assert_eq!((slips, drops), (5, 5));
        assert_eq!(rrl.counts(), (10, 5));
        // Same /24, same bucket; another /24, its own.
        assert_ne!(
            rrl.check_at(ip("192.0.2.200"), Class::Positive, 5),
            Verdict::Send
        );
        assert_eq!(
            rrl.check_at(ip("192.0.3.1"), Class::Positive, 5),
            Verdict::Send
        );
        // Another class of answer to the same network: its own bucket.
        assert_eq!(
            rrl.check_at(ip("192.0.2.7"), Class::NxDomain, 5),
            Verdict::Send
        );
    }

    #[test]
    fn tokens_come_back_with_time_even_at_slow_rates() {
        let rrl = RateLimiter::new(4, 0);
        for _ in 0..4 {
            assert_eq!(
                rrl.check_at(ip("10.1.1.1"), Class::Positive, 100),
                Verdict::Send
            );
        }
        assert_eq!(
            rrl.check_at(ip("10.1.1.1"), Class::Positive, 100),
            Verdict::Drop
        );
        // 150 ms: not yet a whole token (250 ms each)...
        assert_eq!(
            rrl.check_at(ip("10.1.1.1"), Class::Positive, 250),
            Verdict::Drop
        );
        // ...at 350 ms one: the 150 ms above were not lost.
        assert_eq!(
            rrl.check_at(ip("10.1.1.1"), Class::Positive, 350),
            Verdict::Send
        );
        assert_eq!(
            rrl.check_at(ip("10.1.1.1"), Class::Positive, 351),
            Verdict::Drop
        );
        // A second later, a full bucket.
        for _ in 0..4 {
            assert_eq!(
                rrl.check_at(ip("10.1.1.1"), Class::Positive, 1400),
                Verdict::Send
            );
        }
    }

    #[test]
    fn ipv6_networks_are_56_bits() {
        let rrl = RateLimiter::new(1, 0);
        assert_eq!(
            rrl.check_at(ip("2001:db8:0:100::1"), Class::Positive, 1),
            Verdict::Send
        );
        assert_eq!(
            rrl.check_at(ip("2001:db8:0:1ff::9"), Class::Positive, 1),
            Verdict::Drop
        );
        assert_eq!(
            rrl.check_at(ip("2001:db8:0:200::1"), Class::Positive, 1),
            Verdict::Send
        );
        // IPv4-mapped addresses count as IPv4.
        assert_eq!(
            rrl.check_at(ip("10.9.9.9"), Class::Positive, 1),
            Verdict::Send
        );
        assert_eq!(
            rrl.check_at(ip("::ffff:10.9.9.1"), Class::Positive, 1),
            Verdict::Drop
        );
    }

    #[test]
    fn classes_come_from_the_header() {
        let mut reply = vec![0u8; 12];
        assert_eq!(Class::of(&reply), Class::NoData);
        reply[7] = 2;
        assert_eq!(Class::of(&reply), Class::Positive);
        reply[3] = 3;
        assert_eq!(Class::of(&reply), Class::NxDomain);
        reply[3] = 5;
        assert_eq!(Class::of(&reply), Class::Error);
    }
}
