//! `analysis`: per-host port-25 states from a crawl, blocking per ASN and per provider, and
//! the published reports.
//!
//! Exit codes: 0 ok · 1 runtime failure · 2 bad input.

mod aggregate;
mod charts;
mod ban;
mod compare;
mod documented;
mod egress;
mod manifest;
mod place;
mod vantages;
mod report;
mod trend;
mod views;

use analysis::{infer, load};

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use datasets::categories::Categories;
use datasets::orgs::Orgs;
use datasets::routes::RouteTable;
use datasets::LoadOptions;
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(name = "analysis", version, about = "Infer per-host port-25 states and report blocking per ASN and provider")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args, Clone)]
struct Common {
    /// Crawl data: the crawler's --out, a directory or a bucket (`s3://bucket/prefix`).
    #[arg(long)]
    data: PathBuf,
    /// With a bucket: the local copy the analysis reads, kept in step with the bucket (only
    /// the crawls a command covers are fetched; default /var/tmp/port25-cache/BUCKET/PREFIX).
    #[arg(long)]
    cache: Option<PathBuf>,
    /// An S3-compatible endpoint (default: AWS_ENDPOINT_URL, else AWS); credentials from the
    /// environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) only.
    #[arg(long)]
    s3_endpoint: Option<String>,
    /// Routing data, to map ICMP responders to ASes (same formats as `crawler plan`).
    #[arg(long, required = true, num_args = 1..)]
    routes: Vec<PathBuf>,
    /// CAIDA AS2Org: a provider is an organization (its sibling ASes together).
    #[arg(long, required = true, num_args = 1..)]
    orgs: Vec<PathBuf>,
    #[arg(long, num_args = 1..)]
    categories: Vec<PathBuf>,
    /// hosting or all.
    #[arg(long, default_value = "all")]
    select: String,
    #[arg(long, default_value_t = 30)]
    min_informative: u64,
    #[arg(long, default_value_t = 0.9)]
    block_lower: f64,
    #[arg(long, default_value_t = 0.1)]
    open_upper: f64,
    /// The reports' directory, or a bucket prefix (written locally, then uploaded).
    #[arg(long)]
    out: PathBuf,
    /// Print nothing but errors.
    #[arg(long)]
    quiet: bool,
    /// Report crawls that are incomplete (interrupted, a shard missing, too many sends or
    /// replies lost) anyway, marked as such, instead of refusing them.
    #[arg(long)]
    allow_incomplete: bool,
    /// Largest share of failed sends a complete crawl may have.
    #[arg(long, default_value_t = 0.001)]
    max_send_errors: f64,
    /// Largest share of replies the receive ring may have dropped in a complete crawl.
    #[arg(long, default_value_t = 0.001)]
    max_receive_drops: f64,
    /// Hosts held in memory at once (~140 bytes each): a crawl with more is split into hash
    /// partitions in temporary files, folded one at a time.
    #[arg(long, default_value_t = load::PARTITION_HOSTS)]
    partition_hosts: u64,
    /// Where the partitions' temporary files go (default: the --out directory); they are
    /// removed when the crawl is done.
    #[arg(long)]
    tmp: Option<PathBuf>,
}

impl Common {
    /// The crawl's completeness from its manifests; an incomplete crawl is an error (exit 2)
    /// unless `--allow-incomplete`.
    fn completeness(&self, cr: &load::Crawl) -> Result<manifest::Completeness> {
        let limits = manifest::Limits { max_send_error_share: self.max_send_errors, max_receive_drop_share: self.max_receive_drops };
        let c = manifest::check(&manifest::find(&cr.dirs), limits)?;
        if !c.problems.is_empty() && !self.allow_incomplete {
            let dir = cr.dirs.first().cloned().unwrap_or_default();
            return Err(datasets::DatasetError::file(&dir, format!("crawl {} is incomplete: {} (--allow-incomplete reports it anyway, marked as such)", cr.id, c.problems.join("; "))).into());
        }
        Ok(c)
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Report one crawl (and the trend over all crawls in --data).
    Report {
        #[command(flatten)]
        c: Common,
        /// Crawl id, or `latest`.
        #[arg(long, default_value = "latest")]
        crawl: String,
        /// Skip the across-crawls section.
        #[arg(long)]
        no_trend: bool,
        /// Output directory of `crawler egress` runs (repeatable): outbound from vantages
        /// inside providers, reported beside the crawl's inbound and reflection results.
        #[arg(long)]
        egress: Vec<PathBuf>,
        /// With several vantages on the crawl date: the one whose tables the report shows
        /// (default: the one with the most hosts); every vantage is compared either way.
        #[arg(long)]
        vantage: Option<String>,
        /// Providers' documented port-25 policies (CSV, `datasets/policies/` layout; repeatable),
        /// shown beside the measurements and compared with them — never used by the verdicts.
        /// Default: the dataset shipped with this build (`datasets/policies/documented-policies.csv`).
        #[arg(long, conflicts_with = "no_policies")]
        policies: Vec<PathBuf>,
        /// Leave documented policies out of the report.
        #[arg(long)]
        no_policies: bool,
    },
    /// One row per provider per crawl, and the verdict changes between crawls.
    Trend {
        #[command(flatten)]
        c: Common,
    },
}

fn main() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PORT25_LOG").unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).init();
    if let Err(e) = run(Cli::parse().cmd) {
        eprintln!("analysis: error: {e:#}");
        let bad_input = e.chain().any(|c| c.downcast_ref::<datasets::DatasetError>().is_some());
        std::process::exit(if bad_input { 2 } else { 1 });
    }
}

struct Inputs {
    routes: RouteTable,
    orgs: Orgs,
    siblings: aggregate::Siblings,
    categories: Categories,
}

fn inputs(c: &Common) -> Result<Inputs> {
    let o = LoadOptions::default();
    let mut routes = RouteTable::default();
    for f in &c.routes {
        routes.load(f, None, o)?;
    }
    let mut orgs = Orgs::default();
    for f in &c.orgs {
        orgs.load(f, o)?;
    }
    let mut categories = Categories::default();
    for f in &c.categories {
        categories.load(f, o)?;
    }
    if c.select != "all" && c.select != "hosting" {
        anyhow::bail!("--select must be `hosting` or `all`");
    }
    if c.select == "hosting" && c.categories.is_empty() {
        anyhow::bail!("--select hosting needs --categories");
    }
    Ok(Inputs { siblings: aggregate::Siblings::of_orgs(&orgs), routes, orgs, categories })
}

fn thresholds(c: &Common) -> aggregate::Thresholds {
    aggregate::Thresholds { min_informative: c.min_informative, block_lower: c.block_lower, open_upper: c.open_upper, ..Default::default() }
}

/// One crawl analysed: what its scan saw, its provider and AS rows, and what the vantage's own
/// trouble withheld (in words). No host state is kept: hosts went to the tallies, the ban test
/// and (when asked) `hosts.parquet` as the scan handed them out.
struct Analysed {
    scanned: load::Scanned,
    providers: Vec<aggregate::Row>,
    asns: Vec<aggregate::Row>,
    withheld: Vec<String>,
}

/// Infer and aggregate one crawl (one vantage's), writing its per-host states to `hosts_out`.
fn analyse(crawl: &load::Crawl, inp: &Inputs, c: &Common, comp: &manifest::Completeness, hosts_out: Option<&Path>) -> Result<Analysed> {
    let t0 = std::time::Instant::now();
    let hosting = c.select == "hosting";
    let keep = |asn: u32| !hosting || inp.categories.is(asn, "hosting");
    let opts = load::ScanOptions { tmp: c.tmp.clone().unwrap_or_else(|| c.out.clone()), partition_hosts: c.partition_hosts, hosts_hint: (comp.targets > 0).then_some(comp.targets) };
    let mut evidence = ban::Evidence::default();
    let mut tally = aggregate::Tally::new(&inp.orgs, &inp.routes, &keep);
    let mut writer = hosts_out.map(report::HostsWriter::create).transpose()?;
    let mut any_reply = false;
    let scanned = load::scan(&crawl.files, &opts, &mut |strings, addr, h| {
        any_reply |= h.last_reply > 0;
        if keep(h.asn) {
            evidence.add(h);
        }
        tally.add(addr, h);
        if let Some(w) = writer.as_mut() {
            w.push(strings, addr, h)?;
        }
        Ok(())
    })
    .with_context(|| format!("crawl {}", crawl.id))?;
    if let Some(w) = writer {
        w.finish(&scanned.strings)?;
    }
    tracing::debug!("scanned {} rows, {} hosts in {:.2} s ({} partition(s), {} bytes spilled)", scanned.rows, scanned.hosts, t0.elapsed().as_secs_f64(), scanned.partitions, scanned.spilled_bytes);
    // Bans first: an AS banned on its own stays out of its organization's tallies — tallied
    // again without it (a second pass over the crawl, only when a ban calls for it).
    let bans = evidence.detect(&|a| inp.orgs.org_of(a).0);
    tracing::debug!("ban test done at {:.2} s", t0.elapsed().as_secs_f64());
    let affected = tally.affected(&bans);
    let (by_as, mut by_org) = tally.finish();
    tracing::debug!("tallies done at {:.2} s", t0.elapsed().as_secs_f64());
    if !affected.is_empty() {
        let mut redo = aggregate::Tally::redo(&inp.orgs, &inp.routes, &keep, &bans, affected.clone());
        load::scan(&crawl.files, &opts, &mut |_, addr, h| {
            redo.add(addr, h);
            Ok(())
        })
        .with_context(|| format!("crawl {}", crawl.id))?;
        aggregate::Tally::replace(redo.finish().1, &affected, &mut by_org);
    }
    if scanned.hosts > 0 && !any_reply {
        // No ban found is then no evidence of none: say so rather than stay silent.
        eprintln!("analysis: warning: no reply times in the crawl from {} (no `received_at`, or no answers at all): the scan-ban test could not run", scanned.vantage);
    }
    let th = thresholds(c);
    let cx = aggregate::Context { routes: &inp.routes, orgs: &inp.orgs, siblings: &inp.siblings, categories: &inp.categories, strings: &scanned.strings, th: &th, bans: &bans, vantage: &scanned.vantage };
    let (mut p, mut a) = aggregate::rows(&by_as, &by_org, &cx);
    let mut notes: Vec<String> = bans.outages.iter().map(|o| o.evidence()).collect();
    notes.extend(aggregate::withhold_blind_reflection(&mut p, &mut a, &th));
    tracing::debug!("analysed in {:.2} s", t0.elapsed().as_secs_f64());
    Ok(Analysed { scanned, providers: p, asns: a, withheld: notes })
}

/// The egress runs: vantages placed in providers, their provider rows appended to
/// `providers` (`method = egress`), and what the report says about them.
fn egress_from(dirs: &[PathBuf], inp: &Inputs, c: &Common, strings: &[String], providers: &mut Vec<aggregate::Row>) -> Result<(report::EgressView, report::EgressMeta)> {
    let attempts = egress::load(dirs)?;
    let th = thresholds(c);
    let bans = ban::Findings::default();
    let cx = aggregate::Context { routes: &inp.routes, orgs: &inp.orgs, siblings: &inp.siblings, categories: &inp.categories, strings, th: &th, bans: &bans, vantage: "inside" };
    let hosting = c.select == "hosting";
    let keep = |asn: u32| !hosting || inp.categories.is(asn, "hosting");
    let (series, unmapped) = egress::series(&attempts, &cx, &keep);
    providers.extend(egress::provider_rows(&series, &cx));
    let runs: std::collections::BTreeSet<(&str, &str)> = attempts.iter().map(|a| (a.vantage.as_str(), a.run_id.as_str())).collect();
    let vantages: std::collections::BTreeSet<&str> = attempts.iter().map(|a| a.vantage.as_str()).collect();
    let meta = report::EgressMeta {
        dirs: dirs.iter().map(|d| d.display().to_string()).collect(),
        runs: runs.len(),
        attempts: attempts.len(),
        vantages: vantages.len(),
        unmapped: unmapped.len(),
    };
    Ok((report::EgressView { series, unmapped }, meta))
}

/// Provider rows of crawls already analysed in this run, by (date, id): the trend does not
/// read them again.
type Done = std::collections::HashMap<(String, String), Vec<aggregate::Row>>;

/// The trend over every crawl in the data directory; incomplete ones are left out (unless
/// `--allow-incomplete`), with a note. Rows carry their vantage, so the trend compares each
/// provider with itself as seen from the same vantage. One crawl is scanned at a time, and
/// only its provider rows are kept.
fn trend_over(all: &[load::Crawl], inp: &Inputs, c: &Common, done: &Done) -> Result<trend::Trend> {
    let (mut crawls, mut rows) = (Vec::new(), Vec::new());
    for cr in all {
        let comp = match c.completeness(cr) {
            Ok(comp) => comp,
            Err(e) => {
                tracing::warn!("trend: {e:#}; left out");
                continue;
            }
        };
        let key = (cr.date.clone(), cr.id.clone());
        match done.get(&key) {
            Some(p) => rows.extend(trend::Trend::rows_of(&key, p)),
            None => rows.extend(trend::Trend::rows_of(&key, &analyse(cr, inp, c, &comp, None).with_context(|| format!("crawl {}", cr.id))?.providers)),
        }
        crawls.push(key);
    }
    Ok(trend::Trend::from_rows(crawls, rows))
}

/// What `report` found for the crawls of one date: the primary vantage's crawl and analysis,
/// the other vantages' provider rows, and every vantage's meta.
struct Reported {
    primary: load::Crawl,
    main: Analysed,
    others: Vec<(String, Vec<aggregate::Row>)>,
    metas: Vec<report::VantageMeta>,
    /// Every crawl's provider rows, for the trend.
    done: Done,
}

/// Analyse each crawl (one per vantage; of two crawls from one vantage the later wins). Each
/// writes its per-host states as it is scanned: straight to `hosts.parquet` when it is the
/// only one, else to a candidate file, and the primary vantage's becomes `hosts.parquet`.
fn report_vantages(c: &Common, inp: &Inputs, picked: Vec<load::Crawl>, completeness: Vec<manifest::Completeness>, want: Option<&str>) -> Result<Reported> {
    let single = picked.len() == 1;
    let hosts_file = c.out.join("hosts.parquet");
    let candidates = if single { None } else { Some(analysis::spill::TempDir::new(c.tmp.as_deref().unwrap_or(&c.out))?) };
    let mut best: Option<(load::Crawl, Analysed, PathBuf)> = None;
    let mut others: Vec<(String, Vec<aggregate::Row>)> = Vec::new();
    let mut metas: Vec<report::VantageMeta> = Vec::new();
    let mut done = Done::new();
    for (k, (cr, comp)) in picked.into_iter().zip(completeness).enumerate() {
        let out = match &candidates {
            None => hosts_file.clone(),
            Some(d) => d.path().join(format!("hosts-{k}.parquet")),
        };
        let a = analyse(&cr, inp, c, &comp, Some(&out)).with_context(|| format!("crawl {}", cr.id))?;
        done.insert((cr.date.clone(), cr.id.clone()), a.providers.clone());
        let vantage = a.scanned.vantage.clone();
        let meta = report::VantageMeta { vantage: vantage.clone(), crawl_id: cr.id.clone(), rows: a.scanned.rows, hosts: a.scanned.hosts, completeness: comp, withheld: a.withheld.clone() };
        // A later crawl from the same vantage on the same date replaces the earlier one.
        metas.retain(|m| m.vantage != meta.vantage);
        others.retain(|(v, _)| *v != meta.vantage);
        if best.as_ref().is_some_and(|b| b.1.scanned.vantage == meta.vantage) {
            best = None;
        }
        metas.push(meta);
        let better = match &best {
            None => true,
            Some(_) if want.is_some() => single || want == Some(vantage.as_str()),
            Some(b) => (a.scanned.hosts, std::cmp::Reverse(&vantage)) > (b.1.scanned.hosts, std::cmp::Reverse(&b.1.scanned.vantage)),
        };
        if better {
            if let Some(b) = best.take() {
                others.push((b.1.scanned.vantage.clone(), b.1.providers));
            }
            best = Some((cr, a, out));
        } else {
            others.push((vantage, a.providers));
        }
    }
    let Some((primary, main, out)) = best else {
        anyhow::bail!("no crawl to report");
    };
    if let Some(w) = want {
        if main.scanned.vantage != w {
            let seen: Vec<&str> = metas.iter().map(|m| m.vantage.as_str()).collect();
            return Err(datasets::DatasetError::file(&c.data, format!("no crawl from vantage {w} on {} (vantages: {})", primary.date, seen.join(", "))).into());
        }
    }
    if out != hosts_file {
        publish_candidate(&out, &hosts_file)?;
    }
    drop(candidates);
    // The primary vantage first, the others by name.
    others.sort_by(|a, b| a.0.cmp(&b.0));
    metas.sort_by_key(|m| (m.vantage != main.scanned.vantage, m.vantage.clone()));
    Ok(Reported { primary, main, others, metas, done })
}

/// The primary vantage's candidate `hosts.parquet` into place: renamed (its directory is under
/// the report's), or copied when `--tmp` is on another file system.
fn publish_candidate(from: &Path, to: &Path) -> Result<()> {
    if std::fs::rename(from, to).is_ok() {
        return datasets::publish::sync_dir(to).with_context(|| format!("publishing {}", to.display()));
    }
    let mut f = datasets::publish::AtomicFile::create(to)?;
    std::io::copy(&mut std::fs::File::open(from).with_context(|| format!("reading {}", from.display()))?, &mut f).with_context(|| format!("writing {}", to.display()))?;
    f.commit()?;
    Ok(())
}

/// The documented policies a report shows: the files given, else the shipped dataset.
fn load_policies(files: &[PathBuf], none: bool) -> Result<Option<datasets::policies::Policies>> {
    if none {
        return Ok(None);
    }
    if files.is_empty() {
        let p = datasets::policies::Policies::load_from(Path::new("documented-policies.csv (shipped)"), documented::SHIPPED.as_bytes())?;
        return Ok(Some(p));
    }
    let mut all = datasets::policies::Policies::default();
    for f in files {
        let p = datasets::policies::Policies::load(f)?;
        all.rows.extend(p.rows);
        all.path = if all.path.as_os_str().is_empty() { p.path } else { PathBuf::from(format!("{}, {}", all.path.display(), p.path.display())) };
    }
    Ok(Some(all))
}

/// A report directory that exists as something else is bad input (exit 2), said before any
/// input is read, and left alone.
fn check_out(p: &Path) -> Result<()> {
    if p.exists() && !p.is_dir() {
        return Err(datasets::DatasetError::file(p, "--out exists and is not a directory").into());
    }
    Ok(())
}

fn ensure_dir(p: &Path) -> Result<()> {
    check_out(p)?;
    std::fs::create_dir_all(p).with_context(|| format!("creating {}", p.display()))
}

fn run(cmd: Cmd) -> Result<()> {
    match cmd {
        Cmd::Report { c, crawl, no_trend, egress, vantage, policies, no_policies } => {
            // A bucket's data is read from a local copy; reports bound for one are staged.
            let out = place::Out::new(&c.out, &c.s3_endpoint)?;
            let need = if no_trend { place::Need::Pick(&crawl) } else { place::Need::All };
            let data = place::crawls(&c.data, c.cache.as_deref(), &c.s3_endpoint, need, c.quiet)?;
            let egress = egress.iter().map(|e| place::egress(e, c.cache.as_deref(), &c.s3_endpoint, c.quiet)).collect::<Result<Vec<_>>>()?;
            let c = Common { data, out: out.local.clone(), ..c };
            check_out(&c.out)?;
            let inp = inputs(&c)?;
            let policies = load_policies(&policies, no_policies)?;
            let policy_warnings = policies.as_ref().map(|p| p.check_against(&inp.orgs)).unwrap_or_default();
            let all = load::crawls(&c.data)?;
            let picked = load::pick(&all, &crawl)?;
            let mut completeness = Vec::new();
            for cr in &picked {
                completeness.push(c.completeness(cr)?);
            }
            ensure_dir(&c.out)?;
            let r = report_vantages(&c, &inp, picked, completeness, vantage.as_deref())?;
            let Reported { primary, main, others, metas, done } = r;
            let Analysed { scanned: hosts, mut providers, asns, .. } = main;
            let trend = if !no_trend && all.len() > 1 { Some(trend_over(&all, &inp, &c, &done)?) } else { None };
            drop(done);
            let (egress_view, egress_meta) = if egress.is_empty() { (None, None) } else { egress_from(&egress, &inp, &c, &hosts.strings, &mut providers).map(|(v, m)| (Some(v), Some(m)))? };
            let vantages_view = (!others.is_empty()).then(|| {
                let mut per = vec![(hosts.vantage.clone(), providers.clone())];
                per.extend(others.iter().map(|(v, rows)| (v.clone(), rows.clone())));
                let cmp = vantages::compare(&per);
                vantages::annotate(&mut providers, &cmp);
                let mut rows: Vec<aggregate::Row> = others.into_iter().flat_map(|(_, r)| r).collect();
                vantages::annotate(&mut rows, &cmp);
                report::VantagesView { rows, cmp }
            });
            let documented = policies.as_ref().map(|p| documented::compare(p, &mut providers));
            let pm = metas.iter().find(|m| m.vantage == hosts.vantage).cloned().expect("the primary vantage has a meta");
            let meta = report::Meta {
                crawl_id: primary.id.clone(),
                crawl_date: primary.date.clone(),
                vantage: hosts.vantage.clone(),
                rows: hosts.rows,
                hosts: hosts.hosts,
                measured: if egress_view.is_some() { report::MEASURED_WITH_EGRESS } else { report::MEASURED },
                thresholds: thresholds(&c),
                selection: c.select.clone(),
                software: concat!("port25-analysis/", env!("CARGO_PKG_VERSION")),
                completeness: pm.completeness,
                withheld: pm.withheld,
                policies: policies.as_ref().map(|p| report::PoliciesMeta { file: p.path.display().to_string(), rows: p.len(), providers: p.providers().len(), warnings: policy_warnings.clone() }),
                egress: egress_meta,
                vantages: metas,
            };
            report::write_reports(&c.out, &meta, &providers, &asns, trend.as_ref(), egress_view.as_ref(), vantages_view.as_ref(), documented.as_deref())?;
            let shown = out.describe();
            out.publish()?;
            if !c.quiet {
                println!("crawl {} ({}), vantage {}: {} rows, {} hosts — inbound 25 (SYN scan) beside outbound 25, 465, 587 (source-port reflection: stateless egress filters only)", meta.crawl_id, meta.crawl_date, meta.vantage, hosts.rows, hosts.hosts);
                println!("samples: {}", meta.completeness.sampling_line());
                if let Some(e) = &meta.egress {
                    println!("egress: {} runs, {} attempts from {} vantages inside providers ({} not placed in a provider) — outbound from inside: n counts vantages", e.runs, e.attempts, e.vantages, e.unmapped);
                }
                report::print_table(&providers);
                for r in providers.iter().filter(|r| r.verdict == "vantage-banned" && r.port == 25 && r.direction == "inbound") {
                    println!("vantage-banned: {} ({}): {}", r.provider, r.family, r.evidence);
                }
                for w in &meta.withheld {
                    println!("WITHHELD: {w}");
                }
                for w in &policy_warnings {
                    println!("documented policies: warning: {w}");
                }
                for d in documented.iter().flatten().filter(|d| d.agreement == "disagree") {
                    println!("documented vs measured: {} ({}, {} {}): documented {} — {}", d.provider, d.family, d.direction, d.port, d.documented, d.reading);
                }
                if let Some(v) = &vantages_view {
                    println!("vantages: {}", meta.vantages.iter().map(|m| m.vantage.as_str()).collect::<Vec<_>>().join(", "));
                    for x in v.cmp.iter().filter(|x| x.port == 25 && x.agreement != "agree") {
                        println!("vantages {}: {} ({}, {}): {}{}", x.agreement, x.provider, x.family, x.direction, x.verdicts, if x.note.is_empty() { String::new() } else { format!(" — {}", x.note) });
                    }
                }
                for m in &meta.vantages {
                    println!("data ({}): {}", m.vantage, m.completeness.line());
                    for p in &m.completeness.problems {
                        println!("INCOMPLETE CRAWL ({}): {p}", m.vantage);
                    }
                }
                println!("reports in {shown}");
            }
        }
        Cmd::Trend { c } => {
            let out = place::Out::new(&c.out, &c.s3_endpoint)?;
            let data = place::crawls(&c.data, c.cache.as_deref(), &c.s3_endpoint, place::Need::All, c.quiet)?;
            let c = Common { data, out: out.local.clone(), ..c };
            check_out(&c.out)?;
            let inp = inputs(&c)?;
            let all = load::crawls(&c.data)?;
            if all.is_empty() {
                anyhow::bail!("no crawls under {}", c.data.display());
            }
            let t = trend_over(&all, &inp, &c, &Default::default())?;
            ensure_dir(&c.out)?;
            report::write_csv(&c.out.join("trend.csv"), &t.rows)?;
            datasets::publish::write_atomic(&c.out.join("changes.json"), serde_json::to_string_pretty(&t.changes)?)?;
            out.publish()?;
            if !c.quiet {
                println!("{} crawls, {} provider rows", t.crawls.len(), t.rows.len());
                for ch in &t.changes {
                    println!("{} ({}): {}", ch.provider, ch.family, ch.text);
                }
                if t.changes.is_empty() {
                    println!("no verdict changes between consecutive crawls");
                }
            }
        }
    }
    Ok(())
}
