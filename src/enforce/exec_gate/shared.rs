//! What the exec gate shares with its watchdog process, in one memfd both map: a
//! heartbeat the gate thread renews, and the permission events it holds (their
//! descriptor numbers, which is all a fanotify response names).

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};

/// At most this many execs are held at once; past it an exec is answered at once.
pub const SLOTS: usize = 256;
const FREE: i32 = -1;

#[repr(C)]
pub struct GateShared {
    /// CLOCK_MONOTONIC milliseconds of the gate thread's last round.
    heartbeat_ms: AtomicU64,
    /// Execs the watchdog answered because the gate had stalled.
    pub released: AtomicU64,
    slots: [AtomicI32; SLOTS],
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
    pub fn hold(&self, fd: i32) -> Option<usize> {
        self.slots.iter().position(|s| {
            s.compare_exchange(FREE, fd, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        })
    }

    /// Takes a held event out: whoever gets its descriptor answers it, exactly once.
    pub fn take(&self, slot: usize) -> Option<i32> {
        let fd = self.slots[slot].swap(FREE, Ordering::AcqRel);
        (fd != FREE).then_some(fd)
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
        let a = g.hold(7).unwrap();
        let b = g.hold(9).unwrap();
        assert_ne!(a, b);
        assert_eq!(g.take(a), Some(7));
        assert_eq!(g.take(a), None);
        assert!(g.silent_for_ms() < 1000);
        // A second mapping of the same memfd sees the same slots.
        let other = SharedMap::open(m.fd().try_clone_to_owned().unwrap()).unwrap();
        assert_eq!(other.get().take(b), Some(9));
        assert_eq!(g.take(b), None);
    }
}
