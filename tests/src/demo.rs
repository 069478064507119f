//! The README's main job on the lab: datasets → `crawler plan` → `crawler scan` (inside the
//! vantage namespace) → `crawler egress` (as nobody, inside each customer vantage, to the
//! lab's sink) → `analysis report --egress`. Also used by the end-to-end tests.

use crate::export;
use crate::netns::{self, LabState};
use crate::topology::{addr, Topology};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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
    // The customer vantages' prefixes: announced by their providers, never crawled.
    c.args(["--exclude", &ds.f("exclude.txt")]);
    if opt_out {
        c.args(["--opt-out", &ds.f("opt-out.txt")]);
    }
    c.args(["--allow-reserved", LAB_ALLOW, "--per-asn", &per_asn.to_string(), "--seed", "25", "--quiet", "--out"]).arg(out);
    check(&mut c, "crawler plan")
}

/// `crawler scan` run inside the vantage namespace; `extra` adds or overrides flags.
pub fn scan(st: &LabState, ds: &Datasets, plan: &Path, data: &Path, extra: &[&str]) -> Result<()> {
    scan_from(&st.vantage, "lab-vantage", ds, plan, data, extra)
}

/// The name the second measuring vantage's crawls carry.
pub const ALT_VANTAGE: &str = "lab-vantage-alt";

/// `crawler scan` run inside namespace `ns`, its crawl recorded as from vantage `vantage`.
pub fn scan_from(ns: &str, vantage: &str, ds: &Datasets, plan: &Path, data: &Path, extra: &[&str]) -> Result<()> {
    let crawler = sibling("crawler")?;
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns]).arg(crawler).args(["--quiet", "scan", "--plan"]).arg(plan).arg("--out").arg(data);
    c.args(["--allow-reserved", LAB_ALLOW, "--opt-out", &ds.f("opt-out.txt"), "--vantage", vantage]);
    c.args(extra);
    check(&mut c, "crawler scan")
}

/// `analysis report` over the lab's datasets, with the lab providers' documented policies.
pub fn report(ds: &Datasets, data: &Path, out: &Path, extra: &[&str]) -> Result<()> {
    let mut c = Command::new(sibling("analysis")?);
    c.args(["report", "--data"]).arg(data).arg("--routes").args(ds.routes());
    c.args(["--orgs", &ds.f("lab.as-org2info.jsonl"), "--categories", &ds.f("lab_categorized_ases.csv"), "--out"]).arg(out);
    c.args(["--policies", &ds.f(export::LAB_POLICIES)]);
    c.args(extra);
    check(&mut c, "analysis report")
}

/// Lab-speed scan flags: the lab is ours, so per-network politeness limits are lifted.
pub const LAB_SCAN: [&str; 8] = ["--asn-rate", "0", "--net-rate", "0", "--retry-delay", "1", "--cooldown", "2"];

/// `name` (a sibling binary) at a path nobody may execute: the binary itself when every
/// directory above it lets others through, else a copy in `dir/bin`.
pub fn runnable_by_nobody(name: &str, dir: &Path) -> Result<PathBuf> {
    let nobody_can = |p: &Path, test: &str| Command::new(netns::AS_NOBODY[0]).args(&netns::AS_NOBODY[1..]).args(["test", test]).arg(p).status().is_ok_and(|s| s.success());
    let bin = sibling(name)?;
    if nobody_can(&bin, "-x") {
        return Ok(bin);
    }
    use std::os::unix::fs::PermissionsExt;
    let d = dir.join("bin");
    std::fs::create_dir_all(&d)?;
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755))?;
    let copy = d.join(name);
    std::fs::copy(&bin, &copy)?;
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755))?;
    if !nobody_can(&copy, "-x") {
        bail!("user nobody cannot run {} nor {}: a directory above {} is closed to others (chmod o+x)", bin.display(), copy.display(), dir.display());
    }
    Ok(copy)
}

/// A directory nobody can write, for the output of unprivileged lab processes.
pub fn nobody_dir(d: &Path) -> Result<()> {
    std::fs::create_dir_all(d)?;
    std::os::unix::fs::chown(d, Some(netns::NOBODY_ID), Some(netns::NOBODY_ID))?;
    let ok = Command::new(netns::AS_NOBODY[0]).args(&netns::AS_NOBODY[1..]).args(["test", "-w"]).arg(d).status().is_ok_and(|s| s.success());
    if !ok {
        bail!("user nobody cannot write {}: a directory above it is closed to others (chmod o+x)", d.display());
    }
    Ok(())
}

/// Egress in the lab: 4 attempts per port 1 s apart (a throttle that lets 2 a minute through
/// shows from the third on), a 2 s connect timeout (lab round trips are sub-millisecond).
pub const EGRESS_REPEAT: u16 = 4;
pub const EGRESS_FLAGS: [&str; 6] = ["--repeat", "4", "--interval", "1", "--timeout", "2"];

/// One `crawler egress` run from a customer vantage, and what the process was allowed while
/// it ran (from /proc/PID/status).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EgressRun {
    pub vantage: String,
    pub provider: String,
    pub namespace: String,
    pub exit_code: Option<i32>,
    pub uid: Option<String>,
    pub cap_eff: Option<String>,
    pub cap_prm: Option<String>,
    pub secs: f64,
    pub stdout: String,
    pub stderr: String,
}

impl EgressRun {
    pub fn unprivileged(&self) -> bool {
        let zero = Some("0000000000000000");
        self.uid.as_deref().is_some_and(|u| u.split_whitespace().all(|x| x == "65534")) && self.cap_eff.as_deref() == zero && self.cap_prm.as_deref() == zero
    }
}

fn status_field(pid: u32, key: &str) -> Option<String> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find_map(|l| l.strip_prefix(&format!("{key}:")).map(|v| v.trim().to_string()))
}

/// Run `cmd` and, once it has become `crawler` (after `ip netns exec` and `setpriv` exec'd
/// into it), read its user and capabilities.
fn watch(mut cmd: Command, base: EgressRun) -> Result<EgressRun> {
    let t0 = Instant::now();
    let child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().context("starting crawler egress")?;
    let pid = child.id();
    let mut seen = None;
    let until = Instant::now() + Duration::from_secs(20);
    while seen.is_none() && Instant::now() < until {
        if std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|e| e.ends_with("crawler")) {
            seen = Some((status_field(pid, "Uid"), status_field(pid, "CapEff"), status_field(pid, "CapPrm")));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let o = child.wait_with_output()?;
    let (uid, cap_eff, cap_prm) = seen.unwrap_or_default();
    let (stdout, stderr) = (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned());
    Ok(EgressRun { exit_code: o.status.code(), uid, cap_eff, cap_prm, secs: t0.elapsed().as_secs_f64(), stdout, stderr, ..base })
}

/// `crawler egress` as nobody from every customer vantage at once, to the lab's sinks (both
/// families, pinned certificates), writing into `out`.
pub fn egress(st: &LabState, state: &Path, out: &Path) -> Result<Vec<EgressRun>> {
    egress_with(st, state, out, &EGRESS_FLAGS)
}

/// The lab's sink addresses (both sinks' when it has two) and their pins, as `crawler egress`
/// takes them.
pub fn sink_args(st: &LabState) -> (Vec<String>, String) {
    let mut sinks = vec![addr::SINK_V4.to_string(), addr::SINK_V6.to_string()];
    let mut pins = vec![st.sink_pin.clone()];
    if !st.sink2.is_empty() {
        let (v4, v6) = addr::sink(2);
        sinks.extend([v4.to_string(), v6.to_string()]);
        pins.push(st.sink2_pin.clone());
    }
    (sinks, pins.join(","))
}

/// [`egress`] with other timing flags (`--repeat`, `--interval`, `--timeout`).
pub fn egress_with(st: &LabState, state: &Path, out: &Path, flags: &[&str]) -> Result<Vec<EgressRun>> {
    let topo = Topology::load(&st.topology)?;
    nobody_dir(out)?;
    let crawler = runnable_by_nobody("crawler", state)?;
    let (sinks, pins) = sink_args(st);
    let handles: Vec<_> = st
        .customers
        .iter()
        .map(|c| {
            let mut cmd = Command::new("ip");
            cmd.args(["netns", "exec", &c.ns]).args(netns::AS_NOBODY).arg(&crawler);
            cmd.arg("egress").arg("--sink").args(&sinks).args(["--vantage", &c.vantage.name, "--sink-pin", &pins]).args(flags).arg("--out").arg(out);
            let base = EgressRun {
                vantage: c.vantage.name.clone(),
                provider: topo.providers[c.vantage.provider].name.clone(),
                namespace: c.ns.clone(),
                exit_code: None,
                uid: None,
                cap_eff: None,
                cap_prm: None,
                secs: 0.0,
                stdout: String::new(),
                stderr: String::new(),
            };
            std::thread::spawn(move || watch(cmd, base))
        })
        .collect();
    let mut runs = Vec::new();
    for h in handles {
        runs.push(h.join().map_err(|_| anyhow::anyhow!("an egress watcher panicked"))??);
    }
    Ok(runs)
}

/// The egress part of the demo: run, say how it went (one line per vantage), stop the sink
/// so its last file is published.
fn egress_step(st: &LabState, state: &Path, out: &Path) -> Result<()> {
    println!("== crawler egress (as nobody) from {} customer vantages to the lab's sink {} / {}", st.customers.len(), addr::SINK_V4, addr::SINK_V6);
    // This run's attempts only: the report reads every file under the directory.
    let _ = std::fs::remove_dir_all(out.join("egress"));
    let runs = egress(st, state, &out.join("egress"))?;
    std::fs::write(out.join("egress-runs.json"), serde_json::to_string_pretty(&runs)?)?;
    for r in &runs {
        let who = if r.unprivileged() { "as nobody, no capabilities" } else { "NOT unprivileged" };
        let port25 = r.stdout.lines().find(|l| l.starts_with("port 25:")).unwrap_or("no summary");
        println!("  {:<16} {:<22} {:.1} s, {who}; {port25}", r.vantage, r.provider, r.secs);
    }
    if let Some(r) = runs.iter().find(|r| r.exit_code != Some(0)) {
        bail!("crawler egress failed in {} ({:?}): {}", r.vantage, r.exit_code, r.stderr.trim());
    }
    netns::stop_sink(st)?;
    println!("   summaries: {}; sink records: {}", out.join("egress-runs.json").display(), state.join("sink").display());
    Ok(())
}

pub fn run(topo: &Topology, st: &LabState, state: &Path, out: &Path, rate: u64) -> Result<()> {
    let ds = Datasets { dir: state.join("datasets") };
    export::write_all(topo, &ds.dir)?;
    std::fs::create_dir_all(out)?;
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
    if !st.customers.is_empty() {
        egress_step(st, state, out)?;
    }
    println!("== analysis report");
    let egress_dir = out.join("egress");
    let extra: Vec<&str> = if st.customers.is_empty() { vec![] } else { vec!["--egress", egress_dir.to_str().unwrap()] };
    report(&ds, &out.join("data"), &out.join("report"), &extra)?;
    Ok(())
}
