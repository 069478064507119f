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
    pub fn new(asn_pps: u64, net_pps: u64) -> KeyedLimits {
        let q = |r: u64| NonZeroU32::new(r.min(u32::MAX as u64) as u32).map(Quota::per_second);
        KeyedLimits { asn: q(asn_pps).map(RateLimiter::keyed), net: q(net_pps).map(RateLimiter::keyed) }
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
