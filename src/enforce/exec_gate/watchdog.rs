//! The exec gate's watchdog: a separate small process, in its own session, that
//! answers the gate's permission events "allow" whenever the enforcer's gate thread
//! has been silent too long (the enforcer stopped by SIGSTOP or a debugger, or stuck).
//! A stalled enforcer then costs an exec at most `STALL_MS` plus one tick, never a
//! frozen host. It dies with the enforcer (PR_SET_PDEATHSIG), so it never keeps the
//! fanotify group alive on its own. It confines itself at once: no capability, no file
//! writes, no execution.

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, Result};
use nix::sys::fanotify::{Fanotify, FanotifyResponse, Response};

use super::shared::SharedMap;

/// Silence of the gate thread (which goes round at least every 20 ms) that counts as
/// a stall.
pub const STALL_MS: u64 = 200;
const TICK: Duration = Duration::from_millis(10);

/// The hidden subcommand's arguments: descriptors inherited from the enforcer.
#[derive(Debug, clap::Args)]
pub struct WatchdogArgs {
    #[arg(long)]
    fanotify_fd: RawFd,
    #[arg(long)]
    shared_fd: RawFd,
    #[arg(long)]
    parent: u32,
}

/// Starts the watchdog for `fan`, sharing `shared`.
pub fn spawn(fan: &Fanotify, shared: &SharedMap) -> Result<Child> {
    let fan_fd = fan.as_raw_fd();
    let shared_fd = shared.fd().as_raw_fd();
    let mut cmd = Command::new("/proc/self/exe");
    cmd.args(["exec-gate-watchdog", "--fanotify-fd"])
        .arg(fan_fd.to_string())
        .arg("--shared-fd")
        .arg(shared_fd.to_string())
        .arg("--parent")
        .arg(std::process::id().to_string())
        .stdin(Stdio::null());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            for fd in [fan_fd, shared_fd] {
                if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            // Its own session: a terminal's Ctrl-Z or Ctrl-C does not reach it.
            libc::setsid();
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    cmd.spawn().context("starting the exec gate's watchdog")
}

/// Answers `fd`'s permission event "allow"; the number is the enforcer's, which is
/// all the kernel matches a response by.
fn allow(fan: &Fanotify, fd: RawFd) {
    // SAFETY: the descriptor is only copied into the response, never used here.
    let event = unsafe { BorrowedFd::borrow_raw(fd) };
    fan.write_response(FanotifyResponse::new(event, Response::FAN_ALLOW))
        .ok();
}

/// The watchdog process's main loop; returns when the enforcer is gone.
pub fn run(args: WatchdogArgs) -> Result<()> {
    for sig in [
        libc::SIGTSTP,
        libc::SIGTTIN,
        libc::SIGTTOU,
        libc::SIGINT,
        libc::SIGHUP,
    ] {
        // SAFETY: ignoring a signal has no memory effects.
        unsafe { libc::signal(sig, libc::SIG_IGN) };
    }
    // SAFETY: both descriptors were inherited for us alone.
    let fan = unsafe { Fanotify::from_raw_fd(args.fanotify_fd) };
    let shared = SharedMap::open(unsafe { OwnedFd::from_raw_fd(args.shared_fd) })
        .context("mapping the exec gate's shared state")?;
    // It only answers on descriptors it holds: no file to write, nothing to execute,
    // no capability.
    let layers = crate::sandbox::confine(&crate::sandbox::Spec {
        writable: Vec::new(),
        bind_port: None,
        keep: Vec::new(),
    });
    tracing::debug!(layers = %layers.describe(), "exec gate watchdog confined");
    let g = shared.get();
    let mut stalled = false;
    // The enforcer may have died between fork and PR_SET_PDEATHSIG.
    // SAFETY: getppid has no preconditions.
    while unsafe { libc::getppid() } == args.parent as libc::pid_t {
        std::thread::sleep(TICK);
        if g.silent_for_ms() < STALL_MS {
            if stalled {
                eprintln!("pinhole: the exec gate answers again");
                stalled = false;
            }
            continue;
        }
        if !stalled {
            eprintln!(
                "pinhole: the enforcer's exec gate has been silent for {} ms (stopped or stuck): \
                 execs run without waiting to be hashed until it answers again",
                g.silent_for_ms()
            );
            stalled = true;
        }
        for slot in g.slots() {
            if let Some(fd) = g.take_any(slot) {
                allow(&fan, fd);
                g.released.fetch_add(1, Ordering::Relaxed);
            }
        }
        // Events the gate never read (the group is non-blocking): answered and closed here.
        for ev in fan.read_events().unwrap_or_default() {
            if let Some(fd) = ev.fd() {
                allow(&fan, fd.as_raw_fd());
                g.released.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    Ok(())
}
