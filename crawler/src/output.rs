//! Where the crawler's files go: a directory, or an object store (`s3://bucket/prefix`) through
//! a local spool (`datasets::store`). Every writer — `scan`, `run`, `egress`, `sink` — writes
//! into a local directory exactly as before (files published atomically); with a store, that
//! directory is the spool, and its finished files go up in the background, under the same
//! relative paths, manifests last. So the bucket holds the same layout, files and manifests a
//! disk would, and every guarantee of the files carries over.

use crate::job::config::ConfigError;
use anyhow::Result;
use datasets::store::spool::Spool;
use datasets::store::{Store, StoreOptions};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The spool's default bound: past it, the store has been away too long to keep writing.
pub const DEFAULT_SPOOL_MAX: u64 = 4 << 30;

/// Flags every writer takes beside `--out`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct StoreArgs {
    /// With `--out s3://…`: the local directory files wait in until they are uploaded
    /// (default: /var/tmp/port25-spool/BUCKET/PREFIX).
    #[arg(long)]
    pub spool: Option<PathBuf>,
    /// With `--out s3://…`: the most the spool may hold (bytes; K, M, G suffixes) before the
    /// writer stops with an error, keeping all it wrote.
    #[arg(long, value_parser = parse_size)]
    pub spool_max: Option<u64>,
    /// An S3-compatible endpoint (e.g. `http://192.0.2.26:8333`); default AWS_ENDPOINT_URL, else AWS.
    #[arg(long)]
    pub s3_endpoint: Option<String>,
    /// Seconds to keep retrying the last uploads at the end before leaving them in the spool.
    #[arg(long, default_value_t = 300.0)]
    pub upload_wait: f64,
}

/// `4G`, `512M`, `100K` or a plain number of bytes.
pub fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.chars().last() {
        Some('K' | 'k') => (&s[..s.len() - 1], 1u64 << 10),
        Some('M' | 'm') => (&s[..s.len() - 1], 1 << 20),
        Some('G' | 'g') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>().ok().and_then(|n| n.checked_mul(mult)).filter(|n| *n > 0).ok_or_else(|| format!("`{s}`: a size in bytes (K, M, G suffixes)"))
}

/// A writer's output: the local directory it writes into, and the store behind it, if any.
#[derive(Debug, Clone)]
pub struct Output {
    /// The directory the writer writes (the spool, with a store).
    pub local: PathBuf,
    pub store: Option<Store>,
    pub spool_max: u64,
    pub upload_wait: Duration,
}

impl Output {
    /// `out`: a directory or `s3://bucket/prefix`. A malformed URL is bad input (exit 2).
    pub fn parse(out: &Path, a: &StoreArgs) -> Result<Output> {
        let text = out.to_string_lossy();
        if !a.upload_wait.is_finite() {
            return Err(ConfigError(format!("--upload-wait {}: seconds, a number", a.upload_wait)).into());
        }
        let upload_wait = Duration::from_secs_f64(a.upload_wait.clamp(0.0, 86_400.0));
        if !datasets::store::is_url(&text) {
            if a.spool.is_some() || a.spool_max.is_some() {
                return Err(ConfigError(format!("--spool/--spool-max: only with an object-store --out (s3://…), not {}", out.display())).into());
            }
            return Ok(Output { local: out.to_path_buf(), store: None, spool_max: 0, upload_wait });
        }
        let store = Store::open(&text, &StoreOptions { endpoint: a.s3_endpoint.clone(), credentials: None }).map_err(|e| ConfigError(e.to_string()))?;
        let local = a.spool.clone().unwrap_or_else(|| default_spool(store.url()));
        Ok(Output { local, store: Some(store), spool_max: a.spool_max.unwrap_or(DEFAULT_SPOOL_MAX), upload_wait })
    }

    /// Where the files end up, for messages.
    pub fn describe(&self) -> String {
        match &self.store {
            Some(s) => format!("{} (via the spool {})", s.describe(), self.local.display()),
            None => self.local.display().to_string(),
        }
    }

    /// Start uploading the spool (nothing to do for a directory). Call it once privileges are
    /// gone: uploads run as the unprivileged user, like everything after the sockets.
    pub fn start(&self) -> Result<Option<Spool>> {
        let Some(s) = &self.store else { return Ok(None) };
        claim(&self.local, s.url())?;
        // A crawl's plan is read again (by its shards, on resume): it goes up and stays.
        Ok(Some(Spool::start_keeping(&self.local, s.clone(), self.spool_max, |rel| rel.starts_with("_plans/"))))
    }

    /// Upload what is left; an error keeps it in the spool and says so.
    pub fn finish(&self, spool: Option<Spool>) -> Result<()> {
        if let Some(s) = spool {
            s.finish(self.upload_wait)?;
        }
        Ok(())
    }
}

/// The spool's marker (hidden: never uploaded) names the one destination its files go to: a
/// spool shared by two writers with different `--out` (one `--spool` given to a crawl and a
/// sink) would put each one's files under the other's prefix.
const MARKER: &str = ".port25-spool";

fn claim(spool: &Path, url: &str) -> Result<()> {
    let marker = spool.join(MARKER);
    match std::fs::read_to_string(&marker) {
        Ok(text) if text.trim() == url => Ok(()),
        Ok(text) => Err(ConfigError(format!("the spool {} holds files for {}, not {url}: give each destination a spool of its own (--spool)", spool.display(), text.trim())).into()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(spool).map_err(|e| anyhow::anyhow!("creating the spool {}: {e}", spool.display()))?;
            match datasets::publish::write_atomic(&marker, format!("{url}\n")) {
                // A spool directory the writer may not write at its top (its files go below):
                // unmarked, as before markers, rather than no crawl.
                Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                    tracing::warn!("cannot mark the spool {} with its destination: {e}", spool.display());
                    Ok(())
                }
                r => r.map_err(|e| anyhow::anyhow!("writing {}: {e}", marker.display())),
            }
        }
        Err(e) => Err(anyhow::anyhow!("reading {}: {e}", marker.display())),
    }
}

/// `/var/tmp/port25-spool/BUCKET/PREFIX` for `s3://BUCKET/PREFIX`: one spool per destination,
/// on a file system that survives a reboot.
pub fn default_spool(url: &str) -> PathBuf {
    let rest = url.split_once("://").map_or(url, |x| x.1);
    let safe: String = rest.chars().map(|c| if c.is_ascii_alphanumeric() || "-_./=".contains(c) { c } else { '_' }).collect();
    Path::new("/var/tmp/port25-spool").join(safe.trim_matches('/').replace("..", "_"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_stay_directories_and_urls_get_a_spool() {
        let o = Output::parse(Path::new("/data/crawls"), &StoreArgs::default()).unwrap();
        assert!(o.store.is_none() && o.local == Path::new("/data/crawls"));
        let o = Output::parse(Path::new("s3://bucket/fleet/v1"), &StoreArgs { s3_endpoint: Some("http://127.0.0.1:9".into()), ..Default::default() }).unwrap();
        assert_eq!(o.local, Path::new("/var/tmp/port25-spool/bucket/fleet/v1"));
        assert_eq!(o.spool_max, DEFAULT_SPOOL_MAX);
        assert!(Output::parse(Path::new("/d"), &StoreArgs { spool_max: Some(1), ..Default::default() }).is_err());
        assert!(Output::parse(Path::new("s3://"), &StoreArgs::default()).is_err());
        assert!(Output::parse(Path::new("/d"), &StoreArgs { upload_wait: f64::NAN, ..Default::default() }).is_err());
    }

    #[test]
    fn a_spool_serves_one_destination() {
        let d = tempfile::tempdir().unwrap();
        let spool = d.path().join("spool");
        claim(&spool, "s3://b/crawls").unwrap();
        claim(&spool, "s3://b/crawls").unwrap();
        let e = claim(&spool, "s3://b/sink").unwrap_err().to_string();
        assert!(e.contains("holds files for s3://b/crawls, not s3://b/sink"), "{e}");
        assert_eq!((parse_size("4G"), parse_size("512k"), parse_size("0"), parse_size("x")), (Ok(4 << 30), Ok(512 << 10), Err("`0`: a size in bytes (K, M, G suffixes)".into()), Err("`x`: a size in bytes (K, M, G suffixes)".into())));
        assert_eq!(default_spool("s3://b/../x"), Path::new("/var/tmp/port25-spool/b/_/x"));
    }
}
