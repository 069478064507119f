//! `crawler egress --sink ::ffff:a.b.c.d`: an IPv4-mapped IPv6 address connects over IPv4, so
//! it is the IPv4 sink a.b.c.d — recorded as IPv4 (ip_version 4, sink a.b.c.d), counted once
//! beside the same address given plainly.

mod common;

use common::*;
use crawler::egress::{self, output};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ipv4_mapped_sink_address_is_the_ipv4_sink() {
    let ports = free_ports(1, &["127.0.0.1"]);
    let sink = TestSink::start(&["127.0.0.1"], &ports, &[1], &[]).await;
    let out = tempfile::tempdir().unwrap();
    let mut args = s(&["--sink", "::ffff:127.0.0.1", "127.0.0.1", "--vantage", "mapped", "--ports", &list(&ports), "--control-ports", &list(&ports)]);
    args.extend(s(&["--implicit-tls-ports", "1", "--repeat", "1", "--timeout", "5", "--sink-pin", &sink.pin, "--out", &out.path().display().to_string()]));
    let cfg = egress_config(&args);
    assert_eq!(cfg.sinks, vec![ip("127.0.0.1")], "the mapped address is the IPv4 sink, given once");
    let report = egress::measure(&cfg).await;
    output::write(&cfg, &report).unwrap();
    sink.stop().await;
    let rows = read_rows(out.path());
    assert_eq!(rows.len(), 1, "{rows:?}");
    let r = &rows[0];
    assert_eq!((get(r, "sink"), get(r, "ip_version"), get(r, "verdict")), (Some("127.0.0.1"), Some("4"), Some("open")), "{r:?}");
}
