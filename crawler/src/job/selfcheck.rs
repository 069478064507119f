//! Vantage self-check: can this vantage send on 25 at all? Many clouds block outbound 25;
//! a crawler there would report every network as filtered. Before a crawl, a few reference
//! hosts are probed on 25 and on a control port; control answered but 25 silent everywhere
//! means the vantage's own provider filters 25, and the crawl stops (exit 3) unless told
//! otherwise. The outcome goes into the manifest either way.
//!
//! `crawler run` runs it as a child process (`crawler self-check --config`), which drops its
//! privileges once its own sockets are open, like the scan, before it reads the lists: the
//! parent keeps them for the scan's sockets and parses no received frame meanwhile.

use crate::net::route;
use crate::probe::{self, Link, ReplyKind, SynFields, MAX_FRAME};
use crate::scan::recv::ring::RxRing;
use crate::scan::send::socket::{Transmit, TxSocket, BATCH};
use crate::scan::validate::Cookie;
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
    pub passed: bool,
    pub verdict: String,
}

/// The self-check a crawl config describes (`crawler self-check --config`).
pub fn from_config(c: &super::config::CrawlConfig) -> Result<SelfCheckResult> {
    let block = || Ok(Blocklist::build(&c.plan.allow_reserved, &c.inputs.opt_out, &c.inputs.exclude, Default::default())?);
    let gw = c.scan.gateway_mac.as_deref().map(route::parse_mac).transpose()?;
    run(&c.self_check.targets, c.self_check.control_port, c.self_check.wait, block, c.scan.interface.as_deref(), gw, &c.scan.user)
}

/// Probe `targets` on 25 and `control`; `user`: who to become once the sockets are open, if
/// root; `block`: the lists, read only once privileges are gone.
pub fn run(targets: &[IpAddr], control: u16, wait: f64, block: impl FnOnce() -> Result<Blocklist>, iface: Option<&str>, gw: Option<[u8; 6]>, user: &str) -> Result<SelfCheckResult> {
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
    let cookie = Cookie::new(rand::random(), rand::random());
    let mut tmpl = [[0u8; MAX_FRAME]; 2];
    if let Some(s) = ni.src4 {
        probe::syn_template(&mut tmpl[0], &Link { src_mac: ni.mac, gw_mac: ni.gw4 }, s.into(), &probe::SynStyle::of_this_host(false));
    }
    if let Some(s) = ni.src6 {
        probe::syn_template(&mut tmpl[1], &Link { src_mac: ni.mac, gw_mac: ni.gw6 }, s.into(), &probe::SynStyle::of_this_host(true));
    }
    let mut got25 = std::collections::HashSet::new();
    let mut gotc = std::collections::HashSet::new();
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
                for port in [25, control] {
                    let (sport, seq) = cookie.probe(*t, port, ti as u32, 0, None);
                    let (ip_id, flow_label, tsval) = cookie.disguise(*t, ti as u32);
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
                if cookie.index(&r, 1, |i, _| targets.get(i as usize) == Some(&r.target)).is_some() && r.kind != ReplyKind::Icmp {
                    if r.tport == 25 {
                        got25.insert(r.target);
                    } else if r.tport == control {
                        gotc.insert(r.target);
                    }
                }
            }
            true
        });
    }
    let (a25, ac) = (got25.len(), gotc.len());
    let (passed, verdict) = if a25 > 0 {
        (true, format!("ok: {a25} of {} reference hosts answered on 25", targets.len()))
    } else if ac > 0 {
        (false, format!("this vantage cannot send on 25: {ac} reference hosts answered on port {control} but none on 25 — its own provider (or its firewall) blocks outbound 25, and every network would look filtered"))
    } else {
        (true, format!("inconclusive: no reference host answered on 25 or on port {control}"))
    };
    Ok(SelfCheckResult { targets: targets.to_vec(), control_port: control, answered_25: a25, answered_control: ac, passed, verdict })
}
