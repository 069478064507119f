//! The sink's server-side record: one row per connection into
//! `OUT/sink_date=YYYY-MM-DD/sink=NAME/part-*.parquet`. Rows wait in memory until the file's
//! row count or age is reached, then the file is written and published atomically in one go,
//! so a crash loses at most the rows of one unpublished file.

use anyhow::{Context, Result};
use datasets::egress::{sink_schema, writer_props, SinkBatch, SinkRow};
use datasets::publish::AtomicFile;
use parquet::arrow::ArrowWriter;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
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
    written: Written,
}

fn date_of(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us).unwrap_or_default().format("%Y-%m-%d").to_string()
}

impl Recorder {
    pub fn new(out: &Path, name: &str, rotate_rows: usize, kv: Vec<(String, String)>) -> Recorder {
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
            written: Written::default(),
        }
    }

    /// The partition directory of a day.
    pub fn dir(out: &Path, date: &str, name: &str) -> PathBuf {
        out.join(format!("sink_date={date}")).join(format!("sink={name}"))
    }

    pub fn push(&mut self, r: &ConnRecord) -> Result<()> {
        let date = date_of(r.accepted_us);
        if date != self.date {
            self.publish()?;
            self.date = date;
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
            self.publish()?;
        }
        Ok(())
    }

    /// Write the buffered rows as one file and publish it.
    pub fn publish(&mut self) -> Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let n = self.batch.len() as u64;
        let batch = self.batch.finish();
        let dir = Self::dir(&self.out, &self.date, &self.name);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        self.seq += 1;
        let first = chrono::DateTime::from_timestamp_micros(self.first_us).unwrap_or_default().format("%Y%m%dT%H%M%SZ");
        let dest = dir.join(format!("part-{first}-{}-{:05}.parquet", self.tag, self.seq));
        let mut w = ArrowWriter::try_new(AtomicFile::create(&dest)?, sink_schema(), Some(writer_props(self.kv.clone(), batch.num_rows().max(1))))?;
        w.write(&batch)?;
        w.into_inner()?.commit()?;
        self.written.files.push(dest);
        self.written.rows += n;
        Ok(())
    }
}

/// The record thread: every message until the last sender is gone, then the last file.
pub fn spawn(mut rec: Recorder, mut rx: mpsc::Receiver<Msg>) -> std::io::Result<std::thread::JoinHandle<Result<Written>>> {
    std::thread::Builder::new().name("sink-record".into()).spawn(move || -> Result<Written> {
        while let Some(m) = rx.blocking_recv() {
            match m {
                Msg::Conn(r) => rec.push(&r)?,
                Msg::Rotate => rec.publish()?,
            }
        }
        rec.publish()?;
        Ok(std::mem::take(&mut rec.written))
    })
}
