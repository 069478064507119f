//! The packets, in the spirit of smoltcp's `wire` module: typed zero-copy views over bytes
//! (`pnet_packet`'s packets) with an emit/parse pair for each thing on the wire.
//!
//! - [`syn`]: the SYN a probe sends — a per-family template, filled per probe (emit).
//! - [`reply`]: a received frame parsed into a fixed-size [`Reply`] (parse): SYN-ACK, RST, or
//!   an ICMP error quoting one of our SYNs. Received bytes are untrusted: every length comes
//!   from the frame and is checked before use, and a frame that is not a reply is `None`.
//! - [`options`]: the TCP options our SYN carries and the option kinds a reply carries.
//! - [`build`]: replies as a host, a middlebox or a router would send them (emit) — for the
//!   tests and the lab's forger, which use these instead of bytes laid out by hand.
//!
//! Nothing on the send or receive path allocates: a SYN is written into a caller-owned
//! buffer, a reply is a `Copy` struct.

pub mod build;
pub mod options;
pub mod reply;
pub mod syn;

pub use reply::{parse, parse_frame, Parsed, Reply, ReplyKind};
pub use options::SynStyle;
pub use syn::{fill_syn, parse_syn, syn_template, SynFields, SynView};

pub const ETH_LEN: usize = 14;
/// TCP header of our SYN: 20 bytes + 20 bytes of options.
pub const TCP_LEN: usize = 20 + options::SYN_OPTIONS_LEN;
pub const SYN_V4_LEN: usize = ETH_LEN + 20 + TCP_LEN;
pub const SYN_V6_LEN: usize = ETH_LEN + 40 + TCP_LEN;
/// The largest frame a probe sends.
pub const MAX_FRAME: usize = SYN_V6_LEN;
pub const INITIAL_TTL: u8 = 64;
/// Room for any frame [`build`] writes (an ICMPv6 error quoting an IPv6 header is 110 bytes).
pub const MAX_REPLY_FRAME: usize = 256;

/// Link-level addressing for the frames we send.
#[derive(Debug, Clone, Copy)]
pub struct Link {
    pub src_mac: [u8; 6],
    pub gw_mac: [u8; 6],
}
