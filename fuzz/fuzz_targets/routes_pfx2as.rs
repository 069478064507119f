#![no_main]
//! RouteViews/CAIDA pfx2as text (plain or gzip), and the format sniffing that picks a loader.
use datasets::routes::{detect_text_format, RouteFormat, RouteTable};
use datasets::LoadOptions;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let name = Path::new("fuzz.pfx2as");
    if let Err(e) = detect_text_format(name, datasets::input::decode(data)) {
        assert!(e.to_string().starts_with("fuzz.pfx2as"), "{e}");
    }
    for skip_bad_lines in [false, true] {
        let mut t = RouteTable::default();
        match t.load_from(name, RouteFormat::Pfx2as, datasets::input::decode(data), LoadOptions { skip_bad_lines }) {
            Ok(_) => {
                for (net, _) in t.prefixes().take(64) {
                    let _ = t.lookup(net.network());
                }
            }
            Err(e) => assert!(e.to_string().starts_with("fuzz.pfx2as"), "{e}"),
        }
    }
});
