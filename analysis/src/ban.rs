//! Was the vantage banned? Many networks ban a source that looks like a scanner (portsentry,
//! fail2ban, IPS port-scan signatures): for minutes or for good, everything the vantage sends
//! them is dropped, so the probes of that time are silent — port 25 on hosts whose controls
//! answered earlier included — which would read as *blocking*.
//!
//! The crawl visits hosts in a keyed random order, so without a ban a network's answering hosts
//! are spread evenly over the first pass. The pass's clock here is not wall time (the send rate
//! varies: reply load, limits, a slow tail) but the share of *other* networks' answering hosts
//! probed so far, which moves with the crawl whatever its rate. A ban shows as a gap: a stretch
//! of that clock, of length `g`, in which none of the network's `A` hosts answered a first
//! attempt — to the end of the pass (banned for good) or until the ban expired. Among `A`
//! uniform points the chance of a last gap that long is `(1 − g)^A`, of some inner gap that
//! long at most `(A − 1)(1 − g)^A`; a ban is called when the smaller, doubled (two tests), is
//! below `ALPHA` and the gap held enough of the network's hosts to matter. Only
//! hosts answered at a first attempt carry a first-pass time (a silent row's `sent_at` is its
//! last attempt, in the final pass), which is why the test counts answering hosts.
//!
//! A ban is tested per organization and per AS (a scan detector sits at one AS's border as
//! often as at the whole organization's), and per family (bans are per source address).

use crate::load::Hosts;
use hashbrown::HashMap;
use serde::Serialize;

/// The gap must have held at least this many of the network's hosts (expected, from its
/// sample size).
const MIN_SILENT_IN_GAP: f64 = 10.0;
/// At least this many hosts must have answered a first attempt (the network did answer us).
const MIN_ANSWERED: usize = 3;
/// An answer this long after the last first-try answer (a retry's, in a later pass) means a
/// ban had lifted by then; a host's probes all go out within seconds.
const LATE_US: i64 = 10_000_000;
/// The chance of so long a gap without a ban must be below this (per network and family: a
/// report has hundreds, so it is small).
const ALPHA: f64 = 1e-4;

#[derive(Debug, Clone, Serialize)]
pub struct Ban {
    /// The last probe the network answered before the gap went out then (µs since the epoch):
    /// the ban came then or just after.
    pub since_us: i64,
    /// The first answered probe after the gap, if any (a ban that expired during the crawl).
    pub until_us: Option<i64>,
    /// Where the gap lies on the first pass's clock (0–1).
    pub from: f64,
    pub to: f64,
    /// Hosts of the network (this family) in the crawl, and how many answered a first attempt.
    pub hosts: u64,
    pub answered: u64,
    /// The chance of a gap that long without a ban (`(1 − g)^A` for the last gap, `(A − 1)(1 −
    /// g)^A` for an inner one), doubled for the two tests (at most 1).
    pub chance: f64,
}

fn rfc3339(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us).map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)).unwrap_or_default()
}

impl Ban {
    pub fn since(&self) -> String {
        rfc3339(self.since_us)
    }

    pub fn evidence(&self) -> String {
        let until = match self.until_us {
            Some(t) => format!("until {} ({:.0}%)", rfc3339(t), self.to * 100.0),
            None => "to the end of the first pass, and no retry answered either".to_string(),
        };
        format!(
            "{} of {} hosts answered a first attempt; none from {} ({:.0}% into the crawl's first pass) {until}, controls and closed ports included (chance without a ban {:.1e}): the vantage was banned (a scan detector), not blocked",
            self.answered,
            self.hosts,
            self.since(),
            self.from * 100.0,
            self.chance
        )
    }
}

/// Bans keyed by (organization or `AS<n>`, IPv6?): every organization and every AS is tested.
pub fn detect(hosts: &Hosts, org_of: &dyn Fn(u32) -> String, keep: &dyn Fn(u32) -> bool) -> HashMap<(String, bool), Ban> {
    #[derive(Default)]
    struct Group {
        hosts: u64,
        /// First-try answer times, and the latest answer of any kind.
        times: Vec<i64>,
        last_reply: i64,
    }
    // Per AS first (a small key per host), then each organization from its ASes.
    let mut all: Vec<i64> = Vec::new();
    let mut per_as: HashMap<(u32, bool), Group> = HashMap::new();
    for h in hosts.hosts.values().filter(|h| keep(h.asn)) {
        let g = per_as.entry((h.asn, h.v6)).or_default();
        g.hosts += 1;
        g.last_reply = g.last_reply.max(h.last_reply);
        if h.answered_first_try_at != i64::MAX {
            g.times.push(h.answered_first_try_at);
            all.push(h.answered_first_try_at);
        }
    }
    let mut groups: HashMap<(String, bool), Group> = HashMap::new();
    for ((asn, v6), g) in per_as {
        let (org, key) = (org_of(asn), format!("AS{asn}"));
        if org != key {
            let o = groups.entry((org, v6)).or_default();
            o.hosts += g.hosts;
            o.last_reply = o.last_reply.max(g.last_reply);
            o.times.extend_from_slice(&g.times);
        }
        groups.insert((key, v6), g);
    }
    all.sort_unstable();
    let mut bans = HashMap::new();
    for (key, mut g) in groups {
        let a = g.times.len();
        let others = all.len() - a;
        if a < MIN_ANSWERED || others == 0 {
            continue; // never (or hardly) answered: dead or filtered, not banned; or no clock
        }
        g.times.sort_unstable();
        // The clock at the network's i-th answer: the share of the others' answering hosts
        // probed by then.
        let clock = |i: usize| {
            let t = g.times[i];
            (all.partition_point(|x| *x <= t) - g.times.partition_point(|x| *x <= t)) as f64 / others as f64
        };
        let u: Vec<f64> = (0..a).map(clock).collect();
        // Two candidates: the gap from the last answer to the end (a ban for good; chance
        // (1 − g)^A), and the longest gap between two answers (a ban that lifted; at most
        // (A − 1)(1 − g)^A, a union bound over the A − 1 spacings). Each is tested at half of
        // ALPHA (the two together at ALPHA).
        let last = a - 1;
        let end = (last, 1.0 - u[last], u[last].powf(a as f64));
        let inner = (0..last).map(|i| (i, u[i + 1] - u[i])).max_by(|x, y| x.1.total_cmp(&y.1)).map(|(i, g)| (i, g, ((a - 1) as f64 * (1.0 - g).powf(a as f64)).min(1.0)));
        let (at, gap, chance) = match inner {
            Some(x) if x.2 < end.2 => x,
            _ => end,
        };
        let chance = (2.0 * chance).min(1.0);
        if chance < ALPHA && g.hosts as f64 * gap >= MIN_SILENT_IN_GAP {
            let until_us = if at + 1 < a {
                Some(g.times[at + 1])
            } else {
                // Nothing answered a first attempt after the gap; a late answer of any kind (a
                // retry) still says the ban had lifted by then.
                (g.last_reply > g.times[at] + LATE_US).then_some(g.last_reply)
            };
            let to = if at + 1 < a { u[at + 1] } else { 1.0 };
            bans.insert(key, Ban { since_us: g.times[at], until_us, from: u[at], to, hosts: g.hosts, answered: a as u64, chance });
        }
    }
    bans
}

/// The ban of an AS row: the AS's own, else its organization's.
pub fn of_as<'a>(bans: &'a HashMap<(String, bool), Ban>, org: &str, asn: u32, v6: bool) -> Option<&'a Ban> {
    bans.get(&(format!("AS{asn}"), v6)).or_else(|| bans.get(&(org.to_string(), v6)))
}

/// The ban of an organization row: its own, else that of one of its ASes (the organization's
/// numbers include the banned AS's silence).
pub fn of_org<'a>(bans: &'a HashMap<(String, bool), Ban>, org: &str, asns: impl IntoIterator<Item = u32>, v6: bool) -> Option<&'a Ban> {
    bans.get(&(org.to_string(), v6)).or_else(|| asns.into_iter().find_map(|a| bans.get(&(format!("AS{a}"), v6))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infer::HostAcc;
    use crate::load::{Hosts, Interner};

    /// `n` hosts of AS 64500 (and, every third, of AS 64501) probed half a second apart, between
    /// `n` hosts of AS 64999 that all answer (the rest of the crawl, which is the clock);
    /// `answers(i)`: after how long host `i` of AS 64500/64501 answered (µs), if it did, and at
    /// which attempt.
    fn crawl(n: u32, answers: impl Fn(u32) -> Option<(i64, u8)>) -> Hosts {
        let mut h = Hosts { hosts: Default::default(), strings: Interner::default(), vantage: "v".into(), rows: 0 };
        for i in 0..2 * n {
            let asn = if i % 2 == 1 { 64999 } else if (i / 2) % 3 == 2 { 64501 } else { 64500 };
            let mut acc = HostAcc::new(asn, 0, false);
            let sent = 1_000_000_000_000 + i as i64 * 250_000;
            let a = if asn == 64999 { Some((50_000, 1)) } else { answers(i / 2) };
            if let Some((d, attempt)) = a {
                let at = sent + if attempt > 1 { 3_600_000_000 } else { 0 }; // retries: a later pass
                acc.add_times(Some(at), Some(attempt), Some(at + d));
            }
            h.hosts.insert(format!("198.18.{}.{}", i / 200, i % 200 + 1).into(), acc);
        }
        h
    }

    /// AS 64500 and AS 64501 are one organization.
    fn bans(h: &Hosts) -> HashMap<(String, bool), Ban> {
        detect(h, &|a| if a == 64999 { "ORG-OTHER".into() } else { "ORG-X".into() }, &|_| true)
    }

    fn key(k: &str) -> (String, bool) {
        (k.to_string(), false)
    }

    #[test]
    fn a_network_that_stops_answering_everything_banned_the_vantage() {
        // Answers for the first 40 % of the pass, then nothing.
        let h = crawl(150, |i| (i < 60).then_some((50_000, 1)));
        let b = bans(&h);
        let org = &b[&key("ORG-X")];
        assert_eq!((org.hosts, org.answered, org.until_us), (150, 60, None), "{org:?}");
        assert!((org.from - 0.4).abs() < 0.02 && org.chance < 1e-10, "{org:?}");
        assert!(org.evidence().contains("banned") && org.evidence().contains("to the end"));
        assert!(b.contains_key(&key("AS64500")) && b.contains_key(&key("AS64501")));
        assert!(!b.contains_key(&key("ORG-OTHER")), "the network that kept answering was not banned");
    }

    #[test]
    fn a_ban_that_lifted_during_the_crawl_and_a_ban_of_one_as() {
        // Silent from 30 % to 70 % of the pass: a ban that expired.
        let h = crawl(150, |i| (!(45..105).contains(&i)).then_some((50_000, 1)));
        let org = &bans(&h)[&key("ORG-X")];
        assert!(org.until_us.is_some() && (org.from - 0.3).abs() < 0.02 && (org.to - 0.7).abs() < 0.02, "{org:?}");
        assert!(org.evidence().contains("until"));
        // Only AS 64501 (a third of the organization's hosts) stops answering: the AS is banned,
        // and its organization's rows carry that ban.
        let h = crawl(300, |i| (i % 3 != 2 || i < 90).then_some((50_000, 1)));
        let b = bans(&h);
        assert!(b.contains_key(&key("AS64501")) && !b.contains_key(&key("AS64500")), "{:?}", b.keys().collect::<Vec<_>>());
        assert!(of_org(&b, "ORG-X", [64500, 64501], false).is_some());
        assert!(of_as(&b, "ORG-X", 64500, false).is_none());
        // Retries that answered after the first pass: the ban had lifted by then.
        let h = crawl(150, |i| if i < 60 { Some((50_000, 1)) } else if i == 100 { Some((50_000, 2)) } else { None });
        assert!(bans(&h)[&key("ORG-X")].until_us.is_some());
    }

    #[test]
    fn sparse_dead_and_evenly_answering_networks_are_not_banned() {
        // One host in ten answers; none in the last fifth of the pass: what a sample that
        // sparse gives by chance (15 · 0.8^15 ≈ 0.5).
        let h = crawl(150, |i| (i % 10 == 0 && i <= 120).then_some((50_000, 1)));
        assert!(bans(&h).is_empty());
        // Nor is a network that never answered, nor one answering evenly with a dead half.
        assert!(bans(&crawl(150, |_| None)).is_empty());
        assert!(bans(&crawl(150, |i| (i % 2 == 0).then_some((50_000, 1)))).is_empty());
        // Nor a short silence at the end (5 % of the pass: 143 · 0.95^143 ≈ 0.1).
        assert!(bans(&crawl(150, |i| (i < 143).then_some((50_000, 1)))).is_empty());
    }
}
