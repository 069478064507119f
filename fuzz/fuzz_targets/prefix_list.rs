#![no_main]
//! Prefix lists — opt-out, exclusion, aliased prefixes — and the blocklist built from them:
//! whatever a list names stays blocked, even inside reserved space that is allowed.
use datasets::blocklist::{Blocklist, Reason, IANA_V4, IANA_V6};
use datasets::hitlist::load_prefixes_from;
use datasets::LoadOptions;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    // One pass per input (half the cost of both): its length's parity picks stopping at the
    // first bad line or skipping and counting them, so the fuzzer explores both.
    {
        let skip_bad_lines = data.len() % 2 == 1;
        match load_prefixes_from(Path::new("fuzz.txt"), datasets::input::decode(data), LoadOptions { skip_bad_lines }) {
            Ok((nets, _)) => {
                // Every special-purpose range allowed: the most an allow list can lift.
                let all: Vec<ipnet::IpNet> = IANA_V4.iter().chain(IANA_V6).map(|p| p.parse().unwrap()).collect();
                let mut b = Blocklist::with_iana(&all);
                for n in &nets {
                    b.add(*n, Reason::OptOut);
                }
                for n in nets.iter().take(64) {
                    assert_eq!(b.check(n.network()), Some(Reason::OptOut), "{n}");
                    assert_eq!(b.check(n.broadcast()), Some(Reason::OptOut), "{n}");
                    assert_eq!(b.covers(*n), Some(Reason::OptOut), "{n}");
                    assert!(b.any_within(*n) || b.covers(*n).is_some());
                }
            }
            Err(e) => assert!(e.to_string().starts_with("fuzz.txt"), "{e}"),
        }
    }
});
