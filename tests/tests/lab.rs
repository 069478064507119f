//! The lab itself: fast to build, leaves nothing behind, and an independent prober (nmap)
//! sees exactly what the ground truth promises.

mod common;
use common::*;
use port25_lab::nmap;
use port25_lab::topology::Topology;
use port25_lab::truth;
use std::collections::BTreeMap;

fn lab_objects(run_id: &str) -> Vec<String> {
    let tag = format!("p25-{run_id}");
    let mut left = vec![];
    left.extend(sh("ip netns list").lines().filter(|l| l.contains(&tag)).map(String::from));
    // Nothing of the lab may ever appear in the root namespace.
    left.extend(sh("ip -o link show").lines().filter(|l| l.contains(&tag) || l.contains("uplink") || l.contains("dnlink")).map(String::from));
    left.extend(sh("nft list tables").lines().filter(|l| l.contains("p25lab") || l.contains("p25uplink")).map(String::from));
    left
}

#[test]
#[ignore = "lab test: needs root and network namespaces (tests/run-tests.sh runs it)"]
fn lab_up_is_fast_and_down_leaves_nothing() {
    if !require_root("lab_up_is_fast_and_down_leaves_nothing") || !require_tool("lab", "nft") {
        return;
    }
    let lab = Lab::up("default");
    let id = lab.state.run_id.clone();
    println!("lab up in {:.2} s ({} namespaces)", lab.up_secs, lab.state.namespaces.len());
    assert!(lab.up_secs < 10.0, "lab up took {:.2} s", lab.up_secs);
    assert_eq!(sh("ip netns list").lines().filter(|l| l.contains(&format!("p25-{id}"))).count(), lab.state.namespaces.len());
    // The vantage has routes into the lab ranges only: no default route to the real network.
    let routes = sh(&format!("ip -n {} route show", lab.state.vantage));
    assert!(!routes.contains("default"), "vantage has a default route: {routes}");
    let left = lab.down();
    assert!(left.is_empty(), "left behind: {left:?}");
    assert!(lab_objects(&id).is_empty(), "left behind: {:?}", lab_objects(&id));
    assert!(sh("ps -eo args").lines().all(|l| !l.contains(&format!("p25-{id}"))), "a listener survived");
}

#[test]
#[ignore = "lab test: needs root and network namespaces (tests/run-tests.sh runs it)"]
fn a_failed_lab_up_removes_what_it_created() {
    if !require_root("a_failed_lab_up_removes_what_it_created") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lab"))
        .args(["up", root().join("tests/topologies/default.toml").to_str().unwrap(), "--state", dir.path().to_str().unwrap()])
        .env("PORT25_LAB_FAIL_AFTER_NAMESPACES", "1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("everything it created was removed"), "{err}");
    let st: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.path().join("lab.json")).unwrap()).unwrap();
    let id = st["run_id"].as_str().unwrap();
    assert!(lab_objects(id).is_empty(), "left behind: {:?}", lab_objects(id));
}

#[test]
#[ignore = "lab test: needs root and network namespaces (tests/run-tests.sh runs it)"]
fn nmap_agrees_with_ground_truth() {
    if !require_root("nmap_agrees_with_ground_truth") || !require_tool("nmap", "nmap") {
        return;
    }
    let lab = Lab::up("default");
    let topo = Topology::load(&lab.topo_path).unwrap();
    // A stratified sample: up to 12 hosts of each provider and family.
    let mut sample = BTreeMap::new();
    for (pi, p) in topo.providers.iter().enumerate() {
        if p.opt_out {
            continue;
        }
        for v6 in [false, true] {
            let hs: Vec<_> = topo.hosts_of(pi).into_iter().filter(|h| h.ip.is_ipv6() == v6).collect();
            let step = (hs.len() / 12).max(1);
            for h in hs.into_iter().step_by(step).take(12) {
                sample.insert(h.ip, h);
            }
        }
    }
    let ports = "25,465,587,80,443,22,40000";
    let mut results = std::collections::HashMap::new();
    for v6 in [false, true] {
        let ips: Vec<String> = sample.keys().filter(|ip| ip.is_ipv6() == v6).map(|ip| ip.to_string()).collect();
        let cmd = format!(
            "ip netns exec {} nmap {} -sS -n -Pn --reason --max-retries 4 -T4 -p {ports} -oX - {}",
            lab.state.vantage,
            if v6 { "-6" } else { "" },
            ips.join(" ")
        );
        results.extend(nmap::parse_xml(&sh(&cmd)).unwrap());
    }
    let (mut agree, mut total, mut lossy_miss) = (0, 0, 0);
    let mut bad = vec![];
    for (ip, h) in &sample {
        for port in ports.split(',').map(|p| p.parse::<u16>().unwrap()) {
            total += 1;
            let t = truth::expect(&topo, h, port);
            let n = results.get(&(*ip, port)).unwrap_or_else(|| panic!("nmap has no result for {ip}:{port}"));
            if nmap::agrees(&t, n) {
                agree += 1;
            } else if t.lossy {
                lossy_miss += 1;
            } else {
                bad.push(format!("{ip}:{port} truth {:?} ({}) nmap {:?}", t.expect, t.reason, n));
            }
        }
    }
    let share = agree as f64 / total as f64;
    println!("nmap agreement: {agree}/{total} = {:.2} % (disagreements on lossy paths: {lossy_miss})", share * 100.0);
    assert!(bad.is_empty(), "disagreements on loss-free paths:\n{}", bad.join("\n"));
    assert!(share >= 0.99, "agreement {share}");
}

/// An alive host of `provider` (a RST on a closed port, no all-ports or mail-source firewall).
fn plain_host(topo: &Topology, provider: &str, v6: bool) -> std::net::IpAddr {
    let i = topo.providers.iter().position(|p| p.name == provider).unwrap_or_else(|| panic!("no provider {provider}"));
    topo.hosts_of(i).into_iter().find(|h| h.ip.is_ipv6() == v6 && !h.dead && !h.all_ports && !h.src_port_firewall).unwrap().ip
}

/// Replies hping3 got to `count` SYNs from source port `sport` (kept, `-k`) to a closed port.
fn hping(vantage: &str, host: std::net::IpAddr, sport: u16, count: u32) -> u32 {
    let o = std::process::Command::new("ip")
        .args(["netns", "exec", vantage, "hping3", "-c", &count.to_string(), "-i", "u100000", "-s", &sport.to_string(), "-k", "-S", "-p", "40000", &host.to_string()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stderr).into_owned() + &String::from_utf8_lossy(&o.stdout);
    let line = text.lines().find(|l| l.contains("packets received")).unwrap_or_else(|| panic!("hping3 printed no statistics: {text}"));
    line.split(", ").nth(1).and_then(|s| s.split_whitespace().next()).and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("unparsed: {line}"))
}

/// Independent of the crawler: SYNs from a fixed source port (hping3 for IPv4, nmap's `-g` for
/// IPv6) show that the lab's borders really drop the replies that leave towards a filtered
/// port, and only those — the other ports' and the stateful border's replies come back.
#[test]
#[ignore = "lab test: needs root and network namespaces (tests/run-tests.sh runs it)"]
fn hping3_and_nmap_confirm_the_lab_drops_reflected_replies() {
    if !require_root("reflection cross-check") || !require_tool("reflection cross-check", "hping3") || !require_tool("reflection cross-check", "nmap") {
        return;
    }
    let lab = Lab::up("default");
    let v = &lab.state.vantage;
    let topo = &lab.topo;
    // (provider, source port, replies expected to 3 SYNs?)
    let cases = [
        ("Egress25 Cloud", 25, false),
        ("Egress25 Cloud", 2525, true),
        ("Egress25 Cloud", 587, true),
        ("SubmitOnly Hosting", 25, false),
        ("SubmitOnly Hosting", 465, false),
        ("SubmitOnly Hosting", 587, true),
        ("RejectOut VPS", 25, false),
        ("StatefulOut Cloud", 25, true),
        ("OpenCloud Hosting", 25, true),
        ("DropNet Servers", 25, true),
    ];
    for (provider, sport, answered) in cases {
        let host = plain_host(topo, provider, false);
        let got = hping(v, host, sport, 3);
        println!("hping3 -s {sport} -k -S -p 40000 {host} ({provider}): {got} of 3 answered");
        assert_eq!(got > 0, answered, "{provider} from source port {sport}: {got} replies");
    }
    for (provider, sport, state) in [("SixOut Cloud", 25, "filtered"), ("SixOut Cloud", 2525, "closed"), ("Egress25 Cloud", 25, "filtered"), ("OpenCloud Hosting", 25, "closed")] {
        let host = plain_host(topo, provider, true);
        let out = sh(&format!("ip netns exec {v} nmap -6 -n -Pn -sS -g {sport} -p 40000 --max-retries 2 {host}"));
        let line = out.lines().find(|l| l.starts_with("40000/tcp")).unwrap_or_else(|| panic!("nmap: {out}"));
        println!("nmap -6 -g {sport} -p 40000 {host} ({provider}): {line}");
        assert!(line.contains(state), "{provider} IPv6 from source port {sport}: {line}");
    }
    assert!(lab.down().is_empty());
}
