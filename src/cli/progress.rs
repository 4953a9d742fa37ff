//! A spinner on standard error while a sync reads a directory (entries read so far and the
//! current step). indicatif draws nothing when standard error is not a terminal, so logs and
//! pipes only ever get the one summary line.

use std::time::Duration;

use attest::directory::SyncObserver;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct SyncProgress {
    source: String,
    bar: ProgressBar,
}

impl SyncProgress {
    pub fn start(source: &str) -> SyncProgress {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template("{spinner} {elapsed} {msg}") {
            bar.set_style(style);
        }
        bar.enable_steady_tick(Duration::from_millis(120));
        bar.set_message(format!("{source}: connecting"));
        SyncProgress {
            source: source.to_string(),
            bar,
        }
    }

    /// Removes the spinner (before the summary line is printed).
    pub fn finish(self) {
        self.bar.finish_and_clear();
    }
}

impl SyncObserver for SyncProgress {
    fn read(&self, people: u64, groups: u64) {
        self.bar.set_message(format!(
            "{}: {people} people and {groups} groups read",
            self.source
        ));
    }

    fn phase(&self, phase: &'static str) {
        self.bar.set_message(format!("{}: {phase}", self.source));
    }
}
