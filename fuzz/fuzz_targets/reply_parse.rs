#![no_main]
//! Whole received frames (Ethernet, IPv4/IPv6, TCP or ICMP quoting a header) into the reply
//! parser: received bytes are the crawler's most exposed input.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|frame: &[u8]| {
    // With checksums verified (what the receive path does for most frames) and without (what
    // it does when the kernel vouches for them): the second reaches every structural check.
    let _ = crawler::probe::parse(frame);
    let _ = crawler::probe::parse_frame(frame, false);
});
