//! Egress results sent to the sink (`crawler egress --upload TOKEN`): an egress fleet without
//! cloud credentials on every VM. Inside the TLS session a vantage already opens to the sink
//! (its certificate pinned), the client says `XUPLOAD TOKEN VANTAGE RUN BYTES`; the sink checks
//! the token against its fleet's (`--upload-tokens FILE`, compared in constant time), the size
//! against `--max-upload`, the names against the crawler's rules, reads exactly that many bytes,
//! checks they are an egress table of that vantage, and publishes them under its own `--out`
//! (`egress/egress_date=D/vantage=V/part-RUN-….parquet`: local, or a store through its spool).
//! The token never reaches a record or a log: the command is kept as `XUPLOAD ***`.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use subtle::ConstantTimeEq;

/// The largest egress file the sink takes by default (a run of 8 sinks × 16 ports × 50
/// attempts is ~6,400 rows: well under 1 MiB).
pub const DEFAULT_MAX_UPLOAD: u64 = 4 << 20;

/// The fleet's tokens: one a line, `#` comments; at least 16 characters each (a guessable token
/// would let anyone fill the sink's disk).
#[derive(Clone, Default)]
pub struct Tokens(Vec<Vec<u8>>);

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokens({} configured)", self.0.len())
    }
}

impl Tokens {
    pub fn load(path: &Path) -> Result<Tokens> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut out = Vec::new();
        for (i, l) in text.lines().enumerate() {
            let l = l.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            if l.len() < 16 || !l.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(datasets::DatasetError::line(path, i + 1, "a token is at least 16 printable characters, no spaces").into());
            }
            out.push(l.as_bytes().to_vec());
        }
        if out.is_empty() {
            return Err(datasets::DatasetError::file(path, "no token").into());
        }
        Ok(Tokens(out))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Is `t` one of them? Every candidate is compared in full, in constant time: how long the
    /// answer takes says nothing about how close a guess came.
    pub fn accepts(&self, t: &[u8]) -> bool {
        let mut ok = false;
        for k in &self.0 {
            ok |= k.len() == t.len() && bool::from(k.as_slice().ct_eq(t));
        }
        ok
    }
}

/// A parsed `XUPLOAD TOKEN VANTAGE RUN BYTES` line.
pub struct Request<'a> {
    pub token: &'a str,
    pub vantage: &'a str,
    pub run: &'a str,
    pub bytes: u64,
}

/// The words of an upload command, or why not.
pub fn parse(line: &str) -> Result<Request<'_>, &'static str> {
    let mut w = line.split_ascii_whitespace();
    let (Some(_), Some(token), Some(vantage), Some(run), Some(bytes), None) = (w.next(), w.next(), w.next(), w.next(), w.next(), w.next()) else {
        return Err("501 5.5.4 syntax: XUPLOAD TOKEN VANTAGE RUN BYTES\r\n");
    };
    let run_ok = run.len() == 16 && run.bytes().all(|b| b.is_ascii_digit() || b == b'T' || b == b'Z');
    if !super::valid_name(vantage) || !run_ok {
        return Err("501 5.5.4 bad vantage or run name\r\n");
    }
    let Ok(bytes) = bytes.parse() else { return Err("501 5.5.4 bad size\r\n") };
    Ok(Request { token, vantage, run, bytes })
}

/// What a line says for the record: an upload's token replaced.
pub fn redact(line: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(line);
    let mut w = text.split_ascii_whitespace();
    let verb = w.next().unwrap_or("");
    let _token = w.next();
    let rest: Vec<&str> = w.collect();
    format!("{verb} *** {}\r\n", rest.join(" ")).into_bytes()
}

/// Check `data` is an egress table whose every row is from `vantage`, and publish it under
/// `out` unless the uploads waiting there would then hold more than `max_disk` bytes (a fleet
/// token must not be a way to fill the sink's disk; with a store, uploaded files leave and
/// make room); the relative path it got.
pub fn store(out: &Path, vantage: &str, run: &str, data: Vec<u8>, max_disk: u64) -> Result<String> {
    use arrow_array::{Array, StringArray};
    use sha2::Digest;
    let held: u64 = datasets::store::spool::pending(&out.join("egress")).map_err(|e| anyhow::anyhow!("{e}"))?.iter().map(|f| f.1).sum();
    if held + data.len() as u64 > max_disk {
        bail!("the sink holds {held} bytes of uploads, its --max-disk is {max_disk}: try later");
    }
    let name = PathBuf::from(format!("upload from {vantage}"));
    let bytes = bytes::Bytes::from(data);
    let mut reader = datasets::schema::open_parquet_from(&name, bytes.clone(), 8192, None)?;
    let mut rows = 0u64;
    let mut date = None;
    while let Some(b) = datasets::schema::guard(&name, || reader.next())? {
        let b = b.map_err(|e| datasets::DatasetError::file(&name, format!("corrupt: {e}")))?;
        if b.schema() != datasets::egress::egress_schema() {
            bail!("not an egress table (its columns differ from this sink's version's)");
        }
        let v = b.column_by_name(datasets::egress::egress_col::VANTAGE).and_then(|c| c.as_any().downcast_ref::<StringArray>()).context("no vantage column")?;
        if (0..b.num_rows()).any(|i| v.is_null(i) || v.value(i) != vantage) {
            bail!("rows of another vantage than {vantage}");
        }
        let started = b.column_by_name(datasets::egress::egress_col::STARTED_AT).and_then(|c| c.as_any().downcast_ref::<arrow_array::TimestampMicrosecondArray>()).context("no started_at column")?;
        if date.is_none() && b.num_rows() > 0 {
            date = chrono::DateTime::from_timestamp_micros(started.value(0)).map(|t| t.format("%Y-%m-%d").to_string());
        }
        rows += b.num_rows() as u64;
    }
    let Some(date) = date.filter(|_| rows > 0) else { bail!("no rows") };
    // Named by its content: a file sent again (stored, but the client never heard the 250)
    // lands on itself instead of counting its attempts twice.
    let digest = sha2::Sha256::digest(&bytes[..]);
    let rel = format!("egress/egress_date={date}/vantage={vantage}/part-{run}-{}.parquet", digest[..8].iter().map(|b| format!("{b:02x}")).collect::<String>());
    let dest = out.join(&rel);
    std::fs::create_dir_all(dest.parent().expect("a parent")).with_context(|| format!("creating {}", dest.display()))?;
    datasets::publish::write_atomic(&dest, &bytes[..]).with_context(|| format!("writing {}", dest.display()))?;
    Ok(rel)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_never_hold_more_than_the_disk_budget() {
        let d = tempfile::tempdir().unwrap();
        let held = d.path().join("egress/egress_date=2026-12-01/vantage=v");
        std::fs::create_dir_all(&held).unwrap();
        std::fs::write(held.join("part-r-00.parquet"), vec![0u8; 900]).unwrap();
        let e = store(d.path(), "v", "r", vec![1u8; 200], 1000).unwrap_err().to_string();
        assert!(e.contains("holds 900 bytes") && e.contains("--max-disk is 1000"), "{e}");
        // Within the budget the file is checked (and this one is no egress table).
        let e = store(d.path(), "v", "r", vec![1u8; 50], 1000).unwrap_err().to_string();
        assert!(!e.contains("--max-disk"), "{e}");
    }

    #[test]
    fn tokens_are_long_compared_in_full_and_never_recorded() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("tokens");
        std::fs::write(&f, "# fleet A\nfleet-a-0123456789abcdef\n\nfleet-b-fedcba9876543210\n").unwrap();
        let t = Tokens::load(&f).unwrap();
        assert!(t.accepts(b"fleet-b-fedcba9876543210") && !t.accepts(b"fleet-b-fedcba987654321") && !t.accepts(b""));
        std::fs::write(&f, "short\n").unwrap();
        assert!(Tokens::load(&f).unwrap_err().to_string().contains(":1:"));
        let r = parse("XUPLOAD fleet-a-0123456789abcdef hetzner-1 20261204T101500Z 4096").ok().unwrap();
        assert_eq!((r.vantage, r.run, r.bytes), ("hetzner-1", "20261204T101500Z", 4096));
        assert!(parse("XUPLOAD tok ../x 20261204T101500Z 1").is_err());
        assert!(parse("XUPLOAD tok v run 1").is_err());
        assert_eq!(redact(b"XUPLOAD fleet-a-0123456789abcdef v 20261204T101500Z 4096\r\n"), b"XUPLOAD *** v 20261204T101500Z 4096\r\n");
    }
}
