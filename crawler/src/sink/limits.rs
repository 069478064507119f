//! Connection slots: a global cap and a per-client cap, so one host (or one IPv6 /64, which
//! any single customer usually holds) cannot take the sink for itself. A slot is released when
//! its connection's record has been handed to the recorder.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Whose connections count together: an IPv4 address, or an IPv6 /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Client {
    V4(u32),
    V6Net(u64),
}

fn client_key(ip: IpAddr) -> Client {
    match ip.to_canonical() {
        IpAddr::V4(a) => Client::V4(a.into()),
        IpAddr::V6(a) => Client::V6Net((u128::from(a) >> 64) as u64),
    }
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Busy {
    Global,
    Client,
}

pub struct Limits {
    max_conns: usize,
    max_per_client: u32,
    active: AtomicUsize,
    peak: AtomicUsize,
    busy: AtomicU64,
    // Entries exist only while a client holds a slot, so the map never outgrows `max_conns`.
    per_client: Mutex<HashMap<Client, u32>>,
}

/// A held slot; dropping it frees it.
pub struct Slot {
    limits: Arc<Limits>,
    key: Client,
}

impl Limits {
    pub fn new(max_conns: usize, max_per_client: u32) -> Arc<Limits> {
        Arc::new(Limits { max_conns, max_per_client, active: AtomicUsize::new(0), peak: AtomicUsize::new(0), busy: AtomicU64::new(0), per_client: Mutex::new(HashMap::new()) })
    }

    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Busy> {
        let key = client_key(ip);
        let mut map = self.per_client.lock().unwrap_or_else(|p| p.into_inner());
        let busy = if self.active.load(Ordering::Relaxed) >= self.max_conns {
            Some(Busy::Global)
        } else if map.get(&key).copied().unwrap_or(0) >= self.max_per_client {
            Some(Busy::Client)
        } else {
            None
        };
        if let Some(b) = busy {
            self.busy.fetch_add(1, Ordering::Relaxed);
            return Err(b);
        }
        *map.entry(key).or_insert(0) += 1;
        let now = self.active.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak.fetch_max(now, Ordering::Relaxed);
        Ok(Slot { limits: self.clone(), key })
    }

    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }
    pub fn busy(&self) -> u64 {
        self.busy.load(Ordering::Relaxed)
    }
    /// Clients holding slots now (the size of the per-client table).
    pub fn clients(&self) -> usize {
        self.per_client.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut map = self.limits.per_client.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.key);
            }
        }
        self.limits.active.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_per_client_and_globally_and_frees_on_drop() {
        let l = Limits::new(3, 2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let s1 = l.admit(a).unwrap();
        let s2 = l.admit(a).unwrap();
        assert_eq!(l.admit(a).err(), Some(Busy::Client));
        let _v6a = l.admit("2001:db8::1".parse().unwrap()).unwrap();
        assert_eq!(l.admit("2001:db8:1::1".parse().unwrap()).err(), Some(Busy::Global));
        drop(s1);
        let _v6b = l.admit("2001:db8::2".parse().unwrap()).unwrap();
        drop(s2);
        // One /64 is one client: a third address in it is over the per-client cap.
        assert_eq!(l.admit("2001:db8::3".parse().unwrap()).err(), Some(Busy::Client));
        assert_eq!((l.active(), l.peak(), l.busy(), l.clients()), (2, 3, 3, 1));
    }
}
