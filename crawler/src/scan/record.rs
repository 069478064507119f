//! Output: observations into Parquet that DuckDB reads as is, in the crawl's hive partition
//! `DIR/crawl_date=YYYY-MM-DD/crawl_id=ID/`. Files are written as `.NAME.inprogress`, fsynced
//! and renamed when complete, so a reader (or a resumed crawl) never sees a file without its
//! footer; a new file is started every `rows_per_file` rows so a crash loses at most one.

use crate::targets::{PortPlan, Targets};
use crate::wire::{Reply, ReplyKind};
use anyhow::{Context, Result};
use arrow_array::builder::{StringBuilder, TimestampMicrosecondBuilder, UInt16Builder, UInt32Builder, UInt8Builder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::SchemaRef;
use datasets::schema::{self, obs, reply};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One probe's outcome, as the receive loop (or the final silence sweep) hands it over.
#[derive(Debug, Clone, Copy)]
pub struct Observation {
    pub probe: u64,
    pub attempts: u8,
    pub sent_us: i64,
    pub reply: Option<Reply>,
    pub recv_us: i64,
}

const BATCH_ROWS: usize = 8192;

struct Builders {
    crawl_id: StringBuilder,
    vantage: StringBuilder,
    ip: StringBuilder,
    ip_version: UInt8Builder,
    asn: UInt32Builder,
    prefix: StringBuilder,
    port: UInt16Builder,
    role: StringBuilder,
    attempts: UInt8Builder,
    sent_at: TimestampMicrosecondBuilder,
    reply: StringBuilder,
    received_at: TimestampMicrosecondBuilder,
    rtt_us: UInt32Builder,
    ttl: UInt8Builder,
    ipid: UInt16Builder,
    flags: UInt8Builder,
    window: UInt16Builder,
    mss: UInt16Builder,
    options: StringBuilder,
    icmp_type: UInt8Builder,
    icmp_code: UInt8Builder,
    responder: StringBuilder,
    rows: usize,
}

impl Builders {
    fn new() -> Builders {
        let ts = || TimestampMicrosecondBuilder::with_capacity(BATCH_ROWS).with_timezone("UTC");
        let s = || StringBuilder::with_capacity(BATCH_ROWS, BATCH_ROWS * 16);
        Builders {
            crawl_id: s(),
            vantage: s(),
            ip: s(),
            ip_version: UInt8Builder::with_capacity(BATCH_ROWS),
            asn: UInt32Builder::with_capacity(BATCH_ROWS),
            prefix: s(),
            port: UInt16Builder::with_capacity(BATCH_ROWS),
            role: s(),
            attempts: UInt8Builder::with_capacity(BATCH_ROWS),
            sent_at: ts(),
            reply: s(),
            received_at: ts(),
            rtt_us: UInt32Builder::with_capacity(BATCH_ROWS),
            ttl: UInt8Builder::with_capacity(BATCH_ROWS),
            ipid: UInt16Builder::with_capacity(BATCH_ROWS),
            flags: UInt8Builder::with_capacity(BATCH_ROWS),
            window: UInt16Builder::with_capacity(BATCH_ROWS),
            mss: UInt16Builder::with_capacity(BATCH_ROWS),
            options: s(),
            icmp_type: UInt8Builder::with_capacity(BATCH_ROWS),
            icmp_code: UInt8Builder::with_capacity(BATCH_ROWS),
            responder: s(),
            rows: 0,
        }
    }

    fn finish(&mut self, schema: &SchemaRef) -> Result<RecordBatch> {
        self.rows = 0;
        let cols: Vec<ArrayRef> = vec![
            Arc::new(self.crawl_id.finish()),
            Arc::new(self.vantage.finish()),
            Arc::new(self.ip.finish()),
            Arc::new(self.ip_version.finish()),
            Arc::new(self.asn.finish()),
            Arc::new(self.prefix.finish()),
            Arc::new(self.port.finish()),
            Arc::new(self.role.finish()),
            Arc::new(self.attempts.finish()),
            Arc::new(self.sent_at.finish()),
            Arc::new(self.reply.finish()),
            Arc::new(self.received_at.finish()),
            Arc::new(self.rtt_us.finish()),
            Arc::new(self.ttl.finish()),
            Arc::new(self.ipid.finish()),
            Arc::new(self.flags.finish()),
            Arc::new(self.window.finish()),
            Arc::new(self.mss.finish()),
            Arc::new(self.options.finish()),
            Arc::new(self.icmp_type.finish()),
            Arc::new(self.icmp_code.finish()),
            Arc::new(self.responder.finish()),
        ];
        Ok(RecordBatch::try_new(schema.clone(), cols)?)
    }
}

pub struct Recorder {
    dir: PathBuf,
    name_prefix: String,
    crawl_id: String,
    vantage: String,
    targets: Arc<Targets>,
    ports: Arc<PortPlan>,
    kv: Vec<KeyValue>,
    schema: SchemaRef,
    rows_per_file: usize,
    b: Builders,
    current: Option<(ArrowWriter<File>, PathBuf, PathBuf, usize)>,
    seq: u32,
    pub files: Vec<PathBuf>,
    pub rows: u64,
    /// Rows per reply kind: synack, rst, icmp, none.
    pub by_reply: [u64; 4],
    text: String,
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
            kv: kv.into_iter().map(|(k, v)| KeyValue::new(k, v)).collect(),
            schema: schema::observation_schema(),
            rows_per_file,
            b: Builders::new(),
            current: None,
            seq: 0,
            files: vec![],
            rows: 0,
            by_reply: [0; 4],
            text: String::with_capacity(64),
        })
    }

    pub fn push(&mut self, o: &Observation) -> Result<()> {
        let slots = self.ports.slots();
        let t = (o.probe / slots) as usize;
        let ip = self.targets.ip(t);
        let (port, role) = self.ports.port(ip, o.probe % slots);
        let b = &mut self.b;
        b.crawl_id.append_value(&self.crawl_id);
        b.vantage.append_value(&self.vantage);
        self.text.clear();
        schema::push_ip(&mut self.text, ip);
        b.ip.append_value(&self.text);
        b.ip_version.append_value(if ip.is_ipv4() { 4 } else { 6 });
        b.asn.append_value(self.targets.asn[t]);
        b.prefix.append_value(&self.targets.prefixes[self.targets.prefix_idx[t] as usize]);
        b.port.append_value(port);
        b.role.append_value(role.as_str());
        b.attempts.append_value(o.attempts);
        b.sent_at.append_value(o.sent_us);
        self.by_reply[match &o.reply {
            Some(r) if r.kind == ReplyKind::SynAck => 0,
            Some(r) if r.kind == ReplyKind::Rst => 1,
            Some(_) => 2,
            None => 3,
        }] += 1;
        match &o.reply {
            None => {
                b.reply.append_value(reply::NONE);
                b.received_at.append_null();
                b.rtt_us.append_null();
                b.ttl.append_null();
                b.ipid.append_null();
                b.flags.append_null();
                b.window.append_null();
                b.mss.append_null();
                b.options.append_null();
                b.icmp_type.append_null();
                b.icmp_code.append_null();
                b.responder.append_null();
            }
            Some(r) => {
                b.reply.append_value(match r.kind {
                    ReplyKind::SynAck => reply::SYNACK,
                    ReplyKind::Rst => reply::RST,
                    ReplyKind::Icmp => reply::ICMP,
                });
                b.received_at.append_value(o.recv_us);
                b.rtt_us.append_value((o.recv_us - o.sent_us).clamp(0, u32::MAX as i64) as u32);
                b.ttl.append_value(r.ttl);
                b.ipid.append_option(r.ip_id);
                if r.kind == ReplyKind::Icmp {
                    b.flags.append_null();
                    b.window.append_null();
                    b.mss.append_null();
                    b.options.append_null();
                    b.icmp_type.append_value(r.icmp_type);
                    b.icmp_code.append_value(r.icmp_code);
                    self.text.clear();
                    schema::push_ip(&mut self.text, r.responder);
                    b.responder.append_value(&self.text);
                } else {
                    b.flags.append_value(r.tcp_flags);
                    b.window.append_value(r.window);
                    b.mss.append_option(r.mss);
                    self.text.clear();
                    let mut num = itoa::Buffer::new();
                    for (i, k) in r.options.as_slice().iter().enumerate() {
                        if i > 0 {
                            self.text.push(',');
                        }
                        self.text.push_str(num.format(*k));
                    }
                    b.options.append_value(&self.text);
                    b.icmp_type.append_null();
                    b.icmp_code.append_null();
                    b.responder.append_null();
                }
            }
        }
        b.rows += 1;
        self.rows += 1;
        if b.rows >= BATCH_ROWS.min(self.rows_per_file) {
            self.flush_batch()?;
        }
        Ok(())
    }

    fn flush_batch(&mut self) -> Result<()> {
        if self.b.rows == 0 {
            return Ok(());
        }
        let n = self.b.rows;
        let batch = self.b.finish(&self.schema)?;
        if self.current.is_none() {
            self.seq += 1;
            let name = format!("{}-{:05}.parquet", self.name_prefix, self.seq);
            let fin = self.dir.join(&name);
            let tmp = self.dir.join(format!(".{name}.inprogress"));
            let mut props = WriterProperties::builder().set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?));
            // Columns whose values are (nearly) all distinct: a dictionary only costs hashing
            // every value before the writer gives up on it.
            for c in [obs::IP, obs::SENT_AT, obs::RECEIVED_AT, obs::RTT_US, obs::REPLY_IPID] {
                props = props.set_column_dictionary_enabled(ColumnPath::from(c), false);
            }
            let props = props
                .set_max_row_group_row_count(Some(65_536))
                .set_key_value_metadata(Some(self.kv.clone()))
                .build();
            let f = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
            self.current = Some((ArrowWriter::try_new(f, self.schema.clone(), Some(props))?, tmp, fin, 0));
        }
        let cur = self.current.as_mut().unwrap();
        cur.0.write(&batch)?;
        cur.3 += n;
        if cur.3 >= self.rows_per_file {
            self.close_file()?;
        }
        Ok(())
    }

    fn close_file(&mut self) -> Result<()> {
        if let Some((w, tmp, fin, _)) = self.current.take() {
            let f = w.into_inner()?; // flushes the row group and writes the footer
            f.sync_all()?;
            drop(f);
            std::fs::rename(&tmp, &fin).with_context(|| format!("renaming {}", tmp.display()))?;
            File::open(&self.dir)?.sync_all()?;
            self.files.push(fin);
        }
        Ok(())
    }

    /// Flush, close the last file and return the files written, rows, rows per reply kind.
    pub fn finish(mut self) -> Result<(Vec<PathBuf>, u64, [u64; 4])> {
        self.flush_batch()?;
        self.close_file()?;
        Ok((self.files, self.rows, self.by_reply))
    }
}
