//! One connection: greet first and say what was seen, answer EHLO like an MTA, complete TLS
//! (STARTTLS, or implicit on the 465-role ports), answer EHLO again inside TLS, say goodbye.
//! Mail is never accepted. Every path ends in one record, timeouts and limits included.

use super::limits::Slot;
use super::meter::{Meter, Metered};
use super::record::{ConnRecord, Msg};
use super::wire::{self, Line};
use datasets::egress::end;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::timeout;
use tokio_rustls::TlsAcceptor;

/// Commands answered on one connection before it is closed: an MTA conversation up to TLS
/// needs four (EHLO, STARTTLS, EHLO, QUIT); the rest is slack for odd clients.
pub const MAX_COMMANDS: u32 = 10;

/// Bytes of what the client said kept for the record.
pub const SENT_KEEP: usize = 512;

pub struct Ctx {
    pub name: String,
    pub pin: String,
    pub acceptor: TlsAcceptor,
    pub implicit_tls: Vec<u16>,
    pub idle: Duration,
    pub lifetime: Duration,
    pub max_in: u64,
    pub max_out: u64,
    pub tx: mpsc::Sender<Msg>,
    pub stop: watch::Receiver<bool>,
    pub counters: Arc<super::counters::Counters>,
    /// Egress uploads (`--upload-tokens`), if this sink takes them.
    pub uploads: Option<Arc<Uploads>>,
}

/// What the sink needs to take egress uploads.
pub struct Uploads {
    pub tokens: super::upload::Tokens,
    pub max_bytes: u64,
    /// Where they are published (the sink's `--out`, or its spool).
    pub out: std::path::PathBuf,
    /// The most the uploads waiting on this disk may hold (`--max-disk`).
    pub max_disk: u64,
}

struct State {
    client: SocketAddr,
    local: SocketAddr,
    nonce: String,
    commands: String,
    n: u32,
    sent: Vec<u8>,
    tls_done: bool,
    tls_version: Option<&'static str>,
    meter: Arc<Meter>,
}

impl State {
    fn keep(&mut self, line: &[u8]) {
        // An upload's token never reaches a record.
        if wire::verb(line).as_deref() == Some("XUPLOAD") {
            let r = super::upload::redact(line);
            let room = SENT_KEEP - self.sent.len();
            self.sent.extend_from_slice(&r[..r.len().min(room)]);
            return;
        }
        let room = SENT_KEEP - self.sent.len();
        self.sent.extend_from_slice(&line[..line.len().min(room)]);
    }
    fn note(&mut self, verb: Option<&str>) {
        self.n += 1;
        if !self.commands.is_empty() {
            self.commands.push(' ');
        }
        self.commands.push_str(verb.unwrap_or("?"));
    }
}

enum Step<S> {
    End(&'static str),
    StartTls(S),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Plain,
    ImplicitTls,
    AfterStartTls,
}

pub fn now_us() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

/// Serve one admitted connection and hand its record over; the slot is freed after that.
pub async fn handle(ctx: Arc<Ctx>, tcp: TcpStream, client: SocketAddr, local: SocketAddr, slot: Slot) {
    let accepted_us = now_us();
    let meter = Arc::new(Meter::default());
    let implicit = ctx.implicit_tls.contains(&local.port());
    let mut st = State { client, local, nonce: format!("{:016x}", rand::random::<u64>()), commands: String::new(), n: 0, sent: Vec::new(), tls_done: false, tls_version: None, meter: meter.clone() };
    let stream = Metered::new(tcp, meter.clone(), ctx.max_in, ctx.max_out);
    let mut stop = ctx.stop.clone();
    let end = tokio::select! {
        r = timeout(ctx.lifetime, converse(&ctx, stream, &mut st, &meter, implicit)) => r.unwrap_or(end::TIMEOUT),
        _ = super::stopped(&mut stop) => end::SHUTDOWN,
    };
    let rec = ConnRecord {
        accepted_us,
        ended_us: now_us(),
        client,
        local,
        nonce: st.nonce,
        implicit_tls: implicit,
        commands: st.commands,
        client_sent: st.sent,
        tls_done: st.tls_done,
        tls_version: st.tls_version,
        bytes_in: meter.bytes_in(),
        bytes_out: meter.bytes_out(),
        end,
    };
    // Never waits for the recorder: a slow or full disk must not hold slots (and so the sink).
    if ctx.tx.try_send(Msg::Conn(Box::new(rec))).is_err() {
        ctx.counters.records_dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    drop(slot);
}

async fn converse(ctx: &Ctx, stream: Metered<TcpStream>, st: &mut State, meter: &Meter, implicit: bool) -> &'static str {
    let outcome = if implicit {
        match handshake(ctx, stream, st, meter).await {
            Ok(tls) => dialogue(ctx, tls, st, Phase::ImplicitTls).await.map(|s| step_end(s)),
            Err(e) => return e,
        }
    } else {
        match dialogue(ctx, stream, st, Phase::Plain).await {
            Ok(Step::StartTls(s)) => match handshake(ctx, s, st, meter).await {
                Ok(tls) => dialogue(ctx, tls, st, Phase::AfterStartTls).await.map(|s| step_end(s)),
                Err(e) => return e,
            },
            other => other.map(|s| step_end(s)),
        }
    };
    outcome.unwrap_or_else(|e| classify(&e, meter))
}

// Inside TLS the dialogue never hands back a stream (STARTTLS is refused there).
fn step_end<S>(s: Step<S>) -> &'static str {
    match s {
        Step::End(e) => e,
        Step::StartTls(_) => end::ERROR,
    }
}

fn classify(e: &io::Error, meter: &Meter) -> &'static str {
    use io::ErrorKind::*;
    if meter.limit_hit() {
        return end::LIMIT;
    }
    match e.kind() {
        TimedOut => end::TIMEOUT,
        UnexpectedEof | ConnectionReset | BrokenPipe | ConnectionAborted => end::CLIENT_CLOSED,
        _ => end::ERROR,
    }
}

async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(ctx: &Ctx, s: S, st: &mut State, meter: &Meter) -> Result<tokio_rustls::server::TlsStream<S>, &'static str> {
    match timeout(ctx.idle, ctx.acceptor.accept(s)).await {
        Err(_) => Err(end::TIMEOUT),
        Ok(Err(e)) => Err(match classify(&e, meter) {
            end::ERROR => end::TLS_FAILED,
            other => other,
        }),
        Ok(Ok(tls)) => {
            st.tls_done = true;
            st.tls_version = tls.get_ref().1.protocol_version().map(|v| match v {
                rustls::ProtocolVersion::TLSv1_3 => "TLSv1_3",
                rustls::ProtocolVersion::TLSv1_2 => "TLSv1_2",
                _ => "other",
            });
            Ok(tls)
        }
    }
}

async fn say<W: AsyncWrite + Unpin>(ctx: &Ctx, w: &mut W, text: &str) -> io::Result<()> {
    let write = async {
        w.write_all(text.as_bytes()).await?;
        w.flush().await
    };
    timeout(ctx.idle, write).await.map_err(|_| io::Error::from(io::ErrorKind::TimedOut))?
}

/// The last line, then close (TLS close_notify, FIN); a client that is gone changes nothing.
async fn bye<S: AsyncWrite + Unpin>(ctx: &Ctx, mut s: S, text: &str, how: &'static str) -> io::Result<Step<S>> {
    say(ctx, &mut s, text).await?;
    let _ = timeout(Duration::from_secs(1).min(ctx.idle), s.shutdown()).await;
    Ok(Step::End(how))
}

fn ehlo_reply(ctx: &Ctx, st: &State, extended: bool, offer_starttls: bool) -> String {
    if !extended {
        return format!("250 {} you={}\r\n", ctx.name, st.client);
    }
    let mut r = wire::ehlo_first_line(&ctx.name, st.client.ip().to_canonical(), &st.nonce);
    r.push_str("250-PIPELINING\r\n250-SIZE 10240000\r\n250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n");
    if offer_starttls {
        r.push_str("250-STARTTLS\r\n");
    }
    r.push_str("250 SMTPUTF8\r\n");
    r
}

async fn dialogue<S: AsyncRead + AsyncWrite + Unpin>(ctx: &Ctx, s: S, st: &mut State, phase: Phase) -> io::Result<Step<S>> {
    let mut rd = BufReader::with_capacity(1024, s);
    if phase != Phase::AfterStartTls {
        let g = wire::greeting(&ctx.name, st.client, st.local.port(), &st.nonce, &ctx.pin);
        say(ctx, rd.get_mut(), &g).await?;
    }
    let in_tls = phase != Phase::Plain;
    let goodbye = format!("221 2.0.0 {} closing: this server accepts no mail\r\n", ctx.name);
    let mut line = Vec::with_capacity(wire::MAX_LINE);
    loop {
        let got = timeout(ctx.idle, wire::read_line(&mut rd, &mut line, wire::MAX_LINE)).await.map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
        st.keep(&line);
        match got {
            Line::Eof => return Ok(Step::End(end::CLIENT_CLOSED)),
            Line::TooLong => return bye(ctx, rd.into_inner(), "500 5.5.0 line too long\r\n", end::LIMIT).await,
            Line::Done => {}
        }
        let verb = wire::verb(&line);
        st.note(verb.as_deref());
        if st.n > MAX_COMMANDS {
            return bye(ctx, rd.into_inner(), "421 4.7.0 too many commands, closing\r\n", end::LIMIT).await;
        }
        match verb.as_deref() {
            Some(v @ ("EHLO" | "HELO")) => {
                let mut r = ehlo_reply(ctx, st, v == "EHLO", phase == Phase::Plain);
                if !in_tls {
                    say(ctx, rd.get_mut(), &r).await?;
                    continue;
                }
                // TLS is up and the client has seen the capabilities again: all we measure.
                r.push_str(&goodbye);
                return bye(ctx, rd.into_inner(), &r, end::GOODBYE).await;
            }
            // Whatever the client pipelined after STARTTLS is dropped with the buffer, as
            // RFC 3207 requires (no plaintext injected into the TLS session).
            Some("STARTTLS") if !in_tls => {
                say(ctx, rd.get_mut(), "220 2.0.0 ready to start TLS\r\n").await?;
                return Ok(Step::StartTls(rd.into_inner()));
            }
            Some("STARTTLS") => say(ctx, rd.get_mut(), "503 5.5.1 TLS already active\r\n").await?,
            Some("QUIT") => return bye(ctx, rd.into_inner(), &goodbye, end::GOODBYE).await,
            Some("MAIL" | "RCPT" | "DATA" | "BDAT") => return bye(ctx, rd.into_inner(), "550 5.7.1 this server accepts no mail (a port25 measurement sink)\r\n", end::REFUSED_MAIL).await,
            Some("NOOP" | "RSET") => say(ctx, rd.get_mut(), "250 2.0.0 OK\r\n").await?,
            Some("XUPLOAD") if ctx.uploads.is_some() => {
                if !in_tls {
                    say(ctx, rd.get_mut(), "530 5.7.0 must issue STARTTLS first\r\n").await?;
                    continue;
                }
                let (reply, how) = upload(ctx, &mut rd, st, &line).await?;
                return bye(ctx, rd.into_inner(), &reply, how).await;
            }
            other => say(ctx, rd.get_mut(), &wire::unknown_command(other)).await?,
        }
    }
}

/// One upload: token and size checked before a byte of it is read, then exactly its bytes,
/// checked and published off the async threads. Returns the last reply and how it ended.
async fn upload<S: AsyncRead + AsyncWrite + Unpin>(ctx: &Ctx, rd: &mut BufReader<S>, st: &mut State, line: &[u8]) -> io::Result<(String, &'static str)> {
    use tokio::io::AsyncReadExt;
    let up = ctx.uploads.as_ref().expect("checked by the caller");
    let text = String::from_utf8_lossy(line).into_owned();
    let r = match super::upload::parse(&text) {
        Ok(r) => r,
        Err(reply) => return Ok((reply.to_string(), end::UPLOAD_REFUSED)),
    };
    if !up.tokens.accepts(r.token.as_bytes()) {
        return Ok(("535 5.7.8 upload refused: not a token of this sink\r\n".into(), end::UPLOAD_REFUSED));
    }
    if r.bytes == 0 || r.bytes > up.max_bytes {
        return Ok((format!("552 5.3.4 upload size {}: 1 to {} bytes\r\n", r.bytes, up.max_bytes), end::UPLOAD_REFUSED));
    }
    st.meter.allow_in(r.bytes);
    say(ctx, rd.get_mut(), &format!("354 send {} bytes\r\n", r.bytes)).await?;
    let mut data = vec![0u8; r.bytes as usize];
    // The whole file within the connection's lifetime (checked by the caller's timeout), and no
    // pause longer than the idle timeout.
    let mut got = 0;
    while got < data.len() {
        let n = timeout(ctx.idle, rd.read(&mut data[got..])).await.map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
        if n == 0 {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
        }
        got += n;
    }
    let (out, vantage, run, max_disk) = (up.out.clone(), r.vantage.to_string(), r.run.to_string(), up.max_disk);
    match tokio::task::spawn_blocking(move || super::upload::store(&out, &vantage, &run, data, max_disk)).await {
        Ok(Ok(rel)) => Ok((format!("250 2.0.0 stored {rel}\r\n"), end::UPLOADED)),
        Ok(Err(e)) => Ok((format!("554 5.6.0 upload refused: {}\r\n", format!("{e:#}").replace(['\r', '\n'], " ")), end::UPLOAD_REFUSED)),
        Err(_) => Ok(("451 4.3.0 upload failed, try later\r\n".into(), end::ERROR)),
    }
}
