//! Stateless reply validation (ZMap's idea): every SYN's source port and sequence number are
//! a keyed hash (SipHash-1-3, per-crawl secret key) of the probe's destination, so a reply
//! proves it answers our probe without any per-probe state. A SYN-ACK must acknowledge
//! seq+1; an RST may acknowledge seq+1 or carry seq+0 (some stacks do); an ICMP error must
//! quote our source port and sequence number.
//!
//! The sequence number is the hash XOR an index — the scan's send-log slot (`sendlog`) — so a
//! reply also says which send it answers without a lookup: the receive path recovers the index
//! and accepts the reply only if that slot holds a probe of the reply's address and port. A
//! forger still has to hit one 32-bit value (and the keyed source port), so validation is as
//! strong as with the bare hash (~47 bits).
//!
//! A reflection probe leaves from a fixed source port (25, 465, 587, 2525), so it has no keyed
//! port: its cookie is the sequence number alone (~32 bits), and the slot it names must hold a
//! reflection probe from that very port.

use super::ports::MAX_REFLECT;
use crate::probe::{Reply, ReplyKind};
use siphasher::sip::SipHasher13;
use std::hash::Hasher;
use std::net::IpAddr;

/// Source ports come from Linux's default ephemeral range, like a normal client's.
pub const SPORT_BASE: u16 = 32768;
pub const SPORT_SPAN: u32 = 28232; // 32768..=60999

/// splitmix64's finalizer: a cheap bijective mix of 64 bits.
#[inline]
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[derive(Clone, Copy)]
pub struct Cookie {
    k0: u64,
    k1: u64,
    /// The fixed source ports of reflection probes.
    fixed: [u16; MAX_REFLECT],
    n_fixed: usize,
}

/// Which of our source ports a reply came back to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A keyed ephemeral port (a probe *to* a port).
    Ephemeral,
    /// A reflection probe's fixed source port.
    Fixed(u16),
}

impl Cookie {
    pub fn new(k0: u64, k1: u64) -> Cookie {
        Cookie { k0, k1, fixed: [0; MAX_REFLECT], n_fixed: 0 }
    }

    /// The cookie of a scan whose reflection probes leave from `ports` (at most `MAX_REFLECT`).
    pub fn with_fixed_ports(mut self, ports: &[u16]) -> Cookie {
        self.n_fixed = ports.len().min(MAX_REFLECT);
        self.fixed[..self.n_fixed].copy_from_slice(&ports[..self.n_fixed]);
        self
    }

    fn hash(&self, dst: IpAddr, dport: u16) -> u64 {
        let mut h = SipHasher13::new_with_keys(self.k0, self.k1);
        match dst {
            IpAddr::V4(a) => h.write_u32(u32::from(a)),
            IpAddr::V6(a) => h.write_u128(u128::from(a)),
        }
        h.write_u16(dport);
        h.finish()
    }

    #[inline]
    fn sport(h: u64, attempt: u8) -> u16 {
        SPORT_BASE + (((h >> 32) as u32).wrapping_add(attempt as u32 * 7919) % SPORT_SPAN) as u16
    }

    /// (source port, sequence number) of attempt `attempt` (0 = first) at `dst:dport`, carrying
    /// `index`. Each attempt gets its own source port: a retry with another sequence number on
    /// the same 4-tuple would meet whatever state the first SYN left in the host (a half-open
    /// connection answers it with an ACK, or an RST if it falls in the window) instead of a
    /// fresh answer.
    /// A reflection probe's source port is `fixed` instead (the same for every attempt).
    #[inline]
    pub fn probe(&self, dst: IpAddr, dport: u16, index: u32, attempt: u8, fixed: Option<u16>) -> (u16, u32) {
        let h = self.hash(dst, dport);
        (fixed.unwrap_or_else(|| Self::sport(h, attempt)), h as u32 ^ index)
    }

    /// The fields a Linux client randomises per connection, keyed so that they reveal nothing of
    /// the cookie (our SYNs carried `ip_id = seq >> 16` and timestamps from zero, which a filter
    /// can match): the IP-ID and IPv6 flow label of the send in slot `index`, and the timestamp
    /// offset of the destination (Linux keys its offset by address pair, so every probe to a
    /// host shares it). Returns (ip_id, flow_label, ts_offset).
    #[inline]
    pub fn disguise(&self, dst: IpAddr, index: u32) -> (u16, u32, u32) {
        let a = match dst {
            IpAddr::V4(a) => u32::from(a) as u64,
            IpAddr::V6(a) => {
                let v = u128::from(a);
                (v >> 64) as u64 ^ v as u64
            }
        };
        let per_host = mix(a ^ self.k1);
        let per_send = mix(per_host ^ self.k0 ^ ((index as u64) << 17));
        ((per_send >> 48) as u16, (per_send as u32 & 0xf_ffff).max(1), per_host as u32)
    }

    /// The indices `r` may carry — an RST acknowledges seq+1 or carries seq, so it has two —
    /// if its port is the source port of one of our first `attempts` SYNs to its sender, or one
    /// of the reflection probes' fixed ports; and which kind of source port it was.
    #[inline]
    pub fn candidates(&self, r: &Reply, attempts: u8) -> Option<([Option<u32>; 2], Source)> {
        let h = self.hash(r.target, r.tport);
        let source = if (0..attempts.max(1)).any(|a| r.our_port == Self::sport(h, a)) {
            Source::Ephemeral
        } else if self.fixed[..self.n_fixed].contains(&r.our_port) {
            Source::Fixed(r.our_port)
        } else {
            return None;
        };
        let h = h as u32;
        let slots = match r.kind {
            ReplyKind::SynAck => [Some(r.ack_or_seq.wrapping_sub(1) ^ h), None],
            ReplyKind::Rst => [Some(r.ack_or_seq.wrapping_sub(1) ^ h), Some(r.ack_or_seq ^ h)],
            ReplyKind::Icmp => [Some(r.ack_or_seq ^ h), None],
        };
        Some((slots, source))
    }

    /// The index `r` carries, if it answers one of our first `attempts` SYNs; `is(i, source)`
    /// says whether index `i` exists and names the reply's target, port and kind of source port.
    #[inline]
    pub fn index(&self, r: &Reply, attempts: u8, is: impl Fn(u32, Source) -> bool) -> Option<u32> {
        let (slots, source) = self.candidates(r, attempts)?;
        slots.into_iter().flatten().find(|i| is(*i, source))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::options::OptionKinds;
    fn reply(kind: ReplyKind, target: IpAddr, tport: u16, our_port: u16, ack: u32) -> Reply {
        Reply { kind, target, tport, our_port, ack_or_seq: ack, ttl: 64, ip_id: None, tcp_flags: 0, window: 0, mss: None, options: OptionKinds::default(), icmp_type: 0, icmp_code: 0, responder: target, ext_headers: false }
    }
    #[test]
    fn accepts_ours_rejects_forgeries() {
        let c = Cookie::new(1, 2);
        let t: IpAddr = "198.18.0.1".parse().unwrap();
        let other: IpAddr = "198.18.0.2".parse().unwrap();
        // Index 7 is t, index 8 is `other`.
        let valid = |c: &Cookie, r: Reply| c.index(&r, 1, |i, _| (i == 7 && r.target == t) || (i == 8 && r.target == other));
        let (sp, seq) = c.probe(t, 25, 7, 0, None);
        // A retry leaves from another port; its replies validate once it has been sent.
        let (sp2, seq2) = c.probe(t, 25, 7, 1, None);
        assert_ne!(sp, sp2);
        assert_eq!(seq, seq2);
        assert_eq!(c.index(&reply(ReplyKind::SynAck, t, 25, sp2, seq.wrapping_add(1)), 1, |i, _| i == 7), None);
        assert_eq!(c.index(&reply(ReplyKind::SynAck, t, 25, sp2, seq.wrapping_add(1)), 2, |i, _| i == 7), Some(7));
        assert!((32768..=60999).contains(&sp));
        assert_eq!(valid(&c, reply(ReplyKind::SynAck, t, 25, sp, seq.wrapping_add(1))), Some(7));
        assert_eq!(valid(&c, reply(ReplyKind::Rst, t, 25, sp, seq)), Some(7));
        assert_eq!(valid(&c, reply(ReplyKind::Rst, t, 25, sp, seq.wrapping_add(1))), Some(7));
        assert_eq!(valid(&c, reply(ReplyKind::Icmp, t, 25, sp, seq)), Some(7));
        assert_eq!(valid(&c, reply(ReplyKind::SynAck, t, 25, sp, seq)), None);
        assert_eq!(valid(&c, reply(ReplyKind::SynAck, t, 26, sp, seq.wrapping_add(1))), None);
        assert_eq!(valid(&c, reply(ReplyKind::SynAck, t, 25, sp ^ 1, seq.wrapping_add(1))), None);
        // The index must belong to the replying address: t's cookie does not validate `other`.
        assert_eq!(valid(&c, reply(ReplyKind::SynAck, other, 25, sp, seq.wrapping_add(1))), None);
        // Another crawl's key does not validate this crawl's replies.
        assert_eq!(valid(&Cookie::new(3, 4), reply(ReplyKind::SynAck, t, 25, sp, seq.wrapping_add(1))), None);
        // Random forgeries essentially never pass.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut accepted = 0;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            accepted += valid(&c, reply(ReplyKind::SynAck, t, 25, sp, x as u32)).is_some() as u32;
        }
        assert_eq!(accepted, 0);
    }

    #[test]
    fn reflection_replies_name_their_fixed_source_port() {
        let c = Cookie::new(5, 6).with_fixed_ports(&[25, 465, 587, 2525]);
        let t: IpAddr = "2001:db8:101::9".parse().unwrap();
        // A reflection probe from source port 465 to the host's random port 41000, slot 9.
        let (sp, seq) = c.probe(t, 41000, 9, 1, Some(465));
        assert_eq!(sp, 465);
        let rst = reply(ReplyKind::Rst, t, 41000, 465, seq.wrapping_add(1));
        let (slots, source) = c.candidates(&rst, 1).unwrap();
        assert_eq!(source, Source::Fixed(465));
        assert!(slots.contains(&Some(9)));
        // The slot must also hold a reflection probe from that port (the receive path checks).
        assert_eq!(c.index(&rst, 1, |i, s| i == 9 && s == Source::Fixed(465)), Some(9));
        assert_eq!(c.index(&rst, 1, |i, s| i == 9 && s == Source::Fixed(25)), None);
        // A port that is neither keyed nor a reflection source validates nothing.
        assert!(c.candidates(&reply(ReplyKind::Rst, t, 41000, 26, seq.wrapping_add(1)), 1).is_none());
        // Without the hash, a forger's sequence number names a random slot.
        assert_eq!(c.index(&reply(ReplyKind::Rst, t, 41000, 465, seq ^ 0x8000_0000), 1, |i, _| i == 9), None);
    }
}
