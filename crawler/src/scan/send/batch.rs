//! A sender's batch: probes accepted by the send loop are queued, each under a send-log slot
//! of its own (carried in its sequence number); when the batch goes out their frames are filled
//! from the family's SYN template and all of them leave in one `sendmmsg`.
//!
//! The per-AS and per-/24 limits must hold when frames leave, so nothing waits between a
//! probe's approval by those limits and its frame's departure: whatever a frame has to wait
//! for — a send-log slot whose last final attempt still needs its cooldown, the global pacer —
//! is waited for in [`Batch::ready`], before the limits are asked, and a batch holding
//! approved probes is sent before such a wait. The pacer goes probe by probe, so a batch fills
//! within half a millisecond (the pacer sizes it so) and the slot is taken one at a time.

use super::socket::{Transmit, BATCH};
use super::Shared;
use crate::net::route::NetInfo;
use crate::probe::{fill_syn, syn_template, Link, SynFields, SynStyle, MAX_FRAME};
use crate::scan::record::Observation;
use crate::scan::silence;
use crossbeam_channel::Sender;
use std::net::IpAddr;
use std::sync::atomic::Ordering::Relaxed;

/// The SYN template and source address of each family (a family without a source address
/// has no template: its probes are skipped).
#[derive(Clone)]
pub struct Templates {
    v4: Option<(IpAddr, Box<[u8; MAX_FRAME]>)>,
    v6: Option<(IpAddr, Box<[u8; MAX_FRAME]>)>,
}

impl Templates {
    pub fn new(ni: &NetInfo) -> Templates {
        let make = |src: IpAddr, gw_mac| {
            let mut t = Box::new([0u8; MAX_FRAME]);
            syn_template(&mut t, &Link { src_mac: ni.mac, gw_mac }, src, &SynStyle::of_this_host(src.is_ipv6()));
            (src, t)
        };
        Templates { v4: ni.src4.map(|s| make(s.into(), ni.gw4)), v6: ni.src6.map(|s| make(s.into(), ni.gw6)) }
    }

    #[inline]
    fn of(&self, ip: IpAddr) -> Option<&(IpAddr, Box<[u8; MAX_FRAME]>)> {
        match ip {
            IpAddr::V4(_) => self.v4.as_ref(),
            IpAddr::V6(_) => self.v6.as_ref(),
        }
    }

    /// Can probes to `ip`'s family be sent at all?
    #[inline]
    pub fn has_source(&self, ip: IpAddr) -> bool {
        self.of(ip).is_some()
    }
}

pub struct Batch<T: Transmit> {
    tx: T,
    frames: Box<[[u8; MAX_FRAME]; BATCH]>,
    lens: [usize; BATCH],
    templates: Templates,
    queued: [u64; BATCH],
    /// The send-log counter each queued probe leaves under.
    counters: [u64; BATCH],
    nq: usize,
    /// A counter ready for the next probe: reserved, its slot's last final attempt retired.
    spare: Option<u64>,
    /// The pacer has let one more frame go.
    paced: bool,
    /// Frames per `sendmmsg` now: at most the pacer's, smaller while many replies come back.
    pub size: usize,
    errors: u64,
}

impl<T: Transmit> Batch<T> {
    pub fn new(tx: T, templates: Templates, size: usize) -> Batch<T> {
        Batch { tx, frames: Box::new([[0u8; MAX_FRAME]; BATCH]), lens: [0; BATCH], templates, queued: [0; BATCH], counters: [0; BATCH], nq: 0, spare: None, paced: false, size: size.clamp(1, BATCH), errors: 0 }
    }

    pub fn templates(&self) -> &Templates {
        &self.templates
    }

    /// Frames the kernel refused.
    pub fn errors(&self) -> u64 {
        self.errors
    }

    pub fn transmitter(&self) -> &T {
        &self.tx
    }

    /// Wait for what the next probe's frame needs — a send-log slot that may be reused, the
    /// global pacer — before the keyed limits are asked about it. If the slot must wait for a
    /// probe's cooldown, the probes already approved leave first.
    #[inline]
    pub fn ready(&mut self, sh: &Shared, out: &Sender<Observation>) {
        let st = sh.st;
        if self.spare.is_none() {
            let c = st.log.reserve(1);
            if self.nq > 0 && silence::must_wait(st, c) {
                self.flush(sh, out);
            }
            silence::retire(st, c, sh.stop, out);
            self.spare = Some(c);
        }
        if !self.paced {
            sh.pacer.wait(1);
            self.paced = true;
        }
    }

    /// Queue probe `p` (approved after [`Batch::ready`]); true when the batch is full.
    #[inline]
    pub fn push(&mut self, p: u64) -> bool {
        let c = self.spare.take().expect("ready() before push()");
        self.paced = false;
        self.queued[self.nq] = p;
        self.counters[self.nq] = c;
        self.nq += 1;
        self.nq >= self.size
    }

    /// At the end of a pass: the slot reserved for a next probe stays empty (a slot reserved
    /// in one pass must not carry an attempt of the next, which may be the final one).
    pub fn release(&mut self, sh: &Shared) {
        if let Some(c) = self.spare.take() {
            sh.st.log.clear(c);
        }
    }

    /// Build and send the queued probes now; returns how many went out.
    pub fn flush(&mut self, sh: &Shared, out: &Sender<Observation>) -> usize {
        let n = self.nq;
        if n == 0 {
            return 0;
        }
        let st = sh.st;
        let slots = st.ports.slots();
        let now = st.elapsed_us();
        let attempt = st.pass.load(Relaxed);
        for j in 0..n {
            let (p, c) = (self.queued[j], self.counters[j]);
            let t = (p / slots) as usize;
            let ip = st.targets.ip(t);
            let (src, tmpl) = self.templates.of(ip).expect("queued only with a source address");
            let (port, _) = st.ports.port(st.targets.asn[t], p % slots);
            let slot = st.log.slot(c);
            let (sport, seq) = st.cookie.probe(ip, port, slot, attempt, st.ports.src_port(p % slots));
            let (ip_id, flow_label, ts_off) = st.cookie.disguise(ip, slot);
            st.log.put(c, p, now as u32);
            self.frames[j] = **tmpl;
            let tsval = ts_off.wrapping_add((now / 1000) as u32);
            self.lens[j] = fill_syn(&mut self.frames[j], &SynFields { src: *src, dst: ip, sport, dport: port, seq, ip_id, tsval, flow_label });
        }
        self.nq = 0;
        let failed = self.tx.transmit(&mut self.frames[..n], &self.lens[..n]);
        if failed != 0 {
            self.unsent(failed, n, sh, out);
        }
        let sent = n - failed.count_ones() as usize;
        st.c.sent.fetch_add(sent as u64, Relaxed);
        sent
    }

    /// Frames the kernel refused never left: a probe whose *final* attempt it was must not be
    /// recorded as silent (silence would read as filtering), so its send-log entry is dropped
    /// and it gets a row of its own, `unsent` — missing data, not a measurement. An earlier
    /// attempt's probe is simply sent again in the next pass.
    #[cold]
    fn unsent(&mut self, failed: u64, n: usize, sh: &Shared, out: &Sender<Observation>) {
        let st = sh.st;
        self.errors += failed.count_ones() as u64;
        for j in (0..n).filter(|j| failed & (1 << j) != 0) {
            let (p, c) = (self.queued[j], self.counters[j]);
            if !st.log.is_final(c) {
                continue;
            }
            st.log.clear(c);
            if st.mark(p) {
                let now = st.elapsed_us();
                let _ = out.send(Observation { sent: false, ..st.silence(p, now as u32, now) });
            }
        }
    }
}
