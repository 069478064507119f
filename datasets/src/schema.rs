//! The Parquet schemas shared by crawler and analysis: the plan (one row per target) and
//! the crawl's observations (one row per probed (target, port), silence included).
//!
//! Types are chosen for DuckDB: timestamps are `Timestamp(µs, "UTC")` (TIMESTAMPTZ), small
//! integers unsigned, text plain Utf8 (the Parquet writer dictionary-encodes it on disk).

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use std::sync::Arc;

pub mod plan {
    pub const IP: &str = "ip";
    pub const IP_VERSION: &str = "ip_version";
    pub const ASN: &str = "asn";
    pub const PREFIX: &str = "prefix";
    pub const ORG_ID: &str = "org_id";
    pub const ORG_NAME: &str = "org_name";
    pub const CATEGORY: &str = "category";
    pub const CATEGORY_SOURCE: &str = "category_source";
}

pub fn plan_schema() -> SchemaRef {
    use plan::*;
    Arc::new(Schema::new(vec![
        Field::new(IP, DataType::Utf8, false),
        Field::new(IP_VERSION, DataType::UInt8, false),
        Field::new(ASN, DataType::UInt32, false),
        Field::new(PREFIX, DataType::Utf8, false),
        Field::new(ORG_ID, DataType::Utf8, false),
        Field::new(ORG_NAME, DataType::Utf8, false),
        Field::new(CATEGORY, DataType::Utf8, true),
        Field::new(CATEGORY_SOURCE, DataType::Utf8, true),
    ]))
}

pub mod obs {
    pub const CRAWL_ID: &str = "crawl_id";
    pub const VANTAGE: &str = "vantage";
    pub const IP: &str = "ip";
    pub const IP_VERSION: &str = "ip_version";
    pub const ASN: &str = "asn";
    pub const PREFIX: &str = "prefix";
    pub const PORT: &str = "port";
    pub const PORT_ROLE: &str = "port_role";
    pub const ATTEMPTS: &str = "attempts";
    pub const SENT_AT: &str = "sent_at";
    pub const REPLY: &str = "reply";
    pub const RECEIVED_AT: &str = "received_at";
    pub const RTT_US: &str = "rtt_us";
    pub const REPLY_TTL: &str = "reply_ttl";
    pub const REPLY_IPID: &str = "reply_ipid";
    pub const TCP_FLAGS: &str = "tcp_flags";
    pub const TCP_WINDOW: &str = "tcp_window";
    pub const TCP_MSS: &str = "tcp_mss";
    pub const TCP_OPTIONS: &str = "tcp_options";
    pub const ICMP_TYPE: &str = "icmp_type";
    pub const ICMP_CODE: &str = "icmp_code";
    pub const ICMP_RESPONDER: &str = "icmp_responder";
}

/// `reply` values.
pub mod reply {
    pub const SYNACK: &str = "synack";
    pub const RST: &str = "rst";
    pub const ICMP: &str = "icmp";
    pub const NONE: &str = "none";
}

/// `port_role` values: the mail ports (25 is `target`, 465/587 `mail`), control ports that
/// tell whether the host is alive, random closed high ports that expose all-ports responders.
pub mod role {
    pub const TARGET: &str = "target";
    pub const MAIL: &str = "mail";
    pub const CONTROL: &str = "control";
    pub const RANDOM: &str = "random";
}

pub fn observation_schema() -> SchemaRef {
    use obs::*;
    let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    Arc::new(Schema::new(vec![
        Field::new(CRAWL_ID, DataType::Utf8, false),
        Field::new(VANTAGE, DataType::Utf8, false),
        Field::new(IP, DataType::Utf8, false),
        Field::new(IP_VERSION, DataType::UInt8, false),
        Field::new(ASN, DataType::UInt32, false),
        Field::new(PREFIX, DataType::Utf8, false),
        Field::new(PORT, DataType::UInt16, false),
        Field::new(PORT_ROLE, DataType::Utf8, false),
        Field::new(ATTEMPTS, DataType::UInt8, false),
        Field::new(SENT_AT, ts.clone(), false),
        Field::new(REPLY, DataType::Utf8, false),
        Field::new(RECEIVED_AT, ts, true),
        Field::new(RTT_US, DataType::UInt32, true),
        Field::new(REPLY_TTL, DataType::UInt8, true),
        Field::new(REPLY_IPID, DataType::UInt16, true),
        Field::new(TCP_FLAGS, DataType::UInt8, true),
        Field::new(TCP_WINDOW, DataType::UInt16, true),
        Field::new(TCP_MSS, DataType::UInt16, true),
        Field::new(TCP_OPTIONS, DataType::Utf8, true),
        Field::new(ICMP_TYPE, DataType::UInt8, true),
        Field::new(ICMP_CODE, DataType::UInt8, true),
        Field::new(ICMP_RESPONDER, DataType::Utf8, true),
    ]))
}

/// Append an address in the schemas' text form (dotted quad, RFC 5952 IPv6). The dotted quad
/// skips the `fmt` machinery: plan and crawl files hold millions of them.
pub fn push_ip(s: &mut String, ip: std::net::IpAddr) {
    match ip {
        std::net::IpAddr::V4(a) => {
            let mut b = itoa::Buffer::new();
            for (i, o) in a.octets().iter().enumerate() {
                if i > 0 {
                    s.push('.');
                }
                s.push_str(b.format(*o));
            }
        }
        std::net::IpAddr::V6(a) => {
            use std::fmt::Write;
            let _ = write!(s, "{a}");
        }
    }
}

/// Open a Parquet file for reading record batches, with an error that names the file and
/// says what is wrong (a crawl killed mid-write leaves a file without its footer).
pub fn open_parquet(
    path: &std::path::Path,
    batch_size: usize,
) -> Result<parquet::arrow::arrow_reader::ParquetRecordBatchReader, crate::DatasetError> {
    open_parquet_columns(path, batch_size, None)
}

/// `open_parquet`, decoding only the named columns (all when `None`).
pub fn open_parquet_columns(
    path: &std::path::Path,
    batch_size: usize,
    columns: Option<&[&str]>,
) -> Result<parquet::arrow::arrow_reader::ParquetRecordBatchReader, crate::DatasetError> {
    let f = std::fs::File::open(path).map_err(|e| crate::DatasetError::io(path, e))?;
    let mut b = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
        .map_err(|e| crate::DatasetError::file(path, format!("not a complete Parquet file (truncated or still being written?): {e}")))?;
    if let Some(cols) = columns {
        let mask = parquet::arrow::ProjectionMask::columns(b.parquet_schema(), cols.iter().copied());
        b = b.with_projection(mask);
    }
    b.with_batch_size(batch_size).build().map_err(|e| crate::DatasetError::file(path, e.to_string()))
}

/// Key-value metadata of a Parquet file.
pub fn parquet_metadata(path: &std::path::Path) -> Result<Vec<(String, String)>, crate::DatasetError> {
    let f = std::fs::File::open(path).map_err(|e| crate::DatasetError::io(path, e))?;
    let b = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
        .map_err(|e| crate::DatasetError::file(path, format!("not a complete Parquet file (truncated or still being written?): {e}")))?;
    Ok(b
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .map(|kv| kv.iter().map(|k| (k.key.clone(), k.value.clone().unwrap_or_default())).collect())
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    #[test]
    fn push_ip_matches_display() {
        for a in ["0.0.0.0", "198.18.255.7", "255.255.255.255", "2001:db8::1", "::ffff:192.0.2.1", "2001:db8:0:1::"] {
            let ip: std::net::IpAddr = a.parse().unwrap();
            let mut s = String::new();
            super::push_ip(&mut s, ip);
            assert_eq!(s, ip.to_string());
        }
    }
}
