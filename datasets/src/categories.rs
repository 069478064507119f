//! AS → category: ASdb (Stanford) CSV and a user list `AS<n>,category`. Which source said
//! what is kept, since no single source is authoritative (PeeringDB has no hosting value).

use crate::error::{DatasetError, LoadOptions, LoadStats, Result};
use crate::input::{for_each_line_in, open};
use std::collections::HashMap;
use std::io::BufRead;
use std::path::Path;

#[derive(Debug, Default)]
pub struct Categories {
    /// ASN → (category, source file name) labels in load order.
    pub labels: HashMap<u32, Vec<(String, String)>>,
}

/// ASdb's Layer-2 spellings for hosting vary ("Hosting and Cloud Provider", "Hosting, Cloud
/// Provider, Data Center, Server Colocation", even "Provicer"); they all mean hosting.
pub fn normalize(layer1: &str, layer2: &str) -> Option<String> {
    let l2 = layer2.to_ascii_lowercase();
    let l1 = layer1.to_ascii_lowercase();
    if l2.contains("hosting") || l2.contains("cloud prov") || l2.contains("colocation") || l2.contains("data center") {
        return Some("hosting".into());
    }
    if l2.contains("internet service provider") || l2.contains("isp") {
        return Some("isp".into());
    }
    if l1.is_empty() && l2.is_empty() {
        return None;
    }
    let s = if !l2.is_empty() { l2 } else { l1 };
    Some(s.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).collect::<Vec<_>>().join("-"))
}

fn parse_as(path: &Path, n: usize, s: &str) -> Result<u32> {
    let t = s.trim();
    let d = t.strip_prefix("AS").or_else(|| t.strip_prefix("as")).unwrap_or(t);
    d.parse().map_err(|_| DatasetError::line(path, n, format!("bad AS `{s}`")))
}

impl Categories {
    pub fn load(&mut self, path: &Path, opts: LoadOptions) -> Result<LoadStats> {
        self.load_from(path, open(path)?, opts)
    }

    /// [`Categories::load`] from an open reader; `path` names it in errors and is the source
    /// recorded with each label.
    pub fn load_from(&mut self, path: &Path, r: impl BufRead, opts: LoadOptions) -> Result<LoadStats> {
        let mut st = LoadStats::default();
        let src = path.file_name().and_then(|n| n.to_str()).unwrap_or("?").to_string();
        let mut asdb: Option<bool> = None;
        st.lines = for_each_line_in(path, r, |n, l| {
            if l.trim().is_empty() || l.starts_with('#') {
                return Ok(());
            }
            let mut rdr = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(l.as_bytes());
            let rec = match rdr.records().next() {
                Some(Ok(r)) => r,
                _ => return st.bad(opts, DatasetError::line(path, n, "malformed CSV line")),
            };
            if asdb.is_none() {
                // ASdb has a header row: ASN,Category 1 - Layer 1,Category 1 - Layer 2,...
                let is_header = rec.get(0).map(|f| f.eq_ignore_ascii_case("asn")).unwrap_or(false);
                asdb = Some(is_header);
                if is_header {
                    return Ok(());
                }
            }
            let asn = match parse_as(path, n, rec.get(0).unwrap_or("")) {
                Ok(a) => a,
                Err(e) => return st.bad(opts, e),
            };
            let mut cats = Vec::new();
            if asdb == Some(true) {
                let f: Vec<&str> = rec.iter().skip(1).collect();
                for pair in f.chunks(2) {
                    if let Some(c) = normalize(pair[0], pair.get(1).copied().unwrap_or("")) {
                        cats.push(c);
                    }
                }
            } else {
                match rec.get(1).map(str::trim).filter(|c| !c.is_empty()) {
                    Some(c) => cats.push(c.to_ascii_lowercase()),
                    None => return st.bad(opts, DatasetError::line(path, n, "expected `AS<n>,category`")),
                }
            }
            let e = self.labels.entry(asn).or_default();
            for c in cats {
                if !e.iter().any(|(x, s)| *x == c && *s == src) {
                    e.push((c, src.clone()));
                }
            }
            st.records += 1;
            Ok(())
        })?;
        Ok(st)
    }

    pub fn is(&self, asn: u32, category: &str) -> bool {
        self.labels.get(&asn).is_some_and(|v| v.iter().any(|(c, _)| c == category))
    }

    /// The category reported for an AS: hosting wins when any source says so.
    pub fn category(&self, asn: u32) -> Option<(String, String)> {
        let v = self.labels.get(&asn)?;
        v.iter().find(|(c, _)| c == "hosting").or_else(|| v.first()).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    fn fixture(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(name)
    }
    #[test]
    fn asdb_variants_normalise_to_hosting() {
        let mut c = Categories::default();
        c.load(&fixture("2026-10_categorized_ases.csv"), LoadOptions::default()).unwrap();
        assert!(c.is(16509, "hosting"));
        assert!(c.is(14061, "hosting"));
        assert!(c.is(24940, "hosting"), "typo variant");
        assert!(!c.is(3320, "hosting"));
        assert!(c.is(3320, "isp"));
        assert_eq!(c.category(16509).unwrap().1, "2026-10_categorized_ases.csv");
    }
    #[test]
    fn user_list_adds_a_source() {
        let mut c = Categories::default();
        c.load(&fixture("2026-10_categorized_ases.csv"), LoadOptions::default()).unwrap();
        c.load(&fixture("my-categories.csv"), LoadOptions::default()).unwrap();
        assert!(c.is(3320, "hosting"));
        let sources: std::collections::BTreeSet<&str> = c.labels[&3320].iter().map(|(_, s)| s.as_str()).collect();
        assert_eq!(sources.len(), 2);
        let e = Categories::default().load(&fixture("my-categories-bad.csv"), LoadOptions::default()).unwrap_err();
        assert!(e.to_string().contains("my-categories-bad.csv:2:"), "{e}");
    }
}
