//! What the log records: one leaf per published file (its name, size, SHA-256, rows,
//! time range and lost events) and per start and stop of a writer, each numbered, as one
//! line of JSON. The line's bytes are what the Merkle tree hashes.

use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::schema::meta;

/// One entry of the log. `seq` is its position (from 0), so that a reordered, removed
/// or inserted line is named as such.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Leaf {
    pub seq: u64,
    #[serde(flatten)]
    pub entry: Entry,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Entry {
    /// The log's first entry: a random identity, named in every checkpoint's origin so
    /// that one trail's checkpoint cannot stand for another's.
    Created { trail: String, at: String },
    /// A file was published.
    File(FileFacts),
    /// A writer started or stopped: the time between a stop and the next start, or
    /// after a start without a stop (a crash), is time nothing was recorded.
    Start {
        at: String,
        writer: String,
        pid: u32,
    },
    Stop {
        at: String,
        writer: String,
        pid: u32,
    },
    /// Files removed by retention: no longer expected, and not a deletion.
    Retired {
        paths: Vec<String>,
        reason: String,
        at: String,
    },
    /// Files replaced by a compacted file (which has its own `file` entry).
    Replaced {
        paths: Vec<String>,
        by: String,
        at: String,
    },
}

/// A published file as the log vouches for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileFacts {
    /// Relative to the dataset, `/`-separated (`date=2026-12-01/host=h/x.parquet`).
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
    pub rows: u64,
    pub first_ts: Option<String>,
    pub last_ts: Option<String>,
    pub lost_events: u64,
}

impl FileFacts {
    /// Reads the facts of `file`, a published file of the dataset `out`: its bytes are
    /// hashed, its rows and metadata read from its footer.
    pub fn of(out: &Path, file: &Path) -> io::Result<FileFacts> {
        Self::of_named(file, relative(out, file)?)
    }

    /// From what the writer of a file just published knows of it (no second read).
    pub(crate) fn from_written(
        out: &Path,
        w: &crate::parquet_file::Written,
    ) -> io::Result<FileFacts> {
        Ok(Self::from_parts(
            relative(out, &w.path)?,
            w.bytes,
            w.sha256,
            w.rows,
            &w.metadata,
        ))
    }

    fn from_parts(
        path: String,
        bytes: u64,
        sha256: [u8; 32],
        rows: u64,
        kv: &std::collections::BTreeMap<String, String>,
    ) -> FileFacts {
        FileFacts {
            path,
            bytes,
            sha256: hex::encode(sha256),
            rows,
            first_ts: kv.get(meta::FIRST_TS).cloned(),
            last_ts: kv.get(meta::LAST_TS).cloned(),
            lost_events: kv
                .get(meta::LOST_EVENTS)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
        }
    }

    /// As `of`, for a file that will be published at `path` (compaction prepares its
    /// files elsewhere and swaps them in). A file whose footer cannot be read (not
    /// pinhole's, or damaged) is entered by its bytes alone: what it holds is no reason
    /// to keep it out of the log, nor a writer from starting.
    pub fn of_named(file: &Path, path: String) -> io::Result<FileFacts> {
        let (bytes, sha256) = crate::file_digest::sha256_and_size(file)?;
        let footer = std::fs::File::open(file)
            .ok()
            .and_then(|f| parquet::file::reader::SerializedFileReader::new(f).ok());
        let (rows, kv) = match &footer {
            Some(reader) => {
                let md = parquet::file::reader::FileReader::metadata(reader).file_metadata();
                (
                    md.num_rows().max(0) as u64,
                    crate::readback::key_value_metadata(md),
                )
            }
            None => (0, Default::default()),
        };
        Ok(Self::from_parts(path, bytes, sha256, rows, &kv))
    }
}

/// `file`'s path inside `out`, `/`-separated; an error for a file outside it.
pub fn relative(out: &Path, file: &Path) -> io::Result<String> {
    let rel = file.strip_prefix(out).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not in {}", file.display(), out.display()),
        )
    })?;
    Ok(rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/"))
}

impl Leaf {
    /// The line as logged and hashed (no newline).
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a leaf always serialises")
    }

    pub fn decode(line: &[u8]) -> Result<Leaf, serde_json::Error> {
        serde_json::from_slice(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leaf_is_one_line_of_json_that_decodes_to_itself() {
        let leaf = Leaf {
            seq: 7,
            entry: Entry::Start {
                at: "2026-12-01T00:00:00Z".into(),
                writer: "record\nwith a newline".into(),
                pid: 1,
            },
        };
        let line = leaf.encode();
        assert!(!line.contains(&b'\n'));
        assert_eq!(Leaf::decode(&line).unwrap(), leaf);
        let text = String::from_utf8(line).unwrap();
        assert!(text.starts_with(r#"{"seq":7,"kind":"start""#), "{text}");
    }
}
