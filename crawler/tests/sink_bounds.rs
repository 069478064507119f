//! `crawler sink` on the open Internet, rehearsed on loopback: a connection flood from one
//! address and from many, slow clients (silent, byte by byte, command by command, never
//! reading) and 1 MiB of junk. The sink (its own process, as deployed) must stay small, keep
//! serving others, answer each client with a bounded number of bytes, record every admitted
//! connection and count every refused one.

mod common;

use common::*;
use std::io::{BufRead, Read};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};

const MAX_CONNS: usize = 64;
const PER_CLIENT: usize = 8;

async fn open_from(src: &str, to: SocketAddr, made: &AtomicU64) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(SocketAddr::new(src.parse().unwrap(), 0)).unwrap();
    let c = s.connect(to).await.unwrap();
    made.fetch_add(1, Ordering::Relaxed);
    c
}

/// The first line the sink sends (empty if it closes first).
async fn first_line(c: &mut BufReader<TcpStream>) -> String {
    let mut l = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), c.read_line(&mut l)).await;
    l
}

/// `n` connections from each of `srcs`, held open: how many were greeted (the rest: 421 busy).
async fn flood(srcs: &[String], n: usize, to: SocketAddr, made: &Arc<AtomicU64>) -> (usize, usize, Vec<BufReader<TcpStream>>) {
    let mut set = tokio::task::JoinSet::new();
    for src in srcs {
        for _ in 0..n {
            let (src, made) = (src.clone(), made.clone());
            set.spawn(async move {
                let mut c = BufReader::new(open_from(&src, to, &made).await);
                let l = first_line(&mut c).await;
                (l, c)
            });
        }
    }
    let (mut greeted, mut busy, mut held) = (0, 0, Vec::new());
    while let Some(r) = set.join_next().await {
        let (l, c) = r.unwrap();
        greeted += l.starts_with("220 ") as usize;
        busy += (l.starts_with("421 ") && l.contains("port25-sink busy")) as usize;
        held.push(c);
    }
    (greeted, busy, held)
}

/// A whole conversation from `src`: greeting, EHLO, QUIT; the time it took.
async fn served(src: &str, to: SocketAddr, made: &AtomicU64) -> Result<Duration, String> {
    let t = Instant::now();
    let mut c = BufReader::new(open_from(src, to, made).await);
    let g = first_line(&mut c).await;
    if !g.starts_with("220 ") || !g.contains(&format!("you={src}:")) {
        return Err(format!("greeting {g:?}"));
    }
    c.get_mut().write_all(b"EHLO me\r\n").await.unwrap();
    let mut last = String::new();
    while !last.starts_with("250 ") {
        last = first_line(&mut c).await;
        if last.is_empty() {
            return Err("no EHLO reply".into());
        }
    }
    c.get_mut().write_all(b"QUIT\r\n").await.unwrap();
    let bye = first_line(&mut c).await;
    if !bye.starts_with("221 ") {
        return Err(format!("goodbye {bye:?}"));
    }
    Ok(t.elapsed())
}

/// Send `junk` (after `prelude`, answered line by line) while reading everything the sink
/// says until it closes: the bytes received.
async fn junk(src: &str, to: SocketAddr, made: &AtomicU64, prelude: &[&str], junk: Vec<u8>) -> usize {
    let mut c = BufReader::new(open_from(src, to, made).await);
    let mut got = first_line(&mut c).await.len();
    for cmd in prelude {
        c.get_mut().write_all(cmd.as_bytes()).await.unwrap();
        loop {
            let l = first_line(&mut c).await;
            got += l.len();
            if l.len() < 4 || l.as_bytes()[3] == b' ' {
                break;
            }
        }
    }
    let (mut r, mut w) = c.into_inner().into_split();
    let writer = tokio::spawn(async move {
        let _ = w.write_all(&junk).await;
        w
    });
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), r.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => got += n,
        }
    }
    drop(writer);
    got
}

/// A client that never finishes a line (a byte every 200 ms), or sends NOOP every 400 ms: how
/// long until the sink closes on it.
async fn slow(src: &str, to: SocketAddr, made: &AtomicU64, line: bool) -> Duration {
    let mut c = BufReader::new(open_from(src, to, made).await);
    let t = Instant::now();
    first_line(&mut c).await;
    let (mut r, mut w) = c.into_inner().into_split();
    tokio::spawn(async move {
        loop {
            let step: &[u8] = if line { b"NOOP\r\n" } else { b"N" };
            if w.write_all(step).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(if line { 400 } else { 200 })).await;
        }
    });
    let mut buf = [0u8; 512];
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(10), r.read(&mut buf)).await {
        if n == 0 {
            break;
        }
    }
    t.elapsed()
}

fn kib(status: &str, key: &str) -> u64 {
    status.lines().find_map(|l| l.strip_prefix(key)).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sink_stays_bounded_under_floods_slow_clients_and_junk() {
    let port = free_ports(1, &["127.0.0.1"])[0];
    let to = SocketAddr::new(ip("127.0.0.1"), port);
    let out = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_crawler"))
        .args(["sink", "--listen", "127.0.0.1", "--ports", &port.to_string(), "--name", "flood.test", "--max-conns", &MAX_CONNS.to_string(), "--max-per-client", &PER_CLIENT.to_string()])
        .args(["--idle-timeout", "1", "--max-conn-time", "3", "--rotate-secs", "1", "--rotate-rows", "100", "--out"])
        .arg(out.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert!(line.contains("listening"), "{line}");
    let made = Arc::new(AtomicU64::new(0));

    // A flood from one address: 8 get the greeting, the rest a 421; another client is served.
    let t = Instant::now();
    let (greeted, busy_a, held) = flood(&["127.0.0.1".to_string()], 400, to, &made).await;
    let flood_took = t.elapsed();
    let legit = served("127.0.0.2", to, &made).await.unwrap();
    assert!(legit < Duration::from_secs(2), "{legit:?}");
    assert_eq!(greeted + busy_a, 400);
    assert!(greeted >= PER_CLIENT && greeted <= if flood_took < Duration::from_millis(900) { PER_CLIENT } else { 3 * PER_CLIENT }, "{greeted} greeted in {flood_took:?}");
    drop(held);

    // Slow clients: a line never finished is cut at the idle timeout, commands trickling in at
    // the connection's lifetime.
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let made = made.clone();
        set.spawn(async move { slow("127.0.0.4", to, &made, false).await });
    }
    let trickle = slow("127.0.0.5", to, &made, true).await;
    while let Some(d) = set.join_next().await {
        let d = d.unwrap();
        assert!(d >= Duration::from_millis(900) && d < Duration::from_millis(2500), "byte-by-byte client lasted {d:?}");
    }
    assert!(trickle >= Duration::from_millis(2900) && trickle < Duration::from_millis(4500), "NOOP client lasted {trickle:?}");

    // 1 MiB of junk: without newlines, as lines, and inside STARTTLS. The answers stay small.
    let mib = 1 << 20;
    let no_lines = junk("127.0.0.6", to, &made, &[], vec![b'x'; mib]).await;
    let lines = junk("127.0.0.6", to, &made, &[], b"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n".repeat(mib / 32)).await;
    let in_tls = junk("127.0.0.6", to, &made, &["EHLO me\r\n", "STARTTLS\r\n"], vec![0x16; mib]).await;
    println!("junk: answered {no_lines} B (no newlines), {lines} B (lines), {in_tls} B (after STARTTLS)");
    for n in [no_lines, lines, in_tls] {
        assert!(n > 0 && n <= 2048, "{n} bytes answered to 1 MiB of junk");
    }

    // A flood from 20 addresses, 8 each: the global cap holds; once the flood's slots time
    // out, others are served again.
    let srcs: Vec<String> = (10..30).map(|i| format!("127.0.0.{i}")).collect();
    let (greeted, busy, held) = flood(&srcs, PER_CLIENT, to, &made).await;
    assert_eq!(greeted + busy, 160);
    assert!(greeted <= MAX_CONNS && busy >= 160 - MAX_CONNS, "{greeted} greeted, {busy} busy");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    served("127.0.0.2", to, &made).await.unwrap();
    drop(held);

    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let (hwm, rss) = (kib(&status, "VmHWM:"), kib(&status, "VmRSS:"));
    println!("sink memory: peak {hwm} kB, now {rss} kB, after {} connections", made.load(Ordering::Relaxed));
    assert!(hwm < 64 * 1024, "peak RSS {hwm} kB");

    // SIGINT: the sink publishes its last file; every connection has its row.
    unsafe { libc::kill(pid as i32, libc::SIGINT) };
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert!(child.wait().unwrap().success());
    println!("{rest}");
    let made = made.load(Ordering::Relaxed) as usize;
    let peak: usize = rest.split("at most ").nth(1).and_then(|s| s.split(' ').next()).unwrap().parse().unwrap();
    assert!(peak <= MAX_CONNS, "{rest}");
    let rows = read_rows(out.path());
    let refused = busy_a + busy;
    assert_eq!(rows.len(), made - refused, "one row per admitted connection");
    // Refused connections are counted, not recorded: every one of them in a counters file.
    let counted: u64 = counters_files(out.path()).iter().map(|c| c["refused"].as_u64().unwrap()).sum();
    assert_eq!(counted as usize, refused, "{rest}");
    assert!(rest.contains(&format!("{refused} refused")), "{rest}");
    let num = |r: &Row, k: &str| -> u64 { get(r, k).unwrap().parse().unwrap() };
    let max_out = rows.iter().map(|r| num(r, "bytes_out")).max().unwrap();
    let max_in = rows.iter().map(|r| num(r, "bytes_in")).max().unwrap();
    println!("per connection: at most {max_out} B sent, {max_in} B read");
    assert!(max_out <= crawler::sink::MAX_OUT_BASE + 2048 && max_in <= crawler::sink::MAX_IN);
    let ends = |from: &str, end: &str| rows.iter().filter(|r| get(r, "client_ip") == Some(from) && get(r, "end") == Some(end)).count();
    assert_eq!(ends("127.0.0.4", "timeout"), 8);
    assert_eq!(ends("127.0.0.5", "timeout"), 1);
    assert_eq!(ends("127.0.0.6", "limit") + ends("127.0.0.6", "tls-failed"), 3);
    assert_eq!(ends("127.0.0.2", "goodbye"), 2);
    assert_eq!(rows.iter().filter(|r| get(r, "end") == Some("busy")).count(), 0);
    let files = parquet_files(out.path());
    assert!(files.len() >= rows.len() / 100 && files.iter().all(|f| f.to_string_lossy().contains("sink_date=")), "{} files", files.len());
}

/// Clients that never read: 32 pipeline a dozen EHLOs into a receive buffer they never drain
/// (the sink answers up to its command limit and closes), 16 say nothing at all (closed at the
/// idle timeout). None holds its slot past the connection's lifetime, another client is served
/// meanwhile, and each ends in its row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_never_read_hold_nothing() {
    let port = free_ports(1, &["127.0.0.1"])[0];
    let to = SocketAddr::new(ip("127.0.0.1"), port);
    let out = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_crawler"))
        .args(["sink", "--listen", "127.0.0.1", "--ports", &port.to_string(), "--name", "readers.test", "--max-conns", "64", "--max-per-client", "8"])
        .args(["--idle-timeout", "1", "--max-conn-time", "3", "--rotate-secs", "1", "--out"])
        .arg(out.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let made = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let mut held = Vec::new();
    for i in 0..48 {
        let src = format!("127.0.2.{}", 1 + i / 8);
        let s = TcpSocket::new_v4().unwrap();
        s.set_recv_buffer_size(1).unwrap();
        s.bind(SocketAddr::new(src.parse().unwrap(), 0)).unwrap();
        let mut c = s.connect(to).await.unwrap();
        made.fetch_add(1, Ordering::Relaxed);
        if i < 32 {
            c.write_all(&b"EHLO never-reads.invalid\r\n".repeat(12)).await.unwrap();
        }
        held.push(c);
    }
    // All 48 slots are taken by clients that never read: another client is still served.
    let legit = served("127.0.0.2", to, &made).await.unwrap();
    println!("48 clients that never read; another client served in {legit:?}");
    assert!(legit < Duration::from_secs(2), "{legit:?}");
    // Within the lifetime every one of them is closed by the sink (EOF or reset on read).
    let mut closed = 0;
    for mut c in held {
        let mut buf = vec![0u8; 1 << 16];
        let deadline = Instant::now() + Duration::from_secs(4);
        loop {
            match tokio::time::timeout_at(deadline.into(), c.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    closed += 1;
                    break;
                }
                Ok(Ok(_)) => continue,
                Err(_) => break,
            }
        }
    }
    println!("closed by the sink: {closed} of 48 within {:?}", t0.elapsed());
    assert_eq!(closed, 48);
    unsafe { libc::kill(pid as i32, libc::SIGINT) };
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert!(child.wait().unwrap().success());
    let rows = read_rows(out.path());
    let ends = |end: &str| rows.iter().filter(|r| get(r, "client_ip").is_some_and(|c| c.starts_with("127.0.2.")) && get(r, "end") == Some(end)).count();
    assert_eq!((ends("limit"), ends("timeout")), (32, 16), "{rest}");
    assert_eq!(rows.len() as u64, made.load(Ordering::Relaxed), "every connection admitted and recorded");
}
