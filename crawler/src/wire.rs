//! Packets on the wire: SYN frames built into caller-owned buffers and replies parsed into a
//! fixed-size `Reply`, both through `pnet_packet`'s zero-copy views. Nothing here allocates:
//! it runs once per probe and once per received frame.
//!
//! SYNs carry the options a Linux client sends (MSS, SACK-permitted, timestamps, window
//! scale): ZMap found that bare SYNs are dropped by some hosts, which a blocking study would
//! misread as filtering.

use pnet_packet::ethernet::{EtherTypes, EthernetPacket, MutableEthernetPacket};
use pnet_packet::icmp::IcmpPacket;
use pnet_packet::icmpv6::Icmpv6Packet;
use pnet_packet::ip::IpNextHeaderProtocols;
use pnet_packet::ipv4::{self, Ipv4Packet, MutableIpv4Packet};
use pnet_packet::ipv6::{Ipv6Packet, MutableIpv6Packet};
use pnet_packet::tcp::{self, MutableTcpPacket, TcpFlags, TcpOption, TcpOptionNumbers, TcpPacket};
use pnet_packet::{MutablePacket, Packet};
use std::net::IpAddr;
#[cfg(test)]
use std::net::{Ipv4Addr, Ipv6Addr};

pub const ETH_LEN: usize = 14;
pub const TCP_LEN: usize = 40; // 20 bytes header + 20 bytes options
pub const SYN_V4_LEN: usize = ETH_LEN + 20 + TCP_LEN;
pub const SYN_V6_LEN: usize = ETH_LEN + 40 + TCP_LEN;
pub const MAX_FRAME: usize = SYN_V6_LEN;
pub const INITIAL_TTL: u8 = 64;

/// Link-level addressing for the frames we send.
#[derive(Debug, Clone, Copy)]
pub struct Link {
    pub src_mac: [u8; 6],
    pub gw_mac: [u8; 6],
}

/// Prepare `buf` as a SYN template for one family; per probe only the fields that change are
/// rewritten by [`fill_syn`].
pub fn syn_template(buf: &mut [u8; MAX_FRAME], link: &Link, src: IpAddr) -> usize {
    buf.fill(0);
    let len = if src.is_ipv4() { SYN_V4_LEN } else { SYN_V6_LEN };
    {
        let mut eth = MutableEthernetPacket::new(&mut buf[..]).unwrap();
        eth.set_source(link.src_mac.into());
        eth.set_destination(link.gw_mac.into());
        eth.set_ethertype(if src.is_ipv4() { EtherTypes::Ipv4 } else { EtherTypes::Ipv6 });
    }
    let ip_len = match src {
        IpAddr::V4(s) => {
            let mut ip = MutableIpv4Packet::new(&mut buf[ETH_LEN..len]).unwrap();
            ip.set_version(4);
            ip.set_header_length(5);
            ip.set_total_length((20 + TCP_LEN) as u16);
            ip.set_ttl(INITIAL_TTL);
            ip.set_flags(ipv4::Ipv4Flags::DontFragment);
            ip.set_next_level_protocol(IpNextHeaderProtocols::Tcp);
            ip.set_source(s);
            20
        }
        IpAddr::V6(s) => {
            let mut ip = MutableIpv6Packet::new(&mut buf[ETH_LEN..len]).unwrap();
            ip.set_version(6);
            ip.set_payload_length(TCP_LEN as u16);
            ip.set_next_header(IpNextHeaderProtocols::Tcp);
            ip.set_hop_limit(INITIAL_TTL);
            ip.set_source(s);
            40
        }
    };
    let mut t = MutableTcpPacket::new(&mut buf[ETH_LEN + ip_len..len]).unwrap();
    t.set_data_offset((TCP_LEN / 4) as u8);
    t.set_flags(TcpFlags::SYN);
    t.set_window(64240);
    t.set_options(&[TcpOption::mss(1460), TcpOption::sack_perm(), TcpOption::timestamp(0, 0), TcpOption::nop(), TcpOption::wscale(7)]);
    len
}

/// Per-probe fields of a SYN.
#[derive(Debug, Clone, Copy)]
pub struct SynFields {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ip_id: u16,
    pub tsval: u32,
}

/// Rewrite a template from [`syn_template`] for one probe, with both checksums.
pub fn fill_syn(buf: &mut [u8; MAX_FRAME], f: &SynFields) -> usize {
    let (ip_len, len) = if f.src.is_ipv4() { (20, SYN_V4_LEN) } else { (40, SYN_V6_LEN) };
    {
        let mut t = MutableTcpPacket::new(&mut buf[ETH_LEN + ip_len..len]).unwrap();
        t.set_source(f.sport);
        t.set_destination(f.dport);
        t.set_sequence(f.seq);
        // Timestamp option value sits at a fixed offset: MSS(4) SACKP(2) TS kind+len(2).
        let o = 20 + 4 + 2 + 2;
        t.packet_mut()[o..o + 4].copy_from_slice(&f.tsval.to_be_bytes());
        t.set_checksum(0);
    }
    match (f.src, f.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let sum = tcp::ipv4_checksum(&TcpPacket::new(&buf[ETH_LEN + 20..len]).unwrap(), &s, &d);
            MutableTcpPacket::new(&mut buf[ETH_LEN + 20..len]).unwrap().set_checksum(sum);
            let mut ip = MutableIpv4Packet::new(&mut buf[ETH_LEN..len]).unwrap();
            ip.set_destination(d);
            ip.set_identification(f.ip_id);
            ip.set_checksum(0);
            let c = ipv4::checksum(&ip.to_immutable());
            ip.set_checksum(c);
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            MutableIpv6Packet::new(&mut buf[ETH_LEN..len]).unwrap().set_destination(d);
            let sum = tcp::ipv6_checksum(&TcpPacket::new(&buf[ETH_LEN + 40..len]).unwrap(), &s, &d);
            MutableTcpPacket::new(&mut buf[ETH_LEN + 40..len]).unwrap().set_checksum(sum);
        }
        _ => unreachable!("source and destination families differ"),
    }
    len
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyKind {
    SynAck,
    Rst,
    Icmp,
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
        if (options.len as usize) < options.kinds.len() {
            options.kinds[options.len as usize] = k.0;
            options.len += 1;
        }
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
            if total < hl {
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
                    if inner.get_next_level_protocol() != IpNextHeaderProtocols::Tcp {
                        return None;
                    }
                    let ihl = inner.get_header_length() as usize * 4;
                    let quoted = quoted_tcp(payload.get(8 + ihl..)?)?;
                    Some(icmp_reply(IpAddr::V4(inner.get_destination()), quoted, ip.get_ttl(), Some(ip.get_identification()), ty, icmp.get_icmp_code().0, src))
                }
                _ => None,
            }
        }
        EtherTypes::Ipv6 => {
            let ip = Ipv6Packet::new(&frame[ETH_LEN..])?;
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
                    if inner.get_next_header() != IpNextHeaderProtocols::Tcp {
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

/// Build a reply frame as a host would send it (tests).
#[cfg(test)]
#[allow(clippy::too_many_arguments)]
pub fn emit_tcp_reply(buf: &mut [u8; MAX_FRAME], link: &Link, from: IpAddr, to: IpAddr, sport: u16, dport: u16, seq: u32, ack: u32, flags: u8, ttl: u8) -> usize {
    let len = syn_template(buf, link, from);
    let n = fill_syn(buf, &SynFields { src: from, dst: to, sport, dport, seq, ip_id: 1, tsval: 0 });
    let ip_len = if from.is_ipv4() { 20 } else { 40 };
    {
        let mut t = MutableTcpPacket::new(&mut buf[ETH_LEN + ip_len..len]).unwrap();
        t.set_flags(flags);
        t.set_acknowledgement(ack);
        t.set_checksum(0);
    }
    match (from, to) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let sum = tcp::ipv4_checksum(&TcpPacket::new(&buf[ETH_LEN + 20..len]).unwrap(), &s, &d);
            MutableTcpPacket::new(&mut buf[ETH_LEN + 20..len]).unwrap().set_checksum(sum);
            let mut ip = MutableIpv4Packet::new(&mut buf[ETH_LEN..len]).unwrap();
            ip.set_ttl(ttl);
            ip.set_checksum(0);
            let c = ipv4::checksum(&ip.to_immutable());
            ip.set_checksum(c);
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let sum = tcp::ipv6_checksum(&TcpPacket::new(&buf[ETH_LEN + 40..len]).unwrap(), &s, &d);
            MutableTcpPacket::new(&mut buf[ETH_LEN + 40..len]).unwrap().set_checksum(sum);
            MutableIpv6Packet::new(&mut buf[ETH_LEN..len]).unwrap().set_hop_limit(ttl);
        }
        _ => unreachable!(),
    }
    n
}

#[cfg(test)]
pub fn v4(a: IpAddr) -> Option<Ipv4Addr> {
    if let IpAddr::V4(v) = a { Some(v) } else { None }
}
#[cfg(test)]
pub fn v6(a: IpAddr) -> Option<Ipv6Addr> {
    if let IpAddr::V6(v) = a { Some(v) } else { None }
}

#[cfg(test)]
mod tests {
    use super::*;
    const LINK: Link = Link { src_mac: [2, 0, 0, 0, 0, 1], gw_mac: [2, 0, 0, 0, 0, 2] };

    #[test]
    fn syn_v4_roundtrip_and_checksums() {
        let mut b = [0u8; MAX_FRAME];
        let src: IpAddr = "192.0.2.2".parse().unwrap();
        let dst: IpAddr = "198.18.0.9".parse().unwrap();
        syn_template(&mut b, &LINK, src);
        let n = fill_syn(&mut b, &SynFields { src, dst, sport: 40000, dport: 25, seq: 0xdead_beef, ip_id: 7, tsval: 99 });
        assert_eq!(n, SYN_V4_LEN);
        let ip = Ipv4Packet::new(&b[ETH_LEN..n]).unwrap();
        assert_eq!(ip.get_checksum(), ipv4::checksum(&ip));
        let t = TcpPacket::new(&b[ETH_LEN + 20..n]).unwrap();
        assert_eq!(t.get_checksum(), tcp::ipv4_checksum(&t, &v4(src).unwrap(), &v4(dst).unwrap()));
        let kinds: Vec<u8> = t.get_options_iter().map(|o| o.get_number().0).collect();
        assert_eq!(kinds, vec![2, 4, 8, 1, 3]);
        assert_eq!((t.get_sequence(), t.get_flags()), (0xdead_beef, TcpFlags::SYN));
    }

    #[test]
    fn parse_synack_and_rst_v6() {
        let mut b = [0u8; MAX_FRAME];
        let host: IpAddr = "2001:db8:101::5".parse().unwrap();
        let us: IpAddr = "2001:db8:0:1::2".parse().unwrap();
        let n = emit_tcp_reply(&mut b, &LINK, host, us, 25, 40000, 1, 1235, TcpFlags::SYN | TcpFlags::ACK, 62);
        let r = parse(&b[..n]).unwrap();
        assert_eq!((r.kind, r.target, r.tport, r.our_port, r.ack_or_seq, r.ttl), (ReplyKind::SynAck, host, 25, 40000, 1235, 62));
        assert_eq!(r.mss, Some(1460));
        let n = emit_tcp_reply(&mut b, &LINK, host, us, 25, 40000, 0, 1235, TcpFlags::RST | TcpFlags::ACK, 63);
        assert_eq!(parse(&b[..n]).unwrap().kind, ReplyKind::Rst);
        assert!(parse(&b[..10]).is_none());
    }
}
