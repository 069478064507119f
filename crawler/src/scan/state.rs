//! What the send and receive loops share while a scan runs — atomics only, no locks on the hot
//! paths: the plan and probe set, the cookie key, one *answered* bit per probe, the send log,
//! the pass number, the clock and the counters.

use super::ports::PortPlan;
use super::record::Observation;
use super::sendlog::SendLog;
use super::targets::Targets;
use super::validate::Cookie;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

pub fn unix_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64)
}

/// One anchor for both clocks: monotonic elapsed time maps onto wall time from here, and the
/// kernel's receive stamps (wall time) map back onto it.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start: Instant,
    pub start_us: i64,
}

impl Clock {
    pub fn now() -> Clock {
        Clock { start: Instant::now(), start_us: unix_us() }
    }
    /// µs since the scan started (monotonic).
    #[inline]
    pub fn elapsed_us(&self) -> i64 {
        self.start.elapsed().as_micros() as i64
    }
    /// Absolute send time of a wrapping 32-bit send tick, seen at elapsed `now`.
    #[inline]
    pub fn sent_us(&self, tick: u32, now: i64) -> i64 {
        let age = (now as u32).wrapping_sub(tick);
        self.start_us + now - age as i64
    }
}

/// Counters shared by the loops.
#[derive(Default)]
pub struct Counters {
    pub sent: AtomicU64,
    pub frames: AtomicU64,
    pub valid: AtomicU64,
    pub invalid: AtomicU64,
    pub stale: AtomicU64,
    pub dup: AtomicU64,
    pub skipped_reserved: AtomicU64,
    pub skipped_optout: AtomicU64,
    pub skipped_excluded: AtomicU64,
    pub skipped_nosource: AtomicU64,
}

pub struct ScanState {
    pub targets: Arc<Targets>,
    pub ports: Arc<PortPlan>,
    pub cookie: Cookie,
    answered: Vec<AtomicU64>,
    pub log: SendLog,
    /// A final attempt's slot is not reused before this much time (µs) has passed.
    pub cooldown_us: u32,
    /// The pass now being sent (0 = first attempts).
    pub pass: AtomicU8,
    pub clock: Clock,
    pub c: Counters,
    /// Tells the receive loop to drain and stop.
    pub stop_rx: AtomicBool,
}

impl ScanState {
    pub fn new(targets: Arc<Targets>, ports: Arc<PortPlan>, cookie: Cookie, log: SendLog, cooldown_us: u32) -> ScanState {
        let probes = targets.len() as u64 * ports.slots();
        ScanState {
            targets,
            ports,
            cookie,
            answered: (0..probes.div_ceil(64)).map(|_| AtomicU64::new(0)).collect(),
            log,
            cooldown_us,
            pass: AtomicU8::new(0),
            clock: Clock::now(),
            c: Counters::default(),
            stop_rx: AtomicBool::new(false),
        }
    }

    pub fn probes(&self) -> u64 {
        self.targets.len() as u64 * self.ports.slots()
    }

    #[inline]
    pub fn elapsed_us(&self) -> i64 {
        self.clock.elapsed_us()
    }

    #[inline]
    pub fn is_answered(&self, p: u64) -> bool {
        self.answered[(p >> 6) as usize].load(Relaxed) & (1 << (p & 63)) != 0
    }

    /// Set the bit; true if this call set it.
    #[inline]
    pub fn mark(&self, p: u64) -> bool {
        self.answered[(p >> 6) as usize].fetch_or(1 << (p & 63), Relaxed) & (1 << (p & 63)) == 0
    }

    /// The row of a probe that stayed silent after the attempts sent so far; `tick` is its
    /// last attempt's send tick.
    pub fn silence(&self, probe: u64, tick: u32, now: i64) -> Observation {
        let attempts = self.pass.load(Relaxed) + 1;
        let (slots, slot) = (self.ports.slots(), probe % self.ports.slots());
        let ip = self.targets.ip((probe / slots) as usize);
        let (sport, _) = self.cookie.probe(ip, self.ports.port(ip, slot).0, 0, attempts - 1, self.ports.src_port(slot));
        Observation { probe, attempts, sport, sent_us: self.clock.sent_us(tick, now), reply: None, recv_us: 0, sent: true }
    }
}

/// Sleep for `d`, waking early when `stop` is set.
pub fn sleep_unless(stop: &AtomicBool, d: std::time::Duration) {
    let end = Instant::now() + d;
    while Instant::now() < end && !stop.load(Relaxed) {
        std::thread::sleep(std::time::Duration::from_millis(20).min(end.saturating_duration_since(Instant::now())));
    }
}
