//! Target iteration (ZMap's "target iteration" piece): the plan loaded into compact sorted
//! arrays, the probe space (target × port slot), its pseudo-random send order and sharding.
//!
//! Order: hosts are visited in a keyed permutation of the plan (spreading load across ASNs
//! and /24s), in windows of `WINDOW` hosts whose port probes are interleaved, so a host's
//! 25, 465, 587, controls and random ports all go out within the same short time window
//! (methodology: compare ports of one host under the same network conditions).

use anyhow::{bail, Context, Result};
use arrow_array::{Array, StringArray, UInt32Array};
use datasets::schema::{self, plan};
use perfect_rand::PerfectRng;
use siphasher::sip::SipHasher13;
use std::hash::Hasher;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

/// Hosts whose probes are interleaved together.
pub const WINDOW: u64 = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Target,
    Mail,
    Control,
    Random,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Target => schema::role::TARGET,
            Role::Mail => schema::role::MAIL,
            Role::Control => schema::role::CONTROL,
            Role::Random => schema::role::RANDOM,
        }
    }
}

#[derive(Debug, Clone)]
pub struct PortPlan {
    /// Fixed ports with their role; random ports follow as extra slots.
    pub fixed: Vec<(u16, Role)>,
    pub random: u16,
    pub key: (u64, u64),
}

impl PortPlan {
    pub fn slots(&self) -> u64 {
        self.fixed.len() as u64 + self.random as u64
    }
    /// Port and role of slot `s` for a host; random high ports are drawn per host from the
    /// ephemeral range (almost surely closed: a SYN-ACK there exposes an all-ports responder),
    /// distinct from the fixed ports and from the host's other random ports.
    #[inline]
    pub fn port(&self, ip: IpAddr, s: u64) -> (u16, Role) {
        if let Some(p) = self.fixed.get(s as usize) {
            return *p;
        }
        // Draw this host's random ports in slot order, each moved past the ports taken before.
        let first = self.fixed.len() as u64;
        let mut taken = [0u16; MAX_RANDOM_PORTS];
        for r in first..=s {
            let mut h = SipHasher13::new_with_keys(self.key.0, self.key.1);
            match ip {
                IpAddr::V4(a) => h.write_u32(u32::from(a)),
                IpAddr::V6(a) => h.write_u128(u128::from(a)),
            }
            h.write_u64(r);
            let mut port = RANDOM_BASE + (h.finish() % RANDOM_SPAN as u64) as u16;
            let before = &taken[..(r - first) as usize];
            while self.fixed.iter().any(|(p, _)| *p == port) || before.contains(&port) {
                port = RANDOM_BASE + ((port - RANDOM_BASE + 1) % RANDOM_SPAN);
            }
            taken[(r - first) as usize] = port;
        }
        (taken[(s - first) as usize], Role::Random)
    }
}

/// Random ports: Linux's default ephemeral range, 32768..=60999.
const RANDOM_BASE: u16 = 32768;
const RANDOM_SPAN: u16 = 28232;
pub const MAX_RANDOM_PORTS: usize = 64;

/// The plan, sorted by address per family, with per-target AS and prefix.
pub struct Targets {
    pub v4: Vec<u32>,
    pub v6: Vec<u128>,
    /// Per target (v4 first, then v6): ASN and index into `prefixes`.
    pub asn: Vec<u32>,
    pub prefix_idx: Vec<u32>,
    pub prefixes: Vec<String>,
}

impl Targets {
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    #[inline]
    pub fn ip(&self, i: usize) -> IpAddr {
        if i < self.v4.len() {
            IpAddr::V4(Ipv4Addr::from(self.v4[i]))
        } else {
            IpAddr::V6(Ipv6Addr::from(self.v6[i - self.v4.len()]))
        }
    }
    /// Ask the CPU to fetch a target's address and AS ahead of use: the send order visits
    /// targets at random, so without it each probe waits on cache misses (measured: most of
    /// the send loop's own time on the 131,072-target lab).
    #[inline]
    pub fn prefetch(&self, t: usize) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            let a = if t < self.v4.len() { self.v4.as_ptr().wrapping_add(t) as *const i8 } else { self.v6.as_ptr().wrapping_add(t - self.v4.len()) as *const i8 };
            // SAFETY: prefetching is a hint; it never faults, even on a bad address.
            unsafe {
                _mm_prefetch(a, _MM_HINT_T0);
                _mm_prefetch(self.asn.as_ptr().wrapping_add(t) as *const i8, _MM_HINT_T0);
            }
        }
    }

    /// Index of a target by address (binary search; the receive path's lookup).
    #[inline]
    pub fn find(&self, ip: IpAddr) -> Option<usize> {
        match ip {
            IpAddr::V4(a) => self.v4.binary_search(&u32::from(a)).ok(),
            IpAddr::V6(a) => self.v6.binary_search(&u128::from(a)).ok().map(|i| i + self.v4.len()),
        }
    }

    /// Load a plan file; keep shard `shard` of `shards` (disjoint by plan row).
    pub fn load(path: &Path, shard: (u64, u64)) -> Result<Targets> {
        let reader = schema::open_parquet_columns(path, 65_536, Some(&[plan::IP, plan::ASN, plan::PREFIX]))?;
        // (address, asn, prefix index) per family: sorting plain integers keeps loading a
        // large plan off the scan's start-up time.
        let mut v4: Vec<(u32, u32, u32)> = Vec::new();
        let mut v6: Vec<(u128, u32, u32)> = Vec::new();
        let mut prefixes: Vec<String> = Vec::new();
        let mut pidx: hashbrown::HashMap<String, u32> = Default::default();
        let mut row = 0u64;
        for batch in reader {
            let batch = batch.with_context(|| format!("{}: reading plan", path.display()))?;
            let col = |n: &str| batch.column_by_name(n).with_context(|| format!("{}: not a plan (no `{n}` column)", path.display()));
            let ip = col(plan::IP)?.as_any().downcast_ref::<StringArray>().context("plan ip column is not text")?;
            let asn = col(plan::ASN)?.as_any().downcast_ref::<UInt32Array>().context("plan asn column is not UInt32")?;
            let pfx = col(plan::PREFIX)?.as_any().downcast_ref::<StringArray>().context("plan prefix column is not text")?;
            for i in 0..batch.num_rows() {
                row += 1;
                if (row - 1) % shard.1 != shard.0 {
                    continue;
                }
                let a: IpAddr = ip.value(i).parse().with_context(|| format!("{}: row {row}: bad ip `{}`", path.display(), ip.value(i)))?;
                let next = prefixes.len() as u32;
                let id = *pidx.entry_ref(pfx.value(i)).or_insert(next);
                if id == next {
                    prefixes.push(pfx.value(i).to_string());
                }
                if asn.is_null(i) {
                    bail!("{}: row {row}: missing asn", path.display());
                }
                match a {
                    IpAddr::V4(a) => v4.push((u32::from(a), asn.value(i), id)),
                    IpAddr::V6(a) => v6.push((u128::from(a), asn.value(i), id)),
                }
            }
        }
        // The cookie carries a target's index in 32 bits.
        if v4.len() + v6.len() > u32::MAX as usize {
            bail!("{}: {} targets; one crawl (or shard) takes at most {}", path.display(), v4.len() + v6.len(), u32::MAX);
        }
        v4.sort_unstable_by_key(|r| r.0);
        v4.dedup_by_key(|r| r.0);
        v6.sort_unstable_by_key(|r| r.0);
        v6.dedup_by_key(|r| r.0);
        let n = v4.len() + v6.len();
        let mut t = Targets { v4: Vec::with_capacity(v4.len()), v6: Vec::with_capacity(v6.len()), asn: Vec::with_capacity(n), prefix_idx: Vec::with_capacity(n), prefixes };
        for (a, asn, p) in v4 {
            t.v4.push(a);
            t.asn.push(asn);
            t.prefix_idx.push(p);
        }
        for (a, asn, p) in v6 {
            t.v6.push(a);
            t.asn.push(asn);
            t.prefix_idx.push(p);
        }
        Ok(t)
    }
}

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

    #[test]
    fn a_hosts_ports_are_distinct() {
        // 40 random ports per host make collisions of independent draws near certain.
        let plan = PortPlan { fixed: vec![(25, Role::Target), (32768, Role::Control)], random: 40, key: (7, 9) };
        for i in 0..2000u32 {
            let ip = IpAddr::V4(Ipv4Addr::from(0xc612_0000 + i));
            let ports: std::collections::HashSet<u16> = (0..plan.slots()).map(|s| plan.port(ip, s).0).collect();
            assert_eq!(ports.len() as u64, plan.slots(), "{ip}");
            assert!((2..plan.slots()).all(|s| (32768..=60999).contains(&plan.port(ip, s).0)));
        }
    }
}
