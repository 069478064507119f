//! `crawler egress --upload TOKEN`: the run's results sent to the sink itself, over the TLS
//! session egress already opens to it (the certificate checked against the pins), so a
//! volunteer's VM needs one command and no bucket access. The sink checks the token and stores
//! the file under its own output (`sink::upload`). Tried on the sinks' ports in turn — implicit
//! TLS first, then STARTTLS on the submission and control ports — because some of them may be
//! blocked or intercepted from this very network (that is what egress measures): a port whose
//! certificate is not pinned is never used. A file that could not be sent stays in `--out`, and
//! the next run sends it.

use super::session::{client_config, read_reply, RecordingVerifier, EHLO};
use crate::sink::wire;
use anyhow::{anyhow, bail, Context, Result};
use rustls::pki_types::ServerName;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// Where to try, and how: the sinks, their ports, which of them speak TLS first.
pub struct Route<'a> {
    pub sinks: &'a [IpAddr],
    pub ports: &'a [u16],
    pub implicit_tls: &'a [u16],
    pub pins: &'a [String],
    pub limit: Duration,
}

/// Send `file` to one of the sinks; the path the sink stored it under. Implicit-TLS ports are
/// tried first, then the others with STARTTLS.
pub async fn send(file: &Path, vantage: &str, run_id: &str, token: &str, route: &Route<'_>) -> Result<String> {
    let (sinks, pins, limit) = (route.sinks, route.pins, route.limit);
    let mut ports: Vec<(u16, bool)> = route.ports.iter().map(|p| (*p, route.implicit_tls.contains(p))).collect();
    ports.sort_by_key(|(_, tls)| !tls);
    if pins.is_empty() {
        bail!("no certificate pin for the sink (give --sink-pin): results are never sent to an unpinned server");
    }
    let data = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let mut tried = Vec::new();
    for &sink in sinks {
        for &(port, implicit) in &ports {
            match timeout(limit * 4 + Duration::from_secs(data.len() as u64 / 100_000), one(sink, port, implicit, &data, vantage, run_id, token, pins, limit)).await {
                Ok(Ok(stored)) => return Ok(stored),
                Ok(Err(e)) if e.to_string().contains("refused by the sink") => return Err(e),
                Ok(Err(e)) => tried.push(format!("{}: {e:#}", SocketAddr::new(sink, port))),
                Err(_) => tried.push(format!("{}: timed out", SocketAddr::new(sink, port))),
            }
        }
    }
    Err(anyhow!("could not send {} to any sink ({})", file.display(), tried.join("; ")))
}

#[allow(clippy::too_many_arguments)]
async fn one(sink: IpAddr, port: u16, implicit: bool, data: &[u8], vantage: &str, run_id: &str, token: &str, pins: &[String], limit: Duration) -> Result<String> {
    let tcp = timeout(limit, TcpStream::connect(SocketAddr::new(sink, port))).await.map_err(|_| anyhow!("connect: timed out"))??;
    if implicit {
        let tls = pinned_tls(tcp, sink, pins, limit).await?;
        let mut rd = BufReader::new(tls);
        let g = read_reply(&mut rd, limit).await.context("greeting")?;
        if !wire::parse_greeting(&g.lines[0]).is_sink {
            bail!("not the sink's greeting");
        }
        return xupload(&mut rd, data, vantage, run_id, token, limit).await;
    }
    let mut rd = BufReader::new(tcp);
    let g = read_reply(&mut rd, limit).await.context("greeting")?;
    if !wire::parse_greeting(&g.lines[0]).is_sink {
        bail!("not the sink's greeting");
    }
    rd.get_mut().write_all(EHLO.as_bytes()).await?;
    read_reply(&mut rd, limit).await.context("EHLO")?;
    rd.get_mut().write_all(b"STARTTLS\r\n").await?;
    let r = read_reply(&mut rd, limit).await.context("STARTTLS")?;
    if r.code != Some(220) {
        bail!("STARTTLS answered {:?}", r.lines[0]);
    }
    let tls = pinned_tls(rd.into_inner(), sink, pins, limit).await?;
    let mut rd = BufReader::new(tls);
    xupload(&mut rd, data, vantage, run_id, token, limit).await
}

/// TLS with the sink, its certificate among the pins.
async fn pinned_tls<S: AsyncRead + AsyncWrite + Unpin>(s: S, sink: IpAddr, pins: &[String], limit: Duration) -> Result<tokio_rustls::client::TlsStream<S>> {
    let v = RecordingVerifier::new();
    let tls = timeout(limit, tokio_rustls::TlsConnector::from(client_config(v.clone())?).connect(ServerName::IpAddress(sink.into()), s)).await.map_err(|_| anyhow!("TLS: timed out"))??;
    match v.seen() {
        Some(c) if pins.contains(&c) => Ok(tls),
        c => bail!("the certificate ({}) is not the sink's pinned one: not sent through it", c.unwrap_or_default()),
    }
}

async fn xupload<S: AsyncRead + AsyncWrite + Unpin>(rd: &mut BufReader<S>, data: &[u8], vantage: &str, run_id: &str, token: &str, limit: Duration) -> Result<String> {
    rd.get_mut().write_all(format!("XUPLOAD {token} {vantage} {run_id} {}\r\n", data.len()).as_bytes()).await?;
    let r = read_reply(rd, limit).await.context("XUPLOAD")?;
    match r.code {
        Some(354) => {}
        Some(535 | 552 | 501) => bail!("refused by the sink: {}", r.lines[0]),
        _ => bail!("XUPLOAD answered {:?}", r.lines[0]),
    }
    rd.get_mut().write_all(data).await?;
    rd.get_mut().flush().await?;
    let r = read_reply(rd, limit * 4).await.context("after the file")?;
    match (r.code, r.lines[0].strip_prefix("250 2.0.0 stored ")) {
        (Some(250), Some(key)) => Ok(key.trim().to_string()),
        (Some(554), _) => bail!("refused by the sink: {}", r.lines[0]),
        _ => bail!("the sink answered {:?}", r.lines[0]),
    }
}
