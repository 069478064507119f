//! `lab proxy`: the middleboxes a border puts in its customers' outbound mail connections,
//! reached through an nftables `redirect` in the border's nat prerouting chain. Each mode
//! listens on its own port (`addr::PROXY_*_PORT`), both families:
//!
//! - `intercept`: a transparent SMTP proxy that answers in the destination's place, with its
//!   own banner and no STARTTLS (what ISPs that force mail through their relay do);
//! - `strip`: ESMTP inspection that relays to the original destination but masks STARTTLS in
//!   the EHLO reply as `XXXXXXXA`, as Cisco ASA does by default;
//! - `tls`: TLS interception on an implicit-TLS port, with its own certificate towards the
//!   customer and its own TLS session to the destination.
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
    Tls,
}

impl Mode {
    pub fn of(p: OutPolicy) -> Option<Mode> {
        match p {
            OutPolicy::Intercept => Some(Mode::Intercept),
            OutPolicy::Strip => Some(Mode::Strip),
            OutPolicy::TlsIntercept => Some(Mode::Tls),
            _ => None,
        }
    }
    pub fn port(self) -> u16 {
        match self {
            Mode::Intercept => addr::PROXY_INTERCEPT_PORT,
            Mode::Strip => addr::PROXY_STRIP_PORT,
            Mode::Tls => addr::PROXY_TLS_PORT,
        }
    }
    pub fn parse(s: &str) -> Result<Mode> {
        Ok(match s {
            "intercept" => Mode::Intercept,
            "strip" => Mode::Strip,
            "tls" => Mode::Tls,
            _ => bail!("unknown proxy mode `{s}` (intercept, strip, tls)"),
        })
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Intercept => "intercept",
            Mode::Strip => "strip",
            Mode::Tls => "tls",
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
}

/// Listen on every mode's port in both families, report readiness through `ready` (the pin of
/// the interception certificate), serve until killed.
pub fn serve(modes: &[Mode], name: &str, ready: &Path) -> Result<()> {
    let cert = crawler::sink::tls::self_signed(name).context("the interception certificate")?;
    let ctx = Arc::new(Ctx { name: name.to_string(), tls: tokio_rustls::TlsAcceptor::from(cert.config.clone()) });
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
                Mode::Strip => timeout(LIFETIME, strip(c)).await,
                Mode::Tls => timeout(LIFETIME, tls(c, &ctx.tls)).await,
            };
            if let Ok(Err(e)) = r {
                eprintln!("proxy {}: {e:#}", mode.as_str());
            }
        });
    }
}

/// Answer as the provider's own relay would: its banner, EHLO without STARTTLS, never a
/// mail transaction (the lab relays nothing anywhere).
async fn intercept(c: TcpStream, name: &str) -> Result<()> {
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

/// Relay to the original destination, masking STARTTLS in whatever the server says.
async fn strip(c: TcpStream) -> Result<()> {
    let dst = original_dst(&c)?;
    let up = timeout(IDLE, TcpStream::connect(dst)).await?.with_context(|| format!("connecting to {dst}"))?;
    let _ = up.set_nodelay(true);
    let (mut cr, mut cw) = c.into_split();
    let (ur, mut uw) = up.into_split();
    let client_to_server = tokio::spawn(async move { tokio::io::copy(&mut cr, &mut uw).await });
    let mut ur = BufReader::new(ur);
    let mut line = String::new();
    while timeout(IDLE, ur.read_line(&mut line)).await?? > 0 {
        let masked = line.replace("STARTTLS", "XXXXXXXA");
        cw.write_all(masked.as_bytes()).await?;
        line.clear();
    }
    let _ = cw.shutdown().await;
    client_to_server.abort();
    Ok(())
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
