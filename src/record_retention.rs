//! The recorder's retention as it runs: checked at start, after each publish and once
//! a minute (a day ages without a publish); every removal logged and counted. A
//! failure to remove is a warning: retention never stops recording.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use pinhole_recorder::printable::printable;
use pinhole_recorder::retention::{apply, Retention};

pub struct Keeper {
    retention: Retention,
    key: Option<pinhole_recorder::evidence::SigningKey>,
    out: PathBuf,
    last: Option<Instant>,
    files_seen: u64,
    pub removed_files: u64,
    pub removed_bytes: u64,
}

impl Keeper {
    pub fn new(
        retention: Retention,
        out: PathBuf,
        key: Option<pinhole_recorder::evidence::SigningKey>,
    ) -> Self {
        Keeper {
            retention,
            key,
            out,
            last: None,
            files_seen: 0,
            removed_files: 0,
            removed_bytes: 0,
        }
    }

    /// Applies retention when due; `files_published` is the recorder's count so far.
    pub fn tick(&mut self, now: Instant, files_published: u64) {
        if !self.retention.bounds_anything() {
            return;
        }
        let due = self
            .last
            .is_none_or(|l| now.duration_since(l) >= Duration::from_secs(60))
            || files_published != self.files_seen;
        if !due {
            return;
        }
        self.last = Some(now);
        self.files_seen = files_published;
        let today = chrono::Utc::now().date_naive();
        match apply(&self.out, &self.retention, today, self.key.as_ref()) {
            Ok(removed) => {
                for r in removed {
                    self.removed_files += 1;
                    self.removed_bytes += r.bytes;
                    tracing::info!(
                        file = %printable(&r.path.display().to_string()),
                        bytes = r.bytes,
                        why = %r.why,
                        "retention removed a published file"
                    );
                }
            }
            Err(e) => tracing::warn!("retention: {e}"),
        }
    }
}
