#![no_main]
//! CAIDA AS2Org, JSONL and the legacy pipe layout (plain or gzip), and the lookups on it.
use datasets::orgs::Orgs;
use datasets::LoadOptions;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    // One pass per input (half the cost of both): its length's parity picks stopping at the
    // first bad line or skipping and counting them, so the fuzzer explores both.
    {
        let skip_bad_lines = data.len() % 2 == 1;
        let mut o = Orgs::default();
        match o.load_from(Path::new("fuzz.as-org2info"), datasets::input::decode(data), LoadOptions { skip_bad_lines }) {
            Ok(_) => {
                for asn in o.asn_org.keys().take(16) {
                    let (id, _) = o.org_of(*asn);
                    let _ = o.siblings(&id);
                }
            }
            Err(e) => assert!(e.to_string().starts_with("fuzz.as-org2info"), "{e}"),
        }
    }
});
