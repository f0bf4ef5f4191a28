//! The numbers behind each chart of the report, taken from the profiles `analyze`
//! prints (so the report and `analyze --format json` cannot disagree): series per
//! period, refusals per app, the learning curve and the busiest destinations.

use std::collections::BTreeMap;

use pinhole_analyze::profile::{AppProfile, ProfileDoc};
use pinhole_recorder::printable::printable;

/// Apps drawn as their own line; the rest are summed into one.
pub const CHARTED_APPS: usize = 8;
/// Bars in the refusals-by-app and destinations charts.
pub const TOP_BARS: usize = 15;

/// A series' values per period of `Figures::periods`.
pub struct Column {
    /// The app's id (`sha256:...`), or `other` / `denied` / `would-deny`.
    pub id: String,
    pub name: String,
    pub values: Vec<u64>,
}

/// One app's refusals, summed over its activity.
pub struct Refusals {
    pub id: String,
    pub name: String,
    pub denied: u64,
    pub would_deny: u64,
}

/// One destination over all apps.
pub struct Destination {
    pub protocol: String,
    pub address: String,
    pub port: u16,
    pub events: u64,
    pub apps: usize,
    pub names: Vec<String>,
}

pub struct Figures {
    /// Every period from the first to the last with events, as ns since the epoch.
    pub periods: Vec<i64>,
    pub events: Vec<Column>,
    /// `denied` and `would-deny` over all apps.
    pub refused: Vec<Column>,
    pub refused_by_app: Vec<Refusals>,
    pub destinations: Vec<Destination>,
}

/// What people call an app: its first process name (else its path's last part) and
/// the start of its hash; control characters escaped (names are whatever ran).
pub fn app_name(app: &AppProfile) -> String {
    printable(&raw_app_name(app)).into_owned()
}

fn raw_app_name(app: &AppProfile) -> String {
    let base = app
        .comms
        .first()
        .cloned()
        .or_else(|| {
            app.paths
                .first()
                .map(|p| p.rsplit('/').next().unwrap_or(p).to_owned())
        })
        .unwrap_or_else(|| app.id.clone());
    match &app.sha256 {
        Some(h) => format!("{base} ({})", &h[..h.len().min(8)]),
        None => format!("{base} (unresolved)"),
    }
}

/// ns since the epoch of an RFC 3339 time the profiles wrote.
pub fn ns(t: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(t)
        .ok()
        .and_then(|t| t.timestamp_nanos_opt())
        .unwrap_or_default()
}

fn all_apps(doc: &ProfileDoc) -> impl Iterator<Item = &AppProfile> {
    doc.apps.iter().chain(&doc.unresolved)
}

fn period_ns(doc: &ProfileDoc) -> i64 {
    match doc.activity_period.as_str() {
        "day" => 86_400_000_000_000,
        _ => 3_600_000_000_000,
    }
}

/// The periods from the first to the last one with activity, without gaps.
fn periods(doc: &ProfileDoc) -> Vec<i64> {
    let starts = all_apps(doc).flat_map(|a| a.activity.iter().map(|p| ns(&p.start)));
    let (lo, hi) = starts.fold((i64::MAX, i64::MIN), |(lo, hi), t| (lo.min(t), hi.max(t)));
    if lo > hi {
        return Vec::new();
    }
    (0..=(hi - lo) / period_ns(doc))
        .map(|i| lo + i * period_ns(doc))
        .collect()
}

/// Values per period of `periods` picked from `app`'s activity by `pick`, added to `into`.
fn add_activity(
    into: &mut [u64],
    periods: &[i64],
    app: &AppProfile,
    pick: impl Fn(&pinhole_analyze::timeline::PeriodActivity) -> u64,
) {
    for p in &app.activity {
        if let Ok(i) = periods.binary_search(&ns(&p.start)) {
            into[i] += pick(p);
        }
    }
}

fn events_by_app(doc: &ProfileDoc, periods: &[i64]) -> Vec<Column> {
    let mut apps: Vec<&AppProfile> = all_apps(doc).collect();
    apps.sort_by(|a, b| b.events.cmp(&a.events).then_with(|| a.id.cmp(&b.id)));
    let mut out: Vec<Column> = apps
        .iter()
        .take(CHARTED_APPS)
        .map(|a| {
            let mut values = vec![0; periods.len()];
            add_activity(&mut values, periods, a, |p| p.events);
            Column {
                id: a.id.clone(),
                name: app_name(a),
                values,
            }
        })
        .collect();
    if apps.len() > CHARTED_APPS {
        let mut values = vec![0; periods.len()];
        for a in &apps[CHARTED_APPS..] {
            add_activity(&mut values, periods, a, |p| p.events);
        }
        out.push(Column {
            id: "other".into(),
            name: format!("{} other apps", apps.len() - CHARTED_APPS),
            values,
        });
    }
    out
}

fn refused_over_time(doc: &ProfileDoc, periods: &[i64]) -> Vec<Column> {
    let (mut denied, mut would) = (vec![0; periods.len()], vec![0; periods.len()]);
    for a in all_apps(doc) {
        add_activity(&mut denied, periods, a, |p| p.denied);
        add_activity(&mut would, periods, a, |p| p.would_deny);
    }
    vec![
        Column {
            id: "denied".into(),
            name: "denied".into(),
            values: denied,
        },
        Column {
            id: "would-deny".into(),
            name: "would-deny (audit mode)".into(),
            values: would,
        },
    ]
}

fn refused_by_app(doc: &ProfileDoc) -> Vec<Refusals> {
    let mut out: Vec<Refusals> = all_apps(doc)
        .map(|a| Refusals {
            id: a.id.clone(),
            name: app_name(a),
            denied: a.activity.iter().map(|p| p.denied).sum(),
            would_deny: a.activity.iter().map(|p| p.would_deny).sum(),
        })
        .filter(|r| r.denied + r.would_deny > 0)
        .collect();
    out.sort_by(|a, b| {
        (b.denied + b.would_deny)
            .cmp(&(a.denied + a.would_deny))
            .then_with(|| a.id.cmp(&b.id))
    });
    out.truncate(TOP_BARS);
    out
}

fn destinations(doc: &ProfileDoc) -> Vec<Destination> {
    let mut by: BTreeMap<(&str, &str, u16), Destination> = BTreeMap::new();
    for a in all_apps(doc) {
        for d in &a.destinations {
            let e = by
                .entry((&d.protocol, &d.address, d.port))
                .or_insert_with(|| Destination {
                    protocol: d.protocol.clone(),
                    address: d.address.clone(),
                    port: d.port,
                    events: 0,
                    apps: 0,
                    names: Vec::new(),
                });
            e.events += d.events;
            e.apps += 1;
            e.names.extend(d.names.iter().cloned());
        }
    }
    let mut out: Vec<Destination> = by.into_values().collect();
    out.sort_by_key(|d| std::cmp::Reverse(d.events));
    out.truncate(TOP_BARS);
    for d in &mut out {
        d.names.sort();
        d.names.dedup();
        // Names are what DNS answers said: anything a packet may carry.
        for n in &mut d.names {
            *n = printable(n).into_owned();
        }
    }
    out
}

pub fn figures(doc: &ProfileDoc) -> Figures {
    let periods = periods(doc);
    Figures {
        events: events_by_app(doc, &periods),
        refused: refused_over_time(doc, &periods),
        refused_by_app: refused_by_app(doc),
        destinations: destinations(doc),
        periods,
    }
}

/// Each charted app's distinct destinations so far, at the start of each period of its
/// learning curve (an hour or a day, as `analyze` judged it), drawn on to when the app
/// was last seen so that a flat tail shows; named with the app's verdict.
pub fn learning_curves(doc: &ProfileDoc) -> Vec<(String, Vec<(i64, f64)>)> {
    doc.apps
        .iter()
        .take(CHARTED_APPS)
        .map(|a| {
            let mut total = 0;
            let mut points: Vec<(i64, f64)> = a
                .learning
                .new_destinations
                .iter()
                .map(|p| {
                    total += p.count;
                    (ns(&p.start), total as f64)
                })
                .collect();
            let last = ns(&a.last_seen);
            if points.last().is_some_and(|p| p.0 < last) {
                points.push((last, total as f64));
            }
            (format!("{}: {}", app_name(a), a.learning.verdict), points)
        })
        .collect()
}
