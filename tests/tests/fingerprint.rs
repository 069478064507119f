//! Our SYN must look like a Linux client's: a test compares, field by field, the crawler's SYNs
//! with SYNs the lab kernel itself sends (a plain `connect()` from the vantage), IPv4 and IPv6.

mod common;
use common::*;
use crawler::probe::{parse_syn, SynView};
use port25_lab::demo::{self, LAB_SCAN};

/// SYNs captured on the core's interface to the vantage while `run` runs.
fn capture_syns(lab: &Lab, name: &str, run: impl FnOnce()) -> Vec<SynView> {
    let cap = Capture::start(&lab.state.core, "v0", lab.path(&format!("{name}.pcap")), "tcp");
    std::thread::sleep(std::time::Duration::from_millis(700));
    run();
    std::thread::sleep(std::time::Duration::from_millis(300));
    pcap_frames(&cap.stop()).iter().filter_map(|f| parse_syn(f)).collect()
}

/// Distinct values expected among `n` uniform random `bits`-bit values (the birthday bound).
fn uniform_distinct(n: usize, bits: u32) -> f64 {
    let m = (1u64 << bits) as f64;
    m * (1.0 - (-(n as f64) / m).exp())
}

#[test]
#[ignore = "lab test: needs root and network namespaces (tests/run-tests.sh runs it)"]
fn our_syns_match_the_kernels_field_by_field() {
    if !require_root("fingerprint") || !require_tool("fingerprint", "tcpdump") {
        return;
    }
    let lab = Lab::up("default");
    let ds = lab.datasets();
    let lab_bin = demo::sibling("lab").unwrap();
    let kernel = capture_syns(&lab, "kernel", || {
        sh(&format!("ip netns exec {} {} connect 198.18.0.1:40000 198.18.0.2:40000 [2001:db8:101::1]:40000 [2001:db8:101::2]:40000", lab.state.vantage, lab_bin.display()));
    });
    demo::plan(&ds, &lab.path("plan.parquet"), 40, true).unwrap();
    let ours = capture_syns(&lab, "ours", || {
        let mut flags = LAB_SCAN.to_vec();
        flags.extend(["--rate", "5000", "--crawl-id", "fingerprint"]);
        demo::scan(&lab.state, &ds, &lab.path("plan.parquet"), &lab.path("data"), &flags).unwrap();
    });
    for v6 in [false, true] {
        let k: Vec<&SynView> = kernel.iter().filter(|s| s.dst.is_ipv6() == v6).collect();
        let o: Vec<&SynView> = ours.iter().filter(|s| s.dst.is_ipv6() == v6).collect();
        assert!(!k.is_empty() && o.len() > 200, "v6={v6}: {} kernel SYNs, {} of ours", k.len(), o.len());
        let k0 = k[0];
        println!("kernel v6={v6}: ttl {} df {} win {} options {:?} mss {:?} wscale {:?} ip_id {:?} flow {:?} tsval {:?}", k0.ttl, k0.dont_fragment, k0.window, k0.options, k0.mss, k0.wscale, k0.ip_id, k0.flow_label, k0.tsval);
        let o0 = o[0];
        println!("ours   v6={v6}: ttl {} df {} win {} options {:?} mss {:?} wscale {:?} ip_id {:?} flow {:?} tsval {:?}", o0.ttl, o0.dont_fragment, o0.window, o0.options, o0.mss, o0.wscale, o0.ip_id, o0.flow_label, o0.tsval);
        for s in &o {
            assert_eq!((s.ttl, s.dont_fragment, s.window, &s.options, s.mss, s.wscale), (k0.ttl, k0.dont_fragment, k0.window, &k0.options, k0.mss, k0.wscale), "v6={v6}: our SYN to {} differs from the kernel's", s.dst);
            assert_eq!(s.flow_label.is_some_and(|f| f != 0), k0.flow_label.is_some_and(|f| f != 0), "IPv6 flow label set as the kernel sets it");
        }
        // What the kernel randomises, ours must too: no IP-ID derived from the sequence number,
        // no timestamp clock starting at zero, flow labels that vary.
        if !v6 {
            let from_seq = o.iter().filter(|s| s.ip_id == Some((s.seq >> 16) as u16)).count();
            assert!(from_seq <= 2, "{from_seq} SYNs carry ip_id = seq >> 16");
            let ids: std::collections::HashSet<_> = o.iter().map(|s| s.ip_id).collect();
            let e = uniform_distinct(o.len(), 16);
            assert!(ids.len() as f64 > 0.97 * e, "IP-IDs repeat: {} distinct of {} (uniform random: {e:.0})", ids.len(), o.len());
        } else {
            let flows: std::collections::HashSet<_> = o.iter().map(|s| s.flow_label).collect();
            let e = uniform_distinct(o.len(), 20);
            assert!(flows.len() as f64 > 0.97 * e, "flow labels repeat: {} distinct of {} (uniform random: {e:.0})", flows.len(), o.len());
        }
        let small_ts = o.iter().filter(|s| s.tsval.unwrap() < 100_000).count();
        assert!(small_ts * 50 < o.len(), "{small_ts} of {} timestamps look like a clock started at zero", o.len());
        // Like Linux, one timestamp offset per destination: two probes to a host differ by the
        // time between them (ms), not by a random amount.
        let mut by_host: std::collections::HashMap<std::net::IpAddr, Vec<u32>> = Default::default();
        for s in &o {
            by_host.entry(s.dst).or_default().push(s.tsval.unwrap());
        }
        let spread = by_host.values().filter(|t| t.len() > 1).all(|t| t.iter().max().unwrap().wrapping_sub(*t.iter().min().unwrap()) < 60_000);
        assert!(spread, "timestamps to one host are not one clock");
    }
    assert!(lab.down().is_empty());
}
