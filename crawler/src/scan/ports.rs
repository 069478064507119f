//! The probe set of one host: fixed ports with their role (25 the target, 465/587 mail,
//! controls) and per-host random high ports, as numbered slots. A probe id is
//! `target * slots + slot`, so a probe needs no state of its own to know its port.

use super::Params;
use anyhow::{bail, Result};
use datasets::schema;
use siphasher::sip::SipHasher13;
use std::hash::Hasher;
use std::net::IpAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Target,
    Mail,
    Control,
    Random,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Target => schema::role::TARGET,
            Role::Mail => schema::role::MAIL,
            Role::Control => schema::role::CONTROL,
            Role::Random => schema::role::RANDOM,
        }
    }
}

#[derive(Debug, Clone)]
pub struct PortPlan {
    /// Fixed ports with their role; random ports follow as extra slots.
    pub fixed: Vec<(u16, Role)>,
    pub random: u16,
    pub key: (u64, u64),
}

impl PortPlan {
    /// The probe set `params` asks for; `key` draws each host's random ports.
    pub fn new(params: &Params, key: (u64, u64)) -> Result<PortPlan> {
        let mut fixed: Vec<(u16, Role)> = Vec::new();
        for p in &params.ports {
            fixed.push((*p, if *p == 25 { Role::Target } else { Role::Mail }));
        }
        for p in &params.control_ports {
            if fixed.iter().any(|(q, _)| q == p) {
                bail!("port {p} is both a probe port and a control port");
            }
            fixed.push((*p, Role::Control));
        }
        if fixed.is_empty() && params.random_ports == 0 {
            bail!("no ports to probe");
        }
        // Send times are kept as 32-bit µs ticks (71 minutes); replies later than 30 minutes are
        // not waited for.
        if !(0.0..=1800.0).contains(&params.cooldown) {
            bail!("--cooldown must be between 0 and 1800 seconds");
        }
        if params.random_ports as usize > MAX_RANDOM_PORTS {
            bail!("at most {MAX_RANDOM_PORTS} random ports per host");
        }
        Ok(PortPlan { fixed, random: params.random_ports, key })
    }

    pub fn slots(&self) -> u64 {
        self.fixed.len() as u64 + self.random as u64
    }
    /// Port and role of slot `s` for a host; random high ports are drawn per host from the
    /// ephemeral range (almost surely closed: a SYN-ACK there exposes an all-ports responder),
    /// distinct from the fixed ports and from the host's other random ports.
    #[inline]
    pub fn port(&self, ip: IpAddr, s: u64) -> (u16, Role) {
        if let Some(p) = self.fixed.get(s as usize) {
            return *p;
        }
        // Draw this host's random ports in slot order, each moved past the ports taken before.
        let first = self.fixed.len() as u64;
        let mut taken = [0u16; MAX_RANDOM_PORTS];
        for r in first..=s {
            let mut h = SipHasher13::new_with_keys(self.key.0, self.key.1);
            match ip {
                IpAddr::V4(a) => h.write_u32(u32::from(a)),
                IpAddr::V6(a) => h.write_u128(u128::from(a)),
            }
            h.write_u64(r);
            let mut port = RANDOM_BASE + (h.finish() % RANDOM_SPAN as u64) as u16;
            let before = &taken[..(r - first) as usize];
            while self.fixed.iter().any(|(p, _)| *p == port) || before.contains(&port) {
                port = RANDOM_BASE + ((port - RANDOM_BASE + 1) % RANDOM_SPAN);
            }
            taken[(r - first) as usize] = port;
        }
        (taken[(s - first) as usize], Role::Random)
    }
}

/// Random ports: Linux's default ephemeral range, 32768..=60999.
const RANDOM_BASE: u16 = 32768;
const RANDOM_SPAN: u16 = 28232;
pub const MAX_RANDOM_PORTS: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn a_hosts_ports_are_distinct() {
        // 40 random ports per host make collisions of independent draws near certain.
        let plan = PortPlan { fixed: vec![(25, Role::Target), (32768, Role::Control)], random: 40, key: (7, 9) };
        for i in 0..2000u32 {
            let ip = IpAddr::V4(Ipv4Addr::from(0xc612_0000 + i));
            let ports: std::collections::HashSet<u16> = (0..plan.slots()).map(|s| plan.port(ip, s).0).collect();
            assert_eq!(ports.len() as u64, plan.slots(), "{ip}");
            assert!((2..plan.slots()).all(|s| (32768..=60999).contains(&plan.port(ip, s).0)));
        }
    }
}
