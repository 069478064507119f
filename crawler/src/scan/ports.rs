//! The probe set of one host, as numbered slots: fixed ports with their role (25 the target,
//! 465/587 mail, controls), per-host random high ports, then the reflection probes. A probe id
//! is `target * slots + slot`, so a probe needs no state of its own to know its ports.
//!
//! Two kinds of probe share the pipeline (the architecture's "probe modules"): a SYN *to* a
//! port from an ephemeral source port measures inbound filtering; a SYN *from* a fixed source
//! port (25, 465, 587, and a neutral control, 2525) to a port the host answers makes the
//! host's answer leave its network towards that port — crossing whatever outbound filter the
//! provider applies to its customers' mail traffic (source-port reflection). They differ only in
//! the source port and in what the reply means; order, pacing, send log, validation and output
//! are the same.
//!
//! A reflection probe goes to the host's first random high port: almost surely closed, so the
//! host answers with a RST — the cheapest and most universal answer, with no connection state
//! left in the host (a retry on the same 4-tuple meets a clean slate), and sent by every host
//! the analysis finds informative (those RST a random port). Its twin — the same destination
//! port from an ephemeral source — is already in the probe set. Without random ports, the first
//! control port serves.

use super::validate::{SPORT_BASE, SPORT_SPAN};
use super::Params;
use anyhow::{bail, Result};
use datasets::schema;
use siphasher::sip::SipHasher13;
use std::hash::Hasher;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Target,
    Mail,
    Control,
    Random,
    /// A SYN from a fixed source port (source-port reflection).
    Reflect,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Target => schema::role::TARGET,
            Role::Mail => schema::role::MAIL,
            Role::Control => schema::role::CONTROL,
            Role::Random => schema::role::RANDOM,
            Role::Reflect => schema::role::REFLECT,
        }
    }
}

#[derive(Debug, Clone)]
pub struct PortPlan {
    /// Fixed ports with their role; random ports follow as extra slots, then reflection slots.
    pub fixed: Vec<(u16, Role)>,
    pub random: u16,
    /// Source ports of the reflection probes (the mail ports, then the neutral control).
    pub reflect: Vec<u16>,
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
        let mut reflect = params.reflect_ports.clone();
        if params.reflect_control_port != 0 && !reflect.is_empty() {
            reflect.push(params.reflect_control_port);
        }
        for (i, p) in reflect.iter().enumerate() {
            // Our ephemeral source ports come from this range: a fixed port inside it could be
            // mistaken for one of them.
            let ephemeral = SPORT_BASE as u32..SPORT_BASE as u32 + SPORT_SPAN;
            if *p == 0 || ephemeral.contains(&(*p as u32)) {
                bail!("reflection source port {p}: must not be 0 or in {}-{} (the ephemeral source ports of the other probes)", ephemeral.start, ephemeral.end - 1);
            }
            if reflect[..i].contains(p) {
                bail!("reflection source port {p} is given twice");
            }
        }
        if reflect.len() > MAX_REFLECT {
            bail!("at most {MAX_REFLECT} reflection source ports");
        }
        let has_control = fixed.iter().any(|(_, r)| *r == Role::Control);
        if !reflect.is_empty() && params.random_ports == 0 && !has_control {
            tracing::warn!("source-port reflection is off: it needs a random or a control port to send to (outbound filtering is not measured)");
            reflect.clear();
        }
        Ok(PortPlan { fixed, random: params.random_ports, reflect, key })
    }

    pub fn slots(&self) -> u64 {
        self.fixed.len() as u64 + self.random as u64 + self.reflect.len() as u64
    }

    /// The fixed source port of slot `s`, for a reflection probe; `None` for a probe from an
    /// ephemeral source port.
    #[inline]
    pub fn src_port(&self, s: u64) -> Option<u16> {
        let first = self.fixed.len() as u64 + self.random as u64;
        s.checked_sub(first).and_then(|i| self.reflect.get(i as usize).copied())
    }

    /// The slot whose probe goes to the same port as the reflection probes, from an ephemeral
    /// source: their twin (the first random port, else the first control port).
    pub fn twin_slot(&self) -> Option<u64> {
        if self.reflect.is_empty() {
            return None;
        }
        if self.random > 0 {
            return Some(self.fixed.len() as u64);
        }
        self.fixed.iter().position(|(_, r)| *r == Role::Control).map(|i| i as u64)
    }
    /// Port and role of slot `s` for a host of AS `asn`. Random high ports are drawn from the
    /// ephemeral range (almost surely closed: a SYN-ACK there exposes an all-ports responder),
    /// distinct from the fixed ports and from each other — and drawn per AS, not per host or
    /// per /24: an all-ports responder answers any closed port, so the hosts of a network can
    /// share theirs, while ports drawn per host (or per /24) would show a provider two new
    /// destination ports for every host (/24) probed — the distinct-port count IPS port-scan
    /// signatures at a network's border ban sources for. Each AS sees 2 random ports, each
    /// crawl (another key) other ones.
    #[inline]
    pub fn port(&self, asn: u32, s: u64) -> (u16, Role) {
        if let Some(p) = self.fixed.get(s as usize) {
            return *p;
        }
        if s >= self.fixed.len() as u64 + self.random as u64 {
            let twin = self.twin_slot().expect("reflection slots have a twin");
            return (self.port(asn, twin).0, Role::Reflect);
        }
        // Draw this AS's random ports in slot order, each moved past the ports taken before.
        let first = self.fixed.len() as u64;
        let mut taken = [0u16; MAX_RANDOM_PORTS];
        for r in first..=s {
            let mut h = SipHasher13::new_with_keys(self.key.0, self.key.1);
            h.write_u32(asn);
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
/// Reflection source ports at most (the cookie keeps them in a fixed array).
pub const MAX_REFLECT: usize = 8;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hosts_ports_are_distinct() {
        // 40 random ports per host make collisions of independent draws near certain.
        let plan = PortPlan { fixed: vec![(25, Role::Target), (32768, Role::Control)], random: 40, reflect: vec![], key: (7, 9) };
        for asn in 0..2000u32 {
            let ports: std::collections::HashSet<u16> = (0..plan.slots()).map(|s| plan.port(asn, s).0).collect();
            assert_eq!(ports.len() as u64, plan.slots(), "AS{asn}");
            assert!((2..plan.slots()).all(|s| (32768..=60999).contains(&plan.port(asn, s).0)));
        }
    }

    #[test]
    fn reflection_slots_go_to_the_twins_port_from_fixed_sources() {
        let mut p = Params::default();
        let plan = PortPlan::new(&p, (1, 2)).unwrap();
        // 25, 465, 587, 80, 443, 22, two random ports, then 25, 465, 587, 2525 as sources.
        assert_eq!(plan.slots(), 12);
        assert_eq!(plan.twin_slot(), Some(6));
        let asn = 64500;
        for (s, sport) in (8..12).zip([25, 465, 587, 2525]) {
            assert_eq!(plan.port(asn, s), (plan.port(asn, 6).0, Role::Reflect));
            assert_eq!(plan.src_port(s), Some(sport));
        }
        assert_eq!((0..8).filter_map(|s| plan.src_port(s)).count(), 0);
        // Without random ports the first control port is the destination.
        p.random_ports = 0;
        let plan = PortPlan::new(&p, (1, 2)).unwrap();
        assert_eq!((plan.twin_slot(), plan.port(asn, 6)), (Some(3), (80, Role::Reflect)));
        // Without either, reflection is off rather than aimed at a port that may not answer.
        p.control_ports.clear();
        let plan = PortPlan::new(&p, (1, 2)).unwrap();
        assert_eq!((plan.slots(), plan.twin_slot()), (3, None));
        p.reflect_ports = vec![25, 40000];
        assert!(PortPlan::new(&p, (1, 2)).unwrap_err().to_string().contains("ephemeral"));
    }

    #[test]
    fn random_ports_are_shared_by_an_as_and_differ_between_ases_and_crawls() {
        let plan = PortPlan { fixed: vec![(25, Role::Target)], random: 2, reflect: vec![], key: (7, 9) };
        let ports = |p: &PortPlan, asn: u32| (1..3).map(|s| p.port(asn, s).0).collect::<Vec<_>>();
        let distinct: std::collections::HashSet<Vec<u16>> = (0..50).map(|asn| ports(&plan, 64500 + asn)).collect();
        assert!(distinct.len() >= 49, "ASes draw their own ports");
        let other = PortPlan { key: (8, 9), ..plan.clone() };
        assert_ne!(ports(&plan, 64500), ports(&other, 64500), "another crawl's key, other ports");
    }
}
