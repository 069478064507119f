//! `lab proxy`: the middleboxes a border puts in its customers' outbound mail connections,
//! reached through an nftables `redirect` in the border's nat prerouting chain. Each mode
//! listens on its own port (`addr::PROXY_*_PORT`), both families:
//!
//! - `intercept`: a transparent SMTP proxy that answers in the destination's place, with its
//!   own banner and no STARTTLS (what ISPs that force mail through their relay do);
//! - `strip`: Cisco ASA's ESMTP inspection (`inspect esmtp`, on by default, with `mask-banner`):
//!   relays to the original destination, masks the 220 banner's text (every character but `2`
//!   and `0` becomes `*`), rewrites `STARTTLS` in the EHLO reply to `XXXXXXXA` and the client's
//!   `STARTTLS` command to `XXXXXXXX` (the server then answers that it does not know it);
//!   packet lengths never change;
//! - `strip-sometimes`: a load-balanced pool of relays where one member inspects: every second
//!   connection gets `strip`'s treatment, the others are relayed untouched;
//! - `tls`: TLS interception on an implicit-TLS port, with its own certificate towards the
//!   customer and its own TLS session to the destination;
//! - `tls-terminate`: TLS with its own certificate, then its own SMTP server inside (an ISP's
//!   MTA behind TLS): nothing reaches the destination.
//!
//! The original destination comes from conntrack (SO_ORIGINAL_DST); the proxy's upstream
//! connection leaves from the border's own address, as a real proxy's does.

use crate::topology::{addr, OutPolicy};
use anyhow::{bail, Context, Result};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

/// How long a proxied conversation may stay idle, and live in all.
const IDLE: Duration = Duration::from_secs(10);
const LIFETIME: Duration = Duration::from_secs(30);

/// Linux's SO_ORIGINAL_DST (IPv4) and IP6T_SO_ORIGINAL_DST (IPv6) share this number.
const SO_ORIGINAL_DST: libc::c_int = 80;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Intercept,
    Strip,
    StripSometimes,
    Tls,
    TlsTerminate,
}

impl Mode {
    pub fn of(p: OutPolicy) -> Option<Mode> {
        match p {
            OutPolicy::Intercept => Some(Mode::Intercept),
            OutPolicy::Strip => Some(Mode::Strip),
            OutPolicy::StripSometimes => Some(Mode::StripSometimes),
            OutPolicy::TlsIntercept => Some(Mode::Tls),
            OutPolicy::TlsTerminate => Some(Mode::TlsTerminate),
            _ => None,
        }
    }
    pub fn port(self) -> u16 {
        match self {
            Mode::Intercept => addr::PROXY_INTERCEPT_PORT,
            Mode::Strip => addr::PROXY_STRIP_PORT,
            Mode::StripSometimes => addr::PROXY_STRIP_SOMETIMES_PORT,
            Mode::Tls => addr::PROXY_TLS_PORT,
            Mode::TlsTerminate => addr::PROXY_TLS_TERMINATE_PORT,
        }
    }
    pub fn parse(s: &str) -> Result<Mode> {
        Ok(match s {
            "intercept" => Mode::Intercept,
            "strip" => Mode::Strip,
            "strip-sometimes" => Mode::StripSometimes,
            "tls" => Mode::Tls,
            "tls-terminate" => Mode::TlsTerminate,
            _ => bail!("unknown proxy mode `{s}` (intercept, strip, strip-sometimes, tls, tls-terminate)"),
        })
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Intercept => "intercept",
            Mode::Strip => "strip",
            Mode::StripSometimes => "strip-sometimes",
            Mode::Tls => "tls",
            Mode::TlsTerminate => "tls-terminate",
        }
    }
}

/// The destination a redirected connection was headed for, from conntrack.
pub fn original_dst(s: &TcpStream) -> std::io::Result<SocketAddr> {
    let fd = s.as_raw_fd();
    let v6 = s.local_addr()?.is_ipv6();
    // SAFETY: getsockopt writes at most `len` bytes into a zeroed sockaddr of that size.
    unsafe {
        if v6 {
            let mut sa: libc::sockaddr_in6 = std::mem::zeroed();
            let mut len = std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
            if libc::getsockopt(fd, libc::SOL_IPV6, SO_ORIGINAL_DST, (&mut sa as *mut libc::sockaddr_in6).cast(), &mut len) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(sa.sin6_addr.s6_addr)), u16::from_be(sa.sin6_port)))
        } else {
            let mut sa: libc::sockaddr_in = std::mem::zeroed();
            let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            if libc::getsockopt(fd, libc::SOL_IP, SO_ORIGINAL_DST, (&mut sa as *mut libc::sockaddr_in).cast(), &mut len) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(u32::from_be(sa.sin_addr.s_addr))), u16::from_be(sa.sin_port)))
        }
    }
}

struct Ctx {
    name: String,
    tls: tokio_rustls::TlsAcceptor,
    /// Connections the `strip-sometimes` pool has taken per (client address, destination):
    /// round-robin over two members, the second of which inspects.
    pool: std::sync::Mutex<std::collections::HashMap<(IpAddr, SocketAddr), u64>>,
}

/// Listen on every mode's port in both families, report readiness through `ready` (the pin of
/// the interception certificate), serve until killed.
pub fn serve(modes: &[Mode], name: &str, ready: &Path) -> Result<()> {
    let cert = crawler::sink::tls::self_signed(name).context("the interception certificate")?;
    let ctx = Arc::new(Ctx { name: name.to_string(), tls: tokio_rustls::TlsAcceptor::from(cert.config.clone()), pool: Default::default() });
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let mut listeners = Vec::new();
        for m in modes {
            for ip in [IpAddr::V4(Ipv4Addr::UNSPECIFIED), IpAddr::V6(Ipv6Addr::UNSPECIFIED)] {
                let addr = SocketAddr::new(ip, m.port());
                let std = crate::serve::listen_all(&[addr])?.remove(0);
                std.set_nonblocking(true)?;
                listeners.push((*m, TcpListener::from_std(std.into())?));
            }
        }
        std::fs::write(ready, format!("{}\n", cert.pin))?;
        let mut tasks = tokio::task::JoinSet::new();
        for (m, l) in listeners {
            tasks.spawn(accept_loop(m, l, ctx.clone()));
        }
        while tasks.join_next().await.is_some() {}
        anyhow::Ok(())
    })
}

async fn accept_loop(mode: Mode, l: TcpListener, ctx: Arc<Ctx>) {
    loop {
        let Ok((c, _)) = l.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let _ = c.set_nodelay(true);
            let r = match mode {
                Mode::Intercept => timeout(LIFETIME, intercept(c, &ctx.name)).await,
                Mode::Strip => timeout(LIFETIME, strip(c, true)).await,
                Mode::StripSometimes => {
                    let key = (c.peer_addr().map(|a| a.ip()).unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)), original_dst(&c).unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0))));
                    let n = {
                        let mut pool = ctx.pool.lock().unwrap_or_else(|p| p.into_inner());
                        let n = pool.entry(key).or_default();
                        *n += 1;
                        *n
                    };
                    timeout(LIFETIME, strip(c, n % 2 == 0)).await
                }
                Mode::Tls => timeout(LIFETIME, tls(c, &ctx.tls)).await,
                Mode::TlsTerminate => timeout(LIFETIME, terminate(c, &ctx.tls, &ctx.name)).await,
            };
            if let Ok(Err(e)) = r {
                eprintln!("proxy {}: {e:#}", mode.as_str());
            }
        });
    }
}

/// Answer as the provider's own relay would: its banner, EHLO without STARTTLS, never a
/// mail transaction (the lab relays nothing anywhere).
async fn intercept<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(c: S, name: &str) -> Result<()> {
    let mut rd = BufReader::new(c);
    rd.get_mut().write_all(format!("220 {name} ESMTP lab-smtp-proxy\r\n").as_bytes()).await?;
    let mut line = String::new();
    for _ in 0..10 {
        line.clear();
        if timeout(IDLE, rd.read_line(&mut line)).await?? == 0 {
            return Ok(());
        }
        let verb = line.split_ascii_whitespace().next().unwrap_or("").to_ascii_uppercase();
        let reply = match verb.as_str() {
            "EHLO" | "HELO" => format!("250-{name}\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250 8BITMIME\r\n"),
            "QUIT" => {
                rd.get_mut().write_all(b"221 2.0.0 bye\r\n").await?;
                return Ok(());
            }
            "MAIL" | "RCPT" | "DATA" => "554 5.7.1 lab proxy: no mail here\r\n".into(),
            _ => "502 5.5.2 command not recognized\r\n".into(),
        };
        rd.get_mut().write_all(reply.as_bytes()).await?;
    }
    Ok(())
}

/// Cisco ASA's mask of a banner: the code stays, every other character but `2` and `0` (and the
/// line end) becomes `*` — the length never changes.
pub fn mask_banner(line: &str) -> String {
    line.char_indices().map(|(i, c)| if i < 4 || matches!(c, '2' | '0' | '\r' | '\n') { c } else { '*' }).collect()
}

/// Relay to the original destination; with `inspect`, as ASA's ESMTP inspection does: the
/// banner masked, STARTTLS in the server's EHLO reply rewritten to `XXXXXXXA`, the client's
/// STARTTLS command to `XXXXXXXX`. Without it, a plain relay (a pool member that does not
/// inspect).
async fn strip(mut c: TcpStream, inspect: bool) -> Result<()> {
    let dst = original_dst(&c)?;
    let mut up = timeout(IDLE, TcpStream::connect(dst)).await?.with_context(|| format!("connecting to {dst}"))?;
    let _ = up.set_nodelay(true);
    if !inspect {
        // Bytes as they are (TLS after STARTTLS included).
        let _ = tokio::io::copy_bidirectional(&mut c, &mut up).await;
        return Ok(());
    }
    let (cr, mut cw) = c.into_split();
    let (ur, mut uw) = up.into_split();
    let client_to_server = tokio::spawn(async move {
        let mut cr = BufReader::new(cr);
        let mut line = String::new();
        while timeout(IDLE, cr.read_line(&mut line)).await.ok().and_then(|r| r.ok()).unwrap_or(0) > 0 {
            let out = if line.trim_end().eq_ignore_ascii_case("STARTTLS") { "XXXXXXXX".to_string() + &line[8..] } else { line.clone() };
            if uw.write_all(out.as_bytes()).await.is_err() {
                break;
            }
            line.clear();
        }
        let _ = uw.shutdown().await;
    });
    let mut ur = BufReader::new(ur);
    let mut line = String::new();
    let mut first = true;
    while timeout(IDLE, ur.read_line(&mut line)).await?? > 0 {
        let out = if first { mask_banner(&line) } else { line.replace("STARTTLS", "XXXXXXXA") };
        first = false;
        cw.write_all(out.as_bytes()).await?;
        line.clear();
    }
    let _ = cw.shutdown().await;
    client_to_server.abort();
    Ok(())
}

/// TLS with our own certificate, then our own SMTP server inside: the customer's implicit-TLS
/// connection ends here.
async fn terminate(c: TcpStream, acceptor: &tokio_rustls::TlsAcceptor, name: &str) -> Result<()> {
    let down = timeout(IDLE, acceptor.accept(c)).await?.context("TLS with the customer")?;
    intercept(down, name).await
}

/// TLS with our certificate towards the customer, TLS to the original destination, and the
/// plaintext relayed between the two.
async fn tls(c: TcpStream, acceptor: &tokio_rustls::TlsAcceptor) -> Result<()> {
    let dst = original_dst(&c)?;
    let mut down = timeout(IDLE, acceptor.accept(c)).await?.context("TLS with the customer")?;
    let up = timeout(IDLE, TcpStream::connect(dst)).await?.with_context(|| format!("connecting to {dst}"))?;
    let cfg = crawler::egress::session::client_config(crawler::egress::session::RecordingVerifier::new())?;
    let name = rustls::pki_types::ServerName::IpAddress(dst.ip().into());
    let mut up = timeout(IDLE, tokio_rustls::TlsConnector::from(cfg).connect(name, up)).await?.context("TLS with the destination")?;
    let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
    Ok(())
}
