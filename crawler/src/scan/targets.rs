//! The plan loaded for a scan: targets in compact sorted arrays (addresses per family, AS
//! and prefix per target), kept to the scan's shard (disjoint by plan row).

use anyhow::{bail, Result};
use arrow_array::{Array, StringArray, UInt32Array};
use datasets::schema::{self, plan};
use datasets::DatasetError;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

/// The plan, sorted by address per family, with per-target AS and prefix.
pub struct Targets {
    pub v4: Vec<u32>,
    pub v6: Vec<u128>,
    /// Per target (v4 first, then v6): ASN and index into `prefixes`.
    pub asn: Vec<u32>,
    pub prefix_idx: Vec<u32>,
    pub prefixes: Vec<String>,
    /// Plan rows (of this shard) whose address an earlier row already had.
    pub duplicates: usize,
}

impl Targets {
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    #[inline]
    pub fn ip(&self, i: usize) -> IpAddr {
        if i < self.v4.len() {
            IpAddr::V4(Ipv4Addr::from(self.v4[i]))
        } else {
            IpAddr::V6(Ipv6Addr::from(self.v6[i - self.v4.len()]))
        }
    }
    /// Ask the CPU to fetch a target's address and AS ahead of use: the send order visits
    /// targets at random, so without it each probe waits on cache misses (measured: most of
    /// the send loop's own time on the 131,072-target lab).
    #[inline]
    pub fn prefetch(&self, t: usize) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            let a = if t < self.v4.len() { self.v4.as_ptr().wrapping_add(t) as *const i8 } else { self.v6.as_ptr().wrapping_add(t - self.v4.len()) as *const i8 };
            // SAFETY: prefetching is a hint; it never faults, even on a bad address.
            unsafe {
                _mm_prefetch(a, _MM_HINT_T0);
                _mm_prefetch(self.asn.as_ptr().wrapping_add(t) as *const i8, _MM_HINT_T0);
            }
        }
    }

    /// Index of a target by address (binary search; the receive path's lookup).
    #[inline]
    pub fn find(&self, ip: IpAddr) -> Option<usize> {
        match ip {
            IpAddr::V4(a) => self.v4.binary_search(&u32::from(a)).ok(),
            IpAddr::V6(a) => self.v6.binary_search(&u128::from(a)).ok().map(|i| i + self.v4.len()),
        }
    }

    /// Targets given directly (the send loop's tests): (address, AS), all in one prefix.
    pub fn from_list(list: &[(IpAddr, u32)]) -> Targets {
        let mut v4: Vec<(u32, u32)> = list.iter().filter_map(|(a, asn)| if let IpAddr::V4(a) = a { Some((u32::from(*a), *asn)) } else { None }).collect();
        let mut v6: Vec<(u128, u32)> = list.iter().filter_map(|(a, asn)| if let IpAddr::V6(a) = a { Some((u128::from(*a), *asn)) } else { None }).collect();
        v4.sort_unstable();
        v6.sort_unstable();
        let asn = v4.iter().map(|x| x.1).chain(v6.iter().map(|x| x.1)).collect::<Vec<_>>();
        Targets { prefix_idx: vec![0; asn.len()], asn, v4: v4.into_iter().map(|x| x.0).collect(), v6: v6.into_iter().map(|x| x.0).collect(), prefixes: vec!["0.0.0.0/0".into()], duplicates: 0 }
    }

    /// Load a plan file; keep shard `shard` of `shards` (disjoint by plan row).
    pub fn load(path: &Path, shard: (u64, u64)) -> Result<Targets> {
        let f = std::fs::File::open(path).map_err(|e| datasets::DatasetError::io(path, e))?;
        Self::load_from(path, f, shard)
    }

    /// [`Targets::load`] from any Parquet source (a file, bytes in memory); `path` names it in
    /// errors.
    pub fn load_from<R: parquet::file::reader::ChunkReader + 'static>(path: &Path, source: R, shard: (u64, u64)) -> Result<Targets> {
        // Whatever is wrong with the file is bad input (exit 2), named.
        let bad = |msg: String| anyhow::Error::from(DatasetError::file(path, msg));
        if shard.1 == 0 || shard.0 >= shard.1 {
            bail!("shard {}/{}: need 0 <= I < N", shard.0, shard.1);
        }
        let reader = schema::open_parquet_from(path, source, 65_536, Some(&[plan::IP, plan::ASN, plan::PREFIX]))?;
        // (address, asn, prefix index) per family: sorting plain integers keeps loading a
        // large plan off the scan's start-up time.
        let mut v4: Vec<(u32, u32, u32)> = Vec::new();
        let mut v6: Vec<(u128, u32, u32)> = Vec::new();
        let mut prefixes: Vec<String> = Vec::new();
        let mut pidx: hashbrown::HashMap<String, u32> = Default::default();
        let mut row = 0u64;
        let mut reader = reader;
        while let Some(batch) = schema::guard(path, || reader.next())? {
            let batch = batch.map_err(|e| bad(format!("corrupt plan: {e}")))?;
            let col = |n: &str| batch.column_by_name(n).ok_or_else(|| bad(format!("not a plan (no `{n}` column)")));
            let ip = col(plan::IP)?.as_any().downcast_ref::<StringArray>().ok_or_else(|| bad("not a plan (its ip column is not text)".into()))?;
            let asn = col(plan::ASN)?.as_any().downcast_ref::<UInt32Array>().ok_or_else(|| bad("not a plan (its asn column is not UInt32)".into()))?;
            let pfx = col(plan::PREFIX)?.as_any().downcast_ref::<StringArray>().ok_or_else(|| bad("not a plan (its prefix column is not text)".into()))?;
            for i in 0..batch.num_rows() {
                row += 1;
                if (row - 1) % shard.1 != shard.0 {
                    continue;
                }
                let a: IpAddr = ip.value(i).parse().map_err(|_| bad(format!("row {row}: bad ip `{}`", ip.value(i).escape_debug())))?;
                let next = prefixes.len() as u32;
                let id = *pidx.entry_ref(pfx.value(i)).or_insert(next);
                if id == next {
                    prefixes.push(pfx.value(i).to_string());
                }
                if asn.is_null(i) {
                    return Err(bad(format!("row {row}: missing asn")));
                }
                match a {
                    IpAddr::V4(a) => v4.push((u32::from(a), asn.value(i), id)),
                    IpAddr::V6(a) => v6.push((u128::from(a), asn.value(i), id)),
                }
            }
        }
        // The cookie carries a target's index in 32 bits.
        if v4.len() + v6.len() > u32::MAX as usize {
            bail!("{}: {} targets; one crawl (or shard) takes at most {}", path.display(), v4.len() + v6.len(), u32::MAX);
        }
        // A plan lists an address once; one that is listed again (a plan written by hand, or
        // merged) is probed once, under the lowest (AS, first-seen prefix) of its rows — the
        // same choice whatever the row order — and the count is said.
        let rows = v4.len() + v6.len();
        v4.sort_unstable();
        v4.dedup_by_key(|r| r.0);
        v6.sort_unstable();
        v6.dedup_by_key(|r| r.0);
        let n = v4.len() + v6.len();
        if n < rows {
            tracing::warn!("{}: {} duplicate addresses in the plan; each address is probed once (with the lowest AS number among its rows)", path.display(), rows - n);
        }
        let mut t = Targets { v4: Vec::with_capacity(v4.len()), v6: Vec::with_capacity(v6.len()), asn: Vec::with_capacity(n), prefix_idx: Vec::with_capacity(n), prefixes, duplicates: 0 };
        for (a, asn, p) in v4 {
            t.v4.push(a);
            t.asn.push(asn);
            t.prefix_idx.push(p);
        }
        for (a, asn, p) in v6 {
            t.v6.push(a);
            t.asn.push(asn);
            t.prefix_idx.push(p);
        }
        t.duplicates = rows - n;
        Ok(t)
    }
}
