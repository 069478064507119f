//! Finding a crawl's files in the hive layout, and scanning them into per-host accumulators
//! with memory bounded by `--partition-hosts`, not by the crawl: rows are decoded once
//! (`decode`), folded per host (`fold`) — directly when the crawl's hosts fit, else through
//! hash partitions in temporary files (`spill`), one partition at a time — and each host,
//! once complete, is handed to the caller and dropped. No host state outlives its partition.

use crate::decode::{self, Codes, Interner, Rec};
use crate::fold::HostTable;
use crate::infer::HostAcc;
use crate::spill::{self, Spill, TempDir};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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

/// How a crawl is scanned.
#[derive(Debug, Clone)]
pub struct ScanOptions {
    /// Where the partitions' temporary files go (a directory of their own is made inside).
    pub tmp: PathBuf,
    /// Hosts held in memory at once; a crawl with more is hash-partitioned.
    pub partition_hosts: u64,
    /// How many hosts the crawl has, if known (the manifests' `targets`); else its rows say.
    pub hosts_hint: Option<u64>,
}

/// Default `--partition-hosts`: ~140 bytes a host in the fold's table, ~300 MB at most.
pub const PARTITION_HOSTS: u64 = 2_000_000;

/// What a scan saw, besides the hosts handed out.
#[derive(Debug, Clone, Default)]
pub struct Scanned {
    pub vantage: String,
    pub rows: u64,
    pub hosts: u64,
    /// Interned prefixes and ICMP responders (`HostAcc::prefix`, `ReplyObs::responder`).
    pub strings: Arc<Vec<String>>,
    /// Partitions the rows were split into (1: none, nothing written to disk), and the bytes
    /// written to their temporary files.
    pub partitions: usize,
    pub spilled_bytes: u64,
}

/// A host, complete, as handed out by a scan: the crawl's strings, its address (IPv4 mapped)
/// and its accumulator. Hosts come grouped by /24 (IPv6: /64): every host of a net one after
/// the other.
pub type OnHost<'a> = dyn FnMut(&Arc<Vec<String>>, u128, &HostAcc) -> Result<()> + 'a;

/// A host's address as a number (v4 mapped into v6), for /24 and /64 grouping.
pub fn numeric(ip: &str) -> Option<u128> {
    decode::parse_addr(ip).map(|a| a.0)
}

/// Rows in the crawl's files (their footers say).
fn rows_in(files: &[PathBuf]) -> Result<u64> {
    let mut n = 0u64;
    for f in files {
        let file = std::fs::File::open(f).map_err(|e| datasets::DatasetError::io(f, e))?;
        let r = parquet::file::serialized_reader::SerializedFileReader::new(file).map_err(|e| datasets::DatasetError::file(f, format!("not a complete Parquet file (truncated or still being written?): {e}")))?;
        n += parquet::file::reader::FileReader::metadata(&r).file_metadata().num_rows().max(0) as u64;
    }
    Ok(n)
}

/// Where each row goes: the one in-memory table, or a partition file.
enum Sink {
    Table(HostTable),
    Spill(Spill, TempDir),
}

/// A decoded batch's rows, as the decoding thread hands them to the scanning thread: records
/// for the one table, or records already encoded per partition.
enum Rows {
    Recs(Vec<Rec>),
    Parts(Vec<Vec<u8>>),
}

/// From a decoding thread, per file in order: its batches, then its end.
enum Decoded {
    Batch { vantage: Option<String>, rows: u64, out: Rows },
    EndOfFile,
}

/// Threads decoding Parquet into records (two cores: two of them, the scanning thread folding
/// beside them; they take the files in turns, and the scanning thread takes their batches in
/// file order, so every host's rows keep the crawl's order).
const DECODERS: usize = 2;
/// Batches a decoding thread may have ready ahead of the scanning thread.
const AHEAD: usize = 2;

/// Decode files `k, k + n, k + 2n, ...` into `tx`; emptied buffers come back on `back`.
fn decode_files(files: &[PathBuf], first: usize, n: usize, parts: usize, strings: &std::sync::Mutex<Interner>, tx: std::sync::mpsc::SyncSender<Result<Decoded>>, back: std::sync::mpsc::Receiver<Rows>) {
    let mut codes = Codes::default();
    let mut r = Rec::default();
    for k in (first..files.len()).step_by(n) {
        let f = &files[k];
        let one = |codes: &mut Codes, r: &mut Rec| -> Result<bool> {
            let file = std::fs::File::open(f).map_err(|e| datasets::DatasetError::io(f, e))?;
            let (vantage, mut reader) = decode::open(f, file)?;
            let mut vantage = Some(vantage);
            while let Some(batch) = datasets::schema::guard(f, || reader.next())? {
                let batch = batch.map_err(|e| datasets::DatasetError::file(f, format!("corrupt crawl file: {e}")))?;
                let b = decode::Batch::new(f, &batch, codes, strings)?;
                let mut out = match back.try_recv() {
                    Ok(o) => o,
                    Err(_) if parts == 1 => Rows::Recs(Vec::with_capacity(decode::BATCH_ROWS)),
                    Err(_) => Rows::Parts(vec![Vec::new(); parts]),
                };
                for i in 0..b.rows {
                    if !b.rec(i, r)? {
                        continue;
                    }
                    match &mut out {
                        Rows::Recs(v) => v.push(*r),
                        Rows::Parts(p) => spill::encode(r, &mut p[spill::partition(r.net(), parts)]),
                    }
                }
                if tx.send(Ok(Decoded::Batch { vantage: vantage.take(), rows: b.rows as u64, out })).is_err() {
                    return Ok(false); // the scan stopped
                }
            }
            Ok(tx.send(Ok(Decoded::EndOfFile)).is_ok())
        };
        match one(&mut codes, &mut r) {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                let _ = tx.send(Err(e.context(format!("reading {}", f.display()))));
                return;
            }
        }
    }
}

/// Scan a crawl's files: every host, complete, to `on_host` (grouped by net), with at most
/// `opts.partition_hosts` hosts in memory. Decoding threads turn Parquet into records; this
/// thread folds them (or writes them to their partitions, then folds each partition).
pub fn scan(files: &[PathBuf], opts: &ScanOptions, on_host: &mut OnHost) -> Result<Scanned> {
    // Hosts expected: the manifests', else a row per host and port of the crawler's smallest
    // default probe set (8: before reflection).
    let hosts = match opts.hosts_hint {
        Some(h) => h,
        None => rows_in(files)?.div_ceil(8),
    };
    let budget = opts.partition_hosts.max(2);
    // Partitioned, two partitions are in memory at once — one folded while the other's hosts
    // are handed out — so each holds half the budget.
    let parts = if hosts <= budget { 1 } else { hosts.div_ceil(budget / 2) as usize };
    let cap = if parts == 1 { budget } else { budget / 2 };
    let per_part = (hosts.div_ceil(parts as u64) + hosts.div_ceil(parts as u64) / 16).min(cap) as usize;
    let mut sink = if parts == 1 {
        Sink::Table(HostTable::with_capacity(per_part))
    } else {
        let dir = TempDir::new(&opts.tmp)?;
        Sink::Spill(Spill::create(&dir, parts)?, dir)
    };
    let mut s = Scanned { partitions: parts, ..Default::default() };
    let strings = std::sync::Mutex::new(Interner::default());
    let t0 = std::time::Instant::now();
    std::thread::scope(|sc| -> Result<()> {
        // Declared in here: on an early return they are dropped before the threads are joined,
        // so a decoding thread waiting to hand over a batch stops instead of waiting forever.
        let n = DECODERS.min(files.len()).max(1);
        let mut rxs = Vec::new();
        let mut backs = Vec::new();
        for first in 0..n {
            let (tx, rx) = std::sync::mpsc::sync_channel(AHEAD);
            let (back_tx, back_rx) = std::sync::mpsc::channel();
            let strings = &strings;
            sc.spawn(move || decode_files(files, first, n, parts, strings, tx, back_rx));
            rxs.push(rx);
            backs.push(back_tx);
        }
        for k in 0..files.len() {
            loop {
                let d = rxs[k % n].recv().map_err(|_| anyhow::anyhow!("a decoding thread stopped"))??;
                let Decoded::Batch { vantage, rows, mut out } = d else { break };
                if let Some(v) = vantage.filter(|_| s.vantage.is_empty()) {
                    s.vantage = v;
                }
                s.rows += rows;
                match (&mut sink, &mut out) {
                    (Sink::Table(t), Rows::Recs(v)) => {
                        v.iter().for_each(|r| t.fold(r));
                        v.clear();
                    }
                    (Sink::Spill(sp, _), Rows::Parts(p)) => {
                        for (i, b) in p.iter_mut().enumerate() {
                            sp.append(i, b)?;
                            b.clear();
                        }
                    }
                    _ => unreachable!("the decoders make what the sink takes"),
                }
                let _ = backs[k % n].send(out);
            }
        }
        Ok(())
    })?;
    tracing::debug!("decoded {} rows in {:.2} s", s.rows, t0.elapsed().as_secs_f64());
    s.strings = Arc::new(strings.into_inner().unwrap_or_else(|e| e.into_inner()).list);
    let strings = s.strings.clone();
    let mut emit = |t: &mut HostTable, s: &mut Scanned| -> Result<()> {
        s.hosts += t.len() as u64;
        t.drain_by_net(|a, h| on_host(&strings, a, h))
    };
    match sink {
        Sink::Table(mut t) => emit(&mut t, &mut s)?,
        Sink::Spill(sp, dir) => {
            let paths = sp.finish()?;
            s.spilled_bytes = paths.iter().map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)).sum();
            // One thread folds the next partition while this one hands out the last one's hosts.
            let t1 = std::time::Instant::now();
            let folding = std::sync::Mutex::new(0.0f64);
            std::thread::scope(|sc| -> Result<()> {
                // Declared in here: an early return drops them, and the folding thread stops.
                let (tx, rx) = std::sync::mpsc::sync_channel::<Result<HostTable>>(0);
                let (back_tx, back_rx) = std::sync::mpsc::channel::<HostTable>();
                let (paths, folding) = (&paths, &folding);
                sc.spawn(move || {
                    let mut r = Rec::default();
                    for p in paths {
                        let t0 = std::time::Instant::now();
                        let mut t = back_rx.try_recv().unwrap_or_else(|_| HostTable::with_capacity(per_part));
                        let folded = (|| -> Result<HostTable> {
                            let mut rd = spill::Reader::open(p)?;
                            while rd.next(&mut r)? {
                                t.fold(&r);
                            }
                            Ok(t)
                        })();
                        // Gone as soon as it is folded: the disk (or page cache) holds one
                        // crawl's rows at most, and less and less.
                        let _ = std::fs::remove_file(p);
                        *folding.lock().unwrap() += t0.elapsed().as_secs_f64();
                        let stop = folded.is_err();
                        if tx.send(folded).is_err() || stop {
                            return;
                        }
                    }
                });
                for _ in paths {
                    let mut t = rx.recv().map_err(|_| anyhow::anyhow!("the folding thread stopped"))??;
                    emit(&mut t, &mut s)?;
                    let _ = back_tx.send(t);
                }
                Ok(())
            })?;
            let folding = *folding.lock().unwrap();
            tracing::debug!("partitions folded ({folding:.2} s) and their hosts handed out in {:.2} s", t1.elapsed().as_secs_f64());
            drop(dir);
        }
    }
    Ok(s)
}

/// One crawl file read from any Parquet source (the fuzz targets give bytes in memory), on this
/// thread, its hosts to `on_host`; `f` names it in errors.
pub fn scan_from<R: parquet::file::reader::ChunkReader + 'static>(f: &Path, source: R, on_host: &mut OnHost) -> Result<Scanned> {
    let (vantage, mut reader) = decode::open(f, source)?;
    let mut s = Scanned { vantage, partitions: 1, ..Default::default() };
    let (strings, mut codes, mut t, mut r) = (std::sync::Mutex::new(Interner::default()), Codes::default(), HostTable::with_capacity(0), Rec::default());
    while let Some(batch) = datasets::schema::guard(f, || reader.next())? {
        let batch = batch.map_err(|e| datasets::DatasetError::file(f, format!("corrupt crawl file: {e}")))?;
        let b = decode::Batch::new(f, &batch, &mut codes, &strings)?;
        s.rows += b.rows as u64;
        for i in 0..b.rows {
            if b.rec(i, &mut r)? {
                t.fold(&r);
            }
        }
    }
    s.strings = Arc::new(strings.into_inner().unwrap_or_else(|e| e.into_inner()).list);
    s.hosts = t.len() as u64;
    let strings = s.strings.clone();
    t.drain_by_net(|a, h| on_host(&strings, a, h))?;
    Ok(s)
}

/// [`scan_from`] without a use for the hosts: what the fuzz targets call.
pub fn load_from<R: parquet::file::reader::ChunkReader + 'static>(f: &Path, source: R) -> Result<Scanned> {
    scan_from(f, source, &mut |_, _, _| Ok(()))
}
