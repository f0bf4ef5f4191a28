//! SHA-256 of an open executable, checked against the identity the kernel reported,
//! and whether that identity can ever name other bytes later.

use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::MetadataExt;

use sha2::{Digest as _, Sha256};

use super::key::ExeKey;
pub use super::lasting::until_lasting;
use super::lasting::{coarse_now_ns, lasting_after_ns};
use super::read_lease::{LeaseOutcome, ReadLease};

#[derive(Debug)]
pub enum HashError {
    /// The file's contents may differ from what the kernel saw at the event.
    Changed,
    Io(io::Error),
}

/// Whether the process `pid` runs the file `key` names (device and inode).
pub(crate) fn runs(pid: u32, key: &ExeKey) -> bool {
    std::fs::metadata(format!("/proc/{pid}/exe"))
        .is_ok_and(|m| ExeKey::from_metadata(&m).same_file(key))
}

/// What may show that a file's bytes are still those of an event.
#[derive(Debug, Clone, Copy, Default)]
pub struct Proof {
    /// The process whose event reported the file, if it may still run it.
    pub witness: Option<u32>,
    /// When the event happened (Unix ns); None when the key was read from the file
    /// itself just now (nothing happened in between to prove anything about).
    pub event_ns: Option<i64>,
}

/// How long after a file's last change an event must come for its unchanged change
/// time to prove unchanged bytes. Change times come from a coarse clock: changes
/// within one tick can share a stamp (measured here: a rewrite right after a run kept
/// the stamp the file had when it ran), and on an idle tickless machine a tick is long.
const SETTLED_NS: i64 = 2_000_000_000;

/// Whether the file's bytes are those it had at the event that reported `key`.
///
/// - The kernel refuses every write to a file while a process executes it (ETXTBSY):
///   if the witness still runs this file once the bytes are read, they cannot have
///   changed since its event, whatever the times say (unlink, chmod, rename move ctime).
/// - Otherwise an unchanged ctime proves unchanged bytes only when the file had last
///   changed well before the event, so that any later change got a later stamp.
/// - mtime is never trusted: a rewrite can set it back.
fn unchanged_since(m: &Metadata, key: &ExeKey, proof: Proof) -> bool {
    let now = ExeKey::from_metadata(m);
    let changed_ns = key.ctime_sec * 1_000_000_000 + i64::from(key.ctime_nsec);
    let settled = proof.event_ns.is_none_or(|e| e >= changed_ns + SETTLED_NS);
    now.same_file(key)
        && ((now == *key && settled) || proof.witness.is_some_and(|pid| runs(pid, key)))
}

/// A file's digest, and whether its identity is lasting: no later version of the file
/// can have the same (device, inode, change time). Only a lasting identity may stand
/// for these bytes beyond the event at hand (a cache, the enforcer's kernel table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digest {
    pub sha256: [u8; 32],
    pub lasting: bool,
}

/// Hashes `file` only if its bytes can be shown to be those the kernel saw as
/// `expected`, before and after reading: a digest never describes other bytes than ran.
pub fn sha256_file(file: &mut File, expected: &ExeKey, proof: Proof) -> Result<Digest, HashError> {
    // Read before anything else: a write after this instant gets a later stamp
    // once the stamp is old enough (see `lasting_after_ns`).
    let started = coarse_now_ns();
    let lease = match ReadLease::take(file) {
        LeaseOutcome::Taken(l) => Some(l),
        LeaseOutcome::Writers => None,
    };
    let before = file.metadata().map_err(HashError::Io)?;
    if !unchanged_since(&before, expected, proof) {
        return Err(HashError::Changed);
    }
    let mut total = 0u64;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 << 10];
    loop {
        match std::os::unix::fs::FileExt::read_at(file, &mut buf, total) {
            Ok(0) => break,
            Ok(n) => {
                hasher.update(&buf[..n]);
                total += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(HashError::Io(e)),
        }
    }
    // The same test after reading: a write meanwhile would have moved ctime, and the
    // witness must still run the file now that every byte has been read.
    let after = file.metadata().map_err(HashError::Io)?;
    // A short read is a file truncated meanwhile, whatever its times say.
    if total != before.size()
        || !unchanged_since(&after, expected, proof)
        || after.size() != before.size()
    {
        return Err(HashError::Changed);
    }
    let lasting =
        started >= lasting_after_ns(expected) && lease.as_ref().is_some_and(ReadLease::unbroken);
    Ok(Digest {
        sha256: hasher.finalize().into(),
        lasting,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::key::{settled_temp_file_with, temp_file_with};
    use std::io::Write;

    const ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    #[test]
    fn digest_matches_known_vector() {
        let (f, key) = temp_file_with(b"abc");
        let d = sha256_file(&mut File::open(&f).unwrap(), &key, Proof::default()).unwrap();
        assert_eq!(hex::encode(d.sha256), ABC);
    }

    #[test]
    fn a_write_after_the_event_is_refused() {
        let (f, key) = temp_file_with(b"abc");
        std::thread::sleep(std::time::Duration::from_millis(10));
        std::fs::OpenOptions::new()
            .append(true)
            .open(&f)
            .unwrap()
            .write_all(b"def")
            .unwrap();
        let r = sha256_file(&mut File::open(&f).unwrap(), &key, Proof::default());
        assert!(matches!(r, Err(HashError::Changed)));
    }

    /// Regression: a rewrite with its mtime set back was trusted by an mtime rule.
    #[test]
    fn a_rewrite_with_mtime_restored_is_refused() {
        let (f, key) = temp_file_with(b"abc");
        let mtime = std::fs::metadata(&f).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(10));
        let mut w = std::fs::OpenOptions::new().write(true).open(&f).unwrap();
        w.write_all(b"xyz").unwrap();
        w.set_times(std::fs::FileTimes::new().set_modified(mtime))
            .unwrap();
        let r = sha256_file(&mut File::open(&f).unwrap(), &key, Proof::default());
        assert!(matches!(r, Err(HashError::Changed)));
    }

    #[test]
    fn unlink_and_chmod_hash_only_while_a_process_runs_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("sleeper");
        std::fs::copy("/bin/sleep", &exe).unwrap();
        let key = ExeKey::from_metadata(&std::fs::metadata(&exe).unwrap());
        let mut child = std::process::Command::new(&exe).arg("5").spawn().unwrap();
        let mut open = File::open(&exe).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::set_permissions(&exe, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        std::fs::remove_file(&exe).unwrap();
        assert_ne!(
            ExeKey::from_metadata(&open.metadata().unwrap()),
            key,
            "ctime moved"
        );
        let want = sha256_file(
            &mut File::open("/bin/sleep").unwrap(),
            &ExeKey::from_metadata(&std::fs::metadata("/bin/sleep").unwrap()),
            Proof::default(),
        )
        .unwrap();
        let witness = |pid| Proof {
            witness: Some(pid),
            event_ns: Some(0),
        };
        // The running process vouches: the kernel refuses writes to a file it executes.
        assert_eq!(
            sha256_file(&mut open, &key, witness(child.id()))
                .unwrap()
                .sha256,
            want.sha256
        );
        child.kill().unwrap();
        child.wait().unwrap();
        // Once it has exited, nothing vouches for the bytes.
        assert!(matches!(
            sha256_file(&mut open, &key, witness(child.id())),
            Err(HashError::Changed)
        ));
        assert!(matches!(
            sha256_file(&mut open, &key, Proof::default()),
            Err(HashError::Changed)
        ));
    }

    /// Regression: a rewrite in the same clock tick as the file's last change keeps its
    /// change time; only an event well after that change lets the time prove anything.
    #[test]
    fn an_unchanged_change_time_proves_nothing_right_after_a_change() {
        let (f, key) = temp_file_with(b"abc");
        let changed = key.ctime_sec * 1_000_000_000 + i64::from(key.ctime_nsec);
        let soon = Proof {
            witness: None,
            event_ns: Some(changed + 1_000_000),
        };
        let later = Proof {
            witness: None,
            event_ns: Some(changed + SETTLED_NS),
        };
        let mut file = File::open(&f).unwrap();
        assert!(matches!(
            sha256_file(&mut file, &key, soon),
            Err(HashError::Changed)
        ));
        assert_eq!(
            hex::encode(sha256_file(&mut file, &key, later).unwrap().sha256),
            ABC
        );
    }

    /// Regression (finding 6): with one-second stamps a rewrite in the same second keeps
    /// (device, inode, ctime); such a key lasts only once the clock is two seconds on.
    #[test]
    fn a_key_without_subsecond_time_lasts_only_seconds_after_its_change() {
        let now = coarse_now_ns();
        let coarse = ExeKey {
            dev: 1,
            ino: 1,
            ctime_sec: now / 1_000_000_000,
            ctime_nsec: 0,
        };
        assert!(until_lasting(&coarse).unwrap() > std::time::Duration::from_millis(900));
        let precise = ExeKey {
            ctime_nsec: 1,
            ..coarse
        };
        assert!(lasting_after_ns(&precise) < lasting_after_ns(&coarse));
        let old = ExeKey {
            ctime_sec: coarse.ctime_sec - 3,
            ..coarse
        };
        assert_eq!(until_lasting(&old), Some(std::time::Duration::ZERO));
        let future = ExeKey {
            ctime_sec: coarse.ctime_sec + 60,
            ..coarse
        };
        assert_eq!(until_lasting(&future), None);
    }

    #[test]
    fn an_old_stamp_on_an_idle_file_is_lasting() {
        let (f, key) = settled_temp_file_with(b"abc");
        let d = sha256_file(&mut File::open(&f).unwrap(), &key, Proof::default()).unwrap();
        assert!(d.lasting);
    }

    /// A write under way when hashing began set the stamp when it began: the bytes
    /// may still change under it, so the digest is good for now but not lasting.
    #[test]
    fn a_file_open_for_writing_is_not_lasting() {
        let (f, key) = settled_temp_file_with(b"abc");
        let writer = std::fs::OpenOptions::new().write(true).open(&f).unwrap();
        let d = sha256_file(&mut File::open(&f).unwrap(), &key, Proof::default()).unwrap();
        assert!(!d.lasting);
        drop(writer);
        let d = sha256_file(&mut File::open(&f).unwrap(), &key, Proof::default()).unwrap();
        assert!(d.lasting, "lasting again once the writer has gone");
    }

    #[test]
    fn another_file_is_refused() {
        let (f, key) = temp_file_with(b"abc");
        let other = ExeKey {
            ino: key.ino + 1,
            ..key
        };
        assert!(matches!(
            sha256_file(&mut File::open(&f).unwrap(), &other, Proof::default()),
            Err(HashError::Changed)
        ));
    }
}
