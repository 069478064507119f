//! The client's side of a connection that was established: read the greeting, EHLO, STARTTLS
//! if offered (or TLS first on implicit ports), EHLO again inside TLS, goodbye. It sends
//! nothing but EHLO, STARTTLS and QUIT — never MAIL. The certificate is recorded, not
//! trusted: a verifier that keeps the SHA-256 of what it is shown and accepts it, while still
//! checking the handshake signature (so a certificate replayed without its key fails).

use crate::sink::tls::{pin_of, provider};
use crate::sink::wire::{self, Greeting, Line};
use anyhow::{anyhow, bail, Context, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufRead, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// The name egress gives in EHLO (`.invalid`: it is no mail host).
pub const EHLO: &str = "EHLO port25-egress.invalid\r\n";

/// Lines of one reply read at most.
const MAX_REPLY_LINES: usize = 32;

/// What the conversation showed.
#[derive(Debug, Default, Clone)]
pub struct Talk {
    /// The first line the server sent (at most `wire::MAX_LINE` bytes).
    pub banner: Option<String>,
    pub greeting: Option<Greeting>,
    /// None on implicit-TLS ports and when EHLO got no answer.
    pub starttls_offered: Option<bool>,
    pub tls_done: Option<bool>,
    pub cert_sha256: Option<String>,
    pub detail: Option<String>,
    /// The banner's text was masked (SMTP inspection).
    pub banner_masked: bool,
    /// The `id=` the sink put in its EHLO reply: the sink, recognised even behind a masked
    /// banner.
    pub ehlo_id: Option<String>,
    /// The client address the sink greets in its EHLO reply.
    pub ehlo_you: Option<IpAddr>,
    /// STARTTLS rewritten on the way (`XXXXXXXA` in the EHLO reply, or our command reaching the
    /// sink as something else); None when not looked at.
    pub starttls_rewritten: Option<bool>,
    /// What the sink said it received instead of our STARTTLS.
    pub sink_heard: Option<String>,
}

/// Records the leaf certificate's SHA-256 and accepts it: we measure, we do not trust.
#[derive(Debug)]
pub struct RecordingVerifier {
    seen: Mutex<Option<String>>,
    algs: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl RecordingVerifier {
    pub fn new() -> Arc<Self> {
        Arc::new(RecordingVerifier { seen: Mutex::new(None), algs: provider().signature_verification_algorithms })
    }
    pub fn seen(&self) -> Option<String> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(&self, end_entity: &CertificateDer<'_>, _: &[CertificateDer<'_>], _: &ServerName<'_>, _: &[u8], _: UnixTime) -> Result<ServerCertVerified, rustls::Error> {
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(pin_of(end_entity));
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }
    fn verify_tls13_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// A TLS client config whose verifier records what it is shown.
pub fn client_config(v: Arc<RecordingVerifier>) -> Result<Arc<rustls::ClientConfig>> {
    let c = rustls::ClientConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?.dangerous().with_custom_certificate_verifier(v).with_no_client_auth();
    Ok(Arc::new(c))
}

/// One SMTP reply: its code and lines.
#[derive(Debug)]
pub struct Reply {
    pub code: Option<u16>,
    pub lines: Vec<String>,
}

impl Reply {
    /// An EHLO keyword (`250-STARTTLS` → `STARTTLS`) on any line.
    pub fn has_keyword(&self, k: &str) -> bool {
        self.lines.iter().any(|l| l.get(4..).and_then(|r| r.split_ascii_whitespace().next()).is_some_and(|w| w.eq_ignore_ascii_case(k)))
    }
}

/// Read one (possibly multi-line) reply, each line within `limit`, bounded in size.
pub async fn read_reply<R: AsyncBufRead + Unpin>(r: &mut R, limit: Duration) -> Result<Reply> {
    let mut lines = Vec::new();
    let mut buf = Vec::with_capacity(wire::MAX_LINE);
    loop {
        if lines.len() >= MAX_REPLY_LINES {
            bail!("reply longer than {MAX_REPLY_LINES} lines");
        }
        let got = timeout(limit, wire::read_line(r, &mut buf, wire::MAX_LINE)).await.map_err(|_| anyhow!("timed out after {} s", limit.as_secs_f64()))??;
        let line = String::from_utf8_lossy(&buf).trim_end().to_string();
        match got {
            Line::Done => {}
            Line::TooLong => bail!("line longer than {} bytes", wire::MAX_LINE),
            Line::Eof if line.is_empty() => bail!("closed by the server"),
            Line::Eof => bail!("closed by the server in mid-line: {line:?}"),
        }
        let more = line.as_bytes().get(3) == Some(&b'-');
        lines.push(line);
        if !more {
            let code = lines[0].get(..3).and_then(|c| c.parse().ok());
            return Ok(Reply { code, lines });
        }
    }
}

async fn send<W: AsyncWrite + Unpin>(w: &mut W, text: &str, limit: Duration) -> Result<()> {
    timeout(limit, async {
        w.write_all(text.as_bytes()).await?;
        w.flush().await
    })
    .await
    .map_err(|_| anyhow!("sending {:?}: timed out", text.trim_end()))?
    .with_context(|| format!("sending {:?}", text.trim_end()))
}

/// Talk to an established connection; every step's failure ends up in `detail`.
pub async fn talk(stream: TcpStream, sink: IpAddr, implicit_tls: bool, limit: Duration) -> Talk {
    let mut t = Talk::default();
    let r = if implicit_tls { implicit(stream, sink, limit, &mut t).await } else { plain(stream, sink, limit, &mut t).await };
    if let Err(e) = r {
        t.detail = Some(format!("{e:#}"));
    }
    t
}

async fn greet<R: AsyncBufRead + AsyncWrite + Unpin>(rd: &mut R, limit: Duration, t: &mut Talk) -> Result<bool> {
    let g = read_reply(rd, limit).await.context("banner")?;
    let first = g.lines[0].clone();
    t.greeting = Some(wire::parse_greeting(&first));
    t.banner_masked = wire::banner_masked(&first);
    t.banner = Some(first);
    if g.code.is_some_and(|c| (200..300).contains(&c)) {
        return Ok(true);
    }
    let _ = quit(rd, limit).await;
    Ok(false)
}

async fn plain(stream: TcpStream, sink: IpAddr, limit: Duration, t: &mut Talk) -> Result<()> {
    let mut rd = BufReader::with_capacity(1024, stream);
    if !greet(&mut rd, limit, t).await? {
        return Ok(());
    }
    send(rd.get_mut(), EHLO, limit).await?;
    let ehlo = read_reply(&mut rd, limit).await.context("EHLO")?;
    if let Some((id, you)) = ehlo.lines.first().and_then(|l| wire::ehlo_sink_id(l)) {
        (t.ehlo_id, t.ehlo_you) = (Some(id.to_string()), you);
    }
    let offered = ehlo.has_keyword("STARTTLS");
    t.starttls_offered = Some(offered);
    // Cisco ASA's inspection overwrites the keyword with as many X's (`XXXXXXXA`): lengths stay.
    t.starttls_rewritten = Some(ehlo.has_keyword("XXXXXXXA"));
    // Not offered: ask anyway. A box that only hid the keyword lets the command through (and
    // TLS works); one that rewrites commands makes the sink answer that it heard something else.
    send(rd.get_mut(), "STARTTLS\r\n", limit).await?;
    let r = read_reply(&mut rd, limit).await.context("STARTTLS")?;
    if r.code != Some(220) {
        if let Some(h) = wire::heard(&r.lines[0]) {
            t.starttls_rewritten = Some(t.starttls_rewritten == Some(true) || !h.eq_ignore_ascii_case("STARTTLS"));
            t.sink_heard = Some(h.to_string());
        }
        if !offered {
            return quit(&mut rd, limit).await;
        }
        t.tls_done = Some(false);
        bail!("STARTTLS answered {:?}", r.lines[0]);
    }
    let tls = handshake(rd.into_inner(), sink, limit, t).await?;
    let mut rd = BufReader::with_capacity(1024, tls);
    send(rd.get_mut(), EHLO, limit).await?;
    read_reply(&mut rd, limit).await.context("EHLO inside TLS")?;
    goodbye(&mut rd, limit).await
}

async fn implicit(stream: TcpStream, sink: IpAddr, limit: Duration, t: &mut Talk) -> Result<()> {
    let tls = handshake(stream, sink, limit, t).await?;
    let mut rd = BufReader::with_capacity(1024, tls);
    if !greet(&mut rd, limit, t).await? {
        return Ok(());
    }
    send(rd.get_mut(), EHLO, limit).await?;
    read_reply(&mut rd, limit).await.context("EHLO inside TLS")?;
    goodbye(&mut rd, limit).await
}

async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(s: S, sink: IpAddr, limit: Duration, t: &mut Talk) -> Result<tokio_rustls::client::TlsStream<S>> {
    let v = RecordingVerifier::new();
    let conn = tokio_rustls::TlsConnector::from(client_config(v.clone())?);
    let r = timeout(limit, conn.connect(ServerName::IpAddress(sink.into()), s)).await;
    t.cert_sha256 = v.seen();
    t.tls_done = Some(matches!(r, Ok(Ok(_))));
    match r {
        Ok(Ok(tls)) => Ok(tls),
        Ok(Err(e)) => Err(anyhow!("TLS: {e}")),
        Err(_) => Err(anyhow!("TLS: timed out after {} s", limit.as_secs_f64())),
    }
}

/// The sink says 221 by itself after EHLO inside TLS; another server may wait for QUIT.
async fn goodbye<R: AsyncBufRead + AsyncWrite + Unpin>(rd: &mut R, limit: Duration) -> Result<()> {
    match read_reply(rd, limit.min(Duration::from_secs(2))).await {
        Ok(r) if r.code == Some(221) => Ok(()),
        _ => quit(rd, limit).await,
    }
}

async fn quit<R: AsyncBufRead + AsyncWrite + Unpin>(rd: &mut R, limit: Duration) -> Result<()> {
    // The answer to QUIT teaches nothing; a server that is gone already is fine.
    if send(rd, "QUIT\r\n", limit).await.is_ok() {
        let _ = read_reply(rd, limit.min(Duration::from_secs(2))).await;
    }
    let _ = timeout(Duration::from_secs(1), rd.shutdown()).await;
    Ok(())
}
