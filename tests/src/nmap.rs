//! Independent validation of the lab: nmap's SYN scan, run from the vantage, compared with
//! the ground truth (state, reason, and the reply TTL that tells a forged RST from the host's).

use crate::truth::{Expect, Truth};
use anyhow::{Context, Result};
use std::collections::HashMap;
use std::net::IpAddr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NmapPort {
    pub state: String,
    pub reason: String,
    pub reason_ttl: u8,
    pub reason_ip: Option<IpAddr>,
}

fn attr<'a>(s: &'a str, name: &str) -> Option<&'a str> {
    let key = format!("{name}=\"");
    let i = s.find(&key)? + key.len();
    let j = s[i..].find('"')?;
    Some(&s[i..i + j])
}

/// Parse `nmap -oX -` output into (ip, port) -> result.
pub fn parse_xml(xml: &str) -> Result<HashMap<(IpAddr, u16), NmapPort>> {
    let mut out = HashMap::new();
    for host in xml.split("<host ").skip(1) {
        let a = host.find("<address ").context("nmap host without address")?;
        let ip: IpAddr = attr(&host[a..], "addr").context("address attr")?.parse()?;
        for port in host.split("<port ").skip(1) {
            let portid: u16 = attr(port, "portid").context("portid")?.parse()?;
            let st = &port[port.find("<state ").context("state")?..];
            out.insert(
                (ip, portid),
                NmapPort {
                    state: attr(st, "state").unwrap_or("").into(),
                    reason: attr(st, "reason").unwrap_or("").into(),
                    reason_ttl: attr(st, "reason_ttl").and_then(|t| t.parse().ok()).unwrap_or(0),
                    reason_ip: attr(st, "reason_ip").and_then(|t| t.parse().ok()),
                },
            );
        }
    }
    Ok(out)
}

/// Does nmap's view agree with what the lab promises?
pub fn agrees(t: &Truth, n: &NmapPort) -> bool {
    // A router that rate-limits its ICMP errors may not answer this probe at all.
    if t.rate_limited && matches!(t.expect, Expect::Icmp { .. }) && n.state == "filtered" && n.reason == "no-response" {
        return true;
    }
    match t.expect {
        Expect::Synack { ttl } => n.state == "open" && n.reason == "syn-ack" && n.reason_ttl == ttl,
        Expect::Rst { ttl } => n.state == "closed" && n.reason == "reset" && n.reason_ttl == ttl,
        Expect::None => n.state == "filtered" && n.reason == "no-response",
        Expect::Icmp { icmp_type, icmp_code, responder, .. } => {
            let reason = match (icmp_type, icmp_code) {
                (3, 13) | (1, 1) => "admin-prohibited",
                (3, 3) | (1, 4) => "port-unreach",
                _ => "?",
            };
            n.state == "filtered" && n.reason == reason && n.reason_ip.map_or(true, |r| r == responder)
        }
    }
}
