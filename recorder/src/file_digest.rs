//! A file's SHA-256 and size, read in one pass.

use std::fs::File;
use std::io;
use std::path::Path;

use sha2::{Digest, Sha256};

/// The size and SHA-256 of the file at `path`.
pub fn sha256_and_size(path: &Path) -> io::Result<(u64, [u8; 32])> {
    let mut hasher = Sha256::new();
    let size = io::copy(&mut File::open(path)?, &mut hasher)?;
    Ok((size, hasher.finalize().into()))
}
