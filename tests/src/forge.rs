//! `lab forge`: forged replies with wrong cookies (SYN-ACK, RST, ICMP admin-prohibited),
//! sent from a lab hosts namespace to the vantage, to prove the crawler's validation drops and
//! counts them. The packets come from the crawler's own builders (`crawler::probe::build`);
//! a raw IPv4 socket sends them, so the kernel routes them like any reply.

use anyhow::{Context, Result};
use crawler::probe::build::{IcmpError, TcpReply};
use crawler::probe::{Link, SynFields, ETH_LEN, MAX_REPLY_FRAME};
use rand::Rng;
use socket2::{Domain, Protocol, Socket, Type};
use std::net::{Ipv4Addr, SocketAddr};

/// Send `count` of each kind; sources are drawn from `hosts`, all to `to`.
pub fn forge(hosts: &[Ipv4Addr], to: Ipv4Addr, count: usize) -> Result<usize> {
    let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(libc::IPPROTO_RAW))).context("raw socket")?;
    let mut rng = rand::rng();
    let link = Link { src_mac: [0; 6], gw_mac: [0; 6] };
    let dst: SocketAddr = (to, 0).into();
    let mut buf = [0u8; MAX_REPLY_FRAME];
    let mut sent = 0;
    for i in 0..count * 3 {
        let from = hosts[rng.random_range(0..hosts.len())];
        let our_port = rng.random_range(32768..61000);
        let n = match i % 3 {
            // A SYN-ACK or RST acknowledging a sequence number we never sent.
            0 => TcpReply::synack(from.into(), to.into(), 25, our_port, rng.random(), 64).emit(&mut buf, &link),
            1 => TcpReply::rst(from.into(), to.into(), 25, our_port, rng.random(), 64).emit(&mut buf, &link),
            // ICMP 3/13 quoting a SYN "we" never sent (wrong sequence number).
            _ => {
                let quoted = SynFields { src: to.into(), dst: from.into(), sport: our_port, dport: 25, seq: rng.random(), ip_id: 0, tsval: 0 };
                IcmpError { responder: from.into(), icmp_type: 3, icmp_code: 13, ttl: 64, quoted }.emit(&mut buf, &link)
            }
        }
        .context("building a forged reply")?;
        s.send_to(&buf[ETH_LEN..n], &dst.into()).context("sending a forged reply")?;
        sent += 1;
    }
    Ok(sent)
}
