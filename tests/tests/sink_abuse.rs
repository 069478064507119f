//! `crawler sink` against what the open Internet does to a server, with real sockets, a real
//! network namespace and a real full disk:
//! - a flood from 1,000 addresses inside one IPv6 /48 (1,000 /64s: 1,000 "clients" to a
//!   per-/64 cap): the /48's caps and rates hold it, every connection is answered at once,
//!   others are served meanwhile, refused connections are counted (not rows), and the sink's
//!   memory and disk stay small — the figures are printed;
//! - a disk that fills up (a 1 MiB tmpfs): the sink keeps answering, records what it can,
//!   counts what it loses, and publishes again once space returns.

mod common;
use common::*;
use std::io::BufRead;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpSocket;

/// A network namespace of this test's own (loopback up), deleted when dropped.
struct Ns(String);

impl Ns {
    fn new(tag: &str) -> Ns {
        let name = format!("p25h2-{tag}-{}", std::process::id());
        sh(&format!("ip netns add {name} && ip -n {name} link set lo up"));
        Ns(name)
    }
    fn sh(&self, cmd: &str) -> String {
        sh(&format!("ip netns exec {} {cmd}", self.0))
    }
    /// Move the calling thread into the namespace (sockets it opens live there).
    fn enter(&self) {
        let f = std::fs::File::open(format!("/var/run/netns/{}", self.0)).unwrap();
        // SAFETY: setns on a namespace file we hold open; affects this thread only.
        assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0, "setns: {}", std::io::Error::last_os_error());
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// A sink process (in `ns`, if given); its stdout's first line read (it is listening).
struct Sink {
    child: Child,
    out: std::io::BufReader<std::process::ChildStdout>,
}

impl Sink {
    fn start(ns: Option<&Ns>, args: &[&str]) -> Sink {
        let mut c = match ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &ns.0]).arg(crawler());
                c
            }
            None => Command::new(crawler()),
        };
        let mut child = c.arg("sink").args(args).stdout(Stdio::piped()).spawn().unwrap();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert!(line.contains("listening"), "{line}");
        Sink { child, out }
    }
    fn pid(&self) -> u32 {
        self.child.id()
    }
    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
    /// VmHWM and VmRSS in kB.
    fn memory(&self) -> (u64, u64) {
        let st = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let kb = |k: &str| st.lines().find_map(|l| l.strip_prefix(k)).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()).unwrap();
        (kb("VmHWM:"), kb("VmRSS:"))
    }
    /// SIGINT; the exit summary.
    fn stop(mut self) -> String {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut self.out, &mut rest).unwrap();
        assert!(self.child.wait().unwrap().success(), "{rest}");
        rest
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one connection got: its first line (empty: nothing before the sink closed or the
/// timeout), or the connect error.
async fn first_line(src: IpAddr, to: SocketAddr) -> Result<String, String> {
    let s = if src.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }.map_err(|e| e.to_string())?;
    s.bind(SocketAddr::new(src, 0)).map_err(|e| format!("bind {src}: {e}"))?;
    let c = tokio::time::timeout(Duration::from_secs(5), s.connect(to)).await.map_err(|_| "connect timeout".to_string())?.map_err(|e| e.to_string())?;
    let mut r = BufReader::new(c);
    let mut l = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), r.read_line(&mut l)).await;
    Ok(l)
}

/// Greeting, EHLO, QUIT from `src`: how long it took.
async fn served(src: IpAddr, to: SocketAddr) -> Result<Duration, String> {
    let t = Instant::now();
    let s = if src.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }.unwrap();
    s.bind(SocketAddr::new(src, 0)).unwrap();
    let mut c = BufReader::new(s.connect(to).await.map_err(|e| e.to_string())?);
    async fn next(c: &mut BufReader<tokio::net::TcpStream>) -> String {
        let mut line = String::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), c.read_line(&mut line)).await;
        line
    }
    let g = next(&mut c).await;
    if !g.starts_with("220 ") {
        return Err(format!("greeting {g:?}"));
    }
    c.get_mut().write_all(b"EHLO legit.invalid\r\n").await.unwrap();
    loop {
        let l = next(&mut c).await;
        if l.is_empty() {
            return Err("no EHLO reply".into());
        }
        if l.starts_with("250 ") {
            break;
        }
    }
    c.get_mut().write_all(b"QUIT\r\n").await.unwrap();
    let bye = next(&mut c).await;
    if !bye.starts_with("221 ") {
        return Err(format!("goodbye {bye:?}"));
    }
    Ok(t.elapsed())
}

fn dir_bytes(p: &Path) -> u64 {
    std::fs::read_dir(p).into_iter().flatten().flatten().map(|e| if e.path().is_dir() { dir_bytes(&e.path()) } else { e.metadata().map_or(0, |m| m.len()) }).sum()
}

fn counted(dir: &Path) -> (u64, u64) {
    fn walk(p: &Path, acc: &mut (u64, u64)) {
        for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
            let q = e.path();
            if q.is_dir() {
                walk(&q, acc);
            } else if q.file_name().is_some_and(|n| n.to_string_lossy().starts_with("counters-")) {
                let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&q).unwrap()).unwrap();
                acc.0 += v["refused"].as_u64().unwrap();
                acc.1 += v["records_dropped"].as_u64().unwrap();
            }
        }
    }
    let mut acc = (0, 0);
    walk(dir, &mut acc);
    acc
}

fn summary_number(s: &str, after: &str) -> u64 {
    s.split(after).next().and_then(|x| x.split_whitespace().last()).and_then(|n| n.trim_start_matches('(').parse().ok()).unwrap_or_else(|| panic!("no number before `{after}` in {s}"))
}

#[test]
#[ignore = "lab test: needs root and network namespaces (tests/run-tests.sh runs it)"]
fn a_flood_from_1000_addresses_in_one_48_is_held_and_counted() {
    if !require_root("sink_flood") {
        return;
    }
    let ns = Ns::new("flood");
    // The sink's address, and two /48s whose every address is this namespace's (AnyIP).
    ns.sh("ip -6 addr add 2001:db8:25::1/128 dev lo");
    ns.sh("ip -6 route add local 2001:db8:48::/48 dev lo");
    ns.sh("ip -6 route add local 2001:db8:99::/48 dev lo");
    ns.sh("sysctl -qw net.ipv6.ip_nonlocal_bind=1");
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("sink");
    let mut sink = Sink::start(Some(&ns), &["--listen", "2001:db8:25::1", "127.0.0.1", "--ports", "2525", "--name", "flood.lab", "--rotate-secs", "1", "--out", out.to_str().unwrap()]);
    let (v6, v4) = (SocketAddr::new("2001:db8:25::1".parse().unwrap(), 2525), SocketAddr::new("127.0.0.1".parse().unwrap(), 2525));

    // 1,000 addresses, each in a /64 of its own in 2001:db8:48::/48, 10 connections each, 256
    // at a time; meanwhile a client of another /48 and an IPv4 one are served.
    const ADDRS: u32 = 1000;
    const EACH: u32 = 10;
    let t0 = Instant::now();
    let (results, legit) = std::thread::scope(|s| {
        let flood = s.spawn(|| {
            ns.enter();
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(256));
                let mut set = tokio::task::JoinSet::new();
                for k in 0..EACH {
                    for i in 0..ADDRS {
                        let src: IpAddr = format!("2001:db8:48:{i:x}::{:x}", k + 1).parse().unwrap();
                        let permit = sem.clone().acquire_owned().await.unwrap();
                        set.spawn(async move {
                            let r = first_line(src, v6).await;
                            drop(permit);
                            r
                        });
                    }
                }
                set.join_all().await
            })
        });
        let legit = s.spawn(|| {
            ns.enter();
            std::thread::sleep(Duration::from_millis(1500));
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async { (served("2001:db8:99::7".parse().unwrap(), v6).await, served("127.0.0.2".parse().unwrap(), v4).await) })
        });
        (flood.join().unwrap(), legit.join().unwrap())
    });
    let secs = t0.elapsed().as_secs_f64();
    let greeted = results.iter().filter(|r| r.as_ref().is_ok_and(|l| l.starts_with("220 "))).count() as u64;
    let busy = results.iter().filter(|r| r.as_ref().is_ok_and(|l| l.starts_with("421 ") && l.contains("port25-sink busy"))).count() as u64;
    let other: Vec<_> = results.iter().filter(|r| !r.as_ref().is_ok_and(|l| l.starts_with("220 ") || l.starts_with("421 "))).take(5).collect();
    let total = (ADDRS * EACH) as u64;
    let rate = total as f64 / secs;
    assert!(sink.alive());
    let (hwm, rss) = sink.memory();
    println!("flood: {total} connections from {ADDRS} addresses of 2001:db8:48::/48 in {secs:.1} s ({rate:.0} connections/s held): {greeted} greeted, {busy} refused with 421; sink memory peak {hwm} kB, now {rss} kB");
    println!("during the flood: another /48 served in {:?}, an IPv4 client in {:?}", legit.0, legit.1);
    assert!(other.is_empty(), "connections neither greeted nor refused at once: {other:?}");
    assert_eq!(greeted + busy, total);
    // The /48's burst (240) and rate (4/s) are all it gets, whatever its 1,000 /64s.
    let allowed = 240 + (4.0 * secs).ceil() as u64 + 4;
    assert!(greeted <= allowed, "{greeted} connections of one /48 greeted in {secs:.1} s (at most {allowed})");
    assert!(greeted >= 200, "the /48 got only {greeted}: the burst should let an egress run through");
    assert!(legit.0.as_ref().is_ok_and(|d| *d < Duration::from_secs(2)), "another /48 during the flood: {:?}", legit.0);
    assert!(legit.1.as_ref().is_ok_and(|d| *d < Duration::from_secs(2)), "an IPv4 client during the flood: {:?}", legit.1);
    assert!(hwm < 64 * 1024, "peak RSS {hwm} kB");

    std::thread::sleep(Duration::from_millis(1200));
    let summary = sink.stop();
    println!("{}", summary.trim());
    let rows = read_rows(&out, &["client_ip", "end"]);
    let (refused_counted, dropped) = counted(&out);
    let disk = dir_bytes(&out);
    println!("figures: {rate:.0} connections/s held; sink memory peak {hwm} kB (VmHWM), {rss} kB at the end of the flood (VmRSS); {disk} bytes on disk at the end ({} rows, refused connections in counters files: {refused_counted})", rows.len());
    // One row per admitted connection (the flood's and the two legitimate ones), every refused
    // one counted, none dropped.
    assert_eq!(rows.len() as u64, greeted + 2, "{summary}");
    assert_eq!((refused_counted, dropped), (busy, 0), "{summary}");
    assert_eq!(summary_number(&summary, "refused:"), busy, "{summary}");
    assert!(disk < 1 << 20, "{disk} bytes on disk after the flood");
}

/// A tmpfs of 1 MiB in a directory of its own, unmounted when dropped (also on failure).
struct SmallDisk(PathBuf, #[allow(dead_code)] tempfile::TempDir);

impl SmallDisk {
    fn new() -> SmallDisk {
        let d = tempfile::Builder::new().prefix("p25h2-tmpfs-").tempdir().unwrap();
        let m = d.path().join("disk");
        std::fs::create_dir(&m).unwrap();
        sh(&format!("mount -t tmpfs -o size=1m,mode=0755 p25h2-tmpfs {}", m.display()));
        SmallDisk(m, d)
    }
    /// Fill what is left of it: a file written until the disk says it is full.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let p = self.0.join("filler");
        let mut f = std::fs::File::create(&p).unwrap();
        let chunk = [0x5au8; 4096];
        loop {
            match f.write(&chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => panic!("filling the tmpfs: {e}"),
            }
        }
        let _ = f.sync_all();
        p
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        if !Command::new("umount").arg(&self.0).status().is_ok_and(|s| s.success()) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

#[test]
#[ignore = "lab test: needs root to mount a tmpfs (tests/run-tests.sh runs it)"]
fn a_full_disk_degrades_recording_and_the_sink_keeps_answering() {
    if !require_root("sink_disk_full") {
        return;
    }
    let disk = SmallDisk::new();
    let out = disk.0.join("sink");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let to = SocketAddr::new("127.0.0.1".parse().unwrap(), port);
    let mut sink = Sink::start(None, &["--listen", "127.0.0.1", "--ports", &port.to_string(), "--name", "disk.lab", "--rotate-rows", "20", "--rotate-secs", "1", "--max-disk", "256K", "--out", out.to_str().unwrap()]);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    // `n` whole conversations from 127.0.3.x, each address within its rate budget.
    let converse = |n: u32, base: u32| {
        rt.block_on(async {
            let mut ok = 0;
            for i in 0..n {
                let src: IpAddr = format!("127.0.3.{}", 1 + (base + i) / 40).parse().unwrap();
                if served(src, to).await.is_ok() {
                    ok += 1;
                }
            }
            ok
        })
    };
    let parts = || walk(&out).into_iter().filter(|p| p.extension().is_some_and(|x| x == "parquet")).count();
    assert_eq!(converse(60, 0), 60);
    std::thread::sleep(Duration::from_millis(1500));
    let before = parts();
    assert!(before >= 3, "{before} files before the disk filled");
    // The disk fills up: every client is still answered in full, the sink stays up.
    let filler = disk.fill();
    let t = Instant::now();
    let during = converse(200, 60);
    let took = t.elapsed();
    std::thread::sleep(Duration::from_millis(1500));
    println!("disk full: {during} of 200 conversations served in {took:?}; {} files before, {} now", before, parts());
    assert_eq!(during, 200, "clients not served while the disk was full");
    assert!(sink.alive(), "the sink exited on a full disk");
    assert_eq!(parts(), before, "files published on a full disk?");
    // Space returns: the rows kept meanwhile are published at the next try (within a second
    // and a rotation), and new ones again as usual.
    std::fs::remove_file(&filler).unwrap();
    std::thread::sleep(Duration::from_millis(2200));
    let kept = parts();
    assert!(kept > before, "the rows kept while the disk was full were not published once space returned");
    assert_eq!(converse(40, 260), 40);
    std::thread::sleep(Duration::from_millis(2500));
    let after = parts();
    let summary = sink.stop();
    println!("{}", summary.trim());
    let rows = read_rows(&out, &["end"]).len() as u64;
    let lost = summary_number(&summary, "rows lost");
    let failures = summary_number(&summary, "failed writes");
    let bytes = dir_bytes(&out);
    println!("space back: {before} → {kept} → {after} files; {rows} rows on disk, {lost} rows lost (counted), {failures} failed writes; {bytes} bytes on disk (budget 256 KiB)");
    assert!(after > kept, "nothing published after space returned");
    assert!(failures > 0, "{summary}");
    assert_eq!(rows + lost, 300, "every connection either recorded or counted as lost: {summary}");
    assert!(rows >= 60 + 20 + 40, "the rows kept while the disk was full, and all after, were published: {rows}");
    assert!(bytes <= 256 * 1024 + 32 * 1024, "{bytes} bytes: over the budget");
}

