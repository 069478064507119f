//! The send log: what the last `R` SYNs were and when they left, in a ring indexed by send
//! counter. It is how the scan keeps exact send times (RTTs, `sent_at`) without per-probe
//! state: a SYN's sequence number carries its ring slot (XOR the keyed hash, see `validate`),
//! the reply hands it back, and the slot says which probe it answers and when that left. Per
//! probe the scan keeps only the answered bit; the ring has a fixed size whatever the plan.
//!
//! A slot is reused `R` sends later. For attempts before the last pass that is harmless: an
//! unanswered probe is sent again anyway, and a reply to the old attempt arriving after reuse
//! is counted as invalid (at 500 kpps and R = 2^20 that is a reply slower than 2 s). In the
//! last pass each attempt is the probe's final one, so before its slot is reused the probe
//! must have had its full cooldown: the sender then waits if it has to, and records the probe
//! as silent. Every probe thus gets at least `cooldown` seconds after its final attempt.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

pub struct SendLog {
    /// (probe + 1) << 32 | send tick (µs since the scan started, wrapping); 0 = empty.
    entries: Box<[AtomicU64]>,
    mask: u64,
    next: AtomicU64,
    final_from: AtomicU64,
}

/// Slots when not configured: one per send of the whole crawl (every probe in every pass), up
/// to 2^20 slots (8 MiB), so on the lab nothing is reused and replies to earlier attempts
/// still validate.
pub fn default_size(probes: u64, passes: u64) -> usize {
    probes.saturating_mul(passes).next_power_of_two().clamp(1 << 10, 1 << 20) as usize
}

impl SendLog {
    /// `size` is rounded up to a power of two.
    pub fn new(size: usize) -> SendLog {
        let n = size.max(2).next_power_of_two();
        SendLog { entries: (0..n).map(|_| AtomicU64::new(0)).collect(), mask: n as u64 - 1, next: AtomicU64::new(0), final_from: AtomicU64::new(u64::MAX) }
    }

    pub fn len(&self) -> u64 {
        self.mask + 1
    }

    /// Counters for `n` consecutive sends.
    #[inline]
    pub fn reserve(&self, n: u64) -> u64 {
        self.next.fetch_add(n, Relaxed)
    }

    #[inline]
    pub fn slot(&self, counter: u64) -> u32 {
        (counter & self.mask) as u32
    }

    #[inline]
    pub fn put(&self, counter: u64, probe: u64, tick: u32) {
        self.entries[(counter & self.mask) as usize].store((probe + 1) << 32 | tick as u64, Relaxed);
    }

    /// Forget send `counter` (it never left).
    pub fn clear(&self, counter: u64) {
        self.entries[(counter & self.mask) as usize].store(0, Relaxed);
    }

    /// (probe, send tick) held by a slot.
    #[inline]
    pub fn get(&self, slot: u32) -> Option<(u64, u32)> {
        let e = self.entries.get(slot as usize)?.load(Relaxed);
        (e != 0).then_some(((e >> 32) - 1, e as u32))
    }

    /// From now on every send is a probe's final attempt (the last pass starts).
    pub fn start_final_pass(&self) {
        self.final_from.store(self.next.load(Relaxed), Relaxed);
    }

    /// Was send `counter` a final attempt?
    #[inline]
    pub fn is_final(&self, counter: u64) -> bool {
        counter >= self.final_from.load(Relaxed)
    }

    /// (probe, tick) of the final attempts in the ring sent more than `age_us` before `now`
    /// (ticks wrap: meaningful for ages under 71 minutes).
    pub fn final_older_than(&self, now: u32, age_us: u32) -> impl Iterator<Item = (u64, u32)> + '_ {
        self.final_window().filter_map(move |c| self.get(self.slot(c))).filter(move |(_, t)| now.wrapping_sub(*t) > age_us)
    }

    /// The final attempts still in the ring, as a counter range.
    pub fn final_window(&self) -> std::ops::Range<u64> {
        let hi = self.next.load(Relaxed);
        let lo = self.final_from.load(Relaxed).max(hi.saturating_sub(self.len()));
        lo.min(hi)..hi
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn slots_wrap_and_final_window_covers_the_last_pass() {
        let l = SendLog::new(5);
        assert_eq!(l.len(), 8);
        let c = l.reserve(6);
        for i in 0..6 {
            l.put(c + i, 100 + i, 7);
        }
        l.start_final_pass();
        let c = l.reserve(4);
        assert_eq!(c, 6);
        for i in 0..4 {
            l.put(c + i, 200 + i, 9);
        }
        assert!(!l.is_final(5) && l.is_final(6));
        assert_eq!(l.final_window(), 6..10);
        // Counter 8 reused slot 0, counter 9 slot 1.
        assert_eq!(l.get(0), Some((202, 9)));
        assert_eq!(l.get(5), Some((105, 7)));
        assert_eq!(l.get(8), None);
        // Of the final attempts (ticks 9), those older than 5 µs at tick 20; none at tick 12.
        assert_eq!(l.final_older_than(20, 5).map(|(p, _)| p).collect::<Vec<_>>(), vec![200, 201, 202, 203]);
        assert_eq!(l.final_older_than(12, 5).count(), 0);
        assert_eq!(default_size(3, 3), 1024);
        assert_eq!(default_size(29_952, 3), 1 << 17);
        assert_eq!(default_size(1_048_577, 1), 1 << 20);
    }
}
