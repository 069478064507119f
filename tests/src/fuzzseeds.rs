//! `lab fuzz-seeds`: the seed corpus of the fuzz targets (`fuzz/`), made with the code that
//! defines each input — reply frames from the crawler's own builders, a plan and a crawl file
//! through the shared schema — plus the dataset fixtures. `benches/fuzz.sh` runs it when a
//! target's seed directory is missing; the seeds kept in `fuzz/corpus/` came from it.

use anyhow::{Context, Result};
use crawler::probe::build::{IcmpError, TcpReply};
use crawler::probe::{Link, SynFields, MAX_REPLY_FRAME};
use datasets::schema::{plan_schema, PlanBatch, PlanRow};
use parquet::arrow::ArrowWriter;
use std::net::IpAddr;
use std::path::Path;

fn put(dir: &Path, target: &str, name: &str, bytes: &[u8]) -> Result<()> {
    let d = dir.join(target);
    std::fs::create_dir_all(&d)?;
    std::fs::write(d.join(name), bytes).with_context(|| format!("writing seed {target}/{name}"))
}

/// Replies of every kind the parser knows, IPv4 and IPv6.
fn frames(dir: &Path) -> Result<()> {
    let link = Link { src_mac: [2, 0, 0, 0, 0, 1], gw_mac: [2, 0, 0, 0, 0, 2] };
    let mut b = [0u8; MAX_REPLY_FRAME];
    for (fam, host, us, router) in [("v4", "198.18.8.7", "192.0.2.2", "198.51.100.18"), ("v6", "2001:db8:104::9", "2001:db8:0:1::2", "2001:db8:ff:3::2")] {
        let (host, us, router): (IpAddr, IpAddr, IpAddr) = (host.parse()?, us.parse()?, router.parse()?);
        let n = TcpReply::synack(host, us, 25, 40000, 0x0102_0304, 62).emit(&mut b, &link).context("synack")?;
        put(dir, "reply_parse", &format!("synack-{fam}"), &b[..n])?;
        let n = TcpReply::rst(host, us, 25, 40000, 0x0102_0304, 63).emit(&mut b, &link).context("rst")?;
        put(dir, "reply_parse", &format!("rst-{fam}"), &b[..n])?;
        let quoted = SynFields { src: us, dst: host, sport: 41000, dport: 25, seq: 0x0102_0304, ip_id: 0, tsval: 0, flow_label: 0 };
        let (ty, code) = if fam == "v4" { (3, 13) } else { (1, 1) };
        let n = IcmpError { responder: router, icmp_type: ty, icmp_code: code, ttl: 63, quoted }.emit(&mut b, &link).context("icmp")?;
        put(dir, "reply_parse", &format!("icmp-{fam}"), &b[..n])?;
        let n = IcmpError { responder: router, icmp_type: if fam == "v4" { 11 } else { 3 }, icmp_code: 0, ttl: 250, quoted }.emit(&mut b, &link).context("time exceeded")?;
        put(dir, "reply_parse", &format!("time-exceeded-{fam}"), &b[..n])?;
    }
    Ok(())
}

/// A small plan: v4 and v6 rows, a duplicate address, in the plan schema.
fn plan(dir: &Path) -> Result<()> {
    let mut batch = PlanBatch::with_capacity(8);
    for (ip, asn, prefix) in [("198.18.0.5", 64500, "198.18.0.0/24"), ("198.18.0.9", 64500, "198.18.0.0/24"), ("198.18.0.5", 64501, "198.18.0.0/23"), ("2001:db8:101::5", 64502, "2001:db8:101::/48")] {
        batch.push(&PlanRow { ip, ip_version: if ip.contains(':') { 6 } else { 4 }, asn, prefix, org_id: "ORG-1", org_name: "Lab", category: Some("hosting"), category_source: None });
    }
    let mut out = Vec::new();
    let mut w = ArrowWriter::try_new(&mut out, plan_schema(), None)?;
    w.write(&batch.finish())?;
    w.close()?;
    put(dir, "plan_targets", "plan.parquet", &out)
}

/// A crawl file of a few hosts, as `lab gen-crawl` writes them.
fn crawl(dir: &Path) -> Result<()> {
    let tmp = tempdir(dir)?;
    crate::gencrawl::generate(&tmp, 64, 2, 1)?;
    let part = tmp.join("crawl_date=2026-11-01/crawl_id=synthetic");
    let f = std::fs::read_dir(&part)?.flatten().map(|e| e.path()).find(|p| p.extension().is_some_and(|x| x == "parquet")).context("gen-crawl wrote no file")?;
    put(dir, "crawl_file", "part.parquet", &std::fs::read(&f)?)?;
    std::fs::remove_dir_all(&tmp)?;
    Ok(())
}

fn tempdir(dir: &Path) -> Result<std::path::PathBuf> {
    let t = dir.join(".gen-crawl.tmp");
    let _ = std::fs::remove_dir_all(&t);
    std::fs::create_dir_all(&t)?;
    Ok(t)
}

/// The dataset fixtures each line parser reads, and a config.
fn datasets(dir: &Path, fixtures: &Path, config: &Path) -> Result<()> {
    let copy = |target: &str, files: &[&str]| -> Result<()> {
        for f in files {
            let bytes = std::fs::read(fixtures.join(f)).with_context(|| format!("fixture {f}"))?;
            // The plain text too: mutations of compressed bytes rarely get past the gzip layer.
            if let Some(plain) = f.strip_suffix(".gz") {
                let mut text = Vec::new();
                std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(&bytes[..]), &mut text)?;
                put(dir, target, plain, &text)?;
            }
            put(dir, target, f, &bytes)?;
        }
        Ok(())
    };
    copy("routes_pfx2as", &["routeviews-rv2-20261101-1200.pfx2as", "routeviews-rv2-20261101-1200.pfx2as.gz", "routeviews-rv6-20261101-1200.pfx2as", "bad.pfx2as"])?;
    copy("routes_iptoasn", &["ip2asn-combined.tsv.gz"])?;
    copy("routes_ip_location_db", &["asn-ipv4.csv", "asn-ipv6-num.csv", "asn-ipv4-bad.csv"])?;
    copy("routes_mmdb", &["GeoLite2-ASN-test.mmdb"])?;
    copy("as2org", &["20261001.as-org2info.jsonl.gz", "20261001.as-org2info.txt", "bad.as-org2info.jsonl"])?;
    copy("categories", &["2026-10_categorized_ases.csv", "my-categories.csv", "my-categories-bad.csv"])?;
    copy("hitlist", &["responsive-addresses.txt"])?;
    copy("prefix_list", &["aliased-prefixes.txt", "opt-out-bad.txt"])?;
    put(dir, "crawl_config", "crawl.toml", &std::fs::read(config)?)?;
    Ok(())
}

/// Write every target's seeds under `dir/<target>/`.
pub fn write_all(dir: &Path, fixtures: &Path, config: &Path) -> Result<()> {
    frames(dir)?;
    plan(dir)?;
    crawl(dir)?;
    datasets(dir, fixtures, config)
}
