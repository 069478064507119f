//! What the crawler must never do, checked on the wire and in its output:
//! - a capture on the core router during a scan shows no packet to the opt-out prefixes or to
//!   any address not in the plan, and the SYN rate over every 1-s window stays within +5 % of
//!   `--rate` (opt-outs are applied at send time: here the plan still contains them);
//! - forged replies with wrong cookies are counted as validation failures, none recorded;
//! - reflection probes (SYNs from source ports 25/465/587/2525) go only to planned hosts within
//!   the rate, and the replies that filtered providers must not let out never reach the core.

mod common;
use common::*;
use port25_lab::demo::{self, LAB_SCAN};
use std::collections::HashSet;
use std::net::IpAddr;
use std::process::{Command, Stdio};

#[test]
#[ignore = "lab test: needs root and network namespaces (tests/run-tests.sh runs it)"]
fn capture_shows_no_probe_outside_the_plan_and_the_rate_holds() {
    if !require_root("capture") || !require_tool("capture", "tcpdump") {
        return;
    }
    let lab = Lab::up("default");
    let ds = lab.datasets();
    // Planned without the opt-out list: the sender alone must keep the opt-out AS unprobed.
    demo::plan(&ds, &lab.path("plan.parquet"), 100, false).unwrap();
    let plan: HashSet<IpAddr> = read_rows(&lab.path("plan.parquet"), &["ip"]).into_iter().map(|r| r[0].as_ref().unwrap().parse().unwrap()).collect();
    let optout: Vec<ipnet::IpNet> = std::fs::read_to_string(ds.dir.join("opt-out.txt")).unwrap().lines().filter(|l| !l.starts_with('#')).map(|l| l.parse().unwrap()).collect();
    let planned_optout = plan.iter().filter(|ip| optout.iter().any(|n| n.contains(*ip))).count();
    assert!(planned_optout > 0, "the plan should contain opt-out addresses for this test");
    let pcap = lab.path("core.pcap");
    let mut dump = Command::new("ip")
        .args(["netns", "exec", &lab.state.core, "tcpdump", "-i", "v0", "-Q", "in", "-n", "-U", "-w", pcap.to_str().unwrap(), "tcp or icmp or icmp6"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(700));
    let rate = 1000u64;
    let mut flags = LAB_SCAN.to_vec();
    let r = rate.to_string();
    // The default probe set: mail, control and random ports, and reflection from fixed source
    // ports — the send-time opt-out check must hold for every kind.
    flags.extend(["--rate", &r, "--crawl-id", "capture"]);
    demo::scan(&lab.state, &ds, &lab.path("plan.parquet"), &lab.path("data"), &flags).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(dump.id() as i32, libc::SIGINT) };
    dump.wait().unwrap();
    let s = syns(&pcap);
    assert!(s.len() > 3000, "only {} SYNs captured", s.len());
    let outside: Vec<_> = s.iter().filter(|(_, _, ip)| !plan.contains(ip)).collect();
    assert!(outside.is_empty(), "{} SYNs to addresses not in the plan, e.g. {:?}", outside.len(), &outside[..outside.len().min(5)]);
    let to_optout = s.iter().filter(|(_, _, ip)| optout.iter().any(|n| n.contains(ip))).count();
    assert_eq!(to_optout, 0, "SYNs to opt-out prefixes");
    // Every kind of probe the default crawl sends was on the wire (and none to an opt-out).
    let syn_ports = syn_port_pairs(&pcap);
    assert_eq!(syn_ports.len(), s.len(), "a destination port per SYN");
    let kinds = [
        ("reflection", syn_ports.iter().filter(|(sp, _)| [25, 465, 587, 2525].contains(sp)).count()),
        ("mail", syn_ports.iter().filter(|(sp, dp)| *sp >= 1024 && *sp != 2525 && [25, 465, 587].contains(dp)).count()),
        ("control", syn_ports.iter().filter(|(sp, dp)| *sp >= 1024 && *sp != 2525 && [80, 443, 22].contains(dp)).count()),
        ("random", syn_ports.iter().filter(|(sp, dp)| *sp >= 1024 && *sp != 2525 && *dp >= 1024).count()),
    ];
    println!("SYNs by kind: {kinds:?}");
    assert!(kinds.iter().all(|(_, n)| *n > 0), "a kind of probe missing from the capture: {kinds:?}");
    let worst = busiest_second(&s.iter().map(|x| x.0).collect::<Vec<_>>());
    println!("{} SYNs captured, {} planned opt-out addresses never probed; busiest 1-s window {worst} SYNs at --rate {rate} ({:+.1} %)", s.len(), planned_optout, (worst as f64 / rate as f64 - 1.0) * 100.0);
    assert!(worst as f64 <= rate as f64 * 1.05, "a 1-s window held {worst} SYNs at --rate {rate}");
    assert!(worst as f64 >= rate as f64 * 0.95, "the busiest 1-s window held only {worst} SYNs at --rate {rate}");
    let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(find_manifest(&lab.path("data"))).unwrap()).unwrap();
    // 12 probes per host: 3 mail, 3 control, 2 random ports, 4 reflection source ports.
    assert_eq!(m["summary"]["skipped"]["opt-out"].as_u64().unwrap() as usize, planned_optout * 12, "opt-out skips counted, every probe of every opt-out host");
}

/// (source port, destination port) of every SYN in a capture.
fn syn_port_pairs(pcap: &std::path::Path) -> Vec<(u16, u16)> {
    let port = |a: &str| a.rsplit_once('.').and_then(|(_, p)| p.parse().ok());
    sh(&format!("tcpdump -n -tt -r {} 2>/dev/null", pcap.display()))
        .lines()
        .filter(|l| l.contains("Flags [S],"))
        .filter_map(|l| {
            let (src, rest) = l.split_once(" > ")?;
            Some((port(src.split_whitespace().last()?)?, port(rest.split(": ").next()?)?))
        })
        .collect()
}

#[test]
#[ignore = "lab test: needs root and network namespaces (tests/run-tests.sh runs it)"]
fn forged_replies_are_counted_and_never_recorded() {
    if !require_root("forged") {
        return;
    }
    let lab = Lab::up("default");
    let ds = lab.datasets();
    demo::plan(&ds, &lab.path("plan.parquet"), 400, true).unwrap();
    // Scan in the background with a long cooldown; forge replies from OpenCloud's hosts meanwhile.
    let crawler = crawler();
    let mut scan = Command::new("ip")
        .args(["netns", "exec", &lab.state.vantage])
        .arg(&crawler)
        .args(["--quiet", "scan", "--plan", lab.path("plan.parquet").to_str().unwrap(), "--out", lab.path("data").to_str().unwrap()])
        .args(["--allow-reserved", demo::LAB_ALLOW, "--opt-out", &ds.f("opt-out.txt"), "--vantage", "lab-vantage", "--crawl-id", "forged"])
        .args(LAB_SCAN)
        .args(["--rate", "20000", "--cooldown", "6"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let per_kind = 4000;
    let out = sh(&format!(
        "ip netns exec {} {} forge --topology {} --provider 0 --count {per_kind}",
        lab.state.hosts[0],
        demo::sibling("lab").unwrap().display(),
        lab.topo_path.display()
    ));
    assert!(out.contains(&format!("forged {}", per_kind * 3)), "{out}");
    assert!(scan.wait().unwrap().success());
    let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(find_manifest(&lab.path("data"))).unwrap()).unwrap();
    let failed = m["summary"]["validation_failed"].as_u64().unwrap();
    println!("forged {} replies; validation failures counted: {failed}; scan summary {}", per_kind * 3, m["summary"]);
    assert!(failed >= (per_kind * 3) as u64, "only {failed} validation failures for {} forged replies", per_kind * 3);
    // Nothing forged was recorded: no row holds a reply the ground truth does not predict.
    // (Silence where a reply was due is a miss, not a forgery: the forger's burst can overflow
    // the kernel's queues while another lab test runs; misses stay within the suite's 0.5 %.)
    let truth = truth_hosts(&ds);
    let rows = read_rows(&lab.path("data"), &observation_columns());
    let (mut forged, mut missed) = (vec![], 0);
    for r in &rows {
        let t = truth_of(&truth, r);
        if matches(&t, r) {
            continue;
        }
        if r[0].as_deref() == Some("none") {
            missed += 1;
        } else {
            forged.push(r.clone());
        }
    }
    assert!(forged.is_empty(), "replies recorded that the lab never sent (forgeries?): {:?}", &forged[..forged.len().min(5)]);
    assert!(missed as f64 <= 0.005 * rows.len() as f64, "{missed} of {} probes missed their reply", rows.len());
}


#[test]
#[ignore = "lab test: needs root and network namespaces (tests/run-tests.sh runs it)"]
fn reflection_probes_stay_in_the_plan_and_filtered_replies_never_leave_their_provider() {
    if !require_root("reflection capture") || !require_tool("reflection capture", "tcpdump") {
        return;
    }
    let lab = Lab::up("default");
    let ds = lab.datasets();
    demo::plan(&ds, &lab.path("plan.parquet"), 400, true).unwrap();
    let plan: HashSet<IpAddr> = read_rows(&lab.path("plan.parquet"), &["ip"]).into_iter().map(|r| r[0].as_ref().unwrap().parse().unwrap()).collect();
    let core = &lab.state.core;
    let index = |name: &str| lab.topo.providers.iter().position(|p| p.name == name).unwrap();
    let probes = Capture::start(core, "v0", lab.path("v0.pcap"), "tcp or icmp or icmp6");
    // What each provider's border lets out towards the mail ports, where it enters the core.
    let watched = ["Egress25 Cloud", "SubmitOnly Hosting", "StatefulOut Cloud", "OpenCloud Hosting"];
    let borders: Vec<Capture> = watched
        .iter()
        .map(|p| Capture::start(core, &format!("b{}", index(p)), lab.path(&format!("b{}.pcap", index(p))), "tcp dst port 25 or tcp dst port 465 or tcp dst port 587 or tcp dst port 2525"))
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(700));
    let rate = 3000u64;
    let r = rate.to_string();
    let mut flags = LAB_SCAN.to_vec();
    flags.extend(["--rate", &r, "--crawl-id", "reflect"]);
    demo::scan(&lab.state, &ds, &lab.path("plan.parquet"), &lab.path("data"), &flags).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let out: Vec<Vec<u16>> = borders.into_iter().map(|c| dst_ports(&c.stop())).collect();
    let s = syns(&probes.stop());
    let reflect: Vec<_> = s.iter().filter(|x| [25, 465, 587, 2525].contains(&x.1)).collect();
    let hosts: HashSet<IpAddr> = reflect.iter().map(|x| x.2).collect();
    println!("{} SYNs captured, {} of them reflection probes to {} hosts", s.len(), reflect.len(), hosts.len());
    assert!(hosts.len() > 3000, "reflection probes reached only {} hosts", hosts.len());
    assert!(hosts.is_subset(&plan), "reflection probes to addresses not in the plan");
    let worst = busiest_second(&s.iter().map(|x| x.0).collect::<Vec<_>>());
    println!("busiest 1-s window {worst} SYNs at --rate {rate}");
    assert!(worst as f64 <= rate as f64 * 1.05, "a 1-s window held {worst} SYNs at --rate {rate}");
    // (provider, reflected replies towards 25, 465, 587 expected to reach the core?)
    let expect = [[false, true, true], [false, false, true], [true, true, true], [true, true, true]];
    for ((name, ports), want) in watched.iter().zip(&out).zip(expect) {
        let n = [25u16, 465, 587].map(|p| ports.iter().filter(|q| **q == p).count());
        println!("  {name}: replies towards 25 / 465 / 587 / 2525 entering the core: {} / {} / {} / {}", n[0], n[1], n[2], ports.iter().filter(|q| **q == 2525).count());
        for (i, port) in [25, 465, 587].iter().enumerate() {
            assert_eq!(n[i] > 0, want[i], "{name}: {} packets towards port {port} crossed its border", n[i]);
        }
    }
    let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(find_manifest(&lab.path("data"))).unwrap()).unwrap();
    assert_eq!(m["summary"]["validation_failed"], 0, "{}", m["summary"]);
}

/// Forgeries made from the crawler's own SYNs, seen where they arrive: off-by-one
/// acknowledgments, a correct acknowledgment from another host, and the correct reply for a
/// dead host sent after the SYN's send-log slot was reused — IPv4 and IPv6. All must be
/// counted (unknown cookie, stale slot, duplicate) and none recorded.
#[test]
#[ignore = "lab test: needs root and network namespaces (tests/run-tests.sh runs it)"]
fn near_misses_replays_and_late_replies_are_counted_and_never_recorded() {
    if !require_root("forged, harder") {
        return;
    }
    let lab = Lab::up("default");
    let ds = lab.datasets();
    demo::plan(&ds, &lab.path("plan.parquet"), 400, true).unwrap();
    // A send log of 4,096 slots at 8,000 pps: a first attempt's slot is reused 0.5 s later, so
    // a reply 1.5 s late lands on someone else's slot.
    let mut flags = LAB_SCAN.to_vec();
    flags.extend(["--rate", "8000", "--send-log", "4096", "--crawl-id", "forged-harder"]);
    let crawler = crawler();
    let mut scan = Command::new("ip")
        .args(["netns", "exec", &lab.state.vantage])
        .arg(&crawler)
        .args(["--quiet", "scan", "--plan", lab.path("plan.parquet").to_str().unwrap(), "--out", lab.path("data").to_str().unwrap()])
        .args(["--allow-reserved", demo::LAB_ALLOW, "--opt-out", &ds.f("opt-out.txt"), "--vantage", "lab-vantage"])
        .args(&flags)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // Sniff OpenCloud's hosts for 4 s of the ~8 s first pass, so every late reply is due while
    // the pass still reuses slots.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let out = sh(&format!(
        "ip netns exec {} {} forge --topology {} --provider 0 --sniff uplink --seconds 4 --late-ms 1500",
        lab.state.hosts[0],
        demo::sibling("lab").unwrap().display(),
        lab.topo_path.display()
    ));
    assert!(scan.wait().unwrap().success());
    let f: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let total = f["near_miss"].as_u64().unwrap() + f["other_target"].as_u64().unwrap() + f["late"].as_u64().unwrap();
    let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(find_manifest(&lab.path("data"))).unwrap()).unwrap();
    let k = &m["summary"]["replies_by_kind"];
    let rejected: u64 = ["unknown-cookie", "stale-slot", "duplicate"].iter().map(|x| k[x].as_u64().unwrap()).sum();
    println!("forged {f}; the crawler rejected {rejected}: {k}");
    assert!(f["late"].as_u64().unwrap() > 50 && f["ipv6"].as_u64().unwrap() > 100 && f["other_target"].as_u64().unwrap() > 300, "too few forgeries to mean anything: {f}");
    assert!(rejected >= total, "{rejected} replies rejected for {total} forged");
    assert_eq!(k["bad-checksum"], 0, "{k}");
    let truth = truth_hosts(&ds);
    let rows = read_rows(&lab.path("data"), &observation_columns());
    let forged: Vec<_> = rows.iter().filter(|r| r[0].as_deref() != Some("none") && !matches(&truth_of(&truth, r), r)).collect();
    assert!(forged.is_empty(), "replies recorded that the lab never sent: {:?}", &forged[..forged.len().min(5)]);
    let missed = rows.iter().filter(|r| r[0].as_deref() == Some("none") && !matches(&truth_of(&truth, r), r)).count();
    assert!(missed as f64 <= 0.005 * rows.len() as f64, "{missed} of {} probes missed their reply", rows.len());
}

/// A plan with special-purpose addresses that are not allowed, and with addresses listed twice:
/// the reserved ones are refused at send time (no row, counted in the manifest), each duplicate
/// is probed once, under the lowest AS of its rows.
#[test]
#[ignore = "lab test: needs root and network namespaces (tests/run-tests.sh runs it)"]
fn reserved_and_duplicate_plan_targets_are_refused_or_probed_once() {
    use datasets::schema::{plan_schema, PlanBatch, PlanRow};
    if !require_root("reserved_plan") {
        return;
    }
    let lab = Lab::up("default");
    let ds = lab.datasets();
    demo::plan(&ds, &lab.path("lab.parquet"), 400, true).unwrap();
    let rows: Vec<(String, u32, String)> = read_rows(&lab.path("lab.parquet"), &["ip", "asn", "prefix"])
        .into_iter()
        .take(600)
        .map(|r| (r[0].clone().unwrap(), r[1].as_ref().unwrap().parse().unwrap(), r[2].clone().unwrap()))
        .collect();
    let reserved = ["10.0.0.1", "192.168.7.7", "127.0.0.9", "fe80::1"];
    let mut batch = PlanBatch::with_capacity(rows.len() + 16);
    let mut push = |ip: &str, asn: u32, prefix: &str| batch.push(&PlanRow { ip, ip_version: if ip.contains(':') { 6 } else { 4 }, asn, prefix, org_id: "o", org_name: "o", category: None, category_source: None });
    // Duplicates first, under a higher AS number: the plan's own row must win wherever it is.
    for (ip, asn, prefix) in rows.iter().take(5) {
        push(ip, asn + 1000, prefix);
    }
    for (ip, asn, prefix) in &rows {
        push(ip, *asn, prefix);
    }
    for ip in reserved {
        push(ip, 64999, "10.0.0.0/8");
    }
    let plan = lab.path("plan.parquet");
    let mut w = parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&plan).unwrap(), plan_schema(), None).unwrap();
    w.write(&batch.finish()).unwrap();
    w.close().unwrap();
    let mut flags = LAB_SCAN.to_vec();
    flags.extend(["--rate", "20000", "--ports", "25", "--control-ports", "none", "--random-ports", "0", "--crawl-id", "reserved"]);
    demo::scan(&lab.state, &ds, &plan, &lab.path("data"), &flags).unwrap();
    let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(find_manifest(&lab.path("data"))).unwrap()).unwrap();
    let got = read_rows(&lab.path("data"), &["ip", "asn"]);
    let skipped = m["summary"]["skipped"]["reserved"].as_u64().unwrap();
    println!("plan of {} rows ({} addresses, 5 listed twice, {} reserved): {} rows recorded, {skipped} probes refused as reserved", rows.len() + 5 + reserved.len(), rows.len() + reserved.len(), reserved.len(), got.len());
    assert_eq!(skipped, reserved.len() as u64, "each reserved target refused and counted");
    assert!(got.iter().all(|r| !reserved.contains(&r[0].as_deref().unwrap())), "a reserved target was recorded");
    assert_eq!(got.len(), rows.len(), "every lab target exactly once");
    let asn_of: std::collections::HashMap<&str, &str> = got.iter().map(|r| (r[0].as_deref().unwrap(), r[1].as_deref().unwrap())).collect();
    for (ip, asn, _) in rows.iter().take(5) {
        assert_eq!(asn_of[ip.as_str()], asn.to_string(), "{ip}: the lowest AS of its rows");
    }
}
