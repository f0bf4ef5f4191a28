//! Self-sandboxing once start-up is done (programs loaded, descriptors and the dataset
//! open): Landlock allows writes only beneath named directories, no execution, TCP
//! bind only on the metrics port and no TCP connect; the capabilities the running loop
//! no longer uses are dropped from every set, the bounding set included.
//!
//! Both layers apply to the calling thread and the threads it starts later (Landlock's
//! all-threads flag needs Linux 7.0): call this before any thread is started.

use std::collections::HashSet;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use caps::{CapSet, Capability};
use landlock::{
    Access, AccessFs, AccessNet, LandlockStatus, NetPort, PathBeneath, PathFd, Ruleset,
    RulesetAttr, RulesetCreatedAttr, RulesetStatus, ABI,
};

/// The newest Landlock ABI whose rights are asked for; older kernels get what they know.
const TARGET_ABI: ABI = ABI::V6;

/// What the sandbox allows.
pub struct Spec {
    /// Directories beneath which files may be created, written, renamed and removed.
    pub writable: Vec<PathBuf>,
    /// The one TCP port that may be bound (the metrics endpoint).
    pub bind_port: Option<u16>,
    /// The capabilities kept; every other is dropped.
    pub keep: Vec<Capability>,
}

/// How much of the sandbox is in force.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Layers {
    /// Landlock's filesystem rules (writes, execution), with the ABI they used.
    pub landlock_fs: Option<i32>,
    /// Landlock's TCP rules (Linux 6.7 and later).
    pub landlock_net: bool,
    /// The capability sets were reduced to `keep`.
    pub capabilities: bool,
    /// Why a layer is not in force, one entry per missing layer.
    pub missing: Vec<String>,
}

impl Layers {
    /// One line for people: the layers in force, then what is missing and why.
    pub fn describe(&self) -> String {
        let mut on = Vec::new();
        if let Some(abi) = self.landlock_fs {
            on.push(format!("landlock filesystem (ABI {abi})"));
        }
        if self.landlock_net {
            on.push("landlock TCP".to_owned());
        }
        if self.capabilities {
            on.push("capabilities reduced".to_owned());
        }
        let mut s = match on.is_empty() {
            true => "no sandbox layer in force".to_owned(),
            false => on.join(", "),
        };
        if !self.missing.is_empty() {
            s.push_str("; not in force: ");
            s.push_str(&self.missing.join("; "));
        }
        s
    }
}

/// Applies both layers. With `strict`, a layer that cannot be applied is an error;
/// otherwise it is reported in the returned layers and in the log.
pub fn apply(spec: &Spec, strict: bool) -> Result<Layers> {
    let layers = confine(spec);
    if strict && !layers.missing.is_empty() {
        bail!(
            "--sandbox-strict: the sandbox is incomplete ({})",
            layers.describe()
        );
    }
    match layers.missing.is_empty() {
        true => tracing::info!(layers = %layers.describe(), "sandbox in force"),
        false => tracing::warn!(layers = %layers.describe(), "sandbox incomplete"),
    }
    crate::metrics::sandbox(&layers);
    Ok(layers)
}

/// Applies both layers as far as they go, saying in the result which did not; logs
/// nothing (a helper process uses it quietly).
pub fn confine(spec: &Spec) -> Layers {
    let mut layers = Layers::default();
    let threads = thread_count();
    if threads > 1 {
        layers.missing.push(format!(
            "{threads} threads were already running: only this one and its later threads are confined"
        ));
    }
    if let Err(e) = landlock(spec, &mut layers) {
        layers.missing.push(format!("landlock: {e:#}"));
    }
    match reduce_capabilities(&spec.keep) {
        Ok(()) => layers.capabilities = true,
        Err(e) => layers.missing.push(format!("capabilities: {e:#}")),
    }
    layers
}

/// Whether writing beneath `dirs` needs CAP_DAC_OVERRIDE: one of them belongs to
/// another user (root writing into a dataset or /run/pinhole a service user owns).
pub fn needs_dac_override(dirs: &[PathBuf]) -> bool {
    // SAFETY: geteuid cannot fail.
    let me = unsafe { libc::geteuid() };
    dirs.iter()
        .any(|d| std::fs::metadata(d).is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) != me))
}

fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(1, |d| d.count())
}

fn landlock(spec: &Spec, layers: &mut Layers) -> Result<()> {
    let fs_rights = AccessFs::from_write(TARGET_ABI) | AccessFs::Execute;
    let mut ruleset = Ruleset::default()
        .handle_access(fs_rights)?
        .handle_access(AccessNet::from_all(TARGET_ABI))?
        .create()?;
    for dir in &spec.writable {
        let fd = PathFd::new(dir).with_context(|| format!("opening {}", dir.display()))?;
        // Everything a writer does beneath it, but never execute.
        ruleset = ruleset.add_rule(PathBeneath::new(fd, AccessFs::from_write(TARGET_ABI)))?;
    }
    if let Some(port) = spec.bind_port {
        ruleset = ruleset.add_rule(NetPort::new(port, AccessNet::BindTcp))?;
    }
    let status = ruleset.restrict_self()?;
    let abi = match status.landlock {
        LandlockStatus::Available { effective_abi, .. } => effective_abi,
        LandlockStatus::NotEnabled => bail!("not enabled on this kernel (lsm= lacks landlock)"),
        LandlockStatus::NotImplemented => bail!("not built into this kernel"),
    };
    if status.ruleset == RulesetStatus::NotEnforced {
        bail!("the kernel enforced none of the rules");
    }
    layers.landlock_fs = Some(abi as i32);
    layers.landlock_net = abi >= ABI::V4;
    if !layers.landlock_net {
        layers.missing.push(format!(
            "landlock TCP: this kernel's Landlock ABI is {}, TCP rules need 4 (Linux 6.7)",
            abi as i32
        ));
    }
    Ok(())
}

/// Keeps `keep` in the effective and permitted sets and nothing else anywhere: the
/// bounding set first where the process may change it (CAP_SETPCAP, which then goes
/// too), so that no later exec can regain what was dropped. A service user given its
/// capabilities as ambient ones has no CAP_SETPCAP: there no_new_privs (set here, and
/// by Landlock) already keeps an exec from gaining any capability.
fn reduce_capabilities(keep: &[Capability]) -> Result<()> {
    let keep: HashSet<Capability> = keep.iter().copied().collect();
    let supported = caps::runtime::procfs_all_supported(None).unwrap_or_else(|_| caps::all());
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error()).context("setting no_new_privs");
    }
    let may_bound =
        caps::has_cap(None, CapSet::Effective, Capability::CAP_SETPCAP).unwrap_or(false);
    for cap in supported.difference(&keep).filter(|_| may_bound) {
        if caps::has_cap(None, CapSet::Bounding, *cap).unwrap_or(false) {
            caps::drop(None, CapSet::Bounding, *cap)
                .with_context(|| format!("dropping {cap} from the bounding set"))?;
        }
    }
    caps::clear(None, CapSet::Ambient).context("clearing the ambient set")?;
    caps::clear(None, CapSet::Inheritable).context("clearing the inheritable set")?;
    let kept: HashSet<Capability> = caps::read(None, CapSet::Permitted)
        .context("reading the permitted set")?
        .intersection(&keep)
        .copied()
        .collect();
    caps::set(None, CapSet::Effective, &kept).context("setting the effective set")?;
    caps::set(None, CapSet::Permitted, &kept).context("setting the permitted set")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    /// Runs `check` in a forked child (the sandbox must not confine the test runner)
    /// and returns whether it exited 0.
    fn in_child(check: impl FnOnce() -> bool) -> bool {
        // SAFETY: the child only runs `check` and exits; the test harness's other
        // threads are not touched in it.
        match unsafe { libc::fork() } {
            0 => {
                let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(check));
                unsafe { libc::_exit(if ok.unwrap_or(false) { 0 } else { 1 }) }
            }
            pid if pid > 0 => {
                let mut status = 0;
                unsafe { libc::waitpid(pid, &mut status, 0) };
                std::process::ExitStatus::from_raw(status).success()
            }
            _ => panic!("fork failed"),
        }
    }

    #[test]
    fn a_sandboxed_process_writes_only_beneath_its_directories_and_cannot_exec_or_connect() {
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root (capabilities to drop)");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let inside = dir.path().join("dataset");
        let outside = dir.path().join("elsewhere");
        std::fs::create_dir_all(&inside).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let open_port = listener.local_addr().unwrap().port();
        assert!(in_child(|| {
            let spec = Spec {
                writable: vec![inside.clone()],
                bind_port: None,
                keep: vec![Capability::CAP_SYS_PTRACE],
            };
            let layers = apply(&spec, false).unwrap();
            let landlock_on = layers.landlock_fs.is_some();
            let wrote_inside = std::fs::write(inside.join("f"), b"x").is_ok()
                && std::fs::rename(inside.join("f"), inside.join("g")).is_ok()
                && std::fs::remove_file(inside.join("g")).is_ok();
            let wrote_outside = std::fs::write(outside.join("f"), b"x").is_ok();
            let executed = std::process::Command::new("/bin/true").status().is_ok();
            let connected = std::net::TcpStream::connect(("127.0.0.1", open_port)).is_ok();
            let effective = caps::read(None, CapSet::Effective).unwrap();
            let bounding = caps::read(None, CapSet::Bounding).unwrap();
            landlock_on
                && wrote_inside
                && !wrote_outside
                && !executed
                && (connected != layers.landlock_net)
                && layers.capabilities
                && effective == HashSet::from([Capability::CAP_SYS_PTRACE])
                && bounding == HashSet::from([Capability::CAP_SYS_PTRACE])
        }));
    }

    #[test]
    fn strict_refuses_a_sandbox_with_a_missing_layer() {
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root (capabilities to drop)");
            return;
        }
        // A directory that does not exist cannot be given a rule: landlock is missing.
        assert!(in_child(|| {
            let spec = Spec {
                writable: vec![PathBuf::from("/nonexistent/pinhole-sandbox")],
                bind_port: None,
                keep: vec![],
            };
            let err = apply(&spec, true).unwrap_err().to_string();
            err.contains("--sandbox-strict") && err.contains("/nonexistent/pinhole-sandbox")
        }));
    }
}
