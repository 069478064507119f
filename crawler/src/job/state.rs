//! The run-state file beside a crawl's output: which crawl (id and date) this vantage and
//! shard has under way, so `crawler run --resume` after a crash (even `kill -9`) continues
//! that crawl instead of starting today's.

use super::config::{ConfigError, CrawlConfig};
use anyhow::{Context, Result};
use std::path::PathBuf;

#[derive(serde::Serialize, serde::Deserialize)]
pub struct RunState {
    pub crawl_id: String,
    pub crawl_date: String,
    /// `running` or `complete`.
    pub status: String,
}

fn path(c: &CrawlConfig, shard: (u64, u64)) -> PathBuf {
    c.crawl.out.join(format!(".port25-run-{}-s{}of{}.json", c.crawl.vantage, shard.0, shard.1))
}

impl RunState {
    /// The crawl a `--resume` continues: this vantage and shard's, if unfinished.
    pub fn unfinished(c: &CrawlConfig, shard: (u64, u64)) -> Result<RunState> {
        let p = path(c, shard);
        let t = std::fs::read_to_string(&p).map_err(|_| ConfigError(format!("nothing to resume: no unfinished crawl of vantage {} shard {}/{} in {}", c.crawl.vantage, shard.0, shard.1, c.crawl.out.display())))?;
        let s: RunState = serde_json::from_str(&t).with_context(|| format!("{}: bad state file", p.display()))?;
        // The state file names directories the crawl writes into: it must not lead elsewhere.
        super::config::check_name("crawl id", &s.crawl_id).map_err(|e| ConfigError(format!("{}: {e}", p.display())))?;
        if s.crawl_date.len() != 10 || chrono::NaiveDate::parse_from_str(&s.crawl_date, "%Y-%m-%d").is_err() {
            return Err(ConfigError(format!("{}: bad crawl date `{}`", p.display(), s.crawl_date)).into());
        }
        if s.status == "complete" {
            return Err(ConfigError(format!("crawl {} is already complete; nothing to resume", s.crawl_id)).into());
        }
        Ok(s)
    }

    pub fn save(&self, c: &CrawlConfig, shard: (u64, u64)) -> Result<()> {
        datasets::publish::write_atomic(&path(c, shard), serde_json::to_string(self)?)?;
        Ok(())
    }
}
