#![no_main]
//! Whole received frames (Ethernet, IPv4/IPv6, TCP or ICMP quoting a header) into the reply
//! parser: received bytes are the crawler's most exposed input.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|frame: &[u8]| {
    let _ = crawler::probe::parse(frame);
});
