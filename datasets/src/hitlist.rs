//! Address and prefix lists: the TUM IPv6 hitlist (`responsive-addresses.txt`), its
//! aliased-prefix list, opt-out lists and user exclusion lists. One entry a line, `#` comments.

use crate::error::{DatasetError, LoadOptions, LoadStats, Result};
use crate::input::for_each_line;
use ipnet::IpNet;
use std::net::IpAddr;
use std::path::Path;

fn content(l: &str) -> &str {
    l.split('#').next().unwrap_or("").trim()
}

/// One address a line (hitlist layout).
pub fn load_addresses(path: &Path, opts: LoadOptions) -> Result<(Vec<IpAddr>, LoadStats)> {
    let mut st = LoadStats::default();
    let mut out = Vec::new();
    st.lines = for_each_line(path, |n, l| {
        let t = content(l);
        if t.is_empty() {
            return Ok(());
        }
        match t.parse::<IpAddr>() {
            Ok(a) => {
                out.push(a);
                st.records += 1;
                Ok(())
            }
            Err(_) => st.bad(opts, DatasetError::line(path, n, format!("not an IP address: `{t}`"))),
        }
    })?;
    Ok((out, st))
}

/// One prefix (or bare address = host prefix) a line; host bits set are an error, since a
/// typo in an opt-out list must not silently shrink or grow what is excluded.
pub fn load_prefixes(path: &Path, opts: LoadOptions) -> Result<(Vec<IpNet>, LoadStats)> {
    let mut st = LoadStats::default();
    let mut out = Vec::new();
    st.lines = for_each_line(path, |n, l| {
        let t = content(l);
        if t.is_empty() {
            return Ok(());
        }
        let parsed = t.parse::<IpNet>().or_else(|_| t.parse::<IpAddr>().map(IpNet::from));
        match parsed {
            Ok(net) if net.trunc() == net => {
                out.push(net);
                st.records += 1;
                Ok(())
            }
            Ok(net) => st.bad(opts, DatasetError::line(path, n, format!("`{t}` has host bits set (did you mean {}?)", net.trunc()))),
            Err(_) => st.bad(opts, DatasetError::line(path, n, format!("not a CIDR prefix or address: `{t}`"))),
        }
    })?;
    Ok((out, st))
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
