//! The send path: SYN frames batched into `sendmmsg` on an AF_PACKET socket with
//! PACKET_QDISC_BYPASS (ZMap's Linux design; measured here at ~1.7× pnet_datalink's
//! one-`sendto`-per-packet path). Frames live in a fixed array; nothing allocates per probe.

use crate::probe::MAX_FRAME;
use anyhow::{bail, Result};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

pub const BATCH: usize = 64;

/// Where a batch's frames go: the AF_PACKET socket, or a stand-in in the send loop's tests.
pub trait Transmit: Send {
    /// Send `frames[j][..lens[j]]` for every j; returns a bitmask of the frames that could not
    /// be sent (bit j: frame j).
    fn transmit(&mut self, frames: &mut [[u8; MAX_FRAME]], lens: &[usize]) -> u64;
}

pub struct TxSocket {
    fd: OwnedFd,
    addr: libc::sockaddr_ll,
}

impl TxSocket {
    pub fn open(ifindex: i32) -> Result<TxSocket> {
        let mut s = TxSocket::create()?;
        s.to(ifindex);
        Ok(s)
    }

    /// The socket, with no interface yet: opening it is what needs CAP_NET_RAW, so a scan opens
    /// it before it drops its privileges and reads the plan that says where to send.
    pub fn create() -> Result<TxSocket> {
        // SAFETY: plain socket(2); the fd is owned immediately.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
        if raw < 0 {
            bail!("cannot open a raw AF_PACKET socket: {} (needs root or CAP_NET_RAW)", std::io::Error::last_os_error());
        }
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let one: libc::c_int = 1;
        // SAFETY: valid option pointer and length; failure only costs speed.
        unsafe {
            libc::setsockopt(fd.as_raw_fd(), libc::SOL_PACKET, libc::PACKET_QDISC_BYPASS, &one as *const _ as *const libc::c_void, 4);
        }
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_halen = 6;
        Ok(TxSocket { fd, addr })
    }

    /// Send through interface `ifindex`.
    pub fn to(&mut self, ifindex: i32) {
        self.addr.sll_ifindex = ifindex;
    }
}

impl Transmit for TxSocket {
    fn transmit(&mut self, frames: &mut [[u8; MAX_FRAME]], lens: &[usize]) -> u64 {
        let n = lens.len().min(frames.len()).min(BATCH);
        let mut iov: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
        let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        for i in 0..n {
            iov[i] = libc::iovec { iov_base: frames[i].as_mut_ptr() as *mut libc::c_void, iov_len: lens[i] };
            msgs[i].msg_hdr.msg_iov = &mut iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
            msgs[i].msg_hdr.msg_name = &mut self.addr as *mut _ as *mut libc::c_void;
            msgs[i].msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_ll>() as u32;
        }
        let (mut done, mut spins, mut failed) = (0, 0, 0u64);
        while done < n {
            // SAFETY: msgs[done..n] point at live frames and addr for the duration of the call.
            let r = unsafe { libc::sendmmsg(self.fd.as_raw_fd(), msgs[done..].as_mut_ptr(), (n - done) as u32, 0) };
            if r > 0 {
                done += r as usize;
                continue;
            }
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::ENOBUFS) | Some(libc::EINTR) if spins < 10_000 => {
                    spins += 1;
                    std::thread::yield_now();
                }
                _ => {
                    // Skip the frame that failed: the caller learns which, and does not count
                    // it as sent.
                    failed |= 1 << done;
                    done += 1;
                }
            }
        }
        failed
    }
}
