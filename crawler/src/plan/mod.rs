//! `crawler plan`: a reproducible, stratified sample of hosts per ASN.
//!
//! Methodology: blocking policy clusters by prefix (design effect 1+(m−1)ρ), so a fixed
//! budget of N hosts per ASN is spread over as many announced prefixes as possible, and
//! within a prefix over as many /24s as possible: round r takes the r-th address of one
//! /24 of every prefix. Every choice comes from keyed permutations (masscan's Blackrock,
//! `perfect_rand`) of the seed, so the same inputs and seed give the same plan.
//! IPv6 targets come from a hitlist (a sampled address space is empty), stratified the same
//! way by prefix and /48.

use anyhow::{bail, Context, Result};
use arrow_array::builder::{StringBuilder, UInt32Builder, UInt8Builder};
use arrow_array::{ArrayRef, RecordBatch};
use datasets::blocklist::{Blocklist, Reason};
use datasets::categories::Categories;
use datasets::orgs::Orgs;
use datasets::routes::{RouteFormat, RouteTable};
use datasets::{hitlist, input, schema, LoadOptions, LoadStats};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use perfect_rand::PerfectRng;
use siphasher::sip::SipHasher13;
use std::collections::{BTreeMap, HashMap};
use std::hash::Hasher;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    All,
    Hosting,
    Asns(Vec<u32>),
}

impl std::str::FromStr for Selection {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "all" => Ok(Selection::All),
            "hosting" => Ok(Selection::Hosting),
            _ => s
                .split(',')
                .map(|a| {
                    let t = a.trim();
                    t.strip_prefix("AS").or_else(|| t.strip_prefix("as")).unwrap_or(t).parse::<u32>().map_err(|_| format!("bad AS `{a}` in selection (all, hosting, or AS<n>,AS<m>,...)"))
                })
                .collect::<std::result::Result<Vec<_>, _>>()
                .map(Selection::Asns),
        }
    }
}

#[derive(Debug, Clone)]
pub struct PlanInputs {
    pub routes: Vec<PathBuf>,
    pub routes_format: Option<RouteFormat>,
    pub orgs: Vec<PathBuf>,
    pub categories: Vec<PathBuf>,
    pub hitlist: Vec<PathBuf>,
    pub aliased: Vec<PathBuf>,
    pub exclude: Vec<PathBuf>,
    pub opt_out: Vec<PathBuf>,
    pub select: Selection,
    pub per_asn: usize,
    pub seed: u64,
    pub allow_reserved: Vec<IpNet>,
    pub skip_bad_lines: bool,
    pub progress: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub ip: IpAddr,
    pub asn: u32,
    pub prefix: IpNet,
}

#[derive(Debug, Default)]
pub struct PlanSummary {
    pub asns_selected: usize,
    pub asns_with_targets: usize,
    pub prefixes: usize,
    pub targets_v4: usize,
    pub targets_v6: usize,
    pub excluded: BTreeMap<&'static str, usize>,
    pub excluded_prefixes: BTreeMap<&'static str, usize>,
    pub bad_lines: usize,
}

pub struct Plan {
    pub targets: Vec<Target>,
    pub summary: PlanSummary,
    pub orgs: Orgs,
    pub categories: Categories,
    /// (file, sha256) of every input.
    pub inputs: Vec<(String, String)>,
}

/// Build the blocklist the plan and the sender share: IANA special-purpose space (minus what
/// is explicitly allowed), opt-out lists and exclusion lists.
pub fn blocklist(allow_reserved: &[IpNet], opt_out: &[PathBuf], exclude: &[PathBuf], opts: LoadOptions) -> Result<Blocklist> {
    let mut b = Blocklist::with_iana(allow_reserved);
    for f in opt_out {
        b.add_file(f, Reason::OptOut, opts)?;
    }
    for f in exclude {
        b.add_file(f, Reason::Excluded, opts)?;
    }
    Ok(b)
}

fn keyed(seed: u64, parts: &[u128]) -> u64 {
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

/// Stratify hitlist addresses of one AS by (prefix, /48) and take them round-robin.
fn sample_v6(mut cands: Vec<(Ipv6Addr, Ipv6Net)>, want: usize, seed: u64) -> Vec<(Ipv6Addr, Ipv6Net)> {
    cands.sort_unstable();
    cands.dedup();
    let mut groups: BTreeMap<(Ipv6Net, u64), Vec<Ipv6Addr>> = BTreeMap::new();
    for (a, n) in cands {
        groups.entry((n, (u128::from(a) >> 80) as u64)).or_default().push(a);
    }
    let mut lists: Vec<(Ipv6Net, Vec<Ipv6Addr>)> = groups
        .into_iter()
        .map(|((n, g48), v)| {
            let k = keyed(seed, &[u128::from(n.network()), g48 as u128]);
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

fn load_stats_note(sum: &mut PlanSummary, st: &LoadStats, file: &Path) {
    sum.bad_lines += st.skipped_bad;
    for e in &st.bad_examples {
        tracing::warn!("skipped bad line: {e}");
    }
    if st.skipped_bad > 0 {
        tracing::warn!("{}: skipped {} malformed lines", file.display(), st.skipped_bad);
    }
}

pub fn build(inp: &PlanInputs) -> Result<Plan> {
    let opts = LoadOptions { skip_bad_lines: inp.skip_bad_lines };
    let mut sum = PlanSummary::default();
    let mut inputs = Vec::new();
    let mut record = |p: &Path| -> Result<()> {
        inputs.push((p.display().to_string(), input::sha256_file(p)?));
        Ok(())
    };
    let t0 = std::time::Instant::now();
    let pb = crate::progress::spinner(inp.progress, "loading routing data");
    let mut routes = RouteTable::default();
    for f in &inp.routes {
        let st = routes.load(f, inp.routes_format, opts)?;
        load_stats_note(&mut sum, &st, f);
        record(f)?;
    }
    if routes.is_empty() {
        bail!("the routing data has no prefixes ({} file(s))", inp.routes.len());
    }
    let mut orgs = Orgs::default();
    for f in &inp.orgs {
        let st = orgs.load(f, opts)?;
        load_stats_note(&mut sum, &st, f);
        record(f)?;
    }
    let mut categories = Categories::default();
    for f in &inp.categories {
        let st = categories.load(f, opts)?;
        load_stats_note(&mut sum, &st, f);
        record(f)?;
    }
    let block = blocklist(&inp.allow_reserved, &inp.opt_out, &inp.exclude, opts)?;
    for f in inp.opt_out.iter().chain(&inp.exclude) {
        record(f)?;
    }
    let mut aliased: prefix_trie::PrefixSet<Ipv6Net> = Default::default();
    for f in &inp.aliased {
        let (nets, st) = hitlist::load_prefixes(f, opts)?;
        load_stats_note(&mut sum, &st, f);
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
        load_stats_note(&mut sum, &st, f);
        hits.extend(a.into_iter().filter_map(|a| if let IpAddr::V6(v) = a { Some(v) } else { None }));
        record(f)?;
    }
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

    // Group announced prefixes by origin AS.
    let mut v4_by_as: HashMap<u32, Vec<Ipv4Net>> = HashMap::new();
    for (p, o) in routes.v4.iter() {
        if selected(o.asn) {
            v4_by_as.entry(o.asn).or_default().push(p);
        }
    }
    let mut v6_by_as: HashMap<u32, Vec<(Ipv6Addr, Ipv6Net)>> = HashMap::new();
    for a in hits {
        if aliased.get_lpm(&Ipv6Net::from(a)).is_some() {
            *sum.excluded.entry(Reason::Aliased.as_str()).or_default() += 1;
            continue;
        }
        let Some((p, o)) = routes.v6.get_lpm(&Ipv6Net::from(a)) else {
            *sum.excluded.entry("unrouted").or_default() += 1;
            continue;
        };
        if !selected(o.asn) {
            continue;
        }
        if let Some(r) = block.check(IpAddr::V6(a)) {
            *sum.excluded.entry(r.as_str()).or_default() += 1;
            continue;
        }
        v6_by_as.entry(o.asn).or_default().push((a, p));
    }
    let mut asns: Vec<u32> = v4_by_as.keys().chain(v6_by_as.keys()).copied().collect();
    asns.sort_unstable();
    asns.dedup();
    if let Selection::Asns(v) = &inp.select {
        for a in v {
            if !asns.contains(a) {
                tracing::warn!("AS{a} announces nothing in the routing data (and has no hitlist address)");
            }
        }
    }
    sum.asns_selected = asns.len();
    tracing::debug!("plan: grouped by AS in {:.2} s", t0.elapsed().as_secs_f64());
    let pb = crate::progress::bar(inp.progress, asns.len() as u64, "sampling ASNs");
    // ASes are independent: sample them on two threads, each over a contiguous half, and
    // concatenate in order (the result does not depend on the split).
    let sample_as = |asn: u32, out: &mut Vec<Target>, s: &mut PlanSummary| {
        let before = out.len();
        if let Some(pfx) = v4_by_as.get(&asn) {
            let mut pfx = pfx.clone();
            pfx.sort_unstable();
            // Whole prefixes inside an excluded range are dropped before sampling.
            let mut usable = Vec::with_capacity(pfx.len());
            for p in pfx.iter() {
                match block.covers(IpNet::V4(*p)) {
                    Some(r) => *s.excluded_prefixes.entry(r.as_str()).or_default() += 1,
                    None => usable.push(*p),
                }
            }
            s.prefixes += usable.len();
            let seed = keyed(inp.seed, &[asn as u128, 4]);
            let excluded = &mut s.excluded;
            // Per-address checks only where needed: a more-specific prefix of another AS, or a
            // blocked range, inside this prefix.
            let nested: std::collections::HashSet<Ipv4Net> = usable
                .iter()
                .filter(|p| routes.v4.children(p).any(|(q, _)| q != **p) || block.any_within(IpNet::V4(**p)))
                .copied()
                .collect();
            let mut got = sample_v4(&usable, inp.per_asn, seed, |a, net| {
                if !nested.contains(net) {
                    return true;
                }
                // The address must belong to this prefix, not a more-specific of another AS.
                if routes.v4.get_lpm(&Ipv4Net::from(a)).map(|(p, _)| p) != Some(*net) {
                    return false;
                }
                match block.check(IpAddr::V4(a)) {
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
        if let Some(c) = v6_by_as.get(&asn) {
            let mut got = sample_v6(c.clone(), inp.per_asn, keyed(inp.seed, &[asn as u128, 6]));
            let mut pf: Vec<Ipv6Net> = got.iter().map(|(_, n)| *n).collect();
            pf.sort_unstable();
            pf.dedup();
            s.prefixes += pf.len();
            s.targets_v6 += got.len();
            got.sort_unstable_by_key(|(a, _)| *a);
            out.extend(got.into_iter().map(|(a, n)| Target { ip: IpAddr::V6(a), asn, prefix: IpNet::V6(n) }));
        }
        if out.len() > before {
            s.asns_with_targets += 1;
        }
        pb.inc(1);
    };
    let half = asns.len() / 2;
    let (mut targets, s2, t2) = std::thread::scope(|sc| {
        let h = sc.spawn(|| {
            let (mut t, mut s) = (Vec::new(), PlanSummary::default());
            for a in &asns[half..] {
                sample_as(*a, &mut t, &mut s);
            }
            (s, t)
        });
        let mut t = Vec::new();
        for a in &asns[..half] {
            sample_as(*a, &mut t, &mut sum);
        }
        let (s2, t2) = h.join().expect("sampling thread");
        (t, s2, t2)
    });
    targets.extend(t2);
    sum.prefixes += s2.prefixes;
    sum.targets_v4 += s2.targets_v4;
    sum.targets_v6 += s2.targets_v6;
    sum.asns_with_targets += s2.asns_with_targets;
    for (k, v) in s2.excluded {
        *sum.excluded.entry(k).or_default() += v;
    }
    for (k, v) in s2.excluded_prefixes {
        *sum.excluded_prefixes.entry(k).or_default() += v;
    }
    pb.finish_and_clear();
    // Already in (asn, family, address) order: ASes ascending, v4 then v6, each sorted.
    tracing::debug!("plan: sampled in {:.2} s", t0.elapsed().as_secs_f64());
    debug_assert!(targets.windows(2).all(|w| (w[0].asn, w[0].ip.is_ipv6(), w[0].ip) < (w[1].asn, w[1].ip.is_ipv6(), w[1].ip)));
    Ok(Plan { targets, summary: sum, orgs, categories, inputs })
}

/// Write the plan as Parquet (zstd), with the seed, inputs and their SHA-256 in the metadata.
pub fn write(plan: &Plan, inp: &PlanInputs, out: &Path) -> Result<()> {
    let schema = schema::plan_schema();
    let mut kv = vec![
        ("port25.kind".to_string(), "plan".to_string()),
        ("port25.seed".into(), inp.seed.to_string()),
        ("port25.per_asn".into(), inp.per_asn.to_string()),
        ("port25.select".into(), format!("{:?}", inp.select)),
        ("port25.software".into(), crate::SOFTWARE.into()),
        ("port25.inputs".into(), serde_json::to_string(&plan.inputs.iter().map(|(f, h)| serde_json::json!({"file": f, "sha256": h})).collect::<Vec<_>>())?),
        ("port25.allow_reserved".into(), inp.allow_reserved.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(",")),
    ];
    kv.sort();
    // Addresses are unique: a dictionary would be built only to be abandoned. A plan is read
    // once per crawl, so the fastest zstd level serves.
    let props = WriterProperties::builder()
        .set_compression(parquet::basic::Compression::ZSTD(parquet::basic::ZstdLevel::try_new(1)?))
        .set_column_dictionary_enabled(parquet::schema::types::ColumnPath::from(schema::plan::IP), false)
        .set_key_value_metadata(Some(kv.into_iter().map(|(k, v)| parquet::file::metadata::KeyValue::new(k, v)).collect()))
        .build();
    let tmp = out.with_extension("inprogress");
    let f = std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let mut w = ArrowWriter::try_new(f, schema.clone(), Some(props))?;
    // Two stages on two cores: this thread builds Arrow batches (text formatting), the other
    // encodes and compresses them into Parquet.
    let (btx, brx) = std::sync::mpsc::sync_channel::<RecordBatch>(2);
    let writer = std::thread::spawn(move || -> Result<ArrowWriter<std::fs::File>> {
        for b in brx {
            w.write(&b)?;
        }
        Ok(w)
    });
    let mut org_cache: HashMap<u32, (String, String, Option<(String, String)>)> = HashMap::new();
    let mut text = String::with_capacity(64);
    for chunk in plan.targets.chunks(65_536) {
        let n = chunk.len();
        let mut ip = StringBuilder::with_capacity(n, n * 14);
        let mut pfx = StringBuilder::with_capacity(n, n * 16);
        let (mut oid, mut oname, mut cat, mut csrc) = (StringBuilder::new(), StringBuilder::new(), StringBuilder::new(), StringBuilder::new());
        let (mut ver, mut asn) = (UInt8Builder::with_capacity(n), UInt32Builder::with_capacity(n));
        for t in chunk {
            let (id, name, c) = org_cache.entry(t.asn).or_insert_with(|| {
                let (i, n) = plan.orgs.org_of(t.asn);
                (i, n, plan.categories.category(t.asn))
            });
            text.clear();
            datasets::schema::push_ip(&mut text, t.ip);
            ip.append_value(&text);
            text.clear();
            datasets::schema::push_ip(&mut text, t.prefix.network());
            text.push('/');
            text.push_str(itoa::Buffer::new().format(t.prefix.prefix_len()));
            pfx.append_value(&text);
            ver.append_value(if t.ip.is_ipv4() { 4u8 } else { 6 });
            asn.append_value(t.asn);
            oid.append_value(id.as_str());
            oname.append_value(name.as_str());
            cat.append_option(c.as_ref().map(|c| c.0.as_str()));
            csrc.append_option(c.as_ref().map(|c| c.1.as_str()));
        }
        let cols: Vec<ArrayRef> = vec![
            Arc::new(ip.finish()),
            Arc::new(ver.finish()),
            Arc::new(asn.finish()),
            Arc::new(pfx.finish()),
            Arc::new(oid.finish()),
            Arc::new(oname.finish()),
            Arc::new(cat.finish()),
            Arc::new(csrc.finish()),
        ];
        if btx.send(RecordBatch::try_new(schema.clone(), cols)?).is_err() {
            break; // the writer failed; its error is reported below
        }
    }
    drop(btx);
    let w = writer.join().map_err(|_| anyhow::anyhow!("plan writer thread panicked"))??;
    tracing::debug!("plan: batches encoded");
    w.close()?;
    std::fs::rename(&tmp, out).with_context(|| format!("renaming to {}", out.display()))?;
    Ok(())
}

pub fn print_summary(s: &PlanSummary, out: &Path) {
    println!("plan: {} ASNs selected, {} with targets, {} prefixes", s.asns_selected, s.asns_with_targets, s.prefixes);
    println!("      {} targets ({} IPv4, {} IPv6) -> {}", s.targets_v4 + s.targets_v6, s.targets_v4, s.targets_v6, out.display());
    if !s.excluded.is_empty() || !s.excluded_prefixes.is_empty() {
        let a: Vec<String> = s.excluded.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let p: Vec<String> = s.excluded_prefixes.iter().map(|(k, v)| format!("{k} {v}")).collect();
        println!("      excluded addresses: {}; whole prefixes: {}", if a.is_empty() { "none".into() } else { a.join(", ") }, if p.is_empty() { "none".into() } else { p.join(", ") });
    }
    if s.bad_lines > 0 {
        println!("      skipped {} malformed input lines", s.bad_lines);
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
