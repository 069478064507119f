//! `crawler egress`: outbound blocking seen from inside a network. A vantage (a volunteer's
//! machine, a rented VM) connects with plain, unprivileged connect() to a sink we run
//! (`crawler sink`) on the mail and control ports, both families, several times spread over
//! time, and records per attempt what came back: no connection (RST, ICMP, timeout), another
//! server's banner, a sink that saw another client, STARTTLS missing, another certificate, the
//! k-th connection failing. It connects to nothing but the sink addresses it is given and sends
//! nothing but EHLO, STARTTLS and QUIT.
//!
//! - [`connect`]: connect() with the ICMP error queue;
//! - [`session`]: the SMTP/TLS conversation and the certificate recorder;
//! - [`verdict`]: from an attempt to its verdict, and throttling over a series;
//! - [`output`]: the Parquet file and the one-screen summary.

pub mod connect;
pub mod output;
pub mod session;
pub mod upload;
pub mod verdict;

use crate::job::config::ConfigError;
use crate::sink::wire::Greeting;
use anyhow::Result;
use connect::{Connected, IcmpError};
use datasets::egress::{outcome, verdict as v};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Args, Debug, Clone)]
pub struct EgressArgs {
    /// The sink's addresses, IPv4 and IPv6 (literals: resolve a name yourself, so that egress
    /// contacts nothing but the sink).
    #[arg(long, required = true, num_args = 1..)]
    pub sink: Vec<String>,
    /// This vantage's name (e.g. `hetzner-fsn1-cx22`): a partition of the output.
    #[arg(long)]
    pub vantage: String,
    #[arg(long, value_delimiter = ',', default_value = "25,465,587,2525,80,443")]
    pub ports: Vec<u16>,
    /// Ports that speak TLS from the first byte (465's role), as on the sink.
    #[arg(long, value_delimiter = ',', default_value = "465")]
    pub implicit_tls_ports: Vec<u16>,
    /// Ports tried first to learn this machine's public address (and the sink's pin) from the
    /// sink's greeting: ones that are rarely blocked or proxied.
    #[arg(long, value_delimiter = ',', default_value = "80,443")]
    pub control_ports: Vec<u16>,
    /// Attempts per (sink address, port): throttling shows as the k-th failing.
    #[arg(long, default_value_t = 3)]
    pub repeat: u16,
    /// Seconds between the starts of two rounds of attempts.
    #[arg(long, default_value_t = 10.0)]
    pub interval: f64,
    /// Seconds to wait for a connection, and for each answer.
    #[arg(long, default_value_t = 10.0)]
    pub timeout: f64,
    /// SHA-256 of the sinks' certificates (hex; `crawler sink` prints it; several sinks, several
    /// pins: comma-separated or repeated). Without it, the pins
    /// the sink announces on a control port is used.
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    pub sink_pin: Vec<String>,
    /// A directory, or an object store (`s3://bucket/prefix`: the file goes up through a spool).
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub store: crate::output::StoreArgs,
    /// Send the results to the sink (over its pinned TLS) with this fleet token instead of
    /// keeping them here: a volunteer needs no bucket access. Also read from
    /// PORT25_UPLOAD_TOKEN (better: not on the command line).
    #[arg(long, env = "PORT25_UPLOAD_TOKEN", hide_env_values = true)]
    pub upload: Option<String>,
}

#[derive(Debug, Clone)]
pub struct EgressConfig {
    pub sinks: Vec<IpAddr>,
    pub vantage: String,
    /// Every port tried: `--ports` and the control ports.
    pub ports: Vec<u16>,
    pub implicit_tls: Vec<u16>,
    pub control_ports: Vec<u16>,
    pub repeat: u16,
    pub interval: Duration,
    pub timeout: Duration,
    /// The sinks' certificate pins (any of them is the sink's).
    pub pins: Vec<String>,
    pub out: PathBuf,
}

fn bad(m: String) -> anyhow::Error {
    ConfigError(m).into()
}

impl EgressConfig {
    pub fn from_args(a: &EgressArgs) -> Result<EgressConfig> {
        let mut sinks = Vec::new();
        for s in &a.sink {
            let ip: IpAddr = s.trim_start_matches('[').trim_end_matches(']').parse().map_err(|_| bad(format!("--sink `{s}`: not an IP address (give the sink's IPv4 and IPv6 addresses, so that egress contacts nothing else)")))?;
            // ::ffff:a.b.c.d connects over IPv4: it is the IPv4 sink, and recorded as such.
            let ip = ip.to_canonical();
            if ip.is_unspecified() || ip.is_multicast() || ip == IpAddr::from([255, 255, 255, 255]) {
                return Err(bad(format!("--sink {ip}: not a host address")));
            }
            if !sinks.contains(&ip) {
                sinks.push(ip);
            }
        }
        if sinks.len() > 8 {
            return Err(bad("--sink: at most 8 addresses".into()));
        }
        if !crate::sink::valid_name(&a.vantage) {
            return Err(bad(format!("--vantage `{}`: letters, digits, `.`, `-`, `_` only, at most 63", a.vantage)));
        }
        let mut ports: Vec<u16> = a.ports.iter().chain(&a.control_ports).copied().collect();
        ports.sort_unstable();
        ports.dedup();
        if a.ports.is_empty() || ports.contains(&0) || ports.len() > 16 {
            return Err(bad("--ports/--control-ports: 1 to 16 ports, none of them 0".into()));
        }
        if !(1..=50).contains(&a.repeat) {
            return Err(bad(format!("--repeat {}: 1 to 50", a.repeat)));
        }
        if !(0.0..=3600.0).contains(&a.interval) {
            return Err(bad(format!("--interval {}: 0 to 3600 seconds", a.interval)));
        }
        if !(a.timeout > 0.0 && a.timeout <= 120.0) {
            return Err(bad(format!("--timeout {}: more than 0, at most 120 seconds", a.timeout)));
        }
        let mut pins = Vec::new();
        for p in &a.sink_pin {
            let p = p.replace(':', "").to_ascii_lowercase();
            if p.len() != 64 || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad("--sink-pin: 64 hex digits (the SHA-256 `crawler sink` prints)".into()));
            }
            if pins.len() >= 8 {
                return Err(bad("--sink-pin: at most 8 pins".into()));
            }
            pins.push(p);
        }
        Ok(EgressConfig {
            sinks,
            vantage: a.vantage.clone(),
            ports,
            implicit_tls: a.implicit_tls_ports.clone(),
            control_ports: a.control_ports.clone(),
            repeat: a.repeat,
            interval: Duration::from_secs_f64(a.interval),
            timeout: Duration::from_secs_f64(a.timeout),
            pins,
            out: a.out.clone(),
        })
    }
}

/// One connection attempt and what it showed.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub sink: IpAddr,
    pub port: u16,
    pub implicit_tls: bool,
    pub attempt: u16,
    pub started_us: i64,
    pub outcome: &'static str,
    pub connect_us: Option<u32>,
    pub local_port: Option<u16>,
    pub icmp: Option<IcmpError>,
    pub banner: Option<String>,
    pub greeting: Option<Greeting>,
    pub starttls_offered: Option<bool>,
    pub tls_done: Option<bool>,
    pub cert_sha256: Option<String>,
    pub you_matches: Option<bool>,
    pub pin_matches: Option<bool>,
    /// The banner's text was masked (SMTP inspection); the sink known by its EHLO reply.
    pub banner_masked: bool,
    /// The sink's `id=` from its EHLO reply, and the client address it greeted there.
    pub ehlo_id: Option<String>,
    pub ehlo_you: Option<IpAddr>,
    pub starttls_rewritten: Option<bool>,
    pub sink_heard: Option<String>,
    pub verdict: &'static str,
    pub detail: Option<String>,
}

impl Attempt {
    pub fn new(sink: IpAddr, port: u16, implicit_tls: bool, attempt: u16, started_us: i64) -> Attempt {
        Attempt {
            sink,
            port,
            implicit_tls,
            attempt,
            started_us,
            outcome: outcome::ERROR,
            connect_us: None,
            local_port: None,
            icmp: None,
            banner: None,
            greeting: None,
            starttls_offered: None,
            tls_done: None,
            cert_sha256: None,
            you_matches: None,
            pin_matches: None,
            banner_masked: false,
            ehlo_id: None,
            ehlo_you: None,
            starttls_rewritten: None,
            sink_heard: None,
            verdict: v::ERROR,
            detail: None,
        }
    }

    pub fn family(&self) -> u8 {
        if self.sink.is_ipv4() { 4 } else { 6 }
    }

    /// The sink's own `id=` for this connection: from its banner, else (banner masked) from its
    /// EHLO reply.
    pub fn sink_id(&self) -> Option<&str> {
        self.greeting.as_ref().filter(|g| g.is_sink).and_then(|g| g.id.as_deref()).or(self.ehlo_id.as_deref())
    }

    /// The address the sink saw us come from: its banner's `you=`, else its EHLO reply's.
    pub fn sink_saw(&self) -> Option<IpAddr> {
        self.greeting.as_ref().filter(|g| g.is_sink).and_then(|g| g.you).map(|y| y.ip().to_canonical()).or(self.ehlo_you.map(|y| y.to_canonical()))
    }

    /// Did the sink itself answer (by its banner, or by its EHLO reply behind a masked one)?
    pub fn reached_sink(&self) -> bool {
        self.sink_id().is_some()
    }
}

/// A run's attempts and what was learned along the way.
#[derive(Debug)]
pub struct Report {
    pub run_id: String,
    pub started_us: i64,
    pub rows: Vec<Attempt>,
    /// Per family (4, 6): this machine's public address as the sink saw it on a control port,
    /// and that port.
    pub public: BTreeMap<u8, (IpAddr, u16)>,
    pub pins: Vec<String>,
    /// Where the pins came from, in words.
    pub pin_source: String,
}

/// One attempt: connect, talk if connected. Bounded by a few `timeout`s in all.
pub async fn probe(sink: IpAddr, port: u16, implicit_tls: bool, attempt: u16, limit: Duration) -> Attempt {
    let mut a = Attempt::new(sink, port, implicit_tls, attempt, crate::sink::conn::now_us());
    match connect::connect(SocketAddr::new(sink, port), limit).await {
        Connected::Failed { outcome: o, icmp, detail, connect_us } => {
            (a.outcome, a.icmp, a.detail, a.connect_us) = (o, icmp, Some(detail), connect_us);
        }
        Connected::Up { stream, connect_us } => {
            (a.outcome, a.connect_us) = (outcome::ESTABLISHED, Some(connect_us));
            a.local_port = stream.local_addr().ok().map(|l| l.port());
            let _ = stream.set_nodelay(true);
            let t = match tokio::time::timeout(limit * 8, session::talk(stream, sink, implicit_tls, limit)).await {
                Ok(t) => t,
                Err(_) => session::Talk { detail: Some("conversation: took too long".into()), ..Default::default() },
            };
            (a.banner, a.greeting, a.starttls_offered, a.tls_done, a.cert_sha256, a.detail) = (t.banner, t.greeting, t.starttls_offered, t.tls_done, t.cert_sha256, t.detail);
            (a.banner_masked, a.ehlo_id, a.ehlo_you, a.starttls_rewritten, a.sink_heard) = (t.banner_masked, t.ehlo_id, t.ehlo_you, t.starttls_rewritten, t.sink_heard);
        }
    }
    a
}

async fn round(cfg: &EgressConfig, ports: &[u16], k: u16) -> Vec<Attempt> {
    let mut set = tokio::task::JoinSet::new();
    for &sink in &cfg.sinks {
        for &port in ports {
            set.spawn(probe(sink, port, cfg.implicit_tls.contains(&port), k, cfg.timeout));
        }
    }
    let mut out = Vec::new();
    while let Some(r) = set.join_next().await {
        if let Ok(a) = r {
            out.push(a);
        }
    }
    out
}

/// Every round of attempts, control ports first in the first round (they teach the public
/// address and the pin), then the verdicts.
pub async fn measure(cfg: &EgressConfig) -> Report {
    let started_us = crate::sink::conn::now_us();
    let run_id = chrono::DateTime::from_timestamp_micros(started_us).unwrap_or_default().format("%Y%m%dT%H%M%SZ").to_string();
    let t0 = tokio::time::Instant::now();
    let (control, rest): (Vec<u16>, Vec<u16>) = cfg.ports.iter().partition(|p| cfg.control_ports.contains(p));
    let mut rows = Vec::new();
    for k in 0..cfg.repeat {
        tokio::time::sleep_until(t0 + cfg.interval * k as u32).await;
        if k == 0 {
            rows.extend(round(cfg, &control, k).await);
            rows.extend(round(cfg, &rest, k).await);
        } else {
            rows.extend(round(cfg, &cfg.ports, k).await);
        }
    }
    rows.sort_by_key(|a| (a.sink.is_ipv6(), a.sink, a.port, a.attempt));
    let (public, pins, pin_source) = learn(cfg, &rows);
    finalize(&mut rows, &public, &pins, &cfg.control_ports);
    Report { run_id, started_us, rows, public, pins, pin_source }
}

/// The public address per family and the pins, from the sinks' greetings on control ports.
fn learn(cfg: &EgressConfig, rows: &[Attempt]) -> (BTreeMap<u8, (IpAddr, u16)>, Vec<String>, String) {
    let mut public = BTreeMap::new();
    let mut announced: Vec<(String, u16)> = Vec::new();
    let mut order: Vec<&Attempt> = rows.iter().filter(|a| cfg.control_ports.contains(&a.port)).collect();
    order.sort_by_key(|a| (a.attempt, cfg.control_ports.iter().position(|p| *p == a.port)));
    for a in order {
        let Some(g) = a.greeting.as_ref().filter(|g| g.is_sink) else { continue };
        if let Some(you) = g.you {
            public.entry(a.family()).or_insert((you.ip().to_canonical(), a.port));
        }
        if let Some(p) = g.pin.clone().filter(|p| !announced.iter().any(|x| &x.0 == p)) {
            announced.push((p, a.port));
        }
    }
    if !cfg.pins.is_empty() {
        return (public, cfg.pins.clone(), "--sink-pin".into());
    }
    match announced.first().map(|x| x.1) {
        Some(port) => (public, announced.into_iter().map(|x| x.0).collect(), format!("the sinks' greetings on control port {port}")),
        None => (public, Vec::new(), "unknown (no sink greeting on a control port): certificates were not checked".into()),
    }
}

fn finalize(rows: &mut [Attempt], public: &BTreeMap<u8, (IpAddr, u16)>, pins: &[String], control: &[u16]) {
    for a in rows.iter_mut() {
        a.you_matches = match (a.sink_saw(), public.get(&a.family())) {
            (Some(y), Some((ip, _))) => Some(y == *ip),
            _ => None,
        };
        a.pin_matches = match &a.cert_sha256 {
            Some(c) if !pins.is_empty() => Some(pins.contains(c)),
            _ => None,
        };
        a.verdict = verdict::decide(a);
        if let Some(e) = verdict::explain(a) {
            a.detail = Some(match a.detail.take() {
                Some(d) => format!("{e}; {d}"),
                None => e,
            });
        }
    }
    verdict::series(rows, control);
}

/// `crawler egress`: measure, write the Parquet file, print the summary, and put the file in
/// its store (when `--out` is one).
pub fn run(a: EgressArgs) -> Result<i32> {
    let out = crate::output::Output::parse(&a.out, &a.store)?;
    let mut cfg = EgressConfig::from_args(&a)?;
    cfg.out = out.local.clone();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let report = rt.block_on(measure(&cfg));
    let path = output::write(&cfg, &report)?;
    print!("{}", output::summary(&cfg, &report));
    println!("rows: {}", path.display());
    if out.store.is_some() {
        // Also what earlier runs left in the spool when the store was away.
        out.finish(out.start()?)?;
        println!("uploaded to {}", out.describe());
    }
    if let Some(token) = &a.upload {
        return Ok(send_to_sink(&cfg, &report, token, &rt));
    }
    Ok(0)
}

/// Every result file of this vantage still in `--out` (this run's, and any an earlier run could
/// not send), sent to the sink and removed here once stored; 1 if one could not be sent.
fn send_to_sink(cfg: &EgressConfig, report: &Report, token: &str, rt: &tokio::runtime::Runtime) -> i32 {
    let mut code = 0;
    let files: Vec<(String, u64)> = match datasets::store::spool::pending(&cfg.out) {
        Ok(f) => f.into_iter().filter(|(rel, _)| rel.contains(&format!("/vantage={}/", cfg.vantage)) && rel.ends_with(".parquet")).collect(),
        Err(e) => {
            eprintln!("crawler egress: cannot list the results to send: {e}");
            return 1;
        }
    };
    for (rel, _) in files {
        let path = cfg.out.join(&rel);
        // part-RUN-xxxxxxxx.parquet: the run it holds.
        let run = rel.rsplit('/').next().and_then(|n| n.strip_prefix("part-")).and_then(|n| n.split('-').next()).unwrap_or(&report.run_id).to_string();
        let route = upload::Route { sinks: &cfg.sinks, ports: &cfg.ports, implicit_tls: &cfg.implicit_tls, pins: &report.pins, limit: cfg.timeout };
        match rt.block_on(upload::send(&path, &cfg.vantage, &run, token, &route)) {
            Ok(key) => {
                let _ = std::fs::remove_file(&path);
                println!("sent to the sink: {rel} (stored as {key})");
            }
            Err(e) => {
                eprintln!("crawler egress: {rel} not sent: {e:#} (kept in {}; the next run sends it)", cfg.out.display());
                code = 1;
            }
        }
    }
    code
}
