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

/// A change of the wall−monotonic offset larger than this between two receive blocks (a few ms
/// apart) is a step, not NTP's slewing (at most 0.5 ms a second).
pub const CLOCK_STEP_US: i64 = 50_000;

pub fn unix_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64)
}

/// One clock base for the whole scan: monotonic time since the start. Send times are monotonic
/// ticks; the kernel stamps replies with wall-clock time, which is mapped back onto monotonic
/// time through the wall−monotonic offset *at the time the stamp is read* (so a wall-clock step
/// during the crawl — NTP, an operator — never distorts an RTT). Times written to the output
/// are `start_us` (the wall clock at the start) plus monotonic time.
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
    /// The wall clock minus monotonic time now (µs); it changes only when the wall clock is
    /// stepped (or slewed, by at most a few hundred µs a second).
    #[inline]
    pub fn wall_offset(&self) -> i64 {
        unix_us() - self.elapsed_us()
    }

    /// Monotonic time (µs since the start) of a kernel receive stamp, given the wall−monotonic
    /// offset read close to when the packet arrived.
    #[inline]
    pub fn stamp_to_elapsed(stamp_us: i64, wall_offset: i64) -> i64 {
        stamp_us - wall_offset
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
    /// Frames whose IPv4-header, TCP or ICMP checksum was wrong (dropped).
    pub bad_checksum: AtomicU64,
    /// RSTs without the ACK bit (a stack that answers a SYN so breaks RFC 793: a middlebox?).
    pub rst_without_ack: AtomicU64,
    /// Replies with IPv6 extension headers.
    pub ipv6_ext: AtomicU64,
    /// Receive-ring blocks whose header fields did not add up.
    pub corrupt_blocks: AtomicU64,
    /// Wall-clock steps seen during the scan (the wall−monotonic offset jumped by more than
    /// `CLOCK_STEP_US` between two receive blocks); RTTs stay right, see `Clock`.
    pub clock_steps: AtomicU64,
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
        let t = (probe / slots) as usize;
        let ip = self.targets.ip(t);
        let (sport, _) = self.cookie.probe(ip, self.ports.port(self.targets.asn[t], slot).0, 0, attempts - 1, self.ports.src_port(slot));
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

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn a_wall_clock_step_does_not_move_rtts() {
        // The scan started at wall time W; 0.5 s later (monotonic) the wall clock is stepped
        // forward by an hour; a reply arrives 99 ms after a probe sent at 0.4 s.
        let c = Clock { start: Instant::now(), start_us: 1_800_000_000_000_000 };
        let step = 3_600_000_000;
        let sent_tick = 400_000u32;
        let arrival_mono = 499_000;
        let stamp = c.start_us + arrival_mono + step; // what the kernel stamps: wall time
        let offset_now = c.start_us + step; // wall − monotonic, read when the block is read
        let now = Clock::stamp_to_elapsed(stamp, offset_now);
        assert_eq!(now, arrival_mono);
        assert_eq!(c.start_us + now - c.sent_us(sent_tick, now), 99_000);
        // Mapped with the start's offset instead (the old way), the RTT is an hour off.
        let old = stamp - c.start_us;
        assert_ne!(c.start_us + old - c.sent_us(sent_tick, old), 99_000);
    }
}
