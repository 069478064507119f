//! `crawler scan`: the ZMap-shaped pipeline — target iteration ([`order`]), a send loop
//! ([`send`] + [`pace`]), a receive loop ([`recv`] + [`validate`]), output ([`record`]) — plus
//! what a blocking study needs and ZMap lacks: a row for every probe including silence
//! ([`silence`]), control and random ports per host ([`ports`]), retries of silent probes only,
//! IPv6, and the reply details (TTL, IP-ID, window, options, ICMP type/code/responder) that
//! tell a filter from a host.
//!
//! Per-probe state is one bit (answered, in [`state`]). Send times live in a fixed-size ring of
//! recent sends ([`sendlog`]) whose slot each SYN carries in its sequence number, so RTTs and
//! `sent_at` are exact (µs) for replies and for silence alike, while memory does not grow with
//! the plan beyond the bitmap.
//!
//! A probe's way through: [`targets`] loads the plan; [`order`] says when each (target, port
//! slot) goes; `probe::syn` builds its SYN; [`pace`] and the per-AS / per-/24 limits pace it;
//! [`send`] sends it; [`recv`] receives the answer and [`validate`] proves it is ours; [`record`]
//! writes its row into the [`partition`]; [`manifest`] sums the scan up.

mod config;
pub mod manifest;
mod monitor;
pub mod order;
pub mod pace;
pub mod partition;
pub mod ports;
pub mod record;
pub mod recv;
pub mod send;
pub mod sendlog;
pub mod silence;
pub mod state;
pub mod targets;
pub mod validate;

pub use config::{sender_threads, Params, ScanConfig, MAX_RETRIES};
pub use manifest::{print_summary, ScanSummary};

use crate::net::handover::Handover;
use crate::net::route::{self, NetInfo};
use anyhow::{bail, Context, Result};
use datasets::blocklist::Blocklist;
use order::Order;
use ports::PortPlan;
use recv::ring::RxRing;
use send::batch::Templates;
use send::socket::TxSocket;
use sendlog::SendLog;
use state::{sleep_unless, unix_us, ScanState};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use targets::Targets;
use validate::Cookie;

/// Run a scan; `stop` is set by Ctrl-C (the scan then records what it has and exits).
pub fn run(cfg: &ScanConfig, stop: Arc<AtomicBool>) -> Result<ScanSummary> {
    let started = unix_us();
    // Every raw socket first, before any input is read or output written: without privileges
    // the scan fails here. They are bound to their interface later — binding needs no
    // privilege, and which interface only the plan can say.
    let (ring, senders) = open_sockets(sender_threads(cfg.scan.senders))?;
    let part = partition::Partition::new(cfg, started);
    let rel = part.dir.strip_prefix(&cfg.out).unwrap_or(&part.dir).to_path_buf();
    let writable = Handover::new(&cfg.out, std::iter::once(rel).chain(cfg.writable.iter().cloned()));
    crate::net::privs::drop_privileges(&cfg.scan.user, &writable)?;
    for (path, text) in &cfg.after_drop {
        datasets::publish::write_atomic(path, text)?;
    }
    let spool_full: Arc<std::sync::OnceLock<String>> = Default::default();
    let published = cfg.store.as_ref().map(|o| spool_watch(o, stop.clone(), spool_full.clone()));

    // From here on unprivileged: no dataset parser ever runs with privileges.
    let plan = PlanFile::load(cfg)?;
    let block = Blocklist::build(&cfg.allow_reserved, &cfg.opt_out, &cfg.exclude, Default::default())?;
    let seed = cfg.seed.unwrap_or_else(rand::random);
    let ports = Arc::new(PortPlan::new(&cfg.scan, (seed, seed.rotate_left(29) ^ 0x7261_6e64)).context("ports")?);
    let ni = discover_route(cfg, &plan.targets, &block)?;
    let (ring, senders) = bind_sockets(ring, senders, &ni)?;

    let params = manifest::params(cfg, seed, &plan.sha256, &plan.metadata, senders.len(), &ni, started);
    let kv = manifest::file_metadata(&part, &cfg.vantage, &params);
    let rel_s = rel_str(&part, cfg);
    let done = part.prepare(cfg.resume, &plan.targets, &ports, cfg.store.as_ref().and_then(|o| o.store.as_ref()).map(|s| (s, rel_s.as_str())))?;
    // This run goes into the shard's history before it probes: killed, it stays there without
    // counters, and the crawl says its losses are unknown.
    let mut history = manifest::history(&part, cfg.resume, done.len())?;
    history.push(manifest::RunRecord { started_at: manifest::rfc3339(started), resumed: cfg.resume, ..Default::default() });
    manifest::save_history(&part, &history)?;
    // With a store behind `out`, its uploads start now — as the unprivileged user, and only
    // once `prepare` has taken stock of the spool and the store: an upload between its two
    // listings would hide a finished file from both (its probes sent again).
    let spool = match &cfg.store {
        Some(o) => o.start()?,
        None => None,
    };
    let new_recorder = || part.recorder(&cfg.vantage, &plan.targets, &ports, &kv, cfg.scan.rows_per_file).map(|r| r.on_publish(published.clone()));
    let recorder = new_recorder()?;

    let st = Arc::new(new_state(cfg, &plan.targets, &ports));
    for p in &done {
        st.mark(*p);
    }
    let (out, records) = crossbeam_channel::bounded(1 << 13);
    let writer = record::spawn(recorder, records)?;
    let receiver = recv::spawn(st.clone(), ring, out.clone())?;
    let monitor = monitor::Monitor::start(cfg.progress, st.clone());

    let (pacer, limits) = (pace::Pacer::new(cfg.scan.rate), pace::KeyedLimits::new(cfg.scan.asn_rate, cfg.scan.net_rate));
    let shared = send::Shared { st: &st, block: &block, limits: &limits, pacer: &pacer, stop: &stop };
    let templates = Templates::new(&ni);
    let mut loops: Vec<send::SendLoop> = senders.into_iter().map(|tx| send::SendLoop::new(shared, tx, templates.clone(), out.clone())).collect();
    let order = Order::new(plan.targets.len() as u64, ports.slots(), seed);
    let first_pass_pps = send::run_passes(&mut loops, &order, &cfg.scan);

    // Late replies get the cooldown; then the receive loop drains the ring and stops.
    sleep_unless(&stop, Duration::from_secs_f64(cfg.scan.cooldown));
    st.stop_rx.store(true, Relaxed);
    let receive_drops = receiver.join().map_err(|_| anyhow::anyhow!("receive thread panicked"))?;
    monitor.finish();
    let interrupted = stop.load(Relaxed);
    let (second, unlogged) = if interrupted { (None, 0) } else { silence::sweep_final(&st, &out, new_recorder)? };

    // The senders hold the record channel too; it closes when they are gone.
    let send_errors = loops.iter().map(|l| l.errors()).sum();
    let deferred = loops.iter().fold((0, 0), |(p, b), l| (p + l.deferred_peak as u64, b + l.deferred_cap() as u64));
    drop(loops);
    drop(out);
    let mut written = writer.join().map_err(|_| anyhow::anyhow!("record thread panicked"))??.finish()?;
    if let Some(r) = second {
        written.add(r.finish()?);
    }
    let ending = manifest::Ending { send_errors, deferred, receive_drops, unlogged, written, rows_before_resume: done.len() as u64, first_pass_pps, interrupted, started_us: started };
    let summary = ScanSummary::new(&part, &st, cfg.resume, ending, history);
    manifest::save_history(&part, &summary.runs)?;
    manifest::write(&part, &params, &cfg.manifest_extra, &summary)?;
    if let Some(o) = &cfg.store {
        if let Some(msg) = spool_full.get() {
            // The store is away and the spool is full: nothing more can go up now.
            anyhow::bail!("{msg}");
        }
        if interrupted {
            // Stopped by hand: a short try; what is left goes up with --resume.
            if let Some(s) = spool {
                if let Err(e) = s.finish(Duration::from_secs(10).min(o.upload_wait)) {
                    tracing::warn!("{e}");
                }
            }
        } else {
            // The crawl is complete in the store once its manifest is there: all must go up.
            o.finish(spool)?;
        }
    }
    Ok(summary)
}

/// The partition's path relative to `out` (its key prefix in a store).
fn rel_str(part: &partition::Partition, cfg: &ScanConfig) -> String {
    part.dir.strip_prefix(&cfg.out).unwrap_or(&part.dir).to_string_lossy().into_owned()
}

/// After each published file: when the spool holds more than its bound (the store has been away
/// too long), stop the crawl as Ctrl-C would — everything probed so far is recorded, in the
/// spool — and say why.
fn spool_watch(o: &crate::output::Output, stop: Arc<AtomicBool>, full: Arc<std::sync::OnceLock<String>>) -> Arc<dyn Fn() + Send + Sync> {
    let (dir, max, name) = (o.local.clone(), o.spool_max, o.describe());
    Arc::new(move || {
        // The kept plan is not waiting for the store: as `Spool::check_room`, it does not count.
        let held: u64 = datasets::store::spool::pending(&dir).unwrap_or_default().iter().filter(|f| !f.0.starts_with("_plans/")).map(|f| f.1).sum();
        if held > max && full.get().is_none() {
            let _ = full.set(format!("the spool holds {held} bytes, more than its {max}: the store {name} has been unreachable too long; the crawl stopped, everything it probed is recorded in the spool, and `--resume` uploads it and finishes the crawl"));
            stop.store(true, Relaxed);
        }
    })
}

/// The plan as the scan uses it, and what the manifest records of it.
struct PlanFile {
    targets: Arc<Targets>,
    sha256: String,
    metadata: Vec<(String, String)>,
}

impl PlanFile {
    fn load(cfg: &ScanConfig) -> Result<PlanFile> {
        let sha256 = datasets::input::sha256_file(&cfg.plan)?;
        let metadata = datasets::schema::parquet_metadata(&cfg.plan)?;
        let targets = Arc::new(Targets::load(&cfg.plan, cfg.shard)?);
        if targets.is_empty() {
            bail!("{}: no targets (in shard {}/{})", cfg.plan.display(), cfg.shard.0, cfg.shard.1);
        }
        Ok(PlanFile { targets, sha256, metadata })
    }
}

/// Interface, source addresses and gateway MACs towards the plan's targets — the first of each
/// family that may be probed: a reserved or opted-out address is never sent to, and need not
/// be routed.
fn discover_route(cfg: &ScanConfig, targets: &Targets, block: &Blocklist) -> Result<NetInfo> {
    let sample4 = targets.v4.iter().map(|a| std::net::Ipv4Addr::from(*a)).find(|a| block.check((*a).into()).is_none());
    let sample6 = targets.v6.iter().map(|a| std::net::Ipv6Addr::from(*a)).find(|a| block.check((*a).into()).is_none());
    let gw = cfg.scan.gateway_mac.as_deref().map(route::parse_mac).transpose()?;
    route::discover(sample4, sample6, cfg.scan.interface.as_deref(), gw, &cfg.scan.source_ip)
}

/// The receive ring and one send socket per sender thread, not yet bound to an interface.
fn open_sockets(senders: usize) -> Result<(RxRing, Vec<TxSocket>)> {
    let ring = RxRing::create()?;
    let tx = (0..senders).map(|_| TxSocket::create()).collect::<Result<Vec<_>>>()?;
    Ok((ring, tx))
}

/// The sockets on the interface towards the plan's targets.
fn bind_sockets(mut ring: RxRing, mut tx: Vec<TxSocket>, ni: &NetInfo) -> Result<(RxRing, Vec<TxSocket>)> {
    ring.bind(ni.ifindex)?;
    for t in &mut tx {
        t.to(ni.ifindex);
    }
    Ok((ring, tx))
}

/// The state the loops share: a fresh cookie key per crawl, the send log sized to the crawl.
fn new_state(cfg: &ScanConfig, targets: &Arc<Targets>, ports: &Arc<PortPlan>) -> ScanState {
    let probes = targets.len() as u64 * ports.slots();
    // Each sender holds up to a batch and one spare slot unsent; two such holdings must never
    // share a slot, so a tiny --send-log is raised to twice what all senders can hold.
    let floor = 2 * (send::socket::BATCH + 1) * sender_threads(cfg.scan.senders);
    let log = SendLog::new(match cfg.scan.send_log {
        0 => sendlog::default_size(probes, cfg.scan.retries as u64 + 1),
        n => n,
    }.max(floor));
    let cooldown_us = (cfg.scan.cooldown * 1e6).min(silence::OLD_FINAL_US as f64) as u32;
    ScanState::new(targets.clone(), ports.clone(), Cookie::new(rand::random(), rand::random()).with_fixed_ports(&ports.reflect), log, cooldown_us)
}
