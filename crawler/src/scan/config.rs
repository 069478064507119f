//! What a scan is told: the `[scan]` table of a crawl config (ports, rates, retries, where
//! to send from), and the crawl around it (plan, output, vantage, lists, identity, shard).

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::path::PathBuf;

/// Ports, rates, retries and interface: the `[scan]` table of `crawl.toml`, and the flags of
/// `crawler scan`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    pub ports: Vec<u16>,
    pub control_ports: Vec<u16>,
    pub random_ports: u16,
    /// Source ports of the reflection probes (outbound filtering seen from outside); empty: off.
    pub reflect_ports: Vec<u16>,
    /// A neutral fixed source port reflected too, the control for hosts that treat fixed
    /// source ports oddly; 0: none.
    pub reflect_control_port: u16,
    pub rate: u64,
    pub asn_rate: u64,
    pub net_rate: u64,
    pub retries: u8,
    pub retry_delay: f64,
    pub cooldown: f64,
    pub interface: Option<String>,
    pub gateway_mac: Option<String>,
    pub source_ip: Vec<IpAddr>,
    pub rows_per_file: usize,
    pub senders: usize,
    /// Slots of the send log (ring of recent sends); 0: one per probe up to 2^20.
    pub send_log: usize,
    /// Started as root, the scan runs as this user once its raw sockets are open.
    pub user: String,
}

/// Retries of a silent probe: the pass counter is a u8 (attempts = pass + 1), and more than a
/// few retries only multiply the load on networks that do not answer.
pub const MAX_RETRIES: u8 = 10;

impl Default for Params {
    fn default() -> Self {
        Params {
            ports: vec![25, 465, 587],
            control_ports: vec![80, 443, 22],
            random_ports: 2,
            reflect_ports: vec![25, 465, 587],
            reflect_control_port: 2525,
            rate: 10_000,
            asn_rate: 1_000,
            net_rate: 20,
            retries: 2,
            retry_delay: 2.0,
            cooldown: 8.0,
            interface: None,
            gateway_mac: None,
            source_ip: vec![],
            rows_per_file: 1_000_000,
            senders: 0,
            send_log: 0,
            user: "nobody".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ScanConfig {
    pub plan: PathBuf,
    pub out: PathBuf,
    /// Ports, rates, retries, interface: the `[scan]` table of a crawl config.
    pub scan: Params,
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
    /// Directories under `out` the caller writes into after the scan (`run`: `out` itself,
    /// `""`, for the run-state file), handed to `scan.user` with the partition when privileges
    /// are dropped.
    #[serde(skip)]
    pub writable: Vec<PathBuf>,
    /// Files published once privileges are dropped, before the scan reads its inputs (`run`:
    /// the run-state file, so root never writes into a directory the scan user owns).
    #[serde(skip)]
    pub after_drop: Vec<(PathBuf, String)>,
    /// An object store behind `out` (`--out s3://…`): `out` is then its local spool.
    #[serde(skip)]
    pub store: Option<crate::output::Output>,
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
