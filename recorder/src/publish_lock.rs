//! The dataset's publish lock: held briefly by a writer while it creates or publishes a
//! file in a date partition, by retention while it removes files, and by `compact`
//! while it swaps a day's directory, so that none of them acts on a directory the
//! other is replacing. The writer lock (`.pinhole.lock`) is held for a recorder's whole
//! life and cannot serve: `compact` runs beside a running recorder.

use std::fs::File;
use std::io;
use std::path::Path;

pub const PUBLISH_LOCK_FILE: &str = ".publish.lock";

/// An open lock file; `hold` takes the lock.
#[derive(Debug)]
pub struct PublishLock(File);

/// The lock, held until dropped.
#[must_use]
pub struct PublishGuard<'a>(&'a File);

impl PublishLock {
    /// Opens (creating) `<out>/.publish.lock`. Opened once, before a sandbox narrows
    /// what the process may create.
    pub fn open(out: &Path) -> io::Result<Self> {
        let path = out.join(PUBLISH_LOCK_FILE);
        let mut o = crate::layout::file_options();
        o.truncate(false);
        o.open(path).map(PublishLock)
    }

    /// Opens an existing lock file read-only, for a reader that must see the dataset
    /// between two publishes (`verify`): None where it is missing (a copied dataset).
    pub fn open_to_read(out: &Path) -> Option<Self> {
        File::open(out.join(PUBLISH_LOCK_FILE))
            .ok()
            .map(PublishLock)
    }

    /// Waits for the lock. Every holder keeps it for a few file-system operations.
    pub fn hold(&self) -> io::Result<PublishGuard<'_>> {
        self.0.lock()?;
        Ok(PublishGuard(&self.0))
    }
}

impl Drop for PublishGuard<'_> {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn a_second_holder_waits_for_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let a = PublishLock::open(dir.path()).unwrap();
        let guard = a.hold().unwrap();
        let (tx, rx) = mpsc::channel();
        let out = dir.path().to_owned();
        let t = std::thread::spawn(move || {
            let b = PublishLock::open(&out).unwrap();
            let _g = b.hold().unwrap();
            tx.send(()).unwrap();
        });
        assert!(rx.recv_timeout(Duration::from_millis(200)).is_err());
        drop(guard);
        rx.recv_timeout(Duration::from_secs(5)).unwrap();
        t.join().unwrap();
    }
}
