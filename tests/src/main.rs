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
    /// Run a command in the vantage namespace (or the blocked vantage with --blocked).
    Exec {
        #[arg(long, default_value = "lab-runs/lab")]
        state: PathBuf,
        #[arg(long)]
        blocked: bool,
        #[arg(trailing_var_arg = true, required = true)]
        argv: Vec<String>,
    },
    /// Write the datasets and ground truth of a topology without building it.
    Datasets {
        topology: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// The main job on the lab: up, plan, crawl from the vantage, provider report, down.
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
            println!("datasets and ground truth: {}", state.join("datasets").display());
        }
        Cmd::Down { state } => {
            let left = netns::down(&state)?;
            if !left.is_empty() {
                bail!("could not remove: {}", left.join(", "));
            }
            println!("lab down: nothing left");
        }
        Cmd::Exec { state, blocked, argv } => {
            let st = netns::LabState::load(&state)?;
            let ns = if blocked { &st.vantage_blocked } else { &st.vantage };
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
        Cmd::Forge { topology, provider, count } => {
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
        Cmd::FuzzSeeds { out, fixtures, config } => {
            port25_lab::fuzzseeds::write_all(&out, &fixtures, &config)?;
            println!("fuzz seeds in {}", out.display());
        }
        Cmd::Datasets { topology, out } => {
            let topo = Topology::load(&topology)?;
            export::write_all(&topo, &out)?;
        }
        Cmd::Serve { topology, provider, role, ready } => {
            let topo = Topology::load(&topology)?;
            let addrs = netns::serve_addrs(&topo, provider, &role);
            serve::serve(&addrs, &ready).context("lab serve")?;
        }
    }
    Ok(())
}
