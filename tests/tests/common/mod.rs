//! Shared test plumbing: root/CI gating, a lab guard that always tears down, ground truth.
#![allow(dead_code)]

use port25_lab::demo::{self, Datasets};
use port25_lab::netns::{self, LabState};
use port25_lab::topology::Topology;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::net::IpAddr;
use std::process::{Command, Stdio};

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Lab tests need root. They are `#[ignore]`d (a plain `cargo test` reports them as ignored,
/// never as passed); `tests/run-tests.sh` includes them, and then a missing privilege is a
/// failure, never a silent skip. The `bool` is always true (kept so call sites read as guards).
pub fn require_root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        panic!("{test}: lab tests need root (network namespaces, raw sockets): run tests/run-tests.sh (it uses sudo)");
    }
    true
}

/// A tool from Debian packages the suite needs (`.ci/run` installs them all); missing it fails.
pub fn require_tool(test: &str, tool: &str) -> bool {
    let ok = Command::new("sh").arg("-c").arg(format!("command -v {tool}")).output().map(|o| o.status.success()).unwrap_or(false);
    if !ok {
        panic!("{test}: `{tool}` is missing (install it; see .ci/run)");
    }
    true
}

/// A running lab; dropped → torn down, even when the test panics.
pub struct Lab {
    pub dir: tempfile::TempDir,
    pub state: LabState,
    pub topo: Topology,
    pub topo_path: PathBuf,
    pub up_secs: f64,
}

impl Lab {
    pub fn up(name: &str) -> Lab {
        Lab::up_file(&root().join("tests/topologies").join(format!("{name}.toml")))
    }
    /// A lab from any topology file.
    pub fn up_file(topo_path: &Path) -> Lab {
        let topo_path = topo_path.to_path_buf();
        let dir = tempfile::Builder::new().prefix("p25lab-").tempdir().unwrap();
        // The lab's sink and egress clients run as nobody and write below this directory.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let t0 = std::time::Instant::now();
        let state = netns::up(&topo_path, &dir.path().join("lab")).expect("lab up");
        let up_secs = t0.elapsed().as_secs_f64();
        let topo = Topology::load(&topo_path).unwrap();
        port25_lab::export::write_all(&topo, &dir.path().join("lab/datasets")).unwrap();
        Lab { dir, state, topo, topo_path, up_secs }
    }
    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }
    pub fn datasets(&self) -> Datasets {
        Datasets { dir: self.path("lab/datasets") }
    }
    pub fn down(&self) -> Vec<String> {
        netns::down(&self.path("lab")).unwrap_or_default()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = netns::down(&self.dir.path().join("lab"));
    }
}

/// One host line of `truth-hosts.jsonl`.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct TruthHost {
    pub ip: String,
    pub provider: String,
    pub ports: HashMap<String, serde_json::Value>,
    pub other_ports: serde_json::Value,
    /// Reflection probes by source port.
    pub reflect: HashMap<String, serde_json::Value>,
}

pub fn truth_hosts(ds: &Datasets) -> HashMap<String, TruthHost> {
    let text = std::fs::read_to_string(ds.dir.join("truth-hosts.jsonl")).unwrap();
    text.lines().map(|l| serde_json::from_str::<TruthHost>(l).unwrap()).map(|h| (h.ip.clone(), h)).collect()
}

pub fn truth_for(h: &TruthHost, port: u16) -> serde_json::Value {
    h.ports.get(&port.to_string()).cloned().unwrap_or_else(|| h.other_ports.clone())
}

/// Columns [`truth_of`] needs after the five [`matches`] compares.
pub const ROW_KEY: [&str; 4] = ["ip", "port", "port_role", "src_port"];

/// The truth for a row read with `matches`' five columns then [`ROW_KEY`]: a reflection probe's
/// by its source port, any other probe's by its port.
pub fn truth_of(truth: &HashMap<String, TruthHost>, r: &[Option<String>]) -> serde_json::Value {
    let h = &truth[r[5].as_deref().unwrap()];
    if r[7].as_deref() == Some("reflect") {
        return h.reflect[r[8].as_deref().unwrap()].clone();
    }
    truth_for(h, r[6].as_deref().unwrap().parse().unwrap())
}

/// What identifies a probe in a crawl: (ip, port) and, for a reflection probe (which shares
/// its twin's port), its source port.
pub fn probe_key(ip: &str, port: &str, role: &str, src_port: &str) -> (String, String, String) {
    (ip.to_string(), port.to_string(), if role == "reflect" { src_port.to_string() } else { String::new() })
}

/// The observation columns `matches` compares, then [`ROW_KEY`].
pub fn observation_columns() -> Vec<&'static str> {
    ["reply", "reply_ttl", "icmp_type", "icmp_code", "icmp_responder"].into_iter().chain(ROW_KEY).collect()
}

/// Run a shell command, returning stdout; panics with stderr on failure.
pub fn sh(cmd: &str) -> String {
    let o = Command::new("sh").arg("-c").arg(cmd).output().unwrap();
    assert!(o.status.success(), "`{cmd}` failed: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn crawler() -> PathBuf {
    demo::sibling("crawler").unwrap()
}
pub fn analysis() -> PathBuf {
    demo::sibling("analysis").unwrap()
}

/// Read every Parquet file under `dir` (recursively) into rows of selected string-able columns.
pub fn read_rows(dir: &Path, cols: &[&str]) -> Vec<Vec<Option<String>>> {
    use arrow_array::Array;
    let mut out = vec![];
    fn walk(p: &Path, files: &mut Vec<PathBuf>) {
        if p.is_dir() {
            for e in std::fs::read_dir(p).unwrap() {
                walk(&e.unwrap().path(), files);
            }
        } else {
            files.push(p.to_path_buf());
        }
    }
    let mut files = vec![];
    if dir.exists() {
        walk(dir, &mut files);
    }
    files.sort();
    for p in files {
        {
            if p.extension().is_some_and(|x| x == "parquet") || p == dir {
                let f = std::fs::File::open(&p).unwrap();
                let r = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f).unwrap().build().unwrap();
                for b in r {
                    let b = b.unwrap();
                    let arrs: Vec<_> = cols.iter().map(|c| arrow_cast_string(b.column_by_name(c).unwrap_or_else(|| panic!("no column {c}")))).collect();
                    for i in 0..b.num_rows() {
                        out.push(arrs.iter().map(|a| if a.is_null(i) { None } else { Some(a.value(i).to_string()) }).collect());
                    }
                }
            }
        }
    }
    out
}

fn arrow_cast_string(a: &arrow_array::ArrayRef) -> arrow_array::StringArray {
    use arrow_array::cast::AsArray;
    use arrow_array::types::*;
    use arrow_array::Array;
    let n = a.len();
    let v: Vec<Option<String>> = match a.data_type() {
        arrow_schema::DataType::Utf8 => a.as_string::<i32>().iter().map(|x| x.map(String::from)).collect(),
        arrow_schema::DataType::UInt8 => a.as_primitive::<UInt8Type>().iter().map(|x| x.map(|v| v.to_string())).collect(),
        arrow_schema::DataType::UInt16 => a.as_primitive::<UInt16Type>().iter().map(|x| x.map(|v| v.to_string())).collect(),
        arrow_schema::DataType::UInt32 => a.as_primitive::<UInt32Type>().iter().map(|x| x.map(|v| v.to_string())).collect(),
        arrow_schema::DataType::UInt64 => a.as_primitive::<UInt64Type>().iter().map(|x| x.map(|v| v.to_string())).collect(),
        arrow_schema::DataType::Boolean => a.as_boolean().iter().map(|x| x.map(|v| v.to_string())).collect(),
        arrow_schema::DataType::Timestamp(_, _) => a.as_primitive::<TimestampMicrosecondType>().iter().map(|x| x.map(|v| v.to_string())).collect(),
        other => panic!("unsupported type {other:?}"),
    };
    assert_eq!(v.len(), n);
    arrow_array::StringArray::from(v)
}

/// Does an observation row (reply, ttl, icmp type, code, responder) match a truth entry?
pub fn matches(truth: &serde_json::Value, row: &[Option<String>]) -> bool {
    let e = &truth["expect"];
    let want = e["reply"].as_str().unwrap();
    let got = row[0].as_deref().unwrap();
    // A router that rate-limits its ICMP errors (as real ones do) may stay silent instead.
    if want == "icmp" && got == "none" && truth["rate_limited"].as_bool() == Some(true) {
        return true;
    }
    if want != got {
        return false;
    }
    let num = |k: &str| e.get(k).and_then(|v| v.as_u64()).map(|v| v.to_string());
    // Behind an ECMP fabric the host's reply took the direct path or the one a hop longer.
    let ecmp = truth["ecmp"].as_bool() == Some(true);
    let ttl_ok = row[1] == num("ttl") || (ecmp && row[1] == e.get("ttl").and_then(|v| v.as_u64()).map(|v| (v - 1).to_string()));
    match want {
        "none" => true,
        "synack" | "rst" => ttl_ok,
        "icmp" => row[1] == num("ttl") && row[2] == num("icmp_type") && row[3] == num("icmp_code") && row[4].as_deref() == e["responder"].as_str(),
        _ => false,
    }
}

pub fn is_lossy(truth: &serde_json::Value) -> bool {
    truth["lossy"].as_bool().unwrap_or(false)
}

/// Every file below `dir`, at any depth, sorted (none if `dir` is not there).
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// The `manifest.json` of the single crawl under a data directory.
pub fn find_manifest(dir: &std::path::Path) -> std::path::PathBuf {
    for d in std::fs::read_dir(dir).unwrap() {
        for c in std::fs::read_dir(d.unwrap().path()).unwrap() {
            let p = c.unwrap().path().join("manifest.json");
            if p.exists() {
                return p;
            }
        }
    }
    panic!("no manifest.json under {}", dir.display());
}

/// Time, source port and destination of every SYN (no ACK) in a capture, from tcpdump's own
/// decoding.
pub fn syns(pcap: &std::path::Path) -> Vec<(f64, u16, IpAddr)> {
    let text = sh(&format!("tcpdump -n -tt -r {} 2>/dev/null", pcap.display()));
    let mut out = vec![];
    for l in text.lines() {
        if !l.contains("Flags [S],") {
            continue;
        }
        // "1764248400.123456 IP 192.0.2.2.40000 > 198.18.0.5.25: Flags [S], ..." (IP6 alike):
        // address.port — the port is after the last dot, for IPv4 and IPv6 alike.
        let t: f64 = l.split_whitespace().next().unwrap().parse().unwrap();
        let (src, rest) = l.split_once(" > ").unwrap_or_else(|| panic!("unparsed capture line: {l}"));
        let sport: u16 = src.rsplit_once('.').and_then(|(_, p)| p.parse().ok()).unwrap_or_else(|| panic!("unparsed capture line: {l}"));
        let dst = rest.split(": ").next().unwrap().rsplit_once('.').unwrap_or_else(|| panic!("unparsed capture line: {l}")).0;
        out.push((t, sport, dst.parse().unwrap_or_else(|_| panic!("cannot parse {dst} in {l}"))));
    }
    out
}

/// The most packets in any 1-s window (windows starting at every packet; times sorted).
pub fn busiest_second(times: &[f64]) -> usize {
    let (mut worst, mut j) = (0, 0);
    for i in 0..times.len() {
        while j < times.len() && times[j] < times[i] + 1.0 {
            j += 1;
        }
        worst = worst.max(j - i);
    }
    worst
}

/// A tcpdump of the packets entering a lab namespace's interface.
pub struct Capture {
    child: std::process::Child,
    file: std::path::PathBuf,
}

impl Capture {
    /// Returns once tcpdump says it is listening (its startup takes a second on a busy machine:
    /// packets sent before that would be missing from the capture).
    pub fn start(ns: &str, iface: &str, file: std::path::PathBuf, filter: &str) -> Capture {
        use std::io::BufRead;
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, "tcpdump", "-i", iface, "-Q", "in", "-n", "-U", "-w", file.to_str().unwrap(), filter])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let err = std::io::BufReader::new(child.stderr.take().unwrap());
        std::thread::spawn(move || {
            for line in err.lines().map_while(Result::ok) {
                if line.contains("listening on") {
                    let _ = tx.send(());
                }
            }
        });
        rx.recv_timeout(std::time::Duration::from_secs(20)).unwrap_or_else(|_| panic!("tcpdump on {ns}/{iface} did not start listening within 20 s"));
        Capture { child, file }
    }
    /// Stop it; the capture file.
    pub fn stop(mut self) -> std::path::PathBuf {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        self.child.wait().unwrap();
        self.file
    }
}

/// Destination ports of the TCP packets in a capture.
pub fn dst_ports(pcap: &std::path::Path) -> Vec<u16> {
    let text = sh(&format!("tcpdump -n -tt -r {} 2>/dev/null", pcap.display()));
    text.lines().filter_map(|l| l.split(" > ").nth(1)?.split(": ").next()?.rsplit_once('.')?.1.parse().ok()).collect()
}


/// The link-layer frames of a pcap file (Ethernet captures as tcpdump writes them).
pub fn pcap_frames(path: &Path) -> Vec<Vec<u8>> {
    let b = std::fs::read(path).unwrap();
    assert!(b.len() >= 24 && b[..4] == [0xd4, 0xc3, 0xb2, 0xa1], "{}: not a little-endian pcap file", path.display());
    let mut out = vec![];
    let mut off = 24;
    while off + 16 <= b.len() {
        let caplen = u32::from_le_bytes(b[off + 8..off + 12].try_into().unwrap()) as usize;
        off += 16;
        if off + caplen > b.len() {
            break;
        }
        out.push(b[off..off + caplen].to_vec());
        off += caplen;
    }
    out
}

/// A page rendered by a real headless Chromium: its DOM after scripts ran, and a screenshot
/// (`screenshot.png` beside the page) measured as (width, height, non-white pixels, colours).
/// Fails on a console error.
pub fn render_in_chromium(html: &Path) -> (String, (u32, u32, usize, usize)) {
    let shot = html.with_file_name("screenshot.png");
    let prof = tempfile::tempdir().unwrap();
    let flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--enable-logging=stderr", "--v=0",
    ];
    let url = format!("file://{}", html.display());
    let o = Command::new("chromium").args(flags).arg(format!("--user-data-dir={}", prof.path().display())).args(["--window-size=1200,3000", &format!("--screenshot={}", shot.display()), &url]).output().unwrap();
    assert!(o.status.success(), "chromium: {}", String::from_utf8_lossy(&o.stderr));
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(!log.lines().any(|l| l.contains("CONSOLE") && (l.contains("ERROR") || l.contains("Uncaught"))), "console errors:\n{log}");
    let dom = Command::new("chromium").args(flags).arg(format!("--user-data-dir={}", prof.path().display())).args(["--dump-dom", &url]).output().unwrap();
    let dom = String::from_utf8_lossy(&dom.stdout).into_owned();
    let dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).unwrap()));
    let mut r = dec.read_info().unwrap();
    let mut buf = vec![0; r.output_buffer_size().unwrap()];
    let info = r.next_frame(&mut buf).unwrap();
    let px = &buf[..info.buffer_size()];
    let ch = info.color_type.samples();
    let non_white = px.chunks(ch).filter(|p| p[..3].iter().any(|c| *c < 200)).count();
    let colours: std::collections::HashSet<&[u8]> = px.chunks(ch).map(|p| &p[..3]).collect();
    (dom, (info.width, info.height, non_white, colours.len()))
}

/// A Parquet file whose footer still reads but whose `ip` column's first page header is zeros:
/// not truncated, corrupted where every reader looks.
#[allow(dead_code)]
pub fn corrupt(bytes: &[u8]) -> Vec<u8> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let r = SerializedFileReader::new(bytes::Bytes::copy_from_slice(bytes)).unwrap();
    let rg = r.metadata().row_group(0);
    let col = (0..rg.num_columns()).find(|i| rg.column(*i).column_path().string() == "ip").unwrap();
    let at = rg.column(col).data_page_offset() as usize;
    let mut b = bytes.to_vec();
    b[at..at + 24].fill(0);
    b
}

/// A `crawler run` config for the lab: its datasets, lab-speed scan settings (`extra_scan` adds
/// keys to `[scan]`), and the self-check's reference hosts.
pub fn crawl_config(ds: &Datasets, out: &Path, crawl_id: &str, extra_scan: &str, self_check: &[String]) -> String {
    let list = |v: Vec<String>| v.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(", ");
    format!(
        r#"[crawl]
vantage = "lab-vantage"
out = {out:?}
crawl_id = "{crawl_id}"

[inputs]
routes = [{routes}]
orgs = [{orgs:?}]
categories = [{cats:?}]
hitlist = [{hit:?}]
aliased = [{ali:?}]
opt_out = [{opt:?}]
exclude = [{exc:?}]

[plan]
select = "all"
per_asn = 400
seed = 25
allow_reserved = ["198.18.0.0/15", "2001:db8::/32"]

[scan]
asn_rate = 0
net_rate = 0
retry_delay = 1.0
cooldown = 2.0
{extra_scan}

[self_check]
targets = [{targets}]
control_port = 80
"#,
        out = out.display().to_string(),
        routes = list(ds.routes()),
        orgs = ds.f("lab.as-org2info.jsonl"),
        cats = ds.f("lab_categorized_ases.csv"),
        hit = ds.f("responsive-addresses.txt"),
        ali = ds.f("aliased-prefixes.txt"),
        opt = ds.f("opt-out.txt"),
        exc = ds.f("exclude.txt"),
        targets = list(self_check.to_vec()),
    )
}


/// Three IPv4 hosts of OpenCloud Hosting with 25 and 80 open: the self-check's reference hosts.
pub fn reference_hosts(ds: &Datasets) -> Vec<String> {
    let t = truth_hosts(ds);
    let mut v: Vec<String> = t
        .values()
        .filter(|h| h.provider == "OpenCloud Hosting" && !h.ip.contains(':') && h.ports["25"]["expect"]["reply"] == "synack" && h.ports["80"]["expect"]["reply"] == "synack")
        .map(|h| h.ip.clone())
        .collect();
    v.sort();
    v.truncate(3);
    v
}

/// Run SQL in the real DuckDB CLI; its CSV output.
pub fn duckdb(sql: &str) -> String {
    let o = Command::new("duckdb").args(["-csv", "-c", sql]).output().expect("duckdb CLI");
    assert!(o.status.success(), "duckdb failed on:\n{sql}\n{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `analysis/sql/providers.sql` (inbound 25) and `outbound.sql` (reflection, 25/465/587) run by
/// the real DuckDB on a crawl agree with the binary's `providers.csv` on every count, verdict
/// and mechanism — except rows the binary withheld or left a banned AS out of (the SQL has no
/// ban test: it gives those plain counts). Returns the rows compared (inbound, outbound).
pub fn sql_agrees_with_binary(data: &Path, orgs: &str, report: &Path) -> (usize, usize) {
    let run = |file: &str, keys: &[&str]| -> HashMap<Vec<String>, HashMap<String, String>> {
        let sql = std::fs::read_to_string(root().join("analysis/sql").join(file)).unwrap();
        let pre = format!("SET VARIABLE data = '{}/**/*.parquet'; SET VARIABLE orgs = '{orgs}';\n", data.display());
        let out = duckdb(&(pre + &sql));
        let mut rdr = csv::Reader::from_reader(out.as_bytes());
        let hdr: Vec<String> = rdr.headers().unwrap().iter().map(String::from).collect();
        rdr.records()
            .map(|r| {
                let m: HashMap<String, String> = hdr.iter().cloned().zip(r.unwrap().iter().map(String::from)).collect();
                (keys.iter().map(|k| m[*k].clone()).collect(), m)
            })
            .collect()
    };
    let inbound = run("providers.sql", &["org_id", "family"]);
    let outbound = run("outbound.sql", &["org_id", "family", "port"]);
    let mut bin = csv::Reader::from_path(report.join("providers.csv")).unwrap();
    let bh: Vec<String> = bin.headers().unwrap().iter().map(String::from).collect();
    let (mut n_in, mut n_out) = (0, 0);
    for r in bin.records().map(|r| r.unwrap()) {
        let b: HashMap<&str, &str> = bh.iter().map(|h| h.as_str()).zip(r.iter()).collect();
        let withheld = matches!(b["verdict"], "vantage-banned" | "vantage-outage" | "vantage-filtered") || b["evidence"].contains("left out: vantage-banned");
        if withheld {
            continue;
        }
        let (s, cols): (&HashMap<String, String>, &[&str]) = match (b["direction"], b["method"]) {
            ("inbound", "syn-scan") if b["port"] == "25" => (
                inbound.get(&vec![b["org_id"].to_string(), b["family"].to_string()]).unwrap_or_else(|| panic!("providers.sql has no row for {r:?}")),
                &["informative", "filtered", "verdict", "mechanism", "excluded_dead", "excluded_all_ports", "excluded_uninformative", "excluded_rst_ambiguous"],
            ),
            ("outbound", "reflection") => (
                outbound.get(&vec![b["org_id"].to_string(), b["family"].to_string(), b["port"].to_string()]).unwrap_or_else(|| panic!("outbound.sql has no row for {r:?}")),
                &["informative", "filtered", "verdict", "mechanism", "excluded_dead", "excluded_all_ports", "excluded_uninformative", "excluded_source_port", "excluded_rst_ambiguous"],
            ),
            _ => continue,
        };
        for c in cols {
            assert_eq!(s[*c], b[*c], "{} {} {} {}: {c} differs between the SQL and the binary", b["provider"], b["direction"], b["family"], b["port"]);
        }
        if b["direction"] == "inbound" { n_in += 1 } else { n_out += 1 }
    }
    (n_in, n_out)
}

/// Every row of a crawl of the lab against the ground truth: one row per planned probe, none
/// twice, every observation on a loss-free path as the truth says — except silence from a
/// provider whose border runs a scan detector the crawl tripped (`banned`: its silence after the
/// ban is the detector's, which the analysis must call `vantage-banned`).
pub fn check_observations(lab: &Lab, data: &Path) {
    check_observations_banned(lab, data, &[]);
}

pub fn check_observations_banned(lab: &Lab, data: &Path, banned: &[&str]) {
    let truth = truth_hosts(&lab.datasets());
    let rows = read_rows(data, &observation_columns());
    let plan_rows = read_rows(&lab.path("plan.parquet"), &["ip"]);
    assert_eq!(rows.len(), plan_rows.len() * 12, "one row per planned probe: 3 mail + 3 control + 2 random ports + 4 reflection source ports");
    let mut seen = std::collections::HashSet::new();
    let mut per: std::collections::BTreeMap<String, (u64, u64)> = std::collections::BTreeMap::new();
    let mut bad = vec![];
    for r in &rows {
        let (ip, port) = (r[5].clone().unwrap(), r[6].clone().unwrap());
        let key = probe_key(&ip, &port, r[7].as_deref().unwrap(), r[8].as_deref().unwrap());
        assert!(seen.insert(key.clone()), "{key:?} recorded twice");
        let h = truth.get(&ip).unwrap_or_else(|| panic!("{ip} is not a lab host"));
        let t = truth_of(&truth, r);
        let e = per.entry(h.provider.clone()).or_default();
        e.0 += 1;
        if banned.contains(&h.provider.as_str()) {
            e.0 -= 1;
            continue;
        }
        if matches(&t, r) {
            e.1 += 1;
        } else if !is_lossy(&t) {
            bad.push(format!("{key:?} ({}) observed {:?} expected {}", h.provider, &r[..5], t));
        }
    }
    per.retain(|_, (n, _)| *n > 0);
    let (n, ok): (u64, u64) = per.values().fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    for (p, (n, ok)) in &per {
        println!("  {p:<28} {ok}/{n} = {:.2} %", *ok as f64 * 100.0 / *n as f64);
    }
    println!("observations matching ground truth: {ok}/{n} = {:.3} %", ok as f64 * 100.0 / n as f64);
    assert!(bad.is_empty(), "{} mismatches on loss-free paths, e.g.:\n{}", bad.len(), bad.iter().take(10).cloned().collect::<Vec<_>>().join("\n"));
    assert!(ok as f64 >= 0.995 * n as f64);
}


/// `crawler run --config CFG ARGS` inside lab namespace `ns`.
pub fn run_in(ns: &str, cfg: &Path, args: &[&str]) -> std::process::Output {
    Command::new("ip").args(["netns", "exec", ns]).arg(crawler()).args(["--quiet", "run", "--config"]).arg(cfg).args(args).output().unwrap()
}
