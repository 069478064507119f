//! `lab`: bring the lab Internet up or down, run commands in it, and the README's demo.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use port25_lab::{export, netns, serve, topology::Topology};
use std::path::PathBuf;
use std::sync::atomic::Ordering;

#[derive(Parser)]
#[command(name = "lab", about = "A lab Internet in network namespaces with known port-25 filtering")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build the lab from a topology; writes lab.json, datasets/ and the ground truth into --state.
    Up {
        topology: PathBuf,
        #[arg(long, default_value = "lab-runs/lab")]
        state: PathBuf,
    },
    /// Remove every namespace (and with them veths, nftables tables, listeners) of the lab.
    Down {
        #[arg(long, default_value = "lab-runs/lab")]
        state: PathBuf,
    },
    /// Run a command in the vantage namespace (or the blocked vantage with --blocked, the second
    /// measuring vantage with --alt, the reflection-blind vantage with --blind, a customer
    /// vantage with --customer NAME, or the sink's namespace with --sink).
    Exec {
        #[arg(long, default_value = "lab-runs/lab")]
        state: PathBuf,
        #[arg(long)]
        blocked: bool,
        #[arg(long, conflicts_with = "blocked")]
        alt: bool,
        #[arg(long, conflicts_with_all = ["blocked", "alt"])]
        blind: bool,
        #[arg(long, conflicts_with = "blocked")]
        customer: Option<String>,
        #[arg(long, conflicts_with_all = ["blocked", "customer"])]
        sink: bool,
        #[arg(trailing_var_arg = true, required = true)]
        argv: Vec<String>,
    },
    /// Write the datasets and ground truth of a topology without building it.
    Datasets {
        topology: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// The main job on the lab: up, plan, crawl from the vantage, egress from the customer
    /// vantages to the lab's sink, provider report, down.
    Demo {
        #[arg(long, default_value = "tests/topologies/default.toml")]
        topology: PathBuf,
        #[arg(long, default_value = "lab-runs/demo")]
        out: PathBuf,
        /// Global probe rate (packets per second).
        #[arg(long, default_value_t = 20_000)]
        rate: u64,
    },
    /// Send forged replies (wrong cookies) from provider PROVIDER's alive v4 hosts to the vantage;
    /// run it inside that provider's hosts namespace.
    Forge {
        #[arg(long)]
        topology: PathBuf,
        #[arg(long, default_value_t = 0)]
        provider: usize,
        /// Forged packets of each kind (SYN-ACK, RST, ICMP).
        #[arg(long, default_value_t = 4000)]
        count: usize,
        /// Instead: watch the SYNs arriving on this interface and answer them with near misses,
        /// replies from another host, and late replies for dead hosts (prints a JSON count).
        #[arg(long)]
        sniff: Option<String>,
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        #[arg(long, default_value_t = 1500)]
        late_ms: u64,
    },
    /// Write a synthetic crawl (the crawler's schema) plus matching routes and AS2Org, for benchmarks.
    GenCrawl {
        #[arg(long, default_value_t = 10_000_000)]
        rows: u64,
        #[arg(long, default_value_t = 2000)]
        ases: u32,
        #[arg(long, default_value_t = 10)]
        files: u32,
        #[arg(long)]
        out: PathBuf,
    },
    /// (internal) Open a TCP connection to each ADDR:PORT with the kernel's own stack (a plain
    /// connect(), 0.5 s each): the SYN a fingerprint test compares ours with.
    #[command(hide = true)]
    Connect { targets: Vec<std::net::SocketAddr> },
    /// (internal) A border's SMTP proxy / STARTTLS stripper / TLS interceptor.
    #[command(hide = true)]
    Proxy {
        /// Comma-separated: intercept, strip, tls.
        #[arg(long, value_delimiter = ',', required = true)]
        modes: Vec<String>,
        /// The proxy's host name (its banner and certificate).
        #[arg(long)]
        name: String,
        #[arg(long)]
        ready: PathBuf,
    },
    /// Write the seed corpus of the fuzz targets (`fuzz/`) into OUT/<target>/.
    FuzzSeeds {
        #[arg(long)]
        out: PathBuf,
        /// The dataset fixtures (datasets/fixtures).
        #[arg(long)]
        fixtures: PathBuf,
        /// A crawl config to seed the config parser with (deploy/crawl.toml.example).
        #[arg(long)]
        config: PathBuf,
    },
    /// (internal) Hold the listening sockets of one namespace.
    #[command(hide = true)]
    Serve {
        #[arg(long)]
        topology: PathBuf,
        #[arg(long)]
        provider: usize,
        #[arg(long)]
        role: String,
        #[arg(long)]
        ready: PathBuf,
    },
}

fn main() {
    if let Err(e) = real_main() {
        eprintln!("lab: error: {e:#}");
        std::process::exit(2);
    }
}

fn real_main() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Up { topology, state } => {
            ctrlc::set_handler(|| netns::INTERRUPTED.store(true, Ordering::SeqCst)).ok();
            let t0 = std::time::Instant::now();
            let topo = Topology::load(&topology)?;
            let st = netns::up(&topology, &state)?;
            export::write_all(&topo, &state.join("datasets"))?;
            let hosts = topo.all_hosts();
            println!(
                "lab {} up in {:.2} s: {} providers, {} addresses ({} IPv6), {} namespaces; vantage namespace {} ({})",
                st.run_id,
                t0.elapsed().as_secs_f64(),
                topo.providers.len(),
                hosts.len(),
                hosts.iter().filter(|h| h.ip.is_ipv6()).count(),
                st.namespaces.len(),
                st.vantage,
                state.display()
            );
            if !st.sink.is_empty() {
                let sink = port25_lab::topology::addr::SINK_V4;
                println!("sink {sink} / {} (namespace {}), certificate pin {}", port25_lab::topology::addr::SINK_V6, st.sink, st.sink_pin);
            }
            if !st.sink2.is_empty() {
                let (v4, v6) = port25_lab::topology::addr::sink(2);
                println!("second sink {v4} / {v6} (namespace {}), certificate pin {}", st.sink2, st.sink2_pin);
            }
            if !st.vantage_blind.is_empty() {
                println!("reflection-blind vantage (its uplink drops packets to port 25): lab exec --blind -- ...");
            }
            for c in &st.customers {
                println!("customer vantage {} ({}, {} / {}): lab exec --customer {} -- ...", c.vantage.name, topo.providers[c.vantage.provider].name, c.vantage.v4, c.vantage.v6, c.vantage.name);
            }
            println!("datasets and ground truth: {}", state.join("datasets").display());
        }
        Cmd::Down { state } => {
            let left = netns::down(&state)?;
            if !left.is_empty() {
                bail!("could not remove: {}", left.join(", "));
            }
            println!("lab down: nothing left");
        }
        Cmd::Exec { state, blocked, alt, blind, customer, sink, argv } => {
            let st = netns::LabState::load(&state)?;
            let ns = match (&customer, sink) {
                (Some(name), _) => &st.customers.iter().find(|c| &c.vantage.name == name).with_context(|| format!("no customer vantage {name}"))?.ns,
                (None, true) if !st.sink.is_empty() => &st.sink,
                (None, true) => bail!("this lab has no sink (its topology has no customer vantages)"),
                _ if blocked => &st.vantage_blocked,
                _ if alt && !st.vantage_alt.is_empty() => &st.vantage_alt,
                _ if alt => bail!("this lab has no second measuring vantage (its topology has no path filters)"),
                _ if blind && !st.vantage_blind.is_empty() => &st.vantage_blind,
                _ if blind => bail!("this lab has no reflection-blind vantage (blind_vantage = true in its topology)"),
                _ => &st.vantage,
            };
            let status = netns::exec(ns, &argv)?;
            std::process::exit(status.code().unwrap_or(1));
        }
        Cmd::Demo { topology, out, rate } => {
            ctrlc::set_handler(|| netns::INTERRUPTED.store(true, Ordering::SeqCst)).ok();
            let state = out.join("lab");
            let t0 = std::time::Instant::now();
            let topo = Topology::load(&topology)?;
            let st = netns::up(&topology, &state)?;
            println!("lab {} up ({} namespaces)", st.run_id, st.namespaces.len());
            // Whatever happens next, the lab comes down.
            let result = port25_lab::demo::run(&topo, &st, &state, &out, rate);
            let left = netns::down(&state)?;
            println!("lab down{}", if left.is_empty() { ": nothing left".to_string() } else { format!(", left: {left:?}") });
            result?;
            println!("demo finished in {:.1} s; report: {}", t0.elapsed().as_secs_f64(), out.join("report/report.html").display());
        }
        Cmd::Forge { topology, provider, count, sniff: Some(iface), seconds, late_ms } => {
            let _ = count;
            let topo = Topology::load(&topology)?;
            let hosts = topo.hosts_of(provider);
            let dead = hosts.iter().filter(|h| h.dead).map(|h| h.ip).collect();
            let ips: Vec<std::net::IpAddr> = hosts.iter().map(|h| h.ip).collect();
            let f = port25_lab::forge::answer_syns(&iface, &ips, &dead, seconds, late_ms)?;
            println!("{}", serde_json::to_string(&f)?);
        }
        Cmd::Forge { topology, provider, count, sniff: None, .. } => {
            let topo = Topology::load(&topology)?;
            let hosts: Vec<std::net::Ipv4Addr> =
                topo.hosts_of(provider).iter().filter_map(|h| if let std::net::IpAddr::V4(a) = h.ip { Some(a) } else { None }).collect();
            let n = port25_lab::forge::forge(&hosts, port25_lab::topology::addr::VANTAGE_V4, count)?;
            println!("forged {n}");
        }
        Cmd::GenCrawl { rows, ases, files, out } => {
            port25_lab::gencrawl::generate(&out, rows, ases, files)?;
            println!("wrote {rows} rows to {}", out.display());
        }
        Cmd::Connect { targets } => {
            for t in targets {
                let r = std::net::TcpStream::connect_timeout(&t, std::time::Duration::from_millis(500));
                println!("{t}: {}", r.map_or_else(|e| e.to_string(), |_| "connected".into()));
            }
        }
        Cmd::FuzzSeeds { out, fixtures, config } => {
            port25_lab::fuzzseeds::write_all(&out, &fixtures, &config)?;
            println!("fuzz seeds in {}", out.display());
        }
        Cmd::Datasets { topology, out } => {
            let topo = Topology::load(&topology)?;
            export::write_all(&topo, &out)?;
        }
        Cmd::Proxy { modes, name, ready } => {
            let modes = modes.iter().map(|m| port25_lab::proxy::Mode::parse(m)).collect::<Result<Vec<_>>>()?;
            port25_lab::proxy::serve(&modes, &name, &ready).context("lab proxy")?;
        }
        Cmd::Serve { topology, provider, role, ready } => {
            let topo = Topology::load(&topology)?;
            let addrs = netns::serve_addrs(&topo, provider, &role);
            serve::serve(&addrs, &ready).context("lab serve")?;
        }
    }
    Ok(())
}
