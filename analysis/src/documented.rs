//! What providers say beside what we measure. Providers publish their port-25 policies
//! (`datasets/policies/documented-policies.csv`, or `--policies FILE`), and those documents are
//! the only ground truth the real Internet offers. Each provider row gets the documented policy
//! of its direction, port and family (`documented`), and every documented policy is compared
//! with what the methods measured — an agreement, a disagreement with its likely reading, or
//! not measured. A disagreement is a finding (the policy changed, or is not applied everywhere)
//! or a measurement problem: it is listed, never resolved.
//!
//! The measured verdicts never read this: it is shown, never used as a prior.

use crate::aggregate::Row;
use crate::compare::PORTS;
use datasets::policies::{Action, Direction, Policies, Policy};
use serde::Serialize;
use std::collections::BTreeSet;

/// One documented policy of one provider, family and port, beside the measurements.
#[derive(Debug, Clone, Serialize)]
pub struct Documented {
    pub provider: String,
    pub org_id: String,
    pub family: &'static str,
    pub direction: &'static str,
    pub port: u16,
    /// The action and scope the document states, e.g. `blocked (new accounts)`.
    pub documented: String,
    pub scope: String,
    pub source_url: String,
    pub source_title: String,
    pub source_read: String,
    /// What the methods measured (empty when the method has no row): inbound 25 (scan),
    /// outbound from outside (reflection), outbound from inside (egress).
    pub inbound: String,
    pub reflection: String,
    pub inside: String,
    /// `agree`, `disagree` or `not-measured`.
    pub agreement: &'static str,
    /// The likely reading, in words.
    pub reading: String,
}

fn verdict_of<'a>(rows: &'a [Row], org: &str, method: &str, family: &str, port: u16) -> Option<&'a Row> {
    rows.iter().find(|r| r.org_id == org && r.method == method && r.family == family && r.port == port)
}

/// A verdict that says something (not insufficient, not withheld).
fn decisive(r: Option<&Row>) -> Option<&'static str> {
    r.map(|r| r.verdict).filter(|v| !matches!(*v, "insufficient" | "mixed" | "sink-unreachable") && !crate::aggregate::withheld(v))
}

/// Compare one documented outbound policy with reflection and the vantages inside.
fn judge_outbound(p: &Policy, port: u16, refl: Option<&'static str>, inside: Option<&'static str>) -> (&'static str, String) {
    let scope = if p.scope.is_empty() { String::new() } else { format!(" ({})", p.scope) };
    let restricted = |v: &str| matches!(v, "blocks" | "throttled");
    match p.action {
        Action::Blocked | Action::Throttled => match (inside, refl) {
            (Some(i), r) if restricted(i) => {
                let how = if r == Some("open") { format!("; reflection sees {port} open — the block acts on new connections (stateful), which only a vantage inside sees") } else { String::new() };
                ("agree", format!("the vantages inside are {}{how}", if i == "blocks" { "blocked" } else { i }))
            }
            (Some("open"), _) => ("disagree", format!("documented as {}{scope}, yet the vantages inside connect: the policy does not cover their accounts (a scope such as new accounts only, or lifted for them), or it changed", p.action)),
            (Some(i), _) => ("disagree", format!("documented as {}{scope}; the vantages inside meet something else ({i}): a middlebox instead of, or besides, the block", p.action)),
            (None, Some("blocks")) => ("agree", format!("reflection sees outbound {port} filtered")),
            (None, Some("open")) => (
                "disagree",
                format!("documented as {}{scope}, measured open from outside: reflection sees only stateless filters — a block of new connections (stateful) or a throttle is invisible to it (a vantage inside would tell), or the policy covers only some accounts", p.action),
            ),
            _ => ("not-measured", "no decisive verdict from reflection or from inside".to_string()),
        },
        Action::Allowed => match (inside, refl) {
            (Some("open"), _) | (None, Some("open")) => ("agree", format!("outbound {port} open, as documented")),
            (Some(i), _) | (None, Some(i)) if restricted(i) => {
                ("disagree", format!("documented as allowed{scope}, measured {i}: the policy changed, is not applied everywhere, or the measurement is wrong (check the vantage)"))
            }
            (Some(i), _) => ("disagree", format!("documented as allowed{scope}; the vantages inside meet {i}")),
            _ => ("not-measured", "no decisive verdict from reflection or from inside".to_string()),
        },
        // A reactive policy (blocked after abuse) is open by default.
        Action::BlockedOnAbuse => match inside.or(refl) {
            Some("open") => ("agree", "open, as a reactive policy leaves a network until abuse is seen".to_string()),
            Some(v) => ("agree", format!("{v}: consistent with a block applied after abuse (or another cause)")),
            None => ("not-measured", "no decisive verdict from reflection or from inside".to_string()),
        },
    }
}

fn judge_inbound(p: &Policy, inbound: Option<&'static str>) -> (&'static str, String) {
    match (p.action.restricts_by_default(), inbound) {
        (true, Some("blocks")) | (false, Some("open")) => ("agree", "the SYN scan sees it".to_string()),
        (_, Some(v)) => ("disagree", format!("documented as {}, the SYN scan sees {v}", p.action)),
        (_, None) => ("not-measured", "no decisive inbound verdict".to_string()),
    }
}

/// Every documented policy of a provider in the report, per family and mail port, with what
/// was measured; and each provider row's `documented` cell filled in.
pub fn compare(policies: &Policies, providers: &mut [Row]) -> Vec<Documented> {
    let mut out = Vec::new();
    let orgs: BTreeSet<(String, String, &'static str, String)> = providers.iter().filter(|r| r.level == "provider").map(|r| (r.org_id.clone(), r.provider.clone(), r.family, r.asns.clone())).collect();
    for (org, provider, family, asns) in orgs {
        let asns: Vec<u32> = asns.split_whitespace().filter_map(|a| a.trim_start_matches("AS").parse().ok()).collect();
        let v6 = family == "ipv6";
        for port in PORTS {
            for (dir, name) in [(Direction::Outbound, "outbound"), (Direction::Inbound, "inbound")] {
                let docs = policies.documented(&org, &asns, dir, port, v6);
                if docs.is_empty() {
                    continue;
                }
                let (inb, refl, ins) = (verdict_of(providers, &org, "syn-scan", family, port), verdict_of(providers, &org, "reflection", family, port), verdict_of(providers, &org, "egress", family, port));
                let show = |r: Option<&Row>| r.map(|r| r.verdict.to_string()).unwrap_or_default();
                let (inb_s, refl_s, ins_s) = (show(inb), show(refl), show(ins));
                let (inb, refl, ins) = (decisive(inb), decisive(refl), decisive(ins));
                for p in docs.iter() {
                    let (agreement, reading) = match dir {
                        Direction::Outbound => judge_outbound(p, port, refl, ins),
                        Direction::Inbound => judge_inbound(p, inb),
                    };
                    out.push(Documented {
                        provider: provider.clone(),
                        org_id: org.clone(),
                        family,
                        direction: name,
                        port,
                        documented: if p.scope.is_empty() { p.action.to_string() } else { format!("{} ({})", p.action, p.scope) },
                        scope: p.scope.clone(),
                        source_url: p.source_url.clone(),
                        source_title: p.source_title.clone(),
                        source_read: p.source_read.clone(),
                        inbound: inb_s.clone(),
                        reflection: refl_s.clone(),
                        inside: ins_s.clone(),
                        agreement,
                        reading,
                    });
                }
                let cell = docs.iter().map(|p| if p.scope.is_empty() { p.action.to_string() } else { format!("{} ({})", p.action, p.scope) }).collect::<Vec<_>>().join("; ");
                for r in providers.iter_mut().filter(|r| r.org_id == org && r.family == family && r.port == port && r.direction == name) {
                    r.documented = cell.clone();
                }
            }
        }
    }
    out
}

/// The shipped dataset of documented policies, compiled in: every report shows it unless
/// `--policies` replaces it or `--no-policies` leaves it out.
pub const SHIPPED: &str = include_str!("../../datasets/policies/documented-policies.csv");

#[cfg(test)]
mod tests {
    use super::*;

    fn row(org: &str, method: &'static str, family: &'static str, port: u16, verdict: &'static str) -> Row {
        Row { level: "provider", direction: if method == "syn-scan" { "inbound" } else { "outbound" }, method, provider: org.into(), org_id: org.into(), family, port, verdict, asns: "AS64501".into(), ..Default::default() }
    }

    #[test]
    fn documented_policies_are_compared_with_every_method() {
        let csv = "provider,org_ids,asns,direction,ports,families,scope,action,lifted_by,effective_since,source_url,source_title,source_read,notes
A,ORG-A,,outbound,25,ipv4,all accounts,blocked,,,https://a.example/p,A policy,2026-12-01,
B,ORG-B,,outbound,25,ipv4,new accounts,blocked,,,https://b.example/p,B policy,2026-12-01,
C,ORG-C,,outbound,25,ipv4,,blocked,,,https://c.example/p,C policy,2026-12-01,
C,ORG-C,,outbound,587,ipv4,,allowed,,,https://c.example/p,C policy,2026-12-01,
";
        let pol = Policies::load_from(std::path::Path::new("t.csv"), csv.as_bytes()).unwrap();
        let mut rows = vec![
            // A: a stateful block — reflection open, inside blocked: agree (and say why).
            row("ORG-A", "reflection", "ipv4", 25, "open"),
            row("ORG-A", "egress", "ipv4", 25, "blocks"),
            // B: documented for new accounts, the vantage inside connects: a disagreement.
            row("ORG-B", "reflection", "ipv4", 25, "open"),
            row("ORG-B", "egress", "ipv4", 25, "open"),
            // C: only reflection; 25 open (invisible stateful block?), 587 open as documented.
            row("ORG-C", "reflection", "ipv4", 25, "open"),
            row("ORG-C", "reflection", "ipv4", 587, "open"),
        ];
        let got = compare(&pol, &mut rows);
        let by = |org: &str, port: u16| got.iter().find(|d| d.org_id == org && d.port == port).unwrap();
        assert_eq!(by("ORG-A", 25).agreement, "agree");
        assert!(by("ORG-A", 25).reading.contains("stateful"), "{}", by("ORG-A", 25).reading);
        assert_eq!(by("ORG-B", 25).agreement, "disagree");
        assert!(by("ORG-B", 25).reading.contains("new accounts"), "{}", by("ORG-B", 25).reading);
        assert_eq!(by("ORG-C", 25).agreement, "disagree");
        assert!(by("ORG-C", 25).reading.contains("stateless"));
        assert_eq!(by("ORG-C", 587).agreement, "agree");
        assert_eq!(got.len(), 4);
        assert_eq!(rows[0].documented, "blocked (all accounts)");
        assert_eq!(rows[5].documented, "allowed");
    }

    #[test]
    fn the_shipped_dataset_loads() {
        let p = Policies::load_from(std::path::Path::new("documented-policies.csv"), SHIPPED.as_bytes()).unwrap();
        assert!(p.providers().len() >= 10, "{:?}", p.providers());
    }
}
