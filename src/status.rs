//! The status line of long-running commands: an indicatif spinner on a terminal,
//! periodic log lines otherwise.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// Counters shown on the line; events/s is derived from `events` between updates.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counters {
    pub events: u64,
    pub written: u64,
    pub lost: u64,
    pub files: u64,
}

pub struct StatusLine {
    bar: Option<ProgressBar>,
    log_every: Duration,
    last_log: Instant,
    last: (Instant, u64),
    rate: f64,
}

impl StatusLine {
    pub fn new(label: &str) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {prefix} {elapsed_precise} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_prefix(label.to_owned());
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        let now = Instant::now();
        StatusLine {
            bar,
            log_every: Duration::from_secs(10),
            last_log: now,
            last: (now, 0),
            rate: 0.0,
        }
    }

    pub fn update(&mut self, c: Counters) {
        let now = Instant::now();
        let dt = now.duration_since(self.last.0).as_secs_f64();
        if dt >= 1.0 {
            self.rate = (c.events - self.last.1) as f64 / dt;
            self.last = (now, c.events);
        }
        let msg = format!(
            "{:.0} events/s | {} written | {} lost | {} files published",
            self.rate, c.written, c.lost, c.files
        );
        match &self.bar {
            Some(bar) => bar.set_message(msg),
            None if now.duration_since(self.last_log) >= self.log_every => {
                self.last_log = now;
                tracing::info!("{msg}");
            }
            None => {}
        }
    }

    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

/// A spinner for a wait with a changing step: on a terminal only (logs and scripts get
/// the final line).
pub struct Spinner(Option<ProgressBar>);

impl Spinner {
    pub fn new(label: &str) -> Self {
        Spinner(std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {prefix} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_prefix(label.to_owned());
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        }))
    }

    pub fn say(&self, msg: &str) {
        if let Some(bar) = &self.0 {
            bar.set_message(msg.to_owned());
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}
