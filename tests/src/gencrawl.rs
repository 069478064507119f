//! `lab gen-crawl`: a synthetic crawl in the crawler's Parquet schema (`datasets::schema`), for benchmarks of
//! the analysis at scale (10 M rows and more), with routing and AS2Org files to match.
//! Per AS a policy (open, silent drop, ICMP, injected RST, host firewalls), per host a life
//! and open ports — the same mix the lab uses, without the network.

use anyhow::Result;
use datasets::publish::AtomicFile;
use datasets::schema::{observation_schema, observation_writer_props, reply, role, ObsBatch, ObsRow};
use parquet::arrow::ArrowWriter;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::Path;

const PORTS: [(u16, &str); 8] = [(25, role::TARGET), (465, role::MAIL), (587, role::MAIL), (80, role::CONTROL), (443, role::CONTROL), (22, role::CONTROL), (40001, role::RANDOM), (50002, role::RANDOM)];

pub fn generate(out: &Path, rows: u64, ases: u32, files: u32) -> Result<()> {
    let hosts = rows / PORTS.len() as u64;
    let per_as = (hosts / ases as u64).max(1);
    let part = out.join("crawl_date=2026-11-01/crawl_id=synthetic");
    std::fs::create_dir_all(&part)?;
    let mut routes = String::new();
    let mut orgs = String::new();
    for a in 0..ases {
        let asn = 100_000 + a;
        // Each AS gets consecutive /24s from 11.0.0.0 upwards (documentation-free, never probed).
        let first = (11u32 << 24) + a * ((per_as as u32).div_ceil(256) << 8);
        let n24 = (per_as as u32).div_ceil(256);
        for k in 0..n24 {
            let net = first + (k << 8);
            let _ = writeln!(routes, "{}\t24\t{asn}", std::net::Ipv4Addr::from(net));
        }
        let org = format!("ORG-{}", a / 2); // pairs of sibling ASes
        let _ = writeln!(orgs, "{}", serde_json::json!({"type":"ASN","asn":asn.to_string(),"organizationId":org,"name":format!("AS{asn}"),"changed":"","opaqueId":"","source":"GEN"}));
        if a % 2 == 0 {
            let _ = writeln!(orgs, "{}", serde_json::json!({"type":"Organization","organizationId":org,"name":format!("Provider {}", a / 2),"country":"ZZ","changed":"","source":"GEN"}));
        }
    }
    std::fs::write(out.join("routes.pfx2as"), routes)?;
    std::fs::write(out.join("as-org2info.jsonl"), orgs)?;
    let props = observation_writer_props(vec![("port25.vantage".to_string(), "gen".to_string())], 1 << 20);
    let per_file = hosts.div_ceil(files as u64);
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let mut h = 0u64;
    let (mut ip, mut prefix, mut responder) = (String::new(), String::new(), String::new());
    for fi in 0..files {
        let mut w = ArrowWriter::try_new(AtomicFile::create(&part.join(format!("part-{fi:03}.parquet")))?, observation_schema(), Some(props.clone()))?;
        let end = (h + per_file).min(hosts);
        while h < end {
            let chunk_end = (h + 16_384).min(end);
            let mut batch = ObsBatch::with_capacity(((chunk_end - h) as usize) * PORTS.len());
            for host in h..chunk_end {
                let a = (host / per_as) as u32;
                let asn = 100_000 + a;
                let n24 = (per_as as u32).div_ceil(256);
                let addr = (11u32 << 24) + a * (n24 << 8) + (host % per_as) as u32;
                let policy = a % 5; // 0 open, 1 drop, 2 icmp, 3 rst, 4 host firewalls
                let dead = rng.random_bool(0.3);
                let fw = policy == 4 && rng.random_bool(0.4);
                ip.clear();
                let _ = write!(ip, "{}", Ipv4Addr::from(addr));
                prefix.clear();
                let _ = write!(prefix, "{}/24", Ipv4Addr::from(addr & !0xff));
                responder.clear();
                let _ = write!(responder, "{}", Ipv4Addr::from((11u32 << 24) + a * (n24 << 8)));
                for (port, r) in PORTS {
                    let t = 1_793_000_000_000_000i64 + host as i64;
                    // (reply, ttl, icmp)
                    let obs: (&str, u8, Option<(u8, u8)>) = if port == 25 && policy == 1 {
                        (reply::NONE, 0, None)
                    } else if port == 25 && policy == 2 {
                        (reply::ICMP, 250, Some((3, 13)))
                    } else if port == 25 && policy == 3 {
                        (reply::RST, 251, None)
                    } else if dead || (port == 25 && fw) {
                        (reply::NONE, 0, None)
                    } else if r != role::RANDOM && rng.random_bool(0.45) {
                        (reply::SYNACK, 52, None)
                    } else {
                        (reply::RST, 52, None)
                    };
                    let attempts = if obs.0 == reply::NONE { 3 } else { 1 };
                    let sport = 32768 + (host % 28232) as u16;
                    let mut row = ObsRow::silent("synthetic", "gen", &ip, 4, asn, &prefix, port, r, sport, attempts, t);
                    if obs.0 != reply::NONE {
                        row.reply = obs.0;
                        row.received_at = Some(t + 20_000);
                        row.rtt_us = Some(20_000);
                        row.reply_ttl = Some(obs.1);
                        row.reply_ipid = Some(rng.random());
                        if let Some((ty, co)) = obs.2 {
                            (row.icmp_type, row.icmp_code, row.icmp_responder) = (Some(ty), Some(co), Some(responder.as_str()));
                        } else {
                            let synack = obs.0 == reply::SYNACK;
                            row.tcp_flags = Some(if synack { 0x12 } else { 0x14 });
                            row.tcp_window = Some(if synack { 64240 } else { 0 });
                            row.tcp_mss = synack.then_some(1460);
                            row.tcp_options = Some(if synack { "2,4,8,1,3" } else { "" });
                        }
                    }
                    batch.push(&row);
                }
            }
            w.write(&batch.finish())?;
            h = chunk_end;
        }
        w.into_inner()?.commit()?;
    }
    // The manifest a complete crawl ends with (`analysis` refuses crawls without one).
    let manifest = serde_json::json!({"exit_status": "complete", "params": {"generator": "lab gen-crawl", "rows": rows},
        "summary": {"sent": rows, "send_errors": 0, "frames_received": rows, "receive_drops": 0, "unlogged": 0, "interrupted": false, "rows": rows}});
    datasets::publish::write_atomic(&part.join("manifest.json"), serde_json::to_string_pretty(&manifest)?)?;
    Ok(())
}
