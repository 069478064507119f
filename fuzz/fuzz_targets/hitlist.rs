#![no_main]
//! The IPv6 hitlist: one address a line, `#` comments.
use datasets::hitlist::load_addresses_from;
use datasets::LoadOptions;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    // One pass per input (half the cost of both): its length's parity picks stopping at the
    // first bad line or skipping and counting them, so the fuzzer explores both.
    {
        let skip_bad_lines = data.len() % 2 == 1;
        if let Err(e) = load_addresses_from(Path::new("fuzz.txt"), datasets::input::decode(data), LoadOptions { skip_bad_lines }) {
            assert!(e.to_string().starts_with("fuzz.txt"), "{e}");
        }
    }
});
