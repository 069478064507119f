//! Builds and removes the lab: namespaces, veths, addresses, routes, sysctls, nftables, listeners.
//!
//! Layout (one run; NAME = `p25-<6 hex>`):
//!   NAME-v  (vantage, eth0) ── NAME-c (core/transit) ── NAME-b<i> (border i) ── NAME-h<i> (hosts i)
//!   NAME-v2 (a second vantage whose uplink drops outbound 25) ──┘
//! Veths are created inside the namespaces, so nothing of the lab ever exists in the root
//! namespace, and deleting the namespaces removes every veth and nftables table with them.

use crate::rules;
use crate::topology::{addr, Customer, Topology};
use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Set by a Ctrl-C handler; `up` checks it between steps and tears down.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabState {
    pub run_id: String,
    pub topology: PathBuf,
    pub namespaces: Vec<String>,
    pub vantage: String,
    pub vantage_blocked: String,
    /// A second measuring vantage elsewhere on the core ("" when the topology needs none).
    #[serde(default)]
    pub vantage_alt: String,
    pub core: String,
    pub borders: Vec<String>,
    pub hosts: Vec<String>,
    pub vantage_if: String,
    /// The sink's namespace (`crawler sink` on the lab Internet, attached to the core).
    #[serde(default)]
    pub sink: String,
    /// The SHA-256 pin of the sink's certificate, as the sink printed it at start.
    #[serde(default)]
    pub sink_pin: String,
    /// A second sink in another network ("" when the topology has one sink), and its pin.
    #[serde(default)]
    pub sink2: String,
    #[serde(default)]
    pub sink2_pin: String,
    /// A measuring vantage whose uplink drops packets to port 25 ("" when the topology has none).
    #[serde(default)]
    pub vantage_blind: String,
    /// Spine routers of providers with an ECMP fabric ("" for the others), by provider.
    #[serde(default)]
    pub spines: Vec<String>,
    /// Customer vantages behind provider borders, where `crawler egress` runs.
    #[serde(default)]
    pub customers: Vec<CustomerNs>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CustomerNs {
    pub ns: String,
    pub vantage: Customer,
}

/// `setpriv` arguments that run a command as nobody, with no groups and no capabilities.
pub const AS_NOBODY: [&str; 4] = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"];
pub const NOBODY_ID: u32 = 65534;

impl LabState {
    pub fn load(dir: &Path) -> Result<LabState> {
        let p = dir.join("lab.json");
        let t = std::fs::read_to_string(&p).with_context(|| format!("no lab state at {} (is the lab up?)", p.display()))?;
        Ok(serde_json::from_str(&t).with_context(|| format!("{}: bad lab state", p.display()))?)
    }
    fn save(&self, dir: &Path) -> Result<()> {
        std::fs::write(dir.join("lab.json"), serde_json::to_string_pretty(self)?)?;
        Ok(())
    }
}

pub fn run(prog: &str, args: &[&str], stdin: Option<&str>) -> Result<String> {
    let mut cmd = Command::new(prog);
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    let mut child = cmd.spawn().with_context(|| format!("cannot run `{prog}`"))?;
    if let Some(text) = stdin {
        child.stdin.take().unwrap().write_all(text.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("`{prog} {}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ip_batch(ns: &str, lines: &[String]) -> Result<()> {
    let text = lines.join("\n") + "\n";
    run("ip", &["-n", ns, "-batch", "-"], Some(&text)).with_context(|| format!("configuring namespace {ns}"))?;
    Ok(())
}

fn in_ns(ns: &str, prog: &str, args: &[&str], stdin: Option<&str>) -> Result<String> {
    let mut a = vec!["netns", "exec", ns, prog];
    a.extend_from_slice(args);
    run("ip", &a, stdin)
}

fn sysctl(ns: &str, kv: &[&str]) -> Result<()> {
    let mut a = vec!["-q", "-w"];
    a.extend_from_slice(kv);
    in_ns(ns, "sysctl", &a, None).map(|_| ())
}

/// The lab needs root, iproute2 and nftables; say how to get them.
pub fn preflight() -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the lab needs root (network namespaces, nftables): run it with sudo or as root");
    }
    for (tool, pkg) in [("ip", "iproute2"), ("nft", "nftables")] {
        if Command::new(tool).arg("-V").stdout(Stdio::null()).stderr(Stdio::null()).status().is_err() {
            bail!("`{tool}` not found: install it with `apt-get install {pkg}`");
        }
    }
    Ok(())
}

fn check_interrupt() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

/// Bring the lab up. On any failure (or Ctrl-C) everything created so far is removed.
pub fn up(topo_path: &Path, dir: &Path) -> Result<LabState> {
    preflight()?;
    let topo = Topology::load(topo_path)?;
    std::fs::create_dir_all(dir)?;
    let run_id = format!("{:06x}", rand::random::<u32>() & 0xff_ffff);
    let name = format!("p25-{run_id}");
    let n = topo.providers.len();
    let mut st = LabState {
        run_id: run_id.clone(),
        topology: std::fs::canonicalize(topo_path)?,
        vantage: format!("{name}-v"),
        vantage_blocked: format!("{name}-v2"),
        vantage_alt: if topo.has_alt_vantage() { format!("{name}-v3") } else { String::new() },
        core: format!("{name}-c"),
        borders: (0..n).map(|i| format!("{name}-b{i}")).collect(),
        hosts: (0..n).map(|i| format!("{name}-h{i}")).collect(),
        namespaces: vec![],
        vantage_if: "eth0".into(),
        // A sink only serves customer vantages: a lab without them has none.
        sink: if topo.customers().is_empty() { String::new() } else { format!("{name}-s") },
        sink_pin: String::new(),
        sink2: if topo.customers().is_empty() || topo.sinks < 2 { String::new() } else { format!("{name}-s2") },
        sink2_pin: String::new(),
        vantage_blind: if topo.blind_vantage { format!("{name}-vb") } else { String::new() },
        spines: topo.providers.iter().enumerate().map(|(i, p)| if p.border.ecmp { format!("{name}-p{i}") } else { String::new() }).collect(),
        customers: topo.customers().into_iter().enumerate().map(|(g, c)| CustomerNs { ns: format!("{name}-e{g}"), vantage: c }).collect(),
    };
    st.namespaces = [st.vantage.clone(), st.vantage_blocked.clone(), st.vantage_alt.clone(), st.vantage_blind.clone(), st.core.clone(), st.sink.clone(), st.sink2.clone()]
        .into_iter()
        .chain(st.spines.iter().cloned())
        .filter(|ns| !ns.is_empty())
        .chain(st.borders.iter().cloned())
        .chain(st.hosts.iter().cloned())
        .chain(st.customers.iter().map(|c| c.ns.clone()))
        .collect();
    // Saved first: `lab down` can clean up whatever a crash leaves.
    st.save(dir)?;
    match build(&topo, &st, dir) {
        Ok((pin, pin2)) => {
            (st.sink_pin, st.sink2_pin) = (pin, pin2);
            st.save(dir)?;
            Ok(st)
        }
        Err(e) => {
            let _ = down_state(&st);
            Err(e.context("lab up failed; everything it created was removed"))
        }
    }
}

/// Routes into the lab's documentation/benchmark ranges only, never a default route.
fn lab_routes(gw4: Ipv4Addr, gw6: Ipv6Addr) -> Vec<String> {
    let mut l: Vec<String> = ["198.18.0.0/15", "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"].iter().map(|p| format!("route add {p} via {gw4}")).collect();
    l.push(format!("route add 2001:db8::/32 via {gw6}"));
    l
}

/// A leaf namespace's side of a link: loopback, the addresses on `eth0`, lab routes via `gw`.
fn leaf(v4: Ipv4Addr, len4: u8, v6: Ipv6Addr, gw4: Ipv4Addr, gw6: Ipv6Addr) -> Vec<String> {
    let mut l = vec!["link set lo up".into(), format!("addr add {v4}/{len4} dev eth0"), format!("addr add {v6}/64 dev eth0 nodad"), "link set eth0 up".into()];
    l.extend(lab_routes(gw4, gw6));
    l
}

/// Returns the sinks' certificate pins.
fn build(topo: &Topology, st: &LabState, dir: &Path) -> Result<(String, String)> {
    for ns in &st.namespaces {
        run("ip", &["netns", "add", ns], None)?;
        // A router on the Internet has had its link-local addresses and neighbours for months;
        // a fresh namespace's veths would spend their first second in duplicate address
        // detection, and the neighbour discovery that waits for it drops the first packets of a
        // crawl (IPv6 lost ~1 s of first attempts, which the retries then answered — a gap that
        // read as a scan ban). Interfaces created from here on skip it, as on a warm router.
        if !topo.cold_ipv6 {
            sysctl(ns, &["net.ipv6.conf.default.accept_dad=0", "net.ipv6.conf.all.accept_dad=0"])?;
        }
    }
    check_interrupt()?;
    // Test hook: fail half-way so the tests can check that nothing is left behind.
    if std::env::var("PORT25_LAB_FAIL_AFTER_NAMESPACES").is_ok() {
        bail!("failing on purpose (PORT25_LAB_FAIL_AFTER_NAMESPACES)");
    }
    let mut cl = link_vantages(st)?;
    cl.extend(link_providers(topo, st)?);
    if !st.sink.is_empty() {
        cl.extend(link_sink(&st.sink, st, "s0", addr::CORE_SINK_V4, addr::SINK_V4, addr::CORE_SINK_V6, addr::SINK_V6)?);
    }
    if !st.sink2.is_empty() {
        cl.extend(link_sink(&st.sink2, st, "s1", addr::CORE_SINK2_V4, addr::SINK2_V4, addr::CORE_SINK2_V6, addr::SINK2_V6)?);
    }
    cl.extend(link_customers(st)?);
    ip_batch(&st.core, &cl)?;
    check_interrupt()?;
    link_spines(topo, st)?;
    blackholes(topo, st)?;
    sysctls(topo, st)?;
    check_interrupt()?;
    let blind = (!st.vantage_blind.is_empty()).then_some(BLIND_IFACE);
    in_ns(&st.core, "nft", &["-f", "-"], Some(&(rules::core(&topo.providers, ALT_IFACE) + &rules::blocked_uplink("v2", blind))))?;
    for (i, p) in topo.providers.iter().enumerate() {
        let customers: Vec<&Customer> = st.customers.iter().map(|c| &c.vantage).filter(|c| c.provider == i).collect();
        in_ns(&st.borders[i], "nft", &["-f", "-"], Some(&rules::border(p, &customers)))?;
        in_ns(&st.hosts[i], "nft", &["-f", "-"], Some(&rules::hosts(&topo.hosts_of(i))))?;
    }
    let waits = start_listeners(topo, st, dir)?;
    let pin = if st.sink.is_empty() { String::new() } else { start_sink(&st.sink, 1, dir)? };
    let pin2 = if st.sink2.is_empty() { String::new() } else { start_sink(&st.sink2, 2, dir)? };
    wait_ready(&waits, dir)?;
    Ok((pin, pin2))
}

/// The core's interface towards the second measuring vantage.
const ALT_IFACE: &str = "v3";
/// The core's interface towards the reflection-blind vantage.
const BLIND_IFACE: &str = "vb";

/// The scan vantage, the blocked vantage, the second measuring vantage (when the topology has
/// path filters), and the core's side of their links.
fn link_vantages(st: &LabState) -> Result<Vec<String>> {
    let (v, v2, c) = (&st.vantage, &st.vantage_blocked, &st.core);
    ip_batch(v, &[format!("link add eth0 type veth peer name v0 netns {c}")])?;
    ip_batch(v2, &[format!("link add eth0 type veth peer name v2 netns {c}")])?;
    ip_batch(v, &leaf(addr::VANTAGE_V4, 30, addr::VANTAGE_V6, addr::CORE_V4, addr::CORE_V6))?;
    ip_batch(v2, &leaf(addr::VANTAGE2_V4, 30, addr::VANTAGE2_V6, addr::CORE2_V4, addr::CORE2_V6))?;
    let mut cl: Vec<String> = vec![
        "link set lo up".into(),
        format!("addr add {}/30 dev v0", addr::CORE_V4),
        format!("addr add {}/64 dev v0 nodad", addr::CORE_V6),
        "link set v0 up".into(),
        format!("addr add {}/30 dev v2", addr::CORE2_V4),
        format!("addr add {}/64 dev v2 nodad", addr::CORE2_V6),
        "link set v2 up".into(),
    ];
    if !st.vantage_blind.is_empty() {
        let vb = &st.vantage_blind;
        ip_batch(vb, &[format!("link add eth0 type veth peer name {BLIND_IFACE} netns {c}")])?;
        ip_batch(vb, &leaf(addr::BLIND_V4, 30, addr::BLIND_V6, addr::CORE_BLIND_V4, addr::CORE_BLIND_V6))?;
        cl.extend([
            format!("addr add {}/30 dev {BLIND_IFACE}", addr::CORE_BLIND_V4),
            format!("addr add {}/64 dev {BLIND_IFACE} nodad", addr::CORE_BLIND_V6),
            format!("link set {BLIND_IFACE} up"),
        ]);
    }
    if !st.vantage_alt.is_empty() {
        let v3 = &st.vantage_alt;
        ip_batch(v3, &[format!("link add eth0 type veth peer name {ALT_IFACE} netns {c}")])?;
        ip_batch(v3, &leaf(addr::ALT_V4, 30, addr::ALT_V6, addr::CORE_ALT_V4, addr::CORE_ALT_V6))?;
        cl.extend([
            format!("addr add {}/30 dev {ALT_IFACE}", addr::CORE_ALT_V4),
            format!("addr add {}/64 dev {ALT_IFACE} nodad", addr::CORE_ALT_V6),
            format!("link set {ALT_IFACE} up"),
        ]);
    }
    Ok(cl)
}

/// Per provider: core ↔ border ↔ hosts, the hosts' prefixes (AnyIP); the core's lines.
fn link_providers(topo: &Topology, st: &LabState) -> Result<Vec<String>> {
    let mut cl = Vec::new();
    for (i, p) in topo.providers.iter().enumerate() {
        let b = &st.borders[i];
        ip_batch(&st.core, &[format!("link add b{i} type veth peer name uplink netns {b}")])?;
        ip_batch(b, &[format!("link add dnlink type veth peer name uplink netns {}", st.hosts[i])])?;
        let (c4, b4) = addr::core_border_v4(i);
        let (c6, b6) = addr::core_border_v6(i);
        cl.push(format!("addr add {c4}/29 dev b{i}"));
        cl.push(format!("addr add {c6}/64 dev b{i} nodad"));
        cl.push(format!("link set b{i} up"));
        let (bh4, h4) = addr::border_hosts_v4(i);
        let (bh6, h6) = addr::border_hosts_v6(i);
        cl.push(format!("route add {}/29 via {b4}", Ipv4Addr::from(u32::from(bh4) - 1)));
        cl.push(format!("route add {}/64 via {b6}", ipnet::Ipv6Net::new(bh6, 64).unwrap().network()));
        let mut bl: Vec<String> = vec![
            "link set lo up".into(),
            format!("addr add {b4}/29 dev uplink"),
            format!("addr add {b6}/64 dev uplink nodad"),
            "link set uplink up".into(),
            format!("addr add {bh4}/29 dev dnlink"),
            format!("addr add {bh6}/64 dev dnlink nodad"),
            "link set dnlink up".into(),
            format!("route add default via {c4}"),
            format!("route add ::/0 via {c6}"),
        ];
        let mut hl: Vec<String> = vec!["link set lo up".into(), format!("addr add {h4}/29 dev uplink"), format!("addr add {h6}/64 dev uplink nodad"), "link set uplink up".into()];
        if !p.border.ecmp {
            hl.push(format!("route add default via {bh4}"));
            hl.push(format!("route add ::/0 via {bh6}"));
        }
        let nets = p.ases.iter().flat_map(|a| a.v4.iter().map(|n| (n.to_string(), b4.to_string(), h4.to_string())).chain(a.v6.iter().map(|n| (n.to_string(), b6.to_string(), h6.to_string()))));
        for (n, via_border, via_hosts) in nets {
            cl.push(format!("route add {n} via {via_border}"));
            bl.push(format!("route add {n} via {via_hosts}"));
            // AnyIP: the hosts namespace owns every address of the prefix.
            hl.push(format!("route add local {n} dev lo"));
        }
        ip_batch(b, &bl)?;
        ip_batch(&st.hosts[i], &hl)?;
    }
    Ok(cl)
}

/// A sink on the lab Internet: a leaf of the core, like a researcher's VM at a carrier.
fn link_sink(ns: &str, st: &LabState, iface: &str, core4: Ipv4Addr, sink4: Ipv4Addr, core6: Ipv6Addr, sink6: Ipv6Addr) -> Result<Vec<String>> {
    ip_batch(ns, &[format!("link add eth0 type veth peer name {iface} netns {}", st.core)])?;
    ip_batch(ns, &leaf(sink4, 29, sink6, core4, core6))?;
    Ok(vec![format!("addr add {core4}/29 dev {iface}"), format!("addr add {core6}/64 dev {iface} nodad"), format!("link set {iface} up")])
}

/// A provider's ECMP fabric: a spine router between its hosts and its border, and the hosts'
/// default routes over both paths, hashed per flow on the ports (L4), so one host's replies
/// take the direct path or the one a hop longer depending on the flow.
fn link_spines(topo: &Topology, st: &LabState) -> Result<()> {
    for (i, p) in topo.providers.iter().enumerate().filter(|(_, p)| p.border.ecmp) {
        let (sp, b, h) = (&st.spines[i], &st.borders[i], &st.hosts[i]);
        ip_batch(b, &[format!("link add spine type veth peer name sup netns {sp}")])?;
        ip_batch(h, &[format!("link add spine type veth peer name sdown netns {sp}")])?;
        let (b4, up4, down4, h4) = addr::spine_v4(i);
        let (b6, up6, down6, h6) = addr::spine_v6(i);
        ip_batch(b, &[format!("addr add {b4}/30 dev spine"), format!("addr add {b6}/64 dev spine nodad"), "link set spine up".into()])?;
        let mut sl = vec![
            "link set lo up".to_string(),
            format!("addr add {up4}/30 dev sup"),
            format!("addr add {up6}/64 dev sup nodad"),
            "link set sup up".into(),
            format!("addr add {down4}/30 dev sdown"),
            format!("addr add {down6}/64 dev sdown nodad"),
            "link set sdown up".into(),
            format!("route add default via {b4}"),
            format!("route add ::/0 via {b6}"),
        ];
        for a in &p.ases {
            sl.extend(a.v4.iter().map(|n| format!("route add {n} via {h4}")));
            sl.extend(a.v6.iter().map(|n| format!("route add {n} via {h6}")));
        }
        ip_batch(sp, &sl)?;
        let (bh4, _) = addr::border_hosts_v4(i);
        let (bh6, _) = addr::border_hosts_v6(i);
        ip_batch(
            h,
            &[
                format!("addr add {h4}/30 dev spine"),
                format!("addr add {h6}/64 dev spine nodad"),
                "link set spine up".into(),
                format!("route add default nexthop via {bh4} dev uplink nexthop via {down4} dev spine"),
                format!("route add ::/0 nexthop via {bh6} dev uplink nexthop via {down6} dev spine"),
            ],
        )?;
    }
    Ok(())
}

/// Borders that null-route the first sink: a blackhole route for each of its addresses.
fn blackholes(topo: &Topology, st: &LabState) -> Result<()> {
    for (i, _) in topo.providers.iter().enumerate().filter(|(_, p)| p.border.blackhole_sink) {
        ip_batch(&st.borders[i], &[format!("route add blackhole {}/32", addr::SINK_V4), format!("route add blackhole {}/128", addr::SINK_V6)])?;
    }
    Ok(())
}

/// Customer vantages behind their provider's border (`vc<k>` there, `eth0` in the vantage);
/// the core routes their prefixes to the border, like the provider's other space.
fn link_customers(st: &LabState) -> Result<Vec<String>> {
    let mut cl = Vec::new();
    for cns in &st.customers {
        let c = &cns.vantage;
        let b = &st.borders[c.provider];
        let ifc = c.iface();
        ip_batch(b, &[format!("link add {ifc} type veth peer name eth0 netns {}", cns.ns)])?;
        ip_batch(b, &[format!("addr add {}/29 dev {ifc}", c.gw_v4), format!("addr add {}/64 dev {ifc} nodad", c.gw_v6), format!("link set {ifc} up")])?;
        ip_batch(&cns.ns, &leaf(c.v4, 29, c.v6, c.gw_v4, c.gw_v6))?;
        cl.push(format!("route add {} via {}", c.v4_net, addr::core_border_v4(c.provider).1));
        cl.push(format!("route add {} via {}", c.v6_net, addr::core_border_v6(c.provider).1));
    }
    Ok(cl)
}

/// A router's ICMP error rate limit: Linux's per-destination token bucket (one error per `ms`
/// after a burst of 6) and its host-wide cap (1,000 a second, burst 50) — the kernel defaults,
/// as on real routers; `ms = 0` turns both off, so ICMP policies are answered exactly.
fn icmp_limits(ms: u32) -> Vec<String> {
    let (per_sec, burst) = if ms == 0 { (100_000_000, 100_000_000) } else { (1000, 50) };
    vec![
        format!("net.ipv4.icmp_ratelimit={ms}"),
        format!("net.ipv6.icmp.ratelimit={ms}"),
        format!("net.ipv4.icmp_msgs_per_sec={per_sec}"),
        format!("net.ipv4.icmp_msgs_burst={burst}"),
    ]
}

fn sysctls(topo: &Topology, st: &LabState) -> Result<()> {
    let router = |ms: u32| -> Vec<String> { ["net.ipv4.ip_forward=1".to_string(), "net.ipv6.conf.all.forwarding=1".into()].into_iter().chain(icmp_limits(ms)).collect() };
    fn as_refs(v: &[String]) -> Vec<&str> {
        v.iter().map(|s| s.as_str()).collect()
    }
    sysctl(&st.core, &as_refs(&router(topo.icmp_ratelimit_ms)))?;
    for (i, p) in topo.providers.iter().enumerate() {
        sysctl(&st.borders[i], &as_refs(&router(topo.border_icmp_ratelimit(p))))?;
        sysctl(&st.hosts[i], &["net.ipv4.ip_nonlocal_bind=1", "net.ipv6.ip_nonlocal_bind=1", "net.core.somaxconn=4096"])?;
        if p.border.ecmp {
            // Per-flow hashing on the ports (L4), as data-centre fabrics do; the border takes
            // its hosts' traffic from both links.
            sysctl(&st.hosts[i], &["net.ipv4.fib_multipath_hash_policy=1", "net.ipv6.fib_multipath_hash_policy=1"])?;
            sysctl(&st.spines[i], &as_refs(&router(topo.border_icmp_ratelimit(p))))?;
            sysctl(&st.borders[i], &["net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.spine.rp_filter=0", "net.ipv4.conf.dnlink.rp_filter=0"])?;
        }
    }
    // The sinks run as nobody: in their own namespaces, every port may be bound without
    // privilege (the per-namespace equivalent of the deployment's CAP_NET_BIND_SERVICE).
    for s in [&st.sink, &st.sink2].into_iter().filter(|s| !s.is_empty()) {
        sysctl(s, &["net.ipv4.ip_unprivileged_port_start=0"])?;
    }
    Ok(())
}

/// Start `argv` inside `ns` in its own session (it outlives `lab up` and ignores the
/// terminal's Ctrl-C), output to `log`.
fn spawn_daemon(ns: &str, argv: &[&str], log: &Path) -> Result<()> {
    let log = std::fs::File::create(log)?;
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns]).args(argv).stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
    use std::os::unix::process::CommandExt;
    // SAFETY: setsid is async-signal-safe and only affects the child.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    cmd.spawn().with_context(|| format!("starting {} in {ns}", argv[0]))?;
    Ok(())
}

/// This `lab` binary (from a test binary: the one beside it).
fn lab_exe() -> Result<String> {
    let exe = match std::env::current_exe()? {
        e if e.file_name().is_some_and(|n| n == "lab") => e,
        _ => crate::demo::sibling("lab")?,
    };
    Ok(exe.to_str().ok_or_else(|| anyhow!("non-UTF-8 path"))?.to_string())
}

/// The hosts' listening sockets (`lab serve`), SYN-ACK-all middleboxes and the borders'
/// proxies (`lab proxy`); the ready files to wait for.
fn start_listeners(topo: &Topology, st: &LabState, dir: &Path) -> Result<Vec<PathBuf>> {
    let exe = lab_exe()?;
    let topo_s = st.topology.to_str().unwrap();
    let mut waits = vec![];
    for (i, p) in topo.providers.iter().enumerate() {
        let pi = i.to_string();
        for (ns, role) in [(&st.hosts[i], "hosts"), (&st.borders[i], "border")] {
            if role == "border" && !p.border.synack_all {
                continue;
            }
            let ready = dir.join(format!("ready-{ns}"));
            let _ = std::fs::remove_file(&ready);
            spawn_daemon(ns, &[&exe, "serve", "--topology", topo_s, "--provider", &pi, "--role", role, "--ready", ready.to_str().unwrap()], &dir.join(format!("serve-{ns}.log")))?;
            waits.push(ready);
        }
        if p.border.needs_proxy() {
            let ready = dir.join(format!("ready-proxy-{}", st.borders[i]));
            let _ = std::fs::remove_file(&ready);
            let mut modes: Vec<&str> = [false, true].iter().flat_map(|v6| p.border.out_entries(*v6)).filter_map(|(_, o)| crate::proxy::Mode::of(o)).map(|m| m.as_str()).collect();
            modes.sort_unstable();
            modes.dedup();
            let name = format!("smtp.{}.lab.example", p.org_id.to_ascii_lowercase().trim_start_matches("org-"));
            let argv = [exe.as_str(), "proxy", "--modes", &modes.join(","), "--name", &name, "--ready", ready.to_str().unwrap()];
            spawn_daemon(&st.borders[i], &argv, &dir.join(format!("proxy-{}.log", st.borders[i])))?;
            waits.push(ready);
        }
    }
    Ok(waits)
}

fn wait_ready(waits: &[PathBuf], dir: &Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    for r in waits {
        while !r.exists() {
            check_interrupt()?;
            if Instant::now() > deadline {
                bail!("listener did not become ready: {} (see serve-*.log and proxy-*.log in {})", r.display(), dir.display());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    Ok(())
}

/// The output directory of sink `n` (1 or 2) in the lab's state directory.
pub fn sink_dir(dir: &Path, n: usize) -> PathBuf {
    dir.join(if n == 2 { "sink2" } else { "sink" })
}

/// `crawler sink` number `n` in namespace `ns`, as nobody, writing `sink_dir`; returns the pin
/// it announced (what a researcher publishes to volunteers).
fn start_sink(ns: &str, n: usize, dir: &Path) -> Result<String> {
    let out = sink_dir(dir, n);
    // This lab's records only: a sink of an earlier lab in the same state directory is gone.
    let _ = std::fs::remove_dir_all(&out);
    crate::demo::nobody_dir(&out)?;
    let crawler = crate::demo::runnable_by_nobody("crawler", dir)?;
    let (v4, v6) = addr::sink(n);
    let (v4, v6) = (v4.to_string(), v6.to_string());
    let ports = addr::SINK_PORTS.map(|p| p.to_string()).join(",");
    let name = if n == 2 { "lab-sink-2" } else { "lab-sink" };
    let mut argv: Vec<&str> = AS_NOBODY.to_vec();
    argv.extend([crawler.to_str().unwrap(), "sink", "--listen", &v4, &v6, "--ports", &ports, "--name", name, "--out", out.to_str().unwrap()]);
    let log = dir.join(if n == 2 { "sink2.log" } else { "sink.log" });
    spawn_daemon(ns, &argv, &log)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(pin) = text.lines().find_map(|l| l.split("certificate SHA-256 pin ").nth(1)).and_then(|r| r.split_whitespace().next()) {
            return Ok(pin.trim_end_matches(':').to_string());
        }
        check_interrupt()?;
        if Instant::now() > deadline {
            bail!("the lab's sink did not start: {}", text.trim());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Stop the sinks with SIGTERM, so that they publish their last Parquet files, and wait for
/// them. Returns whether a sink was running.
pub fn stop_sink(st: &LabState) -> Result<bool> {
    // Only the sinks: other servers may share the namespace (a test's SeaweedFS does).
    let is_sink = |pid: &i32| std::fs::read_to_string(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.split('\0').any(|a| a == "sink"));
    let pids = |ns: &str| -> Vec<i32> { run("ip", &["netns", "pids", ns], None).unwrap_or_default().split_whitespace().filter_map(|p| p.parse().ok()).filter(is_sink).collect() };
    let mut any = false;
    for ns in [&st.sink, &st.sink2].into_iter().filter(|s| !s.is_empty()) {
        let running = pids(ns);
        for pid in &running {
            // SAFETY: kill(2) on a pid that lives in our own lab namespace.
            unsafe {
                libc::kill(*pid, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        while !pids(ns).is_empty() {
            if Instant::now() > deadline {
                bail!("the lab's sink in {ns} did not stop within 15 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        any |= !running.is_empty();
    }
    Ok(any)
}

/// Socket addresses `lab serve` binds for provider `pi` in the given role.
pub fn serve_addrs(topo: &Topology, pi: usize, role: &str) -> Vec<SocketAddr> {
    let catch_all = || -> Vec<SocketAddr> {
        vec![
            SocketAddr::new(std::net::Ipv4Addr::UNSPECIFIED.into(), addr::CATCH_ALL_PORT),
            SocketAddr::new(std::net::Ipv6Addr::UNSPECIFIED.into(), addr::CATCH_ALL_PORT),
        ]
    };
    if role == "border" {
        return catch_all();
    }
    let hosts = topo.hosts_of(pi);
    let mut out: Vec<SocketAddr> = hosts.iter().filter(|h| !h.dead).flat_map(|h| h.open.iter().map(|p| SocketAddr::new(h.ip, *p))).collect();
    if hosts.iter().any(|h| !h.dead && h.all_ports) {
        out.extend(catch_all());
    }
    out
}

fn down_state(st: &LabState) -> Result<Vec<String>> {
    // The sink first and gently: its last file is published on SIGTERM.
    if let Err(e) = stop_sink(st) {
        eprintln!("lab down: {e:#}");
    }
    for ns in &st.namespaces {
        if let Ok(pids) = run("ip", &["netns", "pids", ns], None) {
            for pid in pids.split_whitespace().filter_map(|p| p.parse::<i32>().ok()) {
                // SAFETY: kill(2) on a pid that lives in our own lab namespace.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
        let _ = run("ip", &["netns", "del", ns], None);
    }
    leftovers(&st.run_id)
}

/// Namespaces of run `run_id` still present.
pub fn leftovers(run_id: &str) -> Result<Vec<String>> {
    let list = run("ip", &["netns", "list"], None)?;
    let tag = format!("p25-{run_id}-");
    Ok(list.lines().filter_map(|l| l.split_whitespace().next()).filter(|n| n.starts_with(&tag)).map(String::from).collect())
}

/// Take the lab described by `dir/lab.json` down; returns what could not be removed.
pub fn down(dir: &Path) -> Result<Vec<String>> {
    let st = LabState::load(dir)?;
    let left = down_state(&st)?;
    let _ = std::fs::remove_file(dir.join("lab.json"));
    Ok(left)
}

/// Run a command inside a lab namespace, inheriting stdio; returns its exit status.
pub fn exec(ns: &str, argv: &[String]) -> Result<std::process::ExitStatus> {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns]).args(argv);
    Ok(cmd.status()?)
}
