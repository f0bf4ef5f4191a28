//! `pinhole enforce names`: the live name evidence of a running or persisted enforcer
//! (which names vouch for which addresses, to whom, for how long), and the name
//! counters `status` shows.

use std::net::IpAddr;

use anyhow::{bail, Context, Result};
use libbpf_rs::{MapCore, MapFlags, MapHandle};
use pinhole_policygen::compile::Compiled;

use super::name_tables::sha_tag;
use super::state::{self, State};
use crate::skel::enforce::types::{evidence_key, evidence_value};
use pinhole_recorder::printable::printable;

#[derive(Debug, clap::Args)]
pub struct NamesArgs {
    /// Only this app's evidence (and, for apps in host scope, the host's).
    #[arg(long)]
    app: Option<String>,
    /// Output format.
    #[arg(long, value_parser = ["table", "json"], default_value = "table")]
    format: String,
}

/// One name vouching for one address to one receiver.
#[derive(Debug, serde::Serialize)]
struct Vouch {
    /// An app's name, "host" (the host's resolvers), or "file DEV:INODE" for a binary
    /// outside the policy.
    receiver: String,
    address: String,
    name: String,
    /// Seconds this still counts (TTL, minimum TTL and grace included).
    expires_in_s: u64,
}

/// The name counters of bpf/pinhole.h (`enum pinhole_name_stat`), summed over CPUs.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct NameStats {
    pub replies: u64,
    pub unreadable_replies: u64,
    pub evidence_entries_added: u64,
    /// Entries the kernel's least-recently-used eviction removed (added minus live).
    pub evidence_entries_evicted: u64,
    pub evidence_entries_live: u64,
    /// Names pushed out of a full entry (8 names per address and receiver) while valid.
    pub names_pushed_out: u64,
    pub names_without_id: u64,
    pub names_forgotten: u64,
    pub answers_skipped: u64,
}

/// The shared name maps of the enforcer `st` describes: pinned, or by id.
fn open_maps(st: &State) -> Result<(MapHandle, MapHandle, MapHandle)> {
    if state::has_pins() {
        let open = |name: &str| {
            let p = state::pin_dir().join(name);
            MapHandle::from_pinned_path(&p).with_context(|| format!("opening {}", p.display()))
        };
        return Ok((
            open("name_evidence")?,
            open("name_texts")?,
            open("name_stats")?,
        ));
    }
    let Some(ids) = st.name_maps.filter(|_| state::is_running(st.pid)) else {
        bail!("not enforcing: no enforcer is running or persisted");
    };
    let open = |id: u32| MapHandle::from_map_id(id).context("opening the enforcer's name maps");
    Ok((open(ids.evidence)?, open(ids.texts)?, open(ids.stats)?))
}

pub fn read_stats(st: &State) -> Result<NameStats> {
    let (evidence, _, stats) = open_maps(st)?;
    let mut slot = [0u64; 7];
    for (i, total) in slot.iter_mut().enumerate() {
        let per_cpu = stats
            .lookup_percpu(&(i as u32).to_ne_bytes(), MapFlags::ANY)
            .context("reading the name counters")?
            .unwrap_or_default();
        *total = per_cpu
            .iter()
            .map(|v| u64::from_ne_bytes(v[..8].try_into().unwrap_or_default()))
            .sum();
    }
    let live = evidence.keys().count() as u64;
    Ok(NameStats {
        replies: slot[0],
        unreadable_replies: slot[1],
        evidence_entries_added: slot[2],
        evidence_entries_evicted: slot[2].saturating_sub(live),
        evidence_entries_live: live,
        names_pushed_out: slot[3],
        names_without_id: slot[4],
        names_forgotten: slot[5],
        answers_skipped: slot[6],
    })
}

fn receiver_label(k: &evidence_key, compiled: &Compiled) -> String {
    match k.kind {
        1 => compiled
            .apps
            .iter()
            .find(|a| sha_tag(&a.sha256) == k.who)
            .map_or_else(
                || format!("app {:016x} (not in this policy)", k.who),
                |a| a.name.clone(),
            ),
        2 => format!("file {}:{}", k.dev, k.who),
        _ => "host".to_owned(),
    }
}

fn address(k: &evidence_key) -> String {
    match k.family {
        4 => IpAddr::from(<[u8; 4]>::try_from(&k.addr[..4]).expect("4 bytes")).to_string(),
        _ => IpAddr::from(k.addr).to_string(),
    }
}

fn name_text(texts: &MapHandle, id: u32) -> String {
    texts
        .lookup(&id.to_ne_bytes(), MapFlags::ANY)
        .ok()
        .flatten()
        .and_then(|bytes| crate::skel::dns_name_text(&bytes))
        .unwrap_or_else(|| format!("(name {id}, forgotten)"))
}

pub fn names(args: NamesArgs) -> Result<()> {
    crate::privileges::require("pinhole enforce names", crate::privileges::CONTROL)?;
    let Some(st) = state::read()? else {
        println!("not enforcing: no enforcer is loaded");
        return Ok(());
    };
    let compiled = super::control::active_policy()?;
    let (evidence, texts, _) = open_maps(&st)?;
    let app_filter = match &args.app {
        Some(name) => Some(
            compiled
                .apps
                .iter()
                .find(|a| &a.name == name)
                .with_context(|| format!("no app {} in the active policy", printable(name)))?,
        ),
        None => None,
    };
    let now = crate::clock::boot_ns();
    let mut out = Vec::new();
    for key in evidence.keys() {
        let Some(value) = evidence.lookup(&key, MapFlags::ANY)? else {
            continue;
        };
        let (Ok(k), Ok(v)) = (
            plain::from_bytes::<evidence_key>(&key),
            plain::from_bytes::<evidence_value>(&value),
        ) else {
            continue;
        };
        if let Some(a) = app_filter {
            let host_too = a.dns_scope == pinhole_policygen::dns_evidence::Scope::Host;
            let mine = k.kind == 1 && k.who == sha_tag(&a.sha256);
            if !(mine || host_too && k.kind == 3) {
                continue;
            }
        }
        for slot in v
            .slots
            .iter()
            .filter(|s| s.name_id != 0 && s.until_ns > now)
        {
            out.push(Vouch {
                receiver: receiver_label(k, &compiled),
                address: address(k),
                name: name_text(&texts, slot.name_id),
                expires_in_s: (slot.until_ns - now) / 1_000_000_000,
            });
        }
    }
    out.sort_by(|a, b| (&a.receiver, &a.name, &a.address).cmp(&(&b.receiver, &b.name, &b.address)));
    if args.format == "json" {
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    if out.is_empty() {
        println!("no name evidence: no DNS answer counts now");
        return Ok(());
    }
    println!(
        "{:<28} {:<40} {:<40} {:>10}",
        "RECEIVER", "NAME", "ADDRESS", "EXPIRES IN"
    );
    for v in &out {
        println!(
            "{:<28} {:<40} {:<40} {:>9}s",
            printable(&v.receiver),
            printable(&v.name),
            v.address,
            v.expires_in_s
        );
    }
    Ok(())
}
