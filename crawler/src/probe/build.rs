//! Replies as the other side sends them — a host's SYN-ACK or RST, a middlebox's forged RST,
//! a router's ICMP error quoting our SYN — written into a caller's buffer (emit), the
//! counterpart of [`super::reply::parse`]. The crawler itself never sends these: the tests
//! and the lab's forger use them to make replies (valid and forged) with the same code that
//! defines what a reply is.

use super::options::{syn_options, SynStyle, SYN_OPTIONS_LEN};
use super::syn::{fill_syn, syn_template, SynFields};
use super::{Link, ETH_LEN, MAX_FRAME};
use pnet_packet::ethernet::{EtherTypes, MutableEthernetPacket};
use pnet_packet::icmp::{self, IcmpPacket};
use pnet_packet::icmpv6::{self, Icmpv6Packet};
use pnet_packet::ip::{IpNextHeaderProtocol, IpNextHeaderProtocols};
use pnet_packet::ipv4::{self, MutableIpv4Packet};
use pnet_packet::ipv6::MutableIpv6Packet;
use pnet_packet::tcp::{self, MutableTcpPacket, TcpFlags, TcpPacket};
use std::net::IpAddr;

/// Ethernet and IP headers for a packet of `payload` bytes; returns where the payload starts.
#[allow(clippy::too_many_arguments)]
fn emit_ip(buf: &mut [u8], link: &Link, src: IpAddr, dst: IpAddr, proto: IpNextHeaderProtocol, payload: usize, ttl: u8, ip_id: u16) -> Option<usize> {
    let hl = if src.is_ipv4() { 20 } else { 40 };
    let end = ETH_LEN + hl + payload;
    buf.get_mut(..end)?.fill(0);
    let mut eth = MutableEthernetPacket::new(&mut buf[..end])?;
    eth.set_source(link.src_mac.into());
    eth.set_destination(link.gw_mac.into());
    eth.set_ethertype(if src.is_ipv4() { EtherTypes::Ipv4 } else { EtherTypes::Ipv6 });
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut ip = MutableIpv4Packet::new(&mut buf[ETH_LEN..end])?;
            ip.set_version(4);
            ip.set_header_length(5);
            ip.set_total_length((hl + payload) as u16);
            ip.set_identification(ip_id);
            ip.set_ttl(ttl);
            ip.set_next_level_protocol(proto);
            ip.set_source(s);
            ip.set_destination(d);
            let c = ipv4::checksum(&ip.to_immutable());
            ip.set_checksum(c);
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let mut ip = MutableIpv6Packet::new(&mut buf[ETH_LEN..end])?;
            ip.set_version(6);
            ip.set_payload_length(payload as u16);
            ip.set_next_header(proto);
            ip.set_hop_limit(ttl);
            ip.set_source(s);
            ip.set_destination(d);
        }
        _ => return None,
    }
    Some(ETH_LEN + hl)
}

/// A TCP answer to a SYN: a SYN-ACK (with a Linux host's options) or an RST.
#[derive(Debug, Clone, Copy)]
pub struct TcpReply {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub ttl: u8,
    pub ip_id: u16,
    pub window: u16,
}

impl TcpReply {
    /// The SYN-ACK a listening `host` sends to our SYN (`our_seq`) from `us:our_port`.
    pub fn synack(host: IpAddr, us: IpAddr, host_port: u16, our_port: u16, our_seq: u32, ttl: u8) -> TcpReply {
        TcpReply { src: host, dst: us, sport: host_port, dport: our_port, seq: 0x2545_0001, ack: our_seq.wrapping_add(1), flags: TcpFlags::SYN | TcpFlags::ACK, ttl, ip_id: 0, window: 65160 }
    }

    /// The RST|ACK a host's kernel sends for a closed port (or a middlebox forges).
    pub fn rst(host: IpAddr, us: IpAddr, host_port: u16, our_port: u16, our_seq: u32, ttl: u8) -> TcpReply {
        TcpReply { src: host, dst: us, sport: host_port, dport: our_port, seq: 0, ack: our_seq.wrapping_add(1), flags: TcpFlags::RST | TcpFlags::ACK, ttl, ip_id: 0, window: 0 }
    }

    /// Write the frame into `buf`; its length, or `None` if `buf` is too small or the
    /// addresses' families differ.
    pub fn emit(&self, buf: &mut [u8], link: &Link) -> Option<usize> {
        let opts = if self.flags & TcpFlags::SYN != 0 { SYN_OPTIONS_LEN } else { 0 };
        let tcp_len = 20 + opts;
        let off = emit_ip(buf, link, self.src, self.dst, IpNextHeaderProtocols::Tcp, tcp_len, self.ttl, self.ip_id)?;
        let end = off + tcp_len;
        {
            let mut t = MutableTcpPacket::new(&mut buf[off..end])?;
            t.set_source(self.sport);
            t.set_destination(self.dport);
            t.set_sequence(self.seq);
            t.set_acknowledgement(self.ack);
            t.set_data_offset((tcp_len / 4) as u8);
            t.set_flags(self.flags);
            t.set_window(self.window);
            if opts > 0 {
                t.set_options(&syn_options(SynStyle::linux(self.src.is_ipv6(), 6 << 20).mss, 7));
            }
        }
        let t = TcpPacket::new(&buf[off..end])?;
        let sum = match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => tcp::ipv4_checksum(&t, &s, &d),
            (IpAddr::V6(s), IpAddr::V6(d)) => tcp::ipv6_checksum(&t, &s, &d),
            _ => return None,
        };
        MutableTcpPacket::new(&mut buf[off..end])?.set_checksum(sum);
        Some(end)
    }
}

/// An ICMP error (destination unreachable, time exceeded) from `responder`, quoting our SYN
/// `quoted` as it left: its IP header and the first 8 bytes of TCP (RFC 792's minimum; Linux
/// routers quote more, and the parser needs no more than this). It goes to the SYN's source.
#[derive(Debug, Clone, Copy)]
pub struct IcmpError {
    pub responder: IpAddr,
    pub icmp_type: u8,
    pub icmp_code: u8,
    pub ttl: u8,
    pub quoted: SynFields,
}

impl IcmpError {
    pub fn emit(&self, buf: &mut [u8], link: &Link) -> Option<usize> {
        let q = &self.quoted;
        let mut syn = [0u8; MAX_FRAME];
        syn_template(&mut syn, link, q.src, &SynStyle::linux(q.src.is_ipv6(), 6 << 20));
        fill_syn(&mut syn, q);
        let quote = &syn[ETH_LEN..ETH_LEN + if q.src.is_ipv4() { 20 } else { 40 } + 8];
        let len = 8 + quote.len();
        let proto = if q.src.is_ipv4() { IpNextHeaderProtocols::Icmp } else { IpNextHeaderProtocols::Icmpv6 };
        let off = emit_ip(buf, link, self.responder, q.src, proto, len, self.ttl, 0)?;
        let m = &mut buf[off..off + len];
        m[0] = self.icmp_type;
        m[1] = self.icmp_code;
        m[8..].copy_from_slice(quote);
        let sum = match (self.responder, q.src) {
            (IpAddr::V4(_), IpAddr::V4(_)) => icmp::checksum(&IcmpPacket::new(m)?),
            (IpAddr::V6(r), IpAddr::V6(to)) => icmpv6::checksum(&Icmpv6Packet::new(m)?, &r, &to),
            _ => return None,
        };
        m[2..4].copy_from_slice(&sum.to_be_bytes());
        Some(off + len)
    }
}
