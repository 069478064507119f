//! The README's main job on the lab: datasets → `crawler plan` → `crawler scan` (inside the
//! vantage namespace) → `analysis report`. Also used by the end-to-end tests.

use crate::export;
use crate::netns::{self, LabState};
use crate::topology::Topology;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The lab's address space, which is IANA special-purpose space: the crawler refuses it
/// unless told, so every lab command says so explicitly.
pub const LAB_ALLOW: &str = "198.18.0.0/15,2001:db8::/32";

/// A sibling binary of this one (`crawler`, `analysis`) in the same target directory.
pub fn sibling(name: &str) -> Result<PathBuf> {
    let me = std::env::current_exe()?;
    let mut dir = me.parent().context("exe dir")?.to_path_buf();
    // Test binaries live in target/<profile>/deps.
    if dir.ends_with("deps") {
        dir.pop();
    }
    let p = dir.join(name);
    if !p.exists() {
        bail!("{} not found: build the workspace first (`cargo build --release --workspace`)", p.display());
    }
    Ok(p)
}

pub struct Datasets {
    pub dir: PathBuf,
}

impl Datasets {
    pub fn f(&self, n: &str) -> String {
        self.dir.join(n).to_string_lossy().into_owned()
    }
    pub fn routes(&self) -> Vec<String> {
        vec![self.f("routeviews-rv2-lab.pfx2as"), self.f("routeviews-rv6-lab.pfx2as")]
    }
}

fn check(cmd: &mut Command, what: &str) -> Result<()> {
    let st = cmd.status().with_context(|| format!("running {what}"))?;
    if !st.success() {
        bail!("{what} failed ({st})");
    }
    Ok(())
}

/// `crawler plan` over the lab datasets.
pub fn plan(ds: &Datasets, out: &Path, per_asn: usize, opt_out: bool) -> Result<()> {
    let mut c = Command::new(sibling("crawler")?);
    c.arg("plan").arg("--routes").args(ds.routes());
    c.args(["--orgs", &ds.f("lab.as-org2info.jsonl"), "--categories", &ds.f("lab_categorized_ases.csv")]);
    c.args(["--hitlist", &ds.f("responsive-addresses.txt"), "--aliased", &ds.f("aliased-prefixes.txt")]);
    if opt_out {
        c.args(["--opt-out", &ds.f("opt-out.txt")]);
    }
    c.args(["--allow-reserved", LAB_ALLOW, "--per-asn", &per_asn.to_string(), "--seed", "25", "--quiet", "--out"]).arg(out);
    check(&mut c, "crawler plan")
}

/// `crawler scan` run inside the vantage namespace; `extra` adds or overrides flags.
pub fn scan(st: &LabState, ds: &Datasets, plan: &Path, data: &Path, extra: &[&str]) -> Result<()> {
    let crawler = sibling("crawler")?;
    let mut c = Command::new("ip");
    c.args(["netns", "exec", &st.vantage]).arg(crawler).args(["--quiet", "scan", "--plan"]).arg(plan).arg("--out").arg(data);
    c.args(["--allow-reserved", LAB_ALLOW, "--opt-out", &ds.f("opt-out.txt"), "--vantage", "lab-vantage"]);
    c.args(extra);
    check(&mut c, "crawler scan")
}

pub fn report(ds: &Datasets, data: &Path, out: &Path, extra: &[&str]) -> Result<()> {
    let mut c = Command::new(sibling("analysis")?);
    c.args(["report", "--data"]).arg(data).arg("--routes").args(ds.routes());
    c.args(["--orgs", &ds.f("lab.as-org2info.jsonl"), "--categories", &ds.f("lab_categorized_ases.csv"), "--out"]).arg(out);
    c.args(extra);
    check(&mut c, "analysis report")
}

/// Lab-speed scan flags: the lab is ours, so per-network politeness limits are lifted.
pub const LAB_SCAN: [&str; 8] = ["--asn-rate", "0", "--net-rate", "0", "--retry-delay", "1", "--cooldown", "2"];

pub fn run(topo: &Topology, st: &LabState, state: &Path, out: &Path, rate: u64) -> Result<()> {
    let ds = Datasets { dir: state.join("datasets") };
    export::write_all(topo, &ds.dir)?;
    let plan_path = out.join("plan.parquet");
    println!("== crawler plan");
    plan(&ds, &plan_path, 400, true)?;
    if netns::INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) {
        bail!("interrupted");
    }
    println!("== crawler scan (from namespace {})", st.vantage);
    let rate = rate.to_string();
    let mut flags: Vec<&str> = LAB_SCAN.to_vec();
    flags.extend(["--rate", &rate]);
    scan(st, &ds, &plan_path, &out.join("data"), &flags)?;
    println!("== analysis report");
    report(&ds, &out.join("data"), &out.join("report"), &[])?;
    Ok(())
}
