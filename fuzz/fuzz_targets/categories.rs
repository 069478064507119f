#![no_main]
//! ASdb CSV and the user's `AS<n>,category` list (plain or gzip).
use datasets::categories::Categories;
use datasets::LoadOptions;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    // One pass per input (half the cost of both): its length's parity picks stopping at the
    // first bad line or skipping and counting them, so the fuzzer explores both.
    {
        let skip_bad_lines = data.len() % 2 == 1;
        let mut c = Categories::default();
        match c.load_from(Path::new("fuzz.csv"), datasets::input::decode(data), LoadOptions { skip_bad_lines }) {
            Ok(_) => {
                for asn in c.labels.keys().take(16) {
                    let _ = (c.category(*asn), c.is(*asn, "hosting"));
                }
            }
            Err(e) => assert!(e.to_string().starts_with("fuzz.csv"), "{e}"),
        }
    }
});
