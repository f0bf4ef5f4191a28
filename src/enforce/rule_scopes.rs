//! Rule scopes in the kernel (bpf/enforce_decide.h `rule_scopes`, `rule_chains`): the
//! chains of rules behind scoped ones, and each scope with its cgroup resolved to an id
//! and its expiry on the kernel's clock. A cgroup made anew (a unit restarted) gets a
//! new id: `refresh` follows it without a reload.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use libbpf_rs::{MapCore, MapFlags};
use pinhole_policygen::compile::Compiled;
use pinhole_policygen::rule_scope::RuleScope;

use super::tables::bytes;
use crate::skel::enforce::types::rule_scope;
use crate::skel::enforce::EnforceSkel;

/// The map sizes: (chain entries, scoped rules), at least 1 each.
pub fn sizes(c: &Compiled) -> (u32, u32) {
    (
        (c.chains.len() as u32).max(1),
        (c.scopes.len() as u32).max(1),
    )
}

/// Refuses what the kernel cannot decide as the matcher does.
pub fn check(c: &Compiled) -> Result<()> {
    if let Some(first) = c.overlong_chains.first() {
        bail!(
            "rule \"{}\" overlaps more than {} other rules, scoped ones among them, on the same destination and ports; the kernel checks at most {}: make the scoped rules narrower or merge them",
            first.escape_debug(),
            pinhole_policygen::compile::MAX_CHAIN - 1,
            pinhole_policygen::compile::MAX_CHAIN
        );
    }
    Ok(())
}

/// A cgroup path's (id, depth below the root) now; None when it does not exist.
fn resolve(root: &Path, path: &str) -> Option<(u64, u32)> {
    let dir = root.join(path.trim_start_matches('/'));
    crate::mounts::cgroup_scope(root, &dir).ok()
}

/// The kernel form of `s`, with the cgroup found under `root` (None: no hierarchy).
fn kernel_scope(
    s: &RuleScope,
    root: Option<&Path>,
    cgroups: &mut HashMap<String, Option<(u64, u32)>>,
) -> rule_scope {
    let mut k = rule_scope {
        nuids: s.uids.len() as u8,
        ngids: s.gids.len() as u8,
        ..Default::default()
    };
    k.uids[..s.uids.len()].copy_from_slice(&s.uids);
    k.gids[..s.gids.len()].copy_from_slice(&s.gids);
    if let Some(path) = &s.cgroup {
        k.has_cgroup = 1;
        let found = *cgroups
            .entry(path.clone())
            .or_insert_with(|| root.and_then(|r| resolve(r, path)));
        if let Some((id, level)) = found {
            (k.cgroup_id, k.cgroup_level) = (id, level);
        }
    }
    if let Some(e) = &s.expires {
        // On CLOCK_BOOTTIME, which the kernel compares with; an expiry already past
        // becomes 1 (never 0, which means "never").
        let clock = crate::clock::BootClock::now();
        let boot = e.ns - clock.to_unix_ns(0);
        k.expires_ns = boot.max(1) as u64;
    }
    k
}

fn cgroup_root() -> Option<std::path::PathBuf> {
    crate::mounts::find_cgroup2_mount().ok().flatten()
}

/// Fills the chains and scopes of a freshly loaded program.
pub fn fill(skel: &EnforceSkel<'_>, c: &Compiled) -> Result<()> {
    let maps = &skel.maps;
    for (i, rule) in c.chains.iter().enumerate() {
        maps.rule_chains
            .update(
                &(i as u32).to_ne_bytes(),
                &rule.to_ne_bytes(),
                MapFlags::ANY,
            )
            .context("writing the rule chains")?;
    }
    let root = cgroup_root();
    let mut cgroups = HashMap::new();
    for (rule, scope) in &c.scopes {
        let k = kernel_scope(scope, root.as_deref(), &mut cgroups);
        maps.rule_scopes
            .update(&rule.to_ne_bytes(), bytes(&k), MapFlags::ANY)
            .context("writing the rule scopes")?;
    }
    for (path, found) in &cgroups {
        if found.is_none() {
            tracing::warn!(
                cgroup = %path.escape_debug(),
                "a rule's cgroup does not exist (yet): its rules hold for no one until it appears"
            );
        }
    }
    Ok(())
}

/// Follows cgroups made anew since the scopes were written (a restarted unit's cgroup
/// has a new id); returns how many scopes changed.
pub fn refresh(map: &dyn MapCore, c: &Compiled) -> Result<usize> {
    if !c.scopes.values().any(|s| s.cgroup.is_some()) {
        return Ok(0);
    }
    let root = cgroup_root();
    let mut cgroups = HashMap::new();
    let mut changed = 0;
    for (rule, scope) in c.scopes.iter().filter(|(_, s)| s.cgroup.is_some()) {
        let mut k = kernel_scope(scope, root.as_deref(), &mut cgroups);
        let key = rule.to_ne_bytes();
        let Some(old) = map.lookup(&key, MapFlags::ANY)? else {
            continue;
        };
        let mut was = rule_scope::default();
        plain::copy_from_bytes(&mut was, &old).ok();
        // Only the cgroup moves; the expiry stays as first converted.
        k.expires_ns = was.expires_ns;
        if (was.cgroup_id, was.cgroup_level) != (k.cgroup_id, k.cgroup_level) {
            map.update(&key, bytes(&k), MapFlags::EXIST)
                .context("updating a rule's cgroup")?;
            changed += 1;
        }
    }
    Ok(changed)
}
