//! What pinhole needs from the process it runs in: capabilities, checked by name (not
//! uid 0, so a service can run as a dedicated user given exactly these), and a kernel
//! with BTF.

use anyhow::{bail, Result};
use caps::{CapSet, Capability};

/// What the recorder and the enforcer use: loading and attaching BPF programs
/// (CAP_BPF, CAP_PERFMON for tracing programs, CAP_NET_ADMIN for the cgroup socket
/// hooks), fanotify, iterators and BPF objects by id (CAP_SYS_ADMIN), and reading other
/// users' processes' executables to hash them (CAP_SYS_PTRACE for /proc/PID/exe,
/// CAP_DAC_READ_SEARCH for files only their owner may read).
pub const DAEMON: &[(Capability, &str)] = &[
    (Capability::CAP_BPF, "loading BPF programs"),
    (Capability::CAP_PERFMON, "tracing programs"),
    (Capability::CAP_NET_ADMIN, "the cgroup socket hooks"),
    (
        Capability::CAP_SYS_ADMIN,
        "fanotify, BPF iterators and objects by id",
    ),
    (
        Capability::CAP_SYS_PTRACE,
        "/proc/PID/exe of other users' processes",
    ),
    (
        Capability::CAP_DAC_READ_SEARCH,
        "hashing executables only their owner may read",
    ),
];

/// What asking a running enforcer uses: its pinned or numbered BPF objects.
pub const CONTROL: &[(Capability, &str)] = &[
    (Capability::CAP_BPF, "reading BPF maps"),
    (Capability::CAP_SYS_ADMIN, "BPF objects by id"),
];

/// Fails naming every capability in `needed` the process lacks, and why it is needed.
pub fn require(what: &str, needed: &[(Capability, &str)]) -> Result<()> {
    let effective = caps::read(None, CapSet::Effective).unwrap_or_default();
    // A kernel older than the capability (CAP_BPF and CAP_PERFMON arrived in 5.8)
    // grants what it covers through CAP_SYS_ADMIN.
    let known = caps::runtime::procfs_all_supported(None).unwrap_or_else(|_| caps::all());
    let missing: Vec<String> = needed
        .iter()
        .filter(|(c, _)| known.contains(c) && !effective.contains(c))
        .map(|(c, why)| format!("{c} ({why})"))
        .collect();
    if !missing.is_empty() {
        bail!(
            "{what} lacks {}: run it as root, or grant them (a service's AmbientCapabilities=)",
            missing.join(", ")
        );
    }
    if !std::path::Path::new("/sys/kernel/btf/vmlinux").exists() {
        bail!("this kernel exposes no BTF (/sys/kernel/btf/vmlinux is missing): pinhole needs CONFIG_DEBUG_INFO_BTF=y");
    }
    Ok(())
}
