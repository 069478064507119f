//! Outbound from inside, end to end on the default lab: the demo's pipeline (plan, scan,
//! `crawler egress` as nobody from every customer vantage to the lab's sink, `analysis report
//! --egress`), checked against the lab's egress ground truth per (vantage, port, family) and
//! attempt, against the sink's own records (server-side twins by nonce), with the README's
//! DuckDB join on the real files, and in the provider report (three views side by side, the
//! disagreements named, the HTML rendered by headless Chromium).

mod common;
use common::*;
use port25_lab::demo::{self, EgressRun, EGRESS_REPEAT};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

pub const EGRESS_COLS: [&str; 13] = ["vantage", "ip_version", "port", "attempt", "outcome", "verdict", "sink_id", "icmp_type", "icmp_code", "icmp_responder", "local_port", "you_matches", "sink"];
const SINK_COLS: [&str; 7] = ["nonce", "client_ip", "client_port", "local_port", "ip_version", "commands", "tls_done"];

type Rows = Vec<Vec<Option<String>>>;

fn col<'a>(r: &'a [Option<String>], cols: &[&str], name: &str) -> Option<&'a str> {
    r[cols.iter().position(|c| *c == name).unwrap()].as_deref()
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

/// Each egress run exited 0, as uid 65534 with no capabilities (read from /proc while it ran).
fn check_privileges(out: &Path, customers: usize) {
    let runs: Vec<EgressRun> = serde_json::from_value(json(&out.join("egress-runs.json"))).unwrap();
    assert_eq!(runs.len(), customers);
    for r in &runs {
        assert_eq!(r.exit_code, Some(0), "{}: {}", r.vantage, r.stderr);
        assert!(r.unprivileged(), "{} ran as uid {:?} with CapEff {:?} CapPrm {:?}", r.vantage, r.uid, r.cap_eff, r.cap_prm);
    }
    let secs: Vec<f64> = runs.iter().map(|r| r.secs).collect();
    println!("egress ran in {} vantages as nobody (Uid 65534, CapEff and CapPrm 0): {:.1}–{:.1} s each", runs.len(), secs.iter().cloned().fold(f64::MAX, f64::min), secs.iter().cloned().fold(0.0, f64::max));
}

/// The verdict and outcome truth promises for attempt `k` of a series.
fn expected(t: &serde_json::Value, k: u32) -> (&str, &str) {
    if t["alternating"] == true {
        return (if k % 2 == 0 { "open" } else { "stripped" }, "established");
    }
    match t["first_open"].as_u64() {
        Some(n) if (k as u64) < n => ("open", "established"),
        _ => {
            let v = t["verdict"].as_str().unwrap();
            let o = if matches!(v, "open" | "intercepted" | "stripped" | "tls-intercepted") { "established" } else { t["outcome"].as_str().unwrap() };
            (v, o)
        }
    }
}

/// Every (vantage, port, family) series and each of its attempts as the ground truth says.
fn check_attempts(truth: &[serde_json::Value], rows: &Rows) -> BTreeMap<String, (usize, usize)> {
    let c = &EGRESS_COLS;
    let mut by: HashMap<(String, String, String, String), Vec<&Vec<Option<String>>>> = HashMap::new();
    for r in rows {
        by.entry((col(r, c, "vantage").unwrap().into(), col(r, c, "sink").unwrap().into(), col(r, c, "ip_version").unwrap().into(), col(r, c, "port").unwrap().into())).or_default().push(r);
    }
    let mut per_verdict: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut bad = vec![];
    for t in truth {
        let fam = if t["family"] == "ipv6" { "6" } else { "4" };
        let key = (t["vantage"].as_str().unwrap().to_string(), t["sink"].as_str().unwrap().to_string(), fam.to_string(), t["port"].to_string());
        let series = by.get(&key).unwrap_or_else(|| panic!("no attempts for {key:?}"));
        assert_eq!(series.len(), EGRESS_REPEAT as usize, "{key:?}: attempts");
        for r in series {
            let k: u32 = col(r, c, "attempt").unwrap().parse().unwrap();
            let (v, o) = expected(t, k);
            let got = (col(r, c, "verdict").unwrap(), col(r, c, "outcome").unwrap());
            if got != (v, o) {
                bad.push(format!("{key:?} attempt {k}: got {got:?}, truth {v}/{o} ({})", t["reason"]));
            }
            if o == "icmp" {
                let icmp = (col(r, c, "icmp_type"), col(r, c, "icmp_code"), col(r, c, "icmp_responder"));
                let want = (t["icmp_type"].to_string(), t["icmp_code"].to_string(), t["icmp_responder"].as_str().unwrap().to_string());
                assert_eq!(icmp, (Some(want.0.as_str()), Some(want.1.as_str()), Some(want.2.as_str())), "{key:?} attempt {k}: ICMP");
            }
        }
        let e = per_verdict.entry(t["verdict"].as_str().unwrap().to_string()).or_default();
        e.0 += 1;
        e.1 += series.len();
    }
    assert!(bad.is_empty(), "{} attempts differ from the ground truth:\n{}", bad.len(), bad.join("\n"));
    assert_eq!(rows.len(), truth.len() * EGRESS_REPEAT as usize, "no attempt outside the truth's series");
    per_verdict
}

/// The sink recorded exactly the connections that reached it: every established attempt with
/// the sink's greeting has its twin by nonce, from the client the truth names; an intercepted
/// attempt has none; the sink saw nothing else.
fn check_twins(truth: &[serde_json::Value], egress: &Rows, sink: &Rows) -> (usize, usize) {
    let (c, sc) = (&EGRESS_COLS, &SINK_COLS);
    let twins: HashMap<&str, &Vec<Option<String>>> = sink.iter().map(|r| (col(r, sc, "nonce").unwrap(), r)).collect();
    let truth_of = |r: &[Option<String>]| {
        let fam = if col(r, c, "ip_version") == Some("6") { "ipv6" } else { "ipv4" };
        truth.iter().find(|t| t["vantage"] == col(r, c, "vantage").unwrap() && t["sink"] == col(r, c, "sink").unwrap() && t["family"] == fam && t["port"].to_string() == col(r, c, "port").unwrap()).unwrap()
    };
    let (mut matched, mut intercepted) = (0, 0);
    for r in egress.iter().filter(|r| col(r, c, "outcome") == Some("established")) {
        let t = truth_of(r);
        let ctx = format!("{r:?}");
        match col(r, c, "sink_id") {
            None => {
                assert_eq!(col(r, c, "verdict"), Some("intercepted"), "{ctx}: established without the sink's greeting");
                assert!(t["sink_client"].is_null(), "{ctx}: truth says the sink sees it");
                intercepted += 1;
            }
            Some(id) => {
                let twin = twins.get(id).unwrap_or_else(|| panic!("{ctx}: no server-side twin"));
                assert_eq!(col(twin, sc, "local_port"), col(r, c, "port"), "{ctx}");
                let clients: Vec<&str> = t["sink_clients"].as_array().unwrap().iter().map(|x| x.as_str().unwrap()).collect();
                assert!(clients.contains(&col(twin, sc, "client_ip").unwrap()), "{ctx}: the sink saw another client than {clients:?}");
                let natted = t["sink_client"].is_null();
                match col(r, c, "verdict").unwrap() {
                    "open" if natted => {}
                    "open" => assert_eq!(col(twin, sc, "client_port"), col(r, c, "local_port"), "{ctx}: same 4-tuple"),
                    // Cisco ASA turns our STARTTLS into XXXXXXXX: the sink's side of the session says so.
                    "stripped" => assert_eq!(col(twin, sc, "commands"), Some("EHLO XXXXXXXX QUIT"), "{ctx}: the sink heard the rewritten STARTTLS"),
                    "tls-intercepted" => assert_eq!(col(twin, sc, "tls_done"), Some("true"), "{ctx}: the proxy's own TLS to the sink"),
                    v => panic!("{ctx}: verdict {v} with the sink's greeting"),
                }
                matched += 1;
            }
        }
    }
    let ids: HashSet<&str> = egress.iter().filter_map(|r| col(r, c, "sink_id")).collect();
    let stray: Vec<&&Vec<Option<String>>> = twins.iter().filter(|(n, _)| !ids.contains(*n)).map(|(_, r)| r).collect();
    assert!(stray.is_empty(), "the sink recorded connections no egress attempt made: {stray:?}");
    assert_eq!(matched, sink.len());
    (matched, intercepted)
}

/// The README's DuckDB join of egress rows to their sink twins, on the lab's real files.
fn check_duckdb_join(egress: &Path, sink: &Path) -> usize {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let sql = readme.split("```sh\nduckdb <<'SQL'\n").map(|b| b.split("SQL\n```").next().unwrap()).find(|b| b.contains("sink_twins")).expect("the README's egress-to-sink join recipe");
    let sql = sql.replace("'egress/", &format!("'{}/", egress.display())).replace("'sink/", &format!("'{}/", sink.display()));
    let o = std::process::Command::new("duckdb").args(["-csv", "-c", &sql]).output().unwrap();
    assert!(o.status.success(), "{sql}\n{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let mut rdr = csv::Reader::from_reader(out.as_bytes());
    let hdr = rdr.headers().unwrap().clone();
    let mut n = 0;
    for r in rdr.records().map(|r| r.unwrap()) {
        let get = |k: &str| r.get(hdr.iter().position(|h| h == k).unwrap()).unwrap().to_string();
        let (est, twins, other) = (get("established"), get("sink_twins"), get("twins_from_another_address"));
        match get("verdict").as_str() {
            "intercepted" => assert_eq!(twins, "0", "{r:?}"),
            "stripped" | "tls-intercepted" => assert!(twins == est && other == est, "{r:?}"),
            _ => assert!(twins == est && other == "0", "{r:?}"),
        }
        n += 1;
    }
    assert!(n >= 100, "the join returned {n} rows");
    n
}

/// `analysis report --egress`: every provider's inside verdict per family and mail port as the
/// truth says, each vantage placed in its provider, reflection vs inside (dis)agreement named.
fn check_report(ds: &Path, report: &Path, series: &[serde_json::Value]) {
    let truth: Vec<serde_json::Value> = serde_json::from_value(json(&ds.join("truth-egress-providers.json"))).unwrap();
    let got = json(&report.join("providers.json"));
    let rows: Vec<&serde_json::Value> = got["providers"].as_array().unwrap().iter().filter(|r| r["method"] == "egress").collect();
    let cmp = got["comparisons"].as_array().unwrap();
    let mut disagree = 0;
    for t in &truth {
        let what = format!("{} {} port {}", t["provider"], t["family"], t["port"]);
        let row = rows.iter().find(|r| r["org_id"] == t["org_id"] && r["family"] == t["family"] && r["port"] == t["port"]).unwrap_or_else(|| panic!("{what}: no egress row"));
        assert_eq!((&row["verdict"], &row["informative"], &row["direction"]), (&t["verdict"], &t["vantages"], &serde_json::json!("outbound")), "{what}: {row}");
        let c = cmp.iter().find(|c| c["org_id"] == t["org_id"] && c["family"] == t["family"] && c["port"] == t["port"]);
        match t["agree"].as_bool() {
            None => assert!(c.is_none(), "{what}: compared though reflection is not decisive"),
            Some(a) => {
                let c = c.unwrap_or_else(|| panic!("{what}: not compared"));
                assert_eq!(c["agree"], a, "{what}: {c}");
                disagree += usize::from(!a);
            }
        }
    }
    assert_eq!(rows.len(), truth.len(), "egress rows for providers without vantages");
    for v in got["egress_vantages"].as_array().unwrap() {
        let t = series.iter().find(|t| t["vantage"] == v["vantage"]).unwrap_or_else(|| panic!("a vantage the lab does not have: {v}"));
        assert_eq!(v["org_id"], t["org_id"], "vantage placed in the wrong provider: {v}");
    }
    assert!(got["egress_unmapped"].as_array().unwrap().is_empty());
    let md = std::fs::read_to_string(report.join("report.md")).unwrap();
    for needle in ["inbound 25 (scan)", "outbound 25 (reflection)", "outbound 25 (inside)", "reflection vs inside", "Where the methods disagree", "**StatefulOut Cloud** (ipv4, port 25): reflection sees outbound 25 open, the vantages inside are blocked"] {
        assert!(md.contains(needle), "report.md lacks {needle:?}");
    }
    println!("report: {} egress provider rows match the truth; {disagree} reflection-vs-inside disagreements named", rows.len());
}

/// The lab providers' documented policies beside the three views: five true, OpenCloud's stale
/// on purpose — exactly its two rows (IPv4, IPv6 port 25) disagree, with the scope as reading.
fn check_documented(report: &Path) {
    let got = json(&report.join("providers.json"));
    let docs = got["documented"].as_array().expect("providers.json lists the documented policies");
    let key = |d: &serde_json::Value| format!("{} {} {}", d["org_id"].as_str().unwrap(), d["family"].as_str().unwrap(), d["port"]);
    let mut disagree: Vec<String> = docs.iter().filter(|d| d["agreement"] == "disagree").map(key).collect();
    disagree.sort();
    assert_eq!(disagree, ["ORG-OPENCLOUD ipv4 25", "ORG-OPENCLOUD ipv6 25"], "{docs:#?}");
    let agree: Vec<String> = docs.iter().filter(|d| d["agreement"] == "agree").map(key).collect();
    // Egress25 (2), SubmitOnly 25/465/587 (6), SixOut IPv6 (1), StatefulOut (2), Throttle25 (2).
    assert_eq!(agree.len(), 13, "{agree:?}");
    assert_eq!(docs.len(), 15);
    let oc = docs.iter().find(|d| d["agreement"] == "disagree").unwrap();
    assert!(oc["reading"].as_str().unwrap().contains("new accounts"), "{oc}");
    let st = docs.iter().find(|d| d["org_id"] == "ORG-STATEFULOUT").unwrap();
    assert!(st["reading"].as_str().unwrap().contains("stateful"), "{st}");
    let md = std::fs::read_to_string(report.join("report.md")).unwrap();
    assert!(md.contains("## Documented vs measured") && md.contains("13 of 15 documented policies") && md.contains("documented (outbound)"), "report.md lacks the documented views");
    println!("documented vs measured: 13 of 15 lab policies agree, OpenCloud's stale one disagrees on IPv4 and IPv6 (reading: {})", oc["reading"]);
}

fn check_html(report: &Path) {
    let (dom, (w, h, non_white, colours)) = render_in_chromium(&report.join("report.html"));
    for id in ["answer", "egress-reach", "findings", "providers-egress", "egress-vantages", "providers-outbound", "providers-25", "measured", "documented"] {
        assert!(dom.contains(&format!("id=\"{id}\"")), "rendered page lacks #{id}");
    }
    assert!(dom.contains("outbound 25<br>(inside)") && dom.contains("differ on 25") && dom.contains("throttled (n=1 vantage)"), "the answer table lacks the inside view");
    println!("report.html in Chromium: {w}x{h}, {non_white} non-white pixels, {colours} colours");
    assert!(non_white > 50_000 && colours > 50);
}

#[test]
#[ignore = "lab test: needs root and network namespaces (tests/run-tests.sh runs it)"]
fn egress_from_customer_vantages_matches_the_truth_the_sink_and_the_report() {
    if !require_root("egress") || !require_tool("egress", "setpriv") || !require_tool("egress", "duckdb") || !require_tool("egress", "chromium") {
        return;
    }
    let lab = Lab::up("default");
    println!("lab up in {:.2} s ({} namespaces, {} customer vantages)", lab.up_secs, lab.state.namespaces.len(), lab.state.customers.len());
    let (state, out) = (lab.path("lab"), lab.path("demo"));
    let t0 = std::time::Instant::now();
    demo::run(&lab.topo, &lab.state, &state, &out, 20_000).unwrap();
    println!("demo pipeline (plan, scan, egress, report) in {:.1} s", t0.elapsed().as_secs_f64());
    check_privileges(&out, lab.state.customers.len());

    let ds = lab.datasets();
    let truth: Vec<serde_json::Value> = serde_json::from_value(json(&ds.dir.join("truth-egress.json"))).unwrap();
    let egress = read_rows(&out.join("egress"), &EGRESS_COLS);
    let mut sink = read_rows(&state.join("sink"), &SINK_COLS);
    sink.extend(read_rows(&state.join("sink2"), &SINK_COLS));
    let per = check_attempts(&truth, &egress);
    for (v, (series, attempts)) in &per {
        println!("  {v:<16} {series:>3} (vantage, port, family) series, {attempts:>3} attempts match the truth");
    }
    for v in ["open", "blocked", "throttled", "intercepted", "stripped", "tls-intercepted"] {
        assert!(per.contains_key(v), "no {v} series in the lab");
    }
    let (twins, intercepted) = check_twins(&truth, &egress, &sink);
    println!("sink: {} connections recorded, each the twin of one established attempt ({twins}); {intercepted} intercepted attempts without one", sink.len());
    let n = check_duckdb_join(&out.join("egress"), &state.join("sink"));
    println!("README's DuckDB egress-to-sink join: {n} rows agree");
    check_report(&ds.dir, &out.join("report"), &truth);
    check_documented(&out.join("report"));
    check_html(&out.join("report"));
    assert!(lab.down().is_empty());
}
