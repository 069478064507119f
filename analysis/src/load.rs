//! Finding a crawl's files in the hive layout and streaming them, batch by batch, into
//! per-host accumulators (only the columns inference needs are decoded).

use crate::infer::{HostAcc, ReplyObs};
use anyhow::{bail, Context, Result};
use arrow_array::{Array, RecordBatch, StringArray, TimestampMicrosecondArray, UInt16Array, UInt32Array, UInt8Array};
use datasets::schema::obs;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;
use hashbrown::HashMap;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// One crawl in the data directory (all shards of it).
#[derive(Debug, Clone)]
pub struct Crawl {
    pub date: String,
    pub id: String,
    pub files: Vec<PathBuf>,
    /// The partition directories (one crawl id may appear under two dates: a resumed crawl).
    pub dirs: Vec<PathBuf>,
}

/// Crawls under `DIR/crawl_date=*/crawl_id=*/`, oldest first.
pub fn crawls(dir: &Path) -> Result<Vec<Crawl>> {
    let mut out: BTreeMap<(String, String), (Vec<PathBuf>, Vec<PathBuf>)> = BTreeMap::new();
    let rd = std::fs::read_dir(dir).with_context(|| format!("reading data directory {}", dir.display()))?;
    for d in rd {
        let d = d?;
        let name = d.file_name().to_string_lossy().into_owned();
        let Some(date) = name.strip_prefix("crawl_date=") else { continue };
        for c in std::fs::read_dir(d.path())? {
            let c = c?;
            let cname = c.file_name().to_string_lossy().into_owned();
            let Some(id) = cname.strip_prefix("crawl_id=") else { continue };
            let mut files: Vec<PathBuf> = std::fs::read_dir(c.path())?
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "parquet") && p.file_name().unwrap().to_string_lossy().starts_with("part-"))
                .collect();
            files.sort();
            if !files.is_empty() {
                let e = out.entry((date.to_string(), id.to_string())).or_default();
                e.0.extend(files);
                e.1.push(c.path());
            }
        }
    }
    Ok(out.into_iter().map(|((date, id), (files, dirs))| Crawl { date, id, files, dirs }).collect())
}

/// The crawls a report covers: `latest` — every crawl of the latest crawl date (one per
/// vantage when a crawl ran from several); a crawl id — that crawl alone.
pub fn pick(all: &[Crawl], which: &str) -> Result<Vec<Crawl>> {
    let Some(last) = all.iter().map(|c| &c.date).max() else {
        bail!("no crawls found (expected DIR/crawl_date=YYYY-MM-DD/crawl_id=ID/*.parquet)");
    };
    if which == "latest" {
        return Ok(all.iter().filter(|c| &c.date == last).cloned().collect());
    }
    all.iter().find(|c| c.id == which).cloned().map(|c| vec![c]).with_context(|| format!("no crawl with id {which}"))
}

/// Interned strings (prefixes, ICMP responders): hosts keep small ids.
#[derive(Default)]
pub struct Interner {
    pub map: HashMap<String, u32>,
    pub list: Vec<String>,
}

impl Interner {
    pub fn id(&mut self, s: &str) -> u32 {
        if let Some(i) = self.map.get(s) {
            return *i;
        }
        self.list.push(s.to_string());
        self.map.insert(s.to_string(), self.list.len() as u32 - 1);
        self.list.len() as u32 - 1
    }
}

pub struct Hosts {
    /// Keyed by the address as written in the crawl (no parsing per row).
    pub hosts: HashMap<Box<str>, HostAcc>,
    pub strings: Interner,
    pub vantage: String,
    pub rows: u64,
}

/// A host's address as a number (v4 mapped into v6), for /24 and /64 grouping.
pub fn numeric(ip: &str) -> Option<u128> {
    Some(match ip.parse::<IpAddr>().ok()? {
        IpAddr::V4(a) => u128::from(a.to_ipv6_mapped()),
        IpAddr::V6(a) => u128::from(a),
    })
}

const COLS: &[&str] = &[obs::IP, obs::IP_VERSION, obs::ASN, obs::PREFIX, obs::PORT, obs::PORT_ROLE, obs::REPLY, obs::REPLY_TTL, obs::ICMP_TYPE, obs::ICMP_CODE, obs::ICMP_RESPONDER];
/// Columns a crawl may lack: crawls from before source-port reflection have no `src_port` (and
/// no reflection rows, which are all it is needed for); without the times, no ban is detected.
const OPTIONAL_COLS: &[&str] = &[obs::SRC_PORT, obs::SENT_AT, obs::ATTEMPTS, obs::RECEIVED_AT];

/// Stream every row of `files` into per-host accumulators. Two stages on two cores: a reader
/// thread decodes Parquet (only the needed columns), this thread folds rows into hosts.
pub fn load_hosts(files: &[PathBuf]) -> Result<Hosts> {
    let mut h = Hosts { hosts: HashMap::new(), strings: Interner::default(), vantage: String::new(), rows: 0 };
    let (tx, rx) = std::sync::mpsc::sync_channel::<Result<(PathBuf, String, RecordBatch)>>(4);
    let files_owned = files.to_vec();
    let reader = std::thread::spawn(move || {
        for f in files_owned {
            if let Err(e) = read_file(&f, &tx) {
                let _ = tx.send(Err(e.context(format!("reading {}", f.display()))));
                return;
            }
        }
    });
    for item in rx {
        let (f, vantage, batch) = item?;
        if h.vantage.is_empty() {
            h.vantage = vantage;
        }
        fold_batch(&f, &batch, &mut h).with_context(|| format!("reading {}", f.display()))?;
    }
    reader.join().map_err(|_| anyhow::anyhow!("reader thread panicked"))?;
    Ok(h)
}

/// One crawl file read from any Parquet source (the fuzz targets give bytes in memory) into
/// per-host accumulators, on this thread; `f` names it in errors.
pub fn load_from<R: parquet::file::reader::ChunkReader + 'static>(f: &Path, source: R) -> Result<Hosts> {
    let mut h = Hosts { hosts: HashMap::new(), strings: Interner::default(), vantage: String::new(), rows: 0 };
    let (vantage, reader) = open_crawl_file(f, source)?;
    h.vantage = vantage;
    let mut reader = reader;
    while let Some(batch) = datasets::schema::guard(f, || reader.next())? {
        let batch = batch.map_err(|e| datasets::DatasetError::file(f, format!("corrupt crawl file: {e}")))?;
        fold_batch(f, &batch, &mut h)?;
    }
    Ok(h)
}

fn read_file(f: &Path, tx: &std::sync::mpsc::SyncSender<Result<(PathBuf, String, RecordBatch)>>) -> Result<()> {
    let file = std::fs::File::open(f).map_err(|e| datasets::DatasetError::io(f, e))?;
    let (vantage, mut reader) = open_crawl_file(f, file)?;
    while let Some(batch) = datasets::schema::guard(f, || reader.next())? {
        let batch = batch.map_err(|e| datasets::DatasetError::file(f, format!("corrupt crawl file: {e}")))?;
        if tx.send(Ok((f.to_path_buf(), vantage.clone(), batch))).is_err() {
            return Ok(());
        }
    }
    Ok(())
}

/// The vantage a crawl file names, and a reader of the columns inference needs. Whatever is
/// wrong with the file is bad input (exit 2), named.
fn open_crawl_file<R: parquet::file::reader::ChunkReader + 'static>(f: &Path, source: R) -> Result<(String, parquet::arrow::arrow_reader::ParquetRecordBatchReader)> {
    let len = source.len();
    let b = ParquetRecordBatchReaderBuilder::try_new(source).map_err(|e| datasets::DatasetError::file(f, format!("not a complete Parquet file (truncated or still being written?): {e}")))?;
    datasets::schema::check_footer(f, b.metadata(), len)?;
    // The vantage is constant per file: the crawler puts it in the key-value metadata.
    let vantage = b
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|k| k.key == "port25.vantage").and_then(|k| k.value.clone()))
        .unwrap_or_else(|| "unknown".into());
    let schema = b.parquet_schema();
    let mut idx: Vec<usize> = COLS
        .iter()
        .map(|c| schema.columns().iter().position(|x| x.name() == *c).ok_or_else(|| datasets::DatasetError::file(f, format!("no `{c}` column (not a port25 crawl file?)"))))
        .collect::<std::result::Result<_, _>>()?;
    idx.extend(OPTIONAL_COLS.iter().filter_map(|c| schema.columns().iter().position(|x| x.name() == *c)));
    let mask = ProjectionMask::leaves(schema, idx);
    let reader = b.with_projection(mask).with_batch_size(65_536).build().map_err(|e| datasets::DatasetError::file(f, format!("corrupt crawl file: {e}")))?;
    Ok((vantage, reader))
}

macro_rules! col {
    ($b:expr, $name:expr, $ty:ty, $f:expr) => {
        $b.column_by_name($name)
            .ok_or_else(|| datasets::DatasetError::file($f, format!("no `{}` column (not a port25 crawl file?)", $name)))?
            .as_any()
            .downcast_ref::<$ty>()
            .ok_or_else(|| datasets::DatasetError::file($f, format!("column `{}` has the wrong type (not a port25 crawl file?)", $name)))?
    };
}

fn fold_batch(f: &Path, batch: &RecordBatch, h: &mut Hosts) -> Result<()> {
    {
        let ip = col!(batch, obs::IP, StringArray, f);
        let ver = col!(batch, obs::IP_VERSION, UInt8Array, f);
        let asn = col!(batch, obs::ASN, UInt32Array, f);
        let prefix = col!(batch, obs::PREFIX, StringArray, f);
        let port = col!(batch, obs::PORT, UInt16Array, f);
        let role = col!(batch, obs::PORT_ROLE, StringArray, f);
        let reply = col!(batch, obs::REPLY, StringArray, f);
        let ttl = col!(batch, obs::REPLY_TTL, UInt8Array, f);
        let ity = col!(batch, obs::ICMP_TYPE, UInt8Array, f);
        let icode = col!(batch, obs::ICMP_CODE, UInt8Array, f);
        let resp = col!(batch, obs::ICMP_RESPONDER, StringArray, f);
        // Optional columns: absent is fine (older crawls); present with another type is not.
        fn optional<'a, T: 'static>(f: &Path, b: &'a RecordBatch, name: &str) -> Result<Option<&'a T>> {
            match b.column_by_name(name) {
                None => Ok(None),
                Some(c) => c.as_any().downcast_ref::<T>().map(Some).ok_or_else(|| datasets::DatasetError::file(f, format!("column `{name}` has type {}", c.data_type())).into()),
            }
        }
        let sport = optional::<UInt16Array>(f, batch, obs::SRC_PORT)?;
        let sent = optional::<TimestampMicrosecondArray>(f, batch, obs::SENT_AT)?;
        let tries = optional::<UInt8Array>(f, batch, obs::ATTEMPTS)?;
        let recv = optional::<TimestampMicrosecondArray>(f, batch, obs::RECEIVED_AT)?;
        if h.hosts.capacity() == 0 {
            // A crawl has a row per host and port (8 by default): size the map once.
            h.hosts.reserve(batch.num_rows() * 4);
        }
        for i in 0..batch.num_rows() {
            let s = ip.value(i);
            let obs = ReplyObs {
                reply: match reply.value(i) {
                    "synack" => 1,
                    "rst" => 2,
                    "icmp" => 3,
                    // The probe never left: missing data, not silence (as if not probed).
                    "unsent" => {
                        h.rows += 1;
                        continue;
                    }
                    "none" => 0,
                    // Anything else is not a reply this reader knows: never silence (which
                    // would count as filtering).
                    other => return Err(datasets::DatasetError::file(f, format!("row {i} of a batch: unknown reply `{other}`")).into()),
                },
                ttl: if ttl.is_null(i) { 0 } else { ttl.value(i) },
                icmp_type: if ity.is_null(i) { 0 } else { ity.value(i) },
                icmp_code: if icode.is_null(i) { 0 } else { icode.value(i) },
                responder: if resp.is_null(i) { u32::MAX } else { h.strings.id(resp.value(i)) },
            };
            let strings = &mut h.strings;
            let acc = h.hosts.entry_ref(s).or_insert_with(|| HostAcc::new(asn.value(i), strings.id(prefix.value(i)), ver.value(i) == 6));
            acc.add(port.value(i), role.value(i), sport.map_or(0, |s| s.value(i)), &obs);
            acc.add_times(sent.map(|c| c.value(i)), tries.map(|c| c.value(i)), recv.filter(|c| !c.is_null(i)).map(|c| c.value(i)));
            h.rows += 1;
        }
    }
    Ok(())
}
