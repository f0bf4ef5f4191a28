//! Start-up snapshot of running processes through the `iter/task` program, so that
//! processes started before pinhole have their executables identified too.

use std::fs;
use std::io::Read;
use std::mem::{size_of, MaybeUninit};

use anyhow::{Context, Result};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{Iter, OpenObject};

use crate::identity::{Candidate, ExeKey};
use crate::skel::snapshot::SnapshotSkelBuilder;
use crate::skel::{parse, task_record};

/// One candidate per running process; its executable is opened when it is offered
/// (one process at a time: a host's process count is no bound on descriptors).
pub fn running_processes() -> Result<Vec<Candidate>> {
    let mut object = MaybeUninit::<OpenObject>::uninit();
    let skel = SnapshotSkelBuilder::default()
        .open(&mut object)
        .context("opening the task-snapshot BPF object")?
        .load()
        .context("loading the task-snapshot iterator")?;
    let link = skel
        .progs
        .snapshot_tasks
        .attach()
        .context("attaching the task iterator")?;
    let mut bytes = Vec::new();
    Iter::new(&link)
        .context("creating the task iterator")?
        .read_to_end(&mut bytes)
        .context("reading the task iterator")?;

    let mut out = Vec::new();
    // The snapshot is the event: each process was seen running its file now.
    let now = chrono::Utc::now().timestamp_nanos_opt();
    for chunk in bytes.chunks_exact(size_of::<task_record>()) {
        let Some(rec) = parse::<task_record>(chunk) else {
            continue;
        };
        out.push(Candidate {
            pid: rec.pid,
            key: ExeKey::from(&rec.exe),
            file: None,
            path: fs::read_link(format!("/proc/{}/exe", rec.pid))
                .ok()
                .map(|p| p.to_string_lossy().into_owned()),
            at_ns: now,
            held: None,
        });
    }
    Ok(out)
}
