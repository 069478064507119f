//! The command line: clap's structs and the dispatch from commands to jobs. Nothing here is
//! imported by the rest of the crate.

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use crawler::job::{self, config::ConfigError};
use crawler::{egress, plan, scan, sink};
use ipnet::IpNet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[derive(Parser)]
#[command(name = "crawler", version, args_override_self = true, about = "Port-25 blocking crawler: plan per-ASN samples, probe them with raw SYNs, record every probe to Parquet")]
pub struct Cli {
    /// No progress bars.
    #[arg(long, global = true)]
    pub quiet: bool,
    /// Log format for schedules: text or json.
    #[arg(long, global = true, default_value = "text")]
    pub log_format: String,
    #[command(subcommand)]
    pub cmd: Cmd,
}

/// A comma-separated list on the command line; `none` is the empty list.
#[derive(Debug, Clone, Default)]
pub struct List<T>(pub Vec<T>);

impl<T: std::str::FromStr> std::str::FromStr for List<T>
where
    T::Err: std::fmt::Display,
{
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        if s == "none" || s.is_empty() {
            return Ok(List(vec![]));
        }
        s.split(',').map(|x| x.trim().parse::<T>().map_err(|e| format!("`{x}`: {e}"))).collect::<std::result::Result<Vec<_>, _>>().map(List)
    }
}

fn parse_port_or_none(s: &str) -> std::result::Result<u16, String> {
    if s == "none" {
        return Ok(0);
    }
    s.parse().map_err(|_| format!("`{s}`: a port number or `none`"))
}

fn parse_crawl_id(s: &str) -> std::result::Result<String, String> {
    job::config::check_name("the crawl id", s).map(|_| s.to_string())
}

fn parse_shard(s: &str) -> std::result::Result<(u64, u64), String> {
    let (i, n) = s.split_once('/').ok_or("shard must be I/N")?;
    let (i, n): (u64, u64) = (i.parse().map_err(|_| "bad shard index")?, n.parse().map_err(|_| "bad shard count")?);
    if n == 0 || i >= n {
        return Err(format!("shard {i}/{n}: need 0 <= I < N"));
    }
    Ok((i, n))
}

/// Where probes must never go; the same lists at plan time and again at send time.
#[derive(Args, Debug)]
pub struct Exclusions {
    /// Prefixes never to probe (one a line).
    #[arg(long, num_args = 1..)]
    exclude: Vec<PathBuf>,
    /// Opt-out lists (one prefix or address a line).
    #[arg(long, num_args = 1..)]
    opt_out: Vec<PathBuf>,
    /// Special-purpose prefixes that may be probed anyway (the lab: 198.18.0.0/15,2001:db8::/32).
    #[arg(long, default_value = "none")]
    allow_reserved: List<IpNet>,
}

#[derive(Args, Debug)]
pub struct PlanArgs {
    /// Routing data: RouteViews/CAIDA pfx2as, iptoasn TSV, ip-location-db CSV, GeoLite2-ASN mmdb (plain or .gz).
    #[arg(long, required = true, num_args = 1..)]
    routes: Vec<PathBuf>,
    /// Force the routes format instead of detecting it: pfx2as, iptoasn, ip-location-db, mmdb.
    #[arg(long)]
    routes_format: Option<datasets::routes::RouteFormat>,
    /// CAIDA AS2Org (JSONL or legacy pipe format).
    #[arg(long, num_args = 1..)]
    orgs: Vec<PathBuf>,
    /// ASdb CSV or an `AS<n>,category` list.
    #[arg(long, num_args = 1..)]
    categories: Vec<PathBuf>,
    /// Hitlist (one address a line): IPv6 targets always come from one; IPv4 addresses in it
    /// replace the random IPv4 draw, for samples of the two families drawn alike.
    #[arg(long, num_args = 1..)]
    hitlist: Vec<PathBuf>,
    /// Aliased IPv6 prefixes to exclude.
    #[arg(long, num_args = 1..)]
    aliased: Vec<PathBuf>,
    /// all, hosting, or AS<n>,AS<m>,...
    #[arg(long, default_value = "all")]
    select: plan::Selection,
    #[arg(long)]
    per_asn: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[command(flatten)]
    lists: Exclusions,
    /// Skip and count malformed input lines instead of stopping at the first.
    #[arg(long)]
    skip_bad_lines: bool,
    /// Also sample IPv4 addresses ending in .0 or .255 (network and broadcast addresses of many
    /// subnets; skipped by default).
    #[arg(long)]
    keep_edge_addresses: bool,
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args, Debug)]
pub struct ScanArgs {
    #[arg(long)]
    plan: PathBuf,
    /// A directory, or an object store (`s3://bucket/prefix`: files go up through a local spool).
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    store: crawler::output::StoreArgs,
    #[arg(long, default_value = "25,465,587")]
    ports: List<u16>,
    /// Control ports (`none` to disable).
    #[arg(long, default_value = "80,443,22")]
    control_ports: List<u16>,
    /// Random high ports per host (0 to disable).
    #[arg(long, default_value_t = 2)]
    random_ports: u16,
    /// Source ports of the reflection probes, which measure outbound filtering from outside
    /// (`none` to disable): each is sent to the host's first random port (else first control port).
    #[arg(long, default_value = "25,465,587")]
    reflect_ports: List<u16>,
    /// A neutral fixed source port reflected too, the control for hosts that treat fixed source
    /// ports oddly (`none` or 0: no control).
    #[arg(long, default_value = "2525", value_parser = parse_port_or_none)]
    reflect_control_port: u16,
    /// Global packets per second (0 = unlimited).
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    /// Per-ASN packets per second (0 = unlimited).
    #[arg(long, default_value_t = 1_000)]
    asn_rate: u64,
    /// Per-/24 (IPv6: per-/48) packets per second (0 = unlimited).
    #[arg(long, default_value_t = 20)]
    net_rate: u64,
    /// Retries of silent probes (at most 10).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(0..=crawler::scan::MAX_RETRIES as i64))]
    retries: u8,
    #[arg(long, default_value_t = 2.0)]
    retry_delay: f64,
    #[arg(long, default_value_t = 8.0)]
    cooldown: f64,
    #[arg(long)]
    interface: Option<String>,
    /// Gateway MAC (otherwise read from the kernel's neighbour table).
    #[arg(long)]
    gateway_mac: Option<String>,
    /// Source address(es), one per family (otherwise the kernel's route source).
    #[arg(long, default_value = "none")]
    source_ip: List<std::net::IpAddr>,
    #[arg(long, default_value = "default")]
    vantage: String,
    #[command(flatten)]
    lists: Exclusions,
    /// Crawl id (default: the start time, e.g. 20261127T120000Z); one path component of
    /// A-Z a-z 0-9 . _ - (not starting with `.`).
    #[arg(long, value_parser = parse_crawl_id)]
    crawl_id: Option<String>,
    /// Seed of the probe order and random ports (default: random).
    #[arg(long)]
    seed: Option<u64>,
    /// Probe only shard I of N (disjoint by plan row).
    #[arg(long, value_parser = parse_shard, default_value = "0/1")]
    shard: (u64, u64),
    #[arg(long, default_value_t = 1_000_000)]
    rows_per_file: usize,
    /// Sender threads, each with its own raw socket (like ZMap's -T); 0: one per core, at most
    /// 4 (ZMap's default since 3.0).
    #[arg(long, default_value_t = 0)]
    senders: usize,
    /// Slots of the send log, the ring of recent sends whose slot a SYN carries (8 bytes
    /// each); 0: one per probe, at most 2^20. A final attempt's slot waits out the cooldown
    /// before reuse, so a small log caps the last pass at SLOTS / cooldown probes per second.
    #[arg(long, default_value_t = 0)]
    send_log: usize,
    /// Started as root: the user the scan runs as once its raw sockets are open.
    #[arg(long, default_value = "nobody")]
    user: String,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Sample hosts per ASN from routing data into a Parquet plan.
    Plan(PlanArgs),
    /// Probe a plan with raw TCP SYNs and record every probe to Parquet.
    Scan(ScanArgs),
    /// Plan + vantage self-check + scan from one config file: a reproducible, resumable crawl.
    Run {
        #[arg(long)]
        config: PathBuf,
        /// Continue this vantage's unfinished crawl (after a crash or kill).
        #[arg(long)]
        resume: bool,
        /// Crawl only shard I of N of the plan (disjoint by plan row).
        #[arg(long, value_parser = parse_shard, default_value = "0/1")]
        shard: (u64, u64),
        /// Print the effective configuration (defaults filled in) and exit.
        #[arg(long)]
        print_config: bool,
        /// Crawl even without the vantage self-check.
        #[arg(long)]
        skip_self_check: bool,
    },
    /// Serve as the sink of egress tests: greet first, say what was seen, record every connection.
    Sink(sink::SinkArgs),
    /// From inside a network: connect to a sink on the mail ports and say what is blocked or intercepted.
    Egress(egress::EgressArgs),
    /// Only the vantage self-check of a crawl config (what `run` does before probing): its
    /// result as JSON on stdout; exit 3 if this vantage cannot send on 25.
    SelfCheck {
        #[arg(long)]
        config: PathBuf,
    },
    /// (internal) The plan step of `run`, in a child that drops every privilege first: started
    /// as root, `run` never parses its datasets with privileges.
    #[command(hide = true)]
    RunPlan {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        date: String,
        #[arg(long)]
        id: String,
    },
}

static STOP: std::sync::OnceLock<Arc<AtomicBool>> = std::sync::OnceLock::new();
static HINT: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();

extern "C" fn on_sigint(_: libc::c_int) {
    // Only async-signal-safe work here: an atomic store and write(2).
    if let Some(s) = STOP.get() {
        s.store(true, Ordering::SeqCst);
    }
    let hint = HINT.get().copied().unwrap_or("");
    for part in ["crawler: interrupted, recording what was received (", hint, ")\n"] {
        // SAFETY: writing a valid buffer to stderr.
        unsafe { libc::write(2, part.as_ptr().cast(), part.len()) };
    }
}

/// Run `job` on this thread with a flag that Ctrl-C sets; the packet loops read it. A signal
/// handler rather than a runtime's signal thread: the job drops its privileges once its raw
/// sockets are open, and capabilities are per thread — a thread started earlier would keep
/// them (`net::privs` checks that none does).
fn with_interrupt<T>(hint: &'static str, job: impl FnOnce(Arc<AtomicBool>) -> Result<T>) -> Result<T> {
    let stop = STOP.get_or_init(|| Arc::new(AtomicBool::new(false))).clone();
    let _ = HINT.set(hint);
    // SAFETY: installing a handler that only does async-signal-safe work.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sigint as *const () as usize;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        if libc::sigaction(libc::SIGINT, &sa, std::ptr::null_mut()) != 0 {
            anyhow::bail!("installing the Ctrl-C handler: {}", std::io::Error::last_os_error());
        }
    }
    job(stop)
}

/// Is this error bad input or configuration (exit 2) rather than a runtime failure (exit 1)?
pub fn is_bad_input(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<datasets::DatasetError>().is_some() || c.is::<ConfigError>())
}

/// Run a command; its exit code.
/// `--allow-reserved` takes special-purpose space only (exit 2 otherwise).
fn check_lists(l: &Exclusions) -> Result<()> {
    datasets::blocklist::check_allow_reserved(&l.allow_reserved.0).map_err(|e| ConfigError(format!("--allow-reserved: {e}")))?;
    Ok(())
}

/// An output path that exists must be of the kind the command writes (exit 2 otherwise).
fn check_out(out: &std::path::Path, dir: bool) -> Result<()> {
    match std::fs::metadata(out) {
        Ok(m) if dir && !m.is_dir() => Err(ConfigError(format!("--out {}: exists and is not a directory", out.display())).into()),
        Ok(m) if !dir && m.is_dir() => Err(ConfigError(format!("--out {}: is a directory (give the plan file's name)", out.display())).into()),
        _ => Ok(()),
    }
}

pub fn run(cmd: Cmd, progress: bool) -> Result<i32> {
    match cmd {
        Cmd::Sink(a) => sink::run(a),
        Cmd::Egress(a) => egress::run(a),
        Cmd::Plan(a) => {
            check_lists(&a.lists)?;
            check_out(&a.out, false)?;
            let inp = plan::PlanInputs {
                routes: a.routes,
                routes_format: a.routes_format,
                orgs: a.orgs,
                categories: a.categories,
                hitlist: a.hitlist,
                aliased: a.aliased,
                exclude: a.lists.exclude,
                opt_out: a.lists.opt_out,
                select: a.select,
                per_asn: a.per_asn,
                seed: a.seed,
                allow_reserved: a.lists.allow_reserved.0,
                skip_bad_lines: a.skip_bad_lines,
                keep_edge_addresses: a.keep_edge_addresses,
                progress,
            };
            let p = plan::build(&inp)?;
            plan::write(&p, &inp, &a.out)?;
            plan::print_summary(&p.summary, &a.out);
            Ok(0)
        }
        Cmd::SelfCheck { config } => {
            let c = job::config::CrawlConfig::load(&config)?;
            let r = job::selfcheck::from_config(&c)?;
            println!("{}", serde_json::to_string(&r)?);
            Ok(if r.passed { 0 } else { job::selfcheck::EXIT_FAILED })
        }
        Cmd::RunPlan { config, date, id } => job::run::plan_unprivileged(&config, &date, &id, progress),
        Cmd::Run { config, resume, shard, print_config, skip_self_check } => {
            let args = job::run::RunArgs { config, resume, shard, print_config, skip_self_check, progress };
            with_interrupt("resume with --resume", move |stop| job::run::run(&args, stop))
        }
        Cmd::Scan(a) => {
            check_lists(&a.lists)?;
            let output = crawler::output::Output::parse(&a.out, &a.store)?;
            check_out(&output.local, true)?;
            // A spool is the scan's own: the unprivileged scan marks it with its destination.
            let writable = if output.store.is_some() { vec!["".into()] } else { vec![] };
            let cfg = scan::ScanConfig {
                plan: a.plan,
                out: output.local.clone(),
                store: output.store.is_some().then_some(output),
                scan: scan::Params {
                    ports: a.ports.0,
                    control_ports: a.control_ports.0,
                    random_ports: a.random_ports,
                    reflect_ports: a.reflect_ports.0,
                    reflect_control_port: a.reflect_control_port,
                    rate: a.rate,
                    asn_rate: a.asn_rate,
                    net_rate: a.net_rate,
                    retries: a.retries,
                    retry_delay: a.retry_delay,
                    cooldown: a.cooldown,
                    interface: a.interface,
                    gateway_mac: a.gateway_mac,
                    source_ip: a.source_ip.0,
                    rows_per_file: a.rows_per_file,
                    senders: a.senders,
                    send_log: a.send_log,
                    user: a.user,
                },
                vantage: a.vantage,
                exclude: a.lists.exclude,
                opt_out: a.lists.opt_out,
                allow_reserved: a.lists.allow_reserved.0,
                crawl_id: a.crawl_id,
                seed: a.seed,
                shard: a.shard,
                resume: false,
                crawl_date: None,
                progress,
                manifest_extra: serde_json::Value::Null,
                writable,
                after_drop: vec![],
            };
            let summary = with_interrupt("silent probes were not recorded", move |stop| scan::run(&cfg, stop))?;
            scan::print_summary(&summary);
            Ok(if summary.interrupted { 130 } else { 0 })
        }
    }
}
