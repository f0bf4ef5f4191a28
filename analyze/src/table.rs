//! Plain-text rendering of profiles for a terminal.

use std::fmt::Write;

use pinhole_recorder::printable::printable;

use crate::profile::{AppProfile, ProfileDoc};

fn name(a: &AppProfile) -> String {
    let n = a.paths.first().or(a.comms.first()).unwrap_or(&a.id);
    printable(n).into_owned()
}

/// A list of names chosen by whoever named the binaries, escaped for the terminal.
fn list(items: &[String]) -> String {
    items
        .iter()
        .map(|s| printable(s))
        .collect::<Vec<_>>()
        .join(", ")
}

fn short_id(a: &AppProfile) -> String {
    match &a.sha256 {
        Some(h) => h[..12].to_owned(),
        None => printable(&a.exe_status).into_owned(),
    }
}

/// One line per app: identity, volume, destinations, and whether learning can stop.
pub fn overview(doc: &ProfileDoc) -> String {
    let d = &doc.dataset;
    let mut out = format!(
        "{} events in {} files, {} to {}\n\n",
        d.events, d.files, d.first_seen, d.last_seen
    );
    let _ = writeln!(
        out,
        "{:<40} {:<13} {:>10} {:>6} {:>6}  {:<15} LAST NEW DESTINATION",
        "APP", "SHA256", "EVENTS", "DESTS", "USERS", "LEARNING"
    );
    for a in doc.apps.iter().chain(&doc.unresolved) {
        let _ = writeln!(
            out,
            "{:<40} {:<13} {:>10} {:>6} {:>6}  {:<15} {}",
            truncate(&name(a), 40),
            short_id(a),
            a.events,
            a.destinations.len(),
            a.users.len(),
            a.learning.verdict,
            a.learning.last_new_destination
        );
    }
    let unreadable: Vec<&AppProfile> = doc
        .apps
        .iter()
        .chain(&doc.unresolved)
        .filter(|a| a.unreadable_events > 0)
        .collect();
    if !unreadable.is_empty() {
        let _ = writeln!(
            out,
            "\nWARNING: {} events of {} app(s) have a protocol or destination that could not be read; they are not in DESTS (see --app for each)",
            unreadable.iter().map(|a| a.unreadable_events).sum::<u64>(),
            unreadable.len()
        );
    }
    if !doc.unresolved.is_empty() {
        let _ = writeln!(
            out,
            "\n{} group(s) of events had no executable hash (SHA256 column shows why).",
            doc.unresolved.len()
        );
    }
    out
}

/// Everything about one app.
pub fn detail(a: &AppProfile) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}\n  id:        {}", name(a), a.id);
    let _ = writeln!(out, "  paths:     {}", list(&a.paths));
    let _ = writeln!(out, "  names:     {}", list(&a.comms));
    let _ = writeln!(
        out,
        "  users:     {}",
        a.users
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    if !a.path_shared_with.is_empty() {
        let _ = writeln!(
            out,
            "  WARNING:   the same path ran with other bytes: {}",
            list(&a.path_shared_with)
        );
    }
    let _ = writeln!(
        out,
        "  processes: {}   events: {}   seen: {} to {}",
        a.processes, a.events, a.first_seen, a.last_seen
    );
    if a.unreadable_events > 0 {
        let _ = writeln!(
            out,
            "  WARNING:   {} events with a protocol or destination that could not be read",
            a.unreadable_events
        );
    }
    if a.events_without_destination > 0 {
        let _ = writeln!(
            out,
            "  sockets:   {} events without a destination (raw or ping sockets opened, source routes)",
            a.events_without_destination
        );
    }
    for x in &a.anomalies {
        let _ = writeln!(out, "  ANOMALY:   {}", x.reason);
    }
    if !a.refused.is_empty() {
        let (denied, would): (u64, u64) = a
            .refused
            .iter()
            .fold((0, 0), |(d, w), r| (d + r.denied, w + r.would_deny));
        let _ = writeln!(
            out,
            "  refused:   {denied} denied and {would} would-deny connects to {} destinations (not learnt from):",
            a.refused.len()
        );
        for r in a.refused.iter().take(10) {
            let _ = writeln!(
                out,
                "             {} {}:{}  denied {}, would-deny {}",
                r.protocol, r.address, r.port, r.denied, r.would_deny
            );
        }
    }
    let l = &a.learning;
    let _ = writeln!(
        out,
        "  learning:  {} (last new destination {}, quiet for {}s); new per {}: {}",
        l.verdict,
        l.last_new_destination,
        l.quiet_seconds,
        l.period,
        l.new_destinations
            .iter()
            .map(|p| p.count.to_string())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let _ = writeln!(
        out,
        "\n  {:<5} {:<40} {:>5}  {:<10} {:>9} {:>4} {:>5}  {:<30}  NAME (FROM DNS)",
        "PROTO", "ADDRESS", "PORT", "SCOPE", "EVENTS", "DAYS", "HOURS", "LAST SEEN"
    );
    for d in &a.destinations {
        let _ = writeln!(
            out,
            "  {:<5} {:<40} {:>5}  {:<10} {:>9} {:>4} {:>5}  {:<30}  {}",
            printable(&d.protocol),
            printable(&d.address),
            d.port,
            d.scope,
            d.events,
            d.days,
            d.hours,
            d.last_seen,
            printable(&d.names.join(", "))
        );
    }
    let _ = writeln!(
        out,
        "\n  {:<5} {:<24} {:>9} {:>9}  PORTS",
        "PROTO", "PREFIX", "ADDRESSES", "EVENTS"
    );
    for g in &a.groups {
        let eph = if g.ephemeral_ports > 0 {
            format!("  ({} ephemeral)", g.ephemeral_ports)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "  {:<5} {:<24} {:>9} {:>9}  {}{eph}",
            g.protocol,
            g.prefix,
            g.addresses,
            g.events,
            truncate(&g.ports.join(","), 60)
        );
    }
    out
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        let tail: String = s
            .chars()
            .rev()
            .take(n - 1)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        format!("…{tail}")
    }
}
