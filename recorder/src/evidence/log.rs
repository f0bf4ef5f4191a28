//! The log on disk, in the dataset's hidden `.evidence/`: `log`, one leaf per line,
//! appended and made durable under the dataset's publish lock (so a recorder, retention
//! and compaction append in turn, each reading what the others added first), and
//! `checkpoint`, the latest signed tree head (a C2SP tlog-checkpoint in a C2SP signed
//! note), replaced atomically after every append when a signing key is given.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use signed_note::Note;
use tlog_tiles::{stored_hashes, tree_hash, Checkpoint, Hash, HashReader};

use super::keys::SigningKey;
use super::leaf::{Entry, Leaf};
use crate::layout;

pub const EVIDENCE_DIR: &str = ".evidence";
const LOG_FILE: &str = "log";
const CHECKPOINT_FILE: &str = "checkpoint";
/// Space kept allocated past the log's end: a few hundred entries.
const LOG_RESERVE: libc::off_t = 64 << 10;

/// Why the log cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "the evidence log {path} is damaged at line {line}: {why} (`pinhole verify` says more)"
    )]
    Damaged {
        path: PathBuf,
        line: u64,
        why: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> LogError + '_ {
    move |source| LogError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The log's lines as read, and whether the last one was cut short (a writer died
/// while appending it: it is not part of the log).
pub struct LogLines {
    pub lines: Vec<Vec<u8>>,
    pub torn: bool,
    /// Bytes up to the end of the last whole line.
    pub whole_len: u64,
}

pub fn log_path(out: &Path) -> PathBuf {
    out.join(EVIDENCE_DIR).join(LOG_FILE)
}

pub fn checkpoint_path(out: &Path) -> PathBuf {
    out.join(EVIDENCE_DIR).join(CHECKPOINT_FILE)
}

/// Splits `bytes` (from offset `base` of the log) into whole lines.
fn split_lines(bytes: &[u8], base: u64) -> LogLines {
    let whole = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    LogLines {
        lines: bytes[..whole]
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(<[u8]>::to_vec)
            .collect(),
        torn: whole < bytes.len(),
        whole_len: base + whole as u64,
    }
}

/// Every whole line of `out`'s log; None where it has none.
pub fn read_log(out: &Path) -> io::Result<Option<LogLines>> {
    match fs::read(log_path(out)) {
        Ok(bytes) => Ok(Some(split_lines(&bytes, 0))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The stored hashes (tlog's layout) of a log of `lines`, which give the tree's root
/// for any prefix of it.
#[derive(Default)]
pub struct Tree(Vec<Hash>);

impl HashReader for Tree {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        indexes
            .iter()
            .map(|&i| {
                self.0
                    .get(i as usize)
                    .copied()
                    .ok_or(tlog_tiles::Error::IndexesNotInTree)
            })
            .collect()
    }
}

impl Tree {
    pub fn of<'a>(lines: impl IntoIterator<Item = &'a Vec<u8>>) -> Tree {
        let mut t = Tree::default();
        for (n, line) in lines.into_iter().enumerate() {
            t.push(n as u64, line);
        }
        t
    }

    fn push(&mut self, n: u64, line: &[u8]) {
        let new = stored_hashes(n, line, self).expect("earlier hashes are stored");
        self.0.extend(new);
    }

    /// The root of the tree of the first `n` leaves.
    pub fn root(&self, n: u64) -> Hash {
        tree_hash(n, self).expect("the first n leaves are stored")
    }
}

/// Whether `out`'s trail has a signed checkpoint (its writers then need the key).
pub fn is_signed(out: &Path) -> bool {
    checkpoint_path(out).exists()
}

/// The origin line of a trail's checkpoints.
pub fn origin(trail: &str) -> String {
    format!("pinhole/{trail}")
}

/// The log, open for appending.
pub struct EvidenceLog {
    out: PathBuf,
    file: File,
    /// Bytes of whole lines read or written so far.
    whole_bytes: u64,
    count: u64,
    tree: Tree,
    trail: String,
    files: HashSet<String>,
    signer: Option<SigningKey>,
}

impl EvidenceLog {
    /// Opens (or starts) `out`'s log: a line cut short by a crash is dropped, and with
    /// a signing key a checkpoint is signed at once if the last one does not cover the
    /// whole log (the writer died between an append and its checkpoint).
    /// Call with the dataset's publish lock held.
    pub fn open(out: &Path, signer: Option<SigningKey>) -> Result<EvidenceLog, LogError> {
        let dir = out.join(EVIDENCE_DIR);
        layout::create_dirs(&dir).map_err(io_err(&dir))?;
        let path = log_path(out);
        let file = fs::OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(layout::FILE_MODE)
            .open(&path)
            .map_err(io_err(&path))?;
        let mut log = EvidenceLog {
            out: out.to_owned(),
            file,
            whole_bytes: 0,
            count: 0,
            tree: Tree::default(),
            trail: String::new(),
            files: HashSet::new(),
            signer,
        };
        let torn = log.catch_up()?;
        if torn {
            log.file.set_len(log.whole_bytes).map_err(io_err(&path))?;
            tracing::warn!(log = %path.display(), "dropped an evidence log line cut short by a crash");
        }
        if log.count == 0 {
            log.create()?;
        }
        log.reserve();
        if log.signer.is_some() && log.signed_size()? != Some(log.count) {
            log.sign()?;
        }
        Ok(log)
    }

    /// Opens `out`'s log if it has one (retention and compaction record what they do in
    /// a trail that has a log, and start none).
    pub fn open_existing(
        out: &Path,
        signer: Option<SigningKey>,
    ) -> Result<Option<EvidenceLog>, LogError> {
        match log_path(out).exists() {
            true => Self::open(out, signer).map(Some),
            false => Ok(None),
        }
    }

    /// Starts the log: its creation entry, then an entry for each file the dataset
    /// already holds (a dataset written before the log existed is vouched for from
    /// here on, as it is now; the creation time says since when).
    fn create(&mut self) -> Result<(), LogError> {
        let trail = hex::encode(rand::random::<[u8; 16]>());
        self.append_unsigned(Entry::Created {
            trail,
            at: super::now(),
        })?;
        let existing = layout::published_files(&self.out).map_err(io_err(&self.out))?;
        for file in existing {
            let facts = super::FileFacts::of(&self.out, &file).map_err(io_err(&file))?;
            self.append_unsigned(Entry::File(facts))?;
        }
        Ok(())
    }

    /// Reads the lines others appended since (under the same lock). Returns whether the
    /// last line is cut short.
    fn catch_up(&mut self) -> Result<bool, LogError> {
        let path = log_path(&self.out);
        let mut tail = Vec::new();
        self.file
            .seek(SeekFrom::Start(self.whole_bytes))
            .and_then(|_| self.file.read_to_end(&mut tail))
            .map_err(io_err(&path))?;
        let read = split_lines(&tail, self.whole_bytes);
        for line in &read.lines {
            let leaf = Leaf::decode(line).map_err(|e| LogError::Damaged {
                path: path.clone(),
                line: self.count + 1,
                why: e.to_string(),
            })?;
            self.note(&leaf);
            self.tree.push(self.count, line);
            self.count += 1;
        }
        self.whole_bytes = read.whole_len;
        Ok(read.torn)
    }

    fn note(&mut self, leaf: &Leaf) {
        match &leaf.entry {
            Entry::Created { trail, .. } => self.trail = trail.clone(),
            Entry::File(f) => {
                self.files.insert(f.path.clone());
            }
            _ => {}
        }
    }

    /// Whether a leaf names the file at `rel` (relative to the dataset).
    pub fn has_file(&self, rel: &str) -> bool {
        self.files.contains(rel)
    }

    /// Appends `entry` and, with a key, signs the new tree head. Call with the
    /// dataset's publish lock held.
    pub fn append(&mut self, entry: Entry) -> Result<(), LogError> {
        self.append_unsigned(entry)?;
        if self.signer.is_some() {
            self.sign()?;
        }
        Ok(())
    }

    fn append_unsigned(&mut self, entry: Entry) -> Result<(), LogError> {
        let path = log_path(&self.out);
        if self.catch_up()? {
            return Err(LogError::Damaged {
                path,
                line: self.count + 1,
                why: "another writer left a line cut short".into(),
            });
        }
        let leaf = Leaf {
            seq: self.count,
            entry,
        };
        let mut line = leaf.encode();
        line.push(b'\n');
        if let Err(e) = self
            .file
            .write_all(&line)
            .and_then(|_| self.file.sync_data())
        {
            // Part of a line (a full disk) would read as a torn line to every writer.
            let _ = self.file.set_len(self.whole_bytes);
            return Err(io_err(&path)(e));
        }
        line.pop();
        self.note(&leaf);
        self.tree.push(self.count, &line);
        self.count += 1;
        self.whole_bytes += line.len() as u64 + 1;
        self.reserve();
        Ok(())
    }

    /// Keeps `LOG_RESERVE` bytes allocated past the log's end, so that entries go on
    /// being appended (and a file published as the disk fills is in the log at once,
    /// not at the next start) on a full disk. Best effort: a file system without
    /// `fallocate`, or one already full, appends as space allows.
    fn reserve(&self) {
        use std::os::fd::AsRawFd;
        // SAFETY: a plain syscall on a descriptor this log owns.
        let rc = unsafe {
            libc::fallocate(
                self.file.as_raw_fd(),
                libc::FALLOC_FL_KEEP_SIZE,
                self.whole_bytes as libc::off_t,
                LOG_RESERVE,
            )
        };
        if rc != 0 {
            tracing::debug!(
                "evidence log space not reserved: {}",
                io::Error::last_os_error()
            );
        }
    }

    /// The size the current checkpoint signs, if there is one.
    fn signed_size(&self) -> Result<Option<u64>, LogError> {
        let path = checkpoint_path(&self.out);
        match fs::read(&path) {
            Ok(bytes) => Ok(Note::from_bytes(&bytes)
                .ok()
                .and_then(|n| Checkpoint::from_bytes(n.text()).ok())
                .map(|c| c.size())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    fn sign(&self) -> Result<(), LogError> {
        let Some(signer) = &self.signer else {
            return Ok(());
        };
        let path = checkpoint_path(&self.out);
        let root = self.tree.root(self.count);
        let checkpoint = Checkpoint::new(&origin(&self.trail), self.count, root, "")
            .expect("a checkpoint of a non-empty origin is well formed");
        let note = signer.sign(&checkpoint.to_bytes());
        match write_checkpoint(&self.out, &note) {
            // Only a trail's first checkpoints need free space (see write_checkpoint);
            // should the disk be full then, recording goes on: the entries are in the
            // log, and the next change signs them all (until then `verify` reports
            // them unsigned).
            Err(e) if crate::error::is_disk_full(&e) => {
                tracing::warn!(
                    checkpoint = %path.display(),
                    "disk full: the evidence log's {} entries are signed at the next change",
                    self.count
                );
                Ok(())
            }
            other => other.map_err(io_err(&path)),
        }
    }
}

/// Replaces `out`'s checkpoint with `note` without needing free space: the spare
/// (`checkpoint.tmp`, holding the checkpoint before last) is overwritten in place,
/// made durable and exchanged with the live one in one step, so a crash leaves either
/// checkpoint whole and a full disk cannot leave the log's last entries unsigned (a
/// recorder that stops on a full disk has no next change to sign them). A new trail
/// has no spare: its first checkpoint is renamed into place and copied as the spare.
/// A file system that cannot exchange (EINVAL: 9p, NFS) takes that path every time,
/// so there a checkpoint still needs a free block.
fn write_checkpoint(out: &Path, note: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let path = checkpoint_path(out);
    let spare = path.with_extension("tmp");
    let write_spare = || {
        let f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .mode(layout::FILE_MODE)
            .open(&spare)?;
        // Writing before truncating keeps the file's block: a note is far under one.
        f.write_all_at(note, 0)?;
        f.set_len(note.len() as u64)?;
        f.sync_data()
    };
    write_spare()?;
    match layout::exchange(&spare, &path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::EINVAL) => {
            fs::rename(&spare, &path)?;
            if let Err(e) = write_spare() {
                tracing::debug!(spare = %spare.display(), "no spare checkpoint yet: {e}");
            }
        }
        Err(e) => return Err(e),
    }
    layout::sync_dir(&out.join(EVIDENCE_DIR))
}
