//! Who may connect: caps on connections open at once — all clients together, per client (an
//! IPv4 address or an IPv6 /64) and per IPv6 /48 (one holder of a /48 has 65,536 /64s) — and
//! rates of new connections per client and per /48 (governor's keyed limiters, so a client
//! that opens and closes connections as fast as it can is held too). A slot is released when
//! its connection's record has been handed to the recorder.

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Whose connections count together: an IPv4 address, or an IPv6 /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Client {
    V4(u32),
    V6Net(u64),
}

impl Client {
    pub fn of(ip: IpAddr) -> Client {
        match ip.to_canonical() {
            IpAddr::V4(a) => Client::V4(a.into()),
            IpAddr::V6(a) => Client::V6Net((u128::from(a) >> 64) as u64),
        }
    }

    /// The /48 an IPv6 client is in.
    fn net48(self) -> Option<u64> {
        match self {
            Client::V4(_) => None,
            Client::V6Net(n) => Some(n >> 16),
        }
    }
}

impl std::fmt::Display for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Client::V4(a) => write!(f, "{}", std::net::Ipv4Addr::from(*a)),
            Client::V6Net(n) => write!(f, "{}/64", std::net::Ipv6Addr::from((*n as u128) << 64)),
        }
    }
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `--max-conns` open already.
    Busy,
    /// `--max-per-client` open already from this client.
    ClientBusy,
    /// `--max-per-net` open already from this /48.
    NetBusy,
    /// Over `--client-rate` new connections.
    ClientRate,
    /// Over `--net-rate` new connections from this /48.
    NetRate,
}

impl Refusal {
    pub const ALL: [Refusal; 5] = [Refusal::Busy, Refusal::ClientBusy, Refusal::NetBusy, Refusal::ClientRate, Refusal::NetRate];

    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Busy => "busy",
            Refusal::ClientBusy => "client-busy",
            Refusal::NetBusy => "net-busy",
            Refusal::ClientRate => "client-rate",
            Refusal::NetRate => "net-rate",
        }
    }
}

/// The bounds (see `crawler sink --help`).
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub max_conns: usize,
    pub per_client: u32,
    pub per_net: u32,
    /// New connections per second and burst, per client and per /48; a rate of 0: no limit.
    pub client_rate: (u32, u32),
    pub net_rate: (u32, u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Held {
    Client(Client),
    Net(u64),
}

pub struct Limits {
    b: Bounds,
    active: AtomicUsize,
    peak: AtomicUsize,
    // Entries exist only while a slot is held, so the map never outgrows 2 × `max_conns`.
    held: Mutex<HashMap<Held, u32>>,
    client_rate: Option<DefaultKeyedRateLimiter<Client>>,
    net_rate: Option<DefaultKeyedRateLimiter<u64>>,
}

/// A held slot; dropping it frees it.
pub struct Slot {
    limits: Arc<Limits>,
    client: Client,
}

fn keyed<K: std::hash::Hash + Eq + Clone>((rate, burst): (u32, u32)) -> Option<DefaultKeyedRateLimiter<K>> {
    let r = NonZeroU32::new(rate)?;
    Some(RateLimiter::keyed(Quota::per_second(r).allow_burst(NonZeroU32::new(burst.max(1)).expect("at least 1"))))
}

impl Limits {
    pub fn new(b: Bounds) -> Arc<Limits> {
        Arc::new(Limits { b, active: AtomicUsize::new(0), peak: AtomicUsize::new(0), held: Mutex::new(HashMap::new()), client_rate: keyed(b.client_rate), net_rate: keyed(b.net_rate) })
    }

    /// A slot for a new connection from `ip`, or why not. The caps are checked before the
    /// rates, so a connection refused for a cap spends no rate budget.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Refusal> {
        let client = Client::of(ip);
        let net = client.net48();
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let count = |k: Held| held.get(&k).copied().unwrap_or(0);
        if self.active.load(Ordering::Relaxed) >= self.b.max_conns {
            return Err(Refusal::Busy);
        }
        if count(Held::Client(client)) >= self.b.per_client {
            return Err(Refusal::ClientBusy);
        }
        if net.is_some_and(|n| count(Held::Net(n)) >= self.b.per_net) {
            return Err(Refusal::NetBusy);
        }
        if self.client_rate.as_ref().is_some_and(|l| l.check_key(&client).is_err()) {
            return Err(Refusal::ClientRate);
        }
        if let (Some(l), Some(n)) = (&self.net_rate, net) {
            if l.check_key(&n).is_err() {
                return Err(Refusal::NetRate);
            }
        }
        *held.entry(Held::Client(client)).or_insert(0) += 1;
        if let Some(n) = net {
            *held.entry(Held::Net(n)).or_insert(0) += 1;
        }
        let now = self.active.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak.fetch_max(now, Ordering::Relaxed);
        Ok(Slot { limits: self.clone(), client })
    }

    /// The rate limiters keep a cell per key seen: drop those back at full budget (governor#171).
    pub fn housekeeping(&self) {
        if let Some(l) = &self.client_rate {
            l.retain_recent();
            l.shrink_to_fit();
        }
        if let Some(l) = &self.net_rate {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }

    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }
    /// Clients and /48s holding slots now (the size of the table of held slots).
    pub fn held_keys(&self) -> usize {
        self.held.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
    /// Keys the rate limiters remember now.
    pub fn rate_keys(&self) -> usize {
        self.client_rate.as_ref().map_or(0, |l| l.len()) + self.net_rate.as_ref().map_or(0, |l| l.len())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self.limits.held.lock().unwrap_or_else(|p| p.into_inner());
        let keys = [Some(Held::Client(self.client)), self.client.net48().map(Held::Net)];
        for k in keys.into_iter().flatten() {
            if let Some(n) = held.get_mut(&k) {
                *n -= 1;
                if *n == 0 {
                    held.remove(&k);
                }
            }
        }
        self.limits.active.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const NO_RATE: (u32, u32) = (0, 0);

    #[test]
    fn caps_per_client_per_48_and_globally_and_frees_on_drop() {
        let l = Limits::new(Bounds { max_conns: 3, per_client: 2, per_net: 100, client_rate: NO_RATE, net_rate: NO_RATE });
        let a = ip("192.0.2.1");
        let s1 = l.admit(a).unwrap();
        let s2 = l.admit(a).unwrap();
        assert_eq!(l.admit(a).err(), Some(Refusal::ClientBusy));
        let _v6a = l.admit(ip("2001:db8::1")).unwrap();
        assert_eq!(l.admit(ip("2001:db8:1::1")).err(), Some(Refusal::Busy));
        drop(s1);
        let _v6b = l.admit(ip("2001:db8::2")).unwrap();
        drop(s2);
        // One /64 is one client: a third address in it is over the per-client cap.
        assert_eq!(l.admit(ip("2001:db8::3")).err(), Some(Refusal::ClientBusy));
        assert_eq!((l.active(), l.peak(), l.held_keys()), (2, 3, 2));

        // A /48 holder cannot take more than --max-per-net with its 65,536 /64s.
        let l = Limits::new(Bounds { max_conns: 1000, per_client: 2, per_net: 5, client_rate: NO_RATE, net_rate: NO_RATE });
        let held: Vec<Slot> = (0..5).map(|i| l.admit(ip(&format!("2001:db8:48:{i:x}::1"))).unwrap()).collect();
        assert_eq!(l.admit(ip("2001:db8:48:ff::1")).err(), Some(Refusal::NetBusy));
        assert!(l.admit(ip("2001:db8:49::1")).is_ok(), "another /48 is another network");
        drop(held);
        assert!(l.admit(ip("2001:db8:48:ff::1")).is_ok());
    }

    #[test]
    fn new_connections_are_rate_limited_per_client_and_per_48() {
        let l = Limits::new(Bounds { max_conns: 10_000, per_client: 10_000, per_net: 10_000, client_rate: (1, 3), net_rate: (1, 10) });
        // A client that closes each connection at once still gets its burst, then no more.
        let got = (0..10).filter(|_| l.admit(ip("192.0.2.7")).is_ok()).count();
        assert_eq!(got, 3);
        assert_eq!(l.admit(ip("192.0.2.7")).err(), Some(Refusal::ClientRate));
        assert!(l.admit(ip("192.0.2.8")).is_ok(), "another address has its own budget");
        // 100 /64s of one /48: each within its own budget, the /48 holds them to 10.
        let got = (0..100).filter(|i| l.admit(ip(&format!("2001:db8:48:{i:x}::1"))).is_ok()).count();
        assert_eq!(got, 10);
        assert_eq!(l.admit(ip("2001:db8:48:ffff::1")).err(), Some(Refusal::NetRate));
        assert_eq!(l.active(), 0, "refused and closed connections hold nothing");
        l.housekeeping();
    }
}
