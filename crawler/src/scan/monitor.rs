//! The live status line (ZMap's `monitor.c`): every 250 ms, sends, replies and the send rate.
//! Hidden when stderr is not a terminal or with --quiet.

use super::state::ScanState;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct Monitor {
    thread: std::thread::JoinHandle<()>,
    done: crossbeam_channel::Sender<()>,
    pb: indicatif::ProgressBar,
}

impl Monitor {
    pub fn start(show: bool, st: Arc<ScanState>) -> Monitor {
        let pb = crate::progress::bar(show, st.probes(), "probing");
        let (done, ticks) = crossbeam_channel::bounded::<()>(1);
        let bar = pb.clone();
        // Ticks every 250 ms; a message (or the sender's drop) ends it at once.
        let thread = std::thread::spawn(move || {
            let mut last = (Instant::now(), 0u64);
            while let Err(crossbeam_channel::RecvTimeoutError::Timeout) = ticks.recv_timeout(Duration::from_millis(250)) {
                let sent = st.c.sent.load(Relaxed);
                let pps = (sent - last.1) as f64 / last.0.elapsed().as_secs_f64();
                last = (Instant::now(), sent);
                bar.set_position(sent.min(bar.length().unwrap_or(0)));
                bar.set_message(format!(
                    "pass {} sent {} recv {} valid {} invalid {} {:.0} pps",
                    st.pass.load(Relaxed) + 1,
                    sent,
                    st.c.frames.load(Relaxed),
                    st.c.valid.load(Relaxed),
                    st.c.invalid.load(Relaxed),
                    pps
                ));
            }
        });
        Monitor { thread, done, pb }
    }

    pub fn finish(self) {
        drop(self.done);
        let _ = self.thread.join();
        self.pb.finish_and_clear();
    }
}
