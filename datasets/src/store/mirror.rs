//! The read side for tools that read files by path (the analysis, the tests): a local copy of
//! a prefix of the store, kept in step with it. Objects in this layout are written once under
//! unique names (a manifest may be rewritten by a resumed crawl), so a copy whose size and
//! modification time match the object's is the object; only what changed is fetched, and a
//! file the store no longer has is removed from the copy. DuckDB reads the bucket itself.
//!
//! A fetched object is written to a hidden temporary and renamed into place: a copy
//! interrupted half-way is never taken for a whole file.

use super::{block, err, io, Kind, Store, StoreError};
use futures::StreamExt;
use object_store::ObjectStoreExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Objects fetched at once.
const PARALLEL: usize = 8;

/// What a [`Store::mirror`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MirrorStats {
    pub fetched: u64,
    pub fetched_bytes: u64,
    /// Already in the copy, unchanged.
    pub kept: u64,
    pub kept_bytes: u64,
    /// Gone from the store, so removed from the copy.
    pub removed: u64,
}

impl std::fmt::Display for MirrorStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} object(s) fetched ({:.1} MB), {} already here ({:.1} MB), {} removed", self.fetched, self.fetched_bytes as f64 / 1e6, self.kept, self.kept_bytes as f64 / 1e6, self.removed)
    }
}

/// The object's time, as the copy's modification time carries it (whole seconds: some file
/// systems keep no more).
fn secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn same(local: &Path, size: u64, modified: SystemTime) -> bool {
    std::fs::metadata(local).is_ok_and(|m| m.is_file() && m.len() == size && m.modified().is_ok_and(|t| secs(t) == secs(modified)))
}

impl Store {
    /// The local directory holding everything below `rel`: the directory itself for a local
    /// store; for an object store, `cache/rel`, brought in step with the store first.
    pub fn mirror(&self, rel: &str, cache: &Path) -> Result<(PathBuf, MirrorStats), StoreError> {
        let rel = rel.trim_matches('/');
        let (os, prefix) = match &self.kind {
            Kind::Dir(d) => return Ok((d.join(rel), MirrorStats::default())),
            Kind::Object { os, prefix } => (os.clone(), prefix.clone()),
        };
        let at = Self::key(&prefix, rel);
        let strip = if prefix.is_empty() { String::new() } else { format!("{prefix}/") };
        let objects = block(async {
            let mut s = os.list(Some(&at));
            let mut out = Vec::new();
            while let Some(m) = s.next().await {
                let m = m?;
                let k = m.location.to_string();
                out.push((k.strip_prefix(&strip).unwrap_or(&k).to_string(), m.size, SystemTime::from(m.last_modified)));
            }
            Ok::<_, object_store::Error>(out)
        })
        .map_err(|e| err(&format!("listing {}", self.name(rel)), e))?;
        let mut stats = MirrorStats::default();
        let mut wanted = std::collections::HashSet::new();
        let mut todo = Vec::new();
        for (key, size, modified) in objects {
            // A key that would leave the copy (`..`, absolute) is not ours to write.
            if key.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
                return Err(StoreError(format!("{}: an object name that is not a relative path", self.name(&key))));
            }
            let local = cache.join(&key);
            wanted.insert(local.clone());
            if same(&local, size, modified) {
                stats.kept += 1;
                stats.kept_bytes += size;
            } else {
                todo.push((key, local, size, modified));
            }
        }
        let results: Vec<Result<u64, StoreError>> = block(async {
            futures::stream::iter(todo.into_iter().map(|(key, local, size, modified)| {
                let os = os.clone();
                let name = self.name(&key);
                let key = Self::key(&prefix, &key);
                async move { fetch(&*os, &key, &local, size, modified).await.map_err(|e| StoreError(format!("fetching {name}: {e}"))) }
            }))
            .buffer_unordered(PARALLEL)
            .collect()
            .await
        });
        for r in results {
            stats.fetched_bytes += r?;
            stats.fetched += 1;
        }
        let root = cache.join(rel);
        let mut present = Vec::new();
        super::walk(cache, &root, &mut present)?;
        for (p, _) in present {
            let p = cache.join(p);
            if !wanted.contains(&p) {
                std::fs::remove_file(&p).map_err(|e| io(&p, e))?;
                stats.removed += 1;
            }
        }
        Ok((root, stats))
    }
}

/// One object into `local` by way of a hidden temporary, stamped with the object's time.
async fn fetch(os: &dyn object_store::ObjectStore, key: &object_store::path::Path, local: &Path, size: u64, modified: SystemTime) -> Result<u64, Box<dyn std::error::Error + Send + Sync>> {
    use std::io::Write;
    let dir = local.parent().ok_or("no parent directory")?;
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new().prefix(".fetch-").tempfile_in(dir)?;
    let mut stream = os.get(key).await?.into_stream();
    let mut n = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        n += chunk.len() as u64;
        tmp.write_all(&chunk)?;
    }
    if n != size {
        return Err(format!("{n} bytes read, the listing said {size} (changed while read?)").into());
    }
    tmp.as_file().set_modified(modified)?;
    tmp.persist(local)?;
    Ok(n)
}
