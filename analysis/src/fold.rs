//! One partition's hosts while their rows are folded: accumulators in a dense vector (in the
//! order hosts are first seen), found by address through a compact index of 4-byte slots,
//! sized once from the expected host count. (A `HashMap<Box<str>, HostAcc>` grown by doubling
//! held ~170 bytes a slot at under 7/8 load, plus a heap string per host, and at each doubling
//! the old table beside the new one: 2.2 GiB at 3.75 M hosts.)

use crate::decode::{net_of, Rec};
use crate::infer::HostAcc;
use hashbrown::HashTable;

/// A well-mixed hash of an address (the index takes its slot from the low bits and its tag
/// from the high ones).
#[inline]
fn hash(a: u128) -> u64 {
    let mut x = (a as u64) ^ ((a >> 64) as u64).rotate_left(31);
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

/// A host: its address beside its accumulator, so finding a host and folding into it touch
/// the same memory.
struct Slot {
    addr: u128,
    acc: HostAcc,
}

pub struct HostTable {
    index: HashTable<u32>,
    slots: Vec<Slot>,
    /// (net, host) pairs when the hosts are handed out grouped by net.
    order: Vec<(u64, u32)>,
}

impl HostTable {
    pub fn with_capacity(hosts: usize) -> HostTable {
        HostTable { index: HashTable::with_capacity(hosts), slots: Vec::with_capacity(hosts), order: Vec::with_capacity(hosts) }
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Fold one row into its host's accumulator (created at the host's first row, from it).
    #[inline]
    pub fn fold(&mut self, r: &Rec) {
        let h = hash(r.addr);
        let HostTable { index, slots, .. } = self;
        let i = match index.find(h, |i| slots[*i as usize].addr == r.addr) {
            Some(i) => *i as usize,
            None => {
                let i = slots.len();
                slots.push(Slot { addr: r.addr, acc: HostAcc::new(r.asn, r.prefix, r.v6) });
                index.insert_unique(h, i as u32, |j| hash(slots[*j as usize].addr));
                i
            }
        };
        r.apply(&mut slots[i].acc);
    }

    /// Every host, grouped by net (/24, /64; within a net in first-seen order), and the table
    /// emptied (its memory kept for the next partition). Stops at the first error.
    pub fn drain_by_net(&mut self, mut f: impl FnMut(u128, &HostAcc) -> anyhow::Result<()>) -> anyhow::Result<()> {
        self.order.clear();
        self.order.extend(self.slots.iter().enumerate().map(|(i, s)| (net_of(s.addr, s.acc.v6), i as u32)));
        self.order.sort_unstable();
        let r = self.order.iter().try_for_each(|(_, i)| f(self.slots[*i as usize].addr, &self.slots[*i as usize].acc));
        self.index.clear();
        self.slots.clear();
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infer::{ReplyObs, Role};

    #[test]
    fn rows_of_a_host_fold_in_order_and_hosts_come_out_by_net() {
        let mut t = HostTable::with_capacity(4);
        let v4 = |a: u32| u128::from(std::net::Ipv4Addr::from(a).to_ipv6_mapped());
        let obs = |reply, ttl| ReplyObs { reply, ttl, icmp_type: 0, icmp_code: 0, responder: u32::MAX };
        let rows = [(v4(0x0b00_0207), 80, 1, 60), (v4(0x0b00_0105), 80, 2, 61), (v4(0x0b00_0207), 443, 2, 62), (v4(0x0b00_0209), 22, 0, 0)];
        for (i, (addr, port, reply, ttl)) in rows.into_iter().enumerate() {
            t.fold(&Rec { addr, asn: 64500 + i as u32, port, role: Role::Control as u8, obs: obs(reply, ttl), ..Default::default() });
        }
        assert_eq!(t.len(), 3);
        let mut out = Vec::new();
        t.drain_by_net(|a, h| {
            out.push((a as u32, h.asn, h.ref_ttl, h.ref_n));
            Ok(())
        })
        .unwrap();
        // 11.0.1.0/24 first; in 11.0.2.0/24 the first-seen host first; the first row made the host.
        assert_eq!(out, vec![(0x0b00_0105, 64501, [61, 0, 0, 0], [1, 0, 0, 0]), (0x0b00_0207, 64500, [60, 62, 0, 0], [1, 1, 0, 0]), (0x0b00_0209, 64503, [0; 4], [0; 4])]);
        assert!(t.is_empty());
        for a in 0..100_000u32 {
            t.fold(&Rec { addr: v4(a), ..Default::default() });
        }
        assert_eq!(t.len(), 100_000);
    }
}
