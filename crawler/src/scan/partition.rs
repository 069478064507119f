//! The crawl's partition, `OUT/crawl_date=D/crawl_id=ID/`: its name, the files each shard
//! writes into it, and — for `--resume` — the probes that complete files already hold.

use super::ports::PortPlan;
use super::record::Recorder;
use super::targets::Targets;
use super::validate::SPORT_BASE;
use datasets::schema::obs;
use datasets::store::Store;
use datasets::DatasetError;
use super::ScanConfig;
use anyhow::{bail, Result};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

pub struct Partition {
    pub dir: PathBuf,
    pub crawl_id: String,
    pub crawl_date: String,
    pub shard: (u64, u64),
    /// `part-sIofN-`: every observation file of this shard starts with it.
    shard_tag: String,
}

/// `manifest.json` for an unsharded crawl, `manifest-sIofN.json` per shard.
pub fn manifest_name(shard: (u64, u64)) -> String {
    if shard == (0, 1) { "manifest.json".into() } else { format!("manifest-s{}of{}.json", shard.0, shard.1) }
}

impl Partition {
    /// The crawl's date and id default to the start time's (UTC).
    pub fn new(cfg: &ScanConfig, started_us: i64) -> Partition {
        let t = chrono::DateTime::from_timestamp_micros(started_us).unwrap_or_default();
        let crawl_date = cfg.crawl_date.clone().unwrap_or_else(|| t.format("%Y-%m-%d").to_string());
        let crawl_id = cfg.crawl_id.clone().unwrap_or_else(|| t.format("%Y%m%dT%H%M%SZ").to_string());
        let dir = cfg.out.join(format!("crawl_date={crawl_date}")).join(format!("crawl_id={crawl_id}"));
        Partition { dir, crawl_id, crawl_date, shard: cfg.shard, shard_tag: format!("part-s{}of{}-", cfg.shard.0, cfg.shard.1) }
    }

    pub fn manifest_path(&self) -> PathBuf {
        self.dir.join(manifest_name(self.shard))
    }

    /// `.runs-sIofN.json`: the shard's runs and their counters (hidden: no glob reads it).
    pub fn runs_path(&self) -> PathBuf {
        self.dir.join(format!(".runs-s{}of{}.json", self.shard.0, self.shard.1))
    }

    /// A recorder writing this shard's files under a name prefix of its own (several write
    /// at once: the record thread and the final sweep; and runs of a resumed crawl).
    pub fn recorder(&self, vantage: &str, targets: &Arc<Targets>, ports: &Arc<PortPlan>, kv: &[(String, String)], rows_per_file: usize) -> Result<Recorder> {
        let prefix = format!("{}{:08x}", self.shard_tag, rand::random::<u32>());
        Recorder::new(&self.dir, &prefix, &self.crawl_id, vantage, targets.clone(), ports.clone(), kv.to_vec(), rows_per_file)
    }

    /// Before the scan writes: a new crawl must not land on an earlier run's shard; a resumed
    /// one keeps the files that shard finished (their probes are returned, to be skipped) and
    /// discards a file a crash left half-written (it never got its final name). With a store
    /// (`rel`: the partition's path in it), the files already uploaded count as well.
    pub fn prepare(&self, resume: bool, targets: &Targets, ports: &PortPlan, store: Option<(&Store, &str)>) -> Result<Vec<u64>> {
        let remote: Vec<String> = match store {
            Some((s, rel)) => s.list(rel)?.into_iter().filter_map(|(k, _)| k.rsplit('/').next().map(String::from)).collect(),
            None => Vec::new(),
        };
        if resume {
            return self.recorded(targets, ports, store.map(|(s, rel)| (s, rel, remote)));
        }
        let local = std::fs::read_dir(&self.dir).map(|rd| rd.filter_map(|e| e.ok()).any(|e| e.file_name().to_string_lossy().starts_with(&self.shard_tag))).unwrap_or(false);
        let manifest = manifest_name(self.shard);
        if local || self.manifest_path().exists() || remote.iter().any(|n| n.starts_with(&self.shard_tag) || *n == manifest) {
            let at = match store {
                Some((s, rel)) => s.name(rel),
                None => self.dir.display().to_string(),
            };
            bail!("crawl {} already has shard {}/{} in {at} (use --resume, or another crawl id)", self.crawl_id, self.shard.0, self.shard.1);
        }
        Ok(Vec::new())
    }

    /// Probe ids already recorded in this shard's complete files — those in the partition, and
    /// those already in the store (`remote`: their names).
    fn recorded(&self, targets: &Targets, ports: &PortPlan, remote: Option<(&Store, &str, Vec<String>)>) -> Result<Vec<u64>> {
        let mut out = Vec::new();
        let mut local = std::collections::HashSet::new();
        if let Ok(rd) = std::fs::read_dir(&self.dir) {
            for e in rd {
                let p = e?.path();
                let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                if name.starts_with(&format!(".{}", self.shard_tag)) && name.ends_with(".inprogress") {
                    std::fs::remove_file(&p)?;
                    continue;
                }
                if !(name.starts_with(&self.shard_tag) && name.ends_with(".parquet")) {
                    continue;
                }
                let reader = datasets::schema::open_parquet(&p, 65_536)?;
                self.probes_of(&p, reader, targets, ports, &mut out)?;
                local.insert(name);
            }
        }
        if let Some((store, rel, names)) = remote {
            for name in names.iter().filter(|n| n.starts_with(&self.shard_tag) && n.ends_with(".parquet") && !local.contains(*n)) {
                let key = format!("{}/{name}", rel.trim_end_matches('/'));
                let p = std::path::PathBuf::from(store.name(&key));
                let bytes = store.get(&key)?;
                let reader = datasets::schema::open_parquet_from(&p, bytes, 65_536, None)?;
                self.probes_of(&p, reader, targets, ports, &mut out)?;
            }
        }
        Ok(out)
    }

    /// The probe ids of one complete file of this shard (`p` names it).
    fn probes_of(&self, p: &std::path::Path, mut reader: parquet::arrow::arrow_reader::ParquetRecordBatchReader, targets: &Targets, ports: &PortPlan, out: &mut Vec<u64>) -> Result<()> {
        use arrow_array::{Array, StringArray, UInt16Array};
        let slots = ports.slots();
        let p = p.to_path_buf();
        {
            // A complete file of this shard that cannot be read is bad input (exit 2), named:
            // resuming over it would probe its rows again or lose them.
            let bad = |why: String| DatasetError::file(&p, format!("{why} (a file of the crawl being resumed; move it away to probe its rows again)"));
            while let Some(b) = datasets::schema::guard(&p, || reader.next())? {
                let b = b.map_err(|e| bad(format!("corrupt crawl file: {e}")))?;
                let col = |n: &str| b.column_by_name(n).ok_or_else(|| bad(format!("no `{n}` column")));
                let ip = col(obs::IP)?.as_any().downcast_ref::<StringArray>().ok_or_else(|| bad("`ip` is not a string column".into()))?.clone();
                let port = col(obs::PORT)?.as_any().downcast_ref::<UInt16Array>().ok_or_else(|| bad("`port` is not a UInt16 column".into()))?.clone();
                let sport = col(obs::SRC_PORT)?.as_any().downcast_ref::<UInt16Array>().ok_or_else(|| bad("`src_port` is not a UInt16 column".into()))?.clone();
                for i in 0..b.num_rows() {
                    let a: IpAddr = ip.value(i).parse().map_err(|_| bad(format!("`{}` is not an address", ip.value(i))))?;
                    let Some(t) = targets.find(a) else { return Err(bad(format!("{a} is not in this crawl's plan (another plan?)")).into()) };
                    // Reflection probes share their twin's destination port: the source port
                    // tells them apart.
                    let fixed = |s: u64| ports.src_port(s).is_none_or(|sp| sp == sport.value(i));
                    let slot = (0..slots)
                        .find(|s| ports.port(targets.asn[t], *s).0 == port.value(i) && fixed(*s) && (ports.src_port(*s).is_some() || sport.value(i) >= SPORT_BASE))
                        .ok_or_else(|| bad(format!("port {} (from {}) not in this crawl's probe set", port.value(i), sport.value(i))))?;
                    out.push(t as u64 * slots + slot);
                }
            }
        }
        Ok(())
    }
}
