//! Writes the lab's routing, organization, category, hitlist and opt-out datasets in the
//! real public formats, plus the ground truth, so tests exercise the real loaders.

use crate::topology::{addr, Topology};
use crate::truth;
use anyhow::Result;
use std::fmt::Write;
use std::path::Path;

/// Ports the ground-truth file lists per host (other ports: see `truth::expect`).
pub const TRUTH_PORTS: [u16; 6] = [25, 465, 587, 80, 443, 22];
/// Source ports of the reflection probes the ground truth lists per host.
pub const REFLECT_PORTS: [u16; 4] = [25, 465, 587, 2525];

pub fn write_all(topo: &Topology, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let (mut r4, mut r6, mut orgs, mut cats, mut hit, mut aliased, mut optout) =
        (String::new(), String::new(), String::new(), String::new(), String::new(), String::new(), String::new());
    // RouteViews pfx2as: prefix<TAB>length<TAB>origins ('_' joins multi-origin announcements).
    let _ = writeln!(r4, "192.0.2.0\t24\t{}", topo.transit_asn);
    let _ = writeln!(r6, "2001:db8::\t48\t{}", topo.transit_asn);
    // CAIDA AS2Org JSONL.
    orgs.push_str("# format: CAIDA AS2Org JSONL (lab-generated)\n");
    let org_line = |o: &mut String, id: &str, name: &str| {
        let _ = writeln!(o, "{}", serde_json::json!({"type":"Organization","organizationId":id,"changed":"20261101","name":name,"country":"ZZ","source":"LAB"}));
    };
    let asn_line = |o: &mut String, asn: u32, id: &str, name: &str| {
        let _ = writeln!(o, "{}", serde_json::json!({"type":"ASN","asn":asn.to_string(),"changed":"20261101","name":name,"opaqueId":"","organizationId":id,"source":"LAB"}));
    };
    org_line(&mut orgs, "ORG-TRANSIT", &topo.transit_org);
    asn_line(&mut orgs, topo.transit_asn, "ORG-TRANSIT", "LAB-TRANSIT");
    // ASdb: ASN,Category 1 - Layer 1,Category 1 - Layer 2,Category 2 - Layer 1,Category 2 - Layer 2
    cats.push_str("ASN,Category 1 - Layer 1,Category 1 - Layer 2,Category 2 - Layer 1,Category 2 - Layer 2\n");
    let _ = writeln!(cats, "AS{},Computer and Information Technology,Internet Service Provider (ISP),,", topo.transit_asn);
    hit.push_str("# lab IPv6 hitlist (responsive-addresses.txt layout)\n");
    aliased.push_str("# lab aliased prefixes (aliased-prefixes.txt layout)\n");
    optout.push_str("# networks whose operators asked not to be scanned\n");
    let mut orgs_seen = std::collections::BTreeSet::new();
    for (i, p) in topo.providers.iter().enumerate() {
        // Two lab providers may be one organization (its ASes behind different borders).
        if orgs_seen.insert(p.org_id.clone()) {
            org_line(&mut orgs, &p.org_id, &p.name);
        }
        for (k, a) in p.ases.iter().enumerate() {
            let origin = if a.multi_origin.is_empty() {
                a.asn.to_string()
            } else {
                std::iter::once(a.asn).chain(a.multi_origin.iter().copied()).map(|x| x.to_string()).collect::<Vec<_>>().join("_")
            };
            for n in &a.v4 {
                let _ = writeln!(r4, "{}\t{}\t{origin}", n.network(), n.prefix_len());
            }
            for n in &a.v6 {
                let _ = writeln!(r6, "{}\t{}\t{}", n.network(), n.prefix_len(), a.asn);
            }
            asn_line(&mut orgs, a.asn, &p.org_id, &format!("AS-{}-{k}", p.org_id.trim_start_matches("ORG-")));
            let layer2 = match (p.category.as_str(), i % 3) {
                ("hosting", 0) => "Hosting and Cloud Provider",
                // Variant spellings found in real ASdb releases.
                ("hosting", 1) => "Hosting, Cloud Provider, Data Center, Server Colocation",
                ("hosting", _) => "Hosting and Cloud Provicer",
                _ => "Internet Service Provider (ISP)",
            };
            let _ = writeln!(cats, "AS{},Computer and Information Technology,\"{layer2}\",,", a.asn);
            if p.opt_out {
                for n in &a.v4 {
                    let _ = writeln!(optout, "{n}");
                }
                for n in &a.v6 {
                    let _ = writeln!(optout, "{n}");
                }
            }
            if p.aliased_v6 {
                for n in &a.v6 {
                    let _ = writeln!(aliased, "{n}");
                }
            }
        }
        // Router links: infrastructure space of the provider's first AS.
        let first = p.ases[0].asn;
        let (c4, _) = addr::core_border_v4(i);
        let (b4, _) = addr::border_hosts_v4(i);
        let _ = writeln!(r4, "{}\t29\t{first}", std::net::Ipv4Addr::from(u32::from(c4) - 1));
        let _ = writeln!(r4, "{}\t29\t{first}", std::net::Ipv4Addr::from(u32::from(b4) - 1));
        let (c6, _) = addr::core_border_v6(i);
        let (b6, _) = addr::border_hosts_v6(i);
        let _ = writeln!(r6, "{}\t64\t{first}", ipnet::Ipv6Net::new(c6, 64)?.network());
        let _ = writeln!(r6, "{}\t64\t{first}", ipnet::Ipv6Net::new(b6, 64)?.network());
        for h in topo.hosts_of(i).iter().filter(|h| h.ip.is_ipv6()) {
            let _ = writeln!(hit, "{}", h.ip);
        }
    }
    std::fs::write(dir.join("routeviews-rv2-lab.pfx2as"), r4)?;
    std::fs::write(dir.join("routeviews-rv6-lab.pfx2as"), r6)?;
    std::fs::write(dir.join("lab.as-org2info.jsonl"), orgs)?;
    std::fs::write(dir.join("lab_categorized_ases.csv"), cats)?;
    std::fs::write(dir.join("responsive-addresses.txt"), hit)?;
    std::fs::write(dir.join("aliased-prefixes.txt"), aliased)?;
    std::fs::write(dir.join("opt-out.txt"), optout)?;
    write_customers(topo, dir)?;
    write_truth(topo, dir)?;
    // The lab providers' documented policies (five true, OpenCloud's stale on purpose), in the
    // shipped dataset's format: what `analysis report --policies` shows beside the measurements.
    std::fs::write(dir.join(LAB_POLICIES), include_str!("../../datasets/fixtures/policies-lab.csv"))?;
    Ok(())
}

/// The lab's documented-policies file in its datasets directory.
pub const LAB_POLICIES: &str = "lab-documented-policies.csv";

/// Customer vantages' prefixes: originated by their provider's first AS (appended to the
/// routing files, so the analysis maps a vantage to its provider by source address) and on
/// the exclusion list (so no plan ever targets them).
fn write_customers(topo: &Topology, dir: &Path) -> Result<()> {
    let mut exclude = String::from("# customer vantages of the lab: measured from inside (crawler egress), never crawled\n");
    let (mut r4, mut r6) = (String::new(), String::new());
    for c in topo.customers() {
        let _ = writeln!(r4, "{}\t{}\t{}", c.v4_net.network(), c.v4_net.prefix_len(), c.asn);
        let _ = writeln!(r6, "{}\t{}\t{}", c.v6_net.network(), c.v6_net.prefix_len(), c.asn);
        let _ = writeln!(exclude, "{}\n{}", c.v4_net, c.v6_net);
    }
    for (file, add) in [("routeviews-rv2-lab.pfx2as", r4), ("routeviews-rv6-lab.pfx2as", r6)] {
        let mut t = std::fs::read_to_string(dir.join(file))?;
        t.push_str(&add);
        std::fs::write(dir.join(file), t)?;
    }
    std::fs::write(dir.join("exclude.txt"), exclude)?;
    Ok(())
}

fn write_truth(topo: &Topology, dir: &Path) -> Result<()> {
    let mut f = String::new();
    for h in topo.all_hosts() {
        let p = &topo.providers[h.provider];
        let ports: serde_json::Map<String, serde_json::Value> = TRUTH_PORTS
            .iter()
            .map(|port| (port.to_string(), serde_json::to_value(truth::expect(topo, &h, *port)).unwrap()))
            .collect();
        // A random high port (nothing listens there): the "other ports" expectation.
        let other = truth::expect(topo, &h, 40_000);
        // Reflection probes (from these source ports to a random high port).
        let reflect: serde_json::Map<String, serde_json::Value> =
            REFLECT_PORTS.iter().map(|sp| (sp.to_string(), serde_json::to_value(truth::expect_reflect(topo, &h, *sp)).unwrap())).collect();
        let _ = writeln!(
            f,
            "{}",
            serde_json::json!({"ip": h.ip.to_string(), "provider": p.name, "asn": h.asn, "prefix": h.prefix.to_string(),
                "dead": h.dead, "firewall_25": h.firewall_25, "src_port_firewall": h.src_port_firewall, "all_ports": h.all_ports, "open": h.open,
                "ports": ports, "other_ports": other, "reflect": reflect})
        );
    }
    std::fs::write(dir.join("truth-hosts.jsonl"), f)?;
    std::fs::write(dir.join("truth-providers.json"), serde_json::to_string_pretty(&truth::provider_truth(topo, 30))?)?;
    if topo.has_alt_vantage() {
        std::fs::write(dir.join("truth-providers-alt.json"), serde_json::to_string_pretty(&truth::provider_truth_from(topo, 30, truth::From::Alt))?)?;
    }
    std::fs::write(dir.join("truth-outbound.json"), serde_json::to_string_pretty(&truth::outbound_truth(topo, 30))?)?;
    std::fs::write(dir.join("truth-egress.json"), serde_json::to_string_pretty(&truth::egress_truth(topo))?)?;
    std::fs::write(dir.join("truth-egress-providers.json"), serde_json::to_string_pretty(&truth::egress_provider_truth(topo, 30))?)?;
    Ok(())
}
