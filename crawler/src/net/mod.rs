//! Where probes leave from, asked of the kernel: interface, addresses, gateway MAC; and the
//! privileges the raw sockets need, dropped once they are open.

pub mod handover;
pub mod privs;
pub mod route;
