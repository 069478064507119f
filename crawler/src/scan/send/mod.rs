//! The send loop (ZMap's `send.c`): each sender thread walks its stride of the send order,
//! skips what is answered, checks every probe against the blocklist and opt-outs again (the
//! plan may predate the lists), defers what the per-AS and per-/24 limits hold back (never
//! dropping it), and hands the rest to its [`batch::Batch`]. Passes after the first resend only
//! the probes still silent.
//!
//! The deferred queue is bounded (a batch's worth per sender): when it is full the sender
//! stops taking new probes and waits for the limits to let deferred ones go. So a probe is held
//! back for at most the time its key needs to refill, the host's other ports stay close in
//! time, and no pass ends in a burst of everything the limits held back.
//!
//! - [`socket`]: the AF_PACKET socket and its `sendmmsg`;
//! - [`batch`]: SYNs built into a fixed array of frames, each with its send-log slot.

pub mod batch;
pub mod socket;

use super::order::Order;
use super::pace::{KeyedLimits, Pacer};
use super::record::Observation;
use super::silence;
use super::state::{sleep_unless, ScanState};
use super::Params;
use batch::{Batch, Templates};
use crossbeam_channel::Sender;
use datasets::blocklist::{Blocklist, Reason};
use socket::{Transmit, TxSocket};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// What every sender thread reads: the scan's state, the lists, the limits, the stop flag.
#[derive(Clone, Copy)]
pub struct Shared<'a> {
    pub st: &'a ScanState,
    pub block: &'a Blocklist,
    pub limits: &'a KeyedLimits,
    pub pacer: &'a Pacer,
    pub stop: &'a AtomicBool,
}

/// Batch size while replies flow: the reply path shares the sender's cores (measured on the
/// lab: 16 gave ~91 kpps where 64 gave 64–84 kpps with 55 % of probes answered, while into
/// a silent network 64 sends ~390 kpps against ~290 kpps for 16).
const RESPONSIVE_BATCH: usize = 16;

enum Outcome {
    Queued,
    Deferred,
    Skipped,
}

/// One sender thread's loop.
pub struct SendLoop<'a, T: Transmit = TxSocket> {
    sh: Shared<'a>,
    batch: Batch<T>,
    /// Probes the keyed limits held back, retried as their budgets refill; at most
    /// `deferred_cap`.
    deferred: VecDeque<u64>,
    deferred_cap: usize,
    /// The most probes the deferred queue held at once.
    pub deferred_peak: usize,
    /// Where probes whose final attempt's slot is reused are recorded as silent.
    out: Sender<Observation>,
    /// (sent, valid) when the batch size was last adapted.
    adapt: (u64, u64),
}

impl<'a, T: Transmit> SendLoop<'a, T> {
    pub fn new(sh: Shared<'a>, tx: T, templates: Templates, out: Sender<Observation>) -> SendLoop<'a, T> {
        let cap = sh.pacer.batch;
        SendLoop { sh, batch: Batch::new(tx, templates, sh.pacer.batch), deferred: VecDeque::with_capacity(cap), deferred_cap: cap, deferred_peak: 0, out, adapt: (0, 0) }
    }

    pub fn transmitter(&self) -> &T {
        self.batch.transmitter()
    }

    /// The most probes the deferred queue may hold.
    pub fn deferred_cap(&self) -> usize {
        self.deferred_cap
    }

    /// Frames the kernel refused.
    pub fn errors(&self) -> u64 {
        self.batch.errors()
    }

    /// Queue probe `p` into the batch (or defer/skip it); send full batches.
    #[inline]
    fn try_probe(&mut self, p: u64) -> Outcome {
        let st = self.sh.st;
        let t = (p / st.ports.slots()) as usize;
        let ip = st.targets.ip(t);
        // Blocklist and opt-out again at send time: the plan may predate the lists.
        if let Some(r) = self.sh.block.check(ip) {
            if st.mark(p) {
                match r {
                    Reason::Reserved => &st.c.skipped_reserved,
                    Reason::OptOut => &st.c.skipped_optout,
                    _ => &st.c.skipped_excluded,
                }
                .fetch_add(1, Relaxed);
            }
            return Outcome::Skipped;
        }
        if !self.batch.templates().has_source(ip) {
            if st.mark(p) {
                st.c.skipped_nosource.fetch_add(1, Relaxed);
            }
            return Outcome::Skipped;
        }
        // Any wait the frame needs comes first: the limits count it as leaving now.
        self.batch.ready(&self.sh, &self.out);
        if !self.sh.limits.allow(st.targets.asn[t], ip) {
            return Outcome::Deferred;
        }
        if self.batch.push(p) {
            self.flush();
        }
        Outcome::Queued
    }

    fn flush(&mut self) {
        self.batch.flush(&self.sh, &self.out);
    }

    /// Small batches while a large share of probes gets answered, full batches otherwise.
    fn adapt_batch(&mut self) {
        let c = &self.sh.st.c;
        let (sent, valid) = (c.sent.load(Relaxed), c.valid.load(Relaxed));
        let (ds, dv) = (sent - self.adapt.0, valid.saturating_sub(self.adapt.1));
        if ds >= 1024 {
            let busy = dv * 10 >= ds; // >= 10 % answered
            self.batch.size = if busy { self.sh.pacer.batch.min(RESPONSIVE_BATCH) } else { self.sh.pacer.batch };
            self.adapt = (sent, valid);
        }
    }

    /// Retry deferred probes; at most `budget` attempts so fresh probes keep flowing.
    fn service_deferred(&mut self, budget: usize) -> usize {
        let mut sent = 0;
        for _ in 0..budget.min(self.deferred.len()) {
            let Some(p) = self.deferred.pop_front() else { break };
            match self.try_probe(p) {
                Outcome::Deferred => self.deferred.push_back(p),
                Outcome::Queued => sent += 1,
                Outcome::Skipped => {}
            }
        }
        sent
    }

    /// Every few seconds: drop idle keyed-limit cells; and (first sender only) record as silent
    /// the final attempts that have waited too long in the send log (`silence::sweep_old`).
    fn housekeeping(&mut self, k: u64) {
        // Approved probes do not wait through it.
        self.flush();
        self.sh.limits.housekeeping();
        if k == 0 {
            silence::sweep_old(self.sh.st, &self.out);
        }
    }

    /// Hold `p` back until its keyed limits let it go; when the queue is full, wait for room
    /// (the pass takes no new probe meanwhile).
    fn defer(&mut self, p: u64, k: u64, last_house: &mut Instant) {
        self.deferred.push_back(p);
        self.deferred_peak = self.deferred_peak.max(self.deferred.len());
        while self.deferred.len() >= self.deferred_cap && !self.sh.stop.load(Relaxed) {
            if self.service_deferred(self.deferred.len()) == 0 {
                self.flush();
                std::thread::sleep(Duration::from_micros(500));
            }
            if last_house.elapsed() > Duration::from_secs(5) {
                self.housekeeping(k);
                *last_house = Instant::now();
            }
        }
    }

    /// One pass over the send order; sender `k` of `n` takes positions k, k+n, k+2n, ...
    /// The probes `AHEAD` positions on are computed early and their targets prefetched.
    /// Periodic work is keyed to this sender's own count `m`, so every sender does it.
    pub fn pass(&mut self, order: &Order, k: u64, n: u64) {
        const AHEAD: u64 = 16;
        let mut last_house = Instant::now();
        let count = order.len().saturating_sub(k).div_ceil(n);
        let st = self.sh.st;
        let slots = st.ports.slots();
        let mut ahead = [0u64; AHEAD as usize];
        let fetch = |m: u64, ahead: &mut [u64; AHEAD as usize]| {
            let p = order.probe(k + m * n);
            st.targets.prefetch((p / slots) as usize);
            ahead[(m % AHEAD) as usize] = p;
        };
        for m in 0..AHEAD.min(count) {
            fetch(m, &mut ahead);
        }
        for m in 0..count {
            if self.sh.stop.load(Relaxed) {
                break;
            }
            let p = ahead[(m % AHEAD) as usize];
            if m + AHEAD < count {
                fetch(m + AHEAD, &mut ahead);
            }
            if st.is_answered(p) {
                continue;
            }
            if let Outcome::Deferred = self.try_probe(p) {
                self.defer(p, k, &mut last_house);
            }
            if !self.deferred.is_empty() && (m & 63) == 0 {
                self.service_deferred(64);
            }
            if (m & 0xfff) == 0 {
                self.adapt_batch();
            }
            if (m & 0x3ff) == 0 && last_house.elapsed() > Duration::from_secs(5) {
                self.housekeeping(k);
                last_house = Instant::now();
            }
        }
        // Drain what the keyed limits held back, waiting for their budgets to refill.
        while !self.deferred.is_empty() && !self.sh.stop.load(Relaxed) {
            if last_house.elapsed() > Duration::from_secs(5) {
                self.housekeeping(k);
                last_house = Instant::now();
            }
            if self.service_deferred(self.deferred.len()) == 0 {
                self.flush();
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        self.flush();
        self.batch.release(&self.sh);
    }
}

/// Every pass of the scan: the first over all probes, then `retries` passes over those still
/// silent, each after `retry_delay` so the replies to the last pass had time to land. Several
/// sender threads (ZMap's -T) each take a disjoint stride of the order; pacing and keyed limits
/// are shared (governor's limiters are thread-safe). Returns the first pass's send rate.
pub fn run_passes<T: Transmit>(loops: &mut [SendLoop<T>], order: &Order, params: &Params) -> f64 {
    let Some(first) = loops.first() else { return 0.0 };
    let (st, stop) = (first.sh.st, first.sh.stop);
    let n = loops.len() as u64;
    let mut first_pass_pps = 0.0;
    for r in 0..=params.retries {
        if r > 0 {
            if stop.load(Relaxed) {
                break;
            }
            sleep_unless(stop, Duration::from_secs_f64(params.retry_delay));
            st.pass.store(r, Relaxed);
        }
        if r == params.retries {
            st.log.start_final_pass();
        }
        let t0 = Instant::now();
        if n == 1 {
            loops[0].pass(order, 0, 1);
        } else {
            std::thread::scope(|s| {
                for (k, l) in loops.iter_mut().enumerate() {
                    s.spawn(move || l.pass(order, k as u64, n));
                }
            });
        }
        if r == 0 {
            first_pass_pps = st.c.sent.load(Relaxed) as f64 / t0.elapsed().as_secs_f64().max(1e-9);
            tracing::debug!("scan: first pass took {:.3} s", t0.elapsed().as_secs_f64());
        }
    }
    first_pass_pps
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::route::NetInfo;
    use crate::probe::{ETH_LEN, MAX_FRAME};
    use crate::scan::{ports::PortPlan, sendlog::SendLog, targets::Targets, validate::Cookie};
    use std::net::{IpAddr, Ipv4Addr};
    use std::sync::{Arc, Mutex};

    /// Instead of a socket: the time and destination of every frame; with a state, the hosts
    /// `answers` picks answer at once (as if the receive loop had seen their replies).
    struct Wire(Arc<Mutex<Vec<(f64, Ipv4Addr)>>>, Instant, Option<Answers>);

    /// The scan's state and which hosts answer.
    type Answers = (Arc<ScanState>, fn(&Ipv4Addr) -> bool);

    impl Transmit for Wire {
        fn transmit(&mut self, frames: &mut [[u8; MAX_FRAME]], lens: &[usize]) -> u64 {
            let t = self.1.elapsed().as_secs_f64();
            let mut w = self.0.lock().unwrap();
            for f in &frames[..lens.len()] {
                let d = &f[ETH_LEN + 16..ETH_LEN + 20];
                let ip = Ipv4Addr::new(d[0], d[1], d[2], d[3]);
                w.push((t, ip));
                if let Some((st, answers)) = &self.2 {
                    let dport = u16::from_be_bytes([f[ETH_LEN + 22], f[ETH_LEN + 23]]);
                    let ti = st.targets.find(ip.into()).unwrap();
                    let slot = (0..st.ports.slots()).find(|s| st.ports.port(st.targets.asn[ti], *s).0 == dport).unwrap();
                    if answers(&ip) {
                        st.mark(ti as u64 * st.ports.slots() + slot);
                    }
                }
            }
            0
        }
    }

    #[test]
    fn every_sender_services_its_deferred_queue_and_sends_each_probe_once() {
        for senders in [1, 2, 4] {
            // 4096 targets in 16 /24s (256 each), port 25 only, 100 pps per /24: most probes must wait
            // for their /24's budget.
            let list: Vec<(IpAddr, u32)> = (0..4096u32).map(|i| (Ipv4Addr::new(198, 18, (i % 16) as u8, (i / 16) as u8).into(), 64500)).collect();
            let params = Params { ports: vec![25], control_ports: vec![], random_ports: 0, reflect_ports: vec![], retries: 0, rate: 0, asn_rate: 0, net_rate: 100, ..Default::default() };
            let ports = Arc::new(PortPlan::new(&params, (1, 2)).unwrap());
            let st = ScanState::new(Arc::new(Targets::from_list(&list)), ports, Cookie::new(1, 2), SendLog::new(1 << 14), 1_000_000);
            let block = Blocklist::with_iana(&["198.18.0.0/15".parse().unwrap()]);
            let (limits, pacer, stop) = (KeyedLimits::new(0, 100), Pacer::new(0), AtomicBool::new(false));
            let sh = Shared { st: &st, block: &block, limits: &limits, pacer: &pacer, stop: &stop };
            let ni = NetInfo { ifname: "lab0".into(), ifindex: 0, mac: [2, 0, 0, 0, 0, 1], src4: Some(Ipv4Addr::new(192, 0, 2, 2)), src6: None, gw4: [2, 0, 0, 0, 0, 2], gw6: [0; 6] };
            let (out, _silent) = crossbeam_channel::unbounded();
            let wire = Arc::new(Mutex::new(Vec::new()));
            let t0 = Instant::now();
            let mut loops: Vec<SendLoop<Wire>> = (0..senders).map(|_| SendLoop::new(sh, Wire(wire.clone(), t0, None), Templates::new(&ni), out.clone())).collect();
            run_passes(&mut loops, &Order::new(4096, 1, 7), &params);
            let wire = wire.lock().unwrap();
            let distinct: std::collections::HashSet<_> = wire.iter().map(|x| x.1).collect();
            assert_eq!((wire.len(), distinct.len()), (4096, 4096), "{senders} senders: every probe exactly once");
            for l in &loops {
                assert!(l.deferred_peak <= l.deferred_cap, "{senders} senders: a deferred queue held {} probes (cap {})", l.deferred_peak, l.deferred_cap);
            }
            for net in 0..16u8 {
                let t: Vec<f64> = wire.iter().filter(|x| x.1.octets()[2] == net).map(|x| x.0).collect();
                let mut j = 0;
                let worst = (0..t.len())
                    .map(|i| {
                        while j < t.len() && t[j] < t[i] + 1.0 {
                            j += 1;
                        }
                        j - i
                    })
                    .max()
                    .unwrap();
                // At most the rate plus the burst (a twentieth), and the limit was reached: a
                // /24's 256 probes cannot all go out within one second.
                assert!((90..=105).contains(&worst), "{senders} senders: {worst} probes to 198.18.{net}.0/24 within a second at 100 pps");
            }
            println!("{senders} senders: 4096 probes in {:.2} s, deferred queue peaks {:?}", t0.elapsed().as_secs_f64(), loops.iter().map(|l| l.deferred_peak).collect::<Vec<_>>());
        }
    }

    /// Run one pass of `list` with `senders` threads into a [`Wire`]: every frame's transmit
    /// time and destination (sorted by time), and the longest any frame left after its probe
    /// was let go by the keyed limits (seconds; one port per host, so one approval per address).
    fn wire_run(list: &[(IpAddr, u32)], params: &Params, senders: usize, log: usize, cooldown_us: u32, answers: fn(&Ipv4Addr) -> bool) -> (Vec<(f64, Ipv4Addr)>, f64) {
        let ports = Arc::new(PortPlan::new(params, (1, 2)).unwrap());
        let st = Arc::new(ScanState::new(Arc::new(Targets::from_list(list)), ports, Cookie::new(1, 2), SendLog::new(log), cooldown_us));
        let block = Blocklist::with_iana(&["198.18.0.0/15".parse().unwrap()]);
        let (limits, pacer, stop) = (KeyedLimits::new(params.asn_rate, params.net_rate), Pacer::new(params.rate), AtomicBool::new(false));
        let sh = Shared { st: &st, block: &block, limits: &limits, pacer: &pacer, stop: &stop };
        let ni = NetInfo { ifname: "lab0".into(), ifindex: 0, mac: [2, 0, 0, 0, 0, 1], src4: Some(Ipv4Addr::new(192, 0, 2, 2)), src6: None, gw4: [2, 0, 0, 0, 0, 2], gw6: [0; 6] };
        let (out, silent) = crossbeam_channel::unbounded();
        let wire = Arc::new(Mutex::new(Vec::new()));
        let t0 = Instant::now();
        let mut loops: Vec<SendLoop<Wire>> = (0..senders).map(|_| SendLoop::new(sh, Wire(wire.clone(), t0, Some((st.clone(), answers))), Templates::new(&ni), out.clone())).collect();
        let slots = st.ports.slots();
        assert_eq!(slots, 1, "one port per host");
        run_passes(&mut loops, &Order::new(list.len() as u64, slots, 7), params);
        drop(loops);
        drop(out);
        let mut w = std::mem::take(&mut *wire.lock().unwrap());
        w.sort_by(|a, b| a.0.total_cmp(&b.0));
        let distinct: std::collections::HashSet<_> = w.iter().map(|x| x.1).collect();
        assert_eq!((w.len(), distinct.len()), (list.len(), list.len()), "every probe exactly once");
        // Every probe whose slot was reused was recorded as silent once, none twice.
        let retired: Vec<_> = silent.try_iter().collect();
        let once: std::collections::HashSet<_> = retired.iter().map(|o| o.probe).collect();
        assert_eq!(once.len(), retired.len(), "a probe recorded silent twice");
        let approved: std::collections::HashMap<IpAddr, f64> = limits.approved.lock().unwrap().iter().map(|(t, ip)| (*ip, t.duration_since(t0).as_secs_f64())).collect();
        let late = w.iter().map(|(t, ip)| t - approved[&IpAddr::V4(*ip)]).fold(0.0, f64::max);
        (w, late)
    }

    /// The busiest 1-s window of each group of frames.
    fn worst_by<K: std::hash::Hash + Eq>(w: &[(f64, Ipv4Addr)], key: impl Fn(&Ipv4Addr) -> K) -> usize {
        let mut g: std::collections::HashMap<K, Vec<f64>> = Default::default();
        for (t, ip) in w {
            g.entry(key(ip)).or_default().push(*t);
        }
        g.values().map(|t| crate::scan::pace::tests::busiest(t)).max().unwrap_or(0)
    }

    #[test]
    fn keyed_limits_hold_when_frames_leave_with_a_small_send_log() {
        // 2048 hosts in 16 /24s at 100 pps each, 4 senders, a 1,024-slot send log and a 2-s
        // cooldown: every send is a final attempt, so reusing a slot waits for its probe's
        // cooldown (the log caps the pass near 500 pps). A probe let go by the /24 limit must
        // leave then, not after such a wait, in one clump with probes let go later.
        let list: Vec<(IpAddr, u32)> = (0..2048u32).map(|i| (Ipv4Addr::new(198, 18, (i % 16) as u8, (i / 16) as u8).into(), 64500)).collect();
        let params = Params { ports: vec![25], control_ports: vec![], random_ports: 0, reflect_ports: vec![], retries: 0, rate: 0, asn_rate: 0, net_rate: 100, ..Default::default() };
        let (w, late) = wire_run(&list, &params, 4, 1024, 2_000_000, |_| false);
        let took = w.last().unwrap().0;
        let worst = worst_by(&w, |ip| ip.octets()[2]);
        println!("small send log: 2048 probes from 4 senders in {took:.2} s; a frame left at most {:.1} ms after its /24 let it go; busiest 1-s window of a /24 at transmit: {worst} (limit 100 + burst 5)", late * 1e3);
        assert!(took > 2.0, "the send log should have held the pass back ({took:.2} s)");
        // Nothing sleeps between the two; the slack is for a preempted thread on a busy machine.
        assert!(late < 0.1, "a frame left {:.0} ms after the /24 limit let it go", late * 1e3);
        assert!(worst <= 105, "{worst} frames to one /24 left within a second at 100 pps");
    }

    #[test]
    fn keyed_limits_hold_when_frames_leave_at_high_rates() {
        // 4 ASes at 20,000 pps each and 200,000 pps globally (paced), 4 senders: each AS's
        // busiest second at transmit stays within its limit + 5 %, every frame leaves within
        // milliseconds of its approval.
        let list: Vec<(IpAddr, u32)> = (0..96_000u32).map(|i| (Ipv4Addr::from(0xc612_0000 + i).into(), 64500 + i % 4)).collect();
        let params = Params { ports: vec![25], control_ports: vec![], random_ports: 0, reflect_ports: vec![], retries: 0, rate: 200_000, asn_rate: 20_000, net_rate: 0, ..Default::default() };
        let (w, late) = wire_run(&list, &params, 4, 1 << 17, 1_000_000, |_| false);
        let asn = |ip: &Ipv4Addr| u32::from(*ip) % 4;
        let (worst_as, global) = (worst_by(&w, asn), worst_by(&w, |_| 0));
        println!("high rate: {} probes in {:.2} s; a frame left at most {:.1} ms after approval; busiest 1-s window: an AS {worst_as} (limit 20,000), all {global} (limit 200,000)", w.len(), w.last().unwrap().0, late * 1e3);
        assert!(late < 0.1, "a frame left {:.0} ms after the AS limit let it go", late * 1e3);
        assert!(worst_as <= 21_000, "{worst_as} frames to one AS within a second at 20,000 pps");
        assert!(worst_as >= 18_000, "the AS limit was never reached ({worst_as}): the test would not see a breach");
        assert!(global <= 210_000, "{global} frames within a second at 200,000 pps");
    }
}
