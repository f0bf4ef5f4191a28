//! Writing one Parquet file under a temporary name and publishing it atomically.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{WriterProperties, WriterVersion};
use parquet::schema::types::ColumnPath;
use sha2::{Digest, Sha256};

use crate::error::SinkError;
use crate::layout::sync_dir;
use crate::schema::{col, meta, schema, SCHEMA_VERSION};

/// Row groups are closed at this much buffered data, bounding the writer's memory.
const MAX_ROW_GROUP_BYTES: usize = 64 << 20;

/// Integer columns stored without a general-purpose codec.
const UNCOMPRESSED: [&str; 17] = [
    col::TS,
    col::TS_NS,
    col::SOCK_COOKIE,
    col::PID,
    col::TID,
    col::PPID,
    col::UID,
    col::GID,
    col::EXE_STATUS,
    col::EXE_DEV,
    col::CGROUP_ID,
    col::NETNS,
    col::IP_VERSION,
    col::PROTOCOL,
    col::DST_PORT,
    col::HOOK,
    col::VERDICT,
];

/// The codec of the string and hash columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// LZ4 (Parquet's LZ4_RAW): the default. A reader sets up no codec context per
    /// column chunk, which zstd's needs (and which traps to the hypervisor on virtual
    /// machines): a dataset of many small files reads about a quarter faster, for
    /// files about 5 % larger.
    Lz4,
    /// zstd at this level (1-22): smaller files.
    Zstd(i32),
}

fn properties(host: &str, codec: Codec) -> Result<WriterProperties, SinkError> {
    let compression = match codec {
        Codec::Lz4 => Compression::LZ4_RAW,
        Codec::Zstd(level) => Compression::ZSTD(ZstdLevel::try_new(level).map_err(|e| {
            SinkError::encode("writer properties", format!("zstd level {level}: {e}"))
        })?),
    };
    // Times and socket cookies rise steadily: deltas encode them in a few bits, while a
    // dictionary of mostly-unique values would only add size.
    let delta = |b: parquet::file::properties::WriterPropertiesBuilder, c: &str| {
        b.set_column_dictionary_enabled(ColumnPath::from(c), false)
            .set_column_encoding(ColumnPath::from(c), Encoding::DELTA_BINARY_PACKED)
    };
    let mut b = WriterProperties::builder()
        // PARQUET_2_0 is needed for arrow-rs to dictionary-encode fixed-size binary (exe_sha256).
        .set_writer_version(WriterVersion::PARQUET_2_0)
        .set_compression(compression)
        .set_dictionary_enabled(true)
        .set_max_row_group_bytes(Some(MAX_ROW_GROUP_BYTES))
        .set_key_value_metadata(Some(vec![
            KeyValue::new(meta::SCHEMA_VERSION.into(), SCHEMA_VERSION.to_string()),
            KeyValue::new(meta::HOST.into(), host.to_owned()),
            KeyValue::new(
                meta::WRITER.into(),
                format!("pinhole {}", env!("CARGO_PKG_VERSION")),
            ),
        ]));
    b = delta(b, col::TS);
    b = delta(b, col::TS_NS);
    b = delta(b, col::SOCK_COOKIE);
    // Deltas and small-integer dictionary indices are already bit-packed: a codec
    // takes a few percent off them, and costs every reader one per column chunk (with
    // zstd, two contexts in arrow-rs, tens of microseconds each on a virtual machine,
    // where creating one traps to the hypervisor). Strings and hashes keep the codec.
    for c in UNCOMPRESSED {
        b = b.set_column_compression(ColumnPath::from(c), Compression::UNCOMPRESSED);
    }
    Ok(b.build())
}

/// The file under the writer, hashed as it is written: a published file's SHA-256
/// (for the evidence log) costs no second read.
struct Hashing {
    file: File,
    hasher: Sha256,
    bytes: u64,
}

impl Write for Hashing {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// What a published file is, as its writer knows it.
#[derive(Debug, Clone)]
pub struct Written {
    pub path: PathBuf,
    pub bytes: u64,
    pub sha256: [u8; 32],
    pub rows: u64,
    /// Its key-value metadata (`pinhole.first_ts`, `pinhole.lost_events`...).
    pub metadata: BTreeMap<String, String>,
}

/// A Parquet file being written; readable only after `publish`.
pub(crate) struct PendingParquet {
    writer: ArrowWriter<Hashing>,
    temp: PathBuf,
    target: PathBuf,
}

impl PendingParquet {
    pub fn create(
        temp: PathBuf,
        target: PathBuf,
        host: &str,
        codec: Codec,
    ) -> Result<Self, SinkError> {
        if let Some(dir) = temp.parent() {
            crate::layout::create_dirs(dir).map_err(|e| SinkError::write(dir, e))?;
        }
        let file = crate::layout::file_options()
            .open(&temp)
            .map_err(|e| SinkError::write(&temp, e))?;
        let file = Hashing {
            file,
            hasher: Sha256::new(),
            bytes: 0,
        };
        let writer = ArrowWriter::try_new(file, schema(), Some(properties(host, codec)?))
            .map_err(|e| SinkError::encode(&temp, e))?;
        Ok(PendingParquet {
            writer,
            temp,
            target,
        })
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), SinkError> {
        self.writer
            .write(batch)
            .map_err(|e| parquet_error(&self.temp, e))
    }

    /// Bytes this file will have: what is on disk plus what is buffered.
    pub fn size(&self) -> u64 {
        (self.writer.bytes_written() + self.writer.in_progress_size()) as u64
    }

    /// Footer, fsync, atomic rename, fsync of the directory: after this returns the
    /// file is complete under its final name, even across a power cut.
    pub fn publish(mut self, extra: Vec<KeyValue>) -> Result<Written, SinkError> {
        for kv in extra {
            self.writer.append_key_value_metadata(kv);
        }
        let meta = self
            .writer
            .finish()
            .map_err(|e| parquet_error(&self.temp, e))?;
        let hashing = self.writer.inner();
        let written = Written {
            path: self.target.clone(),
            bytes: hashing.bytes,
            sha256: hashing.hasher.clone().finalize().into(),
            rows: meta.file_metadata().num_rows().max(0) as u64,
            metadata: crate::readback::key_value_metadata(meta.file_metadata()),
        };
        drop(self.writer);
        // fsync acts on the inode, so a fresh handle flushes what the writer wrote.
        File::open(&self.temp)
            .and_then(|f| f.sync_all())
            .map_err(|e| SinkError::write(&self.temp, e))?;
        fs::rename(&self.temp, &self.target).map_err(|e| SinkError::write(&self.target, e))?;
        if let Some(dir) = self.target.parent() {
            sync_dir(dir).map_err(|e| SinkError::write(dir, e))?;
        }
        Ok(written)
    }
}

fn parquet_error(path: &Path, e: parquet::errors::ParquetError) -> SinkError {
    match e {
        parquet::errors::ParquetError::External(inner) => {
            match inner.downcast::<std::io::Error>() {
                Ok(io) => SinkError::write(path, *io),
                Err(other) => SinkError::encode(path, other),
            }
        }
        other => SinkError::encode(path, other),
    }
}
