//! Verifying a trail: the checkpoint's signature, the log against the signed root (and
//! against a checkpoint kept elsewhere), each entry's place, and every file against its
//! entry; what does not match is named, file by file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use tlog_tiles::Checkpoint;

use super::keys::VerifyingKey;
use super::leaf::{relative, Entry, FileFacts, Leaf};
use super::log::{self, Tree};
use crate::publish_lock::PublishLock;

/// What a verification found.
#[derive(Debug, Default)]
pub struct Report {
    /// Entries in the log, and how many the dataset's checkpoint signs.
    pub entries: u64,
    pub signed: u64,
    /// Files the log vouches for that were found intact.
    pub files_intact: usize,
    /// Files retired by retention or replaced by compaction, as the log says.
    pub files_retired: usize,
    /// Tampering, one line each, naming the file or entry.
    pub findings: Vec<String>,
    /// Facts an auditor wants that are not tampering (a writer that never stopped).
    pub notes: Vec<String>,
    /// The dataset's signed checkpoint as found (to keep elsewhere).
    pub checkpoint: Vec<u8>,
}

impl Report {
    pub fn tampered(&self) -> bool {
        !self.findings.is_empty()
    }
}

/// Why a trail could not be verified at all.
#[derive(Debug, thiserror::Error)]
pub enum CannotVerify {
    #[error("{0} has no evidence log (written by pinhole 0.1 with the evidence trail; an older dataset has none)")]
    NoLog(PathBuf),
    #[error(
        "{0} does not exist: the writer ran without --signing-key, or the checkpoint was removed"
    )]
    NoCheckpoint(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the checkpoint given with --checkpoint {0}")]
    Kept(String),
}

const MAX_NAMED: usize = 20;

/// Verifications of a trail whose writer keeps changing it before one is consistent.
const ATTEMPTS: usize = 5;

/// Verifies the trail in `out` with `key`; `kept` is a checkpoint kept elsewhere,
/// against which a truncated or rewritten history shows. A running writer may publish,
/// retire or replace files while they are checked (each change is an entry, made under
/// the publish lock): findings made while the log grew are checked again.
pub fn verify(out: &Path, key: &VerifyingKey, kept: Option<&[u8]>) -> Result<Report, CannotVerify> {
    let mut attempt = 1;
    loop {
        let mut r = verify_once(out, key, kept)?;
        if !r.tampered() || entries_now(out) == Some(r.entries) {
            return Ok(r);
        }
        if attempt == ATTEMPTS {
            r.notes.push(format!(
                "the log kept growing while its files were checked ({ATTEMPTS} times): a finding may be a change made meanwhile; verify again"
            ));
            return Ok(r);
        }
        attempt += 1;
    }
}

/// The log's entries now, read between two changes of a running writer.
fn entries_now(out: &Path) -> Option<u64> {
    let lock = PublishLock::open_to_read(out);
    let _guard = lock.as_ref().and_then(|l| l.hold().ok());
    log::read_log(out)
        .ok()
        .flatten()
        .map(|read| read.lines.len() as u64)
}

fn verify_once(
    out: &Path,
    key: &VerifyingKey,
    kept: Option<&[u8]>,
) -> Result<Report, CannotVerify> {
    let io = |path: PathBuf| move |source: std::io::Error| CannotVerify::Io { path, source };
    // Listed before the log is read: a file a running writer published is in the log
    // by the time the log is read (the rename and its entry are made under the lock).
    let present = match crate::layout::published_files(out) {
        Ok(files) => files,
        // No dataset: said below as no log.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(io(out.to_owned())(e)),
    };
    // The log and its checkpoint as they are between two publishes of a running writer.
    let lock = PublishLock::open_to_read(out);
    let guard = lock.as_ref().and_then(|l| l.hold().ok());
    let read = log::read_log(out)
        .map_err(io(log::log_path(out)))?
        .ok_or_else(|| CannotVerify::NoLog(out.to_owned()))?;
    let cp_path = log::checkpoint_path(out);
    let checkpoint = match std::fs::read(&cp_path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(CannotVerify::NoCheckpoint(cp_path))
        }
        Err(e) => return Err(io(cp_path)(e)),
    };
    drop(guard);
    let mut r = Report {
        entries: read.lines.len() as u64,
        checkpoint: checkpoint.clone(),
        ..Report::default()
    };
    if read.torn {
        r.notes.push(
            "the log's last line is cut short (a writer died while appending it); it is not part of the log".into(),
        );
    }
    let leaves = decode(&read.lines, &mut r.findings);
    let tree = Tree::of(&read.lines);
    let trail = match leaves.first().map(|l| &l.entry) {
        Some(Entry::Created { trail, .. }) => Some(trail.clone()),
        _ => {
            r.findings
                .push("the log does not begin with its creation entry".into());
            None
        }
    };
    let origin = trail.as_deref().map(log::origin);
    match signed_checkpoint(key, &checkpoint) {
        Ok(cp) => {
            r.signed = cp.size();
            check_against(
                &cp,
                "its signed checkpoint",
                &tree,
                r.entries,
                &mut r.findings,
            );
            if origin.as_deref().is_some_and(|o| o != cp.origin()) {
                r.findings.push(format!(
                    "the checkpoint is another trail's (origin {:?}, this log's is {:?})",
                    cp.origin(),
                    origin.as_deref().unwrap_or_default()
                ));
            }
            if r.entries > r.signed {
                r.findings.push(format!(
                    "{} entries after the signed checkpoint are not signed (entries {}..{})",
                    r.entries - r.signed,
                    r.signed,
                    r.entries - 1
                ));
            }
        }
        Err(why) => r.findings.push(format!(
            "the checkpoint {} is {why}",
            log::checkpoint_path(out).display()
        )),
    }
    if let Some(kept) = kept {
        let cp = signed_checkpoint(key, kept).map_err(CannotVerify::Kept)?;
        if origin.as_deref().is_some_and(|o| o != cp.origin()) {
            return Err(CannotVerify::Kept(format!(
                "is another trail's (origin {:?})",
                cp.origin()
            )));
        }
        check_against(
            &cp,
            "the checkpoint kept elsewhere",
            &tree,
            r.entries,
            &mut r.findings,
        );
    }
    check_files(out, &present, &leaves, &mut r);
    note_runs(&leaves, &mut r.notes);
    Ok(r)
}

/// The checkpoint in `note` if `key` signed it.
fn signed_checkpoint(key: &VerifyingKey, note: &[u8]) -> Result<Checkpoint, String> {
    let text = key.open(note)?;
    Checkpoint::from_bytes(&text).map_err(|_| "signed but not a checkpoint".to_owned())
}

/// Whether the log's first `cp.size()` entries hash to `cp`'s root.
fn check_against(
    cp: &Checkpoint,
    what: &str,
    tree: &Tree,
    entries: u64,
    findings: &mut Vec<String>,
) {
    if cp.size() > entries {
        findings.push(format!(
            "the log has {entries} entries but {what} covers {}: entries were removed from its end (truncated)",
            cp.size()
        ));
    } else if tree.root(cp.size()) != *cp.hash() {
        findings.push(format!(
            "the log's first {} entries do not hash to the root {what} signs: an entry was changed, removed, inserted or reordered",
            cp.size()
        ));
    }
}

/// Every line as a leaf, naming lines that are none and entries out of place.
fn decode(lines: &[Vec<u8>], findings: &mut Vec<String>) -> Vec<Leaf> {
    let mut leaves = Vec::new();
    for (pos, line) in lines.iter().enumerate() {
        match Leaf::decode(line) {
            Ok(l) => leaves.push((pos as u64, l)),
            Err(e) => findings.push(format!("line {} of the log is not an entry ({e})", pos + 1)),
        }
    }
    let mut count: BTreeMap<u64, usize> = BTreeMap::new();
    for (_, l) in &leaves {
        *count.entry(l.seq).or_default() += 1;
    }
    let mut misplaced = 0;
    for (pos, leaf) in &leaves {
        let (pos, seq) = (*pos, leaf.seq);
        let what = if count[&seq] > 1 {
            format!("entry {seq} appears more than once: an entry was inserted or copied")
        } else if seq > pos && (pos..seq).any(|s| !count.contains_key(&s)) {
            format!("it holds entry {seq}: entries before it were removed")
        } else if seq != pos {
            format!("it holds entry {seq}: the history was reordered")
        } else {
            continue;
        };
        misplaced += 1;
        if misplaced <= MAX_NAMED {
            findings.push(format!("line {} of the log: {what}", pos + 1));
        }
    }
    if misplaced > MAX_NAMED {
        findings.push(format!(
            "({} more entries out of place)",
            misplaced - MAX_NAMED
        ));
    }
    leaves.into_iter().map(|(_, l)| l).collect()
}

/// Each file the log vouches for against the dataset, and each file of the dataset
/// against the log.
fn check_files(out: &Path, present: &[PathBuf], leaves: &[Leaf], r: &mut Report) {
    let mut expected: BTreeMap<String, (u64, &FileFacts)> = BTreeMap::new();
    // Retired or replaced, with the facts they had and the entry that let them go.
    let mut gone: BTreeMap<String, (u64, &FileFacts)> = BTreeMap::new();
    for leaf in leaves {
        match &leaf.entry {
            Entry::File(f) => {
                gone.remove(&f.path);
                expected.insert(f.path.clone(), (leaf.seq, f));
            }
            Entry::Retired { paths, .. } | Entry::Replaced { paths, .. } => {
                for p in paths {
                    if let Some((_, facts)) = expected.remove(p) {
                        gone.insert(p.clone(), (leaf.seq, facts));
                    }
                }
            }
            _ => {}
        }
    }
    r.files_retired = gone.len();
    let mut named = 0;
    let mut name = |r: &mut Report, finding: String| {
        named += 1;
        if named <= MAX_NAMED {
            r.findings.push(finding);
        }
    };
    let mut seen = BTreeSet::new();
    // Files published after the listing: checked where the log says they are.
    let later = expected
        .keys()
        .map(|rel| out.join(rel))
        .filter(|f| !present.contains(f) && f.exists());
    let files: Vec<PathBuf> = present.iter().cloned().chain(later).collect();
    for file in &files {
        let Ok(rel) = relative(out, file) else {
            continue;
        };
        seen.insert(rel.clone());
        let Some((seq, facts)) = expected.get(&rel) else {
            match gone.get(&rel) {
                // Retired or replaced after the listing, as the log says.
                Some(_) if !file.exists() => {}
                // Entries come before removals: a removal cut short leaves the file.
                Some((seq, facts)) if intact(file, facts) => r.notes.push(format!(
                    "{rel} was retired or replaced (entry {seq}) and is still there: its removal was interrupted"
                )),
                Some(_) => name(r, format!("inserted: {rel} (it was retired or replaced, and is back changed)")),
                None => name(r, format!("inserted: {rel} (no entry of the log names it)")),
            }
            continue;
        };
        match crate::file_digest::sha256_and_size(file) {
            Ok((bytes, sha)) if bytes == facts.bytes && hex::encode(sha) == facts.sha256 => {
                r.files_intact += 1
            }
            Ok((bytes, sha)) => name(
                r,
                format!(
                    "modified: {rel} ({bytes} bytes, SHA-256 {}; entry {seq} says {} bytes, {})",
                    hex::encode(sha),
                    facts.bytes,
                    facts.sha256
                ),
            ),
            // Gone since the listing: judged below with the files not found.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                seen.remove(&rel);
            }
            Err(e) => name(r, format!("unreadable: {rel} ({e})")),
        }
    }
    for (rel, (seq, _)) in &expected {
        if !seen.contains(rel) {
            name(
                r,
                format!(
                    "removed: {rel} (entry {seq}; no retention or compaction entry retires it)"
                ),
            );
        }
    }
    if named > MAX_NAMED {
        r.findings.push(format!(
            "({} more files differ from the log)",
            named - MAX_NAMED
        ));
    }
}

fn intact(file: &Path, facts: &FileFacts) -> bool {
    crate::file_digest::sha256_and_size(file)
        .is_ok_and(|(bytes, sha)| bytes == facts.bytes && hex::encode(sha) == facts.sha256)
}

/// Writers that started and never stopped: nothing was recorded from their end to the
/// next start.
fn note_runs(leaves: &[Leaf], notes: &mut Vec<String>) {
    let mut open: BTreeMap<&str, &str> = BTreeMap::new();
    for leaf in leaves {
        match &leaf.entry {
            Entry::Start { at, writer, .. } => {
                if let Some(prev) = open.insert(writer, at) {
                    notes.push(format!(
                        "{writer} started at {prev} and never stopped (killed or crashed) before its start at {at}"
                    ));
                }
            }
            Entry::Stop { writer, .. } => {
                open.remove(writer.as_str());
            }
            _ => {}
        }
    }
}
