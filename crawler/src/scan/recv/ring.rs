//! The receive path: one AF_PACKET socket on the scan interface, outgoing frames ignored, a
//! classic BPF program so the kernel hands us only TCP and ICMP over IPv4/IPv6, and a
//! TPACKET_V3 ring (PACKET_MMAP, what libpcap and so ZMap use) between kernel and us.
//!
//! Why a ring: with a plain socket the kernel clones every reply into a queue and the receive
//! thread copies it out again with a syscall per batch; with the ring the kernel copies the
//! reply once into shared memory and hands over whole blocks, waking us once per block. The
//! receive thread then costs almost nothing, which matters on a small scanner where the send
//! loop and the replies' kernel path share the cores. Each frame carries the kernel's receive
//! time, so RTTs do not depend on when a block is read.

use anyhow::{bail, Result};
use socket2::{SockFilter, SockRef};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};

/// Bytes kept of each frame: Ethernet + IPv6 + ICMPv6 + the quoted IPv6 and TCP headers is
/// 122, a TCP reply with every option 114; the rest of a frame is never looked at.
const SNAPLEN: u32 = 256;
/// Ring geometry: 64 blocks of 64 KiB (4 MiB) hold ~30,000 replies; a block is handed to us
/// when full or `RETIRE_MS` after its first frame.
const BLOCK_SIZE: u32 = 1 << 16;
const BLOCK_NR: u32 = 64;
const RETIRE_MS: u32 = 5;

pub struct RxRing {
    fd: OwnedFd,
    ring: *mut u8,
    next: usize,
    /// Blocks whose header fields did not add up (handed back unread; should be 0).
    pub corrupt_blocks: u64,
}

// SAFETY: the ring is only touched through `&mut self` (one receive thread); the kernel side
// is synchronised by the block status words.
unsafe impl Send for RxRing {}

/// The kernel's filter: IPv4 carrying TCP or ICMP, IPv6 whose first next header is TCP,
/// ICMPv6 or an extension header (hop-by-hop, routing, fragment, destination options — the
/// parser walks them; dropping them here would hide a middlebox that adds them). Keeps
/// SNAPLEN bytes of what it accepts.
fn filter() -> Vec<SockFilter> {
    const LDH: u16 = 0x28; // BPF_LD|BPF_H|BPF_ABS
    const LDB: u16 = 0x30; // BPF_LD|BPF_B|BPF_ABS
    const JEQ: u16 = 0x15; // BPF_JMP|BPF_JEQ|BPF_K
    const RET: u16 = 0x06; // BPF_RET|BPF_K
    const V4: [u32; 2] = [6, 1];
    const V6: [u32; 6] = [6, 58, 0, 43, 44, 60];
    // Jump offsets are relative to the next instruction; ACCEPT and DROP are the last two.
    let mut f = vec![SockFilter::new(LDH, 0, 0, 12), SockFilter::new(JEQ, 0, (V4.len() + 1) as u8, 0x0800), SockFilter::new(LDB, 0, 0, 23)];
    let v4_end = f.len() + V4.len(); // index of the IPv6 check
    let total = v4_end + 2 + V6.len() + 2;
    let (accept, drop) = (total - 2, total - 1);
    for (i, proto) in V4.iter().enumerate() {
        let at = f.len();
        let jf = if i + 1 == V4.len() { drop - at - 1 } else { 0 };
        f.push(SockFilter::new(JEQ, (accept - at - 1) as u8, jf as u8, *proto));
    }
    let at = f.len();
    f.push(SockFilter::new(JEQ, 0, (drop - at - 1) as u8, 0x86dd));
    f.push(SockFilter::new(LDB, 0, 0, 20));
    for (i, nh) in V6.iter().enumerate() {
        let at = f.len();
        let jf = if i + 1 == V6.len() { drop - at - 1 } else { 0 };
        f.push(SockFilter::new(JEQ, (accept - at - 1) as u8, jf as u8, *nh));
    }
    f.push(SockFilter::new(RET, 0, 0, SNAPLEN));
    f.push(SockFilter::new(RET, 0, 0, 0));
    debug_assert_eq!(f.len(), total);
    f
}

/// What the kernel says of a frame besides its bytes.
#[derive(Debug, Clone, Copy)]
pub struct FrameMeta {
    /// Receive time, µs since the epoch (the kernel's wall clock).
    pub stamp_us: i64,
    /// Whether checksums are worth checking: not when the kernel validated them already, or
    /// when the frame was made on this host with the checksum left to the NIC (veth offload),
    /// or when it was cut at the capture length.
    pub verify: bool,
}

/// `tp_status` bits (linux/if_packet.h).
const TP_STATUS_CSUMNOTREADY: u32 = 1 << 3;
const TP_STATUS_CSUM_VALID: u32 = 1 << 7;

fn setopt<T>(fd: &OwnedFd, level: i32, name: i32, v: &T, what: &str) -> Result<()> {
    // SAFETY: `v` is a live value of the size passed.
    let r = unsafe { libc::setsockopt(fd.as_raw_fd(), level, name, v as *const T as *const libc::c_void, std::mem::size_of::<T>() as u32) };
    if r != 0 {
        bail!("receive socket: {what}: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

impl RxRing {
    pub fn open(ifindex: i32) -> Result<RxRing> {
        let mut rx = RxRing::create()?;
        rx.bind(ifindex)?;
        Ok(rx)
    }

    /// The socket, its filter and its ring, not yet bound to an interface. Setting up a ring
    /// waits for an RCU grace period in the kernel (10–25 ms measured here), so a scan does
    /// this in the background while it loads its plan.
    pub fn create() -> Result<RxRing> {
        // Protocol 0: the socket sees nothing until `bind` names the protocol and interface,
        // so no frame of another interface slips in while the filter and ring are set up.
        // SAFETY: plain socket(2); the fd is owned immediately.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
        if raw < 0 {
            bail!("cannot open a raw AF_PACKET socket: {} (needs root or CAP_NET_RAW)", std::io::Error::last_os_error());
        }
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        SockRef::from(&fd).attach_filter(&filter())?;
        setopt(&fd, libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, &1i32, "PACKET_IGNORE_OUTGOING")?;
        setopt(&fd, libc::SOL_PACKET, libc::PACKET_VERSION, &(libc::tpacket_versions::TPACKET_V3 as i32), "PACKET_VERSION")?;
        let req = libc::tpacket_req3 {
            tp_block_size: BLOCK_SIZE,
            tp_block_nr: BLOCK_NR,
            tp_frame_size: 2048, // V3 packs frames by size; this only has to divide the block
            tp_frame_nr: BLOCK_SIZE / 2048 * BLOCK_NR,
            tp_retire_blk_tov: RETIRE_MS,
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        setopt(&fd, libc::SOL_PACKET, libc::PACKET_RX_RING, &req, "PACKET_RX_RING")?;
        let len = (BLOCK_SIZE * BLOCK_NR) as usize;
        // SAFETY: maps the ring the kernel just allocated for this socket.
        let ring = unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd.as_raw_fd(), 0) };
        if ring == libc::MAP_FAILED {
            bail!("receive socket: mapping the ring: {}", std::io::Error::last_os_error());
        }
        Ok(RxRing { fd, ring: ring as *mut u8, next: 0, corrupt_blocks: 0 })
    }

    /// Start receiving the frames of interface `ifindex`.
    pub fn bind(&mut self, ifindex: i32) -> Result<()> {
        let proto = (libc::ETH_P_ALL as u16).to_be() as i32;
        let rx = self;
        // SAFETY: a zeroed sockaddr_ll with family, protocol and index set is a valid address.
        unsafe {
            let mut addr: libc::sockaddr_ll = std::mem::zeroed();
            addr.sll_family = libc::AF_PACKET as u16;
            addr.sll_protocol = proto as u16;
            addr.sll_ifindex = ifindex;
            if libc::bind(rx.fd.as_raw_fd(), &addr as *const _ as *const libc::sockaddr, std::mem::size_of::<libc::sockaddr_ll>() as u32) != 0 {
                bail!("binding the receive socket: {}", std::io::Error::last_os_error());
            }
        }
        Ok(())
    }

    fn status(&self, block: usize) -> &AtomicU32 {
        // SAFETY: block_status is the first u32 of the block's tpacket_hdr_v1, 4-byte aligned
        // in the mapping; the kernel and we hand the block over through it.
        unsafe {
            let desc = self.ring.add(block * BLOCK_SIZE as usize) as *const libc::tpacket_block_desc;
            &*(std::ptr::addr_of!((*desc).hdr.bh1.block_status) as *const AtomicU32)
        }
    }

    /// Hand each frame of the next filled block to `f(frame, meta)`, then give the block back.
    /// Waits up to `timeout_ms` for one; returns the frames seen (0 on timeout). `f` returning
    /// false stops early (the block is still returned). The block's header fields are checked
    /// against the block's size before any frame is read: a block that does not add up is
    /// handed back unread (counted in `corrupt_blocks`).
    pub fn next_block(&mut self, timeout_ms: i32, mut f: impl FnMut(&[u8], FrameMeta) -> bool) -> usize {
        if self.status(self.next).load(Ordering::Acquire) & libc::TP_STATUS_USER == 0 {
            let mut p = libc::pollfd { fd: self.fd.as_raw_fd(), events: libc::POLLIN | libc::POLLERR, revents: 0 };
            // SAFETY: one valid pollfd.
            unsafe { libc::poll(&mut p, 1, timeout_ms) };
            if self.status(self.next).load(Ordering::Acquire) & libc::TP_STATUS_USER == 0 {
                return 0;
            }
        }
        let block = BLOCK_SIZE as usize;
        let hdr = std::mem::size_of::<libc::tpacket3_hdr>();
        let base = unsafe { self.ring.add(self.next * block) };
        // SAFETY: the block is ours (TP_STATUS_USER) until we write TP_STATUS_KERNEL back; every
        // offset read from it is checked to stay inside the block before it is followed.
        let n = unsafe {
            let h = &(*(base as *const libc::tpacket_block_desc)).hdr.bh1;
            let n = h.num_pkts as usize;
            let mut off = h.offset_to_first_pkt as usize;
            let mut seen = 0;
            while seen < n {
                if off < std::mem::size_of::<libc::tpacket_block_desc>() || off + hdr > block || off % 4 != 0 {
                    self.corrupt_blocks += 1;
                    break;
                }
                let ph = &*(base.add(off) as *const libc::tpacket3_hdr);
                let (start, len) = (off + ph.tp_mac as usize, ph.tp_snaplen as usize);
                if (ph.tp_mac as usize) < hdr || start + len > block {
                    self.corrupt_blocks += 1;
                    break;
                }
                let frame = std::slice::from_raw_parts(base.add(start), len);
                let csum_known = ph.tp_status & (TP_STATUS_CSUMNOTREADY | TP_STATUS_CSUM_VALID) != 0;
                let meta = FrameMeta { stamp_us: ph.tp_sec as i64 * 1_000_000 + ph.tp_nsec as i64 / 1000, verify: !csum_known && ph.tp_len == ph.tp_snaplen };
                seen += 1;
                if !f(frame, meta) || ph.tp_next_offset == 0 {
                    break;
                }
                off += ph.tp_next_offset as usize;
            }
            seen
        };
        self.status(self.next).store(libc::TP_STATUS_KERNEL, Ordering::Release);
        self.next = (self.next + 1) % BLOCK_NR as usize;
        n
    }

    /// Frames the kernel passed the filter and frames it dropped because the ring was full,
    /// since the last call (the kernel resets the counters on read).
    pub fn stats(&self) -> (u64, u64) {
        let mut s = libc::tpacket_stats_v3 { tp_packets: 0, tp_drops: 0, tp_freeze_q_cnt: 0 };
        let mut len = std::mem::size_of::<libc::tpacket_stats_v3>() as u32;
        // SAFETY: valid output buffer and length.
        let r = unsafe { libc::getsockopt(self.fd.as_raw_fd(), libc::SOL_PACKET, libc::PACKET_STATISTICS, &mut s as *mut _ as *mut libc::c_void, &mut len) };
        if r != 0 {
            return (0, 0);
        }
        (s.tp_packets as u64, s.tp_drops as u64)
    }
}

impl Drop for RxRing {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `open`.
        unsafe { libc::munmap(self.ring as *mut libc::c_void, (BLOCK_SIZE * BLOCK_NR) as usize) };
    }
}
