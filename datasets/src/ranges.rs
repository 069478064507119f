//! Inclusive address ranges (iptoasn, ip-location-db) to their minimal set of CIDR prefixes.

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Minimal prefixes covering exactly `[start, end]` in a `bits`-wide space (`bits` ≤ 128).
fn split(mut start: u128, end: u128, bits: u32, mut emit: impl FnMut(u128, u8)) {
    loop {
        // Largest block aligned at `start` that does not run past `end`.
        let align = if start == 0 { bits } else { start.trailing_zeros().min(bits) };
        let span = end - start; // block size - 1 must be <= span
        let fit = if span == u128::MAX { 128 } else { 128 - (span + 1).leading_zeros() - 1 };
        let size_bits = align.min(fit);
        emit(start, (bits - size_bits) as u8);
        let last = if size_bits >= 128 { u128::MAX } else { start + ((1u128 << size_bits) - 1) };
        if last >= end {
            return;
        }
        start = last + 1;
    }
}

pub fn v4_range_to_cidrs(start: Ipv4Addr, end: Ipv4Addr) -> Vec<Ipv4Net> {
    let (s, e) = (u32::from(start) as u128, u32::from(end) as u128);
    let mut out = Vec::new();
    if s <= e {
        split(s, e, 32, |a, l| out.push(Ipv4Net::new(Ipv4Addr::from(a as u32), l).unwrap()));
    }
    out
}

pub fn v6_range_to_cidrs(start: Ipv6Addr, end: Ipv6Addr) -> Vec<Ipv6Net> {
    let (s, e) = (u128::from(start), u128::from(end));
    let mut out = Vec::new();
    if s <= e {
        split(s, e, 128, |a, l| out.push(Ipv6Net::new(Ipv6Addr::from(a), l).unwrap()));
    }
    out
}

/// Both ends must be of the same family and ordered; `None` otherwise.
pub fn range_to_cidrs(start: IpAddr, end: IpAddr) -> Option<Vec<IpNet>> {
    match (start, end) {
        (IpAddr::V4(a), IpAddr::V4(b)) if a <= b => Some(v4_range_to_cidrs(a, b).into_iter().map(IpNet::V4).collect()),
        (IpAddr::V6(a), IpAddr::V6(b)) if a <= b => Some(v6_range_to_cidrs(a, b).into_iter().map(IpNet::V6).collect()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_ranges() {
        let c = v4_range_to_cidrs("1.0.0.0".parse().unwrap(), "1.0.0.255".parse().unwrap());
        assert_eq!(c, vec!["1.0.0.0/24".parse::<Ipv4Net>().unwrap()]);
        let c = v4_range_to_cidrs("1.0.0.1".parse().unwrap(), "1.0.0.6".parse().unwrap());
        let s: Vec<String> = c.iter().map(|n| n.to_string()).collect();
        assert_eq!(s, ["1.0.0.1/32", "1.0.0.2/31", "1.0.0.4/31", "1.0.0.6/32"]);
        let all = v4_range_to_cidrs(Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST);
        assert_eq!(all, vec!["0.0.0.0/0".parse::<Ipv4Net>().unwrap()]);
        let all6 = v6_range_to_cidrs(Ipv6Addr::UNSPECIFIED, Ipv6Addr::from(u128::MAX));
        assert_eq!(all6, vec!["::/0".parse::<Ipv6Net>().unwrap()]);
        assert!(range_to_cidrs("1.0.0.9".parse().unwrap(), "1.0.0.1".parse().unwrap()).is_none());
    }

    proptest! {
        // The prefixes are disjoint, ordered, cover exactly the range, and none can be merged.
        #[test]
        fn v4_cover_exactly(a in any::<u32>(), b in any::<u32>()) {
            let (s, e) = (a.min(b), a.max(b));
            let c = v4_range_to_cidrs(Ipv4Addr::from(s), Ipv4Addr::from(e));
            let mut next = s as u64;
            for n in &c {
                prop_assert_eq!(u32::from(n.network()) as u64, next);
                next = u32::from(n.broadcast()) as u64 + 1;
            }
            prop_assert_eq!(next, e as u64 + 1);
            for w in c.windows(2) {
                // Two adjacent equal-size siblings would make the set non-minimal.
                let mergeable = w[0].prefix_len() == w[1].prefix_len() && w[0].supernet().is_some() && w[0].supernet() == w[1].supernet();
                prop_assert!(!mergeable);
            }
        }

        #[test]
        fn v6_cover_exactly(a in any::<u128>(), b in any::<u128>()) {
            let (s, e) = (a.min(b), a.max(b));
            let c = v6_range_to_cidrs(Ipv6Addr::from(s), Ipv6Addr::from(e));
            prop_assert!(c.len() <= 2 * 128);
            let mut next = Some(s);
            for n in &c {
                prop_assert_eq!(Some(u128::from(n.network())), next);
                next = u128::from(n.broadcast()).checked_add(1);
            }
            prop_assert_eq!(next, e.checked_add(1));
        }
    }
}
