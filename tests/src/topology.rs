//! The declarative lab topology (`topologies/*.toml`) and the hosts it implies.
//!
//! Everything here is deterministic in the topology's `seed`: the `lab` that builds the
//! namespaces, the `serve` processes that open the listening sockets and the tests that
//! compare crawls against the ground truth all derive the same hosts from the same file.

use anyhow::{bail, Context, Result};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

/// Port-level filter a border router or the transit core applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// Silently drop the SYN.
    Drop,
    /// Reject with ICMP administratively prohibited (v4 3/13, v6 1/1).
    IcmpAdmin,
    /// Reject with ICMP port unreachable (v4 3/3, v6 1/4).
    IcmpPort,
    /// Reject with a TCP RST forged by the router (TTL differs from the host's).
    Rst,
    /// Reject with ICMP host unreachable (v4 3/1, v6 1/3 address unreachable): nftables'
    /// `reject with icmpx type host-unreachable`, a common one-line port filter.
    IcmpHost,
    /// Reject with ICMP network unreachable (v4 3/0, v6 1/0 no route).
    IcmpNet,
    /// Reject with ICMP host prohibited (v4 3/10) / reject-route (v6 1/6).
    IcmpHostProhibited,
    /// Reject with ICMP network prohibited (v4 3/9) / source policy failed (v6 1/5).
    IcmpNetProhibited,
    None,
}

impl Policy {
    /// The ICMP (type, code) this policy rejects with, per family.
    pub fn icmp(self, v6: bool) -> Option<(u8, u8)> {
        Some(match (self, v6) {
            (Policy::IcmpAdmin, false) => (3, 13),
            (Policy::IcmpAdmin, true) => (1, 1),
            (Policy::IcmpPort, false) => (3, 3),
            (Policy::IcmpPort, true) => (1, 4),
            (Policy::IcmpHost, false) => (3, 1),
            (Policy::IcmpHost, true) => (1, 3),
            (Policy::IcmpNet, false) => (3, 0),
            (Policy::IcmpNet, true) => (1, 0),
            (Policy::IcmpHostProhibited, false) => (3, 10),
            (Policy::IcmpHostProhibited, true) => (1, 6),
            (Policy::IcmpNetProhibited, false) => (3, 9),
            (Policy::IcmpNetProhibited, true) => (1, 5),
            _ => return None,
        })
    }
    /// The mechanism a correct analysis names for this filter.
    pub fn mechanism(self, v6: bool) -> &'static str {
        match (self, self.icmp(v6)) {
            (Policy::Drop, _) => "silent-drop",
            (Policy::Rst, _) => "rst-injected",
            (_, Some((3, 9 | 10 | 13))) | (_, Some((1, 1 | 5 | 6))) => "icmp-prohibited",
            (_, Some((3, 3))) | (_, Some((1, 4))) => "icmp-port-unreachable",
            (_, Some((3, 1))) | (_, Some((1, 3))) => "icmp-host-unreachable",
            (_, Some((3, 0))) | (_, Some((1, 0))) => "icmp-net-unreachable",
            _ => "",
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FamilyPolicies {
    #[serde(default)]
    pub v4: BTreeMap<String, Policy>,
    #[serde(default)]
    pub v6: BTreeMap<String, Policy>,
}

impl FamilyPolicies {
    pub fn get(&self, v6: bool, port: u16) -> Policy {
        let m = if v6 { &self.v6 } else { &self.v4 };
        m.get(&port.to_string()).copied().unwrap_or(Policy::None)
    }
    pub fn entries(&self, v6: bool) -> Vec<(u16, Policy)> {
        let m = if v6 { &self.v6 } else { &self.v4 };
        m.iter().map(|(k, v)| (k.parse().expect("validated"), *v)).collect()
    }
}

/// Filter a border applies to its customers' *outbound* traffic, by destination port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutPolicy {
    /// Stateless: drop every packet to the port (the common "deny tcp any any eq 25" ACL).
    Drop,
    /// Stateless reject with ICMP administratively prohibited, sent back to the customer host.
    RejectIcmp,
    /// Stateless reject with a TCP RST, sent back to the customer host.
    RejectRst,
    /// Stateful: drop only new connections to the port (`ct state new`); replies to inbound
    /// connections pass, so source-port reflection cannot see it.
    NewDrop,
    /// Stateful throttle (AWS-like): the first `throttle_per_minute` new connections a minute
    /// pass, later ones are dropped until the bucket refills.
    Throttle,
    /// A transparent SMTP proxy in the border answers in the destination's place, with its own
    /// banner and without STARTTLS (nat redirect to `lab proxy`).
    Intercept,
    /// A firewall's ESMTP inspection relays to the destination but masks STARTTLS in the EHLO
    /// reply (Cisco ASA's default), so the client never upgrades.
    Strip,
    /// A TLS-intercepting proxy on an implicit-TLS port: TLS with its own certificate towards
    /// the customer, its own TLS session to the destination.
    TlsIntercept,
    /// A terminating TLS proxy on an implicit-TLS port: TLS with its own certificate, then it
    /// answers SMTP itself (an ISP's own MTA behind TLS); nothing reaches the destination.
    TlsTerminate,
    /// A load-balanced pool of relays where one member inspects: every second connection gets
    /// Cisco ASA's treatment (banner masked, STARTTLS rewritten), the others pass untouched.
    StripSometimes,
}

impl OutPolicy {
    /// Does the filter stop a host's *reply* to our reflection probe (a packet of a connection
    /// we opened)? Only stateless filters do: conntrack-based rules and NAT act on new
    /// connections, and a reply belongs to the prober's connection.
    pub fn stops_replies(self) -> bool {
        matches!(self, OutPolicy::Drop | OutPolicy::RejectIcmp | OutPolicy::RejectRst)
    }
    /// A proxy that stands in the connection (answers or relays it).
    pub fn proxied(self) -> bool {
        self.proxy_port().is_some()
    }
    /// The port `lab proxy` listens on in the border for this policy, if it needs one.
    pub fn proxy_port(self) -> Option<u16> {
        match self {
            OutPolicy::Intercept => Some(addr::PROXY_INTERCEPT_PORT),
            OutPolicy::Strip => Some(addr::PROXY_STRIP_PORT),
            OutPolicy::TlsIntercept => Some(addr::PROXY_TLS_PORT),
            OutPolicy::TlsTerminate => Some(addr::PROXY_TLS_TERMINATE_PORT),
            OutPolicy::StripSometimes => Some(addr::PROXY_STRIP_SOMETIMES_PORT),
            _ => None,
        }
    }
}

/// The implicit-TLS mail port (TLS from the first byte), as `crawler sink`/`egress` default.
pub const IMPLICIT_TLS_PORT: u16 = 465;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Border {
    #[serde(default)]
    pub v4: BTreeMap<String, Policy>,
    #[serde(default)]
    pub v6: BTreeMap<String, Policy>,
    /// Outbound filters on the customers' traffic, by destination port.
    #[serde(default)]
    pub out_v4: BTreeMap<String, OutPolicy>,
    #[serde(default)]
    pub out_v6: BTreeMap<String, OutPolicy>,
    /// Probability that the border loses a forwarded packet (each direction).
    #[serde(default)]
    pub loss: f64,
    /// The border answers every SYN to the provider's space itself (a SYN-ACK-everything middlebox).
    #[serde(default)]
    pub synack_all: bool,
    /// Kernel ICMP rate limit on the border in ms (None: the topology's; 0: unlimited).
    #[serde(default)]
    pub icmp_ratelimit_ms: Option<u32>,
    /// A scan detector banning sources that cross its threshold.
    #[serde(default)]
    pub ban: Option<Ban>,
    /// New connections a `throttle` policy lets through per minute (per family).
    #[serde(default = "default_throttle")]
    pub throttle_per_minute: u32,
    /// Filters on packets from the Internet by their *source* port (an ingress ACL such as
    /// "deny tcp any eq smtp any"): the replies of remote mail servers to the provider's hosts
    /// are refused, so its customers cannot send on that port — seen by reflection probes.
    #[serde(default)]
    pub sport_v4: BTreeMap<String, Policy>,
    #[serde(default)]
    pub sport_v6: BTreeMap<String, Policy>,
    /// The provider's hosts sit behind a fabric with per-flow load balancing over two paths of
    /// unequal length (ECMP, L4 hash): one host's replies arrive with TTLs one apart between
    /// flows.
    #[serde(default)]
    pub ecmp: bool,
    /// The border null-routes the lab's first sink (a provider blackholing an address, or a
    /// path that loses it): its customer vantages can reach no port of that sink.
    #[serde(default)]
    pub blackhole_sink: bool,
    /// The customers' IPv4 traffic leaves through policy NAT: web ports (80, 443) from one
    /// public address, every other port from a pool of two, alternating per connection (cloud
    /// NAT gateways, carrier-grade NAT).
    #[serde(default)]
    pub nat_pool: bool,
}

fn default_throttle() -> u32 {
    2
}

impl Border {
    pub fn policies(&self) -> FamilyPolicies {
        FamilyPolicies { v4: self.v4.clone(), v6: self.v6.clone() }
    }
    /// The outbound filter on destination port `port`, if any.
    pub fn out(&self, v6: bool, port: u16) -> Option<OutPolicy> {
        (if v6 { &self.out_v6 } else { &self.out_v4 }).get(&port.to_string()).copied()
    }
    pub fn out_entries(&self, v6: bool) -> Vec<(u16, OutPolicy)> {
        parse_port_map(if v6 { &self.out_v6 } else { &self.out_v4 }, "border.out").expect("validated")
    }
    /// Does any outbound policy need `lab proxy` running in the border?
    pub fn needs_proxy(&self) -> bool {
        [false, true].iter().any(|v6| self.out_entries(*v6).iter().any(|(_, o)| o.proxy_port().is_some()))
    }
    pub fn sport(&self, v6: bool, port: u16) -> Policy {
        (if v6 { &self.sport_v6 } else { &self.sport_v4 }).get(&port.to_string()).copied().unwrap_or(Policy::None)
    }
    pub fn sport_entries(&self, v6: bool) -> Vec<(u16, Policy)> {
        parse_port_map(if v6 { &self.sport_v6 } else { &self.sport_v4 }, "border.sport").expect("validated")
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AsSpec {
    pub asn: u32,
    #[serde(default)]
    pub v4: Vec<Ipv4Net>,
    #[serde(default)]
    pub v6: Vec<Ipv6Net>,
    /// Other ASes that also originate this AS's v4 prefixes (written as `A_B` in pfx2as).
    #[serde(default)]
    pub multi_origin: Vec<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mix {
    pub dead: f64,
    #[serde(default)]
    pub v6_hosts_per_prefix: usize,
    #[serde(default)]
    pub all_ports: f64,
    #[serde(default)]
    pub host_firewall_25: f64,
    /// Share of hosts whose own firewall drops packets *from* the mail ports (source port 25,
    /// 465, 587 or 2525, the SMTP alternative): reflection probes to them stay silent, which the
    /// neutral control port (2525) must tell apart from provider filtering.
    #[serde(default)]
    pub src_port_firewall: f64,
    pub open: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provider {
    pub name: String,
    pub org_id: String,
    pub category: String,
    #[serde(rename = "as")]
    pub ases: Vec<AsSpec>,
    #[serde(default)]
    pub border: Border,
    #[serde(default)]
    pub upstream: FamilyPolicies,
    /// Filters the transit applies to this provider only for traffic from the second measuring
    /// vantage (a path-specific filter: one vantage sees a block the other does not).
    #[serde(default)]
    pub path_filter: FamilyPolicies,
    #[serde(default)]
    pub opt_out: bool,
    #[serde(default)]
    pub aliased_v6: bool,
    pub dead: Option<f64>,
    pub all_ports: Option<f64>,
    pub host_firewall_25: Option<f64>,
    pub src_port_firewall: Option<f64>,
    pub v6_hosts_per_prefix: Option<usize>,
    pub open: Option<BTreeMap<String, f64>>,
    /// Customer vantage namespaces behind this provider's border (where `crawler egress` runs).
    #[serde(default)]
    pub customer_vantages: usize,
}

/// A customer vantage: a namespace behind provider `provider`'s border, with a small prefix
/// of its own that the provider's first AS originates (mapped to the provider by source
/// address, never planned: it is on the lab's exclusion list).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Customer {
    /// The `--vantage` name, e.g. `egress25-1`.
    pub name: String,
    pub provider: usize,
    /// Index among the provider's vantages: the border's interface is `vc<k>`.
    pub k: usize,
    pub asn: u32,
    pub v4_net: Ipv4Net,
    pub v6_net: Ipv6Net,
    /// The border's address on the vantage's link (its gateway).
    pub gw_v4: Ipv4Addr,
    pub gw_v6: Ipv6Addr,
    pub v4: Ipv4Addr,
    pub v6: Ipv6Addr,
}

impl Customer {
    pub fn ip(&self, v6: bool) -> IpAddr {
        if v6 { self.v6.into() } else { self.v4.into() }
    }
    pub fn iface(&self) -> String {
        format!("vc{}", self.k)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    pub name: String,
    pub seed: u64,
    pub transit_asn: u32,
    pub transit_org: String,
    /// The routers' ICMP error rate limit (ms between errors to one destination, after a burst
    /// of 6): Linux's default, 1000, as on the Internet; 0 turns it off. A border can override it.
    #[serde(default = "default_icmp_ratelimit")]
    pub icmp_ratelimit_ms: u32,
    pub defaults: Mix,
    #[serde(rename = "provider")]
    pub providers: Vec<Provider>,
    /// Sinks on the lab Internet (1 or 2; the second in another network, so that a provider
    /// null-routing one of them is told from a port block).
    #[serde(default = "one")]
    pub sinks: usize,
    /// A third measuring vantage whose own uplink drops packets *to* port 25 (as residential,
    /// campus and many cloud networks do): every reflection reply to our port 25 is lost there.
    #[serde(default)]
    pub blind_vantage: bool,
    /// Routers as just after a link flap: fresh IPv6 link-local addresses still in duplicate
    /// address detection, neighbours unresolved — the first second of IPv6 packets is lost
    /// and the retries answer. Off by default (the Internet's routers are warm).
    #[serde(default)]
    pub cold_ipv6: bool,
}

fn one() -> usize {
    1
}

fn default_icmp_ratelimit() -> u32 {
    1000
}

/// A scan detector on a border (portsentry, fail2ban, an IPS port-scan signature): a source
/// crossing a threshold is banned — every packet from or to it dropped — for `seconds`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ban {
    /// More than this many SYNs a second from one source (after a burst of five seconds' worth).
    pub syn_rate: Option<u32>,
    /// More than this many distinct destination ports a minute from one source.
    pub distinct_ports_per_minute: Option<u32>,
    #[serde(default = "default_ban_seconds")]
    pub seconds: u32,
}

fn default_ban_seconds() -> u32 {
    600
}

impl Topology {
    /// The ICMP rate limit (ms) of provider `p`'s border.
    pub fn border_icmp_ratelimit(&self, p: &Provider) -> u32 {
        p.border.icmp_ratelimit_ms.unwrap_or(self.icmp_ratelimit_ms)
    }
    /// Whether some provider is filtered on the second vantage's path only (the lab then has
    /// that vantage).
    pub fn has_alt_vantage(&self) -> bool {
        self.providers.iter().any(|p| !p.path_filter.v4.is_empty() || !p.path_filter.v6.is_empty())
    }
}

/// One lab address and what it is.
#[derive(Debug, Clone)]
pub struct Host {
    pub ip: IpAddr,
    pub provider: usize,
    pub asn: u32,
    pub prefix: IpNet,
    pub dead: bool,
    pub firewall_25: bool,
    /// Drops packets from source ports `SRC_FIREWALL_PORTS`.
    pub src_port_firewall: bool,
    pub all_ports: bool,
    /// Ports with a listening socket (sorted).
    pub open: Vec<u16>,
}

/// Addresses of the fixed parts of the lab (see `topologies/default.toml`).
pub mod addr {
    use std::net::{Ipv4Addr, Ipv6Addr};
    pub const VANTAGE_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
    pub const CORE_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    /// A second vantage whose uplink drops outbound 25 (the cloud-vantage self-check case).
    pub const VANTAGE2_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 6);
    pub const CORE2_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 5);
    pub const VANTAGE_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 2);
    pub const CORE_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 1);
    pub const VANTAGE2_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 2, 0, 0, 0, 2);
    pub const CORE2_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 2, 0, 0, 0, 1);
    /// A second measuring vantage, attached elsewhere on the core (its path can differ).
    pub const ALT_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 14);
    pub const CORE_ALT_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 13);
    pub const ALT_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 4, 0, 0, 0, 2);
    pub const CORE_ALT_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 4, 0, 0, 0, 1);
    /// The sink namespace, on the core router: link 192.0.2.8/29 (core .9, sink .10).
    pub const CORE_SINK_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 9);
    pub const SINK_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
    pub const CORE_SINK_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 3, 0, 0, 0, 1);
    pub const SINK_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 3, 0, 0, 0, 2);
    /// A second sink in another network: link 192.0.2.16/29 (core .17, sink .18).
    pub const CORE_SINK2_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 17);
    pub const SINK2_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 18);
    pub const CORE_SINK2_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 5, 0, 0, 0, 1);
    pub const SINK2_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 5, 0, 0, 0, 2);
    /// The reflection-blind vantage (its uplink drops packets to port 25): 192.0.2.20/30.
    pub const BLIND_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 22);
    pub const CORE_BLIND_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 21);
    pub const BLIND_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 6, 0, 0, 0, 2);
    pub const CORE_BLIND_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 6, 0, 0, 0, 1);
    /// A sink's addresses (1 or 2).
    pub fn sink(n: usize) -> (Ipv4Addr, Ipv6Addr) {
        if n == 2 { (SINK2_V4, SINK2_V6) } else { (SINK_V4, SINK_V6) }
    }
    /// Ports `crawler sink` serves in the lab (its defaults) and `crawler egress` dials.
    pub const SINK_PORTS: [u16; 6] = [25, 465, 587, 2525, 80, 443];
    /// Customer vantage prefixes: a /29 (and a /64) each, carved from space no provider uses.
    pub const CUSTOMER_V4: &str = "198.19.255.0/24";
    pub const CUSTOMER_V6: &str = "2001:db8:1ff::/48";
    /// Where `lab proxy` listens in a border, per outbound policy that redirects to it.
    pub const PROXY_INTERCEPT_PORT: u16 = 10025;
    pub const PROXY_STRIP_PORT: u16 = 10026;
    pub const PROXY_TLS_PORT: u16 = 10465;
    pub const PROXY_TLS_TERMINATE_PORT: u16 = 10466;
    pub const PROXY_STRIP_SOMETIMES_PORT: u16 = 10027;
    /// Provider `i`'s spine (ECMP's longer path): border-spine 192.0.2.128+8i/30 and
    /// spine-hosts +4/30, as (border, spine up, spine down, hosts).
    pub fn spine_v4(i: usize) -> (Ipv4Addr, Ipv4Addr, Ipv4Addr, Ipv4Addr) {
        let b = 128 + 8 * i as u8;
        (Ipv4Addr::new(192, 0, 2, b + 1), Ipv4Addr::new(192, 0, 2, b + 2), Ipv4Addr::new(192, 0, 2, b + 5), Ipv4Addr::new(192, 0, 2, b + 6))
    }
    pub fn spine_v6(i: usize) -> (Ipv6Addr, Ipv6Addr, Ipv6Addr, Ipv6Addr) {
        let s = i as u16 + 1;
        (Ipv6Addr::new(0x2001, 0xdb8, 0xfd, s, 0, 0, 0, 1), Ipv6Addr::new(0x2001, 0xdb8, 0xfd, s, 0, 0, 0, 2), Ipv6Addr::new(0x2001, 0xdb8, 0xfc, s, 0, 0, 0, 1), Ipv6Addr::new(0x2001, 0xdb8, 0xfc, s, 0, 0, 0, 2))
    }
    /// Port the SYN-ACK-everything listeners sit on (never probed).
    pub const CATCH_ALL_PORT: u16 = 10;
    /// Source ports a `src_port_firewall` host drops: the mail ports and 2525.
    pub const SRC_FIREWALL_PORTS: [u16; 4] = [25, 465, 587, 2525];
    /// Hop limits as seen at the vantage: hosts are two forwarding hops away.
    pub const TTL_HOST: u8 = 62;
    pub const TTL_BORDER: u8 = 63;
    pub const TTL_CORE: u8 = 64;

    /// core <-> border link of provider `i`: 198.51.100.8(i+1)/29, core .1, border .2.
    pub fn core_border_v4(i: usize) -> (Ipv4Addr, Ipv4Addr) {
        let b = 8 * (i as u8 + 1);
        (Ipv4Addr::new(198, 51, 100, b + 1), Ipv4Addr::new(198, 51, 100, b + 2))
    }
    pub fn core_border_v6(i: usize) -> (Ipv6Addr, Ipv6Addr) {
        let s = i as u16 + 1;
        (Ipv6Addr::new(0x2001, 0xdb8, 0xff, s, 0, 0, 0, 1), Ipv6Addr::new(0x2001, 0xdb8, 0xff, s, 0, 0, 0, 2))
    }
    /// border <-> hosts link of provider `i`: 203.0.113.8(i+1)/29.
    pub fn border_hosts_v4(i: usize) -> (Ipv4Addr, Ipv4Addr) {
        let b = 8 * (i as u8 + 1);
        (Ipv4Addr::new(203, 0, 113, b + 1), Ipv4Addr::new(203, 0, 113, b + 2))
    }
    pub fn border_hosts_v6(i: usize) -> (Ipv6Addr, Ipv6Addr) {
        let s = i as u16 + 1;
        (Ipv6Addr::new(0x2001, 0xdb8, 0xfe, s, 0, 0, 0, 1), Ipv6Addr::new(0x2001, 0xdb8, 0xfe, s, 0, 0, 0, 2))
    }
}

/// Proxies speak what the port speaks: TLS interception only on the implicit-TLS port, an
/// SMTP proxy or STARTTLS stripping only on plain SMTP ports; a throttle lets some through.
fn validate_out(p: &Provider) -> Result<()> {
    for v6 in [false, true] {
        for (port, o) in parse_port_map(if v6 { &p.border.out_v6 } else { &p.border.out_v4 }, "border.out")? {
            let tls = port == IMPLICIT_TLS_PORT;
            match o {
                OutPolicy::TlsIntercept | OutPolicy::TlsTerminate if !tls => bail!("provider {}: {o:?} on port {port}: only on the implicit-TLS port {IMPLICIT_TLS_PORT}", p.name),
                OutPolicy::Intercept | OutPolicy::Strip | OutPolicy::StripSometimes if tls => bail!("provider {}: {o:?} on port {port}: not on the implicit-TLS port", p.name),
                OutPolicy::Throttle if p.border.throttle_per_minute == 0 => bail!("provider {}: throttle_per_minute must be at least 1", p.name),
                _ => {}
            }
        }
    }
    Ok(())
}

fn parse_port_map<T: Copy>(m: &BTreeMap<String, T>, what: &str) -> Result<Vec<(u16, T)>> {
    m.iter()
        .map(|(k, v)| Ok((k.parse::<u16>().with_context(|| format!("{what}: `{k}` is not a port"))?, *v)))
        .collect()
}

impl Topology {
    pub fn load(path: &Path) -> Result<Topology> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let t: Topology = toml::from_str(&text).with_context(|| format!("{}: bad topology", path.display()))?;
        t.validate().with_context(|| format!("{}: bad topology", path.display()))?;
        Ok(t)
    }

    fn validate(&self) -> Result<()> {
        if self.providers.is_empty() || self.providers.len() > 30 {
            bail!("need 1 to 30 providers, got {}", self.providers.len());
        }
        if !(1..=2).contains(&self.sinks) {
            bail!("sinks: 1 or 2, got {}", self.sinks);
        }
        let lab4: [Ipv4Net; 1] = ["198.18.0.0/15".parse().unwrap()];
        let lab6: Ipv6Net = "2001:db8:100::/40".parse().unwrap();
        parse_port_map(&self.defaults.open, "defaults.open")?;
        for p in &self.providers {
            for a in &p.ases {
                for n in &a.v4 {
                    if !lab4.iter().any(|l| l.contains(n)) {
                        bail!("provider {}: {n} is outside the lab's host space 198.18.0.0/15", p.name);
                    }
                }
                for n in &a.v6 {
                    if !lab6.contains(n) || n.prefix_len() > 64 {
                        bail!("provider {}: {n} must be a /64 or shorter inside 2001:db8:100::/40", p.name);
                    }
                }
            }
            parse_port_map(&p.border.v4, "border.v4")?;
            parse_port_map(&p.border.v6, "border.v6")?;
            parse_port_map(&p.border.out_v4, "border.out_v4")?;
            parse_port_map(&p.border.out_v6, "border.out_v6")?;
            parse_port_map(&p.border.sport_v4, "border.sport_v4")?;
            parse_port_map(&p.border.sport_v6, "border.sport_v6")?;
            if p.border.ecmp && self.providers.iter().position(|x| x.name == p.name).unwrap_or(0) >= 16 {
                bail!("provider {}: an ECMP fabric's spine links live in 192.0.2.128/25: only the first 16 providers can have one", p.name);
            }
            if p.border.blackhole_sink && self.sinks < 2 {
                bail!("provider {}: blackhole_sink needs a second sink (sinks = 2) to tell an unreachable sink from a blocked port", p.name);
            }
            parse_port_map(&p.upstream.v4, "upstream.v4")?;
            parse_port_map(&p.upstream.v6, "upstream.v6")?;
            parse_port_map(&p.path_filter.v4, "path_filter.v4")?;
            parse_port_map(&p.path_filter.v6, "path_filter.v6")?;
            if let Some(o) = &p.open {
                parse_port_map(o, "open")?;
            }
            if !(0.0..1.0).contains(&p.border.loss) {
                bail!("provider {}: loss must be in [0, 1)", p.name);
            }
            validate_out(p)?;
        }
        self.validate_customers()
    }

    /// Customer vantages fit their /24 and /48, and no provider announces that space.
    fn validate_customers(&self) -> Result<()> {
        let n: usize = self.providers.iter().map(|p| p.customer_vantages).sum();
        if n == 0 {
            return Ok(());
        }
        if n > 32 {
            bail!("at most 32 customer vantages in all (one /29 each in {}), got {n}", addr::CUSTOMER_V4);
        }
        let (c4, c6): (Ipv4Net, Ipv6Net) = (addr::CUSTOMER_V4.parse().unwrap(), addr::CUSTOMER_V6.parse().unwrap());
        for p in &self.providers {
            for a in &p.ases {
                if let Some(n) = a.v4.iter().find(|n| n.contains(&c4) || c4.contains(*n)) {
                    bail!("provider {}: {n} overlaps the customer vantages' space {c4}", p.name);
                }
                if let Some(n) = a.v6.iter().find(|n| n.contains(&c6) || c6.contains(*n)) {
                    bail!("provider {}: {n} overlaps the customer vantages' space {c6}", p.name);
                }
            }
        }
        Ok(())
    }

    pub fn dead(&self, p: &Provider) -> f64 {
        p.dead.unwrap_or(self.defaults.dead)
    }
    pub fn open_shares(&self, p: &Provider) -> Vec<(u16, f64)> {
        parse_port_map(p.open.as_ref().unwrap_or(&self.defaults.open), "open").expect("validated")
    }

    /// Every host of provider `pi`, v4 then v6, in address order per prefix.
    pub fn hosts_of(&self, pi: usize) -> Vec<Host> {
        let p = &self.providers[pi];
        let dead = self.dead(p);
        let all_ports = p.all_ports.unwrap_or(self.defaults.all_ports);
        let fw = p.host_firewall_25.unwrap_or(self.defaults.host_firewall_25);
        let src_fw = p.src_port_firewall.unwrap_or(self.defaults.src_port_firewall);
        let open = self.open_shares(p);
        let v6n = p.v6_hosts_per_prefix.unwrap_or(self.defaults.v6_hosts_per_prefix);
        let mut out = Vec::new();
        let mut mk = |ip: IpAddr, asn: u32, prefix: IpNet| {
            // One RNG per address, so a host's role does not depend on the others.
            let key = match ip {
                IpAddr::V4(a) => u32::from(a) as u128,
                IpAddr::V6(a) => u128::from(a),
            };
            let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ (key as u64) ^ ((key >> 64) as u64).rotate_left(17));
            let is_dead = rng.random_bool(dead);
            let is_all = rng.random_bool(all_ports);
            let is_fw = rng.random_bool(fw);
            let mut ports: Vec<u16> = open.iter().filter(|(_, s)| rng.random_bool(*s)).map(|(p, _)| *p).collect();
            ports.sort_unstable();
            // Drawn last, so the hosts' other roles do not move when it is added.
            let is_src_fw = src_fw > 0.0 && rng.random_bool(src_fw);
            out.push(Host { ip, provider: pi, asn, prefix, dead: is_dead, firewall_25: is_fw, src_port_firewall: is_src_fw, all_ports: is_all, open: ports });
        };
        for a in &p.ases {
            for n in &a.v4 {
                for ip in n.hosts_all() {
                    mk(IpAddr::V4(ip), a.asn, IpNet::V4(*n));
                }
            }
        }
        for a in &p.ases {
            for n in &a.v6 {
                let base = u128::from(n.network());
                let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ (base >> 64) as u64);
                let mut seen = std::collections::BTreeSet::new();
                while seen.len() < v6n {
                    // A host per /64 subnet, interface id small or random, like hitlist entries.
                    let subnet = rng.random_range(0u128..1024) << 64;
                    let iid: u128 = if rng.random_bool(0.5) { rng.random_range(1..256) } else { rng.random::<u64>() as u128 };
                    let host_bits = 128 - n.prefix_len() as u32;
                    let mask = if host_bits >= 128 { u128::MAX } else { (1u128 << host_bits) - 1 };
                    seen.insert(base | ((subnet | iid) & mask));
                }
                for v in seen {
                    mk(IpAddr::V6(Ipv6Addr::from(v)), a.asn, IpNet::V6(*n));
                }
            }
        }
        out
    }

    /// Every customer vantage, in provider order: vantage `g` gets 198.19.255.8g/29 (border
    /// .8g+1, vantage .8g+2) and 2001:db8:1ff:g::/64 (border ::1, vantage ::2).
    pub fn customers(&self) -> Vec<Customer> {
        let c4 = u32::from("198.19.255.0".parse::<Ipv4Addr>().unwrap());
        let mut out = Vec::new();
        for (i, p) in self.providers.iter().enumerate() {
            let slug = p.org_id.to_ascii_lowercase().trim_start_matches("org-").to_string();
            for k in 0..p.customer_vantages {
                let g = out.len() as u32;
                let net4 = c4 + 8 * g;
                let net6 = u128::from("2001:db8:1ff::".parse::<Ipv6Addr>().unwrap()) | ((g as u128) << 64);
                out.push(Customer {
                    name: format!("{slug}-{}", k + 1),
                    provider: i,
                    k,
                    asn: p.ases[0].asn,
                    v4_net: Ipv4Net::new(Ipv4Addr::from(net4), 29).unwrap(),
                    v6_net: Ipv6Net::new(Ipv6Addr::from(net6), 64).unwrap(),
                    gw_v4: Ipv4Addr::from(net4 + 1),
                    gw_v6: Ipv6Addr::from(net6 + 1),
                    v4: Ipv4Addr::from(net4 + 2),
                    v6: Ipv6Addr::from(net6 + 2),
                });
            }
        }
        out
    }

    pub fn all_hosts(&self) -> Vec<Host> {
        (0..self.providers.len()).flat_map(|i| self.hosts_of(i)).collect()
    }
}

trait HostsAll {
    fn hosts_all(&self) -> Box<dyn Iterator<Item = Ipv4Addr>>;
}
impl HostsAll for Ipv4Net {
    /// Every address of the prefix: AnyIP answers for network and broadcast addresses too.
    fn hosts_all(&self) -> Box<dyn Iterator<Item = Ipv4Addr>> {
        let a = u32::from(self.network());
        let b = u32::from(self.broadcast());
        Box::new((a..=b).map(Ipv4Addr::from))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn shipped_topologies_parse_and_are_deterministic() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("topologies");
        let t = Topology::load(&root.join("default.toml")).unwrap();
        assert!(t.providers.len() >= 8);
        let a = t.all_hosts();
        let b = t.all_hosts();
        assert_eq!(a.len(), b.len());
        assert!(a.iter().zip(&b).all(|(x, y)| x.ip == y.ip && x.dead == y.dead && x.open == y.open));
        let dead = a.iter().filter(|h| h.dead).count() as f64 / a.len() as f64;
        assert!((0.2..0.4).contains(&dead), "dead share {dead}");
        let large = Topology::load(&root.join("large.toml")).unwrap();
        let n: usize = (0..large.providers.len()).map(|i| large.hosts_of(i).len()).sum();
        assert!(n >= 131_072, "large topology has {n} addresses");
    }
}
