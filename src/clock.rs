//! Converts the kernel's CLOCK_BOOTTIME stamps into wall-clock UTC nanoseconds.

fn clock_ns(clock: libc::clockid_t) -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid out-pointer.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// CLOCK_BOOTTIME now, in nanoseconds: the clock of the kernel's timestamps.
pub fn boot_ns() -> u64 {
    clock_ns(libc::CLOCK_BOOTTIME) as u64
}

/// The offset between boot time and the Unix epoch, read once per recording so that
/// event times stay monotonic even if the wall clock is stepped meanwhile.
#[derive(Debug, Clone, Copy)]
pub struct BootClock {
    offset_ns: i64,
}

impl BootClock {
    pub fn now() -> Self {
        let boot = clock_ns(libc::CLOCK_BOOTTIME);
        let real = clock_ns(libc::CLOCK_REALTIME);
        BootClock {
            offset_ns: real - boot,
        }
    }

    pub fn to_unix_ns(self, boot_ns: u64) -> i64 {
        boot_ns as i64 + self.offset_ns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_time_maps_to_now() {
        let c = BootClock::now();
        let boot = clock_ns(libc::CLOCK_BOOTTIME) as u64;
        let real = clock_ns(libc::CLOCK_REALTIME);
        assert!((c.to_unix_ns(boot) - real).abs() < 50_000_000);
    }
}
