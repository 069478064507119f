//! The sink's server-side record: one row per admitted connection into
//! `OUT/sink_date=YYYY-MM-DD/sink=NAME/part-*.parquet`, and per rotation a `counters-*.json`
//! of what was counted instead (refused connections, records that could not be kept). Rows
//! wait in memory until the file's row count or age is reached, then the file is written and
//! published atomically in one go, so a crash loses at most the rows of one unpublished file.
//!
//! Recording never stops the sink: a file the disk refuses (full, say) is kept in memory and
//! written at the next rotation while the next file fills; rows beyond those two files are
//! lost and counted. The disk budget ([`Budget`]) deletes the oldest files first.

use super::budget::Budget;
use super::counters::{Counters, Tally};
use anyhow::{Context, Result};
use arrow_array::RecordBatch;
use datasets::egress::{sink_schema, writer_props, SinkBatch, SinkRow};
use datasets::publish::{write_atomic, AtomicFile};
use parquet::arrow::ArrowWriter;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// What a finished connection hands to the recorder.
#[derive(Debug, Clone)]
pub struct ConnRecord {
    pub accepted_us: i64,
    pub ended_us: i64,
    pub client: SocketAddr,
    pub local: SocketAddr,
    pub nonce: String,
    pub implicit_tls: bool,
    pub commands: String,
    pub client_sent: Vec<u8>,
    pub tls_done: bool,
    pub tls_version: Option<&'static str>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub end: &'static str,
}

pub enum Msg {
    Conn(Box<ConnRecord>),
    /// Publish what is buffered (the file's age limit came).
    Rotate,
}

#[derive(Debug, Default)]
pub struct Written {
    pub files: Vec<PathBuf>,
    pub rows: u64,
    /// Connections whose row was lost: the disk refused their file while the next one filled
    /// up (or the recorder's queue was full, in `counters.records_dropped`).
    pub rows_lost: u64,
    /// Attempts to publish a file that failed (the disk full, say).
    pub failures: u64,
    /// What was counted instead of recorded, summed over the run.
    pub counters: Tally,
    /// Bytes the sink's files take at the end, and files deleted to stay within the budget.
    pub disk_bytes: u64,
    pub deleted: (u64, u64),
}

/// A file's worth of rows the disk refused: written again at the next rotation, while the rows
/// after it fill the next file (beyond that, rows are lost and counted).
struct Pending {
    batch: RecordBatch,
    date: String,
    first_us: i64,
}

pub struct Recorder {
    out: PathBuf,
    name: String,
    rotate_rows: usize,
    batch: SinkBatch,
    date: String,
    first_us: i64,
    // Distinguishes this process's files from an earlier run's in the same partition.
    tag: String,
    seq: u32,
    kv: Vec<(String, String)>,
    pending: Option<Pending>,
    budget: Budget,
    counters: Arc<Counters>,
    /// Counts taken from `counters` but not yet in a published file.
    unpublished: Tally,
    period_from: i64,
    /// After a failed write, none is tried before this (a full disk is not retried per row).
    quiet_until: Option<Instant>,
    written: Written,
}

fn date_of(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us).unwrap_or_default().format("%Y-%m-%d").to_string()
}

fn stamp(us: i64) -> impl std::fmt::Display {
    chrono::DateTime::from_timestamp_micros(us).unwrap_or_default().format("%Y%m%dT%H%M%SZ")
}

impl Recorder {
    pub fn new(out: &Path, name: &str, rotate_rows: usize, kv: Vec<(String, String)>, budget: Budget, counters: Arc<Counters>) -> Recorder {
        Recorder {
            out: out.to_path_buf(),
            name: name.to_string(),
            rotate_rows: rotate_rows.max(1),
            batch: SinkBatch::with_capacity(rotate_rows.clamp(1, 4096)),
            date: String::new(),
            first_us: 0,
            tag: format!("{:08x}", rand::random::<u32>()),
            seq: 0,
            kv,
            pending: None,
            budget,
            counters,
            unpublished: Tally::default(),
            period_from: super::conn::now_us(),
            quiet_until: None,
            written: Written::default(),
        }
    }

    /// The partition directory of a day.
    pub fn dir(out: &Path, date: &str, name: &str) -> PathBuf {
        out.join(format!("sink_date={date}")).join(format!("sink={name}"))
    }

    pub fn push(&mut self, r: &ConnRecord) {
        let date = date_of(r.accepted_us);
        if date != self.date {
            self.publish();
            self.date = date;
        }
        if self.batch.len() >= self.rotate_rows {
            // Full, and the file before it was still waiting for the disk: try again (at most
            // once a second), and if the disk still refuses, this row is lost.
            self.publish();
            if self.batch.len() >= self.rotate_rows {
                self.written.rows_lost += 1;
                return;
            }
        }
        if self.batch.is_empty() {
            self.first_us = r.accepted_us;
        }
        let (client_ip, local_ip) = (r.client.ip().to_canonical().to_string(), r.local.ip().to_canonical().to_string());
        let sent = String::from_utf8_lossy(&r.client_sent);
        self.batch.push(&SinkRow {
            sink: &self.name,
            accepted_at: r.accepted_us,
            ended_at: r.ended_us,
            client_ip: &client_ip,
            client_port: r.client.port(),
            local_ip: &local_ip,
            local_port: r.local.port(),
            ip_version: if r.local.ip().to_canonical().is_ipv4() { 4 } else { 6 },
            nonce: &r.nonce,
            implicit_tls: r.implicit_tls,
            commands: &r.commands,
            client_sent: &sent,
            tls_done: r.tls_done,
            tls_version: r.tls_version,
            bytes_in: r.bytes_in,
            bytes_out: r.bytes_out,
            end: r.end,
        });
        if self.batch.len() >= self.rotate_rows {
            self.publish();
        }
    }

    /// Publish the buffered rows and the counters of the period, then keep the disk budget.
    /// Never fails: a file the disk refuses is kept for the next rotation, and counted.
    pub fn publish(&mut self) {
        if self.quiet_until.is_some_and(|t| Instant::now() < t) {
            return;
        }
        self.quiet_until = None;
        if let Some(p) = self.pending.take() {
            if let Err(e) = self.write(&p) {
                self.failed(e);
                self.pending = Some(p);
            }
        }
        if self.pending.is_none() && !self.batch.is_empty() {
            let p = Pending { batch: self.batch.finish(), date: self.date.clone(), first_us: self.first_us };
            if let Err(e) = self.write(&p) {
                self.failed(e);
                self.pending = Some(p);
            }
        }
        let now = super::conn::now_us();
        self.unpublished.add(&self.counters.take());
        if !self.unpublished.is_empty() {
            match self.write_counters(now) {
                Ok(()) => {
                    self.written.counters.add(&self.unpublished);
                    self.unpublished = Tally::default();
                    self.period_from = now;
                }
                Err(e) => self.failed(e),
            }
        }
        self.budget.enforce(&date_of(now));
    }

    fn failed(&mut self, e: anyhow::Error) {
        if self.written.failures == 0 || self.quiet_until.is_none() {
            tracing::warn!("sink: cannot publish a file ({e:#}); serving on, rows are kept for the next rotation and counted when lost");
        }
        self.written.failures += 1;
        self.quiet_until = Some(Instant::now() + RETRY);
    }

    fn write(&mut self, p: &Pending) -> Result<()> {
        let dir = Self::dir(&self.out, &p.date, &self.name);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        self.seq += 1;
        let dest = dir.join(format!("part-{}-{}-{:05}.parquet", stamp(p.first_us), self.tag, self.seq));
        let mut w = ArrowWriter::try_new(AtomicFile::create(&dest)?, sink_schema(), Some(writer_props(self.kv.clone(), p.batch.num_rows().max(1))))?;
        w.write(&p.batch)?;
        w.into_inner()?.commit()?;
        self.budget.add(&dest, &p.date);
        self.written.files.push(dest);
        self.written.rows += p.batch.num_rows() as u64;
        Ok(())
    }

    fn write_counters(&mut self, now: i64) -> Result<()> {
        let date = date_of(self.period_from);
        let dir = Self::dir(&self.out, &date, &self.name);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        self.seq += 1;
        let dest = dir.join(format!("counters-{}-{}-{:05}.json", stamp(self.period_from), self.tag, self.seq));
        let t = &self.unpublished;
        let doc = serde_json::json!({
            "sink": self.name,
            "from": crate::scan::manifest::rfc3339(self.period_from),
            "to": crate::scan::manifest::rfc3339(now),
            "refused": t.refused,
            "refused_by_reason": t.by_reason,
            "refused_clients": t.clients,
            "refused_top_clients": t.top_clients.iter().map(|(c, n)| serde_json::json!({"client": c, "refused": n})).collect::<Vec<_>>(),
            "refused_other_clients": t.other_clients,
            "records_dropped": t.records_dropped,
        });
        write_atomic(&dest, serde_json::to_string_pretty(&doc)?)?;
        self.budget.add(&dest, &date);
        Ok(())
    }

    /// The last rows and counters, then what was written.
    fn finish(mut self) -> Written {
        self.quiet_until = None;
        self.publish();
        if let Some(p) = &self.pending {
            self.written.rows_lost += p.batch.num_rows() as u64;
        }
        // Rows still in the builder could not be published either.
        self.written.rows_lost += self.batch.len() as u64;
        self.written.counters.add(&self.unpublished);
        self.written.disk_bytes = self.budget.bytes();
        self.written.deleted = self.budget.deleted;
        std::mem::take(&mut self.written)
    }
}

/// How long a failed write waits before the next try.
const RETRY: Duration = Duration::from_secs(1);

/// The record thread: every message until the last sender is gone, then the last file.
pub fn spawn(mut rec: Recorder, mut rx: mpsc::Receiver<Msg>) -> std::io::Result<std::thread::JoinHandle<Written>> {
    std::thread::Builder::new().name("sink-record".into()).spawn(move || -> Written {
        while let Some(m) = rx.blocking_recv() {
            match m {
                Msg::Conn(r) => rec.push(&r),
                Msg::Rotate => rec.publish(),
            }
        }
        rec.finish()
    })
}
