//! AS → organization from CAIDA AS2Org (JSONL, and the legacy pipe format): siblings are the
//! ASes that share an organization id, and a "provider" in the reports is an organization.

use crate::error::{DatasetError, LoadOptions, LoadStats, Result};
use crate::input::{for_each_line_in, open};
use std::collections::HashMap;
use std::io::BufRead;
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Org {
    pub id: String,
    pub name: String,
    pub country: String,
}

#[derive(Debug, Default)]
pub struct Orgs {
    pub orgs: HashMap<String, Org>,
    pub asn_org: HashMap<u32, String>,
    pub asn_name: HashMap<u32, String>,
}

impl Orgs {
    pub fn load(&mut self, path: &Path, opts: LoadOptions) -> Result<LoadStats> {
        self.load_from(path, open(path)?, opts)
    }

    /// [`Orgs::load`] from an open reader; `path` names it in errors.
    pub fn load_from(&mut self, path: &Path, r: impl BufRead, opts: LoadOptions) -> Result<LoadStats> {
        let mut st = LoadStats::default();
        // The legacy file switches between two layouts at `# format:` lines.
        let mut legacy_section: Option<bool> = None; // Some(true) = aut section, Some(false) = org section
        st.lines = for_each_line_in(path, r, |n, l| {
            let t = l.trim();
            if t.is_empty() {
                return Ok(());
            }
            if let Some(f) = t.strip_prefix("# format:").or_else(|| t.strip_prefix("# format: ")) {
                legacy_section = Some(f.trim().starts_with("aut"));
                return Ok(());
            }
            if t.starts_with('#') {
                return Ok(());
            }
            let r = if t.starts_with('{') { self.json_line(path, n, t) } else { self.legacy_line(path, n, t, legacy_section) };
            match r {
                Ok(()) => {
                    st.records += 1;
                    Ok(())
                }
                Err(e) => st.bad(opts, e),
            }
        })?;
        Ok(st)
    }

    fn json_line(&mut self, path: &Path, n: usize, t: &str) -> Result<()> {
        let v: serde_json::Value = serde_json::from_str(t).map_err(|e| DatasetError::line(path, n, format!("bad JSON: {e}")))?;
        let s = |k: &str| v.get(k).and_then(|x| x.as_str()).map(String::from);
        match s("type").as_deref() {
            Some("Organization") => {
                let id = s("organizationId").ok_or_else(|| DatasetError::line(path, n, "Organization without organizationId"))?;
                self.orgs.insert(id.clone(), Org { id, name: s("name").unwrap_or_default(), country: s("country").unwrap_or_default() });
            }
            Some("ASN") => {
                let asn = s("asn").or_else(|| v.get("asn").and_then(|x| x.as_u64()).map(|x| x.to_string()));
                let asn: u32 = asn.and_then(|a| a.parse().ok()).ok_or_else(|| DatasetError::line(path, n, "ASN record without a numeric asn"))?;
                let org = s("organizationId").ok_or_else(|| DatasetError::line(path, n, "ASN record without organizationId"))?;
                self.asn_org.insert(asn, org);
                if let Some(name) = s("name") {
                    self.asn_name.insert(asn, name);
                }
            }
            other => return Err(DatasetError::line(path, n, format!("unknown record type {other:?}"))),
        }
        Ok(())
    }

    fn legacy_line(&mut self, path: &Path, n: usize, t: &str, section: Option<bool>) -> Result<()> {
        let f: Vec<&str> = t.split('|').collect();
        match section {
            // aut|changed|aut_name|org_id|opaque_id|source
            Some(true) if f.len() >= 4 => {
                let asn: u32 = f[0].parse().map_err(|_| DatasetError::line(path, n, format!("bad AS number `{}`", f[0])))?;
                self.asn_org.insert(asn, f[3].to_string());
                self.asn_name.insert(asn, f[2].to_string());
            }
            // org_id|changed|org_name|country|source
            Some(false) if f.len() >= 4 => {
                self.orgs.insert(f[0].to_string(), Org { id: f[0].into(), name: f[2].into(), country: f[3].into() });
            }
            None => return Err(DatasetError::line(path, n, "not JSON and no `# format:` header seen (neither AS2Org layout)")),
            _ => return Err(DatasetError::line(path, n, format!("expected at least 4 `|`-separated fields, got {}", f.len()))),
        }
        Ok(())
    }

    /// Organization id and name of an AS; an AS without a record is its own organization.
    pub fn org_of(&self, asn: u32) -> (String, String) {
        match self.asn_org.get(&asn) {
            Some(id) => {
                let name = self.orgs.get(id).map(|o| o.name.clone()).filter(|n| !n.is_empty());
                (id.clone(), name.or_else(|| self.asn_name.get(&asn).cloned()).unwrap_or_else(|| id.clone()))
            }
            None => (format!("AS{asn}"), self.asn_name.get(&asn).cloned().unwrap_or_else(|| format!("AS{asn}"))),
        }
    }

    /// ASes of an organization (siblings), sorted.
    pub fn siblings(&self, org_id: &str) -> Vec<u32> {
        let mut v: Vec<u32> = self.asn_org.iter().filter(|(_, o)| *o == org_id).map(|(a, _)| *a).collect();
        v.sort_unstable();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    fn fixture(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(name)
    }
    #[test]
    fn jsonl_and_legacy_agree() {
        for f in ["20261001.as-org2info.jsonl.gz", "20261001.as-org2info.txt"] {
            let mut o = Orgs::default();
            o.load(&fixture(f), LoadOptions::default()).unwrap();
            assert_eq!(o.org_of(15169), ("GOGL-ARIN".into(), "Google LLC".into()), "{f}");
            assert_eq!(o.siblings("GOGL-ARIN"), vec![15169, 36040], "{f}");
            assert_eq!(o.org_of(64999).0, "AS64999");
        }
    }
    #[test]
    fn bad_json_line_is_named() {
        let mut o = Orgs::default();
        let e = o.load(&fixture("bad.as-org2info.jsonl"), LoadOptions::default()).unwrap_err().to_string();
        assert!(e.contains("bad.as-org2info.jsonl:3:"), "{e}");
        let mut o = Orgs::default();
        let st = o.load(&fixture("bad.as-org2info.jsonl"), LoadOptions { skip_bad_lines: true }).unwrap();
        assert_eq!((st.records, st.skipped_bad), (2, 1));
    }
}
