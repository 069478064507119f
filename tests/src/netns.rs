//! Builds and removes the lab: namespaces, veths, addresses, routes, sysctls, nftables, listeners.
//!
//! Layout (one run; NAME = `p25-<6 hex>`):
//!   NAME-v  (vantage, eth0) ── NAME-c (core/transit) ── NAME-b<i> (border i) ── NAME-h<i> (hosts i)
//!   NAME-v2 (a second vantage whose uplink drops outbound 25) ──┘
//! Veths are created inside the namespaces, so nothing of the lab ever exists in the root
//! namespace, and deleting the namespaces removes every veth and nftables table with them.

use crate::rules;
use crate::topology::{addr, Topology};
use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::net::SocketAddr;
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
    pub core: String,
    pub borders: Vec<String>,
    pub hosts: Vec<String>,
    pub vantage_if: String,
}

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
    let st = LabState {
        run_id: run_id.clone(),
        topology: std::fs::canonicalize(topo_path)?,
        vantage: format!("{name}-v"),
        vantage_blocked: format!("{name}-v2"),
        core: format!("{name}-c"),
        borders: (0..n).map(|i| format!("{name}-b{i}")).collect(),
        hosts: (0..n).map(|i| format!("{name}-h{i}")).collect(),
        namespaces: vec![],
        vantage_if: "eth0".into(),
    };
    let mut st = st;
    st.namespaces = [st.vantage.clone(), st.vantage_blocked.clone(), st.core.clone()]
        .into_iter()
        .chain(st.borders.iter().cloned())
        .chain(st.hosts.iter().cloned())
        .collect();
    // Saved first: `lab down` can clean up whatever a crash leaves.
    st.save(dir)?;
    match build(&topo, &st, dir) {
        Ok(()) => Ok(st),
        Err(e) => {
            let _ = down_state(&st);
            Err(e.context("lab up failed; everything it created was removed"))
        }
    }
}

fn build(topo: &Topology, st: &LabState, dir: &Path) -> Result<()> {
    for ns in &st.namespaces {
        run("ip", &["netns", "add", ns], None)?;
    }
    check_interrupt()?;
    // Test hook: fail half-way so the tests can check that nothing is left behind.
    if std::env::var("PORT25_LAB_FAIL_AFTER_NAMESPACES").is_ok() {
        bail!("failing on purpose (PORT25_LAB_FAIL_AFTER_NAMESPACES)");
    }
    let (v, v2, c) = (&st.vantage, &st.vantage_blocked, &st.core);
    // Vantages: only routes into the lab's documentation/benchmark ranges, no default route.
    let lab_routes = |gw4: std::net::Ipv4Addr, gw6: std::net::Ipv6Addr| -> Vec<String> {
        let mut l: Vec<String> = ["198.18.0.0/15", "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"]
            .iter()
            .map(|p| format!("route add {p} via {gw4}"))
            .collect();
        l.push(format!("route add 2001:db8::/32 via {gw6}"));
        l
    };
    ip_batch(v, &[format!("link add eth0 type veth peer name v0 netns {c}")])?;
    ip_batch(v2, &[format!("link add eth0 type veth peer name v2 netns {c}")])?;
    for (i, b) in st.borders.iter().enumerate() {
        ip_batch(c, &[format!("link add b{i} type veth peer name uplink netns {b}")])?;
        ip_batch(b, &[format!("link add dnlink type veth peer name uplink netns {}", st.hosts[i])])?;
    }
    let mut vl = vec![
        "link set lo up".into(),
        format!("addr add {}/30 dev eth0", addr::VANTAGE_V4),
        format!("addr add {}/64 dev eth0 nodad", addr::VANTAGE_V6),
        "link set eth0 up".into(),
    ];
    vl.extend(lab_routes(addr::CORE_V4, addr::CORE_V6));
    ip_batch(v, &vl)?;
    let mut vl2 = vec![
        "link set lo up".into(),
        format!("addr add {}/30 dev eth0", addr::VANTAGE2_V4),
        format!("addr add {}/64 dev eth0 nodad", addr::VANTAGE2_V6),
        "link set eth0 up".into(),
    ];
    vl2.extend(lab_routes(addr::CORE2_V4, addr::CORE2_V6));
    ip_batch(v2, &vl2)?;

    let mut cl: Vec<String> = vec![
        "link set lo up".into(),
        format!("addr add {}/30 dev v0", addr::CORE_V4),
        format!("addr add {}/64 dev v0 nodad", addr::CORE_V6),
        "link set v0 up".into(),
        format!("addr add {}/30 dev v2", addr::CORE2_V4),
        format!("addr add {}/64 dev v2 nodad", addr::CORE2_V6),
        "link set v2 up".into(),
    ];
    for (i, p) in topo.providers.iter().enumerate() {
        let (c4, b4) = addr::core_border_v4(i);
        let (c6, b6) = addr::core_border_v6(i);
        cl.push(format!("addr add {c4}/29 dev b{i}"));
        cl.push(format!("addr add {c6}/64 dev b{i} nodad"));
        cl.push(format!("link set b{i} up"));
        let (bh4, h4) = addr::border_hosts_v4(i);
        let (bh6, h6) = addr::border_hosts_v6(i);
        cl.push(format!("route add {}/29 via {b4}", std::net::Ipv4Addr::from(u32::from(bh4) - 1)));
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
        let mut hl: Vec<String> = vec![
            "link set lo up".into(),
            format!("addr add {h4}/29 dev uplink"),
            format!("addr add {h6}/64 dev uplink nodad"),
            "link set uplink up".into(),
            format!("route add default via {bh4}"),
            format!("route add ::/0 via {bh6}"),
        ];
        for a in &p.ases {
            for n in &a.v4 {
                cl.push(format!("route add {n} via {b4}"));
                bl.push(format!("route add {n} via {h4}"));
                // AnyIP: the hosts namespace owns every address of the prefix.
                hl.push(format!("route add local {n} dev lo"));
            }
            for n in &a.v6 {
                cl.push(format!("route add {n} via {b6}"));
                bl.push(format!("route add {n} via {h6}"));
                hl.push(format!("route add local {n} dev lo"));
            }
        }
        ip_batch(&st.borders[i], &bl)?;
        ip_batch(&st.hosts[i], &hl)?;
    }
    ip_batch(c, &cl)?;
    check_interrupt()?;

    // Routers forward and answer with ICMP as fast as asked, so ICMP policies are exact.
    let fwd = [
        "net.ipv4.ip_forward=1",
        "net.ipv6.conf.all.forwarding=1",
        "net.ipv4.icmp_ratelimit=0",
        "net.ipv6.icmp.ratelimit=0",
        "net.ipv4.icmp_msgs_per_sec=100000000",
        "net.ipv4.icmp_msgs_burst=100000000",
    ];
    sysctl(c, &fwd)?;
    for (i, p) in topo.providers.iter().enumerate() {
        sysctl(&st.borders[i], &fwd)?;
        if let Some(ms) = p.border.icmp_ratelimit_ms {
            let (a, b) = (format!("net.ipv4.icmp_ratelimit={ms}"), format!("net.ipv6.icmp.ratelimit={ms}"));
            sysctl(&st.borders[i], &[&a, &b, "net.ipv4.icmp_msgs_per_sec=1000", "net.ipv4.icmp_msgs_burst=50"])?;
        }
        sysctl(&st.hosts[i], &["net.ipv4.ip_nonlocal_bind=1", "net.ipv6.ip_nonlocal_bind=1", "net.core.somaxconn=4096"])?;
    }
    check_interrupt()?;

    in_ns(c, "nft", &["-f", "-"], Some(&(rules::core(&topo.providers) + &rules::blocked_uplink("v2"))))?;
    // The listeners are `lab serve`; from a test binary, find the lab binary beside it.
    let exe = match std::env::current_exe()? {
        e if e.file_name().is_some_and(|n| n == "lab") => e,
        _ => crate::demo::sibling("lab")?,
    };
    let exe = exe.to_str().ok_or_else(|| anyhow!("non-UTF-8 path"))?;
    let topo_s = st.topology.to_str().unwrap();
    let mut waits = vec![];
    for (i, p) in topo.providers.iter().enumerate() {
        in_ns(&st.borders[i], "nft", &["-f", "-"], Some(&rules::border(p)))?;
        let hosts = topo.hosts_of(i);
        in_ns(&st.hosts[i], "nft", &["-f", "-"], Some(&rules::hosts(&hosts)))?;
        for (ns, role) in [(&st.hosts[i], "hosts"), (&st.borders[i], "border")] {
            if role == "border" && !p.border.synack_all {
                continue;
            }
            let ready = dir.join(format!("ready-{ns}"));
            let _ = std::fs::remove_file(&ready);
            let log = std::fs::File::create(dir.join(format!("serve-{ns}.log")))?;
            let mut cmd = Command::new("ip");
            cmd.args(["netns", "exec", ns, exe, "serve", "--topology", topo_s, "--provider", &i.to_string(), "--role", role])
                .arg("--ready")
                .arg(&ready)
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log);
            // Own session: the listeners outlive `lab up` and ignore the terminal's Ctrl-C.
            use std::os::unix::process::CommandExt;
            // SAFETY: setsid is async-signal-safe and only affects the child.
            unsafe {
                cmd.pre_exec(|| {
                    libc::setsid();
                    Ok(())
                });
            }
            cmd.spawn().context("starting a lab listener")?;
            waits.push(ready);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for r in waits {
        while !r.exists() {
            check_interrupt()?;
            if Instant::now() > deadline {
                bail!("listener did not become ready: {} (see serve-*.log in {})", r.display(), dir.display());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    Ok(())
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
