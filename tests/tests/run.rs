//! `crawler run`: one config, one command — bad configs rejected with the key named, the
//! vantage self-check stopping a vantage that cannot send on 25, shards whose union is the
//! whole crawl, and resume after `kill -9` at several points with every planned probe
//! recorded exactly once.

mod common;
use common::*;
use port25_lab::demo::Datasets;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::{Command, Stdio};

/// The probe of every row under `dir` (`probe_key`), with multiplicity.
fn probes(dir: &Path) -> HashMap<(String, String, String), usize> {
    let mut m = HashMap::new();
    for r in read_rows(dir, &ROW_KEY) {
        let [ip, port, role, sport] = [0, 1, 2, 3].map(|i| r[i].clone().unwrap());
        *m.entry(probe_key(&ip, &port, &role, &sport)).or_default() += 1;
    }
    m
}

#[test]
fn bad_configs_name_the_key() {
    let d = tempfile::tempdir().unwrap();
    let topo = root().join("tests/topologies/default.toml");
    let dsdir = d.path().join("ds");
    assert!(Command::new(env!("CARGO_BIN_EXE_lab")).args(["datasets", topo.to_str().unwrap(), "--out", dsdir.to_str().unwrap()]).status().unwrap().success());
    let ds = Datasets { dir: dsdir };
    let good = crawl_config(&ds, &d.path().join("out"), "x", "", &[]);
    let cases = [
        (good.replace("[scan]\n", "[scan]\nrat = 5\n"), "unknown field `rat`"),
        (good.replace("per_asn = 400", "per_asn = 0"), "plan.per_asn"),
        (good.replace("seed = 25", "seed = \"monthly\""), "plan.seed"),
        (good.replace("select = \"all\"", "select = \"ASfoo\""), "plan.select"),
        (good.replace("cooldown = 2.0", "cooldown = \"long\""), "cooldown"),
        (good.replace(&ds.f("opt-out.txt"), "/nonexistent/opt-out.txt"), "inputs.opt_out"),
    ];
    for (text, want) in cases {
        let p = d.path().join("bad.toml");
        std::fs::write(&p, text).unwrap();
        let o = Command::new(crawler()).args(["run", "--config", p.to_str().unwrap()]).output().unwrap();
        let e = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{want}: {e}");
        assert!(e.contains(want) && e.contains("bad.toml"), "expected `{want}` in: {e}");
    }
    // Checked with --print-config, which does nothing else: a config that slipped through
    // would only be printed.
    let cases = [
        (good.replace("crawl_id = \"x\"", "crawl_id = \"../../escaped\""), "crawl.crawl_id"),
        (good.replace("crawl_id = \"x\"", "crawl_id = \"{date}/{vantage}\""), "crawl.crawl_id"),
        (good.replace("crawl_id = \"x\"", "crawl_id = \".{date}\""), "crawl.crawl_id"),
        (good.replace("vantage = \"lab-vantage\"", "vantage = \"..\""), "crawl.vantage"),
        (good.replace("[scan]\n", "[scan]\nretries = 200\n"), "scan.retries"),
        (good.replace("[scan]\n", "[scan]\nretries = 11\n"), "scan.retries"),
        (good.replace("allow_reserved = [\"198.18.0.0/15\", \"2001:db8::/32\"]", "allow_reserved = [\"0.0.0.0/0\"]"), "plan.allow_reserved"),
        (good.replace("allow_reserved = [\"198.18.0.0/15\", \"2001:db8::/32\"]", "allow_reserved = [\"198.18.0.0/15\", \"2600::/12\"]"), "plan.allow_reserved"),
    ];
    for (text, want) in cases {
        assert_ne!(text, good, "{want}: the case did not change the config");
        let p = d.path().join("bad.toml");
        std::fs::write(&p, text).unwrap();
        let o = Command::new(crawler()).args(["run", "--config", p.to_str().unwrap(), "--print-config"]).output().unwrap();
        let e = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{want}: {e}");
        assert!(e.contains(want) && e.contains("bad.toml"), "expected `{want}` in: {e}");
    }
    let p = d.path().join("good.toml");
    std::fs::write(&p, &good).unwrap();
    let o = Command::new(crawler()).args(["run", "--config", p.to_str().unwrap(), "--print-config"]).output().unwrap();
    assert!(o.status.success());
    let eff = String::from_utf8_lossy(&o.stdout);
    assert!(eff.contains("rate = 10000") && eff.contains("retries = 2") && eff.contains("per_asn = 400"), "{eff}");
}

#[test]
#[ignore = "lab test: needs root and network namespaces (tests/run-tests.sh runs it)"]
fn self_check_stops_a_vantage_whose_uplink_drops_25() {
    if !require_root("self_check") {
        return;
    }
    let lab = Lab::up("default");
    let ds = lab.datasets();
    let refs = reference_hosts(&ds);
    let cfg = lab.path("crawl.toml");
    std::fs::write(&cfg, crawl_config(&ds, &lab.path("crawls"), "{date}-blocked", "rate = 20000\nports = [25]\ncontrol_ports = []\nrandom_ports = 0", &refs)).unwrap();
    let o = run_in(&lab.state.vantage_blocked, &cfg, &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "stdout {} stderr {err}", String::from_utf8_lossy(&o.stdout));
    assert!(err.contains("cannot send on 25"), "{err}");
    assert!(probes(&lab.path("crawls")).is_empty(), "a blocked vantage must not crawl");
    // The same config from the unfiltered vantage passes the check and records it.
    let cfg2 = lab.path("crawl2.toml");
    std::fs::write(&cfg2, crawl_config(&ds, &lab.path("crawls2"), "{date}-ok", "rate = 20000\nports = [25]\ncontrol_ports = []\nrandom_ports = 0", &refs)).unwrap();
    let o = run_in(&lab.state.vantage, &cfg2, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let m = find_file(&lab.path("crawls2"), "manifest.json");
    let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(m).unwrap()).unwrap();
    assert_eq!(m["run"]["self_check"]["passed"], true);
    assert_eq!(m["run"]["self_check"]["answered_25"], 3);
}

fn find_file(dir: &Path, name: &str) -> std::path::PathBuf {
    fn walk(p: &Path, name: &str) -> Option<std::path::PathBuf> {
        if p.is_dir() {
            for e in std::fs::read_dir(p).ok()? {
                if let Some(f) = walk(&e.ok()?.path(), name) {
                    return Some(f);
                }
            }
            None
        } else {
            (p.file_name()? == name).then(|| p.to_path_buf())
        }
    }
    walk(dir, name).unwrap_or_else(|| panic!("no {name} under {}", dir.display()))
}

#[test]
#[ignore = "lab test: needs root and network namespaces (tests/run-tests.sh runs it)"]
fn shards_are_disjoint_and_their_union_is_the_whole_crawl() {
    if !require_root("shards") {
        return;
    }
    let lab = Lab::up("default");
    let ds = lab.datasets();
    let scan = "rate = 20000";
    let whole = lab.path("whole.toml");
    // The whole crawl with two sender threads: their disjoint strides must cover the order too.
    std::fs::write(&whole, crawl_config(&ds, &lab.path("whole"), "{date}-whole", "rate = 20000\nsenders = 2", &[])).unwrap();
    let o = run_in(&lab.state.vantage, &whole, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let sharded = lab.path("sharded.toml");
    std::fs::write(&sharded, crawl_config(&ds, &lab.path("sharded"), "{date}-sharded", scan, &[])).unwrap();
    let mut seen: HashSet<(String, String, String)> = HashSet::new();
    let mut total = 0;
    for i in 0..3 {
        let before = probes(&lab.path("sharded"));
        let o = run_in(&lab.state.vantage, &sharded, &["--shard", &format!("{i}/3")]);
        assert!(o.status.success(), "shard {i}: {}", String::from_utf8_lossy(&o.stderr));
        let after = probes(&lab.path("sharded"));
        let mine: Vec<_> = after.keys().filter(|k| !before.contains_key(*k)).cloned().collect();
        assert!(!mine.is_empty());
        for k in mine {
            assert!(seen.insert(k.clone()), "{k:?} in two shards");
            total += 1;
        }
    }
    let w = probes(&lab.path("whole"));
    let union: HashSet<_> = seen;
    let wk: HashSet<_> = w.keys().cloned().collect();
    println!("unsharded crawl (2 senders) {} probes; 3 shards {} probes; union equal: {}", wk.len(), total, union == wk);
    assert!(w.values().all(|n| *n == 1), "a probe recorded twice with two senders");
    assert_eq!(union, wk, "the shards' union differs from the unsharded crawl");
    // Analysis reads all shards of the crawl together.
    let o = Command::new(analysis())
        .args(["report", "--data", lab.path("sharded").to_str().unwrap(), "--orgs", &ds.f("lab.as-org2info.jsonl"), "--out", lab.path("rep").to_str().unwrap(), "--routes"])
        .args(ds.routes())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains(&format!("{} rows", wk.len())));
}

#[test]
#[ignore = "lab test: needs root and network namespaces (tests/run-tests.sh runs it)"]
fn resume_after_kill_9_records_every_probe_exactly_once() {
    if !require_root("resume") {
        return;
    }
    let lab = Lab::up("default");
    let ds = lab.datasets();
    let cfg = lab.path("crawl.toml");
    // Slow enough to be killed mid-crawl, small files so kills land between and inside them.
    std::fs::write(&cfg, crawl_config(&ds, &lab.path("crawls"), "{date}-resume", "rate = 6000\nrows_per_file = 1500", &[])).unwrap();
    let spawn = |resume: bool| {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &lab.state.vantage]).arg(crawler()).args(["--quiet", "run", "--config"]).arg(&cfg);
        if resume {
            c.arg("--resume");
        }
        c.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap()
    };
    // Kill points: during the first pass, again early in the resumed first pass, then during
    // the retry/cooldown phase; the last run finishes.
    let mut first = true;
    for ms in [1500u64, 900, 5200] {
        let mut ch = spawn(!first);
        first = false;
        std::thread::sleep(std::time::Duration::from_millis(ms));
        // SAFETY: SIGKILL to our own child (ip netns exec has exec'd the crawler).
        unsafe { libc::kill(ch.id() as i32, libc::SIGKILL) };
        ch.wait().unwrap();
        let files = read_rows(&lab.path("crawls"), &["ip"]).len();
        println!("killed after {ms} ms: {files} rows in complete files");
    }
    // A complete file of the crawl corrupted between runs: the resume stops, exit 2, naming it
    // (resuming over it would probe its rows again or lose them); restored, the resume goes on.
    let part = walk(&lab.path("crawls")).into_iter().find(|p| p.extension().is_some_and(|e| e == "parquet") && !p.to_string_lossy().contains("_plans")).expect("a complete file");
    let good = std::fs::read(&part).unwrap();
    std::fs::write(&part, corrupt(&good)).unwrap();
    let o = spawn(true).wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    let name = part.file_name().unwrap().to_string_lossy();
    assert_eq!(o.status.code(), Some(2), "resume over a corrupt file: {err}");
    assert!(err.contains(&*name) && err.contains("corrupt") && !err.contains("panicked"), "{err}");
    std::fs::write(&part, &good).unwrap();
    let ch = spawn(true);
    let o = ch.wait_with_output().unwrap();
    assert!(o.status.success(), "final resume: {}", String::from_utf8_lossy(&o.stderr));
    let p = probes(&lab.path("crawls"));
    let dup: Vec<_> = p.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dup.is_empty(), "{} probes recorded more than once, e.g. {:?}", dup.len(), dup.iter().take(3).collect::<Vec<_>>());
    let plan_rows = read_rows(&find_plan(&lab.path("crawls")), &["ip"]).len();
    // Started as root, `run` built its plan in a child that had dropped to nobody first.
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(find_plan(&lab.path("crawls"))).unwrap().uid(), 65534, "the plan was written as root, not by the unprivileged plan step");
    assert_eq!(p.len(), plan_rows * 12, "every planned probe recorded (8 ports + 4 reflection source ports per target)");
    // No half-written file left with a readable name.
    let leftovers: Vec<_> = walk_names(&lab.path("crawls")).into_iter().filter(|n| n.ends_with(".inprogress")).collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(find_file(&lab.path("crawls"), "manifest.json")).unwrap()).unwrap();
    assert_eq!(m["summary"]["resumed"], true);
    assert_eq!(m["exit_status"], "complete");
    println!("resumed crawl: {} probes, each recorded once; {} rows kept from killed runs", p.len(), m["summary"]["rows_before_resume"]);
    // And the result is still right.
    let truth = truth_hosts(&ds);
    let rows = read_rows(&lab.path("crawls"), &observation_columns());
    let ok = rows.iter().filter(|r| matches(&truth_of(&truth, r), r)).count();
    assert!(ok as f64 >= 0.995 * rows.len() as f64, "{ok}/{}", rows.len());
}

fn walk_names(dir: &Path) -> Vec<String> {
    walk(dir).iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect()
}

fn find_plan(out: &Path) -> std::path::PathBuf {
    std::fs::read_dir(out.join("_plans")).unwrap().flatten().map(|e| e.path()).find(|p| p.extension().is_some_and(|x| x == "plan")).unwrap()
}
