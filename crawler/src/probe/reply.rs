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
    /// IPv6 extension headers came before the TCP or ICMPv6 header.
    pub ext_headers: bool,
}

fn tcp_reply(t: &TcpPacket, src: IpAddr, ttl: u8, ip_id: Option<u16>, ext_headers: bool) -> Option<Reply> {
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
        ext_headers,
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
#[allow(clippy::too_many_arguments)]
fn icmp_reply(target: IpAddr, quoted: (u16, u16, u32), ttl: u8, ip_id: Option<u16>, icmp_type: u8, icmp_code: u8, responder: IpAddr, ext_headers: bool) -> Reply {
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
        ext_headers,
    }
}

/// What a received frame is to the scan.
#[derive(Debug, Clone, Copy)]
pub enum Parsed {
    /// Not a SYN-ACK, RST or ICMP error about TCP: traffic the scan ignores.
    NotReply,
    /// A reply whose checksum (IPv4 header, TCP or ICMP) is wrong: damaged or forged, dropped.
    BadChecksum,
    Reply(Reply),
}

/// Parse an Ethernet frame into a reply to one of our SYNs, if it can be one, verifying its
/// checksums.
pub fn parse(frame: &[u8]) -> Option<Reply> {
    match parse_frame(frame, true) {
        Parsed::Reply(r) => Some(r),
        _ => None,
    }
}

/// [`parse`], with checksum verification optional: the receive ring says when the kernel has
/// verified them already, or cannot have (a locally made frame whose checksum the NIC was to
/// fill in, or one cut at the capture length).
pub fn parse_frame(frame: &[u8], verify: bool) -> Parsed {
    let Some(eth) = EthernetPacket::new(frame) else { return Parsed::NotReply };
    let r = match eth.get_ethertype() {
        EtherTypes::Ipv4 => parse_v4(&frame[ETH_LEN..], verify),
        EtherTypes::Ipv6 => parse_v6(&frame[ETH_LEN..], verify),
        _ => None,
    };
    r.unwrap_or(Parsed::NotReply)
}

/// The TCP or ICMP payload after an IPv6 header and its extension headers (hop-by-hop,
/// routing, destination options, fragment): (next header, payload, any extension header?).
/// Only a first fragment carries the upper-layer header; later fragments are not replies.
fn skip_v6_extensions(mut next: u8, mut p: &[u8]) -> Option<(u8, &[u8], bool)> {
    let mut ext = false;
    for _ in 0..8 {
        match next {
            0 | 43 | 60 => {
                let h = p.get(..2)?;
                let len = (h[1] as usize + 1) * 8;
                next = h[0];
                p = p.get(len..)?;
            }
            44 => {
                let h = p.get(..8)?;
                if u16::from_be_bytes([h[2], h[3]]) >> 3 != 0 {
                    return None;
                }
                next = h[0];
                p = &p[8..];
            }
            _ => return Some((next, p, ext)),
        }
        ext = true;
    }
    None
}

fn parse_v4(packet: &[u8], verify: bool) -> Option<Parsed> {
    let ip = Ipv4Packet::new(packet)?;
    if ip.get_version() != 4 || ip.get_header_length() < 5 {
        return None;
    }
    let hl = ip.get_header_length() as usize * 4;
    let total = ip.get_total_length() as usize;
    // A frame cut short (capture length) cannot have its checksums checked.
    let verify = verify && total <= packet.len();
    let total = total.min(packet.len());
    // A later fragment carries no transport header at its start.
    if total < hl || ip.get_fragment_offset() != 0 {
        return None;
    }
    let payload = &packet[hl..total];
    let src = IpAddr::V4(ip.get_source());
    let (ttl, id) = (ip.get_ttl(), Some(ip.get_identification()));
    if verify && pnet_packet::ipv4::checksum(&ip) != ip.get_checksum() {
        return Some(Parsed::BadChecksum);
    }
    match ip.get_next_level_protocol() {
        IpNextHeaderProtocols::Tcp => {
            let t = TcpPacket::new(payload)?;
            if verify && pnet_packet::tcp::ipv4_checksum(&t, &ip.get_source(), &ip.get_destination()) != t.get_checksum() {
                return Some(Parsed::BadChecksum);
            }
            tcp_reply(&t, src, ttl, id, false).map(Parsed::Reply)
        }
        IpNextHeaderProtocols::Icmp => {
            let icmp = IcmpPacket::new(payload)?;
            // Destination unreachable (3) and time exceeded (11) quote our packet.
            let ty = icmp.get_icmp_type().0;
            if ty != 3 && ty != 11 {
                return None;
            }
            if verify && pnet_packet::icmp::checksum(&icmp) != icmp.get_checksum() {
                return Some(Parsed::BadChecksum);
            }
            let inner = Ipv4Packet::new(payload.get(8..)?)?;
            // The quote must be an IPv4 header of ours: with a bad length the "ports and
            // sequence number" would be read from inside the IP header.
            if inner.get_version() != 4 || inner.get_header_length() < 5 || inner.get_next_level_protocol() != IpNextHeaderProtocols::Tcp {
                return None;
            }
            let ihl = inner.get_header_length() as usize * 4;
            let quoted = quoted_tcp(payload.get(8 + ihl..)?)?;
            Some(Parsed::Reply(icmp_reply(IpAddr::V4(inner.get_destination()), quoted, ttl, id, ty, icmp.get_icmp_code().0, src, false)))
        }
        _ => None,
    }
}

fn parse_v6(packet: &[u8], verify: bool) -> Option<Parsed> {
    let ip = Ipv6Packet::new(packet)?;
    if ip.get_version() != 6 {
        return None;
    }
    let plen = ip.get_payload_length() as usize;
    let verify = verify && 40 + plen <= packet.len();
    let body = &packet[40..(40 + plen).min(packet.len())];
    let (next, payload, ext) = skip_v6_extensions(ip.get_next_header().0, body)?;
    let (src, dst, hop) = (ip.get_source(), ip.get_destination(), ip.get_hop_limit());
    match next {
        6 => {
            let t = TcpPacket::new(payload)?;
            if verify && pnet_packet::tcp::ipv6_checksum(&t, &src, &dst) != t.get_checksum() {
                return Some(Parsed::BadChecksum);
            }
            tcp_reply(&t, IpAddr::V6(src), hop, None, ext).map(Parsed::Reply)
        }
        58 => {
            let icmp = Icmpv6Packet::new(payload)?;
            // Destination unreachable (1) and time exceeded (3) quote our packet.
            let ty = icmp.get_icmpv6_type().0;
            if ty != 1 && ty != 3 {
                return None;
            }
            if verify && pnet_packet::icmpv6::checksum(&icmp, &src, &dst) != icmp.get_checksum() {
                return Some(Parsed::BadChecksum);
            }
            let inner = Ipv6Packet::new(payload.get(8..)?)?;
            if inner.get_version() != 6 {
                return None;
            }
            let (inner_next, quoted, _) = skip_v6_extensions(inner.get_next_header().0, payload.get(48..)?)?;
            if inner_next != 6 {
                return None;
            }
            let quoted = quoted_tcp(quoted)?;
            Some(Parsed::Reply(icmp_reply(IpAddr::V6(inner.get_destination()), quoted, hop, None, ty, icmp.get_icmpv6_code().0, IpAddr::V6(src), ext)))
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
        assert_eq!(p.mss, Some(1440), "an IPv6 host announces the MSS of a 1500-byte path");
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
            let syn = SynFields { src: us, dst: target, sport: 41000, dport: 25, seq: 0x0102_0304, ip_id: 0, tsval: 0, flow_label: 0 };
            let n = IcmpError { responder: router, icmp_type: ty, icmp_code: code, ttl: 63, quoted: syn }.emit(&mut b, &LINK).unwrap();
            let p = parse(&b[..n]).unwrap();
            assert_eq!((p.kind, p.target, p.tport, p.our_port, p.ack_or_seq), (ReplyKind::Icmp, target, 25, 41000, 0x0102_0304));
            assert_eq!((p.icmp_type, p.icmp_code, p.responder, p.ttl), (ty, code, router, 63));
            // A frame cut anywhere short of the quoted ports and sequence number names nothing.
            assert!((0..n).all(|k| parse(&b[..k]).is_none()));
            // Nor does a quote whose IP header length or version is not an IP header's (checked
            // with checksums unverified: the structure alone must refuse it).
            let q = ETH_LEN + if us.is_ipv4() { 20 } else { 40 } + 8;
            for bad in if us.is_ipv4() { [0x40, 0x44, 0x65] } else { [0x40, 0x00, 0x70] } {
                let mut c = b;
                c[q] = bad;
                assert!(matches!(parse_frame(&c[..n], false), Parsed::NotReply), "quote starting {:#x}", c[q]);
            }
        }
    }

    #[test]
    fn ipv6_extension_headers_are_walked_and_bad_checksums_caught() {
        let mut b = [0u8; MAX_REPLY_FRAME];
        let host: IpAddr = "2001:db8:101::5".parse().unwrap();
        let us: IpAddr = "2001:db8:0:1::2".parse().unwrap();
        let n = TcpReply::rst(host, us, 25, 40000, 77, 62).emit(&mut b, &LINK).unwrap();
        // Insert an 8-byte destination-options header (next header: TCP) after the IPv6 header.
        let mut f = b[..ETH_LEN + 40].to_vec();
        f.extend_from_slice(&[6, 0, 1, 4, 0, 0, 0, 0]);
        f.extend_from_slice(&b[ETH_LEN + 40..n]);
        f[ETH_LEN + 6] = 60;
        let plen = u16::from_be_bytes([f[ETH_LEN + 4], f[ETH_LEN + 5]]) + 8;
        f[ETH_LEN + 4..ETH_LEN + 6].copy_from_slice(&plen.to_be_bytes());
        let r = parse(&f).expect("a RST behind a destination-options header");
        assert!(r.ext_headers && r.kind == ReplyKind::Rst && r.ack_or_seq == 78);
        // A later fragment carries no TCP header.
        let mut frag = f.clone();
        frag[ETH_LEN + 6] = 44;
        frag[ETH_LEN + 40..ETH_LEN + 48].copy_from_slice(&[6, 0, 0, 8, 0, 0, 0, 1]);
        assert!(parse(&frag).is_none());
        // One flipped bit in the TCP header: a bad checksum, unless the kernel vouches for it.
        let mut bad = b[..n].to_vec();
        bad[n - 3] ^= 1;
        assert!(matches!(parse_frame(&bad, true), Parsed::BadChecksum));
        assert!(matches!(parse_frame(&bad, false), Parsed::Reply(_)));
        let v4: IpAddr = "198.18.0.5".parse().unwrap();
        let n = TcpReply::synack(v4, "192.0.2.2".parse().unwrap(), 25, 40000, 9, 62).emit(&mut b, &LINK).unwrap();
        let mut bad = b[..n].to_vec();
        bad[ETH_LEN + 8] ^= 0x40; // the TTL: the IPv4 header checksum no longer matches
        assert!(matches!(parse_frame(&bad, true), Parsed::BadChecksum));
    }

    #[test]
    fn malformed_tcp_headers_and_later_fragments_are_not_replies() {
        let mut b = [0u8; MAX_REPLY_FRAME];
        let (host, us): (IpAddr, IpAddr) = ("198.18.8.7".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let n = TcpReply::synack(host, us, 25, 40000, 1234, 62).emit(&mut b, &LINK).unwrap();
        assert!(parse(&b[..n]).is_some());
        let doff = ETH_LEN + 20 + 12;
        // Data offset 15 words (60 bytes) on a 40-byte header, and 4 words (16 bytes): refused
        // by structure, checksums unverified.
        for (v, what) in [(0xf0u8, "past the segment"), (0x40, "under 20 bytes")] {
            let mut c = b;
            c[doff] = v | (c[doff] & 0x0f);
            assert!(matches!(parse_frame(&c[..n], false), Parsed::NotReply), "data offset {what}");
        }
        // A fragment at offset 8: its first bytes are not a TCP header.
        let mut c = b;
        c[ETH_LEN + 7] = 1;
        assert!(matches!(parse_frame(&c[..n], false), Parsed::NotReply));
    }
}
