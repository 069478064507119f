//! The three views of one provider side by side — inbound 25 (SYN scan), outbound 25/465/587
//! from outside (source-port reflection), outbound 25/465/587 from inside (egress vantages) —
//! and where reflection and the vantages inside disagree. Disagreement is a finding, not an
//! error: reflection sees only stateless filters on reply traffic, so a provider that blocks
//! or throttles *new* connections, or proxies them, reads open from outside.

use crate::aggregate::Row;
use hashbrown::HashMap;
use serde::Serialize;

pub const PORTS: [u16; 3] = [25, 465, 587];

/// The provider rows found by what they are about, each key's first row as a scan of the rows
/// would find it: looking rows up by scanning them, once per provider, was quadratic in the
/// number of providers (minutes at 13,000 ASes).
pub struct Index<'a> {
    /// (provider, method, family, port)
    method: HashMap<(&'a str, &'static str, &'static str, u16), &'a Row>,
    /// (provider, direction, family, port)
    direction: HashMap<(&'a str, &'static str, &'static str, u16), &'a Row>,
    /// (provider, family, port): the first outbound row that documents a policy.
    documented: HashMap<(&'a str, &'static str, u16), &'a Row>,
}

impl<'a> Index<'a> {
    pub fn new(rows: &'a [Row]) -> Index<'a> {
        let mut x = Index { method: HashMap::new(), direction: HashMap::new(), documented: HashMap::new() };
        for r in rows {
            x.method.entry((r.provider.as_str(), r.method, r.family, r.port)).or_insert(r);
            x.direction.entry((r.provider.as_str(), r.direction, r.family, r.port)).or_insert(r);
            if r.direction == "outbound" && !r.documented.is_empty() {
                x.documented.entry((r.provider.as_str(), r.family, r.port)).or_insert(r);
            }
        }
        x
    }
    /// The provider row of a method, family and port.
    pub fn find(&self, provider: &str, method: &str, family: &str, port: u16) -> Option<&'a Row> {
        self.method.get(&(provider, method, family, port)).copied()
    }
}

/// One line of the answer table: a provider and family, each view's row per port.
pub struct Answer<'a> {
    pub provider: String,
    pub family: &'static str,
    pub inbound: Option<&'a Row>,
    pub reflection: [Option<&'a Row>; 3],
    pub inside: [Option<&'a Row>; 3],
    /// Reflection vs inside: `agree`, `differ on 25, 465`, or `–` when nothing compares.
    pub methods: String,
    /// What the provider documents for outbound 25, 465, 587 in this family (`–`: nothing).
    pub documented: String,
}

/// Reflection and the vantages inside on one provider, family and port, both decisive.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub provider: String,
    pub org_id: String,
    pub family: &'static str,
    pub port: u16,
    pub reflection: &'static str,
    pub reflection_informative: u64,
    pub inside: &'static str,
    pub vantages: u64,
    pub agree: bool,
    pub finding: String,
}

/// Does the inside verdict match reflection's? Reflection only says filtered (`blocks`) or
/// not (`open`); inside, anything but a plain `open` is some filter or middlebox.
fn finding(port: u16, reflection: &str, inside: &str) -> (bool, String) {
    match (reflection, inside) {
        ("blocks", "blocks") => (true, format!("outbound {port} blocked, seen from outside and from inside")),
        ("open", "open") => (true, format!("outbound {port} open, seen from outside and from inside")),
        ("open", "blocks") => (false, format!("reflection sees outbound {port} open, the vantages inside are blocked: a stateful filter on new connections, which reflection cannot see")),
        ("open", "throttled") => (false, format!("reflection sees outbound {port} open, the vantages inside are throttled: a rate limit on new connections, which reflection cannot see")),
        ("open", x) => (false, format!("reflection sees outbound {port} open, the vantages inside {}: a middlebox that answers or rewrites their connections, which reflection cannot see", met(x))),
        ("blocks", "open") => (false, format!("reflection sees outbound {port} filtered, yet the vantages inside connect: a filter on some hosts' traffic only, or vantages exempt from it (allow-listed accounts)")),
        (_, x) => (false, format!("reflection sees outbound {port} filtered, the vantages inside {}", met(x))),
    }
}

/// What the vantages inside met, as the end of a sentence.
fn met(inside: &str) -> String {
    match inside {
        "intercepted" => "are answered by another server (intercepted)".into(),
        "stripped" => "get no STARTTLS (stripped)".into(),
        "tls-intercepted" => "are shown another certificate (tls-intercepted)".into(),
        "tls-failed" => "reach the sink but TLS fails (tls-failed)".into(),
        "throttled" => "are throttled".into(),
        x => format!("see {x}"),
    }
}

/// Every provider, family and mail port where reflection and egress both have a decisive
/// verdict (reflection `blocks`/`open`; inside anything but `mixed`/`insufficient`).
pub fn comparisons(rows: &[Row]) -> Vec<Comparison> {
    let decisive_inside = |r: &&Row| r.method == "egress" && !matches!(r.verdict, "mixed" | "insufficient" | "sink-unreachable");
    let index = Index::new(rows);
    rows.iter()
        .filter(decisive_inside)
        .filter_map(|e| {
            let r = index.find(&e.provider, "reflection", e.family, e.port).filter(|r| r.verdict == "blocks" || r.verdict == "open")?;
            let (agree, text) = finding(e.port, r.verdict, e.verdict);
            Some(Comparison {
                provider: e.provider.clone(),
                org_id: e.org_id.clone(),
                family: e.family,
                port: e.port,
                reflection: r.verdict,
                reflection_informative: r.informative,
                inside: e.verdict,
                vantages: e.informative,
                agree,
                finding: text,
            })
        })
        .collect()
}

/// The seed's question per provider and family, every view beside the others.
pub fn answer<'a>(rows: &'a [Row], cmp: &[Comparison]) -> Vec<Answer<'a>> {
    let mut keys: Vec<(&str, &'static str)> = rows.iter().filter(|r| r.port == 25 || r.method == "egress").map(|r| (r.provider.as_str(), r.family)).collect();
    keys.sort();
    keys.dedup();
    let index = Index::new(rows);
    let mut by: HashMap<(&str, &str), Vec<&Comparison>> = HashMap::new();
    for c in cmp {
        by.entry((c.provider.as_str(), c.family)).or_default().push(c);
    }
    keys.into_iter()
        .map(|(p, f)| {
            let mine: &[&Comparison] = by.get(&(p, f)).map_or(&[], |v| v.as_slice());
            let differ: Vec<String> = mine.iter().filter(|c| !c.agree).map(|c| c.port.to_string()).collect();
            let methods = match (mine.is_empty(), differ.is_empty()) {
                (true, _) => "–".to_string(),
                (false, true) => "agree".to_string(),
                (false, false) => format!("differ on {}", differ.join(", ")),
            };
            Answer {
                provider: p.to_string(),
                family: f,
                inbound: index.direction.get(&(p, "inbound", f, 25)).copied(),
                reflection: PORTS.map(|port| index.find(p, "reflection", f, port)),
                inside: PORTS.map(|port| index.find(p, "egress", f, port)),
                methods,
                documented: {
                    let d: Vec<String> = PORTS
                        .iter()
                        .filter_map(|port| index.documented.get(&(p, f, *port)).map(|r| format!("{port}: {}", r.documented)))
                        .collect();
                    if d.is_empty() { "–".to_string() } else { d.join("; ") }
                },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disagreement_names_what_reflection_cannot_see() {
        assert!(finding(25, "blocks", "blocks").0 && finding(587, "open", "open").0);
        let (agree, text) = finding(25, "open", "blocks");
        assert!(!agree && text.contains("stateful"), "{text}");
        assert!(finding(25, "open", "throttled").1.contains("rate limit"));
        assert!(finding(465, "open", "tls-intercepted").1.contains("middlebox"));
        assert!(!finding(25, "blocks", "open").0);
    }
}
