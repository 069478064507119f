#![no_main]
//! A crawl file (Parquet) as `analysis` reads it into per-host accumulators.
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let bytes = bytes::Bytes::copy_from_slice(data);
    if let Err(e) = analysis::load::load_from(Path::new("fuzz.parquet"), bytes) {
        assert!(format!("{e:#}").contains("fuzz.parquet"), "{e:#}");
    }
});
