//! The receive path: one AF_PACKET socket on the scan interface, outgoing frames ignored,
//! and a classic BPF program so the kernel hands us only TCP and ICMP over IPv4/IPv6.

use anyhow::{bail, Result};
use socket2::{SockFilter, SockRef};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

pub struct Receiver {
    fd: OwnedFd,
}

/// ldh [12]; v4: ldb [23] tcp|icmp; v6: ldb [20] tcp|icmpv6 — accept, else drop.
fn filter() -> [SockFilter; 12] {
    const LDH: u16 = 0x28; // BPF_LD|BPF_H|BPF_ABS
    const LDB: u16 = 0x30; // BPF_LD|BPF_B|BPF_ABS
    const JEQ: u16 = 0x15; // BPF_JMP|BPF_JEQ|BPF_K
    const RET: u16 = 0x06; // BPF_RET|BPF_K
    [
        SockFilter::new(LDH, 0, 0, 12),
        SockFilter::new(JEQ, 0, 4, 0x0800), // IPv4? else -> 6
        SockFilter::new(LDB, 0, 0, 23),
        SockFilter::new(JEQ, 6, 0, 6),      // tcp -> accept (11)
        SockFilter::new(JEQ, 5, 6, 1),      // icmp -> accept, else drop
        SockFilter::new(RET, 0, 0, 0),      // (unreached filler keeps offsets simple)
        SockFilter::new(JEQ, 0, 4, 0x86dd), // IPv6? else drop
        SockFilter::new(LDB, 0, 0, 20),
        SockFilter::new(JEQ, 1, 0, 6),      // tcp -> accept
        SockFilter::new(JEQ, 0, 1, 58),     // icmpv6 -> accept else drop
        SockFilter::new(RET, 0, 0, 0x40000),
        SockFilter::new(RET, 0, 0, 0),
    ]
}

impl Receiver {
    pub fn open(ifindex: i32) -> Result<Receiver> {
        let proto = (libc::ETH_P_ALL as u16).to_be() as i32;
        // SAFETY: plain socket(2); the fd is owned immediately.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, proto) };
        if raw < 0 {
            bail!("cannot open a raw AF_PACKET socket: {} (needs root or CAP_NET_RAW)", std::io::Error::last_os_error());
        }
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let sock = SockRef::from(&fd);
        sock.attach_filter(&filter())?;
        let one: libc::c_int = 1;
        let big: libc::c_int = 64 << 20;
        let tv = libc::timeval { tv_sec: 0, tv_usec: 50_000 };
        // SAFETY: valid option pointers and lengths.
        unsafe {
            libc::setsockopt(fd.as_raw_fd(), libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, &one as *const _ as *const libc::c_void, 4);
            if libc::setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &big as *const _ as *const libc::c_void, 4) != 0 {
                libc::setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF, &big as *const _ as *const libc::c_void, 4);
            }
            libc::setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv as *const _ as *const libc::c_void, std::mem::size_of::<libc::timeval>() as u32);
            let mut addr: libc::sockaddr_ll = std::mem::zeroed();
            addr.sll_family = libc::AF_PACKET as u16;
            addr.sll_protocol = proto as u16;
            addr.sll_ifindex = ifindex;
            if libc::bind(fd.as_raw_fd(), &addr as *const _ as *const libc::sockaddr, std::mem::size_of::<libc::sockaddr_ll>() as u32) != 0 {
                bail!("binding the receive socket: {}", std::io::Error::last_os_error());
            }
        }
        Ok(Receiver { fd })
    }

    /// One frame into `buf`; `None` on timeout (so the caller can check for shutdown).
    #[inline]
    pub fn recv<'a>(&self, buf: &'a mut [u8]) -> Option<&'a [u8]> {
        // SAFETY: buf is valid for writes of buf.len() bytes.
        let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr() as *mut libc::c_void, buf.len(), 0) };
        if n <= 0 {
            None
        } else {
            Some(&buf[..n as usize])
        }
    }
}
