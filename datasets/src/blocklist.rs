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

#[derive(Default)]
pub struct Blocklist {
    v4: PrefixMap<Ipv4Net, Reason>,
    v6: PrefixMap<Ipv6Net, Reason>,
    /// Special-purpose space explicitly allowed (`--allow-reserved PREFIX`, the lab's ranges).
    allowed_reserved: Vec<IpNet>,
}

impl Blocklist {
    /// The built-in IANA list, minus nothing: reserved space is refused unless allowed.
    pub fn with_iana(allow_reserved: &[IpNet]) -> Blocklist {
        let mut b = Blocklist { allowed_reserved: allow_reserved.to_vec(), ..Default::default() };
        for p in IANA_V4 {
            b.v4.insert(p.parse().unwrap(), Reason::Reserved);
        }
        for p in IANA_V6 {
            b.v6.insert(p.parse().unwrap(), Reason::Reserved);
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
        match net {
            IpNet::V4(n) => {
                // A reserved covering prefix must not hide a more specific opt-out (LPM picks the longer one).
                self.v4.insert(n.trunc(), why);
            }
            IpNet::V6(n) => {
                self.v6.insert(n.trunc(), why);
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

    /// Why a whole prefix must not be probed, when a single blocked range covers all of it.
    pub fn covers(&self, net: IpNet) -> Option<Reason> {
        let hit = match net {
            IpNet::V4(n) => self.v4.get_lpm(&n).map(|(_, r)| *r),
            IpNet::V6(n) => self.v6.get_lpm(&n).map(|(_, r)| *r),
        };
        match hit {
            Some(Reason::Reserved) if self.allowed_reserved.iter().any(|a| a.contains(&net)) => None,
            other => other,
        }
    }

    /// Does anything blocked lie inside `net` (so its addresses need checking one by one)?
    pub fn any_within(&self, net: IpNet) -> bool {
        match net {
            IpNet::V4(n) => self.v4.children(&n).next().is_some(),
            IpNet::V6(n) => self.v6.children(&n).next().is_some(),
        }
    }

    /// Why `ip` must not be probed, if it must not. An opt-out or exclusion nested inside
    /// allowed reserved space still applies.
    pub fn check(&self, ip: IpAddr) -> Option<Reason> {
        let hit = match ip {
            IpAddr::V4(a) => self.v4.get_lpm(&Ipv4Net::from(a)).map(|(_, r)| *r),
            IpAddr::V6(a) => self.v6.get_lpm(&Ipv6Net::from(a)).map(|(_, r)| *r),
        };
        match hit {
            Some(Reason::Reserved) => {
                if self.allowed_reserved.iter().any(|n| n.contains(&ip)) {
                    None
                } else {
                    Some(Reason::Reserved)
                }
            }
            other => other,
        }
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
}
