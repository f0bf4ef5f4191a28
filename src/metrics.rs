//! `--metrics-listen ADDR`: Prometheus text (OpenMetrics-compatible) for `record` and
//! `enforce`, served over HTTP by metrics-exporter-prometheus on its own tokio runtime
//! thread. Values are set from the daemons' own counters as their loops turn, so a
//! scrape never waits on them.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};
use metrics::{counter, describe_counter, describe_gauge, gauge};
use metrics_exporter_prometheus::PrometheusBuilder;

use crate::status::Counters;

/// Starts serving `/metrics` (any path answers) on `addr`.
pub fn serve(addr: SocketAddr, command: &'static str) -> Result<()> {
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .install()
        .with_context(|| format!("serving metrics on {addr} (--metrics-listen)"))?;
    describe();
    gauge!("pinhole_info", "command" => command, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    tracing::info!(%addr, "serving metrics");
    Ok(())
}

/// Fails as `serve` would if `addr` cannot be bound, without serving yet.
pub fn check_free(addr: SocketAddr) -> Result<()> {
    std::net::TcpListener::bind(addr)
        .map(drop)
        .with_context(|| format!("serving metrics on {addr} (--metrics-listen)"))
}

/// Which sandbox layers are in force (1) or not (0).
pub fn sandbox(l: &crate::sandbox::Layers) {
    for (layer, on) in [
        ("landlock_filesystem", l.landlock_fs.is_some()),
        ("landlock_tcp", l.landlock_net),
        ("capabilities", l.capabilities),
    ] {
        gauge!("pinhole_sandbox_layer", "layer" => layer).set(u8::from(on));
    }
}

fn describe() {
    describe_gauge!(
        "pinhole_sandbox_layer",
        "Whether a layer of the self-sandbox is in force, by layer."
    );
    describe_gauge!(
        "pinhole_info",
        "This pinhole: the command serving and its version."
    );
    describe_counter!("pinhole_events_total", "Events received from the kernel.");
    describe_counter!(
        "pinhole_events_written_total",
        "Events durable in staging or published."
    );
    describe_counter!(
        "pinhole_events_lost_total",
        "Events lost (ring full, disk full): gaps the trail counts."
    );
    describe_counter!("pinhole_files_published_total", "Parquet files published.");
    describe_counter!(
        "pinhole_bytes_published_total",
        "Bytes of Parquet published."
    );
    describe_gauge!(
        "pinhole_last_publish_timestamp_seconds",
        "When the last file was published (Unix time)."
    );
    describe_gauge!(
        "pinhole_hash_cache_entries",
        "File versions whose SHA-256 is cached."
    );
    describe_counter!(
        "pinhole_files_hashed_total",
        "Executables hashed (hash cache misses)."
    );
    describe_counter!(
        "pinhole_unresolved_total",
        "Events whose binary could not be hashed."
    );
    describe_counter!(
        "pinhole_retention_removed_files_total",
        "Published files removed by retention."
    );
    describe_counter!(
        "pinhole_retention_removed_bytes_total",
        "Bytes removed by retention."
    );
    describe_counter!(
        "pinhole_decisions_total",
        "Enforcer decisions, by app and verdict."
    );
    describe_counter!("pinhole_reloads_total", "Policy reloads, by outcome.");
    describe_gauge!(
        "pinhole_policy_generation",
        "The generation of the policy in force."
    );
    describe_counter!(
        "pinhole_name_replies_total",
        "DNS replies the enforcer read for name rules."
    );
    describe_counter!(
        "pinhole_name_replies_unreadable_total",
        "DNS replies the enforcer could not parse."
    );
    describe_counter!(
        "pinhole_name_evidence_added_total",
        "Address evidence entries added from answers."
    );
    describe_counter!(
        "pinhole_name_evidence_evicted_total",
        "Address evidence entries evicted (least recently used) when the table was full."
    );
    describe_gauge!(
        "pinhole_name_evidence_entries",
        "Address evidence entries in the kernel's table."
    );
    describe_counter!(
        "pinhole_names_pushed_out_total",
        "Names pushed out of a full evidence entry while still valid."
    );
    describe_counter!(
        "pinhole_names_forgotten_total",
        "Names forgotten (expired or replaced)."
    );
    describe_counter!(
        "pinhole_identity_evictions_total",
        "Identities evicted from the kernel's full identity table."
    );
}

/// The enforcer's name evidence: answers read, entries added, live and evicted by the
/// kernel's LRU when full, names pushed out of a full entry or forgotten.
pub fn names(n: &crate::enforce::names::NameStats) {
    counter!("pinhole_name_replies_total").absolute(n.replies);
    counter!("pinhole_name_replies_unreadable_total").absolute(n.unreadable_replies);
    counter!("pinhole_name_evidence_added_total").absolute(n.evidence_entries_added);
    counter!("pinhole_name_evidence_evicted_total").absolute(n.evidence_entries_evicted);
    gauge!("pinhole_name_evidence_entries").set(n.evidence_entries_live as f64);
    counter!("pinhole_names_pushed_out_total").absolute(n.names_pushed_out);
    counter!("pinhole_names_forgotten_total").absolute(n.names_forgotten);
}

/// The trail's counters; the time of the last publish when the file count grew.
pub fn trail(c: Counters, bytes_published: u64) {
    static FILES_SEEN: AtomicU64 = AtomicU64::new(0);
    counter!("pinhole_events_total").absolute(c.events);
    counter!("pinhole_events_written_total").absolute(c.written);
    counter!("pinhole_events_lost_total").absolute(c.lost);
    counter!("pinhole_files_published_total").absolute(c.files);
    counter!("pinhole_bytes_published_total").absolute(bytes_published);
    if FILES_SEEN.swap(c.files, Ordering::Relaxed) < c.files {
        let now = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
        gauge!("pinhole_last_publish_timestamp_seconds").set(now);
    }
}

pub fn identities(cached: usize, stats: crate::identity::ResolverStats) {
    gauge!("pinhole_hash_cache_entries").set(cached as f64);
    counter!("pinhole_files_hashed_total").absolute(stats.files_hashed);
    counter!("pinhole_unresolved_total").absolute(stats.unresolved);
}

pub fn retention(files: u64, bytes: u64) {
    counter!("pinhole_retention_removed_files_total").absolute(files);
    counter!("pinhole_retention_removed_bytes_total").absolute(bytes);
}

/// The kernel's decision counts per app (allowed, denied, would-deny) of the policy
/// in force; a reload starts them again (a counter reset, as Prometheus expects).
pub fn decisions<'a>(per_app: impl Iterator<Item = (&'a str, [u64; 3])>) {
    for (app, counts) in per_app {
        for (verdict, n) in ["allowed", "denied", "would-deny"].into_iter().zip(counts) {
            counter!("pinhole_decisions_total", "app" => app.to_owned(), "verdict" => verdict)
                .absolute(n);
        }
    }
}

pub fn reload(ok: bool, generation: u32) {
    counter!("pinhole_reloads_total", "outcome" => if ok { "ok" } else { "refused" }).increment(1);
    gauge!("pinhole_policy_generation").set(f64::from(generation));
}

pub fn identity_evictions(n: u64) {
    counter!("pinhole_identity_evictions_total").absolute(n);
}
