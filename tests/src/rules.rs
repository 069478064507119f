//! nftables rulesets for the lab's routers and host namespaces (text fed to `nft -f`).

use crate::topology::{addr::CATCH_ALL_PORT, addr::SRC_FIREWALL_PORTS, Ban, Customer, Host, OutPolicy, Policy, Provider};
use std::fmt::Write;

const TABLE: &str = "p25lab";

fn reject_stmt(policy: Policy, v6: bool) -> &'static str {
    match (policy, v6) {
        (Policy::Drop, _) => "drop",
        (Policy::Rst, _) => "reject with tcp reset",
        (Policy::IcmpAdmin, false) => "reject with icmp type admin-prohibited",
        (Policy::IcmpAdmin, true) => "reject with icmpv6 type admin-prohibited",
        (Policy::IcmpPort, false) => "reject with icmp type port-unreachable",
        (Policy::IcmpPort, true) => "reject with icmpv6 type port-unreachable",
        // `icmpx` picks the family's code: v4 host-unreachable (3/1), v6 addr-unreachable (1/3).
        (Policy::IcmpHost, _) => "reject with icmpx type host-unreachable",
        (Policy::IcmpNet, false) => "reject with icmp type net-unreachable",
        (Policy::IcmpNet, true) => "reject with icmpv6 type no-route",
        (Policy::IcmpHostProhibited, false) => "reject with icmp type host-prohibited",
        (Policy::IcmpHostProhibited, true) => "reject with icmpv6 type reject-route",
        (Policy::IcmpNetProhibited, false) => "reject with icmp type net-prohibited",
        (Policy::IcmpNetProhibited, true) => "reject with icmpv6 type policy-fail",
        (Policy::None, _) => "accept",
    }
}

fn prefixes(p: &Provider, v6: bool) -> Vec<String> {
    p.ases
        .iter()
        .flat_map(|a| if v6 { a.v6.iter().map(|n| n.to_string()).collect::<Vec<_>>() } else { a.v4.iter().map(|n| n.to_string()).collect() })
        .collect()
}

fn policy_rules(out: &mut String, p: &Provider, pol: &[(u16, Policy)], v6: bool, iif: Option<&str>) {
    port_rules(out, p, pol, v6, iif, "dport");
}

/// Filters on packets towards the provider's prefixes by their destination (`dport`) or
/// source (`sport`: an ingress ACL against replies from remote mail servers) port.
fn port_rules(out: &mut String, p: &Provider, pol: &[(u16, Policy)], v6: bool, iif: Option<&str>, which: &str) {
    let pf = prefixes(p, v6);
    if pf.is_empty() {
        return;
    }
    let fam = if v6 { "ip6" } else { "ip" };
    let iif = iif.map(|i| format!("iifname \"{i}\" ")).unwrap_or_default();
    for (port, pol) in pol {
        if *pol == Policy::None {
            continue;
        }
        let _ = writeln!(out, "    {iif}{fam} daddr {{ {} }} tcp {which} {port} {}", pf.join(", "), reject_stmt(*pol, v6));
    }
}

/// Where the provider's customers' traffic enters the border: its hosts (`dnlink`) and its
/// customer vantages (`vc<k>`), and the source prefixes it may carry.
pub struct CustomerSide {
    ifaces: String,
    v4: Vec<String>,
    v6: Vec<String>,
}

impl CustomerSide {
    pub fn new(p: &Provider, customers: &[&Customer]) -> CustomerSide {
        // The hosts' traffic arrives on `dnlink`, and over the spine with an ECMP fabric.
        let spine = p.border.ecmp.then(|| "\"spine\"".to_string());
        let ifaces: Vec<String> = std::iter::once("\"dnlink\"".to_string()).chain(spine).chain(customers.iter().map(|c| format!("\"{}\"", c.iface()))).collect();
        let mut v4 = prefixes(p, false);
        v4.extend(customers.iter().map(|c| c.v4_net.to_string()));
        let mut v6 = prefixes(p, true);
        v6.extend(customers.iter().map(|c| c.v6_net.to_string()));
        CustomerSide { ifaces: format!("{{ {} }}", ifaces.join(", ")), v4, v6 }
    }
    /// `iifname { … } ip saddr { … } ` for one family, or None when it has no prefixes.
    fn matcher(&self, v6: bool) -> Option<String> {
        let pf = if v6 { &self.v6 } else { &self.v4 };
        (!pf.is_empty()).then(|| format!("iifname {} {} saddr {{ {} }} ", self.ifaces, if v6 { "ip6" } else { "ip" }, pf.join(", ")))
    }
}

/// Outbound filters on the customers' traffic (packets arriving from the customer side).
fn out_rules(out: &mut String, p: &Provider, side: &CustomerSide, v6: bool) {
    let Some(m) = side.matcher(v6) else { return };
    let k = p.border.throttle_per_minute;
    for (port, pol) in p.border.out_entries(v6) {
        let (state, stmt) = match (pol, v6) {
            (OutPolicy::Drop, _) => ("", "drop".to_string()),
            (OutPolicy::RejectIcmp, false) => ("", "reject with icmp type admin-prohibited".into()),
            (OutPolicy::RejectIcmp, true) => ("", "reject with icmpv6 type admin-prohibited".into()),
            (OutPolicy::RejectRst, _) => ("", "reject with tcp reset".into()),
            (OutPolicy::NewDrop, _) => ("ct state new ", "drop".into()),
            // The burst is the number of new connections that pass before the rate applies.
            (OutPolicy::Throttle, _) => ("ct state new ", format!("limit rate over {k}/minute burst {k} packets drop")),
            // Redirected in the nat chain: never reaches the forward chain.
            (OutPolicy::Intercept | OutPolicy::Strip | OutPolicy::TlsIntercept | OutPolicy::TlsTerminate | OutPolicy::StripSometimes, _) => continue,
        };
        let _ = writeln!(out, "    {m}{state}tcp dport {port} {stmt}");
    }
}

/// The nat prerouting rules: a SYN-ACK-all middlebox, and customer connections to a port a
/// proxy stands in for, redirected to `lab proxy` in the border.
fn nat_rules(p: &Provider, side: &CustomerSide) -> Vec<String> {
    let mut rules = Vec::new();
    for v6 in [false, true] {
        let fam = if v6 { "ip6" } else { "ip" };
        let pf = prefixes(p, v6);
        if p.border.synack_all && !pf.is_empty() {
            rules.push(format!("iifname \"uplink\" {fam} daddr {{ {} }} tcp flags & (syn | ack) == syn redirect to :{CATCH_ALL_PORT}", pf.join(", ")));
        }
        let Some(m) = side.matcher(v6) else { continue };
        for (port, pol) in p.border.out_entries(v6) {
            if let Some(to) = pol.proxy_port() {
                rules.push(format!("{m}tcp dport {port} redirect to :{to}"));
            }
        }
    }
    rules
}

/// The provider's border router: port filters towards its hosts, outbound filters and proxies
/// on its customers' traffic (hosts and customer vantages), loss, a SYN-ACK-all middlebox.
pub fn border(p: &Provider, customers: &[&Customer]) -> String {
    let side = CustomerSide::new(p, customers);
    let mut s = format!("table inet {TABLE} {{\n");
    if let Some(b) = &p.border.ban {
        ban_sets(&mut s, b);
    }
    s.push_str("  chain forward_filter {\n    type filter hook forward priority 0; policy accept;\n");
    if let Some(b) = &p.border.ban {
        ban_rules(&mut s, b);
    }
    if p.border.loss > 0.0 {
        // Each forwarded packet, either direction, is lost with the configured probability.
        let per_10k = (p.border.loss * 10_000.0).round() as u32;
        let _ = writeln!(s, "    numgen random mod 10000 < {per_10k} drop");
    }
    let pol = p.border.policies();
    policy_rules(&mut s, p, &pol.entries(false), false, Some("uplink"));
    policy_rules(&mut s, p, &pol.entries(true), true, Some("uplink"));
    port_rules(&mut s, p, &p.border.sport_entries(false), false, Some("uplink"), "sport");
    port_rules(&mut s, p, &p.border.sport_entries(true), true, Some("uplink"), "sport");
    out_rules(&mut s, p, &side, false);
    out_rules(&mut s, p, &side, true);
    s.push_str("  }\n");
    let nat = nat_rules(p, &side);
    if !nat.is_empty() {
        s.push_str("  chain prerouting_nat {\n    type nat hook prerouting priority -100; policy accept;\n");
        for r in nat {
            let _ = writeln!(s, "    {r}");
        }
        s.push_str("  }\n");
    }
    if p.border.nat_pool && !customers.is_empty() {
        // Policy NAT for the customer vantages' IPv4: the web ports leave from one public
        // address, everything else from a pool of two, alternating per connection (conntrack
        // keeps each connection on its address; replies come back through the border, which
        // owns the vantages' /29s).
        s.push_str("  chain postrouting_nat {\n    type nat hook postrouting priority 100; policy accept;\n");
        for c in customers {
            let (web, a, b) = nat_pool_addrs(c);
            let _ = writeln!(s, "    oifname \"uplink\" ip saddr {} tcp dport {{ 80, 443 }} snat ip to {web}", c.v4);
            let _ = writeln!(s, "    oifname \"uplink\" ip saddr {} snat ip to numgen inc mod 2 map {{ 0 : {a}, 1 : {b} }}", c.v4);
        }
        s.push_str("  }\n");
    }
    s.push_str("}\n");
    s
}

/// A NATed customer vantage's public addresses: (web ports, pool address 1, pool address 2),
/// inside its own /29 (which the core routes to the border).
pub fn nat_pool_addrs(c: &Customer) -> (std::net::Ipv4Addr, std::net::Ipv4Addr, std::net::Ipv4Addr) {
    let n = u32::from(c.v4_net.network());
    (std::net::Ipv4Addr::from(n + 3), std::net::Ipv4Addr::from(n + 4), std::net::Ipv4Addr::from(n + 5))
}

/// The transit core: filters some providers on their behalf (an upstream filter), and some only
/// for the traffic of the second measuring vantage, which arrives on `alt_iface` (a
/// path-specific filter).
pub fn core(providers: &[Provider], alt_iface: &str) -> String {
    let mut s = format!("table inet {TABLE} {{\n  chain forward_filter {{\n    type filter hook forward priority 0; policy accept;\n");
    for p in providers {
        policy_rules(&mut s, p, &p.upstream.entries(false), false, None);
        policy_rules(&mut s, p, &p.upstream.entries(true), true, None);
        policy_rules(&mut s, p, &p.path_filter.entries(false), false, Some(alt_iface));
        policy_rules(&mut s, p, &p.path_filter.entries(true), true, Some(alt_iface));
    }
    s.push_str("  }\n}\n");
    s
}

/// A border's scan detector: sets of banned sources (with a timeout) checked before anything
/// else, and the rules that ban — a source sending more than `syn_rate` SYNs a second (after a
/// burst of five seconds' worth), or SYNs
/// to more than `distinct_ports_per_minute` new destination ports a minute.
fn ban_sets(out: &mut String, ban: &Ban) {
    for f in ["4", "6"] {
        let ty = if f == "4" { "ipv4_addr" } else { "ipv6_addr" };
        let _ = writeln!(out, "  set banned{f} {{ type {ty}; flags dynamic,timeout; timeout {}s; }}", ban.seconds);
        let _ = writeln!(out, "  set rate{f} {{ type {ty}; flags dynamic,timeout; timeout 10s; }}");
        let _ = writeln!(out, "  set seen{f} {{ type {ty} . inet_service; flags dynamic,timeout; timeout 60s; }}");
        let _ = writeln!(out, "  set ports{f} {{ type {ty}; flags dynamic,timeout; timeout 60s; }}");
    }
}

fn ban_rules(out: &mut String, ban: &Ban) {
    for (f, fam) in [("4", "ip"), ("6", "ip6")] {
        let _ = writeln!(out, "    {fam} saddr @banned{f} drop\n    {fam} daddr @banned{f} drop");
        let syn = format!("iifname \"uplink\" meta nfproto ipv{f} tcp flags & (syn | ack) == syn");
        if let Some(r) = ban.syn_rate {
            let _ = writeln!(out, "    {syn} update @rate{f} {{ {fam} saddr limit rate over {r}/second burst {} packets }} add @banned{f} {{ {fam} saddr }} drop", r * 5);
        }
        if let Some(n) = ban.distinct_ports_per_minute {
            let _ = writeln!(out, "    {syn} {fam} saddr . tcp dport != @seen{f} add @seen{f} {{ {fam} saddr . tcp dport }} update @ports{f} {{ {fam} saddr limit rate over {n}/minute burst {n} packets }} add @banned{f} {{ {fam} saddr }} drop");
        }
    }
}

/// A second vantage's uplink that drops outbound 25, as many clouds do; and, when the lab has
/// one, a third vantage's uplink that drops packets *to* port 25 towards it (inbound 25
/// filtered, as residential and campus networks do: reflection replies never arrive).
pub fn blocked_uplink(iif: &str, blind: Option<&str>) -> String {
    let blind = blind.map(|b| format!("    oifname \"{b}\" tcp dport 25 drop\n")).unwrap_or_default();
    format!("table inet p25uplink {{\n  chain forward_filter {{\n    type filter hook forward priority 0; policy accept;\n    iifname \"{iif}\" tcp dport 25 drop\n{blind}  }}\n}}\n")
}

fn set(out: &mut String, name: &str, v6: bool, hosts: &[&Host]) {
    let ty = if v6 { "ipv6_addr" } else { "ipv4_addr" };
    let _ = write!(out, "  set {name} {{\n    type {ty}\n");
    if !hosts.is_empty() {
        out.push_str("    elements = { ");
        for (i, h) in hosts.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            let _ = write!(out, "{}", h.ip);
        }
        out.push_str(" }\n");
    }
    out.push_str("  }\n");
}

/// The hosts namespace: dead addresses, host firewalls on 25, hosts answering every port.
pub fn hosts(hosts: &[Host]) -> String {
    let mut s = format!("table inet {TABLE} {{\n");
    let pick = |v6: bool, f: &dyn Fn(&Host) -> bool| -> Vec<&Host> { hosts.iter().filter(|h| h.ip.is_ipv6() == v6 && f(h)).collect() };
    set(&mut s, "dead4", false, &pick(false, &|h| h.dead));
    set(&mut s, "dead6", true, &pick(true, &|h| h.dead));
    set(&mut s, "fw4", false, &pick(false, &|h| !h.dead && h.firewall_25));
    set(&mut s, "fw6", true, &pick(true, &|h| !h.dead && h.firewall_25));
    set(&mut s, "srcfw4", false, &pick(false, &|h| !h.dead && h.src_port_firewall));
    set(&mut s, "srcfw6", true, &pick(true, &|h| !h.dead && h.src_port_firewall));
    // Raw priority: drops happen before conntrack, so dead space costs no state.
    s.push_str("  chain prerouting_raw {\n    type filter hook prerouting priority -300; policy accept;\n");
    s.push_str("    ip daddr @dead4 drop\n    ip6 daddr @dead6 drop\n");
    s.push_str("    ip daddr @fw4 tcp dport 25 drop\n    ip6 daddr @fw6 tcp dport 25 drop\n");
    let sports = SRC_FIREWALL_PORTS.map(|p| p.to_string()).join(", ");
    let _ = writeln!(s, "    ip daddr @srcfw4 tcp sport {{ {sports} }} drop\n    ip6 daddr @srcfw6 tcp sport {{ {sports} }} drop\n  }}");
    let all4 = pick(false, &|h| !h.dead && h.all_ports);
    let all6 = pick(true, &|h| !h.dead && h.all_ports);
    if !all4.is_empty() || !all6.is_empty() {
        set(&mut s, "all4", false, &all4);
        set(&mut s, "all6", true, &all6);
        s.push_str("  chain prerouting_nat {\n    type nat hook prerouting priority -100; policy accept;\n");
        let _ = writeln!(s, "    ip daddr @all4 tcp flags & (syn | ack) == syn redirect to :{CATCH_ALL_PORT}");
        let _ = writeln!(s, "    ip6 daddr @all6 tcp flags & (syn | ack) == syn redirect to :{CATCH_ALL_PORT}");
        s.push_str("  }\n");
    }
    s.push_str("}\n");
    s
}
