//! Reading a dataset: listing its files, pruning by date, checking each file's schema,
//! and scanning files on worker threads into one merged summary.

use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use chrono::NaiveDate;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::arrow::ProjectionMask;
use pinhole_recorder::readback::key_value_metadata;
use pinhole_recorder::regular::open_regular;
use pinhole_recorder::schema::{meta, schema, SCHEMA_VERSION};

use crate::foreign::{self, Batches};

use crate::error::AnalyzeError;
use crate::guard::decode_guarded;
use crate::scan::{FileScan, Window};
use crate::summary::Summary;

/// The columns the analyzer reads; nothing else is decoded.
pub const COLUMNS: [&str; 11] = [
    "ts",
    "pid",
    "uid",
    "comm",
    "exe_path",
    "exe_sha256",
    "exe_status",
    "protocol",
    "dst_addr",
    "dst_port",
    "hook",
];

/// Which events count: `since` inclusive, `until` exclusive (ns since the epoch, UTC).
#[derive(Debug, Clone, Copy, Default)]
pub struct Filter {
    pub since_ns: Option<i64>,
    pub until_ns: Option<i64>,
    /// Learn from `would-deny` events too (audit-mode learning). `denied` events
    /// teach only with `learn_denied` (`policy update`, proposing what was refused);
    /// refusals that do not teach are counted apart per app.
    pub learn_would_deny: bool,
    pub learn_denied: bool,
}

pub struct ScanOptions {
    pub filter: Filter,
    /// Carry on past unreadable files, reporting them, instead of stopping.
    pub skip_bad: bool,
    pub threads: usize,
}

/// Progress reports; the binary implements it with a progress bar.
pub trait Progress: Sync {
    fn files(&self, total: usize);
    /// A part of a file was scanned; `file_started` for the part that began a file.
    fn file_done(&self, rows: u64, file_started: bool);
}

impl Progress for () {
    fn files(&self, _: usize) {}
    fn file_done(&self, _: u64, _: bool) {}
}

#[derive(Debug)]
pub struct ScanOutcome {
    pub summary: Summary,
    pub files: usize,
    pub skipped: Vec<(PathBuf, AnalyzeError)>,
}

fn partition_date(path: &Path) -> Option<NaiveDate> {
    path.ancestors()
        .filter_map(|p| p.file_name()?.to_str()?.strip_prefix("date="))
        .find_map(|d| d.parse().ok())
}

const DAY_NS: i64 = 86_400_000_000_000;

fn in_window(date: Option<NaiveDate>, f: &Filter) -> bool {
    let Some(d) = date else { return true };
    let start = d
        .and_hms_opt(0, 0, 0)
        .expect("midnight")
        .and_utc()
        .timestamp_nanos_opt()
        .unwrap_or(i64::MIN);
    !(f.until_ns.is_some_and(|u| start >= u) || f.since_ns.is_some_and(|s| start + DAY_NS <= s))
}

/// Published files of the dataset at `root` whose date partition meets the filter.
pub fn dataset_files(root: &Path, filter: &Filter) -> Result<Vec<PathBuf>, AnalyzeError> {
    if root.is_file() {
        return Ok(vec![root.to_owned()]);
    }
    let files =
        pinhole_recorder::layout::published_files(root).map_err(|e| AnalyzeError::Dataset {
            path: root.to_owned(),
            cause: e,
        })?;
    Ok(files
        .into_iter()
        .filter(|f| in_window(partition_date(f), filter))
        .collect())
}

/// Checks the footer: a pinhole file (or one another engine rewrote from pinhole's: its
/// columns without pinhole's metadata), a schema version this build knows, and the
/// columns the analyzer needs with types it can read as its own. Returns whether the
/// batches need `foreign::conform`.
fn open_checked(
    path: &Path,
) -> Result<(ParquetRecordBatchReaderBuilder<File>, bool), AnalyzeError> {
    let file = open_regular(path).map_err(|e| AnalyzeError::corrupt(path, e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| AnalyzeError::corrupt(path, e))?;
    let version =
        key_value_metadata(builder.metadata().file_metadata()).remove(meta::SCHEMA_VERSION);
    match version.as_deref().map(str::parse::<u32>) {
        None | Some(Ok(0..=SCHEMA_VERSION)) => {}
        _ => {
            return Err(AnalyzeError::NewerSchema {
                path: path.to_owned(),
                found: version.unwrap_or_default(),
                supported: SCHEMA_VERSION,
            })
        }
    }
    let expected = schema();
    for name in COLUMNS {
        let want = expected
            .field_with_name(name)
            .expect("known column")
            .data_type();
        let problem = match builder.schema().field_with_name(name) {
            Ok(f) if f.data_type() == want || older_type(name, f.data_type()) => continue,
            Ok(f) if foreign::readable_as(f.data_type(), want) => continue,
            Ok(f) => format!("has type {}, expected {want}", f.data_type()),
            Err(_) => "is missing".to_owned(),
        };
        return Err(match version {
            // Neither pinhole's metadata nor pinhole's columns.
            None => AnalyzeError::NotPinhole {
                path: path.to_owned(),
            },
            Some(_) => AnalyzeError::WrongSchema {
                path: path.to_owned(),
                column: name.into(),
                problem,
            },
        });
    }
    let conform = foreign::needs_conform(builder.schema());
    Ok((builder, conform))
}

/// Whether column `name` has a non-null value in row groups `part` (true when the
/// statistics cannot tell).
fn any_value(
    meta: &parquet::file::metadata::ParquetMetaData,
    part: &Range<usize>,
    name: &str,
) -> bool {
    let schema = meta.file_metadata().schema_descr();
    let Some(index) = (0..schema.num_columns()).find(|&i| schema.column(i).name() == name) else {
        return false;
    };
    part.clone().any(|rg| {
        let group = meta.row_group(rg);
        let nulls = group
            .column(index)
            .statistics()
            .and_then(|s| s.null_count_opt());
        nulls.is_none_or(|n| n < group.num_rows() as u64)
    })
}

/// Whether every row of row groups `part` has `value` in column `name`, by the
/// statistics (false when they cannot tell, or the column is missing).
fn only_value(
    meta: &parquet::file::metadata::ParquetMetaData,
    part: &Range<usize>,
    name: &str,
    value: &[u8],
) -> bool {
    let schema = meta.file_metadata().schema_descr();
    let Some(index) = (0..schema.num_columns()).find(|&i| schema.column(i).name() == name) else {
        return false;
    };
    part.clone().all(|rg| {
        let Some(stats) = meta.row_group(rg).column(index).statistics() else {
            return false;
        };
        stats.null_count_opt() == Some(0)
            && stats.min_bytes_opt() == Some(value)
            && stats.max_bytes_opt() == Some(value)
    })
}

/// A type schema 1 gave a column that readers still take (`ts` in nanoseconds).
fn older_type(name: &str, t: &arrow_schema::DataType) -> bool {
    use arrow_schema::{DataType, TimeUnit};
    name == "ts" && matches!(t, DataType::Timestamp(TimeUnit::Nanosecond, _))
}

/// Batches of `columns` (a subset of `COLUMNS`) of one checked file.
pub fn read_columns(
    path: &Path,
    columns: &[&str],
) -> Result<Batches<ParquetRecordBatchReader>, AnalyzeError> {
    let (builder, conform) = open_checked(path)?;
    let mask = ProjectionMask::columns(builder.parquet_schema(), columns.iter().copied());
    let inner = builder
        .with_projection(mask)
        .with_batch_size(64 * 1024)
        .build()
        .map_err(|e| AnalyzeError::corrupt(path, e))?;
    Ok(Batches { inner, conform })
}

/// Summarises one file.
pub fn summarize_file(path: &Path, filter: &Filter) -> Result<Summary, AnalyzeError> {
    let mut scan = FileScan::default();
    scan_part(path, filter, None, None, &mut scan)?;
    Ok(scan.finish())
}

/// Scans row groups `row_groups` of a file (all when None) into `scan`; returns the
/// events it added. Given `spill`, a part of two or more row groups keeps its first
/// half and hands the rest to it, so that idle workers can take it: a few large files
/// still keep every thread busy. On an error `scan` holds part of the file.
fn scan_part(
    path: &Path,
    filter: &Filter,
    row_groups: Option<Range<usize>>,
    spill: Option<&mut dyn FnMut(Range<usize>)>,
    scan: &mut FileScan,
) -> Result<u64, AnalyzeError> {
    let (builder, conform) = open_checked(path)?;
    let all = builder.metadata().num_row_groups();
    let mut part = row_groups.unwrap_or(0..all);
    if part.end > all {
        return Err(AnalyzeError::corrupt(
            path,
            "row groups changed while reading",
        ));
    }
    if let Some(spill) = spill.filter(|_| part.len() >= 2) {
        let mid = part.start + part.len() / 2;
        spill(mid..part.end);
        part = part.start..mid;
    }
    // `dst_name` and `ts_ns` are read where the file has them (schema 2); `dst_name`
    // only where some row of the part has one: arrow-rs reads an all-null dictionary
    // column slowly (0.7 s per 10 million rows), and most rows of most files have none.
    let names = any_value(builder.metadata(), &part, "dst_name");
    // `verdict` likewise only where some row is not the recorder's `observed`.
    let decided = !only_value(builder.metadata(), &part, "verdict", b"observed");
    let exact = builder.schema().field_with_name("ts_ns").is_ok();
    let extra = ["ts_ns"]
        .into_iter()
        .chain(names.then_some("dst_name"))
        .chain(decided.then_some("verdict"));
    // With `ts_ns`, the microsecond `ts` says nothing more.
    let wanted = COLUMNS
        .iter()
        .copied()
        .filter(|c| !(exact && *c == "ts"))
        .chain(extra);
    let mask = ProjectionMask::columns(builder.parquet_schema(), wanted);
    let inner = builder
        .with_projection(mask)
        .with_row_groups(part.collect())
        .with_batch_size(64 * 1024)
        .build()
        .map_err(|e| AnalyzeError::corrupt(path, e))?;
    let reader = Batches { inner, conform };
    let window = Window {
        since_ns: filter.since_ns,
        until_ns: filter.until_ns,
        learn_would_deny: filter.learn_would_deny,
        learn_denied: filter.learn_denied,
    };
    let before = scan.events();
    for batch in reader {
        let batch = batch.map_err(|e| AnalyzeError::corrupt(path, e))?;
        scan.add_batch(&batch, window);
    }
    Ok(scan.events() - before)
}

/// Work for the scan's threads: files in order, then parts other workers handed back.
struct Work {
    next_file: AtomicUsize,
    spilled: Mutex<Vec<(usize, Range<usize>)>>,
}

impl Work {
    /// A file (with all its row groups) or a spilled part; None when all is taken.
    fn take(&self, files: usize) -> Option<(usize, Option<Range<usize>>)> {
        if let Some((i, r)) = lock(&self.spilled).pop() {
            return Some((i, Some(r)));
        }
        let i = self.next_file.fetch_add(1, Ordering::Relaxed);
        (i < files).then_some((i, None))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Summarises every file of the dataset on `threads` workers. Each worker merges what
/// it scans into its own summary as it goes (memory follows distinct applications and
/// destinations, not files); merging is order-free, so the outcome does not depend
/// on thread timing.
pub fn summarize(
    root: &Path,
    opts: &ScanOptions,
    progress: &dyn Progress,
) -> Result<ScanOutcome, AnalyzeError> {
    let files = dataset_files(root, &opts.filter)?;
    progress.files(files.len());
    let work = Work {
        next_file: AtomicUsize::new(0),
        spilled: Mutex::new(Vec::new()),
    };
    let failures: Mutex<Vec<(usize, AnalyzeError)>> = Mutex::new(Vec::new());
    let summaries: Mutex<Vec<Summary>> = Mutex::new(Vec::new());
    // Without --skip-bad a failure ends the run, so parts are scanned straight into the
    // worker's summary. With it, a file is scanned on its own and absorbed only once
    // read whole: a file that fails halfway adds nothing.
    std::thread::scope(|s| {
        for _ in 0..opts.threads.max(1).min(files.len().max(1)) {
            s.spawn(|| {
                let mut acc = FileScan::default();
                while let Some((i, part)) = work.take(files.len()) {
                    let path = &files[i];
                    let whole = part.is_none();
                    let mut spill = |r| lock(&work.spilled).push((i, r));
                    // With --skip-bad a file counts whole or not at all: no parts.
                    let spill = (!opts.skip_bad).then_some(&mut spill as &mut dyn FnMut(_));
                    let r = decode_guarded(path, || match opts.skip_bad {
                        false => scan_part(path, &opts.filter, part, spill, &mut acc),
                        true => {
                            let mut own = FileScan::default();
                            let events = scan_part(path, &opts.filter, part, spill, &mut own)?;
                            acc.absorb(own);
                            Ok(events)
                        }
                    });
                    match r {
                        Ok(events) => progress.file_done(events, whole),
                        Err(e) => {
                            progress.file_done(0, whole);
                            lock(&failures).push((i, e));
                            if !opts.skip_bad {
                                work.next_file.store(files.len(), Ordering::Relaxed);
                            }
                        }
                    }
                }
                lock(&summaries).push(acc.finish());
            });
        }
    });
    let mut failures = failures.into_inner().unwrap_or_else(|e| e.into_inner());
    // The first bad file in dataset order is the one reported, whatever the timing.
    failures.sort_by_key(|(i, _)| *i);
    failures.dedup_by_key(|(i, _)| *i);
    if !opts.skip_bad {
        if let Some((_, e)) = failures.into_iter().next() {
            return Err(e);
        }
        failures = Vec::new();
    }
    let skipped = failures
        .into_iter()
        .map(|(i, e)| (files[i].clone(), e))
        .collect();
    let mut summary = Summary::default();
    for part in summaries.into_inner().unwrap_or_else(|e| e.into_inner()) {
        summary.merge(part);
    }
    if summary.events == 0 {
        let window = match (opts.filter.since_ns, opts.filter.until_ns) {
            (None, None) => String::new(),
            _ => " within the --since/--until window".into(),
        };
        return Err(AnalyzeError::Empty {
            path: root.to_owned(),
            window,
        });
    }
    Ok(ScanOutcome {
        summary,
        files: files.len(),
        skipped,
    })
}
