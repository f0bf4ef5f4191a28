//! Talking to systemd (`Type=notify`): readiness once the programs are attached, a
//! watchdog ping from the loop that drains the rings (so a wedged loop is restarted),
//! and stopping. Without NOTIFY_SOCKET (not under systemd) every call does nothing.

use std::time::{Duration, Instant};

use sd_notify::NotifyState;

pub struct Notifier {
    /// Half the watchdog interval systemd asked for, if it asked.
    ping_every: Option<Duration>,
    last_ping: Option<Instant>,
}

impl Notifier {
    pub fn new() -> Self {
        Notifier {
            ping_every: sd_notify::watchdog_enabled().map(|d| d / 2),
            last_ping: None,
        }
    }

    /// The service is up: `status` is what `systemctl status` shows.
    pub fn ready(&self, status: &str) {
        notify(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    /// Called from the main loop: pings the watchdog when due.
    pub fn alive(&mut self, now: Instant) {
        let Some(every) = self.ping_every else {
            return;
        };
        if self
            .last_ping
            .is_none_or(|l| now.duration_since(l) >= every)
        {
            self.last_ping = Some(now);
            notify(&[NotifyState::Watchdog]);
        }
    }

    pub fn stopping(&self) {
        notify(&[NotifyState::Stopping]);
    }
}

fn notify(state: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(state) {
        tracing::debug!("telling systemd: {e}");
    }
}
