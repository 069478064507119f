//! Output (ZMap's output modules): observations into Parquet that DuckDB reads as is, in the
//! crawl's hive partition `DIR/crawl_date=YYYY-MM-DD/crawl_id=ID/`. The columns are declared
//! once, in `datasets::schema` (`ObsRow`, `ObsBatch`). Files are published atomically
//! (`datasets::publish`), so a reader or a resumed crawl never sees a file without its footer;
//! a new file is started every `rows_per_file` rows so a crash loses at most one.

use super::ports::PortPlan;
use super::targets::Targets;
use crate::probe::{Reply, ReplyKind};
use anyhow::{Context, Result};
use crossbeam_channel::Receiver;
use datasets::publish::AtomicFile;
use datasets::schema::{self, reply, ObsBatch, ObsRow};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One probe's outcome, as the receive loop (or a silence sweep) hands it over.
#[derive(Debug, Clone, Copy)]
pub struct Observation {
    pub probe: u64,
    pub attempts: u8,
    /// Our source port: the answered attempt's, or the last one's for silence.
    pub sport: u16,
    pub sent_us: i64,
    pub reply: Option<Reply>,
    pub recv_us: i64,
    /// False when the probe's final attempt could not be sent (a send error): not a
    /// measurement, recorded as `unsent`.
    pub sent: bool,
}

const BATCH_ROWS: usize = 8192;

/// Observation files are written in row groups of this many rows.
const ROW_GROUP_ROWS: usize = 65_536;

/// `reply` values in the order of [`Written::by_reply`].
pub const REPLY_KINDS: [&str; 5] = [reply::SYNACK, reply::RST, reply::ICMP, reply::NONE, reply::UNSENT];

/// What a recorder wrote.
#[derive(Debug, Default)]
pub struct Written {
    pub files: Vec<PathBuf>,
    pub rows: u64,
    /// Rows per reply kind, as [`REPLY_KINDS`].
    pub by_reply: [u64; 5],
}

impl Written {
    pub fn add(&mut self, o: Written) {
        self.files.extend(o.files);
        self.rows += o.rows;
        self.by_reply.iter_mut().zip(o.by_reply).for_each(|(a, b)| *a += b);
    }
}

pub struct Recorder {
    dir: PathBuf,
    name_prefix: String,
    crawl_id: String,
    vantage: String,
    targets: Arc<Targets>,
    ports: Arc<PortPlan>,
    props: WriterProperties,
    rows_per_file: usize,
    batch: ObsBatch,
    current: Option<(ArrowWriter<AtomicFile>, usize)>,
    /// Called once a file is published (the spool's uploader and its bound watch this).
    published: Option<Arc<dyn Fn() + Send + Sync>>,
    seq: u32,
    written: Written,
    // Text of the row being built (no allocation per row).
    ip: String,
    options: String,
    responder: String,
}

impl Recorder {
    /// `name_prefix` distinguishes writers sharing a partition (shards, resumed runs).
    pub fn new(dir: &Path, name_prefix: &str, crawl_id: &str, vantage: &str, targets: Arc<Targets>, ports: Arc<PortPlan>, kv: Vec<(String, String)>, rows_per_file: usize) -> Result<Recorder> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Recorder {
            dir: dir.to_path_buf(),
            name_prefix: name_prefix.to_string(),
            crawl_id: crawl_id.into(),
            vantage: vantage.into(),
            targets,
            ports,
            props: schema::observation_writer_props(kv, ROW_GROUP_ROWS),
            rows_per_file,
            batch: ObsBatch::with_capacity(BATCH_ROWS),
            current: None,
            published: None,
            seq: 0,
            written: Written::default(),
            ip: String::with_capacity(64),
            options: String::with_capacity(64),
            responder: String::with_capacity(64),
        })
    }

    /// Call `f` after each file is published.
    pub fn on_publish(mut self, f: Option<Arc<dyn Fn() + Send + Sync>>) -> Recorder {
        self.published = f;
        self
    }

    pub fn push(&mut self, o: &Observation) -> Result<()> {
        let slots = self.ports.slots();
        let t = (o.probe / slots) as usize;
        let ip = self.targets.ip(t);
        let (port, role) = self.ports.port(self.targets.asn[t], o.probe % slots);
        self.ip.clear();
        schema::push_ip(&mut self.ip, ip);
        let prefix = &self.targets.prefixes[self.targets.prefix_idx[t] as usize];
        let v = if ip.is_ipv4() { 4 } else { 6 };
        let mut row = ObsRow::silent(&self.crawl_id, &self.vantage, &self.ip, v, self.targets.asn[t], prefix, port, role.as_str(), o.sport, o.attempts, o.sent_us);
        let kind = match &o.reply {
            None if !o.sent => {
                row.reply = reply::UNSENT;
                4
            }
            None => 3,
            Some(r) => {
                row.received_at = Some(o.recv_us);
                row.rtt_us = Some((o.recv_us - o.sent_us).clamp(0, u32::MAX as i64) as u32);
                row.reply_ttl = Some(r.ttl);
                row.reply_ipid = r.ip_id;
                if r.kind == ReplyKind::Icmp {
                    row.reply = reply::ICMP;
                    row.icmp_type = Some(r.icmp_type);
                    row.icmp_code = Some(r.icmp_code);
                    self.responder.clear();
                    schema::push_ip(&mut self.responder, r.responder);
                    row.icmp_responder = Some(&self.responder);
                    2
                } else {
                    row.reply = if r.kind == ReplyKind::SynAck { reply::SYNACK } else { reply::RST };
                    row.tcp_flags = Some(r.tcp_flags);
                    row.tcp_window = Some(r.window);
                    row.tcp_mss = r.mss;
                    self.options.clear();
                    let mut num = itoa::Buffer::new();
                    for (i, k) in r.options.as_slice().iter().enumerate() {
                        if i > 0 {
                            self.options.push(',');
                        }
                        self.options.push_str(num.format(*k));
                    }
                    row.tcp_options = Some(&self.options);
                    (r.kind == ReplyKind::Rst) as usize
                }
            }
        };
        self.batch.push(&row);
        self.written.by_reply[kind] += 1;
        self.written.rows += 1;
        if self.batch.len() >= BATCH_ROWS.min(self.rows_per_file) {
            self.flush_batch()?;
        }
        Ok(())
    }

    fn flush_batch(&mut self) -> Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let n = self.batch.len();
        let batch = self.batch.finish();
        if self.current.is_none() {
            self.seq += 1;
            let dest = self.dir.join(format!("{}-{:05}.parquet", self.name_prefix, self.seq));
            let f = AtomicFile::create(&dest)?;
            self.current = Some((ArrowWriter::try_new(f, batch.schema(), Some(self.props.clone()))?, 0));
        }
        let (w, rows) = self.current.as_mut().expect("opened above");
        w.write(&batch)?;
        *rows += n;
        if *rows >= self.rows_per_file {
            self.close_file()?;
        }
        Ok(())
    }

    fn close_file(&mut self) -> Result<()> {
        if let Some((w, _)) = self.current.take() {
            let f = w.into_inner()?; // flushes the row group and writes the footer
            let dest = f.dest().to_path_buf();
            f.commit()?;
            self.written.files.push(dest);
            if let Some(h) = &self.published {
                h();
            }
        }
        Ok(())
    }

    /// Flush, close the last file and say what was written.
    pub fn finish(mut self) -> Result<Written> {
        self.flush_batch()?;
        self.close_file()?;
        Ok(std::mem::take(&mut self.written))
    }
}

/// The record thread: every observation the loops send, into `recorder`, until the last
/// sender of the channel is gone.
pub fn spawn(mut recorder: Recorder, rx: Receiver<Observation>) -> std::io::Result<std::thread::JoinHandle<Result<Recorder>>> {
    std::thread::Builder::new().name("record".into()).spawn(move || -> Result<Recorder> {
        for o in rx {
            recorder.push(&o)?;
        }
        Ok(recorder)
    })
}
