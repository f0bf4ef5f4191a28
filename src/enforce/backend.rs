//! Which kernel hooks enforce: the BPF-LSM hooks where the kernel runs bpf as an active
//! LSM, otherwise the cgroup socket hooks (`--backend`), and why.

use anyhow::{bail, Result};

/// What the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendChoice {
    /// The LSM hooks where bpf is an active LSM and they load; otherwise the cgroup hooks.
    Auto,
    /// The BPF-LSM hooks (socket_connect, socket_sendmsg, socket_create); fails where
    /// the kernel cannot run them.
    Lsm,
    /// The cgroup socket hooks (connect, sendmsg, sock_create), on every kernel.
    Cgroup,
}

/// The hooks in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Lsm,
    Cgroup,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Lsm => "lsm",
            Backend::Cgroup => "cgroup",
        }
    }

    pub fn parse(s: &str) -> Backend {
        match s {
            "lsm" => Backend::Lsm,
            _ => Backend::Cgroup,
        }
    }
}

/// What the running kernel offers: its active LSMs, and whether it loads a program of
/// type lsm at all (kernels without BPF trampolines refuse every one, bpf listed or not).
pub struct KernelSupport {
    pub active_lsms: Result<String>,
    pub lsm_programs_load: bool,
}

impl KernelSupport {
    pub fn probe() -> KernelSupport {
        KernelSupport {
            active_lsms: crate::mounts::active_lsms(),
            // A probe program of the type, loaded and freed by libbpf.
            lsm_programs_load: libbpf_rs::ProgramType::Lsm.is_supported().unwrap_or(false),
        }
    }
}

/// The backend to try first, with the reason `status` gives. An LSM program attaches
/// even where bpf is not an active LSM, and then never runs: the list decides, not a
/// successful attach.
pub fn first_choice(choice: BackendChoice, kernel: KernelSupport) -> Result<(Backend, String)> {
    let listed = match &kernel.active_lsms {
        Ok(list) => list.split(',').any(|l| l.trim() == "bpf"),
        Err(_) => false,
    };
    let why_not = || match &kernel.active_lsms {
        Ok(list) if !listed => format!(
            "bpf is not an active LSM on this kernel (/sys/kernel/security/lsm: {list}; \
             it needs CONFIG_BPF_LSM and bpf in lsm= on the kernel command line)"
        ),
        Ok(_) => "bpf is an active LSM, but this kernel loads no BPF-LSM program \
                  (a probe program of type lsm was refused: no BPF trampolines)"
            .to_owned(),
        Err(e) => format!("the active LSMs could not be read ({e:#})"),
    };
    match (choice, listed && kernel.lsm_programs_load) {
        (BackendChoice::Cgroup, _) => Ok((Backend::Cgroup, "asked for (--backend cgroup)".into())),
        (BackendChoice::Lsm, true) => Ok((Backend::Lsm, "asked for (--backend lsm)".into())),
        (BackendChoice::Lsm, false) => bail!("--backend lsm: {}", why_not()),
        (BackendChoice::Auto, true) => Ok((Backend::Lsm, "auto: bpf is an active LSM".into())),
        (BackendChoice::Auto, false) => Ok((Backend::Cgroup, format!("auto: {}", why_not()))),
    }
}

/// Why auto fell back to the cgroup hooks after the LSM programs failed to load.
pub fn fallback_reason(load_error: &anyhow::Error) -> String {
    format!("auto: bpf is an active LSM, but its programs did not load ({load_error:#})")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernel(list: Result<&str>, loads: bool) -> KernelSupport {
        KernelSupport {
            active_lsms: list.map(str::to_owned),
            lsm_programs_load: loads,
        }
    }

    #[test]
    fn auto_trusts_the_list_of_active_lsms_only() {
        let listed = || kernel(Ok("lockdown,capability,landlock,yama,apparmor,bpf"), true);
        let absent = || kernel(Ok("lockdown,capability,landlock,yama,apparmor"), true);
        assert_eq!(
            first_choice(BackendChoice::Auto, listed()).unwrap().0,
            Backend::Lsm
        );
        let (b, why) = first_choice(BackendChoice::Auto, absent()).unwrap();
        assert_eq!(b, Backend::Cgroup);
        assert!(why.contains("bpf is not an active LSM"), "{why}");
        let e = first_choice(BackendChoice::Lsm, absent()).unwrap_err();
        assert!(
            format!("{e:#}").contains("/sys/kernel/security/lsm: lockdown"),
            "{e:#}"
        );
        let unread = || kernel(Err(anyhow::anyhow!("no securityfs")), true);
        assert_eq!(
            first_choice(BackendChoice::Auto, unread()).unwrap().0,
            Backend::Cgroup
        );
        assert!(first_choice(BackendChoice::Lsm, unread()).is_err());
        assert_eq!(
            first_choice(BackendChoice::Cgroup, listed()).unwrap().0,
            Backend::Cgroup
        );
    }

    #[test]
    fn a_name_that_merely_contains_bpf_is_not_bpf() {
        let list = kernel(Ok("capability,notbpf,bpfx"), true);
        assert_eq!(
            first_choice(BackendChoice::Auto, list).unwrap().0,
            Backend::Cgroup
        );
    }

    /// This machine's kernel: bpf is listed, but every lsm program is refused.
    #[test]
    fn bpf_listed_but_no_trampolines_is_no_lsm_backend() {
        let host = || kernel(Ok("lockdown,capability,landlock,bpf"), false);
        let (b, why) = first_choice(BackendChoice::Auto, host()).unwrap();
        assert_eq!(b, Backend::Cgroup);
        assert!(why.contains("loads no BPF-LSM program"), "{why}");
        let e = first_choice(BackendChoice::Lsm, host()).unwrap_err();
        assert!(format!("{e:#}").contains("no BPF trampolines"), "{e:#}");
    }
}
