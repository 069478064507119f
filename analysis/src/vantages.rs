//! Several vantages, one crawl date: each provider's verdict from each vantage, and whether
//! they agree. Researchers crawl from two or more vantages to tell a provider's filtering (every
//! vantage sees it) from something on one vantage's own path (a transit filter, a scan ban, a
//! blackholed route: only that vantage sees it). Rows of different vantages are compared, never
//! summed: their samples overlap and their paths differ.

use crate::aggregate::Row;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize)]
pub struct VantageRow {
    pub provider: String,
    pub org_id: String,
    pub family: &'static str,
    pub direction: &'static str,
    pub method: &'static str,
    pub port: u16,
    /// `vantage=verdict (filtered/informative)`, per vantage, `; `-separated.
    pub verdicts: String,
    /// `agree`, `path-specific` (blocks towards some vantages, open towards others), `differ`
    /// (other disagreements, e.g. mixed vs open), `vantage-banned` (a vantage was banned, the
    /// others agree or are too few), or `not-comparable` (fewer than two vantages with data).
    pub agreement: &'static str,
    /// The vantages that see the provider blocking when the others do not.
    pub blocked_from: String,
    pub note: String,
}

type Key = (String, &'static str, &'static str, &'static str, u16);

/// Compare the provider rows of every vantage (`per_vantage`: (vantage, rows)).
pub fn compare(per_vantage: &[(String, Vec<Row>)]) -> Vec<VantageRow> {
    let mut by: BTreeMap<Key, Vec<(&str, &Row)>> = BTreeMap::new();
    for (v, rows) in per_vantage {
        for r in rows.iter().filter(|r| r.method != "egress") {
            by.entry((r.org_id.clone(), r.family, r.direction, r.method, r.port)).or_default().push((v, r));
        }
    }
    let mut out = Vec::new();
    for ((org_id, family, direction, method, port), seen) in by {
        let verdicts = seen.iter().map(|(v, r)| format!("{v}={} ({}/{})", r.verdict, r.filtered, r.informative)).collect::<Vec<_>>().join("; ");
        let banned: Vec<&str> = seen.iter().filter(|(_, r)| r.verdict == "vantage-banned").map(|(v, _)| *v).collect();
        let known: Vec<&(&str, &Row)> = seen.iter().filter(|(_, r)| r.verdict != "insufficient" && !crate::aggregate::withheld(r.verdict)).collect();
        let blocking: Vec<&str> = known.iter().filter(|(_, r)| r.verdict == "blocks").map(|(v, _)| *v).collect();
        let open = known.iter().filter(|(_, r)| r.verdict == "open").count();
        let (agreement, note) = if known.len() >= 2 && known.iter().all(|(_, r)| r.verdict == known[0].1.verdict) {
            ("agree", String::new())
        } else if !blocking.is_empty() && open > 0 {
            (
                "path-specific",
                format!(
                    "blocks towards {} only, open towards {} other vantage(s): a filter on the path from {} — or a provider filtering by source (cloud or residential ranges) — not a policy towards everyone",
                    blocking.join(", "),
                    open,
                    if blocking.len() == 1 { "that vantage" } else { "those vantages" }
                ),
            )
        } else if known.len() >= 2 {
            ("differ", "the vantages' verdicts differ (not blocks against open)".to_string())
        } else if !banned.is_empty() {
            ("vantage-banned", format!("{} banned by the provider's scan detector: nothing to compare", banned.join(", ")))
        } else {
            ("not-comparable", "fewer than two vantages with enough informative hosts".to_string())
        };
        let mut note = note;
        if !banned.is_empty() && agreement != "vantage-banned" {
            note = format!("{}{}banned: {}", note, if note.is_empty() { "" } else { "; " }, banned.join(", "));
        }
        let provider = seen[0].1.provider.clone();
        out.push(VantageRow {
            provider,
            org_id,
            family,
            direction,
            method,
            port,
            verdicts,
            agreement,
            blocked_from: if agreement == "path-specific" { blocking.join(",") } else { String::new() },
            note,
        });
    }
    out
}

/// Say on each vantage's rows what the comparison found, so a row read alone is not mistaken
/// for the provider's policy.
pub fn annotate(rows: &mut [Row], cmp: &[VantageRow]) {
    let by: BTreeMap<(&str, &str, &str, &str, u16), &VantageRow> = cmp.iter().map(|c| ((c.org_id.as_str(), c.family, c.direction, c.method, c.port), c)).collect();
    for r in rows {
        if let Some(c) = by.get(&(r.org_id.as_str(), r.family, r.direction, r.method, r.port)) {
            if c.agreement == "path-specific" || c.agreement == "differ" {
                let sep = if r.evidence.is_empty() { "" } else { "; " };
                r.evidence = format!("{}{sep}vantages {}: {}", r.evidence, c.agreement, c.verdicts);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(v: &'static str, filtered: u64) -> Row {
        Row { org_id: "ORG-A".into(), provider: "A".into(), family: "ipv4", direction: "inbound", method: "syn-scan", port: 25, verdict: v, filtered, informative: 50, ..Row::default() }
    }

    #[test]
    fn blocks_towards_one_vantage_only_is_path_specific() {
        let c = compare(&[("main".into(), vec![row("open", 0)]), ("alt".into(), vec![row("blocks", 50)])]);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].agreement, "path-specific");
        assert_eq!(c[0].blocked_from, "alt");
        assert!(c[0].verdicts.contains("main=open (0/50)"), "{}", c[0].verdicts);
    }

    #[test]
    fn same_verdicts_agree_and_a_ban_is_not_a_disagreement() {
        let c = compare(&[("a".into(), vec![row("blocks", 50)]), ("b".into(), vec![row("blocks", 49)])]);
        assert_eq!(c[0].agreement, "agree");
        let c = compare(&[("a".into(), vec![row("blocks", 50)]), ("b".into(), vec![row("vantage-banned", 50)])]);
        assert_eq!(c[0].agreement, "vantage-banned");
        let c = compare(&[("a".into(), vec![row("blocks", 50)])]);
        assert_eq!(c[0].agreement, "not-comparable");
        let c = compare(&[("a".into(), vec![row("mixed", 20)]), ("b".into(), vec![row("open", 0)])]);
        assert_eq!(c[0].agreement, "differ");
    }
}
