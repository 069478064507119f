//! From what one attempt saw to its verdict, and the series rule for throttling.
//!
//! The order of the checks is the order of evidence: nothing answered (blocked); something
//! other than the sink answered (intercepted); the sink's words came through but its
//! certificate did not (tls-intercepted) or its STARTTLS did not (stripped) — the specific
//! mechanism is named even when the `you=` evidence also shows a proxy; the sink saw another
//! client address or port (intercepted); TLS expected but not done (tls-failed); else open.

use super::Attempt;
use datasets::egress::{outcome, verdict};
use std::collections::HashMap;
use std::net::IpAddr;

/// The verdict of one attempt on its own (throttling needs the series: [`mark_throttled`]).
pub fn decide(a: &Attempt) -> &'static str {
    match a.outcome {
        outcome::ESTABLISHED => {}
        outcome::REFUSED | outcome::ICMP | outcome::TIMEOUT => return verdict::BLOCKED,
        outcome::NO_ROUTE => return verdict::NO_ROUTE,
        _ => return verdict::ERROR,
    }
    let Some(g) = &a.greeting else { return verdict::INTERCEPTED };
    if g.sink_busy {
        return verdict::ERROR;
    }
    if !g.is_sink {
        return verdict::INTERCEPTED;
    }
    if a.pin_matches == Some(false) {
        return verdict::TLS_INTERCEPTED;
    }
    if !a.implicit_tls && a.starttls_offered == Some(false) {
        return verdict::STRIPPED;
    }
    if g.port != Some(a.port) || a.you_matches == Some(false) {
        return verdict::INTERCEPTED;
    }
    if a.tls_done != Some(true) {
        return verdict::TLS_FAILED;
    }
    verdict::OPEN
}

/// A blocked attempt after an earlier attempt of the same (sink, port) series connected is
/// throttled: the k-th connection failing where the first ones went through.
pub fn mark_throttled(rows: &mut [Attempt]) {
    let mut first_up: HashMap<(IpAddr, u16), u16> = HashMap::new();
    for a in rows.iter().filter(|a| a.outcome == outcome::ESTABLISHED) {
        let e = first_up.entry((a.sink, a.port)).or_insert(a.attempt);
        *e = (*e).min(a.attempt);
    }
    for a in rows.iter_mut() {
        if a.verdict == verdict::BLOCKED && first_up.get(&(a.sink, a.port)).is_some_and(|&k| k < a.attempt) {
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
        a.tls_done = Some(true);
        a.pin_matches = Some(true);
        a
    }

    fn failed(sink: &str, port: u16, k: u16, o: &'static str) -> Attempt {
        let mut a = Attempt::new(sink.parse().unwrap(), port, false, k, 0);
        a.outcome = o;
        a
    }

    #[test]
    fn the_kth_failure_after_successes_is_throttled_not_a_block() {
        let mut rows = vec![
            open("192.0.2.1", 25, 0),
            open("192.0.2.1", 25, 1),
            failed("192.0.2.1", 25, 2, outcome::TIMEOUT),
            failed("192.0.2.1", 25, 3, outcome::REFUSED),
            // Another family of the same sink: its own series, blocked from the start.
            failed("2001:db8::1", 25, 0, outcome::REFUSED),
            failed("2001:db8::1", 25, 1, outcome::REFUSED),
            // A failure before the first success is a block, not throttling.
            failed("192.0.2.1", 587, 0, outcome::TIMEOUT),
            open("192.0.2.1", 587, 1),
        ];
        for a in rows.iter_mut() {
            a.verdict = decide(a);
        }
        mark_throttled(&mut rows);
        let got: Vec<&str> = rows.iter().map(|a| a.verdict).collect();
        assert_eq!(got, [verdict::OPEN, verdict::OPEN, verdict::THROTTLED, verdict::THROTTLED, verdict::BLOCKED, verdict::BLOCKED, verdict::BLOCKED, verdict::OPEN]);
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
        assert_eq!(with(&|a| a.you_matches = Some(false)), verdict::INTERCEPTED);
        assert_eq!(with(&|a| a.port = 26), verdict::INTERCEPTED);
        assert_eq!(with(&|a| a.you_matches = None), verdict::OPEN, "an unknown public address is no evidence");
        assert_eq!(with(&|a| a.pin_matches = Some(false)), verdict::TLS_INTERCEPTED);
        assert_eq!(with(&|a| a.pin_matches = None), verdict::OPEN);
        assert_eq!(
            with(&|a| {
                a.starttls_offered = Some(false);
                a.tls_done = None;
                a.you_matches = Some(false);
            }),
            verdict::STRIPPED
        );
        assert_eq!(with(&|a| a.tls_done = Some(false)), verdict::TLS_FAILED);
        assert_eq!(with(&|a| a.outcome = outcome::ICMP), verdict::BLOCKED);
        assert_eq!(with(&|a| a.outcome = outcome::NO_ROUTE), verdict::NO_ROUTE);
    }
}
