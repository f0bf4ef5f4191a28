//! Writes a compiled policy's names (bpf/name_decide.h) into a loaded enforcer: the
//! policy's names, deny prefixes and per-app name rules, and the host's resolvers.

use anyhow::{Context, Result};
use libbpf_rs::{MapCore, MapFlags};
use pinhole_policygen::compile::Compiled;
use pinhole_policygen::compile_names::NameTables;
use pinhole_policygen::dns_evidence::Scope;

use super::tables::bytes;
use crate::identity::user_dev_to_kernel;
use crate::skel::enforce::types::{
    identity_key, name_pattern, name_prefix, name_rule_key, name_rule_value,
};
use crate::skel::enforce::{EnforceSkel, OpenEnforceSkel};

/// PINHOLE_NAME_BYTES of bpf/pinhole.h.
pub const NAME_BYTES: usize = 256;

/// A name as the kernel keys it: its bytes, zero-padded.
pub fn name_key(text: &str) -> [u8; NAME_BYTES] {
    let mut key = [0u8; NAME_BYTES];
    let n = text.len().min(NAME_BYTES - 1);
    key[..n].copy_from_slice(&text.as_bytes()[..n]);
    key
}

/// PINHOLE_SCOPE_* of bpf/pinhole.h.
pub fn scope_code(s: Scope) -> u32 {
    match s {
        Scope::App => 0,
        Scope::Host => 1,
    }
}

/// An app's receiver tag: the first 8 bytes of its hash (bpf/pinhole.h, app_info).
pub fn sha_tag(sha256: &[u8; 32]) -> u64 {
    u64::from_le_bytes(sha256[..8].try_into().expect("8 bytes"))
}

/// Sets what the programs read before load and sizes the name tables; the kernel's
/// memory of name verdicts gets `capacity` entries where it is used.
pub fn configure(open: &mut OpenEnforceSkel<'_>, c: &Compiled, capacity: u32) -> Result<()> {
    let Some(names) = &c.names else {
        open.maps.name_verdicts.set_max_entries(1)?;
        return Ok(());
    };
    let cached = c.name_verdicts_unscoped();
    let ro = open
        .maps
        .rodata_data
        .as_deref_mut()
        .context("the enforcer object has no read-only data section")?;
    ro.names_enabled = 1;
    ro.names_scope = scope_code(names.scope);
    ro.dns_min_ttl = names.lifetime.min_ttl;
    ro.dns_grace = names.lifetime.grace;
    // Most policies deny no name for one app alone: their connects skip that lookup.
    ro.has_app_name_denies = names.rules.iter().any(|(k, _)| k.protocol == 0).into();
    ro.name_verdicts_cached = cached.into();
    for &len in &names.prefix_lens {
        ro.prefix_len_bits[len / 8] |= 1 << (len % 8);
        ro.has_prefixes = 1;
    }
    let m = &mut open.maps;
    let size = |n: usize| (n as u32).max(1);
    m.name_patterns
        .set_max_entries(size(names.patterns.len()))?;
    m.name_prefixes
        .set_max_entries(size(names.prefixes.len()))?;
    m.name_rules.set_max_entries(size(names.rules.len()))?;
    m.name_verdicts
        .set_max_entries(if cached { capacity } else { 1 })?;
    Ok(())
}

/// Fills the name tables of a freshly loaded program.
pub fn fill(skel: &EnforceSkel<'_>, names: &NameTables) -> Result<()> {
    let m = &skel.maps;
    for (reversed, p) in &names.patterns {
        let value = name_pattern {
            exact: p.exact,
            under: p.under,
            deny_exact: p.deny_exact,
            deny_under: p.deny_under,
        };
        m.name_patterns
            .update(&name_key(reversed), bytes(&value), MapFlags::ANY)
            .context("writing the policy's names")?;
    }
    for (prefix, p) in &names.prefixes {
        let value = name_prefix {
            pattern: p.pattern,
            global_deny: p.global_deny,
        };
        m.name_prefixes
            .update(&name_key(prefix), bytes(&value), MapFlags::ANY)
            .context("writing the policy's deny prefixes")?;
    }
    for (k, v) in &names.rules {
        let key = name_rule_key {
            app_id: k.app_id,
            pattern: k.pattern,
            protocol: k.protocol,
            ..Default::default()
        };
        let value = name_rule_value {
            start: v.start,
            count: v.count,
            deny: v.deny,
        };
        m.name_rules
            .update(bytes(&key), bytes(&value), MapFlags::ANY)
            .context("writing the name rules")?;
    }
    Ok(())
}

/// Marks the host's resolvers (`--host-resolver`): answers they receive are the host's.
/// A path that does not exist is skipped (a host without that resolver).
pub fn set_host_resolvers(map: &dyn MapCore, paths: &[String]) -> Result<usize> {
    let mut marked = 0;
    for path in paths {
        let Ok(meta) = std::fs::metadata(path) else {
            continue;
        };
        let key = identity_key {
            ino: std::os::unix::fs::MetadataExt::ino(&meta),
            dev: user_dev_to_kernel(std::os::unix::fs::MetadataExt::dev(&meta)),
            ..Default::default()
        };
        map.update(bytes(&key), &[1], MapFlags::ANY)
            .with_context(|| format!("marking {path} as a host resolver"))?;
        marked += 1;
    }
    Ok(marked)
}
