//! Providers across crawls: one row per provider, family and crawl for port 25, and the
//! verdict changes between consecutive crawls ("started blocking between A and B"). A
//! provider is compared with itself as seen from the same vantage: a change of vantage (another
//! path, another scan detector's view) is not a change of policy.

use crate::aggregate::Row;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize)]
pub struct TrendRow {
    pub crawl_date: String,
    pub crawl_id: String,
    pub vantage: String,
    pub provider: String,
    pub org_id: String,
    pub family: &'static str,
    pub informative: u64,
    pub filtered: u64,
    pub rate: Option<f64>,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    pub verdict: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct Change {
    pub provider: String,
    pub vantage: String,
    pub family: &'static str,
    pub from_crawl: String,
    pub to_crawl: String,
    pub from: &'static str,
    pub to: &'static str,
    pub text: String,
}

pub struct Trend {
    /// (date, id) oldest first.
    pub crawls: Vec<(String, String)>,
    pub rows: Vec<TrendRow>,
    pub changes: Vec<Change>,
}

impl Trend {
    /// One crawl's trend rows (inbound port 25), made as soon as the crawl is analysed: a year
    /// of crawls then holds a year of these small rows, never a year of provider rows (52
    /// crawls of 10 M rows held 420 MB more than one crawl when their provider rows were kept).
    pub fn rows_of((date, id): &(String, String), prov: &[Row]) -> Vec<TrendRow> {
        prov.iter()
            .filter(|r| r.port == 25 && r.direction == "inbound")
            .map(|r| TrendRow {
                crawl_date: date.clone(),
                crawl_id: id.clone(),
                vantage: r.vantage.clone(),
                provider: r.provider.clone(),
                org_id: r.org_id.clone(),
                family: r.family,
                informative: r.informative,
                filtered: r.filtered,
                rate: r.rate,
                ci_low: r.ci_low,
                ci_high: r.ci_high,
                verdict: r.verdict,
            })
            .collect()
    }

    #[cfg(test)]
    pub fn build(per_crawl: Vec<((String, String), Vec<Row>)>) -> Trend {
        let crawls: Vec<(String, String)> = per_crawl.iter().map(|(c, _)| c.clone()).collect();
        let rows = per_crawl.iter().flat_map(|(c, prov)| Trend::rows_of(c, prov)).collect();
        Trend::from_rows(crawls, rows)
    }

    /// The trend of crawls (oldest first) from their rows (`rows_of`).
    pub fn from_rows(crawls: Vec<(String, String)>, rows: Vec<TrendRow>) -> Trend {
        // Compare each provider's verdicts between consecutive crawls with enough data.
        let mut series: BTreeMap<(String, &'static str, String), Vec<&TrendRow>> = BTreeMap::new();
        for r in &rows {
            series.entry((r.org_id.clone(), r.family, r.vantage.clone())).or_default().push(r);
        }
        let mut changes = Vec::new();
        for ((_, family, vantage), s) in &series {
            // A banned vantage saw nothing: neither the verdict before nor after it.
            let known: Vec<&&TrendRow> = s.iter().filter(|r| r.verdict != "insufficient" && !crate::aggregate::withheld(r.verdict)).collect();
            for w in known.windows(2) {
                let (a, b) = (w[0], w[1]);
                if a.verdict == b.verdict {
                    continue;
                }
                let what = match (a.verdict, b.verdict) {
                    (_, "blocks") => "started blocking".to_string(),
                    ("blocks", _) => format!("stopped blocking (now {})", b.verdict),
                    (x, y) => format!("changed from {x} to {y}"),
                };
                changes.push(Change {
                    provider: b.provider.clone(),
                    vantage: vantage.clone(),
                    family,
                    from_crawl: format!("{} {}", a.crawl_date, a.crawl_id),
                    to_crawl: format!("{} {}", b.crawl_date, b.crawl_id),
                    from: a.verdict,
                    to: b.verdict,
                    text: format!("{what} between {} ({}) and {} ({}), seen from vantage {vantage}", a.crawl_date, a.crawl_id, b.crawl_date, b.crawl_id),
                });
            }
        }
        Trend { crawls, rows, changes }
    }

    pub fn chart_lines(&self) -> Vec<(String, Vec<Option<f64>>)> {
        let several = self.rows.iter().any(|r| r.vantage != self.rows[0].vantage);
        let mut by: BTreeMap<String, Vec<Option<f64>>> = BTreeMap::new();
        for r in self.rows.iter().filter(|r| r.family == "ipv4") {
            let i = self.crawls.iter().position(|c| c.0 == r.crawl_date && c.1 == r.crawl_id).unwrap();
            let label = if several { format!("{} @ {}", r.provider, r.vantage) } else { r.provider.clone() };
            let v = by.entry(label).or_insert_with(|| vec![None; self.crawls.len()]);
            v[i] = if r.verdict == "insufficient" { None } else { r.rate };
        }
        by.into_iter().filter(|(_, v)| v.iter().any(|x| x.is_some())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(vantage: &str, verdict: &'static str) -> Row {
        Row { provider: "P".into(), org_id: "ORG-P".into(), family: "ipv4", port: 25, direction: "inbound", vantage: vantage.into(), verdict, informative: 40, rate: Some(if verdict == "blocks" { 1.0 } else { 0.0 }), ..Default::default() }
    }

    fn crawl(n: u32, rows: Vec<Row>) -> ((String, String), Vec<Row>) {
        ((format!("2026-11-0{n}"), format!("c{n}")), rows)
    }

    #[test]
    fn a_change_of_vantage_or_a_ban_is_not_a_change_of_policy() {
        let t = Trend::build(vec![
            crawl(1, vec![row("a", "open")]),
            crawl(2, vec![row("b", "blocks")]),
            crawl(3, vec![row("a", "vantage-banned"), row("b", "blocks")]),
            crawl(4, vec![row("a", "open")]),
        ]);
        assert!(t.changes.is_empty(), "{:?}", t.changes.iter().map(|c| &c.text).collect::<Vec<_>>());
        let t = Trend::build(vec![crawl(1, vec![row("a", "open"), row("b", "blocks")]), crawl(2, vec![row("a", "vantage-banned")]), crawl(3, vec![row("a", "blocks")])]);
        assert_eq!(t.changes.len(), 1);
        assert_eq!((t.changes[0].vantage.as_str(), t.changes[0].from_crawl.as_str(), t.changes[0].to), ("a", "2026-11-01 c1", "blocks"));
        assert!(t.changes[0].text.starts_with("started blocking") && t.changes[0].text.contains("vantage a"));
        assert_eq!(t.chart_lines().len(), 2, "one line per provider and vantage");
    }
}
