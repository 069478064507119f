//! `--source-ip` must be an address of the interface the probes leave by: a typo would spoof a
//! third party, who then receives every reply (and the complaints). Refused with exit 2, the
//! interface's addresses named, before a single SYN leaves; the vantage's own address works.

mod common;
use common::*;
use port25_lab::demo::{self, LAB_SCAN};
use std::process::Command;

#[test]
#[ignore = "lab test: needs root and network namespaces (tests/run-tests.sh runs it)"]
fn a_source_address_not_on_the_interface_is_refused_before_any_probe() {
    if !require_root("source_ip") || !require_tool("source_ip", "tcpdump") {
        return;
    }
    let lab = Lab::up("default");
    let ds = lab.datasets();
    demo::plan(&ds, &lab.path("plan.parquet"), 5, true).unwrap();
    // The vantage's own addresses, as the kernel lists them.
    let own = sh(&format!("ip netns exec {} ip -o addr show scope global", lab.state.vantage));
    let v4 = own.lines().find_map(|l| l.split_whitespace().skip_while(|t| *t != "inet").nth(1)).unwrap().split('/').next().unwrap().to_string();
    let scan = |src: &str, id: &str| {
        Command::new("ip")
            .args(["netns", "exec", &lab.state.vantage])
            .arg(crawler())
            .args(["--quiet", "scan", "--plan", lab.path("plan.parquet").to_str().unwrap(), "--out", lab.path("data").to_str().unwrap()])
            .args(["--allow-reserved", demo::LAB_ALLOW, "--vantage", "lab-vantage", "--crawl-id", id, "--ports", "25", "--source-ip", src])
            .args(LAB_SCAN)
            .output()
            .unwrap()
    };
    let cap = Capture::start(&lab.state.core, "v0", lab.path("v0.pcap"), "tcp");
    // A third party's address (documentation space, not the vantage's).
    let o = scan("198.51.100.99", "spoofed");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let sent = syns(&cap.stop());
    let err = String::from_utf8_lossy(&o.stderr);
    println!("--source-ip 198.51.100.99: exit {:?}: {}", o.status.code(), err.trim());
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("198.51.100.99") && err.contains(&v4) && err.contains("not an address of"), "the refusal names the interface's addresses: {err}");
    assert!(sent.is_empty(), "{} SYNs left with a foreign source address", sent.len());
    // The vantage's own address is accepted, and the probes carry it.
    let o = scan(&v4, "own");
    assert!(o.status.success(), "--source-ip {v4}: {}", String::from_utf8_lossy(&o.stderr));
    let rows = read_rows(&lab.path("data"), &["ip"]).len();
    println!("--source-ip {v4} (the vantage's): {rows} rows");
    assert!(rows > 0);
}
