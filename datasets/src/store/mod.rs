//! Where every tool's output lives and where every reader finds it: a local directory, or an
//! object store (`s3://bucket/prefix`, any S3-compatible server). One place for all of it —
//! the crawl's Parquet files and manifests, the plans, egress and sink tables, reports — so a
//! fleet of vantages meets in one bucket with exactly the layout a single machine writes on disk.
//!
//! Credentials and the endpoint come from the standard environment (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP`), read by
//! `object_store`'s own `AmazonS3Builder::from_env`; a flag or config key may set the endpoint.
//! The URL a store prints (`Store::url`) never carries a secret.
//!
//! Writers never stream into the store: they publish a finished local file (written and
//! fsynced, `publish`) and hand it over whole — one PUT, or a multipart upload above 8 MiB —
//! which an object store makes visible atomically: a reader never sees a partial object. The
//! [`spool`] module does that hand-over in the background, with a bounded local spool for
//! when the store is away.
//!
//! `object_store` is asynchronous; everything here blocks, on a runtime of its own (run on a
//! thread of its own when the caller is itself inside a Tokio runtime, as the sink is).

pub mod mirror;
pub mod spool;

use crate::DatasetError;
use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Files larger than this go up in parts (S3 wants parts of 5 MiB at least).
const MULTIPART_ABOVE: u64 = 8 << 20;
const PART: usize = 8 << 20;

/// How to reach an object store beyond what the environment says.
#[derive(Clone, Default)]
pub struct StoreOptions {
    /// An S3-compatible endpoint (`http://127.0.0.1:8333`): overrides `AWS_ENDPOINT_URL`.
    pub endpoint: Option<String>,
    /// Access key and secret, for programs that hold them (tests); tools read the environment
    /// — a secret never goes on a command line.
    pub credentials: Option<(String, String)>,
}

impl std::fmt::Debug for StoreOptions {
    // Never the secret, whatever prints the options.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreOptions")
            .field("endpoint", &self.endpoint.as_deref().map(shown_endpoint))
            .field("credentials", &self.credentials.as_ref().map(|(k, _)| (k, "***")))
            .finish()
    }
}

#[derive(Clone)]
enum Kind {
    Dir(PathBuf),
    Object { os: Arc<dyn ObjectStore>, prefix: String },
}

/// An output or input location: a directory, or a prefix in a bucket.
#[derive(Clone)]
pub struct Store {
    kind: Kind,
    url: String,
    /// The S3 endpoint, when not AWS's (shown without credentials).
    endpoint: Option<String>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.url)
    }
}

/// Is this an object-store URL (as opposed to a local path)?
pub fn is_url(s: &str) -> bool {
    s.starts_with("s3://") || s.starts_with("s3a://")
}

/// A store operation that failed: the store unreachable, a permission refused, a file gone —
/// a runtime failure (exit 1), never bad input. Names the object and says why.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(pub String);

fn err(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError(format!("{what}: {e}"))
}

fn io(p: &Path, e: std::io::Error) -> StoreError {
    StoreError(format!("{}: {e}", p.display()))
}

/// Run a future to completion from blocking code, inside a Tokio runtime or not. One runtime
/// for the process, kept: the stores' HTTP clients pool connections whose tasks live on the
/// runtime that opened them — a runtime per call would leave the next call with connections
/// whose tasks are gone.
fn block<F: std::future::Future + Send>(f: F) -> F::Output
where
    F::Output: Send,
{
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    let rt = RT.get_or_init(|| tokio::runtime::Builder::new_multi_thread().worker_threads(1).thread_name("object-store").enable_all().build().expect("a Tokio runtime"));
    let run = || rt.block_on(f);
    if tokio::runtime::Handle::try_current().is_ok() {
        // Blocking inside a runtime's thread would stall it (or panic): a thread of our own.
        std::thread::scope(|s| s.spawn(run).join().expect("object store thread"))
    } else {
        run()
    }
}

impl Store {
    /// A directory (any path) or a bucket prefix (`s3://bucket/prefix`).
    pub fn open(location: &str, opts: &StoreOptions) -> Result<Store, DatasetError> {
        if !is_url(location) {
            return Ok(Store::dir(Path::new(location)));
        }
        // Whoever reaches a store over TLS needs a crypto provider: ring, as the sink's TLS.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let rest = location.split_once("://").map(|x| x.1).unwrap_or_default();
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(DatasetError::file(Path::new(location), "no bucket (expected s3://BUCKET/PREFIX)"));
        }
        // Timeouts first: `with_client_options` replaces every client option set before it.
        let client = object_store::ClientOptions::new().with_connect_timeout(std::time::Duration::from_secs(5)).with_timeout(std::time::Duration::from_secs(120));
        let mut b = object_store::aws::AmazonS3Builder::from_env().with_client_options(client).with_bucket_name(bucket);
        let endpoint = opts.endpoint.clone().or_else(|| std::env::var("AWS_ENDPOINT_URL").ok()).or_else(|| std::env::var("AWS_ENDPOINT").ok());
        let plain_ok = std::env::var("AWS_ALLOW_HTTP").is_ok_and(|v| v.eq_ignore_ascii_case("true"));
        if let Some(e) = &endpoint {
            // A self-hosted S3 (SeaweedFS, MinIO) is addressed by path, often over plain HTTP.
            b = b.with_endpoint(e.clone()).with_virtual_hosted_style_request(false);
        }
        b = b.with_allow_http(plain_ok || endpoint.as_deref().is_some_and(|e| e.starts_with("http://")));
        if let Some((key, secret)) = &opts.credentials {
            b = b.with_access_key_id(key).with_secret_access_key(secret);
        }
        if std::env::var("AWS_REGION").is_err() && std::env::var("AWS_DEFAULT_REGION").is_err() {
            b = b.with_region("us-east-1");
        }
        // Retries are ours (the spool's backoff): a request fails fast when the store is away.
        let retry = object_store::RetryConfig { max_retries: 2, retry_timeout: std::time::Duration::from_secs(20), ..Default::default() };
        let os = b.with_retry(retry).build().map_err(|e| DatasetError::file(Path::new(location), e.to_string()))?;
        let prefix = prefix.trim_matches('/').to_string();
        let endpoint = endpoint.map(|e| shown_endpoint(&e));
        Ok(Store { kind: Kind::Object { os: Arc::new(os), prefix: prefix.clone() }, url: format!("s3://{bucket}/{prefix}").trim_end_matches('/').to_string(), endpoint })
    }

    pub fn dir(p: &Path) -> Store {
        Store { kind: Kind::Dir(p.to_path_buf()), url: p.display().to_string(), endpoint: None }
    }

    /// Where it is: a path or `s3://bucket/prefix` (no credentials, ever).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// [`Store::url`] with the endpoint, for messages.
    pub fn describe(&self) -> String {
        match &self.endpoint {
            Some(e) => format!("{} (endpoint {e})", self.url),
            None => self.url.clone(),
        }
    }

    pub fn is_remote(&self) -> bool {
        matches!(self.kind, Kind::Object { .. })
    }

    /// The directory, for a local store.
    pub fn local_dir(&self) -> Option<&Path> {
        match &self.kind {
            Kind::Dir(d) => Some(d),
            Kind::Object { .. } => None,
        }
    }

    /// The store below a relative path (`crawl_date=…/crawl_id=…`).
    pub fn child(&self, rel: &str) -> Store {
        let rel = rel.trim_matches('/');
        match &self.kind {
            Kind::Dir(d) => Store::dir(&d.join(rel)),
            Kind::Object { os, prefix } => Store { kind: Kind::Object { os: os.clone(), prefix: join(prefix, rel) }, url: format!("{}/{rel}", self.url.trim_end_matches('/')), endpoint: self.endpoint.clone() },
        }
    }

    fn key(prefix: &str, rel: &str) -> ObjPath {
        ObjPath::from(join(prefix, rel))
    }

    /// Put a finished local file under `rel`, whole: an object appears complete or not at all.
    pub fn put_file(&self, rel: &str, local: &Path) -> Result<(), StoreError> {
        match &self.kind {
            Kind::Dir(d) => {
                let dest = d.join(rel);
                if let Some(p) = dest.parent() {
                    std::fs::create_dir_all(p).map_err(|e| io(p, e))?;
                }
                let bytes = std::fs::read(local).map_err(|e| io(local, e))?;
                crate::publish::write_atomic(&dest, bytes).map_err(|e| io(&dest, e))
            }
            Kind::Object { os, prefix } => {
                let key = Self::key(prefix, rel);
                let len = std::fs::metadata(local).map_err(|e| io(local, e))?.len();
                let what = format!("uploading {} to {}", local.display(), key);
                if len <= MULTIPART_ABOVE {
                    let data = Bytes::from(std::fs::read(local).map_err(|e| io(local, e))?);
                    block(os.put(&key, PutPayload::from(data))).map(|_| ()).map_err(|e| err(&what, e))
                } else {
                    let path = local.to_path_buf();
                    block(async {
                        use std::io::Read;
                        let upload = os.put_multipart(&key).await?;
                        let mut w = WriteMultipart::new_with_chunk_size(upload, PART);
                        let sent: Result<(), object_store::Error> = async {
                            let mut f = std::fs::File::open(&path).map_err(|e| object_store::Error::Generic { store: "file", source: Box::new(e) })?;
                            let mut buf = vec![0u8; PART];
                            loop {
                                let n = f.read(&mut buf).map_err(|e| object_store::Error::Generic { store: "file", source: Box::new(e) })?;
                                if n == 0 {
                                    return Ok(());
                                }
                                w.wait_for_capacity(2).await?;
                                w.write(&buf[..n]);
                            }
                        }
                        .await;
                        match sent {
                            Ok(()) => w.finish().await.map(|_| ()),
                            Err(e) => {
                                // The parts already sent would stay in the bucket, billed and
                                // invisible, until a lifecycle rule removed them.
                                let _ = w.abort().await;
                                Err(e)
                            }
                        }
                    })
                    .map_err(|e| err(&what, e))
                }
            }
        }
    }

    /// Put bytes under `rel` (small files: manifests, state).
    pub fn put_bytes(&self, rel: &str, data: Vec<u8>) -> Result<(), StoreError> {
        match &self.kind {
            Kind::Dir(d) => {
                let dest = d.join(rel);
                if let Some(p) = dest.parent() {
                    std::fs::create_dir_all(p).map_err(|e| io(p, e))?;
                }
                crate::publish::write_atomic(&dest, data).map_err(|e| io(&dest, e))
            }
            Kind::Object { os, prefix } => {
                let key = Self::key(prefix, rel);
                block(os.put(&key, PutPayload::from(Bytes::from(data)))).map(|_| ()).map_err(|e| err(&format!("writing {key}"), e))
            }
        }
    }

    /// The whole object (or file) at `rel`.
    pub fn get(&self, rel: &str) -> Result<Bytes, StoreError> {
        match &self.kind {
            Kind::Dir(d) => {
                let p = d.join(rel);
                std::fs::read(&p).map(Bytes::from).map_err(|e| io(&p, e))
            }
            Kind::Object { os, prefix } => {
                let key = Self::key(prefix, rel);
                block(async { os.get(&key).await?.bytes().await }).map_err(|e| err(&format!("reading {}", self.name(rel)), e))
            }
        }
    }

    /// Its size, if `rel` exists.
    pub fn size(&self, rel: &str) -> Result<Option<u64>, StoreError> {
        match &self.kind {
            Kind::Dir(d) => Ok(std::fs::metadata(d.join(rel)).ok().filter(|m| m.is_file()).map(|m| m.len())),
            Kind::Object { os, prefix } => match block(os.head(&Self::key(prefix, rel))) {
                Ok(m) => Ok(Some(m.size)),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(err(&format!("looking for {}", self.name(rel)), e)),
            },
        }
    }

    /// Every file below `rel` (recursively), as (path relative to this store, size), sorted.
    pub fn list(&self, rel: &str) -> Result<Vec<(String, u64)>, StoreError> {
        let mut out = match &self.kind {
            Kind::Dir(d) => {
                let mut out = Vec::new();
                walk(d, &d.join(rel), &mut out)?;
                out
            }
            Kind::Object { os, prefix } => {
                let at = Self::key(prefix, rel);
                let strip = if prefix.is_empty() { String::new() } else { format!("{prefix}/") };
                block(async {
                    let mut s = os.list(Some(&at));
                    let mut out = Vec::new();
                    while let Some(m) = s.next().await {
                        let m = m?;
                        let k = m.location.to_string();
                        out.push((k.strip_prefix(&strip).unwrap_or(&k).to_string(), m.size));
                    }
                    Ok::<_, object_store::Error>(out)
                })
                .map_err(|e| err(&format!("listing {}", self.name(rel)), e))?
            }
        };
        out.sort();
        Ok(out)
    }

    /// The names directly below `rel` that are "directories" (common prefixes), sorted: for
    /// finding `crawl_date=…` and `crawl_id=…` without listing every file of a year of crawls.
    pub fn list_dirs(&self, rel: &str) -> Result<Vec<String>, StoreError> {
        let mut out = match &self.kind {
            Kind::Dir(d) => {
                let p = d.join(rel);
                match std::fs::read_dir(&p) {
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                    Err(e) => return Err(io(&p, e)),
                    Ok(rd) => rd.filter_map(|e| e.ok()).filter(|e| e.path().is_dir()).map(|e| e.file_name().to_string_lossy().into_owned()).collect(),
                }
            }
            Kind::Object { os, prefix } => {
                let at = Self::key(prefix, rel);
                let r = block(os.list_with_delimiter(Some(&at))).map_err(|e| err(&format!("listing {}", self.name(rel)), e))?;
                r.common_prefixes.iter().filter_map(|p| p.filename().map(String::from)).collect()
            }
        };
        out.sort();
        Ok(out)
    }

    pub fn delete(&self, rel: &str) -> Result<(), StoreError> {
        match &self.kind {
            Kind::Dir(d) => {
                let p = d.join(rel);
                match std::fs::remove_file(&p) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&p, e)),
                    _ => Ok(()),
                }
            }
            Kind::Object { os, prefix } => block(os.delete(&Self::key(prefix, rel))).map_err(|e| err(&format!("deleting {}", self.name(rel)), e)),
        }
    }

    /// `rel` named for a message: the store's URL and the path.
    pub fn name(&self, rel: &str) -> String {
        format!("{}/{}", self.url.trim_end_matches('/'), rel.trim_start_matches('/'))
    }
}

fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_string(),
        (_, true) => a.to_string(),
        _ => format!("{a}/{b}"),
    }
}

/// An endpoint as it may be shown or recorded: it may carry `user:password@`, never shown.
pub fn shown_endpoint(e: &str) -> String {
    match e.split_once("://") {
        Some((scheme, rest)) => format!("{scheme}://{}", rest.rsplit('@').next().unwrap_or(rest)),
        None => e.rsplit('@').next().unwrap_or(e).to_string(),
    }
}

pub(crate) fn walk(root: &Path, p: &Path, out: &mut Vec<(String, u64)>) -> Result<(), StoreError> {
    let rd = match std::fs::read_dir(p) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
            let m = std::fs::metadata(p).map_err(|e| io(p, e))?;
            out.push((p.strip_prefix(root).unwrap_or(p).to_string_lossy().into_owned(), m.len()));
            return Ok(());
        }
        Err(e) => return Err(io(p, e)),
        Ok(rd) => rd,
    };
    // An entry that vanishes while we look (a temporary file renamed by its writer, a file the
    // uploader just removed) is skipped, not an error that would cut the listing short.
    let gone = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
    for e in rd {
        let e = e.map_err(|e| io(p, e))?;
        let path = e.path();
        let ft = match e.file_type() {
            Err(x) if gone(&x) => continue,
            r => r.map_err(|e| io(&path, e))?,
        };
        if ft.is_dir() {
            // fsck's directory at the root of a spool on a file system of its own: never ours,
            // and unreadable to the unprivileged writer.
            if p == root && e.file_name() == "lost+found" {
                continue;
            }
            walk(root, &path, out)?;
        } else if ft.is_file() {
            let len = match e.metadata() {
                Err(x) if gone(&x) => continue,
                r => r.map_err(|e| io(&path, e))?.len(),
            };
            out.push((path.strip_prefix(root).unwrap_or(&path).to_string_lossy().into_owned(), len));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_store_lists_reads_and_writes_by_relative_path() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path().to_str().unwrap(), &StoreOptions::default()).unwrap();
        assert!(!s.is_remote());
        let src = d.path().join("src.bin");
        std::fs::write(&src, b"hello").unwrap();
        s.put_file("crawl_date=2026-12-01/crawl_id=a/part-0.parquet", &src).unwrap();
        s.put_bytes("crawl_date=2026-12-01/crawl_id=a/manifest.json", b"{}".to_vec()).unwrap();
        assert_eq!(s.list_dirs("").unwrap(), ["crawl_date=2026-12-01"]);
        assert_eq!(s.list_dirs("crawl_date=2026-12-01").unwrap(), ["crawl_id=a"]);
        let files = s.list("crawl_date=2026-12-01").unwrap();
        assert_eq!(files.iter().map(|f| f.0.as_str()).collect::<Vec<_>>(), ["crawl_date=2026-12-01/crawl_id=a/manifest.json", "crawl_date=2026-12-01/crawl_id=a/part-0.parquet"]);
        assert_eq!(&s.child("crawl_date=2026-12-01/crawl_id=a").get("part-0.parquet").unwrap()[..], b"hello");
        assert_eq!(s.size("crawl_date=2026-12-01/crawl_id=a/part-0.parquet").unwrap(), Some(5));
        assert_eq!(s.size("nope").unwrap(), None);
        s.delete("crawl_date=2026-12-01/crawl_id=a/manifest.json").unwrap();
        assert_eq!(s.list("").unwrap().len(), 2, "src.bin and the part file");
    }

    #[test]
    fn urls_never_show_credentials_and_need_a_bucket() {
        assert!(Store::open("s3:///x", &StoreOptions::default()).is_err());
        let s = Store::open("s3://b/p/q", &StoreOptions { endpoint: Some("http://127.0.0.1:8333".into()), ..Default::default() }).unwrap();
        assert!(s.is_remote());
        assert_eq!(s.url(), "s3://b/p/q");
        assert_eq!(s.child("crawl_date=x").url(), "s3://b/p/q/crawl_date=x");
        let s = Store::open("s3://b", &StoreOptions { endpoint: Some("http://k:secret@127.0.0.1:8333".into()), ..Default::default() }).unwrap();
        assert_eq!(s.describe(), "s3://b (endpoint http://127.0.0.1:8333)");
        let o = StoreOptions { endpoint: Some("http://k:secret@h:1".into()), credentials: Some(("key".into(), "secret".into())) };
        assert!(!format!("{o:?}").contains("secret"), "{o:?}");
    }
}
