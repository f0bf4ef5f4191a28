//! The crash-safe dataset writer. Events are buffered in memory, made durable in a
//! staging log every flush interval, and published as complete Parquet files by an
//! atomic rename at rotation and at shutdown. Opening a sink first publishes whatever
//! an earlier, uncleanly stopped process left in staging.

use std::fs::{self, File};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use chrono::{DateTime, NaiveDate, Utc};
use parquet::file::metadata::KeyValue;

use crate::batch::BatchBuilder;
use crate::error::SinkError;
use crate::event::Event;
use crate::evidence::{relative, Entry, EvidenceLog, FileFacts, SigningKey};
use crate::layout::{self, date_of};
use crate::parquet_file::Codec;
use crate::parquet_file::PendingParquet;
use crate::parquet_file::Written;
use crate::publish_lock::{PublishGuard, PublishLock};
use crate::schema::meta;
use crate::staging::{read_staged, StagedMeta, StagingLog};

/// What the sink does when the disk (or a quota) is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DiskFullAction {
    /// Keep running: events that cannot be written are counted as lost (so the gap is
    /// exact), and writing resumes by itself when space returns.
    #[default]
    Continue,
    /// Stop with an error; what was published or staged stays intact.
    Stop,
}

#[derive(Debug, Clone)]
pub struct SinkConfig {
    pub out_dir: PathBuf,
    pub host: String,
    /// Upper bound on what a kill -9 can lose.
    pub flush_interval: Duration,
    /// Also flush once this many events are buffered, bounding memory and the size
    /// of each staging write after a burst.
    pub flush_rows: usize,
    pub rotate_interval: Duration,
    pub rotate_bytes: u64,
    /// How string and hash columns are compressed.
    pub compression: Codec,
    pub on_disk_full: DiskFullAction,
    /// Signs a checkpoint of the evidence log after every change (none: the log is
    /// kept, unsigned).
    pub signing_key: Option<SigningKey>,
}

impl SinkConfig {
    pub fn new(out_dir: impl Into<PathBuf>, host: impl Into<String>) -> Self {
        SinkConfig {
            out_dir: out_dir.into(),
            host: host.into(),
            flush_interval: Duration::from_secs(1),
            flush_rows: 65_536,
            rotate_interval: Duration::from_secs(15 * 60),
            rotate_bytes: 128 << 20,
            compression: Codec::Lz4,
            on_disk_full: DiskFullAction::Continue,
            signing_key: None,
        }
    }
}

/// Counters a status line reads from another thread.
#[derive(Debug, Default)]
pub struct SinkStats {
    /// Events durable in staging or published.
    pub events_written: AtomicU64,
    pub files_published: AtomicU64,
    pub bytes_published: AtomicU64,
}

/// What `Sink::open` found and published from an earlier unclean stop.
#[derive(Debug, Default)]
pub struct RecoveryReport {
    pub files_published: Vec<PathBuf>,
    pub events_recovered: u64,
    /// Logs whose last message was torn by the crash (that message is dropped).
    pub torn_logs: usize,
    /// Logs that had been published already; only their staging copy was removed.
    pub already_published: usize,
}

struct Segment {
    name: String,
    date: NaiveDate,
    log: StagingLog,
    parquet: PendingParquet,
    opened: Instant,
    first_ts: i64,
    last_ts: i64,
}

pub struct Sink {
    cfg: SinkConfig,
    builder: BatchBuilder,
    segment: Option<Segment>,
    /// The date partition the buffered events belong to.
    open_date: Option<NaiveDate>,
    /// The kernel's count of events it could not deliver.
    lost_total: u64,
    /// Events that could not be written because the disk was full.
    lost_disk: u64,
    lost_published: u64,
    /// Rows taken from the buffer and not yet durable in staging.
    at_risk: u64,
    /// Since when the disk has been full (writing is retried at every flush).
    full_since: Option<(Instant, u64)>,
    last_flush: Instant,
    seq: u64,
    stats: Arc<SinkStats>,
    publish_lock: PublishLock,
    evidence: EvidenceLog,
    _lock: File,
}

impl Sink {
    /// Takes the dataset's writer lock and recovers staged data, then accepts events.
    pub fn open(cfg: SinkConfig) -> Result<(Sink, RecoveryReport), SinkError> {
        let out = &cfg.out_dir;
        let out_err = |e| SinkError::OutDir {
            path: out.clone(),
            cause: e,
        };
        layout::create_dirs(out).map_err(out_err)?;
        let staging = layout::staging_dir(out);
        layout::create_dirs(&staging).map_err(out_err)?;
        let lock_path = out.join(layout::LOCK_FILE);
        let lock = layout::file_options().open(&lock_path).map_err(out_err)?;
        lock.try_lock()
            .map_err(|_| SinkError::Locked { path: out.clone() })?;
        let publish_lock = PublishLock::open(out).map_err(out_err)?;
        if cfg.signing_key.is_none() && crate::evidence::is_signed(out) {
            tracing::warn!(
                "{}'s evidence log is signed but no signing key was given: what is added now is not signed, and `pinhole verify` will report it",
                out.display()
            );
        }
        let mut evidence = {
            let _publishing = hold(&publish_lock, out)?;
            EvidenceLog::open(out, cfg.signing_key.clone())?
        };

        let (report, full) = match recover(&cfg, &publish_lock, &mut evidence) {
            Ok(r) => (r, None),
            // Staged data stays staged; it is published once space returns.
            Err(e) if e.is_disk_full() && cfg.on_disk_full == DiskFullAction::Continue => {
                tracing::warn!(
                    "{e}: recording starts anyway; events are counted as lost until space returns"
                );
                (RecoveryReport::default(), Some((Instant::now(), 0)))
            }
            Err(e) => return Err(e),
        };
        let mut sink = Sink {
            builder: BatchBuilder::new(&cfg.host),
            segment: None,
            open_date: None,
            lost_total: 0,
            lost_disk: 0,
            lost_published: 0,
            at_risk: 0,
            full_since: full,
            last_flush: Instant::now(),
            seq: 0,
            stats: Arc::new(SinkStats::default()),
            publish_lock,
            evidence,
            _lock: lock,
            cfg,
        };
        sink.mark_run(true)?;
        Ok((sink, report))
    }

    pub fn stats(&self) -> Arc<SinkStats> {
        self.stats.clone()
    }

    pub fn buffered(&self) -> usize {
        self.builder.len()
    }

    /// Buffers one event. A new UTC date closes the current file first, so each file
    /// belongs to one `date=` partition.
    pub fn append(&mut self, e: &Event<'_>) -> Result<(), SinkError> {
        let date = date_of(e.ts_ns);
        match self.open_date {
            None => self.open_date = Some(date),
            Some(open) if date > open => {
                self.rotate()?;
                self.open_date = Some(date);
            }
            Some(_) => {}
        }
        self.builder.append(e);
        if self.builder.len() >= self.cfg.flush_rows {
            self.flush()?;
        }
        Ok(())
    }

    /// The kernel's cumulative count of events it could not deliver.
    pub fn set_lost_total(&mut self, total: u64) {
        self.lost_total = total;
    }

    /// Flushes when the flush interval has passed and rotates when the file is due.
    pub fn tick(&mut self, now: Instant) -> Result<(), SinkError> {
        if now.duration_since(self.last_flush) >= self.cfg.flush_interval {
            self.flush()?;
        }
        let due = self.segment.as_ref().is_some_and(|s| {
            now.duration_since(s.opened) >= self.cfg.rotate_interval
                || s.parquet.size() >= self.cfg.rotate_bytes
        });
        if due {
            self.rotate()?;
        }
        Ok(())
    }

    /// Events lost so far: dropped by the kernel or not written for want of space.
    fn lost_now(&self) -> u64 {
        self.lost_total + self.lost_disk
    }

    /// Events lost because the disk was full, since the sink opened.
    pub fn lost_to_full_disk(&self) -> u64 {
        self.lost_disk
    }

    /// Whether writing is suspended for want of space.
    pub fn disk_full(&self) -> bool {
        self.full_since.is_some()
    }

    /// Makes everything buffered durable in staging.
    pub fn flush(&mut self) -> Result<(), SinkError> {
        self.guarded(Self::flush_inner)
    }

    /// Runs a write; with `DiskFullAction::Continue` a full disk is not an error: the
    /// open segment is given up (left staged for recovery, with exactly its successful
    /// appends), the rows that were not yet durable are counted as lost, and writing is
    /// retried at the next flush.
    fn guarded(
        &mut self,
        op: impl FnOnce(&mut Self) -> Result<(), SinkError>,
    ) -> Result<(), SinkError> {
        match op(self) {
            Ok(()) => Ok(()),
            Err(e) if e.is_disk_full() && self.cfg.on_disk_full == DiskFullAction::Continue => {
                let lost = std::mem::take(&mut self.at_risk);
                self.lost_disk += lost;
                if let Some(seg) = self.segment.take() {
                    // Its recorded losses are published with it, at recovery.
                    self.lost_published += seg.log.abandon();
                }
                self.open_date = None;
                if self.full_since.is_none() {
                    tracing::warn!(
                        "{e}: recording goes on; events are counted as lost (pinhole.lost_events) until space returns"
                    );
                    self.full_since = Some((Instant::now(), self.lost_disk - lost));
                }
                Ok(())
            }
            Err(e) => {
                self.at_risk = 0;
                Err(e)
            }
        }
    }

    /// After a full disk: publishes the segments given up meanwhile (as recovery does
    /// after a crash), then writing goes on as before.
    fn resume(&mut self) -> Result<(), SinkError> {
        let Some((since, lost_before)) = self.full_since else {
            return Ok(());
        };
        let report = recover(&self.cfg, &self.publish_lock, &mut self.evidence)?;
        self.full_since = None;
        for path in &report.files_published {
            self.note_published(path);
        }
        tracing::info!(
            after_s = since.elapsed().as_secs(),
            lost = self.lost_disk - lost_before,
            republished_files = report.files_published.len(),
            "disk space is back: recording resumed"
        );
        Ok(())
    }

    fn flush_inner(&mut self) -> Result<(), SinkError> {
        self.last_flush = Instant::now();
        if self.builder.is_empty() {
            if self.full_since.is_some() {
                return self.resume();
            }
            let unpublished_lost = self.lost_now() - self.lost_published;
            if let Some(seg) = &mut self.segment {
                seg.log.set_lost_events(unpublished_lost)?;
            }
            return Ok(());
        }
        let (first, last) = self.builder.time_span().expect("non-empty builder");
        let batch = self.builder.finish()?;
        self.at_risk = batch.num_rows() as u64;
        self.resume()?;
        let unpublished_lost = self.lost_now() - self.lost_published;
        if self.segment.is_none() {
            let date = self.open_date.unwrap_or_else(|| date_of(first));
            self.segment = Some(self.new_segment(date, first)?);
        }
        let seg = self.segment.as_mut().expect("segment just ensured");
        seg.log.set_lost_events(unpublished_lost)?;
        seg.log.append(&batch)?;
        // Durable now: a failure from here on gives the segment up, not these rows.
        self.at_risk = 0;
        seg.parquet.write(&batch)?;
        seg.first_ts = seg.first_ts.min(first);
        seg.last_ts = seg.last_ts.max(last);
        self.stats
            .events_written
            .fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
        Ok(())
    }

    fn new_segment(&mut self, date: NaiveDate, start_ns: i64) -> Result<Segment, SinkError> {
        let out = &self.cfg.out_dir;
        self.seq += 1;
        let name = layout::segment_name(&self.cfg.host, start_ns, std::process::id(), self.seq);
        let log = StagingLog::create(
            &layout::staging_dir(out),
            &name,
            StagedMeta {
                date,
                lost_events: self.lost_now() - self.lost_published,
            },
        )?;
        let parquet = {
            let _publishing = self.hold_publish_lock()?;
            PendingParquet::create(
                layout::temp_path(out, date, &name),
                layout::published_path(out, date, &name),
                &self.cfg.host,
                self.cfg.compression,
            )?
        };
        Ok(Segment {
            name,
            date,
            log,
            parquet,
            opened: Instant::now(),
            first_ts: i64::MAX,
            last_ts: i64::MIN,
        })
    }

    /// Flushes, then publishes the open file (if any).
    pub fn rotate(&mut self) -> Result<(), SinkError> {
        self.guarded(Self::rotate_inner)
    }

    fn rotate_inner(&mut self) -> Result<(), SinkError> {
        self.flush_inner()?;
        self.open_date = None;
        let Some(seg) = self.segment.take() else {
            return Ok(());
        };
        let lost = self.lost_now() - self.lost_published;
        let out = &self.cfg.out_dir;
        let publishing = hold(&self.publish_lock, out)?;
        let published = seg.parquet.publish(vec![
            KeyValue::new(meta::LOST_EVENTS.into(), lost.to_string()),
            KeyValue::new(meta::FIRST_TS.into(), rfc3339(seg.first_ts)),
            KeyValue::new(meta::LAST_TS.into(), rfc3339(seg.last_ts)),
        ]);
        let logged = published
            .as_ref()
            .ok()
            .map(|written| log_written(&mut self.evidence, out, written));
        drop(publishing);
        let path = match published {
            Ok(written) => written.path,
            Err(e) => {
                // Every flushed row is in the log: recovery publishes it later.
                self.lost_published += seg.log.abandon();
                return Err(e);
            }
        };
        self.lost_published += lost;
        if let Some(Err(e)) = logged {
            // Published but not in the evidence log: the staging log stays, and the
            // next start records the file (see `recover`).
            self.note_published(&path);
            return Err(e);
        }
        seg.log.remove()?;
        self.note_published(&path);
        tracing::debug!(file = %path.display(), segment = %seg.name, date = %seg.date, "published");
        Ok(())
    }

    /// The publish lock, for creating or publishing a file in a date partition.
    fn hold_publish_lock(&self) -> Result<PublishGuard<'_>, SinkError> {
        hold(&self.publish_lock, &self.cfg.out_dir)
    }

    /// A start or stop of this writer, in the evidence log.
    fn mark_run(&mut self, start: bool) -> Result<(), SinkError> {
        let (at, writer, pid) = (
            crate::evidence::now(),
            self.cfg.host.clone(),
            std::process::id(),
        );
        let entry = match start {
            true => Entry::Start { at, writer, pid },
            false => Entry::Stop { at, writer, pid },
        };
        let _publishing = hold(&self.publish_lock, &self.cfg.out_dir)?;
        Ok(self.evidence.append(entry)?)
    }

    fn note_published(&self, path: &std::path::Path) {
        self.stats.files_published.fetch_add(1, Ordering::Relaxed);
        let size = fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        self.stats
            .bytes_published
            .fetch_add(size, Ordering::Relaxed);
    }

    /// Publishes everything. Losses with no event to attach to still get a (row-less)
    /// file, so the audit trail says that events were lost.
    pub fn close(mut self) -> Result<Arc<SinkStats>, SinkError> {
        self.rotate()?;
        let lost = self.lost_now() - self.lost_published;
        if lost > 0 {
            let published = self.guarded(|s| {
                let now = Utc::now().timestamp_nanos_opt().unwrap_or_default();
                let seg = s.new_segment(date_of(now), now)?;
                let out = &s.cfg.out_dir;
                let publishing = hold(&s.publish_lock, out)?;
                let published = seg.parquet.publish(vec![KeyValue::new(
                    meta::LOST_EVENTS.into(),
                    lost.to_string(),
                )]);
                let logged = published
                    .as_ref()
                    .ok()
                    .map(|written| log_written(&mut s.evidence, out, written));
                drop(publishing);
                let path = match published {
                    Ok(written) => written.path,
                    Err(e) => {
                        seg.log.abandon();
                        return Err(e);
                    }
                };
                logged.transpose()?;
                seg.log.remove()?;
                s.note_published(&path);
                Ok(())
            });
            published?;
        }
        if self.full_since.is_some() {
            let uncounted = self.lost_now() - self.lost_published;
            tracing::error!(
                lost_to_full_disk = self.lost_disk,
                "the disk is still full: staged events are published by the next `pinhole record` on this dataset; {uncounted} lost events could not be counted in it"
            );
        }
        self.mark_run(false)?;
        Ok(self.stats)
    }
}

pub(crate) fn rfc3339(ts_ns: i64) -> String {
    DateTime::<Utc>::from_timestamp_nanos(ts_ns).to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// First and last event time of a batch.
fn time_span(b: &RecordBatch) -> Option<(i64, i64)> {
    let ts = crate::readback::event_times(b)?;
    Some((*ts.iter().min()?, *ts.iter().max()?))
}

fn widen(span: Option<(i64, i64)>, more: Option<(i64, i64)>) -> Option<(i64, i64)> {
    match (span, more) {
        (Some((a, b)), Some((c, d))) => Some((a.min(c), b.max(d))),
        (x, y) => x.or(y),
    }
}

/// Publishes staged segments left by an unclean stop (or given up on a full disk), and
/// removes torn temporaries. Each log is streamed into its file a batch at a time, so
/// memory stays bounded by the Parquet writer's row group, whatever was staged.
fn recover(
    cfg: &SinkConfig,
    lock: &PublishLock,
    evidence: &mut EvidenceLog,
) -> Result<RecoveryReport, SinkError> {
    let out = &cfg.out_dir;
    remove_stale_temporaries(out)?;
    let mut report = RecoveryReport::default();
    for seg in read_staged(&layout::staging_dir(out))? {
        let lost = seg.meta.as_ref().map_or(0, |m| m.lost_events);
        let mut batches = seg.batches()?;
        let first = batches.next();
        let date = match (&seg.meta, &first) {
            (Some(m), _) => m.date,
            (None, Some(b)) => date_of(time_span(b).map_or(0, |s| s.0)),
            (None, None) => {
                report.torn_logs += usize::from(batches.torn);
                seg.remove()?;
                continue;
            }
        };
        if first.is_none() && lost == 0 {
            report.torn_logs += usize::from(batches.torn);
            seg.remove()?;
            continue;
        }
        let target = layout::published_path(out, date, &seg.name);
        if target.exists() {
            // The crash came after the rename but before staging was cleaned up, or
            // before the file's evidence entry: that is written now.
            let publishing = hold(lock, out)?;
            if !evidence
                .has_file(&relative(out, &target).map_err(|e| SinkError::write(&target, e))?)
            {
                log_file(evidence, out, &target)?;
            }
            drop(publishing);
            report.already_published += 1;
            seg.remove()?;
            continue;
        }
        let mut file = {
            let _publishing = hold(lock, out)?;
            PendingParquet::create(
                layout::temp_path(out, date, &seg.name),
                target,
                &cfg.host,
                cfg.compression,
            )?
        };
        let (mut rows, mut span) = (0u64, None);
        for b in first.into_iter().chain(&mut batches) {
            // A log staged by an earlier pinhole is published in today's schema.
            let b = crate::conform::conform(b)
                .map_err(|e| SinkError::encode(layout::staging_dir(out).join(&seg.name), e))?;
            rows += b.num_rows() as u64;
            span = widen(span, time_span(&b));
            file.write(&b)?;
        }
        report.torn_logs += usize::from(batches.torn);
        let mut kv = vec![
            KeyValue::new(meta::LOST_EVENTS.into(), lost.to_string()),
            KeyValue::new(meta::RECOVERED.into(), "true".to_string()),
        ];
        if let Some((first, last)) = span {
            kv.push(KeyValue::new(meta::FIRST_TS.into(), rfc3339(first)));
            kv.push(KeyValue::new(meta::LAST_TS.into(), rfc3339(last)));
        }
        let path = {
            let _publishing = hold(lock, out)?;
            let written = file.publish(kv)?;
            log_written(evidence, out, &written)?;
            written.path
        };
        report.events_recovered += rows;
        tracing::info!(file = %path.display(), events = rows, "recovered staged events");
        report.files_published.push(path);
        seg.remove()?;
    }
    Ok(report)
}

/// Appends the entry of a file just published, from what its writer knows of it
/// (publish lock held).
fn log_written(
    evidence: &mut EvidenceLog,
    out: &std::path::Path,
    written: &Written,
) -> Result<(), SinkError> {
    let facts =
        FileFacts::from_written(out, written).map_err(|e| SinkError::write(&written.path, e))?;
    Ok(evidence.append(Entry::File(facts))?)
}

/// Appends a published file's entry to the evidence log, reading the file (publish
/// lock held).
fn log_file(
    evidence: &mut EvidenceLog,
    out: &std::path::Path,
    path: &std::path::Path,
) -> Result<(), SinkError> {
    let facts = FileFacts::of(out, path).map_err(|e| SinkError::write(path, e))?;
    Ok(evidence.append(Entry::File(facts))?)
}

fn hold<'a>(lock: &'a PublishLock, out: &std::path::Path) -> Result<PublishGuard<'a>, SinkError> {
    lock.hold()
        .map_err(|e| SinkError::write(out.join(crate::publish_lock::PUBLISH_LOCK_FILE), e))
}

fn remove_stale_temporaries(out: &std::path::Path) -> Result<(), SinkError> {
    let out_err = |e| SinkError::OutDir {
        path: out.to_owned(),
        cause: e,
    };
    for entry in fs::read_dir(out).map_err(out_err)? {
        let dir = entry.map_err(out_err)?.path();
        let is_partition = dir
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("date="));
        if !is_partition || !dir.is_dir() {
            continue;
        }
        for f in fs::read_dir(&dir).map_err(out_err)? {
            let p = f.map_err(out_err)?.path();
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if name.starts_with('.') && name.ends_with(".parquet.tmp") {
                fs::remove_file(&p).map_err(|e| SinkError::write(&p, e))?;
            }
        }
    }
    Ok(())
}
