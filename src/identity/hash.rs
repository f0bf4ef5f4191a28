//! SHA-256 of an open executable, checked against the identity the kernel reported.

use std::fs::File;
use std::io::{self, Read};

use sha2::{Digest, Sha256};

use super::key::ExeKey;

#[derive(Debug)]
pub enum HashError {
    /// The open file is another version than the kernel saw (its change time moved).
    Changed,
    Io(io::Error),
}

/// Hashes `file` and returns the digest only if its identity equals `expected` before
/// and after reading, so a digest never describes bytes other than those that ran.
pub fn sha256_file(file: &mut File, expected: &ExeKey) -> Result<[u8; 32], HashError> {
    let before = ExeKey::from_metadata(&file.metadata().map_err(HashError::Io)?);
    if before != *expected {
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
    let after = ExeKey::from_metadata(&file.metadata().map_err(HashError::Io)?);
    if after != before {
        return Err(HashError::Changed);
    }
    Ok(hasher.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn digest_matches_known_vector_and_refuses_changed_files() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(b"abc").unwrap();
        let key = ExeKey::from_metadata(&f.as_file().metadata().unwrap());
        let mut file = File::open(f.path()).unwrap();
        let d = sha256_file(&mut file, &key).unwrap();
        assert_eq!(
            hex::encode(d),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );

        let stale = ExeKey {
            ctime_nsec: key.ctime_nsec.wrapping_add(1),
            ..key
        };
        assert!(matches!(
            sha256_file(&mut file, &stale),
            Err(HashError::Changed)
        ));
    }
}
