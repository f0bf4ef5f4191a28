//! `pinhole record --persist`: when the recorder stops, its programs stay attached and
//! they, their rings and their loss counters stay pinned, so a restart or an upgrade
//! loses nothing. The next `pinhole record` takes the pinned links over (switching
//! each to its own programs atomically, writing into the same rings) and drains what
//! was captured meanwhile; a ring that filled up in between counts its losses.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use libbpf_rs::MapHandle;

use crate::hook_links::{HookLinks, Programs};
use crate::skel::record::RecordSkel;

pub const PIN_DIR: &str = "/sys/fs/bpf/pinhole/record";
/// The cgroup the pinned programs are attached to, and the loss count already
/// published (bpffs holds only BPF objects).
const STATE: &str = "/run/pinhole/record/persisted";

pub const HOOKS: [&str; 6] = [
    "connect4",
    "connect6",
    "sendmsg4",
    "sendmsg6",
    "sock_create",
    "ingress",
];
const MAPS: [&str; 5] = [
    "connect_events",
    "exec_events",
    "lost_events",
    "mptcp_owners",
    "dns_askers",
];

pub fn pin_dir() -> PathBuf {
    PathBuf::from(PIN_DIR)
}

/// The recorder's programs, in hook order.
pub fn programs<'a, 'obj>(skel: &'a RecordSkel<'obj>) -> Programs<'a, 'obj> {
    let p = &skel.progs;
    Programs {
        hooks: &HOOKS,
        cgroup: vec![
            &p.record_connect4,
            &p.record_connect6,
            &p.record_sendmsg4,
            &p.record_sendmsg6,
            &p.record_sock_create,
            &p.record_dns_reply,
        ],
        lsm_hooks: &[],
        lsm: Vec::new(),
        exec: &p.record_exec,
    }
}

/// The maps a persisted recorder left pinned, for the new programs to write into.
pub struct PinnedMaps(pub Vec<(&'static str, MapHandle)>);

/// What an earlier `--persist` run left attached.
pub struct Persisted {
    pub links: HookLinks,
    pub maps: PinnedMaps,
    /// The kernel's loss count that run had already published (the counter goes on).
    pub lost_published: u64,
}

/// What an earlier `--persist` run left attached, if anything.
pub fn pinned(target: &Path) -> Result<Option<Persisted>> {
    let dir = pin_dir();
    if !dir.join("exec").exists() {
        return Ok(None);
    }
    let state = fs::read_to_string(STATE).unwrap_or_default();
    let mut lines = state.lines();
    let attached = lines.next().unwrap_or_default();
    let lost_published = lines
        .find_map(|l| l.strip_prefix("lost="))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    if attached != target.to_string_lossy() {
        bail!(
            "a persisted recorder is attached to cgroup {attached:?}, not {}: record that cgroup, or remove it with `pinhole record --release`",
            target.display()
        );
    }
    let links = HookLinks::open_pinned(&dir, &HOOKS, &[])?;
    let maps = MAPS
        .iter()
        .map(|name| {
            let p = dir.join(name);
            MapHandle::from_pinned_path(&p)
                .with_context(|| format!("opening pinned map {}", p.display()))
                .map(|m| (*name, m))
        })
        .collect::<Result<_>>()?;
    Ok(Some(Persisted {
        links,
        maps: PinnedMaps(maps),
        lost_published,
    }))
}

/// Pins the links and maps, and notes the cgroup they are attached to and the loss
/// count published so far.
pub fn pin(
    links: &mut HookLinks,
    skel: &RecordSkel<'_>,
    target: &Path,
    lost_published: u64,
) -> Result<()> {
    let dir = pin_dir();
    links.pin(&dir)?;
    let m = &skel.maps;
    for (name, map) in [
        (
            "connect_events",
            crate::capture::map_handle(&m.connect_events)?,
        ),
        ("exec_events", crate::capture::map_handle(&m.exec_events)?),
        ("lost_events", crate::capture::map_handle(&m.lost_events)?),
        ("mptcp_owners", crate::capture::map_handle(&m.mptcp_owners)?),
        ("dns_askers", crate::capture::map_handle(&m.dns_askers)?),
    ] {
        let p = dir.join(name);
        if !p.exists() {
            let mut map = map;
            map.pin(&p)
                .with_context(|| format!("pinning {}", p.display()))?;
        }
    }
    let state = format!("{}\nlost={lost_published}\n", target.to_string_lossy());
    crate::enforce::state::write_atomic(Path::new(STATE), state.as_bytes())
}

/// Removes every pin and the note; the programs go with the last link.
pub fn release() -> Result<Vec<PathBuf>> {
    let removed = crate::hook_links::remove_pins(&pin_dir())?;
    if let Some(parent) = pin_dir().parent() {
        fs::remove_dir(parent).ok(); // only if no enforcer's pins are there
    }
    fs::remove_file(STATE).ok();
    Ok(removed)
}
