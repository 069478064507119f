//! Where probes leave from, asked of the kernel: interface, addresses, gateway MAC.

pub mod privs;
pub mod route;
