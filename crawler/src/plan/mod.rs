//! `crawler plan`: a reproducible, stratified sample of hosts per ASN.
//!
//! Methodology: blocking policy clusters by prefix (design effect 1+(m−1)ρ), so a fixed
//! budget of N hosts per ASN is spread over as many announced prefixes as possible, and
//! within a prefix over as many /24s as possible: round r takes the r-th address of one
//! /24 of every prefix. Every choice comes from keyed permutations (masscan's Blackrock,
//! `perfect_rand`) of the seed, so the same inputs and seed give the same plan.
//! IPv6 targets come from a hitlist (a sampled address space is empty), stratified the same
//! way by prefix and /48.
//!
//! - [`build`]: the inputs loaded, announced prefixes grouped by origin AS, the blocklist;
//! - [`sample`]: the draws per AS (v4 by prefix and /24, v6 by prefix and /48);
//! - [`write`]: the plan as Parquet, its seed and inputs in the metadata.

mod build;
mod sample;
mod write;

pub use build::build;
pub use write::{print_summary, write};

use datasets::categories::Categories;
use datasets::orgs::Orgs;
use datasets::routes::RouteFormat;
use ipnet::IpNet;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    All,
    Hosting,
    Asns(Vec<u32>),
}

impl std::str::FromStr for Selection {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "all" => Ok(Selection::All),
            "hosting" => Ok(Selection::Hosting),
            _ => s
                .split(',')
                .map(|a| {
                    let t = a.trim();
                    t.strip_prefix("AS").or_else(|| t.strip_prefix("as")).unwrap_or(t).parse::<u32>().map_err(|_| format!("bad AS `{a}` in selection (all, hosting, or AS<n>,AS<m>,...)"))
                })
                .collect::<std::result::Result<Vec<_>, _>>()
                .map(Selection::Asns),
        }
    }
}

#[derive(Debug, Clone)]
pub struct PlanInputs {
    pub routes: Vec<PathBuf>,
    pub routes_format: Option<RouteFormat>,
    pub orgs: Vec<PathBuf>,
    pub categories: Vec<PathBuf>,
    pub hitlist: Vec<PathBuf>,
    pub aliased: Vec<PathBuf>,
    pub exclude: Vec<PathBuf>,
    pub opt_out: Vec<PathBuf>,
    pub select: Selection,
    pub per_asn: usize,
    pub seed: u64,
    pub allow_reserved: Vec<IpNet>,
    pub skip_bad_lines: bool,
    /// Also sample IPv4 addresses ending in .0 or .255 (skipped by default).
    pub keep_edge_addresses: bool,
    pub progress: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub ip: IpAddr,
    pub asn: u32,
    pub prefix: IpNet,
}

#[derive(Debug, Default)]
pub struct PlanSummary {
    pub asns_selected: usize,
    pub asns_with_targets: usize,
    pub prefixes: usize,
    pub targets_v4: usize,
    pub targets_v6: usize,
    /// Addresses not drawn, by reason (`edge-address`: a .0 or .255 IPv4 address).
    pub excluded: BTreeMap<&'static str, usize>,
    pub excluded_prefixes: BTreeMap<&'static str, usize>,
    pub bad_lines: usize,
}

/// How a family's targets were drawn: `random` addresses of the announced prefixes, or the
/// addresses of a `hitlist` (responsive addresses: a different population, not comparable
/// like for like with a random sample).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sampling {
    Random,
    Hitlist,
}

impl Sampling {
    pub fn as_str(self) -> &'static str {
        match self {
            Sampling::Random => "random",
            Sampling::Hitlist => "hitlist",
        }
    }
}

pub struct Plan {
    /// How the IPv4 and IPv6 targets were drawn.
    pub sampling: (Sampling, Sampling),
    pub targets: Vec<Target>,
    pub summary: PlanSummary,
    pub orgs: Orgs,
    pub categories: Categories,
    /// (file, sha256) of every input.
    pub inputs: Vec<(String, String)>,
}

impl PlanSummary {
    /// Add the counts of another part of the plan (ASes sampled on another thread).
    fn merge(&mut self, o: PlanSummary) {
        self.asns_selected += o.asns_selected;
        self.asns_with_targets += o.asns_with_targets;
        self.prefixes += o.prefixes;
        self.targets_v4 += o.targets_v4;
        self.targets_v6 += o.targets_v6;
        for (k, v) in o.excluded {
            *self.excluded.entry(k).or_default() += v;
        }
        for (k, v) in o.excluded_prefixes {
            *self.excluded_prefixes.entry(k).or_default() += v;
        }
        self.bad_lines += o.bad_lines;
    }
}
