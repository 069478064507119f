//! A run's attempts as one Parquet file in `OUT/egress_date=YYYY-MM-DD/vantage=NAME/`,
//! published atomically, and the one-screen summary a volunteer reads.

use super::{Attempt, EgressConfig, Report};
use anyhow::{Context, Result};
use datasets::egress::{egress_schema, outcome, verdict as v, writer_props, EgressBatch, EgressRow};
use datasets::publish::AtomicFile;
use parquet::arrow::ArrowWriter;
use std::fmt::Write;
use std::path::PathBuf;

fn push_row(b: &mut EgressBatch, report: &Report, vantage: &str, a: &Attempt) {
    let sink = a.sink.to_string();
    let responder = a.icmp.and_then(|i| i.responder).map(|r| r.to_string());
    let g = a.greeting.as_ref().filter(|g| g.is_sink);
    // The banner's `you=` (address and port), else the address the EHLO reply greeted.
    let you = g.and_then(|g| g.you).map(|y| y.to_string()).or_else(|| a.ehlo_you.map(|y| y.to_string()));
    b.push(&EgressRow {
        run_id: &report.run_id,
        vantage,
        sink: &sink,
        ip_version: a.family(),
        port: a.port,
        implicit_tls: a.implicit_tls,
        attempt: a.attempt,
        started_at: a.started_us,
        outcome: a.outcome,
        connect_us: a.connect_us,
        local_port: a.local_port,
        icmp_type: a.icmp.map(|i| i.icmp_type),
        icmp_code: a.icmp.map(|i| i.code),
        icmp_responder: responder.as_deref(),
        rst_ttl: None,
        banner: a.banner.as_deref(),
        banner_is_sink: a.greeting.as_ref().map(|g| g.is_sink),
        sink_id: a.sink_id(),
        you_addr: you.as_deref(),
        you_matches: a.you_matches,
        sink_saw_port: g.and_then(|g| g.port),
        starttls_offered: a.starttls_offered,
        tls_done: a.tls_done,
        cert_sha256: a.cert_sha256.as_deref(),
        pin_matches: a.pin_matches,
        banner_masked: a.greeting.is_some().then_some(a.banner_masked),
        starttls_rewritten: a.starttls_rewritten,
        sink_heard: a.sink_heard.as_deref(),
        verdict: a.verdict,
        detail: a.detail.as_deref(),
    });
}

/// Write the run's rows; the file's path.
pub fn write(cfg: &EgressConfig, report: &Report) -> Result<PathBuf> {
    let date = chrono::DateTime::from_timestamp_micros(report.started_us).unwrap_or_default().format("%Y-%m-%d");
    let dir = cfg.out.join(format!("egress_date={date}")).join(format!("vantage={}", cfg.vantage));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let dest = dir.join(format!("part-{}-{:08x}.parquet", report.run_id, rand::random::<u32>()));
    let mut b = EgressBatch::with_capacity(report.rows.len());
    for a in &report.rows {
        push_row(&mut b, report, &cfg.vantage, a);
    }
    let public: Vec<String> = report.public.iter().map(|(f, (ip, port))| format!("v{f}={ip} (port {port})")).collect();
    let kv = vec![
        ("software".to_string(), crate::SOFTWARE.to_string()),
        ("run_id".to_string(), report.run_id.clone()),
        ("vantage".to_string(), cfg.vantage.clone()),
        ("sinks".to_string(), cfg.sinks.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(",")),
        ("pin".to_string(), report.pins.join(",")),
        ("pin_source".to_string(), report.pin_source.clone()),
        ("public_addresses".to_string(), public.join(" ")),
    ];
    let mut w = ArrowWriter::try_new(AtomicFile::create(&dest)?, egress_schema(), Some(writer_props(kv, report.rows.len().max(1))))?;
    w.write(&b.finish())?;
    w.into_inner()?.commit()?;
    Ok(dest)
}

/// What one (port, family) series amounts to: its most telling verdict, with counts when the
/// attempts disagree, and the evidence in a few words.
fn series_phrase(rows: &[&Attempt]) -> String {
    // The most common verdict among the attempts that tell something about the port; the
    // others are named with their counts.
    let telling = |x: &str| !matches!(x, v::OUTAGE | v::SINK_UNREACHABLE | v::NO_ROUTE | v::ERROR);
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for a in rows {
        match counts.iter_mut().find(|c| c.0 == a.verdict) {
            Some(c) => c.1 += 1,
            None => counts.push((a.verdict, 1)),
        }
    }
    let top = counts.iter().filter(|c| telling(c.0)).max_by_key(|c| c.1).or_else(|| counts.iter().max_by_key(|c| c.1)).map_or(v::ERROR, |c| c.0);
    let n = rows.iter().filter(|a| a.verdict == top).count();
    let first = rows.iter().find(|a| a.verdict == top).copied();
    let why = first.map(evidence).unwrap_or_default();
    if n == rows.len() {
        return format!("{top}{why}");
    }
    let others: Vec<String> = counts.iter().filter(|c| c.0 != top).map(|c| format!("{} {}", c.1, c.0)).collect();
    format!("{top} in {n} of {} attempts{why}; {}", rows.len(), others.join(", "))
}

fn evidence(a: &Attempt) -> String {
    let s = match a.verdict {
        v::BLOCKED | v::THROTTLED => match (a.outcome, a.icmp) {
            (outcome::REFUSED, _) => "refused by a RST".to_string(),
            (outcome::TIMEOUT, _) => "no answer".to_string(),
            (_, Some(i)) => format!("ICMP type {} code {}{}", i.icmp_type, i.code, i.responder.map(|r| format!(" from {r}")).unwrap_or_default()),
            _ => a.outcome.to_string(),
        },
        v::INTERCEPTED => match (&a.greeting, &a.banner) {
            (Some(g), _) if g.is_sink => "the sink was reached on another port than dialled: redirected".to_string(),
            (_, Some(b)) => format!("another server answered: {:?}", b.chars().take(60).collect::<String>()),
            _ => "something accepted the connection but did not speak as the sink".to_string(),
        },
        v::TLS_INTERCEPTED => "the certificate is not the sink's".to_string(),
        v::STRIPPED => super::verdict::explain(a).unwrap_or_else(|| "STARTTLS removed from the EHLO reply".to_string()),
        v::OUTAGE => "the control ports failed in the same round: the network or the sink was gone".to_string(),
        v::SINK_UNREACHABLE => "no port of this sink address connected: the address or its path is unreachable, not the port".to_string(),
        v::TLS_FAILED => "the sink answered but TLS did not complete".to_string(),
        v::NO_ROUTE => "this machine has no route for the family".to_string(),
        v::ERROR => a.detail.clone().unwrap_or_default(),
        _ => return String::new(),
    };
    if a.verdict == v::THROTTLED { format!(" (attempt {} failed after earlier ones connected: {s})", a.attempt + 1) } else { format!(" ({s})") }
}

/// The one-screen summary, e.g. "port 25: blocked (refused by a RST) on IPv4 and IPv6".
pub fn summary(cfg: &EgressConfig, r: &Report) -> String {
    let mut s = String::new();
    let sinks: Vec<String> = cfg.sinks.iter().map(|x| x.to_string()).collect();
    let _ = writeln!(s, "egress from vantage {} to sink {} — {} attempt(s) per port, run {}", cfg.vantage, sinks.join(", "), cfg.repeat, r.run_id);
    for f in [4u8, 6] {
        if cfg.sinks.iter().any(|x| (x.is_ipv4() && f == 4) || (x.is_ipv6() && f == 6)) {
            let p = r.public.get(&f).map(|(ip, port)| format!("{ip} (as the sink saw it on port {port})")).unwrap_or_else(|| "not learned (no control port reached the sink)".into());
            let _ = writeln!(s, "public IPv{f} address: {p}");
        }
    }
    let _ = writeln!(s, "sink certificate pin from {}", r.pin_source);
    for &port in &cfg.ports {
        let mut parts: Vec<(String, Vec<&str>)> = Vec::new();
        for (f, name) in [(4u8, "IPv4"), (6, "IPv6")] {
            let rows: Vec<&Attempt> = r.rows.iter().filter(|a| a.port == port && a.family() == f).collect();
            if rows.is_empty() {
                continue;
            }
            let phrase = series_phrase(&rows);
            match parts.iter_mut().find(|(p, _)| *p == phrase) {
                Some((_, fams)) => fams.push(name),
                None => parts.push((phrase, vec![name])),
            }
        }
        let text: Vec<String> = parts.iter().map(|(p, fams)| format!("{p} on {}", fams.join(" and "))).collect();
        let _ = writeln!(s, "port {port}: {}", text.join("; "));
    }
    s
}
