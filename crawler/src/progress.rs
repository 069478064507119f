//! Progress bars for operators (hidden when stderr is not a terminal or with --quiet).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub fn spinner(show: bool, msg: &'static str) -> ProgressBar {
    let pb = if show { ProgressBar::new_spinner() } else { ProgressBar::hidden() };
    pb.set_message(msg);
    pb.enable_steady_tick(std::time::Duration::from_millis(120));
    pb
}

pub fn bar(show: bool, len: u64, msg: &'static str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr_with_hz(4));
    pb.set_style(ProgressStyle::with_template("{msg:>14} [{bar:30}] {pos}/{len} ({per_sec}, ETA {eta})").unwrap().progress_chars("=> "));
    pb.set_message(msg);
    pb
}
