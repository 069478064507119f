//! The receive loop (ZMap's `recv.c`): frames from the [`ring::RxRing`] are parsed
//! (`probe::parse`), validated statelessly (`validate`: the cookie names a send-log slot, which
//! must hold a probe of the reply's address and port), and the first answer to each probe is
//! handed to the recorder. Everything else is counted — validation failures, stale answers to
//! an attempt whose slot was reused, duplicates — and dropped.

pub mod ring;

use super::record::Observation;
use super::state::{Clock, ScanState, CLOCK_STEP_US};
use super::validate::Source;
use crate::probe::{self, Parsed, ReplyKind};
use ring::FrameMeta;
use crossbeam_channel::Sender;
use ring::RxRing;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

const TCP_ACK: u8 = 0x10;

/// Start the receive thread; it returns the kernel's count of replies dropped because the
/// ring was full, once `st.stop_rx` is set and what the ring holds is drained.
pub fn spawn(st: Arc<ScanState>, ring: RxRing, out: Sender<Observation>) -> std::io::Result<std::thread::JoinHandle<u64>> {
    std::thread::Builder::new().name("receive".into()).spawn(move || receive_loop(&st, ring, &out))
}

fn receive_loop(st: &ScanState, mut rx: RxRing, out: &Sender<Observation>) -> u64 {
    let mut open = true;
    let mut last_offset = st.clock.wall_offset();
    // The wall−monotonic offset is read once per block, at its first frame (a block holds at
    // most a few ms of replies), and a jump between blocks is a wall-clock step.
    let mut block = |rx: &mut RxRing, timeout: i32, open: &mut bool| {
        let mut offset = None;
        rx.next_block(timeout, |frame, meta| {
            let off = *offset.get_or_insert_with(|| {
                let o = st.clock.wall_offset();
                if (o - last_offset).abs() > CLOCK_STEP_US {
                    st.c.clock_steps.fetch_add(1, Relaxed);
                }
                last_offset = o;
                o
            });
            *open = handle_frame(st, frame, meta, off, out);
            *open
        })
    };
    while open && !st.stop_rx.load(Relaxed) {
        // Blocks until a block of replies is full or retired; the timeout bounds how long the
        // stop flag waits.
        block(&mut rx, 20, &mut open);
    }
    // What the last blocks still hold arrived within the cooldown: record it too.
    while open && block(&mut rx, 0, &mut open) > 0 {}
    st.c.corrupt_blocks.store(rx.corrupt_blocks, Relaxed);
    // The kernel counts drops from the socket's start until the counter is read: read once.
    rx.stats().1
}

/// Parse, validate, attribute and record one frame; false when the recorder is gone.
#[inline]
fn handle_frame(st: &ScanState, frame: &[u8], meta: FrameMeta, wall_offset: i64, out: &Sender<Observation>) -> bool {
    let slots = st.ports.slots();
    let r = match probe::parse_frame(frame, meta.verify) {
        Parsed::Reply(r) => r,
        Parsed::BadChecksum => {
            st.c.bad_checksum.fetch_add(1, Relaxed);
            return true;
        }
        Parsed::NotReply => return true,
    };
    st.c.frames.fetch_add(1, Relaxed);
    // Odd but possibly ours: counted, then validated like any reply.
    if r.ext_headers {
        st.c.ipv6_ext.fetch_add(1, Relaxed);
    }
    if r.kind == ReplyKind::Rst && r.tcp_flags & TCP_ACK == 0 {
        st.c.rst_without_ack.fetch_add(1, Relaxed);
    }
    // The send-log slot the reply names must hold a probe of this address and port.
    let attempts = st.pass.load(Relaxed) + 1;
    let Some((slots_named, source)) = st.cookie.candidates(&r, attempts) else {
        st.c.invalid.fetch_add(1, Relaxed);
        return true;
    };
    // ... and come from the kind of source port the reply went back to: a reflection probe's
    // fixed port, or an ephemeral one.
    let ours = |probe: u64| {
        let (t, s) = ((probe / slots) as usize, probe % slots);
        st.targets.ip(t) == r.target && st.ports.port(st.targets.asn[t], s).0 == r.tport && st.ports.src_port(s).map_or(Source::Ephemeral, Source::Fixed) == source
    };
    let hit = slots_named.into_iter().flatten().find_map(|s| st.log.get(s).filter(|(probe, _)| ours(*probe)));
    let Some((probe, tick)) = hit else {
        // Our port and a slot in range, but the slot went to another send since: a (late)
        // answer to an earlier attempt (a forgery lands in range with odds slots / 2^32).
        let stale = slots_named.into_iter().flatten().any(|s| (s as u64) < st.log.len());
        if stale { &st.c.stale } else { &st.c.invalid }.fetch_add(1, Relaxed);
        return true;
    };
    if !st.mark(probe) {
        st.c.dup.fetch_add(1, Relaxed);
        return true;
    }
    st.c.valid.fetch_add(1, Relaxed);
    // Arrival time: the kernel's (wall-clock) stamp, mapped onto the scan's monotonic clock.
    let now = if meta.stamp_us > 0 { Clock::stamp_to_elapsed(meta.stamp_us, wall_offset) } else { st.elapsed_us() };
    let o = Observation { probe, attempts, sport: r.our_port, sent_us: st.clock.sent_us(tick, now), reply: Some(r), recv_us: st.clock.start_us + now, sent: true };
    out.send(o).is_ok()
}
