//! Where the analysis reads and writes: directories, or a bucket (`s3://…`, through
//! `datasets::store`). The analysis reads files; from a bucket it reads a local copy
//! (`--cache`) brought in step with the bucket first — only the crawls the command covers,
//! only objects new or changed — and its reports, written locally, go up at the end.

use anyhow::{Context, Result};
use datasets::store::{Store, StoreOptions};
use std::path::{Path, PathBuf};

/// `BUCKET/PREFIX` of `s3://BUCKET/PREFIX`, as a relative path.
fn copy_name(url: &str) -> PathBuf {
    let rest = url.split_once("://").map_or(url, |x| x.1);
    let safe: String = rest.chars().map(|c| if c.is_ascii_alphanumeric() || "-_./=".contains(c) { c } else { '_' }).collect();
    PathBuf::from(safe.trim_matches('/').replace("..", "_"))
}

/// `/var/tmp/port25-cache/BUCKET/PREFIX`: one copy per bucket prefix, surviving reboots.
fn default_cache(url: &str) -> PathBuf {
    Path::new("/var/tmp/port25-cache").join(copy_name(url))
}

fn open(url: &str, endpoint: &Option<String>) -> Result<Store> {
    Ok(Store::open(url, &StoreOptions { endpoint: endpoint.clone(), credentials: None })?)
}

/// Which crawls of `--data` a command reads.
pub enum Need<'a> {
    /// Every crawl (the trend).
    All,
    /// `latest` (every crawl of the latest date) or one crawl id — as `load::pick`.
    Pick(&'a str),
}

/// `--data` as a local directory: itself, or the copy of the crawls `need` covers.
pub fn crawls(data: &Path, cache: Option<&Path>, endpoint: &Option<String>, need: Need, quiet: bool) -> Result<PathBuf> {
    let url = data.to_string_lossy();
    if !datasets::store::is_url(&url) {
        return Ok(data.to_path_buf());
    }
    let store = open(&url, endpoint)?;
    let cache = cache.map(Path::to_path_buf).unwrap_or_else(|| default_cache(store.url()));
    // The bucket's crawls, from its "directories": never a listing of every file of every crawl.
    let mut all = Vec::new();
    for d in store.list_dirs("")?.into_iter().filter(|d| d.starts_with("crawl_date=")) {
        for c in store.list_dirs(&d)?.into_iter().filter(|c| c.starts_with("crawl_id=")) {
            all.push((d.clone(), c));
        }
    }
    let wanted: Vec<&(String, String)> = match need {
        Need::All => all.iter().collect(),
        Need::Pick("latest") => {
            let last = all.iter().map(|(d, _)| d).max();
            all.iter().filter(|(d, _)| Some(d) == last).collect()
        }
        Need::Pick(id) => all.iter().filter(|(_, c)| c.strip_prefix("crawl_id=") == Some(id)).collect(),
    };
    // A crawl in the copy that the bucket no longer has must not be reported from the copy.
    for d in std::fs::read_dir(&cache).into_iter().flatten().flatten().filter(|d| d.file_name().to_string_lossy().starts_with("crawl_date=")) {
        for c in std::fs::read_dir(d.path()).into_iter().flatten().flatten() {
            let key = (d.file_name().to_string_lossy().into_owned(), c.file_name().to_string_lossy().into_owned());
            if !all.contains(&key) {
                std::fs::remove_dir_all(c.path()).with_context(|| format!("removing {} from the copy", c.path().display()))?;
            }
        }
    }
    let mut total = datasets::store::mirror::MirrorStats::default();
    for (d, c) in wanted {
        let (_, s) = store.mirror(&format!("{d}/{c}"), &cache)?;
        total.fetched += s.fetched;
        total.fetched_bytes += s.fetched_bytes;
        total.kept += s.kept;
        total.kept_bytes += s.kept_bytes;
        total.removed += s.removed;
    }
    if !quiet {
        eprintln!("analysis: {}: {total} (copy in {})", store.describe(), cache.display());
    }
    Ok(cache)
}

/// An `--egress` location as a local directory (all of it: egress tables are small).
pub fn egress(dir: &Path, cache: Option<&Path>, endpoint: &Option<String>, quiet: bool) -> Result<PathBuf> {
    let url = dir.to_string_lossy();
    if !datasets::store::is_url(&url) {
        return Ok(dir.to_path_buf());
    }
    let store = open(&url, endpoint)?;
    // With --cache: beside the crawls' copy, under the egress prefix's own name.
    let cache = match cache {
        Some(c) => c.join("_egress").join(copy_name(store.url())),
        None => default_cache(store.url()),
    };
    let (local, s) = store.mirror("", &cache)?;
    if !quiet {
        eprintln!("analysis: {}: {s}", store.describe());
    }
    Ok(local)
}

/// Where reports are written: `--out` itself, or a local staging directory whose files go
/// up to the bucket in [`Out::publish`].
pub struct Out {
    pub local: PathBuf,
    store: Option<(Store, tempfile::TempDir)>,
}

impl Out {
    pub fn new(out: &Path, endpoint: &Option<String>) -> Result<Out> {
        let url = out.to_string_lossy();
        if !datasets::store::is_url(&url) {
            return Ok(Out { local: out.to_path_buf(), store: None });
        }
        let store = open(&url, endpoint)?;
        let tmp = tempfile::Builder::new().prefix("port25-report-").tempdir().context("a staging directory for the reports")?;
        Ok(Out { local: tmp.path().join("out"), store: Some((store, tmp)) })
    }

    /// What a message names.
    pub fn describe(&self) -> String {
        match &self.store {
            Some((s, _)) => s.describe(),
            None => self.local.display().to_string(),
        }
    }

    /// Upload the reports (a bucket `--out`): every file, whole; the small index files last,
    /// so a reader that sees `report.json` sees the report.
    pub fn publish(self) -> Result<()> {
        let Some((store, _tmp)) = self.store else { return Ok(()) };
        let mut files = Vec::new();
        collect(&self.local, &self.local, &mut files)?;
        files.sort_by_key(|rel| (rel.ends_with(".json") || rel.ends_with(".html"), rel.clone()));
        for rel in files {
            store.put_file(&rel, &self.local.join(&rel))?;
        }
        Ok(())
    }
}

fn collect(root: &Path, p: &Path, out: &mut Vec<String>) -> Result<()> {
    for e in std::fs::read_dir(p).with_context(|| format!("reading {}", p.display()))? {
        let e = e?;
        let path = e.path();
        if e.file_type()?.is_dir() {
            collect(root, &path, out)?;
        } else {
            out.push(path.strip_prefix(root).expect("below the root").to_string_lossy().into_owned());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_are_used_as_they_are() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(crawls(d.path(), None, &None, Need::All, true).unwrap(), d.path());
        assert_eq!(egress(d.path(), None, &None, true).unwrap(), d.path());
        let o = Out::new(d.path(), &None).unwrap();
        assert_eq!(o.local, d.path());
        o.publish().unwrap();
        assert_eq!(default_cache("s3://b/p/../q"), Path::new("/var/tmp/port25-cache/b/p/_/q"));
    }
}
