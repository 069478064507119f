//! Publishing: providers.csv/json, asns.csv, hosts.parquet, report.md and a self-contained
//! report.html (inline SVG charts, no external resources). Every number carries its n, and
//! every file is published atomically (`datasets::publish`).

use crate::aggregate::{Row, Thresholds};
use crate::charts;
use crate::compare::{self, Answer, Comparison};
use crate::views::{self, esc, pct, EGRESS_REACH};
use crate::infer::{classify, Direction, Exclusion, HostAcc, PortState};
use crate::trend::Trend;
use anyhow::{Context, Result};
use datasets::publish::{write_atomic, AtomicFile};
use arrow_array::{ArrayRef, BooleanArray, RecordBatch, StringArray, UInt32Array, UInt8Array};
use arrow_schema::{DataType, Field, Schema};
use serde::Serialize;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Arc;

#[derive(Debug, Clone, Serialize)]
pub struct Meta {
    pub crawl_id: String,
    pub crawl_date: String,
    pub vantage: String,
    pub rows: u64,
    pub hosts: u64,
    pub measured: &'static str,
    pub thresholds: Thresholds,
    pub selection: String,
    pub software: &'static str,
    /// What the crawl's manifests say it lost; `problems` non-empty: an incomplete crawl.
    pub completeness: crate::manifest::Completeness,
    /// Verdicts the vantage's own trouble withheld (a family's outage, replies to a reflection
    /// port lost at the vantage), in words.
    pub withheld: Vec<String>,
    /// The documented policies shown beside the measurements, if any.
    pub policies: Option<PoliciesMeta>,
    /// The egress runs reported beside the crawl (`--egress`), if any.
    pub egress: Option<EgressMeta>,
    /// Every vantage of the crawl date (the report's tables are the first one's).
    pub vantages: Vec<VantageMeta>,
}

#[derive(Debug, Clone, Serialize)]
pub struct VantageMeta {
    pub vantage: String,
    pub crawl_id: String,
    pub rows: u64,
    pub hosts: u64,
    pub completeness: crate::manifest::Completeness,
    pub withheld: Vec<String>,
}

/// What several vantages add to a report: the other vantages' provider rows, and the
/// comparison.
pub struct VantagesView {
    pub rows: Vec<Row>,
    pub cmp: Vec<crate::vantages::VantageRow>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PoliciesMeta {
    pub file: String,
    pub rows: usize,
    pub providers: usize,
    /// Rows whose ASNs AS2Org gives to another organization than the row names.
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EgressMeta {
    pub dirs: Vec<String>,
    pub runs: usize,
    pub attempts: usize,
    pub vantages: usize,
    pub unmapped: usize,
}

/// What `--egress` adds to a report: each vantage's series, and the vantages not placed.
pub struct EgressView {
    pub series: Vec<crate::egress::Series>,
    pub unmapped: Vec<crate::egress::Unmapped>,
}

pub const MEASURED: &str = "inbound reachability of TCP port 25 (and 465/587) — whether SYNs from a remote vantage reach hosts in each network (a SYN scan) — and outbound filtering of the same ports — whether those hosts' own traffic to them leaves their network, seen from outside by source-port reflection (stateless egress filters only: a lower bound). The two directions are never mixed in one number.";
pub const MEASURED_WITH_EGRESS: &str = "inbound reachability of TCP port 25 (and 465/587) — whether SYNs from a remote vantage reach hosts in each network (a SYN scan) — and outbound filtering of the same ports, two ways: whether those hosts' own traffic to them leaves their network, seen from outside by source-port reflection (stateless egress filters only: a lower bound), and whether vantages inside the providers can connect out to our sink on them (crawler egress: blocks, throttling, proxies, STARTTLS stripping, TLS interception). The directions and methods are never mixed in one number.";

/// Rows as CSV, published atomically.
pub fn write_csv<T: Serialize>(path: &Path, rows: &[T]) -> Result<()> {
    let mut w = csv::Writer::from_writer(AtomicFile::create(path)?);
    for r in rows {
        w.serialize(r)?;
    }
    w.into_inner().map_err(|e| e.into_error()).with_context(|| format!("writing {}", path.display()))?.commit()?;
    Ok(())
}


/// A host's line of `hosts.parquet`, worked out on the scanning thread (its states), written
/// on the writer's.
struct HostLine {
    addr: u128,
    v6: bool,
    asn: u32,
    prefix: u32,
    host_ttl: Option<u8>,
    all_ports: bool,
    state: [PortState; 3],
    inbound_25: Result<PortState, Exclusion>,
    /// Outbound per mail port (reflection): a state, or why the host is not informative;
    /// `None` when the crawl sent no reflection probe.
    outbound: [Option<Result<PortState, Exclusion>>; 3],
}

/// Hosts per record batch of `hosts.parquet`.
const HOST_BATCH: usize = 65_536;

/// What the writer's thread is handed: hosts (with the crawl's strings), or the word to publish.
enum ToWriter {
    Hosts(Arc<Vec<String>>, Vec<HostLine>),
    Publish,
}

/// `hosts.parquet` (per-host states), written as a scan hands out hosts: a thread of its own
/// builds the columns and compresses them while the scan goes on. Nothing is published until
/// [`HostsWriter::finish`]; dropped before (the scan failed), the file is left unwritten and
/// its temporary file removed.
pub struct HostsWriter {
    tx: Option<SyncSender<ToWriter>>,
    chunk: Vec<HostLine>,
    thread: Option<std::thread::JoinHandle<Result<u64>>>,
}

fn host_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("ip", DataType::Utf8, false),
        Field::new("ip_version", DataType::UInt8, false),
        Field::new("asn", DataType::UInt32, false),
        Field::new("prefix", DataType::Utf8, false),
        Field::new("host_ttl", DataType::UInt8, true),
        Field::new("all_ports_responder", DataType::Boolean, false),
        Field::new("state_25", DataType::Utf8, false),
        Field::new("state_465", DataType::Utf8, false),
        Field::new("state_587", DataType::Utf8, false),
        Field::new("informative_25", DataType::Boolean, false),
        Field::new("excluded_25", DataType::Utf8, true),
        // Outbound per mail port (reflection): a state, or why the host is not informative;
        // null when the crawl sent no reflection probe.
        Field::new("outbound_25", DataType::Utf8, true),
        Field::new("outbound_465", DataType::Utf8, true),
        Field::new("outbound_587", DataType::Utf8, true),
    ]))
}

impl HostsWriter {
    pub fn create(path: &Path) -> Result<HostsWriter> {
        let f = AtomicFile::create(path)?;
        let (tx, rx) = sync_channel::<ToWriter>(2);
        let thread = std::thread::spawn(move || -> Result<u64> {
            let schema = host_schema();
            let props = parquet::file::properties::WriterProperties::builder().set_compression(parquet::basic::Compression::ZSTD(Default::default())).build();
            let mut w = parquet::arrow::ArrowWriter::try_new(f, schema.clone(), Some(props))?;
            let (mut n, mut ip) = (0u64, String::new());
            for msg in rx {
                let (strings, chunk) = match msg {
                    ToWriter::Hosts(s, c) => (s, c),
                    ToWriter::Publish => {
                        w.into_inner()?.commit()?;
                        return Ok(n);
                    }
                };
                n += chunk.len() as u64;
                let text = |s: Result<PortState, Exclusion>| s.map_or_else(|e| e.as_str(), |s| s.as_str());
                let st = |i: usize| -> ArrayRef { Arc::new(StringArray::from_iter_values(chunk.iter().map(|r| r.state[i].as_str()))) };
                let out = |i: usize| -> ArrayRef { Arc::new(StringArray::from_iter(chunk.iter().map(|r| r.outbound[i].map(text)))) };
                let ips = StringArray::from_iter_values(chunk.iter().map(|r| {
                    ip.clear();
                    analysis::decode::addr_text(r.addr, r.v6, &mut ip);
                    ip.clone()
                }));
                let cols: Vec<ArrayRef> = vec![
                    Arc::new(ips),
                    Arc::new(UInt8Array::from_iter_values(chunk.iter().map(|r| if r.v6 { 6 } else { 4 }))),
                    Arc::new(UInt32Array::from_iter_values(chunk.iter().map(|r| r.asn))),
                    Arc::new(StringArray::from_iter_values(chunk.iter().map(|r| strings[r.prefix as usize].as_str()))),
                    Arc::new(UInt8Array::from_iter(chunk.iter().map(|r| r.host_ttl))),
                    Arc::new(BooleanArray::from_iter(chunk.iter().map(|r| Some(r.all_ports)))),
                    st(0),
                    st(1),
                    st(2),
                    Arc::new(BooleanArray::from_iter(chunk.iter().map(|r| Some(r.inbound_25.is_ok())))),
                    Arc::new(StringArray::from_iter(chunk.iter().map(|r| r.inbound_25.err().map(|e| e.as_str())))),
                    out(0),
                    out(1),
                    out(2),
                ];
                w.write(&RecordBatch::try_new(schema.clone(), cols)?)?;
            }
            // Abandoned: the temporary file goes with the writer.
            anyhow::bail!("hosts.parquet abandoned")
        });
        Ok(HostsWriter { tx: Some(tx), chunk: Vec::with_capacity(HOST_BATCH), thread: Some(thread) })
    }

    /// One host (`addr`: its address, IPv4 mapped; `strings`: the crawl's, for its prefix).
    pub fn push(&mut self, strings: &Arc<Vec<String>>, addr: u128, h: &HostAcc) -> Result<()> {
        let dir = Direction::Outbound;
        self.chunk.push(HostLine {
            addr,
            v6: h.v6,
            asn: h.asn,
            prefix: h.prefix,
            host_ttl: h.host_ttl(),
            all_ports: h.random_synack,
            state: [h.state(0), h.state(1), h.state(2)],
            inbound_25: classify(h, 0),
            outbound: std::array::from_fn(|i| dir.probed(h, i).then(|| dir.classify(h, i))),
        });
        if self.chunk.len() >= HOST_BATCH {
            self.send(strings)?;
        }
        Ok(())
    }

    fn send(&mut self, strings: &Arc<Vec<String>>) -> Result<()> {
        let chunk = std::mem::replace(&mut self.chunk, Vec::with_capacity(HOST_BATCH));
        if self.tx.as_ref().expect("not finished").send(ToWriter::Hosts(strings.clone(), chunk)).is_err() {
            // The writer stopped on an error: that error is the one to report.
            self.tx = None;
            return Err(self.join().err().unwrap_or_else(|| anyhow::anyhow!("the hosts.parquet writer stopped")));
        }
        Ok(())
    }

    fn join(&mut self) -> Result<u64> {
        self.thread.take().expect("joined once").join().map_err(|_| anyhow::anyhow!("the hosts.parquet writer panicked"))?
    }

    /// The last hosts written and the file published; the hosts written.
    pub fn finish(mut self, strings: &Arc<Vec<String>>) -> Result<u64> {
        if !self.chunk.is_empty() {
            self.send(strings)?;
        }
        if let Some(tx) = self.tx.take() {
            if tx.send(ToWriter::Publish).is_err() {
                return Err(self.join().err().unwrap_or_else(|| anyhow::anyhow!("the hosts.parquet writer stopped")));
            }
        }
        self.join()
    }
}

impl Drop for HostsWriter {
    /// Unfinished: the thread is told nothing more is coming and waited for, so its temporary
    /// file is gone before the process exits.
    fn drop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A value of `providers.json`'s one object, serialized when the file is written.
enum Part<'a> {
    One(&'a dyn ErasedRow),
    Many(Box<dyn Iterator<Item = &'a dyn ErasedRow> + 'a>),
}

impl<'a> Part<'a> {
    fn many<T: Serialize>(rows: &'a [T]) -> Part<'a> {
        Part::Many(Box::new(rows.iter().map(|r| r as &dyn ErasedRow)))
    }
}

/// Anything serializable, as a JSON value (object safe, unlike `Serialize`).
trait ErasedRow {
    fn value(&self) -> serde_json::Result<serde_json::Value>;
}

impl<T: Serialize> ErasedRow for T {
    fn value(&self) -> serde_json::Result<serde_json::Value> {
        serde_json::to_value(self)
    }
}

/// `providers.json`: one object, keys sorted, values pretty-printed — byte for byte what
/// `serde_json::to_string_pretty` of the whole document as one `Value` gives — but written
/// row by row: the document as one `Value` was the report's largest allocation (a map per
/// row: 850 MB for 234,000 rows).
fn write_json(path: &Path, mut parts: Vec<(&str, Part)>) -> Result<()> {
    use serde::ser::{Error as _, SerializeMap, SerializeSeq, Serializer as _};
    struct Seq<'a>(std::cell::RefCell<Option<Box<dyn Iterator<Item = &'a dyn ErasedRow> + 'a>>>);
    impl Serialize for Seq<'_> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
            let mut seq = s.serialize_seq(None)?;
            for r in self.0.borrow_mut().take().into_iter().flatten() {
                seq.serialize_element(&r.value().map_err(S::Error::custom)?)?;
            }
            SerializeSeq::end(seq)
        }
    }
    parts.sort_by(|a, b| a.0.cmp(b.0));
    let f = AtomicFile::create(path)?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
    {
        let mut ser = serde_json::Serializer::pretty(&mut w);
        let mut map = ser.serialize_map(Some(parts.len()))?;
        for (k, p) in parts {
            match p {
                Part::One(v) => map.serialize_entry(k, &v.value()?)?,
                Part::Many(it) => map.serialize_entry(k, &Seq(std::cell::RefCell::new(Some(it))))?,
            }
        }
        SerializeMap::end(map)?;
    }
    w.into_inner().map_err(|e| e.into_error())?.commit().with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn table_md(out: &mut String, rows: &[&Row]) {
    out.push_str("| provider | family | port | direction | verdict | filtered / informative | rate | 95 % CI | prefixes | mechanism | location | excluded (dead / all-ports / uninformative) | evidence |\n");
    out.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for r in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} / {} | {} | {} – {} | {} | {} | {} | {} / {} / {} | {} |",
            r.provider, r.family, r.port, r.direction, verdict_text(r), r.filtered, r.informative, pct(r.rate), pct(r.ci_low), pct(r.ci_high), r.prefixes,
            r.mechanism, r.location, r.excluded_dead, r.excluded_all_ports, r.excluded_uninformative, r.evidence.replace('|', "/")
        );
    }
}

fn table_html(out: &mut String, id: &str, rows: &[&Row]) {
    let _ = writeln!(out, "<table id=\"{id}\"><thead><tr><th>provider</th><th>ASNs</th><th>family</th><th>port</th><th>direction</th><th>verdict</th><th>filtered / n</th><th>rate</th><th>95 % CI</th><th>prefixes</th><th>mechanism</th><th>location</th><th>excluded<br>dead / all-ports / uninf.</th><th>evidence</th></tr></thead><tbody>");
    for r in rows {
        let _ = writeln!(
            out,
            "<tr class=\"v-{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} / {}</td><td>{}</td><td>{} – {}</td><td>{}</td><td>{}</td><td>{}</td><td>{} / {} / {}</td><td>{}</td></tr>",
            r.verdict, esc(&r.provider), esc(&r.asns), r.family, r.port, r.direction, esc(&verdict_text(r)), r.filtered, r.informative, pct(r.rate), pct(r.ci_low), pct(r.ci_high),
            r.prefixes, r.mechanism, r.location, r.excluded_dead, r.excluded_all_ports, r.excluded_uninformative, esc(&r.evidence)
        );
    }
    out.push_str("</tbody></table>\n");
}

/// What the vantage comparison means, said where it is shown.
pub const VANTAGES_NOTE: &str = "The same crawl from several vantages: a provider's own filtering is seen from every vantage; a filter on one vantage's path (a transit ACL, a blackholed route) or a scan ban of one vantage is seen from that vantage only. `path-specific`: blocks towards some vantages and open towards others — a filter on their path, or a provider filtering by source, not a policy towards everyone. Rows of different vantages are compared, never summed.";

fn vantage_list(meta: &Meta) -> String {
    meta.vantages.iter().map(|v| format!("{} (crawl {}, {} hosts)", v.vantage, v.crawl_id, v.hosts)).collect::<Vec<_>>().join(", ")
}

/// The verdict, with the time of a ban.
fn verdict_text(r: &Row) -> String {
    match &r.banned_since {
        Some(t) => format!("{} (since {t})", r.verdict),
        None => r.verdict.to_string(),
    }
}

/// What the outbound numbers can and cannot see, said wherever they are shown.
pub const OUTBOUND_REACH: &str = "Outbound is measured from outside by source-port reflection: a SYN from our port 25 (465, 587) to a closed port of the host makes the host's reply leave its network towards that port, through the provider's egress filter, and is compared with the same probe from an ordinary port and with a neutral source port (2525). It sees stateless egress filters (ACLs such as \"deny tcp any any eq 25\") — a lower bound: a provider that blocks only new outbound connections (a stateful firewall) lets these replies out and shows as open here; a vantage inside the provider (crawler egress) sees the rest.";

/// Everything a report shows, gathered once for the Markdown and the HTML.
struct Parts<'a> {
    meta: &'a Meta,
    providers: &'a [Row],
    answer: Vec<Answer<'a>>,
    cmp: Vec<Comparison>,
    p25: Vec<&'a Row>,
    reflection: Vec<&'a Row>,
    inside: Vec<&'a Row>,
    other: Vec<&'a Row>,
    egress: Option<&'a EgressView>,
    vantages: Option<&'a VantagesView>,
    rules: String,
    trend: Option<&'a Trend>,
    documented: Option<&'a [crate::documented::Documented]>,
}

impl Parts<'_> {
    fn measured(&self) -> &'static str {
        if self.egress.is_some() { MEASURED_WITH_EGRESS } else { MEASURED }
    }
}

#[allow(clippy::too_many_arguments)]
pub fn write_reports(dir: &Path, meta: &Meta, providers: &[Row], asns: &[Row], trend: Option<&Trend>, egress: Option<&EgressView>, vantages: Option<&VantagesView>, documented: Option<&[crate::documented::Documented]>) -> Result<()> {
    let cmp = compare::comparisons(providers);
    // providers.csv: the first vantage's rows, then the other vantages' (the `vantage` column
    // tells them apart; they are compared in vantages.csv, never summed).
    let all: Vec<&Row> = providers.iter().chain(vantages.iter().flat_map(|v| v.rows.iter())).collect();
    write_csv(&dir.join("providers.csv"), &all)?;
    write_csv(&dir.join("asns.csv"), asns)?;
    let mut json: Vec<(&str, Part)> = vec![("meta", Part::One(meta)), ("providers", Part::Many(Box::new(all.iter().map(|r| *r as &dyn ErasedRow)))), ("asns", Part::many(asns))];
    if let Some(v) = vantages {
        write_csv(&dir.join("vantages.csv"), &v.cmp)?;
        json.push(("vantages", Part::many(&v.cmp)));
    }
    if let Some(e) = egress {
        write_csv(&dir.join("egress-vantages.csv"), &e.series)?;
        json.push(("egress_vantages", Part::many(&e.series)));
        json.push(("egress_unmapped", Part::many(&e.unmapped)));
        json.push(("comparisons", Part::many(&cmp)));
    }
    if let Some(d) = documented {
        write_csv(&dir.join("documented.csv"), d)?;
        json.push(("documented", Part::many(d)));
    }
    write_json(&dir.join("providers.json"), json)?;
    let th = &meta.thresholds;
    let inbound = |r: &&Row| r.direction == "inbound";
    let parts = Parts {
        meta,
        providers,
        answer: compare::answer(providers, &cmp),
        p25: providers.iter().filter(inbound).filter(|r| r.port == 25).collect(),
        other: providers.iter().filter(inbound).filter(|r| r.port != 25).collect(),
        reflection: providers.iter().filter(|r| r.method == "reflection").collect(),
        inside: providers.iter().filter(|r| r.method == "egress").collect(),
        cmp,
        egress,
        vantages,
        rules: format!(
            "Verdicts: `insufficient` below {} informative hosts; `blocks` when the 95 % Wilson interval's lower bound ≥ {:.0} %; `open` when its upper bound ≤ {:.0} %; `mixed` otherwise. A mechanism or location is named when ≥ {:.0} % of filtered hosts agree.",
            th.min_informative, th.block_lower * 100.0, th.open_upper * 100.0, th.dominant * 100.0
        ),
        trend,
        documented,
    };
    write_atomic(&dir.join("report.md"), markdown(&parts))?;
    write_atomic(&dir.join("report.html"), html(&parts))?;
    Ok(())
}

fn markdown(p: &Parts) -> String {
    let meta = p.meta;
    let mut md = String::new();
    let _ = writeln!(md, "# Port-25 blocking report — crawl {} ({})\n", meta.crawl_id, meta.crawl_date);
    let _ = writeln!(md, "**What was measured:** {}\n", p.measured());
    let _ = writeln!(md, "Vantage `{}`, crawl date {}, {} observations of {} hosts, selection `{}`.\n", meta.vantage, meta.crawl_date, meta.rows, meta.hosts, meta.selection);
    let _ = writeln!(md, "Data: {}.\n", meta.completeness.line());
    let _ = writeln!(md, "Samples: {}.\n", meta.completeness.sampling_line());
    for x in &meta.completeness.problems {
        let _ = writeln!(md, "**INCOMPLETE CRAWL: {x}.** Missing data may read as filtering here.\n");
    }
    for x in &meta.withheld {
        let _ = writeln!(md, "**WITHHELD: {x}.**\n");
    }
    if meta.vantages.len() > 1 {
        let _ = writeln!(md, "Vantages this date: {}. The tables are vantage `{}`'s; the vantages are compared below.\n", vantage_list(meta), meta.vantage);
    }
    if let Some(e) = &meta.egress {
        let _ = writeln!(md, "Egress: {} runs, {} attempts from {} vantages ({} not placed in a provider), from {}.\n", e.runs, e.attempts, e.vantages, e.unmapped, e.dirs.join(", "));
    }
    md.push_str("## Can the providers' customers send mail out? Outbound 25, 465, 587 beside inbound 25\n\n");
    let _ = writeln!(md, "{OUTBOUND_REACH}\n");
    if p.egress.is_some() {
        let _ = writeln!(md, "{EGRESS_REACH}\n");
    }
    views::answer_md(&mut md, &p.answer, p.egress.is_some());
    let _ = writeln!(md, "\n{}\n", p.rules);
    if p.egress.is_some() {
        md.push_str("## Where the methods disagree (reflection vs the vantages inside)\n\n");
        views::findings_md(&mut md, &p.cmp);
    }
    if let Some(d) = p.documented {
        md.push_str("\n## Documented vs measured\n\n");
        if let Some(pm) = &meta.policies {
            let _ = writeln!(md, "Documented policies: {} rows of {} providers from {}.\n", pm.rows, pm.providers, pm.file);
            for w in &pm.warnings {
                let _ = writeln!(md, "- warning: {w}");
            }
        }
        views::documented_md(&mut md, d);
    }
    md.push_str("\n## Inbound port 25 by provider (SYN scan)\n\n");
    table_md(&mut md, &p.p25);
    md.push_str("\n## Outbound by provider (source-port reflection: stateless egress filters only)\n\n");
    table_md(&mut md, &p.reflection);
    if let Some(e) = p.egress {
        md.push_str("\n## Outbound by provider from inside (crawler egress; n = vantages)\n\n");
        table_md(&mut md, &p.inside);
        md.push_str("\n### Egress vantages\n\n");
        views::vantages_md(&mut md, &e.series, &e.unmapped);
    }
    md.push_str("\n## Inbound mail submission ports (465, 587)\n\n");
    table_md(&mut md, &p.other);
    if let Some(v) = p.vantages {
        md.push_str("\n## Vantages compared (port 25)\n\n");
        let _ = writeln!(md, "{VANTAGES_NOTE}\n");
        md.push_str("| provider | family | direction | port | verdict per vantage (filtered/informative) | agreement | note |\n|---|---|---|---|---|---|---|\n");
        for c in v.cmp.iter().filter(|c| c.port == 25) {
            let _ = writeln!(md, "| {} | {} | {} | {} | {} | **{}** | {} |", c.provider, c.family, c.direction, c.port, c.verdicts, c.agreement, c.note);
        }
        md.push_str("\nEvery port and direction: `vantages.csv`.\n");
    }
    if let Some(t) = p.trend {
        md.push_str("\n## Changes across crawls (inbound port 25)\n\n");
        if t.changes.is_empty() {
            md.push_str("No verdict changed between consecutive crawls.\n");
        }
        for c in &t.changes {
            let _ = writeln!(md, "- {} ({}): {}", c.provider, c.family, c.text);
        }
    }
    md.push_str(if p.egress.is_some() { "\nPer-ASN rows: `asns.csv`; per-host states: `hosts.parquet`; per egress vantage and port: `egress-vantages.csv`.\n" } else { "\nPer-ASN rows: `asns.csv`; per-host states: `hosts.parquet`.\n" });
    md
}

fn html(p: &Parts) -> String {
    let (meta, providers) = (p.meta, p.providers);
    let c25 = charts::whiskers("Inbound port 25 filtered, by provider (IPv4)", &["25 / IPv4"], &charts::lines_from(providers, &[("inbound", "ipv4", 25)]));
    let cout = charts::whiskers(
        "Outbound 25, 465, 587 filtered (reflection, IPv4)",
        &["25", "465", "587"],
        &charts::lines_from(providers, &[("outbound", "ipv4", 25), ("outbound", "ipv4", 465), ("outbound", "ipv4", 587)]),
    );
    let cports = charts::whiskers("Inbound port 25 vs submission ports 465 and 587 (IPv4)", &["25", "465", "587"], &charts::lines_from(providers, &[("inbound", "ipv4", 25), ("inbound", "ipv4", 465), ("inbound", "ipv4", 587)]));
    let cfam = charts::whiskers(
        "Port 25: IPv4 vs IPv6, inbound and outbound",
        &["in IPv4", "in IPv6", "out IPv4", "out IPv6"],
        &charts::lines_from(providers, &[("inbound", "ipv4", 25), ("inbound", "ipv6", 25), ("outbound", "ipv4", 25), ("outbound", "ipv6", 25)]),
    );
    let mut html = String::new();
    let _ = write!(
        html,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Port-25 blocking report — {}</title><style>\
body{{font-family:sans-serif;margin:2em;max-width:1200px}}table{{border-collapse:collapse;margin:1em 0;font-size:13px}}\
td,th{{border:1px solid #ccc;padding:3px 6px;text-align:left}}th{{background:#eee}}tr.v-blocks td{{background:#fde0dc}}\
tr.v-mixed td{{background:#fff4d6}}tr.v-vantage-banned td,tr.v-vantage-outage td,tr.v-vantage-filtered td{{background:#e8e0f4}}tr.a-path-specific td,tr.a-differ td{{background:#fde0dc}}tr.v-open td{{background:#e3f4e1}}tr.v-insufficient td{{color:#777}}td.v-blocks{{background:#fde0dc}}td.v-open{{background:#e3f4e1}}td.v-mixed{{background:#fff4d6}}\
td.m-differ{{background:#fde0dc;font-weight:bold}}td.v-throttled,td.v-intercepted,td.v-stripped,td.v-tls-intercepted{{background:#fde0dc}}\
figure{{margin:1em 0}}.note{{background:#f4f4f4;padding:.6em 1em;border-left:4px solid #888}}</style></head><body>",
        esc(&meta.crawl_id)
    );
    let _ = write!(html, "<h1>Port-25 blocking report</h1><p class=\"note\" id=\"measured\"><b>What was measured:</b> {}</p>", esc(p.measured()));
    let _ = write!(
        html,
        "<p id=\"meta\">Crawl <b>{}</b> on <b>{}</b> from vantage <b>{}</b>: {} observations of {} hosts (selection: {}).</p>",
        esc(&meta.crawl_id), esc(&meta.crawl_date), esc(&meta.vantage), meta.rows, meta.hosts, esc(&meta.selection)
    );
    let _ = write!(html, "<p id=\"completeness\">Data: {}.</p>", esc(&meta.completeness.line()));
    let _ = write!(html, "<p id=\"sampling\">Samples: {}.</p>", esc(&meta.completeness.sampling_line()));
    if meta.vantages.len() > 1 {
        let _ = write!(html, "<p id=\"vantages-meta\">Vantages this date: {}. The tables are vantage <b>{}</b>'s; the vantages are compared below.</p>", esc(&vantage_list(meta)), esc(&meta.vantage));
    }
    for x in &meta.completeness.problems {
        let _ = write!(html, "<p class=\"note\" style=\"border-color:#c00\"><b>INCOMPLETE CRAWL:</b> {}. Missing data may read as filtering here.</p>", esc(x));
    }
    for x in &meta.withheld {
        let _ = write!(html, "<p class=\"note withheld\" style=\"border-color:#c00\"><b>WITHHELD:</b> {}.</p>", esc(x));
    }
    if let Some(e) = &meta.egress {
        let _ = write!(html, "<p id=\"egress-meta\">Egress: {} runs, {} attempts from {} vantages ({} not placed in a provider).</p>", e.runs, e.attempts, e.vantages, e.unmapped);
    }
    let _ = write!(html, "<h2>Can the providers' customers send mail out?</h2><p class=\"note\" id=\"outbound-reach\">{}</p>", esc(OUTBOUND_REACH));
    if p.egress.is_some() {
        let _ = write!(html, "<p class=\"note\" id=\"egress-reach\">{}</p>", esc(EGRESS_REACH));
    }
    views::answer_html(&mut html, &p.answer, p.egress.is_some());
    let _ = write!(html, "<p>{}</p>", esc(&p.rules));
    if p.egress.is_some() {
        views::findings_html(&mut html, &p.cmp);
    }
    if let Some(d) = p.documented {
        views::documented_html(&mut html, d);
        if let Some(pm) = &meta.policies {
            let _ = write!(html, "<p>Documented policies: {} rows of {} providers from {}.</p>", pm.rows, pm.providers, esc(&pm.file));
            for w in &pm.warnings {
                let _ = write!(html, "<p class=\"note\">warning: {}</p>", esc(w));
            }
        }
    }
    let _ = write!(html, "<figure id=\"chart-outbound\">{cout}</figure>");
    let _ = write!(html, "<h2>Inbound port 25 by provider (SYN scan)</h2><figure id=\"chart-rates\">{c25}</figure>");
    table_html(&mut html, "providers-25", &p.p25);
    html.push_str("<h2>Outbound by provider (source-port reflection)</h2>");
    table_html(&mut html, "providers-outbound", &p.reflection);
    if let Some(e) = p.egress {
        html.push_str("<h2>Outbound by provider from inside (crawler egress; n = vantages)</h2>");
        table_html(&mut html, "providers-egress", &p.inside);
        html.push_str("<h3>Egress vantages</h3>");
        views::vantages_html(&mut html, &e.series, &e.unmapped);
    }
    let _ = write!(html, "<h2>Inbound 25 vs 465/587</h2><figure id=\"chart-ports\">{cports}</figure>");
    table_html(&mut html, "providers-submission", &p.other);
    let _ = write!(html, "<h2>IPv4 vs IPv6</h2><figure id=\"chart-family\">{cfam}</figure>");
    if let Some(v) = p.vantages {
        let _ = write!(html, "<h2>Vantages compared (port 25)</h2><p class=\"note\">{}</p><table id=\"vantages\"><thead><tr><th>provider</th><th>family</th><th>direction</th><th>port</th><th>verdict per vantage (filtered/informative)</th><th>agreement</th><th>note</th></tr></thead><tbody>", esc(VANTAGES_NOTE));
        for c in v.cmp.iter().filter(|c| c.port == 25) {
            let _ = write!(html, "<tr class=\"a-{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", c.agreement, esc(&c.provider), c.family, c.direction, c.port, esc(&c.verdicts), c.agreement, esc(&c.note));
        }
        html.push_str("</tbody></table>");
    }
    if let Some(t) = p.trend {
        let lines = t.chart_lines();
        let labels: Vec<String> = t.crawls.iter().map(|c| format!("{} {}", c.0, c.1)).collect();
        let ct = charts::trend("Inbound port 25 filtered over crawls (IPv4)", &labels, &lines);
        let _ = write!(html, "<h2>Across crawls</h2><figure id=\"chart-trend\">{ct}</figure><ul id=\"changes\">");
        for c in &t.changes {
            let _ = write!(html, "<li>{} ({}): {}</li>", esc(&c.provider), c.family, esc(&c.text));
        }
        if t.changes.is_empty() {
            html.push_str("<li>No verdict changed between consecutive crawls.</li>");
        }
        html.push_str("</ul>");
    }
    let _ = write!(html, "<p>Software: {}. Per-ASN numbers: asns.csv; per-host states: hosts.parquet.</p></body></html>\n", meta.software);
    html
}

/// The one-screen summary printed by `analysis report`: per provider and family, inbound 25
/// beside outbound 25 / 465 / 587 from outside and, with egress data, from inside.
pub fn print_table(providers: &[Row]) {
    let cmp = compare::comparisons(providers);
    let inside = providers.iter().any(|r| r.method == "egress");
    views::print_table(&compare::answer(providers, &cmp), inside);
    for c in cmp.iter().filter(|c| !c.agree) {
        println!("finding: {} ({}, port {}): {}", c.provider, c.family, c.port, c.finding);
    }
}
