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
