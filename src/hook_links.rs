//! A program set's links: one per cgroup hook, one per LSM hook (the enforcer's LSM
//! backend), plus the exec tracepoint, that can be pinned so the programs outlive the
//! process (`--persist`), taken over by the next process, and switched to its programs
//! without a gap. Shared by the recorder and the enforcer.

use std::path::Path;

use anyhow::{Context, Result};
use libbpf_rs::{Link, ProgramMut};

/// The programs to attach: one per name in `hooks` (cgroup) and `lsm_hooks`, in that
/// order, and the exec one.
pub struct Programs<'a, 'obj> {
    pub hooks: &'static [&'static str],
    pub cgroup: Vec<&'a ProgramMut<'obj>>,
    pub lsm_hooks: &'static [&'static str],
    pub lsm: Vec<&'a ProgramMut<'obj>>,
    pub exec: &'a ProgramMut<'obj>,
}

pub struct HookLinks {
    hooks: &'static [&'static str],
    cgroup: Vec<Link>,
    lsm_hooks: &'static [&'static str],
    lsm: Vec<Link>,
    exec: Link,
}

impl HookLinks {
    pub fn attach(progs: &Programs<'_, '_>, cgroup: &Path) -> Result<HookLinks> {
        let dir = std::fs::File::open(cgroup)
            .with_context(|| format!("opening cgroup {}", cgroup.display()))?;
        let mut links = Vec::new();
        for (prog, hook) in progs.cgroup.iter().zip(progs.hooks) {
            links.push(
                prog.attach_cgroup(std::os::fd::AsRawFd::as_raw_fd(&dir))
                    .with_context(|| format!("attaching cgroup/{hook} to {}", cgroup.display()))?,
            );
        }
        Ok(HookLinks {
            hooks: progs.hooks,
            cgroup: links,
            lsm_hooks: progs.lsm_hooks,
            lsm: attach_lsm(progs)?,
            exec: attach_exec(progs.exec)?,
        })
    }

    /// Links pinned in `dir` by an earlier `--persist` run, still attached.
    pub fn open_pinned(
        dir: &Path,
        hooks: &'static [&'static str],
        lsm_hooks: &'static [&'static str],
    ) -> Result<HookLinks> {
        let open = |name: &str| {
            let path = dir.join(name);
            Link::open(&path).with_context(|| format!("opening pinned link {}", path.display()))
        };
        Ok(HookLinks {
            hooks,
            cgroup: hooks.iter().map(|h| open(h)).collect::<Result<_>>()?,
            lsm_hooks,
            lsm: lsm_hooks.iter().map(|h| open(h)).collect::<Result<_>>()?,
            exec: open("exec")?,
        })
    }

    /// Moves every hook to `progs`. Each cgroup link switches atomically: a call is
    /// seen by either the old program or the new, never by both or none. LSM links
    /// cannot switch: the new programs attach beside the old, `activate` makes them
    /// the ones that decide (they pass every call until then), and the old links go.
    pub fn swap_to(
        &mut self,
        progs: &Programs<'_, '_>,
        activate: &mut dyn FnMut() -> Result<()>,
    ) -> Result<()> {
        for ((link, prog), hook) in self.cgroup.iter_mut().zip(&progs.cgroup).zip(self.hooks) {
            link.update_prog(prog)
                .with_context(|| format!("switching cgroup/{hook} to new programs"))?;
        }
        let new_lsm = attach_lsm(progs)?;
        activate()?;
        for mut old in std::mem::replace(&mut self.lsm, new_lsm) {
            if old.pin_path().is_some() {
                old.unpin().context("unpinning an old LSM link")?;
            }
        }
        // Tracepoint links cannot switch programs: attach the new one before the old
        // goes, so no exec is missed (one may be reported twice).
        let mut old = std::mem::replace(&mut self.exec, attach_exec(progs.exec)?);
        if old.pin_path().is_some() {
            old.unpin().context("unpinning the old exec link")?;
        }
        Ok(())
    }

    pub fn pin(&mut self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for (link, hook) in self.cgroup.iter_mut().zip(self.hooks) {
            pin_link(link, &dir.join(hook))?;
        }
        for (link, hook) in self.lsm.iter_mut().zip(self.lsm_hooks) {
            pin_link(link, &dir.join(hook))?;
        }
        pin_link(&mut self.exec, &dir.join("exec"))
    }

    /// Keeps the pinned links (and so the programs) after this process exits.
    pub fn leave_pinned(mut self) {
        for link in self.all() {
            link.disconnect();
        }
    }

    /// Removes the pins (if any); the links go when this value is dropped.
    pub fn unpin(&mut self) -> Result<()> {
        for link in self.all() {
            if link.pin_path().is_some() {
                link.unpin().context("unpinning a link")?;
            }
        }
        Ok(())
    }

    fn all(&mut self) -> impl Iterator<Item = &mut Link> {
        self.cgroup
            .iter_mut()
            .chain(self.lsm.iter_mut())
            .chain(std::iter::once(&mut self.exec))
    }
}

fn pin_link(link: &mut Link, path: &Path) -> Result<()> {
    if link.pin_path().is_some_and(|p| p == path) {
        return Ok(());
    }
    if path.exists() {
        std::fs::remove_file(path).with_context(|| format!("replacing pin {}", path.display()))?;
    }
    link.pin(path)
        .with_context(|| format!("pinning {}", path.display()))
}

fn attach_lsm(progs: &Programs<'_, '_>) -> Result<Vec<Link>> {
    let attach = |(prog, hook): (&&ProgramMut<'_>, &&str)| {
        prog.attach_lsm()
            .with_context(|| format!("attaching lsm/{hook}"))
    };
    progs.lsm.iter().zip(progs.lsm_hooks).map(attach).collect()
}

fn attach_exec(prog: &ProgramMut<'_>) -> Result<Link> {
    prog.attach()
        .context("attaching the sched_process_exec tracepoint")
}

/// Removes every pin in `dir`, then `dir` itself (if empty); returns what was removed.
/// Links and maps go when nothing else holds them.
pub fn remove_pins(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let mut removed = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            std::fs::remove_file(e.path())
                .with_context(|| format!("removing pin {}", e.path().display()))?;
            removed.push(e.path());
        }
        std::fs::remove_dir(dir).ok();
    }
    Ok(removed)
}
