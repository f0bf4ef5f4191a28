//! The open segment's on-disk log: an Arrow IPC stream, compressed as one zstd stream
//! (`frames`), appended and fsynced at every flush, plus a small sidecar with what the Parquet footer will need. A kill -9 leaves
//! at most a torn last message, which recovery drops; everything before it is kept.

use std::cell::Cell;
use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use arrow_array::RecordBatch;
use arrow_ipc::reader::StreamReader;
use arrow_ipc::writer::StreamWriter;
use chrono::NaiveDate;

use crate::error::SinkError;
use crate::frames::{FrameReader, FrameWriter, MAGIC};
use crate::layout::{sync_dir, STAGED_DATA_EXT, STAGED_META_EXT, STAGED_STREAM_EXT};
use crate::schema::schema;

/// The sidecar: where the segment publishes to and how many events it lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StagedMeta {
    pub date: NaiveDate,
    pub lost_events: u64,
}

impl StagedMeta {
    fn encode(&self) -> String {
        format!("date={}\nlost_events={}\n", self.date, self.lost_events)
    }

    fn decode(text: &str) -> Option<Self> {
        let mut date = None;
        let mut lost = None;
        for line in text.lines() {
            match line.split_once('=') {
                Some(("date", v)) => date = v.parse().ok(),
                Some(("lost_events", v)) => lost = v.parse().ok(),
                _ => {}
            }
        }
        Some(StagedMeta {
            date: date?,
            lost_events: lost?,
        })
    }
}

pub(crate) struct StagingLog {
    /// Encodes into memory; each append writes what it encoded as one record.
    writer: StreamWriter<Vec<u8>>,
    frames: FrameWriter,
    /// Unbuffered: after a failed write nothing waits to be written later, so cutting
    /// the file back to `durable_len` leaves exactly the complete frames.
    file: File,
    data_path: PathBuf,
    meta_path: PathBuf,
    meta: StagedMeta,
    /// Length of the log after its last successful append.
    durable_len: u64,
}

impl StagingLog {
    pub fn create(dir: &Path, name: &str, meta: StagedMeta) -> Result<Self, SinkError> {
        let data_path = dir.join(format!("{name}.{STAGED_DATA_EXT}"));
        let meta_path = dir.join(format!("{name}.{STAGED_META_EXT}"));
        write_meta(&meta_path, &meta)?;
        let mut file = OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(crate::layout::FILE_MODE)
            .open(&data_path)
            .map_err(|e| SinkError::write(&data_path, e))?;
        file.write_all(MAGIC)
            .map_err(|e| SinkError::write(&data_path, e))?;
        let frames = FrameWriter::new().map_err(|e| SinkError::write(&data_path, e))?;
        // The schema message waits in memory and goes out with the first append.
        let writer =
            StreamWriter::try_new(Vec::new(), &schema()).map_err(|e| arrow_error(&data_path, e))?;
        sync_dir(dir).map_err(|e| SinkError::write(dir, e))?;
        Ok(StagingLog {
            writer,
            frames,
            file,
            data_path,
            meta_path,
            meta,
            // The magic is not synced on its own: a log holding only (part of) it
            // promised nothing, and recovery drops it.
            durable_len: MAGIC.len() as u64,
        })
    }

    /// Appends a batch and makes it durable before returning.
    pub fn append(&mut self, batch: &RecordBatch) -> Result<(), SinkError> {
        self.writer
            .write(batch)
            .map_err(|e| arrow_error(&self.data_path, e))?;
        let encoded = std::mem::take(self.writer.get_mut());
        let file = &mut self.file;
        self.frames
            .record(&encoded)
            .and_then(|record| file.write_all(&record))
            .and_then(|_| file.sync_data())
            .map_err(|e| SinkError::write(&self.data_path, e))?;
        self.durable_len = file
            .metadata()
            .map_err(|e| SinkError::write(&self.data_path, e))?
            .len();
        Ok(())
    }

    /// Gives the log up after a failed write: cuts off whatever part of a message the
    /// failure left, so the log holds exactly the appends that succeeded, and leaves it
    /// staged for recovery. Returns the lost-event count its sidecar records.
    pub fn abandon(self) -> u64 {
        let file = &self.file;
        if let Err(e) = file
            .set_len(self.durable_len)
            .and_then(|_| file.sync_data())
        {
            tracing::warn!(log = %self.data_path.display(), "cutting a torn staging write: {e} (recovery drops it)");
        }
        self.meta.lost_events
    }

    pub fn set_lost_events(&mut self, lost: u64) -> Result<(), SinkError> {
        if lost != self.meta.lost_events {
            // Memory follows the disk: what `abandon` reports is what recovery will read.
            let meta = StagedMeta {
                lost_events: lost,
                ..self.meta.clone()
            };
            write_meta(&self.meta_path, &meta)?;
            self.meta = meta;
        }
        Ok(())
    }

    /// Removes the log once its contents are published.
    pub fn remove(self) -> Result<(), SinkError> {
        remove_segment_files(&self.data_path, &self.meta_path)
    }
}

fn arrow_error(path: &Path, e: arrow_schema::ArrowError) -> SinkError {
    match e {
        arrow_schema::ArrowError::IoError(_, io) => SinkError::write(path, io),
        other => SinkError::encode(path, other),
    }
}

fn write_meta(path: &Path, meta: &StagedMeta) -> Result<(), SinkError> {
    let tmp = path.with_extension("meta.tmp");
    let mut f = crate::layout::file_options()
        .open(&tmp)
        .map_err(|e| SinkError::write(&tmp, e))?;
    f.write_all(meta.encode().as_bytes())
        .and_then(|_| f.sync_data())
        .map_err(|e| SinkError::write(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| SinkError::write(path, e))
}

fn remove_segment_files(data: &Path, meta: &Path) -> Result<(), SinkError> {
    for p in [data, meta] {
        match fs::remove_file(p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(SinkError::write(p, e)),
        }
    }
    if let Some(dir) = data.parent() {
        sync_dir(dir).map_err(|e| SinkError::write(dir, e))?;
    }
    Ok(())
}

/// A segment left behind by a process that did not shut down cleanly. Its batches
/// are read one at a time (`batches`): recovery memory does not grow with the log.
pub(crate) struct StagedSegment {
    pub name: String,
    pub meta: Option<StagedMeta>,
    data_path: PathBuf,
    meta_path: PathBuf,
    /// Framed (`frames`), or a plain IPC stream of an older pinhole.
    framed: bool,
}

/// The complete messages of a staged log, in order; `torn` is set when the log ended
/// in a partly written message (the crash happened mid-flush), which is dropped.
pub(crate) struct StagedBatches {
    reader: Option<StreamReader<Box<dyn Read>>>,
    pub torn: bool,
    /// The framing's own verdict on the last frame.
    frames_torn: Option<Rc<Cell<bool>>>,
}

impl Iterator for StagedBatches {
    type Item = RecordBatch;

    fn next(&mut self) -> Option<RecordBatch> {
        match self.reader.as_mut()?.next() {
            Some(Ok(b)) => Some(b),
            Some(Err(_)) => {
                self.torn = true;
                self.reader = None;
                None
            }
            None => {
                self.torn |= self.frames_torn.as_ref().is_some_and(|t| t.get());
                None
            }
        }
    }
}

impl StagedSegment {
    pub fn batches(&self) -> Result<StagedBatches, SinkError> {
        let file = File::open(&self.data_path).map_err(|e| SinkError::write(&self.data_path, e))?;
        let (input, frames_torn): (Box<dyn Read>, _) = match self.framed {
            true => {
                let (r, torn) = FrameReader::new(BufReader::new(file))
                    .map_err(|e| SinkError::write(&self.data_path, e))?;
                (Box::new(r), Some(torn))
            }
            false => (Box::new(BufReader::new(file)), None),
        };
        Ok(match StreamReader::try_new(input, None) {
            Ok(r) => StagedBatches {
                reader: Some(r),
                torn: false,
                frames_torn,
            },
            // Not even the schema made it to disk: nothing was promised from this log.
            Err(_) => StagedBatches {
                reader: None,
                torn: frames_torn.is_some_and(|t| t.get()) || !self.framed,
                frames_torn: None,
            },
        })
    }

    pub fn remove(self) -> Result<(), SinkError> {
        remove_segment_files(&self.data_path, &self.meta_path)
    }
}

/// Every staged segment in `dir`, in name order.
pub(crate) fn read_staged(dir: &Path) -> Result<Vec<StagedSegment>, SinkError> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => {
            return Err(SinkError::OutDir {
                path: dir.to_owned(),
                cause: e,
            })
        }
    };
    let mut names = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| SinkError::OutDir {
                path: dir.to_owned(),
                cause: e,
            })?
            .path();
        match path.extension().and_then(|e| e.to_str()) {
            Some(STAGED_DATA_EXT) | Some(STAGED_STREAM_EXT) => names.push(path),
            // A sidecar whose log never got created, or a half-written sidecar.
            Some("tmp") => {
                let _ = fs::remove_file(&path);
            }
            Some(STAGED_META_EXT)
                if !path.with_extension(STAGED_DATA_EXT).exists()
                    && !path.with_extension(STAGED_STREAM_EXT).exists() =>
            {
                let _ = fs::remove_file(&path);
            }
            _ => {}
        }
    }
    names.sort();
    for data_path in names {
        let name = data_path
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let meta_path = data_path.with_extension(STAGED_META_EXT);
        let meta = fs::read_to_string(&meta_path)
            .ok()
            .and_then(|t| StagedMeta::decode(&t));
        let framed = data_path.extension().is_some_and(|e| e == STAGED_DATA_EXT);
        out.push(StagedSegment {
            name,
            meta,
            data_path,
            meta_path,
            framed,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_round_trips() {
        let m = StagedMeta {
            date: "2026-11-22".parse().unwrap(),
            lost_events: 17,
        };
        assert_eq!(StagedMeta::decode(&m.encode()), Some(m));
        assert_eq!(StagedMeta::decode("date=bogus\n"), None);
    }
}
