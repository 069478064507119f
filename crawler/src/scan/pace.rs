//! Politeness: a global packets-per-second limit (governor, paced per batch so the rate is
//! exact over any second without a timer per packet) and keyed per-ASN and per-network
//! limits (per /24 for IPv4, per /48 for IPv6). A probe over its key's limit is deferred by
//! the sender, never dropped.

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::net::IpAddr;
use std::num::NonZeroU32;

pub struct Pacer {
    global: Option<DefaultDirectRateLimiter>,
    clock: DefaultClock,
    /// Frames per `sendmmsg`: small at low rates so bursts stay within the 1-s accuracy.
    pub batch: usize,
}

impl Pacer {
    pub fn new(pps: u64) -> Pacer {
        let batch = if pps == 0 { super::send::socket::BATCH } else { (pps / 2000).clamp(1, super::send::socket::BATCH as u64) as usize };
        // A 10 ms burst allowance: time lost oversleeping is made up at once, while any 1-s
        // window still holds at most rate × 1.01 packets.
        let burst = (batch as u64).max(pps / 100).min(u32::MAX as u64) as u32;
        let global = NonZeroU32::new(pps.min(u32::MAX as u64) as u32).map(|r| RateLimiter::direct(Quota::per_second(r).allow_burst(NonZeroU32::new(burst).unwrap())));
        Pacer { global, clock: DefaultClock::default(), batch }
    }

    /// Block until `n` more packets may go out.
    pub fn wait(&self, n: usize) {
        let Some(g) = &self.global else { return };
        let n = NonZeroU32::new(n as u32).unwrap_or(NonZeroU32::MIN);
        loop {
            match g.check_n(n) {
                Ok(Ok(())) => return,
                Ok(Err(not_until)) => {
                    let d = not_until.wait_time_from(self.clock.now());
                    if d.as_micros() > 50 {
                        std::thread::sleep(d);
                    } else {
                        std::hint::spin_loop();
                    }
                }
                Err(_) => return, // n > burst cannot happen: batch never exceeds the burst
            }
        }
    }
}

pub struct KeyedLimits {
    asn: Option<DefaultKeyedRateLimiter<u32>>,
    net: Option<DefaultKeyedRateLimiter<u128>>,
    /// When each probe was let go, for the send loop's tests to compare with when its frame
    /// left.
    #[cfg(test)]
    pub approved: std::sync::Mutex<Vec<(std::time::Instant, IpAddr)>>,
}

/// The per-network key: the /24 of an IPv4 address, the /48 of an IPv6 one.
#[inline]
pub fn net_key(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => (u32::from(a) >> 8) as u128,
        IpAddr::V6(a) => (u128::from(a) >> 80) | (1u128 << 127),
    }
}

impl KeyedLimits {
    /// The burst allowance is a twentieth of the rate: governor's default (a full second's
    /// worth) lets a full burst and a full second's rate land in the same second — 39 SYNs to
    /// one /24 in a second at "20 pps" — while "20 pps per /24" must mean it (± 5 %).
    pub fn new(asn_pps: u64, net_pps: u64) -> KeyedLimits {
        let q = |r: u64| {
            let rate = NonZeroU32::new(r.min(u32::MAX as u64) as u32)?;
            Some(Quota::per_second(rate).allow_burst(NonZeroU32::new((rate.get() / 20).max(1)).expect("at least 1")))
        };
        KeyedLimits {
            asn: q(asn_pps).map(RateLimiter::keyed),
            net: q(net_pps).map(RateLimiter::keyed),
            #[cfg(test)]
            approved: Default::default(),
        }
    }

    /// May a probe to (asn, ip) go now? Checks the narrower key first, so a deferral on the
    /// /24 does not spend the AS's budget.
    #[inline]
    pub fn allow(&self, asn: u32, ip: IpAddr) -> bool {
        if let Some(n) = &self.net {
            if n.check_key(&net_key(ip)).is_err() {
                return false;
            }
        }
        if let Some(a) = &self.asn {
            if a.check_key(&asn).is_err() {
                return false;
            }
        }
        #[cfg(test)]
        self.approved.lock().unwrap().push((std::time::Instant::now(), ip));
        true
    }

    /// Keyed limiters keep a cell per key seen: drop the idle ones now and then (governor#171).
    pub fn housekeeping(&self) {
        if let Some(n) = &self.net {
            n.retain_recent();
            n.shrink_to_fit();
        }
        if let Some(a) = &self.asn {
            a.retain_recent();
            a.shrink_to_fit();
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// The most events in any 1-s window (times in seconds, sorted).
    pub(crate) fn busiest(t: &[f64]) -> usize {
        let mut j = 0;
        (0..t.len())
            .map(|i| {
                while j < t.len() && t[j] < t[i] + 1.0 {
                    j += 1;
                }
                j - i
            })
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn a_keyed_limit_holds_over_every_second() {
        // Asked as fast as possible for 1.3 s, a /24 at 20 pps and an AS at 1000 pps.
        let (per_net, per_asn) = (KeyedLimits::new(0, 20), KeyedLimits::new(1000, 0));
        let (t0, mut net, mut asn) = (Instant::now(), vec![], vec![]);
        while t0.elapsed() < Duration::from_millis(1300) {
            if per_net.allow(7, "198.18.0.1".parse().unwrap()) {
                net.push(t0.elapsed().as_secs_f64());
            }
            if per_asn.allow(8, "198.18.0.1".parse().unwrap()) {
                asn.push(t0.elapsed().as_secs_f64());
            }
        }
        let (n, a) = (busiest(&net), busiest(&asn));
        assert!(n <= 21, "{n} probes to one /24 within a second at 20 pps");
        assert!(a <= 1050, "{a} probes to one AS within a second at 1000 pps");
        assert!(n >= 19 && a >= 900, "the limits let too little through: {n}, {a}");
    }

    #[test]
    fn the_pacer_holds_the_global_rate() {
        let p = Pacer::new(5000);
        let (t0, mut t) = (Instant::now(), vec![]);
        while t0.elapsed() < Duration::from_millis(1500) {
            p.wait(p.batch);
            for _ in 0..p.batch {
                t.push(t0.elapsed().as_secs_f64());
            }
        }
        let worst = busiest(&t);
        assert!(worst <= 5050, "{worst} packets within a second at 5000 pps");
        assert!(worst >= 4000, "only {worst} packets within a second at 5000 pps");
    }
}
