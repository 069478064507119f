//! `crawler sink`: the server end of outbound-blocking tests (Netalyzr's design). It listens on
//! the mail and control ports, speaks first and says what it saw (`you=` client address and
//! port, `port=`, a per-connection `id=`), answers EHLO like an MTA, completes TLS with its
//! certificate, then says goodbye. It never accepts or relays mail. Every connection is
//! recorded server-side (`record`), so a client's result can be checked against the sink's.
//!
//! Bounded for the open Internet: caps on connections open at once and rates of new ones,
//! globally, per client and per IPv6 /48 (`limits`); refused connections cost an accept, a
//! write and a count, never a row or a wait (`accept`, `counters`); idle and lifetime timeouts,
//! bytes in and out per connection capped under TLS (`meter`), at most [`conn::MAX_COMMANDS`]
//! commands, bounded lines (`wire`); a disk budget with retention (`budget`), and a recorder
//! that keeps serving when the disk is full (`record`).

pub mod accept;
pub mod budget;
pub mod conn;
pub mod counters;
pub mod limits;
pub mod meter;
pub mod record;
pub mod tls;
pub mod upload;
pub mod wire;

use crate::job::config::ConfigError;
use anyhow::{Context, Result};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// Bytes read from one client at most: an EHLO conversation plus a TLS ClientHello (even a
/// post-quantum one) fits many times over.
pub const MAX_IN: u64 = 16 * 1024;
/// Bytes written to one client at most, besides the certificate chain (sent once per
/// handshake): greeting, replies, the rest of the handshake, goodbye.
pub const MAX_OUT_BASE: u64 = 8 * 1024;

#[derive(clap::Args, Debug, Clone)]
pub struct SinkArgs {
    /// Addresses to listen on (IPv4 and IPv6; `::` is IPv6 only, add `0.0.0.0` for IPv4).
    #[arg(long, required = true, num_args = 1..)]
    pub listen: Vec<IpAddr>,
    /// Ports to listen on, on every address.
    #[arg(long, value_delimiter = ',', default_value = "25,465,587,2525,80,443")]
    pub ports: Vec<u16>,
    /// Ports that speak TLS from the first byte (465's role); every other port offers STARTTLS.
    #[arg(long, value_delimiter = ',', default_value = "465")]
    pub implicit_tls_ports: Vec<u16>,
    /// PEM certificate chain, leaf first (default: a self-signed one made at start).
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// The sink's name: in its greeting, its certificate (when made here) and its partition.
    #[arg(long, default_value = "port25-sink")]
    pub name: String,
    /// A directory, or an object store (`s3://bucket/prefix`: files go up through a local spool).
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub store: crate::output::StoreArgs,
    /// Take egress vantages' results (`crawler egress --upload TOKEN`): a file of the fleet's
    /// tokens, one a line (at least 16 characters each). Uploads go under OUT/egress/.
    #[arg(long)]
    pub upload_tokens: Option<PathBuf>,
    /// The largest upload taken, in bytes (K, M, G suffixes; at most 1G: a file is held in
    /// memory while it is checked).
    #[arg(long, value_parser = parse_upload_size, default_value = "4M")]
    pub max_upload: u64,
    /// Connections open at once, all clients together.
    #[arg(long, default_value_t = 512)]
    pub max_conns: usize,
    /// Connections open at once from one client (an IPv4 address or an IPv6 /64).
    #[arg(long, default_value_t = 16)]
    pub max_per_client: u32,
    /// Connections open at once from one IPv6 /48 (its holder has 65,536 /64s).
    #[arg(long, default_value_t = 64)]
    pub max_per_net: u32,
    /// New connections per second from one client (an IPv4 address or an IPv6 /64)...
    #[arg(long, default_value_t = 1)]
    pub client_rate: u32,
    /// ... after a burst of this many (an egress run makes ~30).
    #[arg(long, default_value_t = 60)]
    pub client_burst: u32,
    /// New connections per second from one IPv6 /48...
    #[arg(long, default_value_t = 4)]
    pub net_rate: u32,
    /// ... after a burst of this many.
    #[arg(long, default_value_t = 240)]
    pub net_burst: u32,
    /// Bytes the sink's files may take on disk (K, M, G suffixes); the oldest go first.
    #[arg(long, default_value = "1G", value_parser = parse_bytes)]
    pub max_disk: u64,
    /// Days of files kept (0: no age limit, only --max-disk).
    #[arg(long, default_value_t = 0)]
    pub keep_days: u32,
    /// Seconds a client may stay silent (or not read) before it is dropped.
    #[arg(long, default_value_t = 10.0)]
    pub idle_timeout: f64,
    /// Seconds a connection may last in all (slow senders included).
    #[arg(long, default_value_t = 30.0)]
    pub max_conn_time: f64,
    /// A new Parquet file every N connections...
    #[arg(long, default_value_t = 10_000)]
    pub rotate_rows: usize,
    /// ... or every S seconds, whichever comes first.
    #[arg(long, default_value_t = 300.0)]
    pub rotate_secs: f64,
}

pub struct SinkConfig {
    pub listen: Vec<SocketAddr>,
    pub implicit_tls: Vec<u16>,
    pub name: String,
    pub out: PathBuf,
    /// An object store behind `out` (then its local spool).
    pub output: Option<crate::output::Output>,
    /// Egress uploads taken, if any.
    pub uploads: Option<(upload::Tokens, u64)>,
    pub cert: tls::SinkCert,
    pub bounds: limits::Bounds,
    pub max_disk: u64,
    pub keep_days: u32,
    pub idle: Duration,
    pub lifetime: Duration,
    pub max_in: u64,
    pub max_out: u64,
    pub rotate_rows: usize,
    pub rotate_every: Duration,
}

/// A name for greetings, certificates and directory names: a DNS-like label sequence.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 63 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_') && !s.starts_with(['.', '-'])
}

/// `--max-disk`: bytes, or with a K, M or G suffix (powers of 1024).
fn parse_bytes(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, 'K' | 'k')) => (&t[..i], 1u64 << 10),
        Some((i, 'M' | 'm')) => (&t[..i], 1 << 20),
        Some((i, 'G' | 'g')) => (&t[..i], 1 << 30),
        _ => (t, 1),
    };
    num.parse::<u64>().ok().and_then(|n| n.checked_mul(mult)).filter(|n| *n >= 64 << 10).ok_or_else(|| format!("`{s}`: a size of at least 64K, like 500M or 2G"))
}

fn secs(flag: &str, v: f64) -> Result<Duration> {
    if !(v > 0.0 && v <= 86_400.0) {
        return Err(ConfigError(format!("--{flag} {v}: must be more than 0 and at most 86400 seconds")).into());
    }
    Ok(Duration::from_secs_f64(v))
}

impl SinkConfig {
    /// Check the flags and load (or make) the certificate.
    pub fn from_args(a: &SinkArgs) -> Result<SinkConfig> {
        let output = crate::output::Output::parse(&a.out, &a.store)?;
        let bad = |m: String| -> anyhow::Error { ConfigError(m).into() };
        if !valid_name(&a.name) {
            return Err(bad(format!("--name `{}`: letters, digits, `.`, `-`, `_` only, at most 63", a.name)));
        }
        if a.ports.is_empty() || a.ports.contains(&0) {
            return Err(bad("--ports: give one or more ports, none of them 0".into()));
        }
        if a.max_conns == 0 || a.max_per_client == 0 || a.max_per_net == 0 || a.rotate_rows == 0 {
            return Err(bad("--max-conns, --max-per-client, --max-per-net and --rotate-rows must be at least 1".into()));
        }
        if (a.client_rate > 0 && a.client_burst == 0) || (a.net_rate > 0 && a.net_burst == 0) {
            return Err(bad("--client-burst and --net-burst must be at least 1 (a rate of 0 turns a limit off)".into()));
        }
        let (idle, lifetime) = (secs("idle-timeout", a.idle_timeout)?, secs("max-conn-time", a.max_conn_time)?);
        let mut listen: Vec<SocketAddr> = a.listen.iter().flat_map(|ip| a.ports.iter().map(move |p| SocketAddr::new(*ip, *p))).collect();
        listen.sort();
        listen.dedup();
        let cert = match (&a.tls_cert, &a.tls_key) {
            (Some(c), Some(k)) => tls::load(c, k)?,
            _ => tls::self_signed(&a.name)?,
        };
        Ok(SinkConfig {
            listen,
            implicit_tls: a.implicit_tls_ports.clone(),
            name: a.name.clone(),
            out: output.local.clone(),
            output: output.store.is_some().then_some(output),
            uploads: match &a.upload_tokens {
                Some(f) => Some((upload::Tokens::load(f)?, a.max_upload)),
                None => None,
            },
            max_out: MAX_OUT_BASE + cert.chain_bytes as u64,
            cert,
            bounds: limits::Bounds { max_conns: a.max_conns, per_client: a.max_per_client, per_net: a.max_per_net, client_rate: (a.client_rate, a.client_burst), net_rate: (a.net_rate, a.net_burst) },
            max_disk: a.max_disk,
            keep_days: a.keep_days,
            idle,
            lifetime: lifetime.max(idle),
            max_in: MAX_IN,
            rotate_rows: a.rotate_rows,
            rotate_every: secs("rotate-secs", a.rotate_secs)?,
        })
    }
}

/// Listening sockets for every address: IPv6 ones IPv6-only, so `0.0.0.0` and `::` can share
/// a port.
pub fn bind(addrs: &[SocketAddr]) -> Result<Vec<std::net::TcpListener>> {
    use socket2::{Domain, Protocol, Socket, Type};
    addrs
        .iter()
        .map(|a| -> Result<std::net::TcpListener> {
            let s = Socket::new(Domain::for_address(*a), Type::STREAM, Some(Protocol::TCP))?;
            if a.is_ipv6() {
                s.set_only_v6(true)?;
            }
            s.set_reuse_address(true)?;
            s.bind(&(*a).into()).with_context(|| {
                let hint = if a.port() < 1024 { " (ports below 1024 need CAP_NET_BIND_SERVICE: see deploy/port25-sink.service)" } else { "" };
                format!("binding {a}{hint}")
            })?;
            s.listen(1024)?;
            s.set_nonblocking(true)?;
            Ok(s.into())
        })
        .collect()
}

/// What a sink did, for its exit summary and for tests.
#[derive(Debug, Default)]
pub struct SinkStats {
    pub accepted: u64,
    /// Refused (over a cap or a rate: answered 421, counted, not recorded).
    pub busy: u64,
    pub refused: counters::Tally,
    pub peak_active: usize,
    pub rows: u64,
    /// Connections without a row: their file never reached the disk, or the recorder was behind.
    pub rows_lost: u64,
    /// Attempts to publish a file that failed.
    pub publish_failures: u64,
    pub files: Vec<PathBuf>,
    /// Bytes the sink's files take at the end; files (and bytes) deleted to keep the budget.
    pub disk_bytes: u64,
    pub deleted: (u64, u64),
}

/// Serve on `listeners` until `shutdown` resolves, then let open connections finish for a
/// moment, cut the rest, and publish the last file.
pub async fn serve(cfg: SinkConfig, listeners: Vec<std::net::TcpListener>, shutdown: impl Future<Output = ()>) -> Result<SinkStats> {
    let kv = vec![
        ("software".to_string(), crate::SOFTWARE.to_string()),
        ("sink".to_string(), cfg.name.clone()),
        ("cert_sha256".to_string(), cfg.cert.pin.clone()),
        ("implicit_tls_ports".to_string(), format!("{:?}", cfg.implicit_tls)),
    ];
    let counters = Arc::new(counters::Counters::default());
    // With a store behind `out`, each published file goes up in the background.
    let spool = match &cfg.output {
        Some(o) => o.start()?,
        None => None,
    };
    let budget = budget::Budget::scan(&cfg.out, &cfg.name, cfg.max_disk, cfg.keep_days);
    let (tx, rx) = mpsc::channel::<record::Msg>(4096);
    let recorder = record::spawn(record::Recorder::new(&cfg.out, &cfg.name, cfg.rotate_rows, kv, budget, counters.clone()), rx)?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let (quit_tx, quit_rx) = watch::channel(false);
    let limits = limits::Limits::new(cfg.bounds);
    let accepted = Arc::new(AtomicU64::new(0));
    let ctx = Arc::new(conn::Ctx {
        name: cfg.name.clone(),
        pin: cfg.cert.pin.clone(),
        acceptor: tokio_rustls::TlsAcceptor::from(cfg.cert.config.clone()),
        implicit_tls: cfg.implicit_tls.clone(),
        idle: cfg.idle,
        lifetime: cfg.lifetime,
        max_in: cfg.max_in,
        max_out: cfg.max_out,
        tx: tx.clone(),
        stop: stop_rx,
        counters: counters.clone(),
        uploads: cfg.uploads.clone().map(|(tokens, max_bytes)| Arc::new(conn::Uploads { tokens, max_bytes, out: cfg.out.clone(), max_disk: cfg.max_disk })),
    });
    let mut tasks = Vec::new();
    for l in listeners {
        let l = tokio::net::TcpListener::from_std(l)?;
        tasks.push(tokio::spawn(accept::accept_loop(l, ctx.clone(), limits.clone(), counters.clone(), accepted.clone(), quit_rx.clone())));
    }
    tasks.push(tokio::spawn(rotate_loop(tx.clone(), limits.clone(), cfg.rotate_every, quit_rx)));
    tokio::select! {
        _ = shutdown => {}
        _ = tx.closed() => tracing::error!("sink: the recorder stopped; closing"),
    }
    let _ = quit_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    drain(&limits, cfg.lifetime.min(Duration::from_secs(5))).await;
    let _ = stop_tx.send(true);
    drain(&limits, Duration::from_secs(5)).await;
    drop((ctx, tx));
    let w = tokio::task::spawn_blocking(move || recorder.join()).await?.map_err(|_| anyhow::anyhow!("the sink's recorder panicked"))?;
    if let Some(o) = cfg.output.clone() {
        // The last files up (or left in the spool, said so: the next start uploads them).
        if let Err(e) = tokio::task::spawn_blocking(move || o.finish(spool)).await? {
            tracing::error!("sink: {e:#}");
        }
    }
    let mut refused = w.counters;
    // Counted after the recorder's last look (connections refused while it finished).
    refused.add(&counters.take());
    Ok(SinkStats {
        accepted: accepted.load(Ordering::Relaxed),
        busy: refused.refused,
        rows_lost: w.rows_lost + refused.records_dropped,
        refused,
        peak_active: limits.peak(),
        rows: w.rows,
        publish_failures: w.failures,
        files: w.files,
        disk_bytes: w.disk_bytes,
        deleted: w.deleted,
    })
}

/// Resolves once the flag is set (or its sender is gone).
pub(crate) async fn stopped(flag: &mut watch::Receiver<bool>) {
    let _ = flag.wait_for(|q| *q).await;
}

async fn drain(limits: &limits::Limits, within: Duration) {
    let until = Instant::now() + within;
    while limits.active() > 0 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every `every`, publish what is buffered; every 10 s, let the rate limiters forget idle keys.
async fn rotate_loop(tx: mpsc::Sender<record::Msg>, limits: Arc<limits::Limits>, every: Duration, mut quit: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    let mut house = tokio::time::interval(Duration::from_secs(10));
    loop {
        tokio::select! {
            _ = stopped(&mut quit) => return,
            _ = tick.tick() => if tx.send(record::Msg::Rotate).await.is_err() { return },
            _ = house.tick() => limits.housekeeping(),
        }
    }
}

/// Room for `max_conns` sockets: raise the descriptor limit to its hard limit, and refuse a
/// cap the process could not honour (accept would fail instead of the sink answering 421).
fn ensure_descriptors(max_conns: usize) -> Result<()> {
    let mut rl = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) != 0 {
            return Ok(());
        }
        rl.rlim_cur = rl.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &rl);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl);
    }
    let need = max_conns as u64 + 64;
    if (rl.rlim_cur as u64) < need {
        return Err(ConfigError(format!("--max-conns {max_conns} needs {need} file descriptors; this process may open {} (raise LimitNOFILE or lower --max-conns)", rl.rlim_cur)).into());
    }
    Ok(())
}

async fn stop_signal() {
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
    match term {
        Ok(mut t) => tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = t.recv() => {}
        },
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// `crawler sink`: serve until SIGINT or SIGTERM.
pub fn run(a: SinkArgs) -> Result<i32> {
    let cfg = SinkConfig::from_args(&a)?;
    ensure_descriptors(cfg.bounds.max_conns)?;
    std::fs::create_dir_all(&cfg.out).with_context(|| format!("creating {}", cfg.out.display()))?;
    let listeners = bind(&cfg.listen)?;
    let addrs: Vec<String> = cfg.listen.iter().map(|a| a.to_string()).collect();
    println!("sink {}: listening on {}", cfg.name, addrs.join(" "));
    let made = if cfg.cert.generated { " (self-signed, made at start)" } else { "" };
    println!("sink {}: certificate SHA-256 pin {}{made}: egress --sink-pin {}", cfg.name, cfg.cert.pin, cfg.cert.pin);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let name = cfg.name.clone();
    let s = rt.block_on(serve(cfg, listeners, stop_signal()))?;
    println!(
        "sink {name}: {} connections ({} refused: {}; at most {} open at once); {} rows in {} files, {} rows lost, {} failed writes; {} bytes on disk ({} old files deleted)",
        s.accepted,
        s.busy,
        serde_json::to_string(&s.refused.by_reason).unwrap_or_default(),
        s.peak_active,
        s.rows,
        s.files.len(),
        s.rows_lost,
        s.publish_failures,
        s.disk_bytes,
        s.deleted.0
    );
    Ok(0)
}

/// `--max-upload`: a size, at most 1 GiB (an upload is read into memory whole).
fn parse_upload_size(s: &str) -> std::result::Result<u64, String> {
    crate::output::parse_size(s).and_then(|n| if n <= 1 << 30 { Ok(n) } else { Err(format!("`{s}`: at most 1G")) })
}
