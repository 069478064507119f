//! The Parquet schemas shared by crawler and analysis: the plan (one row per target) and
//! the crawl's observations (one row per probed (target, port), silence included).
//!
//! Types are chosen for DuckDB: timestamps are `Timestamp(µs, "UTC")` (TIMESTAMPTZ), small
//! integers unsigned, text plain Utf8 (the Parquet writer dictionary-encodes it on disk).

use arrow_array::builder::{StringBuilder, TimestampMicrosecondBuilder, UInt16Builder, UInt32Builder, UInt8Builder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use std::sync::Arc;

/// An Arrow column builder filled from row values of type `T`.
pub trait Column<T> {
    fn put(&mut self, v: T);
}

/// Creating and finishing the column builders a [`table!`] uses.
pub trait NewColumn {
    fn with_rows(n: usize) -> Self;
    fn finish_array(&mut self) -> ArrayRef;
}

macro_rules! primitive_columns {
    ($($b:ty: $t:ty),*) => {$(
        impl Column<$t> for $b {
            #[inline]
            fn put(&mut self, v: $t) {
                self.append_value(v)
            }
        }
        impl Column<Option<$t>> for $b {
            #[inline]
            fn put(&mut self, v: Option<$t>) {
                self.append_option(v)
            }
        }
        impl NewColumn for $b {
            fn with_rows(n: usize) -> Self {
                <$b>::with_capacity(n)
            }
            fn finish_array(&mut self) -> ArrayRef {
                Arc::new(self.finish())
            }
        }
    )*};
}
primitive_columns!(UInt8Builder: u8, UInt16Builder: u16, UInt32Builder: u32);
pub(crate) use primitive_columns;

impl Column<&str> for StringBuilder {
    #[inline]
    fn put(&mut self, v: &str) {
        self.append_value(v)
    }
}
impl Column<Option<&str>> for StringBuilder {
    #[inline]
    fn put(&mut self, v: Option<&str>) {
        self.append_option(v)
    }
}
impl NewColumn for StringBuilder {
    fn with_rows(n: usize) -> Self {
        StringBuilder::with_capacity(n, n * 16)
    }
    fn finish_array(&mut self) -> ArrayRef {
        Arc::new(self.finish())
    }
}

/// Microseconds since the epoch, UTC (DuckDB: TIMESTAMPTZ).
pub struct UtcMicros(TimestampMicrosecondBuilder);

impl Column<i64> for UtcMicros {
    #[inline]
    fn put(&mut self, v: i64) {
        self.0.append_value(v)
    }
}
impl Column<Option<i64>> for UtcMicros {
    #[inline]
    fn put(&mut self, v: Option<i64>) {
        self.0.append_option(v)
    }
}
impl NewColumn for UtcMicros {
    fn with_rows(n: usize) -> Self {
        UtcMicros(TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC"))
    }
    fn finish_array(&mut self) -> ArrayRef {
        Arc::new(self.0.finish())
    }
}

pub(crate) fn utc_micros() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// Declares a Parquet table once: its column-name constants, its Arrow schema, a row struct
/// (borrowed text) and a batch builder that turns rows into a `RecordBatch`. Writers and
/// readers of the table use these, so a column exists in exactly one place.
macro_rules! table {
    (
        $(#[$doc:meta])* names $names:ident, row $Row:ident<$lt:lifetime>, batch $Batch:ident, schema $schema:ident;
        $( $(#[$fdoc:meta])* $CONST:ident $field:ident: $rty:ty => $B:ty = $dt:expr, $nullable:literal; )*
    ) => {
        /// Column names.
        pub mod $names {
            $( pub const $CONST: &str = stringify!($field); )*
        }

        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub struct $Row<$lt> {
            $( $(#[$fdoc])* pub $field: $rty, )*
        }

        /// Rows gathered column by column until [`Self::finish`] makes them a batch.
        pub struct $Batch {
            $( $field: $B, )*
            rows: usize,
        }

        impl $Batch {
            pub fn with_capacity(rows: usize) -> Self {
                $Batch { $( $field: <$B as NewColumn>::with_rows(rows), )* rows: 0 }
            }
            #[inline]
            pub fn push<$lt>(&mut self, r: &$Row<$lt>) {
                $( Column::<$rty>::put(&mut self.$field, r.$field); )*
                self.rows += 1;
            }
            pub fn len(&self) -> usize {
                self.rows
            }
            pub fn is_empty(&self) -> bool {
                self.rows == 0
            }
            /// The rows so far as a batch; the builder starts over empty.
            pub fn finish(&mut self) -> RecordBatch {
                self.rows = 0;
                let cols: Vec<ArrayRef> = vec![ $( self.$field.finish_array(), )* ];
                RecordBatch::try_new($schema(), cols).expect("the builders follow the schema")
            }
        }

        pub fn $schema() -> SchemaRef {
            Arc::new(Schema::new(vec![ $( Field::new(stringify!($field), $dt, $nullable), )* ]))
        }
    };
}
pub(crate) use table;

table! {
    /// One planned target.
    names plan, row PlanRow<'a>, batch PlanBatch, schema plan_schema;
    IP ip: &'a str => StringBuilder = DataType::Utf8, false;
    IP_VERSION ip_version: u8 => UInt8Builder = DataType::UInt8, false;
    ASN asn: u32 => UInt32Builder = DataType::UInt32, false;
    PREFIX prefix: &'a str => StringBuilder = DataType::Utf8, false;
    ORG_ID org_id: &'a str => StringBuilder = DataType::Utf8, false;
    ORG_NAME org_name: &'a str => StringBuilder = DataType::Utf8, false;
    CATEGORY category: Option<&'a str> => StringBuilder = DataType::Utf8, true;
    CATEGORY_SOURCE category_source: Option<&'a str> => StringBuilder = DataType::Utf8, true;
}

table! {
    /// One probed (target, port): the crawl's observation, silence included.
    names obs, row ObsRow<'a>, batch ObsBatch, schema observation_schema;
    CRAWL_ID crawl_id: &'a str => StringBuilder = DataType::Utf8, false;
    VANTAGE vantage: &'a str => StringBuilder = DataType::Utf8, false;
    IP ip: &'a str => StringBuilder = DataType::Utf8, false;
    IP_VERSION ip_version: u8 => UInt8Builder = DataType::UInt8, false;
    ASN asn: u32 => UInt32Builder = DataType::UInt32, false;
    PREFIX prefix: &'a str => StringBuilder = DataType::Utf8, false;
    PORT port: u16 => UInt16Builder = DataType::UInt16, false;
    PORT_ROLE port_role: &'a str => StringBuilder = DataType::Utf8, false;
    /// Our source port (of the answered attempt, or of the last one for silence): fixed for
    /// reflection probes (`port_role = reflect`), ephemeral otherwise. Crawls before it had no
    /// reflection probes.
    SRC_PORT src_port: u16 => UInt16Builder = DataType::UInt16, false;
    /// SYNs sent before the answer (or in all, for silence).
    ATTEMPTS attempts: u8 => UInt8Builder = DataType::UInt8, false;
    SENT_AT sent_at: i64 => UtcMicros = utc_micros(), false;
    /// `reply::*`.
    REPLY reply: &'a str => StringBuilder = DataType::Utf8, false;
    RECEIVED_AT received_at: Option<i64> => UtcMicros = utc_micros(), true;
    RTT_US rtt_us: Option<u32> => UInt32Builder = DataType::UInt32, true;
    REPLY_TTL reply_ttl: Option<u8> => UInt8Builder = DataType::UInt8, true;
    REPLY_IPID reply_ipid: Option<u16> => UInt16Builder = DataType::UInt16, true;
    TCP_FLAGS tcp_flags: Option<u8> => UInt8Builder = DataType::UInt8, true;
    TCP_WINDOW tcp_window: Option<u16> => UInt16Builder = DataType::UInt16, true;
    TCP_MSS tcp_mss: Option<u16> => UInt16Builder = DataType::UInt16, true;
    /// Option kinds in the order the peer sent them, e.g. `2,4,8,1,3`.
    TCP_OPTIONS tcp_options: Option<&'a str> => StringBuilder = DataType::Utf8, true;
    ICMP_TYPE icmp_type: Option<u8> => UInt8Builder = DataType::UInt8, true;
    ICMP_CODE icmp_code: Option<u8> => UInt8Builder = DataType::UInt8, true;
    ICMP_RESPONDER icmp_responder: Option<&'a str> => StringBuilder = DataType::Utf8, true;
}

impl<'a> ObsRow<'a> {
    /// A probe that stayed silent: every reply column null.
    #[allow(clippy::too_many_arguments)]
    pub fn silent(crawl_id: &'a str, vantage: &'a str, ip: &'a str, ip_version: u8, asn: u32, prefix: &'a str, port: u16, port_role: &'a str, src_port: u16, attempts: u8, sent_at: i64) -> Self {
        ObsRow {
            crawl_id,
            vantage,
            ip,
            ip_version,
            asn,
            prefix,
            port,
            port_role,
            src_port,
            attempts,
            sent_at,
            reply: reply::NONE,
            received_at: None,
            rtt_us: None,
            reply_ttl: None,
            reply_ipid: None,
            tcp_flags: None,
            tcp_window: None,
            tcp_mss: None,
            tcp_options: None,
            icmp_type: None,
            icmp_code: None,
            icmp_responder: None,
        }
    }
}

/// `reply` values.
pub mod reply {
    pub const SYNACK: &str = "synack";
    pub const RST: &str = "rst";
    pub const ICMP: &str = "icmp";
    pub const NONE: &str = "none";
    /// The probe's final attempt could not be sent (a send error): missing data, not silence.
    pub const UNSENT: &str = "unsent";
}

/// `port_role` values: the mail ports (25 is `target`, 465/587 `mail`), control ports that
/// tell whether the host is alive, random closed high ports that expose all-ports responders,
/// and `reflect`: a SYN from a fixed source port (`src_port`) whose answer must cross the
/// host's network outbound towards that port.
pub mod role {
    pub const TARGET: &str = "target";
    pub const MAIL: &str = "mail";
    pub const CONTROL: &str = "control";
    pub const RANDOM: &str = "random";
    pub const REFLECT: &str = "reflect";
}

/// How observation files are written: zstd level 3, row groups of `row_group_rows`, no
/// dictionary on columns whose values are (nearly) all distinct (a dictionary there only
/// costs hashing every value before the writer gives up on it), and the crawl's key-value
/// metadata.
pub fn observation_writer_props(kv: Vec<(String, String)>, row_group_rows: usize) -> parquet::file::properties::WriterProperties {
    use parquet::basic::{Compression, ZstdLevel};
    use parquet::schema::types::ColumnPath;
    let mut props = parquet::file::properties::WriterProperties::builder().set_compression(Compression::ZSTD(ZstdLevel::try_new(3).expect("valid level")));
    for c in [obs::IP, obs::SENT_AT, obs::RECEIVED_AT, obs::RTT_US, obs::REPLY_IPID] {
        props = props.set_column_dictionary_enabled(ColumnPath::from(c), false);
    }
    props
        .set_max_row_group_row_count(Some(row_group_rows))
        .set_key_value_metadata(Some(kv.into_iter().map(|(k, v)| parquet::file::metadata::KeyValue::new(k, v)).collect()))
        .build()
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
    open_parquet_from(path, f, batch_size, columns)
}

/// [`open_parquet_columns`] over any Parquet source (a file, bytes in memory); `path` names it
/// in errors.
pub fn open_parquet_from<R: parquet::file::reader::ChunkReader + 'static>(
    path: &std::path::Path,
    source: R,
    batch_size: usize,
    columns: Option<&[&str]>,
) -> Result<parquet::arrow::arrow_reader::ParquetRecordBatchReader, crate::DatasetError> {
    let len = source.len();
    let mut b = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(source)
        .map_err(|e| crate::DatasetError::file(path, format!("not a complete Parquet file (truncated or still being written?): {e}")))?;
    check_footer(path, b.metadata(), len)?;
    if let Some(cols) = columns {
        let mask = parquet::arrow::ProjectionMask::columns(b.parquet_schema(), cols.iter().copied());
        b = b.with_projection(mask);
    }
    b.with_batch_size(batch_size).build().map_err(|e| crate::DatasetError::file(path, e.to_string()))
}

thread_local! {
    static GUARDED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Run a step of the Parquet decoder over untrusted bytes, turning a panic into an error that
/// names the file. The parquet crate asserts on some crafted pages (a dictionary page of zero
/// values divides by zero, found by the `plan_targets` fuzz target) that no footer check can
/// rule out without decoding the pages twice. While guarded, the panic hook stays quiet: the
/// message becomes the error instead of a "panicked" line on stderr.
pub fn guard<T>(path: &std::path::Path, f: impl FnOnce() -> T) -> Result<T, crate::DatasetError> {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !GUARDED.with(|g| g.get()) {
                prev(info)
            }
        }));
    });
    let was = GUARDED.with(|g| g.replace(true));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    GUARDED.with(|g| g.set(was));
    r.map_err(|p| {
        let why = p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned()).unwrap_or_else(|| "unknown".into());
        crate::DatasetError::file(path, format!("corrupt Parquet data (the decoder failed: {why})"))
    })
}

/// Check what a footer says about where the data lies before anything is read by it: the
/// parquet crate trusts these numbers and panics on a negative offset or size (found by the
/// `plan_targets` fuzz target). Every column chunk must lie inside the file.
pub fn check_footer(path: &std::path::Path, meta: &parquet::file::metadata::ParquetMetaData, file_len: u64) -> Result<(), crate::DatasetError> {
    for (g, rg) in meta.row_groups().iter().enumerate() {
        if rg.num_rows() < 0 {
            return Err(crate::DatasetError::file(path, format!("corrupt footer: row group {g} has {} rows", rg.num_rows())));
        }
        for c in rg.columns() {
            let start = c.dictionary_page_offset().unwrap_or(c.data_page_offset()).min(c.data_page_offset());
            let size = c.compressed_size();
            let inside = start >= 0 && size >= 0 && (start as u64).checked_add(size as u64).is_some_and(|end| end <= file_len);
            if !inside {
                return Err(crate::DatasetError::file(path, format!("corrupt footer: column `{}` of row group {g} claims bytes {start}+{size} of a {file_len}-byte file", c.column_path())));
            }
        }
    }
    Ok(())
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
    fn a_decoder_panic_is_an_error_naming_the_file() {
        let p = std::path::Path::new("x.parquet");
        let e = super::guard(p, || -> u32 { panic!("attempt to divide by zero") }).unwrap_err().to_string();
        assert_eq!(e, "x.parquet: corrupt Parquet data (the decoder failed: attempt to divide by zero)");
        assert_eq!(super::guard(p, || 7).unwrap(), 7);
    }

    #[test]
    fn a_footer_pointing_outside_the_file_is_an_error_not_a_panic() {
        // Found by the `plan_targets` fuzz target: a column chunk of negative size, which the
        // parquet crate asserts on when it reads the column.
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/fuzz-negative-column-size.plan");
        let e = super::open_parquet(&p, 1024).err().expect("refused").to_string();
        assert!(e.contains("fuzz-negative-column-size.plan") && e.contains("corrupt footer"), "{e}");
    }

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
