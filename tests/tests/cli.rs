//! Bad input gets a clear error naming the file (and line) and a non-zero exit — never a
//! panic — and nothing already written is lost. These need no root.

mod common;
use common::*;
use std::process::{Command, Output};

fn fixture(n: &str) -> String {
    root().join("datasets/fixtures").join(n).to_string_lossy().into_owned()
}

fn run(bin: std::path::PathBuf, args: &[&str]) -> Output {
    Command::new(bin).args(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn malformed_routes_line_is_named_and_exits_2_without_clobbering_the_old_plan() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("plan.parquet");
    std::fs::write(&out, b"previous plan").unwrap();
    let o = run(crawler(), &["plan", "--routes", &fixture("bad.pfx2as"), "--per-asn", "4", "--out", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("bad.pfx2as:3:"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("panicked"));
    assert_eq!(std::fs::read(&out).unwrap(), b"previous plan");
    // --skip-bad-lines plans what it can and says what it skipped.
    let o = run(crawler(), &["plan", "--routes", &fixture("bad.pfx2as"), "--per-asn", "4", "--skip-bad-lines", "--out", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("skipped 3 malformed input lines"));
}

#[test]
fn bad_cidr_in_an_opt_out_list_is_named() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("plan.parquet");
    let o = run(crawler(), &["plan", "--routes", &fixture("routeviews-rv2-20261101-1200.pfx2as"), "--opt-out", &fixture("opt-out-bad.txt"), "--per-asn", "4", "--out", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("opt-out-bad.txt:4:") && stderr(&o).contains("host bits"), "{}", stderr(&o));
    assert!(!out.exists());
}

#[test]
fn plans_are_reproducible_and_the_seed_matters() {
    let d = tempfile::tempdir().unwrap();
    let plan = |seed: &str, name: &str| {
        let out = d.path().join(name);
        let o = run(crawler(), &["plan", "--routes", &fixture("routeviews-rv2-20261101-1200.pfx2as"), "--per-asn", "50", "--seed", seed, "--out", out.to_str().unwrap()]);
        assert!(o.status.success(), "{}", stderr(&o));
        read_rows(&out, &["ip", "asn", "prefix"])
    };
    let a = plan("7", "a.parquet");
    let b = plan("7", "b.parquet");
    let c = plan("8", "c.parquet");
    assert_eq!(a, b, "same inputs and seed must give the same rows");
    assert_ne!(a, c, "another seed must give another sample");
    // 6 ASes, 50 each at most; the /24 of AS 13335 holds 256 — 1.1.1.0/24 is its second prefix.
    assert!(a.len() >= 250, "{}", a.len());
}

#[test]
fn truncated_parquet_is_named_by_analysis_and_scan() {
    let d = tempfile::tempdir().unwrap();
    let plan = d.path().join("plan.parquet");
    let o = run(crawler(), &["plan", "--routes", &fixture("routeviews-rv2-20261101-1200.pfx2as"), "--per-asn", "50", "--out", plan.to_str().unwrap()]);
    assert!(o.status.success());
    let bytes = std::fs::read(&plan).unwrap();
    let part = d.path().join("data/crawl_date=2026-11-01/crawl_id=x");
    std::fs::create_dir_all(&part).unwrap();
    let cut = part.join("part-1.parquet");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let o = run(
        analysis(),
        &["report", "--allow-incomplete", "--data", d.path().join("data").to_str().unwrap(), "--routes", &fixture("routeviews-rv2-20261101-1200.pfx2as"), "--orgs", &fixture("20261001.as-org2info.txt"), "--out", d.path().join("r").to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("part-1.parquet") && stderr(&o).contains("not a complete Parquet file"), "{}", stderr(&o));
    let o = run(crawler(), &["scan", "--plan", cut.to_str().unwrap(), "--out", d.path().join("o").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("part-1.parquet"), "{}", stderr(&o));
}

#[test]
fn reserved_space_is_refused_unless_allowed() {
    // The lab's datasets announce only special-purpose space: without --allow-reserved nothing is planned.
    let d = tempfile::tempdir().unwrap();
    let topo = root().join("tests/topologies/default.toml");
    let o = Command::new(env!("CARGO_BIN_EXE_lab")).args(["datasets", topo.to_str().unwrap(), "--out", d.path().to_str().unwrap()]).output().unwrap();
    assert!(o.status.success());
    let r = d.path().join("routeviews-rv2-lab.pfx2as");
    let out = d.path().join("plan.parquet");
    let o = run(crawler(), &["plan", "--routes", r.to_str().unwrap(), "--per-asn", "10", "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("0 targets"), "{}", String::from_utf8_lossy(&o.stdout));
    let o = run(crawler(), &["plan", "--routes", r.to_str().unwrap(), "--per-asn", "10", "--allow-reserved", "198.18.0.0/15", "--out", out.to_str().unwrap()]);
    // Allowed, every AS with IPv4 space gets its 10 targets (no IPv6: no hitlist given).
    let t = port25_lab::topology::Topology::load(&topo).unwrap();
    let ases = t.providers.iter().flat_map(|p| &p.ases).filter(|a| !a.v4.is_empty()).count();
    assert!(String::from_utf8_lossy(&o.stdout).contains(&format!("{} targets", ases * 10)), "{}", String::from_utf8_lossy(&o.stdout));
}

#[test]
fn analysis_refuses_an_incomplete_crawl_or_marks_it() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    let o = Command::new(env!("CARGO_BIN_EXE_lab")).args(["gen-crawl", "--rows", "16000", "--ases", "10", "--files", "1", "--out", data.to_str().unwrap()]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let report = |extra: &[&str]| {
        let mut a = vec!["report", "--data", data.to_str().unwrap(), "--routes"];
        let (r, g, out) = (data.join("routes.pfx2as"), data.join("as-org2info.jsonl"), d.path().join("r"));
        a.extend([r.to_str().unwrap(), "--orgs", g.to_str().unwrap(), "--out", out.to_str().unwrap()]);
        a.extend(extra);
        let o = Command::new(analysis()).args(&a).output().unwrap();
        (o.status.code(), stderr(&o), std::fs::read_to_string(out.join("report.md")).unwrap_or_default())
    };
    let (code, err, md) = report(&[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(md.contains("1 manifest(s) of 1 shard(s)") && !md.contains("INCOMPLETE"), "{md}");
    // An interrupted crawl: refused, exit 2, the crawl named; reported when asked, marked.
    let m = data.join("crawl_date=2026-11-01/crawl_id=synthetic/manifest.json");
    let text = std::fs::read_to_string(&m).unwrap();
    std::fs::write(&m, text.replace("\"complete\"", "\"interrupted\"")).unwrap();
    let (code, err, _) = report(&[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("crawl synthetic is incomplete") && err.contains("interrupted") && !err.contains("panicked"), "{err}");
    let (code, err, md) = report(&["--allow-incomplete"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(md.contains("INCOMPLETE CRAWL") && md.contains("interrupted"), "{md}");
    // Too many failed sends.
    std::fs::write(&m, text.replace("\"send_errors\": 0", "\"send_errors\": 900")).unwrap();
    let (code, err, _) = report(&[]);
    assert!(code == Some(2) && err.contains("900 of"), "{err}");
    // No manifest at all.
    std::fs::remove_file(&m).unwrap();
    let (code, err, _) = report(&[]);
    assert!(code == Some(2) && err.contains("no manifest"), "{err}");
}

#[test]
fn edge_addresses_are_skipped_and_an_ipv4_hitlist_replaces_random_draws() {
    let d = tempfile::tempdir().unwrap();
    let routes = d.path().join("r.pfx2as");
    std::fs::write(&routes, "8.8.8.0\t24\t15169\n1.1.1.0\t24\t13335\n").unwrap();
    let plan = |extra: &[&str], name: &str| {
        let out = d.path().join(name);
        let mut a = vec!["plan", "--routes", routes.to_str().unwrap(), "--per-asn", "256", "--out", out.to_str().unwrap()];
        a.extend(extra);
        let o = run(crawler(), &a);
        assert!(o.status.success(), "{}", stderr(&o));
        (read_rows(&out, &["ip"]).into_iter().map(|r| r[0].clone().unwrap()).collect::<Vec<_>>(), String::from_utf8_lossy(&o.stdout).into_owned(), out)
    };
    let (ips, summary, _) = plan(&[], "a.parquet");
    assert_eq!(ips.len(), 2 * 254, "{summary}");
    assert!(ips.iter().all(|ip| !ip.ends_with(".0") && !ip.ends_with(".255")));
    assert!(summary.contains("edge-address 4"), "{summary}");
    let (ips, _, _) = plan(&["--keep-edge-addresses"], "b.parquet");
    assert_eq!(ips.len(), 512);
    // An IPv4 hitlist: IPv4 targets are its addresses (responsive ones), not random draws.
    let hits = d.path().join("hits.txt");
    std::fs::write(&hits, "8.8.8.8\n8.8.8.4\n1.1.1.1\n1.1.1.0\n9.9.9.9\n").unwrap();
    let (ips, summary, out) = plan(&["--hitlist", hits.to_str().unwrap()], "c.parquet");
    let mut ips = ips;
    ips.sort();
    assert_eq!(ips, vec!["1.1.1.0", "1.1.1.1", "8.8.8.4", "8.8.8.8"], "{summary}");
    let meta = datasets::schema::parquet_metadata(&out).unwrap();
    assert!(meta.contains(&("port25.sampling_v4".into(), "hitlist".into())), "{meta:?}");
}

/// Flags that would lead a scan astray are refused before anything else happens (the plan
/// named here does not exist, so nothing could be sent even if a flag slipped through).
#[test]
fn unsafe_crawl_ids_unbounded_retries_and_arbitrary_allow_reserved_exit_2() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("sub/data");
    let plan = d.path().join("no-such-plan.parquet");
    let cases: [(&[&str], &str); 7] = [
        (&["--crawl-id", "../../escaped"], "crawl id `../../escaped`"),
        (&["--crawl-id", ".hidden"], "must not start with `.`"),
        (&["--crawl-id", "a/b"], "crawl id `a/b`"),
        (&["--retries", "11"], "11 is not in 0..=10"),
        (&["--retries", "255"], "255 is not in 0..=10"),
        (&["--allow-reserved", "0.0.0.0/0"], "0.0.0.0/0 is not inside the IANA special-purpose registry"),
        (&["--allow-reserved", "198.18.0.0/15,8.8.8.0/24"], "8.8.8.0/24 is not inside"),
    ];
    for (flags, want) in cases {
        let mut args = vec!["scan", "--plan", plan.to_str().unwrap(), "--out", out.to_str().unwrap()];
        args.extend_from_slice(flags);
        let o = run(crawler(), &args);
        assert_eq!(o.status.code(), Some(2), "{flags:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(want), "{flags:?}: expected `{want}` in {}", stderr(&o));
        assert!(!stderr(&o).contains("panicked"));
    }
    assert!(!d.path().join("escaped").exists() && !out.exists(), "nothing may be created");
    // `plan` refuses an allow-reserved prefix outside special-purpose space too, and plans nothing.
    let p = d.path().join("plan.parquet");
    let o = run(crawler(), &["plan", "--routes", &fixture("routeviews-rv2-20261101-1200.pfx2as"), "--per-asn", "4", "--allow-reserved", "0.0.0.0/0", "--out", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--allow-reserved") && stderr(&o).contains("0.0.0.0/0"), "{}", stderr(&o));
    assert!(!p.exists());
}

/// `crawler scan` runs nothing if a flag or file is wrong; this names an interface that does
/// not exist, so even a plan that loaded could not send a packet from the test machine.
const NO_SEND: [&str; 2] = ["--interface", "p25-none0"];

#[test]
fn corrupted_parquet_is_named_by_scan_and_analysis_and_nothing_written_is_lost() {
    let d = tempfile::tempdir().unwrap();
    let plan = d.path().join("plan.parquet");
    let o = run(crawler(), &["plan", "--routes", &fixture("routeviews-rv2-20261101-1200.pfx2as"), "--per-asn", "50", "--out", plan.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let bad_plan = d.path().join("corrupt.plan");
    std::fs::write(&bad_plan, corrupt(&std::fs::read(&plan).unwrap())).unwrap();
    let o = run(crawler(), &[&["scan", "--plan", bad_plan.to_str().unwrap(), "--out", d.path().join("o").to_str().unwrap()][..], &NO_SEND].concat());
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("corrupt.plan") && stderr(&o).contains("corrupt plan"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("panicked"));

    // A crawl file corrupted the same way, beside a report that must survive the failure.
    let data = d.path().join("data/crawl_date=2026-11-01/crawl_id=x");
    std::fs::create_dir_all(&data).unwrap();
    let gen = d.path().join("gen");
    assert!(Command::new(env!("CARGO_BIN_EXE_lab")).args(["gen-crawl", "--rows", "4000", "--ases", "4", "--files", "1", "--out", gen.to_str().unwrap()]).status().unwrap().success());
    let part = std::fs::read_dir(gen.join("crawl_date=2026-11-01/crawl_id=synthetic")).unwrap().flatten().map(|e| e.path()).find(|p| p.extension().is_some_and(|x| x == "parquet")).unwrap();
    std::fs::write(data.join("part-1.parquet"), corrupt(&std::fs::read(&part).unwrap())).unwrap();
    std::fs::write(data.join("part-0.parquet"), std::fs::read(&part).unwrap()).unwrap();
    let report = d.path().join("report");
    std::fs::create_dir_all(&report).unwrap();
    std::fs::write(report.join("providers.csv"), "the previous report\n").unwrap();
    let o = run(
        analysis(),
        &["report", "--data", d.path().join("data").to_str().unwrap(), "--routes", gen.join("routes.pfx2as").to_str().unwrap(), "--orgs", gen.join("as-org2info.jsonl").to_str().unwrap(), "--out", report.to_str().unwrap(), "--allow-incomplete"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("part-1.parquet") && stderr(&o).contains("corrupt crawl file"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("panicked"));
    assert_eq!(std::fs::read_to_string(report.join("providers.csv")).unwrap(), "the previous report\n");
    assert_eq!(std::fs::read_dir(&report).unwrap().count(), 1, "nothing else written");
}

#[test]
fn duplicate_plan_rows_are_probed_once_and_said() {
    use datasets::schema::{plan_schema, PlanBatch, PlanRow};
    let d = tempfile::tempdir().unwrap();
    let plan = d.path().join("dups.plan");
    let mut batch = PlanBatch::with_capacity(4);
    // Lab (special-purpose) space: refused at send time anyway without --allow-reserved.
    for (ip, asn) in [("198.18.0.5", 64501), ("198.18.0.9", 64500), ("198.18.0.5", 64500), ("2001:db8::5", 64502), ("2001:db8::5", 64502)] {
        batch.push(&PlanRow { ip, ip_version: if ip.contains(':') { 6 } else { 4 }, asn, prefix: "198.18.0.0/24", org_id: "o", org_name: "o", category: None, category_source: None });
    }
    let mut w = parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&plan).unwrap(), plan_schema(), None).unwrap();
    w.write(&batch.finish()).unwrap();
    w.close().unwrap();
    let o = run(crawler(), &[&["scan", "--plan", plan.to_str().unwrap(), "--out", d.path().join("o").to_str().unwrap()][..], &NO_SEND].concat());
    assert!(stderr(&o).contains("dups.plan: 2 duplicate addresses in the plan; each address is probed once (with the lowest AS number among its rows)"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("panicked"));
}

#[test]
fn empty_routes_a_config_directory_and_an_out_of_the_wrong_kind_exit_2() {
    let d = tempfile::tempdir().unwrap();
    let empty = d.path().join("empty.pfx2as");
    std::fs::write(&empty, "").unwrap();
    let comments = d.path().join("comments.pfx2as");
    std::fs::write(&comments, "# nothing announced\n\n").unwrap();
    let plan = d.path().join("plan.parquet");
    std::fs::write(&plan, b"previous plan").unwrap();
    for (routes, fmt) in [(&empty, None), (&comments, None), (&empty, Some("pfx2as")), (&comments, Some("pfx2as"))] {
        let mut args = vec!["plan", "--routes", routes.to_str().unwrap(), "--per-asn", "4", "--out", plan.to_str().unwrap()];
        if let Some(f) = fmt {
            args.extend(["--routes-format", f]);
        }
        let o = run(crawler(), &args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        let name = routes.file_name().unwrap().to_str().unwrap();
        assert!(stderr(&o).contains(name) && (stderr(&o).contains("empty routes file") || stderr(&o).contains("no prefixes")), "{args:?}: {}", stderr(&o));
        assert_eq!(std::fs::read(&plan).unwrap(), b"previous plan");
    }
    // A config that is a directory.
    let o = run(crawler(), &["run", "--config", d.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains(d.path().to_str().unwrap()) && stderr(&o).contains("cannot read the config"), "{}", stderr(&o));
    // --out of the wrong kind: a file for scan and report, a directory for plan; the file stays.
    let file = d.path().join("a-file");
    std::fs::write(&file, "keep me").unwrap();
    let o = run(crawler(), &[&["scan", "--plan", plan.to_str().unwrap(), "--out", file.to_str().unwrap()][..], &NO_SEND].concat());
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("a-file") && stderr(&o).contains("not a directory"), "{}", stderr(&o));
    let o = run(analysis(), &["report", "--data", d.path().to_str().unwrap(), "--routes", &fixture("routeviews-rv2-20261101-1200.pfx2as"), "--orgs", &fixture("20261001.as-org2info.txt"), "--out", file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("a-file") && stderr(&o).contains("not a directory"), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
    let o = run(crawler(), &["plan", "--routes", &fixture("routeviews-rv2-20261101-1200.pfx2as"), "--per-asn", "4", "--out", d.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("is a directory"), "{}", stderr(&o));
    for o in [&o] {
        assert!(!stderr(o).contains("panicked"));
    }
}

/// Plans the fuzzer crafted that made the parquet crate panic (a column of negative size; a
/// dictionary page of zero values): errors naming the file, exit 2, from scan and analysis.
#[test]
fn parquet_files_that_crashed_the_decoder_are_bad_input() {
    for name in ["fuzz-negative-column-size.plan", "fuzz-empty-dictionary.plan"] {
        let f = fixture(name);
        let d = tempfile::tempdir().unwrap();
        let o = run(crawler(), &[&["scan", "--plan", &f, "--out", d.path().join("o").to_str().unwrap()][..], &NO_SEND].concat());
        assert_eq!(o.status.code(), Some(2), "{name}: {}", stderr(&o));
        assert!(stderr(&o).contains(name) && !stderr(&o).contains("panicked"), "{name}: {}", stderr(&o));
        let part = d.path().join("data/crawl_date=2026-11-01/crawl_id=x");
        std::fs::create_dir_all(&part).unwrap();
        std::fs::copy(&f, part.join("part-1.parquet")).unwrap();
        let o = run(analysis(), &["report", "--data", d.path().join("data").to_str().unwrap(), "--routes", &fixture("routeviews-rv2-20261101-1200.pfx2as"), "--orgs", &fixture("20261001.as-org2info.txt"), "--out", d.path().join("r").to_str().unwrap(), "--allow-incomplete"]);
        assert_eq!(o.status.code(), Some(2), "{name}: {}", stderr(&o));
        assert!(stderr(&o).contains("part-1.parquet") && !stderr(&o).contains("panicked"), "{name}: {}", stderr(&o));
    }
}

/// `--partition-hosts` bounds memory, never the answer: a crawl split into hash partitions in
/// temporary files gives the same reports, byte for byte, as one folded whole, and the
/// partitions' files are gone afterwards.
#[test]
fn a_partitioned_analysis_reports_what_a_whole_one_does() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    let o = Command::new(env!("CARGO_BIN_EXE_lab")).args(["gen-crawl", "--rows", "120000", "--ases", "40", "--files", "3", "--out", data.to_str().unwrap()]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let report = |out: &std::path::Path, extra: &[&str]| {
        let (r, g) = (data.join("routes.pfx2as"), data.join("as-org2info.jsonl"));
        let mut a = vec!["report", "--no-trend", "--data", data.to_str().unwrap(), "--routes", r.to_str().unwrap(), "--orgs", g.to_str().unwrap(), "--out", out.to_str().unwrap()];
        a.extend(extra);
        let o = Command::new(analysis()).args(&a).env("PORT25_LOG", "debug").output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        stderr(&o)
    };
    let (whole, parts) = (d.path().join("whole"), d.path().join("parts"));
    let log = report(&whole, &[]);
    assert!(log.contains("(1 partition(s)"), "{log}");
    let log = report(&parts, &["--partition-hosts", "1000"]);
    // 10,000 hosts in partitions of at most 500 hosts: 20 of them.
    assert!(log.contains("(20 partition(s)"), "{log}");
    for f in ["providers.csv", "asns.csv", "providers.json", "report.md", "report.html"] {
        let (a, b) = (std::fs::read(whole.join(f)).unwrap(), std::fs::read(parts.join(f)).unwrap());
        assert!(a == b, "{f} differs between the whole and the partitioned analysis");
    }
    let mut left: Vec<String> = walk(&parts).iter().map(|p| p.strip_prefix(&parts).unwrap().display().to_string()).collect();
    left.sort();
    assert_eq!(left, ["asns.csv", "documented.csv", "hosts.parquet", "providers.csv", "providers.json", "report.html", "report.md"], "partition files left behind");
}
