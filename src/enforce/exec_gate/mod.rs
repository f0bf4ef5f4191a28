//! The exec gate: fanotify `FAN_OPEN_EXEC_PERM` holds an exec of a file version the
//! enforcer has not hashed, so that a fresh copy or reinstall of an app is that app
//! from its very first connect. It never refuses an exec, and it never holds one long:
//! - a known file version, or a file whose size is no app's size (it cannot hash to an
//!   app), is answered at once;
//! - a candidate is hashed on a worker and answered when hashed, or at `HOLD` at the
//!   latest (hashing goes on; the file is recognised when it finishes);
//! - a watchdog process answers everything if this gate stalls (the enforcer stopped
//!   or stuck), and if pinhole dies the kernel lets all execs through.
//!
//! A file enters the kernel's table only with a lasting identity (see
//! `identity::hash`): changed so long ago that a rewrite must move its change time,
//! and not open for writing while it was hashed. A file changed moments ago on a
//! filesystem with one-second timestamps is let run at once and hashed when its
//! identity has become lasting (its process is recognised from then on).

mod shared;
pub mod watchdog;

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use libbpf_rs::MapHandle;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::fanotify::{EventFFlags, Fanotify, FanotifyResponse, InitFlags, MaskFlags, Response};

use super::identities::AppsByHash;
use super::tables::set_identity;
use crate::identity::{mark_exec_filesystems, sha256_file, until_lasting, ExeKey};
use shared::SharedMap;

/// Bound on remembered file versions; past it the memory starts over (files are rehashed).
const MAX_REMEMBERED: usize = 200_000;
/// The longest the gate holds an exec that might be an app (its size is an app's):
/// long enough to hash a large binary on a busy machine, short of a hang.
pub const HOLD: Duration = Duration::from_secs(1);
/// The gate thread goes round at least this often (the watchdog's heartbeat).
const ROUND: Duration = Duration::from_millis(20);
const HASHERS: usize = 2;
/// The longest a held exec waits for its file's identity to become lasting (a clock
/// tick where change times are precise); longer waits let the exec go first.
const LASTING_WAIT_HELD: Duration = Duration::from_millis(30);

/// What the gate writes to: the current generation's apps and identity table.
pub struct Target {
    pub apps: AppsByHash,
    pub identities: MapHandle,
    /// Every file version the gate hashed, so a reload can place them in the new table.
    hashed: HashMap<ExeKey, [u8; 32]>,
    /// Sizes of the apps' files, when every app's is known (else every exec is a candidate).
    app_sizes: Option<HashSet<u64>>,
}

impl Target {
    /// `sizes`: the file size of each app hash found on this host so far.
    pub fn new(apps: AppsByHash, identities: MapHandle, sizes: &HashMap<[u8; 32], u64>) -> Self {
        let mut t = Target {
            apps,
            identities,
            hashed: HashMap::new(),
            app_sizes: None,
        };
        t.set_sizes(sizes);
        t
    }

    fn set_sizes(&mut self, sizes: &HashMap<[u8; 32], u64>) {
        self.app_sizes = self.apps.sizes(sizes);
        if self.app_sizes.is_none() {
            tracing::info!("some apps' files were not found on this host: the exec gate hashes every new executable (each held {} ms at most)", HOLD.as_millis());
        }
    }

    /// Points the gate at a new generation, with everything it hashed so far.
    pub fn retarget(
        &mut self,
        apps: AppsByHash,
        identities: MapHandle,
        sizes: &HashMap<[u8; 32], u64>,
    ) {
        self.apps = apps;
        self.identities = identities;
        self.set_sizes(sizes);
        for (key, sha) in &self.hashed {
            if let Some(app) = self.apps.get(sha) {
                if let Err(e) = set_identity(&self.identities, key, app) {
                    tracing::warn!("{e:#}");
                }
            }
        }
    }

    /// Whether an exec of this file must wait for its hash.
    fn must_hold(&self, key: &ExeKey, size: u64) -> bool {
        !self.hashed.contains_key(key) && self.app_sizes.as_ref().is_none_or(|s| s.contains(&size))
    }
}

pub struct ExecGate {
    thread: Option<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    watchdog: Option<Child>,
}

/// A gate whose fanotify group and watchdog exist, before it holds any exec: made
/// before the enforcer sandboxes itself (the watchdog is a process it executes), started
/// after (so that its threads are confined too).
pub struct PreparedGate {
    fan: Fanotify,
    shared: SharedMap,
    watchdog: Child,
}

impl ExecGate {
    /// The fanotify group and the watchdog; None (logged) where the kernel has no
    /// fanotify permission events.
    pub fn prepare() -> Option<PreparedGate> {
        let fan = match Fanotify::init(
            InitFlags::FAN_CLASS_CONTENT | InitFlags::FAN_CLOEXEC | InitFlags::FAN_NONBLOCK,
            EventFFlags::O_RDONLY | EventFFlags::O_LARGEFILE | EventFFlags::O_CLOEXEC,
        ) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!("no exec gate (fanotify permission events unavailable: {e}); a fresh copy of an app can be unknown for its first connects");
                return None;
            }
        };
        let shared = match SharedMap::create() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("no exec gate (no shared memory for its watchdog: {e})");
                return None;
            }
        };
        // The watchdog first: no exec is held before someone can release it.
        match watchdog::spawn(&fan, &shared) {
            Ok(watchdog) => Some(PreparedGate {
                fan,
                shared,
                watchdog,
            }),
            Err(e) => {
                tracing::warn!("no exec gate: {e:#}");
                None
            }
        }
    }
}

impl PreparedGate {
    /// Marks every filesystem for exec permission events and starts answering them.
    pub fn start(self, target: Arc<Mutex<Target>>) -> ExecGate {
        let PreparedGate {
            fan,
            shared,
            watchdog,
        } = self;
        let marked = mark_exec_filesystems(&fan, MaskFlags::FAN_OPEN_EXEC_PERM);
        if marked == 0 {
            tracing::warn!("no exec gate: no filesystem could be marked");
        }
        tracing::debug!(filesystems = marked, "exec gate on");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("exec-gate".into())
            .spawn(move || serve(&fan, &shared, &target, &flag))
            .ok();
        ExecGate {
            thread,
            stop,
            watchdog: Some(watchdog),
        }
    }
}

impl Drop for ExecGate {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.join().ok();
        }
        if let Some(mut w) = self.watchdog.take() {
            w.kill().ok();
            w.wait().ok();
        }
    }
}

/// A held exec: its event's descriptor stays open (its number is what the answer
/// names) until the hash is done, whoever answered.
struct Held {
    slot: usize,
    token: shared::Token,
    file: File,
    key: ExeKey,
}

fn allow(fan: &Fanotify, fd: RawFd) {
    // SAFETY: the number of a descriptor this process still holds open.
    let event = unsafe { BorrowedFd::borrow_raw(fd) };
    if let Err(e) = fan.write_response(FanotifyResponse::new(event, Response::FAN_ALLOW)) {
        tracing::debug!("exec gate: answering an exec: {e}");
    }
}

fn serve(fan: &Fanotify, shared: &SharedMap, target: &Mutex<Target>, stop: &AtomicBool) {
    let g = shared.get();
    let (jobs, queue) = mpsc::channel::<Held>();
    let queue = Mutex::new(queue);
    std::thread::scope(|s| {
        for _ in 0..HASHERS {
            s.spawn(|| hasher(fan, shared, target, &queue));
        }
        let mut deadlines: Vec<(Instant, usize, shared::Token)> = Vec::new();
        while !stop.load(Ordering::Acquire) {
            g.beat();
            let now = Instant::now();
            let wait = deadlines
                .iter()
                .map(|(d, _, _)| d.saturating_duration_since(now))
                .min()
                .unwrap_or(ROUND)
                .min(ROUND);
            let mut fds = [PollFd::new(fan.as_fd(), PollFlags::POLLIN)];
            let timeout = PollTimeout::from(wait.as_millis() as u16);
            if poll(&mut fds, timeout).unwrap_or(0) > 0 {
                for ev in fan.read_events().unwrap_or_default() {
                    let Some(fd) = ev.fd().map(|f| f.as_raw_fd()) else {
                        continue;
                    };
                    // The event owns the descriptor; keep it open past the event.
                    std::mem::forget(ev);
                    // SAFETY: fanotify installed this descriptor for us alone.
                    let file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
                    admit(fan, g, target, &jobs, &mut deadlines, file);
                }
            }
            let now = Instant::now();
            deadlines.retain(|&(due, slot, token)| {
                if due > now {
                    return true;
                }
                if let Some(fd) = g.take(slot, token) {
                    allow(fan, fd);
                }
                false
            });
        }
        for (_, slot, token) in deadlines {
            if let Some(fd) = g.take(slot, token) {
                allow(fan, fd);
            }
        }
        drop(jobs);
    });
}

/// Answers an exec at once, or holds it and hands its file to a hasher.
fn admit(
    fan: &Fanotify,
    g: &shared::GateShared,
    target: &Mutex<Target>,
    jobs: &Sender<Held>,
    deadlines: &mut Vec<(Instant, usize, shared::Token)>,
    file: File,
) {
    let fd = file.as_raw_fd();
    let Ok(meta) = file.metadata() else {
        return allow(fan, fd);
    };
    let key = ExeKey::from_metadata(&meta);
    if !lock(target).must_hold(&key, meta.len()) {
        return allow(fan, fd);
    }
    let Some((slot, token)) = g.hold(fd) else {
        return allow(fan, fd);
    };
    deadlines.push((Instant::now() + HOLD, slot, token));
    if let Err(mpsc::SendError(h)) = jobs.send(Held {
        slot,
        token,
        file,
        key,
    }) {
        if let Some(fd) = g.take(h.slot, h.token) {
            allow(fan, fd);
        }
    }
}

fn hasher(
    fan: &Fanotify,
    shared: &SharedMap,
    target: &Mutex<Target>,
    queue: &Mutex<Receiver<Held>>,
) {
    loop {
        let job = queue.lock().unwrap_or_else(|e| e.into_inner()).recv();
        let Ok(mut held) = job else { return };
        let release = || {
            if let Some(fd) = shared.get().take(held.slot, held.token) {
                allow(fan, fd);
            }
        };
        let Some(wait) = until_lasting(&held.key) else {
            tracing::debug!(key = ?held.key, "exec gate: change time in the future; not trusted");
            release();
            continue;
        };
        if wait > LASTING_WAIT_HELD {
            release();
        }
        std::thread::sleep(wait);
        learn(&mut held.file, &held.key, target);
        release();
    }
}

/// Hashes a file version not seen before and, if it is an app, tells the kernel.
fn learn(file: &mut File, key: &ExeKey, target: &Mutex<Target>) {
    if lock(target).hashed.contains_key(key) {
        return;
    }
    // The key was read from the file just now: no witness is needed.
    let sha = match sha256_file(file, key, Default::default()) {
        Ok(d) if d.lasting => d.sha256,
        Ok(_) => {
            // Open for writing now: whatever it holds when executed next is hashed then.
            tracing::debug!(?key, "exec gate: not trusted (written to while hashed)");
            return;
        }
        Err(e) => {
            tracing::debug!(?key, "exec gate: not hashed: {e:?}");
            return;
        }
    };
    let mut t = lock(target);
    if t.hashed.len() >= MAX_REMEMBERED {
        t.hashed.clear();
    }
    t.hashed.insert(*key, sha);
    if let Some(app) = t.apps.get(&sha) {
        if let Err(e) = set_identity(&t.identities, key, app) {
            tracing::warn!("{e:#}");
        }
    }
}

fn lock(t: &Mutex<Target>) -> std::sync::MutexGuard<'_, Target> {
    t.lock().unwrap_or_else(|e| e.into_inner())
}
