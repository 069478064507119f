//! What the sink says and how both ends read SMTP lines. The greeting's format and its parser
//! live together here, so `crawler egress` reads exactly what `crawler sink` writes.

use std::net::SocketAddr;
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// The word in the greeting that says "this is a port25 sink" (a proxy's own banner lacks it).
pub const SINK_TAG: &str = "port25-sink";

/// The longest line either end reads (RFC 5321's command line limit is 512 with CRLF).
pub const MAX_LINE: usize = 512;

/// The sink's first line: who it is and what it saw, so the client can tell a proxy (another
/// banner, another client address, another port) from the sink itself. `pin=` carries the
/// SHA-256 of the sink's certificate, so a client without `--sink-pin` can compare the
/// certificate a mail port shows with the one announced on a control port.
pub fn greeting(name: &str, client: SocketAddr, local_port: u16, nonce: &str, pin: &str) -> String {
    format!("220 {name} ESMTP {SINK_TAG} you={client} port={local_port} id={nonce} pin={pin}\r\n")
}

/// The first line of the sink's EHLO reply: who it is again, with the connection's `id=`, so a
/// client behind a middlebox that masks the banner (Cisco ASA's SMTP inspection replaces its
/// text with `*`) still recognises the sink and its connection.
pub fn ehlo_first_line(name: &str, client_ip: std::net::IpAddr, nonce: &str) -> String {
    format!("250-{name} greets {client_ip} {SINK_TAG} id={nonce}\r\n")
}

/// The sink's answer to a command it does not know: it says what it received, so a client can
/// tell when its command was rewritten on the way (ASA turns `STARTTLS` into `XXXXXXXX`).
/// Only a plausible verb is echoed (letters, at most 10), never arbitrary bytes.
pub fn unknown_command(verb: Option<&str>) -> String {
    match verb {
        Some(v) => format!("502 5.5.2 command not recognized: {v}\r\n"),
        None => "502 5.5.2 command not recognized\r\n".to_string(),
    }
}

/// The verb a sink's `unknown_command` reply says it received.
pub fn heard(reply_line: &str) -> Option<&str> {
    let rest = reply_line.strip_prefix("502 5.5.2 command not recognized: ")?;
    let v = rest.trim_end();
    (!v.is_empty() && v.len() <= 10 && v.bytes().all(|b| b.is_ascii_alphabetic())).then_some(v)
}

/// The sink's `id=` and the client address it greets, in a line of its EHLO reply
/// (`ehlo_first_line`), if the line is one.
pub fn ehlo_sink_id(line: &str) -> Option<(&str, Option<std::net::IpAddr>)> {
    let mut words = line.get(4..)?.split_ascii_whitespace();
    let tagged = words.clone().any(|w| w == SINK_TAG);
    let you = words.clone().skip_while(|w| *w != "greets").nth(1).and_then(|w| w.parse().ok());
    let id = words.find_map(|w| w.strip_prefix("id=")).filter(|v| !v.is_empty())?;
    (tagged && line.starts_with("250")).then_some((id, you))
}

/// A banner whose text was masked by SMTP inspection: the code, then nothing but `*` and the
/// characters the mask keeps (Cisco PIX MailGuard / ASA `mask-banner` keep `2` and `0`; lengths
/// never change), at least 8 of them masked.
pub fn banner_masked(line: &str) -> bool {
    let line = line.trim_end();
    let Some(text) = line.strip_prefix("220").map(|t| t.trim_start_matches([' ', '-'])) else { return false };
    text.bytes().filter(|b| *b == b'*').count() >= 8 && text.bytes().all(|b| matches!(b, b'*' | b'2' | b'0' | b' '))
}

/// What a client read in a first line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Greeting {
    /// The reply code (220 for a greeting, 421 for "busy").
    pub code: Option<u16>,
    /// A 220 line carrying the sink tag and an `id=`.
    pub is_sink: bool,
    /// A sink refusing for capacity (421 with the tag): a busy sink, not a proxy.
    pub sink_busy: bool,
    pub you: Option<SocketAddr>,
    pub port: Option<u16>,
    pub id: Option<String>,
    pub pin: Option<String>,
}

pub fn parse_greeting(line: &str) -> Greeting {
    let line = line.trim_end();
    let code = line.get(..3).and_then(|c| c.parse::<u16>().ok());
    let mut g = Greeting { code, ..Greeting::default() };
    let mut tagged = false;
    for w in line.split_ascii_whitespace().skip(1) {
        match w.split_once('=') {
            Some(("you", v)) => g.you = v.parse().ok(),
            Some(("port", v)) => g.port = v.parse().ok(),
            Some(("id", v)) if !v.is_empty() => g.id = Some(v.to_string()),
            Some(("pin", v)) if v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()) => g.pin = Some(v.to_ascii_lowercase()),
            _ => tagged |= w == SINK_TAG,
        }
    }
    g.is_sink = tagged && code == Some(220) && line.as_bytes().get(3) == Some(&b' ') && g.id.is_some();
    g.sink_busy = tagged && code == Some(421);
    g
}

/// How a bounded line read ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A line ending in LF is in the buffer.
    Done,
    /// `max` bytes without an LF: the rest of the line is left unread.
    TooLong,
    /// The peer closed (a partial line may be in the buffer).
    Eof,
}

/// Read one line into `buf` (cleared first), never holding more than `max` bytes of it.
pub async fn read_line<R: AsyncBufRead + Unpin>(r: &mut R, buf: &mut Vec<u8>, max: usize) -> std::io::Result<Line> {
    buf.clear();
    loop {
        let avail = r.fill_buf().await?;
        if avail.is_empty() {
            return Ok(Line::Eof);
        }
        let room = max - buf.len();
        let window = &avail[..avail.len().min(room)];
        if let Some(i) = window.iter().position(|&b| b == b'\n') {
            buf.extend_from_slice(&window[..=i]);
            r.consume(i + 1);
            return Ok(Line::Done);
        }
        let n = window.len();
        buf.extend_from_slice(window);
        r.consume(n);
        if buf.len() >= max {
            return Ok(Line::TooLong);
        }
    }
}

/// The verb of a command line, upper-cased, only if it is a plausible SMTP verb (letters,
/// at most 10 of them); anything else is `None`.
pub fn verb(line: &[u8]) -> Option<String> {
    let word = line.split(|b| b.is_ascii_whitespace()).next()?;
    if word.is_empty() || word.len() > 10 || !word.iter().all(|b| b.is_ascii_alphabetic()) {
        return None;
    }
    Some(String::from_utf8_lossy(word).to_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greeting_round_trips_for_both_families() {
        let pin = "ab".repeat(32);
        for client in ["192.0.2.7:40000", "[2001:db8::7]:40001"] {
            let c: SocketAddr = client.parse().unwrap();
            let g = parse_greeting(&greeting("sink.example", c, 587, "00ff", &pin));
            assert!(g.is_sink && !g.sink_busy);
            assert_eq!((g.code, g.you, g.port, g.id.as_deref(), g.pin.as_deref()), (Some(220), Some(c), Some(587), Some("00ff"), Some(pin.as_str())));
        }
    }

    #[test]
    fn a_proxy_banner_is_not_the_sink() {
        for l in ["220 mx.isp.example ESMTP Postfix", "220-port25-sink id=1 continued", "250 port25-sink id=1", "220 x ESMTP port25-sink you=1.2.3.4:5", ""] {
            assert!(!parse_greeting(l).is_sink, "{l}");
        }
        assert!(parse_greeting("421 4.7.0 s port25-sink busy").sink_busy);
    }

    #[test]
    fn the_sink_is_known_behind_a_masked_banner_and_says_what_it_heard() {
        let ip: std::net::IpAddr = "192.0.2.7".parse().unwrap();
        let l = ehlo_first_line("sink.example", ip, "00ff");
        assert_eq!(ehlo_sink_id(l.trim_end()), Some(("00ff", Some(ip))));
        assert_eq!(ehlo_sink_id("250-mx.isp.example greets 192.0.2.7 id=1"), None, "no sink tag");
        let g = greeting("sink.example", "192.0.2.7:4000".parse().unwrap(), 25, "00ff", &"ab".repeat(32));
        // Cisco's mask: every character of the text but `2` and `0` becomes `*`.
        let masked: String = g.chars().enumerate().map(|(i, c)| if i < 4 || matches!(c, '2' | '0' | '\r' | '\n') { c } else { '*' }).collect();
        assert!(banner_masked(&masked) && !banner_masked(&g) && !banner_masked("220 mx ESMTP"));
        assert!(!parse_greeting(&masked).is_sink);
        assert_eq!(heard(unknown_command(Some("XXXXXXXX")).trim_end()), Some("XXXXXXXX"));
        assert_eq!(heard("502 5.5.2 command not recognized"), None);
    }

    #[tokio::test]
    async fn lines_are_bounded() {
        let data = b"EHLO a\r\nxxxxxxxxxxxxxxxxxxxx\nlast".to_vec();
        let mut r = tokio::io::BufReader::with_capacity(4, &data[..]);
        let mut buf = Vec::new();
        assert_eq!(read_line(&mut r, &mut buf, 16).await.unwrap(), Line::Done);
        assert_eq!(buf, b"EHLO a\r\n");
        assert_eq!(read_line(&mut r, &mut buf, 16).await.unwrap(), Line::TooLong);
        assert_eq!(buf.len(), 16);
        assert_eq!(read_line(&mut r, &mut buf, 16).await.unwrap(), Line::Done);
        assert_eq!(buf, b"xxxx\n");
        assert_eq!(read_line(&mut r, &mut buf, 16).await.unwrap(), Line::Eof);
        assert_eq!(buf, b"last");
        assert_eq!(verb(b"ehlo x\r\n").as_deref(), Some("EHLO"));
        assert_eq!(verb(b"\x16\x03\x01junk"), None);
    }
}
