//! Cgroup ids to the paths rule scopes name ("/system.slice/nginx.service"), for the
//! trail's `cgroup` column: one `open_by_handle_at` per new id (a cgroup-v2 id is its
//! kernfs file handle), never a walk of the hierarchy.

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;

/// `FILEID_KERNFS`: a kernfs node's 64-bit id as a file handle.
const FILEID_KERNFS: i32 = 0xfe;

#[repr(C)]
struct KernfsHandle {
    handle_bytes: u32,
    handle_type: i32,
    id: u64,
}

pub struct CgroupPaths {
    /// The cgroup-v2 mount (None: no hierarchy; every path unknown).
    root: Option<(File, PathBuf)>,
    known: HashMap<u64, Option<Arc<str>>>,
}

impl CgroupPaths {
    /// Ids remembered at most; then forgotten all at once (a cgroup's id is never
    /// reused while the machine runs, so a remembered path stays right).
    const MAX: usize = 16_384;

    pub fn new() -> Self {
        let root = crate::mounts::find_cgroup2_mount()
            .ok()
            .flatten()
            .and_then(|p| File::open(&p).ok().map(|f| (f, p)));
        CgroupPaths {
            root,
            known: HashMap::new(),
        }
    }

    /// The path of cgroup `id` under the cgroup-v2 root, if it still exists.
    pub fn path(&mut self, id: u64) -> Option<Arc<str>> {
        let (dir, mount) = self.root.as_ref()?;
        if self.known.len() >= Self::MAX {
            self.known.clear();
        }
        self.known
            .entry(id)
            .or_insert_with(|| resolve(dir, mount, id))
            .clone()
    }
}

fn resolve(dir: &File, mount: &std::path::Path, id: u64) -> Option<Arc<str>> {
    let mut handle = KernfsHandle {
        handle_bytes: 8,
        handle_type: FILEID_KERNFS,
        id,
    };
    // SAFETY: `handle` is a `struct file_handle` with 8 bytes of f_handle, as declared.
    let fd = unsafe {
        libc::open_by_handle_at(
            dir.as_raw_fd(),
            (&mut handle as *mut KernfsHandle).cast(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return None;
    }
    // SAFETY: a descriptor just opened and owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let full = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).ok()?;
    let rel = full.strip_prefix(mount).ok()?.to_str()?;
    Some(Arc::from(format!("/{rel}").as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_own_cgroup_resolves_to_its_path() {
        let Ok(Some(mount)) = crate::mounts::find_cgroup2_mount() else {
            eprintln!("skipped: no cgroup-v2 hierarchy mounted");
            return;
        };
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        let Some(rel) = own.lines().find_map(|l| l.strip_prefix("0::")) else {
            eprintln!("skipped: not in a cgroup-v2 hierarchy");
            return;
        };
        let id = std::os::unix::fs::MetadataExt::ino(
            &std::fs::metadata(mount.join(rel.trim_start_matches('/'))).unwrap(),
        );
        let mut paths = CgroupPaths::new();
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: open_by_handle_at needs CAP_DAC_READ_SEARCH");
            return;
        }
        assert_eq!(paths.path(id).as_deref(), Some(rel));
        assert_eq!(paths.path(u64::MAX - 1), None);
    }
}
