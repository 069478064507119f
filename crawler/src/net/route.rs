//! Where probes leave from: interface, its MAC, source addresses and the gateway's MAC.
//! Asked of the kernel once at start through iproute2 (`ip route get`, `ip neigh`), so the
//! crawler sends exactly where the kernel would route, with no routing code of its own.

use anyhow::{bail, Context, Result};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Route {
    pub ifname: String,
    pub src: IpAddr,
    pub gateway: Option<IpAddr>,
    pub local: bool,
}

#[derive(Debug, Clone)]
pub struct NetInfo {
    pub ifname: String,
    pub ifindex: i32,
    pub mac: [u8; 6],
    pub src4: Option<Ipv4Addr>,
    pub src6: Option<Ipv6Addr>,
    pub gw4: [u8; 6],
    pub gw6: [u8; 6],
}

fn ip_cmd(args: &[&str]) -> Result<String> {
    let out = Command::new("ip").args(args).output().context("running `ip` (install iproute2)")?;
    if !out.status.success() {
        bail!("`ip {}`: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn after<'a>(toks: &[&'a str], key: &str) -> Option<&'a str> {
    toks.iter().position(|t| *t == key).and_then(|i| toks.get(i + 1)).copied()
}

pub fn route_to(dst: IpAddr) -> Result<Route> {
    let fam = if dst.is_ipv4() { "-4" } else { "-6" };
    let out = ip_cmd(&[fam, "-o", "route", "get", &dst.to_string()]).with_context(|| format!("no route to {dst} from this namespace"))?;
    let toks: Vec<&str> = out.split_whitespace().collect();
    let ifname = after(&toks, "dev").context("route without device")?.to_string();
    let src: IpAddr = after(&toks, "src").context("route without source address")?.parse()?;
    let gateway = after(&toks, "via").map(|g| g.parse()).transpose()?;
    Ok(Route { ifname, src, gateway, local: toks.first() == Some(&"local") })
}

pub fn parse_mac(s: &str) -> Result<[u8; 6]> {
    let parts: Vec<u8> = s.trim().split(':').map(|p| u8::from_str_radix(p, 16)).collect::<std::result::Result<_, _>>().with_context(|| format!("bad MAC `{s}`"))?;
    if parts.len() != 6 {
        bail!("bad MAC `{s}`");
    }
    Ok([parts[0], parts[1], parts[2], parts[3], parts[4], parts[5]])
}

fn neighbour_mac(gw: IpAddr, ifname: &str) -> Result<[u8; 6]> {
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut poked = false;
    loop {
        let out = ip_cmd(&["-o", "neigh", "show", &gw.to_string(), "dev", ifname])?;
        let toks: Vec<&str> = out.split_whitespace().collect();
        if let Some(mac) = after(&toks, "lladdr") {
            if !out.contains("FAILED") && !out.contains("INCOMPLETE") {
                return parse_mac(mac);
            }
        }
        if Instant::now() > deadline {
            bail!("cannot resolve the gateway {gw}'s MAC on {ifname} (pass --gateway-mac)");
        }
        if !poked {
            // A datagram to the discard port makes the kernel resolve the neighbour.
            let bind: IpAddr = if gw.is_ipv4() { Ipv4Addr::UNSPECIFIED.into() } else { Ipv6Addr::UNSPECIFIED.into() };
            if let Ok(s) = UdpSocket::bind((bind, 0)) {
                let _ = s.send_to(b"x", (gw, 9));
            }
            poked = true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The addresses assigned to interface `ifname`.
pub fn interface_addrs(ifname: &str) -> Result<Vec<IpAddr>> {
    Ok(parse_addrs(&ip_cmd(&["-o", "addr", "show", "dev", ifname])?))
}

/// The addresses of `ip -o addr show` lines (`2: eth0    inet 192.0.2.2/24 brd ... scope global eth0`).
fn parse_addrs(text: &str) -> Vec<IpAddr> {
    text.lines()
        .filter_map(|l| {
            let toks: Vec<&str> = l.split_whitespace().collect();
            let a = after(&toks, "inet").or_else(|| after(&toks, "inet6"))?;
            a.split('/').next()?.parse().ok()
        })
        .collect()
}

fn if_mac(ifname: &str) -> Result<[u8; 6]> {
    let s = std::fs::read_to_string(format!("/sys/class/net/{ifname}/address")).with_context(|| format!("no interface {ifname}"))?;
    parse_mac(&s)
}

/// Discover how to reach `sample4` / `sample6` (any planned target of each family).
pub fn discover(sample4: Option<Ipv4Addr>, sample6: Option<Ipv6Addr>, iface: Option<&str>, gw_override: Option<[u8; 6]>, source: &[IpAddr]) -> Result<NetInfo> {
    let r4 = sample4.map(|a| route_to(a.into())).transpose()?;
    let r6 = sample6.map(|a| route_to(a.into())).transpose()?;
    let ifname = match (iface, &r4, &r6) {
        (Some(i), _, _) => i.to_string(),
        (None, Some(r), _) | (None, None, Some(r)) => r.ifname.clone(),
        _ => bail!("the plan has no targets"),
    };
    for r in [&r4, &r6].into_iter().flatten() {
        if r.ifname != ifname {
            bail!("IPv4 and IPv6 targets route through different interfaces ({} and {}); scan them separately", r.ifname, ifname);
        }
    }
    let cname = std::ffi::CString::new(ifname.clone())?;
    // SAFETY: valid NUL-terminated string.
    let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) } as i32;
    if ifindex == 0 {
        bail!("no interface {ifname}");
    }
    let mac = if_mac(&ifname)?;
    let gw_of = |r: &Option<Route>| -> Result<[u8; 6]> {
        match (r, gw_override) {
            (_, Some(m)) => Ok(m),
            (None, _) => Ok([0; 6]),
            (Some(r), _) if r.local || ifname == "lo" => Ok([0; 6]),
            (Some(Route { gateway: Some(g), .. }), _) => neighbour_mac(*g, &ifname),
            (Some(_), _) => bail!("targets are on-link (no gateway): the crawler sends through a router; pass --gateway-mac"),
        }
    };
    // --source-ip overrides the kernel's choice (e.g. a dedicated scan address with reverse
    // DNS) — but only with an address of the interface the probes leave by: any other (a typo)
    // spoofs a third party, who then receives every reply.
    if !source.is_empty() {
        let own = interface_addrs(&ifname)?;
        if let Some(bad) = source.iter().find(|a| !own.contains(a)) {
            let list = if own.is_empty() { "none".to_string() } else { own.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", ") };
            return Err(crate::job::config::ConfigError(format!(
                "--source-ip {bad} is not an address of {ifname}, the interface the probes leave by (its addresses: {list}); probes from it would send every reply to whoever holds {bad}"
            ))
            .into());
        }
    }
    let src4 = source.iter().find_map(|a| if let IpAddr::V4(v) = a { Some(*v) } else { None });
    let src6 = source.iter().find_map(|a| if let IpAddr::V6(v) = a { Some(*v) } else { None });
    Ok(NetInfo {
        gw4: gw_of(&r4)?,
        gw6: gw_of(&r6)?,
        src4: src4.or_else(|| r4.as_ref().and_then(|r| if let IpAddr::V4(a) = r.src { Some(a) } else { None })),
        src6: src6.or_else(|| r6.as_ref().and_then(|r| if let IpAddr::V6(a) = r.src { Some(a) } else { None })),
        ifname,
        ifindex,
        mac,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_addresses_are_read_from_ip_addr() {
        let text = "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever\n2: eth0    inet 192.0.2.2/24 brd 192.0.2.255 scope global eth0\\       valid_lft forever preferred_lft forever\n2: eth0    inet6 2001:db8::2/64 scope global \\       valid_lft forever preferred_lft forever\n2: eth0    inet6 fe80::1/64 scope link \\       valid_lft forever preferred_lft forever\n";
        let a: Vec<String> = parse_addrs(text).iter().map(|a| a.to_string()).collect();
        assert_eq!(a, ["127.0.0.1", "192.0.2.2", "2001:db8::2", "fe80::1"]);
    }
}
