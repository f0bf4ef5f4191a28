//! The status line of long-running commands: an indicatif spinner on a terminal,
//! otherwise a log line at most every 10 s and only when a counter changed (a quiet
//! recorder would write 8,640 identical lines a day).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// Set when logs are JSON: then lines for people are log events too.
pub static JSON_LOGS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Writes a line for people on stderr, ignoring a closed stderr: `eprintln!` would
/// panic there, and a daemon must outlive its log reader.
pub fn say(line: &str) {
    use std::io::Write;
    if JSON_LOGS.load(std::sync::atomic::Ordering::Relaxed) {
        tracing::info!("{}", line.trim_start_matches("pinhole: "));
    } else {
        let _ = writeln!(std::io::stderr(), "{line}");
    }
}

/// Counters shown on the line; events/s is derived from `events` between updates.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
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
    /// The counters the last log line showed.
    logged: Counters,
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
            logged: Counters::default(),
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
        if let Some(bar) = &self.bar {
            bar.set_message(msg);
        } else if self.log_due(now, c) {
            tracing::info!("{msg}");
        }
    }

    /// Whether a log line is due: its interval passed and something changed.
    fn log_due(&mut self, now: Instant, c: Counters) -> bool {
        if now.duration_since(self.last_log) < self.log_every || c == self.logged {
            return false;
        }
        self.last_log = now;
        self.logged = c;
        true
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_only_when_something_changed() {
        let mut line = StatusLine::new("test");
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        let mut c = Counters::default();
        assert!(!line.log_due(at(11), c), "nothing happened yet");
        c.events = 5;
        assert!(!line.log_due(at(5), c), "not before the interval");
        assert!(line.log_due(at(11), c));
        assert!(!line.log_due(at(30), c), "nothing changed since");
        c.lost = 1;
        assert!(!line.log_due(at(15), c), "changed, but too soon");
        assert!(line.log_due(at(31), c));
    }
}
