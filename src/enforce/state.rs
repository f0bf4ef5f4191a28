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
    /// Whether that request was loaded (false: refused, see `reload_error`).
    #[serde(default)]
    pub last_request_ok: Option<bool>,
    /// Identity-table entries evicted because the table was full.
    #[serde(default)]
    pub identity_evictions: u64,
    /// Kernel ids of the name maps every generation shares, for `names` and `status`.
    #[serde(default)]
    pub name_maps: Option<NameMapIds>,
    /// Which hooks enforce ("lsm" or "cgroup"), and why those.
    #[serde(default = "cgroup_backend")]
    pub backend: String,
    #[serde(default)]
    pub backend_reason: String,
    /// Which layers of its own sandbox are in force (None: run with --no-sandbox).
    #[serde(default)]
    pub sandbox: Option<String>,
}

fn cgroup_backend() -> String {
    "cgroup".into()
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct NameMapIds {
    pub evidence: u32,
    pub texts: u32,
    pub stats: u32,
}

/// The first line of a reload request: a TOML comment with a fresh nonce, so each
/// request has its own digest, even when it reloads the same policy again.
pub const REQUEST_HEADER: &str = "# pinhole reload request ";

/// A reload request's text without its header line: the policy as the user wrote it.
pub fn strip_request_header(text: &str) -> &str {
    match text.strip_prefix(REQUEST_HEADER) {
        Some(rest) => rest.split_once('\n').map_or("", |(_, policy)| policy),
        None => text,
    }
}

/// The directory of the policy a reload request carries (its blocklists are relative
/// to it); None for a policy file that is not a request.
pub fn request_base(text: &str) -> Option<PathBuf> {
    let header = text.strip_prefix(REQUEST_HEADER)?.lines().next()?;
    let dir = header.splitn(3, ' ').nth(2)?;
    (!dir.is_empty()).then(|| PathBuf::from(dir))
}

/// What the daemon's state says of the request whose digest is `want`: None while it
/// has not been taken, then Ok(generation) or Err(why it was refused).
pub fn request_outcome(st: &State, want: &str) -> Option<std::result::Result<u32, String>> {
    if st.last_request.as_deref() != Some(want) {
        return None;
    }
    Some(match st.last_request_ok {
        Some(true) => Ok(st.generation),
        _ => Err(st
            .reload_error
            .clone()
            .unwrap_or_else(|| "no reason given".into())),
    })
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

/// Where the daemon says which step of a reload it is at (`reload` shows it).
fn reload_phase_file() -> PathBuf {
    dir().join("reload.phase")
}

/// The daemon: the reload under way is at `phase` (None: no reload under way).
pub fn set_reload_phase(phase: Option<&str>) {
    let r = match phase {
        Some(p) => write_atomic(&reload_phase_file(), p.as_bytes()),
        None => fs::remove_file(reload_phase_file()).or(Ok(())),
    };
    if let Err(e) = r {
        tracing::debug!("reload phase: {e:#}");
    }
}

/// What the daemon last said of the reload under way.
pub fn reload_phase() -> Option<String> {
    fs::read_to_string(reload_phase_file()).ok()
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
    let removed = crate::hook_links::remove_pins(&pin_dir())?;
    fs::remove_dir(pin_dir().parent().unwrap_or(Path::new("/"))).ok();
    if dir().exists() {
        fs::remove_dir_all(dir()).with_context(|| format!("removing {}", STATE_DIR))?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(last_request: &str, ok: Option<bool>, policy_sha256: &str) -> State {
        State {
            pid: 1,
            persisted: false,
            cgroup: "/".into(),
            mode: "enforce".into(),
            generation: 3,
            policy_sha256: policy_sha256.into(),
            policy_path: "p.toml".into(),
            out: None,
            counters_map_id: 0,
            name_maps: None,
            loaded_at: String::new(),
            reload_error: ok
                .filter(|ok| !ok)
                .map(|_| "the identity table is full".into()),
            last_request: Some(last_request.into()),
            last_request_ok: ok,
            identity_evictions: 0,
            backend: "cgroup".into(),
            backend_reason: String::new(),
            sandbox: None,
        }
    }

    /// Regression: reloading the policy already in force, refused by the daemon, was
    /// reported "reloaded" because the running policy's digest equalled the request's.
    #[test]
    fn reload_reports_the_daemons_real_outcome() {
        let refused = state("req", Some(false), "req");
        assert_eq!(
            request_outcome(&refused, "req"),
            Some(Err("the identity table is full".into()))
        );
        assert_eq!(
            request_outcome(&state("req", Some(true), "x"), "req"),
            Some(Ok(3))
        );
        assert_eq!(
            request_outcome(&state("older", Some(true), "req"), "req"),
            None
        );
    }

    #[test]
    fn the_request_header_is_not_part_of_the_policy() {
        let text = format!("{REQUEST_HEADER}42 2026\nversion = 1\n");
        assert_eq!(strip_request_header(&text), "version = 1\n");
        assert_eq!(strip_request_header("version = 1\n"), "version = 1\n");
    }

    #[test]
    fn a_reload_request_carries_its_policys_directory() {
        let text =
            format!("{REQUEST_HEADER}42 2026-12-01T00:00:00Z /etc/my policies\nversion = 1\n");
        assert_eq!(request_base(&text), Some(PathBuf::from("/etc/my policies")));
        assert_eq!(strip_request_header(&text), "version = 1\n");
        assert_eq!(request_base("version = 1\n"), None);
    }
}
