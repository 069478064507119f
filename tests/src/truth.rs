//! Ground truth: what a prober at the vantage should observe for (host, port), and why,
//! and what verdict a correct analysis must reach per provider and address family.

use crate::topology::{addr, Customer, Host, OutPolicy, Policy, Topology};
use serde::Serialize;
use std::net::IpAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "reply", rename_all = "kebab-case")]
pub enum Expect {
    Synack { ttl: u8 },
    Rst { ttl: u8 },
    Icmp { icmp_type: u8, icmp_code: u8, responder: IpAddr, ttl: u8 },
    None,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Truth {
    pub expect: Expect,
    pub reason: &'static str,
    /// The path loses packets: silence after all retries is possible (and tolerated).
    pub lossy: bool,
    /// The expected ICMP error comes from a router that rate-limits them (as real routers do):
    /// silence is as right an observation as the error.
    pub rate_limited: bool,
    /// The reply comes from a host behind an ECMP fabric: per flow it takes the direct path or
    /// the one a hop longer, so its TTL is the expected one or one less.
    #[serde(default)]
    pub ecmp: bool,
}

/// Which measuring vantage a probe leaves from: the main one, or the second one, whose path
/// through the transit can differ (`path_filter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum From {
    Main,
    Alt,
}

fn reject(policy: Policy, v6: bool, responder: IpAddr, ttl: u8) -> Option<Expect> {
    match policy {
        Policy::None => None,
        Policy::Drop => Some(Expect::None),
        Policy::Rst => Some(Expect::Rst { ttl }),
        p => p.icmp(v6).map(|(icmp_type, icmp_code)| Expect::Icmp { icmp_type, icmp_code, responder, ttl }),
    }
}

/// The observation the lab guarantees for a SYN from the main vantage to `host:port`,
/// following the packet inward: transit core, provider border, host firewall, host stack.
pub fn expect(topo: &Topology, host: &Host, port: u16) -> Truth {
    expect_from(topo, host, port, From::Main)
}

/// [`expect`] from either measuring vantage.
pub fn expect_from(topo: &Topology, host: &Host, port: u16, from: From) -> Truth {
    let p = &topo.providers[host.provider];
    let v6 = host.ip.is_ipv6();
    let lossy = p.border.loss > 0.0;
    // Replies of the hosts themselves cross the provider's ECMP fabric, if it has one.
    let t = |expect, reason| Truth { expect, reason, lossy, rate_limited: false, ecmp: p.border.ecmp };
    let limited = |e: Expect, reason, ms: u32| Truth { expect: e, reason, lossy, rate_limited: matches!(e, Expect::Icmp { .. }) && ms > 0, ecmp: false };
    let core: IpAddr = match (v6, from) {
        (false, From::Main) => addr::CORE_V4.into(),
        (true, From::Main) => addr::CORE_V6.into(),
        (false, From::Alt) => addr::CORE_ALT_V4.into(),
        (true, From::Alt) => addr::CORE_ALT_V6.into(),
    };
    if from == From::Alt {
        if let Some(e) = reject(p.path_filter.get(v6, port), v6, core, addr::TTL_CORE) {
            return limited(e, "transit filter on the second vantage's path", topo.icmp_ratelimit_ms);
        }
    }
    if let Some(e) = reject(p.upstream.get(v6, port), v6, core, addr::TTL_CORE) {
        return limited(e, "upstream transit filter", topo.icmp_ratelimit_ms);
    }
    if p.border.synack_all {
        return Truth { ecmp: false, ..t(Expect::Synack { ttl: addr::TTL_BORDER }, "border middlebox answers every port") };
    }
    let border: IpAddr = if v6 { addr::core_border_v6(host.provider).1.into() } else { addr::core_border_v4(host.provider).1.into() };
    if let Some(e) = reject(p.border.policies().get(v6, port), v6, border, addr::TTL_BORDER) {
        return limited(e, "provider border filter", topo.border_icmp_ratelimit(p));
    }
    if host.dead {
        return t(Expect::None, "dead address");
    }
    if port == 25 && host.firewall_25 {
        return t(Expect::None, "host firewall drops 25");
    }
    if host.all_ports {
        return t(Expect::Synack { ttl: addr::TTL_HOST }, "host answers every port");
    }
    if host.open.binary_search(&port).is_ok() {
        t(Expect::Synack { ttl: addr::TTL_HOST }, "listening socket")
    } else {
        t(Expect::Rst { ttl: addr::TTL_HOST }, "closed port: kernel RST")
    }
}

/// What the vantage observes for a reflection probe: a SYN from our fixed source port `sport`
/// to a closed high port of `host` (the crawler's first random port). The host's answer must
/// then leave the provider towards port `sport`, through the border's outbound filters.
pub fn expect_reflect(topo: &Topology, host: &Host, sport: u16) -> Truth {
    let p = &topo.providers[host.provider];
    let v6 = host.ip.is_ipv6();
    let t = |expect, reason| Truth { expect, reason, lossy: p.border.loss > 0.0, rate_limited: false, ecmp: p.border.ecmp };
    // The border's ingress ACL on the source port refuses the probe before any host sees it.
    let border: IpAddr = if v6 { addr::core_border_v6(host.provider).1.into() } else { addr::core_border_v4(host.provider).1.into() };
    if let Some(e) = reject(p.border.sport(v6, sport), v6, border, addr::TTL_BORDER) {
        let ms = topo.border_icmp_ratelimit(p);
        return Truth { expect: e, reason: "provider border filters packets from the source port (ingress ACL)", lossy: p.border.loss > 0.0, rate_limited: matches!(e, Expect::Icmp { .. }) && ms > 0, ecmp: false };
    }
    // Inbound to a closed high port: as for any probe to such a port.
    let inbound = expect(topo, host, 40_000);
    let reply = match inbound.expect {
        // The border's own middlebox answers: its reply never crosses the border's forward path.
        _ if p.border.synack_all => return inbound,
        Expect::None | Expect::Icmp { .. } => return inbound,
        _ if host.src_port_firewall && addr::SRC_FIREWALL_PORTS.contains(&sport) => return t(Expect::None, "host firewall drops packets from mail source ports"),
        e => e,
    };
    match p.border.out(v6, sport) {
        Some(o) if o.stops_replies() => t(Expect::None, "provider border filters outbound traffic to the port"),
        _ => t(reply, inbound.reason),
    }
}

/// Expected per-provider result for port 25 in one address family.
#[derive(Debug, Clone, Serialize)]
pub struct ProviderTruth {
    pub provider: String,
    pub org_id: String,
    pub family: &'static str,
    /// `blocks`, `open`, `mixed`, `insufficient`, or `absent` (never planned: opt-out / no space).
    pub verdict: &'static str,
    /// `silent-drop`, `icmp-prohibited`, `icmp-port-unreachable`, `rst-injected` or "" when not filtered.
    pub mechanism: &'static str,
    /// `in-provider`, `upstream`, `host-firewalls`, `unknown` or "".
    pub location: &'static str,
    /// Hosts a complete crawl finds informative (alive, not all-ports).
    pub informative_hosts: usize,
    /// The border bans sources that look like scanners: a crawl that trips it must report the
    /// provider `vantage-banned`; one at the default politeness never trips it.
    pub scan_detector: bool,
}

pub fn provider_truth(topo: &Topology, min_informative: usize) -> Vec<ProviderTruth> {
    provider_truth_from(topo, min_informative, From::Main)
}

/// [`provider_truth`] as a crawl from either vantage must find it.
pub fn provider_truth_from(topo: &Topology, min_informative: usize, from: From) -> Vec<ProviderTruth> {
    let mut out = Vec::new();
    for (i, p) in topo.providers.iter().enumerate() {
        let hosts = topo.hosts_of(i);
        for v6 in [false, true] {
            let fam: Vec<&Host> = hosts.iter().filter(|h| h.ip.is_ipv6() == v6).collect();
            let family = if v6 { "ipv6" } else { "ipv4" };
            let informative = fam.iter().filter(|h| !h.dead && !h.all_ports).count();
            let mut pt = ProviderTruth {
                provider: p.name.clone(),
                org_id: p.org_id.clone(),
                family,
                verdict: "",
                mechanism: "",
                location: "",
                informative_hosts: if p.border.synack_all { 0 } else { informative },
                scan_detector: p.border.ban.is_some(),
            };
            let path = if from == From::Alt { p.path_filter.get(v6, 25) } else { Policy::None };
            let (policy, location) = match (path, p.upstream.get(v6, 25), p.border.policies().get(v6, 25)) {
                (Policy::None, Policy::None, b) => (b, "in-provider"),
                (Policy::None, u, _) => (u, "upstream"),
                (f, _, _) => (f, "upstream"),
            };
            if fam.is_empty() || p.opt_out || (v6 && p.aliased_v6) {
                pt.verdict = "absent";
            } else if p.border.synack_all || informative < min_informative {
                pt.verdict = "insufficient";
            } else if policy != Policy::None {
                pt.verdict = "blocks";
                pt.mechanism = policy.mechanism(v6);
                pt.location = if policy.icmp(v6).is_some() { location } else { "unknown" };
            } else {
                let fw = fam.iter().filter(|h| !h.dead && !h.all_ports && h.firewall_25).count();
                let share = fw as f64 / informative.max(1) as f64;
                if share == 0.0 {
                    pt.verdict = "open";
                } else {
                    pt.verdict = if share > 0.9 { "blocks" } else { "mixed" };
                    pt.mechanism = "silent-drop";
                    pt.location = "host-firewalls";
                }
            }
            out.push(pt);
        }
    }
    out
}

/// Expected per-provider outbound result from source-port reflection, per family and mail port.
#[derive(Debug, Clone, Serialize)]
pub struct OutboundTruth {
    pub provider: String,
    pub org_id: String,
    pub family: &'static str,
    pub port: u16,
    /// `blocks`, `open`, `mixed`, `insufficient` or `absent`, as reflection must report it.
    pub verdict: &'static str,
    pub mechanism: &'static str,
    /// The provider blocks new outbound connections statefully: reflection cannot see it
    /// (its verdict is `open`), only a vantage inside the provider can.
    pub stateful_block: bool,
    /// Hosts reflection finds informative: alive, not all-ports, not dropping mail source ports.
    pub informative_hosts: usize,
}

pub fn outbound_truth(topo: &Topology, min_informative: usize) -> Vec<OutboundTruth> {
    let mut out = Vec::new();
    for (i, p) in topo.providers.iter().enumerate() {
        let hosts = topo.hosts_of(i);
        for v6 in [false, true] {
            let fam: Vec<&Host> = hosts.iter().filter(|h| h.ip.is_ipv6() == v6).collect();
            let informative = fam.iter().filter(|h| !h.dead && !h.all_ports && !h.src_port_firewall).count();
            for port in [25u16, 465, 587] {
                let pol = p.border.out(v6, port);
                let mut t = OutboundTruth {
                    provider: p.name.clone(),
                    org_id: p.org_id.clone(),
                    family: if v6 { "ipv6" } else { "ipv4" },
                    port,
                    verdict: "open",
                    mechanism: "",
                    stateful_block: pol == Some(OutPolicy::NewDrop),
                    informative_hosts: if p.border.synack_all { 0 } else { informative },
                };
                if fam.is_empty() || p.opt_out || (v6 && p.aliased_v6) {
                    t.verdict = "absent";
                } else if p.border.synack_all || informative < min_informative {
                    t.verdict = "insufficient";
                } else if pol.is_some_and(|o| o.stops_replies()) {
                    (t.verdict, t.mechanism) = ("blocks", "silent-drop");
                } else if p.border.sport(v6, port) != Policy::None {
                    (t.verdict, t.mechanism) = ("blocks", p.border.sport(v6, port).mechanism(v6));
                }
                out.push(t);
            }
        }
    }
    out
}

/// What `crawler egress` run in a customer vantage must see for one (port, family) series of
/// attempts to the lab's sink, following the connection outward through the border.
#[derive(Debug, Clone, Serialize)]
pub struct EgressTruth {
    pub vantage: String,
    pub provider: String,
    pub org_id: String,
    /// The sink address dialled.
    pub sink: IpAddr,
    pub family: &'static str,
    pub port: u16,
    /// The series' verdict: `open`, `blocked`, `throttled`, `intercepted`, `stripped`,
    /// `tls-intercepted`, `mixed` (a pool that strips every second connection), or
    /// `sink-unreachable` (the border null-routes this sink).
    pub verdict: &'static str,
    /// The attempts alternate between `open` and `stripped` (`strip-sometimes`).
    pub alternating: bool,
    /// The vantage's IPv4 connections leave through policy NAT: the sink sees one of
    /// `sink_clients`, never the vantage's own address.
    pub sink_clients: Vec<IpAddr>,
    /// A throttle lets this many attempts connect (each `open`); the later ones are `throttled`.
    pub first_open: Option<u32>,
    /// `outcome` of the attempts that do not connect (`timeout`, `refused`, `icmp`), or
    /// `established`.
    pub outcome: &'static str,
    pub icmp_type: Option<u8>,
    pub icmp_code: Option<u8>,
    pub icmp_responder: Option<IpAddr>,
    /// The client address the sink records for a connection that reaches it: the vantage, or
    /// the border's own address when a proxy opened it; none when nothing reaches the sink.
    pub sink_client: Option<IpAddr>,
    pub reason: &'static str,
}

fn egress_one(topo: &Topology, c: &Customer, sink: usize, v6: bool, port: u16) -> EgressTruth {
    let p = &topo.providers[c.provider];
    let border_up: IpAddr = if v6 { addr::core_border_v6(c.provider).1.into() } else { addr::core_border_v4(c.provider).1.into() };
    let gw: IpAddr = if v6 { c.gw_v6.into() } else { c.gw_v4.into() };
    let (s4, s6) = addr::sink(sink);
    let nat = p.border.nat_pool && !v6;
    let (web, a, b) = crate::rules::nat_pool_addrs(c);
    let mut t = EgressTruth {
        vantage: c.name.clone(),
        provider: p.name.clone(),
        org_id: p.org_id.clone(),
        sink: if v6 { s6.into() } else { s4.into() },
        family: if v6 { "ipv6" } else { "ipv4" },
        port,
        verdict: "open",
        alternating: false,
        sink_clients: match (nat, port) {
            (false, _) => vec![c.ip(v6)],
            (true, 80 | 443) => vec![web.into()],
            (true, _) => vec![a.into(), b.into()],
        },
        first_open: None,
        outcome: "established",
        icmp_type: None,
        icmp_code: None,
        icmp_responder: None,
        sink_client: Some(c.ip(v6)),
        reason: "no outbound filter on the port",
    };
    if nat {
        t.sink_client = None;
        t.reason = "no outbound filter on the port; policy NAT gives the connection another public address (not interception)";
    }
    let blocked = |t: &mut EgressTruth, outcome, reason| {
        (t.verdict, t.outcome, t.sink_client, t.reason) = ("blocked", outcome, None, reason);
        t.sink_clients.clear();
    };
    if p.border.blackhole_sink && sink == 1 {
        blocked(&mut t, "timeout", "border null-routes this sink: no port of it is reachable");
        t.verdict = "sink-unreachable";
        return t;
    }
    match p.border.out(v6, port) {
        None => {}
        Some(OutPolicy::Drop) => blocked(&mut t, "timeout", "border drops outbound packets to the port (stateless)"),
        Some(OutPolicy::NewDrop) => blocked(&mut t, "timeout", "border drops new outbound connections to the port (conntrack)"),
        Some(OutPolicy::RejectRst) => blocked(&mut t, "refused", "border rejects outbound connections to the port with a RST"),
        Some(OutPolicy::RejectIcmp) => {
            blocked(&mut t, "icmp", "border rejects outbound connections to the port with ICMP admin-prohibited");
            (t.icmp_type, t.icmp_code, t.icmp_responder) = if v6 { (Some(1), Some(1), Some(gw)) } else { (Some(3), Some(13), Some(gw)) };
        }
        Some(OutPolicy::Throttle) => {
            // The bucket is the border's, per family: each round dials every sink of the lab.
            (t.verdict, t.first_open, t.outcome) = ("throttled", Some(p.border.throttle_per_minute / topo.sinks as u32), "timeout");
            t.reason = "border lets the first new connections a minute through, then drops new ones (conntrack + limit)";
        }
        Some(OutPolicy::Intercept) => {
            (t.verdict, t.sink_client) = ("intercepted", None);
            t.sink_clients.clear();
            t.reason = "border redirects the port to its own SMTP proxy, which answers with its own banner";
        }
        Some(OutPolicy::Strip) => {
            (t.verdict, t.sink_client, t.sink_clients) = ("stripped", Some(border_up), vec![border_up]);
            t.reason = "border's ESMTP inspection (Cisco ASA) relays to the sink, masks the banner and rewrites STARTTLS";
        }
        Some(OutPolicy::StripSometimes) => {
            (t.verdict, t.alternating, t.sink_client, t.sink_clients) = ("mixed", true, Some(border_up), vec![border_up]);
            t.reason = "a pool of relays where every second connection is inspected (banner masked, STARTTLS rewritten)";
        }
        Some(OutPolicy::TlsIntercept) => {
            (t.verdict, t.sink_client, t.sink_clients) = ("tls-intercepted", Some(border_up), vec![border_up]);
            t.reason = "border's TLS proxy shows its own certificate and opens its own TLS session to the sink";
        }
        Some(OutPolicy::TlsTerminate) => {
            (t.verdict, t.sink_client) = ("tls-intercepted", None);
            t.sink_clients.clear();
            t.reason = "border terminates TLS with its own certificate and answers SMTP itself: nothing reaches the sink";
        }
    }
    t
}

/// Every customer vantage × sink × family × port `crawler egress` dials in the lab.
pub fn egress_truth(topo: &Topology) -> Vec<EgressTruth> {
    let mut out = Vec::new();
    for c in topo.customers() {
        for sink in 1..=topo.sinks {
            for v6 in [false, true] {
                for port in addr::SINK_PORTS {
                    out.push(egress_one(topo, &c, sink, v6, port));
                }
            }
        }
    }
    out
}

/// The per-provider outbound verdict `analysis report --egress` must reach from the customer
/// vantages, beside reflection's for the same port, and whether the two methods agree.
#[derive(Debug, Clone, Serialize)]
pub struct EgressProviderTruth {
    pub provider: String,
    pub org_id: String,
    pub family: &'static str,
    pub port: u16,
    /// `blocks`, `open`, `throttled`, `intercepted`, `stripped`, `tls-intercepted`, `mixed` or
    /// `sink-unreachable`.
    pub verdict: &'static str,
    pub vantages: usize,
    /// What reflection must report for the same provider, family and port.
    pub reflection: &'static str,
    /// Reflection and the vantages inside agree (None: reflection has no decisive verdict).
    pub agree: Option<bool>,
}

pub fn egress_provider_truth(topo: &Topology, min_informative: usize) -> Vec<EgressProviderTruth> {
    let series = egress_truth(topo);
    let reflection = outbound_truth(topo, min_informative);
    let mut out = Vec::new();
    for (i, p) in topo.providers.iter().enumerate() {
        let n = topo.customers().iter().filter(|c| c.provider == i).count();
        for family in ["ipv4", "ipv6"] {
            for port in [25u16, 465, 587] {
                // The sinks reachable from the vantages decide; none reachable: no verdict.
                let all: Vec<&EgressTruth> = series.iter().filter(|s| s.org_id == p.org_id && s.family == family && s.port == port).collect();
                let Some(first) = all.first() else { continue };
                let s = all.iter().find(|s| s.verdict != "sink-unreachable").unwrap_or(first);
                let verdict = if s.verdict == "blocked" { "blocks" } else { s.verdict };
                let refl = reflection.iter().find(|r| r.org_id == p.org_id && r.family == family && r.port == port).map_or("absent", |r| r.verdict);
                let agree = match refl {
                    "blocks" => Some(verdict == "blocks"),
                    "open" => Some(verdict == "open"),
                    _ => None,
                };
                out.push(EgressProviderTruth { provider: p.name.clone(), org_id: p.org_id.clone(), family, port, verdict, vantages: n, reflection: refl, agree });
            }
        }
    }
    out
}
