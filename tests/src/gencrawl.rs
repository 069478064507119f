//! `lab gen-crawl`: a synthetic crawl in the crawler's Parquet schema (`datasets::schema`), for
//! benchmarks of the analysis at Internet scale (10 M rows and more), with routing and AS2Org
//! files to match. It is shaped like what `crawler scan` writes, because what a crawl costs to
//! analyse depends on that shape:
//!
//! - **12 probes per host** (the crawler's defaults): 25, 465, 587, the controls 80, 443, 22,
//!   two random high ports drawn per AS, and 4 reflection probes from source ports 25, 465,
//!   587 and the neutral 2525 to the first random port.
//! - **The crawler's write order.** Hosts go out in a keyed permutation, in windows of 256 hosts
//!   whose ports interleave (each host its own port order); a row is written when its probe
//!   completes: first-try answers during the first pass, retry answers in the retry pass,
//!   and the silent probes (plus third-try answers) in the final pass, after the retries. So a
//!   live host's rows are split between the start and the end of the crawl, and a dead host's
//!   rows all come at the end.
//! - **Internet reply mixes.** Most addresses of a random sample are dead (silence, or a
//!   router's host-unreachable under its ICMP rate limit); live hosts are normal (RST on closed
//!   ports), default-drop firewalls, or all-ports responders; per AS an inbound policy on 25
//!   (open, silent drop, ICMP prohibited from the border under a rate limit, RSTs injected
//!   from the border, host firewalls), an outbound policy seen by reflection (none, a stateless
//!   drop of source port 25 or of all mail ports, an ICMP reject), ECMP paths of unequal
//!   length, lost replies answered at a retry, IPv6 hosts from a hitlist (mostly alive),
//!   multi-origin prefixes (within one organization).
//!
//! Everything derives from the host's index and the seed, so the three passes regenerate each
//! host's outcome instead of holding the crawl in memory, and the same arguments give the same
//! files.

use anyhow::Result;
use datasets::publish::AtomicFile;
use datasets::schema::{observation_schema, observation_writer_props, reply, role, ObsBatch, ObsRow};
use parquet::arrow::ArrowWriter;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

/// Probes per host, in slot order: 25, 465, 587, 80, 443, 22, random 1, random 2, then the
/// reflection probes from source ports 25, 465, 587, 2525 to random 1.
const SLOTS: usize = 12;
const FIXED: [(u16, &str); 6] = [(25, role::TARGET), (465, role::MAIL), (587, role::MAIL), (80, role::CONTROL), (443, role::CONTROL), (22, role::CONTROL)];
const REFLECT_FROM: [u16; 4] = [25, 465, 587, 2525];
/// The crawler's window of hosts whose probes interleave (`crawler/src/scan/order.rs`).
const WINDOW: u64 = 256;
/// The crawler's row groups and record batches (`crawler/src/scan/record.rs`).
const ROW_GROUP_ROWS: usize = 65_536;
const BATCH_ROWS: usize = 8192;
/// 2026-11-01T00:00:00Z in µs; the crawl sends 10,000 probes a second (the crawler's default).
const T0: i64 = 1_793_491_200_000_000;
const SEND_GAP_US: i64 = 100;
/// Between passes: the crawler's retry delay.
const RETRY_DELAY_US: i64 = 2_000_000;

/// A deterministic stream of random numbers (SplitMix64): one per host and one per AS, so any
/// pass regenerates the same outcome.
struct Mix(u64);

impl Mix {
    fn new(seed: u64, what: u64, i: u64) -> Mix {
        let mut m = Mix(seed ^ what.wrapping_mul(0xD1B5_4A32_D192_ED03) ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        m.next();
        m
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// True with probability `p`.
    fn chance(&mut self, p: f64) -> bool {
        ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Inbound {
    Open,
    Drop,
    /// ICMP administratively prohibited from the border router, under its rate limit.
    Icmp,
    /// RSTs forged by the border, two hops closer than the hosts.
    Rst,
    /// Some hosts drop 25 themselves.
    HostFirewalls,
}

#[derive(Clone, Copy, PartialEq)]
enum Outbound {
    None,
    /// A stateless egress ACL on source port 25 (what reflection sees).
    Drop25,
    Drop465And587Too,
    /// Rejected with ICMP prohibited from the border router.
    Icmp25,
}

struct As {
    asn: u32,
    /// First address of its IPv4 block (a power of two of /24s), and the block's /24 count.
    v4_base: u32,
    n24: u32,
    /// Announced prefixes (v4: one, or the block's two halves; v6: one /48), as text.
    v4_prefixes: Vec<String>,
    v6: Option<(u128, String)>,
    inbound: Inbound,
    outbound: Outbound,
    random: [u16; 2],
    hops: u8,
    /// Per-flow load balancing over paths one hop apart.
    ecmp: bool,
    /// Routers start from TTL 255 (else 64).
    router_255: bool,
    rtt_us: i64,
    /// Hosts of this AS: [first, first + count).
    first: u64,
    count: u64,
}

/// One probe's fate: the reply (or silence) and at which attempt it came.
#[derive(Clone, Copy, Default)]
struct Fate {
    /// `reply::*` index: 0 none, 1 synack, 2 rst, 3 icmp.
    reply: u8,
    ttl: u8,
    icmp: (u8, u8),
    /// The ICMP error's sender: 0 the AS's border router, 1 the host's last-hop router.
    responder: u8,
    /// 1, 2, 3: answered at that attempt; 0: silent after all three.
    attempt: u8,
    src_port: u16,
    rtt_us: i64,
    ipid: u16,
}

/// A host of one window: its address, prefix and the fate of each slot, plus its port order.
struct Host {
    asi: u32,
    v6: bool,
    ip: String,
    prefix: usize,
    net: u128,
    fates: [Fate; SLOTS],
    order: [u8; SLOTS],
}

pub struct Spec {
    pub rows: u64,
    pub ases: u32,
    pub files: u32,
    pub seed: u64,
}

/// `lab gen-crawl`: `rows` rows (a multiple of 12, rounded down; at least one host) of hosts
/// spread over `ases` ASes, in `files` files.
pub fn generate(out: &Path, rows: u64, ases: u32, files: u32) -> Result<()> {
    generate_spec(out, &Spec { rows, ases, files, seed: 42 })
}

pub fn generate_spec(out: &Path, spec: &Spec) -> Result<()> {
    let hosts = (spec.rows / SLOTS as u64).max(1);
    let ases = (spec.ases.max(1) as u64).min(hosts) as u32;
    let table = ases_of(spec.seed, hosts, ases);
    let part = out.join("crawl_date=2026-11-01/crawl_id=synthetic");
    std::fs::create_dir_all(&part)?;
    write_routes_and_orgs(out, &table)?;
    let rows = hosts * SLOTS as u64;
    let per_file = rows.div_ceil(spec.files.max(1) as u64).max(1);
    let mut w = Writer { part: part.clone(), per_file, file: 0, in_file: 0, writer: None, batch: ObsBatch::with_capacity(BATCH_ROWS), by_reply: [0; 4] };
    let perm = Permutation::new(hosts, spec.seed);
    let mut window: Vec<Host> = Vec::with_capacity(WINDOW as usize);
    let (mut ip, mut resp) = (String::new(), String::new());
    // Pass 1 sends every probe; pass 2 retries those not answered at the first attempt, pass 3
    // those still silent. A row is written in the pass its probe completes.
    let mut clock = T0;
    for pass in 1..=3u8 {
        let mut w0 = 0;
        while w0 < hosts {
            let w1 = (w0 + WINDOW).min(hosts);
            window.clear();
            for pos in w0..w1 {
                window.push(host(spec.seed, &table, perm.at(pos), &mut ip));
            }
            for r in 0..SLOTS {
                for h in &window {
                    let slot = h.order[r] as usize;
                    let f = h.fates[slot];
                    // Sent in this pass: every probe in the first, the unanswered ones after.
                    if pass > 1 && f.attempt != 0 && f.attempt < pass {
                        continue;
                    }
                    let sent = clock;
                    clock += SEND_GAP_US;
                    if f.attempt == pass || (pass == 3 && f.attempt == 0) {
                        w.row(&table[h.asi as usize], h, slot, &f, pass, sent, &mut resp)?;
                    }
                }
            }
            w0 = w1;
        }
        clock += RETRY_DELAY_US;
    }
    w.finish()?;
    // The manifest a complete crawl ends with (`analysis` refuses crawls without one).
    let by_reply = serde_json::json!({"none": w.by_reply[0], "synack": w.by_reply[1], "rst": w.by_reply[2], "icmp": w.by_reply[3]});
    let manifest = serde_json::json!({"exit_status": "complete", "params": {"generator": "lab gen-crawl", "rows": rows, "seed": spec.seed},
        "summary": {"targets": hosts, "probes_planned": rows, "sent": rows, "send_errors": 0, "frames_received": rows, "receive_drops": 0, "unlogged": 0, "interrupted": false, "rows": rows, "rows_by_reply": by_reply}});
    datasets::publish::write_atomic(&part.join("manifest.json"), serde_json::to_string_pretty(&manifest)?)?;
    Ok(())
}

/// The crawler's host order: a keyed affine permutation of the plan.
struct Permutation {
    n: u64,
    a: u64,
    b: u64,
}

impl Permutation {
    fn new(n: u64, seed: u64) -> Permutation {
        let mut m = Mix::new(seed, 1, 0);
        let gcd = |mut x: u64, mut y: u64| {
            while y != 0 {
                (x, y) = (y, x % y);
            }
            x
        };
        let mut a = m.below(n.max(2)) | 1;
        while gcd(a, n) != 1 {
            a += 2;
        }
        Permutation { n, a: a % n.max(1), b: m.below(n) }
    }
    fn at(&self, pos: u64) -> u64 {
        ((self.a as u128 * pos as u128 + self.b as u128) % self.n as u128) as u64
    }
}

fn ases_of(seed: u64, hosts: u64, ases: u32) -> Vec<As> {
    let per_as = hosts / ases as u64;
    let mut next24 = 11u32 << 16; // /24 numbers from 11.0.0.0 up
    (0..ases)
        .map(|a| {
            let mut m = Mix::new(seed, 2, a as u64);
            let first = a as u64 * per_as;
            let count = if a + 1 == ases { hosts - first } else { per_as };
            // Every eighth host of an AS with IPv6 is an IPv6 hitlist address; up to 4 IPv4
            // hosts a /24 (the plan stratifies by /24).
            let has_v6 = a % 5 != 0;
            let v4_hosts = if has_v6 { count - count / 8 } else { count };
            let n24 = (v4_hosts.div_ceil(4).max(1) as u32).next_power_of_two();
            // Aligned on its size.
            next24 = next24.div_ceil(n24) * n24;
            let v4_base = next24 << 8;
            next24 += n24;
            assert!(next24 <= 224 << 16, "too many hosts for the synthetic IPv4 space (11.0.0.0 up to 224.0.0.0)");
            let len = 24 - n24.trailing_zeros() as u8;
            let v4_prefixes = if n24 >= 2 && a % 3 == 0 {
                vec![format!("{}/{}", Ipv4Addr::from(v4_base), len + 1), format!("{}/{}", Ipv4Addr::from(v4_base + (n24 / 2) * 256), len + 1)]
            } else {
                vec![format!("{}/{len}", Ipv4Addr::from(v4_base))]
            };
            let v6 = has_v6.then(|| {
                let base = (0x2a10u128 << 112) | ((a as u128) << 80);
                (base, format!("{}/48", Ipv6Addr::from(base)))
            });
            let inbound = match m.below(100) {
                0..55 => Inbound::Open,
                55..75 => Inbound::Drop,
                75..83 => Inbound::Icmp,
                83..88 => Inbound::Rst,
                _ => Inbound::HostFirewalls,
            };
            let outbound = match m.below(100) {
                0..70 => Outbound::None,
                70..90 => Outbound::Drop25,
                90..95 => Outbound::Drop465And587Too,
                _ => Outbound::Icmp25,
            };
            let r1 = 1024 + m.below(64_000) as u16;
            let r2 = 1024 + ((r1 as u64 - 1024 + 1 + m.below(63_999)) % 64_000) as u16;
            As {
                asn: 100_000 + a,
                v4_base,
                n24,
                v4_prefixes,
                v6,
                inbound,
                outbound,
                random: [r1, r2],
                hops: 6 + m.below(15) as u8,
                ecmp: m.chance(0.1),
                router_255: m.chance(0.5),
                rtt_us: 10_000 + m.below(250_000) as i64,
                first,
                count,
            }
        })
        .collect()
}

/// Routes (pfx2as; one AS in a hundred shares its IPv4 prefix with its sibling: multi-origin,
/// one organization) and AS2Org (pairs of sibling ASes).
fn write_routes_and_orgs(out: &Path, table: &[As]) -> Result<()> {
    let (mut routes, mut orgs) = (String::new(), String::new());
    for (a, x) in table.iter().enumerate() {
        let origin = if a % 100 == 6 && a + 1 < table.len() { format!("{}_{}", x.asn, x.asn + 1) } else { x.asn.to_string() };
        for p in &x.v4_prefixes {
            let (net, len) = p.split_once('/').unwrap();
            let _ = writeln!(routes, "{net}\t{len}\t{origin}");
        }
        if let Some((_, p)) = &x.v6 {
            let (net, len) = p.split_once('/').unwrap();
            let _ = writeln!(routes, "{net}\t{len}\t{}", x.asn);
        }
        let org = format!("ORG-{}", a / 2);
        let _ = writeln!(orgs, "{}", serde_json::json!({"type":"ASN","asn":x.asn.to_string(),"organizationId":org,"name":format!("AS{}", x.asn),"changed":"","opaqueId":"","source":"GEN"}));
        if a % 2 == 0 {
            let _ = writeln!(orgs, "{}", serde_json::json!({"type":"Organization","organizationId":org,"name":format!("Provider {}", a / 2),"country":"ZZ","changed":"","source":"GEN"}));
        }
    }
    std::fs::write(out.join("routes.pfx2as"), routes)?;
    std::fs::write(out.join("as-org2info.jsonl"), orgs)?;
    Ok(())
}

/// Which AS host `h` belongs to (ASes hold consecutive hosts).
fn as_of(table: &[As], h: u64) -> usize {
    table.partition_point(|a| a.first + a.count <= h)
}

/// Host `h`: its address and the fate of each of its probes.
fn host(seed: u64, table: &[As], h: u64, ip: &mut String) -> Host {
    let asi = as_of(table, h);
    let a = &table[asi];
    let j = h - a.first;
    let mut m = Mix::new(seed, 3, h);
    let v6 = a.v6.is_some() && j % 8 == 7;
    ip.clear();
    let (prefix, net) = if let Some((base, _)) = a.v6.as_ref().filter(|_| v6) {
        let k = j / 8;
        // Subnet (bits 64–79) and the upper host bits from the host's number, so no two collide.
        let (sub, hi) = ((k / 2) as u128 & 0xffff, ((k / 2) >> 16) as u128 & 0xffff);
        let addr = base | (sub << 64) | (hi << 32) | ((m.next() as u128) & 0xffff_ff00) | (k % 2 + 1) as u128;
        datasets::schema::push_ip(ip, Ipv6Addr::from(addr).into());
        (a.v4_prefixes.len(), addr >> 64)
    } else {
        let k = if a.v6.is_some() { j - j / 8 } else { j };
        let n24 = (k / 4) as u32 % a.n24;
        let byte = 1 + (k % 4) as u32 * 60 + m.below(60) as u32;
        let addr = a.v4_base + n24 * 256 + byte;
        datasets::schema::push_ip(ip, Ipv4Addr::from(addr).into());
        let half = if a.v4_prefixes.len() == 2 && n24 >= a.n24 / 2 { 1 } else { 0 };
        (half, (addr >> 8) as u128)
    };
    // A random IPv4 address is mostly dead; a hitlist IPv6 address mostly alive.
    let dead = m.chance(if v6 { 0.3 } else { 0.72 });
    let unreachable = dead && m.chance(0.1);
    let kind = m.below(1000);
    let all_ports = !dead && kind < 15;
    let default_drop = !dead && !all_ports && kind < 265;
    let drops_fixed_sources = !dead && m.chance(0.02);
    let open = [m.chance(0.12), m.chance(0.05), m.chance(0.08), m.chance(0.55), m.chance(0.5), m.chance(0.35)];
    let fw25 = a.inbound == Inbound::HostFirewalls && m.chance(0.4);
    let init: u8 = if m.chance(0.3) { 128 } else { 64 };
    let router_init: u8 = if a.router_255 { 255 } else { 64 };
    let mut fates = [Fate::default(); SLOTS];
    for (s, f) in fates.iter_mut().enumerate() {
        let path_hops = a.hops + u8::from(a.ecmp && m.chance(0.5));
        let host_ttl = init - path_hops;
        // What comes back, at a given chance per attempt (1.0: always, lost 2 % of the time).
        let (reply, ttl, icmp, responder, p) = if s == 0 && a.inbound == Inbound::Drop {
            (0, 0, (0, 0), 0, 0.0)
        } else if s == 0 && a.inbound == Inbound::Icmp {
            (3, router_init - (a.hops - 2), if v6 { (1, 1) } else { (3, 13) }, 0, 0.6)
        } else if s == 0 && a.inbound == Inbound::Rst {
            (2, 64 - (a.hops - 2), (0, 0), 0, 1.0)
        } else if dead {
            if unreachable {
                (3, router_init - (a.hops - 1), if v6 { (1, 3) } else { (3, 1) }, 1, 0.3)
            } else {
                (0, 0, (0, 0), 0, 0.0)
            }
        } else if s < 6 {
            if s == 0 && fw25 {
                (0, 0, (0, 0), 0, 0.0)
            } else if open[s] {
                (1, host_ttl, (0, 0), 0, 1.0)
            } else if default_drop {
                (0, 0, (0, 0), 0, 0.0)
            } else {
                (2, host_ttl, (0, 0), 0, 1.0)
            }
        } else {
            // Random ports and the reflection probes to the first of them.
            let base = if all_ports {
                (1, host_ttl, (0, 0), 0, 1.0)
            } else if default_drop {
                (0, 0, (0, 0), 0, 0.0)
            } else {
                (2, host_ttl, (0, 0), 0, 1.0)
            };
            if s < 8 {
                base
            } else {
                let from = REFLECT_FROM[s - 8];
                let filtered = match a.outbound {
                    Outbound::None => false,
                    Outbound::Drop25 | Outbound::Icmp25 => from == 25,
                    Outbound::Drop465And587Too => from != 2525,
                };
                if drops_fixed_sources && base.0 != 0 {
                    (0, 0, (0, 0), 0, 0.0)
                } else if filtered && base.0 != 0 && a.outbound == Outbound::Icmp25 {
                    (3, router_init - (a.hops - 2), if v6 { (1, 1) } else { (3, 13) }, 0, 0.6)
                } else if filtered {
                    (0, 0, (0, 0), 0, 0.0)
                } else {
                    base
                }
            }
        };
        let p = if p == 1.0 { 0.98 } else { p };
        let attempt = (1..=3u8).find(|_| m.chance(p)).unwrap_or(0);
        *f = Fate {
            reply: if attempt == 0 { 0 } else { reply },
            ttl,
            icmp,
            responder,
            attempt,
            src_port: if s >= 8 { REFLECT_FROM[s - 8] } else { 32_768 + m.below(28_232) as u16 },
            rtt_us: a.rtt_us + m.below(20_000) as i64,
            ipid: m.next() as u16,
        };
    }
    // Each host's ports in its own order (an affine map of the slots, as the crawler's).
    let (mul, add) = ([1u8, 5, 7, 11][m.below(4) as usize], m.below(SLOTS as u64) as u8);
    let order = std::array::from_fn(|r| ((mul as usize * r + add as usize) % SLOTS) as u8);
    Host { asi: asi as u32, v6, ip: ip.clone(), prefix, net, fates, order }
}

/// Rows into files of `per_file` rows (row groups and batches as the crawler's).
struct Writer {
    part: PathBuf,
    per_file: u64,
    file: u32,
    in_file: u64,
    writer: Option<ArrowWriter<AtomicFile>>,
    batch: ObsBatch,
    by_reply: [u64; 4],
}

impl Writer {
    #[allow(clippy::too_many_arguments)]
    fn row(&mut self, a: &As, h: &Host, slot: usize, f: &Fate, pass: u8, sent: i64, resp: &mut String) -> Result<()> {
        let (port, r) = match slot {
            0..6 => FIXED[slot],
            6 | 7 => (a.random[slot - 6], role::RANDOM),
            _ => (a.random[0], role::REFLECT),
        };
        let prefix = match &a.v6 {
            Some((_, p)) if h.v6 => p.as_str(),
            _ => a.v4_prefixes[h.prefix.min(a.v4_prefixes.len() - 1)].as_str(),
        };
        let mut row = ObsRow::silent("synthetic", "gen", &h.ip, if h.v6 { 6 } else { 4 }, a.asn, prefix, port, r, f.src_port, if f.attempt == 0 { 3 } else { pass }, sent);
        self.by_reply[f.reply as usize] += 1;
        if f.reply != 0 {
            row.reply = [reply::NONE, reply::SYNACK, reply::RST, reply::ICMP][f.reply as usize];
            row.received_at = Some(sent + f.rtt_us);
            row.rtt_us = Some(f.rtt_us as u32);
            row.reply_ttl = Some(f.ttl);
            row.reply_ipid = Some(f.ipid);
            if f.reply == 3 {
                resp.clear();
                // The border router (.254 of the AS's first /24, or ::fffe of its /48), or the
                // host's last-hop router (.253 of its /24, ::1 of its /64).
                match (h.v6, f.responder) {
                    (false, 0) => datasets::schema::push_ip(resp, Ipv4Addr::from(a.v4_base + 254).into()),
                    (false, _) => datasets::schema::push_ip(resp, Ipv4Addr::from(((h.net as u32) << 8) + 253).into()),
                    (true, 0) => datasets::schema::push_ip(resp, Ipv6Addr::from(a.v6.as_ref().unwrap().0 | 0xfffe).into()),
                    (true, _) => datasets::schema::push_ip(resp, Ipv6Addr::from((h.net << 64) | 1).into()),
                }
                (row.icmp_type, row.icmp_code, row.icmp_responder) = (Some(f.icmp.0), Some(f.icmp.1), Some(resp.as_str()));
            } else {
                let synack = f.reply == 1;
                row.tcp_flags = Some(if synack { 0x12 } else { 0x14 });
                row.tcp_window = Some(if synack { 64240 } else { 0 });
                row.tcp_mss = synack.then_some(1460);
                row.tcp_options = Some(if synack { "2,4,8,1,3" } else { "" });
            }
        }
        self.batch.push(&row);
        self.in_file += 1;
        if self.batch.len() >= BATCH_ROWS || self.in_file >= self.per_file {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        if self.writer.is_none() {
            let props = observation_writer_props(vec![("port25.vantage".to_string(), "gen".to_string()), ("port25.crawl_id".to_string(), "synthetic".to_string())], ROW_GROUP_ROWS);
            let f = AtomicFile::create(&self.part.join(format!("part-{:05}.parquet", self.file)))?;
            self.writer = Some(ArrowWriter::try_new(f, observation_schema(), Some(props))?);
        }
        self.writer.as_mut().unwrap().write(&self.batch.finish())?;
        if self.in_file >= self.per_file {
            self.close()?;
        }
        Ok(())
    }

    fn close(&mut self) -> Result<()> {
        if let Some(w) = self.writer.take() {
            w.into_inner()?.commit()?;
            self.file += 1;
            self.in_file = 0;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        self.flush()?;
        self.close()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_permutation_visits_every_host_once() {
        for n in [1u64, 2, 12, 97, 1000] {
            let p = super::Permutation::new(n, 42);
            let mut seen: Vec<u64> = (0..n).map(|i| p.at(i)).collect();
            seen.sort_unstable();
            assert_eq!(seen, (0..n).collect::<Vec<_>>());
        }
    }
}
