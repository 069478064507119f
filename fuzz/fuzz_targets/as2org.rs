#![no_main]
//! CAIDA AS2Org, JSONL and the legacy pipe layout (plain or gzip), and the lookups on it.
use datasets::orgs::Orgs;
use datasets::LoadOptions;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    for skip_bad_lines in [false, true] {
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
