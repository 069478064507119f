//! What must never be probed: the IANA special-purpose registries (built in), opt-out lists
//! and user exclusions. Checked by `crawler plan` and again by the sender for every probe.

use crate::error::{LoadOptions, Result};
use crate::hitlist::load_prefixes;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use prefix_trie::PrefixMap;
use std::net::IpAddr;
use std::path::Path;

/// IANA IPv4 Special-Purpose Address Registry (RFC 6890 and updates).
pub const IANA_V4: &[&str] = &[
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.0.0.0/24", "192.0.2.0/24", "192.31.196.0/24", "192.52.193.0/24", "192.88.99.0/24",
    "192.168.0.0/16", "192.175.48.0/24", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24",
    "224.0.0.0/4", "240.0.0.0/4", "255.255.255.255/32",
];
/// IANA IPv6 Special-Purpose Address Registry (whole 2001::/23 block, conservatively).
pub const IANA_V6: &[&str] = &[
    "::/128", "::1/128", "::ffff:0:0/96", "64:ff9b::/96", "64:ff9b:1::/48", "100::/64", "2001::/23",
    "2001:db8::/32", "2002::/16", "2620:4f:8000::/48", "3fff::/20", "5f00::/16", "fc00::/7", "fe80::/10", "ff00::/8",
];

/// Why an address is excluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    Reserved,
    OptOut,
    Excluded,
    Aliased,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Reserved => "reserved",
            Reason::OptOut => "opt-out",
            Reason::Excluded => "excluded",
            Reason::Aliased => "aliased",
        }
    }
}

/// Special-purpose space that may be probed anyway must lie inside the IANA registries: the
/// flag exists for one's own lab in documentation or benchmarking space, and a prefix outside
/// them (say `0.0.0.0/0`) would only say "probe everything" while reading as a narrow exception.
pub fn check_allow_reserved(nets: &[IpNet]) -> std::result::Result<(), String> {
    for n in nets {
        let inside = match n {
            IpNet::V4(_) => IANA_V4.iter().any(|p| p.parse::<IpNet>().is_ok_and(|p| p.contains(n))),
            IpNet::V6(_) => IANA_V6.iter().any(|p| p.parse::<IpNet>().is_ok_and(|p| p.contains(n))),
        };
        if !inside {
            return Err(format!("allow-reserved prefix {n} is not inside the IANA special-purpose registry (e.g. 198.18.0.0/15, 2001:db8::/32); only such space can be allowed"));
        }
        if n.trunc() != *n {
            return Err(format!("allow-reserved prefix {n} has host bits set (did you mean {}?)", n.trunc()));
        }
    }
    Ok(())
}

/// Two tries, not one: with opt-outs and exclusions in the same longest-prefix-match trie as
/// the IANA ranges, a more specific reserved prefix that is allowed (the lab's, say) would be
/// the match and hide a broader opt-out around it. Listed space is looked up first and always
/// wins; the allow list only ever lifts `Reserved`.
#[derive(Default)]
pub struct Blocklist {
    /// IANA special-purpose space.
    reserved4: PrefixMap<Ipv4Net, ()>,
    reserved6: PrefixMap<Ipv6Net, ()>,
    /// Opt-outs and exclusions (and whatever else is added with a reason).
    listed4: PrefixMap<Ipv4Net, Reason>,
    listed6: PrefixMap<Ipv6Net, Reason>,
    /// Special-purpose space explicitly allowed (`--allow-reserved PREFIX`, the lab's ranges).
    allowed_reserved: Vec<IpNet>,
}

impl Blocklist {
    /// The built-in IANA list, minus nothing: reserved space is refused unless allowed.
    pub fn with_iana(allow_reserved: &[IpNet]) -> Blocklist {
        let mut b = Blocklist { allowed_reserved: allow_reserved.to_vec(), ..Default::default() };
        for p in IANA_V4 {
            b.reserved4.insert(p.parse().unwrap(), ());
        }
        for p in IANA_V6 {
            b.reserved6.insert(p.parse().unwrap(), ());
        }
        b
    }

    /// What a crawl must not probe, the same at plan time and at send time: IANA
    /// special-purpose space (minus what is explicitly allowed), opt-out lists and exclusions.
    pub fn build(allow_reserved: &[IpNet], opt_out: &[std::path::PathBuf], exclude: &[std::path::PathBuf], opts: LoadOptions) -> Result<Blocklist> {
        let mut b = Blocklist::with_iana(allow_reserved);
        for f in opt_out {
            b.add_file(f, Reason::OptOut, opts)?;
        }
        for f in exclude {
            b.add_file(f, Reason::Excluded, opts)?;
        }
        Ok(b)
    }

    pub fn add(&mut self, net: IpNet, why: Reason) {
        if why == Reason::Reserved {
            match net {
                IpNet::V4(n) => self.reserved4.insert(n.trunc(), ()),
                IpNet::V6(n) => self.reserved6.insert(n.trunc(), ()),
            };
            return;
        }
        match net {
            IpNet::V4(n) => {
                self.listed4.insert(n.trunc(), why);
            }
            IpNet::V6(n) => {
                self.listed6.insert(n.trunc(), why);
            }
        }
    }

    pub fn add_file(&mut self, path: &Path, why: Reason, opts: LoadOptions) -> Result<usize> {
        let (nets, _) = load_prefixes(path, opts)?;
        let n = nets.len();
        for net in nets {
            self.add(net, why);
        }
        Ok(n)
    }

    fn allowed(&self, net: &IpNet) -> bool {
        self.allowed_reserved.iter().any(|a| a.contains(net))
    }

    /// Why a whole prefix must not be probed, when a single blocked range covers all of it.
    pub fn covers(&self, net: IpNet) -> Option<Reason> {
        let (listed, reserved) = match net {
            IpNet::V4(n) => (self.listed4.get_lpm(&n).map(|(_, r)| *r), self.reserved4.get_lpm(&n).is_some()),
            IpNet::V6(n) => (self.listed6.get_lpm(&n).map(|(_, r)| *r), self.reserved6.get_lpm(&n).is_some()),
        };
        listed.or((reserved && !self.allowed(&net)).then_some(Reason::Reserved))
    }

    /// Does anything blocked lie inside `net` (so its addresses need checking one by one)?
    pub fn any_within(&self, net: IpNet) -> bool {
        match net {
            IpNet::V4(n) => self.listed4.children(&n).next().is_some() || self.reserved4.children(&n).next().is_some(),
            IpNet::V6(n) => self.listed6.children(&n).next().is_some() || self.reserved6.children(&n).next().is_some(),
        }
    }

    /// Why `ip` must not be probed, if it must not. An opt-out or exclusion applies wherever
    /// it lies, allowed reserved space included.
    pub fn check(&self, ip: IpAddr) -> Option<Reason> {
        let (listed, reserved) = match ip {
            IpAddr::V4(a) => (self.listed4.get_lpm(&Ipv4Net::from(a)).map(|(_, r)| *r), self.reserved4.get_lpm(&Ipv4Net::from(a)).is_some()),
            IpAddr::V6(a) => (self.listed6.get_lpm(&Ipv6Net::from(a)).map(|(_, r)| *r), self.reserved6.get_lpm(&Ipv6Net::from(a)).is_some()),
        };
        listed.or((reserved && !self.allowed(&IpNet::from(ip))).then_some(Reason::Reserved))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn reserved_refused_unless_allowed_and_optout_still_applies() {
        let mut b = Blocklist::with_iana(&[]);
        for a in ["10.1.2.3", "127.0.0.1", "198.18.0.5", "224.0.0.1", "2001:db8::1", "fe80::1", "::1"] {
            assert_eq!(b.check(a.parse().unwrap()), Some(Reason::Reserved), "{a}");
        }
        assert_eq!(b.check("8.8.8.8".parse().unwrap()), None);
        let mut lab = Blocklist::with_iana(&["198.18.0.0/15".parse().unwrap(), "2001:db8::/32".parse().unwrap()]);
        lab.add("198.18.32.0/24".parse().unwrap(), Reason::OptOut);
        assert_eq!(lab.check("198.18.0.5".parse().unwrap()), None);
        assert_eq!(lab.check("198.18.32.9".parse().unwrap()), Some(Reason::OptOut));
        assert_eq!(lab.check("10.0.0.1".parse().unwrap()), Some(Reason::Reserved));
        assert_eq!(lab.check("2001:db8:101::5".parse().unwrap()), None);
        b.add("8.8.8.0/24".parse().unwrap(), Reason::Excluded);
        assert_eq!(b.check("8.8.8.8".parse().unwrap()), Some(Reason::Excluded));
    }

    #[test]
    fn a_broader_opt_out_or_exclusion_beats_a_more_specific_allowed_reserved_prefix() {
        // 192.0.2.0/24 (TEST-NET-1) allowed, inside an opt-out /16 and an exclusion /16.
        let (allowed, optout): (IpNet, IpNet) = ("192.0.2.0/24".parse().unwrap(), "192.0.0.0/16".parse().unwrap());
        let v6: IpNet = "2001:db8::/32".parse().unwrap();
        for why in [Reason::OptOut, Reason::Excluded] {
            let mut b = Blocklist::with_iana(&[allowed, v6]);
            b.add(optout, why);
            b.add("2001::/16".parse().unwrap(), why);
            // Send time: every address.
            assert_eq!(b.check("192.0.2.7".parse().unwrap()), Some(why));
            assert_eq!(b.check("192.0.77.1".parse().unwrap()), Some(why));
            assert_eq!(b.check("2001:db8::5".parse().unwrap()), Some(why));
            // Plan time: a whole announced prefix inside the allowed /24, and the /24 itself.
            assert_eq!(b.covers("192.0.2.128/25".parse().unwrap()), Some(why));
            assert_eq!(b.covers(allowed), Some(why));
            assert_eq!(b.covers("2001:db8:1::/48".parse().unwrap()), Some(why));
            // A prefix around the opt-out must be checked address by address.
            assert!(b.any_within("192.0.0.0/8".parse().unwrap()));
            // Without the opt-out, the allowed space is probed and the rest stays reserved.
            let b = Blocklist::with_iana(&[allowed]);
            assert_eq!(b.check("192.0.2.7".parse().unwrap()), None);
            assert_eq!(b.covers(allowed), None);
            assert_eq!(b.check("192.0.0.7".parse().unwrap()), Some(Reason::Reserved));
        }
    }

    #[test]
    fn allow_reserved_only_takes_special_purpose_space() {
        let ok: Vec<IpNet> = ["198.18.0.0/15", "2001:db8::/32", "192.0.2.0/25", "10.1.0.0/16"].iter().map(|s| s.parse().unwrap()).collect();
        assert!(check_allow_reserved(&ok).is_ok());
        for bad in ["0.0.0.0/0", "8.8.8.0/24", "198.0.0.0/8", "::/0", "2600::/12", "198.18.0.1/15"] {
            let e = check_allow_reserved(&[bad.parse().unwrap()]).unwrap_err();
            assert!(e.contains(bad), "{bad}: {e}");
        }
    }
}
