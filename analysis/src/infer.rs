//! Per-host inference for the mail ports (methodology: `README.md` → "How a state is decided").
//!
//! A host's own replies (control ports, RSTs from random closed ports) give its reference
//! TTL. A RST on 25 with that TTL came from the host (`closed`: the SYN got through); a RST
//! with another TTL was forged by a middlebox on the path (`rst-injected`, Weaver et al.,
//! NDSS 2009). Silence only counts as filtering on an *informative* host: one that proved
//! reachability on the port, or answers a control port and RSTs a random closed port (so it
//! is alive and not a default-drop firewall). Hosts that SYN-ACK random high ports answer
//! everything (LZR) and are excluded, as are hosts that never answer (dead).
//!
//! Outbound (source-port reflection): a SYN from our port 25 (465, 587) to the host's closed
//! random port makes the host's RST leave its network towards port 25 — through the provider's
//! outbound filter. Compared with its *twin* (the same destination port from an ephemeral source
//! port): the reflected reply arrived → `passes`; the twin answered but the reflection stayed
//! silent after retries (or came back as ICMP, or as a RST with another TTL) → filtered; twin
//! silent → not informative. A neutral fixed source port (2525) is reflected too: a host whose
//! twin answers but whose neutral reflection is silent drops fixed source ports itself, and is
//! excluded (`source-port-filtered`) rather than counted as provider filtering. Reflection sees
//! stateless filters (and rules matched before an established-state accept); a stateful block
//! of *new* outbound connections lets these replies out: a lower bound.

use serde::Serialize;

/// The mail ports the reports cover, in column order.
pub const MAIL_PORTS: [u16; 3] = [25, 465, 587];

/// `ReplyObs::reply` of a probe the crawl did not send.
pub const NOT_PROBED: u8 = u8::MAX;

const NO_REPLY: ReplyObs = ReplyObs { reply: NOT_PROBED, ttl: 0, icmp_type: 0, icmp_code: 0, responder: u32::MAX };

/// Replies from ephemeral-source probes to control and random ports kept per host, to find a
/// reflection probe's twin (the crawler sends 3 controls + 2 random ports by default).
const EPHEMERAL_KEPT: usize = 8;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplyObs {
    /// 0 none, 1 synack, 2 rst, 3 icmp ([`NOT_PROBED`] in slots never filled)
    pub reply: u8,
    pub ttl: u8,
    pub icmp_type: u8,
    pub icmp_code: u8,
    /// Interned responder address (u32::MAX: none).
    pub responder: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PortState {
    Open,
    Closed,
    RstInjected,
    IcmpProhibited,
    IcmpPortUnreachable,
    /// Host unreachable (v4 3/1, 3/7, 3/12; v6 1/3 address unreachable).
    IcmpHostUnreachable,
    /// Network unreachable (v4 3/0, 3/6, 3/11; v6 1/0 no route).
    IcmpNetUnreachable,
    /// Any other destination-unreachable code (v4 3/2, 3/4, …; v6 1/2, 1/7): still a refusal
    /// of this port while the host answers on others.
    IcmpUnreachable,
    /// An ICMP error that is not destination-unreachable (time exceeded): a routing anomaly,
    /// no statement about the port; the host is left out.
    IcmpOther,
    Silent,
    /// A RST from a host with fewer than two replies of its own to compare TTLs with.
    Unverified,
    /// The port was not probed in this crawl.
    NotProbed,
    /// Outbound: the host's reply to a reflection probe crossed its network's border.
    Passes,
}

impl PortState {
    pub const N: usize = 13;
    pub const ALL: [PortState; Self::N] = [
        PortState::Open,
        PortState::Closed,
        PortState::RstInjected,
        PortState::IcmpProhibited,
        PortState::IcmpPortUnreachable,
        PortState::IcmpHostUnreachable,
        PortState::IcmpNetUnreachable,
        PortState::IcmpUnreachable,
        PortState::IcmpOther,
        PortState::Silent,
        PortState::Unverified,
        PortState::NotProbed,
        PortState::Passes,
    ];
    pub fn index(self) -> usize {
        Self::ALL.iter().position(|s| *s == self).unwrap()
    }
    pub fn as_str(self) -> &'static str {
        match self {
            PortState::Open => "open",
            PortState::Closed => "closed",
            PortState::RstInjected => "rst-injected",
            PortState::IcmpProhibited => "icmp-prohibited",
            PortState::IcmpPortUnreachable => "icmp-port-unreachable",
            PortState::IcmpHostUnreachable => "icmp-host-unreachable",
            PortState::IcmpNetUnreachable => "icmp-net-unreachable",
            PortState::IcmpUnreachable => "icmp-unreachable",
            PortState::IcmpOther => "icmp-other",
            PortState::Silent => "silent",
            PortState::Unverified => "rst-unverified",
            PortState::NotProbed => "not-probed",
            PortState::Passes => "passes",
        }
    }
    /// Did something between us and the host stop the SYN? (Silence: only on informative hosts.)
    /// Every destination-unreachable counts, whoever sent it and whatever its code: on a host
    /// that answers on its other ports, "unreachable" for one port is a filter saying so
    /// (`reject with icmpx type host-unreachable` is one line of nftables).
    pub fn filtered(self) -> bool {
        self.icmp_filter() || matches!(self, PortState::RstInjected | PortState::Silent)
    }
    /// A destination-unreachable of any code.
    pub fn icmp_filter(self) -> bool {
        matches!(self, PortState::IcmpProhibited | PortState::IcmpPortUnreachable | PortState::IcmpHostUnreachable | PortState::IcmpNetUnreachable | PortState::IcmpUnreachable)
    }
    pub fn reachable(self) -> bool {
        matches!(self, PortState::Open | PortState::Closed | PortState::Passes)
    }
    /// The mechanism name used in reports.
    pub fn mechanism(self) -> &'static str {
        match self {
            PortState::Silent => "silent-drop",
            PortState::IcmpProhibited => "icmp-prohibited",
            PortState::IcmpPortUnreachable => "icmp-port-unreachable",
            PortState::IcmpHostUnreachable => "icmp-host-unreachable",
            PortState::IcmpNetUnreachable => "icmp-net-unreachable",
            PortState::IcmpUnreachable => "icmp-unreachable",
            PortState::RstInjected => "rst-injected",
            _ => "",
        }
    }
}

/// ICMP codes that mean "administratively filtered" (v4 3/9, 3/10, 3/13; v6 1/1, 1/5, 1/6).
pub fn icmp_prohibited(v6: bool, t: u8, c: u8) -> bool {
    if v6 {
        t == 1 && matches!(c, 1 | 5 | 6)
    } else {
        t == 3 && matches!(c, 9 | 10 | 13)
    }
}
pub fn icmp_port_unreachable(v6: bool, t: u8, c: u8) -> bool {
    if v6 { t == 1 && c == 4 } else { t == 3 && c == 3 }
}

/// Hops a packet travelled: its TTL's distance below the initial TTL it most likely started
/// with (32, 64, 128 or 255: what operating systems and routers use), so hosts of different
/// operating systems at one distance give one value.
pub fn hops(ttl: u8) -> i16 {
    let initial: i16 = [32, 64, 128, 255].into_iter().find(|i| *i >= ttl as i16).unwrap_or(255);
    initial - ttl as i16
}

/// The state an ICMP error of type `t`, code `c` gives a port.
pub fn icmp_state(v6: bool, t: u8, c: u8) -> PortState {
    let unreachable = if v6 { t == 1 } else { t == 3 };
    if !unreachable {
        return PortState::IcmpOther;
    }
    if icmp_prohibited(v6, t, c) {
        return PortState::IcmpProhibited;
    }
    if icmp_port_unreachable(v6, t, c) {
        return PortState::IcmpPortUnreachable;
    }
    match (v6, c) {
        (false, 1 | 7 | 12) | (true, 3) => PortState::IcmpHostUnreachable,
        (false, 0 | 6 | 11) | (true, 0) => PortState::IcmpNetUnreachable,
        _ => PortState::IcmpUnreachable,
    }
}

/// A row's `port_role`, as the fold tells them apart: control and random ports, reflection
/// probes, and the rest (`target`, `mail`: the mail ports, by their port number).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Role {
    Other = 0,
    Control = 1,
    Random = 2,
    Reflect = 3,
}

impl Role {
    pub fn of(role: &str) -> Role {
        match role {
            "control" => Role::Control,
            "random" => Role::Random,
            "reflect" => Role::Reflect,
            _ => Role::Other,
        }
    }
    pub fn from_bits(b: u8) -> Role {
        match b & 3 {
            1 => Role::Control,
            2 => Role::Random,
            3 => Role::Reflect,
            _ => Role::Other,
        }
    }
}

/// Everything a host's rows say, folded row by row in the crawl's order (rows of one host keep
/// their order whichever way the crawl is read: `fold` and `spill` preserve it). Kept compact —
/// a crawl of millions of hosts holds one of these per host of a partition (`fold`) — so
/// unprobed replies are [`NOT_PROBED`] rather than `Option`s, and parallel arrays replace
/// tuples (no padding).
#[derive(Debug, Clone)]
pub struct HostAcc {
    pub asn: u32,
    pub prefix: u32,
    pub v6: bool,
    pub control_answered: bool,
    pub random_rst: bool,
    pub random_synack: bool,
    /// Replies on 25, 465, 587 (`reply == NOT_PROBED`: not probed).
    pub mail: [ReplyObs; 3],
    /// Reflection probes from the mail ports' source ports, then from the neutral control.
    pub reflect: [ReplyObs; 4],
    /// TTLs of the host's own replies — one per flow: control ports, RSTs from random ports,
    /// SYN-ACKs on mail ports — up to 4 distinct (`ref_ttl`), with how many flows arrived with
    /// each (`ref_n`; 0: slot unused). Per-flow load balancing (ECMP) over paths of unequal
    /// length gives one host several.
    pub ref_ttl: [u8; 4],
    pub ref_n: [u16; 4],
    /// The reflection probes' destination port (the twin's).
    pub reflect_dport: u16,
    /// Ports and replies of ephemeral-source probes to control and random ports
    /// (`NOT_PROBED`: slot unused), to find a reflection probe's twin.
    pub ephemeral_port: [u16; EPHEMERAL_KEPT],
    pub ephemeral_reply: [u8; EPHEMERAL_KEPT],
    /// When a probe of the host that was answered at its first attempt went out, and when the
    /// host last answered anything (µs; `i64::MAX` / 0 when none): the evidence of a scan ban,
    /// which silences every host probed after it. (A silent row's `sent_at` is its *last*
    /// attempt, in the crawl's final pass, so silent hosts carry no first-pass time.)
    pub answered_first_try_at: i64,
    pub last_reply: i64,
    /// The earliest answer to a retry (`i64::MAX`: none): a ban silences the retries too, so
    /// a network whose retries answered seconds after its first answers stopped was not banned.
    pub first_retry_reply: i64,
}

impl HostAcc {
    pub fn new(asn: u32, prefix: u32, v6: bool) -> HostAcc {
        HostAcc {
            asn,
            prefix,
            v6,
            control_answered: false,
            random_rst: false,
            random_synack: false,
            mail: [NO_REPLY; 3],
            reflect: [NO_REPLY; 4],
            ref_ttl: [0; 4],
            ref_n: [0; 4],
            reflect_dport: 0,
            ephemeral_port: [0; EPHEMERAL_KEPT],
            ephemeral_reply: [NOT_PROBED; EPHEMERAL_KEPT],
            answered_first_try_at: i64::MAX,
            last_reply: 0,
            first_retry_reply: i64::MAX,
        }
    }

    /// A row's times: when its probe was sent, at which attempt, and when the reply came (if
    /// any).
    pub fn add_times(&mut self, sent_us: Option<i64>, attempts: Option<u8>, received_us: Option<i64>) {
        let Some(got) = received_us else { return };
        self.last_reply = self.last_reply.max(got);
        match (sent_us, attempts) {
            (Some(t), Some(1)) => self.answered_first_try_at = self.answered_first_try_at.min(t),
            (_, Some(2..)) => self.first_retry_reply = self.first_retry_reply.min(got),
            _ => {}
        }
    }

    /// Did the host answer anything at all (a reply of any kind)?
    pub fn answered_anything(&self) -> bool {
        self.last_reply > 0
    }

    /// Keep a control or random port's reply, for reflection twins. Past `EPHEMERAL_KEPT`
    /// ports only the twin's destination (once known) is kept.
    fn keep_ephemeral(&mut self, port: u16, o: &ReplyObs) {
        if let Some(s) = self.ephemeral_reply.iter().position(|r| *r == NOT_PROBED) {
            (self.ephemeral_port[s], self.ephemeral_reply[s]) = (port, o.reply);
        } else if port == self.reflect_dport {
            (self.ephemeral_port[EPHEMERAL_KEPT - 1], self.ephemeral_reply[EPHEMERAL_KEPT - 1]) = (port, o.reply);
        }
    }

    /// A reflection probe from our source port `sport` to the host's port `dport`.
    fn add_reflect(&mut self, sport: u16, dport: u16, o: &ReplyObs) {
        let i = MAIL_PORTS.iter().position(|p| *p == sport).unwrap_or(3);
        self.reflect[i] = *o;
        self.reflect_dport = dport;
    }

    fn add_ttl(&mut self, ttl: u8) {
        for s in 0..4 {
            if self.ref_n[s] == 0 || self.ref_ttl[s] == ttl {
                self.ref_ttl[s] = ttl;
                self.ref_n[s] = self.ref_n[s].saturating_add(1);
                return;
            }
        }
    }

    /// A row of the host: its port, role, our source port and what came back.
    pub fn add(&mut self, port: u16, role: Role, sport: u16, o: &ReplyObs) {
        match role {
            Role::Control => {
                self.keep_ephemeral(port, o);
                if o.reply == 1 || o.reply == 2 {
                    self.control_answered = true;
                    self.add_ttl(o.ttl);
                }
            }
            Role::Reflect => self.add_reflect(sport, port, o),
            Role::Random => {
                self.keep_ephemeral(port, o);
                match o.reply {
                    1 => self.random_synack = true,
                    2 => {
                        self.random_rst = true;
                        self.add_ttl(o.ttl);
                    }
                    _ => {}
                }
            }
            Role::Other => {
                if let Some(i) = MAIL_PORTS.iter().position(|p| *p == port) {
                    self.mail[i] = *o;
                    // A SYN-ACK is the host's own (answer-everything hosts are left out).
                    if o.reply == 1 {
                        self.add_ttl(o.ttl);
                    }
                }
            }
        }
    }

    /// The reply to the mail port `MAIL_PORTS[i]`, if it was probed.
    pub fn mail(&self, i: usize) -> Option<ReplyObs> {
        Some(self.mail[i]).filter(|o| o.reply != NOT_PROBED)
    }

    /// The reflection probes' twin: (port, reply) of the probe to the same destination port
    /// from an ephemeral source, if it was probed.
    pub fn twin(&self) -> Option<(u16, u8)> {
        (0..EPHEMERAL_KEPT).find(|s| self.ephemeral_reply[*s] != NOT_PROBED && self.ephemeral_port[*s] == self.reflect_dport).map(|s| (self.ephemeral_port[s], self.ephemeral_reply[s]))
    }

    /// The TTL most of the host's own replies arrive with.
    pub fn host_ttl(&self) -> Option<u8> {
        (0..4).filter(|s| self.ref_n[*s] > 0).max_by_key(|s| self.ref_n[*s]).map(|s| self.ref_ttl[s])
    }

    /// How many of the host's own replies (flows) its reference TTLs rest on.
    pub fn ref_flows(&self) -> u32 {
        self.ref_n.iter().map(|n| *n as u32).sum()
    }

    /// The hop distances of the host's own replies, with how many flows gave each.
    pub fn ref_hops(&self) -> impl Iterator<Item = (i16, u16)> + '_ {
        (0..4).filter(|s| self.ref_n[*s] > 0).map(|s| (hops(self.ref_ttl[s]), self.ref_n[s]))
    }

    /// A RST with `ttl` seen from this host. With a TTL one of the host's own replies arrived
    /// with, it came from the host (`closed` inbound, `passes` outbound: `reached`). With
    /// another, it may be forged on the path — or the host's own over a path none of its other
    /// flows took (ECMP): `RstInjected` is only a candidate, which the provider's other hosts
    /// confirm or not (`aggregate`). Fewer than two flows of the host's own prove nothing.
    pub fn rst_state(&self, ttl: u8, reached: PortState) -> PortState {
        if (0..4).any(|s| self.ref_n[s] > 0 && self.ref_ttl[s] == ttl) {
            reached
        } else if self.ref_flows() >= 2 {
            PortState::RstInjected
        } else {
            PortState::Unverified
        }
    }

    pub fn state(&self, i: usize) -> PortState {
        let Some(o) = self.mail(i) else { return PortState::NotProbed };
        match o.reply {
            1 => PortState::Open,
            2 => self.rst_state(o.ttl, PortState::Closed),
            3 => icmp_state(self.v6, o.icmp_type, o.icmp_code),
            _ => PortState::Silent,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Exclusion {
    /// Answers random closed high ports: its answers mean nothing.
    AllPortsResponder,
    /// No TCP answer on any port (ICMP errors only, or nothing).
    Dead,
    /// Alive, but neither reachability on the port nor a control answer plus a closed-port RST
    /// (outbound: the reflection's twin did not answer).
    Uninformative,
    /// Outbound: the neutral reflection (source port 2525) went unanswered while the twin
    /// answered — the host drops fixed source ports itself.
    SourcePortFiltered,
}

impl Exclusion {
    pub fn index(self) -> usize {
        self as usize
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Exclusion::AllPortsResponder => "all-ports-responder",
            Exclusion::Dead => "dead",
            Exclusion::Uninformative => "uninformative",
            Exclusion::SourcePortFiltered => "source-port-filtered",
        }
    }
}

/// Exclusions every direction shares: all-ports responders and dead hosts.
fn excluded(h: &HostAcc) -> Option<Exclusion> {
    if h.random_synack {
        return Some(Exclusion::AllPortsResponder);
    }
    // A RST alone does not show the host is alive: a middlebox may have forged it.
    let any_tcp = h.control_answered || h.random_rst || h.mail.iter().any(|o| o.reply == 1);
    // ICMP unreachable on every port is a dead (or unrouted) address; on some ports of a host
    // that answers TCP on others, it is a filter (`classify`).
    (!any_tcp).then_some(Exclusion::Dead)
}

/// A host's outbound verdict for mail port `MAIL_PORTS[i]`, from source-port reflection.
pub fn classify_outbound(h: &HostAcc, i: usize) -> Result<PortState, Exclusion> {
    if let Some(e) = excluded(h) {
        return Err(e);
    }
    let r = h.reflect[i];
    if r.reply == NOT_PROBED {
        return Err(Exclusion::Uninformative);
    }
    // The twin: the same destination port from an ephemeral source. Its answer shows the
    // reply path works; without it, silence of the reflection means nothing.
    if h.twin().filter(|t| t.1 == 1 || t.1 == 2).is_none() {
        return Err(Exclusion::Uninformative);
    }
    // The neutral control: a fixed source port no provider filters. Silent while the twin
    // answered → the host (or something near it) drops fixed source ports.
    let neutral = h.reflect[3];
    if neutral.reply != NOT_PROBED && neutral.reply != 1 && neutral.reply != 2 {
        return Err(Exclusion::SourcePortFiltered);
    }
    let st = match r.reply {
        // A RST with a TTL none of the host's own flows (the twin among them) came with: a
        // candidate for one forged on the way, which the provider's other hosts decide.
        2 => h.rst_state(r.ttl, PortState::Passes),
        1 => PortState::Passes,
        3 => icmp_state(h.v6, r.icmp_type, r.icmp_code),
        _ => PortState::Silent,
    };
    match st {
        PortState::Unverified | PortState::IcmpOther => Err(Exclusion::Uninformative),
        st => Ok(st),
    }
}

/// Which way the mail traffic a result is about goes, and how it was measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    /// SYNs from outside reaching the provider's hosts (a SYN scan).
    Inbound,
    /// The provider's hosts' traffic leaving towards the port (source-port reflection: stateless
    /// filters only).
    Outbound,
}

impl Direction {
    pub const ALL: [Direction; 2] = [Direction::Inbound, Direction::Outbound];
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
    pub fn method(self) -> &'static str {
        match self {
            Direction::Inbound => "syn-scan",
            Direction::Outbound => "reflection",
        }
    }
    /// Was the host probed for mail port `MAIL_PORTS[i]` in this direction?
    pub fn probed(self, h: &HostAcc, i: usize) -> bool {
        match self {
            Direction::Inbound => h.mail(i).is_some(),
            Direction::Outbound => h.reflect[i].reply != NOT_PROBED,
        }
    }
    pub fn classify(self, h: &HostAcc, i: usize) -> Result<PortState, Exclusion> {
        match self {
            Direction::Inbound => classify(h, i),
            Direction::Outbound => classify_outbound(h, i),
        }
    }
    /// The reply the host's state rests on.
    pub fn reply(self, h: &HostAcc, i: usize) -> Option<ReplyObs> {
        match self {
            Direction::Inbound => h.mail(i),
            Direction::Outbound => Some(h.reflect[i]).filter(|r| r.reply != NOT_PROBED),
        }
    }
}

/// A host's verdict for one mail port.
pub fn classify(h: &HostAcc, i: usize) -> Result<PortState, Exclusion> {
    if let Some(e) = excluded(h) {
        return Err(e);
    }
    let st = h.state(i);
    if st == PortState::NotProbed {
        return Err(Exclusion::Uninformative);
    }
    if matches!(st, PortState::IcmpOther | PortState::Unverified) {
        return Err(Exclusion::Uninformative);
    }
    if st.reachable() || (h.control_answered && h.random_rst) {
        Ok(st)
    } else {
        Err(Exclusion::Uninformative)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    fn o(reply: u8, ttl: u8) -> ReplyObs {
        ReplyObs { reply, ttl, icmp_type: 0, icmp_code: 0, responder: u32::MAX }
    }
    fn host() -> HostAcc {
        let mut h = HostAcc::new(1, 0, false);
        h.add(80, Role::Control, 33000, &o(1, 62));
        h.add(443, Role::Control, 33000, &o(2, 62));
        h.add(40000, Role::Random, 33000, &o(2, 62));
        h
    }
    #[test]
    fn ttl_tells_injected_from_host_rst() {
        let mut h = host();
        h.add(25, Role::Other, 33000, &o(2, 63));
        assert_eq!(classify(&h, 0), Ok(PortState::RstInjected));
        let mut h = host();
        h.add(25, Role::Other, 33000, &o(2, 62));
        assert_eq!(classify(&h, 0), Ok(PortState::Closed));
    }
    #[test]
    fn lone_rst_proves_nothing() {
        // A dead host behind a RST-injecting border: no reply of its own, a RST on 25.
        let mut d = HostAcc::new(1, 0, false);
        d.add(25, Role::Other, 33000, &o(2, 63));
        d.add(80, Role::Control, 33000, &o(0, 0));
        assert_eq!(classify(&d, 0), Err(Exclusion::Dead));
        assert_eq!(d.state(0), PortState::Unverified);
    }

    #[test]
    fn silence_counts_only_on_informative_hosts() {
        let mut h = host();
        h.add(25, Role::Other, 33000, &o(0, 0));
        assert_eq!(classify(&h, 0), Ok(PortState::Silent));
        let mut dead = HostAcc::new(1, 0, false);
        dead.add(25, Role::Other, 33000, &o(0, 0));
        dead.add(80, Role::Control, 33000, &o(0, 0));
        assert_eq!(classify(&dead, 0), Err(Exclusion::Dead));
        // Alive on 80 but no closed-port RST: a default-drop firewall; silence on 25 means nothing.
        let mut fw = HostAcc::new(1, 0, false);
        fw.add(80, Role::Control, 33000, &o(1, 62));
        fw.add(40000, Role::Random, 33000, &o(0, 0));
        fw.add(25, Role::Other, 33000, &o(0, 0));
        assert_eq!(classify(&fw, 0), Err(Exclusion::Uninformative));
        let mut all = host();
        all.add(41000, Role::Random, 33000, &o(1, 62));
        all.add(25, Role::Other, 33000, &o(1, 62));
        assert_eq!(classify(&all, 0), Err(Exclusion::AllPortsResponder));
    }
    #[test]
    fn icmp_codes() {
        let mut h = host();
        h.add(25, Role::Other, 33000, &ReplyObs { reply: 3, ttl: 63, icmp_type: 3, icmp_code: 13, responder: 0 });
        assert_eq!(classify(&h, 0), Ok(PortState::IcmpProhibited));
        let mut h6 = HostAcc::new(1, 0, true);
        h6.add(80, Role::Control, 33000, &o(1, 62));
        h6.add(40000, Role::Random, 33000, &o(2, 62));
        h6.add(25, Role::Other, 33000, &ReplyObs { reply: 3, ttl: 63, icmp_type: 1, icmp_code: 4, responder: 0 });
        assert_eq!(classify(&h6, 0), Ok(PortState::IcmpPortUnreachable));
    }

    #[test]
    fn every_destination_unreachable_on_one_port_of_a_live_host_is_a_filter() {
        let icmp = |t, c| ReplyObs { reply: 3, ttl: 63, icmp_type: t, icmp_code: c, responder: 0 };
        let cases: [(bool, u8, u8, PortState); 12] = [
            (false, 3, 1, PortState::IcmpHostUnreachable),
            (false, 3, 0, PortState::IcmpNetUnreachable),
            (false, 3, 9, PortState::IcmpProhibited),
            (false, 3, 10, PortState::IcmpProhibited),
            (false, 3, 13, PortState::IcmpProhibited),
            (false, 3, 2, PortState::IcmpUnreachable),
            (true, 1, 1, PortState::IcmpProhibited),
            (true, 1, 3, PortState::IcmpHostUnreachable),
            (true, 1, 0, PortState::IcmpNetUnreachable),
            (true, 1, 4, PortState::IcmpPortUnreachable),
            (true, 1, 5, PortState::IcmpProhibited),
            (true, 1, 6, PortState::IcmpProhibited),
        ];
        for (v6, t, c, want) in cases {
            let mut h = HostAcc::new(1, 0, v6);
            h.add(80, Role::Control, 33000, &o(1, 62));
            h.add(40000, Role::Random, 33000, &o(2, 62));
            h.add(25, Role::Other, 33000, &icmp(t, c));
            let got = classify(&h, 0);
            assert_eq!(got, Ok(want), "v6={v6} {t}/{c}");
            assert!(want.filtered(), "{t}/{c}");
            // Reflection: the same error for the reflected probe is a filter too.
            let mut r = host();
            r.v6 = v6;
            r.add(40000, Role::Reflect, 25, &icmp(t, c));
            r.add(40000, Role::Reflect, 2525, &o(2, 62));
            assert_eq!(classify_outbound(&r, 0), Ok(want), "reflect v6={v6} {t}/{c}");
        }
        // Unreachable on every port: a dead address, not a filter.
        let mut d = HostAcc::new(1, 0, false);
        for p in [25, 80, 443] {
            d.add(p, if p == 25 { Role::Other } else { Role::Control }, 33000, &icmp(3, 1));
        }
        assert_eq!(classify(&d, 0), Err(Exclusion::Dead));
        // Time exceeded says nothing about the port.
        let mut te = host();
        te.add(25, Role::Other, 33000, &icmp(11, 0));
        assert_eq!(classify(&te, 0), Err(Exclusion::Uninformative));
    }

    #[test]
    fn a_rst_over_another_ecmp_path_is_only_a_candidate_and_needs_two_own_flows() {
        // The host's own flows came over two paths (62 and 61): a RST on 25 at either is its own.
        let mut h = host();
        h.add(22, Role::Control, 33000, &o(2, 61));
        h.add(25, Role::Other, 33000, &o(2, 61));
        assert_eq!(classify(&h, 0), Ok(PortState::Closed));
        // At a TTL none of its flows came with: a candidate (the provider decides).
        let mut h = host();
        h.add(25, Role::Other, 33000, &o(2, 63));
        assert_eq!(classify(&h, 0), Ok(PortState::RstInjected));
        // One flow of its own proves nothing either way.
        let mut one = HostAcc::new(1, 0, false);
        one.add(80, Role::Control, 33000, &o(1, 62));
        one.add(25, Role::Other, 33000, &o(2, 63));
        assert_eq!(one.state(0), PortState::Unverified);
        // Reflection: the reflected RST over the other path than its twin's still passes.
        let mut r = host();
        r.add(22, Role::Control, 33000, &o(2, 61));
        r.add(40000, Role::Reflect, 25, &o(2, 61));
        r.add(40000, Role::Reflect, 2525, &o(2, 62));
        assert_eq!(classify_outbound(&r, 0), Ok(PortState::Passes));
    }

    #[test]
    fn reflection_compares_with_its_twin_and_the_neutral_control() {
        // The host RSTs its random port 40000 (the twin); reflection probes go there from our
        // ports 25, 465, 587 and the neutral 2525.
        let with = |r25: ReplyObs, r2525: ReplyObs| {
            let mut h = host();
            h.add(40000, Role::Reflect, 25, &r25);
            h.add(40000, Role::Reflect, 465, &o(2, 62));
            h.add(40000, Role::Reflect, 2525, &r2525);
            h
        };
        assert_eq!(classify_outbound(&with(o(2, 62), o(2, 62)), 0), Ok(PortState::Passes));
        assert_eq!(classify_outbound(&with(o(0, 0), o(2, 62)), 0), Ok(PortState::Silent));
        assert_eq!(classify_outbound(&with(o(2, 63), o(2, 62)), 0), Ok(PortState::RstInjected));
        let icmp = ReplyObs { reply: 3, ttl: 63, icmp_type: 3, icmp_code: 13, responder: 7 };
        assert_eq!(classify_outbound(&with(icmp, o(2, 62)), 0), Ok(PortState::IcmpProhibited));
        // The neutral port silent too: the host drops fixed source ports, not the provider.
        assert_eq!(classify_outbound(&with(o(0, 0), o(0, 0)), 0), Err(Exclusion::SourcePortFiltered));
        // 587 was not reflected.
        assert_eq!(classify_outbound(&with(o(2, 62), o(2, 62)), 2), Err(Exclusion::Uninformative));
        // The twin silent: silence of the reflection means nothing.
        let mut h = HostAcc::new(1, 0, false);
        h.add(80, Role::Control, 33000, &o(1, 62));
        h.add(40000, Role::Random, 33001, &o(0, 0));
        h.add(40000, Role::Reflect, 25, &o(0, 0));
        assert_eq!(classify_outbound(&h, 0), Err(Exclusion::Uninformative));
        // Rows in any order: the reflection before its twin.
        let mut h = HostAcc::new(1, 0, false);
        h.add(40000, Role::Reflect, 25, &o(0, 0));
        h.add(80, Role::Control, 33000, &o(1, 62));
        h.add(40000, Role::Random, 33001, &o(2, 62));
        assert_eq!(classify_outbound(&h, 0), Ok(PortState::Silent));
    }
}
