//! Where a running or persisted enforcer can be found: a state file and the active
//! policy under /run (what `status`, `reload` and `stop` read), and the pins in bpffs.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

pub const STATE_DIR: &str = "/run/pinhole/enforce";
pub const PIN_DIR: &str = "/sys/fs/bpf/pinhole/enforce";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    /// The enforcing process; 0 once it has exited leaving pinned programs behind.
    pub pid: u32,
    pub persisted: bool,
    pub cgroup: String,
    pub mode: String,
    pub generation: u32,
    pub policy_sha256: String,
    pub policy_path: String,
    pub out: Option<String>,
    /// Kernel id of the current generation's counter map, for `status`.
    pub counters_map_id: u32,
    pub loaded_at: String,
    /// Set when a reload was refused; the previous policy stays in force.
    pub reload_error: Option<String>,
    /// sha256 of the last `reload` request taken (what the requester waits for).
    #[serde(default)]
    pub last_request: Option<String>,
}

pub fn dir() -> PathBuf {
    PathBuf::from(STATE_DIR)
}

pub fn pin_dir() -> PathBuf {
    PathBuf::from(PIN_DIR)
}

/// The active policy text, kept so events and counters can be named after a restart.
pub fn policy_copy() -> PathBuf {
    dir().join("policy.toml")
}

/// Where `pinhole enforce reload FILE` leaves the checked policy for the daemon.
pub fn reload_request() -> PathBuf {
    dir().join("reload.toml")
}

/// Takes the pending reload request, if any, so a newer one written meanwhile waits
/// for its own SIGHUP instead of being deleted unread. Returns the taken file.
pub fn take_reload_request() -> Option<PathBuf> {
    let taken = dir().join("reload.taken");
    fs::rename(reload_request(), &taken).ok().map(|_| taken)
}

pub fn read() -> Result<Option<State>> {
    let path = dir().join("state.json");
    match fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .with_context(|| format!("reading {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

pub fn write(state: &State) -> Result<()> {
    write_atomic(
        &dir().join("state.json"),
        &serde_json::to_vec_pretty(state)?,
    )
}

pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let parent = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("renaming {}", tmp.display()))
}

/// Whether `pid` is a live pinhole process (not a recycled pid).
pub fn is_running(pid: u32) -> bool {
    pid != 0 && fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "pinhole")
}

pub fn has_pins() -> bool {
    pin_dir().join("connect4").exists()
}

/// Removes every pin and the state; links and maps go when nothing else holds them.
pub fn remove_all() -> Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    if let Ok(entries) = fs::read_dir(pin_dir()) {
        for e in entries.flatten() {
            fs::remove_file(e.path())
                .with_context(|| format!("removing pin {}", e.path().display()))?;
            removed.push(e.path());
        }
        fs::remove_dir(pin_dir()).ok();
        fs::remove_dir(pin_dir().parent().unwrap_or(Path::new("/"))).ok();
    }
    if dir().exists() {
        fs::remove_dir_all(dir()).with_context(|| format!("removing {}", STATE_DIR))?;
    }
    Ok(removed)
}
