//! Building a plan: load every input (recording its SHA-256), group the announced prefixes
//! (v4) and the hitlist addresses (v6) by origin AS, then sample each selected AS.

use super::sample::Sampler;
use super::{Plan, PlanInputs, PlanSummary, Sampling, Selection};
use anyhow::{bail, Result};
use datasets::blocklist::{Blocklist, Reason};
use datasets::categories::Categories;
use datasets::orgs::Orgs;
use datasets::routes::RouteTable;
use datasets::{hitlist, input, LoadOptions, LoadStats};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;

/// Everything a plan is drawn from.
struct Inputs {
    routes: RouteTable,
    orgs: Orgs,
    categories: Categories,
    block: Blocklist,
    aliased: prefix_trie::PrefixSet<Ipv6Net>,
    hits: Vec<IpAddr>,
    /// (file, sha256) of every input.
    hashes: Vec<(String, String)>,
}

pub fn build(inp: &PlanInputs) -> Result<Plan> {
    let t0 = std::time::Instant::now();
    let mut sum = PlanSummary::default();
    let pb = crate::progress::spinner(inp.progress, "loading routing data");
    let Inputs { routes, orgs, categories, block, aliased, hits, hashes } = load(inp, &mut sum)?;
    pb.finish_and_clear();
    tracing::debug!("plan: inputs loaded in {:.2} s", t0.elapsed().as_secs_f64());
    if inp.select == Selection::Hosting && inp.categories.is_empty() {
        bail!("--select hosting needs --categories (an ASdb CSV or an `AS<n>,category` list)");
    }
    let selected = |asn: u32| match &inp.select {
        Selection::All => true,
        Selection::Hosting => categories.is(asn, "hosting"),
        Selection::Asns(v) => v.contains(&asn),
    };
    // IPv6 targets always come from a hitlist (a random draw from IPv6 space finds nothing);
    // IPv4 targets too when the user gives IPv4 hitlist addresses, for samples of the same
    // kind in both families, else random addresses of the announced prefixes.
    let listed = listed_by_as(&routes, &block, &aliased, hits, &selected, &mut sum);
    let v4_hitlist = listed.values().flatten().any(|(a, _)| a.is_ipv4());
    let v4 = if v4_hitlist { HashMap::new() } else { v4_by_as(&routes, &selected) };
    let mut asns: Vec<u32> = v4.keys().chain(listed.keys()).copied().collect();
    asns.sort_unstable();
    asns.dedup();
    if let Selection::Asns(v) = &inp.select {
        for a in v.iter().filter(|a| !asns.contains(a)) {
            tracing::warn!("AS{a} announces nothing in the routing data (and has no hitlist address)");
        }
    }
    sum.asns_selected = asns.len();
    tracing::debug!("plan: grouped by AS in {:.2} s", t0.elapsed().as_secs_f64());
    let pb = crate::progress::bar(inp.progress, asns.len() as u64, "sampling ASNs");
    let sampler = Sampler { routes: &routes, block: &block, v4: &v4, listed: &listed, per_asn: inp.per_asn, seed: inp.seed, keep_edges: inp.keep_edge_addresses };
    let (targets, sampled) = sampler.sample_all(&asns, &pb);
    sum.merge(sampled);
    pb.finish_and_clear();
    tracing::debug!("plan: sampled in {:.2} s", t0.elapsed().as_secs_f64());
    // Already in (asn, family, address) order: ASes ascending, v4 then v6, each sorted.
    debug_assert!(targets.windows(2).all(|w| (w[0].asn, w[0].ip.is_ipv6(), w[0].ip) < (w[1].asn, w[1].ip.is_ipv6(), w[1].ip)));
    let v4_sampling = if v4_hitlist { Sampling::Hitlist } else { Sampling::Random };
    Ok(Plan { sampling: (v4_sampling, Sampling::Hitlist), targets, summary: sum, orgs, categories, inputs: hashes })
}

fn note(sum: &mut PlanSummary, st: &LoadStats, file: &Path) {
    sum.bad_lines += st.skipped_bad;
    for e in &st.bad_examples {
        tracing::warn!("skipped bad line: {e}");
    }
    if st.skipped_bad > 0 {
        tracing::warn!("{}: skipped {} malformed lines", file.display(), st.skipped_bad);
    }
}

fn load(inp: &PlanInputs, sum: &mut PlanSummary) -> Result<Inputs> {
    let opts = LoadOptions { skip_bad_lines: inp.skip_bad_lines };
    let mut hashes = Vec::new();
    let mut record = |p: &Path| -> Result<()> {
        hashes.push((p.display().to_string(), input::sha256_file(p)?));
        Ok(())
    };
    let mut routes = RouteTable::default();
    for f in &inp.routes {
        note(sum, &routes.load(f, inp.routes_format, opts)?, f);
        record(f)?;
    }
    if routes.is_empty() {
        let names: Vec<String> = inp.routes.iter().map(|p| p.display().to_string()).collect();
        return Err(datasets::DatasetError::file(Path::new(&names.join(", ")), "the routing data has no prefixes (empty or only comments?)").into());
    }
    let mut orgs = Orgs::default();
    for f in &inp.orgs {
        note(sum, &orgs.load(f, opts)?, f);
        record(f)?;
    }
    let mut categories = Categories::default();
    for f in &inp.categories {
        note(sum, &categories.load(f, opts)?, f);
        record(f)?;
    }
    let block = Blocklist::build(&inp.allow_reserved, &inp.opt_out, &inp.exclude, opts)?;
    for f in inp.opt_out.iter().chain(&inp.exclude) {
        record(f)?;
    }
    let mut aliased: prefix_trie::PrefixSet<Ipv6Net> = Default::default();
    for f in &inp.aliased {
        let (nets, st) = hitlist::load_prefixes(f, opts)?;
        note(sum, &st, f);
        for n in nets {
            if let IpNet::V6(n) = n {
                aliased.insert(n);
            }
        }
        record(f)?;
    }
    let mut hits = Vec::new();
    for f in &inp.hitlist {
        let (a, st) = hitlist::load_addresses(f, opts)?;
        note(sum, &st, f);
        hits.extend(a);
        record(f)?;
    }
    Ok(Inputs { routes, orgs, categories, block, aliased, hits, hashes })
}

/// Announced IPv4 prefixes of the selected ASes.
fn v4_by_as(routes: &RouteTable, selected: &dyn Fn(u32) -> bool) -> HashMap<u32, Vec<Ipv4Net>> {
    let mut m: HashMap<u32, Vec<Ipv4Net>> = HashMap::new();
    for (p, o) in routes.v4.iter() {
        if selected(o.asn) {
            m.entry(o.asn).or_default().push(p);
        }
    }
    m
}

/// Hitlist addresses of the selected ASes with their announced prefix; aliased (IPv6),
/// unrouted and blocked addresses are counted and dropped.
fn listed_by_as(routes: &RouteTable, block: &Blocklist, aliased: &prefix_trie::PrefixSet<Ipv6Net>, hits: Vec<IpAddr>, selected: &dyn Fn(u32) -> bool, sum: &mut PlanSummary) -> HashMap<u32, Vec<(IpAddr, IpNet)>> {
    let mut m: HashMap<u32, Vec<(IpAddr, IpNet)>> = HashMap::new();
    for a in hits {
        if let IpAddr::V6(v) = a {
            if aliased.get_lpm(&Ipv6Net::from(v)).is_some() {
                *sum.excluded.entry(Reason::Aliased.as_str()).or_default() += 1;
                continue;
            }
        }
        let Some((p, o)) = routes.lookup(a) else {
            *sum.excluded.entry("unrouted").or_default() += 1;
            continue;
        };
        if !selected(o.asn) {
            continue;
        }
        if let Some(r) = block.check(a) {
            *sum.excluded.entry(r.as_str()).or_default() += 1;
            continue;
        }
        m.entry(o.asn).or_default().push((a, p));
    }
    m
}
