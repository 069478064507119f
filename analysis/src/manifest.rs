//! Is a crawl complete enough to report? Every shard of a crawl writes a manifest
//! (`manifest.json`, or `manifest-sIofN.json`) when it ends, with how it ended and what it lost:
//! frames the kernel refused to send, replies the receive ring dropped, probes without a row.
//! Missing data must never read as filtering — a lost reply is silence on the host's port, and
//! silence on an informative host counts as *filtered* — so a crawl that was interrupted, lacks
//! a shard's manifest, or lost more than a small share of its sends or replies is refused, or
//! (with `--allow-incomplete`) reported with a warning that says so.

use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// What the manifests of one crawl say, summed over its shards.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Completeness {
    pub manifests: usize,
    /// Shards the manifests say the crawl has.
    pub shards: u64,
    pub interrupted_shards: usize,
    pub sent: u64,
    pub send_errors: u64,
    pub frames_received: u64,
    pub receive_drops: u64,
    /// Probes whose final attempt never left (rows with `reply = unsent`).
    pub unsent: u64,
    /// Probes without a row at all.
    pub unlogged: u64,
    /// Runs that ended without writing their counters (killed): their drops are unknown.
    pub runs_without_counters: u64,
    /// Why the crawl is incomplete; empty when it is not.
    pub problems: Vec<String>,
    /// How the plan drew IPv4 and IPv6 targets (`random`, `hitlist`; empty: not recorded).
    pub sampling_v4: String,
    pub sampling_v6: String,
    /// Targets the shards probed (0: not recorded): how many hosts to expect, so the analysis
    /// sizes its tables once. Not part of the reports.
    #[serde(skip)]
    pub targets: u64,
}

/// Thresholds on lost data (shares).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Limits {
    pub max_send_error_share: f64,
    pub max_receive_drop_share: f64,
}

/// The manifests in a crawl's directories.
pub fn find(dirs: &[PathBuf]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = dirs
        .iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("manifest") && n.to_string_lossy().ends_with(".json")))
        .collect();
    out.sort();
    out
}

fn count(v: &serde_json::Value, key: &str) -> u64 {
    v.get(key).and_then(|x| x.as_u64()).unwrap_or(0)
}

/// Shard count of a manifest named `manifest-sIofN.json` (1 for `manifest.json`).
fn shards_of(p: &Path) -> u64 {
    let n = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    n.strip_prefix("manifest-s").and_then(|r| r.strip_suffix(".json")).and_then(|r| r.split_once("of")).and_then(|(_, n)| n.parse().ok()).unwrap_or(1)
}

pub fn check(manifests: &[PathBuf], limits: Limits) -> Result<Completeness> {
    let mut c = Completeness { manifests: manifests.len(), ..Default::default() };
    for m in manifests {
        let text = std::fs::read_to_string(m).with_context(|| format!("reading {}", m.display()))?;
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| datasets::DatasetError::file(m, format!("not a crawl manifest: {e}")))?;
        let s = &v["summary"];
        if !s.is_object() {
            bail!(datasets::DatasetError::file(m, "not a crawl manifest (no summary)"));
        }
        c.shards = c.shards.max(shards_of(m));
        let plan = &v["params"]["plan_metadata"];
        for (key, field) in [("port25.sampling_v4", &mut c.sampling_v4), ("port25.sampling_v6", &mut c.sampling_v6)] {
            if let Some(x) = plan[key].as_str() {
                *field = x.to_string();
            }
        }
        if v["exit_status"] != "complete" || s["interrupted"] == true {
            c.interrupted_shards += 1;
        }
        c.sent += count(s, "sent");
        c.send_errors += count(s, "send_errors");
        c.frames_received += count(s, "frames_received");
        c.receive_drops += count(s, "receive_drops");
        c.unlogged += count(s, "unlogged");
        // The counters above are sums over every run of a resumed shard; a run that was
        // killed never wrote its own, and what it lost is unknown (said, not gated: unknowable).
        c.runs_without_counters += count(s, "runs_without_counters");
        c.targets += count(s, "targets");
        c.unsent += s["rows_by_reply"].get("unsent").and_then(|x| x.as_u64()).unwrap_or(0);
    }
    if manifests.is_empty() {
        c.problems.push("no manifest: the crawl never finished (or is still running)".into());
    } else if (manifests.len() as u64) < c.shards {
        c.problems.push(format!("manifests of {} of {} shards", manifests.len(), c.shards));
    }
    if c.interrupted_shards > 0 {
        c.problems.push(format!("{} shard(s) interrupted: their silent probes were never recorded", c.interrupted_shards));
    }
    let share = |k: u64, n: u64| if n == 0 { 0.0 } else { k as f64 / n as f64 };
    if share(c.send_errors, c.sent + c.send_errors) > limits.max_send_error_share {
        c.problems.push(format!("{} of {} sends failed ({:.2} %)", c.send_errors, c.sent + c.send_errors, 100.0 * share(c.send_errors, c.sent + c.send_errors)));
    }
    if share(c.receive_drops, c.frames_received + c.receive_drops) > limits.max_receive_drop_share {
        c.problems.push(format!("the receive ring dropped {} replies ({:.2} % of those that arrived)", c.receive_drops, 100.0 * share(c.receive_drops, c.frames_received + c.receive_drops)));
    }
    if c.unlogged > 0 {
        c.problems.push(format!("{} probes have no row", c.unlogged));
    }
    Ok(c)
}

impl Completeness {
    /// How the two families were sampled, in words: a random sample of routed IPv4 space and a
    /// hitlist of IPv6 addresses in use are different populations (hitlist hosts are more often
    /// alive, and more often servers), so their rates are not a like-for-like comparison.
    pub fn sampling_line(&self) -> String {
        let says = |s: &str| match s {
            "random" => "a random sample of routed addresses, stratified by prefix",
            "hitlist" => "a hitlist (addresses seen in use), stratified by prefix",
            _ => "not recorded",
        };
        let (v4, v6) = (self.sampling_v4.as_str(), self.sampling_v6.as_str());
        if v4 == v6 && !v4.is_empty() {
            format!("IPv4 and IPv6 hosts both from {}: the families' rates compare like for like", says(v4))
        } else {
            format!(
                "IPv4 hosts from {}; IPv6 hosts from {}: different populations, so IPv4 and IPv6 rates do not compare like for like (an IPv4 hitlist in `crawler plan --hitlist` gives a comparable sample)",
                says(v4),
                says(v6)
            )
        }
    }

    /// One line for the report.
    pub fn line(&self) -> String {
        let unknown = match self.runs_without_counters {
            0 => String::new(),
            n => format!(" (drops unknown: {n} run(s) were killed before writing their counters, so what they lost is not counted)"),
        };
        format!(
            "{} manifest(s) of {} shard(s); {} probes sent, {} send errors, {} unsent probes (recorded as such, not as silence), {} replies dropped by the receive ring{unknown}",
            self.manifests, self.shards, self.sent, self.send_errors, self.unsent, self.receive_drops
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    const LIMITS: Limits = Limits { max_send_error_share: 0.001, max_receive_drop_share: 0.001 };

    fn manifest(dir: &Path, name: &str, status: &str, sent: u64, errors: u64, drops: u64) -> PathBuf {
        let p = dir.join(name);
        let m = serde_json::json!({"exit_status": status, "summary": {"sent": sent, "send_errors": errors, "frames_received": 1000, "receive_drops": drops, "unlogged": 0, "interrupted": status != "complete", "rows_by_reply": {"unsent": errors}}});
        std::fs::write(&p, m.to_string()).unwrap();
        p
    }

    #[test]
    fn incomplete_crawls_are_named_as_such() {
        let d = tempfile::tempdir().unwrap();
        let ok = manifest(d.path(), "manifest-s0of2.json", "complete", 10_000, 2, 0);
        let c = check(&[ok.clone()], LIMITS).unwrap();
        assert_eq!(c.problems, vec!["manifests of 1 of 2 shards"]);
        let second = manifest(d.path(), "manifest-s1of2.json", "complete", 10_000, 0, 0);
        assert!(check(&[ok.clone(), second], LIMITS).unwrap().problems.is_empty());
        let stopped = manifest(d.path(), "manifest-s1of2.json", "interrupted", 10_000, 0, 0);
        assert!(check(&[ok.clone(), stopped], LIMITS).unwrap().problems[0].contains("interrupted"));
        let lossy = manifest(d.path(), "manifest-s1of2.json", "complete", 10_000, 500, 300);
        let p = check(&[ok, lossy], LIMITS).unwrap().problems;
        assert!(p.len() == 2 && p[0].contains("sends failed") && p[1].contains("dropped 300"), "{p:?}");
        assert!(check(&[], LIMITS).unwrap().problems[0].contains("no manifest"));
    }

    #[test]
    fn a_killed_run_makes_the_drops_unknown() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("manifest.json");
        let m = serde_json::json!({"exit_status": "complete", "summary": {"sent": 100, "frames_received": 100, "receive_drops": 0, "runs_without_counters": 2, "interrupted": false}});
        std::fs::write(&p, m.to_string()).unwrap();
        let c = check(&[p], LIMITS).unwrap();
        assert!(c.problems.is_empty() && c.line().contains("drops unknown: 2 run(s)"), "{}", c.line());
    }
}
