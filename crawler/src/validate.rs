//! Stateless reply validation (ZMap's idea): every SYN's source port and sequence number are
//! a keyed hash (SipHash-1-3, per-crawl secret key) of the probe's destination, so a reply
//! proves it answers our probe without any per-probe state. A SYN-ACK must acknowledge
//! seq+1; an RST may acknowledge seq+1 or carry seq+0 (some stacks do); an ICMP error must
//! quote our source port and sequence number.

use crate::wire::{Reply, ReplyKind};
use siphasher::sip::SipHasher13;
use std::hash::Hasher;
use std::net::IpAddr;

/// Source ports come from Linux's default ephemeral range, like a normal client's.
pub const SPORT_BASE: u16 = 32768;
pub const SPORT_SPAN: u32 = 28232; // 32768..=60999

#[derive(Clone, Copy)]
pub struct Cookie {
    k0: u64,
    k1: u64,
}

impl Cookie {
    pub fn new(k0: u64, k1: u64) -> Cookie {
        Cookie { k0, k1 }
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

    /// (source port, sequence number) of the SYN to `dst:dport`.
    #[inline]
    pub fn probe(&self, dst: IpAddr, dport: u16) -> (u16, u32) {
        let h = self.hash(dst, dport);
        (SPORT_BASE + ((h >> 32) as u32 % SPORT_SPAN) as u16, h as u32)
    }

    /// Does `r` answer a SYN we sent?
    #[inline]
    pub fn valid(&self, r: &Reply) -> bool {
        let (sport, seq) = self.probe(r.target, r.tport);
        if r.our_port != sport {
            return false;
        }
        match r.kind {
            ReplyKind::SynAck => r.ack_or_seq == seq.wrapping_add(1),
            ReplyKind::Rst => r.ack_or_seq == seq.wrapping_add(1) || r.ack_or_seq == seq,
            ReplyKind::Icmp => r.ack_or_seq == seq,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::OptionKinds;
    fn reply(kind: ReplyKind, target: IpAddr, tport: u16, our_port: u16, ack: u32) -> Reply {
        Reply { kind, target, tport, our_port, ack_or_seq: ack, ttl: 64, ip_id: None, tcp_flags: 0, window: 0, mss: None, options: OptionKinds::default(), icmp_type: 0, icmp_code: 0, responder: target }
    }
    #[test]
    fn accepts_ours_rejects_forgeries() {
        let c = Cookie::new(1, 2);
        let t: IpAddr = "198.18.0.1".parse().unwrap();
        let (sp, seq) = c.probe(t, 25);
        assert!((32768..=60999).contains(&sp));
        assert!(c.valid(&reply(ReplyKind::SynAck, t, 25, sp, seq.wrapping_add(1))));
        assert!(c.valid(&reply(ReplyKind::Rst, t, 25, sp, seq)));
        assert!(c.valid(&reply(ReplyKind::Icmp, t, 25, sp, seq)));
        assert!(!c.valid(&reply(ReplyKind::SynAck, t, 25, sp, seq)));
        assert!(!c.valid(&reply(ReplyKind::SynAck, t, 26, sp, seq.wrapping_add(1))));
        assert!(!c.valid(&reply(ReplyKind::SynAck, t, 25, sp ^ 1, seq.wrapping_add(1))));
        // Another crawl's key does not validate this crawl's replies.
        assert!(!Cookie::new(3, 4).valid(&reply(ReplyKind::SynAck, t, 25, sp, seq.wrapping_add(1))));
    }
}
