//! SHA-256 of an open executable, checked against the identity the kernel reported.

use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;

use sha2::{Digest, Sha256};

use super::key::ExeKey;

#[derive(Debug)]
pub enum HashError {
    /// The file's contents may differ from what the kernel saw at the event.
    Changed,
    Io(io::Error),
}

/// Whether the file's bytes are those it had when the kernel reported `key`.
///
/// Any write moves both mtime and ctime; unlink, chmod and rename move only ctime. So
/// the bytes are unchanged when ctime still equals the kernel's, or when the last write
/// (mtime) was no later than the kernel's ctime. The second case is what lets a binary
/// deleted right after its run still be hashed; it trusts mtime, which the file's owner
/// could set back with utimensat in the moment between the event and the hash.
fn unchanged_since(m: &Metadata, key: &ExeKey) -> bool {
    let now = ExeKey::from_metadata(m);
    if !now.same_file(key) {
        return false;
    }
    now == *key || (m.mtime(), m.mtime_nsec() as u32) <= (key.ctime_sec, key.ctime_nsec)
}

/// Hashes `file` only if its bytes are those the kernel saw as `expected`, and they
/// did not change while being read: a digest never describes other bytes than ran.
pub fn sha256_file(file: &mut File, expected: &ExeKey) -> Result<[u8; 32], HashError> {
    let before = file.metadata().map_err(HashError::Io)?;
    if !unchanged_since(&before, expected) {
        return Err(HashError::Changed);
    }
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 << 10];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(HashError::Io(e)),
        }
    }
    // The same test after reading: a write meanwhile would have moved mtime.
    let after = file.metadata().map_err(HashError::Io)?;
    if !unchanged_since(&after, expected) || after.size() != before.size() {
        return Err(HashError::Changed);
    }
    Ok(hasher.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::key::temp_file_with;
    use std::io::Write;

    const ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    #[test]
    fn digest_matches_known_vector() {
        let (f, key) = temp_file_with(b"abc");
        let d = sha256_file(&mut File::open(f.path()).unwrap(), &key).unwrap();
        assert_eq!(hex::encode(d), ABC);
    }

    #[test]
    fn a_write_after_the_event_is_refused() {
        let (f, key) = temp_file_with(b"abc");
        std::thread::sleep(std::time::Duration::from_millis(10));
        f.as_file().write_all(b"def").unwrap();
        let r = sha256_file(&mut File::open(f.path()).unwrap(), &key);
        assert!(matches!(r, Err(HashError::Changed)));
    }

    #[test]
    fn unlink_and_chmod_after_the_event_still_hash() {
        let (f, key) = temp_file_with(b"abc");
        let mut open = File::open(f.path()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(10));
        std::fs::set_permissions(
            f.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        drop(f); // unlinks
        assert_ne!(
            ExeKey::from_metadata(&open.metadata().unwrap()),
            key,
            "ctime moved"
        );
        assert_eq!(hex::encode(sha256_file(&mut open, &key).unwrap()), ABC);
    }

    #[test]
    fn another_file_is_refused() {
        let (f, key) = temp_file_with(b"abc");
        let other = ExeKey {
            ino: key.ino + 1,
            ..key
        };
        assert!(matches!(
            sha256_file(&mut File::open(f.path()).unwrap(), &other),
            Err(HashError::Changed)
        ));
    }
}
