//! Hash partitions of a crawl's rows in temporary files, for crawls with more hosts than
//! `--partition-hosts`. The crawler writes rows in the order probes complete — a live host's
//! first answers at the start of the crawl, its silent probes after the retries at the end —
//! so no host is complete before the last file is read. Instead of holding every host at once,
//! one decoding pass writes each row, as a compact record, to the partition of its /24 (IPv6:
//! /64); each partition is then folded on its own. Partitioning by net keeps every host's rows
//! together and in their order (files are appended and read back sequentially), and keeps each
//! /24 in one partition, which `aggregate` relies on to count hosts beside each other.
//!
//! The files live in a directory of their own under the report's directory (or `--tmp`),
//! named in every error, and are removed when the crawl is done — or fails.

use crate::decode::{tclass, Rec};
use crate::infer::ReplyObs;
use anyhow::{Context, Result};
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Bytes a partition's buffer collects before it is written out.
const WRITE_BUF: usize = 256 * 1024;
/// Bytes read at once when a partition is folded.
const READ_BUF: usize = 4 << 20;

/// A directory for one analysis' temporary files, removed with everything in it when dropped.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// `base/.port25-analysis-PID-N` (created, with `base` if need be).
    pub fn new(base: &Path) -> Result<TempDir> {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = base.join(format!(".port25-analysis-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&path).with_context(|| format!("creating the temporary directory {}", path.display()))?;
        Ok(TempDir { path })
    }
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The partition of a record: a hash of its net.
#[inline]
pub fn partition(net: u64, parts: usize) -> usize {
    // A multiplicative hash (Fibonacci): consecutive /24s spread evenly.
    let h = net.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    ((h >> 32) as usize * parts) >> 32
}

/// Rows being written to `parts` partition files.
pub struct Spill {
    paths: Vec<PathBuf>,
    files: Vec<File>,
    bufs: Vec<Vec<u8>>,
    pub bytes: u64,
}

impl Spill {
    pub fn create(dir: &TempDir, parts: usize) -> Result<Spill> {
        let paths: Vec<PathBuf> = (0..parts).map(|p| dir.path().join(format!("rows-{p:04}.part"))).collect();
        let files = paths.iter().map(|p| File::create(p).with_context(|| format!("creating the temporary file {}", p.display()))).collect::<Result<Vec<_>>>()?;
        Ok(Spill { paths, files, bufs: (0..parts).map(|_| Vec::with_capacity(2 * WRITE_BUF)).collect(), bytes: 0 })
    }

    #[inline]
    pub fn push(&mut self, part: usize, r: &Rec) -> Result<()> {
        let b = &mut self.bufs[part];
        encode(r, b);
        if b.len() >= WRITE_BUF {
            self.flush(part)?;
        }
        Ok(())
    }

    /// Records already encoded (by a decoding thread), appended to partition `part`.
    pub fn append(&mut self, part: usize, records: &[u8]) -> Result<()> {
        self.bufs[part].extend_from_slice(records);
        if self.bufs[part].len() >= WRITE_BUF {
            self.flush(part)?;
        }
        Ok(())
    }

    fn flush(&mut self, part: usize) -> Result<()> {
        let b = &mut self.bufs[part];
        self.files[part].write_all(b).with_context(|| format!("writing the temporary file {}", self.paths[part].display()))?;
        self.bytes += b.len() as u64;
        b.clear();
        Ok(())
    }

    /// Everything written; the partitions' files, to be read back one by one.
    pub fn finish(mut self) -> Result<Vec<PathBuf>> {
        for p in 0..self.files.len() {
            self.flush(p)?;
        }
        Ok(self.paths)
    }
}

/// One record, appended to `out`. A header byte says what follows: the family, the role, the
/// reply, which times the row has, and whether it has reply details (TTL, ICMP type and code,
/// responder) — silent rows, most of an Internet crawl, take 17 bytes (IPv4).
#[inline]
pub fn encode(r: &Rec, out: &mut Vec<u8>) {
    let o = &r.obs;
    let detail = o.ttl != 0 || o.icmp_type != 0 || o.icmp_code != 0 || o.responder != u32::MAX;
    let head = r.v6 as u8 | (r.role & 3) << 1 | (o.reply & 3) << 3 | (r.tclass & 3) << 5 | (detail as u8) << 7;
    out.push(head);
    if r.v6 {
        out.extend_from_slice(&r.addr.to_le_bytes());
    } else {
        out.extend_from_slice(&(r.addr as u32).to_le_bytes());
    }
    out.extend_from_slice(&r.asn.to_le_bytes());
    out.extend_from_slice(&r.prefix.to_le_bytes());
    out.extend_from_slice(&r.port.to_le_bytes());
    out.extend_from_slice(&r.sport.to_le_bytes());
    if detail {
        out.extend_from_slice(&[o.ttl, o.icmp_type, o.icmp_code]);
        out.extend_from_slice(&o.responder.to_le_bytes());
    }
    if r.tclass != tclass::NONE {
        out.extend_from_slice(&r.recv.to_le_bytes());
    }
    if r.tclass == tclass::FIRST_TRY {
        out.extend_from_slice(&r.sent.to_le_bytes());
    }
}

/// The record at the start of `b` into `r`; the bytes it took (`None`: `b` ends inside it).
#[inline]
pub fn decode(b: &[u8], r: &mut Rec) -> Option<usize> {
    let head = *b.first()?;
    let v6 = head & 1 == 1;
    let detail = head & 0x80 != 0;
    let tc = (head >> 5) & 3;
    let len = 1 + if v6 { 16 } else { 4 } + 12 + if detail { 7 } else { 0 } + if tc != tclass::NONE { 8 } else { 0 } + if tc == tclass::FIRST_TRY { 8 } else { 0 };
    let b = b.get(..len)?;
    let mut at = 1;
    let mut take = |n: usize| {
        let s = &b[at..at + n];
        at += n;
        s
    };
    let u32_ = |s: &[u8]| u32::from_le_bytes(s.try_into().unwrap());
    let u16_ = |s: &[u8]| u16::from_le_bytes(s.try_into().unwrap());
    let i64_ = |s: &[u8]| i64::from_le_bytes(s.try_into().unwrap());
    r.v6 = v6;
    r.addr = if v6 { u128::from_le_bytes(take(16).try_into().unwrap()) } else { u128::from(std::net::Ipv4Addr::from(u32_(take(4))).to_ipv6_mapped()) };
    r.asn = u32_(take(4));
    r.prefix = u32_(take(4));
    r.port = u16_(take(2));
    r.sport = u16_(take(2));
    r.role = (head >> 1) & 3;
    r.obs = ReplyObs { reply: (head >> 3) & 3, ttl: 0, icmp_type: 0, icmp_code: 0, responder: u32::MAX };
    if detail {
        let d = take(3);
        (r.obs.ttl, r.obs.icmp_type, r.obs.icmp_code) = (d[0], d[1], d[2]);
        r.obs.responder = u32_(take(4));
    }
    r.tclass = tc;
    r.recv = if tc != tclass::NONE { i64_(take(8)) } else { 0 };
    r.sent = if tc == tclass::FIRST_TRY { i64_(take(8)) } else { 0 };
    Some(len)
}

/// A partition file read back record by record.
pub struct Reader {
    path: PathBuf,
    file: File,
    buf: Vec<u8>,
    at: usize,
    end: usize,
    eof: bool,
}

impl Reader {
    pub fn open(path: &Path) -> Result<Reader> {
        let file = File::open(path).with_context(|| format!("opening the temporary file {}", path.display()))?;
        Ok(Reader { path: path.to_path_buf(), file, buf: vec![0; READ_BUF], at: 0, end: 0, eof: false })
    }

    /// The next record into `r`; `false` at the end.
    #[inline]
    pub fn next(&mut self, r: &mut Rec) -> Result<bool> {
        loop {
            if let Some(n) = decode(&self.buf[self.at..self.end], r) {
                self.at += n;
                return Ok(true);
            }
            if self.eof {
                if self.at < self.end {
                    anyhow::bail!("the temporary file {} ends inside a record (was it changed while the analysis ran?)", self.path.display());
                }
                return Ok(false);
            }
            // Keep the partial record, fill the rest.
            self.buf.copy_within(self.at..self.end, 0);
            self.end -= self.at;
            self.at = 0;
            while self.end < self.buf.len() {
                let n = self.file.read(&mut self.buf[self.end..]).with_context(|| format!("reading the temporary file {}", self.path.display()))?;
                if n == 0 {
                    self.eof = true;
                    break;
                }
                self.end += n;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_partitions_spread() {
        let silent = ReplyObs { reply: 0, ttl: 0, icmp_type: 0, icmp_code: 0, responder: u32::MAX };
        let recs = [
            Rec { addr: u128::from(std::net::Ipv4Addr::new(198, 51, 100, 7).to_ipv6_mapped()), asn: 64500, prefix: 3, port: 25, sport: 40000, obs: silent, ..Default::default() },
            Rec {
                addr: 0x2001_0db8 << 96 | 5,
                v6: true,
                asn: 64501,
                prefix: 9,
                port: 40001,
                sport: 25,
                role: 3,
                obs: ReplyObs { reply: 3, ttl: 250, icmp_type: 1, icmp_code: 1, responder: 7 },
                tclass: tclass::FIRST_TRY,
                sent: 1_793_491_200_000_000,
                recv: 1_793_491_200_020_000,
            },
            Rec { addr: 1, v6: true, obs: ReplyObs { reply: 2, ttl: 52, ..silent }, tclass: tclass::RETRY, recv: 5, ..Default::default() },
        ];
        let mut b = Vec::new();
        for r in &recs {
            encode(r, &mut b);
        }
        assert_eq!(b.len(), 17 + (29 + 7 + 16) + (29 + 7 + 8), "a silent IPv4 row takes 17 bytes");
        let (mut at, mut r) = (0, Rec::default());
        for want in &recs {
            assert!(decode(&b[at..at + 16], &mut r).is_none(), "a cut record is no record");
            at += decode(&b[at..], &mut r).unwrap();
            assert_eq!(r, *want);
        }
        let mut n = [0u32; 7];
        for net in 0..70_000u64 {
            n[partition(net + (11 << 16), 7)] += 1;
        }
        assert!(n.iter().all(|k| (9_000..11_000).contains(k)), "{n:?}");
    }

    #[test]
    fn a_partition_file_reads_back_across_buffer_ends_and_is_removed() {
        let base = tempfile::tempdir().unwrap();
        let dir = TempDir::new(base.path()).unwrap();
        let mut s = Spill::create(&dir, 3).unwrap();
        let n = 300_000u32;
        for i in 0..n {
            let r = Rec { addr: i as u128, v6: i % 3 == 0, asn: i, tclass: (i % 4) as u8, recv: i as i64, sent: if i % 4 == 1 { -(i as i64) } else { 0 }, ..Default::default() };
            s.push((i % 3) as usize, &r).unwrap();
        }
        let files = s.finish().unwrap();
        let mut seen = 0;
        for (p, f) in files.iter().enumerate() {
            let mut rd = Reader::open(f).unwrap();
            let (mut r, mut last) = (Rec::default(), None);
            while rd.next(&mut r).unwrap() {
                assert_eq!(r.asn as usize % 3, p);
                assert!(last.is_none_or(|l| l < r.asn), "in order");
                assert_eq!((r.recv, r.sent), (r.asn as i64 * (r.tclass != 0) as i64, if r.tclass == 1 { -(r.asn as i64) } else { 0 }));
                last = Some(r.asn);
                seen += 1;
            }
        }
        assert_eq!(seen, n);
        let path = dir.path().to_path_buf();
        drop(dir);
        assert!(!path.exists());
    }
}
