//! Reading a crawl file: only the columns inference needs are decoded, the low-cardinality
//! text columns (`port_role`, `reply`, `prefix`, `icmp_responder`) as Arrow dictionaries —
//! their values are turned into small codes once per batch, never compared per row — and each
//! row becomes a [`Rec`]: a fixed-size record with the address parsed into a number, the fold's
//! and the spill's unit. Whatever is wrong with a file is bad input (exit 2) that names it.

use crate::infer::{ReplyObs, Role};
use anyhow::Result;
use arrow_array::types::Int32Type;
use arrow_array::{Array, DictionaryArray, RecordBatch, StringArray, TimestampMicrosecondArray, UInt16Array, UInt32Array, UInt8Array};
use arrow_schema::{DataType, Field, Schema};
use datasets::schema::obs;
use datasets::DatasetError;
use hashbrown::HashMap;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::arrow::ProjectionMask;
use std::net::Ipv6Addr;
use std::path::Path;
use std::sync::Arc;

/// Rows per decoded batch: the crawler's row group.
pub const BATCH_ROWS: usize = 65_536;

const COLS: &[&str] = &[obs::IP, obs::IP_VERSION, obs::ASN, obs::PREFIX, obs::PORT, obs::PORT_ROLE, obs::REPLY, obs::REPLY_TTL, obs::ICMP_TYPE, obs::ICMP_CODE, obs::ICMP_RESPONDER];
/// Columns a crawl may lack: crawls from before source-port reflection have no `src_port` (and
/// no reflection rows, which are all it is needed for); without the times, no ban is detected.
const OPTIONAL_COLS: &[&str] = &[obs::SRC_PORT, obs::SENT_AT, obs::ATTEMPTS, obs::RECEIVED_AT];
/// Text columns with few distinct values, read as dictionaries.
const DICT_COLS: &[&str] = &[obs::PREFIX, obs::PORT_ROLE, obs::REPLY, obs::ICMP_RESPONDER];

/// Interned strings (prefixes, ICMP responders): hosts and records keep small ids.
#[derive(Default)]
pub struct Interner {
    map: HashMap<Box<str>, u32>,
    pub list: Vec<String>,
}

impl Interner {
    pub fn id(&mut self, s: &str) -> u32 {
        if let Some(i) = self.map.get(s) {
            return *i;
        }
        let i = self.list.len() as u32;
        self.list.push(s.to_string());
        self.map.insert(s.into(), i);
        i
    }
}

/// `Rec::tclass`: what a row's times say (the fold needs no more).
pub mod tclass {
    /// No reply time: the row is silent (or the crawl has no times).
    pub const NONE: u8 = 0;
    /// Answered at the first attempt: `sent` and `recv` count.
    pub const FIRST_TRY: u8 = 1;
    /// Answered at a retry: `recv` counts.
    pub const RETRY: u8 = 2;
    /// Answered, attempts unknown: only `recv` counts.
    pub const ANSWERED: u8 = 3;
}

/// One row, as the fold uses it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rec {
    /// The address as a number: IPv4 mapped into IPv6 (`::ffff:a.b.c.d`), as `numeric`.
    pub addr: u128,
    pub v6: bool,
    pub asn: u32,
    pub prefix: u32,
    pub port: u16,
    pub sport: u16,
    pub role: u8,
    pub obs: ReplyObs,
    pub tclass: u8,
    pub sent: i64,
    pub recv: i64,
}

impl Rec {
    /// Fold into the host's accumulator exactly as the row would be (`HostAcc::add`, `add_times`).
    #[inline]
    pub fn apply(&self, h: &mut crate::infer::HostAcc) {
        h.add(self.port, Role::from_bits(self.role), self.sport, &self.obs);
        match self.tclass {
            tclass::FIRST_TRY => h.add_times(Some(self.sent), Some(1), Some(self.recv)),
            tclass::RETRY => h.add_times(None, Some(2), Some(self.recv)),
            tclass::ANSWERED => h.add_times(None, None, Some(self.recv)),
            _ => {}
        }
    }

    /// The /24 (IPv4) or /64 (IPv6) the host lies in, as `aggregate` groups hosts by net.
    #[inline]
    pub fn net(&self) -> u64 {
        net_of(self.addr, self.v6)
    }
}

/// The /24 or /64 of an address (IPv4 mapped).
#[inline]
pub fn net_of(addr: u128, v6: bool) -> u64 {
    if v6 { (addr >> 64) as u64 } else { (addr >> 8) as u64 }
}

/// An address's text as the crawler writes it (dotted quad, RFC 5952).
pub fn addr_text(addr: u128, v6: bool, out: &mut String) {
    let ip = if v6 { std::net::IpAddr::V6(Ipv6Addr::from(addr)) } else { std::net::IpAddr::V4((addr as u32).into()) };
    datasets::schema::push_ip(out, ip);
}

/// A dotted quad, strictly (1–3 digits, no leading zeros, as `Ipv4Addr::from_str`), without
/// the `fmt`/`FromStr` machinery: a crawl has a row per probe.
#[inline]
pub fn parse_v4(b: &[u8]) -> Option<u32> {
    let (mut out, mut i) = (0u32, 0usize);
    for octet in 0..4 {
        let start = i;
        let mut v = 0u32;
        while i < b.len() && i - start < 3 && b[i].is_ascii_digit() {
            v = v * 10 + (b[i] - b'0') as u32;
            i += 1;
        }
        let n = i - start;
        if n == 0 || v > 255 || (n > 1 && b[start] == b'0') {
            return None;
        }
        out = (out << 8) | v;
        if octet < 3 {
            if b.get(i) != Some(&b'.') {
                return None;
            }
            i += 1;
        }
    }
    (i == b.len()).then_some(out)
}

/// An address's text as a number and its family; `None`: not an address. IPv4-mapped IPv6
/// text is refused: it would be the same number as the IPv4 host (and no crawl plans it: it is
/// IANA special-purpose space).
#[inline]
pub fn parse_addr(s: &str) -> Option<(u128, bool)> {
    if let Some(a) = parse_v4(s.as_bytes()) {
        return Some((u128::from(std::net::Ipv4Addr::from(a).to_ipv6_mapped()), false));
    }
    let a: Ipv6Addr = s.parse().ok()?;
    let n = u128::from(a);
    (n >> 32 != 0xffff).then_some((n, true))
}

/// The vantage a crawl file names, and a reader of the columns inference needs.
pub fn open<R: parquet::file::reader::ChunkReader + 'static>(f: &Path, source: R) -> Result<(String, ParquetRecordBatchReader)> {
    let len = source.len();
    let bad = |e: parquet::errors::ParquetError| DatasetError::file(f, format!("not a complete Parquet file (truncated or still being written?): {e}"));
    let md = ArrowReaderMetadata::load(&source, ArrowReaderOptions::new()).map_err(bad)?;
    datasets::schema::check_footer(f, md.metadata(), len)?;
    // The vantage is constant per file: the crawler puts it in the key-value metadata.
    let vantage = md
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|k| k.key == "port25.vantage").and_then(|k| k.value.clone()))
        .unwrap_or_else(|| "unknown".into());
    let schema = md.parquet_schema();
    let mut idx: Vec<usize> = COLS
        .iter()
        .map(|c| schema.columns().iter().position(|x| x.name() == *c).ok_or_else(|| DatasetError::file(f, format!("no `{c}` column (not a port25 crawl file?)"))))
        .collect::<std::result::Result<_, _>>()?;
    idx.extend(OPTIONAL_COLS.iter().filter_map(|c| schema.columns().iter().position(|x| x.name() == *c)));
    // The text columns the fold only compares come as dictionaries: the crawler's writer
    // dictionary-encodes them, and the reader then hands over the codes and one copy of the
    // values instead of a string per row.
    let fields: Vec<Field> = md
        .schema()
        .fields()
        .iter()
        .map(|fl| {
            let dict = DICT_COLS.contains(&fl.name().as_str()) && *fl.data_type() == DataType::Utf8;
            let dt = if dict { DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)) } else { fl.data_type().clone() };
            Field::new(fl.name(), dt, fl.is_nullable())
        })
        .collect();
    let hinted = ArrowReaderOptions::new().with_schema(Arc::new(Schema::new(fields)));
    let md = ArrowReaderMetadata::try_new(md.metadata().clone(), hinted).map_err(|e| DatasetError::file(f, format!("corrupt crawl file: {e}")))?;
    let b = ParquetRecordBatchReaderBuilder::new_with_metadata(source, md);
    let mask = ProjectionMask::leaves(b.parquet_schema(), idx);
    let reader = b.with_projection(mask).with_batch_size(BATCH_ROWS).build().map_err(|e| DatasetError::file(f, format!("corrupt crawl file: {e}")))?;
    Ok((vantage, reader))
}

/// A text column: a dictionary (as asked for), or plain text (a file whose column is not text
/// gets no dictionary hint and is refused by its type).
enum Text<'a> {
    Dict(&'a DictionaryArray<Int32Type>, &'a StringArray),
    Plain(&'a StringArray),
}

impl<'a> Text<'a> {
    fn of(f: &Path, b: &'a RecordBatch, name: &str) -> Result<Option<Text<'a>>> {
        let Some(c) = b.column_by_name(name) else { return Ok(None) };
        let wrong = || DatasetError::file(f, format!("column `{name}` has the wrong type (not a port25 crawl file?)"));
        if let Some(d) = c.as_any().downcast_ref::<DictionaryArray<Int32Type>>() {
            let v = d.values().as_any().downcast_ref::<StringArray>().ok_or_else(wrong)?;
            return Ok(Some(Text::Dict(d, v)));
        }
        Ok(Some(Text::Plain(c.as_any().downcast_ref::<StringArray>().ok_or_else(wrong)?)))
    }
    fn is_null(&self, i: usize) -> bool {
        match self {
            Text::Dict(d, _) => d.is_null(i),
            Text::Plain(s) => s.is_null(i),
        }
    }
    /// Codes of a row: the dictionary key, or the row itself for plain text.
    fn code(&self, i: usize) -> usize {
        match self {
            Text::Dict(d, _) => d.keys().value(i) as usize,
            Text::Plain(_) => i,
        }
    }
    /// Every distinct value (the dictionary), or every row's value: what `code` indexes.
    fn values(&self) -> &'a StringArray {
        match self {
            Text::Dict(_, v) => v,
            Text::Plain(s) => s,
        }
    }
}

macro_rules! col {
    ($b:expr, $name:expr, $ty:ty, $f:expr) => {
        $b.column_by_name($name)
            .ok_or_else(|| DatasetError::file($f, format!("no `{}` column (not a port25 crawl file?)", $name)))?
            .as_any()
            .downcast_ref::<$ty>()
            .ok_or_else(|| DatasetError::file($f, format!("column `{}` has the wrong type (not a port25 crawl file?)", $name)))?
    };
}

/// Optional columns: absent is fine (older crawls); present with another type is not.
fn optional<'a, T: 'static>(f: &Path, b: &'a RecordBatch, name: &str) -> Result<Option<&'a T>> {
    match b.column_by_name(name) {
        None => Ok(None),
        Some(c) => c.as_any().downcast_ref::<T>().map(Some).ok_or_else(|| DatasetError::file(f, format!("column `{name}` has type {}", c.data_type())).into()),
    }
}

/// `reply` codes: 0 none, 1 synack, 2 rst, 3 icmp, and two that are no reply of a row.
const UNSENT: u8 = 254;
const UNKNOWN: u8 = 253;

/// Per-batch code tables of the dictionary columns, kept while the reader hands the same
/// dictionary again (the batches of one row group share it). The dictionary itself is held, so
/// its memory cannot be reused by another one while compared by address.
#[derive(Default)]
pub struct Codes {
    reply: Vec<u8>,
    role: Vec<u8>,
    prefix: Vec<u32>,
    responder: Vec<u32>,
    dicts: [Option<arrow_array::ArrayRef>; 4],
}

impl Codes {
    fn table<T>(out: &mut Vec<T>, last: &mut Option<arrow_array::ArrayRef>, col: &Text, mut f: impl FnMut(Option<&str>) -> T) {
        if let Text::Dict(d, _) = col {
            if last.as_ref().is_some_and(|l| Arc::ptr_eq(l, d.values())) {
                return;
            }
            *last = Some(d.values().clone());
        } else {
            // Plain text: the table is the batch's rows, built anew each time.
            *last = None;
        }
        let v = col.values();
        out.clear();
        out.extend((0..v.len()).map(|i| f((!v.is_null(i)).then(|| v.value(i)))));
    }
}

/// A decoded batch, ready to give its rows as [`Rec`]s.
pub struct Batch<'a> {
    f: &'a Path,
    ip: &'a StringArray,
    ver: &'a UInt8Array,
    asn: &'a UInt32Array,
    prefix: Text<'a>,
    port: &'a UInt16Array,
    role: Text<'a>,
    reply: Text<'a>,
    ttl: &'a UInt8Array,
    ity: &'a UInt8Array,
    icode: &'a UInt8Array,
    resp: Text<'a>,
    sport: Option<&'a UInt16Array>,
    sent: Option<&'a TimestampMicrosecondArray>,
    tries: Option<&'a UInt8Array>,
    recv: Option<&'a TimestampMicrosecondArray>,
    codes: &'a Codes,
    /// The interned empty text (a null prefix, as plain text reads it).
    empty: u32,
    pub rows: usize,
}

impl<'a> Batch<'a> {
    /// The batch's columns, checked, and its dictionaries turned into codes (`strings` interns
    /// prefixes and responders; shared by the decoding threads, locked once a batch).
    pub fn new(f: &'a Path, b: &'a RecordBatch, codes: &'a mut Codes, strings: &std::sync::Mutex<Interner>) -> Result<Batch<'a>> {
        let mut strings = strings.lock().unwrap_or_else(|e| e.into_inner());
        let text = |name: &str| -> Result<Text<'a>> { Text::of(f, b, name)?.ok_or_else(|| DatasetError::file(f, format!("no `{name}` column (not a port25 crawl file?)")).into()) };
        let (prefix, role, reply, resp) = (text(obs::PREFIX)?, text(obs::PORT_ROLE)?, text(obs::REPLY)?, text(obs::ICMP_RESPONDER)?);
        let [d0, d1, d2, d3] = &mut codes.dicts;
        Codes::table(&mut codes.reply, d0, &reply, |s| match s {
            Some("synack") => 1,
            Some("rst") => 2,
            Some("icmp") => 3,
            Some("none") => 0,
            // The probe never left: missing data, not silence (as if not probed).
            Some("unsent") => UNSENT,
            // Anything else is not a reply this reader knows: never silence (which would count
            // as filtering) — an error if a row has it.
            _ => UNKNOWN,
        });
        Codes::table(&mut codes.role, d1, &role, |s| Role::of(s.unwrap_or("")) as u8);
        Codes::table(&mut codes.prefix, d2, &prefix, |s| strings.id(s.unwrap_or("")));
        Codes::table(&mut codes.responder, d3, &resp, |s| s.map_or(u32::MAX, |s| strings.id(s)));
        Ok(Batch {
            f,
            ip: col!(b, obs::IP, StringArray, f),
            ver: col!(b, obs::IP_VERSION, UInt8Array, f),
            asn: col!(b, obs::ASN, UInt32Array, f),
            prefix,
            port: col!(b, obs::PORT, UInt16Array, f),
            role,
            reply,
            ttl: col!(b, obs::REPLY_TTL, UInt8Array, f),
            ity: col!(b, obs::ICMP_TYPE, UInt8Array, f),
            icode: col!(b, obs::ICMP_CODE, UInt8Array, f),
            resp,
            sport: optional::<UInt16Array>(f, b, obs::SRC_PORT)?,
            sent: optional::<TimestampMicrosecondArray>(f, b, obs::SENT_AT)?,
            tries: optional::<UInt8Array>(f, b, obs::ATTEMPTS)?,
            recv: optional::<TimestampMicrosecondArray>(f, b, obs::RECEIVED_AT)?,
            codes,
            empty: strings.id(""),
            rows: b.num_rows(),
        })
    }

    /// Row `i` into `r`; `false` for a row that is no observation (`unsent`).
    #[inline]
    pub fn rec(&self, i: usize, r: &mut Rec) -> Result<bool> {
        // Codes are looked up with `get`: a null row's key, or a corrupt file's, may point
        // anywhere.
        let reply = if self.reply.is_null(i) { UNKNOWN } else { self.codes.reply.get(self.reply.code(i)).copied().unwrap_or(UNKNOWN) };
        if reply == UNSENT {
            return Ok(false);
        }
        if reply == UNKNOWN {
            let v = self.reply.values();
            let c = self.reply.code(i);
            let v = if self.reply.is_null(i) || c >= v.len() || v.is_null(c) { "null".to_string() } else { v.value(c).to_string() };
            return Err(DatasetError::file(self.f, format!("row {i} of a batch: unknown reply `{v}`")).into());
        }
        let ip = self.ip.value(i);
        let Some((addr, v6)) = parse_addr(ip) else {
            return Err(DatasetError::file(self.f, format!("row {i} of a batch: `{ip}` is not an IP address")).into());
        };
        if (self.ver.value(i) == 6) != v6 {
            return Err(DatasetError::file(self.f, format!("row {i} of a batch: ip_version {} for the address {ip}", self.ver.value(i))).into());
        }
        let recv = self.recv.filter(|c| !c.is_null(i)).map(|c| c.value(i));
        let (tclass, sent) = match (recv, self.sent, self.tries.map(|c| c.value(i))) {
            (None, _, _) => (tclass::NONE, 0),
            (Some(_), Some(s), Some(1)) => (tclass::FIRST_TRY, s.value(i)),
            (Some(_), _, Some(2..)) => (tclass::RETRY, 0),
            (Some(_), _, _) => (tclass::ANSWERED, 0),
        };
        *r = Rec {
            addr,
            v6,
            asn: self.asn.value(i),
            prefix: if self.prefix.is_null(i) { self.empty } else { self.codes.prefix.get(self.prefix.code(i)).copied().unwrap_or(self.empty) },
            port: self.port.value(i),
            sport: self.sport.map_or(0, |s| s.value(i)),
            role: if self.role.is_null(i) { Role::Other as u8 } else { self.codes.role.get(self.role.code(i)).copied().unwrap_or(Role::Other as u8) },
            obs: ReplyObs {
                reply,
                ttl: if self.ttl.is_null(i) { 0 } else { self.ttl.value(i) },
                icmp_type: if self.ity.is_null(i) { 0 } else { self.ity.value(i) },
                icmp_code: if self.icode.is_null(i) { 0 } else { self.icode.value(i) },
                responder: if self.resp.is_null(i) { u32::MAX } else { self.codes.responder.get(self.resp.code(i)).copied().unwrap_or(u32::MAX) },
            },
            tclass,
            sent,
            recv: recv.unwrap_or(0),
        };
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_strictly_and_families_never_collide() {
        assert_eq!(parse_v4(b"198.51.100.7"), Some(0xc633_6407));
        for bad in ["198.51.100", "198.51.100.7.1", "198.051.100.7", "256.1.1.1", "1..1.1", "1.1.1.1 ", "", "1.1.1.1234"] {
            assert_eq!(parse_v4(bad.as_bytes()), None, "{bad}");
            if let Ok(std) = bad.parse::<std::net::Ipv4Addr>() {
                panic!("std accepts {bad} as {std}");
            }
        }
        assert_eq!(parse_v4(b"0.0.0.0"), Some(0));
        let (a, v6) = parse_addr("198.51.100.7").unwrap();
        assert!(!v6 && a == u128::from(std::net::Ipv4Addr::new(198, 51, 100, 7).to_ipv6_mapped()));
        assert_eq!(parse_addr("2001:db8::1"), Some((0x2001_0db8_0000_0000_0000_0000_0000_0001, true)));
        assert_eq!(parse_addr("::ffff:198.51.100.7"), None);
        assert_eq!(parse_addr("not an address"), None);
        let mut s = String::new();
        addr_text(a, false, &mut s);
        s.push(' ');
        addr_text(0x2001_0db8_0000_0000_0000_0000_0000_0001, true, &mut s);
        assert_eq!(s, "198.51.100.7 2001:db8::1");
    }
}
