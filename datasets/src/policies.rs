//! Providers' documented port-25 policies (`datasets/policies/documented-policies.csv`): what a
//! provider *says* it does with outbound (or inbound) 25, 465 and 587, from its own
//! documentation, with the source and the date it was read.
//!
//! Reports show these rows beside the measured verdicts and list agreements and
//! disagreements; the measurement never reads them (no prior, no default). A malformed row is
//! an error naming the file and line; an ASN that AS2Org puts under another organization is a
//! warning ([`Policies::check_against`]).

use crate::error::{DatasetError, Result};
use crate::input::open;
use crate::orgs::Orgs;
use std::collections::BTreeSet;
use std::fmt;
use std::io::BufRead;
use std::path::{Path, PathBuf};

/// The columns, in the order the shipped file uses (any order is accepted).
pub const COLUMNS: [&str; 14] = [
    "provider",
    "org_ids",
    "asns",
    "direction",
    "ports",
    "families",
    "scope",
    "action",
    "lifted_by",
    "effective_since",
    "source_url",
    "source_title",
    "source_read",
    "notes",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    /// Customers of the provider sending out (the cloud case).
    Outbound,
    /// Connections into the provider's hosts.
    Inbound,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Outbound => "outbound",
            Direction::Inbound => "inbound",
        }
    }
    pub fn parse(s: &str) -> Option<Direction> {
        match s.trim() {
            "outbound" => Some(Direction::Outbound),
            "inbound" => Some(Direction::Inbound),
            _ => None,
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn as_str(self) -> &'static str {
        match self {
            Family::V4 => "ipv4",
            Family::V6 => "ipv6",
        }
    }
    pub fn parse(s: &str) -> Option<Family> {
        match s.trim() {
            "ipv4" => Some(Family::V4),
            "ipv6" => Some(Family::V6),
            _ => None,
        }
    }
    pub fn of(v6: bool) -> Family {
        if v6 {
            Family::V6
        } else {
            Family::V4
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the source says happens to the covered traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// Blocked by default (for the row's scope).
    Blocked,
    /// Rate-limited: some connections pass, later ones fail.
    Throttled,
    /// Explicitly not blocked.
    Allowed,
    /// Reactive: blocked once the provider detects spam from an address.
    BlockedOnAbuse,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Blocked => "blocked",
            Action::Throttled => "throttled",
            Action::Allowed => "allowed",
            Action::BlockedOnAbuse => "blocked on abuse",
        }
    }
    pub fn parse(s: &str) -> Option<Action> {
        match s.trim() {
            "blocked" => Some(Action::Blocked),
            "throttled" => Some(Action::Throttled),
            "allowed" => Some(Action::Allowed),
            "blocked on abuse" => Some(Action::BlockedOnAbuse),
            _ => None,
        }
    }
    /// Whether the documented policy, applied, stops (some) connections by default:
    /// `Blocked` and `Throttled` do; `Allowed` does not; `BlockedOnAbuse` does only for
    /// addresses caught sending spam, so a provider-wide open measurement agrees with it.
    pub fn restricts_by_default(self) -> bool {
        matches!(self, Action::Blocked | Action::Throttled)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One documented policy: a provider, the traffic it covers, what happens to it, and where
/// that is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub provider: String,
    /// CAIDA AS2Org organization ids (may be empty).
    pub org_ids: Vec<String>,
    /// The provider's main ASNs (may be empty; a row has at least one org id or ASN).
    pub asns: Vec<u32>,
    pub direction: Direction,
    pub ports: Vec<u16>,
    pub families: Vec<Family>,
    /// Who it applies to, in the source's terms ("all new accounts", a product, …).
    pub scope: String,
    pub action: Action,
    /// How it is lifted; empty when the source says nothing.
    pub lifted_by: String,
    /// `YYYY-MM-DD`, when the source gives a date.
    pub effective_since: Option<String>,
    /// The provider's own page (http or https).
    pub source_url: String,
    pub source_title: String,
    /// `YYYY-MM-DD`: when the source was read.
    pub source_read: String,
    pub notes: String,
    /// The line of the file the row starts on (1 = header), for messages.
    pub line: usize,
}

impl Policy {
    pub fn has_port(&self, port: u16) -> bool {
        self.ports.contains(&port)
    }
    pub fn has_family(&self, v6: bool) -> bool {
        self.families.contains(&Family::of(v6))
    }
    /// Whether the row speaks of this direction, port and family.
    pub fn covers(&self, direction: Direction, port: u16, v6: bool) -> bool {
        self.direction == direction && self.has_port(port) && self.has_family(v6)
    }
    pub fn has_asn(&self, asn: u32) -> bool {
        self.asns.contains(&asn)
    }
    pub fn has_org(&self, org_id: &str) -> bool {
        self.org_ids.iter().any(|o| o == org_id)
    }
    /// Whether the row belongs to an organization (by org id) or to any of its ASNs.
    pub fn applies_to(&self, org_id: &str, asns: &[u32]) -> bool {
        self.has_org(org_id) || asns.iter().any(|a| self.has_asn(*a))
    }
    /// "outbound 25 465 ipv4 ipv6: blocked (all cloud servers)" — for report cells.
    pub fn summary(&self) -> String {
        let ports: Vec<String> = self.ports.iter().map(|p| p.to_string()).collect();
        let fams: Vec<&str> = self.families.iter().map(|f| f.as_str()).collect();
        let mut s = format!("{} {} {}: {}", self.direction, ports.join(" "), fams.join(" "), self.action);
        if !self.scope.is_empty() {
            s.push_str(&format!(" ({})", self.scope));
        }
        s
    }
}

/// All rows of a policies file.
#[derive(Debug, Clone, Default)]
pub struct Policies {
    pub rows: Vec<Policy>,
    /// The file they came from (for messages).
    pub path: PathBuf,
}

impl Policies {
    /// Load and validate a policies CSV (plain or gzip). Any malformed row is an error naming
    /// the file and line: there is no skip mode, the file is small and hand-written.
    pub fn load(path: &Path) -> Result<Policies> {
        Self::load_from(path, open(path)?)
    }

    /// [`Policies::load`] from an open reader; `path` names it in errors.
    pub fn load_from(path: &Path, mut r: impl BufRead) -> Result<Policies> {
        let mut bytes = Vec::new();
        r.read_to_end(&mut bytes).map_err(|e| DatasetError::io(path, e))?;
        let text = String::from_utf8(bytes).map_err(|e| {
            let line = e.as_bytes()[..e.utf8_error().valid_up_to()].iter().filter(|b| **b == b'\n').count() + 1;
            DatasetError::line(path, line, "not valid UTF-8 text")
        })?;
        let text = blank_out_comments(&text.replace("\r\n", "\n"));
        let mut rdr = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(text.as_bytes());
        let mut rec = csv::StringRecord::new();
        let mut header: Option<Vec<usize>> = None; // column index of each COLUMNS entry
        let mut width = 0;
        let mut rows = Vec::new();
        loop {
            let at = rdr.position().line() as usize;
            match rdr.read_record(&mut rec) {
                Ok(false) => break,
                Ok(true) => {}
                Err(e) => {
                    let line = e.position().map(|p| p.line() as usize).unwrap_or(at);
                    return Err(match e.kind() {
                        csv::ErrorKind::Io(_) => DatasetError::file(path, e.to_string()),
                        csv::ErrorKind::Utf8 { .. } => DatasetError::line(path, line, "not valid UTF-8 text"),
                        _ => DatasetError::line(path, line, format!("malformed CSV: {e}")),
                    });
                }
            }
            let line = rec.position().map(|p| p.line() as usize).unwrap_or(at);
            if rec.iter().all(|f| f.trim().is_empty()) {
                continue;
            }
            let Some(idx) = &header else {
                let (idx, w) = parse_header(path, line, &rec)?;
                header = Some(idx);
                width = w;
                continue;
            };
            if rec.len() != width {
                return Err(DatasetError::line(path, line, format!("expected {width} fields (as the header), got {}", rec.len())));
            }
            let get = |c: usize| rec.get(idx[c]).unwrap_or("").trim();
            rows.push(parse_row(path, line, get)?);
        }
        if header.is_none() {
            return Err(DatasetError::file(path, format!("missing header (expected the columns {})", COLUMNS.join(","))));
        }
        Ok(Policies { rows, path: path.to_path_buf() })
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Distinct provider names, in file order.
    pub fn providers(&self) -> Vec<&str> {
        let mut seen = BTreeSet::new();
        self.rows.iter().map(|p| p.provider.as_str()).filter(|p| seen.insert(*p)).collect()
    }

    /// Rows listing this ASN.
    pub fn for_asn(&self, asn: u32) -> impl Iterator<Item = &Policy> + '_ {
        self.rows.iter().filter(move |p| p.has_asn(asn))
    }

    /// Rows listing this organization id.
    pub fn for_org<'a>(&'a self, org_id: &'a str) -> impl Iterator<Item = &'a Policy> + 'a {
        self.rows.iter().filter(move |p| p.has_org(org_id))
    }

    /// Rows of one provider name.
    pub fn for_provider<'a>(&'a self, provider: &'a str) -> impl Iterator<Item = &'a Policy> + 'a {
        self.rows.iter().filter(move |p| p.provider == provider)
    }

    /// Whether `p` speaks of this outbound/inbound port and family (see [`Policy::covers`]).
    pub fn covers(&self, p: &Policy, direction: Direction, port: u16, v6: bool) -> bool {
        p.covers(direction, port, v6)
    }

    /// What is documented for one measured cell: the rows that belong to the organization (by
    /// org id) or to any of its ASNs, and cover this direction, port and family. A report
    /// cell with no rows has nothing documented; several rows (different scopes, e.g. Azure's
    /// subscription types) are all shown.
    pub fn documented<'a>(&'a self, org_id: &str, asns: &[u32], direction: Direction, port: u16, v6: bool) -> Vec<&'a Policy> {
        self.rows.iter().filter(|p| p.applies_to(org_id, asns) && p.covers(direction, port, v6)).collect()
    }

    /// Cross-check against AS2Org. Warnings, never errors: a row's ASN that AS2Org puts under
    /// an organization the row does not list, an ASN AS2Org does not know, and an org id that
    /// no AS2Org record uses. Rows without org ids are checked for unknown ASNs only.
    pub fn check_against(&self, orgs: &Orgs) -> Vec<String> {
        let mut w = Vec::new();
        let file = self.path.display();
        for p in &self.rows {
            for &asn in &p.asns {
                match orgs.asn_org.get(&asn) {
                    None => w.push(format!(
                        "{file}:{}: {}: AS{asn} has no record in the AS2Org data (documented policy cannot be tied to an organization there)",
                        p.line, p.provider
                    )),
                    Some(org) if !p.org_ids.is_empty() && !p.has_org(org) => {
                        let (_, name) = orgs.org_of(asn);
                        w.push(format!(
                            "{file}:{}: {}: AS{asn} belongs to {org} ({name}) per AS2Org, not to the row's organizations {}",
                            p.line,
                            p.provider,
                            p.org_ids.join(" ")
                        ));
                    }
                    Some(_) => {}
                }
            }
            for o in &p.org_ids {
                if !orgs.orgs.contains_key(o) && !orgs.asn_org.values().any(|x| x == o) {
                    w.push(format!("{file}:{}: {}: organization {o} is unknown to the AS2Org data", p.line, p.provider));
                }
            }
        }
        w
    }
}

/// Comment lines (`#` first) and empty lines become a single space, outside quoted fields:
/// the CSV reader then skips nothing, so the line it reports for a record is the line it
/// starts on (it reports the line *before* skipped lines otherwise). The caller turns CRLF
/// into LF first, which the reader's line count needs too.
fn blank_out_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_quotes = false;
    for l in text.split_inclusive('\n') {
        let body = l.trim_end_matches(['\n', '\r']);
        if !in_quotes && (body.is_empty() || body.starts_with('#')) {
            out.push(' ');
            out.push_str(&l[body.len()..]);
            continue;
        }
        out.push_str(l);
        if body.bytes().filter(|b| *b == b'"').count() % 2 == 1 {
            in_quotes = !in_quotes;
        }
    }
    out
}

/// Map each expected column to its index in the header; unknown, duplicate and missing
/// columns are errors on the header's line.
fn parse_header(path: &Path, line: usize, rec: &csv::StringRecord) -> Result<(Vec<usize>, usize)> {
    let mut idx = vec![usize::MAX; COLUMNS.len()];
    for (i, name) in rec.iter().enumerate() {
        let name = name.trim().trim_start_matches('\u{feff}');
        match COLUMNS.iter().position(|c| *c == name) {
            Some(c) if idx[c] != usize::MAX => return Err(DatasetError::line(path, line, format!("column `{name}` appears twice"))),
            Some(c) => idx[c] = i,
            None => {
                return Err(DatasetError::line(
                    path,
                    line,
                    format!("unknown column `{name}` (expected the header {})", COLUMNS.join(",")),
                ))
            }
        }
    }
    let missing: Vec<&str> = COLUMNS.iter().zip(&idx).filter(|(_, i)| **i == usize::MAX).map(|(c, _)| *c).collect();
    if !missing.is_empty() {
        return Err(DatasetError::line(path, line, format!("missing column(s) {} (is the header there?)", missing.join(","))));
    }
    Ok((idx, rec.len()))
}

fn parse_row<'r>(path: &Path, line: usize, get: impl Fn(usize) -> &'r str) -> Result<Policy> {
    let err = |msg: String| DatasetError::line(path, line, msg);
    let col = |name: &str| COLUMNS.iter().position(|c| *c == name).expect("known column");
    let field = |name: &str| get(col(name));
    let required = |name: &str| -> Result<String> {
        let v = field(name);
        if v.is_empty() {
            return Err(err(format!("empty {name}")));
        }
        Ok(v.to_string())
    };

    let provider = required("provider")?;
    let org_ids: Vec<String> = field("org_ids").split_whitespace().map(String::from).collect();
    let mut asns = Vec::new();
    for a in field("asns").split_whitespace() {
        let n = parse_asn(a).ok_or_else(|| err(format!("bad ASN `{a}` (expected AS<n>, 1..4294967295)")))?;
        if asns.contains(&n) {
            return Err(err(format!("AS{n} listed twice")));
        }
        asns.push(n);
    }
    if org_ids.is_empty() && asns.is_empty() {
        return Err(err(format!("{provider}: neither an org id nor an ASN, the row could not be matched to any measurement")));
    }
    let d = required("direction")?;
    let direction = Direction::parse(&d).ok_or_else(|| err(format!("unknown direction `{d}` (outbound or inbound)")))?;
    let mut ports = Vec::new();
    for p in required("ports")?.split_whitespace() {
        let n: u32 = p.parse().map_err(|_| err(format!("bad port `{p}`")))?;
        if n == 0 || n > 65535 {
            return Err(err(format!("bad port `{p}` (1..65535)")));
        }
        if ports.contains(&(n as u16)) {
            return Err(err(format!("port {n} listed twice")));
        }
        ports.push(n as u16);
    }
    let mut families = Vec::new();
    for f in required("families")?.split_whitespace() {
        let fam = Family::parse(f).ok_or_else(|| err(format!("unknown family `{f}` (ipv4, ipv6)")))?;
        if !families.contains(&fam) {
            families.push(fam);
        }
    }
    let a = required("action")?;
    let action = Action::parse(&a).ok_or_else(|| err(format!("unknown action `{a}` (blocked, throttled, allowed, blocked on abuse)")))?;
    let effective_since = match field("effective_since") {
        "" => None,
        d if valid_date(d) => Some(d.to_string()),
        d => return Err(err(format!("bad effective_since `{d}` (YYYY-MM-DD)"))),
    };
    let source_url = required("source_url")?;
    if !http_url(&source_url) {
        return Err(err(format!("source_url `{source_url}` is not an http(s) URL")));
    }
    let source_title = required("source_title")?;
    let source_read = required("source_read")?;
    if !valid_date(&source_read) {
        return Err(err(format!("bad source_read `{source_read}` (YYYY-MM-DD)")));
    }
    Ok(Policy {
        provider,
        org_ids,
        asns,
        direction,
        ports,
        families,
        scope: field("scope").to_string(),
        action,
        lifted_by: field("lifted_by").to_string(),
        effective_since,
        source_url,
        source_title,
        source_read,
        notes: field("notes").to_string(),
        line,
    })
}

/// `AS16509` (or `as16509`, or a bare number); AS 0 is reserved.
fn parse_asn(s: &str) -> Option<u32> {
    let d = s.strip_prefix("AS").or_else(|| s.strip_prefix("as")).unwrap_or(s);
    if d.is_empty() || !d.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    d.parse::<u32>().ok().filter(|n| *n != 0)
}

/// `YYYY-MM-DD` naming a real day (leap years included).
pub fn valid_date(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let t = &s[r];
        t.bytes().all(|c| c.is_ascii_digit()).then(|| t.parse().ok()).flatten()
    };
    let (Some(y), Some(m), Some(d)) = (num(0..4), num(5..7), num(8..10)) else {
        return false;
    };
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    y >= 1970 && (1..=days).contains(&d)
}

/// `http://` or `https://` followed by a host and no whitespace.
fn http_url(s: &str) -> bool {
    let rest = s.strip_prefix("https://").or_else(|| s.strip_prefix("http://"));
    match rest {
        Some(r) => {
            let host = r.split(['/', '?', '#']).next().unwrap_or("");
            !host.is_empty() && !s.chars().any(char::is_whitespace)
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::LoadOptions;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(name)
    }
    fn shipped() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("policies").join("documented-policies.csv")
    }

    #[test]
    fn shipped_dataset_loads_and_covers_the_providers() {
        let p = Policies::load(&shipped()).unwrap();
        let providers = p.providers();
        assert!(providers.len() >= 11, "{providers:?}");
        for name in [
            "Amazon EC2",
            "Google Cloud (Compute Engine)",
            "Microsoft Azure",
            "DigitalOcean",
            "Linode (Akamai Cloud)",
            "Hetzner Cloud",
            "OVHcloud",
            "Oracle Cloud Infrastructure",
            "UpCloud",
            "Scaleway",
        ] {
            assert!(providers.contains(&name), "{name} missing from {providers:?}");
        }
        for r in &p.rows {
            assert!(r.source_url.starts_with("https://"), "line {}: {}", r.line, r.source_url);
            assert!(!r.notes.is_empty(), "line {}: every row quotes its source", r.line);
            assert_ne!(r.line, 1);
        }
        // Spot checks of what the sources say.
        let gcp: Vec<&Policy> = p.documented("GOOGL-2-ARIN", &[], Direction::Outbound, 587, false);
        assert_eq!(gcp.len(), 1);
        assert_eq!(gcp[0].action, Action::Allowed);
        let hz25 = p.documented("ORG-HOA1-RIPE", &[24940], Direction::Outbound, 25, true);
        assert_eq!(hz25.iter().map(|r| r.action).collect::<Vec<_>>(), vec![Action::Blocked]);
        let hz465 = p.documented("", &[24940], Direction::Outbound, 465, false);
        assert_eq!(hz465[0].action, Action::Blocked);
        let linode: Vec<&Policy> = p.for_asn(63949).collect();
        assert_eq!(linode[0].effective_since.as_deref(), Some("2019-11-05"));
        assert_eq!(linode[0].ports, vec![25, 465, 587]);
        assert!(p.documented("MSFT-ARIN", &[8075], Direction::Outbound, 25, false).len() >= 2, "Azure: several scopes");
        assert!(p.documented("MSFT-ARIN", &[8075], Direction::Inbound, 25, false).is_empty());
        let aws = p.for_asn(16509).next().unwrap();
        assert_eq!(aws.families, vec![Family::V4, Family::V6]);
    }

    #[test]
    fn lab_policies_load_with_one_stale_row() {
        let p = Policies::load(&fixture("policies-lab.csv")).unwrap();
        assert_eq!(
            p.providers(),
            vec!["Egress25 Cloud", "SubmitOnly Hosting", "SixOut Cloud", "StatefulOut Cloud", "Throttle25 Cloud", "OpenCloud Hosting"]
        );
        for r in &p.rows {
            assert!(r.source_url.starts_with("https://lab.example/policies/"), "{}", r.source_url);
        }
        let submit = p.documented("ORG-SUBMITONLY", &[], Direction::Outbound, 587, true);
        assert_eq!(submit.iter().map(|r| r.action).collect::<Vec<_>>(), vec![Action::Allowed]);
        let submit465 = p.documented("ORG-SUBMITONLY", &[64515], Direction::Outbound, 465, false);
        assert_eq!(submit465[0].action, Action::Blocked);
        assert!(p.documented("ORG-SIXOUT", &[64516], Direction::Outbound, 25, false).is_empty(), "SixOut documents IPv6 only");
        assert_eq!(p.documented("ORG-SIXOUT", &[64516], Direction::Outbound, 25, true).len(), 1);
        assert_eq!(p.for_org("ORG-THROTTLE25").next().unwrap().action, Action::Throttled);
        assert_eq!(p.rows[0].line, 4, "two comment lines and the header before it");
        let open = p.for_asn(64501).next().unwrap();
        assert_eq!((open.action, open.scope.as_str()), (Action::Blocked, "new accounts"));
    }

    #[test]
    fn bad_fixtures_name_file_and_line() {
        for (f, line, what) in [
            ("policies-bad-unknown-column.csv", 1, "unknown column `prov`"),
            ("policies-bad-missing-column.csv", 1, "missing column(s) notes"),
            ("policies-bad-asn.csv", 3, "bad ASN `AS16509x`"),
            ("policies-bad-asn-zero.csv", 2, "bad ASN `AS0`"),
            ("policies-bad-port.csv", 3, "bad port `0`"),
            ("policies-bad-port-range.csv", 2, "bad port `65536`"),
            ("policies-bad-direction.csv", 2, "unknown direction `egress`"),
            ("policies-bad-family.csv", 3, "unknown family `ipv5`"),
            ("policies-bad-action.csv", 2, "unknown action `maybe`"),
            ("policies-bad-date.csv", 2, "bad effective_since `2019-02-29`"),
            ("policies-bad-source-read.csv", 4, "bad source_read `yesterday`"),
            ("policies-bad-provider.csv", 3, "empty provider"),
            ("policies-bad-url.csv", 2, "is not an http(s) URL"),
            ("policies-bad-empty-url.csv", 2, "empty source_url"),
            ("policies-bad-fields.csv", 3, "expected 14 fields"),
            ("policies-bad-no-match.csv", 2, "neither an org id nor an ASN"),
        ] {
            let path = fixture(f);
            let e = Policies::load(&path).expect_err(f).to_string();
            assert!(e.contains(&format!("{f}:{line}: ")), "{f}: {e}");
            assert!(e.contains(what), "{f}: {e}");
        }
        let e = Policies::load(&fixture("policies-bad-empty.csv")).unwrap_err().to_string();
        assert!(e.contains("policies-bad-empty.csv: missing header"), "{e}");
    }

    #[test]
    fn org_cross_check_warns_never_fails() {
        let mut orgs = Orgs::default();
        orgs.load(&fixture("20261001.as-org2info.txt"), LoadOptions::default()).unwrap();
        let p = Policies::load(&fixture("policies-orgs-mismatch.csv")).unwrap();
        let w = p.check_against(&orgs);
        assert_eq!(w.len(), 3, "{w:#?}");
        assert!(w[0].contains("policies-orgs-mismatch.csv:2: Hetzner Cloud: AS15169 belongs to GOGL-ARIN (Google LLC)"), "{}", w[0]);
        assert!(w[1].contains(":3: Mystery Cloud: AS64999 has no record"), "{}", w[1]);
        assert!(w[2].contains(":4: Typo Cloud: organization ORG-TYPO-RIPE is unknown"), "{}", w[2]);
        // The matching rows (Google, Hetzner's own AS) give nothing.
        let clean = Policies::load(&fixture("policies-good.csv")).unwrap();
        assert!(clean.check_against(&orgs).is_empty(), "{:?}", clean.check_against(&orgs));
    }

    #[test]
    fn comments_blank_lines_and_column_order() {
        let p = Policies::load(&fixture("policies-good.csv")).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p.rows[0].line, 4, "a comment and a blank line before it");
        assert_eq!(p.rows[1].provider, "Google Cloud (Compute Engine)");
        assert_eq!(p.rows[1].line, 5);
        assert_eq!(p.rows[0].ports, vec![25, 465]);
        assert!(p.covers(&p.rows[0], Direction::Outbound, 465, true));
        assert!(!p.covers(&p.rows[0], Direction::Outbound, 587, true));
        assert_eq!(p.rows[0].summary(), "outbound 25 465 ipv4 ipv6: blocked (all cloud servers)");
    }

    #[test]
    fn comment_lines_keep_line_numbers_and_quoted_fields() {
        let h = COLUMNS.join(",");
        let row = |p: &str, notes: &str| format!("{p},,AS1,outbound,25,ipv4,,blocked,,,https://example.org/x,T,2026-12-04,{notes}");
        let text = format!(
            "# a comment with a \" quote\n{h}\n\r\n{}\n# between\n\n{}\n{}\n",
            row("A", "\"two\n# not a comment\nlines\""),
            row("B", "x"),
            row("C", "x").replace("AS1", "ASX")
        );
        let e = Policies::load_from(Path::new("mem.csv"), text.as_bytes()).unwrap_err().to_string();
        assert!(e.starts_with("mem.csv:10: bad ASN `ASX`"), "{e}");
        let ok = text.replace("ASX", "AS3");
        let p = Policies::load_from(Path::new("mem.csv"), ok.as_bytes()).unwrap();
        assert_eq!(p.rows.iter().map(|r| r.line).collect::<Vec<_>>(), vec![4, 9, 10]);
        assert_eq!(p.rows[0].notes, "two\n# not a comment\nlines");
        let bad = b"provider\n\xff\n";
        let e = Policies::load_from(Path::new("bin.csv"), &bad[..]).unwrap_err().to_string();
        assert!(e.starts_with("bin.csv:2: not valid UTF-8"), "{e}");
    }

    #[test]
    fn dates() {
        for d in ["2024-02-29", "2000-02-29", "2017-11-15", "2026-12-31"] {
            assert!(valid_date(d), "{d}");
        }
        for d in ["2023-02-29", "1900-02-29", "2026-13-01", "2026-00-10", "2026-1-01", "26-01-01", "2026/01/01", "2026-01-32", ""] {
            assert!(!valid_date(d), "{d}");
        }
        assert!(http_url("https://lab.example/policies/x"));
        assert!(!http_url("ftp://example.org/x"));
        assert!(!http_url("https:///x"));
        assert!(!http_url("https://a b"));
        assert_eq!(parse_asn("AS16509"), Some(16509));
        assert_eq!(parse_asn("as4294967295"), Some(u32::MAX));
        assert_eq!(parse_asn("AS4294967296"), None);
        assert_eq!(parse_asn("AS-1"), None);
    }
}
