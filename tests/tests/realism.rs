//! The lab where the Internet is less kind (`tests/topologies/realism.toml`): routers
//! rate-limit ICMP errors as real ones do, two borders ban sources that look like scanners, and
//! a second measuring vantage has a transit path that drops 25 towards one provider.
//!
//! 1. The same plan crawled at the default settings from both vantages at once: no scan
//!    detector trips (their ban sets stay empty), every provider's verdict, mechanism and
//!    location from each vantage is the ground truth's for that vantage (ICMP filters under
//!    the rate limit included), and the report compares the vantages — the path filter comes
//!    out `path-specific`, everything else agrees.
//! 2. An aggressive crawl (no per-network limits, 60 random ports per AS) trips both
//!    detectors; the two providers come out `vantage-banned` with the time, never `blocks`,
//!    and no other provider is called banned.

mod common;
use common::*;
use port25_lab::demo::{self, ALT_VANTAGE, LAB_SCAN};
use std::path::Path;

/// The sources a border's scan detector has banned (IPv4 and IPv6).
fn banned(border_ns: &str) -> Vec<String> {
    let mut out = vec![];
    for set in ["banned4", "banned6"] {
        let o = std::process::Command::new("ip").args(["netns", "exec", border_ns, "nft", "-j", "list", "set", "inet", "p25lab", set]).output().unwrap();
        assert!(o.status.success(), "nft list set {set} in {border_ns}: {}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        for item in v["nftables"].as_array().unwrap() {
            for e in item["set"]["elem"].as_array().into_iter().flatten() {
                out.push(e.get("elem").map_or_else(|| e.to_string(), |x| x["val"].to_string()));
            }
        }
    }
    out
}

fn providers(report: &Path) -> Vec<serde_json::Value> {
    let got: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(report.join("providers.json")).unwrap()).unwrap();
    got["providers"].as_array().unwrap().clone()
}

fn truth(lab: &Lab, file: &str) -> Vec<serde_json::Value> {
    serde_json::from_str(&std::fs::read_to_string(lab.datasets().dir.join(file)).unwrap()).unwrap()
}

/// Every inbound port-25 row of `vantage` against the ground truth in `truth_file`; returns
/// the number of rows checked.
fn check_vantage(lab: &Lab, rows: &[serde_json::Value], vantage: &str, truth_file: &str) -> usize {
    let mut checked = 0;
    for t in truth(lab, truth_file) {
        let row = rows.iter().find(|r| r["vantage"] == vantage && r["port"] == 25 && r["direction"] == "inbound" && r["org_id"] == t["org_id"] && r["family"] == t["family"]);
        let what = format!("{} {} from {vantage}", t["provider"], t["family"]);
        if t["verdict"] == "absent" {
            assert!(row.is_none(), "{what} should be absent");
            continue;
        }
        let row = row.unwrap_or_else(|| panic!("{what}: no row"));
        println!("  {what}: {} {} {} (n={}; {})", row["verdict"], row["mechanism"], row["location"], row["informative"], row["evidence"]);
        assert_eq!(row["verdict"], t["verdict"], "{what}: verdict ({row})");
        if t["verdict"] == "blocks" || t["verdict"] == "mixed" {
            assert_eq!(row["mechanism"], t["mechanism"], "{what}: mechanism ({row})");
            assert_eq!(row["location"], t["location"], "{what}: location ({row})");
        }
        checked += 1;
    }
    checked
}

#[test]
#[ignore = "lab test: needs root and network namespaces (tests/run-tests.sh runs it)"]
fn icmp_rate_limits_scan_bans_and_a_second_vantage() {
    if !require_root("realism") {
        return;
    }
    let lab = Lab::up("realism");
    let ds = lab.datasets();
    let st = &lab.state;
    assert!(!st.vantage_alt.is_empty(), "the realism lab has a second vantage");
    let detectors: Vec<(String, String)> = lab.topo.providers.iter().enumerate().filter(|(_, p)| p.border.ban.is_some()).map(|(i, p)| (p.org_id.clone(), st.borders[i].clone())).collect();
    assert_eq!(detectors.len(), 2);
    // 60 hosts per AS: ≥ 30 informative ones per provider and family after 30 % dead.
    demo::plan(&ds, &lab.path("plan.parquet"), 60, true).unwrap();

    // 1. Default settings, both vantages at once, one data directory.
    let t0 = std::time::Instant::now();
    let data = lab.path("data");
    std::thread::scope(|s| {
        let alt = s.spawn(|| demo::scan_from(&st.vantage_alt, ALT_VANTAGE, &ds, &lab.path("plan.parquet"), &data, &["--crawl-id", "alt", "--retries", "2"]));
        demo::scan(st, &ds, &lab.path("plan.parquet"), &data, &["--crawl-id", "main", "--retries", "2"]).unwrap();
        alt.join().unwrap().unwrap();
    });
    println!("two default crawls in {:.1} s", t0.elapsed().as_secs_f64());
    for (org, ns) in &detectors {
        assert!(banned(ns).is_empty(), "{org}'s scan detector banned a default crawl: {:?}", banned(ns));
    }
    let report = lab.path("report");
    demo::report(&ds, &data, &report, &["--vantage", "lab-vantage", "--no-trend"]).unwrap();
    let rows = providers(&report);
    let main = check_vantage(&lab, &rows, "lab-vantage", "truth-providers.json");
    let alt = check_vantage(&lab, &rows, ALT_VANTAGE, "truth-providers-alt.json");
    println!("verdict, mechanism and location as the ground truth says: {main} rows from the main vantage, {alt} from the second");
    assert!(rows.iter().all(|r| r["verdict"] != "vantage-banned"), "a default crawl reported a ban");
    let prohibit = rows.iter().find(|r| r["org_id"] == "ORG-PROHIBIT" && r["family"] == "ipv4" && r["port"] == 25 && r["vantage"] == "lab-vantage").unwrap();
    println!("Prohibit Hosting ipv4 at the default rates: {} ({})", prohibit["states"], prohibit["evidence"]);
    // The vantages compared: the path filter, and nothing else, is path-specific.
    let mut v = csv::Reader::from_path(report.join("vantages.csv")).unwrap();
    let hdr = v.headers().unwrap().clone();
    let col = |r: &csv::StringRecord, n: &str| r.get(hdr.iter().position(|h| h == n).unwrap()).unwrap().to_string();
    let cmp: Vec<csv::StringRecord> = v.records().map(|r| r.unwrap()).filter(|r| col(r, "port") == "25" && col(r, "direction") == "inbound").collect();
    let mut agree = 0;
    for r in &cmp {
        let path_filtered = col(r, "org_id") == "ORG-PATHFILTERED" && col(r, "family") == "ipv4";
        if path_filtered {
            assert_eq!(col(r, "agreement"), "path-specific", "{r:?}");
            assert_eq!(col(r, "blocked_from"), ALT_VANTAGE);
        } else {
            assert!(col(r, "agreement") == "agree" || col(r, "agreement") == "not-comparable", "{r:?}");
            agree += (col(r, "agreement") == "agree") as usize;
        }
    }
    println!("vantages: {agree} of {} provider rows agree, PathFiltered ipv4 path-specific", cmp.len());
    let md = std::fs::read_to_string(report.join("report.md")).unwrap();
    assert!(md.contains("## Vantages compared") && md.contains("path-specific") && md.contains("Samples: IPv4 hosts from a random sample"), "report.md lacks the vantage comparison or the sampling statement");

    // 2. An aggressive crawl from the main vantage trips both detectors.
    let aggr = lab.path("aggressive");
    let mut flags: Vec<&str> = LAB_SCAN.to_vec();
    flags.extend(["--rate", "2000", "--random-ports", "60", "--retries", "1", "--crawl-id", "aggressive"]);
    demo::scan(st, &ds, &lab.path("plan.parquet"), &aggr, &flags).unwrap();
    for (org, ns) in &detectors {
        assert!(!banned(ns).is_empty(), "{org}'s scan detector did not trip: the test would not see a ban");
    }
    let report2 = lab.path("report-aggressive");
    demo::report(&ds, &aggr, &report2, &["--no-trend"]).unwrap();
    let rows = providers(&report2);
    // At this rate the border's ICMP rate limit bites: the rule that names the filter anyway.
    let prohibit = rows.iter().find(|r| r["org_id"] == "ORG-PROHIBIT" && r["family"] == "ipv4" && r["port"] == 25 && r["direction"] == "inbound").unwrap();
    println!("Prohibit Hosting ipv4 at 2,000 pps: {} {} {} ({})", prohibit["states"], prohibit["mechanism"], prohibit["location"], prohibit["evidence"]);
    assert_eq!((&prohibit["verdict"], &prohibit["mechanism"], &prohibit["location"]), (&"blocks".into(), &"icmp-prohibited".into(), &"in-provider".into()), "{prohibit}");
    let states = prohibit["states"].as_str().unwrap();
    assert!(states.contains("silent=") && states.contains("icmp-prohibited=") && prohibit["evidence"].as_str().unwrap().contains("rate limit"), "{prohibit}");
    for r in rows.iter().filter(|r| r["port"] == 25 && r["direction"] == "inbound") {
        let detector = detectors.iter().any(|(o, _)| r["org_id"] == o.as_str());
        println!("  aggressive: {} {}: {} {}", r["provider"], r["family"], r["verdict"], r["banned_since"]);
        if detector && r["family"] == "ipv4" {
            assert_eq!(r["verdict"], "vantage-banned", "{r}");
            assert!(r["rate"].is_null(), "a banned row publishes no rate: {r}");
            assert!(r["banned_since"].as_str().is_some_and(|t| t.starts_with("20")), "{r}");
        } else {
            assert_ne!(r["verdict"], "vantage-banned", "{r}");
        }
    }
    assert!(lab.down().is_empty());
}
