//! A resumed crawl cannot hide what its earlier runs lost: every run's counters stay in the
//! manifest's history and the crawl's counters are their sums, so
//! - a run that lost replies (its receive ring overflowed: the crawler stopped while 120,000
//!   forged replies arrived) and was interrupted fails the completeness gate after the resume
//!   that finishes the crawl, as it did before it;
//! - a run killed with -9 never wrote its counters: the manifest says so and the report says
//!   its drops are unknown.

mod common;
use common::*;
use port25_lab::demo::{self, Datasets};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const NOBODY: &str = "65534";

fn config(ds: &Datasets, out: &Path, id: &str) -> String {
    crawl_config(ds, out, id, "rate = 3000", &[])
}

fn spawn_run(lab: &Lab, cfg: &Path, resume: bool) -> Child {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", &lab.state.vantage]).arg(crawler()).args(["--quiet", "run", "--config"]).arg(cfg);
    if resume {
        c.arg("--resume");
    }
    c.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
}

/// Wait until the crawl is probing: it runs as nobody (privileges dropped after its sockets
/// opened), then a moment more.
fn wait_probing(ch: &mut Child) {
    let t0 = Instant::now();
    loop {
        assert!(ch.try_wait().unwrap().is_none(), "the crawl ended before it was caught probing");
        let st = std::fs::read_to_string(format!("/proc/{}/status", ch.id())).unwrap_or_default();
        if st.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some(NOBODY)) {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "the crawl never dropped its privileges");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(1500));
    assert!(ch.try_wait().unwrap().is_none(), "the crawl ended too soon for this test");
}

fn signal(ch: &Child, sig: i32) {
    // SAFETY: signalling our own child (ip netns exec has exec'd the crawler).
    unsafe { libc::kill(ch.id() as i32, sig) };
}

fn manifest(out: &Path) -> serde_json::Value {
    let day = std::fs::read_dir(out).unwrap().flatten().map(|e| e.path()).find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("crawl_date="))).unwrap();
    serde_json::from_str(&std::fs::read_to_string(find_named(&day, "manifest.json")).unwrap()).unwrap()
}

fn report(lab: &Lab, data: &Path, out: &Path) -> Output {
    let ds = lab.datasets();
    Command::new(analysis()).args(["report", "--data", data.to_str().unwrap(), "--orgs", &ds.f("lab.as-org2info.jsonl"), "--out", out.to_str().unwrap(), "--routes"]).args(ds.routes()).output().unwrap()
}

fn finish(lab: &Lab, cfg: &Path) {
    let o = spawn_run(lab, cfg, true).wait_with_output().unwrap();
    assert!(o.status.success(), "the resume: {}", String::from_utf8_lossy(&o.stderr));
}

#[test]
#[ignore = "lab test: needs root and network namespaces (tests/run-tests.sh runs it)"]
fn a_lossy_interrupted_run_still_fails_the_gate_once_resumed() {
    if !require_root("lossy_resume") {
        return;
    }
    let lab = Lab::up("default");
    let (cfg, out) = (lab.path("crawl.toml"), lab.path("crawls"));
    std::fs::write(&cfg, config(&lab.datasets(), &out, "lossy")).unwrap();
    let mut ch = spawn_run(&lab, &cfg, false);
    wait_probing(&mut ch);
    // The crawler stops reading while replies keep coming: its receive ring (~30,000 replies)
    // overflows and the kernel counts what it dropped.
    signal(&ch, libc::SIGSTOP);
    let forged = sh(&format!("ip netns exec {} {} forge --topology {} --provider 0 --count 40000", lab.state.hosts[0], demo::sibling("lab").unwrap().display(), lab.topo_path.display()));
    std::thread::sleep(Duration::from_millis(300));
    signal(&ch, libc::SIGCONT);
    std::thread::sleep(Duration::from_millis(500));
    signal(&ch, libc::SIGINT);
    let o = ch.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", String::from_utf8_lossy(&o.stderr));
    let first = manifest(&out);
    let (drops, frames) = (first["summary"]["receive_drops"].as_u64().unwrap(), first["summary"]["frames_received"].as_u64().unwrap());
    println!("{}; the interrupted run: {drops} replies dropped by the receive ring of {} that arrived", forged.trim(), drops + frames);
    assert!(drops * 1000 > drops + frames, "the ring should have overflowed: {drops} drops, {frames} frames");
    let rep = lab.path("report-interrupted");
    assert_eq!(report(&lab, &out, &rep).status.code(), Some(2), "an interrupted crawl is incomplete");

    // The resume finishes the crawl, losing nothing itself: the crawl still lost what it lost.
    finish(&lab, &cfg);
    let m = manifest(&out);
    let s = &m["summary"];
    println!("resumed: crawl counters: {} replies dropped, {} frames received, {} sent; runs {}", s["receive_drops"], s["frames_received"], s["sent"], s["runs"]);
    let o = report(&lab, &out, &lab.path("report"));
    let err = String::from_utf8_lossy(&o.stderr);
    println!("analysis report: exit {:?}: {}", o.status.code(), err.trim());
    assert_eq!(o.status.code(), Some(2), "the resumed crawl passed the completeness gate: {err}");
    assert!(err.contains("receive ring dropped"), "{err}");
    assert_eq!(m["exit_status"], "complete");
    assert!(s["receive_drops"].as_u64().unwrap() >= drops, "the crawl's drops are the sum over its runs: {s}");
    assert_eq!(s["runs"].as_array().map(|r| r.len()), Some(2), "{s}");
    assert_eq!(s["runs"][0]["receive_drops"].as_u64(), Some(drops), "the interrupted run's own counters are kept");
}

#[test]
#[ignore = "lab test: needs root and network namespaces (tests/run-tests.sh runs it)"]
fn a_run_killed_with_9_leaves_its_drops_unknown_and_the_report_says_so() {
    if !require_root("killed_resume") {
        return;
    }
    let lab = Lab::up("default");
    let (cfg, out) = (lab.path("crawl.toml"), lab.path("crawls"));
    std::fs::write(&cfg, config(&lab.datasets(), &out, "killed")).unwrap();
    let mut ch = spawn_run(&lab, &cfg, false);
    wait_probing(&mut ch);
    signal(&ch, libc::SIGKILL);
    ch.wait().unwrap();
    finish(&lab, &cfg);
    let rep: PathBuf = lab.path("report");
    let o = report(&lab, &out, &rep);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let md = std::fs::read_to_string(find_named(&rep, "report.md")).unwrap();
    let line = md.lines().find(|l| l.starts_with("Data:")).unwrap_or_default();
    println!("report: {line}");
    assert!(line.contains("drops unknown: 1 run(s)"), "{line}");
    let m = manifest(&out);
    let s = &m["summary"];
    println!("after kill -9 and a resume: runs {}, {} without counters", s["runs"], s["runs_without_counters"]);
    assert_eq!((s["runs"].as_array().map(|r| r.len()), s["runs_without_counters"].as_u64()), (Some(2), Some(1)), "{s}");
    assert!(s["runs"][0]["finished_at"].is_null() && s["runs"][0]["receive_drops"].is_null(), "the killed run: {}", s["runs"][0]);
}

fn find_named(dir: &Path, name: &str) -> PathBuf {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            if let Some(f) = std::panic::catch_unwind(|| find_named(&p, name)).ok() {
                return f;
            }
        } else if p.file_name().is_some_and(|n| n == name) {
            return p;
        }
    }
    panic!("no {name} under {}", dir.display());
}
