//! The parts of `analysis` that read crawl files, as a library: the binary uses them, and so
//! do the fuzz targets (`fuzz/`), which feed them arbitrary bytes as a crawl file.
//!
//! A crawl's way in: [`load`] finds its files and scans them; [`decode`] reads the columns
//! inference needs into records; [`fold`] folds records into per-host accumulators
//! ([`infer::HostAcc`]), through [`spill`]'s partitions when the crawl's hosts do not fit in
//! memory at once.

pub mod decode;
pub mod fold;
pub mod infer;
pub mod load;
pub mod spill;
