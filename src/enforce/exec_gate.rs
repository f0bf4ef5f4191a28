//! The exec gate: fanotify `FAN_OPEN_EXEC_PERM` holds each exec of a file version the
//! enforcer has not hashed until it is hashed and, if its bytes are an app's, written
//! into the kernel's identity table. A fresh copy or reinstall of an app is then that
//! app from its very first connect. The gate only delays: every exec is allowed, a
//! known file costs one fstat and a lookup, and if pinhole dies the kernel lets all
//! execs through (the group's pending permission events are answered "allow").

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use libbpf_rs::MapHandle;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::fanotify::{EventFFlags, Fanotify, FanotifyResponse, InitFlags, MaskFlags, Response};

use super::identities::AppsByHash;
use super::tables::set_identity;
use crate::identity::{mark_exec_filesystems, sha256_file, ExeKey};

/// Bound on remembered file versions; past it the memory starts over (files are rehashed).
const MAX_REMEMBERED: usize = 200_000;

/// What the gate writes to: the current generation's apps and identity table.
pub struct Target {
    pub apps: AppsByHash,
    pub identities: MapHandle,
    /// Every file version the gate hashed, so a reload can place them in the new table.
    hashed: HashMap<ExeKey, [u8; 32]>,
}

impl Target {
    pub fn new(apps: AppsByHash, identities: MapHandle) -> Self {
        Target {
            apps,
            identities,
            hashed: HashMap::new(),
        }
    }

    /// Points the gate at a new generation, with everything it hashed so far.
    pub fn retarget(&mut self, apps: AppsByHash, identities: MapHandle) {
        self.apps = apps;
        self.identities = identities;
        for (key, sha) in &self.hashed {
            if let Some(app) = self.apps.get(sha) {
                if let Err(e) = set_identity(&self.identities, key, app) {
                    tracing::warn!("{e:#}");
                }
            }
        }
    }
}

pub struct ExecGate {
    thread: Option<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

impl ExecGate {
    /// Marks every filesystem for exec permission events; None (logged) where the
    /// kernel has no fanotify permission events.
    pub fn start(target: Arc<Mutex<Target>>) -> Option<ExecGate> {
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
        let marked = mark_exec_filesystems(&fan, MaskFlags::FAN_OPEN_EXEC_PERM);
        if marked == 0 {
            tracing::warn!("no exec gate: no filesystem could be marked");
            return None;
        }
        tracing::debug!(filesystems = marked, "exec gate on");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("exec-gate".into())
            .spawn(move || serve(&fan, &target, &flag))
            .ok()?;
        Some(ExecGate {
            thread: Some(thread),
            stop,
        })
    }
}

impl Drop for ExecGate {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.join().ok();
        }
    }
}

fn serve(fan: &Fanotify, target: &Mutex<Target>, stop: &AtomicBool) {
    while !stop.load(Ordering::Acquire) {
        let mut fds = [PollFd::new(fan.as_fd(), PollFlags::POLLIN)];
        if poll(&mut fds, PollTimeout::from(100u16)).unwrap_or(0) == 0 {
            continue;
        }
        for ev in fan.read_events().unwrap_or_default() {
            let Some(fd) = ev.fd() else { continue };
            learn(fd, target);
            // Always allow: the gate delays an exec until its file is known, no more.
            if let Err(e) = fan.write_response(FanotifyResponse::new(fd, Response::FAN_ALLOW)) {
                tracing::warn!("exec gate could not answer: {e}");
            }
        }
    }
}

/// Hashes a file version not seen before and, if it is an app, tells the kernel.
fn learn(fd: BorrowedFd<'_>, target: &Mutex<Target>) {
    let Ok(owned) = fd.try_clone_to_owned() else {
        return;
    };
    let mut file = File::from(owned);
    let Ok(meta) = file.metadata() else { return };
    let key = ExeKey::from_metadata(&meta);
    if lock(target).hashed.contains_key(&key) {
        return;
    }
    let Ok(sha) = sha256_file(&mut file, &key) else {
        return;
    };
    let mut t = lock(target);
    if t.hashed.len() >= MAX_REMEMBERED {
        t.hashed.clear();
    }
    t.hashed.insert(key, sha);
    if let Some(app) = t.apps.get(&sha) {
        if let Err(e) = set_identity(&t.identities, &key, app) {
            tracing::warn!("{e:#}");
        }
    }
}

fn lock(t: &Mutex<Target>) -> std::sync::MutexGuard<'_, Target> {
    t.lock().unwrap_or_else(|e| e.into_inner())
}
