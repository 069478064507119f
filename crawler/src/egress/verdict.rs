//! From what one attempt saw to its verdict, then what the run's other attempts say about it.
//!
//! One attempt, in the order of evidence: nothing answered (blocked); TLS with a certificate
//! that is not the sink's (tls-intercepted — on an implicit-TLS port whether or not the inner
//! session reaches the sink); something other than the sink answered (intercepted); the sink
//! answered but its words were altered on the way — banner masked, STARTTLS hidden or
//! rewritten in the EHLO reply, our STARTTLS reaching the sink as something else (stripped);
//! the sink was reached on another port than dialled (intercepted: redirected); TLS expected
//! but not done (tls-failed); else open. The sink seeing another public address than the
//! control ports did is *not* interception: cloud NAT gateways, carrier-grade NAT and web
//! proxies give one machine several addresses, per connection or per port.
//!
//! Then the run: a sink address no port of which ever connected is unreachable from here
//! (sink-unreachable: the address or its path, not the port); a failure in a round whose control
//! ports to the same sink failed too, while they connected in other rounds, is an outage (the
//! network or the sink gone for a while); a failure after earlier attempts of the same series
//! connected, while that round's control ports still connected, is throttling.

use super::Attempt;
use datasets::egress::{outcome, verdict};
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

/// The verdict of one attempt on its own (outages, unreachable sinks and throttling need the
/// run: [`series`]).
pub fn decide(a: &Attempt) -> &'static str {
    match a.outcome {
        outcome::ESTABLISHED => {}
        outcome::REFUSED | outcome::ICMP | outcome::TIMEOUT => return verdict::BLOCKED,
        outcome::NO_ROUTE => return verdict::NO_ROUTE,
        _ => return verdict::ERROR,
    }
    if a.greeting.as_ref().is_some_and(|g| g.sink_busy) {
        return verdict::ERROR;
    }
    // Another certificate: whoever answers inside it, TLS was terminated on the way.
    if a.pin_matches == Some(false) {
        return verdict::TLS_INTERCEPTED;
    }
    if !a.reached_sink() {
        return verdict::INTERCEPTED;
    }
    let rewritten = a.starttls_rewritten == Some(true);
    if a.banner_masked || rewritten || (!a.implicit_tls && a.starttls_offered == Some(false)) {
        return verdict::STRIPPED;
    }
    if a.greeting.as_ref().is_some_and(|g| g.is_sink && g.port != Some(a.port)) {
        return verdict::INTERCEPTED;
    }
    if a.tls_done != Some(true) {
        return verdict::TLS_FAILED;
    }
    verdict::OPEN
}

/// What an attempt's sink-side evidence amounts to, in words (the `detail` of a stripped or
/// NATed attempt).
pub fn explain(a: &Attempt) -> Option<String> {
    let mut what = Vec::new();
    if a.banner_masked {
        what.push("banner masked".to_string());
    }
    if a.starttls_rewritten == Some(true) {
        what.push(match &a.sink_heard {
            Some(h) => format!("STARTTLS rewritten (the sink heard {h})"),
            None => "STARTTLS rewritten to XXXXXXXA in the EHLO reply".to_string(),
        });
    } else if !a.implicit_tls && a.starttls_offered == Some(false) {
        what.push(if a.tls_done == Some(true) { "STARTTLS hidden from the EHLO reply (the command still passed)".to_string() } else { "STARTTLS missing from the EHLO reply".to_string() });
    }
    if a.you_matches == Some(false) {
        what.push("the sink saw another public address than the control ports did (NAT pool or policy NAT: not interception)".to_string());
    }
    (!what.is_empty()).then(|| what.join("; "))
}

/// No connection — or one that a middlebox accepted and then closed without a word (a relaying
/// proxy whose own connection to the sink failed): nothing of the sink reached us.
fn failed(a: &Attempt) -> bool {
    a.verdict == verdict::BLOCKED || (a.verdict == verdict::INTERCEPTED && a.banner.is_none())
}

/// The run's verdicts: sinks unreachable, outages, throttling. `control`: the control ports.
pub fn series(rows: &mut [Attempt], control: &[u16]) {
    let up = |a: &Attempt| a.outcome == outcome::ESTABLISHED;
    let reached: HashSet<IpAddr> = rows.iter().filter(|a| up(a)).map(|a| a.sink).collect();
    // Per sink and round: did a control port connect?
    let mut control_up: HashMap<(IpAddr, u16), bool> = HashMap::new();
    for a in rows.iter().filter(|a| control.contains(&a.port)) {
        *control_up.entry((a.sink, a.attempt)).or_default() |= up(a);
    }
    let controls_work: HashSet<IpAddr> = control_up.iter().filter(|(_, ok)| **ok).map(|((s, _), _)| *s).collect();
    let mut first_up: HashMap<(IpAddr, u16), u16> = HashMap::new();
    for a in rows.iter().filter(|a| up(a)) {
        let e = first_up.entry((a.sink, a.port)).or_insert(a.attempt);
        *e = (*e).min(a.attempt);
    }
    for a in rows.iter_mut() {
        if !failed(a) {
            continue;
        }
        if !reached.contains(&a.sink) {
            a.verdict = verdict::SINK_UNREACHABLE;
        } else if controls_work.contains(&a.sink) && control_up.get(&(a.sink, a.attempt)) == Some(&false) {
            a.verdict = verdict::OUTAGE;
        } else if a.verdict == verdict::BLOCKED && !control.contains(&a.port) && first_up.get(&(a.sink, a.port)).is_some_and(|&k| k < a.attempt) && control_up.get(&(a.sink, a.attempt)) == Some(&true) {
            a.verdict = verdict::THROTTLED;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::wire::parse_greeting;

    fn open(sink: &str, port: u16, k: u16) -> Attempt {
        let mut a = Attempt::new(sink.parse().unwrap(), port, false, k, 0);
        a.outcome = outcome::ESTABLISHED;
        a.greeting = Some(parse_greeting(&format!("220 s ESMTP port25-sink you=198.51.100.1:4000 port={port} id=ab")));
        a.you_matches = Some(true);
        a.starttls_offered = Some(true);
        a.starttls_rewritten = Some(false);
        a.tls_done = Some(true);
        a.pin_matches = Some(true);
        a
    }

    fn failed(sink: &str, port: u16, k: u16, o: &'static str) -> Attempt {
        let mut a = Attempt::new(sink.parse().unwrap(), port, false, k, 0);
        a.outcome = o;
        a
    }

    fn run(mut rows: Vec<Attempt>) -> Vec<&'static str> {
        for a in rows.iter_mut() {
            a.verdict = decide(a);
        }
        series(&mut rows, &[80]);
        rows.iter().map(|a| a.verdict).collect()
    }

    #[test]
    fn the_kth_failure_while_the_controls_work_is_throttled_not_a_block() {
        let s = "192.0.2.1";
        let got = run(vec![
            open(s, 80, 0),
            open(s, 80, 1),
            open(s, 80, 2),
            open(s, 80, 3),
            open(s, 25, 0),
            open(s, 25, 1),
            failed(s, 25, 2, outcome::TIMEOUT),
            failed(s, 25, 3, outcome::REFUSED),
            // A failure before the first success is a block, not throttling.
            failed(s, 587, 0, outcome::TIMEOUT),
            open(s, 587, 1),
        ]);
        assert_eq!(&got[4..], [verdict::OPEN, verdict::OPEN, verdict::THROTTLED, verdict::THROTTLED, verdict::BLOCKED, verdict::OPEN]);
    }

    #[test]
    fn an_outage_hits_the_controls_too_and_is_no_throttle() {
        let s = "192.0.2.1";
        let got = run(vec![
            open(s, 80, 0),
            failed(s, 80, 1, outcome::TIMEOUT),
            open(s, 80, 2),
            open(s, 25, 0),
            failed(s, 25, 1, outcome::TIMEOUT),
            open(s, 25, 2),
            // A relaying proxy on 587 accepts, then closes: its own connection to the sink failed.
            open(s, 587, 0),
            {
                let mut a = open(s, 587, 1);
                a.greeting = None;
                a
            },
        ]);
        assert_eq!(got, [verdict::OPEN, verdict::OUTAGE, verdict::OPEN, verdict::OPEN, verdict::OUTAGE, verdict::OPEN, verdict::OPEN, verdict::OUTAGE]);
    }

    #[test]
    fn a_sink_address_nothing_reaches_is_unreachable_not_every_port_blocked() {
        // The first sink null-routed from here, the second reached: 25 blocked via the second.
        let got = run(vec![
            failed("192.0.2.1", 80, 0, outcome::TIMEOUT),
            failed("192.0.2.1", 25, 0, outcome::TIMEOUT),
            open("192.0.2.17", 80, 0),
            failed("192.0.2.17", 25, 0, outcome::TIMEOUT),
        ]);
        assert_eq!(got, [verdict::SINK_UNREACHABLE, verdict::SINK_UNREACHABLE, verdict::OPEN, verdict::BLOCKED]);
        // Controls blocked for good but the mail port connecting: not an outage.
        let got = run(vec![failed("192.0.2.1", 80, 0, outcome::TIMEOUT), failed("192.0.2.1", 80, 1, outcome::TIMEOUT), open("192.0.2.1", 25, 0), open("192.0.2.1", 25, 1)]);
        assert_eq!(got, [verdict::BLOCKED, verdict::BLOCKED, verdict::OPEN, verdict::OPEN]);
    }

    #[test]
    fn evidence_is_read_in_order() {
        let base = open("192.0.2.1", 25, 0);
        let with = |f: &dyn Fn(&mut Attempt)| {
            let mut a = base.clone();
            f(&mut a);
            decide(&a)
        };
        assert_eq!(decide(&base), verdict::OPEN);
        assert_eq!(with(&|a| a.greeting = Some(parse_greeting("220 mx.isp.example ESMTP Postfix"))), verdict::INTERCEPTED);
        assert_eq!(with(&|a| a.greeting = None), verdict::INTERCEPTED);
        assert_eq!(with(&|a| a.greeting = Some(parse_greeting("421 4.7.0 s port25-sink busy"))), verdict::ERROR);
        // Another public address than on the control ports: a NAT pool, not interception.
        assert_eq!(with(&|a| a.you_matches = Some(false)), verdict::OPEN);
        assert!(explain(&{
            let mut a = base.clone();
            a.you_matches = Some(false);
            a
        })
        .unwrap()
        .contains("NAT"));
        assert_eq!(with(&|a| a.port = 26), verdict::INTERCEPTED, "reached the sink on another port: redirected");
        assert_eq!(with(&|a| a.pin_matches = Some(false)), verdict::TLS_INTERCEPTED);
        assert_eq!(with(&|a| a.pin_matches = None), verdict::OPEN);
        // A terminating TLS proxy on 465: another certificate and not the sink inside.
        assert_eq!(
            with(&|a| {
                a.implicit_tls = true;
                a.pin_matches = Some(false);
                a.greeting = Some(parse_greeting("220 proxy ESMTP"));
            }),
            verdict::TLS_INTERCEPTED
        );
        assert_eq!(
            with(&|a| {
                a.starttls_offered = Some(false);
                a.tls_done = None;
                a.you_matches = Some(false);
            }),
            verdict::STRIPPED
        );
        // Cisco ASA: banner masked, the sink known by its EHLO reply, STARTTLS rewritten.
        assert_eq!(
            with(&|a| {
                a.greeting = Some(parse_greeting("220 *******2****0***"));
                a.banner_masked = true;
                a.ehlo_id = Some("ab".into());
                a.starttls_offered = Some(false);
                a.starttls_rewritten = Some(true);
                a.sink_heard = Some("XXXXXXXX".into());
                a.tls_done = None;
            }),
            verdict::STRIPPED
        );
        assert_eq!(with(&|a| a.tls_done = Some(false)), verdict::TLS_FAILED);
        assert_eq!(with(&|a| a.outcome = outcome::ICMP), verdict::BLOCKED);
        assert_eq!(with(&|a| a.outcome = outcome::NO_ROUTE), verdict::NO_ROUTE);
    }
}
