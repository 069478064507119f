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

/// The options of our SYN, in a Linux client's order: MSS, SACK-permitted, timestamps, NOP,
/// window scale.
pub fn syn_options(mss: u16, wscale: u8) -> [TcpOption; 5] {
    [TcpOption::mss(mss), TcpOption::sack_perm(), TcpOption::timestamp(0, 0), TcpOption::nop(), TcpOption::wscale(wscale)]
}

/// What makes a SYN look like this host's own TCP stack's (a SYN that does not look like an
/// OS's is easy to filter as a scanner): MSS for a 1500-byte path MTU, the initial window
/// Linux offers (65535 rounded down to a multiple of the MSS), and the window scale Linux
/// derives from the receive-buffer limits (`tcp_select_initial_window`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SynStyle {
    pub mss: u16,
    pub window: u16,
    pub wscale: u8,
}

impl SynStyle {
    /// Linux's choices for a family, given the larger of `net.ipv4.tcp_rmem[2]` and
    /// `net.core.rmem_max`.
    pub fn linux(v6: bool, rmem_max: u64) -> SynStyle {
        let mss: u16 = if v6 { 1500 - 40 - 20 } else { 1500 - 20 - 20 };
        let ilog2 = 63 - rmem_max.max(1).leading_zeros() as i64;
        SynStyle { mss, window: (65535 / mss) * mss, wscale: (ilog2 - 15).clamp(0, 14) as u8 }
    }

    /// As the kernel of the network namespace we run in would send it.
    pub fn of_this_host(v6: bool) -> SynStyle {
        let read = |p: &str| std::fs::read_to_string(p).ok();
        let tcp_rmem = read("/proc/sys/net/ipv4/tcp_rmem").and_then(|s| s.split_whitespace().nth(2)?.parse().ok()).unwrap_or(6 << 20);
        let rmem_max = read("/proc/sys/net/core/rmem_max").and_then(|s| s.trim().parse().ok()).unwrap_or(212_992);
        SynStyle::linux(v6, u64::max(tcp_rmem, rmem_max))
    }
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
