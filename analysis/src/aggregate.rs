//! Per-ASN and per-provider (AS2Org organization) aggregation of host verdicts, per address
//! family and mail port: counts, a 95 % Wilson score interval (not Wald: Brown, Cai &
//! DasGupta 2001), a verdict, the blocking mechanism and where the filter sits.
//!
//! Counts are additive over hosts, so shards of a crawl can be inferred separately and
//! their `Counts` merged (`Counts::merge`).

use crate::infer::{Direction, Exclusion, HostAcc, PortState, MAIL_PORTS};
use crate::load::{numeric, Hosts};
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
    pub states: [u64; 10],
    /// Excluded hosts, indexed by `Exclusion::index` (all-ports, dead, uninformative,
    /// source-port-filtered).
    pub excluded: [u64; 4],
    pub prefixes: HashSet<u32>,
    /// ICMP responder (interned) → filtered hosts it answered for.
    pub responders: BTreeMap<u32, u64>,
    /// Per /24 (IPv6: /64) of informative hosts: (filtered, reachable).
    pub nets: HashMap<u128, (u32, u32)>,
    pub asns: BTreeSet<u32>,
}

impl Counts {
    pub fn merge(&mut self, o: &Counts) {
        self.hosts += o.hosts;
        self.informative += o.informative;
        self.filtered += o.filtered;
        for (a, b) in self.states.iter_mut().zip(o.states) {
            *a += b;
        }
        for (a, b) in self.excluded.iter_mut().zip(o.excluded) {
            *a += b;
        }
        self.prefixes.extend(&o.prefixes);
        for (k, v) in &o.responders {
            *self.responders.entry(*k).or_default() += v;
        }
        for (k, v) in &o.nets {
            let e = self.nets.entry(*k).or_default();
            e.0 += v.0;
            e.1 += v.1;
        }
        self.asns.extend(&o.asns);
    }

    /// Tally one host (its AS is recorded when the group is created, not per host).
    fn add(&mut self, key: u128, h: &HostAcc, i: usize, dir: Direction) {
        self.hosts += 1;
        match dir.classify(h, i) {
            Err(e) => self.excluded[e.index()] += 1,
            Ok(st) => {
                self.informative += 1;
                self.prefixes.insert(h.prefix);
                self.states[st.index()] += 1;
                let net = if h.v6 { key >> 64 } else { key >> 8 };
                let e = self.nets.entry(net).or_default();
                if st.filtered() {
                    self.filtered += 1;
                    e.0 += 1;
                    if let Some(o) = dir.reply(h, i) {
                        if o.responder != u32::MAX {
                            *self.responders.entry(o.responder).or_default() += 1;
                        }
                    }
                } else if st.reachable() {
                    e.1 += 1;
                }
            }
        }
    }
}

#[derive(Debug, Clone, Serialize)]
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
    pub states: String,
}

/// Context for naming and locating: routing (responders → AS), organizations, categories.
pub struct Context<'a> {
    pub routes: &'a RouteTable,
    pub orgs: &'a Orgs,
    pub categories: &'a Categories,
    pub strings: &'a [String],
    pub th: &'a Thresholds,
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
    let (lo, hi) = wilson(c.filtered, c.informative);
    let verdict = if c.informative < th.min_informative {
        "insufficient"
    } else if lo >= th.block_lower {
        "blocks"
    } else if hi <= th.open_upper {
        "open"
    } else {
        "mixed"
    };
    let mut mechanism = String::new();
    let mut location = String::new();
    if c.filtered > 0 {
        let (top, n) = PortState::ALL.iter().map(|s| (*s, c.states[s.index()])).filter(|(s, _)| s.filtered()).max_by_key(|(_, n)| *n).unwrap();
        mechanism = if n as f64 >= th.dominant * c.filtered as f64 { top.mechanism().to_string() } else { "mixed".into() };
        // Location: ICMP responders mapped to their AS; else filtered hosts beside reachable
        // ones in the same /24 point at host firewalls; else a single vantage cannot tell.
        let icmp: u64 = c.responders.values().sum();
        let beside: u64 = c.nets.values().filter(|(_, r)| *r > 0).map(|(f, _)| *f as u64).sum();
        if icmp as f64 >= 0.5 * c.filtered as f64 {
            let siblings: BTreeSet<u32> = cx.orgs.siblings(&org).into_iter().chain(c.asns.iter().copied()).collect();
            let mut inside = 0;
            for (r, n) in &c.responders {
                let ip: Option<IpAddr> = cx.strings[*r as usize].parse().ok();
                if let Some((_, o)) = ip.and_then(|ip| cx.routes.lookup(ip)) {
                    if siblings.contains(&o.asn) {
                        inside += n;
                    }
                }
            }
            location = if inside as f64 >= th.dominant * icmp as f64 {
                "in-provider"
            } else if (icmp - inside) as f64 >= th.dominant * icmp as f64 {
                "upstream"
            } else {
                "mixed"
            }
            .into();
        } else if beside as f64 >= 0.5 * c.filtered as f64 {
            location = "host-firewalls".into();
        } else {
            location = "unknown".into();
        }
    }
    let states = PortState::ALL.iter().filter(|s| c.states[s.index()] > 0).map(|s| format!("{}={}", s.as_str(), c.states[s.index()])).collect::<Vec<_>>().join(";");
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
        informative: c.informative,
        prefixes: c.prefixes.len() as u64,
        filtered: c.filtered,
        rate: (c.informative > 0).then(|| c.filtered as f64 / c.informative as f64),
        ci_low: (c.informative > 0).then_some(lo),
        ci_high: (c.informative > 0).then_some(hi),
        verdict,
        mechanism,
        location,
        excluded_dead: c.excluded[Exclusion::Dead.index()],
        excluded_all_ports: c.excluded[Exclusion::AllPortsResponder.index()],
        excluded_uninformative: c.excluded[Exclusion::Uninformative.index()],
        excluded_source_port: c.excluded[Exclusion::SourcePortFiltered.index()],
        states,
    }
}

pub type GroupKey = (String, bool, u16, Direction); // (org id or "AS<n>", v6, port, direction)
pub type AsKey = (u32, bool, u16, Direction);

/// Tally every host into its AS and its organization, per mail port and direction.
pub fn tally(hosts: &Hosts, orgs: &Orgs, keep: &dyn Fn(u32) -> bool) -> (BTreeMap<AsKey, Counts>, BTreeMap<GroupKey, Counts>) {
    let mut acc: HashMap<AsKey, Counts> = HashMap::new();
    let mut org_cache: HashMap<u32, String> = HashMap::new();
    for (ip, h) in &hosts.hosts {
        if !keep(h.asn) {
            continue;
        }
        let key = numeric(ip).unwrap_or(0);
        for (i, port) in MAIL_PORTS.iter().enumerate() {
            for dir in Direction::ALL {
                if !dir.probed(h, i) {
                    continue;
                }
                acc.entry((h.asn, h.v6, *port, dir))
                    .or_insert_with(|| Counts { asns: BTreeSet::from([h.asn]), ..Default::default() })
                    .add(key, h, i, dir);
            }
        }
        org_cache.entry(h.asn).or_insert_with(|| orgs.org_of(h.asn).0);
    }
    let by_as: BTreeMap<AsKey, Counts> = acc.into_iter().collect();
    let mut by_org: BTreeMap<GroupKey, Counts> = BTreeMap::new();
    for ((asn, v6, port, dir), c) in &by_as {
        by_org.entry((org_cache[asn].clone(), *v6, *port, *dir)).or_default().merge(c);
    }
    (by_as, by_org)
}

pub fn rows(by_as: &BTreeMap<AsKey, Counts>, by_org: &BTreeMap<GroupKey, Counts>, cx: &Context) -> (Vec<Row>, Vec<Row>) {
    let fam = |v6: bool| if v6 { "ipv6" } else { "ipv4" };
    let mut providers: Vec<Row> =
        by_org.iter().map(|((org, v6, port, dir), c)| finish(RowKey { level: "provider", org_id: org, asn: None, dir: *dir, family: fam(*v6), port: *port }, c, cx)).collect();
    let asns: Vec<Row> = by_as.iter().map(|((asn, v6, port, dir), c)| finish(RowKey { level: "asn", org_id: "", asn: Some(*asn), dir: *dir, family: fam(*v6), port: *port }, c, cx)).collect();
    providers.sort_by(|a, b| (a.direction, a.provider.as_str(), a.family, a.port).cmp(&(b.direction, b.provider.as_str(), b.family, b.port)));
    (providers, asns)
}

/// A host line for `hosts.parquet`.
pub struct HostRow<'a> {
    pub ip: &'a str,
    pub h: &'a HostAcc,
}

pub fn host_rows(hosts: &Hosts) -> impl Iterator<Item = HostRow<'_>> + '_ {
    hosts.hosts.iter().map(|(k, h)| HostRow { ip: k, h })
}

#[cfg(test)]
mod tests {
    use super::*;
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
