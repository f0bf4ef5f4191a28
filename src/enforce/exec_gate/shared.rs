//! What the exec gate shares with its watchdog process, in one memfd both map: a
//! heartbeat the gate thread renews, and the permission events it holds (their
//! descriptor numbers, which is all a fanotify response names).

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// At most this many execs are held at once; past it an exec is answered at once.
pub const SLOTS: usize = 256;
const FREE: i64 = -1;

/// A held event as a slot records it: a sequence number above its descriptor, so a
/// late answer for one event never takes a later event that reused the descriptor
/// number and the slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token(i64);

impl Token {
    pub fn fd(self) -> i32 {
        self.0 as u32 as i32
    }
}

#[repr(C)]
pub struct GateShared {
    /// CLOCK_MONOTONIC milliseconds of the gate thread's last round.
    heartbeat_ms: AtomicU64,
    /// Execs the watchdog answered because the gate had stalled.
    pub released: AtomicU64,
    /// Numbers tokens; only the gate thread takes from it.
    sequence: AtomicU64,
    slots: [AtomicI64; SLOTS],
}

/// Milliseconds of the machine-wide monotonic clock, the same in both processes.
pub fn now_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

impl GateShared {
    pub fn beat(&self) {
        self.heartbeat_ms.store(now_ms(), Ordering::Release);
    }

    /// How long ago the gate thread last went round its loop.
    pub fn silent_for_ms(&self) -> u64 {
        now_ms().saturating_sub(self.heartbeat_ms.load(Ordering::Acquire))
    }

    /// Records a held event's descriptor; None when every slot is taken.
    pub fn hold(&self, fd: i32) -> Option<(usize, Token)> {
        let seq = self.sequence.fetch_add(1, Ordering::Relaxed) & 0x7fff_ffff;
        let token = Token(((seq as i64) << 32) | i64::from(fd as u32));
        let slot = self.slots.iter().position(|s| {
            s.compare_exchange(FREE, token.0, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        })?;
        Some((slot, token))
    }

    /// Takes this event out if it is still held: whoever gets it answers it, once.
    pub fn take(&self, slot: usize, token: Token) -> Option<i32> {
        self.slots[slot]
            .compare_exchange(token.0, FREE, Ordering::AcqRel, Ordering::Relaxed)
            .ok()
            .map(|_| token.fd())
    }

    /// Takes whatever the slot holds (the watchdog releasing everything).
    pub fn take_any(&self, slot: usize) -> Option<i32> {
        let v = self.slots[slot].swap(FREE, Ordering::AcqRel);
        (v != FREE).then_some(Token(v).fd())
    }

    pub fn slots(&self) -> std::ops::Range<usize> {
        0..SLOTS
    }
}

/// A mapping of the shared page(s).
pub struct SharedMap {
    ptr: *mut GateShared,
    fd: OwnedFd,
}

// SAFETY: GateShared is only atomics; the mapping lives as long as the SharedMap.
unsafe impl Send for SharedMap {}
unsafe impl Sync for SharedMap {}

impl SharedMap {
    /// A fresh memfd, every slot free, the heartbeat current.
    pub fn create() -> io::Result<SharedMap> {
        // SAFETY: a NUL-terminated name and valid flags.
        let raw = unsafe { libc::memfd_create(c"pinhole-exec-gate".as_ptr(), libc::MFD_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: memfd_create returned a new descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: ftruncate on our descriptor.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), size_of::<GateShared>() as libc::off_t) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let map = SharedMap::open(fd)?;
        for s in &map.get().slots {
            s.store(FREE, Ordering::Release);
        }
        map.get().beat();
        Ok(map)
    }

    /// Maps a memfd made by `create` (the watchdog's side).
    pub fn open(fd: OwnedFd) -> io::Result<SharedMap> {
        // SAFETY: a shared read-write mapping of a file at least this large.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size_of::<GateShared>(),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(SharedMap {
            ptr: ptr.cast(),
            fd,
        })
    }

    pub fn get(&self) -> &GateShared {
        // SAFETY: mapped, aligned (page), and valid for the life of self.
        unsafe { &*self.ptr }
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for SharedMap {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what open() mapped.
        unsafe { libc::munmap(self.ptr.cast(), size_of::<GateShared>()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_held_event_is_taken_once() {
        let m = SharedMap::create().unwrap();
        let g = m.get();
        let (a, ta) = g.hold(7).unwrap();
        let (b, tb) = g.hold(9).unwrap();
        assert_ne!(a, b);
        assert_eq!(g.take(a, ta), Some(7));
        assert_eq!(g.take(a, ta), None);
        assert!(g.silent_for_ms() < 1000);
        // A second mapping of the same memfd sees the same slots.
        let other = SharedMap::open(m.fd().try_clone_to_owned().unwrap()).unwrap();
        assert_eq!(other.get().take_any(b), Some(9));
        assert_eq!(g.take(b, tb), None);
    }

    /// Regression: a hold's deadline, passing after its event was answered, released
    /// a later event that had reused the descriptor number and the slot (about 5 of 100
    /// fresh copies ran before being hashed in the benchmark).
    #[test]
    fn a_stale_answer_does_not_release_a_later_event() {
        let m = SharedMap::create().unwrap();
        let g = m.get();
        let (slot, first) = g.hold(12).unwrap();
        assert_eq!(g.take(slot, first), Some(12));
        let (again, second) = g.hold(12).unwrap();
        assert_eq!(again, slot);
        assert_eq!(g.take(slot, first), None, "the stale token takes nothing");
        assert_eq!(g.take(slot, second), Some(12));
    }
}
