//! Per-ASN and per-provider (AS2Org organization) aggregation of host verdicts, per address
//! family and mail port: counts, a 95 % Wilson score interval (not Wald: Brown, Cai &
//! DasGupta 2001), a verdict, the blocking mechanism and where the filter sits.
//!
//! A host in a prefix that several ASes originate counts toward each of them (and once toward
//! each of their organizations): routing cannot say which one operates it.

use crate::ban::Findings;
use analysis::decode::net_of;
use crate::infer::{hops, Direction, Exclusion, HostAcc, PortState, MAIL_PORTS};
use datasets::categories::Categories;
use datasets::orgs::Orgs;
use datasets::routes::RouteTable;
use serde::Serialize;
use hashbrown::{HashMap, HashSet};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// Decision thresholds (printed in every report).
#[derive(Debug, Clone, Serialize)]
pub struct Thresholds {
    pub min_informative: u64,
    /// `blocks` when the interval's lower bound reaches this.
    pub block_lower: f64,
    /// `open` when the interval's upper bound is at most this.
    pub open_upper: f64,
    /// A mechanism or location is named when this share of filtered hosts agrees.
    pub dominant: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds { min_informative: 30, block_lower: 0.9, open_upper: 0.1, dominant: 0.8 }
    }
}

pub fn wilson(k: u64, n: u64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let z = 1.959_963_984_540_054_f64;
    let (n, p) = (n as f64, k as f64 / n as f64);
    let denom = 1.0 + z * z / n;
    let center = (p + z * z / (2.0 * n)) / denom;
    let half = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / denom;
    ((center - half).max(0.0), (center + half).min(1.0))
}

/// Additive tallies for one (group, family, port).
#[derive(Debug, Clone, Default)]
pub struct Counts {
    pub hosts: u64,
    pub informative: u64,
    pub filtered: u64,
    /// Hosts per state, indexed by `PortState::index`.
    pub states: [u64; PortState::N],
    /// Excluded hosts, indexed by `Exclusion::index` (all-ports, dead, uninformative,
    /// source-port-filtered).
    pub excluded: [u64; 4],
    pub prefixes: HashSet<u32>,
    /// ICMP responder (interned) → filtered hosts it answered for.
    pub responders: BTreeMap<u32, u64>,
    /// Filtered hosts in a /24 (IPv6: /64) with a reachable informative host of the group:
    /// host firewalls rather than one filter. Counted net by net as the hosts come (a scan
    /// hands them out grouped by net), so no per-net table is kept.
    pub beside: u64,
    pub asns: BTreeSet<u32>,
    /// Candidate forged RSTs (a TTL none of the host's own flows came with) by the hop
    /// distance they came from (counted from each TTL's initial value, so hosts of any
    /// operating system behind one injector give one distance).
    pub rst_hops: BTreeMap<i16, u64>,
    /// The hop distances the informative hosts' own replies came from, one count per flow: the
    /// distances at which the provider's hosts answer themselves, ECMP paths included.
    pub ref_hops: BTreeMap<i16, u64>,
}

impl Counts {
    /// Tally one host whose verdict for `MAIL_PORTS[i]` in direction `dir` is `cls` (its AS is
    /// recorded when the group is created, not per host). For an informative host: is it
    /// filtered, is it reachable (what its net counts toward `beside`).
    fn add(&mut self, h: &HostAcc, i: usize, dir: Direction, cls: Result<PortState, Exclusion>) -> Option<(bool, bool)> {
        self.hosts += 1;
        match cls {
            Err(e) => {
                self.excluded[e.index()] += 1;
                None
            }
            Ok(st) => {
                self.informative += 1;
                self.prefixes.insert(h.prefix);
                self.states[st.index()] += 1;
                for (d, n) in h.ref_hops() {
                    *self.ref_hops.entry(d).or_default() += n as u64;
                }
                if st.filtered() {
                    self.filtered += 1;
                    if let Some(o) = dir.reply(h, i) {
                        if o.responder != u32::MAX {
                            *self.responders.entry(o.responder).or_default() += 1;
                        }
                        if st == PortState::RstInjected {
                            *self.rst_hops.entry(hops(o.ttl)).or_default() += 1;
                        }
                    }
                    Some((true, false))
                } else {
                    Some((false, st.reachable()))
                }
            }
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Row {
    pub level: &'static str,
    /// `inbound` (SYNs reaching the provider's hosts) or `outbound` (their replies leaving
    /// towards the port: source-port reflection, which sees stateless filters only).
    pub direction: &'static str,
    /// How it was measured: `syn-scan` or `reflection`.
    pub method: &'static str,
    pub provider: String,
    pub org_id: String,
    pub asn: Option<u32>,
    pub asns: String,
    pub category: String,
    pub family: &'static str,
    pub port: u16,
    pub hosts: u64,
    pub informative: u64,
    pub prefixes: u64,
    pub filtered: u64,
    pub rate: Option<f64>,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    pub verdict: &'static str,
    pub mechanism: String,
    pub location: String,
    pub excluded_dead: u64,
    pub excluded_all_ports: u64,
    pub excluded_uninformative: u64,
    /// Outbound: hosts excluded because they drop fixed source ports (the neutral control).
    pub excluded_source_port: u64,
    /// RSTs whose TTL differs from the host's, but not by the provider's usual hop difference
    /// (ECMP, load balancers): neither filtered nor reachable, reported apart.
    pub excluded_rst_ambiguous: u64,
    pub states: String,
    /// What the verdict, mechanism and location rest on, in words.
    pub evidence: String,
    /// `vantage-banned`: when the provider stopped answering the vantage (RFC 3339).
    pub banned_since: Option<String>,
    /// The vantage the crawl ran from (rows of several vantages are compared, never summed).
    pub vantage: String,
    /// What the provider documents for this direction, port and family (its own policy pages;
    /// shown beside the measurement, never used by it), e.g. `blocked (new accounts)`.
    pub documented: String,
}

/// Context for naming and locating: routing (responders → AS), organizations, categories,
/// the scan bans detected, the vantage.
pub struct Context<'a> {
    pub routes: &'a RouteTable,
    pub orgs: &'a Orgs,
    pub siblings: &'a Siblings,
    pub categories: &'a Categories,
    pub strings: &'a [String],
    pub th: &'a Thresholds,
    /// Scan bans and family outages of the crawl.
    pub bans: &'a Findings,
    pub vantage: &'a str,
}

/// What one row of a report is about.
#[derive(Debug, Clone, Copy)]
struct RowKey<'a> {
    level: &'static str,
    org_id: &'a str,
    asn: Option<u32>,
    dir: Direction,
    family: &'static str,
    port: u16,
}

fn finish(k: RowKey, c: &Counts, cx: &Context) -> Row {
    let RowKey { level, org_id, asn, dir, family, port } = k;
    let (org, name) = match asn {
        Some(a) => cx.orgs.org_of(a),
        None => {
            let a = *c.asns.iter().next().unwrap();
            cx.orgs.org_of(a)
        }
    };
    debug_assert!(org == org_id || asn.is_some());
    let category = c.asns.iter().find_map(|a| cx.categories.category(*a).map(|x| x.0)).unwrap_or_default();
    let th = cx.th;
    // RSTs forged on the path come from one injector at one distance, where none of the
    // provider's hosts answer themselves: candidates at a distance the hosts' own flows come
    // from (ECMP: the host's reply over another path) or at a second distance are ambiguous,
    // set apart before anything is counted.
    let ambiguous = rst_split(c).1;
    let (informative, filtered) = (c.informative - ambiguous, c.filtered - ambiguous);
    let mut states = c.states;
    states[PortState::RstInjected.index()] -= ambiguous;
    let (lo, hi) = wilson(filtered, informative);
    let mut verdict = if informative < th.min_informative {
        "insufficient"
    } else if lo >= th.block_lower {
        "blocks"
    } else if hi <= th.open_upper {
        "open"
    } else {
        "mixed"
    };
    let (mut mechanism, mut location, mut evidence) = if filtered > 0 { explain(c, &states, filtered, &org, cx) } else { Default::default() };
    if ambiguous > 0 {
        let own: Vec<String> = answer_distances(c).iter().map(|d| d.to_string()).collect();
        evidence.push_str(&format!(
            "{}{ambiguous} RST(s) with a TTL none of the host's own flows had set apart as ambiguous: from a distance the provider's hosts answer from themselves ({} hops: per-flow paths, ECMP) or from a second one",
            if evidence.is_empty() { "" } else { "; " },
            own.join(", ")
        ));
    }
    let v6 = family == "ipv6";
    let ban = match asn {
        Some(a) => crate::ban::of_as(&cx.bans.bans, &org, a, v6),
        None => crate::ban::of_org(&cx.bans.bans, &org, v6),
    };
    let outage = cx.bans.outage(v6);
    if let Some(o) = outage {
        verdict = "vantage-outage";
        (mechanism, location, evidence) = (String::new(), String::new(), o.evidence());
    } else if let Some(b) = ban {
        verdict = "vantage-banned";
        (mechanism, location, evidence) = (String::new(), String::new(), b.evidence());
    } else if asn.is_none() && !cx.bans.bans.is_empty() {
        // An organization's numbers leave out its ASes banned on their own.
        let left: Vec<String> = cx.siblings.of(&org).iter().filter(|a| cx.bans.as_banned(**a, v6)).map(|a| format!("AS{a}")).collect();
        if !left.is_empty() {
            evidence.push_str(&format!("{}{} left out: vantage-banned by that AS alone", if evidence.is_empty() { "" } else { "; " }, left.join(", ")));
        }
    }
    // A banned or cut-off vantage's silence is not the network's filtering: no rate is published.
    let rated = informative > 0 && ban.is_none() && outage.is_none();
    let states = PortState::ALL.iter().filter(|s| states[s.index()] > 0).map(|s| format!("{}={}", s.as_str(), states[s.index()])).collect::<Vec<_>>().join(";");
    Row {
        level,
        direction: dir.as_str(),
        method: dir.method(),
        provider: name,
        org_id: org,
        asn,
        asns: c.asns.iter().map(|a| format!("AS{a}")).collect::<Vec<_>>().join(" "),
        category,
        family,
        port,
        hosts: c.hosts,
        informative,
        prefixes: c.prefixes.len() as u64,
        filtered,
        rate: rated.then(|| filtered as f64 / informative as f64),
        ci_low: rated.then_some(lo),
        ci_high: rated.then_some(hi),
        verdict,
        mechanism,
        location,
        excluded_dead: c.excluded[Exclusion::Dead.index()],
        excluded_all_ports: c.excluded[Exclusion::AllPortsResponder.index()],
        excluded_uninformative: c.excluded[Exclusion::Uninformative.index()],
        excluded_source_port: c.excluded[Exclusion::SourcePortFiltered.index()],
        excluded_rst_ambiguous: ambiguous,
        states,
        evidence,
        banned_since: ban.map(|b| b.since()),
        vantage: cx.vantage.to_string(),
        documented: String::new(),
    }
}

/// The hop distances the provider's hosts answer from: those of at least 2 % of their own
/// flows (and 2 flows), so one odd host does not make a distance its provider's.
pub fn answer_distances(c: &Counts) -> BTreeSet<i16> {
    let total: u64 = c.ref_hops.values().sum();
    c.ref_hops.iter().filter(|(_, n)| **n >= 2 && **n as f64 >= 0.02 * total as f64).map(|(d, _)| *d).collect()
}

/// Candidate forged RSTs split: the injector's distance (the most common distance at which
/// none of the provider's hosts answer themselves; ties: the nearer) and how many candidates
/// are ambiguous (any other distance).
pub fn rst_split(c: &Counts) -> (Option<(i16, u64)>, u64) {
    let own = answer_distances(c);
    let total: u64 = c.rst_hops.values().sum();
    let top = c.rst_hops.iter().filter(|(d, _)| !own.contains(d)).max_by_key(|(d, n)| (**n, std::cmp::Reverse(**d))).map(|(d, n)| (*d, *n));
    (top, total - top.map_or(0, |t| t.1))
}

/// Where ICMP errors came from: (in the provider or a sibling, another routed AS, unrouted —
/// an IXP LAN or private space, which names no network).
fn responder_classes(c: &Counts, org: &str, cx: &Context) -> (u64, u64, u64) {
    let siblings: BTreeSet<u32> = cx.siblings.of(org).iter().copied().chain(c.asns.iter().copied()).collect();
    let (mut inside, mut other, mut unrouted) = (0, 0, 0);
    for (r, n) in &c.responders {
        let ip: Option<IpAddr> = cx.strings[*r as usize].parse().ok();
        match ip.and_then(|ip| cx.routes.lookup(ip)) {
            Some((_, o)) if siblings.contains(&o.asn) => inside += n,
            Some(_) => other += n,
            None => unrouted += n,
        }
    }
    (inside, other, unrouted)
}

/// Mechanism, location and the evidence for them, for a group with filtered hosts.
fn explain(c: &Counts, states: &[u64; PortState::N], filtered: u64, org: &str, cx: &Context) -> (String, String, String) {
    let th = cx.th;
    let (top, n) = PortState::ALL.iter().map(|s| (*s, states[s.index()])).filter(|(s, _)| s.filtered()).max_by_key(|(_, n)| *n).unwrap();
    let share = |k: u64| k as f64 / filtered as f64;
    let icmp_kinds: Vec<PortState> = PortState::ALL.into_iter().filter(|s| s.icmp_filter()).collect();
    // Routers rate-limit the ICMP errors they send (Linux: one a second per destination after
    // a burst of 6; Cisco: one per 500 ms): an ICMP filter answers a few probes and leaves the
    // rest silent, so silence can even dominate. Silence plus one kind of ICMP error, nothing
    // else, the errors from routers (each answering for several hosts, not host firewalls
    // answering for themselves), is that filter, not a silent drop or a mix.
    let from_routers: u64 = c.responders.values().filter(|n| **n >= 2).sum();
    // Filtered hosts beside reachable ones in the same /24 are host firewalls, not one filter.
    let beside = c.beside;
    let rate_limited = icmp_kinds.iter().find(|k| {
        let icmp = states[k.index()];
        icmp >= 3 && icmp + states[PortState::Silent.index()] == filtered && share(icmp) < th.dominant && from_routers == c.responders.values().sum::<u64>() && share(beside) < 0.5
    });
    let (mechanism, mut evidence) = match rate_limited {
        Some(k) => (
            k.mechanism().to_string(),
            format!("{} of {filtered} filtered hosts got an ICMP error ({}) from a router, the rest silence: an ICMP filter under the routers' ICMP rate limit", states[k.index()], k.as_str()),
        ),
        None if share(n) >= th.dominant => (top.mechanism().to_string(), format!("{} of {filtered} filtered hosts {}", n, top.as_str())),
        None => ("mixed".to_string(), format!("no state covers {:.0} % of the {filtered} filtered hosts", th.dominant * 100.0)),
    };
    if top == PortState::RstInjected && share(n) >= th.dominant {
        if let (Some((d, k)), _) = rst_split(c) {
            let own: Vec<String> = answer_distances(c).iter().map(|d| d.to_string()).collect();
            evidence = format!("{k} of {filtered} filtered hosts got a RST from {d} hop(s) away, a distance none of the provider's hosts answer from themselves (their own flows: {} hops): forged on the path", own.join(", "));
        }
    }
    // Location: ICMP responders mapped to their AS; else filtered hosts beside reachable ones in
    // the same /24 point at host firewalls; else a single vantage cannot tell.
    let icmp: u64 = c.responders.values().sum();
    let location = if icmp > 0 && (share(icmp) >= 0.5 || rate_limited.is_some()) {
        let (inside, other, unrouted) = responder_classes(c, org, cx);
        let dominant = |k: u64| k as f64 >= th.dominant * icmp as f64;
        if dominant(inside) {
            "in-provider"
        } else if dominant(other) {
            "upstream"
        } else if dominant(unrouted) {
            // An unrouted responder (an IXP LAN, private space) names no network.
            "unknown-responder"
        } else {
            "mixed"
        }
    } else if share(beside) >= 0.5 {
        "host-firewalls"
    } else {
        "unknown"
    };
    (mechanism, location.to_string(), evidence)
}

pub type GroupKey = (String, bool, u16, Direction); // (org id or "AS<n>", v6, port, direction)
pub type AsKey = (u32, bool, u16, Direction);

/// An organization's ASes (AS2Org siblings), looked up by organization: `Orgs::siblings` scans
/// every AS, once per provider row was quadratic in the number of ASes.
#[derive(Default)]
pub struct Siblings(HashMap<String, Vec<u32>>);

impl Siblings {
    pub fn of_orgs(orgs: &Orgs) -> Siblings {
        let mut m: HashMap<String, Vec<u32>> = HashMap::new();
        for (a, o) in &orgs.asn_org {
            m.entry(o.clone()).or_default().push(*a);
        }
        m.values_mut().for_each(|v| v.sort_unstable());
        Siblings(m)
    }
    /// The organization's ASes, sorted (as `Orgs::siblings`).
    pub fn of(&self, org: &str) -> &[u32] {
        self.0.get(org).map_or(&[], |v| v.as_slice())
    }
}

/// A group's slot per mail port and direction (`i * 2 + direction`); `NONE`: not yet made.
const NONE: u32 = u32::MAX;
fn slot(i: usize, dir: Direction) -> usize {
    i * 2 + (dir == Direction::Outbound) as usize
}

/// Tallies of a crawl's hosts per AS and per organization, per family, mail port and
/// direction, host by host as a scan hands them out — hosts of one net after the other, so a
/// net's hosts are counted toward `beside` when the next net begins. A host in a prefix several
/// ASes originate (MOAS, AS-sets) counts toward each of them, and once toward each
/// organization among them.
///
/// An AS banned on its own is left out of its organization's numbers (`ban`), and bans are
/// known only once every host is in. So the organizations are tallied with every AS, and an
/// organization with an AS banned on its own — rare — is tallied again afterwards
/// ([`Tally::redo`]), leaving that AS out.
pub struct Tally<'a> {
    orgs: &'a Orgs,
    routes: &'a RouteTable,
    keep: &'a dyn Fn(u32) -> bool,
    /// Most routing tables have few multi-origin prefixes, and some none: hosts are looked up
    /// only when there are.
    moas: bool,
    counts: Vec<Counts>,
    /// Group ids per (AS, IPv6?) and per (organization id, IPv6?), by `slot`.
    as_groups: HashMap<(u32, bool), [u32; 6]>,
    org_groups: HashMap<(u32, bool), [u32; 6]>,
    /// Organizations as small ids while tallying (no string per host, port and direction).
    org_ids: HashMap<String, u32>,
    org_names: Vec<String>,
    org_of: HashMap<u32, u32>,
    /// The net whose hosts are being tallied, and per group its hosts (group, filtered,
    /// reachable).
    net: Option<u64>,
    run: Vec<(u32, u32, u32)>,
    /// A second tally after bans: only these organizations, without their ASes banned alone.
    redo: Option<(&'a Findings, BTreeSet<String>)>,
    origins: Vec<(u32, u32)>,
    host_orgs: Vec<u32>,
}

impl<'a> Tally<'a> {
    pub fn new(orgs: &'a Orgs, routes: &'a RouteTable, keep: &'a dyn Fn(u32) -> bool) -> Tally<'a> {
        Tally {
            orgs,
            routes,
            keep,
            moas: routes.prefixes().any(|(_, o)| o.others.is_some()),
            counts: Vec::new(),
            as_groups: HashMap::new(),
            org_groups: HashMap::new(),
            org_ids: HashMap::new(),
            org_names: Vec::new(),
            org_of: HashMap::new(),
            net: None,
            run: Vec::new(),
            redo: None,
            origins: Vec::with_capacity(4),
            host_orgs: Vec::with_capacity(4),
        }
    }

    /// Organizations whose tally an AS banned on its own changes: it is left out of them.
    pub fn affected(&self, bans: &Findings) -> BTreeSet<String> {
        self.as_groups.keys().filter(|(a, v6)| bans.as_banned(*a, *v6) && !bans.bans.contains_key(&(self.orgs.org_of(*a).0, *v6))).map(|(a, _)| self.orgs.org_of(*a).0).collect()
    }

    /// A tally of `orgs` only, leaving out their ASes banned on their own (`bans`): hosts of
    /// the crawl go through it again, and [`Tally::replace`] puts its groups in place.
    pub fn redo(orgs: &'a Orgs, routes: &'a RouteTable, keep: &'a dyn Fn(u32) -> bool, bans: &'a Findings, affected: BTreeSet<String>) -> Tally<'a> {
        Tally { redo: Some((bans, affected)), ..Tally::new(orgs, routes, keep) }
    }

    fn org(&mut self, asn: u32) -> u32 {
        let (orgs, ids, names) = (self.orgs, &mut self.org_ids, &mut self.org_names);
        *self.org_of.entry(asn).or_insert_with(|| {
            let name = orgs.org_of(asn).0;
            *ids.entry_ref(&name).or_insert_with(|| {
                names.push(name.clone());
                names.len() as u32 - 1
            })
        })
    }

    /// Count the finished net's hosts toward `beside`.
    fn end_net(&mut self) {
        for (g, f, r) in self.run.drain(..) {
            if r > 0 {
                self.counts[g as usize].beside += f as u64;
            }
        }
    }

    fn group(counts: &mut Vec<Counts>, ids: &mut [u32; 6], s: usize, asn: Option<u32>) -> u32 {
        if ids[s] == NONE {
            ids[s] = counts.len() as u32;
            counts.push(Counts { asns: asn.into_iter().collect(), ..Default::default() });
        }
        ids[s]
    }

    fn count(&mut self, g: u32, h: &HostAcc, i: usize, dir: Direction, cls: Result<PortState, Exclusion>) {
        if let Some((filtered, reachable)) = self.counts[g as usize].add(h, i, dir, cls) {
            let e = match self.run.iter_mut().find(|e| e.0 == g) {
                Some(e) => e,
                None => {
                    self.run.push((g, 0, 0));
                    self.run.last_mut().unwrap()
                }
            };
            e.1 += filtered as u32;
            e.2 += reachable as u32;
        }
    }

    /// One host (`key`: its address, IPv4 mapped). Hosts of one /24 (/64) come one after the
    /// other.
    pub fn add(&mut self, key: u128, h: &HostAcc) {
        if !(self.keep)(h.asn) {
            return;
        }
        let net = net_of(key, h.v6);
        if self.net != Some(net) {
            self.end_net();
            self.net = Some(net);
        }
        let mut origins = std::mem::take(&mut self.origins);
        let mut host_orgs = std::mem::take(&mut self.host_orgs);
        origins.clear();
        let o = self.org(h.asn);
        origins.push((h.asn, o));
        if self.moas {
            let addr = if h.v6 { IpAddr::V6(key.into()) } else { IpAddr::V4((key as u32).into()) };
            if let Some((_, r)) = self.routes.lookup(addr) {
                for a in r.others.iter().flatten().copied().filter(|a| *a != h.asn && (self.keep)(*a)) {
                    let o = self.org(a);
                    origins.push((a, o));
                }
            }
        }
        host_orgs.clear();
        match &self.redo {
            // An AS banned on its own stays out of its organization's numbers (its silence is
            // the detector's, and the organization's other ASes did not show the ban).
            Some((bans, only)) => host_orgs.extend(
                origins
                    .iter()
                    .filter(|o| only.contains(&self.org_names[o.1 as usize]))
                    .filter(|o| !bans.as_banned(o.0, h.v6) || bans.bans.contains_key(&(self.org_names[o.1 as usize].clone(), h.v6)))
                    .map(|o| o.1),
            ),
            None => host_orgs.extend(origins.iter().map(|o| o.1)),
        }
        host_orgs.sort_unstable();
        host_orgs.dedup();
        for i in 0..MAIL_PORTS.len() {
            for dir in Direction::ALL {
                if !dir.probed(h, i) {
                    continue;
                }
                let cls = dir.classify(h, i);
                let s = slot(i, dir);
                if self.redo.is_none() {
                    for (a, _) in &origins {
                        let ids = self.as_groups.entry((*a, h.v6)).or_insert([NONE; 6]);
                        let g = Self::group(&mut self.counts, ids, s, Some(*a));
                        self.count(g, h, i, dir, cls);
                    }
                }
                for o in &host_orgs {
                    let ids = self.org_groups.entry((*o, h.v6)).or_insert([NONE; 6]);
                    let g = Self::group(&mut self.counts, ids, s, None);
                    let c = &mut self.counts[g as usize];
                    for (a, ao) in &origins {
                        if ao == o && !c.asns.contains(a) {
                            c.asns.insert(*a);
                        }
                    }
                    self.count(g, h, i, dir, cls);
                }
            }
        }
        self.origins = origins;
        self.host_orgs = host_orgs;
    }

    /// The tallies, per AS and per organization.
    pub fn finish(mut self) -> (BTreeMap<AsKey, Counts>, BTreeMap<GroupKey, Counts>) {
        self.end_net();
        let mut counts: Vec<Option<Counts>> = self.counts.into_iter().map(Some).collect();
        let mut by_as = BTreeMap::new();
        let mut by_org = BTreeMap::new();
        for dir in Direction::ALL {
            for (i, port) in MAIL_PORTS.iter().enumerate() {
                let s = slot(i, dir);
                for ((a, v6), ids) in &self.as_groups {
                    if let Some(c) = (ids[s] != NONE).then(|| counts[ids[s] as usize].take()).flatten() {
                        by_as.insert((*a, *v6, *port, dir), c);
                    }
                }
                for ((o, v6), ids) in &self.org_groups {
                    if let Some(c) = (ids[s] != NONE).then(|| counts[ids[s] as usize].take()).flatten() {
                        by_org.insert((self.org_names[*o as usize].clone(), *v6, *port, dir), c);
                    }
                }
            }
        }
        (by_as, by_org)
    }

    /// Put a [`Tally::redo`]'s organizations in place of theirs in `by_org`.
    pub fn replace(redo: BTreeMap<GroupKey, Counts>, affected: &BTreeSet<String>, by_org: &mut BTreeMap<GroupKey, Counts>) {
        by_org.retain(|k, _| !affected.contains(&k.0));
        by_org.extend(redo);
    }
}

pub fn rows(by_as: &BTreeMap<AsKey, Counts>, by_org: &BTreeMap<GroupKey, Counts>, cx: &Context) -> (Vec<Row>, Vec<Row>) {
    let fam = |v6: bool| if v6 { "ipv6" } else { "ipv4" };
    let mut providers: Vec<Row> =
        by_org.iter().map(|((org, v6, port, dir), c)| finish(RowKey { level: "provider", org_id: org, asn: None, dir: *dir, family: fam(*v6), port: *port }, c, cx)).collect();
    let asns: Vec<Row> = by_as.iter().map(|((asn, v6, port, dir), c)| finish(RowKey { level: "asn", org_id: "", asn: Some(*asn), dir: *dir, family: fam(*v6), port: *port }, c, cx)).collect();
    providers.sort_by(|a, b| (a.direction, a.provider.as_str(), a.family, a.port).cmp(&(b.direction, b.provider.as_str(), b.family, b.port)));
    (providers, asns)
}

/// Verdicts a vantage's own trouble withholds: a ban, an outage of its family, its own network
/// filtering a reflection port. They carry no rate and are never compared or trended.
pub fn withheld(verdict: &str) -> bool {
    matches!(verdict, "vantage-banned" | "vantage-outage" | "vantage-filtered")
}

/// Providers whose reflection from a mail port is silent at once, beyond what the Internet
/// shows: when most providers that can be judged read "outbound blocked, silently" on a port at
/// the same time, the replies to that port were lost at the vantage (its network, or its
/// upstream, drops packets to port 25 — residential, campus and many cloud networks do), not
/// in the providers. Every reflection verdict of that port and family is then withheld
/// (`vantage-filtered`), saying why; returns those findings in words.
pub fn withhold_blind_reflection(providers: &mut [Row], asns: &mut [Row], th: &Thresholds) -> Vec<String> {
    let mut notes = Vec::new();
    let keys: BTreeSet<(&'static str, u16)> = providers.iter().filter(|r| r.method == "reflection").map(|r| (r.family, r.port)).collect();
    for (family, port) in keys {
        let judged: Vec<&Row> = providers.iter().filter(|r| r.method == "reflection" && r.family == family && r.port == port && r.informative >= th.min_informative && !withheld(r.verdict)).collect();
        let silent = judged.iter().filter(|r| r.rate.is_some_and(|x| x >= 0.5) && r.mechanism == "silent-drop").count();
        if judged.len() < BLIND_MIN_PROVIDERS || (silent as f64) <= BLIND_SHARE * judged.len() as f64 {
            continue;
        }
        let why = format!(
            "{silent} of {} providers whose hosts answered the neutral reflection (source port 2525) and their twin were silent on source port {port} ({family}) at once — implausible for the Internet: this vantage's own network (or its upstream) drops replies to port {port}, so no outbound {port} verdict from it",
            judged.len()
        );
        for r in providers.iter_mut().chain(asns.iter_mut()).filter(|r| r.method == "reflection" && r.family == family && r.port == port) {
            r.verdict = "vantage-filtered";
            (r.rate, r.ci_low, r.ci_high) = (None, None, None);
            (r.mechanism, r.location) = (String::new(), String::new());
            r.evidence = why.clone();
        }
        notes.push(why);
    }
    notes
}

/// At least this many providers must be judged before their silence can be the vantage's...
const BLIND_MIN_PROVIDERS: usize = 3;
/// ... and more than this share of them silent at once.
const BLIND_SHARE: f64 = 0.5;

#[cfg(test)]
mod tests {
    use super::*;
    use datasets::routes::RouteFormat;

    fn routes() -> RouteTable {
        let mut r = RouteTable::default();
        let table = "198.18.0.0\t16\t64500\n198.19.0.0\t16\t64510\n";
        r.load_from(std::path::Path::new("test.pfx2as"), RouteFormat::Pfx2as, table.as_bytes(), Default::default()).unwrap();
        r
    }

    #[test]
    fn silence_and_one_icmp_kind_is_an_icmp_filter_under_a_rate_limit() {
        let (routes, orgs, categories, th, bans) = (routes(), Orgs::default(), Categories::default(), Thresholds::default(), Findings::default());
        let strings = vec!["198.18.0.1".to_string()];
        let siblings = Siblings::default();
        let cx = Context { routes: &routes, orgs: &orgs, siblings: &siblings, categories: &categories, strings: &strings, th: &th, bans: &bans, vantage: "v" };
        let mut c = Counts { filtered: 50, informative: 50, asns: BTreeSet::from([64500]), ..Default::default() };
        c.states[PortState::Silent.index()] = 41;
        c.states[PortState::IcmpProhibited.index()] = 9;
        c.responders.insert(0, 9);
        let (m, l, e) = explain(&c, &c.states, 50, "AS64500", &cx);
        assert_eq!((m.as_str(), l.as_str()), ("icmp-prohibited", "in-provider"), "{e}");
        assert!(e.contains("rate limit"), "{e}");
        // A second kind of answer among the filtered hosts is a mix, rate limit or not.
        c.states[PortState::Silent.index()] = 36;
        c.states[PortState::RstInjected.index()] = 5;
        assert_eq!(explain(&c, &c.states, 50, "AS64500", &cx).0, "mixed");
        // An unrouted responder (an IXP LAN) names no network.
        let strings = vec!["192.0.2.1".to_string()];
        let cx = Context { strings: &strings, ..cx };
        c.states[PortState::Silent.index()] = 41;
        c.states[PortState::RstInjected.index()] = 0;
        assert_eq!(explain(&c, &c.states, 50, "AS64500", &cx).1, "unknown-responder");
        // Host firewalls answering for themselves (one error per responder) are no router.
        c.responders = (0..9).map(|i| (i, 1)).collect();
        let strings: Vec<String> = (1..=9).map(|i| format!("198.18.0.{i}")).collect();
        let cx = Context { strings: &strings, ..cx };
        assert_eq!(explain(&c, &c.states, 50, "AS64500", &cx).0, "silent-drop");
        // Silent hosts beside reachable ones in their /24s are host firewalls, even with a
        // router's few ICMP errors elsewhere in the provider.
        c.responders = BTreeMap::from([(0, 9)]);
        let strings = vec!["198.18.0.1".to_string()];
        let cx = Context { strings: &strings, ..cx };
        c.beside = 41;
        let (m, l, _) = explain(&c, &c.states, 50, "AS64500", &cx);
        assert_eq!((m.as_str(), l.as_str()), ("silent-drop", "host-firewalls"));
    }

    #[test]
    fn hop_counts_do_not_depend_on_the_initial_ttl() {
        // A border one hop closer than a Windows host (128) or a Linux host (64) injects RSTs
        // with initial TTL 64: the same difference either way.
        assert_eq!(hops(128 - 10) - hops(64 - 9), 1);
        assert_eq!(hops(64 - 10) - hops(64 - 9), 1);
        assert_eq!((hops(255), hops(250), hops(1)), (0, 5, 31));
    }

    #[test]
    fn an_injector_answers_from_a_distance_no_host_answers_from() {
        // Hosts 2 hops away, a border injector 1 hop away: the candidates at 1 are forged.
        let mut c = Counts::default();
        c.ref_hops.insert(2, 500);
        c.rst_hops.insert(1, 40);
        c.rst_hops.insert(0, 3);
        assert_eq!(rst_split(&c), (Some((1, 40)), 3));
        // ECMP inside the provider: hosts answer from 2 or 3 hops (per flow); a host whose own
        // flows all took one path and whose port-25 RST took the other is no injection.
        let mut e = Counts::default();
        e.ref_hops.insert(2, 260);
        e.ref_hops.insert(3, 240);
        e.rst_hops.insert(3, 6);
        e.rst_hops.insert(2, 5);
        assert_eq!(rst_split(&e), (None, 11));
        // ECMP and an injector in front of it: the injector's distance is still no host's.
        e.rst_hops.insert(1, 90);
        assert_eq!(rst_split(&e), (Some((1, 90)), 11));
        // One odd host's flow does not make a distance the provider's.
        c.ref_hops.insert(1, 1);
        assert_eq!(rst_split(&c).0, Some((1, 40)));
    }

    #[test]
    fn most_providers_silent_on_one_reflection_port_at_once_is_the_vantages_filter() {
        let row = |org: &str, port: u16, rate: f64, mech: &str| Row {
            level: "provider",
            direction: "outbound",
            method: "reflection",
            org_id: org.into(),
            family: "ipv4",
            port,
            informative: 100,
            rate: Some(rate),
            verdict: if rate > 0.9 { "blocks" } else { "open" },
            mechanism: mech.into(),
            ..Default::default()
        };
        let th = Thresholds::default();
        // Four providers, three silent on 25 at once, none on 587: the vantage drops port 25.
        let mut p = vec![row("a", 25, 1.0, "silent-drop"), row("b", 25, 1.0, "silent-drop"), row("c", 25, 0.98, "silent-drop"), row("d", 25, 0.0, ""), row("a", 587, 0.0, ""), row("b", 587, 0.0, ""), row("c", 587, 0.0, "")];
        let mut asns = vec![row("AS1", 25, 1.0, "silent-drop")];
        let notes = withhold_blind_reflection(&mut p, &mut asns, &th);
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(p.iter().filter(|r| r.port == 25).all(|r| r.verdict == "vantage-filtered" && r.rate.is_none()));
        assert!(p.iter().filter(|r| r.port == 587).all(|r| r.verdict == "open"));
        assert_eq!(asns[0].verdict, "vantage-filtered");
        // One provider in four silent: a finding, not the vantage.
        let mut p = vec![row("a", 25, 1.0, "silent-drop"), row("b", 25, 0.0, ""), row("c", 25, 0.0, ""), row("d", 25, 0.0, "")];
        assert!(withhold_blind_reflection(&mut p, &mut [], &th).is_empty());
        assert_eq!(p[0].verdict, "blocks");
    }

    #[test]
    fn wilson_matches_known_values() {
        // Brown, Cai & DasGupta's example-style check: 0/30 → upper ≈ 0.114; 30/30 → lower ≈ 0.886.
        let (lo, hi) = wilson(0, 30);
        assert!(lo == 0.0 && (hi - 0.1135).abs() < 0.001, "{hi}");
        let (lo, _) = wilson(30, 30);
        assert!((lo - 0.8865).abs() < 0.001, "{lo}");
        let (lo, hi) = wilson(50, 100);
        assert!((lo - 0.4038).abs() < 0.001 && (hi - 0.5962).abs() < 0.001);
    }
}
