//! Least privilege, observed from outside: while a scan runs, `/proc/PID/status` of the
//! crawler (every thread of it) shows no capability in any set and an unprivileged uid —
//! started as root (it becomes `nobody`) and started as `nobody` with only CAP_NET_RAW (it
//! clears it) — and the scan still completes and writes every row.

mod common;
use common::*;
use port25_lab::demo::{self, LAB_SCAN};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const NOBODY: u32 = 65534;

/// One thread's status fields that matter here.
#[derive(Debug, Clone, PartialEq)]
struct Creds {
    /// The process's name: `ip` and `setpriv` before they exec the crawler.
    name: String,
    uid: Vec<u32>,
    gid: Vec<u32>,
    groups: String,
    cap: [u64; 5], // Inh, Prm, Eff, Bnd, Amb
    no_new_privs: bool,
}

fn creds(status: &str) -> Creds {
    let field = |k: &str| status.lines().find_map(|l| l.strip_prefix(&format!("{k}:")).map(|v| v.trim().to_string())).unwrap_or_default();
    let hex = |k: &str| u64::from_str_radix(&field(k), 16).unwrap();
    let nums = |k: &str| field(k).split_whitespace().map(|x| x.parse().unwrap()).collect();
    Creds { name: field("Name"), uid: nums("Uid"), gid: nums("Gid"), groups: field("Groups"), cap: [hex("CapInh"), hex("CapPrm"), hex("CapEff"), hex("CapBnd"), hex("CapAmb")], no_new_privs: field("NoNewPrivs") == "1" }
}

/// Every thread of `pid`, by thread id.
fn threads(pid: u32) -> Vec<(String, Creds)> {
    let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return vec![] };
    rd.flatten().filter_map(|e| Some((e.file_name().to_string_lossy().into_owned(), creds(&std::fs::read_to_string(e.path().join("status")).ok()?)))).collect()
}

/// Poll the crawler until `dropped` says its privileges are gone; every thread then (the scan
/// still running), how long it took, and the distinct states the main thread was seen in.
fn watch(ch: &mut std::process::Child, dropped: impl Fn(&Creds) -> bool) -> (Vec<(String, Creds)>, f64, Vec<Creds>) {
    let pid = ch.id();
    let ended = |ch: &mut std::process::Child, what: &str| {
        if let Some(st) = ch.try_wait().unwrap() {
            let mut e = String::new();
            std::io::Read::read_to_string(ch.stderr.as_mut().unwrap(), &mut e).unwrap();
            panic!("{what} ({st}): {e}");
        }
    };
    let t0 = Instant::now();
    let mut seen: Vec<Creds> = vec![];
    loop {
        ended(ch, "the scan ended before its privileges were seen dropped");
        let main = std::fs::read_to_string(format!("/proc/{pid}/status")).map(|s| creds(&s)).unwrap();
        if seen.last() != Some(&main) {
            seen.push(main.clone());
        }
        if dropped(&main) {
            // Let the receive and record threads start, then look at every thread.
            std::thread::sleep(Duration::from_millis(300));
            let all = threads(pid);
            ended(ch, "the scan must still be running while it is inspected");
            return (all, t0.elapsed().as_secs_f64(), seen);
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "no privilege drop seen in 30 s: {main:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn scan_cmd(lab: &Lab, pre: &[&str], data: &Path, id: &str) -> Command {
    let ds = lab.datasets();
    let mut c = Command::new("ip");
    c.args(["netns", "exec", &lab.state.vantage]).args(pre).arg(crawler());
    c.args(["--quiet", "scan", "--plan", lab.path("plan.parquet").to_str().unwrap(), "--out", data.to_str().unwrap()]);
    c.args(["--allow-reserved", demo::LAB_ALLOW, "--opt-out", &ds.f("opt-out.txt"), "--vantage", "lab-vantage", "--crawl-id", id]);
    c.args(LAB_SCAN).args(["--rate", "8000", "--cooldown", "3"]);
    c.stdout(Stdio::null()).stderr(Stdio::piped());
    c
}

/// Rows under `data`, and whether every file there is owned by `uid`.
fn rows_and_owner(data: &Path, uid: u32) -> (usize, Vec<String>) {
    let rows = read_rows(data, &["ip"]).len();
    let mut wrong = vec![];
    fn walk(p: &Path, uid: u32, wrong: &mut Vec<String>) {
        for e in std::fs::read_dir(p).unwrap().flatten() {
            let m = e.metadata().unwrap();
            if m.is_dir() {
                walk(&e.path(), uid, wrong);
            } else if m.uid() != uid {
                wrong.push(format!("{} (uid {})", e.path().display(), m.uid()));
            }
        }
    }
    walk(data, uid, &mut wrong);
    (rows, wrong)
}

fn assert_nothing_left(all: &[(String, Creds)], bounding_too: bool) {
    assert!(!all.is_empty());
    for (tid, c) in all {
        assert_eq!(c.uid, vec![NOBODY; 4], "thread {tid}: {c:?}");
        assert_eq!(c.gid, vec![NOBODY; 4], "thread {tid}: {c:?}");
        assert_eq!(c.groups, "", "thread {tid}: {c:?}");
        let [inh, prm, eff, bnd, amb] = c.cap;
        assert_eq!((inh, prm, eff, amb), (0, 0, 0, 0), "thread {tid}: {c:?}");
        if bounding_too {
            assert_eq!(bnd, 0, "thread {tid}: bounding set {bnd:#x}");
        }
        assert!(c.no_new_privs, "thread {tid}: NoNewPrivs not set");
    }
}

#[test]
#[ignore = "lab test: needs root and network namespaces (tests/run-tests.sh runs it)"]
fn started_as_root_the_scan_runs_as_nobody_without_capabilities() {
    if !require_root("privs_root") {
        return;
    }
    let lab = Lab::up("default");
    // nobody must reach the output inside the lab's directory, whatever the umask made of it.
    std::fs::set_permissions(lab.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    demo::plan(&lab.datasets(), &lab.path("plan.parquet"), 400, true).unwrap();
    let planned = read_rows(&lab.path("plan.parquet"), &["ip"]).len();
    let data = lab.path("data");
    let mut ch = scan_cmd(&lab, &[], &data, "privs-root").spawn().unwrap();
    let (all, secs, seen) = watch(&mut ch, |c| c.uid.first() == Some(&NOBODY));
    let o = ch.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(seen[0].uid, vec![0; 4], "started as root");
    assert_nothing_left(&all, true);
    let (rows, wrong) = rows_and_owner(&data, NOBODY);
    println!("root → nobody after {secs:.2} s; {} threads checked during the scan: no capability in any set (bounding too), uid/gid 65534, no groups, NoNewPrivs; {rows} rows written for {planned} targets", all.len());
    assert_eq!(rows, planned * 12, "every probe recorded (3 mail, 3 control, 2 random ports, 4 reflection source ports)");
    assert!(wrong.is_empty(), "files not written as nobody: {wrong:?}");
}

#[test]
#[ignore = "lab test: needs root and network namespaces (tests/run-tests.sh runs it)"]
fn started_with_only_cap_net_raw_the_scan_clears_it() {
    if !require_root("privs_cap") || !require_tool("privs_cap", "setpriv") {
        return;
    }
    let lab = Lab::up("default");
    std::fs::set_permissions(lab.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    demo::plan(&lab.datasets(), &lab.path("plan.parquet"), 400, true).unwrap();
    let planned = read_rows(&lab.path("plan.parquet"), &["ip"]).len();
    let data = lab.path("data");
    std::fs::create_dir(&data).unwrap();
    std::os::unix::fs::chown(&data, Some(NOBODY), Some(NOBODY)).unwrap();
    let pre = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=+net_raw", "--ambient-caps=+net_raw"];
    let mut ch = scan_cmd(&lab, &pre, &data, "privs-cap").spawn().unwrap();
    const NET_RAW: u64 = 1 << 13;
    let (all, secs, seen) = watch(&mut ch, |c| c.uid.first() == Some(&NOBODY) && c.cap[2] == 0 && c.cap[4] == 0);
    let o = ch.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The crawler as nobody before the drop (if the polling caught it): CAP_NET_RAW and
    // nothing else. (`setpriv` itself passes through nobody with every capability on its way.)
    let before: Vec<_> = seen.iter().filter(|c| c.name == "crawler" && c.uid[0] == NOBODY && c.cap[2] != 0).collect();
    assert!(before.iter().all(|c| c.cap[2] == NET_RAW && c.cap[4] == NET_RAW), "{before:?}");
    let first = before.first().map_or("not caught".to_string(), |c| format!("CapEff {:#x}, CapAmb {:#x}", c.cap[2], c.cap[4]));
    assert_nothing_left(&all, false);
    let (rows, wrong) = rows_and_owner(&data, NOBODY);
    println!("nobody + CAP_NET_RAW (before the drop: {first}) → cleared after {secs:.2} s; {} threads checked during the scan: CapInh/Prm/Eff/Amb 0, NoNewPrivs; {rows} rows for {planned} targets", all.len());
    assert_eq!(rows, planned * 12, "every probe recorded (3 mail, 3 control, 2 random ports, 4 reflection source ports)");
    assert!(wrong.is_empty(), "{wrong:?}");
}

/// `plan` and `analysis` open no raw socket: as nobody, with every capability set and the
/// bounding set empty, they do their whole job.
#[test]
#[ignore = "lab test: needs root and network namespaces (tests/run-tests.sh runs it)"]
fn plan_and_analysis_run_as_nobody_without_any_capability() {
    if !require_root("privs_none") || !require_tool("privs_none", "setpriv") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let fixture = |n: &str| root().join("datasets/fixtures").join(n).to_string_lossy().into_owned();
    let gen = d.path().join("gen");
    assert!(Command::new(env!("CARGO_BIN_EXE_lab")).args(["gen-crawl", "--rows", "8000", "--ases", "4", "--files", "1", "--out", gen.to_str().unwrap()]).status().unwrap().success());
    let nobody = |bin: std::path::PathBuf, args: &[&str]| {
        let o = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs"])
            .arg(bin)
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let plan = d.path().join("plan.parquet");
    let out = nobody(crawler(), &["plan", "--routes", &fixture("routeviews-rv2-20261101-1200.pfx2as"), "--orgs", &fixture("20261001.as-org2info.txt"), "--per-asn", "20", "--out", plan.to_str().unwrap()]);
    assert!(out.contains("targets"), "{out}");
    let rep = d.path().join("report");
    let out = nobody(analysis(), &["report", "--data", gen.to_str().unwrap(), "--routes", gen.join("routes.pfx2as").to_str().unwrap(), "--orgs", gen.join("as-org2info.jsonl").to_str().unwrap(), "--out", rep.to_str().unwrap()]);
    assert!(out.contains("rows") && rep.join("providers.csv").exists(), "{out}");
    assert_eq!(std::fs::metadata(&plan).unwrap().uid(), NOBODY);
    println!("crawler plan and analysis report ran as nobody with no capability (bounding set empty)");
}
