//! `lab serve`: the listening sockets of a hosts (or middlebox) namespace.
//!
//! Open ports are real sockets bound to the host's address (AnyIP + nonlocal bind), so a
//! SYN-ACK is the kernel's own; a closed port has no socket and the kernel answers RST.
//! Connections are never accepted: a prober's kernel resets the half-open ones.

use anyhow::{Context, Result};
use socket2::{Domain, Protocol, Socket, Type};
use std::net::SocketAddr;
use std::path::Path;

pub fn raise_nofile() {
    let lim = libc::rlimit { rlim_cur: 1 << 20, rlim_max: 1 << 20 };
    // SAFETY: plain syscall with a valid struct; failure only leaves the old limit.
    unsafe {
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
}

pub fn listen_all(addrs: &[SocketAddr]) -> Result<Vec<Socket>> {
    raise_nofile();
    let mut out = Vec::with_capacity(addrs.len());
    for a in addrs {
        let s = Socket::new(Domain::for_address(*a), Type::STREAM, Some(Protocol::TCP))?;
        if a.is_ipv6() {
            s.set_only_v6(true)?;
        }
        s.set_reuse_address(true)?;
        s.bind(&(*a).into()).with_context(|| format!("bind {a}"))?;
        s.listen(4096).with_context(|| format!("listen {a}"))?;
        out.push(s);
    }
    Ok(out)
}

/// Bind everything, report readiness through `ready` (a file), then sleep until killed.
pub fn serve(addrs: &[SocketAddr], ready: &Path) -> Result<()> {
    let _socks = listen_all(addrs)?;
    std::fs::write(ready, format!("{}\n", addrs.len()))?;
    loop {
        std::thread::park();
    }
}
