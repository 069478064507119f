//! The parts of `analysis` that read crawl files, as a library: the binary uses them, and so
//! do the fuzz targets (`fuzz/`), which feed them arbitrary bytes as a crawl file.

pub mod infer;
pub mod load;
