//! Silence is a measurement: every probe that got no answer becomes a row too. A probe is
//! recorded as silent only once its final attempt has had the full cooldown, at one of three
//! moments:
//!
//! - [`retire`]: a sender is about to reuse the send-log slot of a final attempt (a small send
//!   log) — it waits out that probe's cooldown if it must, then records it;
//! - [`sweep_old`]: during a long last pass, final attempts unanswered for `OLD_FINAL_US` —
//!   send ticks are 32-bit µs and wrap after 71 minutes, so one left in the log until the end
//!   of a slow crawl would get a wrong `sent_at`;
//! - [`sweep_final`]: after the cooldown, every final attempt still in the log.

use super::record::{Observation, Recorder};
use super::state::ScanState;
use anyhow::Result;
use crossbeam_channel::Sender;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

/// A final attempt still unanswered after this long (µs) is recorded as silent during the pass.
pub const OLD_FINAL_US: u32 = 30 * 60 * 1_000_000;

/// Probes from which the final sweep is split over two recorders.
const SPLIT_SWEEP: u64 = 1 << 16;

/// The probe whose final attempt send `counter`'s slot still holds, unanswered, with its send
/// tick: it must have had its cooldown before the slot is reused.
#[inline]
fn holder(st: &ScanState, counter: u64) -> Option<(u64, u32)> {
    let old = counter.checked_sub(st.log.len())?;
    if !st.log.is_final(old) {
        return None;
    }
    st.log.get(st.log.slot(old)).filter(|(q, _)| !st.is_answered(*q))
}

/// Would reusing send `counter`'s slot wait for a probe's cooldown now?
#[inline]
pub fn must_wait(st: &ScanState, counter: u64) -> bool {
    holder(st, counter).is_some_and(|(_, tick)| (st.elapsed_us() as u32).wrapping_sub(tick) < st.cooldown_us)
}

/// Before send `counter` reuses a slot that holds a final attempt, that probe must have had its
/// cooldown: wait for it if need be, then record it as silent unless answered.
pub fn retire(st: &ScanState, counter: u64, stop: &AtomicBool, out: &Sender<Observation>) {
    let Some((q, tick)) = holder(st, counter) else { return };
    while (st.elapsed_us() as u32).wrapping_sub(tick) < st.cooldown_us {
        if stop.load(Relaxed) {
            return; // interrupted: silence is not recorded (a resumed crawl probes it again)
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    if st.mark(q) {
        let _ = out.send(st.silence(q, tick, st.elapsed_us()));
    }
}

/// Record the final attempts that have waited in the send log for `OLD_FINAL_US`.
pub fn sweep_old(st: &ScanState, out: &Sender<Observation>) {
    let now = st.elapsed_us();
    for (q, tick) in st.log.final_older_than(now as u32, st.cooldown_us.max(OLD_FINAL_US)) {
        if st.mark(q) {
            let _ = out.send(st.silence(q, tick, now));
        }
    }
}

/// After the cooldown: whatever final attempt is still unanswered is silent. The cores are idle
/// by then, so a large sweep is split: this thread feeds the first half to the record thread
/// (`out`) while a second recorder (`second`) writes the other half to its own file (on the
/// 131,072-probe lab, 70 ms of the scan's tail). Returns the second recorder, if one was used,
/// and how many probes have no row (none should: every probe was answered, skipped, or
/// finally sent in the last pass).
pub fn sweep_final(st: &ScanState, out: &Sender<Observation>, second: impl FnOnce() -> Result<Recorder> + Send) -> Result<(Option<Recorder>, u64)> {
    let now = st.elapsed_us();
    let w = st.log.final_window();
    let mid = if w.end - w.start >= SPLIT_SWEEP { w.start + (w.end - w.start) / 2 } else { w.end };
    let silent = |c: u64| st.log.get(st.log.slot(c)).filter(|(q, _)| st.mark(*q)).map(|(q, tick)| st.silence(q, tick, now));
    let second = std::thread::scope(|s| -> Result<Option<Recorder>> {
        let h = (mid < w.end).then(|| {
            s.spawn(|| -> Result<Recorder> {
                let mut r = second()?;
                for o in (mid..w.end).filter_map(silent) {
                    r.push(&o)?;
                }
                Ok(r)
            })
        });
        for o in (w.start..mid).filter_map(silent) {
            if out.send(o).is_err() {
                break; // the record thread failed; its error is reported when it is joined
            }
        }
        h.map(|h| h.join().map_err(|_| anyhow::anyhow!("record thread panicked"))?).transpose()
    })?;
    let unlogged = (0..st.probes()).filter(|p| !st.is_answered(*p)).count() as u64;
    if unlogged > 0 {
        tracing::error!("{unlogged} probes have no record of their final attempt (a bug); they are missing from the output");
    }
    Ok((second, unlogged))
}
