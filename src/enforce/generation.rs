//! One loaded policy: the enforcer's programs with their own policy tables, sharing
//! the event rings and loss counters with every other generation, so a reload swaps
//! programs under live links while the reader keeps draining the same rings.

use std::mem::MaybeUninit;
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::Arc;

use crate::hook_links::{HookLinks, Programs};
use anyhow::{Context, Result};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{MapCore, MapHandle, OpenObject};
use pinhole_policygen::compile::Compiled;
use pinhole_policygen::UnknownAction;

use super::backend::Backend;
use super::{name_tables, rule_scopes, tables};
use crate::capture::map_handle;
use crate::skel::enforce::{EnforceSkel, EnforceSkelBuilder};

/// How decisions are made and reported, fixed per generation.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// `--mode audit`: never deny; record would-deny.
    pub force_audit: bool,
    /// Send allowed decisions too (the audit trail wants every decision).
    pub send_allowed: bool,
    pub ring_bytes: u32,
    /// Entries of the identity table (file versions holding an app's bytes).
    pub identity_capacity: u32,
    /// Entries of the name evidence map: (receiver, address) pairs vouched for at once.
    pub name_capacity: u32,
    /// `--cgroup`: decide only callers under this cgroup (id, depth below the root).
    pub scope: Option<(u64, u32)>,
    pub backend: Backend,
}

/// The maps every generation shares.
pub struct Shared {
    pub connect_events: MapHandle,
    pub exec_events: MapHandle,
    pub lost_events: MapHandle,
    /// MPTCP connections' owners: a subflow opened after a reload is still the owner's.
    pub mptcp_owners: MapHandle,
    /// Names: DNS evidence and name texts outlive a reload (bpf/name_decide.h).
    pub name_evidence: MapHandle,
    pub name_ids: MapHandle,
    pub name_texts: MapHandle,
    pub name_id_next: MapHandle,
    pub name_askers: MapHandle,
    pub name_stats: MapHandle,
    /// Bumped at every change of the evidence: what cached verdicts are checked against.
    pub name_epoch: MapHandle,
    /// LSM backend: the generation whose programs decide (bpf/enforce_lsm.h).
    pub active_generation: MapHandle,
}

pub struct Generation {
    pub number: u32,
    pub backend: Backend,
    pub compiled: Arc<Compiled>,
    pub skel: EnforceSkel<'static>,
}

/// The cgroup hooks, in the order links are created and pinned.
pub const CGROUP_HOOKS: [&str; 8] = [
    "connect4",
    "connect6",
    "sendmsg4",
    "sendmsg6",
    "sock_create",
    "setsockopt",
    "egress",
    "ingress",
];

/// The LSM backend's cgroup hooks: what no LSM hook sees (kernel workers' MPTCP
/// subflows, per-packet source routes, DNS replies, source routes set by setsockopt,
/// whose value an LSM program could only read by sleeping).
pub const LSM_BACKEND_CGROUP_HOOKS: [&str; 5] =
    ["connect4", "connect6", "setsockopt", "egress", "ingress"];

/// The LSM hooks, as their links are pinned.
pub const LSM_HOOKS: [&str; 4] = [
    "lsm_socket_connect",
    "lsm_socket_sendmsg",
    "lsm_socket_create",
    "lsm_socket_post_create",
];

/// The hooks a backend's links are pinned under: (cgroup, LSM).
pub fn hook_names(backend: Backend) -> (&'static [&'static str], &'static [&'static str]) {
    match backend {
        Backend::Cgroup => (&CGROUP_HOOKS, &[]),
        Backend::Lsm => (&LSM_BACKEND_CGROUP_HOOKS, &LSM_HOOKS),
    }
}

pub fn load(
    number: u32,
    compiled: Arc<Compiled>,
    opts: Options,
    shared: Option<&Shared>,
    host_resolvers: &[String],
) -> Result<Generation> {
    // The skeleton borrows its object storage for its whole life; a generation lives
    // until it is replaced, and one small allocation per reload is the price.
    let storage: &'static mut MaybeUninit<OpenObject> = Box::leak(Box::new(MaybeUninit::uninit()));
    let mut open = EnforceSkelBuilder::default()
        .open(storage)
        .context("opening the enforcer's BPF object")?;
    let ro = open
        .maps
        .rodata_data
        .as_deref_mut()
        .context("the enforcer object has no read-only data section")?;
    ro.generation = number;
    ro.lsm_backend = u8::from(opts.backend == Backend::Lsm);
    ro.verdicts_boot_clock = ro.lsm_backend;
    ro.force_audit = u8::from(opts.force_audit);
    ro.send_allowed = u8::from(opts.send_allowed);
    if let Some((id, level)) = opts.scope {
        ro.scope_cgroup_id = id;
        ro.scope_level = level;
    }
    ro.unknown_action = match compiled.unknown_binary {
        UnknownAction::Allow => 0,
        UnknownAction::Deny => 1,
        UnknownAction::Audit => 2,
    };
    // Only the backend's programs load: this kernel may refuse the others' hooks.
    let p = &mut open.progs;
    let lsm = opts.backend == Backend::Lsm;
    for prog in [
        &mut p.enforce_lsm_connect,
        &mut p.enforce_lsm_sendmsg,
        &mut p.enforce_lsm_create,
        &mut p.enforce_lsm_post_create,
    ] {
        prog.set_autoload(lsm);
    }
    for prog in [
        &mut p.enforce_sendmsg4,
        &mut p.enforce_sendmsg6,
        &mut p.enforce_sock_create,
    ] {
        prog.set_autoload(!lsm);
    }
    name_tables::configure(&mut open, &compiled, opts.name_capacity)?;
    rule_scopes::check(&compiled)?;
    let (chains, scopes) = rule_scopes::sizes(&compiled);
    open.maps.rule_chains.set_max_entries(chains)?;
    open.maps.rule_scopes.set_max_entries(scopes)?;
    let sizes = tables::sizes(&compiled);
    let m = &mut open.maps;
    m.apps.set_max_entries(sizes.apps)?;
    m.counters.set_max_entries(sizes.apps)?;
    m.dests.set_max_entries(sizes.dests)?;
    m.dest_hosts.set_max_entries(sizes.dest_hosts)?;
    m.port_spans.set_max_entries(sizes.spans)?;
    m.identities.set_max_entries(opts.identity_capacity)?;
    match shared {
        Some(s) => {
            m.connect_events.reuse_fd(s.connect_events.as_fd())?;
            m.exec_events.reuse_fd(s.exec_events.as_fd())?;
            m.lost_events.reuse_fd(s.lost_events.as_fd())?;
            m.mptcp_owners.reuse_fd(s.mptcp_owners.as_fd())?;
            m.name_evidence.reuse_fd(s.name_evidence.as_fd())?;
            m.name_ids.reuse_fd(s.name_ids.as_fd())?;
            m.name_texts.reuse_fd(s.name_texts.as_fd())?;
            m.name_id_next.reuse_fd(s.name_id_next.as_fd())?;
            m.name_askers.reuse_fd(s.name_askers.as_fd())?;
            m.name_stats.reuse_fd(s.name_stats.as_fd())?;
            m.name_epoch.reuse_fd(s.name_epoch.as_fd())?;
            m.active_generation.reuse_fd(s.active_generation.as_fd())?;
        }
        None => {
            m.connect_events
                .set_max_entries(opts.ring_bytes)
                .context("sizing the decision ring buffer")?;
            m.name_evidence
                .set_max_entries(opts.name_capacity)
                .context("sizing the name evidence map")?;
        }
    }
    let started = std::time::Instant::now();
    let skel = open.load().with_context(|| match opts.backend {
        Backend::Cgroup => "loading the enforcer's BPF programs into the kernel (needs root, BTF and cgroup BPF support)",
        Backend::Lsm => "loading the enforcer's BPF-LSM programs into the kernel (needs BPF trampolines: CONFIG_BPF_LSM, BTF, an x86-64 or arm64 JIT)",
    })?;
    let loaded = started.elapsed();
    tables::fill_policy(&skel, &compiled).context("filling the policy tables")?;
    rule_scopes::fill(&skel, &compiled).context("filling the rule scopes")?;
    if compiled.names.is_some() {
        let marked = name_tables::set_host_resolvers(&skel.maps.host_resolvers, host_resolvers)?;
        tracing::debug!(marked, "host resolvers marked");
    }
    tracing::debug!(
        load_ms = loaded.as_millis(),
        fill_ms = (started.elapsed() - loaded).as_millis(),
        "enforcer programs loaded, policy tables filled"
    );
    Ok(Generation {
        number,
        backend: opts.backend,
        compiled,
        skel,
    })
}

impl Generation {
    pub fn shared(&self) -> Result<Shared> {
        let m = &self.skel.maps;
        Ok(Shared {
            connect_events: map_handle(&m.connect_events)?,
            exec_events: map_handle(&m.exec_events)?,
            lost_events: map_handle(&m.lost_events)?,
            mptcp_owners: map_handle(&m.mptcp_owners)?,
            name_evidence: map_handle(&m.name_evidence)?,
            name_ids: map_handle(&m.name_ids)?,
            name_texts: map_handle(&m.name_texts)?,
            name_id_next: map_handle(&m.name_id_next)?,
            name_askers: map_handle(&m.name_askers)?,
            name_stats: map_handle(&m.name_stats)?,
            name_epoch: map_handle(&m.name_epoch)?,
            active_generation: map_handle(&m.active_generation)?,
        })
    }

    /// This generation's programs, in hook order (hook_names).
    pub fn programs(&self) -> Programs<'_, 'static> {
        let p = &self.skel.progs;
        let (hooks, lsm_hooks) = hook_names(self.backend);
        let (cgroup, lsm) = match self.backend {
            Backend::Cgroup => (
                vec![
                    &p.enforce_connect4,
                    &p.enforce_connect6,
                    &p.enforce_sendmsg4,
                    &p.enforce_sendmsg6,
                    &p.enforce_sock_create,
                    &p.enforce_setsockopt,
                    &p.enforce_egress,
                    &p.enforce_ingress,
                ],
                Vec::new(),
            ),
            Backend::Lsm => (
                vec![
                    &p.enforce_connect4,
                    &p.enforce_connect6,
                    &p.enforce_setsockopt,
                    &p.enforce_egress,
                    &p.enforce_ingress,
                ],
                vec![
                    &p.enforce_lsm_connect,
                    &p.enforce_lsm_sendmsg,
                    &p.enforce_lsm_create,
                    &p.enforce_lsm_post_create,
                ],
            ),
        };
        Programs {
            hooks,
            cgroup,
            lsm_hooks,
            lsm,
            exec: &p.enforce_exec,
        }
    }

    /// Makes this generation's LSM programs the ones that decide (the others pass).
    pub fn activate(&self, shared: &Shared) -> Result<()> {
        shared
            .active_generation
            .update(
                &0u32.to_ne_bytes(),
                &self.number.to_ne_bytes(),
                libbpf_rs::MapFlags::ANY,
            )
            .context("making the new policy's LSM programs the deciding ones")
    }
}

/// The enforcer's links: one per cgroup hook, plus the exec tracepoint.
pub struct Links(HookLinks);

impl Links {
    /// Attaches `gen`'s programs (the cgroup ones at `cgroup`) and makes them decide.
    pub fn attach(gen: &Generation, shared: &Shared, cgroup: &Path) -> Result<Links> {
        gen.activate(shared)?;
        HookLinks::attach(&gen.programs(), cgroup).map(Links)
    }

    /// Links pinned by an earlier `--persist` run, still enforcing its policy.
    pub fn open_pinned(dir: &Path, backend: Backend) -> Result<Links> {
        let (hooks, lsm_hooks) = hook_names(backend);
        HookLinks::open_pinned(dir, hooks, lsm_hooks).map(Links)
    }

    /// Moves every hook to `gen`'s programs: a connect is decided by either the old
    /// policy or the new, never by none.
    pub fn swap_to(&mut self, gen: &Generation, shared: &Shared) -> Result<()> {
        self.0
            .swap_to(&gen.programs(), &mut || gen.activate(shared))
    }

    pub fn pin(&mut self, dir: &Path) -> Result<()> {
        self.0.pin(dir)
    }

    /// Keeps the pinned links (and so enforcement) after this process exits.
    pub fn leave_pinned(self) {
        self.0.leave_pinned()
    }

    /// Removes the pins (if any); the links go when this value is dropped.
    pub fn unpin(&mut self) -> Result<()> {
        self.0.unpin()
    }
}
