//! The SYN a probe sends: a template per address family (Ethernet, IP and TCP headers with
//! the constant fields and options set once), rewritten per probe with the fields that change
//! and both checksums — the only per-probe packet work on the send path.

use super::options::{syn_options, SynStyle, TSVAL_OFFSET};
use super::{Link, ETH_LEN, INITIAL_TTL, MAX_FRAME, SYN_V4_LEN, SYN_V6_LEN, TCP_LEN};
use pnet_packet::ethernet::{EtherTypes, MutableEthernetPacket};
use pnet_packet::ip::IpNextHeaderProtocols;
use pnet_packet::ipv4::{self, MutableIpv4Packet};
use pnet_packet::ipv6::MutableIpv6Packet;
use pnet_packet::tcp::{self, MutableTcpPacket, TcpFlags, TcpPacket};
use pnet_packet::MutablePacket;
use std::net::IpAddr;

/// Prepare `buf` as a SYN template for one family, in `style`; per probe only the fields that
/// change are rewritten by [`fill_syn`].
pub fn syn_template(buf: &mut [u8; MAX_FRAME], link: &Link, src: IpAddr, style: &SynStyle) -> usize {
    buf.fill(0);
    let len = if src.is_ipv4() { SYN_V4_LEN } else { SYN_V6_LEN };
    {
        let mut eth = MutableEthernetPacket::new(&mut buf[..]).expect("MAX_FRAME holds an Ethernet header");
        eth.set_source(link.src_mac.into());
        eth.set_destination(link.gw_mac.into());
        eth.set_ethertype(if src.is_ipv4() { EtherTypes::Ipv4 } else { EtherTypes::Ipv6 });
    }
    let ip_len = match src {
        IpAddr::V4(s) => {
            let mut ip = MutableIpv4Packet::new(&mut buf[ETH_LEN..len]).expect("sized");
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
            let mut ip = MutableIpv6Packet::new(&mut buf[ETH_LEN..len]).expect("sized");
            ip.set_version(6);
            ip.set_payload_length(TCP_LEN as u16);
            ip.set_next_header(IpNextHeaderProtocols::Tcp);
            ip.set_hop_limit(INITIAL_TTL);
            ip.set_source(s);
            40
        }
    };
    let mut t = MutableTcpPacket::new(&mut buf[ETH_LEN + ip_len..len]).expect("sized");
    t.set_data_offset((TCP_LEN / 4) as u8);
    t.set_flags(TcpFlags::SYN);
    t.set_window(style.window);
    t.set_options(&syn_options(style.mss, style.wscale));
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
    /// IPv4 identification (Linux: random per connection, for a SYN with DF).
    pub ip_id: u16,
    pub tsval: u32,
    /// IPv6 flow label, 20 bits (Linux: a random one per connection).
    pub flow_label: u32,
}

/// Rewrite a template from [`syn_template`] for one probe, with both checksums. Source and
/// destination must be of the template's family.
pub fn fill_syn(buf: &mut [u8; MAX_FRAME], f: &SynFields) -> usize {
    let (ip_len, len) = if f.src.is_ipv4() { (20, SYN_V4_LEN) } else { (40, SYN_V6_LEN) };
    {
        let mut t = MutableTcpPacket::new(&mut buf[ETH_LEN + ip_len..len]).expect("sized");
        t.set_source(f.sport);
        t.set_destination(f.dport);
        t.set_sequence(f.seq);
        t.packet_mut()[TSVAL_OFFSET..TSVAL_OFFSET + 4].copy_from_slice(&f.tsval.to_be_bytes());
        t.set_checksum(0);
    }
    match (f.src, f.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let sum = tcp::ipv4_checksum(&TcpPacket::new(&buf[ETH_LEN + 20..len]).expect("sized"), &s, &d);
            MutableTcpPacket::new(&mut buf[ETH_LEN + 20..len]).expect("sized").set_checksum(sum);
            let mut ip = MutableIpv4Packet::new(&mut buf[ETH_LEN..len]).expect("sized");
            ip.set_destination(d);
            ip.set_identification(f.ip_id);
            ip.set_checksum(0);
            let c = ipv4::checksum(&ip.to_immutable());
            ip.set_checksum(c);
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let mut ip = MutableIpv6Packet::new(&mut buf[ETH_LEN..len]).expect("sized");
            ip.set_destination(d);
            ip.set_flow_label(f.flow_label & 0xf_ffff);
            let sum = tcp::ipv6_checksum(&TcpPacket::new(&buf[ETH_LEN + 40..len]).expect("sized"), &s, &d);
            MutableTcpPacket::new(&mut buf[ETH_LEN + 40..len]).expect("sized").set_checksum(sum);
        }
        _ => unreachable!("source and destination families differ"),
    }
    len
}

/// A SYN as seen on the wire (the parse half of [`syn_template`]/[`fill_syn`]): what the lab's
/// forger answers, and what a test compares with the SYN of the host's own TCP stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynView {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ttl: u8,
    /// IPv4 identification and Don't Fragment flag (None for IPv6).
    pub ip_id: Option<u16>,
    pub dont_fragment: bool,
    /// IPv6 flow label (None for IPv4).
    pub flow_label: Option<u32>,
    pub window: u16,
    /// TCP option kinds in order, and the values of MSS, window scale and timestamps.
    pub options: Vec<u8>,
    pub mss: Option<u16>,
    pub wscale: Option<u8>,
    pub tsval: Option<u32>,
}

/// Parse an Ethernet frame holding a TCP SYN (without ACK); `None` for anything else.
pub fn parse_syn(frame: &[u8]) -> Option<SynView> {
    use pnet_packet::ethernet::EthernetPacket;
    use pnet_packet::ipv4::Ipv4Packet;
    use pnet_packet::ipv6::Ipv6Packet;
    use pnet_packet::tcp::TcpOptionNumbers;
    use pnet_packet::Packet;
    let eth = EthernetPacket::new(frame)?;
    let (src, dst, ttl, ip_id, df, flow, tcp) = match eth.get_ethertype() {
        EtherTypes::Ipv4 => {
            let ip = Ipv4Packet::new(frame.get(ETH_LEN..)?)?;
            if ip.get_next_level_protocol() != IpNextHeaderProtocols::Tcp || ip.get_header_length() < 5 {
                return None;
            }
            let body = frame.get(ETH_LEN + ip.get_header_length() as usize * 4..)?;
            (IpAddr::V4(ip.get_source()), IpAddr::V4(ip.get_destination()), ip.get_ttl(), Some(ip.get_identification()), ip.get_flags() & ipv4::Ipv4Flags::DontFragment != 0, None, TcpPacket::new(body)?)
        }
        EtherTypes::Ipv6 => {
            let ip = Ipv6Packet::new(frame.get(ETH_LEN..)?)?;
            if ip.get_next_header() != IpNextHeaderProtocols::Tcp {
                return None;
            }
            (IpAddr::V6(ip.get_source()), IpAddr::V6(ip.get_destination()), ip.get_hop_limit(), None, false, Some(ip.get_flow_label()), TcpPacket::new(frame.get(ETH_LEN + 40..)?)?)
        }
        _ => return None,
    };
    if tcp.get_flags() & (TcpFlags::SYN | TcpFlags::ACK | TcpFlags::RST) != TcpFlags::SYN {
        return None;
    }
    let (mut options, mut mss, mut wscale, mut tsval) = (vec![], None, None, None);
    for o in tcp.get_options_iter() {
        let k = o.get_number();
        options.push(k.0);
        let p = o.payload();
        match k {
            TcpOptionNumbers::MSS if p.len() >= 2 => mss = Some(u16::from_be_bytes([p[0], p[1]])),
            TcpOptionNumbers::WSCALE if !p.is_empty() => wscale = Some(p[0]),
            TcpOptionNumbers::TIMESTAMPS if p.len() >= 4 => tsval = Some(u32::from_be_bytes([p[0], p[1], p[2], p[3]])),
            _ => {}
        }
    }
    Some(SynView {
        src_mac: eth.get_source().octets(),
        dst_mac: eth.get_destination().octets(),
        src,
        dst,
        sport: tcp.get_source(),
        dport: tcp.get_destination(),
        seq: tcp.get_sequence(),
        ttl,
        ip_id,
        dont_fragment: df,
        flow_label: flow,
        window: tcp.get_window(),
        options,
        mss,
        wscale,
        tsval,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pnet_packet::ipv4::Ipv4Packet;
    use pnet_packet::Packet;
    const LINK: Link = Link { src_mac: [2, 0, 0, 0, 0, 1], gw_mac: [2, 0, 0, 0, 0, 2] };

    #[test]
    fn syn_v4_roundtrip_and_checksums() {
        let mut b = [0u8; MAX_FRAME];
        let (src, dst) = (std::net::Ipv4Addr::new(192, 0, 2, 2), std::net::Ipv4Addr::new(198, 18, 0, 9));
        syn_template(&mut b, &LINK, src.into(), &SynStyle::linux(false, 6 << 20));
        let n = fill_syn(&mut b, &SynFields { src: src.into(), dst: dst.into(), sport: 40000, dport: 25, seq: 0xdead_beef, ip_id: 7, tsval: 99, flow_label: 0 });
        assert_eq!(n, SYN_V4_LEN);
        let ip = Ipv4Packet::new(&b[ETH_LEN..n]).unwrap();
        assert_eq!(ip.get_checksum(), ipv4::checksum(&ip));
        let t = TcpPacket::new(ip.payload()).unwrap();
        assert_eq!(t.get_checksum(), tcp::ipv4_checksum(&t, &src, &dst));
        let kinds: Vec<u8> = t.get_options_iter().map(|o| o.get_number().0).collect();
        assert_eq!(kinds, vec![2, 4, 8, 1, 3]);
        assert_eq!((t.get_sequence(), t.get_flags()), (0xdead_beef, TcpFlags::SYN));
        let v = parse_syn(&b[..n]).unwrap();
        assert_eq!((v.src, v.dst, v.sport, v.dport, v.seq, v.ip_id, v.dont_fragment), (src.into(), dst.into(), 40000, 25, 0xdead_beef, Some(7), true));
        assert_eq!((v.options, v.mss, v.wscale, v.tsval, v.ttl, v.window), (vec![2, 4, 8, 1, 3], Some(1460), Some(7), Some(99), 64, 64240));
    }
}
