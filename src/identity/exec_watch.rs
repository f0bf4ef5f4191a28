//! Pins every executed file at exec time with fanotify `FAN_OPEN_EXEC` notifications.
//!
//! Each notification carries an open descriptor of the exact file the kernel opened
//! for an exec, created before the new program runs. A process that execs, connects,
//! exits and has its file deleted within a millisecond is still hashed from that
//! descriptor. Notifications never block the exec (unlike the `_PERM` variant).

use std::collections::HashMap;
use std::fs::{self, File};
use std::time::{Duration, Instant};

use nix::sys::fanotify::{EventFFlags, Fanotify, InitFlags, MarkFlags, MaskFlags};

use super::fd_budget::{self, Token};
use super::key::ExeKey;

/// Filesystems that hold no executables worth marking.
const PSEUDO_FS: &[&str] = &[
    "proc",
    "sysfs",
    "cgroup",
    "cgroup2",
    "bpf",
    "tracefs",
    "debugfs",
    "devpts",
    "mqueue",
    "securityfs",
    "pstore",
    "configfs",
    "fusectl",
    "autofs",
    "binfmt_misc",
    "efivarfs",
    "nsfs",
    "rpc_pipefs",
    "hugetlbfs",
];

/// How long an unmatched descriptor waits for its exec record.
const KEEP_UNMATCHED: Duration = Duration::from_secs(2);

/// Marks every filesystem that can hold executables for `mask`; returns how many.
pub fn mark_exec_filesystems(fan: &Fanotify, mask: MaskFlags) -> usize {
    let mut marked = 0;
    for mount in exec_filesystems() {
        match fan.mark(
            MarkFlags::FAN_MARK_ADD | MarkFlags::FAN_MARK_FILESYSTEM,
            mask,
            nix::fcntl::AT_FDCWD,
            Some(mount.as_str()),
        ) {
            Ok(()) => marked += 1,
            Err(e) => tracing::debug!(mount, ?mask, "cannot mark this filesystem: {e}"),
        }
    }
    marked
}

/// One mount point per mounted filesystem that can hold executables.
fn exec_filesystems() -> Vec<String> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let fields: Vec<&str> = pre.split_whitespace().collect();
        let fstype = post.split_whitespace().next().unwrap_or_default();
        if fields.len() < 5 || PSEUDO_FS.contains(&fstype) || !seen.insert(fields[2]) {
            continue;
        }
        out.push(fields[4].replace("\\040", " "));
    }
    out
}

pub struct ExecWatch {
    fan: Fanotify,
    /// Descriptors by pid, each with its share of the descriptor budget.
    unmatched: HashMap<u32, Vec<(File, Instant, Token)>>,
}

impl ExecWatch {
    /// Marks every mounted filesystem; None (with the reason logged) if fanotify is
    /// unavailable, in which case only /proc/<pid>/exe is used.
    pub fn start() -> Option<ExecWatch> {
        let fan = match Fanotify::init(
            InitFlags::FAN_CLASS_NOTIF
                | InitFlags::FAN_CLOEXEC
                | InitFlags::FAN_NONBLOCK
                | InitFlags::FAN_UNLIMITED_QUEUE,
            EventFFlags::O_RDONLY | EventFFlags::O_LARGEFILE | EventFFlags::O_CLOEXEC,
        ) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!("fanotify unavailable ({e}): short-lived binaries deleted right after they run may go unhashed");
                return None;
            }
        };
        let marked = mark_exec_filesystems(&fan, MaskFlags::FAN_OPEN_EXEC);
        tracing::debug!(filesystems = marked, "watching execs with fanotify");
        Some(ExecWatch {
            fan,
            unmatched: HashMap::new(),
        })
    }

    /// Collects pending notifications; call after the exec ring has been drained.
    pub fn collect(&mut self) {
        let now = Instant::now();
        let events = self.fan.read_events().unwrap_or_default();
        for ev in events {
            if ev.mask().contains(MaskFlags::FAN_Q_OVERFLOW) {
                tracing::warn!(
                    "fanotify queue overflowed: some executables are identified through /proc only"
                );
                continue;
            }
            let Some(fd) = ev.fd() else { continue };
            // The event's own descriptor closes with it; a kept one needs budget.
            let Some(held) = fd_budget::take() else {
                continue;
            };
            if let Ok(owned) = fd.try_clone_to_owned() {
                self.unmatched.entry(ev.pid() as u32).or_default().push((
                    File::from(owned),
                    now,
                    held,
                ));
            }
        }
        self.unmatched.retain(|_, files| {
            files.retain(|(_, at, _)| now.duration_since(*at) < KEEP_UNMATCHED);
            !files.is_empty()
        });
    }

    /// The pinned descriptor of the file `pid` executed as `key`, if one was seen.
    pub fn take(&mut self, pid: u32, key: &ExeKey) -> Option<(File, Token)> {
        let files = self.unmatched.get_mut(&pid)?;
        let i = files.iter().position(|(f, _, _)| {
            f.metadata()
                .is_ok_and(|m| ExeKey::from_metadata(&m).same_file(key))
        })?;
        let (file, _, held) = files.swap_remove(i);
        Some((file, held))
    }
}
