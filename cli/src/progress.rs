//! The progress bar of long operations, drawn on stderr.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

/// A progress bar counting vectors, hidden with `--quiet` or when stderr is not a terminal.
#[derive(Clone)]
pub struct Progress {
    pb: ProgressBar,
}

impl Progress {
    /// A bar with `what` (e.g. `"vectors"`) as unit; `len` 0 when not yet known.
    pub fn new(quiet: bool, len: u64, what: &str) -> Self {
        let visible = !quiet && std::io::stderr().is_terminal();
        let pb = if visible {
            ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr_with_hz(10))
        } else {
            ProgressBar::hidden()
        };
        let style = ProgressStyle::with_template(&format!(
            "{{spinner}} [{{elapsed_precise}}] {{wide_bar}} {{human_pos}}/{{human_len}} {what} \
             ({{rate}}, ETA {{eta}})"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .with_key("rate", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = write!(w, "{:.0}/s", s.per_sec());
        })
        .progress_chars("=> ");
        pb.set_style(style);
        if visible {
            pb.enable_steady_tick(Duration::from_millis(200));
        }
        Progress { pb }
    }

    /// Sets the (estimated) total.
    pub fn set_len(&self, n: u64) {
        self.pb.set_length(n);
    }

    /// Sets the count done.
    pub fn set_pos(&self, n: u64) {
        self.pb.set_position(n);
    }

    /// Prints a warning above the bar.
    pub fn warn(&self, msg: &str) {
        self.pb.suspend(|| eprintln!("warning: {msg}"));
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.pb.finish_and_clear();
    }

    /// A callback for [`hnsw_batch::BatchOptions::on_progress`]: items done in the current batch
    /// are added to `base`.
    pub fn batch_callback(&self, base: u64) -> impl Fn(hnsw_batch::BatchProgress) + Send + Sync + 'static {
        let pb = self.pb.clone();
        move |p| pb.set_position(base + p.done as u64)
    }
}
