//! Opening dataset files: plain or gzip (by magic bytes), line by line with line numbers,
//! and the SHA-256 that plans and manifests record for reproducibility.

use crate::error::{DatasetError, Result};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

pub fn open(path: &Path) -> Result<Box<dyn BufRead>> {
    let mut f = File::open(path).map_err(|e| DatasetError::io(path, e))?;
    let mut magic = [0u8; 2];
    let n = f.read(&mut magic).map_err(|e| DatasetError::io(path, e))?;
    let f = File::open(path).map_err(|e| DatasetError::io(path, e))?;
    if n == 2 && magic == [0x1f, 0x8b] {
        Ok(Box::new(BufReader::with_capacity(1 << 16, flate2::read::MultiGzDecoder::new(f))))
    } else {
        Ok(Box::new(BufReader::with_capacity(1 << 16, f)))
    }
}

/// Bytes already in memory, plain or gzip (by magic bytes), as [`open`] reads a file.
pub fn decode(bytes: &[u8]) -> Box<dyn BufRead + '_> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(bytes)))
    } else {
        Box::new(bytes)
    }
}

/// Call `f(line_number, line)` for every line (1-based), without the line terminator.
pub fn for_each_line(path: &Path, f: impl FnMut(usize, &str) -> Result<()>) -> Result<usize> {
    for_each_line_in(path, open(path)?, f)
}

/// [`for_each_line`] over an open reader; `path` names it in errors.
pub fn for_each_line_in(path: &Path, mut r: impl BufRead, mut f: impl FnMut(usize, &str) -> Result<()>) -> Result<usize> {
    let mut buf = String::new();
    let mut n = 0;
    loop {
        buf.clear();
        let got = r.read_line(&mut buf).map_err(|e| match e.kind() {
            std::io::ErrorKind::InvalidData => DatasetError::line(path, n + 1, "not valid UTF-8 text"),
            _ => DatasetError::io(path, e),
        })?;
        if got == 0 {
            return Ok(n);
        }
        n += 1;
        f(n, buf.trim_end_matches(['\n', '\r']))?;
    }
}

pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = File::open(path).map_err(|e| DatasetError::io(path, e))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).map_err(|e| DatasetError::io(path, e))?;
    Ok(hex::encode(h.finalize()))
}
