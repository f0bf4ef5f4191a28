//! Writes a compiled policy and the hashed executables into a loaded enforcer's maps.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use anyhow::{Context, Result};
use libbpf_rs::{MapCore, MapFlags};
use pinhole_policygen::compile::{Compiled, DestKey, FAMILY_V4};
use pinhole_policygen::Mode;

use crate::identity::{user_dev_to_kernel, ExeKey};
use crate::skel::enforce::types::{
    app_info, dest_key, identity_key, identity_value, port_span, span_range,
};
use crate::skel::enforce::EnforceSkel;

/// PINHOLE_DEST_FIXED_BITS of bpf/pinhole.h: app id, protocol, family and padding.
const DEST_FIXED_BITS: u32 = 64;

pub(super) fn bytes<T: plain::Plain>(v: &T) -> &[u8] {
    // SAFETY: Plain types are integers and byte arrays without padding holes that
    // matter to the kernel (every padding field is explicit and zeroed).
    unsafe { plain::as_bytes(v) }
}

/// Sizes of the policy maps, set before load.
pub struct Sizes {
    pub apps: u32,
    /// Prefix nodes (the trie) and whole-address nodes (the hash), at least 1 each.
    pub dests: u32,
    pub dest_hosts: u32,
    pub spans: u32,
}

/// Whether a node is a whole address (kept in `dest_hosts`, not the trie).
fn whole_address(k: &DestKey) -> bool {
    let full = match k.family {
        FAMILY_V4 => 32,
        _ => 128,
    };
    k.prefix_len == full
}

pub fn sizes(c: &Compiled) -> Sizes {
    let hosts = c.dests.iter().filter(|(k, _)| whole_address(k)).count() as u32;
    Sizes {
        apps: c.apps.len() as u32 + 1,
        dests: (c.dests.len() as u32 - hosts).max(1),
        dest_hosts: hosts.max(1),
        spans: (c.spans.len() as u32).max(1),
    }
}

/// Fills the apps, destination trie and port spans of a freshly loaded program.
pub fn fill_policy(skel: &EnforceSkel<'_>, c: &Compiled) -> Result<()> {
    let maps = &skel.maps;
    for (i, app) in c.apps.iter().enumerate() {
        let id = i as u32 + 1;
        let info = app_info {
            mode: match app.mode {
                Mode::Enforce => 0,
                Mode::Audit => 1,
            },
            dns_scope: super::name_tables::scope_code(app.dns_scope),
            sha_tag: super::name_tables::sha_tag(&app.sha256),
        };
        maps.apps
            .update(&id.to_ne_bytes(), bytes(&info), MapFlags::ANY)
            .with_context(|| format!("writing app {}", app.name))?;
    }
    let started = std::time::Instant::now();
    let mut spans = Batch::new(&maps.port_spans, "writing port spans");
    for (i, s) in c.spans.iter().enumerate() {
        let span = port_span {
            lo: s.lo,
            hi: s.hi,
            rule: s.rule,
            chain: s.chain,
        };
        spans.push(&(i as u32).to_ne_bytes(), bytes(&span))?;
    }
    spans.finish()?;
    tracing::debug!(
        ms = started.elapsed().as_millis() as u64,
        "port spans written"
    );
    let mut dests = Batch::new(&maps.dests, "writing the destination trie");
    let mut hosts = Batch::new(&maps.dest_hosts, "writing the destination addresses");
    for (k, range) in &c.dests {
        let key = dest_key {
            prefixlen: DEST_FIXED_BITS + u32::from(k.prefix_len),
            app_id: k.app_id,
            protocol: k.protocol,
            family: k.family,
            addr: k.addr,
            ..Default::default()
        };
        let value = span_range {
            start: range.start,
            count: range.count,
        };
        match whole_address(k) {
            true => hosts.push(bytes(&key), bytes(&value))?,
            false => dests.push(bytes(&key), bytes(&value))?,
        }
    }
    dests.finish()?;
    hosts.finish()?;
    tracing::debug!(
        ms = started.elapsed().as_millis() as u64,
        "destinations written"
    );
    match &c.names {
        Some(names) => super::name_tables::fill(skel, names),
        None => Ok(()),
    }
}

/// Map writes gathered into batches of `BATCH` elements: one system call each instead
/// of one per element (a million-rule policy's trie took 1.3 s element by element).
/// Falls back to element writes where the kernel has no batch update for the map type.
struct Batch<'a> {
    map: &'a dyn MapCore,
    what: &'static str,
    keys: Vec<u8>,
    values: Vec<u8>,
    count: u32,
    batched: bool,
}

const BATCH: u32 = 8192;

impl<'a> Batch<'a> {
    fn new(map: &'a dyn MapCore, what: &'static str) -> Self {
        Batch {
            map,
            what,
            keys: Vec::new(),
            values: Vec::new(),
            count: 0,
            batched: true,
        }
    }

    fn push(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.keys.extend_from_slice(key);
        self.values.extend_from_slice(value);
        self.count += 1;
        if self.count == BATCH {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.count == 0 {
            return Ok(());
        }
        if self.batched {
            match self.map.update_batch(
                &self.keys,
                &self.values,
                self.count,
                MapFlags::ANY,
                MapFlags::ANY,
            ) {
                Ok(()) => return self.clear(),
                // Not supported for this map type here: write element by element.
                Err(e)
                    if matches!(
                        e.kind(),
                        libbpf_rs::ErrorKind::Unsupported | libbpf_rs::ErrorKind::InvalidInput
                    ) =>
                {
                    tracing::debug!(what = self.what, "no batch update: {e}");
                    self.batched = false;
                }
                Err(e) => return Err(e).context(self.what),
            }
        }
        let (k, v) = (self.map.key_size() as usize, self.map.value_size() as usize);
        for (key, value) in self.keys.chunks_exact(k).zip(self.values.chunks_exact(v)) {
            self.map
                .update(key, value, MapFlags::ANY)
                .context(self.what)?;
        }
        self.clear()
    }

    fn clear(&mut self) -> Result<()> {
        self.keys.clear();
        self.values.clear();
        self.count = 0;
        Ok(())
    }

    fn finish(mut self) -> Result<()> {
        self.flush()
    }
}

/// Tells the kernel that this version of this file is `app_id`'s bytes.
pub fn set_identity(map: &dyn MapCore, key: &ExeKey, app_id: u32) -> Result<()> {
    let k = identity_key {
        ino: key.ino,
        dev: user_dev_to_kernel(key.dev),
        ..Default::default()
    };
    let v = identity_value {
        ctime_sec: key.ctime_sec,
        ctime_nsec: key.ctime_nsec,
        app_id,
    };
    if map.update(bytes(&k), bytes(&v), MapFlags::ANY).is_ok() {
        return Ok(());
    }
    // Full (a new key on a full hash map fails): make room, then try once more.
    evict_some(map);
    map.update(bytes(&k), bytes(&v), MapFlags::ANY)
        .context("writing the identity table")
}

/// Files of the policy's own `paths`: never evicted from the identity table.
static PROTECTED: Mutex<BTreeSet<(u32, u64)>> = Mutex::new(BTreeSet::new());
/// Identity entries evicted to make room, since start.
static EVICTIONS: AtomicU64 = AtomicU64::new(0);

/// Marks files (user-space device encoding, inode) as never to be evicted.
pub fn protect_identities(files: impl IntoIterator<Item = (u64, u64)>) {
    let mut p = PROTECTED.lock().unwrap_or_else(|e| e.into_inner());
    p.extend(
        files
            .into_iter()
            .map(|(dev, ino)| (user_dev_to_kernel(dev), ino)),
    );
}

pub fn identity_evictions() -> u64 {
    EVICTIONS.load(Ordering::Relaxed)
}

/// Deletes a sixteenth of the table's entries (at least one), none of them protected:
/// a copy or reinstall evicted is hashed again at its next exec or connect.
fn evict_some(map: &dyn MapCore) {
    let protected = PROTECTED.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let batch = (map.info().map_or(0, |i| i.info.max_entries) / 16).max(1) as usize;
    let victims: Vec<Vec<u8>> = map
        .keys()
        .filter(|k| {
            plain::from_bytes::<identity_key>(k)
                .map(|id| !protected.contains(&(id.dev, id.ino)))
                .unwrap_or(false)
        })
        .take(batch)
        .collect();
    let mut evicted = 0;
    for k in &victims {
        if map.delete(k).is_ok() {
            evicted += 1;
        }
    }
    let total = EVICTIONS.fetch_add(evicted, Ordering::Relaxed) + evicted;
    tracing::warn!(
        evicted,
        total,
        "the identity table was full: evicted app file versions not named by the policy (raise --identity-capacity)"
    );
}

/// Per-app decision counts (index 0: unknown binaries), summed over CPUs.
#[derive(Debug, Default, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct Counts {
    pub allowed: u64,
    pub denied: u64,
    pub would_deny: u64,
}

pub fn read_counters(map: &dyn MapCore, entries: u32) -> Result<Vec<Counts>> {
    (0..entries)
        .map(|i| {
            let per_cpu = map
                .lookup_percpu(&i.to_ne_bytes(), MapFlags::ANY)
                .context("reading the decision counters")?
                .unwrap_or_default();
            let mut total = Counts::default();
            for v in per_cpu {
                let word = |n: usize| {
                    u64::from_ne_bytes(v[n * 8..n * 8 + 8].try_into().unwrap_or_default())
                };
                total.allowed += word(0);
                total.denied += word(1);
                total.would_deny += word(2);
            }
            Ok(total)
        })
        .collect()
}
