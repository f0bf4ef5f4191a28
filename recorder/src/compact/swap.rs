//! Replacing a day's directory in one step: `renameat2(RENAME_EXCHANGE)` swaps the live
//! `date=` directory with the prepared one, so every reader, pinhole's or another
//! engine's, sees the day either as it was or as compacted, never both.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::CompactError;
use crate::layout::{create_dirs, sync_dir};

/// A file a writer is still writing (`.<name>.parquet.tmp`): it follows the live
/// directory, for the writer publishes it there by name.
pub fn is_in_progress(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(".parquet.tmp")
}

/// Atomically exchanges two directories of one file system.
pub fn exchange(a: &Path, b: &Path) -> Result<(), CompactError> {
    let c = |p: &Path| {
        CString::new(p.as_os_str().as_bytes())
            .map_err(|_| CompactError::io(p, io::ErrorKind::InvalidInput.into()))
    };
    let (ca, cb) = (c(a)?, c(b)?);
    // SAFETY: both are valid NUL-terminated paths that outlive the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            ca.as_ptr(),
            libc::AT_FDCWD,
            cb.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EINVAL) {
        return Err(CompactError::Unsupported {
            path: a.to_owned(),
            message: "this file system cannot exchange two directories atomically (renameat2 RENAME_EXCHANGE)".into(),
        });
    }
    Err(CompactError::io(a, e))
}

/// Moves files still being written from `from` (a directory no longer live) into
/// `live`, where their writer will publish them. Returns how many moved.
pub fn move_in_progress(from: &Path, live: &Path) -> Result<usize, CompactError> {
    let mut moved = 0;
    for entry in fs::read_dir(from).map_err(|e| CompactError::io(from, e))? {
        let entry = entry.map_err(|e| CompactError::io(from, e))?;
        let name = entry.file_name();
        if !is_in_progress(&name.to_string_lossy()) {
            continue;
        }
        create_dirs(live).map_err(|e| CompactError::io(live, e))?;
        let to = live.join(&name);
        fs::rename(entry.path(), &to).map_err(|e| CompactError::io(&to, e))?;
        moved += 1;
    }
    if moved > 0 {
        sync_dir(live).map_err(|e| CompactError::io(live, e))?;
    }
    Ok(moved)
}

/// Removes a day directory `compact` set aside (the replaced files) or did not finish
/// preparing (a compaction killed before its swap); either way the live directory
/// holds the day exactly once. Files still being written go to the live directory
/// first. The caller holds the publish lock.
pub fn remove_set_aside(dir: &Path, live: &Path) -> Result<(), CompactError> {
    move_in_progress(dir, live)?;
    fs::remove_dir_all(dir).map_err(|e| CompactError::io(dir, e))?;
    if let Some(parent) = dir.parent() {
        sync_dir(parent).map_err(|e| CompactError::io(parent, e))?;
    }
    Ok(())
}
