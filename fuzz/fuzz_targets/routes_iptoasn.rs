#![no_main]
//! iptoasn TSV address ranges (plain or gzip): ranges split into prefixes, names interned.
use datasets::routes::{RouteFormat, RouteTable};
use datasets::LoadOptions;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let name = Path::new("fuzz.tsv");
    for skip_bad_lines in [false, true] {
        let mut t = RouteTable::default();
        match t.load_from(name, RouteFormat::IpToAsn, datasets::input::decode(data), LoadOptions { skip_bad_lines }) {
            Ok(_) => {
                for (net, o) in t.prefixes().take(64) {
                    let _ = (t.lookup(net.network()), t.source_org(o));
                }
            }
            Err(e) => assert!(e.to_string().starts_with("fuzz.tsv"), "{e}"),
        }
    }
});
