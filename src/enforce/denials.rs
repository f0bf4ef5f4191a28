//! Without a dataset, denials still reach the log, at a bounded rate; the counts feed
//! the status line.

use crate::skel::connect_event;
use crate::trail;

/// Without a dataset, denials still reach the log, at a bounded rate.
#[derive(Default)]
pub struct DenialLog {
    decisions: u64,
    denied: u64,
    pub lost: u64,
    window: (u64, u64),
    suppressed: u64,
}

const DENIAL_LINES_PER_SECOND: u64 = 20;

impl DenialLog {
    pub fn note(&mut self, batch: &[connect_event], labels: &trail::Labels, log: bool) {
        let second = unix_seconds();
        for e in batch {
            self.decisions += 1;
            let v = trail::verdict(e.verdict);
            if v == pinhole_recorder::Verdict::Allowed {
                continue;
            }
            self.denied += 1;
            if self.window.0 != second {
                if self.suppressed > 0 {
                    tracing::warn!(count = self.suppressed, "further denials not logged");
                }
                self.window = (second, 0);
                self.suppressed = 0;
            }
            self.window.1 += 1;
            if self.window.1 > DENIAL_LINES_PER_SECOND {
                self.suppressed += 1;
                continue;
            }
            let (app, _) = trail::label(labels, e);
            let what = match e.hook {
                3 => "raw socket ",
                4 => "source route (setsockopt) ",
                5 => "source-routed packet to first hop ",
                6 => "MPTCP subflow opened by the kernel to ",
                _ => "",
            };
            let fields = format!(
                "{what}{} {}:{} pid {} ({}) app {}",
                pinhole_recorder::event::Protocol::from_ipproto(e.dst.protocol).as_str(),
                trail::dst_addr(e),
                e.dst.port,
                e.pid,
                pinhole_recorder::printable::printable(&crate::skel::c_str(&e.comm)),
                app.unwrap_or("(unknown binary)")
            );
            match (log, v) {
                (true, pinhole_recorder::Verdict::Denied) => tracing::warn!("denied {fields}"),
                (true, _) => tracing::info!("would deny {fields}"),
                (false, _) => tracing::debug!("{} {fields}", v.as_str()),
            }
        }
    }

    pub fn counters(&self) -> crate::status::Counters {
        crate::status::Counters {
            events: self.decisions,
            written: self.denied,
            lost: self.lost,
            files: 0,
        }
    }
}

fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
