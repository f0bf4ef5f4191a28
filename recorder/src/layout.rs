//! Where files live in a dataset: hive partitions by UTC date, hidden staging, names.
//!
//! ```text
//! <out>/date=YYYY-MM-DD/<host>-<start>-<pid>-<seq>.parquet   published, complete
//! <out>/date=YYYY-MM-DD/.<name>.parquet.tmp                   being published
//! <out>/.staging/<name>.arrows + <name>.meta                 the open segment's log
//! <out>/.pinhole.lock                                         one writer at a time
//! ```
//! Only `*.parquet` files not starting with a dot are part of the dataset.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate, Utc};

pub const STAGING_DIR: &str = ".staging";
pub const LOCK_FILE: &str = ".pinhole.lock";
/// A staged log: one zstd frame of IPC messages per flush (`frames`).
pub const STAGED_DATA_EXT: &str = "arrowz";
/// A staged log of pinhole 0.1 before framing: a plain IPC stream (still recovered).
pub const STAGED_STREAM_EXT: &str = "arrows";
pub const STAGED_META_EXT: &str = "meta";

/// The UTC date an event time (ns since the epoch) falls on.
pub fn date_of(ts_ns: i64) -> NaiveDate {
    DateTime::<Utc>::from_timestamp_nanos(ts_ns).date_naive()
}

pub fn partition_dir(out: &Path, date: NaiveDate) -> PathBuf {
    out.join(format!("date={}", date.format("%Y-%m-%d")))
}

pub fn published_path(out: &Path, date: NaiveDate, name: &str) -> PathBuf {
    partition_dir(out, date).join(format!("{name}.parquet"))
}

pub fn temp_path(out: &Path, date: NaiveDate, name: &str) -> PathBuf {
    partition_dir(out, date).join(format!(".{name}.parquet.tmp"))
}

pub fn staging_dir(out: &Path) -> PathBuf {
    out.join(STAGING_DIR)
}

/// `s` with every character but ASCII letters, digits and those in `keep` replaced by
/// '_'; `fallback` if nothing is left.
pub fn safe_name(s: &str, keep: &str, fallback: &str) -> String {
    let cleaned: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || keep.contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if cleaned.is_empty() {
        fallback.into()
    } else {
        cleaned
    }
}

/// The most of a host name that goes into a file name (the column keeps all of it).
const MAX_HOST_IN_NAME: usize = 64;

/// A file name safe on any filesystem and unambiguous when split on '-'. It never
/// starts with '_' or '.': dataset readers (pyarrow, Spark) skip such names as hidden.
fn sanitize(s: &str) -> String {
    let name = safe_name(s, "._", "host");
    let name: String = name
        .trim_start_matches(['_', '.'])
        .chars()
        .take(MAX_HOST_IN_NAME)
        .collect();
    if name.is_empty() {
        "host".into()
    } else {
        name
    }
}

/// Names a segment: unique per host, process and sequence, sortable by start time.
pub fn segment_name(host: &str, start_ns: i64, pid: u32, seq: u64) -> String {
    let start = DateTime::<Utc>::from_timestamp_nanos(start_ns).format("%Y%m%dT%H%M%S%.3fZ");
    format!("{}-{start}-{pid}-{seq:06}", sanitize(host))
}

/// Names the file `compact` merges a day of one host into: the start of the day's first
/// file (when its name carries one), and how many files it replaced.
pub fn compacted_name(
    host: &str,
    date: NaiveDate,
    first_start: Option<&str>,
    files: usize,
) -> String {
    let start = first_start
        .filter(|s| chrono::NaiveDateTime::parse_from_str(s, "%Y%m%dT%H%M%S%.3fZ").is_ok())
        .map_or_else(
            || format!("{}T000000.000Z", date.format("%Y%m%d")),
            str::to_owned,
        );
    format!("{}-{start}-compact-{files:06}", sanitize(host))
}

/// Every published Parquet file of a dataset, sorted, skipping hidden and temporary files.
pub fn published_files(out: &Path) -> io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    collect_parquet(out, &mut files)?;
    files.sort();
    Ok(files)
}

fn collect_parquet(dir: &Path, files: &mut Vec<PathBuf>) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            collect_parquet(&path, files)?;
        } else if name.ends_with(".parquet") {
            files.push(path);
        }
    }
    Ok(())
}

/// The trail is evidence: files are read-write for their owner and readable by its
/// group (a readers' group, for example `pinhole`, given as the dataset directory's
/// group with its set-group-id bit), nothing for others; directories likewise.
pub const FILE_MODE: u32 = 0o640;
pub const DIR_MODE: u32 = 0o750;

/// Creates `dir` and its missing parents with `DIR_MODE`.
pub fn create_dirs(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
}

/// Options that create a file with `FILE_MODE` (writable, truncated when it exists).
pub fn file_options() -> fs::OpenOptions {
    use std::os::unix::fs::OpenOptionsExt;
    let mut o = fs::OpenOptions::new();
    o.write(true).create(true).truncate(true).mode(FILE_MODE);
    o
}

/// fsync a directory so that a rename or unlink in it survives a crash.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// Atomically exchanges two existing paths of one file system
/// (`renameat2(RENAME_EXCHANGE)`); EINVAL where the file system cannot.
pub(crate) fn exchange(a: &Path, b: &Path) -> io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| {
        CString::new(p.as_os_str().as_bytes())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
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
    match rc {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_partitions() {
        let ts = 1_763_850_000_123_456_789; // 2025-11-22T22:20:00.123Z
        let d = date_of(ts);
        assert_eq!(d.to_string(), "2025-11-22");
        let out = Path::new("/data");
        assert_eq!(partition_dir(out, d), Path::new("/data/date=2025-11-22"));
        let name = segment_name("web-1.example/x", ts, 42, 7);
        assert_eq!(name, "web_1.example_x-20251122T222000.123Z-42-000007");
        // Regression: an unset host name ("(none)") gave "_none_-...", which pyarrow skips.
        assert!(segment_name("(none)", ts, 1, 0).starts_with("none_-"));
        assert!(segment_name("..x", ts, 1, 0).starts_with("x-"));
        assert!(segment_name("___", ts, 1, 0).starts_with("host-"));
        let long = segment_name(&"h".repeat(4096), ts, 1, 0);
        assert!(long.len() < 120, "{long}");
        assert!(temp_path(out, d, &name)
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with('.'));
    }

    #[test]
    fn published_files_skip_hidden_and_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("date=2026-01-01");
        fs::create_dir_all(&p).unwrap();
        fs::create_dir_all(dir.path().join(STAGING_DIR)).unwrap();
        fs::write(p.join("a.parquet"), b"").unwrap();
        fs::write(p.join(".a.parquet.tmp"), b"").unwrap();
        fs::write(dir.path().join(STAGING_DIR).join("x.parquet"), b"").unwrap();
        assert_eq!(
            published_files(dir.path()).unwrap(),
            vec![p.join("a.parquet")]
        );
    }
}
