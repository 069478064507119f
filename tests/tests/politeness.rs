//! Politeness under the defaults: a crawl with the default per-AS (1,000 pps) and per-/24
//! (20 pps; IPv6 per /48) limits and two sender threads, checked on the wire from a capture on
//! the core router — every AS and every /24 within its limit + 5 % over every 1-s window, the
//! global rate too, the deferred queue bounded, every probe recorded once.

mod common;
use common::*;
use port25_lab::demo;
use std::collections::HashMap;
use std::net::IpAddr;

/// The per-network key the limits use: the /24 of an IPv4 address, the /48 of an IPv6 one.
fn net(ip: &IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => (u32::from(*a) >> 8) as u128,
        IpAddr::V6(a) => (u128::from(*a) >> 80) | 1 << 127,
    }
}

/// The default lab, a plan of 20 hosts per AS (at 20 pps per /24 a crawl of it takes ~15 s),
/// each planned address's AS, and a capture on the core router's vantage side.
fn planned_lab_with_capture() -> (Lab, demo::Datasets, HashMap<IpAddr, u32>, Capture) {
    let lab = Lab::up("default");
    let ds = lab.datasets();
    demo::plan(&ds, &lab.path("plan.parquet"), 20, true).unwrap();
    let asn_of: HashMap<IpAddr, u32> =
        read_rows(&lab.path("plan.parquet"), &["ip", "asn"]).into_iter().map(|r| (r[0].as_ref().unwrap().parse().unwrap(), r[1].as_ref().unwrap().parse().unwrap())).collect();
    let cap = Capture::start(&lab.state.core, "v0", lab.path("v0.pcap"), "tcp or icmp or icmp6");
    (lab, ds, asn_of, cap)
}

/// The busiest 1-s window of each group.
fn worst_per<K: std::hash::Hash + Eq>(syns: &[(f64, u16, IpAddr)], key: impl Fn(&IpAddr) -> K) -> HashMap<K, usize> {
    let mut times: HashMap<K, Vec<f64>> = HashMap::new();
    for (t, _, ip) in syns {
        times.entry(key(ip)).or_default().push(*t);
    }
    times.into_iter().map(|(k, t)| (k, busiest_second(&t))).collect()
}

#[test]
#[ignore = "lab test: needs root and network namespaces (tests/run-tests.sh runs it)"]
fn the_default_limits_hold_for_every_as_and_every_24_with_two_senders() {
    if !require_root("politeness") || !require_tool("politeness", "tcpdump") {
        return;
    }
    let (lab, ds, asn_of, cap) = planned_lab_with_capture();
    std::thread::sleep(std::time::Duration::from_millis(700));
    let t0 = std::time::Instant::now();
    // The defaults: no --rate, --asn-rate or --net-rate.
    demo::scan(&lab.state, &ds, &lab.path("plan.parquet"), &lab.path("data"), &["--senders", "2", "--retries", "1", "--retry-delay", "1", "--cooldown", "2", "--crawl-id", "polite"]).unwrap();
    let took = t0.elapsed().as_secs_f64();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let s = syns(&cap.stop());
    assert!(s.len() > 2000, "only {} SYNs captured", s.len());
    assert!(s.iter().all(|x| asn_of.contains_key(&x.2)), "SYNs to addresses outside the plan");
    let global = busiest_second(&s.iter().map(|x| x.0).collect::<Vec<_>>());
    let per_as = worst_per(&s, |ip| asn_of[ip]);
    let per_net = worst_per(&s, net);
    let (worst_as, worst_net) = (per_as.values().max().copied().unwrap(), per_net.values().max().copied().unwrap());
    println!(
        "{} SYNs in {took:.1} s from 2 senders; busiest 1-s windows: global {global} (limit 10,000), worst AS {worst_as} (1,000), worst /24 or /48 {worst_net} (20) over {} networks",
        s.len(),
        per_net.len()
    );
    assert!(global <= 10_500, "{global} SYNs within a second (global limit 10,000)");
    assert!(worst_as <= 1_050, "an AS got {worst_as} SYNs within a second (limit 1,000)");
    assert!(worst_net <= 21, "a /24 or /48 got {worst_net} SYNs within a second (limit 20): {:?}", per_net.values().filter(|v| **v > 21).collect::<Vec<_>>());
    assert!(worst_net >= 18, "the /24 limit was never reached ({worst_net}): the test would not see a breach");
    let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(find_manifest(&lab.path("data"))).unwrap()).unwrap();
    let sm = &m["summary"];
    println!("deferred queue peak {} (bound {}), rows {}, probes planned {}", sm["deferred_peak"], sm["deferred_bound"], sm["rows"], sm["probes_planned"]);
    assert!(sm["deferred_peak"].as_u64().unwrap() <= sm["deferred_bound"].as_u64().unwrap() && sm["deferred_bound"].as_u64().unwrap() <= 128);
    let skipped: u64 = sm["skipped"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(sm["rows"].as_u64().unwrap() + skipped, sm["probes_planned"].as_u64().unwrap(), "every probe one row");
    let keys: std::collections::HashSet<_> = read_rows(&lab.path("data"), &ROW_KEY).into_iter().map(|r| probe_key(r[0].as_deref().unwrap(), r[1].as_deref().unwrap(), r[2].as_deref().unwrap(), r[3].as_deref().unwrap())).collect();
    assert_eq!(keys.len() as u64, sm["rows"].as_u64().unwrap(), "a probe recorded twice");
    assert!(lab.down().is_empty());
}

/// The limits counted when frames leave, on the wire: a send log of 1,024 slots (the minimum
/// for 2 senders is 260) with a 2-s cooldown makes the final pass wait for slots of silent
/// probes, and the per-AS and per-/24 limits still hold over every 1-s window of the capture.
#[test]
#[ignore = "lab test: needs root and network namespaces (tests/run-tests.sh runs it)"]
fn the_limits_hold_on_the_wire_with_a_small_send_log() {
    if !require_root("politeness_small_log") || !require_tool("politeness_small_log", "tcpdump") {
        return;
    }
    let (lab, ds, asn_of, cap) = planned_lab_with_capture();
    let t0 = std::time::Instant::now();
    demo::scan(&lab.state, &ds, &lab.path("plan.parquet"), &lab.path("data"), &["--senders", "2", "--retries", "0", "--cooldown", "2", "--send-log", "1024", "--crawl-id", "small-log"]).unwrap();
    let took = t0.elapsed().as_secs_f64();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let s = syns(&cap.stop());
    let per_as = worst_per(&s, |ip| asn_of[ip]);
    let per_net = worst_per(&s, net);
    let (worst_as, worst_net) = (per_as.values().max().copied().unwrap(), per_net.values().max().copied().unwrap());
    println!("{} SYNs in {took:.1} s with a 1,024-slot send log; busiest 1-s windows: worst AS {worst_as} (1,000), worst /24 or /48 {worst_net} (20)", s.len());
    assert!(worst_as <= 1_050, "an AS got {worst_as} SYNs within a second (limit 1,000)");
    assert!(worst_net <= 21, "a /24 or /48 got {worst_net} SYNs within a second (limit 20)");
    assert!(worst_net >= 18, "the /24 limit was never reached ({worst_net})");
    let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(find_manifest(&lab.path("data"))).unwrap()).unwrap();
    let sm = &m["summary"];
    let skipped: u64 = sm["skipped"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(sm["rows"].as_u64().unwrap() + skipped, sm["probes_planned"].as_u64().unwrap(), "every probe one row");
    assert_eq!(sm["unlogged"].as_u64(), Some(0));
}
