//! What the sink counts instead of recording row by row: connections it refused (over a cap
//! or a rate — a flood must not become a flood of rows and disk), and records it could not
//! keep (the disk full, the recorder behind). Published with every rotation as a small
//! `counters-*.json` beside the Parquet files, and summed up at exit.

use super::limits::{Client, Refusal};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Clients tallied by name per period; refusals of further clients count in `other_clients`.
const MAX_CLIENTS: usize = 4096;
/// Clients named in a counters file, the most refused first.
pub const TOP_CLIENTS: usize = 20;

#[derive(Default)]
pub struct Counters {
    refused: [AtomicU64; 5],
    /// Connection records dropped because the recorder's queue was full.
    pub records_dropped: AtomicU64,
    by_client: Mutex<HashMap<Client, u64>>,
    other_clients: AtomicU64,
}

/// The counts of one period (or of the whole run).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Tally {
    pub refused: u64,
    pub by_reason: std::collections::BTreeMap<&'static str, u64>,
    /// Distinct clients refused (IPv4 addresses, IPv6 /64s), up to 4096 a period.
    pub clients: usize,
    pub top_clients: Vec<(String, u64)>,
    /// Refusals of clients beyond the 4096 tallied.
    pub other_clients: u64,
    pub records_dropped: u64,
}

impl Tally {
    pub fn is_empty(&self) -> bool {
        self.refused == 0 && self.records_dropped == 0
    }

    /// Add a later period's counts. Clients are not merged: a sum keeps the larger period's
    /// distinct count and the first period's top clients that has any.
    pub fn add(&mut self, t: &Tally) {
        self.refused += t.refused;
        for (k, v) in &t.by_reason {
            *self.by_reason.entry(k).or_default() += v;
        }
        self.other_clients += t.other_clients;
        self.records_dropped += t.records_dropped;
        self.clients = self.clients.max(t.clients);
        if self.top_clients.is_empty() {
            self.top_clients = t.top_clients.clone();
        }
    }
}

fn slot(r: Refusal) -> usize {
    Refusal::ALL.iter().position(|x| *x == r).expect("every reason listed")
}

impl Counters {
    pub fn refused(&self, r: Refusal, c: Client) {
        self.refused[slot(r)].fetch_add(1, Ordering::Relaxed);
        let mut m = self.by_client.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&c) {
            *n += 1;
        } else if m.len() < MAX_CLIENTS {
            m.insert(c, 1);
        } else {
            self.other_clients.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The counts since the last call, which start again from zero.
    pub fn take(&self) -> Tally {
        let by_client = std::mem::take(&mut *self.by_client.lock().unwrap_or_else(|p| p.into_inner()));
        let mut t = Tally::default();
        for r in Refusal::ALL {
            let n = self.refused[slot(r)].swap(0, Ordering::Relaxed);
            if n > 0 {
                t.by_reason.insert(r.as_str(), n);
                t.refused += n;
            }
        }
        t.clients = by_client.len();
        let mut top: Vec<(Client, u64)> = by_client.into_iter().collect();
        top.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        t.top_clients = top.into_iter().take(TOP_CLIENTS).map(|(c, n)| (c.to_string(), n)).collect();
        t.other_clients = self.other_clients.swap(0, Ordering::Relaxed);
        t.records_dropped = self.records_dropped.swap(0, Ordering::Relaxed);
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_tallied_by_reason_and_client_and_taken_once() {
        let c = Counters::default();
        let a = Client::of("2001:db8:48:1::9".parse().unwrap());
        let b = Client::of("192.0.2.1".parse().unwrap());
        for _ in 0..3 {
            c.refused(Refusal::NetRate, a);
        }
        c.refused(Refusal::Busy, b);
        c.records_dropped.fetch_add(2, Ordering::Relaxed);
        let t = c.take();
        assert_eq!((t.refused, t.clients, t.records_dropped), (4, 2, 2));
        assert_eq!(t.top_clients, vec![("2001:db8:48:1::/64".to_string(), 3), ("192.0.2.1".to_string(), 1)]);
        assert_eq!(t.by_reason.get("net-rate"), Some(&3));
        assert!(c.take().is_empty());
        // The per-client table is bounded.
        for i in 0..(MAX_CLIENTS as u32 + 10) {
            c.refused(Refusal::ClientRate, Client::V4(i));
        }
        let t = c.take();
        assert_eq!((t.clients, t.other_clients, t.top_clients.len()), (MAX_CLIENTS, 10, TOP_CLIENTS));
    }
}
