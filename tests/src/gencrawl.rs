//! `lab gen-crawl`: a synthetic crawl in the crawler's exact Parquet schema, for benchmarks of
//! the analysis at scale (10 M rows and more), with routing and AS2Org files to match.
//! Per AS a policy (open, silent drop, ICMP, injected RST, host firewalls), per host a life
//! and open ports — the same mix the lab uses, without the network.

use anyhow::Result;
use arrow_array::builder::{StringBuilder, TimestampMicrosecondBuilder, UInt16Builder, UInt32Builder, UInt8Builder};
use arrow_array::{ArrayRef, RecordBatch};
use datasets::schema::observation_schema;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

const PORTS: [(u16, &str); 8] = [(25, "target"), (465, "mail"), (587, "mail"), (80, "control"), (443, "control"), (22, "control"), (40001, "random"), (50002, "random")];

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
    let schema = observation_schema();
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?))
        .set_max_row_group_row_count(Some(1 << 20))
        .set_key_value_metadata(Some(vec![parquet::file::metadata::KeyValue::new("port25.vantage".to_string(), "gen".to_string())]))
        .build();
    let per_file = hosts.div_ceil(files as u64);
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let mut h = 0u64;
    for fi in 0..files {
        let f = std::fs::File::create(part.join(format!("part-{fi:03}.parquet")))?;
        let mut w = ArrowWriter::try_new(f, schema.clone(), Some(props.clone()))?;
        let end = (h + per_file).min(hosts);
        while h < end {
            let chunk_end = (h + 16_384).min(end);
            let n = ((chunk_end - h) as usize) * PORTS.len();
            let s = |cap| StringBuilder::with_capacity(n, n * cap);
            let (mut cid, mut van, mut ip, mut pfx, mut role, mut reply, mut opts, mut resp) = (s(9), s(7), s(14), s(16), s(7), s(6), s(9), s(12));
            let (mut ver, mut att, mut ttl, mut fl, mut ity, mut ico) = (UInt8Builder::new(), UInt8Builder::new(), UInt8Builder::new(), UInt8Builder::new(), UInt8Builder::new(), UInt8Builder::new());
            let (mut asn_b, mut rtt) = (UInt32Builder::new(), UInt32Builder::new());
            let (mut port_b, mut ipid, mut win, mut mss) = (UInt16Builder::new(), UInt16Builder::new(), UInt16Builder::new(), UInt16Builder::new());
            let mut sent = TimestampMicrosecondBuilder::new().with_timezone("UTC");
            let mut recv = TimestampMicrosecondBuilder::new().with_timezone("UTC");
            let mut txt = String::new();
            for host in h..chunk_end {
                let a = (host / per_as) as u32;
                let asn = 100_000 + a;
                let n24 = (per_as as u32).div_ceil(256);
                let addr = (11u32 << 24) + a * (n24 << 8) + (host % per_as) as u32;
                let policy = a % 5; // 0 open, 1 drop, 2 icmp, 3 rst, 4 host firewalls
                let dead = rng.random_bool(0.3);
                let fw = policy == 4 && rng.random_bool(0.4);
                txt.clear();
                let _ = write!(txt, "{}", std::net::Ipv4Addr::from(addr));
                let prefix = format!("{}/24", std::net::Ipv4Addr::from(addr & !0xff));
                for (port, r) in PORTS {
                    cid.append_value("synthetic");
                    van.append_value("gen");
                    ip.append_value(&txt);
                    ver.append_value(4);
                    asn_b.append_value(asn);
                    pfx.append_value(&prefix);
                    port_b.append_value(port);
                    role.append_value(r);
                    let t = 1_793_000_000_000_000i64 + host as i64;
                    sent.append_value(t);
                    // (reply, ttl, icmp)
                    let obs: (&str, u8, Option<(u8, u8)>) = if port == 25 && policy == 1 {
                        ("none", 0, None)
                    } else if port == 25 && policy == 2 {
                        ("icmp", 250, Some((3, 13)))
                    } else if port == 25 && policy == 3 {
                        ("rst", 251, None)
                    } else if dead || (port == 25 && fw) {
                        ("none", 0, None)
                    } else if r != "random" && rng.random_bool(0.45) {
                        ("synack", 52, None)
                    } else {
                        ("rst", 52, None)
                    };
                    reply.append_value(obs.0);
                    att.append_value(if obs.0 == "none" { 3 } else { 1 });
                    if obs.0 == "none" {
                        for b in [&mut recv] {
                            b.append_null();
                        }
                        rtt.append_null();
                        ttl.append_null();
                        ipid.append_null();
                        fl.append_null();
                        win.append_null();
                        mss.append_null();
                        opts.append_null();
                        ity.append_null();
                        ico.append_null();
                        resp.append_null();
                    } else {
                        recv.append_value(t + 20_000);
                        rtt.append_value(20_000);
                        ttl.append_value(obs.1);
                        ipid.append_value(rng.random());
                        if let Some((ty, co)) = obs.2 {
                            fl.append_null();
                            win.append_null();
                            mss.append_null();
                            opts.append_null();
                            ity.append_value(ty);
                            ico.append_value(co);
                            resp.append_value(std::net::Ipv4Addr::from((11u32 << 24) + a * (n24 << 8)).to_string());
                        } else {
                            fl.append_value(if obs.0 == "synack" { 0x12 } else { 0x14 });
                            win.append_value(if obs.0 == "synack" { 64240 } else { 0 });
                            if obs.0 == "synack" { mss.append_value(1460) } else { mss.append_null() }
                            opts.append_value(if obs.0 == "synack" { "2,4,8,1,3" } else { "" });
                            ity.append_null();
                            ico.append_null();
                            resp.append_null();
                        }
                    }
                }
            }
            let cols: Vec<ArrayRef> = vec![
                Arc::new(cid.finish()), Arc::new(van.finish()), Arc::new(ip.finish()), Arc::new(ver.finish()), Arc::new(asn_b.finish()),
                Arc::new(pfx.finish()), Arc::new(port_b.finish()), Arc::new(role.finish()), Arc::new(att.finish()), Arc::new(sent.finish()),
                Arc::new(reply.finish()), Arc::new(recv.finish()), Arc::new(rtt.finish()), Arc::new(ttl.finish()), Arc::new(ipid.finish()),
                Arc::new(fl.finish()), Arc::new(win.finish()), Arc::new(mss.finish()), Arc::new(opts.finish()), Arc::new(ity.finish()),
                Arc::new(ico.finish()), Arc::new(resp.finish()),
            ];
            w.write(&RecordBatch::try_new(schema.clone(), cols)?)?;
            h = chunk_end;
        }
        w.close()?;
    }
    Ok(())
}
