//! Outbound blocking seen from inside a network: the two tables of `crawler sink` (one row per
//! connection the sink accepted, written server-side so no result rests on the client alone)
//! and `crawler egress` (one row per connection attempt a vantage made to a sink).
//!
//! Both are declared here once, with the same `table!` macro as the crawl's tables, and kept
//! out of `schema.rs` so the observation table stays untouched.

use crate::schema::{primitive_columns, table, utc_micros, Column, NewColumn, UtcMicros};
use arrow_array::builder::{BooleanBuilder, StringBuilder, UInt16Builder, UInt32Builder, UInt64Builder, UInt8Builder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use std::sync::Arc;

primitive_columns!(UInt64Builder: u64, BooleanBuilder: bool);

table! {
    /// One connection the sink accepted (refused ones for capacity included).
    names sink_col, row SinkRow<'a>, batch SinkBatch, schema sink_schema;
    /// The sink's `--name`.
    SINK sink: &'a str => StringBuilder = DataType::Utf8, false;
    ACCEPTED_AT accepted_at: i64 => UtcMicros = utc_micros(), false;
    ENDED_AT ended_at: i64 => UtcMicros = utc_micros(), false;
    CLIENT_IP client_ip: &'a str => StringBuilder = DataType::Utf8, false;
    CLIENT_PORT client_port: u16 => UInt16Builder = DataType::UInt16, false;
    LOCAL_IP local_ip: &'a str => StringBuilder = DataType::Utf8, false;
    LOCAL_PORT local_port: u16 => UInt16Builder = DataType::UInt16, false;
    IP_VERSION ip_version: u8 => UInt8Builder = DataType::UInt8, false;
    /// The `id=` of the greeting: the client's row carries the same value.
    NONCE nonce: &'a str => StringBuilder = DataType::Utf8, false;
    /// The port speaks TLS from the first byte (465's role).
    IMPLICIT_TLS implicit_tls: bool => BooleanBuilder = DataType::Boolean, false;
    /// SMTP verbs the client sent, in order, space-separated (at most the command limit).
    COMMANDS commands: &'a str => StringBuilder = DataType::Utf8, false;
    /// The first bytes of what the client said at the SMTP layer (inside TLS once it is up),
    /// lossy UTF-8, bounded (512 bytes).
    CLIENT_SENT client_sent: &'a str => StringBuilder = DataType::Utf8, false;
    TLS_DONE tls_done: bool => BooleanBuilder = DataType::Boolean, false;
    /// `TLSv1_3` or `TLSv1_2` when TLS completed.
    TLS_VERSION tls_version: Option<&'a str> => StringBuilder = DataType::Utf8, true;
    /// Bytes on the wire (TLS records included).
    BYTES_IN bytes_in: u64 => UInt64Builder = DataType::UInt64, false;
    BYTES_OUT bytes_out: u64 => UInt64Builder = DataType::UInt64, false;
    /// `end::*`.
    END end: &'a str => StringBuilder = DataType::Utf8, false;
}

/// `end` values of the sink table: how a connection ended.
pub mod end {
    /// The sink said 221 and closed (after QUIT, or after EHLO inside TLS).
    pub const GOODBYE: &str = "goodbye";
    /// MAIL, RCPT, DATA or BDAT: answered 5xx and closed.
    pub const REFUSED_MAIL: &str = "refused-mail";
    /// The client was silent past the idle timeout, or the connection outlived its lifetime.
    pub const TIMEOUT: &str = "timeout";
    pub const CLIENT_CLOSED: &str = "client-closed";
    /// A per-connection bound was reached: bytes in or out, line length, command count.
    pub const LIMIT: &str = "limit";
    pub const TLS_FAILED: &str = "tls-failed";
    /// The sink was stopped while the connection was open.
    pub const SHUTDOWN: &str = "shutdown";
    /// An egress vantage's results were received and stored (`XUPLOAD`).
    pub const UPLOADED: &str = "uploaded";
    /// An upload was refused: a wrong token, too large, not an egress table of its vantage.
    pub const UPLOAD_REFUSED: &str = "upload-refused";
    pub const ERROR: &str = "error";
}

table! {
    /// One connection attempt from a vantage to a sink address and port.
    names egress_col, row EgressRow<'a>, batch EgressBatch, schema egress_schema;
    /// One run of `crawler egress` (its start time, UTC, e.g. `20261128T101500Z`).
    RUN_ID run_id: &'a str => StringBuilder = DataType::Utf8, false;
    VANTAGE vantage: &'a str => StringBuilder = DataType::Utf8, false;
    /// The sink address dialled.
    SINK sink: &'a str => StringBuilder = DataType::Utf8, false;
    IP_VERSION ip_version: u8 => UInt8Builder = DataType::UInt8, false;
    PORT port: u16 => UInt16Builder = DataType::UInt16, false;
    IMPLICIT_TLS implicit_tls: bool => BooleanBuilder = DataType::Boolean, false;
    /// 0-based index of the attempt in its (sink, port) series.
    ATTEMPT attempt: u16 => UInt16Builder = DataType::UInt16, false;
    STARTED_AT started_at: i64 => UtcMicros = utc_micros(), false;
    /// `outcome::*`: what connect() gave.
    OUTCOME outcome: &'a str => StringBuilder = DataType::Utf8, false;
    CONNECT_US connect_us: Option<u32> => UInt32Builder = DataType::UInt32, true;
    LOCAL_PORT local_port: Option<u16> => UInt16Builder = DataType::UInt16, true;
    ICMP_TYPE icmp_type: Option<u8> => UInt8Builder = DataType::UInt8, true;
    ICMP_CODE icmp_code: Option<u8> => UInt8Builder = DataType::UInt8, true;
    ICMP_RESPONDER icmp_responder: Option<&'a str> => StringBuilder = DataType::Utf8, true;
    /// TTL of the RST: an unprivileged TCP client never sees it, so null.
    RST_TTL rst_ttl: Option<u8> => UInt8Builder = DataType::UInt8, true;
    /// The first line the server sent (bounded, lossy UTF-8).
    BANNER banner: Option<&'a str> => StringBuilder = DataType::Utf8, true;
    BANNER_IS_SINK banner_is_sink: Option<bool> => BooleanBuilder = DataType::Boolean, true;
    /// The banner's `id=`: the sink table's `nonce` of the same connection.
    SINK_ID sink_id: Option<&'a str> => StringBuilder = DataType::Utf8, true;
    /// The banner's `you=`: the address and port the sink saw.
    YOU_ADDR you_addr: Option<&'a str> => StringBuilder = DataType::Utf8, true;
    /// `you=`'s address is this vantage's public address (learned on a control port).
    YOU_MATCHES you_matches: Option<bool> => BooleanBuilder = DataType::Boolean, true;
    /// The banner's `port=`: the port the sink was reached on.
    SINK_SAW_PORT sink_saw_port: Option<u16> => UInt16Builder = DataType::UInt16, true;
    STARTTLS_OFFERED starttls_offered: Option<bool> => BooleanBuilder = DataType::Boolean, true;
    TLS_DONE tls_done: Option<bool> => BooleanBuilder = DataType::Boolean, true;
    /// SHA-256 of the DER certificate the server presented (hex).
    CERT_SHA256 cert_sha256: Option<&'a str> => StringBuilder = DataType::Utf8, true;
    PIN_MATCHES pin_matches: Option<bool> => BooleanBuilder = DataType::Boolean, true;
    /// The banner's text was masked (`220 ****…2**0**`: Cisco ASA/PIX SMTP inspection), and
    /// the sink was recognised by its EHLO reply instead.
    BANNER_MASKED banner_masked: Option<bool> => BooleanBuilder = DataType::Boolean, true;
    /// STARTTLS was rewritten on the way: `XXXXXXXA` in the EHLO reply, or our STARTTLS command
    /// reached the sink as something else (`sink_heard`).
    STARTTLS_REWRITTEN starttls_rewritten: Option<bool> => BooleanBuilder = DataType::Boolean, true;
    /// What the sink said it received instead of our STARTTLS (its reply echoes an unknown
    /// command), e.g. `XXXXXXXX`: the sink's side of the session.
    SINK_HEARD sink_heard: Option<&'a str> => StringBuilder = DataType::Utf8, true;
    /// `verdict::*`.
    VERDICT verdict: &'a str => StringBuilder = DataType::Utf8, false;
    /// What went wrong, in words (e.g. `banner: timed out after 10 s`).
    DETAIL detail: Option<&'a str> => StringBuilder = DataType::Utf8, true;
}

/// `outcome` values of the egress table.
pub mod outcome {
    pub const ESTABLISHED: &str = "established";
    /// A TCP RST answered the SYN.
    pub const REFUSED: &str = "refused";
    /// An ICMP error answered the SYN (type, code and responder in their columns).
    pub const ICMP: &str = "icmp";
    pub const TIMEOUT: &str = "timeout";
    /// This machine has no route for the family (e.g. no IPv6): says nothing about the port.
    pub const NO_ROUTE: &str = "no-route";
    pub const ERROR: &str = "error";
}

/// `verdict` values of the egress table.
pub mod verdict {
    /// The sink answered as itself, saw our public address, TLS with its certificate.
    pub const OPEN: &str = "open";
    /// No connection (RST, ICMP or timeout).
    pub const BLOCKED: &str = "blocked";
    /// Something else answered: not the sink's greeting, or the sink saw another client
    /// address or port (a proxy in between).
    pub const INTERCEPTED: &str = "intercepted";
    /// TLS completed with a certificate that is not the sink's.
    pub const TLS_INTERCEPTED: &str = "tls-intercepted";
    /// The sink's greeting came through but STARTTLS was missing from the EHLO reply.
    pub const STRIPPED: &str = "stripped";
    /// No connection, while an earlier attempt of the same (sink, port) series connected and
    /// the control ports of the same round still connected: the k-th connection refused.
    pub const THROTTLED: &str = "throttled";
    /// No connection in a round in which the control ports to the same sink failed too, while
    /// they connected in other rounds: the network or the sink was gone for a while. Says
    /// nothing about the port.
    pub const OUTAGE: &str = "outage";
    /// No port of this sink address connected in the whole run: the address (or the path to
    /// it) is unreachable from here, not the port blocked. Another sink tells them apart.
    pub const SINK_UNREACHABLE: &str = "sink-unreachable";
    /// The family is not routed from this machine: not a finding about the port.
    pub const NO_ROUTE: &str = "no-route";
    /// The sink answered but TLS did not complete.
    pub const TLS_FAILED: &str = "tls-failed";
    /// A local failure, or the sink said it was busy: nothing learned.
    pub const ERROR: &str = "error";
}

/// How both tables are written: zstd level 3, the run's key-value metadata.
pub fn writer_props(kv: Vec<(String, String)>, row_group_rows: usize) -> parquet::file::properties::WriterProperties {
    use parquet::basic::{Compression, ZstdLevel};
    parquet::file::properties::WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).expect("valid level")))
        .set_max_row_group_row_count(Some(row_group_rows))
        .set_key_value_metadata(Some(kv.into_iter().map(|(k, v)| parquet::file::metadata::KeyValue::new(k, v)).collect()))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_become_batches_with_the_declared_schema() {
        let mut b = SinkBatch::with_capacity(2);
        let row = SinkRow {
            sink: "s",
            accepted_at: 1,
            ended_at: 2,
            client_ip: "::1",
            client_port: 5,
            local_ip: "::1",
            local_port: 25,
            ip_version: 6,
            nonce: "ab",
            implicit_tls: false,
            commands: "EHLO QUIT",
            client_sent: "EHLO x\r\nQUIT\r\n",
            tls_done: false,
            tls_version: None,
            bytes_in: u64::MAX,
            bytes_out: 9,
            end: end::GOODBYE,
        };
        b.push(&row);
        b.push(&SinkRow { tls_done: true, tls_version: Some("TLSv1_3"), ..row });
        let batch = b.finish();
        assert_eq!(batch.schema(), sink_schema());
        assert_eq!(batch.num_rows(), 2);
        let col = batch.column_by_name(sink_col::TLS_DONE).unwrap().as_any().downcast_ref::<arrow_array::BooleanArray>().unwrap();
        assert!(!col.value(0) && col.value(1));
        let bytes = batch.column_by_name(sink_col::BYTES_IN).unwrap().as_any().downcast_ref::<arrow_array::UInt64Array>().unwrap();
        assert_eq!(bytes.value(0), u64::MAX);
        assert!(b.is_empty());
    }
}
