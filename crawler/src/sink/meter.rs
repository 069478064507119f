//! A stream that counts the bytes each way and refuses to go past a bound: whatever a client
//! sends, the sink reads at most `max_in` and writes at most `max_out` bytes on a connection,
//! TLS records included (the wrapper sits under TLS).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

#[derive(Debug, Default)]
pub struct Meter {
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    limit_hit: AtomicBool,
    /// Input allowed beyond the bound: an accepted upload's size.
    extra_in: AtomicU64,
}

impl Meter {
    pub fn bytes_in(&self) -> u64 {
        self.bytes_in.load(Ordering::Relaxed)
    }
    pub fn bytes_out(&self) -> u64 {
        self.bytes_out.load(Ordering::Relaxed)
    }
    /// Let `n` more bytes in (an upload the sink accepted, token and size checked).
    pub fn allow_in(&self, n: u64) {
        self.extra_in.fetch_add(n, Ordering::Relaxed);
    }
    /// A read or write was refused because its bound was reached.
    pub fn limit_hit(&self) -> bool {
        self.limit_hit.load(Ordering::Relaxed)
    }
    fn over(&self, what: &str) -> io::Error {
        self.limit_hit.store(true, Ordering::Relaxed);
        io::Error::other(format!("{what} limit reached"))
    }
}

pub struct Metered<S> {
    inner: S,
    meter: Arc<Meter>,
    max_in: u64,
    max_out: u64,
}

impl<S> Metered<S> {
    pub fn new(inner: S, meter: Arc<Meter>, max_in: u64, max_out: u64) -> Self {
        Metered { inner, meter, max_in, max_out }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Metered<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let left = (this.max_in + this.meter.extra_in.load(Ordering::Relaxed)).saturating_sub(this.meter.bytes_in());
        if left == 0 {
            return Poll::Ready(Err(this.meter.over("input")));
        }
        // Read through a small stack buffer cut to what is still allowed, so the bound holds
        // exactly without touching the caller's uninitialised memory.
        let mut tmp = [0u8; 2048];
        let k = (left as usize).min(buf.remaining()).min(tmp.len());
        let mut rb = ReadBuf::new(&mut tmp[..k]);
        ready!(Pin::new(&mut this.inner).poll_read(cx, &mut rb))?;
        buf.put_slice(rb.filled());
        this.meter.bytes_in.fetch_add(rb.filled().len() as u64, Ordering::Relaxed);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Metered<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let left = this.max_out.saturating_sub(this.meter.bytes_out());
        if left == 0 && !data.is_empty() {
            return Poll::Ready(Err(this.meter.over("output")));
        }
        let k = data.len().min(left as usize);
        let n = ready!(Pin::new(&mut this.inner).poll_write(cx, &data[..k]))?;
        this.meter.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
        Poll::Ready(Ok(n))
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn never_passes_its_bounds() {
        let (a, mut b) = tokio::io::duplex(1 << 16);
        let m = Arc::new(Meter::default());
        let mut s = Metered::new(a, m.clone(), 100, 10);
        b.write_all(&[b'x'; 1000]).await.unwrap();
        let mut got = vec![0u8; 1000];
        let mut total = 0;
        let err = loop {
            match s.read(&mut got[total..]).await {
                Ok(n) => total += n,
                Err(e) => break e,
            }
        };
        assert_eq!((total, m.bytes_in()), (100, 100));
        assert!(err.to_string().contains("input limit") && m.limit_hit());
        assert!(s.write_all(b"0123456789ABC").await.is_err());
        assert_eq!(m.bytes_out(), 10);
    }
}
