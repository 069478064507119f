//! `crawler sink` and `crawler egress` against each other on loopback: a clean path, the
//! middleboxes egress exists to see (a transparent SMTP proxy, a STARTTLS stripper, a TLS
//! interceptor, a NATing relay, a throttle, a closed and a silent port), and egress run as an
//! unprivileged user. Every address is loopback (127.0.0.0/8, ::1).

mod common;

use common::*;
use crawler::egress::{self, output, session::RecordingVerifier};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

fn egress_args(sinks: &[&str], ports: &[u16], control: u16, implicit: &[u16], repeat: u16, timeout: f64, pin: &str, out: &std::path::Path) -> Vec<String> {
    let mut a = vec!["--sink".to_string()];
    a.extend(s(sinks));
    a.extend(s(&["--vantage", "loopback", "--ports", &list(ports), "--control-ports", &control.to_string(), "--implicit-tls-ports", &list(implicit)]));
    a.extend(s(&["--repeat", &repeat.to_string(), "--interval", "0.3", "--timeout", &timeout.to_string(), "--sink-pin", pin, "--out"]));
    a.push(out.display().to_string());
    a
}

/// The sink's rows by nonce.
fn by_nonce(rows: &[Row]) -> HashMap<String, &Row> {
    rows.iter().map(|r| (get(r, "nonce").unwrap().to_string(), r)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_and_egress_agree_on_an_open_path_in_both_families() {
    let ports = free_ports(4, &["127.0.0.1", "::1"]);
    let (control, implicit) = (ports[0], ports[3]);
    let sink = TestSink::start(&["127.0.0.1", "::1"], &ports, &[implicit], &[]).await;
    let out = tempfile::tempdir().unwrap();
    let cfg = egress_config(&egress_args(&["127.0.0.1", "::1"], &ports, control, &[implicit], 2, 5.0, &sink.pin, out.path()));
    let report = egress::measure(&cfg).await;
    let path = output::write(&cfg, &report).unwrap();
    let summary = output::summary(&cfg, &report);
    let (pin, max_out) = (sink.pin.clone(), sink.max_out);
    let (stats, sink_rows, _keep) = sink.stop().await;

    let rows = read_rows(out.path());
    assert_eq!(rows.len(), 2 * 4 * 2, "2 families x 4 ports x 2 attempts");
    assert!(path.to_string_lossy().contains("egress_date=") && path.to_string_lossy().contains("vantage=loopback"));
    let twins = by_nonce(&sink_rows);
    for r in &rows {
        let port: u16 = get(r, "port").unwrap().parse().unwrap();
        let ctx = format!("{r:?}");
        assert_eq!(get(r, "verdict"), Some("open"), "{ctx}");
        assert_eq!((get(r, "outcome"), get(r, "banner_is_sink"), get(r, "you_matches"), get(r, "pin_matches")), (Some("established"), Some("true"), Some("true"), Some("true")), "{ctx}");
        assert_eq!(get(r, "tls_done"), Some("true"), "{ctx}");
        assert_eq!(get(r, "starttls_offered"), if port == implicit { None } else { Some("true") }, "{ctx}");
        assert_eq!(get(r, "cert_sha256"), Some(pin.as_str()));
        assert_eq!(get(r, "rst_ttl"), None);
        // The sink's twin: same connection seen from the server.
        let twin = twins.get(get(r, "sink_id").unwrap()).unwrap_or_else(|| panic!("no sink row for {ctx}"));
        assert_eq!(get(twin, "client_port"), get(r, "local_port"), "{ctx}");
        assert_eq!(get(twin, "local_port"), get(r, "port"));
        assert_eq!(get(twin, "local_ip"), get(r, "sink"));
        assert_eq!((get(twin, "tls_done"), get(twin, "end")), (Some("true"), Some("goodbye")), "{twin:?}");
        assert_eq!(get(twin, "commands"), Some(if port == implicit { "EHLO" } else { "EHLO STARTTLS EHLO" }));
        let out_bytes: u64 = get(twin, "bytes_out").unwrap().parse().unwrap();
        assert!(out_bytes > 0 && out_bytes <= max_out, "{out_bytes} bytes out");
    }
    assert_eq!((sink_rows.len(), stats.rows, stats.accepted, stats.busy), (16, 16, 16, 0));
    for p in &ports {
        assert!(summary.contains(&format!("port {p}: open on IPv4 and IPv6")), "{summary}");
    }
    assert!(summary.contains("public IPv4 address: 127.0.0.1") && summary.contains("public IPv6 address: ::1"), "{summary}");
    readme_recipes_run(out.path(), _keep.path());
}

/// The README's DuckDB recipes for these tables run on real sink and egress files (with the
/// DuckDB CLI, which the suite needs: `pip install duckdb-cli`; `.ci/run` installs it).
fn readme_recipes_run(egress_dir: &std::path::Path, sink_dir: &std::path::Path) {
    assert!(std::process::Command::new("duckdb").arg("--version").output().is_ok(), "the DuckDB CLI is missing (pip install duckdb-cli)");
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let section = readme.split("### `crawler sink` and `crawler egress`").nth(1).unwrap().split("\n### ").next().unwrap();
    let mut n = 0;
    for block in section.split("```sh\nduckdb <<'SQL'\n").skip(1) {
        let sql = block.split("SQL\n```").next().unwrap().replace("'egress/", &format!("'{}/", egress_dir.display())).replace("'sink/", &format!("'{}/", sink_dir.display()));
        let o = std::process::Command::new("duckdb").args(["-csv", "-c", &sql]).output().unwrap();
        assert!(o.status.success(), "{sql}\n{}", String::from_utf8_lossy(&o.stderr));
        assert!(String::from_utf8_lossy(&o.stdout).lines().count() >= 2, "recipe returned nothing:\n{sql}");
        n += 1;
    }
    assert_eq!(n, 4, "the README's sink/egress recipes");
}

async fn connect_from(src: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpSocket::new_v4()?;
    s.bind(SocketAddr::new(src, 0))?;
    s.connect(to).await
}

/// A transparent relay: upstream from `src` (None: from the client's own address, as a
/// TPROXY-style interceptor does), STARTTLS dropped from server lines when `strip`; only the
/// first connection is served when `once` (later ones are refused: a throttle).
fn relay(l: TcpListener, upstream: SocketAddr, src: Option<IpAddr>, strip: bool, once: bool) {
    tokio::spawn(async move {
        while let Ok((mut c, peer)) = l.accept().await {
            tokio::spawn(async move {
                let Ok(mut up) = connect_from(src.unwrap_or(peer.ip()), upstream).await else { return };
                if !strip {
                    let _ = tokio::io::copy_bidirectional(&mut c, &mut up).await;
                    return;
                }
                let (mut cr, mut cw) = c.into_split();
                let (ur, mut uw) = up.into_split();
                tokio::spawn(async move { tokio::io::copy(&mut cr, &mut uw).await });
                // Hides the keyword from the EHLO reply only: a client that asks anyway gets its
                // TLS through (from the server's "ready" on, bytes are relayed as they are).
                let mut ur = BufReader::new(ur);
                let mut line = String::new();
                while ur.read_line(&mut line).await.unwrap_or(0) > 0 {
                    if !line.contains("STARTTLS") && cw.write_all(line.as_bytes()).await.is_err() {
                        break;
                    }
                    if line.starts_with("220 2.0.0") {
                        let _ = tokio::io::copy(&mut ur, &mut cw).await;
                        break;
                    }
                    line.clear();
                }
            });
            if once {
                break;
            }
        }
    });
}

/// An ISP's own MTA answering in the sink's place.
fn fake_mta(l: TcpListener) {
    tokio::spawn(async move {
        while let Ok((c, _)) = l.accept().await {
            tokio::spawn(async move {
                let (r, mut w) = c.into_split();
                let _ = w.write_all(b"220 mx.isp.example ESMTP Postfix\r\n").await;
                let mut r = BufReader::new(r);
                let mut line = String::new();
                while r.read_line(&mut line).await.unwrap_or(0) > 0 {
                    let reply: &[u8] = match line.get(..4).map(|v| v.to_ascii_uppercase()).as_deref() {
                        Some("EHLO") => b"250-mx.isp.example\r\n250-PIPELINING\r\n250 8BITMIME\r\n",
                        Some("QUIT") => b"221 2.0.0 Bye\r\n",
                        _ => b"502 5.5.2 Error\r\n",
                    };
                    let _ = w.write_all(reply).await;
                    line.clear();
                }
            });
        }
    });
}

/// Terminates TLS with its own certificate and talks TLS to the sink itself.
fn tls_interceptor(l: TcpListener, upstream: SocketAddr) -> String {
    let mitm = crawler::sink::tls::self_signed("mitm.isp.example").unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(mitm.config.clone());
    tokio::spawn(async move {
        while let Ok((c, peer)) = l.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut down) = acceptor.accept(c).await else { return };
                let Ok(up) = connect_from(peer.ip(), upstream).await else { return };
                let cfg = crawler::egress::session::client_config(RecordingVerifier::new()).unwrap();
                let name = rustls::pki_types::ServerName::IpAddress(upstream.ip().into());
                let Ok(mut up) = tokio_rustls::TlsConnector::from(cfg).connect(name, up).await else { return };
                let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
            });
        }
    });
    mitm.pin
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxies_strippers_interceptors_throttles_and_closed_ports_are_told_apart() {
    // The sink on 127.0.0.1; what stands in the path on 127.0.0.2, port for port.
    let p = free_ports(7, &["127.0.0.1", "127.0.0.2"]);
    let (control, banner, strip, tls, nat, throttle, closed) = (p[0], p[1], p[2], p[3], p[4], p[5], p[6]);
    let sink = TestSink::start(&["127.0.0.1"], &p[..6], &[tls], &[]).await;
    let mid = |port: u16| SocketAddr::new(ip("127.0.0.2"), port);
    let up = |port: u16| SocketAddr::new(ip("127.0.0.1"), port);
    relay(TcpListener::bind(mid(control)).await.unwrap(), up(control), None, false, false);
    fake_mta(TcpListener::bind(mid(banner)).await.unwrap());
    relay(TcpListener::bind(mid(strip)).await.unwrap(), up(strip), None, true, false);
    let mitm_pin = tls_interceptor(TcpListener::bind(mid(tls)).await.unwrap(), up(tls));
    relay(TcpListener::bind(mid(nat)).await.unwrap(), up(nat), Some(ip("127.0.0.3")), false, false);
    relay(TcpListener::bind(mid(throttle)).await.unwrap(), up(throttle), None, false, true);

    let out = tempfile::tempdir().unwrap();
    let cfg = egress_config(&egress_args(&["127.0.0.2"], &p, control, &[tls], 3, 5.0, &sink.pin, out.path()));
    let report = egress::measure(&cfg).await;
    output::write(&cfg, &report).unwrap();
    let summary = output::summary(&cfg, &report);
    let (_, sink_rows, _keep) = sink.stop().await;
    let twins = by_nonce(&sink_rows);

    let rows = read_rows(out.path());
    let verdicts = |port: u16| -> Vec<String> {
        let mut v: Vec<(u16, String)> = rows.iter().filter(|r| get(r, "port") == Some(&port.to_string())).map(|r| (get(r, "attempt").unwrap().parse().unwrap(), get(r, "verdict").unwrap().to_string())).collect();
        v.sort();
        v.into_iter().map(|x| x.1).collect()
    };
    let row = |port: u16| rows.iter().find(|r| get(r, "port") == Some(&port.to_string()) && get(r, "attempt") == Some("0")).unwrap();
    assert_eq!(verdicts(control), ["open"; 3], "{summary}");
    assert_eq!(verdicts(banner), ["intercepted"; 3], "{summary}");
    assert_eq!(verdicts(strip), ["stripped"; 3], "{summary}");
    assert_eq!(verdicts(tls), ["tls-intercepted"; 3], "{summary}");
    // Another public address than the control port's is NAT, not interception.
    assert_eq!(verdicts(nat), ["open"; 3], "{summary}");
    assert_eq!(verdicts(throttle), ["open", "throttled", "throttled"], "{summary}");
    assert_eq!(verdicts(closed), ["blocked"; 3], "{summary}");

    // The evidence behind each verdict, client side and server side.
    assert_eq!((get(row(banner), "banner_is_sink"), get(row(banner), "starttls_offered")), (Some("false"), Some("false")));
    let r = row(strip);
    assert_eq!((get(r, "banner_is_sink"), get(r, "you_matches"), get(r, "starttls_offered")), (Some("true"), Some("true"), Some("false")));
    // Egress asks for STARTTLS anyway: the box only hid the keyword, so TLS still came up.
    assert_eq!(get(twins[get(r, "sink_id").unwrap()], "commands"), Some("EHLO STARTTLS EHLO"));
    assert_eq!(get(r, "tls_done"), Some("true"));
    let r = row(tls);
    assert_eq!((get(r, "cert_sha256"), get(r, "pin_matches"), get(r, "banner_is_sink")), (Some(mitm_pin.as_str()), Some("false"), Some("true")));
    assert_eq!(get(twins[get(r, "sink_id").unwrap()], "tls_done"), Some("true"), "the interceptor's own TLS to the sink");
    let r = row(nat);
    assert_eq!((get(r, "banner_is_sink"), get(r, "you_matches")), (Some("true"), Some("false")));
    assert_eq!(get(twins[get(r, "sink_id").unwrap()], "client_ip"), Some("127.0.0.3"), "the sink saw the relay's address");
    assert_eq!((get(row(closed), "outcome"), get(row(closed), "icmp_type")), (Some("refused"), None));

    for line in [
        format!("port {banner}: intercepted (another server answered: \"220 mx.isp.example ESMTP Postfix\") on IPv4"),
        format!("port {strip}: stripped (STARTTLS hidden from the EHLO reply (the command still passed)) on IPv4"),
        format!("port {tls}: tls-intercepted (the certificate is not the sink's) on IPv4"),
        format!("port {nat}: open on IPv4"),
        format!("port {throttle}: throttled in 2 of 3 attempts (attempt 2 failed after earlier ones connected: refused by a RST); 1 open on IPv4"),
        format!("port {closed}: blocked (refused by a RST) on IPv4"),
    ] {
        assert!(summary.contains(&line), "{line}\nnot in\n{summary}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_that_never_answers_times_out_as_blocked() {
    // A listener with a backlog of 0 whose one queue place is taken: the kernel drops further
    // SYNs, as a silent filter does.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into()).unwrap();
    sock.listen(0).unwrap();
    let addr = sock.local_addr().unwrap().as_socket().unwrap();
    let _filler = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    // A control port that accepts (the kernel completes the handshake): the sink address is
    // reachable, so the silent port is blocked, not the sink unreachable.
    let control = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let cport = control.local_addr().unwrap().port();
    let out = tempfile::tempdir().unwrap();
    let cfg = egress_config(&egress_args(&["127.0.0.1"], &[addr.port(), cport], cport, &[465], 1, 1.0, &"0".repeat(64), out.path()));
    let t = Instant::now();
    let report = egress::measure(&cfg).await;
    assert!(t.elapsed() >= Duration::from_millis(900) && t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    let a = report.rows.iter().find(|a| a.port == addr.port()).unwrap();
    assert_eq!((a.outcome, a.verdict, a.connect_us), ("timeout", "blocked", None));
    assert!(output::summary(&cfg, &report).contains(&format!("port {}: blocked (no answer) on IPv4", addr.port())));
    drop(sock);
}

fn status_field(pid: u32, key: &str) -> Option<String> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find_map(|l| l.strip_prefix(&format!("{key}:")).map(|v| v.trim().to_string()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_egress_binary_needs_no_privileges() {
    use std::os::unix::fs::PermissionsExt;
    let ports = free_ports(3, &["127.0.0.1"]);
    let sink = TestSink::start(&["127.0.0.1"], &ports, &[ports[2]], &[]).await;
    // A copy of the binary and an output directory a nobody user can use.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = dir.path().join("crawler");
    std::fs::copy(env!("CARGO_BIN_EXE_crawler"), &bin).unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut args = vec!["egress".to_string()];
    args.extend(egress_args(&["127.0.0.1"], &ports, ports[0], &[ports[2]], 2, 5.0, &sink.pin, &out));
    let at = args.iter().position(|a| a == "--interval").unwrap() + 1;
    args[at] = "1".into();
    let root = unsafe { libc::geteuid() } == 0;
    let mut cmd = if root {
        let mut c = std::process::Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"]).arg(&bin);
        c
    } else {
        std::process::Command::new(&bin)
    };
    cmd.args(&args).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let (output, seen) = tokio::task::spawn_blocking(move || {
        let child = cmd.spawn().unwrap();
        let pid = child.id();
        // Once setpriv has exec'd egress: who it runs as and what it may do.
        let mut seen = None;
        let until = Instant::now() + Duration::from_secs(10);
        while seen.is_none() && Instant::now() < until {
            if std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|e| e.ends_with("crawler")) {
                seen = Some((status_field(pid, "Uid"), status_field(pid, "CapEff"), status_field(pid, "CapPrm")));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        (child.wait_with_output().unwrap(), seen)
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let (uid, cap_eff, cap_prm) = seen.expect("saw the egress process running");
    if root {
        assert!(uid.unwrap().starts_with("65534"), "runs as nobody");
    }
    assert_eq!((cap_eff.as_deref(), cap_prm.as_deref()), (Some("0000000000000000"), Some("0000000000000000")), "no capabilities");
    for p in &ports {
        assert!(stdout.contains(&format!("port {p}: open on IPv4")), "{stdout}");
    }
    let rows = read_rows(&out);
    assert_eq!(rows.len(), 6);
    assert!(rows.iter().all(|r| get(r, "verdict") == Some("open")), "{rows:?}");
    let (_, sink_rows, _keep) = sink.stop().await;
    assert_eq!(sink_rows.len(), 6);
}

#[test]
fn bad_flags_exit_2_with_a_reason() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().display().to_string();
    for (args, why) in [
        (vec!["egress", "--sink", "sink.example.org", "--vantage", "v", "--out", &out], "not an IP address"),
        (vec!["egress", "--sink", "127.0.0.1", "--vantage", "v", "--sink-pin", "abc", "--out", &out], "--sink-pin"),
        (vec!["egress", "--sink", "127.0.0.1", "--vantage", "a/b", "--out", &out], "--vantage"),
        (vec!["sink", "--listen", "127.0.0.1", "--ports", "0", "--out", &out], "--ports"),
        (vec!["sink", "--listen", "127.0.0.1", "--name", "../x", "--out", &out], "--name"),
        (vec!["sink", "--listen", "127.0.0.1", "--tls-cert", "/nonexistent.pem", "--tls-key", "/nonexistent.key", "--out", &out], "/nonexistent.pem"),
    ] {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_crawler")).args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(why), "{args:?}: {err}");
    }
}

/// `crawler egress --upload`: the run's file goes to the sink inside its pinned TLS, with the
/// fleet's token; the sink stores it under its `--out`, never records the token, and refuses a
/// wrong one, a file too large and a file of another vantage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_results_go_to_the_sink_with_the_fleet_token_and_no_other() {
    let p = free_ports(3, &["127.0.0.1"]);
    let (control, starttls, implicit) = (p[0], p[1], p[2]);
    let tokens = tempfile::tempdir().unwrap();
    let tf = tokens.path().join("tokens");
    std::fs::write(&tf, "# the lab fleet\nlab-fleet-token-0123456789\n").unwrap();
    let sink = TestSink::start(&["127.0.0.1"], &p, &[implicit], &["--upload-tokens", tf.to_str().unwrap(), "--max-upload", "64K"]).await;
    let out = tempfile::tempdir().unwrap();
    let cfg = egress_config(&egress_args(&["127.0.0.1"], &[starttls, implicit], control, &[implicit], 1, 5.0, &sink.pin, out.path()));
    let report = egress::measure(&cfg).await;
    let file = output::write(&cfg, &report).unwrap();
    let (ports, implicit_tls) = ([starttls, implicit], [implicit]);
    let route = |pins| egress::upload::Route { sinks: &cfg.sinks, ports: &ports, implicit_tls: &implicit_tls, pins, limit: Duration::from_secs(5) };
    let pins = report.pins.clone();
    let wrong_pin = vec!["ab".repeat(32)];
    // A wrong token: refused, nothing stored.
    let e = egress::upload::send(&file, "loopback", &report.run_id, "not-the-fleet-token-000", &route(&pins)).await.unwrap_err().to_string();
    assert!(e.contains("refused by the sink") && e.contains("535"), "{e}");
    // Without the sink's pin, never sent.
    let e = egress::upload::send(&file, "loopback", &report.run_id, "lab-fleet-token-0123456789", &route(&wrong_pin)).await.unwrap_err().to_string();
    assert!(e.contains("not the sink's pinned one"), "{e}");
    // Another vantage's name on this file: refused after reading it.
    let e = egress::upload::send(&file, "someone-else", &report.run_id, "lab-fleet-token-0123456789", &route(&pins)).await.unwrap_err().to_string();
    assert!(e.contains("another vantage"), "{e}");
    let key = egress::upload::send(&file, "loopback", &report.run_id, "lab-fleet-token-0123456789", &route(&pins)).await.unwrap();
    assert!(key.starts_with("egress/egress_date=") && key.contains("/vantage=loopback/part-"), "{key}");
    assert_eq!(std::fs::read(sink.out.path().join(&key)).unwrap(), std::fs::read(&file).unwrap(), "stored byte for byte");
    let (_, rows, _keep) = sink.stop().await;
    let ends: Vec<&str> = rows.iter().filter_map(|r| get(r, "end")).collect();
    assert_eq!(ends.iter().filter(|e| **e == "uploaded").count(), 1, "{ends:?}");
    assert_eq!(ends.iter().filter(|e| **e == "upload-refused").count(), 2, "{ends:?}");
    for r in &rows {
        assert!(!get(r, "client_sent").unwrap_or("").contains("fleet-token"), "a token reached the record: {r:?}");
    }
}
