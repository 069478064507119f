//! The plan as Parquet (zstd), with the seed, the inputs and their SHA-256 in its key-value
//! metadata, published atomically (a failed plan never replaces a good one).

use super::{Plan, PlanInputs, PlanSummary};
use anyhow::Result;
use arrow_array::RecordBatch;
use datasets::publish::AtomicFile;
use datasets::schema::{self, PlanBatch, PlanRow};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use std::collections::HashMap;
use std::path::Path;

/// Write the plan to `out`.
pub fn write(plan: &Plan, inp: &PlanInputs, out: &Path) -> Result<()> {
    let mut kv = vec![
        ("port25.kind".to_string(), "plan".to_string()),
        ("port25.seed".into(), inp.seed.to_string()),
        ("port25.per_asn".into(), inp.per_asn.to_string()),
        ("port25.select".into(), format!("{:?}", inp.select)),
        ("port25.software".into(), crate::SOFTWARE.into()),
        ("port25.inputs".into(), serde_json::to_string(&plan.inputs.iter().map(|(f, h)| serde_json::json!({"file": f, "sha256": h})).collect::<Vec<_>>())?),
        ("port25.allow_reserved".into(), inp.allow_reserved.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(",")),
        // How each family was drawn: a report must not compare a random sample with a hitlist's
        // responsive addresses like for like.
        ("port25.sampling_v4".into(), plan.sampling.0.as_str().into()),
        ("port25.sampling_v6".into(), plan.sampling.1.as_str().into()),
        ("port25.edge_addresses".into(), if inp.keep_edge_addresses { "kept" } else { "skipped" }.into()),
    ];
    kv.sort();
    // Addresses are unique: a dictionary would be built only to be abandoned. A plan is read
    // once per crawl, so the fastest zstd level serves.
    let props = WriterProperties::builder()
        .set_compression(parquet::basic::Compression::ZSTD(parquet::basic::ZstdLevel::try_new(1)?))
        .set_column_dictionary_enabled(parquet::schema::types::ColumnPath::from(schema::plan::IP), false)
        .set_key_value_metadata(Some(kv.into_iter().map(|(k, v)| parquet::file::metadata::KeyValue::new(k, v)).collect()))
        .build();
    let mut w = ArrowWriter::try_new(AtomicFile::create(out)?, schema::plan_schema(), Some(props))?;
    // Two stages on two cores: this thread builds Arrow batches (text formatting), the other
    // encodes and compresses them into Parquet.
    let (btx, brx) = std::sync::mpsc::sync_channel::<RecordBatch>(2);
    let writer = std::thread::spawn(move || -> Result<ArrowWriter<AtomicFile>> {
        for b in brx {
            w.write(&b)?;
        }
        Ok(w)
    });
    let mut org_cache: HashMap<u32, (String, String, Option<(String, String)>)> = HashMap::new();
    let (mut ip, mut prefix) = (String::with_capacity(64), String::with_capacity(64));
    for chunk in plan.targets.chunks(65_536) {
        let mut batch = PlanBatch::with_capacity(chunk.len());
        for t in chunk {
            let (org_id, org_name, cat) = org_cache.entry(t.asn).or_insert_with(|| {
                let (i, n) = plan.orgs.org_of(t.asn);
                (i, n, plan.categories.category(t.asn))
            });
            ip.clear();
            schema::push_ip(&mut ip, t.ip);
            prefix.clear();
            schema::push_ip(&mut prefix, t.prefix.network());
            prefix.push('/');
            prefix.push_str(itoa::Buffer::new().format(t.prefix.prefix_len()));
            batch.push(&PlanRow {
                ip: &ip,
                ip_version: if t.ip.is_ipv4() { 4 } else { 6 },
                asn: t.asn,
                prefix: &prefix,
                org_id,
                org_name,
                category: cat.as_ref().map(|c| c.0.as_str()),
                category_source: cat.as_ref().map(|c| c.1.as_str()),
            });
        }
        if btx.send(batch.finish()).is_err() {
            break; // the writer failed; its error is reported below
        }
    }
    drop(btx);
    let w = writer.join().map_err(|_| anyhow::anyhow!("plan writer thread panicked"))??;
    tracing::debug!("plan: batches encoded");
    w.into_inner()?.commit()?;
    Ok(())
}

pub fn print_summary(s: &PlanSummary, out: &Path) {
    println!("plan: {} ASNs selected, {} with targets, {} prefixes", s.asns_selected, s.asns_with_targets, s.prefixes);
    println!("      {} targets ({} IPv4, {} IPv6) -> {}", s.targets_v4 + s.targets_v6, s.targets_v4, s.targets_v6, out.display());
    if !s.excluded.is_empty() || !s.excluded_prefixes.is_empty() {
        let a: Vec<String> = s.excluded.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let p: Vec<String> = s.excluded_prefixes.iter().map(|(k, v)| format!("{k} {v}")).collect();
        println!("      excluded addresses: {}; whole prefixes: {}", if a.is_empty() { "none".into() } else { a.join(", ") }, if p.is_empty() { "none".into() } else { p.join(", ") });
    }
    if s.bad_lines > 0 {
        println!("      skipped {} malformed input lines", s.bad_lines);
    }
}

