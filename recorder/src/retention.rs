//! Retention: bounds a dataset by age and by total size. Only published files are ever
//! removed, oldest first (by partition date, then modification time); staged logs,
//! files being published and the newest published file are never touched, so that a
//! bound smaller than one file cannot empty the trail.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use chrono::NaiveDate;

use crate::evidence::{relative, Entry, EvidenceLog, SigningKey};
use crate::layout::{published_files, sync_dir};
use crate::publish_lock::PublishLock;

/// What to keep; `None` bounds nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    /// Files of a partition date more than this many days before today go.
    pub max_age_days: Option<u32>,
    /// The oldest files go while the published files take more than this many bytes.
    pub max_bytes: Option<u64>,
}

impl Retention {
    pub fn bounds_anything(&self) -> bool {
        self.max_age_days.is_some() || self.max_bytes.is_some()
    }
}

/// One file retention removed, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removed {
    pub path: PathBuf,
    pub bytes: u64,
    pub why: String,
}

struct Published {
    date: NaiveDate,
    modified: SystemTime,
    path: PathBuf,
    bytes: u64,
}

/// The partition date of a published file (`<out>/date=YYYY-MM-DD/<name>.parquet`).
fn partition_date(path: &Path) -> Option<NaiveDate> {
    let dir = path.parent()?.file_name()?.to_str()?;
    NaiveDate::parse_from_str(dir.strip_prefix("date=")?, "%Y-%m-%d").ok()
}

/// Published files, oldest first. A file outside a date partition is left alone.
fn oldest_first(out: &Path) -> io::Result<Vec<Published>> {
    let mut files = Vec::new();
    for path in published_files(out)? {
        let Some(date) = partition_date(&path) else {
            continue;
        };
        // Gone meanwhile (another reader compacting, an operator): nothing to do.
        let Ok(meta) = fs::metadata(&path) else {
            continue;
        };
        files.push(Published {
            date,
            modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            path,
            bytes: meta.len(),
        });
    }
    files.sort_by(|a, b| (a.date, a.modified, &a.path).cmp(&(b.date, b.modified, &b.path)));
    Ok(files)
}

/// Removes what `r` does not keep, as of `today`; returns what it removed. Each removal
/// is first an entry of the trail's evidence log (signed with `key`), so that an
/// auditor can tell retention from deletion.
pub fn apply(
    out: &Path,
    r: &Retention,
    today: NaiveDate,
    key: Option<&SigningKey>,
) -> io::Result<Vec<Removed>> {
    if !r.bounds_anything() {
        return Ok(Vec::new());
    }
    let files = oldest_first(out)?;
    let Some((_newest, candidates)) = files.split_last() else {
        return Ok(Vec::new());
    };
    let mut total: u64 = files.iter().map(|f| f.bytes).sum();
    let mut removed = Vec::new();
    // `compact` may be swapping a day's directory: its swap and these removals do not
    // interleave, so a removed file cannot come back with the swapped-in directory.
    let lock = PublishLock::open(out)?;
    let _removing = lock.hold()?;
    let mut evidence = EvidenceLog::open_existing(out, key.cloned()).map_err(io::Error::other)?;
    for f in candidates {
        let too_old = r
            .max_age_days
            .is_some_and(|days| (today - f.date).num_days() > i64::from(days));
        let too_big = r.max_bytes.is_some_and(|max| total > max);
        if !too_old && !too_big {
            // Oldest first: nothing after this one is older, and the total only shrinks.
            break;
        }
        let why = if too_old {
            format!(
                "dated {}, over {} days old",
                f.date,
                r.max_age_days.unwrap_or(0)
            )
        } else {
            format!("the dataset was over {} bytes", r.max_bytes.unwrap_or(0))
        };
        if let Some(log) = evidence.as_mut() {
            let entry = Entry::Retired {
                paths: vec![relative(out, &f.path)?],
                reason: format!("retention: {why}"),
                at: crate::evidence::now(),
            };
            log.append(entry).map_err(io::Error::other)?;
        }
        match fs::remove_file(&f.path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        }
        total -= f.bytes;
        removed.push(Removed {
            path: f.path.clone(),
            bytes: f.bytes,
            why,
        });
    }
    let mut dirs: Vec<&Path> = removed.iter().filter_map(|r| r.path.parent()).collect();
    dirs.dedup();
    for dir in dirs {
        sync_dir(dir)?;
        // An emptied partition goes too; one still holding anything (a file being
        // published) stays.
        if fs::remove_dir(dir).is_ok() {
            sync_dir(out)?;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(out: &Path, date: &str, name: &str, bytes: usize) -> PathBuf {
        let dir = out.join(format!("date={date}"));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        fs::write(&path, vec![0u8; bytes]).unwrap();
        path
    }

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn old_days_go_first_and_the_rest_stays() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path();
        let a = file(out, "2026-11-01", "a.parquet", 10);
        let b = file(out, "2026-11-20", "b.parquet", 10);
        let c = file(out, "2026-11-30", "c.parquet", 10);
        let staged = out.join(".staging/x.arrowz");
        fs::create_dir_all(staged.parent().unwrap()).unwrap();
        fs::write(&staged, b"staged").unwrap();
        let tmp = file(out, "2026-11-01", ".d.parquet.tmp", 10);
        let r = Retention {
            max_age_days: Some(10),
            max_bytes: None,
        };
        let removed = apply(out, &r, day("2026-12-01"), None).unwrap();
        assert_eq!(removed.len(), 2, "{removed:?}");
        assert_eq!(
            (removed[0].path.clone(), removed[1].path.clone()),
            (a.clone(), b.clone())
        );
        assert!(removed[0].why.contains("over 10 days old"));
        assert!(!a.exists() && !b.exists() && c.exists());
        assert!(
            staged.exists() && tmp.exists(),
            "unpublished files are never removed"
        );
        assert!(
            tmp.parent().unwrap().exists(),
            "a partition still holding a file stays"
        );
        assert!(!b.parent().unwrap().exists(), "an emptied partition goes");
    }

    #[test]
    fn over_the_size_the_oldest_go_but_never_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path();
        let a = file(out, "2026-11-29", "a.parquet", 100);
        let b = file(out, "2026-11-30", "b.parquet", 100);
        let c = file(out, "2026-11-30", "c.parquet", 100);
        // Same day: the older modification time goes first.
        let past = SystemTime::now() - std::time::Duration::from_secs(60);
        fs::File::options()
            .write(true)
            .open(&b)
            .unwrap()
            .set_modified(past)
            .unwrap();
        let r = Retention {
            max_age_days: None,
            max_bytes: Some(150),
        };
        let removed = apply(out, &r, day("2026-12-01"), None).unwrap();
        assert_eq!(
            removed.iter().map(|r| &r.path).collect::<Vec<_>>(),
            [&a, &b]
        );
        assert!(c.exists());
        let r = Retention {
            max_age_days: Some(0),
            max_bytes: Some(1),
        };
        assert!(apply(out, &r, day("2026-12-01"), None).unwrap().is_empty());
        assert!(c.exists(), "the newest file stays whatever the bound");
        assert!(apply(out, &Retention::default(), day("2030-01-01"), None)
            .unwrap()
            .is_empty());
    }
}
