//! Replies parsed from received frames: a SYN-ACK or RST from the probed host (or a
//! middlebox), or an ICMP error whose quoted header names one of our SYNs. The result is a
//! fixed-size [`Reply`]; nothing is allocated per frame. Received bytes are untrusted: each
//! view is created with pnet's length-checked `new`, and lengths read from headers are
//! clamped to the frame before slicing.

use super::options::OptionKinds;
use super::ETH_LEN;
use pnet_packet::ethernet::{EtherTypes, EthernetPacket};
use pnet_packet::icmp::IcmpPacket;
use pnet_packet::icmpv6::Icmpv6Packet;
use pnet_packet::ip::IpNextHeaderProtocols;
use pnet_packet::ipv4::Ipv4Packet;
use pnet_packet::ipv6::Ipv6Packet;
use pnet_packet::tcp::{TcpFlags, TcpOptionNumbers, TcpPacket};
use pnet_packet::Packet;
use std::net::IpAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyKind {
    SynAck,
    Rst,
    Icmp,
}

/// A parsed reply. `target`/`tport`/`our_port` name the probe it answers: for TCP the
/// reply's source; for ICMP the quoted original destination.
#[derive(Debug, Clone, Copy)]
pub struct Reply {
    pub kind: ReplyKind,
    pub target: IpAddr,
    pub tport: u16,
    pub our_port: u16,
    /// TCP: the acknowledgment number. ICMP: the quoted sequence number of our SYN.
    pub ack_or_seq: u32,
    pub ttl: u8,
    pub ip_id: Option<u16>,
    pub tcp_flags: u8,
    pub window: u16,
    pub mss: Option<u16>,
    pub options: OptionKinds,
    pub icmp_type: u8,
    pub icmp_code: u8,
    pub responder: IpAddr,
}

fn tcp_reply(t: &TcpPacket, src: IpAddr, ttl: u8, ip_id: Option<u16>) -> Option<Reply> {
    // A header shorter than 20 bytes, or one claiming options past the end of the segment, is
    // no host's reply; pnet would read such options from whatever bytes follow.
    let doff = t.get_data_offset() as usize * 4;
    if doff < 20 || doff > t.packet().len() {
        return None;
    }
    let flags = t.get_flags();
    let kind = if flags & TcpFlags::RST != 0 {
        ReplyKind::Rst
    } else if flags & (TcpFlags::SYN | TcpFlags::ACK) == (TcpFlags::SYN | TcpFlags::ACK) {
        ReplyKind::SynAck
    } else {
        return None;
    };
    let mut options = OptionKinds::default();
    let mut mss = None;
    for o in t.get_options_iter() {
        let k = o.get_number();
        options.push(k.0);
        if k == TcpOptionNumbers::MSS {
            let p = o.payload();
            if p.len() >= 2 {
                mss = Some(u16::from_be_bytes([p[0], p[1]]));
            }
        }
    }
    Some(Reply {
        kind,
        target: src,
        tport: t.get_source(),
        our_port: t.get_destination(),
        ack_or_seq: t.get_acknowledgement(),
        ttl,
        ip_id,
        tcp_flags: flags,
        window: t.get_window(),
        mss,
        options,
        icmp_type: 0,
        icmp_code: 0,
        responder: src,
    })
}

/// The first 8 bytes of a quoted TCP header: ports and sequence number.
fn quoted_tcp(b: &[u8]) -> Option<(u16, u16, u32)> {
    if b.len() < 8 {
        return None;
    }
    Some((u16::from_be_bytes([b[0], b[1]]), u16::from_be_bytes([b[2], b[3]]), u32::from_be_bytes([b[4], b[5], b[6], b[7]])))
}

/// An ICMP error quoting our SYN to `target` (quoted: our port, its port, our sequence number).
fn icmp_reply(target: IpAddr, quoted: (u16, u16, u32), ttl: u8, ip_id: Option<u16>, icmp_type: u8, icmp_code: u8, responder: IpAddr) -> Reply {
    let (sport, dport, seq) = quoted;
    Reply {
        kind: ReplyKind::Icmp,
        target,
        tport: dport,
        our_port: sport,
        ack_or_seq: seq,
        ttl,
        ip_id,
        tcp_flags: 0,
        window: 0,
        mss: None,
        options: OptionKinds::default(),
        icmp_type,
        icmp_code,
        responder,
    }
}

/// Parse an Ethernet frame into a reply to one of our SYNs, if it can be one.
pub fn parse(frame: &[u8]) -> Option<Reply> {
    let eth = EthernetPacket::new(frame)?;
    match eth.get_ethertype() {
        EtherTypes::Ipv4 => {
            let ip = Ipv4Packet::new(&frame[ETH_LEN..])?;
            if ip.get_version() != 4 || ip.get_header_length() < 5 {
                return None;
            }
            let hl = ip.get_header_length() as usize * 4;
            let total = (ip.get_total_length() as usize).min(frame.len() - ETH_LEN);
            // A later fragment carries no transport header at its start.
            if total < hl || ip.get_fragment_offset() != 0 {
                return None;
            }
            let payload = &frame[ETH_LEN + hl..ETH_LEN + total];
            let src = IpAddr::V4(ip.get_source());
            match ip.get_next_level_protocol() {
                IpNextHeaderProtocols::Tcp => tcp_reply(&TcpPacket::new(payload)?, src, ip.get_ttl(), Some(ip.get_identification())),
                IpNextHeaderProtocols::Icmp => {
                    let icmp = IcmpPacket::new(payload)?;
                    // Destination unreachable (3) and time exceeded (11) quote our packet.
                    let ty = icmp.get_icmp_type().0;
                    if ty != 3 && ty != 11 {
                        return None;
                    }
                    let inner = Ipv4Packet::new(payload.get(8..)?)?;
                    let ihl = inner.get_header_length() as usize * 4;
                    // The quote must be an IPv4 header of ours: with a bad length the "ports
                    // and sequence number" would be read from inside the IP header.
                    if inner.get_version() != 4 || ihl < 20 || inner.get_next_level_protocol() != IpNextHeaderProtocols::Tcp {
                        return None;
                    }
                    let quoted = quoted_tcp(payload.get(8 + ihl..)?)?;
                    Some(icmp_reply(IpAddr::V4(inner.get_destination()), quoted, ip.get_ttl(), Some(ip.get_identification()), ty, icmp.get_icmp_code().0, src))
                }
                _ => None,
            }
        }
        EtherTypes::Ipv6 => {
            let ip = Ipv6Packet::new(&frame[ETH_LEN..])?;
            if ip.get_version() != 6 {
                return None;
            }
            let plen = (ip.get_payload_length() as usize).min(frame.len().saturating_sub(ETH_LEN + 40));
            let payload = &frame[ETH_LEN + 40..ETH_LEN + 40 + plen];
            let src = IpAddr::V6(ip.get_source());
            match ip.get_next_header() {
                IpNextHeaderProtocols::Tcp => tcp_reply(&TcpPacket::new(payload)?, src, ip.get_hop_limit(), None),
                IpNextHeaderProtocols::Icmpv6 => {
                    let icmp = Icmpv6Packet::new(payload)?;
                    // Destination unreachable (1) and time exceeded (3) quote our packet.
                    let ty = icmp.get_icmpv6_type().0;
                    if ty != 1 && ty != 3 {
                        return None;
                    }
                    let inner = Ipv6Packet::new(payload.get(8..)?)?;
                    if inner.get_version() != 6 || inner.get_next_header() != IpNextHeaderProtocols::Tcp {
                        return None;
                    }
                    let quoted = quoted_tcp(payload.get(48..)?)?;
                    Some(icmp_reply(IpAddr::V6(inner.get_destination()), quoted, ip.get_hop_limit(), None, ty, icmp.get_icmpv6_code().0, src))
                }
                _ => None,
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::build::{IcmpError, TcpReply};
    use super::super::{Link, SynFields, MAX_REPLY_FRAME};
    use super::*;
    const LINK: Link = Link { src_mac: [2, 0, 0, 0, 0, 1], gw_mac: [2, 0, 0, 0, 0, 2] };

    #[test]
    fn parse_synack_and_rst_v6() {
        let mut b = [0u8; MAX_REPLY_FRAME];
        let host: IpAddr = "2001:db8:101::5".parse().unwrap();
        let us: IpAddr = "2001:db8:0:1::2".parse().unwrap();
        let r = TcpReply::synack(host, us, 25, 40000, 1234, 62);
        let n = r.emit(&mut b, &LINK).unwrap();
        let p = parse(&b[..n]).unwrap();
        assert_eq!((p.kind, p.target, p.tport, p.our_port, p.ack_or_seq, p.ttl), (ReplyKind::SynAck, host, 25, 40000, 1235, 62));
        assert_eq!(p.mss, Some(1460));
        let n = TcpReply::rst(host, us, 25, 40000, 1234, 63).emit(&mut b, &LINK).unwrap();
        assert_eq!(parse(&b[..n]).unwrap().kind, ReplyKind::Rst);
        assert!(parse(&b[..10]).is_none());
    }

    #[test]
    fn icmp_errors_name_the_quoted_probe() {
        let mut b = [0u8; MAX_REPLY_FRAME];
        for (us, target, router, ty, code) in [
            ("192.0.2.2", "198.18.8.7", "198.51.100.18", 3, 13),
            ("2001:db8:0:1::2", "2001:db8:104::9", "2001:db8:ff:3::2", 1, 1),
        ] {
            let (us, target, router): (IpAddr, IpAddr, IpAddr) = (us.parse().unwrap(), target.parse().unwrap(), router.parse().unwrap());
            let syn = SynFields { src: us, dst: target, sport: 41000, dport: 25, seq: 0x0102_0304, ip_id: 0, tsval: 0 };
            let n = IcmpError { responder: router, icmp_type: ty, icmp_code: code, ttl: 63, quoted: syn }.emit(&mut b, &LINK).unwrap();
            let p = parse(&b[..n]).unwrap();
            assert_eq!((p.kind, p.target, p.tport, p.our_port, p.ack_or_seq), (ReplyKind::Icmp, target, 25, 41000, 0x0102_0304));
            assert_eq!((p.icmp_type, p.icmp_code, p.responder, p.ttl), (ty, code, router, 63));
            // A frame cut anywhere short of the quoted ports and sequence number names nothing.
            assert!((0..n).all(|k| parse(&b[..k]).is_none()));
            // Nor does a quote whose IP header length or version is not an IP header's.
            let q = ETH_LEN + if us.is_ipv4() { 20 } else { 40 } + 8;
            for bad in if us.is_ipv4() { [0x40, 0x44, 0x65] } else { [0x40, 0x00, 0x70] } {
                let mut c = b;
                c[q] = bad;
                assert!(parse(&c[..n]).is_none(), "quote starting {:#x}", c[q]);
            }
        }
    }

    #[test]
    fn malformed_tcp_headers_and_later_fragments_are_not_replies() {
        let mut b = [0u8; MAX_REPLY_FRAME];
        let (host, us): (IpAddr, IpAddr) = ("198.18.8.7".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let n = TcpReply::synack(host, us, 25, 40000, 1234, 62).emit(&mut b, &LINK).unwrap();
        assert!(parse(&b[..n]).is_some());
        let doff = ETH_LEN + 20 + 12;
        // Data offset 15 words (60 bytes) on a 40-byte header, and 4 words (16 bytes).
        for (v, what) in [(0xf0u8, "past the segment"), (0x40, "under 20 bytes")] {
            let mut c = b;
            c[doff] = v | (c[doff] & 0x0f);
            assert!(parse(&c[..n]).is_none(), "data offset {what}");
        }
        // A fragment at offset 8: its first bytes are not a TCP header.
        let mut c = b;
        c[ETH_LEN + 7] = 1;
        assert!(parse(&c[..n]).is_none());
    }
}
