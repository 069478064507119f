//! `lab forge`: forged replies with wrong cookies (SYN-ACK, RST, ICMP admin-prohibited),
//! sent from a lab hosts namespace to the vantage, to prove the crawler's validation drops and
//! counts them. The packets come from the crawler's own builders (`crawler::probe::build`);
//! a raw IPv4 socket sends them, so the kernel routes them like any reply. `answer_syns` forges
//! harder: it sees the crawler's real SYNs and answers them almost right.

use anyhow::{Context, Result};
use crawler::probe::build::{IcmpError, TcpReply};
use crawler::probe::{Link, SynFields, ETH_LEN, MAX_REPLY_FRAME};
use rand::Rng;
use socket2::{Domain, Protocol, Socket, Type};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

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
                let quoted = SynFields { src: to.into(), dst: from.into(), sport: our_port, dport: 25, seq: rng.random(), ip_id: 0, tsval: 0, flow_label: 0 };
                IcmpError { responder: from.into(), icmp_type: 3, icmp_code: 13, ttl: 64, quoted }.emit(&mut buf, &link)
            }
        }
        .context("building a forged reply")?;
        s.send_to(&buf[ETH_LEN..n], &dst.into()).context("sending a forged reply")?;
        sent += 1;
    }
    Ok(sent)
}

/// What `answer_syns` sent, by kind.
#[derive(Debug, Default, serde::Serialize)]
pub struct Forged {
    /// A RST acknowledging seq+2 and a SYN-ACK acknowledging seq: off by one.
    pub near_miss: usize,
    /// A SYN-ACK that acknowledges the SYN correctly, sent from another host of the provider.
    pub other_target: usize,
    /// The correct SYN-ACK for a dead host's SYN, sent after the crawler reused its send-log slot.
    pub late: usize,
    /// Of all the above, IPv6 ones.
    pub ipv6: usize,
}

impl Forged {
    pub fn total(&self) -> usize {
        self.near_miss + self.other_target + self.late
    }
}

/// A raw AF_PACKET socket on `iface` with a short receive timeout.
fn packet_socket(iface: &str) -> Result<(std::os::fd::OwnedFd, i32)> {
    use std::os::fd::{AsRawFd, FromRawFd};
    let name = std::ffi::CString::new(iface)?;
    // SAFETY: plain libc calls with valid arguments; the fd is owned at once.
    unsafe {
        let ifindex = libc::if_nametoindex(name.as_ptr()) as i32;
        anyhow::ensure!(ifindex > 0, "no interface {iface}");
        let raw = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, (libc::ETH_P_ALL as u16).to_be() as i32);
        anyhow::ensure!(raw >= 0, "packet socket: {}", std::io::Error::last_os_error());
        let fd = std::os::fd::OwnedFd::from_raw_fd(raw);
        let mut sa: libc::sockaddr_ll = std::mem::zeroed();
        sa.sll_family = libc::AF_PACKET as u16;
        sa.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        sa.sll_ifindex = ifindex;
        anyhow::ensure!(libc::bind(fd.as_raw_fd(), &sa as *const _ as *const libc::sockaddr, std::mem::size_of::<libc::sockaddr_ll>() as u32) == 0, "bind {iface}");
        let tv = libc::timeval { tv_sec: 0, tv_usec: 50_000 };
        libc::setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv as *const _ as *const libc::c_void, std::mem::size_of::<libc::timeval>() as u32);
        Ok((fd, ifindex))
    }
}

/// Watch the SYNs arriving on `iface` (a hosts namespace's uplink) for `seconds` and answer
/// the first SYN to each (host, port) with forgeries the crawler must reject: near misses, a
/// correct acknowledgment from another host, and — for a `dead` host, which never answers — the
/// correct SYN-ACK `late_ms` later, after the crawler has reused the SYN's send-log slot.
pub fn answer_syns(iface: &str, hosts: &[IpAddr], dead: &std::collections::HashSet<IpAddr>, seconds: f64, late_ms: u64) -> Result<Forged> {
    use crawler::probe::parse_syn;
    use std::os::fd::AsRawFd;
    let (fd, ifindex) = packet_socket(iface)?;
    let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sa.sll_family = libc::AF_PACKET as u16;
    sa.sll_ifindex = ifindex;
    sa.sll_halen = 6;
    let send = |frame: &[u8]| {
        // SAFETY: a valid buffer and address for the call's duration.
        unsafe { libc::sendto(fd.as_raw_fd(), frame.as_ptr() as *const libc::c_void, frame.len(), 0, &sa as *const _ as *const libc::sockaddr, std::mem::size_of::<libc::sockaddr_ll>() as u32) }
    };
    let hosts_set: std::collections::HashSet<IpAddr> = hosts.iter().copied().collect();
    let mut seen = std::collections::HashSet::new();
    let mut late: Vec<(std::time::Instant, Vec<u8>)> = Vec::new();
    let mut f = Forged::default();
    let (start, mut buf, mut out) = (std::time::Instant::now(), [0u8; 2048], [0u8; MAX_REPLY_FRAME]);
    while start.elapsed().as_secs_f64() < seconds || !late.is_empty() {
        while let Some(i) = late.iter().position(|(due, _)| *due <= std::time::Instant::now()) {
            let (_, frame) = late.swap_remove(i);
            send(&frame);
            f.late += 1;
        }
        // SAFETY: reading into a local buffer of the length given.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr() as *mut libc::c_void, buf.len(), 0) };
        if n <= 0 || start.elapsed().as_secs_f64() >= seconds {
            continue;
        }
        let Some(syn) = parse_syn(&buf[..n as usize]) else { continue };
        if !hosts_set.contains(&syn.dst) || !seen.insert((syn.dst, syn.dport, syn.sport < 32768)) {
            continue;
        }
        // Frames go back the way the SYN came: from this interface to the border.
        let link = Link { src_mac: syn.dst_mac, gw_mac: syn.src_mac };
        let v6 = syn.dst.is_ipv6() as usize;
        let (t, us) = (syn.dst, syn.src);
        let mut emit = |r: TcpReply| r.emit(&mut out, &link).map(|k| send(&out[..k]));
        emit(TcpReply::rst(t, us, syn.dport, syn.sport, syn.seq.wrapping_add(1), 62)).context("near miss")?;
        emit(TcpReply::synack(t, us, syn.dport, syn.sport, syn.seq.wrapping_sub(1), 62)).context("near miss")?;
        f.near_miss += 2;
        f.ipv6 += 2 * v6;
        if let Some(other) = hosts.iter().find(|h| **h != t && h.is_ipv6() == t.is_ipv6() && !dead.contains(*h)) {
            emit(TcpReply::synack(*other, us, syn.dport, syn.sport, syn.seq, 62)).context("other target")?;
            f.other_target += 1;
            f.ipv6 += v6;
        }
        if dead.contains(&t) {
            let k = TcpReply::synack(t, us, syn.dport, syn.sport, syn.seq, 62).emit(&mut out, &link).context("late")?;
            late.push((std::time::Instant::now() + std::time::Duration::from_millis(late_ms), out[..k].to_vec()));
            f.ipv6 += v6;
        }
    }
    Ok(f)
}
