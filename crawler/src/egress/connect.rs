//! An unprivileged connect() that still tells a RST from an ICMP error: with IP_RECVERR (or
//! IPV6_RECVERR) set before connecting, Linux queues the ICMP error that killed a SYN on the
//! socket's error queue together with the offender's address (`tcp_v4_err`/`tcp_v6_err` call
//! `ip_icmp_error`), where recvmsg(MSG_ERRQUEUE) reads it. Without it, an ICMP port
//! unreachable and a RST both look like ECONNREFUSED.
//!
//! The TTL of a RST is not visible to a TCP client without raw sockets: egress records null.

use datasets::egress::outcome;
use socket2::SockRef;
use std::io;
use std::mem::size_of;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};
use tokio::net::{TcpSocket, TcpStream};

/// An ICMP error from the error queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IcmpError {
    pub icmp_type: u8,
    pub code: u8,
    /// Who sent it (SO_EE_OFFENDER), when the kernel knows.
    pub responder: Option<IpAddr>,
    /// The errno the kernel made of it.
    pub errno: i32,
}

pub enum Connected {
    Up { stream: TcpStream, connect_us: u32 },
    Failed { outcome: &'static str, icmp: Option<IcmpError>, detail: String, connect_us: Option<u32> },
}

/// Ask the kernel to queue ICMP errors on this socket (IPv4 or IPv6 level).
pub fn enable_recverr(fd: RawFd, v6: bool) -> io::Result<()> {
    let one: libc::c_int = 1;
    let (level, opt) = if v6 { (libc::SOL_IPV6, libc::IPV6_RECVERR) } else { (libc::SOL_IP, libc::IP_RECVERR) };
    // SAFETY: a valid descriptor and a c_int option value of the right size.
    let r = unsafe { libc::setsockopt(fd, level, opt, (&one as *const libc::c_int).cast(), size_of::<libc::c_int>() as libc::socklen_t) };
    if r == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// The first ICMP error on the socket's error queue, if any (non-blocking).
pub fn read_icmp_error(fd: RawFd) -> Option<IcmpError> {
    let mut data = [0u8; 128];
    let mut ctrl = [0u64; 64];
    // A handful of queued errors at most (one per SYN that drew one).
    for _ in 0..8 {
        let mut iov = libc::iovec { iov_base: data.as_mut_ptr().cast(), iov_len: data.len() };
        // SAFETY: msghdr is plain data; zero is its empty value.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = ctrl.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&ctrl) as _;
        // SAFETY: msg points at buffers that outlive the call.
        if unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT) } < 0 {
            return None;
        }
        if let Some(e) = icmp_in_control(&msg) {
            return Some(e);
        }
    }
    None
}

fn icmp_in_control(msg: &libc::msghdr) -> Option<IcmpError> {
    // SAFETY: the CMSG_* macros walk the control buffer recvmsg filled, within msg_controllen;
    // each read below is bounded by the message's cmsg_len.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(msg);
        while !c.is_null() {
            let h = &*c;
            let ours = (h.cmsg_level == libc::SOL_IP && h.cmsg_type == libc::IP_RECVERR) || (h.cmsg_level == libc::SOL_IPV6 && h.cmsg_type == libc::IPV6_RECVERR);
            let data_len = (h.cmsg_len as usize).saturating_sub(libc::CMSG_LEN(0) as usize);
            if ours && data_len >= size_of::<libc::sock_extended_err>() {
                let p = libc::CMSG_DATA(c);
                let ee: libc::sock_extended_err = std::ptr::read_unaligned(p.cast());
                if ee.ee_origin == libc::SO_EE_ORIGIN_ICMP || ee.ee_origin == libc::SO_EE_ORIGIN_ICMP6 {
                    let off = p.add(size_of::<libc::sock_extended_err>());
                    let responder = offender(off, data_len - size_of::<libc::sock_extended_err>());
                    return Some(IcmpError { icmp_type: ee.ee_type, code: ee.ee_code, responder, errno: ee.ee_errno as i32 });
                }
            }
            c = libc::CMSG_NXTHDR(msg, c);
        }
    }
    None
}

/// SO_EE_OFFENDER: the sockaddr right after the extended error.
unsafe fn offender(p: *const u8, len: usize) -> Option<IpAddr> {
    if len < size_of::<libc::sa_family_t>() {
        return None;
    }
    // SAFETY (caller): `len` bytes from `p` are readable.
    let family = unsafe { std::ptr::read_unaligned(p.cast::<libc::sa_family_t>()) } as libc::c_int;
    match family {
        libc::AF_INET if len >= size_of::<libc::sockaddr_in>() => {
            let sa: libc::sockaddr_in = unsafe { std::ptr::read_unaligned(p.cast()) };
            Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(sa.sin_addr.s_addr))))
        }
        libc::AF_INET6 if len >= size_of::<libc::sockaddr_in6>() => {
            let sa: libc::sockaddr_in6 = unsafe { std::ptr::read_unaligned(p.cast()) };
            Some(IpAddr::V6(Ipv6Addr::from(sa.sin6_addr.s6_addr)))
        }
        _ => None,
    }
}

fn failed(outcome: &'static str, detail: String, connect_us: Option<u32>) -> Connected {
    Connected::Failed { outcome, icmp: None, detail, connect_us }
}

/// A connect() error: ICMP if the error queue holds one; else a RST, a kernel timeout, or a
/// missing local route (nothing was sent: says nothing about the port).
fn classify(e: io::Error, fd: RawFd, connect_us: u32) -> Connected {
    let connect_us = Some(connect_us);
    if let Some(icmp) = read_icmp_error(fd) {
        let from = icmp.responder.map(|r| format!(" from {r}")).unwrap_or_default();
        return Connected::Failed { outcome: outcome::ICMP, icmp: Some(icmp), detail: format!("connect: {e}: ICMP type {} code {}{from}", icmp.icmp_type, icmp.code), connect_us };
    }
    let o = match e.raw_os_error() {
        Some(libc::ECONNREFUSED) => outcome::REFUSED,
        Some(libc::ETIMEDOUT) => outcome::TIMEOUT,
        Some(libc::ENETUNREACH | libc::EHOSTUNREACH | libc::EADDRNOTAVAIL | libc::EAFNOSUPPORT) => return failed(outcome::NO_ROUTE, format!("connect: {e}"), None),
        _ => outcome::ERROR,
    };
    failed(o, format!("connect: {e}"), connect_us)
}

fn micros(t0: Instant) -> u32 {
    t0.elapsed().as_micros().min(u32::MAX as u128) as u32
}

/// Connect to `addr` within `limit`, reading the error queue when it fails.
pub async fn connect(addr: SocketAddr, limit: Duration) -> Connected {
    let s = match if addr.is_ipv6() { TcpSocket::new_v6() } else { TcpSocket::new_v4() } {
        Ok(s) => s,
        Err(e) if e.raw_os_error() == Some(libc::EAFNOSUPPORT) => return failed(outcome::NO_ROUTE, format!("socket: {e}"), None),
        Err(e) => return failed(outcome::ERROR, format!("socket: {e}"), None),
    };
    // connect() consumes the socket; a second descriptor of it keeps its error queue readable.
    let errq = match enable_recverr(s.as_raw_fd(), addr.is_ipv6()).and_then(|_| SockRef::from(&s).try_clone()) {
        Ok(d) => d,
        Err(e) => return failed(outcome::ERROR, format!("setsockopt: {e}"), None),
    };
    let t0 = Instant::now();
    match tokio::time::timeout(limit, s.connect(addr)).await {
        Err(_) => failed(outcome::TIMEOUT, format!("connect: no answer within {} s", limit.as_secs_f64()), None),
        Ok(Err(e)) => classify(e, errq.as_raw_fd(), micros(t0)),
        Ok(Ok(stream)) => Connected::Up { stream, connect_us: micros(t0) },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The error-queue reader on a real ICMP error: loopback answers a UDP datagram to a
    /// closed port with ICMP port unreachable, through the same path a TCP SYN's error takes.
    #[test]
    fn reads_icmp_port_unreachable_and_its_sender_from_the_error_queue() {
        for (local, v6, want_type, want_code) in [("127.0.0.1:0", false, 3u8, 3u8), ("[::1]:0", true, 1, 4)] {
            let closed = std::net::UdpSocket::bind(local).unwrap();
            let dest = closed.local_addr().unwrap();
            drop(closed);
            let s = std::net::UdpSocket::bind(local).unwrap();
            enable_recverr(s.as_raw_fd(), v6).unwrap();
            assert_eq!(read_icmp_error(s.as_raw_fd()), None, "nothing queued yet");
            s.send_to(b"probe", dest).unwrap();
            let mut got = None;
            for _ in 0..100 {
                got = read_icmp_error(s.as_raw_fd());
                if got.is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let e = got.expect("an ICMP error on the queue");
            assert_eq!((e.icmp_type, e.code, e.responder, e.errno), (want_type, want_code, Some(dest.ip()), libc::ECONNREFUSED));
        }
    }

    #[tokio::test]
    async fn a_closed_port_is_refused_by_a_rst_not_icmp() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        match connect(addr, Duration::from_secs(2)).await {
            Connected::Failed { outcome: o, icmp, .. } => assert_eq!((o, icmp), (outcome::REFUSED, None)),
            Connected::Up { .. } => panic!("connected to a closed port"),
        }
    }
}
