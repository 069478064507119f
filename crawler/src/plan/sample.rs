//! The draws of one AS. All of them come from keyed permutations of the plan's seed, so the
//! same inputs and seed give the same plan; ASes are independent, so they are sampled on two
//! threads and concatenated in AS order (the result does not depend on the split).

use super::{PlanSummary, Target};
use datasets::blocklist::Blocklist;
use datasets::routes::RouteTable;
use indicatif::ProgressBar;
use ipnet::{IpNet, Ipv4Net};
use perfect_rand::PerfectRng;
use siphasher::sip::SipHasher13;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::Hasher;
use std::net::{IpAddr, Ipv4Addr};

pub(super) fn keyed(seed: u64, parts: &[u128]) -> u64 {
    let mut h = SipHasher13::new_with_keys(seed, 0x706f72743235_u64);
    for p in parts {
        h.write_u128(*p);
    }
    h.finish()
}

fn perm(range: u64, seed: u64, i: u64) -> u64 {
    if range <= 1 {
        0
    } else {
        PerfectRng::new(range, seed, 4).shuffle(i)
    }
}

/// Draw up to `want` addresses from the v4 prefixes of one AS, round-robin over prefixes,
/// then over each prefix's /24s. `accept` rejects excluded / more-specific-elsewhere draws.
fn sample_v4(prefixes: &[Ipv4Net], want: usize, seed: u64, mut accept: impl FnMut(Ipv4Addr, &Ipv4Net) -> bool) -> Vec<(Ipv4Addr, Ipv4Net)> {
    struct Stratum {
        net: Ipv4Net,
        blocks: u64,    // number of /24s (or 1 for longer prefixes)
        per_block: u64, // addresses per block
        next: u64,      // draws made
        key: u64,
    }
    let mut strata: Vec<Stratum> = prefixes
        .iter()
        .map(|n| {
            let (blocks, per_block) = if n.prefix_len() <= 24 { (1u64 << (24 - n.prefix_len()), 256u64) } else { (1, 1u64 << (32 - n.prefix_len())) };
            Stratum { net: *n, blocks, per_block, next: 0, key: keyed(seed, &[u32::from(n.network()) as u128, n.prefix_len() as u128]) }
        })
        .collect();
    // Prefix order is itself a permutation, so "the first N prefixes" is a random subset.
    let order: Vec<usize> = (0..strata.len() as u64).map(|i| perm(strata.len() as u64, seed ^ 0x5eed, i) as usize).collect();
    let mut out = Vec::with_capacity(want);
    // Bound the work when most draws are refused (opt-outs, nested prefixes of other ASes).
    let mut budget = (want as u64) * 16 + 4096;
    loop {
        let mut progressed = false;
        for &si in &order {
            if out.len() >= want || budget == 0 {
                return out;
            }
            let s = &mut strata[si];
            let size = s.blocks * s.per_block;
            if s.next >= size {
                continue;
            }
            progressed = true;
            budget -= 1;
            let i = s.next;
            s.next += 1;
            let block = perm(s.blocks, s.key, i % s.blocks);
            let within = perm(s.per_block, s.key ^ block.wrapping_mul(0x9e37_79b9_7f4a_7c15), i / s.blocks);
            let a = Ipv4Addr::from(u32::from(s.net.network()) + (block * s.per_block + within) as u32);
            if accept(a, &s.net) {
                out.push((a, s.net));
            }
        }
        if !progressed {
            return out;
        }
    }
}

/// Stratify listed (hitlist) addresses of one AS by (prefix, /24 for IPv4 or /48 for IPv6) and
/// take them round-robin, each group in a keyed order.
fn sample_listed(mut cands: Vec<(IpAddr, IpNet)>, want: usize, seed: u64) -> Vec<(IpAddr, IpNet)> {
    cands.sort_unstable();
    cands.dedup();
    let mut groups: BTreeMap<(IpNet, u128), Vec<IpAddr>> = BTreeMap::new();
    for (a, n) in cands {
        let g = match a {
            IpAddr::V4(v) => (u32::from(v) >> 8) as u128,
            IpAddr::V6(v) => u128::from(v) >> 80,
        };
        groups.entry((n, g)).or_default().push(a);
    }
    let mut lists: Vec<(IpNet, Vec<IpAddr>)> = groups
        .into_iter()
        .map(|((n, g), v)| {
            let net = match n.network() {
                IpAddr::V4(a) => u32::from(a) as u128,
                IpAddr::V6(a) => u128::from(a),
            };
            let k = keyed(seed, &[net, g]);
            let len = v.len() as u64;
            let shuffled = (0..len).map(|i| v[perm(len, k, i) as usize]).collect();
            (n, shuffled)
        })
        .collect();
    let len = lists.len() as u64;
    let order: Vec<usize> = (0..len).map(|i| perm(len, seed ^ 0x5eed, i) as usize).collect();
    lists = order.into_iter().map(|i| std::mem::take(&mut lists[i])).collect();
    let mut out = Vec::with_capacity(want);
    let mut round = 0;
    while out.len() < want {
        let mut any = false;
        for (n, v) in &lists {
            if out.len() >= want {
                break;
            }
            if let Some(a) = v.get(round) {
                out.push((*a, *n));
                any = true;
            }
        }
        if !any {
            break;
        }
        round += 1;
    }
    out
}

/// What the draws of every AS need: routes (for more-specifics of other ASes), the blocklist,
/// the prefixes (v4) and hitlist addresses (v6) grouped by AS, the budget and the seed.
pub(super) struct Sampler<'a> {
    pub routes: &'a RouteTable,
    pub block: &'a Blocklist,
    /// Announced IPv4 prefixes to draw random addresses from.
    pub v4: &'a HashMap<u32, Vec<Ipv4Net>>,
    /// Hitlist addresses with their prefix (IPv6; IPv4 too when a hitlist gave some).
    pub listed: &'a HashMap<u32, Vec<(IpAddr, IpNet)>>,
    pub per_asn: usize,
    pub seed: u64,
    /// Draw IPv4 addresses ending in .0 and .255 too.
    pub keep_edges: bool,
}

impl Sampler<'_> {
    /// Every AS of `asns` (ascending): targets in (asn, family, address) order, and counts.
    pub fn sample_all(&self, asns: &[u32], pb: &ProgressBar) -> (Vec<Target>, PlanSummary) {
        let half = asns.len() / 2;
        let run = |part: &[u32]| {
            let (mut t, mut s) = (Vec::new(), PlanSummary::default());
            for a in part {
                self.sample_as(*a, &mut t, &mut s);
                pb.inc(1);
            }
            (t, s)
        };
        let ((mut targets, mut sum), (t2, s2)) = std::thread::scope(|sc| {
            let h = sc.spawn(|| run(&asns[half..]));
            let first = run(&asns[..half]);
            (first, h.join().expect("sampling thread"))
        });
        targets.extend(t2);
        sum.merge(s2);
        (targets, sum)
    }

    fn sample_as(&self, asn: u32, out: &mut Vec<Target>, s: &mut PlanSummary) {
        let before = out.len();
        if let Some(pfx) = self.v4.get(&asn) {
            self.sample_as_v4(asn, pfx, out, s);
        }
        if let Some(c) = self.listed.get(&asn) {
            // Per family, with the keys the IPv6 draws always had (the same plans as before).
            for (v6, fam) in [(false, 4u128), (true, 6)] {
                let cands: Vec<(IpAddr, IpNet)> = c.iter().filter(|(a, _)| a.is_ipv6() == v6).copied().collect();
                if cands.is_empty() {
                    continue;
                }
                let mut got = sample_listed(cands, self.per_asn, keyed(self.seed, &[asn as u128, fam]));
                let mut pf: Vec<IpNet> = got.iter().map(|(_, n)| *n).collect();
                pf.sort_unstable();
                pf.dedup();
                s.prefixes += pf.len();
                *if v6 { &mut s.targets_v6 } else { &mut s.targets_v4 } += got.len();
                got.sort_unstable();
                out.extend(got.into_iter().map(|(ip, prefix)| Target { ip, asn, prefix }));
            }
        }
        if out.len() > before {
            s.asns_with_targets += 1;
        }
    }

    fn sample_as_v4(&self, asn: u32, pfx: &[Ipv4Net], out: &mut Vec<Target>, s: &mut PlanSummary) {
        let mut pfx = pfx.to_vec();
        pfx.sort_unstable();
        // Whole prefixes inside an excluded range are dropped before sampling.
        let mut usable = Vec::with_capacity(pfx.len());
        for p in pfx.iter() {
            match self.block.covers(IpNet::V4(*p)) {
                Some(r) => *s.excluded_prefixes.entry(r.as_str()).or_default() += 1,
                None => usable.push(*p),
            }
        }
        s.prefixes += usable.len();
        let seed = keyed(self.seed, &[asn as u128, 4]);
        let excluded = &mut s.excluded;
        // Per-address checks only where needed: a more-specific prefix of another AS, or a
        // blocked range, inside this prefix.
        let nested: HashSet<Ipv4Net> = usable
            .iter()
            .filter(|p| self.routes.v4.children(p).any(|(q, _)| q != **p) || self.block.any_within(IpNet::V4(**p)))
            .copied()
            .collect();
        let mut got = sample_v4(&usable, self.per_asn, seed, |a, net| {
            // x.x.x.0 and x.x.x.255 are network and broadcast addresses in many subnets inside
            // larger announced prefixes, and answer oddly where they answer at all: not drawn.
            if !self.keep_edges && matches!(a.octets()[3], 0 | 255) {
                *excluded.entry("edge-address").or_default() += 1;
                return false;
            }
            if !nested.contains(net) {
                return true;
            }
            // The address must belong to this prefix, not a more-specific of another AS.
            if self.routes.v4.get_lpm(&Ipv4Net::from(a)).map(|(p, _)| p) != Some(*net) {
                return false;
            }
            match self.block.check(IpAddr::V4(a)) {
                Some(r) => {
                    *excluded.entry(r.as_str()).or_default() += 1;
                    false
                }
                None => true,
            }
        });
        s.targets_v4 += got.len();
        got.sort_unstable_by_key(|(a, _)| *a);
        out.extend(got.into_iter().map(|(a, n)| Target { ip: IpAddr::V4(a), asn, prefix: IpNet::V4(n) }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn v4_sampling_spreads_over_prefixes_and_24s_without_replacement() {
        let pfx: Vec<Ipv4Net> = vec!["10.0.0.0/16".parse().unwrap(), "10.1.0.0/24".parse().unwrap(), "10.2.0.0/30".parse().unwrap()];
        let got = sample_v4(&pfx, 40, 7, |_, _| true);
        assert_eq!(got.len(), 40);
        let mut ips: Vec<_> = got.iter().map(|x| x.0).collect();
        ips.sort();
        ips.dedup();
        assert_eq!(ips.len(), 40, "no duplicates");
        // The /30 has 4 addresses: all taken; the /16's draws land in distinct /24s.
        assert_eq!(got.iter().filter(|x| x.1 == pfx[2]).count(), 4);
        let in16: Vec<u32> = got.iter().filter(|x| x.1 == pfx[0]).map(|x| u32::from(x.0) >> 8).collect();
        let mut d = in16.clone();
        d.sort();
        d.dedup();
        assert_eq!(d.len(), in16.len());
        assert_ne!(sample_v4(&pfx, 40, 8, |_, _| true), got, "another seed, another sample");
        assert_eq!(sample_v4(&pfx, 40, 7, |_, _| true), got);
        // Exhaustion: asking more than exists returns everything once.
        let small: Vec<Ipv4Net> = vec!["10.9.0.0/29".parse().unwrap()];
        assert_eq!(sample_v4(&small, 100, 1, |_, _| true).len(), 8);
    }
}
