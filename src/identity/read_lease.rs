//! A read lease held while a file is hashed: proof that nobody wrote to it meanwhile.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// A read lease on a file: the kernel grants it only while nobody has the file open
/// for writing, and breaks it when someone opens it for writing (or truncates it).
/// Held across hashing, it shows that no write was under way or started meanwhile:
/// a write already in progress set its change time when it began, and would go on
/// changing bytes under an unchanged stamp.
pub(super) struct ReadLease<'a> {
    file: &'a File,
    /// False where the filesystem has no leases (then only the stamp is evidence).
    held: bool,
}

pub(super) enum LeaseOutcome<'a> {
    Taken(ReadLease<'a>),
    /// The file is open for writing right now.
    Writers,
}

impl<'a> ReadLease<'a> {
    pub(super) fn take(file: &'a File) -> LeaseOutcome<'a> {
        ignore_lease_breaks();
        // SAFETY: fcntl on a descriptor `file` owns.
        let r = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLEASE, libc::F_RDLCK) };
        if r == 0 {
            return LeaseOutcome::Taken(ReadLease { file, held: true });
        }
        match io::Error::last_os_error().raw_os_error() {
            Some(libc::EAGAIN) => LeaseOutcome::Writers,
            _ => LeaseOutcome::Taken(ReadLease { file, held: false }),
        }
    }

    /// Whether the lease is still whole (nobody opened the file for writing meanwhile).
    pub(super) fn unbroken(&self) -> bool {
        // SAFETY: as above.
        !self.held
            || unsafe { libc::fcntl(self.file.as_raw_fd(), libc::F_GETLEASE) } == libc::F_RDLCK
    }
}

impl Drop for ReadLease<'_> {
    fn drop(&mut self) {
        if self.held {
            // SAFETY: as above; releasing lets a waiting writer go on at once.
            unsafe { libc::fcntl(self.file.as_raw_fd(), libc::F_SETLEASE, libc::F_UNLCK) };
        }
    }
}

/// A broken lease is signalled with SIGIO, whose default action ends the process;
/// the lease is checked by asking instead.
fn ignore_lease_breaks() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: setting a signal's disposition to ignore has no handler to race.
        unsafe { libc::signal(libc::SIGIO, libc::SIG_IGN) };
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::key::settled_temp_file_with;
    use std::os::unix::fs::OpenOptionsExt;

    #[test]
    fn an_open_for_writing_while_hashing_breaks_the_lease() {
        let (f, _) = settled_temp_file_with(b"abc");
        let file = File::open(&f).unwrap();
        let LeaseOutcome::Taken(lease) = ReadLease::take(&file) else {
            panic!("no writers, yet no lease");
        };
        assert!(lease.held && lease.unbroken());
        let attempt = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&f);
        assert_eq!(
            attempt.unwrap_err().raw_os_error(),
            Some(libc::EWOULDBLOCK),
            "the writer waits for the lease"
        );
        assert!(!lease.unbroken());
    }
}
