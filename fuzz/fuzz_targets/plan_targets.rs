#![no_main]
//! A plan file (Parquet) as the scan loads it: footer, pages, columns, rows.
use crawler::scan::targets::Targets;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let bytes = bytes::Bytes::copy_from_slice(data);
    match Targets::load_from(Path::new("fuzz.plan"), bytes, (0, 1)) {
        Ok(t) => {
            assert_eq!(t.asn.len(), t.len());
            for i in 0..t.len().min(64) {
                assert_eq!(t.find(t.ip(i)), Some(i));
                assert!((t.prefix_idx[i] as usize) < t.prefixes.len());
            }
        }
        Err(e) => assert!(format!("{e:#}").contains("fuzz.plan"), "{e:#}"),
    }
});
