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


impl RunState {
    /// The crawl a `--resume` continues: this vantage and shard's, if unfinished.
    pub fn unfinished(c: &CrawlConfig, shard: (u64, u64)) -> Result<RunState> {
        let p = Self::path(c, shard);
        let t = read_own(&p).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ConfigError(format!("nothing to resume: no unfinished crawl of vantage {} shard {}/{} in {}", c.crawl.vantage, shard.0, shard.1, c.local_out().display())),
            _ => ConfigError(format!("{}: {e}", p.display())),
        })?;
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

    /// `OUT/.port25-run-VANTAGE-sIofN.json`.
    pub fn path(c: &CrawlConfig, shard: (u64, u64)) -> PathBuf {
        c.local_out().join(format!(".port25-run-{}-s{}of{}.json", c.crawl.vantage, shard.0, shard.1))
    }

    pub fn text(&self) -> Result<String> {
        Ok(serde_json::to_string(self)?)
    }

    pub fn save(&self, c: &CrawlConfig, shard: (u64, u64)) -> Result<()> {
        datasets::publish::write_atomic(&Self::path(c, shard), self.text()?)?;
        Ok(())
    }
}

/// The state file as a root-started `run --resume` reads it: it lives where the scan user
/// writes, so a link there (to a file only root may read) is not followed, and only a small
/// regular file is read.
fn read_own(p: &std::path::Path) -> std::io::Result<String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(p)?;
    let m = f.metadata()?;
    if !m.is_file() || m.len() > 4096 {
        return Err(std::io::Error::other("not a run-state file (not a small regular file)"));
    }
    let mut t = String::new();
    f.take(4096).read_to_string(&mut t)?;
    Ok(t)
}
