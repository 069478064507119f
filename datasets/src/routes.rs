//! IP → origin AS: RouteViews/CAIDA pfx2as, iptoasn TSV, ip-location-db CSV, GeoLite2-ASN mmdb.
//!
//! All four load into one [`RouteTable`]: a longest-prefix-match trie per family
//! (`prefix-trie`), used by `crawler plan` to enumerate announced prefixes per AS and by
//! `analysis` to map ICMP responders to their AS.

use crate::error::{DatasetError, LoadOptions, LoadStats, Result};
use crate::input::{for_each_line_in, open};
use crate::ranges::range_to_cidrs;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use prefix_trie::PrefixMap;
use std::io::BufRead;
use std::net::IpAddr;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginKind {
    Single,
    /// `A_B` in pfx2as: several ASes announce the prefix (MOAS).
    MultiOrigin,
    /// `A,B` in pfx2as: an AS-set in the path's origin.
    AsSet,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The AS the prefix is attributed to (the first one listed).
    pub asn: u32,
    pub kind: OriginKind,
    /// The other origins of a multi-origin prefix or AS-set.
    pub others: Option<Box<[u32]>>,
    /// Organization name the source gave (iptoasn, ip-location-db, mmdb): an index into
    /// `RouteTable::org_names` (`NO_ORG` if none). Interned, since a full table repeats the
    /// same ~75k names over millions of prefixes.
    pub source_org: u32,
}

pub const NO_ORG: u32 = u32::MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteFormat {
    Pfx2as,
    IpToAsn,
    IpLocationDb,
    Mmdb,
}

impl std::str::FromStr for RouteFormat {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "pfx2as" => Ok(Self::Pfx2as),
            "iptoasn" => Ok(Self::IpToAsn),
            "ip-location-db" => Ok(Self::IpLocationDb),
            "mmdb" => Ok(Self::Mmdb),
            _ => Err(format!("unknown routes format `{s}` (pfx2as, iptoasn, ip-location-db, mmdb)")),
        }
    }
}

#[derive(Default)]
pub struct RouteTable {
    pub v4: PrefixMap<Ipv4Net, Origin>,
    pub v6: PrefixMap<Ipv6Net, Origin>,
    /// Unrouted ranges skipped (iptoasn AS 0 rows).
    pub unrouted_ranges: usize,
    pub org_names: Vec<Box<str>>,
    org_index: std::collections::HashMap<Box<str>, u32>,
}

fn parse_asn(path: &Path, line: usize, s: &str) -> Result<u32> {
    let t = s.trim().trim_start_matches("AS").trim_start_matches("as");
    t.parse::<u32>().map_err(|_| DatasetError::line(path, line, format!("bad AS number `{s}`")))
}

/// Sniff the format from the file name and first data line.
pub fn detect_format(path: &Path) -> Result<RouteFormat> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if name.ends_with(".mmdb") {
        return Ok(RouteFormat::Mmdb);
    }
    detect_text_format(path, open(path)?)
}

/// [`detect_format`] of a text table from an open reader (its first data line); `path`
/// names it in errors.
pub fn detect_text_format(path: &Path, mut r: impl BufRead) -> Result<RouteFormat> {
    let mut first: Option<String> = None;
    let mut buf = String::new();
    for _ in 0..1000 {
        buf.clear();
        if std::io::BufRead::read_line(&mut r, &mut buf).map_err(|e| DatasetError::io(path, e))? == 0 {
            break;
        }
        let l = buf.trim_end();
        if !l.trim().is_empty() && !l.starts_with('#') {
            first = Some(l.to_string());
            break;
        }
    }
    let l = first.ok_or_else(|| DatasetError::file(path, "empty routes file"))?;
    let tabs = l.split('\t').count();
    if tabs == 3 {
        Ok(RouteFormat::Pfx2as)
    } else if tabs >= 5 {
        Ok(RouteFormat::IpToAsn)
    } else if l.contains(',') {
        Ok(RouteFormat::IpLocationDb)
    } else {
        Err(DatasetError::line(path, 1, "cannot tell the routes format (pfx2as, iptoasn, ip-location-db, mmdb): pass --routes-format"))
    }
}

/// Parse an address written as text, or as an integer (the ip-location-db `-num` files).
fn parse_addr(s: &str, v6_hint: bool) -> Option<IpAddr> {
    let s = s.trim();
    if let Ok(a) = s.parse::<IpAddr>() {
        return Some(a);
    }
    let n: u128 = s.parse().ok()?;
    if !v6_hint && n <= u32::MAX as u128 {
        Some(IpAddr::V4((n as u32).into()))
    } else {
        Some(IpAddr::V6(n.into()))
    }
}

impl RouteTable {
    fn intern(&mut self, name: Option<&str>) -> u32 {
        let Some(n) = name.filter(|n| !n.is_empty()) else { return NO_ORG };
        if let Some(i) = self.org_index.get(n) {
            return *i;
        }
        let i = self.org_names.len() as u32;
        self.org_names.push(n.into());
        self.org_index.insert(n.into(), i);
        i
    }

    /// The organization name a routing source gave for an origin, if any.
    pub fn source_org(&self, o: &Origin) -> Option<&str> {
        self.org_names.get(o.source_org as usize).map(|s| &**s)
    }

    pub fn insert(&mut self, net: IpNet, origin: Origin) {
        match net {
            IpNet::V4(n) => {
                self.v4.insert(n.trunc(), origin);
            }
            IpNet::V6(n) => {
                self.v6.insert(n.trunc(), origin);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Longest-prefix match.
    pub fn lookup(&self, ip: IpAddr) -> Option<(IpNet, &Origin)> {
        match ip {
            IpAddr::V4(a) => self.v4.get_lpm(&Ipv4Net::from(a)).map(|(p, o)| (IpNet::V4(p), o)),
            IpAddr::V6(a) => self.v6.get_lpm(&Ipv6Net::from(a)).map(|(p, o)| (IpNet::V6(p), o)),
        }
    }

    pub fn load(&mut self, path: &Path, format: Option<RouteFormat>, opts: LoadOptions) -> Result<LoadStats> {
        let format = match format {
            Some(f) => f,
            None => detect_format(path)?,
        };
        match format {
            RouteFormat::Mmdb => {
                let reader = maxminddb::Reader::open_readfile(path).map_err(|e| DatasetError::file(path, format!("not a readable MaxMind DB: {e}")))?;
                self.load_mmdb(path, reader)
            }
            text => self.load_from(path, text, open(path)?, opts),
        }
    }

    /// [`RouteTable::load`] from an open reader in a known format; `path` names it in errors.
    pub fn load_from(&mut self, path: &Path, format: RouteFormat, mut r: impl BufRead, opts: LoadOptions) -> Result<LoadStats> {
        match format {
            RouteFormat::Pfx2as => self.load_pfx2as(path, r, opts),
            RouteFormat::IpToAsn => self.load_ranges(path, r, opts, '\t'),
            RouteFormat::IpLocationDb => self.load_ranges(path, r, opts, ','),
            RouteFormat::Mmdb => {
                let mut bytes = Vec::new();
                r.read_to_end(&mut bytes).map_err(|e| DatasetError::io(path, e))?;
                self.load_mmdb_bytes(path, bytes)
            }
        }
    }

    /// A MaxMind DB already in memory; `path` names it in errors.
    pub fn load_mmdb_bytes(&mut self, path: &Path, bytes: Vec<u8>) -> Result<LoadStats> {
        let reader = maxminddb::Reader::from_source(bytes).map_err(|e| DatasetError::file(path, format!("not a readable MaxMind DB: {e}")))?;
        self.load_mmdb(path, reader)
    }

    /// `prefix<TAB>length<TAB>origins`, origins `A`, `A_B` (multi-origin) or `A,B` (AS-set);
    /// a MOAS entry may mix both (`A_B,C`).
    fn load_pfx2as(&mut self, path: &Path, r: impl BufRead, opts: LoadOptions) -> Result<LoadStats> {
        let mut st = LoadStats::default();
        st.lines = for_each_line_in(path, r, |n, l| {
            if l.trim().is_empty() || l.starts_with('#') {
                return Ok(());
            }
            match parse_pfx2as_line(path, n, l) {
                Ok((net, o)) => {
                    self.insert(net, o);
                    st.records += 1;
                    Ok(())
                }
                Err(e) => st.bad(opts, e),
            }
        })?;
        Ok(st)
    }

    /// iptoasn (`start end asn cc descr`, TAB) and ip-location-db (`start,end,asn,org`, CSV
    /// with quotes): one record reader over the whole file, line numbers kept for errors.
    fn load_ranges(&mut self, path: &Path, r: impl BufRead, opts: LoadOptions, sep: char) -> Result<LoadStats> {
        let mut st = LoadStats::default();
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .delimiter(sep as u8)
            .quoting(sep == ',')
            .comment(Some(b'#'))
            .from_reader(r);
        let mut rec = csv::StringRecord::new();
        loop {
            let line = rdr.position().line() as usize;
            match rdr.read_record(&mut rec) {
                Ok(false) => break,
                Ok(true) => {}
                Err(e) => match e.kind() {
                    csv::ErrorKind::Io(_) => return Err(DatasetError::file(path, e.to_string())),
                    _ => {
                        st.bad(opts, DatasetError::line(path, line, format!("malformed line: {e}")))?;
                        continue;
                    }
                },
            }
            st.lines = line;
            let n = rec.position().map(|p| p.line() as usize).unwrap_or(line);
            if rec.len() == 1 && rec[0].trim().is_empty() {
                continue;
            }
            if rec.len() < 3 {
                st.bad(opts, DatasetError::line(path, n, format!("expected at least 3 fields, got {}", rec.len())))?;
                continue;
            }
            // Header lines of some distributions.
            if n == 1 && rec[0].chars().any(|c| c.is_ascii_alphabetic()) && rec[0].parse::<IpAddr>().is_err() {
                continue;
            }
            let v6 = rec[0].contains(':');
            let (Some(a), Some(b)) = (parse_addr(&rec[0], v6), parse_addr(&rec[1], v6 || rec[1].contains(':'))) else {
                st.bad(opts, DatasetError::line(path, n, format!("bad address range `{}` - `{}`", &rec[0], &rec[1])))?;
                continue;
            };
            let asn = match parse_asn(path, n, &rec[2]) {
                Ok(a) => a,
                Err(e) => {
                    st.bad(opts, e)?;
                    continue;
                }
            };
            let Some(nets) = range_to_cidrs(a, b) else {
                st.bad(opts, DatasetError::line(path, n, format!("range end before start or mixed families: {a} - {b}")))?;
                continue;
            };
            if asn == 0 {
                self.unrouted_ranges += 1; // iptoasn: "Not routed"
                continue;
            }
            let org = self.intern(rec.get(if sep == ',' { 3 } else { 4 }));
            for net in nets {
                self.insert(net, Origin { asn, kind: OriginKind::Single, others: None, source_org: org });
            }
            st.records += 1;
        }
        Ok(st)
    }

    fn load_mmdb<S: AsRef<[u8]>>(&mut self, path: &Path, reader: maxminddb::Reader<S>) -> Result<LoadStats> {
        #[derive(serde::Deserialize)]
        struct AsnRec<'a> {
            autonomous_system_number: Option<u32>,
            #[serde(borrow)]
            autonomous_system_organization: Option<&'a str>,
        }
        let mut st = LoadStats::default();
        // Default options skip the IPv4 tree's aliases inside IPv6 (::ffff:0:0/96, 2002::/16).
        let iter = reader.networks(Default::default()).map_err(|e| DatasetError::file(path, e.to_string()))?;
        for item in iter {
            let item = item.map_err(|e| DatasetError::file(path, format!("corrupt MaxMind DB: {e}")))?;
            let network = item.network().map_err(|e| DatasetError::file(path, e.to_string()))?;
            let net: IpNet = network.to_string().parse().map_err(|_| DatasetError::file(path, format!("bad network {network}")))?;
            let rec: Option<AsnRec> = item.decode().map_err(|e| DatasetError::file(path, format!("corrupt record: {e}")))?;
            let Some(AsnRec { autonomous_system_number: Some(asn), autonomous_system_organization: org }) = rec else { continue };
            let org = self.intern(org);
            self.insert(net, Origin { asn, kind: OriginKind::Single, others: None, source_org: org });
            st.records += 1;
        }
        Ok(st)
    }

    /// All announced prefixes with their origin, v4 then v6, in address order.
    pub fn prefixes(&self) -> impl Iterator<Item = (IpNet, &Origin)> {
        self.v4.iter().map(|(p, o)| (IpNet::V4(p), o)).chain(self.v6.iter().map(|(p, o)| (IpNet::V6(p), o)))
    }
}

fn parse_pfx2as_line(path: &Path, n: usize, l: &str) -> Result<(IpNet, Origin)> {
    let mut it = l.split('\t');
    let (Some(pfx), Some(len), Some(origins), None) = (it.next(), it.next(), it.next(), it.next()) else {
        return Err(DatasetError::line(path, n, "expected `prefix<TAB>length<TAB>origin`"));
    };
    let addr: IpAddr = pfx.trim().parse().map_err(|_| DatasetError::line(path, n, format!("bad prefix address `{pfx}`")))?;
    let len: u8 = len.trim().parse().map_err(|_| DatasetError::line(path, n, format!("bad prefix length `{len}`")))?;
    let net = IpNet::new(addr, len).map_err(|_| DatasetError::line(path, n, format!("prefix length {len} too long for {addr}")))?;
    let mut asns = Vec::new();
    let kind = if origins.contains(',') {
        OriginKind::AsSet
    } else if origins.contains('_') {
        OriginKind::MultiOrigin
    } else {
        OriginKind::Single
    };
    for a in origins.split(['_', ',']) {
        asns.push(parse_asn(path, n, a)?);
    }
    if asns.is_empty() {
        return Err(DatasetError::line(path, n, "no origin AS"));
    }
    let others = if asns.len() > 1 { Some(asns[1..].to_vec().into_boxed_slice()) } else { None };
    Ok((net, Origin { asn: asns[0], kind, others, source_org: NO_ORG }))
}

#[cfg(test)]
mod tests {
    use super::*;
    fn fixture(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(name)
    }

    #[test]
    fn pfx2as_plain_and_gz_agree() {
        for f in ["routeviews-rv2-20261101-1200.pfx2as", "routeviews-rv2-20261101-1200.pfx2as.gz"] {
            let mut t = RouteTable::default();
            let st = t.load(&fixture(f), None, LoadOptions::default()).unwrap();
            assert_eq!(st.records, 6, "{f}");
            let (p, o) = t.lookup("1.0.0.77".parse().unwrap()).unwrap();
            assert_eq!((p.to_string().as_str(), o.asn), ("1.0.0.0/24", 13335));
            let (_, o) = t.lookup("1.0.4.1".parse().unwrap()).unwrap();
            assert_eq!((o.asn, o.kind, o.others.as_deref()), (38803, OriginKind::MultiOrigin, Some(&[56203u32][..])));
            let (_, o) = t.lookup("1.0.64.9".parse().unwrap()).unwrap();
            assert_eq!((o.asn, o.kind), (18144, OriginKind::AsSet));
            // Longest match wins over the covering /16.
            assert_eq!(t.lookup("1.1.1.1".parse().unwrap()).unwrap().1.asn, 13335);
            assert_eq!(t.lookup("1.1.2.1".parse().unwrap()).unwrap().1.asn, 4134);
            assert!(t.lookup("9.9.9.9".parse().unwrap()).is_none());
        }
    }

    #[test]
    fn pfx2as_v6() {
        let mut t = RouteTable::default();
        t.load(&fixture("routeviews-rv6-20261101-1200.pfx2as"), None, LoadOptions::default()).unwrap();
        assert_eq!(t.lookup("2001:4860::8888".parse().unwrap()).unwrap().1.asn, 15169);
    }

    #[test]
    fn iptoasn_ranges_and_unrouted() {
        let mut t = RouteTable::default();
        let st = t.load(&fixture("ip2asn-combined.tsv.gz"), None, LoadOptions::default()).unwrap();
        assert_eq!(st.records, 4);
        assert_eq!(t.unrouted_ranges, 1);
        // 1.0.0.1-1.0.0.6 is not CIDR-aligned.
        assert_eq!(t.lookup("1.0.0.6".parse().unwrap()).unwrap().1.asn, 13335);
        assert!(t.lookup("1.0.0.7".parse().unwrap()).is_none());
        assert_eq!(t.lookup("2001:200::1".parse().unwrap()).unwrap().1.asn, 2500);
        assert_eq!(t.source_org(t.lookup("1.0.128.1".parse().unwrap()).unwrap().1), Some("TOT-NET TOT Public Company Limited"));
    }

    #[test]
    fn ip_location_db_quoted_and_num() {
        let mut t = RouteTable::default();
        t.load(&fixture("asn-ipv4.csv"), None, LoadOptions::default()).unwrap();
        let (_, o) = t.lookup("1.0.0.1".parse().unwrap()).unwrap();
        assert_eq!((o.asn, t.source_org(o)), (13335, Some("Cloudflare, Inc.")));
        let mut t = RouteTable::default();
        t.load(&fixture("asn-ipv6-num.csv"), Some(RouteFormat::IpLocationDb), LoadOptions::default()).unwrap();
        assert_eq!(t.lookup("2001:200::5".parse().unwrap()).unwrap().1.asn, 2500);
    }

    #[test]
    fn malformed_lines_name_file_and_line_or_are_counted() {
        let p = fixture("bad.pfx2as");
        let mut t = RouteTable::default();
        let e = t.load(&p, Some(RouteFormat::Pfx2as), LoadOptions::default()).unwrap_err().to_string();
        assert!(e.contains("bad.pfx2as:3:") && e.contains("too long"), "{e}");
        let mut t = RouteTable::default();
        let st = t.load(&p, Some(RouteFormat::Pfx2as), LoadOptions { skip_bad_lines: true }).unwrap();
        assert_eq!((st.records, st.skipped_bad), (2, 3));
    }

    #[test]
    fn ip_location_db_malformed_lines() {
        let p = fixture("asn-ipv4-bad.csv");
        let e = RouteTable::default().load(&p, None, LoadOptions::default()).unwrap_err().to_string();
        assert!(e.contains("asn-ipv4-bad.csv:2:") && e.contains("bad address range"), "{e}");
        let mut t = RouteTable::default();
        let st = t.load(&p, None, LoadOptions { skip_bad_lines: true }).unwrap();
        assert_eq!((st.records, st.skipped_bad), (2, 2));
        assert_eq!(t.lookup("1.0.4.1".parse().unwrap()).unwrap().1.asn, 38803);
    }

    #[test]
    fn mmdb_reader_errors_cleanly_on_garbage() {
        let mut t = RouteTable::default();
        let e = t.load(&fixture("bad.pfx2as"), Some(RouteFormat::Mmdb), LoadOptions::default()).unwrap_err();
        assert!(e.to_string().contains("bad.pfx2as"), "{e}");
    }
}

#[cfg(test)]
mod mmdb_tests {
    use super::*;
    #[test]
    fn geolite2_asn_mmdb() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/GeoLite2-ASN-test.mmdb");
        let mut t = RouteTable::default();
        let st = t.load(&p, None, LoadOptions::default()).unwrap();
        assert!(st.records >= 3, "{st:?}");
        let (net, o) = t.lookup("1.0.0.9".parse().unwrap()).unwrap();
        assert_eq!((net.to_string().as_str(), o.asn, t.source_org(o)), ("1.0.0.0/24", 13335, Some("CLOUDFLARENET")));
        assert_eq!(t.lookup("2001:4860::1".parse().unwrap()).unwrap().1.asn, 15169);
        assert_eq!(t.lookup("2.3.4.5".parse().unwrap()).unwrap().1.asn, 3215);
    }
}
