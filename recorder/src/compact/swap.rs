//! Replacing a day's directory in one step: `renameat2(RENAME_EXCHANGE)` swaps the live
//! `date=` directory with the prepared one, so every reader, pinhole's or another
//! engine's, sees the day either as it was or as compacted, never both.

use std::fs;
use std::path::Path;

use super::CompactError;
use crate::layout::{self, create_dirs, sync_dir};

/// A file a writer is still writing (`.<name>.parquet.tmp`): it follows the live
/// directory, for the writer publishes it there by name.
pub fn is_in_progress(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(".parquet.tmp")
}

/// Atomically exchanges two directories of one file system.
pub fn exchange(a: &Path, b: &Path) -> Result<(), CompactError> {
    match layout::exchange(a, b) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Err(CompactError::Unsupported {
            path: a.to_owned(),
            message: "this file system cannot exchange two directories atomically (renameat2 RENAME_EXCHANGE)".into(),
        }),
        Err(e) => Err(CompactError::io(a, e)),
    }
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
