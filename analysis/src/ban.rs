//! Was the vantage banned? Many networks ban a source that looks like a scanner (portsentry,
//! fail2ban, IPS port-scan signatures): from then on everything the vantage sends them is
//! dropped, so every later probe is silent — port 25 on hosts whose controls answered earlier
//! included — which would read as *blocking*.
//!
//! The crawl visits hosts in a keyed random order, so without a ban a provider's answering
//! hosts are spread over the whole first pass. With a ban, its answers stop at one moment and
//! nothing comes after — not the hosts probed later, not the retries of the silent probes of
//! earlier hosts (they come later still). The test: the provider's last answer of any kind
//! came a fraction `f` into the first pass (of the crawl as a whole, all providers); each of
//! its `A` hosts that answered a first attempt was probed at a uniformly random moment of that
//! pass, so all of them falling before `f` has chance `f^A`. A ban is called when that chance
//! is below `ALPHA` and the rest of the pass held enough of its hosts to matter. Only hosts
//! answered at a first attempt carry a first-pass time (a silent row's `sent_at` is its last
//! attempt, in the final pass), which is why the test counts answering hosts, not silent ones.

use crate::load::Hosts;
use hashbrown::HashMap;
use serde::Serialize;

/// The rest of the first pass after the last answer must have held at least this many of the
/// provider's hosts (expected, from its sample size).
const MIN_SILENT_AFTER: f64 = 10.0;
/// And at least this many hosts must have answered before it (the provider did answer us).
const MIN_ANSWERED_BEFORE: u64 = 3;
/// The chance of answers that early without a ban must be below this (per provider and
/// family: a report has hundreds, so it is small).
const ALPHA: f64 = 1e-4;

#[derive(Debug, Clone, Serialize)]
pub struct Ban {
    /// The provider's last answer (µs since the epoch): the ban came then or just after.
    pub since_us: i64,
    /// How far into the crawl's first pass that was (0–1).
    pub into_pass: f64,
    /// Hosts of the provider (this family) in the crawl, and how many answered a first attempt.
    pub hosts: u64,
    pub answered: u64,
    /// The chance of every answer coming that early without a ban (`into_pass^answered`).
    pub chance: f64,
}

impl Ban {
    pub fn since(&self) -> String {
        chrono::DateTime::from_timestamp_micros(self.since_us).map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)).unwrap_or_default()
    }

    pub fn evidence(&self) -> String {
        format!(
            "{} of {} hosts answered, every answer before {} ({:.0}% into the crawl's first pass); nothing after, retries, controls and closed ports included (chance without a ban {:.1e}): the vantage was banned (a scan detector), not blocked",
            self.answered,
            self.hosts,
            self.since(),
            self.into_pass * 100.0,
            self.chance
        )
    }
}

/// Bans per (organization or `AS<n>`, IPv6?): a ban is per source address, so per family.
pub fn detect(hosts: &Hosts, org_of: &dyn Fn(u32) -> String, keep: &dyn Fn(u32) -> bool) -> HashMap<(String, bool), Ban> {
    #[derive(Default)]
    struct Group {
        hosts: u64,
        answered: u64,
        last_reply: i64,
    }
    let (mut start, mut end) = (i64::MAX, i64::MIN);
    let mut groups: HashMap<(String, bool), Group> = HashMap::new();
    let mut orgs: HashMap<u32, String> = HashMap::new();
    for h in hosts.hosts.values().filter(|h| keep(h.asn)) {
        let org = orgs.entry(h.asn).or_insert_with(|| org_of(h.asn)).clone();
        let g = groups.entry((org, h.v6)).or_default();
        g.hosts += 1;
        g.last_reply = g.last_reply.max(h.last_reply);
        if h.answered_first_try_at != i64::MAX {
            g.answered += 1;
            start = start.min(h.answered_first_try_at);
            end = end.max(h.answered_first_try_at);
        }
    }
    let span = (end - start) as f64;
    if end <= start {
        return HashMap::new(); // no first pass to place answers in
    }
    let mut bans = HashMap::new();
    for (key, g) in groups {
        if g.answered < MIN_ANSWERED_BEFORE {
            continue; // never (or hardly) answered: dead or filtered, not banned
        }
        let into_pass = ((g.last_reply - start) as f64 / span).clamp(0.0, 1.0);
        let chance = into_pass.powf(g.answered as f64);
        if chance < ALPHA && g.hosts as f64 * (1.0 - into_pass) >= MIN_SILENT_AFTER {
            bans.insert(key, Ban { since_us: g.last_reply, into_pass, hosts: g.hosts, answered: g.answered, chance });
        }
    }
    bans
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infer::HostAcc;
    use crate::load::{Hosts, Interner};

    /// `n` hosts of AS 64500 probed a second apart from t = 0, plus `n` hosts of AS 64999 that
    /// all answer (the rest of the crawl, which sets the first pass); `answers(i)`: after how
    /// long host `i` of AS 64500 answered (µs), if it did, and at which attempt.
    fn crawl(n: u32, answers: impl Fn(u32) -> Option<(i64, u8)>) -> Hosts {
        let mut h = Hosts { hosts: Default::default(), strings: Interner::default(), vantage: "v".into(), rows: 0 };
        for i in 0..2 * n {
            let asn = if i % 2 == 0 { 64500 } else { 64999 };
            let mut acc = HostAcc::new(asn, 0, false);
            let sent = 1_000_000_000_000 + i as i64 * 500_000;
            let a = if asn == 64999 { Some((50_000, 1)) } else { answers(i / 2) };
            if let Some((d, attempt)) = a {
                let at = sent + if attempt > 1 { 3_600_000_000 } else { 0 }; // retries: a later pass
                acc.add_times(Some(at), Some(attempt), Some(at + d));
            }
            h.hosts.insert(format!("198.18.{}.{}", i / 200, i % 200 + 1).into(), acc);
        }
        h
    }

    fn bans(h: &Hosts) -> HashMap<(String, bool), Ban> {
        detect(h, &|a| format!("AS{a}"), &|_| true)
    }

    #[test]
    fn a_provider_that_stops_answering_everything_banned_the_vantage() {
        // Answers for the first 40 hosts, then nothing for the next 60.
        let h = crawl(100, |i| (i < 40).then_some((50_000, 1)));
        let b = &bans(&h)[&("AS64500".to_string(), false)];
        assert_eq!((b.hosts, b.answered), (100, 40), "{b:?}");
        assert!((b.into_pass - 0.4).abs() < 0.01 && b.chance < 1e-15, "{b:?}");
        assert!(b.evidence().contains("banned"));
        assert_eq!(bans(&h).len(), 1, "the provider that kept answering was not banned");
    }

    #[test]
    fn a_dead_tail_of_a_sparse_sample_is_not_a_ban() {
        // One host in ten answers; the last answer is at host 80: no answers in the last fifth
        // is what a sample that sparse gives by chance (0.8^9 ≈ 0.13).
        let h = crawl(100, |i| (i % 10 == 0 && i <= 80).then_some((50_000, 1)));
        assert!(bans(&h).is_empty());
        // Nor is a provider that never answered, nor one whose retries answered late (the
        // vantage was not banned then), nor one whose silence came too close to the end of the
        // pass to hold enough hosts.
        assert!(bans(&crawl(100, |_| None)).is_empty());
        assert!(bans(&crawl(100, |i| (i < 40 || i == 70).then_some((50_000, if i == 70 { 2 } else { 1 })))).is_empty());
        assert!(bans(&crawl(100, |i| (i < 95).then_some((50_000, 1)))).is_empty());
    }
}
