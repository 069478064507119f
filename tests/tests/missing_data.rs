//! Missing data must never read as filtering: a probe whose final attempt could not be sent is
//! recorded as `unsent` (not as silence), counted in the manifest, and `analysis` refuses the
//! crawl as incomplete.

mod common;
use common::*;
use port25_lab::demo::{self, LAB_SCAN};
use std::process::{Command, Stdio};

#[test]
#[ignore = "lab test: needs root and network namespaces (tests/run-tests.sh runs it)"]
fn sends_that_fail_are_recorded_as_unsent_not_as_silence() {
    if !require_root("unsent") {
        return;
    }
    let lab = Lab::up("default");
    let ds = lab.datasets();
    demo::plan(&ds, &lab.path("plan.parquet"), 400, true).unwrap();
    // One pass (every attempt is final), slow enough that the link goes down mid-scan.
    let mut scan = Command::new("ip")
        .args(["netns", "exec", &lab.state.vantage])
        .arg(crawler())
        .args(["--quiet", "scan", "--plan", lab.path("plan.parquet").to_str().unwrap(), "--out", lab.path("data").to_str().unwrap()])
        .args(["--allow-reserved", demo::LAB_ALLOW, "--opt-out", &ds.f("opt-out.txt"), "--vantage", "lab-vantage", "--crawl-id", "down"])
        .args(LAB_SCAN)
        .args(["--rate", "4000", "--retries", "0", "--cooldown", "1"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    sh(&format!("ip -n {} link set eth0 down", lab.state.vantage));
    assert!(scan.wait().unwrap().success());
    let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(find_manifest(&lab.path("data"))).unwrap()).unwrap();
    let s = &m["summary"];
    let (errors, unsent, sent) = (s["send_errors"].as_u64().unwrap(), s["rows_by_reply"]["unsent"].as_u64().unwrap(), s["sent"].as_u64().unwrap());
    println!("link down mid-scan: {sent} sent, {errors} send errors, {unsent} rows unsent, {} silent", s["rows_by_reply"]["none"]);
    assert!(errors > 1000, "only {errors} sends failed");
    assert_eq!(unsent, errors, "every failed final attempt is an `unsent` row");
    assert_eq!(s["rows"].as_u64().unwrap(), s["probes_planned"].as_u64().unwrap() - s["skipped"]["opt-out"].as_u64().unwrap_or(0), "every probe one row");
    // A silent row must have been sent: every `none` row's probe left (no more silence than
    // the probes that went out and got no answer).
    let none = s["rows_by_reply"]["none"].as_u64().unwrap();
    let answered: u64 = ["synack", "rst", "icmp"].iter().map(|k| s["rows_by_reply"][k].as_u64().unwrap()).sum();
    assert!(none + answered <= sent, "{none} silent + {answered} answered rows but only {sent} probes sent");
    // analysis refuses the crawl: its numbers would read lost probes as filtering.
    let o = Command::new(analysis())
        .args(["report", "--data", lab.path("data").to_str().unwrap(), "--orgs", &ds.f("lab.as-org2info.jsonl"), "--out", lab.path("rep").to_str().unwrap(), "--routes"])
        .args(ds.routes())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("is incomplete") && err.contains("sends failed"), "{err}");
    assert!(lab.down().is_empty());
}
