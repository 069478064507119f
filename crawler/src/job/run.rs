//! `crawler run --config crawl.toml [--resume] [--shard I/N]`: plan + vantage self-check +
//! scan as one reproducible, resumable job writing into the crawl's partition.
//!
//! The partition holds the observation files and one manifest per shard; the plan is kept as
//! `OUT/_plans/DATE_ID.plan` (Parquet). A small state file beside the output remembers an unfinished crawl's id and date,
//! so `--resume` after a crash (even `kill -9`) continues the same crawl: complete files are
//! kept, their probes skipped, and only the rest is probed again.

use super::config::CrawlConfig;
use super::selfcheck;
use super::state::RunState;
use crate::plan::{self, PlanInputs};
use crate::scan::{self, ScanConfig};
use anyhow::{Context, Result};
use datasets::blocklist::Blocklist;
use datasets::publish::write_atomic;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// Exit code when the vantage cannot send on 25.
pub const EXIT_SELF_CHECK: i32 = 3;

pub struct RunArgs {
    pub config: PathBuf,
    pub resume: bool,
    pub shard: (u64, u64),
    pub print_config: bool,
    pub skip_self_check: bool,
    pub progress: bool,
}

pub fn run(a: &RunArgs, stop: Arc<AtomicBool>) -> Result<i32> {
    let c = CrawlConfig::load(&a.config)?;
    if a.print_config {
        print!("{}", toml::to_string_pretty(&c)?);
        return Ok(0);
    }
    std::fs::create_dir_all(&c.crawl.out).with_context(|| format!("creating {}", c.crawl.out.display()))?;
    let (crawl_id, crawl_date) = if a.resume {
        let s = RunState::unfinished(&c, a.shard)?;
        (s.crawl_id, s.crawl_date)
    } else {
        let date = chrono::Utc::now().format("%Y-%m-%d").to_string();
        (c.crawl_id(&date), date)
    };
    let partition = c.crawl.out.join(format!("crawl_date={crawl_date}")).join(format!("crawl_id={crawl_id}"));
    std::fs::create_dir_all(&partition)?;
    let seed = c.seed(&crawl_date);
    let plan_path = ensure_plan(&c, &crawl_date, &crawl_id, seed, a.progress)?;
    RunState { crawl_id: crawl_id.clone(), crawl_date: crawl_date.clone(), status: "running".into() }.save(&c, a.shard)?;
    let Some(check) = self_check(&c, a, &crawl_id, &partition)? else { return Ok(EXIT_SELF_CHECK) };
    let cfg = ScanConfig {
        plan: plan_path,
        out: c.crawl.out.clone(),
        scan: c.scan.clone(),
        vantage: c.crawl.vantage.clone(),
        exclude: c.inputs.exclude.clone(),
        opt_out: c.inputs.opt_out.clone(),
        allow_reserved: c.plan.allow_reserved.clone(),
        crawl_id: Some(crawl_id.clone()),
        seed: Some(seed),
        shard: a.shard,
        resume: a.resume,
        crawl_date: Some(crawl_date.clone()),
        progress: a.progress,
        manifest_extra: serde_json::json!({"config": c, "config_file": a.config, "self_check": check, "resumed": a.resume}),
    };
    let summary = scan::run(&cfg, stop)?;
    scan::print_summary(&summary);
    if summary.interrupted {
        return Ok(130);
    }
    RunState { crawl_id, crawl_date, status: "complete".into() }.save(&c, a.shard)?;
    Ok(0)
}

/// The crawl's plan, `OUT/_plans/DATE_ID.plan`: one per crawl, shared by its shards and kept
/// on resume (the crawl finishes the plan it started; every manifest records its SHA-256).
/// It is Parquet too, but kept out of the observation globs (`OUT/**/*.parquet`).
fn ensure_plan(c: &CrawlConfig, crawl_date: &str, crawl_id: &str, seed: u64, progress: bool) -> Result<PathBuf> {
    let plan_dir = c.crawl.out.join("_plans");
    std::fs::create_dir_all(&plan_dir)?;
    let plan_path = plan_dir.join(format!("{crawl_date}_{crawl_id}.plan"));
    if !plan_path.exists() {
        let inp = PlanInputs {
            routes: c.inputs.routes.clone(),
            routes_format: c.inputs.routes_format.as_deref().map(|f| f.parse()).transpose().map_err(anyhow::Error::msg)?,
            orgs: c.inputs.orgs.clone(),
            categories: c.inputs.categories.clone(),
            hitlist: c.inputs.hitlist.clone(),
            aliased: c.inputs.aliased.clone(),
            exclude: c.inputs.exclude.clone(),
            opt_out: c.inputs.opt_out.clone(),
            select: c.plan.select.parse().map_err(anyhow::Error::msg)?,
            per_asn: c.plan.per_asn,
            seed,
            allow_reserved: c.plan.allow_reserved.clone(),
            skip_bad_lines: c.plan.skip_bad_lines,
            keep_edge_addresses: c.plan.keep_edge_addresses,
            progress,
        };
        let p = plan::build(&inp)?;
        plan::write(&p, &inp, &plan_path)?;
        plan::print_summary(&p.summary, &plan_path);
    }
    Ok(plan_path)
}

/// The vantage self-check before any probe of the plan: its result for the manifest, or
/// `None` when the vantage cannot send on 25 and the crawl must stop (the result is written
/// beside the partition's files).
fn self_check(c: &CrawlConfig, a: &RunArgs, crawl_id: &str, partition: &std::path::Path) -> Result<Option<serde_json::Value>> {
    if c.self_check.targets.is_empty() || a.skip_self_check {
        return Ok(Some(serde_json::json!({"skipped": true, "why": if a.skip_self_check { "--skip-self-check" } else { "no self_check.targets configured" }})));
    }
    let block = Blocklist::build(&c.plan.allow_reserved, &c.inputs.opt_out, &c.inputs.exclude, Default::default())?;
    let gw = c.scan.gateway_mac.as_deref().map(crate::net::route::parse_mac).transpose()?;
    let r = selfcheck::run(&c.self_check.targets, c.self_check.control_port, c.self_check.wait, &block, c.scan.interface.as_deref(), gw)?;
    println!("self-check: {}", r.verdict);
    if !r.passed && !c.self_check.override_failure {
        let m = serde_json::json!({"crawl_id": crawl_id, "self_check": r, "exit_status": "self-check-failed"});
        write_atomic(&partition.join(format!("selfcheck-s{}of{}.json", a.shard.0, a.shard.1)), serde_json::to_string_pretty(&m)?)?;
        eprintln!("crawler: self-check failed: {} (set self_check.override_failure = true to crawl anyway)", r.verdict);
        return Ok(None);
    }
    Ok(Some(serde_json::to_value(&r)?))
}
