//! The pseudo-filesystems pinhole needs: the cgroup-v2 root its sock_addr hooks attach
//! to, tracefs for its tracepoints, and bpffs for `enforce --persist`. Each is found,
//! or mounted when missing.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// The cgroup-v2 mount point listed in /proc/self/mountinfo, if any.
pub fn find_cgroup2_mount() -> Result<Option<PathBuf>> {
    let info =
        fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    Ok(parse_cgroup2_mount(&info))
}

fn parse_cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    mounts_of(mountinfo, "cgroup2").next()
}

/// Mount points of `fstype` in mountinfo order.
fn mounts_of<'a>(mountinfo: &'a str, fstype: &'a str) -> impl Iterator<Item = PathBuf> + 'a {
    mountinfo.lines().filter_map(move |line| {
        // Fields: id parent major:minor root mountpoint options ... - fstype source superopts
        let (pre, post) = line.split_once(" - ")?;
        if post.split_whitespace().next()? != fstype {
            return None;
        }
        let mount_point = pre.split_whitespace().nth(4)?;
        Some(PathBuf::from(unescape_mountinfo(mount_point)))
    })
}

const BPFFS: &str = "/sys/fs/bpf";

/// Pins live in bpffs; mount it at the conventional place when it is not there.
pub fn ensure_bpffs() -> Result<()> {
    let info =
        fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    if mounts_of(&info, "bpf").any(|p| p == Path::new(BPFFS)) {
        return Ok(());
    }
    mount_fs(c"bpf", Path::new(BPFFS))
        .with_context(|| format!("mounting bpffs at {BPFFS} (needed by --persist)"))
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape_mountinfo(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// The cgroup-v2 root, mounting the hierarchy under `fallback` when none is mounted.
pub fn cgroup2_root(fallback: &Path) -> Result<PathBuf> {
    if let Some(p) = find_cgroup2_mount()? {
        return Ok(p);
    }
    mount_fs(c"cgroup2", fallback).with_context(|| {
        format!(
            "no cgroup-v2 hierarchy is mounted and mounting one at {} failed",
            fallback.display()
        )
    })?;
    Ok(fallback.to_owned())
}

const TRACEFS: &str = "/sys/kernel/tracing";

/// Where debugfs offers tracefs, as an automount point; libbpf looks there first.
const DEBUGFS_TRACING_EVENTS: &str = "/sys/kernel/debug/tracing/events";

/// libbpf resolves `tp/` programs through tracefs; mount it where libbpf looks first.
/// Call it before the sandbox: a tracepoint is attached again at every reload, and a
/// Landlock-confined process cannot trigger debugfs's tracing automount (ELOOP), so it
/// is triggered here, where libbpf will look for it.
pub fn ensure_tracefs() -> Result<()> {
    let dir = Path::new(TRACEFS);
    let through_debugfs = Path::new(DEBUGFS_TRACING_EVENTS).exists();
    if through_debugfs || dir.join("events").exists() {
        return Ok(());
    }
    mount_fs(c"tracefs", dir)
        .with_context(|| format!("mounting tracefs at {TRACEFS} (needed for the exec tracepoint)"))
}

const SECURITYFS: &str = "/sys/kernel/security";

/// The active LSMs, in order, as the kernel lists them (securityfs mounted if need be).
pub fn active_lsms() -> Result<String> {
    let list = Path::new(SECURITYFS).join("lsm");
    if !list.exists() {
        mount_fs(c"securityfs", Path::new(SECURITYFS))
            .with_context(|| format!("mounting securityfs at {SECURITYFS}"))?;
    }
    let text = fs::read_to_string(&list).with_context(|| format!("reading {}", list.display()))?;
    Ok(text.trim().to_owned())
}

fn mount_fs(fstype: &std::ffi::CStr, at: &Path) -> Result<()> {
    fs::create_dir_all(at).with_context(|| format!("creating {}", at.display()))?;
    let target = std::ffi::CString::new(at.as_os_str().as_encoded_bytes())?;
    // SAFETY: valid NUL-terminated strings; no data argument.
    let rc = unsafe {
        libc::mount(
            fstype.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    Ok(())
}

/// Resolves a `--cgroup` argument: absolute, or relative to the cgroup-v2 root.
pub fn resolve_cgroup(root: &Path, arg: &Path) -> Result<PathBuf> {
    let path = if arg.is_absolute() {
        arg.to_owned()
    } else {
        root.join(arg)
    };
    if !path.join("cgroup.procs").exists() {
        bail!(
            "{} is not a cgroup-v2 directory (no cgroup.procs)",
            path.display()
        );
    }
    Ok(path)
}

/// A cgroup's id (the inode of its directory) and its depth below the root (level 0),
/// what `bpf_get_current_ancestor_cgroup_id` compares.
pub fn cgroup_scope(root: &Path, cgroup: &Path) -> Result<(u64, u32)> {
    use std::os::unix::fs::MetadataExt;
    let rel = cgroup
        .strip_prefix(root)
        .with_context(|| format!("{} is not under {}", cgroup.display(), root.display()))?;
    let meta =
        std::fs::metadata(cgroup).with_context(|| format!("reading {}", cgroup.display()))?;
    Ok((meta.ino(), rel.components().count() as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_cgroup2_line() {
        let info = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
                    40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd\n\
                    41 31 0:38 / /sys/fs/cgroup/my\\040unified rw,relatime shared:9 - cgroup2 cgroup2 rw\n";
        assert_eq!(
            parse_cgroup2_mount(info),
            Some(PathBuf::from("/sys/fs/cgroup/my unified"))
        );
        assert_eq!(
            parse_cgroup2_mount("1 2 0:1 / / rw - ext4 /dev/vda rw\n"),
            None
        );
    }
}
