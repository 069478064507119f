//! Outbound blocking seen from inside providers: the attempts of `crawler egress` runs
//! (`--egress DIR`, repeatable), each vantage mapped to its provider by its public address —
//! the `you=` the sink greeted it with on a control port, which is what the provider's routing
//! sees — through the routing table (longest prefix → origin AS) and AS2Org (AS →
//! organization). Per vantage, family and port the attempts make one series verdict; per
//! provider, family and mail port the vantages' verdicts make one row (`method = egress`).

use crate::aggregate::{wilson, Context, Row};
use anyhow::{Context as _, Result};
use arrow_array::{Array, BooleanArray, RecordBatch, StringArray, UInt16Array, UInt8Array};
use datasets::egress::{egress_col as col, outcome, verdict as v};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

/// The mail ports provider rows are made for (the vantage table keeps every port dialled).
pub const MAIL_PORTS: [u16; 3] = [25, 465, 587];

/// One attempt, as much of it as the analysis needs.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub run_id: String,
    pub vantage: String,
    /// The sink address dialled.
    pub sink: String,
    pub family: u8,
    pub port: u16,
    pub outcome: String,
    pub verdict: String,
    pub icmp: Option<(u8, u8)>,
    pub responder: Option<String>,
    /// The address the sink saw, when it is this vantage's public address (`you_matches`).
    pub public: Option<IpAddr>,
}

fn parquet_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let rd = std::fs::read_dir(dir).with_context(|| format!("reading egress directory {}", dir.display()))?;
    for e in rd {
        let p = e?.path();
        if p.is_dir() {
            parquet_files(&p, out)?;
        } else if p.extension().is_some_and(|x| x == "parquet") && !p.file_name().unwrap().to_string_lossy().starts_with('.') {
            out.push(p);
        }
    }
    Ok(())
}

/// Every attempt under the directories (files of `crawler egress`, any layout below them).
pub fn load(dirs: &[PathBuf]) -> Result<Vec<Attempt>> {
    let mut out = Vec::new();
    for d in dirs {
        let mut files = Vec::new();
        parquet_files(d, &mut files)?;
        if files.is_empty() {
            return Err(datasets::DatasetError::file(d, "no egress Parquet files (expected crawler egress's OUT/egress_date=…/vantage=…/*.parquet)").into());
        }
        files.sort();
        for f in files {
            read_file(&f, &mut out).with_context(|| format!("reading {}", f.display()))?;
        }
    }
    Ok(out)
}

fn read_file(f: &Path, out: &mut Vec<Attempt>) -> Result<()> {
    // Footer checked before anything is read by it; decoder panics on crafted pages become
    // errors naming the file (as for crawl files).
    let mut reader = datasets::schema::open_parquet(f, 65_536)?;
    while let Some(b) = datasets::schema::guard(f, || reader.next())? {
        let b = b.map_err(|e| datasets::DatasetError::file(f, format!("corrupt egress file: {e}")))?;
        fold(f, &b, out)?;
    }
    Ok(())
}

fn fold(f: &Path, b: &RecordBatch, out: &mut Vec<Attempt>) -> Result<()> {
    fn typed<'a, T: 'static>(f: &Path, b: &'a RecordBatch, name: &str) -> Result<&'a T, datasets::DatasetError> {
        let c = b.column_by_name(name).ok_or_else(|| datasets::DatasetError::file(f, format!("not an egress table: no `{name}` column")))?;
        c.as_any().downcast_ref::<T>().ok_or_else(|| datasets::DatasetError::file(f, format!("not an egress table: `{name}` has type {}", c.data_type())))
    }
    let text = |n: &str| typed::<StringArray>(f, b, n);
    let (run, vant, outc, verdict, resp, you) = (text(col::RUN_ID)?, text(col::VANTAGE)?, text(col::OUTCOME)?, text(col::VERDICT)?, text(col::ICMP_RESPONDER)?, text(col::YOU_ADDR)?);
    let sink = text(col::SINK)?;
    let (ver, ity, icode) = (typed::<UInt8Array>(f, b, col::IP_VERSION)?, typed::<UInt8Array>(f, b, col::ICMP_TYPE)?, typed::<UInt8Array>(f, b, col::ICMP_CODE)?);
    let (port, matches) = (typed::<UInt16Array>(f, b, col::PORT)?, typed::<BooleanArray>(f, b, col::YOU_MATCHES)?);
    let s = |a: &StringArray, i: usize| (!a.is_null(i)).then(|| a.value(i).to_string());
    for i in 0..b.num_rows() {
        let public = (!matches.is_null(i) && matches.value(i)).then(|| s(you, i)).flatten().and_then(|y| y.parse::<SocketAddr>().ok()).map(|a| a.ip().to_canonical());
        out.push(Attempt {
            run_id: s(run, i).unwrap_or_default(),
            vantage: s(vant, i).unwrap_or_default(),
            sink: s(sink, i).unwrap_or_default(),
            family: ver.value(i),
            port: port.value(i),
            outcome: s(outc, i).unwrap_or_default(),
            verdict: s(verdict, i).unwrap_or_default(),
            icmp: (!ity.is_null(i) && !icode.is_null(i)).then(|| (ity.value(i), icode.value(i))),
            responder: s(resp, i),
            public,
        });
    }
    Ok(())
}

/// One vantage's series on one (family, port), mapped to its provider.
#[derive(Debug, Clone, Serialize)]
pub struct Series {
    pub vantage: String,
    pub family: &'static str,
    pub address: String,
    pub asn: u32,
    pub prefix: String,
    pub org_id: String,
    pub provider: String,
    pub port: u16,
    pub attempts: u32,
    /// `open`, `blocked`, `throttled`, `intercepted`, `stripped`, `tls-intercepted`,
    /// `tls-failed` when at least three quarters of the attempts that told something agree
    /// (throttled: the first connected, later ones failed while the controls worked); `mixed`
    /// otherwise; `insufficient` below [`MIN_ATTEMPTS`]; `sink-unreachable` when no port of
    /// any sink address connected; `none` when nothing was learned (no route, local errors,
    /// outages only).
    pub verdict: &'static str,
    pub mechanism: &'static str,
    /// Attempts per verdict, e.g. `open=2;throttled=2`.
    pub attempt_verdicts: String,
    pub runs: String,
    /// The sink addresses the verdict rests on, and those unreachable from this vantage.
    pub sinks: String,
    pub sinks_unreachable: String,
    /// What the verdict rests on, in words.
    pub evidence: String,
    #[serde(skip)]
    pub responders: Vec<String>,
}

/// A vantage (per family) the analysis could not place in a provider, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Unmapped {
    pub vantage: String,
    pub family: &'static str,
    pub reason: String,
}

/// A series verdict needs at least this many attempts that told something about the port.
pub const MIN_ATTEMPTS: usize = 3;
/// ... and this share of them agreeing.
pub const AGREE: f64 = 0.75;

/// Attempts that say nothing about the port: no route, local errors, outages (the controls
/// failed too), and sinks unreachable on every port.
fn telling(verdict: &str) -> bool {
    !matches!(verdict, v::NO_ROUTE | v::ERROR | v::OUTAGE | v::SINK_UNREACHABLE)
}

/// What a series of attempts amounts to: most attempts must agree, a throttle is its pattern
/// (the first connected, later ones failed while the control ports still connected), and too
/// few telling attempts are `insufficient`. One odd attempt never decides.
pub fn series_verdict(verdicts: &[&str]) -> &'static str {
    let told: Vec<&str> = verdicts.iter().copied().filter(|x| telling(x)).collect();
    if told.is_empty() {
        return if verdicts.contains(&v::SINK_UNREACHABLE) { v::SINK_UNREACHABLE } else { "none" };
    }
    if told.len() < MIN_ATTEMPTS {
        return "insufficient";
    }
    let count = |x: &str| told.iter().filter(|t| **t == x).count();
    if count(v::THROTTLED) > 0 && count(v::OPEN) > 0 && count(v::OPEN) + count(v::THROTTLED) == told.len() {
        return v::THROTTLED;
    }
    const ALL: [&str; 8] = [v::OPEN, v::BLOCKED, v::INTERCEPTED, v::STRIPPED, v::TLS_INTERCEPTED, v::TLS_FAILED, v::THROTTLED, v::OUTAGE];
    let (top, n) = ALL.iter().map(|x| (*x, count(x))).max_by_key(|x| x.1).unwrap();
    if n as f64 >= AGREE * told.len() as f64 { top } else { "mixed" }
}

/// How a series was stopped or altered, in the report's mechanism words.
fn mechanism(verdict: &str, blocked: &[&Attempt]) -> &'static str {
    match verdict {
        v::THROTTLED => "rate-limit",
        v::INTERCEPTED => "smtp-proxy",
        v::STRIPPED => "starttls-stripped",
        v::TLS_INTERCEPTED => "tls-interception",
        v::TLS_FAILED => "tls-failed",
        v::BLOCKED => {
            let mut n: BTreeMap<&'static str, usize> = BTreeMap::new();
            for a in blocked {
                let m = match (a.outcome.as_str(), a.icmp) {
                    (outcome::TIMEOUT, _) => "silent-drop",
                    (outcome::REFUSED, _) => "rst",
                    (_, Some((3, 9 | 10 | 13))) | (_, Some((1, 1 | 5 | 6))) if a.outcome == outcome::ICMP => "icmp-prohibited",
                    (_, Some((3, 3))) | (_, Some((1, 4))) if a.outcome == outcome::ICMP => "icmp-port-unreachable",
                    _ => "other",
                };
                *n.entry(m).or_default() += 1;
            }
            n.into_iter().max_by_key(|(_, c)| *c).map_or("", |(m, _)| m)
        }
        _ => "",
    }
}

type Key = (String, u8, String); // (vantage, family, org id)

/// Each vantage's public address per run and family → its provider; attempts grouped into
/// series by (vantage, family, provider, port).
pub fn series(attempts: &[Attempt], cx: &Context, keep: &dyn Fn(u32) -> bool) -> (Vec<Series>, Vec<Unmapped>) {
    let mut public: BTreeMap<(&str, &str, u8), IpAddr> = BTreeMap::new();
    for a in attempts {
        if let Some(ip) = a.public {
            public.entry((&a.vantage, &a.run_id, a.family)).or_insert(ip);
        }
    }
    let mut groups: BTreeMap<(Key, u16), (IpAddr, u32, String, Vec<&Attempt>)> = BTreeMap::new();
    let mut unmapped: BTreeMap<(String, u8), String> = BTreeMap::new();
    for a in attempts {
        let Some(ip) = public.get(&(a.vantage.as_str(), a.run_id.as_str(), a.family)) else {
            unmapped.entry((a.vantage.clone(), a.family)).or_insert_with(|| "its public address is unknown (no control port reached the sink)".into());
            continue;
        };
        let Some((prefix, origin)) = cx.routes.lookup(*ip) else {
            unmapped.entry((a.vantage.clone(), a.family)).or_insert_with(|| format!("{ip} is not in the routing data"));
            continue;
        };
        if !keep(origin.asn) {
            continue;
        }
        let org = cx.orgs.org_of(origin.asn).0;
        let g = groups.entry(((a.vantage.clone(), a.family, org), a.port)).or_insert_with(|| (*ip, origin.asn, prefix.to_string(), Vec::new()));
        g.3.push(a);
    }
    let fam = |f: u8| if f == 6 { "ipv6" } else { "ipv4" };
    let rows = groups
        .into_iter()
        .map(|(((vantage, family, org_id), port), (ip, asn, prefix, list))| {
            let verdicts: Vec<&str> = list.iter().map(|a| a.verdict.as_str()).collect();
            let verdict = series_verdict(&verdicts);
            let blocked: Vec<&Attempt> = list.iter().copied().filter(|a| a.verdict == v::BLOCKED || a.verdict == v::THROTTLED).collect();
            let mut counts: BTreeMap<&str, u32> = BTreeMap::new();
            for x in &verdicts {
                *counts.entry(x).or_default() += 1;
            }
            let runs: BTreeSet<&str> = list.iter().map(|a| a.run_id.as_str()).collect();
            let sinks: BTreeSet<&str> = list.iter().filter(|a| telling(&a.verdict)).map(|a| a.sink.as_str()).collect();
            let unreachable: BTreeSet<&str> = list.iter().filter(|a| a.verdict == v::SINK_UNREACHABLE).map(|a| a.sink.as_str()).collect();
            let told = verdicts.iter().filter(|x| telling(x)).count();
            let outages = verdicts.iter().filter(|x| **x == v::OUTAGE).count();
            let mut evidence = format!("{told} telling attempt(s) of {} in {} run(s) via sink {}", list.len(), runs.len(), if sinks.is_empty() { "–".to_string() } else { sinks.iter().copied().collect::<Vec<_>>().join(", ") });
            if outages > 0 {
                evidence.push_str(&format!("; {outages} in outages (the control ports failed in the same round) left out"));
            }
            if !unreachable.is_empty() {
                evidence.push_str(&format!("; sink {} unreachable on every port from here (address or path, not the port)", unreachable.iter().copied().collect::<Vec<_>>().join(", ")));
            }
            if verdict == "insufficient" {
                evidence.push_str(&format!("; fewer than {MIN_ATTEMPTS} telling attempts: no verdict"));
            }
            Series {
                vantage,
                family: fam(family),
                address: ip.to_string(),
                asn,
                prefix,
                provider: cx.orgs.org_of(asn).1,
                org_id,
                port,
                attempts: list.len() as u32,
                verdict,
                mechanism: mechanism(verdict, &blocked),
                attempt_verdicts: counts.iter().map(|(k, n)| format!("{k}={n}")).collect::<Vec<_>>().join(";"),
                runs: runs.into_iter().collect::<Vec<_>>().join(" "),
                sinks: sinks.into_iter().collect::<Vec<_>>().join(" "),
                sinks_unreachable: unreachable.into_iter().collect::<Vec<_>>().join(" "),
                evidence,
                responders: blocked.iter().filter_map(|a| a.responder.clone()).collect(),
            }
        })
        .collect();
    (rows, unmapped.into_iter().map(|((vantage, f), reason)| Unmapped { vantage, family: fam(f), reason }).collect())
}

/// The provider verdict of a series verdict (`blocked` attempts make a provider that `blocks`).
fn provider_word(series: &str) -> &'static str {
    match series {
        v::BLOCKED => "blocks",
        v::OPEN => "open",
        v::THROTTLED => "throttled",
        v::INTERCEPTED => "intercepted",
        v::STRIPPED => "stripped",
        v::TLS_INTERCEPTED => "tls-intercepted",
        v::TLS_FAILED => "tls-failed",
        _ => "mixed",
    }
}


/// ICMP responders inside the provider (or a sibling) → `in-provider`, else `upstream`.
fn location(s: &[&Series], org: &str, cx: &Context) -> String {
    let responders: Vec<IpAddr> = s.iter().flat_map(|x| x.responders.iter()).filter_map(|r| r.parse().ok()).collect();
    if responders.is_empty() {
        return "unknown".into();
    }
    let siblings: BTreeSet<u32> = cx.orgs.siblings(org).into_iter().chain(s.iter().map(|x| x.asn)).collect();
    let inside = responders.iter().filter(|ip| cx.routes.lookup(**ip).is_some_and(|(_, o)| siblings.contains(&o.asn))).count();
    if inside as f64 >= cx.th.dominant * responders.len() as f64 {
        "in-provider".into()
    } else if (responders.len() - inside) as f64 >= cx.th.dominant * responders.len() as f64 {
        "upstream".into()
    } else {
        "mixed".into()
    }
}

/// One row per provider, family and mail port: `hosts` = vantages that dialled it,
/// `informative` = those whose attempts told something, `filtered` = those not plainly open.
pub fn provider_rows(series: &[Series], cx: &Context) -> Vec<Row> {
    let mut groups: BTreeMap<(&str, &str, u16), Vec<&Series>> = BTreeMap::new();
    for s in series.iter().filter(|s| MAIL_PORTS.contains(&s.port)) {
        groups.entry((s.org_id.as_str(), s.family, s.port)).or_default().push(s);
    }
    groups.into_iter().map(|((org, family, port), list)| provider_row(org, family, port, &list, cx)).collect()
}

fn provider_row(org: &str, family: &'static str, port: u16, list: &[&Series], cx: &Context) -> Row {
    let told: Vec<&Series> = list.iter().copied().filter(|s| !matches!(s.verdict, "none" | "insufficient" | v::SINK_UNREACHABLE)).collect();
    let filtered: Vec<&Series> = told.iter().copied().filter(|s| s.verdict != v::OPEN).collect();
    let words: BTreeSet<&str> = told.iter().map(|s| provider_word(s.verdict)).collect();
    let all_unreachable = told.is_empty() && list.iter().any(|s| s.verdict == v::SINK_UNREACHABLE);
    let verdict = match words.len() {
        0 if all_unreachable => v::SINK_UNREACHABLE,
        0 => "insufficient",
        1 => words.into_iter().next().unwrap(),
        _ => "mixed",
    };
    let attempts: u32 = told.iter().map(|s| s.attempts).sum();
    let runs: BTreeSet<&str> = told.iter().flat_map(|s| s.runs.split(' ')).collect();
    let sinks: BTreeSet<&str> = told.iter().flat_map(|s| s.sinks.split(' ')).filter(|x| !x.is_empty()).collect();
    let unreachable: BTreeSet<&str> = list.iter().flat_map(|s| s.sinks_unreachable.split(' ')).filter(|x| !x.is_empty()).collect();
    let mut evidence = format!(
        "{} of {} vantage(s) inside the provider saw it filtered; {attempts} attempts in {} run(s) via sink {}",
        filtered.len(),
        told.len(),
        runs.len(),
        if sinks.is_empty() { "–".to_string() } else { sinks.iter().copied().collect::<Vec<_>>().join(", ") }
    );
    if !unreachable.is_empty() {
        evidence.push_str(&format!("; sink {} unreachable from some vantages (no verdict from it)", unreachable.iter().copied().collect::<Vec<_>>().join(", ")));
    }
    let short = list.iter().filter(|s| s.verdict == "insufficient").count();
    if short > 0 {
        evidence.push_str(&format!("; {short} vantage(s) with fewer than {MIN_ATTEMPTS} telling attempts left out"));
    }
    let mut mech: BTreeMap<&str, usize> = BTreeMap::new();
    for s in &filtered {
        *mech.entry(s.mechanism).or_default() += 1;
    }
    let mechanism = match mech.iter().max_by_key(|(_, n)| **n) {
        None => String::new(),
        Some((m, n)) if *n as f64 >= cx.th.dominant * filtered.len() as f64 => m.to_string(),
        Some(_) => "mixed".into(),
    };
    let mut states: BTreeMap<&str, u64> = BTreeMap::new();
    for s in list {
        *states.entry(s.verdict).or_default() += 1;
    }
    let asns: BTreeSet<u32> = list.iter().map(|s| s.asn).collect();
    let prefixes: BTreeSet<&str> = list.iter().map(|s| s.prefix.as_str()).collect();
    let (n, k) = (told.len() as u64, filtered.len() as u64);
    let (lo, hi) = wilson(k, n);
    Row {
        level: "provider",
        direction: "outbound",
        method: "egress",
        provider: list[0].provider.clone(),
        org_id: org.to_string(),
        asn: None,
        asns: asns.iter().map(|a| format!("AS{a}")).collect::<Vec<_>>().join(" "),
        category: asns.iter().find_map(|a| cx.categories.category(*a).map(|x| x.0)).unwrap_or_default(),
        family,
        port,
        hosts: list.len() as u64,
        informative: n,
        prefixes: prefixes.len() as u64,
        filtered: k,
        rate: (n > 0).then(|| k as f64 / n as f64),
        ci_low: (n > 0).then_some(lo),
        ci_high: (n > 0).then_some(hi),
        verdict,
        location: if k > 0 { location(&filtered, org, cx) } else { String::new() },
        mechanism,
        excluded_dead: 0,
        excluded_all_ports: 0,
        excluded_uninformative: list.len() as u64 - n,
        excluded_source_port: 0,
        excluded_rst_ambiguous: 0,
        states: states.iter().map(|(s, n)| format!("{s}={n}")).collect::<Vec<_>>().join(";"),
        evidence,
        banned_since: None,
        vantage: cx.vantage.to_string(),
        documented: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::Thresholds;
    use datasets::categories::Categories;
    use datasets::orgs::Orgs;
    use datasets::routes::{Origin, OriginKind, RouteTable};

    fn series_of(vantage: &str, asn: u32, verdict: &'static str, mechanism: &'static str, responders: &[&str]) -> Series {
        Series {
            vantage: vantage.into(),
            family: "ipv4",
            address: "192.0.2.1".into(),
            asn,
            prefix: format!("198.51.100.{}/29", asn % 250),
            org_id: "AS64500".into(),
            provider: "AS64500".into(),
            port: 25,
            attempts: 3,
            verdict,
            mechanism,
            attempt_verdicts: String::new(),
            runs: "r".into(),
            sinks: "192.0.2.10".into(),
            sinks_unreachable: String::new(),
            evidence: String::new(),
            responders: responders.iter().map(|r| r.to_string()).collect(),
        }
    }

    #[test]
    fn vantages_that_disagree_make_a_mixed_provider_and_icmp_places_the_filter() {
        let mut routes = RouteTable::default();
        let origin = |asn| Origin { asn, kind: OriginKind::Single, others: None, source_org: u32::MAX };
        routes.insert("203.0.113.0/24".parse().unwrap(), origin(64500));
        routes.insert("198.51.100.0/24".parse().unwrap(), origin(64999));
        let (orgs, categories, th) = (Orgs::default(), Categories::default(), Thresholds::default());
        let siblings = crate::aggregate::Siblings::of_orgs(&orgs);
        let cx = Context { routes: &routes, orgs: &orgs, siblings: &siblings, categories: &categories, strings: &[], th: &th, bans: &Default::default(), vantage: "inside" };
        let same = [series_of("a", 64500, "blocked", "icmp-prohibited", &["203.0.113.1"]), series_of("b", 64500, "blocked", "icmp-prohibited", &["203.0.113.1"])];
        let r = &provider_rows(&same, &cx)[0];
        assert_eq!((r.verdict, r.mechanism.as_str(), r.location.as_str(), r.informative, r.filtered), ("blocks", "icmp-prohibited", "in-provider", 2, 2));
        assert_eq!((r.method, r.direction, r.states.as_str()), ("egress", "outbound", "blocked=2"));
        let upstream = [series_of("a", 64500, "blocked", "icmp-prohibited", &["198.51.100.9"])];
        assert_eq!(provider_rows(&upstream, &cx)[0].location, "upstream");
        let differ = [series_of("a", 64500, "blocked", "silent-drop", &[]), series_of("b", 64500, "open", "", &[]), series_of("c", 64500, "none", "", &[])];
        let r = &provider_rows(&differ, &cx)[0];
        assert_eq!((r.verdict, r.hosts, r.informative, r.filtered, r.excluded_uninformative), ("mixed", 3, 2, 1, 1));
        assert_eq!((r.mechanism.as_str(), r.location.as_str(), r.states.as_str()), ("silent-drop", "unknown", "blocked=1;none=1;open=1"));
        let nothing = [series_of("c", 64500, "none", "", &[])];
        assert_eq!(provider_rows(&nothing, &cx)[0].verdict, "insufficient");
    }

    #[test]
    fn a_series_needs_most_of_its_attempts_and_a_throttle_its_pattern() {
        assert_eq!(series_verdict(&["open", "open", "throttled", "throttled"]), "throttled");
        assert_eq!(series_verdict(&["blocked", "blocked", "blocked", "error"]), "blocked");
        // One odd attempt decides nothing (a load-balanced pool, a flaky middlebox).
        assert_eq!(series_verdict(&["open", "stripped", "open", "open"]), "open");
        assert_eq!(series_verdict(&["open", "stripped", "open", "stripped"]), "mixed");
        assert_eq!(series_verdict(&["tls-intercepted", "intercepted", "tls-intercepted", "tls-intercepted"]), "tls-intercepted");
        assert_eq!(series_verdict(&["blocked", "open", "open", "open", "blocked"]), "mixed", "blocked first, then open: not a throttle's order");
        // Outages are left out: what is left is open.
        assert_eq!(series_verdict(&["open", "outage", "open", "open"]), "open");
        assert_eq!(series_verdict(&["no-route", "error"]), "none");
        assert_eq!(series_verdict(&["sink-unreachable", "sink-unreachable"]), "sink-unreachable");
        assert_eq!(series_verdict(&["open", "open"]), "insufficient", "one or two attempts make no verdict");
    }
}
