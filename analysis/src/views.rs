//! The answer table (every view of a provider side by side), the findings where methods
//! disagree, and the egress section, as Markdown, HTML and the printed one-screen table.

use crate::aggregate::Row;
use crate::compare::{Answer, Comparison};
use crate::egress::{Series, Unmapped};
use std::fmt::Write as _;

pub fn pct(x: Option<f64>) -> String {
    x.map(|v| format!("{:.1} %", v * 100.0)).unwrap_or_else(|| "–".into())
}

pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// What the vantages inside see, said wherever their numbers are shown.
pub const EGRESS_REACH: &str = "Outbound from inside: crawler egress, run by a vantage inside the provider, connects to our sink on 25, 465, 587 (and 2525, 80, 443) in both families, several times; the sink greets first and says what it saw. Each vantage is placed in its provider by its public address (the sink's you= on a control port → routing data → AS → AS2Org). Per provider: `blocks`, `open`, `throttled` (later connections of a series fail), `intercepted` (another server answered), `stripped` (STARTTLS removed), `tls-intercepted` (another certificate) when every vantage saw the same, `mixed` when they disagree; n counts vantages, not hosts.";

/// A verdict with its rate and n (scan and reflection), or with its vantages (inside).
pub fn cell(r: Option<&Row>) -> String {
    match r {
        None => "–".into(),
        Some(r) if r.method == "egress" => {
            let s = if r.informative == 1 { "" } else { "s" };
            let what = if r.verdict == "mixed" { format!("mixed: {}", r.states) } else { r.verdict.to_string() };
            format!("{what} (n={} vantage{s})", r.informative)
        }
        Some(r) if r.informative == 0 => format!("{} (n=0)", r.verdict),
        Some(r) => format!("{} {} (n={})", r.verdict, pct(r.rate), r.informative),
    }
}

fn cells<'a>(a: &Answer<'a>, inside: bool) -> Vec<Option<&'a Row>> {
    let mut c = vec![a.inbound];
    c.extend(a.reflection);
    if inside {
        c.extend(a.inside);
    }
    c
}

pub fn answer_md(md: &mut String, answer: &[Answer], inside: bool) {
    md.push_str("| provider | family | inbound 25 (scan) | outbound 25 (reflection) | outbound 465 (reflection) | outbound 587 (reflection) |");
    if inside {
        md.push_str(" outbound 25 (inside) | outbound 465 (inside) | outbound 587 (inside) | reflection vs inside |");
    }
    md.push_str(" documented (outbound) |");
    md.push_str(if inside { "\n|---|---|---|---|---|---|---|---|---|---|---|\n" } else { "\n|---|---|---|---|---|---|---|\n" });
    for a in answer {
        let _ = write!(md, "| {} | {} |", a.provider, a.family);
        for c in cells(a, inside) {
            let _ = write!(md, " {} |", cell(c));
        }
        if inside {
            let _ = write!(md, " {} |", a.methods);
        }
        let _ = write!(md, " {} |", a.documented);
        md.push('\n');
    }
}

pub fn answer_html(html: &mut String, answer: &[Answer], inside: bool) {
    html.push_str("<table id=\"answer\"><thead><tr><th>provider</th><th>family</th><th>inbound 25<br>(SYN scan)</th><th>outbound 25<br>(reflection)</th><th>outbound 465<br>(reflection)</th><th>outbound 587<br>(reflection)</th>");
    if inside {
        html.push_str("<th>outbound 25<br>(inside)</th><th>outbound 465<br>(inside)</th><th>outbound 587<br>(inside)</th><th>reflection vs inside</th>");
    }
    html.push_str("<th>documented<br>(outbound)</th></tr></thead><tbody>");
    for a in answer {
        let _ = write!(html, "<tr><td>{}</td><td>{}</td>", esc(&a.provider), a.family);
        for r in cells(a, inside) {
            let _ = write!(html, "<td class=\"v-{}\">{}</td>", r.map_or("none", |r| r.verdict), esc(&cell(r)));
        }
        if inside {
            let class = if a.methods.starts_with("differ") { "differ" } else { "agree" };
            let _ = write!(html, "<td class=\"m-{class}\">{}</td>", esc(&a.methods));
        }
        let _ = write!(html, "<td class=\"documented\">{}</td>", esc(&a.documented));
        html.push_str("</tr>");
    }
    html.push_str("</tbody></table>");
}

/// The disagreements between reflection and the vantages inside, as a list.
pub fn findings_md(md: &mut String, cmp: &[Comparison]) {
    let differ: Vec<&Comparison> = cmp.iter().filter(|c| !c.agree).collect();
    let _ = writeln!(md, "{} of {} provider, family and port comparisons agree.\n", cmp.len() - differ.len(), cmp.len());
    for c in differ {
        let _ = writeln!(md, "- **{}** ({}, port {}): {} (reflection: {}, n={} hosts; inside: {}, n={} vantage(s)).", c.provider, c.family, c.port, c.finding, c.reflection, c.reflection_informative, c.inside, c.vantages);
    }
}

pub fn findings_html(html: &mut String, cmp: &[Comparison]) {
    let differ: Vec<&Comparison> = cmp.iter().filter(|c| !c.agree).collect();
    let _ = write!(html, "<h2>Where the methods disagree</h2><div id=\"findings\"><p>{} of {} provider, family and port comparisons of reflection with the vantages inside agree.</p><ul>", cmp.len() - differ.len(), cmp.len());
    for c in differ {
        let _ = write!(html, "<li><b>{}</b> ({}, port {}): {} (reflection: {}, n={} hosts; inside: {}, n={} vantage(s)).</li>", esc(&c.provider), c.family, c.port, esc(&c.finding), c.reflection, c.reflection_informative, c.inside, c.vantages);
    }
    html.push_str("</ul></div>");
}

pub fn vantages_md(md: &mut String, series: &[Series], unmapped: &[Unmapped]) {
    md.push_str("| vantage | family | address | provider | AS | port | sink | attempts | verdict | mechanism | attempts by verdict | evidence |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for s in series {
        let _ = writeln!(md, "| {} | {} | {} | {} | AS{} | {} | {} | {} | {} | {} | {} | {} |", s.vantage, s.family, s.address, s.provider, s.asn, s.port, s.sinks, s.attempts, s.verdict, s.mechanism, s.attempt_verdicts, s.evidence);
    }
    for u in unmapped {
        let _ = writeln!(md, "\nNot placed in a provider: {} ({}): {}.", u.vantage, u.family, u.reason);
    }
}

pub fn vantages_html(html: &mut String, series: &[Series], unmapped: &[Unmapped]) {
    html.push_str("<table id=\"egress-vantages\"><thead><tr><th>vantage</th><th>family</th><th>address</th><th>provider</th><th>AS</th><th>port</th><th>sink</th><th>attempts</th><th>verdict</th><th>mechanism</th><th>attempts by verdict</th><th>evidence</th></tr></thead><tbody>");
    for s in series {
        let _ = write!(
            html,
            "<tr class=\"v-{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>AS{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            if s.verdict == "blocked" { "blocks" } else { s.verdict },
            esc(&s.vantage), s.family, esc(&s.address), esc(&s.provider), s.asn, s.port, esc(&s.sinks), s.attempts, s.verdict, s.mechanism, esc(&s.attempt_verdicts), esc(&s.evidence)
        );
    }
    html.push_str("</tbody></table>");
    for u in unmapped {
        let _ = write!(html, "<p>Not placed in a provider: {} ({}): {}.</p>", esc(&u.vantage), u.family, esc(&u.reason));
    }
}

/// The printed one-screen table: per provider and family, inbound 25 beside outbound
/// 25 / 465 / 587 from outside and, with egress data, from inside.
pub fn print_table(answer: &[Answer], inside: bool) {
    let short = |r: Option<&Row>| match r {
        None => "–".to_string(),
        Some(r) if r.method == "egress" => format!("{} ({}v)", r.verdict, r.informative),
        Some(r) => format!("{} {}/{}", r.verdict, r.filtered, r.informative),
    };
    let mut head = format!("{:<28} {:<3} {:<18} {:<18} {:<18} {:<18}", "provider", "fam", "inbound 25 (scan)", "out 25 (reflect.)", "out 465 (reflect.)", "out 587 (reflect.)");
    if inside {
        let _ = write!(head, " {:<20} {:<20} {:<20} {}", "out 25 (inside)", "out 465 (inside)", "out 587 (inside)", "reflect. vs inside");
    }
    println!("{head}");
    for a in answer {
        let fam = if a.family == "ipv4" { "v4" } else { "v6" };
        let mut line = format!("{:<28} {fam:<3}", a.provider.chars().take(28).collect::<String>());
        for r in [a.inbound, a.reflection[0], a.reflection[1], a.reflection[2]] {
            let _ = write!(line, " {:<18}", short(r));
        }
        if inside {
            for r in a.inside {
                let _ = write!(line, " {:<20}", short(r));
            }
            let _ = write!(line, " {}", a.methods);
        }
        println!("{}", line.trim_end());
    }
}

/// Documented policies beside the measurements: agreements counted, each disagreement with its
/// likely reading, and every comparison in a table with its source.
pub fn documented_md(md: &mut String, docs: &[crate::documented::Documented]) {
    let differ: Vec<&crate::documented::Documented> = docs.iter().filter(|d| d.agreement == "disagree").collect();
    let agree = docs.iter().filter(|d| d.agreement == "agree").count();
    let _ = writeln!(md, "{agree} of {} documented policies (provider, family, port) agree with what was measured, {} disagree, {} were not measured. Documents are shown, never used by the verdicts.\n", docs.len(), differ.len(), docs.len() - agree - differ.len());
    for d in &differ {
        let _ = writeln!(md, "- **{}** ({}, {} {}): documented {} — {} (reflection: {}; inside: {}) [{}]({}), read {}.", d.provider, d.family, d.direction, d.port, d.documented, d.reading, or_dash(&d.reflection), or_dash(&d.inside), d.source_title, d.source_url, d.source_read);
    }
    md.push_str("\n| provider | family | direction | port | documented | inbound | reflection | inside | agreement | reading | source (read) |\n|---|---|---|---|---|---|---|---|---|---|---|\n");
    for d in docs {
        let _ = writeln!(md, "| {} | {} | {} | {} | {} | {} | {} | {} | **{}** | {} | [{}]({}) ({}) |", d.provider, d.family, d.direction, d.port, d.documented, or_dash(&d.inbound), or_dash(&d.reflection), or_dash(&d.inside), d.agreement, d.reading, d.source_title, d.source_url, d.source_read);
    }
}

pub fn documented_html(html: &mut String, docs: &[crate::documented::Documented]) {
    let differ = docs.iter().filter(|d| d.agreement == "disagree").count();
    let agree = docs.iter().filter(|d| d.agreement == "agree").count();
    let _ = write!(html, "<h2>Documented vs measured</h2><div id=\"documented\"><p>{agree} of {} documented policies (provider, family, port) agree with what was measured, {differ} disagree, {} were not measured. Documents are shown, never used by the verdicts.</p>", docs.len(), docs.len() - agree - differ);
    html.push_str("<table id=\"documented-table\"><thead><tr><th>provider</th><th>family</th><th>direction</th><th>port</th><th>documented</th><th>inbound</th><th>reflection</th><th>inside</th><th>agreement</th><th>reading</th><th>source (read)</th></tr></thead><tbody>");
    for d in docs {
        let _ = write!(
            html,
            "<tr class=\"a-{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><a href=\"{}\">{}</a> ({})</td></tr>",
            if d.agreement == "disagree" { "differ" } else { d.agreement },
            esc(&d.provider), d.family, d.direction, d.port, esc(&d.documented), esc(or_dash(&d.inbound)), esc(or_dash(&d.reflection)), esc(or_dash(&d.inside)), d.agreement, esc(&d.reading), esc(&d.source_url), esc(&d.source_title), esc(&d.source_read)
        );
    }
    html.push_str("</tbody></table></div>");
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() { "–" } else { s }
}
