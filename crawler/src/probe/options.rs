//! TCP options. Our SYN carries the options a Linux client sends (MSS, SACK-permitted,
//! timestamps, window scale): ZMap found that bare SYNs are dropped by some hosts, which a
//! blocking study would misread as filtering. A reply's options are kept as their kinds in
//! order (a stack fingerprint), e.g. `2,4,8,1,3`.

use pnet_packet::tcp::TcpOption;

/// Bytes of options in our SYN.
pub const SYN_OPTIONS_LEN: usize = 20;

/// Offset of the timestamp value inside the TCP header: header (20), MSS (4), SACK-permitted
/// (2), timestamp kind and length (2).
pub const TSVAL_OFFSET: usize = 20 + 4 + 2 + 2;

/// The options of our SYN, in a Linux client's order.
pub fn syn_options() -> [TcpOption; 5] {
    [TcpOption::mss(1460), TcpOption::sack_perm(), TcpOption::timestamp(0, 0), TcpOption::nop(), TcpOption::wscale(7)]
}

/// Up to 12 TCP option kinds, in the order the peer sent them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OptionKinds {
    pub kinds: [u8; 12],
    pub len: u8,
}

impl OptionKinds {
    pub fn as_slice(&self) -> &[u8] {
        &self.kinds[..self.len as usize]
    }

    /// Append a kind; kinds past the 12th are not kept.
    pub fn push(&mut self, kind: u8) {
        if (self.len as usize) < self.kinds.len() {
            self.kinds[self.len as usize] = kind;
            self.len += 1;
        }
    }
}
