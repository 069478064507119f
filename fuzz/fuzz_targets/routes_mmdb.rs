#![no_main]
//! A MaxMind GeoLite2-ASN database: the tree walk and the record decoding.
use datasets::routes::RouteTable;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let mut t = RouteTable::default();
    if let Err(e) = t.load_mmdb_bytes(Path::new("fuzz.mmdb"), data.to_vec()) {
        assert!(e.to_string().starts_with("fuzz.mmdb"), "{e}");
    }
});
