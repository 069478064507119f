#![no_main]
//! `crawl.toml`: TOML parsing and every validation rule; what is accepted must name a safe
//! crawl directory whatever the date.
use crawler::job::config::{check_name, CrawlConfig};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match CrawlConfig::from_toml(Path::new("fuzz.toml"), text) {
        Ok(c) => {
            for date in ["2026-11-28", "1970-01-01"] {
                let id = c.crawl_id(date);
                assert!(check_name("crawl id", &id).is_ok(), "accepted an unsafe crawl id `{id}`");
                let _ = c.seed(date);
            }
            assert!(check_name("vantage", &c.crawl.vantage).is_ok());
            assert!(c.scan.retries <= crawler::scan::MAX_RETRIES);
            let _ = toml::to_string_pretty(&c);
        }
        Err(e) => assert!(format!("{e:#}").starts_with("fuzz.toml"), "{e:#}"),
    }
});
