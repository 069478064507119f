//! The one place every writer and reader goes through (`datasets::store`), against a real S3
//! server (SeaweedFS, started here on loopback): objects put whole (a multipart upload above
//! 8 MiB), listed by prefix and by "directory", read back byte for byte; and the spool that
//! carries a writer through an outage of the store — files wait, a full spool says so, nothing
//! is lost or uploaded twice once the store is back.

mod common;
use common::*;
use datasets::store::spool::Spool;
use datasets::store::{Store, StoreOptions};
use port25_lab::s3::SeaweedFs;
use std::time::Duration;

fn server(dir: &std::path::Path, port: u16) -> SeaweedFs {
    SeaweedFs::start(None, "127.0.0.1".parse().unwrap(), port, dir).expect("SeaweedFS")
}

fn store(s: &SeaweedFs, prefix: &str) -> Store {
    Store::open(&s.url(prefix), &s.options()).unwrap()
}

#[test]
fn objects_go_up_whole_and_come_back_byte_for_byte() {
    if !require_tool("store", "weed") || !require_tool("store", "curl") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let s3 = server(&d.path().join("weed"), 28333);
    let st = store(&s3, "crawls");
    assert_eq!(st.url(), "s3://port25/crawls");
    let small = d.path().join("small.parquet");
    std::fs::write(&small, b"PAR1 small PAR1").unwrap();
    // 20 MiB of varied bytes: three parts.
    let big = d.path().join("big.parquet");
    let data: Vec<u8> = (0..20u32 << 20).map(|i| (i.wrapping_mul(2654435761) >> 24) as u8).collect();
    std::fs::write(&big, &data).unwrap();
    st.put_file("crawl_date=2026-12-01/crawl_id=a/part-0.parquet", &small).unwrap();
    st.put_file("crawl_date=2026-12-01/crawl_id=a/part-1.parquet", &big).unwrap();
    st.put_bytes("crawl_date=2026-12-02/crawl_id=b/manifest.json", b"{}".to_vec()).unwrap();
    assert_eq!(st.list_dirs("").unwrap(), ["crawl_date=2026-12-01", "crawl_date=2026-12-02"]);
    assert_eq!(st.list_dirs("crawl_date=2026-12-01").unwrap(), ["crawl_id=a"]);
    let files = st.list("crawl_date=2026-12-01").unwrap();
    assert_eq!(files, [("crawl_date=2026-12-01/crawl_id=a/part-0.parquet".to_string(), 15), ("crawl_date=2026-12-01/crawl_id=a/part-1.parquet".to_string(), 20 << 20)]);
    assert_eq!(&st.get("crawl_date=2026-12-01/crawl_id=a/part-1.parquet").unwrap()[..], &data[..]);
    assert_eq!(st.child("crawl_date=2026-12-01").size("crawl_id=a/part-0.parquet").unwrap(), Some(15));
    assert_eq!(st.size("crawl_date=2026-12-01/crawl_id=a/nope").unwrap(), None);
    // A wrong secret is refused, and the error names the store, never the secret.
    let bad = Store::open(&s3.url("crawls"), &StoreOptions { credentials: Some((port25_lab::s3::KEY.into(), "wrong-secret".into())), ..s3.options() }).unwrap();
    let e = bad.list("").unwrap_err().to_string();
    assert!(!e.contains("wrong-secret") && e.contains("crawls"), "{e}");
    println!("SeaweedFS: a 20 MiB object in parts and a small one, listed and read back; a wrong secret refused ({e})");
}

#[test]
fn the_spool_carries_a_writer_through_an_outage_of_the_store() {
    if !require_tool("store", "weed") || !require_tool("store", "curl") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let mut s3 = server(&d.path().join("weed"), 28433);
    let st = store(&s3, "fleet");
    let spool_dir = d.path().join("spool");
    let part = spool_dir.join("crawl_date=2026-12-01/crawl_id=x");
    std::fs::create_dir_all(&part).unwrap();
    let spool = Spool::start(&spool_dir, st.clone(), 3000);
    let write = |i: u32| {
        datasets::publish::write_atomic(&part.join(format!("part-{i:03}.parquet")), vec![i as u8; 1000]).unwrap();
    };
    write(0);
    spool.kick();
    let t0 = std::time::Instant::now();
    while st.list("").unwrap().is_empty() && t0.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(st.list("").unwrap().len(), 1, "the first file went up: {:?}", spool.stats());
    // The store goes away: files wait in the spool, and past 3,000 bytes the writer is told.
    s3.stop();
    let mut full_at = None;
    for i in 1..6 {
        write(i);
        spool.kick();
        if full_at.is_none() && spool.check_room().is_err() {
            full_at = Some(i);
        }
    }
    let e = spool.check_room().unwrap_err().to_string();
    assert!(e.contains("--resume") && e.contains("unreachable"), "{e}");
    assert_eq!(full_at, Some(4), "the spool held 4,000 bytes after file 4");
    // The manifest, last: it must not go up before the files of its directory.
    datasets::publish::write_atomic(&part.join("manifest.json"), b"{\"done\":true}").unwrap();
    s3.restart().unwrap();
    let stats = spool.finish(Duration::from_secs(120)).unwrap_or_else(|e| panic!("{e}"));
    let files = st.list("").unwrap();
    assert_eq!(files.len(), 7, "{files:?}");
    assert!(std::fs::read_dir(&part).unwrap().next().is_none(), "the spool is empty");
    println!("spool through an outage: {} files uploaded ({} bytes), {} failed attempts retried, {} already there; full after file 4 at 3,000 bytes", stats.files, stats.bytes, stats.failures, stats.already_there);
    assert_eq!(stats.files + stats.already_there, 7, "every file once: 6 parts and the manifest");
}

/// Readers that need files (the analysis) read a copy of a prefix, kept in step with the
/// bucket: a second look fetches nothing, a new object is fetched alone, a rewritten one again,
/// one gone from the bucket leaves the copy, and an object never leaves its prefix.
#[test]
fn a_mirror_fetches_only_what_changed() {
    if !require_tool("store", "weed") || !require_tool("store", "curl") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let s3 = server(&d.path().join("weed"), 28533);
    let st = store(&s3, "data");
    for i in 0..20u8 {
        st.put_bytes(&format!("crawl_date=2026-12-01/crawl_id=a/part-{i:02}.parquet"), vec![i; 5000 + i as usize]).unwrap();
    }
    st.put_bytes("crawl_date=2026-12-01/crawl_id=a/manifest.json", b"{\"n\":1}".to_vec()).unwrap();
    st.put_bytes("crawl_date=2026-12-02/crawl_id=b/part-00.parquet", vec![7; 100]).unwrap();
    let cache = d.path().join("cache");
    let (dir, s) = st.mirror("crawl_date=2026-12-01", &cache).unwrap();
    assert_eq!(dir, cache.join("crawl_date=2026-12-01"));
    assert_eq!((s.fetched, s.kept, s.removed), (21, 0, 0), "{s}");
    assert_eq!(std::fs::read(dir.join("crawl_id=a/part-03.parquet")).unwrap(), vec![3; 5003]);
    assert!(!cache.join("crawl_date=2026-12-02").exists(), "only the prefix asked for");
    let (_, s) = st.mirror("crawl_date=2026-12-01", &cache).unwrap();
    assert_eq!((s.fetched, s.kept), (0, 21), "{s}");
    // A resumed crawl rewrites its manifest; a part is deleted; a stray temporary is left over.
    std::thread::sleep(Duration::from_millis(1100));
    st.put_bytes("crawl_date=2026-12-01/crawl_id=a/manifest.json", b"{\"n\":2}".to_vec()).unwrap();
    st.delete("crawl_date=2026-12-01/crawl_id=a/part-19.parquet").unwrap();
    std::fs::write(dir.join("crawl_id=a/.fetch-stray"), b"half").unwrap();
    let (_, s) = st.mirror("crawl_date=2026-12-01", &cache).unwrap();
    assert_eq!((s.fetched, s.kept, s.removed), (1, 19, 2), "{s}");
    assert_eq!(std::fs::read(dir.join("crawl_id=a/manifest.json")).unwrap(), b"{\"n\":2}");
    // A local store is its own copy.
    let local = Store::open(cache.to_str().unwrap(), &StoreOptions::default()).unwrap();
    assert_eq!(local.mirror("crawl_date=2026-12-01", &d.path().join("unused")).unwrap().0, dir);
    println!("mirror: 21 objects fetched, then none, then the one rewritten; a deleted object and a stray temporary removed");
}
