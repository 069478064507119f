//! Address and prefix lists: the TUM IPv6 hitlist (`responsive-addresses.txt`), its
//! aliased-prefix list, opt-out lists and user exclusion lists. One entry a line, `#` comments.

use crate::error::{DatasetError, LoadOptions, LoadStats, Result};
use crate::input::{for_each_line_in, open};
use ipnet::IpNet;
use std::io::BufRead;
use std::net::IpAddr;
use std::path::Path;

fn content(l: &str) -> &str {
    l.split('#').next().unwrap_or("").trim()
}

/// Every non-comment line of `path` through `parse`; `Err(msg)` is a bad line.
fn load_list<T>(path: &Path, r: impl BufRead, opts: LoadOptions, parse: impl Fn(&str) -> std::result::Result<T, String>) -> Result<(Vec<T>, LoadStats)> {
    let mut st = LoadStats::default();
    let mut out = Vec::new();
    st.lines = for_each_line_in(path, r, |n, l| {
        let t = content(l);
        if t.is_empty() {
            return Ok(());
        }
        match parse(t) {
            Ok(v) => {
                out.push(v);
                st.records += 1;
                Ok(())
            }
            Err(msg) => st.bad(opts, DatasetError::line(path, n, msg)),
        }
    })?;
    Ok((out, st))
}

/// One address a line (hitlist layout).
pub fn load_addresses(path: &Path, opts: LoadOptions) -> Result<(Vec<IpAddr>, LoadStats)> {
    load_addresses_from(path, open(path)?, opts)
}

/// [`load_addresses`] from an open reader; `path` names it in errors.
pub fn load_addresses_from(path: &Path, r: impl BufRead, opts: LoadOptions) -> Result<(Vec<IpAddr>, LoadStats)> {
    load_list(path, r, opts, |t| t.parse::<IpAddr>().map_err(|_| format!("not an IP address: `{t}`")))
}

/// One prefix (or bare address = host prefix) a line; host bits set are an error, since a
/// typo in an opt-out list must not silently shrink or grow what is excluded.
pub fn load_prefixes(path: &Path, opts: LoadOptions) -> Result<(Vec<IpNet>, LoadStats)> {
    load_prefixes_from(path, open(path)?, opts)
}

/// [`load_prefixes`] from an open reader (opt-out and exclusion lists, aliased prefixes);
/// `path` names it in errors.
pub fn load_prefixes_from(path: &Path, r: impl BufRead, opts: LoadOptions) -> Result<(Vec<IpNet>, LoadStats)> {
    load_list(path, r, opts, |t| match t.parse::<IpNet>().or_else(|_| t.parse::<IpAddr>().map(IpNet::from)) {
        Ok(net) if net.trunc() == net => Ok(net),
        Ok(net) => Err(format!("`{t}` has host bits set (did you mean {}?)", net.trunc())),
        Err(_) => Err(format!("not a CIDR prefix or address: `{t}`")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    fn fixture(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(name)
    }
    #[test]
    fn hitlist_and_aliased() {
        let (a, st) = load_addresses(&fixture("responsive-addresses.txt"), LoadOptions::default()).unwrap();
        assert_eq!((a.len(), st.records), (4, 4));
        let (p, _) = load_prefixes(&fixture("aliased-prefixes.txt"), LoadOptions::default()).unwrap();
        assert_eq!(p.len(), 2);
    }
    #[test]
    fn bad_cidr_is_named() {
        let e = load_prefixes(&fixture("opt-out-bad.txt"), LoadOptions::default()).unwrap_err().to_string();
        assert!(e.contains("opt-out-bad.txt:4:") && e.contains("host bits"), "{e}");
        let (p, st) = load_prefixes(&fixture("opt-out-bad.txt"), LoadOptions { skip_bad_lines: true }).unwrap();
        assert_eq!((p.len(), st.skipped_bad), (2, 2));
    }
}
