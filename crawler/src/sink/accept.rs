//! The accept loop: every connection is admitted (a task of its own) or refused at once. A
//! refusal is one `421` line written without waiting (a fresh socket's send buffer takes it;
//! a client that does not read cannot hold the loop), the socket closed, and a count — never
//! a row, never an await: a flood costs the sink an accept, a write and a close per
//! connection, and no disk.

use super::conn::{self, Ctx};
use super::counters::Counters;
use super::limits::{Client, Limits};
use super::wire;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub async fn accept_loop(l: TcpListener, ctx: Arc<Ctx>, limits: Arc<Limits>, counters: Arc<Counters>, accepted: Arc<AtomicU64>, mut quit: watch::Receiver<bool>) {
    let busy = format!("421 4.7.0 {} {} busy, try later\r\n", ctx.name, wire::SINK_TAG);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = super::stopped(&mut quit) => return,
            r = l.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of descriptors (or a connection gone before accept): back off
                    // rather than spin.
                    tracing::warn!("sink: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        accepted.fetch_add(1, Ordering::Relaxed);
        match limits.admit(peer.ip()) {
            Ok(slot) => {
                let Ok(local) = tcp.local_addr() else { continue };
                // Replies are single small writes after the client's line: Nagle would hold
                // each for a delayed ACK (40 ms per round trip).
                let _ = tcp.set_nodelay(true);
                tokio::spawn(conn::handle(ctx.clone(), tcp, peer, local, slot));
            }
            Err(why) => {
                let _ = tcp.try_write(busy.as_bytes());
                drop(tcp);
                counters.refused(why, Client::of(peer.ip()));
            }
        }
    }
}
