//! End-of-scan metadata (ZMap's `summary.c`): the crawl's parameters, recorded in every file's
//! key-value metadata and in the shard's manifest, and the summary of what happened — sends,
//! replies by fate, skips by reason, rows by reply kind — in the manifest and on stdout.

use super::partition::Partition;
use super::record::{Written, REPLY_KINDS};
use super::state::{unix_us, ScanState};
use super::ScanConfig;
use crate::net::route::NetInfo;
use anyhow::Result;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;

#[derive(Debug, Default, Clone, Serialize)]
pub struct ScanSummary {
    pub crawl_id: String,
    pub crawl_date: String,
    pub partition: PathBuf,
    pub targets: u64,
    pub probes_planned: u64,
    pub sent: u64,
    pub send_errors: u64,
    pub frames_received: u64,
    pub replies_valid: u64,
    pub validation_failed: u64,
    /// Answers to an attempt whose send-log slot had been reused; not recorded.
    pub stale_replies: u64,
    /// Replies the kernel dropped because the receive ring was full (should be 0).
    pub receive_drops: u64,
    /// Probes without a row because their final attempt was not in the send log (should be 0).
    pub unlogged: u64,
    pub duplicates: u64,
    /// Replies by kind beyond valid ones: `unknown-cookie` (= validation_failed),
    /// `stale-slot` (= stale_replies), `duplicate`, `bad-checksum`, `rst-without-ack` (counted,
    /// then validated), `ipv6-extension-headers` (counted, then validated), and receive-ring
    /// blocks that did not add up (`corrupt-ring-blocks`).
    pub replies_by_kind: BTreeMap<String, u64>,
    /// Wall-clock steps seen during the scan; RTTs and times stay on one monotonic base.
    pub clock_steps: u64,
    /// The most probes the senders' deferred queues (held back by the per-AS and per-/24
    /// limits) held at once, summed over senders; never more than `deferred_bound`.
    pub deferred_peak: u64,
    pub deferred_bound: u64,
    pub skipped: BTreeMap<String, u64>,
    pub rows: u64,
    pub rows_by_reply: BTreeMap<String, u64>,
    pub files: Vec<String>,
    pub resumed: bool,
    /// Rows already recorded by earlier (interrupted) runs of this crawl and shard.
    pub rows_before_resume: u64,
    pub started_at: String,
    pub finished_at: String,
    pub elapsed_s: f64,
    pub first_pass_pps: f64,
    pub interrupted: bool,
}

pub fn rfc3339(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us).unwrap_or_default().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// The crawl's parameters: config, seed, plan identity, software, where it sent from.
#[allow(clippy::too_many_arguments)]
pub fn params(cfg: &ScanConfig, seed: u64, plan_sha: &str, plan_meta: &[(String, String)], n_senders: usize, ni: &NetInfo, started_us: i64) -> serde_json::Value {
    serde_json::json!({
        "config": cfg, "seed": seed, "plan_sha256": plan_sha, "plan_metadata": plan_meta.iter().cloned().collect::<BTreeMap<_,_>>(),
        "software": crate::SOFTWARE, "sender_threads": n_senders, "interface": ni.ifname, "source_v4": ni.src4, "source_v6": ni.src6, "started_at": rfc3339(started_us),
    })
}

/// The key-value metadata of every observation file.
pub fn file_metadata(part: &Partition, vantage: &str, params: &serde_json::Value) -> Vec<(String, String)> {
    vec![
        ("port25.kind".to_string(), "observations".to_string()),
        ("port25.crawl_id".into(), part.crawl_id.clone()),
        ("port25.vantage".into(), vantage.to_string()),
        ("port25.software".into(), crate::SOFTWARE.into()),
        ("port25.params".into(), params.to_string()),
    ]
}

/// How the scan ended, beyond what the shared counters say.
pub struct Ending {
    pub send_errors: u64,
    /// (peak, bound) of the deferred queues, summed over senders.
    pub deferred: (u64, u64),
    pub receive_drops: u64,
    pub unlogged: u64,
    pub written: Written,
    pub rows_before_resume: u64,
    pub first_pass_pps: f64,
    pub interrupted: bool,
    pub started_us: i64,
}

impl ScanSummary {
    pub fn new(part: &Partition, st: &ScanState, resumed: bool, e: Ending) -> ScanSummary {
        let c = &st.c;
        let mut skipped = BTreeMap::new();
        for (k, v) in [("reserved", &c.skipped_reserved), ("opt-out", &c.skipped_optout), ("excluded", &c.skipped_excluded), ("no-source-address", &c.skipped_nosource)] {
            let n = v.load(Relaxed);
            if n > 0 {
                skipped.insert(k.to_string(), n);
            }
        }
        let finished = unix_us();
        ScanSummary {
            crawl_id: part.crawl_id.clone(),
            crawl_date: part.crawl_date.clone(),
            partition: part.dir.clone(),
            targets: st.targets.len() as u64,
            probes_planned: st.probes(),
            sent: c.sent.load(Relaxed),
            send_errors: e.send_errors,
            frames_received: c.frames.load(Relaxed),
            replies_valid: c.valid.load(Relaxed),
            validation_failed: c.invalid.load(Relaxed),
            stale_replies: c.stale.load(Relaxed),
            receive_drops: e.receive_drops,
            unlogged: e.unlogged,
            duplicates: c.dup.load(Relaxed),
            replies_by_kind: [
                ("unknown-cookie", &c.invalid),
                ("stale-slot", &c.stale),
                ("duplicate", &c.dup),
                ("bad-checksum", &c.bad_checksum),
                ("rst-without-ack", &c.rst_without_ack),
                ("ipv6-extension-headers", &c.ipv6_ext),
                ("corrupt-ring-blocks", &c.corrupt_blocks),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.load(Relaxed)))
            .collect(),
            clock_steps: c.clock_steps.load(Relaxed),
            deferred_peak: e.deferred.0,
            deferred_bound: e.deferred.1,
            skipped,
            rows: e.written.rows,
            rows_by_reply: REPLY_KINDS.iter().zip(e.written.by_reply).map(|(k, v)| (k.to_string(), v)).collect(),
            files: e.written.files.iter().filter_map(|f| f.file_name()).map(|f| f.to_string_lossy().into_owned()).collect(),
            resumed,
            rows_before_resume: e.rows_before_resume,
            started_at: rfc3339(e.started_us),
            finished_at: rfc3339(finished),
            elapsed_s: (finished - e.started_us) as f64 / 1e6,
            first_pass_pps: e.first_pass_pps,
            interrupted: e.interrupted,
        }
    }
}

/// `manifest.json` (or `manifest-sIofN.json`), published atomically.
pub fn write(part: &Partition, params: &serde_json::Value, extra: &serde_json::Value, s: &ScanSummary) -> Result<()> {
    let m = serde_json::json!({ "params": params, "run": extra, "summary": s, "exit_status": if s.interrupted { "interrupted" } else { "complete" } });
    datasets::publish::write_atomic(&part.manifest_path(), serde_json::to_string_pretty(&m)?)?;
    Ok(())
}

pub fn print_summary(s: &ScanSummary) {
    println!("crawl {} ({}): {} targets, {} probes planned", s.crawl_id, s.crawl_date, s.targets, s.probes_planned);
    println!(
        "  sent {} (first pass {:.0} pps), valid replies {}, validation failures {}, duplicates {}, stale {}, send errors {}, receive drops {}",
        s.sent, s.first_pass_pps, s.replies_valid, s.validation_failed, s.duplicates, s.stale_replies, s.send_errors, s.receive_drops
    );
    if !s.skipped.is_empty() {
        println!("  skipped at send time: {:?}", s.skipped);
    }
    println!("  {} rows in {} file(s) under {}: {:?}", s.rows, s.files.len(), s.partition.display(), s.rows_by_reply);
    if s.resumed {
        println!("  resumed: {} rows were recorded by the interrupted run(s) and kept", s.rows_before_resume);
    }
    if s.interrupted {
        println!("  INTERRUPTED: replies so far were recorded; silent probes were not");
    }
}
