//! The crawler as a library: the binary (`main.rs`, `cli.rs`) parses flags and calls it, and
//! the tests and benchmarks use the same pieces (packet builders, recorder, schema).
//!
//! Dependencies run one way: commands (`cli`) → [`job`] → [`scan`] / [`plan`] → [`probe`] /
//! [`net`] → `datasets`.
//!
//! - [`plan`]: a reproducible, stratified sample of hosts per AS from routing data;
//! - [`scan`]: the probe engine — order, pace, send, receive, validate, record;
//! - [`probe`]: the packets — SYNs we send, replies we parse (and builders for both);
//! - [`job`]: `crawler run` — config, vantage self-check, resume state;
//! - [`net`]: routes and neighbours, asked of the kernel;
//! - [`output`]: where files go — a directory, or an object store through a local spool;
//! - [`sink`] and [`egress`]: outbound blocking seen from inside a network (a server we run,
//!   and the client a vantage runs against it).

pub mod egress;
pub mod job;
pub mod net;
pub mod output;
pub mod plan;
pub mod probe;
pub mod progress;
pub mod scan;
pub mod sink;

pub const SOFTWARE: &str = concat!("port25-crawler/", env!("CARGO_PKG_VERSION"));
