//! `lab forge`: forged replies with wrong cookies (SYN-ACK, RST, ICMP admin-prohibited),
//! sent from a lab hosts namespace to the vantage, to prove the crawler's validation
//! drops and counts them. Raw IPv4 socket: the kernel routes them like any reply.

use anyhow::{Context, Result};
use pnet_packet::icmp::{self, MutableIcmpPacket};
use pnet_packet::ip::IpNextHeaderProtocols;
use pnet_packet::ipv4::{self, MutableIpv4Packet};
use pnet_packet::tcp::{self, MutableTcpPacket, TcpFlags};
use rand::Rng;
use socket2::{Domain, Protocol, Socket, Type};
use std::net::{Ipv4Addr, SocketAddr};

fn ip_header(buf: &mut [u8], src: Ipv4Addr, dst: Ipv4Addr, proto: pnet_packet::ip::IpNextHeaderProtocol, len: usize) {
    let mut ip = MutableIpv4Packet::new(buf).unwrap();
    ip.set_version(4);
    ip.set_header_length(5);
    ip.set_total_length(len as u16);
    ip.set_ttl(64);
    ip.set_next_level_protocol(proto);
    ip.set_source(src);
    ip.set_destination(dst);
    let c = ipv4::checksum(&ip.to_immutable());
    ip.set_checksum(c);
}

/// Send `count` of each kind; sources are drawn from `hosts`, all to `to`.
pub fn forge(hosts: &[Ipv4Addr], to: Ipv4Addr, count: usize) -> Result<usize> {
    let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(libc::IPPROTO_RAW))).context("raw socket")?;
    let mut rng = rand::rng();
    let mut sent = 0;
    let dst: SocketAddr = (to, 0).into();
    for i in 0..count * 3 {
        let from = hosts[rng.random_range(0..hosts.len())];
        let mut buf = [0u8; 68];
        let n = match i % 3 {
            0 | 1 => {
                let len = 40;
                {
                    let mut t = MutableTcpPacket::new(&mut buf[20..40]).unwrap();
                    t.set_source(25);
                    t.set_destination(rng.random_range(32768..61000));
                    t.set_sequence(rng.random());
                    t.set_acknowledgement(rng.random());
                    t.set_data_offset(5);
                    t.set_flags(if i % 3 == 0 { TcpFlags::SYN | TcpFlags::ACK } else { TcpFlags::RST | TcpFlags::ACK });
                    t.set_window(65535);
                    let c = tcp::ipv4_checksum(&t.to_immutable(), &from, &to);
                    t.set_checksum(c);
                }
                ip_header(&mut buf[..len], from, to, IpNextHeaderProtocols::Tcp, len);
                len
            }
            _ => {
                // ICMP 3/13 quoting a SYN "we" never sent (wrong sequence number).
                let len = 20 + 8 + 20 + 8;
                ip_header(&mut buf[28..48], to, from, IpNextHeaderProtocols::Tcp, 40);
                let q = &mut buf[48..56];
                q[0..2].copy_from_slice(&rng.random_range(32768u16..61000).to_be_bytes());
                q[2..4].copy_from_slice(&25u16.to_be_bytes());
                q[4..8].copy_from_slice(&rng.random::<u32>().to_be_bytes());
                {
                    let mut ic = MutableIcmpPacket::new(&mut buf[20..len]).unwrap();
                    ic.set_icmp_type(icmp::IcmpTypes::DestinationUnreachable);
                    ic.set_icmp_code(icmp::IcmpCode(13));
                    let c = icmp::checksum(&ic.to_immutable());
                    ic.set_checksum(c);
                }
                ip_header(&mut buf[..len], from, to, IpNextHeaderProtocols::Icmp, len);
                len
            }
        };
        s.send_to(&buf[..n], &dst.into()).context("sending a forged reply")?;
        sent += 1;
    }
    Ok(sent)
}
