//! `crawler scan`: the ZMap-shaped pipeline — target iteration (`targets`), a send loop
//! (`send` + `pace`), a receive loop (`receive` + `validate`), output (`record`) — plus what a
//! blocking study needs and ZMap lacks: a row for every probe including silence, control
//! and random ports per host, retries of silent probes only, IPv6, and the reply details
//! (TTL, IP-ID, window, options, ICMP type/code/responder) that tell a filter from a host.
//!
//! Per-probe state is one bit (answered). Send times live in a fixed-size ring of recent sends
//! (`sendlog`) whose slot each SYN carries in its sequence number, so RTTs and `sent_at` are
//! exact (µs) for replies and for silence alike, while memory does not grow with the plan
//! beyond the bitmap.

use crate::netinfo::{self, NetInfo};
use crate::pace::{KeyedLimits, Pacer};
use crate::receive::Receiver;
use crate::record::{Observation, Recorder};
use crate::send::Sender;
use crate::sendlog::SendLog;
use crate::targets::{Order, PortPlan, Role, Targets};
use crate::validate::Cookie;
use crate::wire::{self, Link, SynFields, MAX_FRAME};
use anyhow::{bail, Context, Result};
use datasets::blocklist::{Blocklist, Reason};
use ipnet::IpNet;
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Serialize)]
pub struct ScanConfig {
    pub plan: PathBuf,
    pub out: PathBuf,
    /// Ports, rates, retries, interface: the `[scan]` table of a crawl config.
    pub scan: crate::config::Scan,
    pub vantage: String,
    pub exclude: Vec<PathBuf>,
    pub opt_out: Vec<PathBuf>,
    pub allow_reserved: Vec<IpNet>,
    pub crawl_id: Option<String>,
    pub seed: Option<u64>,
    pub shard: (u64, u64),
    /// Continue an interrupted crawl: keep what complete files hold, probe only the rest.
    pub resume: bool,
    /// The partition's date (a resumed crawl keeps its first day's).
    pub crawl_date: Option<String>,
    #[serde(skip)]
    pub progress: bool,
    /// Recorded in the manifest (the `run` config, the self-check).
    #[serde(skip)]
    pub manifest_extra: serde_json::Value,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct ScanSummary {
    pub crawl_id: String,
    pub crawl_date: String,
    pub partition: PathBuf,
    pub targets: u64,
    pub probes_planned: u64,
    pub sent: u64,
    pub send_errors: u64,
    pub frames_received: u64,
    pub replies_valid: u64,
    pub validation_failed: u64,
    /// Answers to an attempt whose send-log slot had been reused; not recorded.
    pub stale_replies: u64,
    /// Replies the kernel dropped because the receive ring was full (should be 0).
    pub receive_drops: u64,
    /// Probes without a row because their final attempt was not in the send log (should be 0).
    pub unlogged: u64,
    pub duplicates: u64,
    pub skipped: BTreeMap<String, u64>,
    pub rows: u64,
    pub rows_by_reply: BTreeMap<String, u64>,
    pub files: Vec<String>,
    pub resumed: bool,
    /// Rows already recorded by earlier (interrupted) runs of this crawl and shard.
    pub rows_before_resume: u64,
    pub started_at: String,
    pub finished_at: String,
    pub elapsed_s: f64,
    pub first_pass_pps: f64,
    pub interrupted: bool,
}

/// Counters shared by the loops (atomics only: no locks in the hot paths).
#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    frames: AtomicU64,
    valid: AtomicU64,
    invalid: AtomicU64,
    stale: AtomicU64,
    dup: AtomicU64,
    skipped_reserved: AtomicU64,
    skipped_optout: AtomicU64,
    skipped_excluded: AtomicU64,
    skipped_nosource: AtomicU64,
}

struct Shared {
    targets: Arc<Targets>,
    ports: Arc<PortPlan>,
    cookie: Cookie,
    answered: Vec<AtomicU64>,
    log: SendLog,
    /// A final attempt's slot is not reused before this much time (µs) has passed.
    cooldown_us: u32,
    pass: AtomicU8,
    start: Instant,
    start_us: i64,
    c: Counters,
    stop_rx: AtomicBool,
}

impl Shared {
    #[inline]
    fn elapsed_us(&self) -> i64 {
        self.start.elapsed().as_micros() as i64
    }
    #[inline]
    fn is_answered(&self, p: u64) -> bool {
        self.answered[(p >> 6) as usize].load(Relaxed) & (1 << (p & 63)) != 0
    }
    /// Set the bit; true if this call set it.
    #[inline]
    fn mark(&self, p: u64) -> bool {
        self.answered[(p >> 6) as usize].fetch_or(1 << (p & 63), Relaxed) & (1 << (p & 63)) == 0
    }
    /// Absolute send time from a wrapping send tick, seen at elapsed `now`.
    #[inline]
    fn sent_us(&self, tick: u32, now: i64) -> i64 {
        let age = (now as u32).wrapping_sub(tick);
        self.start_us + now - age as i64
    }
    fn silence(&self, probe: u64, tick: u32, now: i64) -> Observation {
        Observation { probe, attempts: self.pass.load(Relaxed) + 1, sent_us: self.sent_us(tick, now), reply: None, recv_us: 0 }
    }
}

fn unix_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros() as i64
}

fn rfc3339(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us).unwrap().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// The receive loop: parse, validate, attribute, record the first answer of each probe.
/// Returns the kernel's count of replies dropped because the ring was full.
fn receive_loop(sh: &Shared, mut rx: Receiver, tx: &crossbeam_channel::Sender<Observation>) -> u64 {
    let mut open = true;
    while open && !sh.stop_rx.load(Relaxed) {
        // Blocks until a block of replies is full or retired; the timeout bounds how long the
        // stop flag waits.
        rx.next_block(20, |frame, stamp| {
            open = handle_frame(sh, frame, stamp, tx);
            open
        });
    }
    // What the last blocks still hold arrived within the cooldown: record it too.
    while open && rx.next_block(0, |frame, stamp| {
        open = handle_frame(sh, frame, stamp, tx);
        open
    }) > 0
    {}
    // The kernel counts drops from the socket's start until the counter is read: read once.
    rx.stats().1
}

/// Parse, validate, attribute and record one frame; false when the recorder is gone.
#[inline]
fn handle_frame(sh: &Shared, frame: &[u8], stamp_us: i64, tx: &crossbeam_channel::Sender<Observation>) -> bool {
    let slots = sh.ports.slots();
    let Some(r) = wire::parse(frame) else { return true };
    sh.c.frames.fetch_add(1, Relaxed);
    // The send-log slot the reply names must hold a probe of this address and port.
    let attempts = sh.pass.load(Relaxed) + 1;
    let Some(slots_named) = sh.cookie.candidates(&r, attempts) else {
        sh.c.invalid.fetch_add(1, Relaxed);
        return true;
    };
    let hit = slots_named.into_iter().flatten().find_map(|s| {
        sh.log.get(s).filter(|(probe, _)| sh.targets.ip((probe / slots) as usize) == r.target && sh.ports.port(r.target, probe % slots).0 == r.tport)
    });
    let Some((probe, tick)) = hit else {
        // Our port and a slot in range, but the slot went to another send since: a (late)
        // answer to an earlier attempt (a forgery lands in range with odds slots / 2^32).
        let stale = slots_named.into_iter().flatten().any(|s| (s as u64) < sh.log.len());
        if stale { &sh.c.stale } else { &sh.c.invalid }.fetch_add(1, Relaxed);
        return true;
    };
    if !sh.mark(probe) {
        sh.c.dup.fetch_add(1, Relaxed);
        return true;
    }
    sh.c.valid.fetch_add(1, Relaxed);
    // Arrival time: the kernel's stamp, mapped onto the crawl's clock (start + elapsed).
    let now = if stamp_us > 0 { stamp_us - sh.start_us } else { sh.elapsed_us() };
    let o = Observation { probe, attempts, sent_us: sh.sent_us(tick, now), reply: Some(r), recv_us: sh.start_us + now };
    tx.send(o).is_ok()
}

struct SendCtx<'a> {
    sh: &'a Shared,
    block: &'a Blocklist,
    limits: &'a KeyedLimits,
    pacer: &'a Pacer,
    tx: Sender,
    tmpl4: Box<[u8; MAX_FRAME]>,
    tmpl6: Box<[u8; MAX_FRAME]>,
    src4: Option<IpAddr>,
    src6: Option<IpAddr>,
    deferred: std::collections::VecDeque<u64>,
    /// Probes accepted for the next batch; frames are built when it goes out.
    queued: [u64; crate::send::BATCH],
    nq: usize,
    /// Where probes whose final attempt's slot is reused are recorded as silent.
    out: crossbeam_channel::Sender<Observation>,
    stop: &'a AtomicBool,
    /// Frames per `sendmmsg` now: at most the pacer's, smaller while many replies come back.
    batch: usize,
    adapt: (u64, u64),
}

/// Batch size while replies flow: the reply path shares the sender's cores (measured on the
/// lab: 16 gave ~91 kpps where 64 gave 64–84 kpps with 55 % of probes answered, while into
/// a silent network 64 sends ~390 kpps against ~290 kpps for 16).
const RESPONSIVE_BATCH: usize = 16;

/// A final attempt still unanswered after this long (µs) is recorded as silent during the pass.
const OLD_FINAL_US: u32 = 30 * 60 * 1_000_000;

/// Probes from which the final silence sweep is split over two recorders.
const SPLIT_SWEEP: u64 = 1 << 16;

enum Outcome {
    Queued,
    Deferred,
    Skipped,
}

impl SendCtx<'_> {
    /// Queue probe `p` into the batch (or defer/skip it); flush full batches.
    #[inline]
    fn try_probe(&mut self, p: u64) -> Outcome {
        let sh = self.sh;
        let slots = sh.ports.slots();
        let t = (p / slots) as usize;
        let ip = sh.targets.ip(t);
        // Blocklist and opt-out again at send time: the plan may predate the lists.
        if let Some(r) = self.block.check(ip) {
            if sh.mark(p) {
                match r {
                    Reason::Reserved => &sh.c.skipped_reserved,
                    Reason::OptOut => &sh.c.skipped_optout,
                    _ => &sh.c.skipped_excluded,
                }
                .fetch_add(1, Relaxed);
            }
            return Outcome::Skipped;
        }
        let src = match ip {
            IpAddr::V4(_) => self.src4,
            IpAddr::V6(_) => self.src6,
        };
        if src.is_none() {
            if sh.mark(p) {
                sh.c.skipped_nosource.fetch_add(1, Relaxed);
            }
            return Outcome::Skipped;
        };
        if !self.limits.allow(sh.targets.asn[t], ip) {
            return Outcome::Deferred;
        }
        self.queued[self.nq] = p;
        self.nq += 1;
        if self.nq >= self.batch {
            self.flush();
        }
        Outcome::Queued
    }

    /// Before send `counter` reuses a slot that holds a final attempt, that probe must have
    /// had its cooldown: wait for it if need be, then record it as silent unless answered.
    fn retire(&mut self, counter: u64) {
        let sh = self.sh;
        let Some(old) = counter.checked_sub(sh.log.len()) else { return };
        if !sh.log.is_final(old) {
            return;
        }
        let Some((q, tick)) = sh.log.get(sh.log.slot(old)) else { return };
        if sh.is_answered(q) {
            return;
        }
        while (sh.elapsed_us() as u32).wrapping_sub(tick) < sh.cooldown_us {
            if self.stop.load(Relaxed) {
                return; // interrupted: silence is not recorded (a resumed crawl probes it again)
            }
            std::thread::sleep(Duration::from_micros(500));
        }
        if sh.mark(q) {
            let _ = self.out.send(sh.silence(q, tick, sh.elapsed_us()));
        }
    }

    /// Every few seconds: drop idle keyed-limit cells; and (first sender only) record as silent
    /// the final attempts that have waited in the send log for `OLD_FINAL_US`. Send ticks
    /// wrap after 71 minutes, so in a slow crawl (2^20 sends taking longer than that) a final
    /// attempt left in the log until the end would get a wrong `sent_at`.
    fn housekeeping(&mut self, k: u64) {
        self.limits.housekeeping();
        if k != 0 {
            return;
        }
        let sh = self.sh;
        let now = sh.elapsed_us();
        for (q, tick) in sh.log.final_older_than(now as u32, sh.cooldown_us.max(OLD_FINAL_US)) {
            if sh.mark(q) {
                let _ = self.out.send(sh.silence(q, tick, now));
            }
        }
    }

    /// Build and send the queued probes: each gets the next send-log slot, carried in its
    /// sequence number.
    fn flush(&mut self) {
        let n = self.nq;
        if n == 0 {
            return;
        }
        self.pacer.wait(n);
        let sh = self.sh;
        let slots = sh.ports.slots();
        let c0 = sh.log.reserve(n as u64);
        for c in c0..c0 + n as u64 {
            self.retire(c);
        }
        let now = sh.elapsed_us();
        let attempt = sh.pass.load(Relaxed);
        for j in 0..n {
            let (p, c) = (self.queued[j], c0 + j as u64);
            let ip = sh.targets.ip((p / slots) as usize);
            let (src, tmpl) = match ip {
                IpAddr::V4(_) => (self.src4, &self.tmpl4),
                IpAddr::V6(_) => (self.src6, &self.tmpl6),
            };
            let (port, _) = sh.ports.port(ip, p % slots);
            let (sport, seq) = sh.cookie.probe(ip, port, sh.log.slot(c), attempt);
            sh.log.put(c, p, now as u32);
            self.tx.frames[j] = **tmpl;
            let src = src.expect("queued only with a source address");
            self.tx.lens[j] = wire::fill_syn(&mut self.tx.frames[j], &SynFields { src, dst: ip, sport, dport: port, seq, ip_id: (seq >> 16) as u16, tsval: (now / 1000) as u32 });
        }
        self.tx.n = n;
        self.nq = 0;
        let sent = self.tx.flush();
        sh.c.sent.fetch_add(sent as u64, Relaxed);
    }

    /// Small batches while a large share of probes gets answered, full batches otherwise.
    fn adapt_batch(&mut self) {
        let (sent, valid) = (self.sh.c.sent.load(Relaxed), self.sh.c.valid.load(Relaxed));
        let (ds, dv) = (sent - self.adapt.0, valid.saturating_sub(self.adapt.1));
        if ds >= 1024 {
            let busy = dv * 10 >= ds; // >= 10 % answered
            self.batch = if busy { self.pacer.batch.min(RESPONSIVE_BATCH) } else { self.pacer.batch };
            self.adapt = (sent, valid);
        }
    }

    /// Retry deferred probes; at most `budget` attempts so fresh probes keep flowing.
    fn service_deferred(&mut self, budget: usize) -> usize {
        let mut sent = 0;
        for _ in 0..budget.min(self.deferred.len()) {
            let p = self.deferred.pop_front().unwrap();
            match self.try_probe(p) {
                Outcome::Deferred => self.deferred.push_back(p),
                Outcome::Queued => sent += 1,
                Outcome::Skipped => {}
            }
        }
        sent
    }

    /// One pass over the send order; sender `k` of `n` takes positions k, k+n, k+2n, ...
    /// The probes `AHEAD` positions on are computed early and their targets prefetched.
    fn pass(&mut self, order: &Order, k: u64, n: u64) {
        const AHEAD: u64 = 16;
        let mut last_house = Instant::now();
        let count = order.len().saturating_sub(k).div_ceil(n);
        let slots = self.sh.ports.slots();
        let mut ahead = [0u64; AHEAD as usize];
        let fetch = |m: u64, ahead: &mut [u64; AHEAD as usize]| {
            let p = order.probe(k + m * n);
            self.sh.targets.prefetch((p / slots) as usize);
            ahead[(m % AHEAD) as usize] = p;
        };
        for m in 0..AHEAD.min(count) {
            fetch(m, &mut ahead);
        }
        for m in 0..count {
            if self.stop.load(Relaxed) {
                break;
            }
            let (i, p) = (k + m * n, ahead[(m % AHEAD) as usize]);
            if m + AHEAD < count {
                fetch(m + AHEAD, &mut ahead);
            }
            if self.sh.is_answered(p) {
                continue;
            }
            if let Outcome::Deferred = self.try_probe(p) {
                self.deferred.push_back(p);
            }
            if !self.deferred.is_empty() && (i & 63) == 0 {
                self.service_deferred(64);
            }
            if (i & 0xfff) == 0 {
                self.adapt_batch();
            }
            if (i & 0x3ff) == 0 && last_house.elapsed() > Duration::from_secs(5) {
                self.housekeeping(k);
                last_house = Instant::now();
            }
        }
        // Drain what the keyed limits held back, waiting for their budgets to refill.
        while !self.deferred.is_empty() && !self.stop.load(Relaxed) {
            if last_house.elapsed() > Duration::from_secs(5) {
                self.housekeeping(k);
                last_house = Instant::now();
            }
            if self.service_deferred(self.deferred.len()) == 0 {
                self.flush();
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        self.flush();
    }
}

fn sleep_unless(stop: &AtomicBool, d: Duration) {
    let end = Instant::now() + d;
    while Instant::now() < end && !stop.load(Relaxed) {
        std::thread::sleep(Duration::from_millis(20).min(end.saturating_duration_since(Instant::now())));
    }
}

/// `--senders`: 0 picks one per core, at most 4, as ZMap does. At high rates the kernel's
/// work for each SYN (and, on a small scanner, for its reply) runs in the sending thread, so a
/// second sender puts the second core to work; under a rate limit the extra thread just waits.
pub fn sender_threads(requested: usize) -> usize {
    match requested {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()).min(4),
        n => n,
    }
}

pub fn port_plan(cfg: &ScanConfig, key: (u64, u64)) -> Result<PortPlan> {
    let mut fixed: Vec<(u16, Role)> = Vec::new();
    for p in &cfg.scan.ports {
        fixed.push((*p, if *p == 25 { Role::Target } else { Role::Mail }));
    }
    for p in &cfg.scan.control_ports {
        if fixed.iter().any(|(q, _)| q == p) {
            bail!("port {p} is both a probe port and a control port");
        }
        fixed.push((*p, Role::Control));
    }
    if fixed.is_empty() && cfg.scan.random_ports == 0 {
        bail!("no ports to probe");
    }
    // Send times are kept as 32-bit µs ticks (71 minutes); replies later than 30 minutes are
    // not waited for.
    if !(0.0..=1800.0).contains(&cfg.scan.cooldown) {
        bail!("--cooldown must be between 0 and 1800 seconds");
    }
    if cfg.scan.random_ports as usize > crate::targets::MAX_RANDOM_PORTS {
        bail!("at most {} random ports per host", crate::targets::MAX_RANDOM_PORTS);
    }
    Ok(PortPlan { fixed, random: cfg.scan.random_ports, key })
}

/// Run a scan; `stop` is set by Ctrl-C (the scan then records what it has and exits).
pub fn run(cfg: &ScanConfig, stop: Arc<AtomicBool>) -> Result<ScanSummary> {
    let started = unix_us();
    let rx_setup = std::thread::spawn(Receiver::create);
    let plan_sha = datasets::input::sha256_file(&cfg.plan)?;
    let plan_meta = datasets::schema::parquet_metadata(&cfg.plan)?;
    let targets = Arc::new(Targets::load(&cfg.plan, cfg.shard)?);
    if targets.is_empty() {
        bail!("{}: no targets (in shard {}/{})", cfg.plan.display(), cfg.shard.0, cfg.shard.1);
    }
    let block = crate::plan::blocklist(&cfg.allow_reserved, &cfg.opt_out, &cfg.exclude, Default::default())?;
    let seed = cfg.seed.unwrap_or_else(rand::random);
    let n_senders = sender_threads(cfg.scan.senders);
    let secret: (u64, u64) = (rand::random(), rand::random());
    let ports = Arc::new(port_plan(cfg, (seed, seed.rotate_left(29) ^ 0x7261_6e64)).context("ports")?);
    let slots = ports.slots();
    let total = targets.len() as u64 * slots;

    let sample4 = targets.v4.first().map(|a| std::net::Ipv4Addr::from(*a));
    let sample6 = targets.v6.first().map(|a| std::net::Ipv6Addr::from(*a));
    let gw = cfg.scan.gateway_mac.as_deref().map(netinfo::parse_mac).transpose()?;
    let ni: NetInfo = netinfo::discover(sample4, sample6, cfg.scan.interface.as_deref(), gw, &cfg.scan.source_ip)?;
    // Open raw sockets first: the scan fails fast without privileges, before any output.
    tracing::debug!("scan: plan and route discovery done after {:.3} s", (unix_us() - started) as f64 / 1e6);
    let mut receiver = rx_setup.join().map_err(|_| anyhow::anyhow!("receive set-up panicked"))??;
    receiver.bind(ni.ifindex)?;
    let sender = Sender::open(ni.ifindex)?;

    let crawl_date = cfg.crawl_date.clone().unwrap_or_else(|| chrono::DateTime::from_timestamp_micros(started).unwrap().format("%Y-%m-%d").to_string());
    let crawl_id = cfg.crawl_id.clone().unwrap_or_else(|| chrono::DateTime::from_timestamp_micros(started).unwrap().format("%Y%m%dT%H%M%SZ").to_string());
    let partition = cfg.out.join(format!("crawl_date={crawl_date}")).join(format!("crawl_id={crawl_id}"));
    let params = serde_json::json!({
        "config": cfg, "seed": seed, "plan_sha256": plan_sha, "plan_metadata": plan_meta.iter().cloned().collect::<BTreeMap<_,_>>(),
        "software": crate::SOFTWARE, "sender_threads": n_senders, "interface": ni.ifname, "source_v4": ni.src4, "source_v6": ni.src6, "started_at": rfc3339(started),
    });
    let kv = vec![
        ("port25.kind".to_string(), "observations".to_string()),
        ("port25.crawl_id".into(), crawl_id.clone()),
        ("port25.vantage".into(), cfg.vantage.clone()),
        ("port25.software".into(), crate::SOFTWARE.into()),
        ("port25.params".into(), params.to_string()),
    ];
    let shard_tag = format!("part-s{}of{}-", cfg.shard.0, cfg.shard.1);
    let name_prefix = format!("{shard_tag}{:08x}", rand::random::<u32>());
    // Resume: files this shard finished are kept and their probes skipped; a file a crash
    // left half-written never got its final name and is discarded.
    let done = if cfg.resume { recorded(&partition, &shard_tag, &targets, &ports)? } else { Vec::new() };
    let earlier = std::fs::read_dir(&partition).map(|rd| rd.filter_map(|e| e.ok()).any(|e| e.file_name().to_string_lossy().starts_with(&shard_tag))).unwrap_or(false);
    if !cfg.resume && (earlier || partition.join(manifest_name(cfg.shard)).exists()) {
        bail!("crawl {} already has shard {}/{} in {} (use --resume, or another crawl id)", crawl_id, cfg.shard.0, cfg.shard.1, partition.display());
    }
    let new_recorder = |prefix: &str| Recorder::new(&partition, prefix, &crawl_id, &cfg.vantage, targets.clone(), ports.clone(), kv.clone(), cfg.scan.rows_per_file);
    let mut recorder = new_recorder(&name_prefix)?;

    // One anchor for both clocks: monotonic elapsed time maps onto wall time from here, and
    // kernel receive stamps (wall time) map back onto it.
    let start = Instant::now();
    let start_us = unix_us();
    let sh = Arc::new(Shared {
        targets: targets.clone(),
        ports: ports.clone(),
        cookie: Cookie::new(secret.0, secret.1),
        answered: (0..total.div_ceil(64)).map(|_| AtomicU64::new(0)).collect(),
        log: SendLog::new(match cfg.scan.send_log { 0 => crate::sendlog::default_size(total, cfg.scan.retries as u64 + 1), n => n }),
        cooldown_us: (cfg.scan.cooldown * 1e6).min(OLD_FINAL_US as f64) as u32,
        pass: AtomicU8::new(0),
        start,
        start_us,
        c: Counters::default(),
        stop_rx: AtomicBool::new(false),
    });
    let (otx, orx) = crossbeam_channel::bounded::<Observation>(1 << 13);
    let writer = std::thread::Builder::new().name("record".into()).spawn(move || -> Result<Recorder> {
        for o in orx {
            recorder.push(&o)?;
        }
        Ok(recorder)
    })?;
    let rx_thread = {
        let sh = sh.clone();
        let otx = otx.clone();
        std::thread::Builder::new().name("receive".into()).spawn(move || receive_loop(&sh, receiver, &otx))?
    };
    let pb = crate::progress::bar(cfg.progress, total, "probing");
    let progress = {
        let sh = sh.clone();
        let pb = pb.clone();
        // Ticks every 250 ms; a message (or the sender's drop) ends it at once.
        let (done, d2) = crossbeam_channel::bounded::<()>(1);
        let h = std::thread::spawn(move || {
            let mut last = (Instant::now(), 0u64);
            while let Err(crossbeam_channel::RecvTimeoutError::Timeout) = d2.recv_timeout(Duration::from_millis(250)) {
                let sent = sh.c.sent.load(Relaxed);
                let pps = (sent - last.1) as f64 / last.0.elapsed().as_secs_f64();
                last = (Instant::now(), sent);
                pb.set_position(sent.min(pb.length().unwrap_or(0)));
                pb.set_message(format!(
                    "pass {} sent {} recv {} valid {} invalid {} {:.0} pps",
                    sh.pass.load(Relaxed) + 1,
                    sent,
                    sh.c.frames.load(Relaxed),
                    sh.c.valid.load(Relaxed),
                    sh.c.invalid.load(Relaxed),
                    pps
                ));
            }
        });
        (h, done)
    };

    let link = Link { src_mac: ni.mac, gw_mac: ni.gw4 };
    let link6 = Link { src_mac: ni.mac, gw_mac: ni.gw6 };
    let mut tmpl4 = Box::new([0u8; MAX_FRAME]);
    let mut tmpl6 = Box::new([0u8; MAX_FRAME]);
    if let Some(s) = ni.src4 {
        wire::syn_template(&mut tmpl4, &link, s.into());
    }
    if let Some(s) = ni.src6 {
        wire::syn_template(&mut tmpl6, &link6, s.into());
    }
    let pacer = Pacer::new(cfg.scan.rate);
    let limits = KeyedLimits::new(cfg.scan.asn_rate, cfg.scan.net_rate);
    let order = Order::new(targets.len() as u64, slots, seed);
    let mut senders = vec![sender];
    for _ in 1..n_senders {
        senders.push(Sender::open(ni.ifindex)?);
    }
    let mut ctxs: Vec<SendCtx> = senders
        .into_iter()
        .map(|tx| SendCtx {
            sh: &sh,
            block: &block,
            limits: &limits,
            pacer: &pacer,
            tx,
            tmpl4: tmpl4.clone(),
            tmpl6: tmpl6.clone(),
            src4: ni.src4.map(Into::into),
            src6: ni.src6.map(Into::into),
            deferred: std::collections::VecDeque::with_capacity(4096),
            queued: [0; crate::send::BATCH],
            nq: 0,
            out: otx.clone(),
            stop: &stop,
            batch: pacer.batch,
            adapt: (0, 0),
        })
        .collect();
    // Several sender threads (ZMap's -T): each its own socket and a disjoint stride of the
    // order; pacing and keyed limits are shared (governor's limiters are thread-safe).
    let run_pass = |ctxs: &mut Vec<SendCtx>| {
        let n = ctxs.len() as u64;
        if n == 1 {
            ctxs[0].pass(&order, 0, 1);
            return;
        }
        std::thread::scope(|s| {
            for (k, c) in ctxs.iter_mut().enumerate() {
                let order = &order;
                s.spawn(move || c.pass(order, k as u64, n));
            }
        });
    };
    for p in &done {
        sh.mark(*p);
    }
    let rows_before = done.len() as u64;
    drop(done);
    let mut first_pass_pps = 0.0;
    for r in 0..=cfg.scan.retries {
        if r > 0 {
            if stop.load(Relaxed) {
                break;
            }
            // Retry only what is still silent, after the replies to the last pass had time to land.
            sleep_unless(&stop, Duration::from_secs_f64(cfg.scan.retry_delay));
            sh.pass.store(r, Relaxed);
        }
        if r == cfg.scan.retries {
            sh.log.start_final_pass();
        }
        let t0 = Instant::now();
        run_pass(&mut ctxs);
        if r == 0 {
            first_pass_pps = sh.c.sent.load(Relaxed) as f64 / t0.elapsed().as_secs_f64().max(1e-9);
            tracing::debug!("scan: first pass took {:.3} s (started {:.3} s after launch)", t0.elapsed().as_secs_f64(), (start_us - started) as f64 / 1e6);
        }
    }
    sleep_unless(&stop, Duration::from_secs_f64(cfg.scan.cooldown));
    sh.stop_rx.store(true, Relaxed);
    let receive_drops = rx_thread.join().map_err(|_| anyhow::anyhow!("receive thread panicked"))?;
    drop(progress.1);
    let _ = progress.0.join();
    pb.finish_and_clear();

    // Every probe that never got an answer is a row too: silence is a measurement.
    let interrupted = stop.load(Relaxed);
    let now = sh.elapsed_us();
    let sent_total = sh.c.sent.load(Relaxed);
    let mut second = None;
    let mut unlogged = 0;
    if !interrupted {
        // Final attempts still in the send log: whatever is unanswered now is silent. The cores
        // are idle once the cooldown is over, so a large sweep is split: this thread feeds the
        // first half to the record thread while a second recorder writes the other half to its
        // own file (on the 131,072-probe lab, 70 ms of the scan's tail).
        let w = sh.log.final_window();
        let mid = if w.end - w.start >= SPLIT_SWEEP { w.start + (w.end - w.start) / 2 } else { w.end };
        let silent = |c: u64| sh.log.get(sh.log.slot(c)).filter(|(q, _)| sh.mark(*q)).map(|(q, tick)| sh.silence(q, tick, now));
        second = std::thread::scope(|s| -> Result<Option<Recorder>> {
            let h = (mid < w.end).then(|| {
                s.spawn(|| -> Result<Recorder> {
                    let mut r = new_recorder(&format!("{shard_tag}{:08x}", rand::random::<u32>()))?;
                    for o in (mid..w.end).filter_map(silent) {
                        r.push(&o)?;
                    }
                    Ok(r)
                })
            });
            for o in (w.start..mid).filter_map(silent) {
                if otx.send(o).is_err() {
                    break; // the record thread failed; its error is reported below
                }
            }
            h.map(|h| h.join().map_err(|_| anyhow::anyhow!("record thread panicked"))?).transpose()
        })?;
        // Every probe was either answered, skipped, or finally sent in the last pass.
        unlogged = (0..total).filter(|p| !sh.is_answered(*p)).count() as u64;
        if unlogged > 0 {
            tracing::error!("{unlogged} probes have no record of their final attempt (a bug); they are missing from the output");
        }
    }
    // The senders hold the record channel too; it closes when they are gone.
    let send_errors = ctxs.iter().map(|c| c.tx.errors).sum();
    drop(ctxs);
    drop(otx);
    let recorder = writer.join().map_err(|_| anyhow::anyhow!("record thread panicked"))??;
    let (mut files, mut rows, mut by_reply) = recorder.finish()?;
    if let Some(r) = second {
        let (f, n, b) = r.finish()?;
        files.extend(f);
        rows += n;
        by_reply.iter_mut().zip(b).for_each(|(a, b)| *a += b);
    }
    tracing::debug!("scan: output complete {:.3} s after the cooldown", (unix_us() - start_us - now) as f64 / 1e6);
    let c = &sh.c;
    let mut skipped = BTreeMap::new();
    for (k, v) in [("reserved", &c.skipped_reserved), ("opt-out", &c.skipped_optout), ("excluded", &c.skipped_excluded), ("no-source-address", &c.skipped_nosource)] {
        let n = v.load(Relaxed);
        if n > 0 {
            skipped.insert(k.to_string(), n);
        }
    }
    let finished = unix_us();
    let summary = ScanSummary {
        crawl_id,
        crawl_date,
        partition: partition.clone(),
        targets: targets.len() as u64,
        probes_planned: total,
        sent: sent_total,
        send_errors,
        frames_received: c.frames.load(Relaxed),
        replies_valid: c.valid.load(Relaxed),
        validation_failed: c.invalid.load(Relaxed),
        stale_replies: c.stale.load(Relaxed),
        receive_drops,
        unlogged,
        duplicates: c.dup.load(Relaxed),
        skipped,
        rows,
        rows_by_reply: ["synack", "rst", "icmp", "none"].iter().zip(by_reply).map(|(k, v)| (k.to_string(), v)).collect(),
        files: files.iter().map(|f| f.file_name().unwrap().to_string_lossy().into_owned()).collect(),
        resumed: cfg.resume,
        rows_before_resume: rows_before,
        started_at: rfc3339(started),
        finished_at: rfc3339(finished),
        elapsed_s: (finished - started) as f64 / 1e6,
        first_pass_pps,
        interrupted,
    };
    write_manifest(&partition, cfg.shard, &params, &cfg.manifest_extra, &summary)?;
    Ok(summary)
}

/// `manifest.json` for an unsharded crawl, `manifest-sIofN.json` per shard.
pub fn manifest_name(shard: (u64, u64)) -> String {
    if shard == (0, 1) { "manifest.json".into() } else { format!("manifest-s{}of{}.json", shard.0, shard.1) }
}

/// Probe ids already recorded in this shard's complete files (and removal of half-written ones).
fn recorded(partition: &Path, shard_tag: &str, targets: &Targets, ports: &PortPlan) -> Result<Vec<u64>> {
    use arrow_array::{Array, StringArray, UInt16Array};
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(partition) else { return Ok(out) };
    let slots = ports.slots();
    for e in rd {
        let p = e?.path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with(&format!(".{shard_tag}")) && name.ends_with(".inprogress") {
            std::fs::remove_file(&p)?;
            continue;
        }
        if !(name.starts_with(shard_tag) && name.ends_with(".parquet")) {
            continue;
        }
        for b in datasets::schema::open_parquet(&p, 65_536)? {
            let b = b?;
            let ip = b.column_by_name("ip").and_then(|c| c.as_any().downcast_ref::<StringArray>().cloned()).context("ip column")?;
            let port = b.column_by_name("port").and_then(|c| c.as_any().downcast_ref::<UInt16Array>().cloned()).context("port column")?;
            for i in 0..b.num_rows() {
                let a: IpAddr = ip.value(i).parse()?;
                let Some(t) = targets.find(a) else { bail!("{}: {a} is not in this crawl's plan (another plan?)", p.display()) };
                let slot = (0..slots).find(|s| ports.port(a, *s).0 == port.value(i)).with_context(|| format!("{}: port {} not in this crawl's port set", p.display(), port.value(i)))?;
                out.push(t as u64 * slots + slot);
            }
        }
    }
    Ok(out)
}

fn write_manifest(partition: &Path, shard: (u64, u64), params: &serde_json::Value, extra: &serde_json::Value, s: &ScanSummary) -> Result<()> {
    let m = serde_json::json!({ "params": params, "run": extra, "summary": s, "exit_status": if s.interrupted { "interrupted" } else { "complete" } });
    let name = manifest_name(shard);
    let tmp = partition.join(format!(".{name}.inprogress"));
    std::fs::write(&tmp, serde_json::to_string_pretty(&m)?)?;
    std::fs::rename(&tmp, partition.join(name))?;
    Ok(())
}

pub fn print_summary(s: &ScanSummary) {
    println!("crawl {} ({}): {} targets, {} probes planned", s.crawl_id, s.crawl_date, s.targets, s.probes_planned);
    println!(
        "  sent {} (first pass {:.0} pps), valid replies {}, validation failures {}, duplicates {}, stale {}, send errors {}, receive drops {}",
        s.sent, s.first_pass_pps, s.replies_valid, s.validation_failed, s.duplicates, s.stale_replies, s.send_errors, s.receive_drops
    );
    if !s.skipped.is_empty() {
        println!("  skipped at send time: {:?}", s.skipped);
    }
    println!("  {} rows in {} file(s) under {}: {:?}", s.rows, s.files.len(), s.partition.display(), s.rows_by_reply);
    if s.resumed {
        println!("  resumed: {} rows were recorded by the interrupted run(s) and kept", s.rows_before_resume);
    }
    if s.interrupted {
        println!("  INTERRUPTED: replies so far were recorded; silent probes were not");
    }
}
