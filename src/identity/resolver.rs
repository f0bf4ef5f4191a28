//! Resolves the executable behind each event to its SHA-256, hashing each version of
//! each file once. Candidates (open file handles) come from exec events and the
//! start-up snapshot, opened while the process still lived; connect events fall back
//! to /proc/<pid>/exe and then to the path the process was executed by.

use std::collections::HashMap;
use std::fs::{self, File};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pinhole_recorder::regular::open_regular;
use pinhole_recorder::ExeStatus;

use super::hash::{runs, sha256_file, HashError, Proof};
use super::key::ExeKey;

/// What vouches for an executable reported by `pid`'s event at `at_ns` (pid 0: a
/// policy path, read just now, with no event).
fn proof(pid: u32, at_ns: Option<i64>) -> Proof {
    Proof {
        witness: (pid != 0).then_some(pid),
        event_ns: at_ns,
    }
}

/// What an event's row says about its executable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExeInfo {
    pub sha256: Option<[u8; 32]>,
    pub path: Option<String>,
    pub status: ExeStatus,
}

impl ExeInfo {
    fn failed(status: ExeStatus, path: Option<String>) -> Self {
        ExeInfo {
            sha256: None,
            path,
            status,
        }
    }
}

/// A file that may be the executable `key` of process `pid`, captured early.
#[derive(Debug)]
pub struct Candidate {
    pub pid: u32,
    pub key: ExeKey,
    /// Opened through /proc/<pid>/exe while the process ran (or pinned at exec).
    pub file: Option<File>,
    /// The file's share of the descriptor budget (`fd_budget`), if it counts there.
    pub held: Option<super::fd_budget::Token>,
    /// The path a person would recognise: the /proc/<pid>/exe link target, or the
    /// kernel's d_path, or the filename given to execve.
    pub path: Option<String>,
    /// When the kernel reported it (Unix ns); None for a file read just now.
    pub at_ns: Option<i64>,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct ResolverStats {
    pub files_hashed: u64,
    pub bytes_hashed: u64,
    pub unresolved: u64,
}

/// How long a failure is remembered before /proc is tried again for the same file.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// Bound on remembered exec paths (processes that exec but whose file was not hashed).
const MAX_EXEC_HINTS: usize = 65_536;
/// At most this many deferred snapshot files are kept open: the descriptor budget is
/// for execs (a host with thousands of processes would otherwise spend it at start).
const MAX_DEFERRED_OPEN: usize = 256;
/// Bound on remembered sizes (one per distinct binary seen).
const MAX_SIZES: usize = 1 << 20;

#[derive(Default)]
pub struct Resolver {
    /// Digests of lasting identities: no other bytes can ever have these keys.
    cache: HashMap<ExeKey, Arc<ExeInfo>>,
    /// Digests vouched for only by the process that runs the file (a file changed so
    /// recently that a rewrite could keep its key): good for that process's events
    /// while it runs the file, rehashed for anyone else.
    provisional: HashMap<ExeKey, (u32, Arc<ExeInfo>)>,
    failures: HashMap<ExeKey, (Arc<ExeInfo>, Instant)>,
    exec_paths: HashMap<u32, (ExeKey, String)>,
    /// File size of each digest seen: the exec gate holds only execs of an app's size.
    sizes: HashMap<[u8; 32], u64>,
    /// Start-up snapshot candidates, hashed when an event of their file needs it.
    deferred: HashMap<ExeKey, Candidate>,
    stats: ResolverStats,
}

impl Resolver {
    pub fn stats(&self) -> ResolverStats {
        self.stats
    }

    /// Identities whose digest is cached (lasting and provisional).
    pub fn cached(&self) -> usize {
        self.cache.len() + self.provisional.len()
    }

    /// The hash of this version of a file, if it was hashed.
    pub fn sha256_of(&self, key: &ExeKey) -> Option<[u8; 32]> {
        self.cache.get(key).and_then(|i| i.sha256)
    }

    /// The size of the file each digest came from.
    pub fn sizes(&self) -> &HashMap<[u8; 32], u64> {
        &self.sizes
    }

    /// Every file version hashed so far.
    pub fn hashed(&self) -> impl Iterator<Item = (&ExeKey, [u8; 32])> {
        self.cache
            .iter()
            .filter_map(|(k, i)| i.sha256.map(|h| (k, h)))
    }

    /// Hashes a newly seen executable right away, so its handle can be closed and the
    /// hash is ready even if the process exits before its first connect.
    pub fn offer(&mut self, mut c: Candidate) {
        // A deferred snapshot's handle is the file even if its process has exited.
        if let Some(d) = self.deferred.remove(&c.key) {
            if c.file.is_none() {
                (c.file, c.held) = (d.file, d.held);
            }
            c.path = c.path.or(d.path);
        }
        if c.key.is_none() || self.cache.contains_key(&c.key) {
            return;
        }
        if c.file.is_none() && c.pid != 0 {
            // Not opened at the event (the descriptor budget was spent, or a snapshot):
            // the process may still run it.
            c.file = File::open(format!("/proc/{}/exe", c.pid)).ok();
        }
        let hashed = match c.file.as_mut() {
            Some(file) => self.hash_verified(file, &c.key, c.path.clone(), proof(c.pid, c.at_ns)),
            None => None,
        }
        .or_else(|| {
            c.path
                .as_deref()
                .and_then(|p| self.hash_path(p, &c.key, proof(c.pid, c.at_ns)))
        });
        match hashed {
            Some((info, lasting)) if info.status == ExeStatus::Ok => {
                self.remember(c.pid, c.key, Arc::new(info), lasting);
            }
            other => {
                tracing::debug!(pid = c.pid, path = ?c.path, had_file = c.file.is_some(), outcome = ?other.map(|i| i.0.status), "exec candidate not hashed");
                if let Some(path) = c.path {
                    if self.exec_paths.len() >= MAX_EXEC_HINTS {
                        self.exec_paths.clear();
                    }
                    self.exec_paths.insert(c.pid, (c.key, path));
                }
            }
        }
    }

    /// Keeps a running process's executable to hash when one of its file's events needs
    /// it, open (while the descriptor budget allows) in case the process exits first.
    /// Hashing every running binary at start held the first events back by as long
    /// (a third of a second here for one 400 MB binary, far more on a slow CPU).
    pub fn defer(&mut self, mut c: Candidate) {
        if c.key.is_none() || self.cache.contains_key(&c.key) || self.deferred.contains_key(&c.key)
        {
            return;
        }
        if c.file.is_none() && c.pid != 0 && self.deferred.len() < MAX_DEFERRED_OPEN {
            if let Some(token) = super::fd_budget::take() {
                c.file = File::open(format!("/proc/{}/exe", c.pid)).ok();
                c.held = c.file.is_some().then_some(token);
            }
        }
        self.deferred.insert(c.key, c);
    }

    /// The executable of an event made by `pid` at `at_ns` (Unix ns) while running `key`.
    pub fn resolve(&mut self, pid: u32, key: ExeKey, at_ns: i64) -> Arc<ExeInfo> {
        if key.is_none() {
            return Arc::new(ExeInfo::failed(ExeStatus::NoExecutable, None));
        }
        if let Some(info) = self.cache.get(&key) {
            return info.clone();
        }
        if let Some(c) = self.deferred.remove(&key) {
            self.offer(c);
            if let Some(info) = self.cache.get(&key) {
                return info.clone();
            }
        }
        if let Some((witness, info)) = self.provisional.get(&key) {
            if *witness == pid && runs(pid, &key) {
                return info.clone();
            }
        }
        if let Some((info, at)) = self.failures.get(&key) {
            if at.elapsed() < RETRY_AFTER {
                return info.clone();
            }
        }
        let (info, lasting) = self.resolve_uncached(pid, &key, Some(at_ns));
        let info = Arc::new(info);
        if info.status == ExeStatus::Ok {
            self.remember(pid, key, info.clone(), lasting);
            self.failures.remove(&key);
        } else {
            self.stats.unresolved += 1;
            self.failures.insert(key, (info.clone(), Instant::now()));
        }
        info
    }

    /// Keeps a digest for later events: for everyone if its identity is lasting, else
    /// for the witness's events while it runs the file.
    fn remember(&mut self, pid: u32, key: ExeKey, info: Arc<ExeInfo>, lasting: bool) {
        if lasting {
            self.provisional.remove(&key);
            self.cache.insert(key, info);
        } else if pid != 0 {
            if self.provisional.len() >= MAX_EXEC_HINTS {
                self.provisional.clear();
            }
            self.provisional.insert(key, (pid, info));
        }
    }

    fn resolve_uncached(&mut self, pid: u32, key: &ExeKey, at_ns: Option<i64>) -> (ExeInfo, bool) {
        let proc_exe = format!("/proc/{pid}/exe");
        if let Ok(mut file) = File::open(&proc_exe) {
            let path = fs::read_link(&proc_exe)
                .ok()
                .map(|p| p.to_string_lossy().into_owned());
            if let Some(info) = self.hash_verified(&mut file, key, path, proof(pid, at_ns)) {
                return info;
            }
        }
        if let Some((hint_key, path)) = self.exec_paths.get(&pid).cloned() {
            if hint_key == *key {
                if let Some(info) = self.hash_path(&path, key, proof(pid, at_ns)) {
                    return info;
                }
            }
        }
        (ExeInfo::failed(ExeStatus::Exited, None), false)
    }

    /// Opens a path and hashes it if it is the same file; None if it is another file.
    fn hash_path(&mut self, path: &str, key: &ExeKey, proof: Proof) -> Option<(ExeInfo, bool)> {
        let resolved = fs::canonicalize(path).ok()?;
        // The path comes from the exec's caller: it may name a FIFO by now.
        let mut file = open_regular(&resolved).ok()?;
        self.hash_verified(
            &mut file,
            key,
            Some(resolved.to_string_lossy().into_owned()),
            proof,
        )
    }

    /// None when `file` is another file than `key` (pid reuse, path now names another);
    /// else what a row says, and whether the identity is lasting.
    fn hash_verified(
        &mut self,
        file: &mut File,
        key: &ExeKey,
        path: Option<String>,
        proof: Proof,
    ) -> Option<(ExeInfo, bool)> {
        let meta = file.metadata().ok()?;
        if !ExeKey::from_metadata(&meta).same_file(key) {
            return None;
        }
        Some(match sha256_file(file, key, proof) {
            Ok(digest) => {
                self.stats.files_hashed += 1;
                self.stats.bytes_hashed += meta.len();
                if self.sizes.len() < MAX_SIZES {
                    self.sizes.insert(digest.sha256, meta.len());
                }
                let info = ExeInfo {
                    sha256: Some(digest.sha256),
                    path,
                    status: ExeStatus::Ok,
                };
                (info, digest.lasting)
            }
            Err(HashError::Changed) => (ExeInfo::failed(ExeStatus::Modified, path), false),
            Err(HashError::Io(e)) => {
                tracing::debug!(path = ?path, "cannot read executable: {e}");
                (ExeInfo::failed(ExeStatus::Unreadable, path), false)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::key::{settled_temp_file_with, temp_file_with};

    #[test]
    fn a_candidate_is_hashed_once_and_serves_later_lookups() {
        let (f, key) = settled_temp_file_with(b"abc");
        let mut r = Resolver::default();
        let path = f.to_string_lossy().into_owned();
        r.offer(Candidate {
            pid: u32::MAX,
            key,
            file: Some(File::open(&f).unwrap()),
            path: Some(path.clone()),
            at_ns: None,
            held: None,
        });
        r.offer(Candidate {
            pid: u32::MAX,
            key,
            file: Some(File::open(&f).unwrap()),
            path: None,
            at_ns: None,
            held: None,
        });
        assert_eq!(
            r.stats().files_hashed,
            1,
            "same unchanged file is hashed once"
        );
        // pid u32::MAX never exists: only the cache can answer.
        let info = r.resolve(u32::MAX, key, i64::MAX);
        assert_eq!(info.status, ExeStatus::Ok);
        assert_eq!(info.path.as_deref(), Some(path.as_str()));
        assert_eq!(hex::encode(info.sha256.unwrap())[..8], *"ba7816bf");
    }

    #[test]
    fn exec_path_fallback_verifies_the_file() {
        let (f, key) = settled_temp_file_with(b"abc");
        let mut r = Resolver::default();
        let path = f.to_string_lossy().into_owned();
        // Exec seen, but /proc/<pid>/exe could not be opened in time.
        let wrong = ExeKey {
            ino: key.ino + 1,
            ..key
        };
        r.offer(Candidate {
            pid: 7,
            key: wrong,
            file: None,
            path: Some(path.clone()),
            at_ns: None,
            held: None,
        });
        assert_eq!(
            r.stats().files_hashed,
            0,
            "a path naming another inode is not hashed"
        );
        assert_eq!(
            r.resolve(u32::MAX, wrong, i64::MAX).status,
            ExeStatus::Exited
        );

        r.offer(Candidate {
            pid: 8,
            key,
            file: None,
            path: Some(path),
            at_ns: None,
            held: None,
        });
        assert_eq!(r.resolve(u32::MAX, key, i64::MAX).status, ExeStatus::Ok);
    }

    #[test]
    fn a_file_changed_since_the_event_is_reported_not_hashed() {
        let (f, key) = temp_file_with(b"abc");
        let stale = ExeKey {
            ctime_sec: key.ctime_sec - 10,
            ..key
        };
        let mut r = Resolver::default();
        r.offer(Candidate {
            pid: 1,
            key: stale,
            file: Some(File::open(&f).unwrap()),
            path: None,
            at_ns: None,
            held: None,
        });
        assert_eq!(r.stats().files_hashed, 0);
        let own = r.resolve(std::process::id(), stale, i64::MAX);
        // Our own /proc/self/exe is another file, so the answer is not a wrong hash.
        assert_ne!(own.status, ExeStatus::Ok);
        assert!(own.sha256.is_none());
    }

    /// Regression (finding 6, in the recorder): a digest whose key could still name
    /// other bytes (here: the file was open for writing while hashed; likewise a stamp
    /// the clock had not passed) was cached and named later events of other processes.
    #[test]
    fn a_digest_that_is_not_lasting_serves_no_other_process() {
        let (f, key) = settled_temp_file_with(b"abc");
        let writer = std::fs::OpenOptions::new().append(true).open(&f).unwrap();
        let mut r = Resolver::default();
        // Offered as a process (that never exists) reported it, with the file open.
        let offer_open = |r: &mut Resolver, f: &tempfile::TempPath| {
            r.offer(Candidate {
                pid: u32::MAX - 1,
                key,
                file: Some(File::open(f).unwrap()),
                path: None,
                at_ns: None,
                held: None,
            })
        };
        offer_open(&mut r, &f);
        assert_eq!(r.stats().files_hashed, 1);
        assert_eq!(r.sha256_of(&key), None, "not for the enforcer's table");
        // pid u32::MAX never exists: only a cache could answer, and must not.
        assert_ne!(r.resolve(u32::MAX, key, i64::MAX).status, ExeStatus::Ok);
        drop(writer);
        offer_open(&mut r, &f);
        assert!(r.sha256_of(&key).is_some(), "lasting once nobody writes");
    }

    #[test]
    fn kernel_threads_have_no_executable() {
        let mut r = Resolver::default();
        let none = ExeKey {
            dev: 0,
            ino: 0,
            ctime_sec: 0,
            ctime_nsec: 0,
        };
        assert_eq!(r.resolve(2, none, i64::MAX).status, ExeStatus::NoExecutable);
    }
}
