//! Helpers of the sink/egress tests: loopback ports, an in-process sink, the Parquet rows.
#![allow(dead_code)]

use arrow_array::{Array, BooleanArray, RecordBatch, StringArray, UInt16Array, UInt32Array, UInt64Array, UInt8Array};
use clap::Parser;
use crawler::egress::{EgressArgs, EgressConfig};
use crawler::sink::{self, SinkArgs, SinkConfig, SinkStats};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

#[derive(Parser)]
struct SinkCli {
    #[command(flatten)]
    a: SinkArgs,
}

#[derive(Parser)]
struct EgressCli {
    #[command(flatten)]
    a: EgressArgs,
}

pub fn sink_args(args: &[String]) -> SinkArgs {
    SinkCli::try_parse_from(std::iter::once("sink".to_string()).chain(args.iter().cloned())).unwrap().a
}

pub fn egress_config(args: &[String]) -> EgressConfig {
    let a = EgressCli::try_parse_from(std::iter::once("egress".to_string()).chain(args.iter().cloned())).unwrap().a;
    EgressConfig::from_args(&a).unwrap()
}

/// `n` distinct ports free on every one of `addrs` right now (bound, then released).
pub fn free_ports(n: usize, addrs: &[&str]) -> Vec<u16> {
    let mut out = Vec::new();
    while out.len() < n {
        let first = std::net::TcpListener::bind((addrs[0], 0)).unwrap();
        let p = first.local_addr().unwrap().port();
        let rest: Vec<_> = addrs[1..].iter().map(|a| std::net::TcpListener::bind(SocketAddr::new(a.parse().unwrap(), p))).collect();
        if rest.iter().all(|r| r.is_ok()) && !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

pub fn list(ports: &[u16]) -> String {
    ports.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(",")
}

pub fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

/// A sink served by this process until [`TestSink::stop`].
pub struct TestSink {
    pub pin: String,
    pub out: tempfile::TempDir,
    pub max_out: u64,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<SinkStats>>,
}

impl TestSink {
    pub async fn start(listen: &[&str], ports: &[u16], implicit: &[u16], extra: &[&str]) -> TestSink {
        let out = tempfile::tempdir().unwrap();
        let mut args = vec!["--listen".to_string()];
        args.extend(s(listen));
        args.extend(s(&["--ports", &list(ports), "--implicit-tls-ports", &list(implicit), "--name", "test.sink", "--out"]));
        args.push(out.path().display().to_string());
        args.extend(s(extra));
        let cfg = SinkConfig::from_args(&sink_args(&args)).unwrap();
        let (pin, max_out) = (cfg.cert.pin.clone(), cfg.max_out);
        let listeners = sink::bind(&cfg.listen).unwrap();
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(sink::serve(cfg, listeners, async move {
            let _ = rx.await;
        }));
        TestSink { pin, out, max_out, stop, task }
    }

    /// Stop, wait for the last file; the stats and the sink's rows.
    pub async fn stop(self) -> (SinkStats, Vec<Row>, tempfile::TempDir) {
        let _ = self.stop.send(());
        let stats = self.task.await.unwrap().unwrap();
        // The sink's own table only: files uploaded to it (`egress/…`) are other tables.
        let mut rows = Vec::new();
        for d in std::fs::read_dir(self.out.path()).unwrap().flatten() {
            if d.file_name().to_string_lossy().starts_with("sink_date=") {
                rows.extend(read_rows(&d.path()));
            }
        }
        (stats, rows, self.out)
    }
}

/// One Parquet row as text values by column name (null: None).
pub type Row = std::collections::BTreeMap<String, Option<String>>;

fn column_values(c: &dyn Array) -> Vec<Option<String>> {
    macro_rules! each {
        ($t:ty) => {{
            let a = c.as_any().downcast_ref::<$t>().unwrap();
            (0..a.len()).map(|i| if a.is_null(i) { None } else { Some(a.value(i).to_string()) }).collect()
        }};
    }
    use arrow_schema::DataType::*;
    match c.data_type() {
        Utf8 => each!(StringArray),
        Boolean => each!(BooleanArray),
        UInt8 => each!(UInt8Array),
        UInt16 => each!(UInt16Array),
        UInt32 => each!(UInt32Array),
        UInt64 => each!(UInt64Array),
        Timestamp(..) => each!(arrow_array::TimestampMicrosecondArray),
        t => panic!("unexpected column type {t}"),
    }
}

fn batch_rows(b: &RecordBatch) -> Vec<Row> {
    let cols: Vec<(String, Vec<Option<String>>)> = b.schema().fields().iter().zip(b.columns()).map(|(f, c)| (f.name().clone(), column_values(c.as_ref()))).collect();
    (0..b.num_rows()).map(|i| cols.iter().map(|(n, v)| (n.clone(), v[i].clone())).collect()).collect()
}

pub fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else { return out };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(parquet_files(&p));
        } else if p.extension().is_some_and(|x| x == "parquet") {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// Every row of every `*.parquet` under `dir`.
pub fn read_rows(dir: &Path) -> Vec<Row> {
    let mut rows = Vec::new();
    for f in parquet_files(dir) {
        for b in datasets::schema::open_parquet(&f, 4096).unwrap() {
            rows.extend(batch_rows(&b.unwrap()));
        }
    }
    rows
}

/// Every `counters-*.json` the sink published under `dir`.
pub fn counters_files(dir: &Path) -> Vec<serde_json::Value> {
    fn walk(p: &Path, out: &mut Vec<serde_json::Value>) {
        for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
            let q = e.path();
            if q.is_dir() {
                walk(&q, out);
            } else if q.file_name().is_some_and(|n| n.to_string_lossy().starts_with("counters-")) {
                out.push(serde_json::from_str(&std::fs::read_to_string(&q).unwrap()).unwrap());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, &mut out);
    out
}

pub fn get<'a>(r: &'a Row, k: &str) -> Option<&'a str> {
    r.get(k).unwrap_or_else(|| panic!("no column {k}")).as_deref()
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}
