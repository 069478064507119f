//! Target iteration (ZMap's `cyclic.c`/`iterator.c` piece): the send order over the probe
//! space (target × port slot) and its split between sender threads.
//!
//! Hosts are visited in a keyed permutation of the plan (masscan's Blackrock, `perfect_rand`),
//! spreading load across ASNs and /24s, in windows of `WINDOW` hosts whose port probes are
//! interleaved, so a host's 25, 465, 587, controls and random ports all go out within the same
//! short time window (methodology: compare ports of one host under the same network
//! conditions). Sender `k` of `n` takes positions k, k+n, k+2n, … of the order.
//!
//! Within a window each host gets its ports in its own order — a keyed permutation of its slots
//! (an affine map `r ↦ a·r + b mod slots`, `a` coprime to `slots`), reproducible from the seed.
//! Sent in slot order, port 25 was the first SYN for most hosts and a /24 saw a burst of SYNs to
//! 25 before any control port: the horizontal-scan signature per-source limits and scan
//! detectors match, which would confound the results. The send time of every probe is in its
//! row, so the order each host saw is recorded.

use perfect_rand::PerfectRng;

/// Hosts whose probes are interleaved together.
pub const WINDOW: u64 = 256;

/// The send order over probe ids (`target * slots + slot`).
pub struct Order {
    hosts: u64,
    slots: u64,
    rng: Option<PerfectRng>,
    seed: u64,
    /// Multipliers coprime to `slots`: each makes `r ↦ a·r + b` a permutation of the slots.
    units: Vec<u64>,
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

impl Order {
    pub fn new(hosts: u64, slots: u64, seed: u64) -> Order {
        let units = (1..slots.max(2)).filter(|a| gcd(*a, slots) == 1).collect();
        Order { hosts, slots, rng: if hosts > 1 { Some(PerfectRng::new(hosts, seed, 4)) } else { None }, seed, units }
    }

    /// Host `host`'s slot for its `r`-th probe of the window.
    #[inline]
    fn slot_of(&self, host: u64, r: u64) -> u64 {
        if self.slots < 2 {
            return r;
        }
        let mut z = (host ^ self.seed.rotate_left(23)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        z ^= z >> 29;
        let a = self.units[(z % self.units.len() as u64) as usize];
        (a * r + (z >> 32) % self.slots) % self.slots
    }
    pub fn len(&self) -> u64 {
        self.hosts * self.slots
    }
    /// The `i`-th probe to send.
    #[inline]
    pub fn probe(&self, i: u64) -> u64 {
        let per_window = WINDOW * self.slots;
        let w = i / per_window;
        let j = i % per_window;
        // The last window may hold fewer hosts.
        let hosts_in_w = (self.hosts - w * WINDOW).min(WINDOW);
        let (round, k) = (j / hosts_in_w, j % hosts_in_w);
        let pos = w * WINDOW + k;
        let host = match &self.rng {
            Some(r) => r.shuffle(pos),
            None => pos,
        };
        host * self.slots + self.slot_of(host, round)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn order_is_a_permutation_and_windows_interleave_ports() {
        for hosts in [1u64, 7, 256, 1000] {
            let o = Order::new(hosts, 8, 42);
            let mut seen = vec![false; o.len() as usize];
            for i in 0..o.len() {
                let p = o.probe(i) as usize;
                assert!(!seen[p], "probe {p} twice");
                seen[p] = true;
            }
            assert!(seen.iter().all(|x| *x));
        }
        // All 8 ports of a host are sent within one window of probes.
        let o = Order::new(1000, 8, 1);
        let first_host = o.probe(0) / 8;
        let pos: Vec<u64> = (0..o.len()).filter(|i| o.probe(*i) / 8 == first_host).collect();
        assert!(pos.last().unwrap() - pos[0] < WINDOW * 8);
    }

    #[test]
    fn each_host_gets_its_ports_in_its_own_reproducible_order() {
        let (hosts, slots) = (3000u64, 12u64);
        let o = Order::new(hosts, slots, 25);
        // The first slot each host is sent.
        let mut first = vec![u64::MAX; hosts as usize];
        for i in 0..o.len() {
            let p = o.probe(i);
            let h = (p / slots) as usize;
            if first[h] == u64::MAX {
                first[h] = p % slots;
            }
        }
        let port25_first = first.iter().filter(|s| **s == 0).count() as f64 / hosts as f64;
        assert!((0.05..0.12).contains(&port25_first), "slot 0 (port 25) first for {:.1} % of hosts", port25_first * 100.0);
        for s in 0..slots {
            assert!(first.iter().filter(|f| **f == s).count() > 150, "slot {s} is rarely first");
        }
        // Reproducible, and another seed gives other orders.
        let again = Order::new(hosts, slots, 25);
        assert!((0..o.len()).all(|i| o.probe(i) == again.probe(i)));
        let other = Order::new(hosts, slots, 26);
        assert!((0..o.len()).any(|i| o.probe(i) != other.probe(i)));
    }
}
