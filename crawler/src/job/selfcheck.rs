//! Vantage self-check: can this vantage send on 25 at all? Many clouds block outbound 25;
//! a crawler there would report every network as filtered. Before a crawl, a few reference
//! hosts are probed on 25 and on a control port; control answered but 25 silent everywhere
//! means the vantage's own provider filters 25, and the crawl stops (exit 3) unless told
//! otherwise. The outcome goes into the manifest either way.
//!
//! Reflection needs the opposite path: the replies to a SYN from our port 25 come back *to*
//! port 25, which many vantage networks drop (residential, campus, some clouds — or packets
//! from source port 25 on the way back). From such a vantage every provider would read
//! "outbound 25 blocked". So the same reference hosts also get SYNs from each reflection
//! source port to the control port: the control answered from an ordinary port but never to
//! source port 25 means this vantage cannot receive the replies, and the crawl stops too.
//!
//! `crawler run` runs it as a child process (`crawler self-check --config`), which drops its
//! privileges once its own sockets are open, like the scan, before it reads the lists: the
//! parent keeps them for the scan's sockets and parses no received frame meanwhile.

use crate::net::route;
use crate::probe::{self, Link, ReplyKind, SynFields, MAX_FRAME};
use crate::scan::recv::ring::RxRing;
use crate::scan::send::socket::{Transmit, TxSocket, BATCH};
use crate::scan::validate::{Cookie, Source};
use anyhow::{bail, Result};
use datasets::blocklist::Blocklist;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Exit code of `crawler self-check` when this vantage cannot send on 25.
pub const EXIT_FAILED: i32 = 3;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SelfCheckResult {
    pub targets: Vec<IpAddr>,
    pub control_port: u16,
    /// Reference hosts that answered (SYN-ACK or RST) on 25 / on the control port.
    pub answered_25: usize,
    pub answered_control: usize,
    /// Per reflection source port: reference hosts whose answer to a SYN from that port (to
    /// the control port) came back.
    #[serde(default)]
    pub answered_reflect: Vec<(u16, usize)>,
    pub passed: bool,
    pub verdict: String,
}

/// The self-check a crawl config describes (`crawler self-check --config`).
pub fn from_config(c: &super::config::CrawlConfig) -> Result<SelfCheckResult> {
    let block = || Ok(Blocklist::build(&c.plan.allow_reserved, &c.inputs.opt_out, &c.inputs.exclude, Default::default())?);
    let gw = c.scan.gateway_mac.as_deref().map(route::parse_mac).transpose()?;
    // Reflection probes need a closed random or a control port to go to; without either the
    // crawl sends none, and the check has nothing to check.
    let reflecting = c.scan.random_ports > 0 || !c.scan.control_ports.is_empty();
    let mut reflect = if reflecting { c.scan.reflect_ports.clone() } else { Vec::new() };
    if !reflect.is_empty() && c.scan.reflect_control_port != 0 {
        reflect.push(c.scan.reflect_control_port);
    }
    run(&c.self_check.targets, c.self_check.control_port, &reflect, c.self_check.wait, block, c.scan.interface.as_deref(), gw, &c.scan.user)
}

/// Probe `targets` on 25 and `control`, and `control` from each of the `reflect` source ports;
/// `user`: who to become once the sockets are open, if root; `block`: the lists, read only once
/// privileges are gone.
#[allow(clippy::too_many_arguments)]
pub fn run(targets: &[IpAddr], control: u16, reflect: &[u16], wait: f64, block: impl FnOnce() -> Result<Blocklist>, iface: Option<&str>, gw: Option<[u8; 6]>, user: &str) -> Result<SelfCheckResult> {
    if targets.is_empty() {
        bail!("no self-check targets");
    }
    let mut rx = RxRing::create()?;
    let mut tx = TxSocket::create()?;
    crate::net::privs::drop_privileges(user, &Default::default())?;
    let block = block()?;
    for t in targets {
        if let Some(r) = block.check(*t) {
            bail!("self-check target {t} is excluded ({})", r.as_str());
        }
    }
    let s4 = targets.iter().find_map(|t| if let IpAddr::V4(a) = t { Some(*a) } else { None });
    let s6 = targets.iter().find_map(|t| if let IpAddr::V6(a) = t { Some(*a) } else { None });
    let ni = route::discover(s4, s6, iface, gw, &[])?;
    rx.bind(ni.ifindex)?;
    tx.to(ni.ifindex);
    let cookie = Cookie::new(rand::random(), rand::random()).with_fixed_ports(reflect);
    // Probe k of target ti carries index ti * per + k: 25, the control, then each reflection.
    let per = 2 + reflect.len() as u32;
    let mut tmpl = [[0u8; MAX_FRAME]; 2];
    if let Some(s) = ni.src4 {
        probe::syn_template(&mut tmpl[0], &Link { src_mac: ni.mac, gw_mac: ni.gw4 }, s.into(), &probe::SynStyle::of_this_host(false));
    }
    if let Some(s) = ni.src6 {
        probe::syn_template(&mut tmpl[1], &Link { src_mac: ni.mac, gw_mac: ni.gw6 }, s.into(), &probe::SynStyle::of_this_host(true));
    }
    let mut got25 = std::collections::HashSet::new();
    let mut gotc = std::collections::HashSet::new();
    let mut gotr: Vec<std::collections::HashSet<IpAddr>> = vec![Default::default(); reflect.len()];
    let end = Instant::now() + Duration::from_secs_f64(wait);
    let mut next_round = Instant::now();
    let mut rounds = 0;
    while Instant::now() < end {
        if rounds < 3 && Instant::now() >= next_round {
            let (mut frames, mut lens) = (Vec::new(), Vec::new());
            for (ti, t) in targets.iter().enumerate() {
                let (src, i) = match t {
                    IpAddr::V4(_) => (ni.src4.map(IpAddr::V4), 0),
                    IpAddr::V6(_) => (ni.src6.map(IpAddr::V6), 1),
                };
                let Some(src) = src else { continue };
                let probes = [(25, None), (control, None)].into_iter().chain(reflect.iter().map(|r| (control, Some(*r))));
                for (k, (port, fixed)) in probes.enumerate() {
                    let index = ti as u32 * per + k as u32;
                    let (sport, seq) = cookie.probe(*t, port, index, 0, fixed);
                    let (ip_id, flow_label, tsval) = cookie.disguise(*t, index);
                    let mut f = tmpl[i];
                    lens.push(probe::fill_syn(&mut f, &SynFields { src, dst: *t, sport, dport: port, seq, ip_id, tsval, flow_label }));
                    frames.push(f);
                }
            }
            for (f, l) in frames.chunks_mut(BATCH).zip(lens.chunks(BATCH)) {
                tx.transmit(f, l);
            }
            rounds += 1;
            next_round = Instant::now() + Duration::from_millis(300);
        }
        rx.next_block(20, |frame, meta| {
            if let probe::Parsed::Reply(r) = probe::parse_frame(frame, meta.verify) {
                let valid = |i: u32, src: Source| {
                    let k = (i % per) as usize;
                    let fixed = k.checked_sub(2).map(|j| Source::Fixed(reflect[j])).unwrap_or(Source::Ephemeral);
                    targets.get((i / per) as usize) == Some(&r.target) && src == fixed
                };
                if let (Some(i), false) = (cookie.index(&r, 1, valid), r.kind == ReplyKind::Icmp) {
                    match (i % per) as usize {
                        0 => got25.insert(r.target),
                        1 => gotc.insert(r.target),
                        k => gotr[k - 2].insert(r.target),
                    };
                }
            }
            true
        });
    }
    let (a25, ac) = (got25.len(), gotc.len());
    let answered_reflect: Vec<(u16, usize)> = reflect.iter().zip(&gotr).map(|(p, g)| (*p, g.len())).collect();
    // The control answered an ordinary source port but never one of ours fixed: the replies to
    // that port are lost on our side.
    let blind: Vec<u16> = answered_reflect.iter().filter(|(_, n)| *n == 0).map(|(p, _)| *p).collect();
    let (passed, verdict) = if a25 > 0 && ac > 0 && !blind.is_empty() {
        let ports = blind.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", ");
        (false, format!("this vantage cannot receive reflection replies to source port {ports}: {ac} reference hosts answered port {control} from an ordinary source port, none answered our SYN from port {ports} — its own network (or its upstream) drops packets to that port, and every provider would read \"outbound blocked\" (reflection off: --reflect-ports none)"))
    } else if a25 > 0 {
        (true, format!("ok: {a25} of {} reference hosts answered on 25{}", targets.len(), if reflect.is_empty() { String::new() } else { format!(", and the reflection replies came back ({})", answered_reflect.iter().map(|(p, n)| format!("from {p}: {n}")).collect::<Vec<_>>().join(", ")) }))
    } else if ac > 0 {
        (false, format!("this vantage cannot send on 25: {ac} reference hosts answered on port {control} but none on 25 — its own provider (or its firewall) blocks outbound 25, and every network would look filtered"))
    } else {
        (true, format!("inconclusive: no reference host answered on 25 or on port {control}"))
    };
    Ok(SelfCheckResult { targets: targets.to_vec(), control_port: control, answered_25: a25, answered_control: ac, answered_reflect, passed, verdict })
}
