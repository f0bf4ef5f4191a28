//! When a file's (device, inode, change time) can no longer name other bytes: change
//! times come from the kernel's coarse clock, so a rewrite within the same tick (the
//! same second on filesystems with one-second stamps) keeps the stamp.

use super::key::ExeKey;

/// The wall clock the kernel stamps change times from (the coarse one), in Unix ns.
pub(super) fn coarse_now_ns() -> i64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec; the clock id is valid on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut t) };
    t.tv_sec * 1_000_000_000 + t.tv_nsec
}

/// How often the coarse clock moves (a scheduler tick).
fn coarse_tick_ns() -> i64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: as above.
    unsafe { libc::clock_getres(libc::CLOCK_REALTIME_COARSE, &mut t) };
    (t.tv_sec * 1_000_000_000 + t.tv_nsec).clamp(1_000_000, 100_000_000)
}

/// How far past a change time the coarse clock must be before any later write is
/// sure to get another stamp: past the stamp itself where times have sub-second
/// precision, two seconds where they have none (ext4 with 128-byte inodes stores
/// seconds; other such filesystems have two-second steps).
pub(super) fn lasting_after_ns(key: &ExeKey) -> i64 {
    let stamp = key.ctime_sec * 1_000_000_000 + i64::from(key.ctime_nsec);
    if key.ctime_nsec == 0 {
        stamp + 2_000_000_000
    } else {
        stamp + 1
    }
}

/// The longest wait `until_lasting` allows for: a change time later than this is in
/// the future (the clock was set back).
const LASTING_WAIT_MAX_NS: i64 = 3_000_000_000;

/// How long until a file changed at `key`'s change time can have a lasting identity;
/// None for a change time in the future: such a file is trusted once it changes again.
pub fn until_lasting(key: &ExeKey) -> Option<std::time::Duration> {
    let wait = lasting_after_ns(key) - coarse_now_ns();
    // The coarse clock moves a tick at a time: one more tick is sure to have passed.
    let wait = if wait > 0 { wait + coarse_tick_ns() } else { 0 };
    (wait <= LASTING_WAIT_MAX_NS).then(|| std::time::Duration::from_nanos(wait as u64))
}
