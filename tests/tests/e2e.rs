//! End to end on the default lab: crawler plan → scan → analysis report, checked against the
//! lab's ground truth at every stage, the shipped DuckDB SQL checked against the binary with
//! the real DuckDB CLI, the README's DuckDB recipes run, a policy change caught by `trend`,
//! and the HTML report rendered by a real headless Chromium.

mod common;
use common::*;
use port25_lab::demo::{self, LAB_SCAN};
use std::path::Path;
use std::process::Command;

fn check_report(lab: &Lab, report: &Path) {
    let truth: Vec<serde_json::Value> = serde_json::from_str(&std::fs::read_to_string(lab.datasets().dir.join("truth-providers.json")).unwrap()).unwrap();
    let got: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(report.join("providers.json")).unwrap()).unwrap();
    let rows: Vec<&serde_json::Value> = got["providers"].as_array().unwrap().iter().filter(|r| r["port"] == 25 && r["direction"] == "inbound").collect();
    for t in &truth {
        let row = rows.iter().find(|r| r["org_id"] == t["org_id"] && r["family"] == t["family"]);
        let what = format!("{} {}", t["provider"], t["family"]);
        if t["verdict"] == "absent" {
            assert!(row.is_none(), "{what} should be absent, got {row:?}");
            continue;
        }
        let row = row.unwrap_or_else(|| panic!("{what}: no row"));
        assert_eq!(row["verdict"], t["verdict"], "{what}: verdict");
        if t["verdict"] == "blocks" || t["verdict"] == "mixed" {
            assert_eq!(row["mechanism"], t["mechanism"], "{what}: mechanism");
            assert_eq!(row["location"], t["location"], "{what}: location");
        }
        println!("  {what}: {} {} {} (n={})", row["verdict"], row["mechanism"], row["location"], row["informative"]);
    }
    let meta = &got["meta"];
    assert!(meta["measured"].as_str().unwrap().contains("inbound") && meta["measured"].as_str().unwrap().contains("outbound"));
    assert_eq!(meta["vantage"], "lab-vantage");
    check_outbound(lab, &got, report);
}

/// Every provider's outbound verdict per family and mail port (source-port reflection) as the
/// ground truth says; the stateful one reported open (invisible to reflection), and the
/// report saying so.
fn check_outbound(lab: &Lab, got: &serde_json::Value, report: &Path) {
    let truth: Vec<serde_json::Value> = serde_json::from_str(&std::fs::read_to_string(lab.datasets().dir.join("truth-outbound.json")).unwrap()).unwrap();
    let rows: Vec<&serde_json::Value> = got["providers"].as_array().unwrap().iter().filter(|r| r["direction"] == "outbound" && r["method"] == "reflection").collect();
    let (mut checked, mut stateful) = (0, 0);
    for t in &truth {
        let row = rows.iter().find(|r| r["org_id"] == t["org_id"] && r["family"] == t["family"] && r["port"] == t["port"]);
        let what = format!("{} {} outbound {}", t["provider"], t["family"], t["port"]);
        if t["verdict"] == "absent" {
            assert!(row.is_none(), "{what} should be absent, got {row:?}");
            continue;
        }
        let row = row.unwrap_or_else(|| panic!("{what}: no row"));
        assert_eq!(row["verdict"], t["verdict"], "{what}: verdict (row {row})");
        assert_eq!(row["method"], "reflection");
        if t["verdict"] == "blocks" {
            assert_eq!(row["mechanism"], t["mechanism"], "{what}: mechanism");
            println!("  {what}: {} {} (n={}, {} excluded for dropping fixed source ports)", row["verdict"], row["mechanism"], row["informative"], row["excluded_source_port"]);
        }
        if t["stateful_block"] == true {
            stateful += 1;
            println!("  {what}: {} — a stateful block, invisible to reflection, as expected", row["verdict"]);
        }
        checked += 1;
    }
    assert!(checked >= 60 && stateful == 2, "{checked} outbound rows checked, {stateful} stateful");
    // The hosts that drop fixed source ports were excluded by the neutral control, not counted.
    let oc = rows.iter().find(|r| r["org_id"] == "ORG-OPENCLOUD" && r["family"] == "ipv4" && r["port"] == 25).unwrap();
    assert!(oc["excluded_source_port"].as_u64().unwrap() >= 5 && oc["verdict"] == "open", "{oc}");
    let md = std::fs::read_to_string(report.join("report.md")).unwrap();
    assert!(md.contains("Can the providers' customers send mail out?") && md.contains("stateless egress filters") && md.contains("stateful"), "report.md does not lead with the outbound answer and its reach");
}

fn check_duckdb_sql(lab: &Lab, data: &Path, report: &Path) {
    let (inbound, outbound) = sql_agrees_with_binary(data, &lab.datasets().f("lab.as-org2info.jsonl"), report);
    assert!(outbound >= 60);
    println!("DuckDB SQL agrees with the binary on {inbound} inbound and {outbound} outbound provider rows");
}

/// Every ```sql block of the README runs with the real DuckDB CLI against this crawl (and the
/// lab's AS2Org file where a recipe names one).
fn check_readme_recipes(data: &Path, orgs: &str) {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let mut n = 0;
    for block in readme.split("```sql\n").skip(1) {
        let sql = block.split("```").next().unwrap().replace("crawls/", &format!("{}/", data.display())).replace("'as-org2info.jsonl'", &format!("'{orgs}'"));
        let out = duckdb(&sql);
        assert!(out.lines().count() >= 2, "recipe returned nothing:\n{sql}");
        n += 1;
    }
    assert!(n >= 5, "README has {n} DuckDB recipes");
    println!("{n} README DuckDB recipes ran");
}

fn check_html_in_chromium(report: &Path) {
    let (dom, (w, h, non_white, colours)) = render_in_chromium(&report.join("report.html"));
    for id in ["answer", "outbound-reach", "chart-outbound", "providers-outbound", "chart-rates", "chart-ports", "chart-family", "chart-trend", "providers-25", "measured"] {
        assert!(dom.contains(&format!("id=\"{id}\"")), "rendered page lacks #{id}");
    }
    assert!(dom.matches("<svg").count() >= 5, "charts did not render as SVG");
    assert!(dom.contains("started blocking"), "trend change not shown");
    // The screenshot is a real picture: many non-white pixels, several colours.
    println!("screenshot {w}x{h}: {non_white} non-white pixels, {colours} colours");
    assert!(non_white > 50_000 && colours > 50);
}

/// Bring the default lab up, plan it and scan it with `flags`: the lab, the crawl's data
/// directory and how long the scan took (s).
fn crawl_default_lab(flags: &[&str]) -> (Lab, std::path::PathBuf, f64) {
    let lab = Lab::up("default");
    let ds = lab.datasets();
    demo::plan(&ds, &lab.path("plan.parquet"), 400, true).unwrap();
    let data = lab.path("data");
    let t0 = std::time::Instant::now();
    demo::scan(&lab.state, &ds, &lab.path("plan.parquet"), &data, flags).unwrap();
    (lab, data, t0.elapsed().as_secs_f64())
}

#[test]
#[ignore = "lab test: needs root and network namespaces (tests/run-tests.sh runs it)"]
fn crawl_and_report_match_the_lab_ground_truth() {
    if !require_root("e2e") || !require_tool("e2e", "duckdb") || !require_tool("e2e", "chromium") {
        return;
    }
    let mut flags = LAB_SCAN.to_vec();
    flags.extend(["--rate", "20000", "--crawl-id", "a-first", "--seed", "1"]);
    let (lab, data, took) = crawl_default_lab(&flags);
    let ds = lab.datasets();
    println!("scan took {took:.1} s");
    check_observations(&lab, &data);
    demo::report(&ds, &data, &lab.path("report1"), &[]).unwrap();
    check_report(&lab, &lab.path("report1"));
    check_duckdb_sql(&lab, &data, &lab.path("report1"));
    check_readme_recipes(&data, &ds.f("lab.as-org2info.jsonl"));

    // OpenCloud starts dropping 25 at its border; the next crawl and the trend must say so.
    let b0 = &lab.state.borders[0];
    sh(&format!("ip netns exec {b0} nft insert rule inet p25lab forward_filter iifname uplink tcp dport 25 drop"));
    let mut flags = LAB_SCAN.to_vec();
    flags.extend(["--rate", "20000", "--crawl-id", "b-second", "--ports", "25", "--seed", "2"]);
    demo::scan(&lab.state, &ds, &lab.path("plan.parquet"), &data, &flags).unwrap();
    demo::report(&ds, &data, &lab.path("report2"), &[]).unwrap();
    let p: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(lab.path("report2/providers.json")).unwrap()).unwrap();
    let oc = p["providers"].as_array().unwrap().iter().find(|r| r["org_id"] == "ORG-OPENCLOUD" && r["family"] == "ipv4" && r["port"] == 25 && r["direction"] == "inbound").unwrap();
    assert_eq!(oc["verdict"], "blocks");
    let o = Command::new(analysis())
        .args(["trend", "--data", data.to_str().unwrap(), "--orgs", &ds.f("lab.as-org2info.jsonl"), "--out", lab.path("trend").to_str().unwrap(), "--routes"])
        .args(ds.routes())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let changes = std::fs::read_to_string(lab.path("trend/changes.json")).unwrap();
    assert!(changes.contains("OpenCloud Hosting") && changes.contains("started blocking between"), "{changes}");
    assert!(!changes.contains("DropNet"), "unchanged providers flagged: {changes}");
    check_html_in_chromium(&lab.path("report2"));
    let left = lab.down();
    assert!(left.is_empty());
}

/// A send log far smaller than the crawl: slots of final attempts are reused, so senders wait
/// out each probe's cooldown and record it as silent before reusing its slot. Every probe must
/// still be one row, matching the ground truth as well as with the default log.
#[test]
#[ignore = "lab test: needs root and network namespaces (tests/run-tests.sh runs it)"]
fn a_small_send_log_keeps_every_probe_and_its_cooldown() {
    if !require_root("e2e") {
        return;
    }
    let flags = ["--asn-rate", "0", "--net-rate", "0", "--retry-delay", "1", "--cooldown", "1", "--rate", "20000", "--send-log", "2048", "--seed", "3"];
    let (lab, data, took) = crawl_default_lab(&flags);
    check_observations(&lab, &data);
    let m = std::fs::read_to_string(find_manifest(&data)).unwrap();
    let m: serde_json::Value = serde_json::from_str(&m).unwrap();
    let s = &m["summary"];
    println!("send log of 2048 slots: {} sends, {} silent rows, scan {took:.1} s", s["sent"], s["rows_by_reply"]["none"]);
    assert_eq!(s["unlogged"], 0);
    // The last pass reused slots of its own final attempts, so it was held to 2048 probes per
    // cooldown (1 s): at least (silent rows - 2048) / 2048 s on top of the earlier passes.
    let silent = s["rows_by_reply"]["none"].as_u64().unwrap();
    assert!(silent > 4096, "too few silent probes ({silent}) to exercise slot reuse");
    assert!(took >= (silent - 2048) as f64 / 2048.0, "final pass faster than its cooldowns allow: {took:.1} s");
    assert!(lab.down().is_empty());
}
