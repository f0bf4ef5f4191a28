//! Keeps the kernel's identity table true: which (device, inode) at which change time
//! holds the bytes of which app. Files are hashed at load (the policy's paths and
//! every running process) and whenever the kernel reports an executable it does not
//! know (a fresh copy, a reinstall, a renamed binary whose change time moved).

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Instant;

use anyhow::Result;
use libbpf_rs::MapCore;
use pinhole_policygen::compile::Compiled;
use pinhole_recorder::regular::open_regular;

use super::tables::set_identity;
use crate::identity::{until_lasting, Candidate, ExeKey, Resolver};

/// App ids by hash, for one compiled policy.
#[derive(Clone)]
pub struct AppsByHash(HashMap<[u8; 32], u32>);

impl AppsByHash {
    pub fn new(c: &Compiled) -> Self {
        AppsByHash(
            c.apps
                .iter()
                .enumerate()
                .map(|(i, a)| (a.sha256, i as u32 + 1))
                .collect(),
        )
    }

    pub fn get(&self, sha: &[u8; 32]) -> Option<u32> {
        self.0.get(sha).copied()
    }

    /// The sizes of the apps' files when every app's is known (`sizes`: the size of each
    /// digest hashed so far), else None: a file of another size cannot hash to an app.
    pub fn sizes(&self, sizes: &HashMap<[u8; 32], u64>) -> Option<HashSet<u64>> {
        self.0
            .keys()
            .map(|h| sizes.get(h).copied())
            .collect::<Option<HashSet<u64>>>()
    }
}

/// Hashes the files the policy names (paths are hints; only the bytes count).
pub fn offer_policy_paths(policy: &pinhole_policygen::Policy, resolver: &mut Resolver) {
    for app in &policy.apps {
        for path in &app.paths {
            let file = match open_regular(Path::new(path)) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    tracing::debug!(app = app.name, path, "policy path not present here");
                    continue;
                }
                Err(e) => {
                    tracing::warn!(app = app.name, "policy path not hashed: {e}");
                    continue;
                }
            };
            let Ok(meta) = file.metadata() else { continue };
            // The policy's own files keep their identity whatever else is executed.
            super::tables::protect_identities([(meta.dev(), meta.ino())]);
            let key = ExeKey::from_metadata(&meta);
            // Installed moments ago: wait (seconds at most) until a rewrite would show.
            if let Some(wait) = until_lasting(&key) {
                std::thread::sleep(wait);
            }
            resolver.offer(Candidate {
                pid: 0,
                key,
                file: Some(file),
                path: Some(path.clone()),
                at_ns: None,
                held: None,
            });
        }
    }
}

/// Hashes the executables of running processes that could be an app: all of them until
/// every app's size is known, then only those of an app's size (as the exec gate does).
/// Hashing every running binary made the start as slow as reading them all (tens of
/// seconds for a few large binaries on a slow CPU); the others are kept open and
/// hashed when one of their events needs it.
pub fn offer_running(resolver: &mut Resolver, apps: &AppsByHash) {
    let procs = match crate::snapshot::running_processes() {
        Ok(p) => p,
        Err(e) => return tracing::warn!("no snapshot of running processes: {e:#}"),
    };
    let sizes = apps.sizes(resolver.sizes());
    let (mut offered, mut skipped) = (0usize, 0usize);
    for c in procs {
        if no_app_size(&c, sizes.as_ref()) {
            // Not an app, but the trail names it by its hash if it connects: kept open
            // and hashed then, even if it has exited by the time the row is written.
            skipped += 1;
            resolver.defer(c);
        } else {
            offered += 1;
            resolver.offer(c);
        }
    }
    tracing::debug!(
        offered,
        skipped,
        "running processes offered for hashing (the skipped run no app's size)"
    );
}

/// Whether the candidate's file cannot be an app: every app's size is known and its
/// size is none of them.
fn no_app_size(c: &Candidate, sizes: Option<&HashSet<u64>>) -> bool {
    let Some(sizes) = sizes else { return false };
    let size = match &c.file {
        Some(f) => f.metadata().map(|m| m.len()),
        None => std::fs::metadata(format!("/proc/{}/exe", c.pid)).map(|m| m.len()),
    };
    size.is_ok_and(|n| !sizes.contains(&n))
}

/// Writes every hashed file whose bytes are an app into `map`; returns how many files
/// each app got (by app id).
pub fn seed(
    map: &dyn MapCore,
    apps: &AppsByHash,
    resolver: &Resolver,
) -> Result<HashMap<u32, usize>> {
    // The newest version of each file wins: older change times can no longer match.
    let mut newest: HashMap<(u64, u64), (&ExeKey, [u8; 32])> = HashMap::new();
    for (key, sha) in resolver.hashed() {
        let slot = newest.entry((key.dev, key.ino)).or_insert((key, sha));
        if (key.ctime_sec, key.ctime_nsec) > (slot.0.ctime_sec, slot.0.ctime_nsec) {
            *slot = (key, sha);
        }
    }
    let mut per_app: HashMap<u32, usize> = HashMap::new();
    for (key, sha) in newest.values() {
        if let Some(app) = apps.get(sha) {
            set_identity(map, key, app)?;
            *per_app.entry(app).or_default() += 1;
        }
    }
    Ok(per_app)
}

/// Warns about apps no file on this host matched: their rules cannot apply yet.
pub fn report_seeding(c: &Compiled, per_app: &HashMap<u32, usize>) {
    let missing: Vec<&str> = c
        .apps
        .iter()
        .enumerate()
        .filter(|(i, _)| !per_app.contains_key(&(*i as u32 + 1)))
        .map(|(_, a)| a.name.as_str())
        .collect();
    if !c.apps.is_empty() && missing.len() == c.apps.len() {
        tracing::warn!(
            apps = c.apps.len(),
            "NO app of this policy matched a binary on this host (its paths and every running process were hashed): \
             until one is executed with the pinned bytes, every connect is an unknown binary's"
        );
    } else if !missing.is_empty() {
        tracing::warn!(
            apps = %missing.join(", "),
            "no binary with these apps' hashes was found yet (they are recognised when executed)"
        );
    }
    tracing::info!(
        apps = c.apps.len(),
        matched = c.apps.len() - missing.len(),
        files = per_app.values().sum::<usize>(),
        "identity table loaded"
    );
}

/// Hashes an executable the kernel reported and, if its bytes are an app, tells the
/// kernel. Returns the app id it was recognised as. Only a lasting identity enters
/// the table (`identity::hash`): a file changed moments ago waits in `unsettled`.
pub fn learn(
    map: &dyn MapCore,
    apps: &AppsByHash,
    resolver: &mut Resolver,
    unsettled: &mut Unsettled,
    mut c: Candidate,
) -> Result<Option<u32>> {
    let key = c.key;
    // The kernel decides by (device, inode, change time) from now on: what matters is
    // what the file holds now, not what an event saw.
    c.at_ns = None;
    match until_lasting(&key) {
        None => return Ok(None),
        Some(wait) if !wait.is_zero() => {
            unsettled.push(Instant::now() + wait, c);
            return Ok(None);
        }
        Some(_) => {}
    }
    // Hashed even when its size is no app's: the trail names an unknown binary by its
    // hash, and a short-lived process is gone by the time its decision is written.
    resolver.offer(c);
    let Some(app) = resolver.sha256_of(&key).and_then(|sha| apps.get(&sha)) else {
        return Ok(None);
    };
    set_identity(map, &key, app)?;
    Ok(Some(app))
}

/// Executables reported while their change time was too fresh to be lasting, kept
/// open (so the file is the one that ran) until it is.
#[derive(Default)]
pub struct Unsettled(Vec<(Instant, Candidate)>);

/// Bound on files waiting to settle; past it the newest are not kept (the exec gate,
/// where there is one, still learns them).
const MAX_UNSETTLED: usize = 4_096;

impl Unsettled {
    fn push(&mut self, due: Instant, c: Candidate) {
        if self.0.len() < MAX_UNSETTLED {
            self.0.push((due, c));
        }
    }

    /// The candidates whose time has come.
    pub fn due(&mut self) -> Vec<Candidate> {
        let now = Instant::now();
        let (ready, waiting) = std::mem::take(&mut self.0)
            .into_iter()
            .partition(|(due, _)| *due <= now);
        self.0 = waiting;
        ready.into_iter().map(|(_, c)| c).collect()
    }
}
