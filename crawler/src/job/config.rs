//! `crawl.toml`: everything `plan` and `scan` take, for scheduled, reproducible crawls.
//! Unknown keys and bad values are errors that name the key.

use anyhow::{bail, Result};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrawlConfig {
    pub crawl: Crawl,
    pub inputs: Inputs,
    #[serde(default)]
    pub plan: Plan,
    #[serde(default)]
    pub scan: crate::scan::Params,
    #[serde(default)]
    pub self_check: SelfCheck,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Crawl {
    /// Name of this vantage point (a column of every row).
    pub vantage: String,
    /// Output directory (hive layout: crawl_date=/crawl_id=), or an object store
    /// (`s3://bucket/prefix`: the files go up through the local `spool`).
    pub out: PathBuf,
    /// Crawl id template; `{date}` (YYYY-MM-DD, UTC) and `{vantage}` are filled in.
    #[serde(default = "default_crawl_id")]
    pub crawl_id: String,
    /// With an object-store `out`: the local spool (default /var/tmp/port25-spool/BUCKET/PREFIX).
    #[serde(default)]
    pub spool: Option<PathBuf>,
    /// With an object-store `out`: the spool's bound in bytes (default 4 GiB).
    #[serde(default)]
    pub spool_max: Option<u64>,
    /// An S3-compatible endpoint (default: AWS_ENDPOINT_URL, else AWS). Credentials come from
    /// the environment only, never from this file.
    #[serde(default)]
    pub s3_endpoint: Option<String>,
}

impl CrawlConfig {
    /// Where the crawl's files go (a directory, or a store through its spool).
    pub fn output(&self) -> anyhow::Result<crate::output::Output> {
        let a = crate::output::StoreArgs { spool: self.crawl.spool.clone(), spool_max: self.crawl.spool_max, s3_endpoint: self.crawl.s3_endpoint.clone(), upload_wait: 300.0 };
        crate::output::Output::parse(&self.crawl.out, &a).map_err(|e| ConfigError(format!("crawl.out: {e}")).into())
    }

    /// The local directory the crawl writes (`out`, or the spool of an object-store `out`).
    pub fn local_out(&self) -> PathBuf {
        self.output().map(|o| o.local).unwrap_or_else(|_| self.crawl.out.clone())
    }
}

fn default_crawl_id() -> String {
    "{date}-{vantage}".into()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inputs {
    pub routes: Vec<PathBuf>,
    #[serde(default)]
    pub routes_format: Option<String>,
    #[serde(default)]
    pub orgs: Vec<PathBuf>,
    #[serde(default)]
    pub categories: Vec<PathBuf>,
    #[serde(default)]
    pub hitlist: Vec<PathBuf>,
    #[serde(default)]
    pub aliased: Vec<PathBuf>,
    #[serde(default)]
    pub opt_out: Vec<PathBuf>,
    #[serde(default)]
    pub exclude: Vec<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Plan {
    /// `all`, `hosting`, or `AS<n>,AS<m>`.
    pub select: String,
    pub per_asn: usize,
    /// An integer, or `crawl-date` (a new sample every day, the same for every shard and resume).
    pub seed: toml::Value,
    pub allow_reserved: Vec<IpNet>,
    pub skip_bad_lines: bool,
    /// Also sample IPv4 addresses ending in .0 or .255.
    pub keep_edge_addresses: bool,
}

impl Default for Plan {
    fn default() -> Self {
        Plan { select: "hosting".into(), per_asn: 64, seed: toml::Value::String("crawl-date".into()), allow_reserved: vec![], skip_bad_lines: false, keep_edge_addresses: false }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SelfCheck {
    /// Reference hosts known to answer on 25 and on `control_port` from an unfiltered vantage.
    pub targets: Vec<IpAddr>,
    pub control_port: u16,
    /// Seconds to wait for answers.
    pub wait: f64,
    /// Go on even when the vantage cannot send on 25 (the result is still recorded).
    pub override_failure: bool,
}

impl Default for SelfCheck {
    fn default() -> Self {
        SelfCheck { targets: vec![], control_port: 80, wait: 2.0, override_failure: false }
    }
}

/// A name that becomes one path component (a crawl id, a vantage): letters, digits, `.`, `_`
/// and `-`, not starting with `.` — so it can neither climb out of the output directory
/// (`../x`), nor hide (`.x`), nor name a subdirectory.
pub fn check_name(what: &str, s: &str) -> std::result::Result<(), String> {
    if s.is_empty() || s.len() > 200 {
        return Err(format!("{what} must be 1 to 200 characters"));
    }
    if s.starts_with('.') {
        return Err(format!("{what} `{s}` must not start with `.`"));
    }
    if let Some(c) = s.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        return Err(format!("{what} `{s}` has `{}`: use only A-Z a-z 0-9 . _ -", c.escape_default()));
    }
    Ok(())
}

impl CrawlConfig {
    pub fn load(path: &Path) -> Result<CrawlConfig> {
        // Unreadable (missing, a directory, not UTF-8) is a bad argument, not a runtime failure.
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError(format!("{}: cannot read the config: {e}", path.display())))?;
        Self::from_toml(path, &text)
    }

    /// Parse and validate a config's text; `path` names it in errors.
    pub fn from_toml(path: &Path, text: &str) -> Result<CrawlConfig> {
        let c: CrawlConfig = toml::from_str(text).map_err(|e| ConfigError(format!("{}: {e}", path.display())))?;
        c.validate().map_err(|e| ConfigError(format!("{}: {e:#}", path.display())))?;
        Ok(c)
    }

    fn validate(&self) -> Result<()> {
        let key = |k: &str, ok: bool, why: &str| if ok { Ok(()) } else { Err(anyhow::anyhow!("key `{k}`: {why}")) };
        let name = |k: &str, v: &str| check_name("the name", v).map_err(|e| anyhow::anyhow!("key `{k}`: {e}"));
        name("crawl.vantage", &self.crawl.vantage)?;
        // Any date fills `{date}` with the same safe characters (YYYY-MM-DD).
        name("crawl.crawl_id", &self.crawl_id("2000-01-01"))?;
        let local = self.output()?.local;
        key("crawl.out", !local.as_os_str().is_empty() && (!local.exists() || local.is_dir()), &format!("{} is not a directory", local.display()))?;
        key("inputs.routes", !self.inputs.routes.is_empty(), "needs at least one routing file")?;
        for (k, files) in [
            ("inputs.routes", &self.inputs.routes),
            ("inputs.orgs", &self.inputs.orgs),
            ("inputs.categories", &self.inputs.categories),
            ("inputs.hitlist", &self.inputs.hitlist),
            ("inputs.aliased", &self.inputs.aliased),
            ("inputs.opt_out", &self.inputs.opt_out),
            ("inputs.exclude", &self.inputs.exclude),
        ] {
            for f in files {
                key(k, f.exists(), &format!("{} does not exist", f.display()))?;
            }
        }
        if let Some(f) = &self.inputs.routes_format {
            f.parse::<datasets::routes::RouteFormat>().map_err(|e| anyhow::anyhow!("key `inputs.routes_format`: {e}"))?;
        }
        self.plan.select.parse::<crate::plan::Selection>().map_err(|e| anyhow::anyhow!("key `plan.select`: {e}"))?;
        key("plan.per_asn", self.plan.per_asn > 0, "must be at least 1")?;
        match &self.plan.seed {
            toml::Value::Integer(i) => key("plan.seed", *i >= 0, "must be a non-negative integer or \"crawl-date\"")?,
            toml::Value::String(s) => key("plan.seed", s == "crawl-date", "must be a non-negative integer or \"crawl-date\"")?,
            _ => bail!("key `plan.seed`: must be a non-negative integer or \"crawl-date\""),
        }
        datasets::blocklist::check_allow_reserved(&self.plan.allow_reserved).map_err(|e| anyhow::anyhow!("key `plan.allow_reserved`: {e}"))?;
        key("scan.ports", !self.scan.ports.is_empty() && !self.scan.ports.contains(&0), "needs at least one port, none 0")?;
        key("scan.retries", self.scan.retries <= crate::scan::MAX_RETRIES, &format!("must be at most {}", crate::scan::MAX_RETRIES))?;
        key("scan.user", !self.scan.user.is_empty() && !self.scan.user.contains(['/', ':', '\0']), "must be a user name")?;
        key("scan.retry_delay", self.scan.retry_delay >= 0.0 && self.scan.retry_delay.is_finite(), "must be >= 0")?;
        key("scan.cooldown", (0.0..=1800.0).contains(&self.scan.cooldown), "must be between 0 and 1800 seconds")?;
        key("scan.rows_per_file", self.scan.rows_per_file > 0, "must be at least 1")?;
        if let Some(m) = &self.scan.gateway_mac {
            crate::net::route::parse_mac(m).map_err(|e| anyhow::anyhow!("key `scan.gateway_mac`: {e}"))?;
        }
        key("self_check.wait", self.self_check.wait > 0.0, "must be > 0")?;
        Ok(())
    }

    pub fn crawl_id(&self, date: &str) -> String {
        self.crawl.crawl_id.replace("{date}", date).replace("{vantage}", &self.crawl.vantage)
    }

    pub fn seed(&self, date: &str) -> u64 {
        match &self.plan.seed {
            toml::Value::Integer(i) => *i as u64,
            _ => {
                use std::hash::Hasher;
                let mut h = siphasher::sip::SipHasher13::new();
                h.write(date.as_bytes());
                h.finish()
            }
        }
    }
}

/// A configuration problem (exit code 2).
#[derive(Debug)]
pub struct ConfigError(pub String);
impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for ConfigError {}
