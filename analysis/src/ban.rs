//! Was the vantage banned — or did its own path go dark? Many networks ban a source that looks
//! like a scanner (portsentry, fail2ban, IPS port-scan signatures): for minutes or for good,
//! everything the vantage sends them is dropped, so the probes of that time are silent — port
//! 25 on hosts whose controls answered earlier included — which would read as *blocking*. And
//! a vantage's own upstream can fail for one family (its IPv6 transit, say): then every
//! network of that family goes silent at once.
//!
//! The crawl visits hosts in a keyed random order, so without a ban a network's answering hosts
//! are spread evenly over the first pass. The pass's clock here is not wall time (the send rate
//! varies: reply load, limits, a slow tail) but the share of *other* networks' answering hosts
//! of the same family probed so far, which moves with the crawl whatever its rate. A ban shows
//! as a gap: a stretch of that clock, of length `g`, in which none of the network's `A` hosts
//! answered a first attempt — to the end of the pass (banned for good) or until the ban
//! expired. Among `A` uniform points the chance of a last gap that long is `(1 − g)^A`, of some
//! inner gap that long at most `(A − 1)(1 − g)^A`. Three more things make it a ban:
//!
//! - **Significance after testing every network.** A report tests thousands of ASes and
//!   organizations per family; the smaller chance, doubled (two tests), must be below
//!   `FAMILY_ALPHA` divided by the number of groups tested (Bonferroni), so the whole report
//!   has at most that chance of one false ban.
//! - **The retries were silenced too, for long.** Real detectors ban for minutes. A network
//!   that answered anything — a retry of a silent probe, a late answer — less than `MIN_BAN_US`
//!   after its gap began was not banned: a path hiccup (a second of neighbour discovery, a
//!   queue drop) that the retries healed.
//! - **One network, not all of them.** A gap that every network of a family shows at once is
//!   the vantage's own outage of that family ([`Outage`]): found with the other family's
//!   answers as the clock, it withholds that family's verdicts, and no network of the family
//!   is called banned for it.
//!
//! Bans are tested per AS and per organization (a detector sits at one AS's border as often as
//! at the whole organization's), and per family (bans are per source address). An
//! organization is banned only when its hosts outside the banned ASes show the gap too; an
//! AS's ban otherwise stays that AS's, and the organization's numbers leave its hosts out.

use crate::infer::HostAcc;
use hashbrown::HashMap;
use serde::Serialize;

/// The gap must have held at least this many of the network's hosts (expected, from its
/// sample size).
const MIN_SILENT_IN_GAP: f64 = 10.0;
/// At least this many hosts must have answered a first attempt (the network did answer us).
const MIN_ANSWERED: usize = 3;
/// A ban silences everything for at least this long (real detectors ban for minutes): an
/// answer of any kind sooner after the gap began means the network was reachable.
pub const MIN_BAN_US: i64 = 60_000_000;
/// An answer this long after a host's first first-try probe is not one of its first-try answers.
const LATE_US: i64 = 10_000_000;
/// The chance of one false ban in a whole report (all ASes and organizations of a family).
const FAMILY_ALPHA: f64 = 1e-3;
/// An AS's ban is its organization's too when the organization's other ASes were silent in
/// the same window with less than this chance.
const CONFIRM_ALPHA: f64 = 0.01;
/// A family outage: at least this many networks of the family answered before it...
const OUTAGE_MIN_GROUPS: usize = 3;
/// ... and at least this share of them stayed silent through it.
const OUTAGE_SHARE: f64 = 0.8;

#[derive(Debug, Clone, Serialize)]
pub struct Ban {
    /// The last probe the network answered before the gap went out then (µs since the epoch):
    /// the ban came then or just after.
    pub since_us: i64,
    /// The first answer after the gap, if any (a ban that expired during the crawl).
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
    /// What that chance was compared with: the report's alpha over the groups tested.
    pub threshold: f64,
}

/// A family of the vantage that went dark: every (or most every) network of it stopped
/// answering at once, while the other family kept answering.
#[derive(Debug, Clone, Serialize)]
pub struct Outage {
    pub v6: bool,
    pub since_us: i64,
    pub until_us: Option<i64>,
    /// Where the gap lies on the other family's clock (0–1).
    pub from: f64,
    pub to: f64,
    /// Hosts of the family that answered a first attempt.
    pub answered: u64,
    /// Networks (ASes) of the family that answered before the gap, and how many of them stayed
    /// silent through it.
    pub groups: u64,
    pub groups_silent: u64,
    pub chance: f64,
}

fn rfc3339(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us).map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)).unwrap_or_default()
}

fn until_text(until: Option<i64>, to: f64) -> String {
    match until {
        Some(t) => format!("until {} ({:.0}%)", rfc3339(t), to * 100.0),
        None => "to the end of the first pass, and no retry answered either".to_string(),
    }
}

impl Ban {
    pub fn since(&self) -> String {
        rfc3339(self.since_us)
    }

    pub fn evidence(&self) -> String {
        format!(
            "{} of {} hosts answered a first attempt; none from {} ({:.0}% into the crawl's first pass) {}, controls, closed ports and retries included (chance without a ban {:.1e}, below {:.1e} after testing every network): the vantage was banned (a scan detector), not blocked",
            self.answered,
            self.hosts,
            self.since(),
            self.from * 100.0,
            until_text(self.until_us, self.to),
            self.chance,
            self.threshold
        )
    }
}

impl Outage {
    pub fn family(&self) -> &'static str {
        if self.v6 { "ipv6" } else { "ipv4" }
    }
    pub fn since(&self) -> String {
        rfc3339(self.since_us)
    }
    pub fn evidence(&self) -> String {
        format!(
            "the vantage's {} path went dark: {} of {} networks that had answered stopped answering at once from {} ({:.0}% into the first pass, on the other family's clock) {}, while the other family kept answering (chance without an outage {:.1e}): no {} verdict from this crawl",
            self.family(),
            self.groups_silent,
            self.groups,
            self.since(),
            self.from * 100.0,
            until_text(self.until_us, self.to),
            self.chance,
            self.family()
        )
    }
}

/// Every ban and outage found in one crawl.
#[derive(Debug, Default)]
pub struct Findings {
    /// Keyed by (organization or `AS<n>`, IPv6?).
    pub bans: HashMap<(String, bool), Ban>,
    pub outages: Vec<Outage>,
}

impl Findings {
    pub fn outage(&self, v6: bool) -> Option<&Outage> {
        self.outages.iter().find(|o| o.v6 == v6)
    }
    /// Is the AS's own (not its organization's) ban on record for this family?
    pub fn as_banned(&self, asn: u32, v6: bool) -> bool {
        self.bans.contains_key(&(format!("AS{asn}"), v6))
    }
}

/// First-try answer times of a network and its other answers (retries, late ones).
#[derive(Default, Clone)]
struct Group {
    hosts: u64,
    times: Vec<i64>,
    /// Where each of `times` was added to its family's times (their `ids`), for `Clock`.
    ids: Vec<u32>,
    /// Times of answers that were not first-try answers, and the latest answer of each host.
    later: Vec<i64>,
}

impl Group {
    fn absorb(&mut self, o: &Group) {
        self.hosts += o.hosts;
        self.times.extend_from_slice(&o.times);
        self.ids.extend_from_slice(&o.ids);
        self.later.extend_from_slice(&o.later);
    }
    /// The group's first-try times, sorted, with their ids.
    fn sorted(&self) -> Vec<(i64, u32)> {
        let mut v: Vec<(i64, u32)> = self.times.iter().copied().zip(self.ids.iter().copied()).collect();
        v.sort_unstable();
        v
    }
    /// The first answer of any kind after `t`.
    fn next_answer(&self, t: i64) -> Option<i64> {
        self.times.iter().chain(&self.later).copied().filter(|x| *x > t).min()
    }
}

/// The longest silence of `g` on `clock` (sorted first-try times of what is *not* `g`): the
/// chance of it without a cause, where it lies, and its wall-clock start and end.
struct Gap {
    chance: f64,
    from: f64,
    to: f64,
    since_us: i64,
    /// The first answer after the gap, if the network answered again.
    until_us: Option<i64>,
    /// The gap's share of the pass.
    len: f64,
}

fn longest_gap(g: &Group, clock: &Clock) -> Option<Gap> {
    let a = g.times.len();
    if a < MIN_ANSWERED || clock.len() == 0 {
        return None;
    }
    let sorted = g.sorted();
    let times: Vec<i64> = sorted.iter().map(|x| x.0).collect();
    // The clock at the network's i-th answer: the share of the others' answering hosts probed
    // by then.
    let u: Vec<f64> = clock.at(&sorted).into_iter().map(|n| n as f64 / clock.len() as f64).collect();
    // Two candidates: the gap from the last answer to the end (chance (1 − g)^A), and the
    // longest gap between two answers (at most (A − 1)(1 − g)^A, a union bound over the A − 1
    // spacings); the smaller chance is taken, doubled for having looked at both.
    let last = a - 1;
    let end = (last, 1.0 - u[last], u[last].powf(a as f64));
    let inner = (0..last).map(|i| (i, u[i + 1] - u[i])).max_by(|x, y| x.1.total_cmp(&y.1)).map(|(i, g)| (i, g, ((a - 1) as f64 * (1.0 - g).powf(a as f64)).min(1.0)));
    let (at, len, chance) = match inner {
        Some(x) if x.2 < end.2 => x,
        _ => end,
    };
    let since_us = times[at];
    Some(Gap { chance: (2.0 * chance).min(1.0), from: u[at], to: if at + 1 < a { u[at + 1] } else { 1.0 }, since_us, until_us: g.next_answer(since_us), len })
}

/// The order of a family's first-try times: the times sorted, and for each time (by its id,
/// the order it was added in) how many of the family's times are at or before it.
struct Family {
    sorted: Vec<i64>,
    rank: Vec<u32>,
}

impl Family {
    fn of(g: &Group) -> Family {
        let mut order: Vec<(i64, u32)> = g.times.iter().copied().zip(0..).collect();
        order.sort_unstable();
        let mut rank = vec![0u32; order.len()];
        let mut upper = order.len();
        for i in (0..order.len()).rev() {
            if i + 1 < order.len() && order[i + 1].0 != order[i].0 {
                upper = i + 1;
            }
            rank[order[i].1 as usize] = upper as u32;
        }
        Family { sorted: order.into_iter().map(|x| x.0).collect(), rank }
    }
}

/// A clock: a family's first-try answer times without those of the network tested (`minus`, a
/// part of them) — or another family's, whole. Counted, never copied, and never searched per
/// answer: the network's own times are family times, so where each stands in the family is
/// known from its id (a copy of the family's times per network tested, each searched per
/// answer, was quadratic in the crawl: thousands of networks × millions of answers).
enum Clock<'a> {
    /// Another family's times.
    Of(&'a [i64]),
    Without { family: &'a Family, minus: Vec<i64> },
}

impl<'a> Clock<'a> {
    fn of(other: &'a Family) -> Clock<'a> {
        Clock::Of(&other.sorted)
    }
    /// `family` without the times of `g`.
    fn without(family: &'a Family, g: &Group) -> Clock<'a> {
        let mut minus = g.times.clone();
        minus.sort_unstable();
        Clock::Without { family, minus }
    }
    fn len(&self) -> usize {
        match self {
            Clock::Of(all) => all.len(),
            Clock::Without { family, minus } => family.sorted.len() - minus.len(),
        }
    }
    /// For each of `times` (sorted, with their ids), the times on the clock at or before it.
    fn at(&self, times: &[(i64, u32)]) -> Vec<usize> {
        // Both sides sorted: one walk along each.
        let upto = |all: &[i64]| -> Vec<usize> {
            let mut j = 0;
            times
                .iter()
                .map(|(t, _)| {
                    while j < all.len() && all[j] <= *t {
                        j += 1;
                    }
                    j
                })
                .collect()
        };
        match self {
            Clock::Of(all) => upto(all),
            Clock::Without { family, minus } => times.iter().zip(upto(minus)).map(|((_, id), m)| family.rank[*id as usize] as usize - m).collect(),
        }
    }
}

/// What the ban test needs of a crawl's hosts, gathered host by host as a scan hands them
/// out (in any order): per AS and family, its host count, its hosts' first-try answer times
/// and their later answers; per family, every first-try answer time (the clock).
#[derive(Default)]
pub struct Evidence {
    per_as: HashMap<(u32, bool), Group>,
}

impl Evidence {
    /// One host of a reported AS. (Held per answering host for the whole crawl: its first-try
    /// time and at most two later answers, nothing else; the families' clocks are put together
    /// from these when the test runs, after the scan.)
    pub fn add(&mut self, h: &HostAcc) {
        let g = self.per_as.entry((h.asn, h.v6)).or_default();
        g.hosts += 1;
        if h.answered_first_try_at != i64::MAX {
            g.times.push(h.answered_first_try_at);
        }
        // Answers after the host's first-try ones: its retries' (always), and its last answer
        // when it came well after its first-try probes (a host's probes go out within seconds).
        if h.first_retry_reply != i64::MAX {
            g.later.push(h.first_retry_reply);
        }
        if h.last_reply > 0 && (h.answered_first_try_at == i64::MAX || h.last_reply > h.answered_first_try_at.saturating_add(LATE_US)) {
            g.later.push(h.last_reply);
        }
    }

    /// Bans and family outages of the crawl; `org_of` names an AS's organization.
    pub fn detect(self, org_of: &dyn Fn(u32) -> String) -> Findings {
        let Evidence { mut per_as } = self;
        // Each family's first-try times, every network's one after the other; each network's
        // times learn where they stand among them (their ids).
        let mut family: [Group; 2] = Default::default();
        for ((_, v6), g) in per_as.iter_mut() {
            let f = &mut family[*v6 as usize];
            let first = f.times.len() as u32;
            g.ids = (first..first + g.times.len() as u32).collect();
            f.times.extend_from_slice(&g.times);
        }
        for f in family.iter_mut() {
            f.ids = (0..f.times.len() as u32).collect();
        }
        detect_groups(per_as, family, org_of)
    }
}

/// Bans and family outages from the per-AS groups and the families' clocks.
fn detect_groups(per_as: HashMap<(u32, bool), Group>, family: [Group; 2], org_of: &dyn Fn(u32) -> String) -> Findings {
    let order = [Family::of(&family[0]), Family::of(&family[1])];
    let mut found = Findings::default();
    // A family's outage, on the other family's clock.
    for v6 in [false, true] {
        let me = &family[v6 as usize];
        let Some(gap) = longest_gap(me, &Clock::of(&order[!v6 as usize])) else { continue };
        // The networks that had answered before the gap, and those of them silent through it.
        let end = gap.until_us.unwrap_or(i64::MAX);
        let before: Vec<&Group> = per_as.iter().filter(|((_, f), g)| *f == v6 && g.times.iter().any(|t| *t <= gap.since_us)).map(|(_, g)| g).collect();
        let silent = before.iter().filter(|g| !g.times.iter().chain(&g.later).any(|t| *t > gap.since_us && *t < end)).count();
        let long = gap.until_us.is_none_or(|u| u - gap.since_us >= MIN_BAN_US);
        if gap.chance < FAMILY_ALPHA / 2.0 && long && before.len() >= OUTAGE_MIN_GROUPS && silent as f64 >= OUTAGE_SHARE * before.len() as f64 {
            found.outages.push(Outage { v6, since_us: gap.since_us, until_us: gap.until_us, from: gap.from, to: gap.to, answered: me.times.len() as u64, groups: before.len() as u64, groups_silent: silent as u64, chance: gap.chance });
        }
    }
    // Per AS, then each organization from its ASes that were not banned on their own.
    let tested = |g: &Group| g.times.len() >= MIN_ANSWERED;
    let mut orgs: HashMap<(String, bool), Vec<(u32, Group)>> = HashMap::new();
    for ((asn, v6), g) in &per_as {
        let org = org_of(*asn);
        if org != format!("AS{asn}") {
            orgs.entry((org, *v6)).or_default().push((*asn, g.clone()));
        }
    }
    let groups_tested = |v6: bool| per_as.iter().filter(|((_, f), g)| *f == v6 && tested(g)).count() + orgs.iter().filter(|((_, f), l)| *f == v6 && l.iter().map(|x| x.1.times.len()).sum::<usize>() >= MIN_ANSWERED).count();
    let thresholds = [FAMILY_ALPHA / groups_tested(false).max(1) as f64, FAMILY_ALPHA / groups_tested(true).max(1) as f64];
    let outage = [found.outage(false).is_some(), found.outage(true).is_some()];
    let test = |g: &Group, v6: bool| -> Option<Ban> {
        if outage[v6 as usize] {
            return None; // the family's silence is the vantage's own: no network is banned for it
        }
        // The clock: the same family's other networks' first-try answers.
        let gap = longest_gap(g, &Clock::without(&order[v6 as usize], g))?;
        let threshold = thresholds[v6 as usize];
        let long = gap.until_us.is_none_or(|u| u - gap.since_us >= MIN_BAN_US);
        (gap.chance < threshold && g.hosts as f64 * gap.len >= MIN_SILENT_IN_GAP && long).then(|| Ban {
            since_us: gap.since_us,
            until_us: gap.until_us,
            from: gap.from,
            to: gap.to,
            hosts: g.hosts,
            answered: g.times.len() as u64,
            chance: gap.chance,
            threshold,
        })
    };
    for ((asn, v6), g) in &per_as {
        if let Some(b) = test(g, *v6) {
            found.bans.insert((format!("AS{asn}"), *v6), b);
        }
    }
    for ((org, v6), list) in orgs {
        // Every AS of the organization that answered was banned on its own: so is the
        // organization. Otherwise its other ASes must show the gap too: none of their hosts
        // answered a first attempt while the banned AS was silent, when the family's clock says
        // some should have (chance below `CONFIRM_ALPHA`): one detector at the organization's
        // border, seen AS by AS. Failing that, the hosts outside the banned ASes are tested on
        // their own.
        let answering: Vec<u32> = list.iter().filter(|(_, x)| tested(x)).map(|(a, _)| *a).collect();
        let banned: Vec<&Ban> = answering.iter().filter_map(|a| found.bans.get(&(format!("AS{a}"), v6))).collect();
        let all_banned = !answering.is_empty() && banned.len() == answering.len();
        let (mut all, mut rest) = (Group::default(), Group::default());
        for (asn, x) in &list {
            all.absorb(x);
            if !found.as_banned(*asn, v6) {
                rest.absorb(x);
            }
        }
        let confirmed = !all_banned
            && longest_gap(&rest, &Clock::without(&order[v6 as usize], &all)).is_some_and(|r| {
                // The other ASes' longest silence, unlikely by chance, over most of a banned AS's.
                r.chance < CONFIRM_ALPHA && banned.iter().any(|b| (r.to.min(b.to) - r.from.max(b.from)) >= 0.5 * (b.to - b.from))
            });
        let ban = if all_banned || confirmed {
            test(&all, v6).or_else(|| banned.iter().min_by_key(|b| b.since_us).map(|b| (*b).clone()))
        } else {
            test(&rest, v6)
        };
        if let Some(b) = ban {
            found.bans.insert((org, v6), b);
        }
    }
    found
}

/// The ban of an AS row: the AS's own, else its organization's.
pub fn of_as<'a>(bans: &'a HashMap<(String, bool), Ban>, org: &str, asn: u32, v6: bool) -> Option<&'a Ban> {
    bans.get(&(format!("AS{asn}"), v6)).or_else(|| bans.get(&(org.to_string(), v6)))
}

/// The ban of an organization row: its own only. A banned AS's hosts are left out of its
/// organization's numbers (`aggregate::tally`) instead of blanking the organization.
pub fn of_org<'a>(bans: &'a HashMap<(String, bool), Ban>, org: &str, v6: bool) -> Option<&'a Ban> {
    bans.get(&(org.to_string(), v6))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` hosts of AS 64500 (and, every third, of AS 64501) probed a second apart, between
    /// `n` hosts of AS 64999 that all answer (the rest of the crawl, which is the clock);
    /// `answers(i)`: after how long host `i` of AS 64500/64501 answered (µs), if it did, and at
    /// which attempt.
    fn crawl(n: u32, answers: impl Fn(u32) -> Option<(i64, u8)>) -> Vec<HostAcc> {
        let mut h = Vec::new();
        for i in 0..2 * n {
            let asn = if i % 2 == 1 { 64999 } else if (i / 2) % 3 == 2 { 64501 } else { 64500 };
            let mut acc = HostAcc::new(asn, 0, false);
            let sent = 1_000_000_000_000 + i as i64 * 500_000;
            let a = if asn == 64999 { Some((50_000, 1)) } else { answers(i / 2) };
            if let Some((d, attempt)) = a {
                let at = sent + if attempt > 1 { 3_600_000_000 } else { 0 }; // retries: a later pass
                acc.add_times(Some(at), Some(attempt), Some(at + d));
            }
            h.push(acc);
        }
        h
    }

    fn evidence(hosts: &[HostAcc]) -> Evidence {
        let mut e = Evidence::default();
        hosts.iter().for_each(|h| e.add(h));
        e
    }

    /// AS 64500 and AS 64501 are one organization.
    fn bans(h: &[HostAcc]) -> HashMap<(String, bool), Ban> {
        evidence(h).detect(&|a| if a == 64999 { "ORG-OTHER".into() } else { "ORG-X".into() }).bans
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
        // Silent from 30 % to 70 % of the pass (a minute of the 150 s pass): a ban that expired.
        // (Each host of the organization is probed a second after the previous one.)
        let h = crawl(150, |i| (!(45..105).contains(&i)).then_some((50_000, 1)));
        let org = &bans(&h)[&key("ORG-X")];
        assert!(org.until_us.is_some() && (org.from - 0.3).abs() < 0.02 && (org.to - 0.7).abs() < 0.02, "{org:?}");
        assert!(org.evidence().contains("until"));
        // Only AS 64501 (a third of the organization's hosts) stops answering: the AS is banned,
        // and its organization is not (its other AS kept answering): the organization's rows
        // leave the banned AS's hosts out instead.
        let h = crawl(300, |i| (i % 3 != 2 || i < 90).then_some((50_000, 1)));
        let b = bans(&h);
        assert!(b.contains_key(&key("AS64501")) && !b.contains_key(&key("AS64500")), "{:?}", b.keys().collect::<Vec<_>>());
        assert!(of_org(&b, "ORG-X", false).is_none());
        assert!(of_as(&b, "ORG-X", 64500, false).is_none());
        // Retries that answered long after the first pass: the ban had lifted by then.
        let h = crawl(150, |i| if i < 60 { Some((50_000, 1)) } else if i == 100 { Some((50_000, 2)) } else { None });
        assert!(bans(&h)[&key("ORG-X")].until_us.is_some());
    }

    #[test]
    fn retries_answering_seconds_after_the_gap_are_no_ban() {
        // The network's first answers stop at 40 % — but a retry of one of its silent probes
        // answered 3 s after its last first answer: a path hiccup the retries healed, no ban.
        let last_first = 1_000_000_000_000 + 2 * 59 * 500_000;
        let with_retries = |after: i64| {
            let mut h = crawl(150, |i| (i < 60).then_some((50_000, 1)));
            for asn in [64500, 64501] {
                let late = h.iter_mut().find(|a| a.asn == asn && a.answered_first_try_at == i64::MAX).unwrap();
                late.add_times(Some(last_first + after - 500_000), Some(2), Some(last_first + after));
            }
            h
        };
        let h = with_retries(3_000_000);
        assert!(bans(&h).is_empty(), "{:?}", bans(&h).keys().collect::<Vec<_>>());
        // The same retries five minutes later: a ban that lifted.
        assert!(bans(&with_retries(300_000_000))[&key("ORG-X")].until_us.is_some());
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

    #[test]
    fn a_family_that_goes_dark_everywhere_is_the_vantages_outage_not_bans() {
        // IPv4: 4 networks answering all along (the clock). IPv6: 4 networks answering until
        // the middle of the pass, then none of them — the vantage's IPv6 path failed.
        let mut h = Vec::new();
        for i in 0..800u32 {
            let v6 = i % 2 == 1;
            let asn = 64500 + (i / 2) % 4;
            let mut acc = HostAcc::new(asn, 0, v6);
            let sent = 1_000_000_000_000 + i as i64 * 250_000;
            if !v6 || i < 400 {
                acc.add_times(Some(sent), Some(1), Some(sent + 50_000));
            }
            h.push(acc);
        }
        let f = evidence(&h).detect(&|a| format!("AS{a}"));
        let o = f.outage(true).expect("an IPv6 outage");
        assert_eq!((o.groups, o.groups_silent, o.until_us), (4, 4, None), "{o:?}");
        assert!((o.from - 0.5).abs() < 0.02 && o.evidence().contains("ipv6 path went dark"), "{}", o.evidence());
        assert!(f.outage(false).is_none());
        assert!(f.bans.is_empty(), "networks called banned for the vantage's outage: {:?}", f.bans.keys().collect::<Vec<_>>());
    }
}
