//! Target iteration (ZMap's `cyclic.c`/`iterator.c` piece): the send order over the probe
//! space (target × port slot) and its split between sender threads.
//!
//! Hosts are visited in a keyed permutation of the plan (masscan's Blackrock, `perfect_rand`),
//! spreading load across ASNs and /24s, in windows of `WINDOW` hosts whose port probes are
//! interleaved, so a host's 25, 465, 587, controls and random ports all go out within the same
//! short time window (methodology: compare ports of one host under the same network
//! conditions). Sender `k` of `n` takes positions k, k+n, k+2n, … of the order.

use perfect_rand::PerfectRng;

/// Hosts whose probes are interleaved together.
pub const WINDOW: u64 = 256;

/// The send order over probe ids (`target * slots + slot`).
pub struct Order {
    hosts: u64,
    slots: u64,
    rng: Option<PerfectRng>,
}

impl Order {
    pub fn new(hosts: u64, slots: u64, seed: u64) -> Order {
        Order { hosts, slots, rng: if hosts > 1 { Some(PerfectRng::new(hosts, seed, 4)) } else { None } }
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
        let (slot, k) = (j / hosts_in_w, j % hosts_in_w);
        let pos = w * WINDOW + k;
        let host = match &self.rng {
            Some(r) => r.shuffle(pos),
            None => pos,
        };
        host * self.slots + slot
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
}
