//! The kernel's view of an executable (device, inode, change time), comparable with stat.

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;

/// Identifies one version of one file: any write to it moves the change time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ExeKey {
    /// User-space `st_dev` encoding.
    pub dev: u64,
    pub ino: u64,
    pub ctime_sec: i64,
    pub ctime_nsec: u32,
}

impl ExeKey {
    /// From the fields of a kernel `struct exe_identity` (bpf/pinhole.h).
    pub fn from_kernel(kdev: u32, ino: u64, ctime_sec: i64, ctime_nsec: u32) -> Self {
        ExeKey {
            dev: kernel_dev_to_user(kdev),
            ino,
            ctime_sec,
            ctime_nsec,
        }
    }

    pub fn from_metadata(m: &Metadata) -> Self {
        ExeKey {
            dev: m.dev(),
            ino: m.ino(),
            ctime_sec: m.ctime(),
            ctime_nsec: m.ctime_nsec() as u32,
        }
    }

    /// Kernel threads have no executable; the BPF side leaves the identity zeroed.
    pub fn is_none(&self) -> bool {
        self.ino == 0
    }

    /// Same file (device and inode), whatever its change time.
    pub fn same_file(&self, other: &ExeKey) -> bool {
        self.dev == other.dev && self.ino == other.ino
    }
}

/// A temporary file holding `bytes` (closed: nobody has it open for writing), and its
/// identity (for tests).
#[cfg(test)]
pub(crate) fn temp_file_with(bytes: &[u8]) -> (tempfile::TempPath, ExeKey) {
    use std::io::Write;
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(bytes).unwrap();
    let key = ExeKey::from_metadata(&f.as_file().metadata().unwrap());
    (f.into_temp_path(), key)
}

/// As `temp_file_with`, once the clock has moved past its change time: its identity
/// is lasting (`identity::hash`).
#[cfg(test)]
pub(crate) fn settled_temp_file_with(bytes: &[u8]) -> (tempfile::TempPath, ExeKey) {
    let (f, key) = temp_file_with(bytes);
    std::thread::sleep(
        super::hash::until_lasting(&key).unwrap() + std::time::Duration::from_millis(20),
    );
    (f, key)
}

/// The kernel encodes dev_t as major << 20 | minor; stat uses glibc's makedev layout.
pub fn kernel_dev_to_user(kdev: u32) -> u64 {
    libc::makedev(kdev >> 20, kdev & 0xfffff)
}

/// The inverse, for keys user space writes into kernel maps.
pub fn user_dev_to_kernel(dev: u64) -> u32 {
    (libc::major(dev) << 20) | libc::minor(dev)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_numbers_round_trip_through_the_kernel_encoding() {
        for (major, minor) in [(8, 1), (259, 3), (0, 45), (253, 0x12345)] {
            let dev = libc::makedev(major, minor);
            assert_eq!(kernel_dev_to_user(user_dev_to_kernel(dev)), dev);
        }
    }

    #[test]
    fn dev_encoding_matches_stat() {
        // 254:1 in the kernel's encoding is 0xFE00001; stat shows 0xFE01.
        assert_eq!(kernel_dev_to_user((254 << 20) | 1), 0xFE01);
        // Minors above 255 use the high bits in user space.
        assert_eq!(kernel_dev_to_user((8 << 20) | 300), libc::makedev(8, 300));
    }

    #[test]
    fn key_from_metadata_is_the_files_identity() {
        let f = tempfile::NamedTempFile::new().unwrap();
        let m = f.as_file().metadata().unwrap();
        let k = ExeKey::from_metadata(&m);
        assert_eq!(k.ino, m.ino());
        assert!(k.same_file(&ExeKey { ctime_sec: 0, ..k }));
    }
}
