//! `compact`: rewrites each past day's many small files into one file per day and
//! host. The day is prepared in a hidden directory (`.compact/date=D`: the merged
//! files, and hard links to every file left as it is) and swapped with the live
//! `date=D` in one `renameat2(RENAME_EXCHANGE)`; the replaced files are removed after.
//! A kill at any step leaves the day readable exactly once: before the swap the live
//! directory is untouched, after it the live directory is the compacted day, and the
//! next run removes whichever directory was set aside. A running recorder is not
//! disturbed: the swap happens under the dataset's publish lock, and files it is still
//! writing follow the live directory.
//!
//! Each merged file keeps the row count, the time range and the sum of the lost-event
//! counts of what it replaced, and names every replaced file with its size, SHA-256,
//! rows and lost events (`pinhole.compacted_from`), so a tamper-evident trail can
//! account for the files that left.

mod inputs;
mod swap;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::metadata::KeyValue;

pub use inputs::Input;

use crate::error::SinkError;
use crate::evidence::{relative, Entry, EvidenceLog, FileFacts, SigningKey};
use crate::layout::{self, create_dirs, partition_dir, sync_dir};
use crate::parquet_file::{Codec, PendingParquet};
use crate::publish_lock::PublishLock;
use crate::readback::event_times;
use crate::schema::meta;
use crate::sink::rfc3339;

/// Where `compact` prepares days and sets replaced ones aside.
pub const WORK_DIR: &str = ".compact";
const WORK_LOCK: &str = ".lock";

#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    #[error("{path}: {cause}")]
    Io { path: PathBuf, cause: io::Error },
    #[error("{path}: not a readable Parquet file: {message}")]
    Read { path: PathBuf, message: String },
    #[error("another `pinhole compact` is working on {path}")]
    Busy { path: PathBuf },
    #[error("{path}: {message}")]
    Unsupported { path: PathBuf, message: String },
    #[error(transparent)]
    Write(#[from] SinkError),
}

impl CompactError {
    fn io(path: &Path, cause: io::Error) -> Self {
        CompactError::Io {
            path: path.to_owned(),
            cause,
        }
    }

    fn read(path: &Path, message: impl ToString) -> Self {
        CompactError::Read {
            path: path.to_owned(),
            message: message.to_string(),
        }
    }
}

/// What to compact.
#[derive(Debug, Clone)]
pub struct CompactOptions {
    /// Days strictly before this one.
    pub before: NaiveDate,
    pub codec: Codec,
    /// Signs the evidence log's checkpoint after the entries each day's swap adds.
    pub signing_key: Option<SigningKey>,
}

/// One merged file.
#[derive(Debug, Clone)]
pub struct Merged {
    pub date: NaiveDate,
    pub host: String,
    pub output: PathBuf,
    pub files_before: usize,
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub rows: u64,
    pub lost_events: u64,
}

/// What a run did.
#[derive(Debug, Default)]
pub struct CompactReport {
    pub merged: Vec<Merged>,
    /// Days left as they were, and why.
    pub skipped: Vec<(NaiveDate, String)>,
    /// Directories an earlier, interrupted run left behind, now removed.
    pub leftovers_removed: usize,
}

/// Compacts every day of `out` before `opts.before`.
pub fn compact(out: &Path, opts: CompactOptions) -> Result<CompactReport, CompactError> {
    let work = out.join(WORK_DIR);
    if !out.is_dir() {
        return Err(CompactError::io(out, io::ErrorKind::NotFound.into()));
    }
    create_dirs(&work).map_err(|e| CompactError::io(&work, e))?;
    let work_lock = layout::file_options()
        .truncate(false)
        .open(work.join(WORK_LOCK))
        .map_err(|e| CompactError::io(&work, e))?;
    work_lock
        .try_lock()
        .map_err(|_| CompactError::Busy { path: out.into() })?;
    if opts.signing_key.is_none() && crate::evidence::is_signed(out) {
        return Err(CompactError::Unsupported {
            path: out.into(),
            message: "its evidence log is signed: compacting needs the signing key (--signing-key), or the trail would no longer verify".into(),
        });
    }
    let publish = PublishLock::open(out).map_err(|e| CompactError::io(out, e))?;
    let mut report = CompactReport {
        leftovers_removed: remove_leftovers(out, &work, &publish)?,
        ..Default::default()
    };
    let mut evidence = {
        let _g = publish.hold().map_err(|e| CompactError::io(out, e))?;
        EvidenceLog::open_existing(out, opts.signing_key.clone())
            .map_err(|e| CompactError::io(out, io::Error::other(e)))?
    };
    for date in days_before(out, opts.before)? {
        let day = Day {
            date,
            codec: opts.codec,
            lock: &publish,
            evidence: evidence.as_mut(),
        };
        compact_day(out, day, &mut report)?;
    }
    Ok(report)
}

/// Removes what an interrupted run left in the work directory.
fn remove_leftovers(out: &Path, work: &Path, lock: &PublishLock) -> Result<usize, CompactError> {
    let mut removed = 0;
    for entry in fs::read_dir(work).map_err(|e| CompactError::io(work, e))? {
        let entry = entry.map_err(|e| CompactError::io(work, e))?;
        let name = entry.file_name();
        if !name.to_string_lossy().starts_with("date=") {
            continue;
        }
        let _swapping = lock.hold().map_err(|e| CompactError::io(out, e))?;
        swap::remove_set_aside(&entry.path(), &out.join(&name))?;
        removed += 1;
    }
    Ok(removed)
}

/// The dates of `out`'s partitions before `before`, oldest first.
fn days_before(out: &Path, before: NaiveDate) -> Result<Vec<NaiveDate>, CompactError> {
    let mut days = Vec::new();
    for entry in fs::read_dir(out).map_err(|e| CompactError::io(out, e))? {
        let entry = entry.map_err(|e| CompactError::io(out, e))?;
        let name = entry.file_name();
        let Some(day) = name.to_str().and_then(|n| n.strip_prefix("date=")) else {
            continue;
        };
        if let Ok(date) = NaiveDate::parse_from_str(day, "%Y-%m-%d") {
            if date < before && entry.path().is_dir() {
                days.push(date);
            }
        }
    }
    days.sort();
    Ok(days)
}

/// The names in a live day directory; `Err` names a subdirectory, which a day of
/// pinhole's layout never has (the day is then left alone).
fn entries(dir: &Path) -> Result<Result<BTreeSet<String>, String>, CompactError> {
    let mut names = BTreeSet::new();
    for entry in fs::read_dir(dir).map_err(|e| CompactError::io(dir, e))? {
        let entry = entry.map_err(|e| CompactError::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry
            .file_type()
            .map_err(|e| CompactError::io(dir, e))?
            .is_dir()
        {
            return Ok(Err(format!("it holds a directory ({name})")));
        }
        names.insert(name);
    }
    Ok(Ok(names))
}

/// One day to compact, and what its swap needs.
struct Day<'a> {
    date: NaiveDate,
    codec: Codec,
    lock: &'a PublishLock,
    evidence: Option<&'a mut EvidenceLog>,
}

fn compact_day(out: &Path, day: Day<'_>, report: &mut CompactReport) -> Result<(), CompactError> {
    let Day {
        date,
        codec,
        lock,
        evidence,
    } = day;
    let live = partition_dir(out, date);
    let names = match entries(&live)? {
        Ok(names) => names,
        Err(why) => {
            report.skipped.push((date, why));
            return Ok(());
        }
    };
    let mut found = Vec::new();
    for name in names.iter().filter(|n| is_published(n)) {
        match Input::read(&live.join(name)) {
            Ok(input) => found.push(input),
            Err(e) => {
                report.skipped.push((date, e.to_string()));
                return Ok(());
            }
        }
    }
    let groups = inputs::by_host(found);
    if groups.is_empty() {
        return Ok(());
    }
    let prepared = out
        .join(WORK_DIR)
        .join(live.file_name().expect("a date= name"));
    create_dirs(&prepared).map_err(|e| CompactError::io(&prepared, e))?;
    let mut merged = Vec::new();
    for (host, group) in &groups {
        match merge(&prepared, date, host, group, codec) {
            Ok(m) => merged.push(m),
            Err(e) => {
                let _ = fs::remove_dir_all(&prepared);
                return Err(e);
            }
        }
    }
    let replaced: Vec<&Input> = groups.values().flatten().collect();
    let _swapping = lock.hold().map_err(|e| CompactError::io(out, e))?;
    if let Some(why) = link_the_rest(&live, &prepared, &replaced)? {
        swap::remove_set_aside(&prepared, &live)?;
        report.skipped.push((date, why));
        return Ok(());
    }
    if let Some(log) = evidence {
        // Before the swap: a run cut short between the two is finished by the next
        // run, whose entries say the same.
        log_replacements(out, log, &live, &groups, &merged)?;
    }
    sync_dir(&prepared).map_err(|e| CompactError::io(&prepared, e))?;
    swap::exchange(&live, &prepared)?;
    sync_dir(out).map_err(|e| CompactError::io(out, e))?;
    // `prepared` now names the replaced day.
    swap::remove_set_aside(&prepared, &live)?;
    for m in &mut merged {
        m.output = live.join(m.output.file_name().expect("a file name"));
    }
    report.merged.extend(merged);
    Ok(())
}

/// Each merged file's entry, and one saying which files it replaces.
fn log_replacements(
    out: &Path,
    log: &mut EvidenceLog,
    live: &Path,
    groups: &BTreeMap<String, Vec<Input>>,
    merged: &[Merged],
) -> Result<(), CompactError> {
    let rel = |p: &Path| relative(out, p).map_err(|e| CompactError::io(p, e));
    for (group, m) in groups.values().zip(merged) {
        let at = live.join(m.output.file_name().expect("a file name"));
        let by = rel(&at)?;
        let facts = FileFacts::of_named(&m.output, by.clone())
            .map_err(|e| CompactError::io(&m.output, e))?;
        let paths = group
            .iter()
            .map(|i| rel(&i.path))
            .collect::<Result<_, _>>()?;
        let at_time = crate::evidence::now();
        for entry in [
            Entry::File(facts),
            Entry::Replaced {
                paths,
                by,
                at: at_time,
            },
        ] {
            log.append(entry)
                .map_err(|e| CompactError::io(out, io::Error::other(e)))?;
        }
    }
    Ok(())
}

/// A file of the dataset (not hidden, not temporary).
fn is_published(name: &str) -> bool {
    !name.starts_with('.') && name.ends_with(".parquet")
}

/// Under the publish lock: checks that every replaced file is still there as it was,
/// and hard-links every other file of the live day into the prepared one. `Some(why)`
/// when the day changed meanwhile (retention removed a file, say) and must be left.
fn link_the_rest(
    live: &Path,
    prepared: &Path,
    replaced: &[&Input],
) -> Result<Option<String>, CompactError> {
    let names = match entries(live)? {
        Ok(names) => names,
        Err(why) => return Ok(Some(why)),
    };
    for r in replaced {
        let now = fs::metadata(&r.path).map(|m| m.len()).ok();
        if !names.contains(&r.name) || now != Some(r.bytes) {
            return Ok(Some(format!(
                "{} changed or went while the day was compacted; run again",
                r.name
            )));
        }
    }
    let replaced: BTreeSet<&str> = replaced.iter().map(|r| r.name.as_str()).collect();
    for name in &names {
        if replaced.contains(name.as_str()) || swap::is_in_progress(name) {
            continue;
        }
        let to = prepared.join(name);
        match fs::hard_link(live.join(name), &to) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Ok(Some(format!("{name} is also the name of a merged file")))
            }
            Err(e) => return Err(CompactError::io(&to, e)),
        }
    }
    Ok(None)
}

/// Writes one host's files of the day, in order, into one file in `prepared`.
fn merge(
    prepared: &Path,
    date: NaiveDate,
    host: &str,
    group: &[Input],
    codec: Codec,
) -> Result<Merged, CompactError> {
    let mut rows = 0u64;
    let mut span: Option<(i64, i64)> = None;
    let start = group
        .first()
        .and_then(|i| i.name.split('-').nth(1))
        .map(str::to_owned);
    let name = layout::compacted_name(host, date, start.as_deref(), group.len());
    let target = prepared.join(format!("{name}.parquet"));
    // Not `.parquet.tmp`: that suffix marks a writer's file, which follows the live day.
    let temp = prepared.join(format!(".{name}.compacting"));
    if target.exists() {
        return Err(CompactError::Unsupported {
            path: target,
            message: "two hosts' files merge into one name".into(),
        });
    }
    let mut file = PendingParquet::create(temp, target.clone(), host, codec)?;
    for input in group {
        let reader = File::open(&input.path)
            .map_err(|e| CompactError::io(&input.path, e))
            .and_then(|f| {
                ParquetRecordBatchReaderBuilder::try_new(f)
                    .and_then(|b| b.build())
                    .map_err(|e| CompactError::read(&input.path, e))
            })?;
        for batch in reader {
            let batch = batch.map_err(|e| CompactError::read(&input.path, e))?;
            // Another engine's rewrite (plain strings, other codecs) in pinhole's schema.
            let batch =
                crate::conform::conform(batch).map_err(|e| CompactError::read(&input.path, e))?;
            if let Some(ts) = event_times(&batch) {
                if let (Some(&lo), Some(&hi)) = (ts.iter().min(), ts.iter().max()) {
                    span = Some(span.map_or((lo, hi), |(a, b)| (a.min(lo), b.max(hi))));
                }
            }
            rows += batch.num_rows() as u64;
            file.write(&batch)?;
        }
    }
    let expected: u64 = group.iter().map(|i| i.rows).sum();
    if rows != expected {
        return Err(CompactError::read(
            &group[0].path,
            format!("the day's files of {host} gave {rows} rows, their footers say {expected}"),
        ));
    }
    let lost_events: u64 = group.iter().map(|i| i.lost_events).sum();
    let mut kv = vec![
        KeyValue::new(meta::LOST_EVENTS.into(), lost_events.to_string()),
        KeyValue::new(
            meta::COMPACTED_FROM.into(),
            group
                .iter()
                .map(Input::describe)
                .collect::<Vec<_>>()
                .join("\n"),
        ),
    ];
    if let Some((first, last)) = span {
        kv.push(KeyValue::new(meta::FIRST_TS.into(), rfc3339(first)));
        kv.push(KeyValue::new(meta::LAST_TS.into(), rfc3339(last)));
    }
    let output = file.publish(kv)?.path;
    let bytes_after = fs::metadata(&output)
        .map_err(|e| CompactError::io(&output, e))?
        .len();
    Ok(Merged {
        date,
        host: host.to_owned(),
        output,
        files_before: group.len(),
        bytes_before: group.iter().map(|i| i.bytes).sum(),
        bytes_after,
        rows,
        lost_events,
    })
}
