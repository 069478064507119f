//! The confounders lab (`tests/topologies/confounders.toml`): what the real Internet does that a
//! naive lab does not, each with its ground truth. Every inbound, outbound (reflection) and
//! inside (egress) verdict must come out as the truth says:
//!
//! 1. ICMP codes other than admin-prohibited (host/net unreachable, host/net prohibited) at a
//!    border, upstream, and on the reflected path (an ingress ACL on source port 25): filters,
//!    named by their code and placed by their sender;
//! 2. ECMP fabrics: per-flow TTLs a hop apart are no injection, a real injector in front still is;
//! 3. a vantage whose own network drops packets to port 25: the self-check stops it (exit 3),
//!    and a crawl from it has its reflection-25 verdicts withheld;
//! 4. policy NAT at an egress vantage: another public address is not interception;
//! 5. an outage of the sinks for a few seconds mid-run is neither a throttle nor a block;
//! 6. a provider null-routing one of two sinks: that sink is unreachable, the other decides;
//! 7. Cisco ASA inspection (banner masked, STARTTLS rewritten both ways), a terminating TLS
//!    proxy, a pool where one relay in two strips;
//! 8. the vantage's IPv6 path failing mid-crawl: a vantage outage, never bans; one AS's ban
//!    stays that AS's.

mod common;
use common::*;
use port25_lab::demo::{self, LAB_SCAN};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

/// The lab's two ASes of one organization: the first's border bans scanners.
const SPLIT: &str = "ORG-SPLIT";

fn rows<'a>(report: &'a serde_json::Value, method: &str) -> Vec<&'a serde_json::Value> {
    report["providers"].as_array().unwrap().iter().filter(|r| r["method"] == method).collect()
}

/// Inbound 25 and outbound 25/465/587 (reflection) per provider and family as the truth says.
fn check_crawl_verdicts(ds: &Path, got: &serde_json::Value) -> usize {
    let mut n = 0;
    for (file, method) in [("truth-providers.json", "syn-scan"), ("truth-outbound.json", "reflection")] {
        let truth: Vec<serde_json::Value> = serde_json::from_value(json(&ds.join(file))).unwrap();
        let rows = rows(got, method);
        for t in truth.iter().filter(|t| t["org_id"] != SPLIT) {
            let port = t.get("port").cloned().unwrap_or(serde_json::json!(25));
            let what = format!("{} {} {method} port {port}", t["provider"], t["family"]);
            let row = rows.iter().find(|r| r["org_id"] == t["org_id"] && r["family"] == t["family"] && r["port"] == port);
            if t["verdict"] == "absent" {
                assert!(row.is_none(), "{what}: should be absent");
                continue;
            }
            let row = row.unwrap_or_else(|| panic!("{what}: no row"));
            assert_eq!(row["verdict"], t["verdict"], "{what}: {row}");
            if t["verdict"] == "blocks" {
                assert_eq!(row["mechanism"], t["mechanism"], "{what}: {row}");
                if let Some(l) = t.get("location").filter(|l| !l.as_str().unwrap_or("").is_empty()) {
                    assert_eq!(&row["location"], l, "{what}: {row}");
                }
                println!("  {what}: blocks, {} {} — {}", row["mechanism"], row["location"], row["evidence"].as_str().unwrap_or(""));
            }
            n += 1;
        }
    }
    n
}

/// One AS of the organization banned the vantage: that AS's rows say so, the organization's
/// rows are its other AS's verdict (open), with the banned AS left out in the evidence.
fn check_split_org(got: &serde_json::Value) {
    let asns = got["asns"].as_array().unwrap();
    let of = |asn: u64| asns.iter().find(|r| r["asn"] == asn && r["port"] == 25 && r["direction"] == "inbound").unwrap_or_else(|| panic!("no row for AS{asn}"));
    assert_eq!(of(64551)["verdict"], "vantage-banned", "{}", of(64551));
    assert_eq!(of(64552)["verdict"], "open", "{}", of(64552));
    let org = rows(got, "syn-scan").into_iter().find(|r| r["org_id"] == SPLIT && r["port"] == 25).unwrap();
    assert_eq!(org["verdict"], "open", "the organization inherited one AS's ban: {org}");
    assert!(org["evidence"].as_str().unwrap().contains("AS64551 left out"), "{org}");
    println!("  {SPLIT}: AS64551 vantage-banned ({}), AS64552 open, the organization open from AS64552 alone", of(64551)["banned_since"]);
}

/// Drop everything to and from both sinks in the core for `secs`, `after` seconds from now.
fn sink_outage(core: String, after: f64, secs: f64) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs_f64(after));
        let rules = "table inet p25outage {\n  chain f {\n    type filter hook forward priority -10; policy accept;\n    iifname { \"s0\", \"s1\" } drop\n    oifname { \"s0\", \"s1\" } drop\n  }\n}\n";
        let mut c = Command::new("ip").args(["netns", "exec", &core, "nft", "-f", "-"]).stdin(std::process::Stdio::piped()).spawn().unwrap();
        use std::io::Write;
        c.stdin.take().unwrap().write_all(rules.as_bytes()).unwrap();
        assert!(c.wait().unwrap().success());
        std::thread::sleep(Duration::from_secs_f64(secs));
        sh(&format!("ip netns exec {core} nft delete table inet p25outage"));
    })
}

const EGRESS_COLS: [&str; 7] = ["vantage", "sink", "ip_version", "port", "attempt", "verdict", "detail"];

/// Every attempt as the truth says, or `outage` (the sinks were cut off for a while); every
/// vantage saw the outage; NAT is never interception.
fn check_attempts(truth: &[serde_json::Value], rows: &[Vec<Option<String>>]) -> BTreeMap<String, usize> {
    let col = |r: &[Option<String>], k: &str| r[EGRESS_COLS.iter().position(|c| *c == k).unwrap()].clone().unwrap_or_default();
    let mut outages: BTreeMap<String, usize> = BTreeMap::new();
    let mut bad = vec![];
    for r in rows {
        let fam = if col(r, "ip_version") == "6" { "ipv6" } else { "ipv4" };
        let t = truth
            .iter()
            .find(|t| t["vantage"] == col(r, "vantage") && t["sink"] == col(r, "sink") && t["family"] == fam && t["port"].to_string() == col(r, "port"))
            .unwrap_or_else(|| panic!("an attempt outside the truth: {r:?}"));
        let k: u64 = col(r, "attempt").parse().unwrap();
        let v = col(r, "verdict");
        let want = if t["alternating"] == true {
            if k % 2 == 0 { "open" } else { "stripped" }
        } else if t["verdict"] == "throttled" {
            // The throttle's bucket does not care why a connection failed: once it has let its
            // connections through, the rest fail (throttled, or outage in the cut-off rounds).
            if k < t["first_open"].as_u64().unwrap() { "open" } else { "throttled" }
        } else {
            t["verdict"].as_str().unwrap()
        };
        *outages.entry(col(r, "vantage")).or_default() += usize::from(v == "outage");
        // The cut-off rounds are outages; a sink unreachable throughout stays that.
        if v != want && !(v == "outage" && want != "sink-unreachable") {
            bad.push(format!("{} {} {fam} {} attempt {k}: {v}, truth {want} ({})", col(r, "vantage"), col(r, "sink"), col(r, "port"), t["reason"]));
        }
        // Policy NAT: the web ports leave from the address the control ports learned, the
        // others from the pool — the sink sees another address, which is said, not judged.
        if t["sink_client"].is_null() && !t["sink_clients"].as_array().unwrap().is_empty() && v == "open" && !matches!(col(r, "port").as_str(), "80" | "443") {
            assert!(col(r, "detail").contains("NAT"), "a NATed attempt does not say so: {r:?}");
        }
    }
    assert!(bad.is_empty(), "{} attempts differ from the truth:\n{}", bad.len(), bad.join("\n"));
    outages
}

fn check_inside_verdicts(ds: &Path, got: &serde_json::Value) -> usize {
    let truth: Vec<serde_json::Value> = serde_json::from_value(json(&ds.join("truth-egress-providers.json"))).unwrap();
    let rows = rows(got, "egress");
    for t in &truth {
        let what = format!("{} {} inside port {}", t["provider"], t["family"], t["port"]);
        let row = rows.iter().find(|r| r["org_id"] == t["org_id"] && r["family"] == t["family"] && r["port"] == t["port"]).unwrap_or_else(|| panic!("{what}: no row"));
        assert_eq!(row["verdict"], t["verdict"], "{what}: {row}");
        if t["verdict"] != "open" {
            println!("  {what}: {} — {}", row["verdict"], row["evidence"].as_str().unwrap_or(""));
        }
    }
    assert_eq!(rows.len(), truth.len(), "egress rows for providers without vantages");
    truth.len()
}

#[test]
#[ignore = "lab test: needs root and network namespaces (tests/run-tests.sh runs it)"]
fn confounded_crawl_and_egress_get_every_verdict_right() {
    if !require_root("confounders") || !require_tool("confounders", "setpriv") || !require_tool("confounders", "duckdb") {
        return;
    }
    let lab = Lab::up("confounders");
    println!("confounders lab up in {:.2} s ({} namespaces)", lab.up_secs, lab.state.namespaces.len());
    let ds = lab.datasets();
    demo::plan(&ds, &lab.path("plan.parquet"), 400, true).unwrap();
    let data = lab.path("data");
    let mut flags = LAB_SCAN.to_vec();
    flags.extend(["--rate", "20000", "--crawl-id", "confounders"]);
    demo::scan(&lab.state, &ds, &lab.path("plan.parquet"), &data, &flags).unwrap();
    // Split Networks' detector bans the lab-speed crawl by design (see `check_split_org`).
    check_observations_banned(&lab, &data, &["Split Networks"]);

    // Egress from every customer vantage to both sinks, 6 rounds 2 s apart; the sinks are cut
    // off from the core from 3 s to 6.5 s into the run (the rounds at ~4 s and ~6 s).
    let egress = lab.path("egress");
    let outage = sink_outage(lab.state.core.clone(), 3.0, 3.5);
    let runs = demo::egress_with(&lab.state, &lab.path("lab"), &egress, &["--repeat", "6", "--interval", "2", "--timeout", "1.5"]).unwrap();
    outage.join().unwrap();
    for r in &runs {
        assert_eq!(r.exit_code, Some(0), "{}: {}", r.vantage, r.stderr);
    }
    port25_lab::netns::stop_sink(&lab.state).unwrap();
    let truth: Vec<serde_json::Value> = serde_json::from_value(json(&ds.dir.join("truth-egress.json"))).unwrap();
    let attempts = read_rows(&egress, &EGRESS_COLS);
    let outages = check_attempts(&truth, &attempts);
    println!("egress: {} attempts as the truth says; outage attempts per vantage {outages:?}", attempts.len());
    for c in &lab.state.customers {
        assert!(outages.get(&c.vantage.name).is_some_and(|n| *n > 0), "{}: the sinks' outage left no trace", c.vantage.name);
    }

    let report = lab.path("report");
    demo::report(&ds, &data, &report, &["--egress", egress.to_str().unwrap()]).unwrap();
    let got = json(&report.join("providers.json"));
    let n = check_crawl_verdicts(&ds.dir, &got);
    check_split_org(&got);
    let inside = check_inside_verdicts(&ds.dir, &got);
    println!("confounders lab: {n} inbound/outbound provider rows and {inside} inside rows match the truth");
    let (i, o) = sql_agrees_with_binary(&data, &ds.f("lab.as-org2info.jsonl"), &report);
    println!("DuckDB SQL agrees with the binary on {i} inbound and {o} outbound rows (ICMP codes, ECMP included)");
    assert!(lab.down().is_empty());
}

#[test]
#[ignore = "lab test: needs root and network namespaces (tests/run-tests.sh runs it)"]
fn a_vantage_that_cannot_hear_reflection_or_loses_ipv6_gets_no_verdict_from_it() {
    if !require_root("confounders") {
        return;
    }
    let lab = Lab::up("confounders");
    let ds = lab.datasets();
    // The run's self-check from the vantage whose network drops packets to port 25: exit 3.
    let cfg = lab.path("crawl.toml");
    std::fs::write(&cfg, crawl_config(&ds, &lab.path("crawls"), "{date}-blind", "rate = 20000", &reference_hosts(&ds))).unwrap();
    let o = run_in(&lab.state.vantage_blind, &cfg, &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "stdout {} stderr {err}", String::from_utf8_lossy(&o.stdout));
    assert!(err.contains("cannot receive reflection replies to source port 25"), "{err}");
    println!("self-check from the reflection-blind vantage: exit 3 — {}", err.lines().find(|l| l.contains("reflection")).unwrap_or(""));

    // A crawl from there anyway (crawler scan has no self-check): reflection from 25 withheld.
    demo::plan(&ds, &lab.path("plan.parquet"), 400, true).unwrap();
    let mut flags = LAB_SCAN.to_vec();
    flags.extend(["--rate", "20000", "--crawl-id", "blind"]);
    let blind = lab.path("blind");
    demo::scan_from(&lab.state.vantage_blind, "lab-vantage-blind", &ds, &lab.path("plan.parquet"), &blind, &flags).unwrap();
    demo::report(&ds, &blind, &lab.path("report-blind"), &[]).unwrap();
    let got = json(&lab.path("report-blind/providers.json"));
    let refl = rows(&got, "reflection");
    let (r25, rest): (Vec<&serde_json::Value>, Vec<&serde_json::Value>) = refl.iter().copied().partition(|r| r["port"] == 25);
    assert!(r25.iter().all(|r| r["verdict"] == "vantage-filtered" && r["rate"].is_null()), "{r25:?}");
    assert!(rest.iter().all(|r| r["verdict"] != "vantage-filtered" && r["verdict"] != "blocks"), "465/587 are not filtered on the vantage's side");
    let md = std::fs::read_to_string(lab.path("report-blind/report.md")).unwrap();
    assert!(md.contains("WITHHELD") && md.contains("drops replies to port 25"), "report.md does not say why");
    println!("crawl from the blind vantage: {} outbound-25 rows withheld (vantage-filtered), {} on 465/587 kept", r25.len(), rest.len());

    // The main vantage's IPv6 path fails 1.5 s into its crawl, for good: a vantage outage of
    // IPv6 — every IPv6 verdict withheld, no network called banned for it — IPv4 untouched.
    let data = lab.path("data");
    let core = lab.state.core.clone();
    let cut = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        sh(&format!("ip netns exec {core} nft add table inet p25v6cut"));
        sh(&format!("ip netns exec {core} nft 'add chain inet p25v6cut f {{ type filter hook forward priority -10; policy accept; }}'"));
        sh(&format!("ip netns exec {core} nft add rule inet p25v6cut f iifname v0 meta nfproto ipv6 drop"));
        sh(&format!("ip netns exec {core} nft add rule inet p25v6cut f oifname v0 meta nfproto ipv6 drop"));
    });
    let mut flags = LAB_SCAN.to_vec();
    flags.extend(["--rate", "20000", "--crawl-id", "v6-cut"]);
    demo::scan(&lab.state, &ds, &lab.path("plan.parquet"), &data, &flags).unwrap();
    cut.join().unwrap();
    demo::report(&ds, &data, &lab.path("report-v6"), &[]).unwrap();
    let got = json(&lab.path("report-v6/providers.json"));
    let truth: Vec<serde_json::Value> = serde_json::from_value(json(&ds.dir.join("truth-providers.json"))).unwrap();
    let inbound = rows(&got, "syn-scan");
    let v6: Vec<&&serde_json::Value> = inbound.iter().filter(|r| r["family"] == "ipv6").collect();
    assert!(!v6.is_empty() && v6.iter().all(|r| r["verdict"] == "vantage-outage"), "{v6:?}");
    for t in truth.iter().filter(|t| t["family"] == "ipv4" && t["verdict"] != "absent" && t["org_id"] != SPLIT) {
        let r = inbound.iter().find(|r| r["org_id"] == t["org_id"] && r["family"] == "ipv4" && r["port"] == 25).unwrap();
        assert_eq!(r["verdict"], t["verdict"], "{}: IPv4 verdict changed by the IPv6 outage: {r}", t["provider"]);
    }
    assert!(!inbound.iter().chain(&rows(&got, "reflection")).any(|r| r["family"] == "ipv6" && r["verdict"] == "vantage-banned"), "an outage read as bans");
    let md = std::fs::read_to_string(lab.path("report-v6/report.md")).unwrap();
    assert!(md.contains("WITHHELD") && md.contains("ipv6 path went dark"), "report.md does not name the outage");
    println!("IPv6 cut mid-crawl: {} IPv6 provider rows withheld as vantage-outage, none called banned; IPv4 as the truth says", v6.len());
    assert!(lab.down().is_empty());
}
