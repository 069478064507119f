//! Many vantages, one dataset: crawls, egress and the sink write to an object store — a real
//! S3 server (SeaweedFS), run inside the lab's sink namespace so that the lab's vantages reach
//! it — through their local spools, and everything in the bucket is what a disk would hold.
//!
//! - a lab crawl into the bucket matches the ground truth exactly as the same crawl on disk
//!   does, probe for probe, and its manifest is there;
//! - the store stopped mid-crawl and restarted: the crawl completes, every probe once;
//! - `crawler run` killed with -9 while it uploads: no partial object in the bucket (every
//!   Parquet file there reads), and `--resume` finishes the crawl, every probe once;
//! - egress results sent to the sink with the fleet token land in the bucket through the sink's
//!   spool; a wrong token is refused and the file kept;
//! - `analysis report --data s3://…` gives the same reports as the same files on disk, and
//!   DuckDB (1.4.4 with httpfs) runs the README's recipes on the bucket.

mod common;
use common::*;
use port25_lab::demo::{self, LAB_ALLOW, LAB_SCAN};
use port25_lab::netns::{self, AS_NOBODY};
use port25_lab::s3::SeaweedFs;
use port25_lab::topology::addr;
use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const PORT: u16 = 8333;

fn endpoint() -> String {
    format!("http://{}:{PORT}", addr::SINK_V4)
}

/// `crawler ARGS` in namespace `ns` with the S3 credentials in its environment (never on its
/// command line), optionally as nobody.
fn crawler_in(ns: &str, s3: &SeaweedFs, nobody: bool, args: &[&str]) -> Command {
    crawler_measured(ns, s3, nobody, args, None)
}

/// The crawler, with its peak RSS (KiB) written to `peak` by GNU time (`ip netns exec` and
/// the privilege drop exec into it: one process).
fn crawler_measured(ns: &str, s3: &SeaweedFs, nobody: bool, args: &[&str], peak: Option<&Path>) -> Command {
    let mut c = match peak {
        Some(f) => {
            let mut c = Command::new("/usr/bin/time");
            c.args(["-f", "%M", "-o"]).arg(f).arg("ip");
            c
        }
        None => Command::new("ip"),
    };
    c.args(["netns", "exec", ns]);
    if nobody {
        c.args(AS_NOBODY);
    }
    c.arg(crawler()).arg("--quiet").args(args);
    c.envs(s3.env());
    c.env("AWS_ENDPOINT_URL", endpoint());
    c
}

const FLEET_TOKEN: &str = "lab-fleet-token-0123456789";
const WRONG_TOKEN: &str = "not-the-fleet-token-000";

fn ok(o: Output, what: &str) -> Output {
    assert!(o.status.success(), "{what}: {}\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    o
}

fn scan_args<'a>(ds: &'a demo::Datasets, plan: &'a str, out: &'a str, spool: &'a str, id: &'a str, extra: &[&'a str]) -> Vec<String> {
    let mut a: Vec<String> = ["scan", "--plan", plan, "--out", out, "--allow-reserved", LAB_ALLOW, "--vantage", "lab-vantage", "--crawl-id", id].iter().map(|s| s.to_string()).collect();
    a.extend(["--opt-out".to_string(), ds.f("opt-out.txt")]);
    if out.starts_with("s3://") {
        a.extend(["--spool".to_string(), spool.to_string()]);
    }
    a.extend(LAB_SCAN.iter().map(|s| s.to_string()));
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

/// The probes of a crawl's rows, with how often each is recorded.
fn probe_counts(dir: &Path) -> HashMap<(String, String, String), usize> {
    let mut m = HashMap::new();
    for r in read_rows(dir, &ROW_KEY) {
        let [ip, port, role, sport] = [0, 1, 2, 3].map(|i| r[i].clone().unwrap());
        *m.entry(probe_key(&ip, &port, &role, &sport)).or_default() += 1;
    }
    m
}

/// The probes of a crawl comparable with another crawl's: random high ports (and the
/// reflection probes aimed at one) are drawn per crawl, so those count by role, not by port.
fn probes_by_role(dir: &Path) -> HashMap<(String, String, String), usize> {
    let mut m = HashMap::new();
    for r in read_rows(dir, &ROW_KEY) {
        let [ip, port, role, sport] = [0, 1, 2, 3].map(|i| r[i].clone().unwrap());
        let (port, sport) = match role.as_str() {
            "random" => (String::new(), String::new()),
            "reflect" => (String::new(), sport),
            _ => (port, String::new()),
        };
        *m.entry((ip, format!("{role} {port}"), sport)).or_default() += 1;
    }
    m
}

/// DuckDB (Python, 1.4.4, with the httpfs extension from PyPI: no download at run time) in
/// namespace `ns`, reading the bucket with the S3 credentials of the environment; its answer
/// as CSV. `sql` may be several statements; the last one's rows are returned.
fn duckdb_s3(ns: &str, s3: &SeaweedFs, sql: &str) -> String {
    const PY: &str = r#"
import csv, os, sys, duckdb, duckdb_ext
con = duckdb.connect()
con.execute("SET extension_directory = '%s/extensions'; LOAD httpfs;" % list(duckdb_ext.__path__)[0])
endpoint = os.environ["AWS_ENDPOINT_URL"].split("://", 1)[1]
con.execute("CREATE SECRET fleet (TYPE s3, KEY_ID '%s', SECRET '%s', REGION 'us-east-1', ENDPOINT '%s', URL_STYLE 'path', USE_SSL false)"
            % (os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"], endpoint))
r = con.execute(sys.stdin.read())
w = csv.writer(sys.stdout, lineterminator="\n")
w.writerow([d[0] for d in r.description])
for row in r.fetchall():
    w.writerow(["" if v is None else v for v in row])
"#;
    use std::io::Write;
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns, "python3", "-c", PY]).envs(s3.env()).stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let mut child = c.spawn().expect("python3");
    child.stdin.take().unwrap().write_all(sql.as_bytes()).unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "DuckDB on the bucket failed on:\n{sql}\n{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Every Parquet object of a downloaded crawl reads to its end (a partial object would not).
fn all_readable(dir: &Path) -> usize {
    let mut n = 0;
    for (rel, _) in datasets::store::spool::pending(dir).unwrap() {
        if rel.ends_with(".parquet") {
            let p = dir.join(&rel);
            let mut r = datasets::schema::open_parquet(&p, 65_536).unwrap_or_else(|e| panic!("{rel}: {e}"));
            while let Some(b) = r.next() {
                b.unwrap_or_else(|e| panic!("{rel}: {e}"));
            }
            n += 1;
        }
    }
    n
}

#[test]
#[ignore = "lab test: needs root and network namespaces (tests/run-tests.sh runs it)"]
fn crawls_egress_and_the_sink_meet_in_one_bucket() {
    if !require_root("fleet") || !require_tool("fleet", "weed") || !require_tool("fleet", "curl") || !require_tool("fleet", "setpriv") || !require_tool("fleet", "/usr/bin/time") {
        return;
    }
    let lab = Lab::up("default");
    let ds = lab.datasets();
    let mut s3 = SeaweedFs::start(Some(&lab.state.sink), addr::SINK_V4.into(), PORT, &lab.path("weed")).unwrap();
    demo::plan(&ds, &lab.path("plan.parquet"), 400, true).unwrap();
    let plan = lab.path("plan.parquet");
    let plan_s = plan.to_str().unwrap();
    let planned = read_rows(&plan, &["ip"]).len() * 12;
    let spool = |name: &str| {
        let d = lab.path(name);
        std::fs::create_dir_all(&d).unwrap();
        d.to_str().unwrap().to_string()
    };

    // 1. The same crawl into the bucket and onto disk: both exactly what the truth says.
    let (sp, disk) = (spool("spool-a"), lab.path("disk"));
    let t0 = Instant::now();
    let (peak_bucket, peak_disk) = (lab.path("peak-bucket"), lab.path("peak-disk"));
    ok(crawler_measured(&lab.state.vantage, &s3, false, &scan_args(&ds, plan_s, "s3://port25/crawls", &sp, "into-bucket", &["--rate", "20000"]).iter().map(|s| s.as_str()).collect::<Vec<_>>(), Some(&peak_bucket)).output().unwrap(), "scan into the bucket");
    let t_bucket = t0.elapsed().as_secs_f64();
    let t0 = Instant::now();
    ok(crawler_measured(&lab.state.vantage, &s3, false, &scan_args(&ds, plan_s, disk.to_str().unwrap(), "", "onto-disk", &["--rate", "20000"]).iter().map(|s| s.as_str()).collect::<Vec<_>>(), Some(&peak_disk)).output().unwrap(), "scan onto disk");
    let t_disk = t0.elapsed().as_secs_f64();
    let kib = |f: &Path| -> u64 { std::fs::read_to_string(f).unwrap().trim().lines().last().unwrap().parse().unwrap() };
    let (m_bucket, m_disk) = (kib(&peak_bucket), kib(&peak_disk));
    let got = lab.path("got-a");
    let keys = s3.download("crawls/", &got).unwrap();
    assert!(keys.iter().any(|k| k.ends_with("crawl_id=into-bucket/manifest.json")), "{keys:?}");
    assert!(datasets::store::spool::pending(Path::new(&sp)).unwrap().iter().all(|(r, _)| r.starts_with("_plans/")), "the spool emptied");
    check_observations(&lab, &got.join("crawls"));
    check_observations(&lab, &disk);
    let (b, d) = (probe_counts(&got.join("crawls")), probe_counts(&disk));
    assert_eq!((b.len(), d.len()), (planned, planned));
    assert!(b.values().chain(d.values()).all(|n| *n == 1), "a probe recorded twice");
    assert_eq!(probes_by_role(&got.join("crawls")), probes_by_role(&disk), "the bucket's crawl and the disk's differ in their probes");
    println!("crawl into the bucket: {} objects, {} probes as the truth says, {t_bucket:.1} s, peak RSS {} MiB; the same onto disk {t_disk:.1} s, {} MiB (ratios {:.2}, {:.2})", keys.len(), b.len(), m_bucket / 1024, m_disk / 1024, t_bucket / t_disk, m_bucket as f64 / m_disk as f64);

    // DuckDB reads the bucket itself: the README's recipe and the SQL inference give the same
    // rows on the bucket as on the same files on disk.
    let orgs = ds.f("lab.as-org2info.jsonl");
    let t0 = Instant::now();
    for (what, sql) in [
        ("replies per port", "SELECT port, port_role, reply, count(*) AS n FROM read_parquet('DATA', hive_partitioning = true, union_by_name = true) GROUP BY ALL ORDER BY ALL;".to_string()),
        ("providers.sql", std::fs::read_to_string(root().join("analysis/sql/providers.sql")).unwrap()),
        ("outbound.sql", std::fs::read_to_string(root().join("analysis/sql/outbound.sql")).unwrap()),
    ] {
        let with = |data: &str| format!("SET VARIABLE data = '{data}'; SET VARIABLE orgs = '{orgs}';\n{}", sql.replace("'DATA'", &format!("'{data}'")));
        let on_bucket = duckdb_s3(&lab.state.vantage, &s3, &with("s3://port25/crawls/**/*.parquet"));
        let on_disk = duckdb_s3(&lab.state.vantage, &s3, &with(&format!("{}/crawls/**/*.parquet", got.display())));
        assert!(on_bucket.lines().count() > 2, "{what}: {on_bucket}");
        assert_eq!(on_bucket, on_disk, "{what}: DuckDB on the bucket and on disk differ");
    }
    println!("DuckDB 1.4.4 + httpfs on the bucket: the replies-per-port recipe, providers.sql and outbound.sql give the rows they give on disk ({:.1} s for all six)", t0.elapsed().as_secs_f64());

    // The analysis reads the bucket (a copy it keeps in step) and writes its reports there:
    // the same reports as from the same files on disk; a second run fetches nothing.
    let analysis_run = |data: &str, out: &str| {
        let peak = lab.path("peak-analysis");
        let mut c = Command::new("/usr/bin/time");
        c.args(["-f", "%M", "-o"]).arg(&peak).args(["ip", "netns", "exec", &lab.state.vantage]).arg(analysis()).args(["report", "--data", data, "--cache"]).arg(lab.path("cache"));
        c.arg("--routes").args(ds.routes()).args(["--orgs", &ds.f("lab.as-org2info.jsonl"), "--categories", &ds.f("lab_categorized_ases.csv"), "--policies", &ds.f(port25_lab::export::LAB_POLICIES), "--out", out]);
        c.envs(s3.env());
        let t0 = Instant::now();
        let o = ok(c.output().unwrap(), "analysis report");
        (String::from_utf8_lossy(&o.stderr).into_owned(), t0.elapsed().as_secs_f64(), kib(&peak))
    };
    let (said, t_a_bucket, m_a_bucket) = analysis_run("s3://port25/crawls", "s3://port25/reports/latest");
    assert!(said.contains("2 object(s) fetched"), "{said}");
    let (_, t_a_disk, m_a_disk) = analysis_run(got.join("crawls").to_str().unwrap(), lab.path("report-disk").to_str().unwrap());
    let (said, _, _) = analysis_run("s3://port25/crawls", "s3://port25/reports/again");
    assert!(said.contains("0 object(s) fetched") && said.contains("2 already here"), "{said}");
    let reports = lab.path("report-bucket");
    let keys = s3.download("reports/latest/", &reports).unwrap();
    assert!(keys.iter().any(|k| k.ends_with("report.html")), "{keys:?}");
    for f in ["providers.csv", "asns.csv"] {
        assert_eq!(std::fs::read_to_string(reports.join("reports/latest").join(f)).unwrap(), std::fs::read_to_string(lab.path("report-disk").join(f)).unwrap(), "{f}: the bucket's report differs from the disk's");
    }
    println!("analysis report from the bucket: {t_a_bucket:.2} s (copy fetched), peak RSS {} MiB; on disk {t_a_disk:.2} s, {} MiB (ratios {:.2}, {:.2}); {} report objects uploaded; a second run fetched nothing", m_a_bucket / 1024, m_a_disk / 1024, t_a_bucket / t_a_disk, m_a_bucket as f64 / m_a_disk as f64, keys.len());

    // 2. The store goes away mid-crawl and comes back: the crawl completes, every probe once.
    let sp = spool("spool-b");
    let child = crawler_in(&lab.state.vantage, &s3, false, &scan_args(&ds, plan_s, "s3://port25/outage", &sp, "outage", &["--rate", "4000", "--rows-per-file", "4000"]).iter().map(|s| s.as_str()).collect::<Vec<_>>())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    s3.stop();
    std::thread::sleep(Duration::from_secs(6));
    s3.restart().unwrap();
    let o = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "the crawl through the store's outage failed: {}\n{log}", o.status);
    // The store's errors are logged (retried), and they name the object, never the secret.
    assert!(log.contains("retrying") && !log.contains(port25_lab::s3::SECRET), "{log}");
    let got = lab.path("got-b");
    let keys = s3.download("outage/", &got).unwrap();
    let b = probe_counts(&got.join("outage"));
    assert_eq!(b.len(), planned);
    assert!(b.values().all(|n| *n == 1) && keys.iter().any(|k| k.ends_with("manifest.json")));
    println!("the store stopped 2.5 s into a crawl for 6 s: {} objects, every one of {planned} probes once", keys.len());

    // 3. `crawler run` killed with -9 while it uploads, then resumed.
    let cfg = lab.path("crawl.toml");
    let sp = spool("spool-c");
    let text = crawl_config(&ds, Path::new("s3://port25/runs"), "{date}-killed", "rate = 4000\nrows_per_file = 3000", &[]);
    let text = text.replacen("crawl_id = ", &format!("spool = {sp:?}\ns3_endpoint = {:?}\ncrawl_id = ", endpoint()), 1);
    std::fs::write(&cfg, text).unwrap();
    let mut child = crawler_in(&lab.state.vantage, &s3, false, &["run", "--config", cfg.to_str().unwrap()]).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(3000));
    // SAFETY: killing our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let _ = child.wait();
    // What the bucket holds now is all complete objects, and the crawl is not complete.
    let mid = lab.path("got-c-mid");
    let keys = s3.download("runs/", &mid).unwrap();
    let readable = all_readable(&mid);
    assert!(!keys.iter().any(|k| k.contains("crawl_date=") && k.ends_with("manifest.json")), "killed, yet a manifest: {keys:?}");
    ok(crawler_in(&lab.state.vantage, &s3, false, &["run", "--config", cfg.to_str().unwrap(), "--resume"]).output().unwrap(), "run --resume");
    let got = lab.path("got-c");
    let keys = s3.download("runs/", &got).unwrap();
    all_readable(&got);
    let crawl_dir = std::fs::read_dir(got.join("runs")).unwrap().filter_map(|e| e.ok()).map(|e| e.path()).find(|p| p.file_name().unwrap().to_string_lossy().starts_with("crawl_date=")).unwrap();
    let b = probe_counts(&crawl_dir);
    assert_eq!(b.len(), planned);
    assert!(b.values().all(|n| *n == 1), "a probe recorded twice after the resume");
    assert!(keys.iter().any(|k| k.ends_with("manifest.json")) && keys.iter().any(|k| k.starts_with("runs/_plans/")));
    println!("crawler run killed with -9 after 3 s: {readable} complete objects in the bucket, no manifest; --resume finished it, every one of {planned} probes once");

    // 4. The sink writes into the bucket, and takes egress uploads with the fleet token.
    netns::stop_sink(&lab.state).unwrap();
    let tokens = lab.path("tokens");
    std::fs::write(&tokens, format!("{FLEET_TOKEN}\n")).unwrap();
    let crawler_bin = demo::runnable_by_nobody("crawler", &lab.path("lab")).unwrap();
    let sink_spool = spool("spool-sink");
    demo::nobody_dir(Path::new(&sink_spool)).unwrap();
    let ports = addr::SINK_PORTS.map(|p| p.to_string()).join(",");
    let mut sink = Command::new("ip");
    sink.args(["netns", "exec", &lab.state.sink]).args(AS_NOBODY).arg(&crawler_bin);
    sink.args(["sink", "--listen", &addr::SINK_V4.to_string(), &addr::SINK_V6.to_string(), "--ports", &ports, "--name", "fleet-sink", "--out", "s3://port25/sink", "--spool", &sink_spool]);
    sink.args(["--s3-endpoint", &endpoint(), "--upload-tokens", tokens.to_str().unwrap(), "--rotate-secs", "1"]).envs(s3.env());
    let log = std::fs::File::create(lab.path("fleet-sink.log")).unwrap();
    let mut sink = sink.stdout(log.try_clone().unwrap()).stderr(log).spawn().unwrap();
    let pin = {
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            let t = std::fs::read_to_string(lab.path("fleet-sink.log")).unwrap_or_default();
            if let Some(p) = t.lines().find_map(|l| l.split("certificate SHA-256 pin ").nth(1)).and_then(|r| r.split_whitespace().next()) {
                break p.trim_end_matches(':').to_string();
            }
            assert!(Instant::now() < until, "the fleet sink did not start: {t}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let egress_out = lab.path("egress-out");
    demo::nobody_dir(&egress_out).unwrap();
    let sinks = [addr::SINK_V4.to_string(), addr::SINK_V6.to_string()];
    let run_egress = |c: &netns::CustomerNs, token: &str| {
        let mut e = Command::new("ip");
        e.args(["netns", "exec", &c.ns]).args(AS_NOBODY).arg(&crawler_bin).arg("egress").arg("--sink").args(&sinks);
        e.args(["--vantage", &c.vantage.name, "--sink-pin", &pin, "--repeat", "2", "--interval", "1", "--timeout", "2", "--out", egress_out.to_str().unwrap()]);
        e.env("PORT25_UPLOAD_TOKEN", token).output().unwrap()
    };
    let good = &lab.state.customers[0];
    let o = ok(run_egress(good, FLEET_TOKEN), "egress --upload");
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(said.contains("sent to the sink"), "{said}");
    assert!(![&o.stdout, &o.stderr].iter().any(|b| String::from_utf8_lossy(b).contains(FLEET_TOKEN)), "the token in egress's output");
    let wrong = &lab.state.customers[1];
    let o = run_egress(wrong, WRONG_TOKEN);
    assert!(![&o.stdout, &o.stderr].iter().any(|b| String::from_utf8_lossy(b).contains(WRONG_TOKEN)), "the token in egress's output");
    assert_eq!(o.status.code(), Some(1), "a wrong token must fail the run: {}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("535"), "{}", String::from_utf8_lossy(&o.stderr));
    let kept = datasets::store::spool::pending(&egress_out).unwrap();
    assert!(kept.iter().any(|(r, _)| r.contains(&format!("vantage={}/", wrong.vantage.name))) && !kept.iter().any(|(r, _)| r.contains(&format!("vantage={}/", good.vantage.name))), "{kept:?}");
    // SAFETY: SIGTERM to our own child: the sink publishes its last file and uploads it.
    unsafe { libc::kill(sink.id() as i32, libc::SIGTERM) };
    let _ = sink.wait();
    let log = std::fs::read_to_string(lab.path("fleet-sink.log")).unwrap();
    assert!(!log.contains(FLEET_TOKEN) && !log.contains(WRONG_TOKEN) && !log.contains(port25_lab::s3::SECRET), "a secret in the sink's log: {log}");
    let keys = s3.keys("sink/").unwrap();
    assert!(keys.iter().any(|k| k.starts_with("sink/egress/egress_date=") && k.contains(&format!("vantage={}/", good.vantage.name))), "{keys:?}");
    assert!(keys.iter().any(|k| k.starts_with("sink/sink_date=")), "the sink's own records: {keys:?}");
    assert!(!keys.iter().any(|k| k.contains(&format!("vantage={}/", wrong.vantage.name))), "the refused upload landed: {keys:?}");
    println!("sink into the bucket: {} objects; {}'s results uploaded through it with the fleet token, {}'s refused (535) and kept", keys.len(), good.vantage.name, wrong.vantage.name);
    // The report reads the egress results the sink put in the bucket.
    let mut c = Command::new("ip");
    c.args(["netns", "exec", &lab.state.vantage]).arg(analysis()).args(["report", "--data", "s3://port25/crawls", "--egress", "s3://port25/sink/egress", "--cache"]).arg(lab.path("cache"));
    c.arg("--routes").args(ds.routes()).args(["--orgs", &ds.f("lab.as-org2info.jsonl"), "--out"]).arg(lab.path("report-egress")).envs(s3.env());
    let o = ok(c.output().unwrap(), "analysis report with egress from the bucket");
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(said.contains("egress: 1 runs"), "{said}");
    // No secret anywhere in what the fleet stored: not the store's, not the fleet's token, in
    // no log, manifest, Parquet file or its metadata, report or sink record.
    let all = lab.path("got-all");
    let keys = s3.download("", &all).unwrap();
    let files = walk(&all);
    assert_eq!(files.len(), keys.len());
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        for secret in [port25_lab::s3::SECRET, FLEET_TOKEN, WRONG_TOKEN] {
            assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()), "{secret:?} stored in {}", f.display());
        }
    }
    println!("no secret in any of the bucket's {} objects", files.len());
    drop(s3);
    assert!(lab.down().is_empty());
}
