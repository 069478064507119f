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
