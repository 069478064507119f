//! Loaders for the public datasets port-25 researchers already use, and the crawl's own
//! Parquet schema, shared by `crawler` (which writes it), `analysis` (which reads it) and the
//! tests, and the one way every tool publishes a file (`publish`: temp, fsync, rename).
//!
//! Every loader reads the real file layout unchanged (see the README's "Input data"), reports
//! a malformed line with its file and line number, and can instead skip and count bad lines.

pub mod blocklist;
pub mod categories;
pub mod egress;
pub mod error;
pub mod hitlist;
pub mod input;
pub mod orgs;
pub mod policies;
pub mod publish;
pub mod ranges;
pub mod routes;
pub mod schema;
pub mod store;

pub use error::{DatasetError, LoadOptions, LoadStats};
