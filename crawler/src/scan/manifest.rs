//! End-of-scan metadata (ZMap's `summary.c`): the crawl's parameters, recorded in every file's
//! key-value metadata and in the shard's manifest, and the summary of what happened — sends,
//! replies by fate, skips by reason, rows by reply kind — in the manifest and on stdout.

use super::partition::Partition;
use super::record::{Written, REPLY_KINDS};
use super::state::{unix_us, ScanState};
use super::ScanConfig;
use crate::net::route::NetInfo;
use anyhow::Result;
use serde::{Deserialize, Serialize};
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
    /// Every run of this crawl and shard, oldest first, with its own counters; the counters
    /// above (sent, send errors, frames, replies, drops, unlogged, duplicates, rows by reply)
    /// are their sums over the runs whose counters are known.
    pub runs: Vec<RunRecord>,
    /// Runs that ended without writing their counters (killed, power lost): what they lost —
    /// replies the receive ring dropped, above all — is unknown.
    pub runs_without_counters: u64,
    pub started_at: String,
    pub finished_at: String,
    pub elapsed_s: f64,
    pub first_pass_pps: f64,
    pub interrupted: bool,
}

/// One run of a crawl's shard: when, and what it sent, received and lost. The counters are
/// `None` for a run that never wrote them (it was killed): its losses are unknown.
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunRecord {
    pub started_at: String,
    pub finished_at: Option<String>,
    pub resumed: bool,
    pub interrupted: Option<bool>,
    pub sent: Option<u64>,
    pub send_errors: Option<u64>,
    pub frames_received: Option<u64>,
    pub replies_valid: Option<u64>,
    pub validation_failed: Option<u64>,
    pub stale_replies: Option<u64>,
    pub receive_drops: Option<u64>,
    pub unlogged: Option<u64>,
    pub duplicates: Option<u64>,
    pub rows: Option<u64>,
    pub rows_by_reply: Option<BTreeMap<String, u64>>,
}

impl RunRecord {
    /// Counters known: the run ended and wrote them.
    pub fn counted(&self) -> bool {
        self.finished_at.is_some() && self.receive_drops.is_some()
    }
}

/// The shard's runs so far (`.runs-sIofN.json` in the partition, rewritten when a run starts
/// and when it ends), for a resumed crawl; a new crawl has none. A crawl written before the
/// history existed contributes its manifest's counters as one run, or — files but no
/// manifest — one run whose counters are unknown.
pub fn history(part: &Partition, resume: bool, rows_before: usize) -> Result<Vec<RunRecord>> {
    if !resume {
        return Ok(Vec::new());
    }
    let p = part.runs_path();
    match std::fs::read_to_string(&p) {
        Ok(t) => return serde_json::from_str(&t).map_err(|e| datasets::DatasetError::file(&p, format!("not a run history of this crawl: {e} (move it away to resume without it)")).into()),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(datasets::DatasetError::file(&p, e.to_string()).into()),
        Err(_) => {}
    }
    let m = part.manifest_path();
    if let Ok(t) = std::fs::read_to_string(&m) {
        let v: serde_json::Value = serde_json::from_str(&t).map_err(|e| datasets::DatasetError::file(&m, format!("not a crawl manifest: {e}")))?;
        let s = &v["summary"];
        let n = |k: &str| s[k].as_u64();
        let by_reply = s["rows_by_reply"].as_object().map(|o| o.iter().filter_map(|(k, v)| Some((k.clone(), v.as_u64()?))).collect());
        return Ok(vec![RunRecord {
            started_at: s["started_at"].as_str().unwrap_or_default().to_string(),
            finished_at: s["finished_at"].as_str().map(String::from),
            resumed: s["resumed"].as_bool().unwrap_or(false),
            interrupted: s["interrupted"].as_bool(),
            sent: n("sent"),
            send_errors: n("send_errors"),
            frames_received: n("frames_received"),
            replies_valid: n("replies_valid"),
            validation_failed: n("validation_failed"),
            stale_replies: n("stale_replies"),
            receive_drops: n("receive_drops"),
            unlogged: n("unlogged"),
            duplicates: n("duplicates"),
            rows: n("rows"),
            rows_by_reply: by_reply,
        }]);
    }
    Ok(if rows_before > 0 { vec![RunRecord::default()] } else { Vec::new() })
}

/// Publish the shard's run history.
pub fn save_history(part: &Partition, runs: &[RunRecord]) -> Result<()> {
    datasets::publish::write_atomic(&part.runs_path(), serde_json::to_string_pretty(runs)?)?;
    Ok(())
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
    /// The summary of this run, its record added to `history` (whose last entry is this run
    /// as started), and the counters summed over every run.
    pub fn new(part: &Partition, st: &ScanState, resumed: bool, e: Ending, mut history: Vec<RunRecord>) -> ScanSummary {
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
            runs: Vec::new(),
            runs_without_counters: 0,
        }
        .with_history(&mut history)
    }

    /// Record this run as the last of `history`, then sum the counters over the runs.
    fn with_history(mut self, history: &mut Vec<RunRecord>) -> ScanSummary {
        let this = RunRecord {
            started_at: self.started_at.clone(),
            finished_at: Some(self.finished_at.clone()),
            resumed: self.resumed,
            interrupted: Some(self.interrupted),
            sent: Some(self.sent),
            send_errors: Some(self.send_errors),
            frames_received: Some(self.frames_received),
            replies_valid: Some(self.replies_valid),
            validation_failed: Some(self.validation_failed),
            stale_replies: Some(self.stale_replies),
            receive_drops: Some(self.receive_drops),
            unlogged: Some(self.unlogged),
            duplicates: Some(self.duplicates),
            rows: Some(self.rows),
            rows_by_reply: Some(self.rows_by_reply.clone()),
        };
        match history.last_mut() {
            Some(last) if last.started_at == this.started_at && last.finished_at.is_none() => *last = this,
            _ => history.push(this),
        }
        let earlier = &history[..history.len() - 1];
        let sum = |f: fn(&RunRecord) -> Option<u64>| earlier.iter().filter_map(f).sum::<u64>();
        self.sent += sum(|r| r.sent);
        self.send_errors += sum(|r| r.send_errors);
        self.frames_received += sum(|r| r.frames_received);
        self.replies_valid += sum(|r| r.replies_valid);
        self.validation_failed += sum(|r| r.validation_failed);
        self.stale_replies += sum(|r| r.stale_replies);
        self.receive_drops += sum(|r| r.receive_drops);
        self.unlogged += sum(|r| r.unlogged);
        self.duplicates += sum(|r| r.duplicates);
        for r in earlier.iter().filter_map(|r| r.rows_by_reply.as_ref()) {
            for (k, v) in r {
                *self.rows_by_reply.entry(k.clone()).or_default() += v;
            }
        }
        self.runs_without_counters = history.iter().filter(|r| !r.counted()).count() as u64;
        self.runs = std::mem::take(history);
        self
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
    if s.runs.len() > 1 {
        println!("  {} runs of this crawl: the counters above are their sums", s.runs.len());
    }
    if s.runs_without_counters > 0 {
        println!("  DROPS UNKNOWN: {} run(s) ended without writing their counters (killed?): replies they lost are not counted", s.runs_without_counters);
    }
    if s.interrupted {
        println!("  INTERRUPTED: replies so far were recorded; silent probes were not");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resumed_summary_sums_every_run_and_counts_those_without_counters() {
        // An interrupted run that lost 5 % of its replies, a run killed with -9, and this one.
        let lossy = RunRecord { started_at: "a".into(), finished_at: Some("b".into()), interrupted: Some(true), sent: Some(10_000), frames_received: Some(9_500), receive_drops: Some(500), send_errors: Some(3), rows_by_reply: Some([("none".to_string(), 40)].into()), ..Default::default() };
        let killed = RunRecord { started_at: "c".into(), resumed: true, ..Default::default() };
        let started = RunRecord { started_at: "d".into(), resumed: true, ..Default::default() };
        let mut history = vec![lossy.clone(), killed.clone(), started];
        let this = ScanSummary { started_at: "d".into(), finished_at: "e".into(), resumed: true, sent: 2_000, frames_received: 1_000, receive_drops: 0, rows_by_reply: [("none".to_string(), 10)].into(), ..Default::default() };
        let s = this.with_history(&mut history);
        assert_eq!((s.sent, s.frames_received, s.receive_drops, s.send_errors), (12_000, 10_500, 500, 3), "the crawl's counters sum its runs");
        assert_eq!(s.rows_by_reply["none"], 50);
        assert_eq!(s.runs.len(), 3, "the started record became this run's");
        assert_eq!((&s.runs[0], &s.runs[1]), (&lossy, &killed));
        assert!(s.runs[2].counted() && !s.runs[1].counted());
        assert_eq!(s.runs_without_counters, 1);
    }
}
