//! Jobs: what `crawler run` does with one config — plan, vantage self-check, scan — on a
//! schedule, resumable and sharded.
//!
//! - [`config`]: `crawl.toml`, validated key by key;
//! - [`run`]: config → plan → self-check → scan into the crawl's partition;
//! - [`selfcheck`]: can this vantage send on 25 at all?
//! - [`state`]: the run-state file that `--resume` reads.

pub mod config;
pub mod run;
pub mod selfcheck;
pub mod state;
