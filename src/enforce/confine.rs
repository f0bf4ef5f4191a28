//! What the enforcer's own sandbox allows once its first generation is loaded: writes
//! beneath its dataset, /run/pinhole (state, reload requests) and its pins (a reload
//! of a persisted enforcer pins the new links and counters); the loading capabilities,
//! since every reload loads and attaches a new generation; no execution (the exec
//! gate's watchdog, the one process it starts, is started before), no TCP connect, and
//! TCP bind only on the metrics port.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use caps::Capability;

use super::state;
use crate::sandbox::{Layers, Spec};

/// What the running enforcer may still do.
fn spec(out: Option<&Path>, persist: bool, metrics_port: Option<u16>) -> Result<Spec> {
    use Capability::*;
    let run_dir = PathBuf::from("/run/pinhole");
    std::fs::create_dir_all(&run_dir).context("creating /run/pinhole")?;
    let mut writable = vec![run_dir];
    writable.extend(out.map(Path::to_path_buf));
    // Where the pins go: the persisted links and maps a reload replaces, and a
    // takeover's, removed at the stop.
    let pins = state::pin_dir();
    if persist {
        std::fs::create_dir_all(&pins).with_context(|| format!("creating {}", pins.display()))?;
    }
    // Its parent: removing the directory itself is a write there.
    let parent = pins.parent().unwrap_or(&pins);
    if parent.exists() {
        writable.push(parent.to_path_buf());
    }
    let mut keep: Vec<Capability> = crate::privileges::DAEMON.iter().map(|(c, _)| *c).collect();
    // The ring-buffer thread raises its priority.
    keep.push(CAP_SYS_NICE);
    if crate::sandbox::needs_dac_override(&writable) {
        keep.push(CAP_DAC_OVERRIDE);
    }
    Ok(Spec {
        writable,
        bind_port: metrics_port,
        keep,
    })
}

/// Sandboxes the enforcer (unless `off`); call before it starts any thread.
pub fn apply(
    out: Option<&Path>,
    persist: bool,
    metrics_port: Option<u16>,
    off: bool,
    strict: bool,
) -> Result<Option<Layers>> {
    if off {
        return Ok(None);
    }
    crate::sandbox::apply(&spec(out, persist, metrics_port)?, strict).map(Some)
}
