//! Profiles: what a person reads and the policy generator consumes. Built from a
//! `Summary`, serialised as a versioned JSON document, deterministic for a given input.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::summary::{AppKey, AppSummary, DestKey, DestSummary, Summary};

pub const FORMAT: &str = "pinhole.profiles";
pub const FORMAT_VERSION: u32 = 1;

/// Covering prefixes for address groups.
const V4_GROUP_BITS: u8 = 24;
const V6_GROUP_BITS: u8 = 64;
/// Linux's default ephemeral port range starts here.
const EPHEMERAL_START: u16 = 32768;

const HOUR_NS: i64 = 3_600_000_000_000;
const DAY_NS: i64 = 24 * HOUR_NS;

/// Learning-completeness thresholds; see `Learning`.
const MIN_EVENTS: u64 = 20;
const MIN_SPAN_NS: i64 = HOUR_NS;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProfileDoc {
    pub format: String,
    pub version: u32,
    pub dataset: DatasetInfo,
    /// The period of every app's `activity`: `hour` when the events span less than two
    /// days, else `day`.
    #[serde(default)]
    pub activity_period: String,
    /// Apps identified by the SHA-256 of their executable, busiest first.
    pub apps: Vec<AppProfile>,
    /// Events whose executable could not be hashed, grouped by `exe_status` and by what
    /// ran; never merged into a hashed app.
    pub unresolved: Vec<AppProfile>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DatasetInfo {
    pub path: String,
    pub files: usize,
    pub events: u64,
    pub first_seen: String,
    pub last_seen: String,
    pub since: Option<String>,
    pub until: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AppProfile {
    /// `sha256:<hex>` or `unresolved:<exe_status>:<path or name>`.
    pub id: String,
    pub sha256: Option<String>,
    pub exe_status: String,
    pub paths: Vec<String>,
    pub comms: Vec<String>,
    pub users: Vec<u32>,
    pub processes: usize,
    /// Other hashes seen under one of this app's paths: a binary replaced by other
    /// bytes (an upgrade, or tampering) shows up here on both sides.
    pub path_shared_with: Vec<String>,
    /// Traffic that should not become a rule by itself, and new bytes under a path
    /// (see `anomalies`).
    #[serde(default)]
    pub anomalies: Vec<crate::anomalies::Anomaly>,
    pub events: u64,
    /// Events whose protocol or destination could not be read (a damaged or foreign
    /// file): not in `destinations`, and not counted as evidence for learning.
    #[serde(default)]
    pub unreadable_events: u64,
    /// Events with no destination: raw or ping sockets opened (which send without a
    /// connect), and source routes the enforcer decided.
    #[serde(default)]
    pub events_without_destination: u64,
    /// Connects an enforcer refused (`denied`, or `would-deny` in audit mode): counted
    /// here, never learnt from (would-deny only unless `--learn-would-deny`).
    #[serde(default)]
    pub refused: Vec<RefusedDestination>,
    pub first_seen: String,
    pub last_seen: String,
    pub destinations: Vec<Destination>,
    pub groups: Vec<AddressGroup>,
    pub learning: Learning,
    /// Events per period (`activity_period`), and how many of them an enforcer denied
    /// or would have denied; periods without events are left out.
    #[serde(default)]
    pub activity: Vec<crate::timeline::PeriodActivity>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Destination {
    pub protocol: String,
    pub address: String,
    pub port: u16,
    /// loopback, private, link-local, multicast or public.
    pub scope: String,
    pub events: u64,
    pub first_seen: String,
    pub last_seen: String,
    pub days: usize,
    pub hours: usize,
    pub users: Vec<u32>,
    /// Names DNS answers gave this address for (none: an address used as such).
    #[serde(default)]
    pub names: Vec<String>,
}

/// A destination an enforcer refused this app, with how often.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RefusedDestination {
    pub protocol: String,
    pub address: String,
    pub port: u16,
    pub denied: u64,
    pub would_deny: u64,
}

/// Destinations of one protocol under one covering prefix (/24 or /64).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AddressGroup {
    pub protocol: String,
    pub prefix: String,
    pub addresses: usize,
    /// Ports as sorted single ports and inclusive ranges ("443", "8000-8010").
    pub ports: Vec<String>,
    pub events: u64,
    /// Distinct ports in the ephemeral range (>= 32768): dynamic ports in use.
    pub ephemeral_ports: usize,
}

/// Whether learning can stop for this app.
///
/// - `too little data`: fewer than 20 events, or seen for less than an hour;
/// - `stable`: no new destination during the last quarter of the time the app was seen
///   (and at least an hour);
/// - `still learning`: otherwise.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Learning {
    pub verdict: String,
    /// `day`, or `hour` when the app was seen for less than two days.
    pub period: String,
    /// New destinations first seen in each period, oldest first.
    pub new_destinations: Vec<PeriodCount>,
    pub last_new_destination: String,
    pub quiet_seconds: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PeriodCount {
    pub start: String,
    pub count: usize,
}

pub fn rfc3339(ns: i64) -> String {
    DateTime::<Utc>::from_timestamp_nanos(ns).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

pub fn scope(addr: IpAddr) -> &'static str {
    match addr {
        IpAddr::V4(a) if a.is_loopback() => "loopback",
        // 100.64.0.0/10 (carrier-grade NAT) is private too; std's is_shared is unstable.
        IpAddr::V4(a) if a.is_private() || (a.octets()[0] == 100 && a.octets()[1] & 0xc0 == 64) => {
            "private"
        }
        IpAddr::V4(a) if a.is_link_local() => "link-local",
        IpAddr::V4(a) if a.is_multicast() || a.is_broadcast() => "multicast",
        IpAddr::V6(a) if a.is_loopback() => "loopback",
        IpAddr::V6(a) if a.is_unique_local() => "private",
        IpAddr::V6(a) if a.is_unicast_link_local() => "link-local",
        IpAddr::V6(a) if a.is_multicast() => "multicast",
        _ => "public",
    }
}

fn destination(k: &DestKey, d: &DestSummary) -> Destination {
    Destination {
        protocol: k.protocol.clone(),
        address: k.addr.to_string(),
        port: k.port,
        scope: scope(k.addr).into(),
        events: d.events,
        first_seen: rfc3339(d.first_ns),
        last_seen: rfc3339(d.last_ns),
        days: d.days.len(),
        hours: d.hours.len(),
        users: d.users.iter().copied().collect(),
        names: d.names.iter().cloned().collect(),
    }
}

/// Sorted ports as singles and inclusive ranges.
pub fn port_ranges(ports: &[u16]) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < ports.len() {
        let start = ports[i];
        let mut end = start;
        while i + 1 < ports.len() && ports[i + 1] == end + 1 {
            i += 1;
            end = ports[i];
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    out
}

/// Addresses, ports and events of one (protocol, prefix) group while it is built.
#[derive(Default)]
struct GroupAcc(BTreeSet<IpAddr>, BTreeSet<u16>, u64);

fn groups(app: &AppSummary) -> Vec<AddressGroup> {
    let mut by: BTreeMap<(String, IpNet), GroupAcc> = BTreeMap::new();
    for (k, d) in &app.dests {
        let bits = if k.addr.is_ipv4() {
            V4_GROUP_BITS
        } else {
            V6_GROUP_BITS
        };
        let net = IpNet::new(k.addr, bits)
            .expect("valid prefix length")
            .trunc();
        let g = by.entry((k.protocol.clone(), net)).or_default();
        g.0.insert(k.addr);
        g.1.insert(k.port);
        g.2 += d.events;
    }
    let mut out: Vec<AddressGroup> = by
        .into_iter()
        .map(|((protocol, net), GroupAcc(addrs, ports, events))| {
            let ports: Vec<u16> = ports.into_iter().collect();
            AddressGroup {
                protocol,
                prefix: net.to_string(),
                addresses: addrs.len(),
                ephemeral_ports: ports.iter().filter(|&&p| p >= EPHEMERAL_START).count(),
                ports: port_ranges(&ports),
                events,
            }
        })
        .collect();
    out.sort_by(|a, b| {
        b.events
            .cmp(&a.events)
            .then_with(|| (&a.protocol, &a.prefix).cmp(&(&b.protocol, &b.prefix)))
    });
    out
}

/// Learning completeness of one app; `end_ns` is the end of the observed window.
pub fn learning(app: &AppSummary, end_ns: i64) -> Learning {
    let span = app.last_ns - app.first_ns;
    let period_ns = if span < 2 * DAY_NS { HOUR_NS } else { DAY_NS };
    let mut per: BTreeMap<i64, usize> = BTreeMap::new();
    let mut last_new = app.first_ns;
    for d in app.dests.values() {
        *per.entry(d.first_ns.div_euclid(period_ns)).or_default() += 1;
        last_new = last_new.max(d.first_ns);
    }
    let quiet = end_ns - last_new;
    let observed = end_ns - app.first_ns;
    let readable = app
        .events
        .saturating_sub(app.unreadable)
        .saturating_sub(app.without_destination);
    let verdict = if readable < MIN_EVENTS || observed < MIN_SPAN_NS {
        "too little data"
    } else if quiet * 4 >= observed && quiet >= MIN_SPAN_NS {
        "stable"
    } else {
        "still learning"
    };
    Learning {
        verdict: verdict.into(),
        period: if period_ns == DAY_NS { "day" } else { "hour" }.into(),
        new_destinations: per
            .into_iter()
            .map(|(p, count)| PeriodCount {
                start: rfc3339(p * period_ns),
                count,
            })
            .collect(),
        last_new_destination: rfc3339(last_new),
        quiet_seconds: quiet / 1_000_000_000,
    }
}

fn profile(key: &AppKey, app: &AppSummary, end_ns: i64, period_hours: i64) -> AppProfile {
    let (id, sha256, status) = match key {
        AppKey::Hash(h) => (
            format!("sha256:{}", hex::encode(h)),
            Some(hex::encode(h)),
            "ok".to_owned(),
        ),
        AppKey::Unresolved { status, exe } => {
            (format!("unresolved:{status}:{exe}"), None, status.clone())
        }
    };
    let mut destinations: Vec<Destination> =
        app.dests.iter().map(|(k, d)| destination(k, d)).collect();
    destinations.sort_by(|a, b| {
        b.events
            .cmp(&a.events)
            .then_with(|| (&a.protocol, &a.address, a.port).cmp(&(&b.protocol, &b.address, b.port)))
    });
    AppProfile {
        id,
        sha256,
        exe_status: status,
        paths: app.paths.iter().cloned().collect(),
        comms: app.comms.iter().cloned().collect(),
        users: app.users.iter().copied().collect(),
        processes: app.pids.len(),
        path_shared_with: Vec::new(),
        anomalies: crate::anomalies::of_app(app),
        events: app.events,
        unreadable_events: app.unreadable,
        events_without_destination: app.without_destination,
        refused: app
            .refused
            .iter()
            .map(|(k, r)| RefusedDestination {
                protocol: k.protocol.clone(),
                address: k.addr.to_string(),
                port: k.port,
                denied: r.denied,
                would_deny: r.would_deny,
            })
            .collect(),
        first_seen: rfc3339(app.first_ns),
        last_seen: rfc3339(app.last_ns),
        destinations,
        groups: groups(app),
        learning: learning(app, end_ns),
        activity: crate::timeline::by_period(&app.activity, period_hours),
    }
}

/// Builds the document. Learning completeness is judged up to the last event seen: a
/// later `--until` would count time nobody recorded as quiet.
pub fn build_profiles(summary: &Summary, dataset: DatasetInfo) -> ProfileDoc {
    let end = summary.last_ns.unwrap_or_default();
    let period = crate::timeline::period_hours(summary.first_ns.unwrap_or_default(), end);
    let (mut apps, mut unresolved) = (Vec::new(), Vec::new());
    for (k, a) in &summary.apps {
        let p = profile(k, a, end, period);
        match k {
            AppKey::Hash(_) => apps.push(p),
            AppKey::Unresolved { .. } => unresolved.push(p),
        }
    }
    let paths = crate::anomalies::PathIndex::new(summary);
    for app in &mut apps {
        let Some(sha) = app.sha256.as_deref().and_then(|h| hex::decode(h).ok()) else {
            continue;
        };
        let sha: [u8; 32] = sha.try_into().expect("a sha256");
        let summary_app = &summary.apps[&AppKey::Hash(sha)];
        app.path_shared_with = paths.shared_with(&sha, summary_app);
        app.anomalies.extend(paths.new_bytes(&sha, summary_app));
    }
    let order =
        |a: &AppProfile, b: &AppProfile| b.events.cmp(&a.events).then_with(|| a.id.cmp(&b.id));
    apps.sort_by(order);
    unresolved.sort_by(order);
    ProfileDoc {
        format: FORMAT.into(),
        version: FORMAT_VERSION,
        dataset,
        activity_period: if period == 1 { "hour" } else { "day" }.into(),
        apps,
        unresolved,
    }
}

impl ProfileDoc {
    /// Apps matching a name, path or sha256 prefix (case-insensitive for hex).
    pub fn find(&self, query: &str) -> Vec<&AppProfile> {
        let q = query.to_ascii_lowercase();
        self.apps
            .iter()
            .chain(&self.unresolved)
            .filter(|a| {
                a.comms.iter().any(|c| c == query)
                    || a.paths
                        .iter()
                        .any(|p| p == query || p.rsplit('/').next() == Some(query))
                    || (q.len() >= 4 && a.sha256.as_deref().is_some_and(|h| h.starts_with(&q)))
                    || a.id == query
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_fold_into_ranges() {
        assert_eq!(
            port_ranges(&[22, 80, 81, 82, 443, 8000, 8001]),
            ["22", "80-82", "443", "8000-8001"]
        );
        assert!(port_ranges(&[]).is_empty());
    }

    #[test]
    fn scopes() {
        for (a, s) in [
            ("127.0.0.1", "loopback"),
            ("10.1.2.3", "private"),
            ("169.254.1.1", "link-local"),
            ("224.0.0.251", "multicast"),
            ("8.8.8.8", "public"),
            ("::1", "loopback"),
            ("fd00::1", "private"),
            ("fe80::1", "link-local"),
            ("ff02::fb", "multicast"),
            ("2001:4860::8888", "public"),
        ] {
            assert_eq!(scope(a.parse().unwrap()), s, "{a}");
        }
    }

    fn app_with(first_seen_of_dests: &[i64], events: u64, first: i64, last: i64) -> AppSummary {
        let mut app = AppSummary {
            events,
            first_ns: first,
            last_ns: last,
            ..Default::default()
        };
        for (i, &t) in first_seen_of_dests.iter().enumerate() {
            let mut d = DestSummary::new(t);
            d.events = 1;
            app.dests.insert(
                DestKey {
                    protocol: "tcp".into(),
                    addr: "10.0.0.1".parse().unwrap(),
                    port: i as u16 + 1,
                },
                d,
            );
        }
        app
    }

    #[test]
    fn learning_verdicts() {
        let day = DAY_NS;
        // Destinations all found on day 0 of 4: stable.
        let a = app_with(&[0, HOUR_NS, 2 * HOUR_NS], 500, 0, 4 * day);
        let l = learning(&a, 4 * day);
        assert_eq!(l.verdict, "stable");
        assert_eq!(l.period, "day");
        assert_eq!(l.new_destinations.len(), 1);
        assert_eq!(l.new_destinations[0].count, 3);
        assert_eq!(l.quiet_seconds, (4 * day - 2 * HOUR_NS) / 1_000_000_000);
        // A new destination on the last day: still learning.
        let b = app_with(&[0, 4 * day - HOUR_NS], 500, 0, 4 * day);
        assert_eq!(learning(&b, 4 * day).verdict, "still learning");
        // Few events: too little data, whatever the timing.
        let c = app_with(&[0], 5, 0, 4 * day);
        assert_eq!(learning(&c, 4 * day).verdict, "too little data");
        // Seen for 30 minutes only: too little data.
        let d = app_with(&[0], 500, 0, HOUR_NS / 2);
        assert_eq!(learning(&d, HOUR_NS / 2).verdict, "too little data");
        // A short window is judged per hour.
        let e = app_with(&[0, HOUR_NS], 500, 0, 10 * HOUR_NS);
        let l = learning(&e, 10 * HOUR_NS);
        assert_eq!((l.period.as_str(), l.verdict.as_str()), ("hour", "stable"));
    }

    #[test]
    fn groups_cover_neighbours_and_fold_ports() {
        let mut app = AppSummary::default();
        for (addr, port) in [
            ("10.0.0.1", 443),
            ("10.0.0.2", 443),
            ("10.0.0.3", 444),
            ("10.0.1.1", 40000),
            ("2001:db8::1", 53),
        ] {
            let mut d = DestSummary::new(0);
            d.events = 2;
            app.dests.insert(
                DestKey {
                    protocol: "tcp".into(),
                    addr: addr.parse().unwrap(),
                    port,
                },
                d,
            );
        }
        let g = groups(&app);
        assert_eq!(g.len(), 3);
        assert_eq!(
            (g[0].prefix.as_str(), g[0].addresses, g[0].events),
            ("10.0.0.0/24", 3, 6)
        );
        assert_eq!(g[0].ports, ["443-444"]);
        let eph = g.iter().find(|x| x.prefix == "10.0.1.0/24").unwrap();
        assert_eq!(eph.ephemeral_ports, 1);
        assert!(g.iter().any(|x| x.prefix == "2001:db8::/64"));
    }
}
