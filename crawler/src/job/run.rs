//! `crawler run --config crawl.toml [--resume] [--shard I/N]`: plan + vantage self-check +
//! scan as one reproducible, resumable job writing into the crawl's partition.
//!
//! The partition holds the observation files and one manifest per shard; the plan is kept as
//! `OUT/_plans/DATE_ID.plan` (Parquet). A small state file beside the output remembers an unfinished crawl's id and date,
//! so `--resume` after a crash (even `kill -9`) continues the same crawl: complete files are
//! kept, their probes skipped, and only the rest is probed again.

use super::config::{ConfigError, CrawlConfig};
use super::selfcheck;
use super::state::RunState;
use crate::net::handover::Handover;
use crate::plan::{self, PlanInputs};
use crate::scan::{self, ScanConfig};
use anyhow::{Context, Result};
use datasets::publish::write_atomic;
use std::path::{Path, PathBuf};
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
    let output = c.output()?;
    std::fs::create_dir_all(&output.local).with_context(|| format!("creating {}", output.local.display()))?;
    let (crawl_id, crawl_date) = if a.resume {
        let s = RunState::unfinished(&c, a.shard)?;
        (s.crawl_id, s.crawl_date)
    } else {
        let date = chrono::Utc::now().format("%Y-%m-%d").to_string();
        (c.crawl_id(&date), date)
    };
    let partition = c.local_out().join(format!("crawl_date={crawl_date}")).join(format!("crawl_id={crawl_id}"));
    let seed = c.seed(&crawl_date);
    let plan_path = if privileged() {
        plan_child(&a.config, &crawl_date, &crawl_id, a.progress)?;
        plan_path(&c, &crawl_date, &crawl_id)
    } else {
        ensure_plan(&c, &crawl_date, &crawl_id, seed, a.progress)?
    };
    let Some(check) = self_check(&c, a, &crawl_id, &partition)? else { return Ok(EXIT_SELF_CHECK) };
    // Written by the scan once it runs as scan.user: root writes nothing where that user can
    // plant a link.
    let running = RunState { crawl_id: crawl_id.clone(), crawl_date: crawl_date.clone(), status: "running".into() };
    let cfg = ScanConfig {
        plan: plan_path,
        out: output.local.clone(),
        store: output.store.is_some().then(|| output.clone()),
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
        manifest_extra: serde_json::json!({"config": recorded(&c), "config_file": a.config, "self_check": check, "resumed": a.resume}),
        writable: vec!["".into(), "_plans".into()],
        after_drop: vec![(RunState::path(&c, a.shard), running.text()?)],
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
///
/// A plan is published atomically, yet a power loss can still leave a damaged file under the
/// final name (a file system that loses the data but keeps the rename, a disk error), and a
/// plan reused blindly would then block or corrupt the day's crawl. So its SHA-256 goes into
/// a sidecar `.DATE_ID.plan.sha256` (`sha256sum` layout, published after the plan), and an
/// existing plan is reused only if its footer reads and its bytes hash as recorded. A bad plan
/// is rebuilt while nothing of the crawl was written; once a shard has files, the plan they
/// were probed from cannot be replaced, and the run stops with the plan named.
/// The config as the manifest records it: an endpoint's `user:password@`, if any, left out.
fn recorded(c: &CrawlConfig) -> CrawlConfig {
    let mut c = c.clone();
    c.crawl.s3_endpoint = c.crawl.s3_endpoint.as_deref().map(datasets::store::shown_endpoint);
    c
}

fn ensure_plan(c: &CrawlConfig, crawl_date: &str, crawl_id: &str, seed: u64, progress: bool) -> Result<PathBuf> {
    let plan_path = plan_path(c, crawl_date, crawl_id);
    let plan_dir = plan_path.parent().expect("a plan path has its directory");
    std::fs::create_dir_all(plan_dir).with_context(|| format!("creating {}", plan_dir.display()))?;
    let sidecar = sha_sidecar(&plan_path);
    if plan_path.exists() {
        match verify_plan(&plan_path, &sidecar) {
            Ok(PlanCheck::Verified) => return Ok(plan_path),
            Ok(PlanCheck::Unrecorded) if crawled(c, crawl_date, crawl_id) => {
                // Written by a version without the sidecar: its footer is the only check left.
                tracing::warn!("{}: no recorded SHA-256 (written by an older version?); its footer reads, reusing it", plan_path.display());
                return Ok(plan_path);
            }
            Ok(PlanCheck::Unrecorded) => tracing::warn!("{}: no recorded SHA-256; nothing crawled with it yet, rebuilding it", plan_path.display()),
            Err(why) if crawled(c, crawl_date, crawl_id) => {
                return Err(ConfigError(format!(
                    "plan {} is damaged ({why}) and crawl {crawl_id} already has files probed from it: restore the plan (its SHA-256 is in every manifest of the crawl) or start a new crawl id",
                    plan_path.display()
                ))
                .into())
            }
            Err(why) => {
                tracing::warn!("plan {} is damaged ({why}); nothing crawled with it yet, rebuilding it", plan_path.display());
                eprintln!("crawler: plan {} is damaged ({why}); rebuilding it", plan_path.display());
            }
        }
    }
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
    let sha = datasets::input::sha256_file(&plan_path)?;
    let name = plan_path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    write_atomic(&sidecar, format!("{sha}  {name}\n"))?;
    plan::print_summary(&p.summary, &plan_path);
    Ok(plan_path)
}

/// Where the crawl's plan lives: `OUT/_plans/DATE_ID.plan`.
fn plan_path(c: &CrawlConfig, crawl_date: &str, crawl_id: &str) -> PathBuf {
    c.local_out().join("_plans").join(format!("{crawl_date}_{crawl_id}.plan"))
}

/// `.NAME.sha256` beside the plan: hidden, and outside every glob the tools read.
fn sha_sidecar(plan: &Path) -> PathBuf {
    let name = plan.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    plan.with_file_name(format!(".{name}.sha256"))
}

enum PlanCheck {
    Verified,
    /// The footer reads, but no SHA-256 was recorded.
    Unrecorded,
}

/// Is the plan whole and unchanged? `Err` says what is wrong with it.
fn verify_plan(plan: &Path, sidecar: &Path) -> std::result::Result<PlanCheck, String> {
    let len = std::fs::metadata(plan).map_err(|e| e.to_string())?.len();
    if len == 0 {
        return Err("empty file".into());
    }
    datasets::schema::parquet_metadata(plan).map_err(|_| format!("not a complete Parquet file, {len} bytes"))?;
    let recorded = match std::fs::read_to_string(sidecar) {
        Ok(t) => t.split_whitespace().next().unwrap_or("").to_ascii_lowercase(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(PlanCheck::Unrecorded),
        Err(e) => return Err(format!("cannot read its recorded SHA-256 {}: {e}", sidecar.display())),
    };
    let actual = datasets::input::sha256_file(plan).map_err(|e| e.to_string())?;
    if recorded != actual {
        return Err(format!("its SHA-256 is {actual}, but {recorded} was recorded when it was written ({})", sidecar.display()));
    }
    Ok(PlanCheck::Verified)
}

/// Has any shard of this crawl written files (observations or a manifest) yet?
fn crawled(c: &CrawlConfig, crawl_date: &str, crawl_id: &str) -> bool {
    let dir = c.local_out().join(format!("crawl_date={crawl_date}")).join(format!("crawl_id={crawl_id}"));
    std::fs::read_dir(dir).map(|rd| rd.flatten().any(|e| {
        let n = e.file_name().to_string_lossy().into_owned();
        (n.starts_with("part-") && n.ends_with(".parquet")) || (n.starts_with("manifest") && n.ends_with(".json"))
    }))
    .unwrap_or(false)
}

/// Root, or any effective capability: the process that will open the scan's sockets.
fn privileged() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    root || caps::read(None, caps::CapSet::Effective).map_or(true, |c| !c.is_empty())
}

/// The plan step as `crawler run-plan` in a child that drops every privilege before it reads
/// a dataset (routing tables, hitlists and opt-out lists come from elsewhere: a parser bug must
/// not run as root); this process keeps its own to open the scan's sockets.
fn plan_child(config: &Path, crawl_date: &str, crawl_id: &str, progress: bool) -> Result<()> {
    let exe = std::env::current_exe().context("finding the crawler binary for the plan step")?;
    let mut cmd = std::process::Command::new(&exe);
    if !progress {
        cmd.arg("--quiet");
    }
    let status = cmd
        .args(["run-plan", "--date", crawl_date, "--id", crawl_id, "--config"])
        .arg(config)
        .stdin(std::process::Stdio::null())
        .status()
        .with_context(|| format!("running {} run-plan", exe.display()))?;
    match status.code() {
        Some(0) => Ok(()),
        Some(2) => Err(ConfigError(format!("the plan step of {} failed on its input (see above)", config.display())).into()),
        _ => anyhow::bail!("the plan step failed ({status})"),
    }
}

/// `crawler run-plan`: drop every privilege (to `scan.user` when started as root; capabilities
/// cleared in any case), then build or verify the crawl's plan as `run` would.
pub fn plan_unprivileged(config: &Path, crawl_date: &str, crawl_id: &str, progress: bool) -> Result<i32> {
    let c = CrawlConfig::load(config)?;
    crate::net::privs::drop_privileges(&c.scan.user, &Handover::new(&c.local_out(), ["_plans".into()]))?;
    ensure_plan(&c, crawl_date, crawl_id, c.seed(crawl_date), progress)?;
    Ok(0)
}

/// `crawler self-check --config FILE` as a child: it opens its own sockets and drops its
/// privileges, and this process stays able to open the scan's.
fn self_check_child(config: &Path) -> Result<selfcheck::SelfCheckResult> {
    let exe = std::env::current_exe().context("finding the crawler binary for the self-check")?;
    let out = std::process::Command::new(&exe)
        .args(["--quiet", "self-check", "--config"])
        .arg(config)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("running {} self-check", exe.display()))?;
    match out.status.code() {
        Some(0) | Some(selfcheck::EXIT_FAILED) => serde_json::from_slice(&out.stdout).with_context(|| format!("reading the self-check's result: {}", String::from_utf8_lossy(&out.stdout))),
        Some(2) => Err(ConfigError(format!("the self-check of {} refused its config (see above)", config.display())).into()),
        _ => anyhow::bail!("the self-check could not run ({})", out.status),
    }
}

/// The vantage self-check before any probe of the plan: its result for the manifest, or
/// `None` when the vantage cannot send on 25 and the crawl must stop (the result is written
/// beside the partition's files).
fn self_check(c: &CrawlConfig, a: &RunArgs, crawl_id: &str, partition: &std::path::Path) -> Result<Option<serde_json::Value>> {
    if c.self_check.targets.is_empty() || a.skip_self_check {
        return Ok(Some(serde_json::json!({"skipped": true, "why": if a.skip_self_check { "--skip-self-check" } else { "no self_check.targets configured" }})));
    }
    let r = self_check_child(&a.config)?;
    println!("self-check: {}", r.verdict);
    if !r.passed && !c.self_check.override_failure {
        let m = serde_json::json!({"crawl_id": crawl_id, "self_check": r, "exit_status": "self-check-failed"});
        // No scan follows: this process needs its privileges no more, and writes as scan.user.
        let rel = partition.strip_prefix(c.local_out()).unwrap_or(partition).to_path_buf();
        crate::net::privs::drop_privileges(&c.scan.user, &Handover::new(&c.local_out(), [rel]))?;
        write_atomic(&partition.join(format!("selfcheck-s{}of{}.json", a.shard.0, a.shard.1)), serde_json::to_string_pretty(&m)?)?;
        eprintln!("crawler: self-check failed: {} (set self_check.override_failure = true to crawl anyway)", r.verdict);
        return Ok(None);
    }
    Ok(Some(serde_json::to_value(&r)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(out: &Path) -> CrawlConfig {
        let routes = Path::new(env!("CARGO_MANIFEST_DIR")).join("../datasets/fixtures/routeviews-rv2-20261101-1200.pfx2as");
        let text = format!("[crawl]\nvantage = \"v\"\nout = {:?}\n[inputs]\nroutes = [{:?}]\n[plan]\nselect = \"all\"\nper_asn = 20\nseed = 7\n", out.display().to_string(), routes.display().to_string());
        CrawlConfig::from_toml(Path::new("test.toml"), &text).unwrap()
    }

    const DATE: &str = "2026-11-01";
    const ID: &str = "2026-11-01-v";

    #[test]
    fn a_damaged_plan_is_rebuilt_before_the_crawl_and_refused_after() {
        let d = tempfile::tempdir().unwrap();
        let c = config(d.path());
        let p = ensure_plan(&c, DATE, ID, 7, false).unwrap();
        let good = std::fs::read(&p).unwrap();
        let side = std::fs::read_to_string(sha_sidecar(&p)).unwrap();
        assert_eq!(side, format!("{}  {DATE}_{ID}.plan\n", datasets::input::sha256_file(&p).unwrap()));
        // Reused as it is.
        let mtime = std::fs::metadata(&p).unwrap().modified().unwrap();
        ensure_plan(&c, DATE, ID, 7, false).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().modified().unwrap(), mtime);

        // Nothing crawled yet: a truncated, an empty and a changed plan are rebuilt (the same
        // inputs and seed give the same bytes).
        let mut changed = good.clone();
        changed[good.len() / 3] ^= 0x55;
        for bad in [&good[..good.len() / 2], &[][..], &changed[..]] {
            std::fs::write(&p, bad).unwrap();
            ensure_plan(&c, DATE, ID, 7, false).unwrap();
            assert_eq!(std::fs::read(&p).unwrap(), good);
        }
        // A plan with no recorded SHA-256 is rebuilt too while nothing is crawled.
        std::fs::remove_file(sha_sidecar(&p)).unwrap();
        ensure_plan(&c, DATE, ID, 7, false).unwrap();
        assert!(sha_sidecar(&p).exists());

        // Once a shard has files from it, a damaged plan stops the run, named.
        let part = d.path().join(format!("crawl_date={DATE}")).join(format!("crawl_id={ID}"));
        std::fs::create_dir_all(&part).unwrap();
        std::fs::write(part.join("part-s0of2-0000abcd-000000.parquet"), b"x").unwrap();
        for (bad, why) in [(&good[..good.len() - 9], "not a complete Parquet file"), (&changed[..], "SHA-256")] {
            std::fs::write(&p, bad).unwrap();
            let e = ensure_plan(&c, DATE, ID, 7, false).unwrap_err();
            let msg = format!("{e:#}");
            assert!(e.chain().any(|c| c.is::<ConfigError>()), "{msg}");
            assert!(msg.contains(&p.display().to_string()) && msg.contains(why) && msg.contains("already has files"), "{msg}");
            assert_eq!(std::fs::read(&p).unwrap(), bad, "the damaged plan is left for inspection");
        }
        // Restored, the crawl goes on with it.
        std::fs::write(&p, &good).unwrap();
        ensure_plan(&c, DATE, ID, 7, false).unwrap();
    }
}
