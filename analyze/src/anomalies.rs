//! Traffic that should not become an allow rule by itself, found in an app's summary:
//! port scans (many ports of one address, each used once or twice, all first used
//! within a minute), address sweeps (many addresses of one /24 or /64 on one port, the
//! same way), destinations used once, and destinations in an address range the app
//! first reached late in the window. `analyze` lists them per app; `policy generate`
//! holds the first three for review (their `reason`) and explains the fourth.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::profile::rfc3339;
use crate::summary::{AppKey, AppSummary, DestKey, Summary};

/// Distinct ports (scan) or addresses (sweep) that make one.
pub const SPREAD_MIN: usize = 16;
/// Within this long of each other (first uses).
pub const SPREAD_WINDOW_NS: i64 = 60_000_000_000;
/// Each used at most this often.
pub const SPREAD_MAX_EVENTS: u64 = 2;
/// A range first reached in this last share of the app's window is new.
pub const LATE_SHARE: f64 = 0.1;
/// ...for an app seen at least this long.
pub const LATE_MIN_SPAN_NS: i64 = 2 * 86_400_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    PortScan,
    AddressSweep,
    SeenOnce,
    NewRange,
    /// Other bytes under a path another hash ran from before (an upgrade, or tampering).
    NewBytes,
}

/// One finding: what, why (a sentence), and the destinations it covers (in memory
/// only: JSON gives their number).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Anomaly {
    pub kind: Kind,
    pub reason: String,
    #[serde(skip)]
    pub dests: Vec<DestKey>,
    /// How many destinations it covers (the JSON does not list them all).
    pub destinations: usize,
}

impl PartialEq for Anomaly {
    fn eq(&self, o: &Self) -> bool {
        (self.kind, &self.reason, self.destinations) == (o.kind, &o.reason, o.destinations)
    }
}

impl Anomaly {
    /// Whether `generate` holds its destinations for review (a new range is only told).
    pub fn holds(&self) -> bool {
        !matches!(self.kind, Kind::NewRange | Kind::NewBytes)
    }
}

/// Destinations with when each was first used.
type FirstUses = Vec<(i64, DestKey)>;

/// The smallest window of `SPREAD_WINDOW_NS` holding the most first uses, if it holds
/// at least `SPREAD_MIN`: (its members, its span in ns).
fn burst(mut firsts: FirstUses) -> Option<(Vec<DestKey>, i64)> {
    firsts.sort_by_key(|(t, _)| *t);
    let mut best: Option<(usize, usize)> = None;
    let mut lo = 0;
    for hi in 0..firsts.len() {
        while firsts[hi].0 - firsts[lo].0 > SPREAD_WINDOW_NS {
            lo += 1;
        }
        if best.is_none_or(|(l, h)| hi - lo > h - l) {
            best = Some((lo, hi));
        }
    }
    let (lo, hi) = best?;
    (hi - lo + 1 >= SPREAD_MIN).then(|| {
        let span = firsts[hi].0 - firsts[lo].0;
        (
            firsts[lo..=hi].iter().map(|(_, d)| d.clone()).collect(),
            span,
        )
    })
}

fn prefix_of(addr: IpAddr, v4: u8, v6: u8) -> ipnet::IpNet {
    let len = if addr.is_ipv4() { v4 } else { v6 };
    ipnet::IpNet::new(addr, len).expect("valid length").trunc()
}

fn seconds(ns: i64) -> String {
    format!("{:.1} s", ns as f64 / 1e9)
}

/// The anomalies of one app.
pub fn of_app(a: &AppSummary) -> Vec<Anomaly> {
    let light = |k: &&DestKey| a.dests[*k].events <= SPREAD_MAX_EVENTS;
    let mut out = Vec::new();
    // Port scans: per (protocol, address).
    let mut by_addr: BTreeMap<(&str, IpAddr), FirstUses> = BTreeMap::new();
    // Address sweeps: per (protocol, port, prefix).
    let mut by_prefix: BTreeMap<(&str, u16, ipnet::IpNet), FirstUses> = BTreeMap::new();
    for k in a.dests.keys().filter(light) {
        let first = a.dests[k].first_ns;
        by_addr
            .entry((&k.protocol, k.addr))
            .or_default()
            .push((first, k.clone()));
        by_prefix
            .entry((&k.protocol, k.port, prefix_of(k.addr, 24, 64)))
            .or_default()
            .push((first, k.clone()));
    }
    let mut covered: std::collections::BTreeSet<DestKey> = Default::default();
    for ((protocol, addr), firsts) in by_addr {
        if let Some((dests, span)) = burst(firsts) {
            out.push(Anomaly {
                kind: Kind::PortScan,
                reason: format!(
                    "port scan: {} ports of {protocol} {addr} in {}",
                    dests.len(),
                    seconds(span)
                ),
                destinations: dests.len(),
                dests,
            });
        }
    }
    for ((protocol, port, net), firsts) in by_prefix {
        if let Some((dests, span)) = burst(firsts) {
            out.push(Anomaly {
                kind: Kind::AddressSweep,
                reason: format!(
                    "address sweep: {} addresses of {net} on {protocol} port {port} in {}",
                    dests.len(),
                    seconds(span)
                ),
                destinations: dests.len(),
                dests,
            });
        }
    }
    covered.extend(out.iter().flat_map(|x| x.dests.iter().cloned()));
    let once: Vec<DestKey> = a
        .dests
        .iter()
        .filter(|(k, d)| d.events == 1 && !covered.contains(*k))
        .map(|(k, _)| k.clone())
        .collect();
    if !once.is_empty() {
        out.push(Anomaly {
            kind: Kind::SeenOnce,
            reason: "seen once".into(),
            destinations: once.len(),
            dests: once,
        });
    }
    out.extend(new_ranges(a));
    out
}

/// Ranges (/16, /32 for IPv6) first reached in the last tenth of a long window.
fn new_ranges(a: &AppSummary) -> Vec<Anomaly> {
    let span = a.last_ns - a.first_ns;
    if span < LATE_MIN_SPAN_NS {
        return Vec::new();
    }
    let late = a.last_ns - (span as f64 * LATE_SHARE) as i64;
    let mut first_of: BTreeMap<ipnet::IpNet, (i64, Vec<DestKey>)> = BTreeMap::new();
    for (k, d) in &a.dests {
        let e = first_of
            .entry(prefix_of(k.addr, 16, 32))
            .or_insert((i64::MAX, Vec::new()));
        e.0 = e.0.min(d.first_ns);
        e.1.push(k.clone());
    }
    first_of
        .into_iter()
        .filter(|(_, (first, _))| *first >= late)
        .map(|(net, (first, dests))| Anomaly {
            kind: Kind::NewRange,
            reason: format!(
                "new since {}: {net} first reached late in the window",
                rfc3339(first)
            ),
            destinations: dests.len(),
            dests,
        })
        .collect()
}

/// Per executable path, which hashes ran from it and since when: one index for every
/// app's `NewBytes` check.
pub struct PathIndex<'s> {
    first_at: BTreeMap<&'s str, Vec<(i64, [u8; 32])>>,
}

impl<'s> PathIndex<'s> {
    pub fn new(summary: &'s Summary) -> Self {
        let mut first_at: BTreeMap<&str, Vec<(i64, [u8; 32])>> = BTreeMap::new();
        for (k, a) in &summary.apps {
            if let AppKey::Hash(h) = k {
                for p in &a.paths {
                    first_at.entry(p).or_default().push((a.first_ns, *h));
                }
            }
        }
        PathIndex { first_at }
    }

    /// Other hashes that ran from one of `a`'s paths (hex, sorted, once each).
    pub fn shared_with(&self, sha: &[u8; 32], a: &AppSummary) -> Vec<String> {
        let mut others: Vec<String> = a
            .paths
            .iter()
            .flat_map(|p| self.first_at.get(p.as_str()).into_iter().flatten())
            .filter(|(_, h)| h != sha)
            .map(|(_, h)| hex::encode(h))
            .collect();
        others.sort();
        others.dedup();
        others
    }

    /// `NewBytes` for each of `a`'s paths another hash ran from before it (the later
    /// bytes under a path are the anomaly; the earlier ones were there).
    pub fn new_bytes(&self, sha: &[u8; 32], a: &AppSummary) -> Vec<Anomaly> {
        let mut out = Vec::new();
        for p in &a.paths {
            let Some(seen) = self.first_at.get(p.as_str()) else {
                continue;
            };
            let earlier = seen
                .iter()
                .filter(|(t, h)| h != sha && *t < a.first_ns)
                .count();
            if earlier > 0 {
                out.push(Anomaly {
                    kind: Kind::NewBytes,
                    reason: format!(
                        "new bytes under {p} since {}: {earlier} other hash(es) ran from it before",
                        rfc3339(a.first_ns)
                    ),
                    dests: Vec::new(),
                    destinations: 0,
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::DestSummary;

    fn app(dests: &[(&str, u16, i64, u64)]) -> AppSummary {
        let mut a = AppSummary {
            first_ns: 0,
            last_ns: 3 * 86_400_000_000_000,
            ..Default::default()
        };
        for &(addr, port, t, events) in dests {
            let mut d = DestSummary::new(t);
            d.events = events;
            a.dests.insert(
                DestKey {
                    protocol: "tcp".into(),
                    addr: addr.parse().unwrap(),
                    port,
                },
                d,
            );
        }
        a
    }

    #[test]
    fn a_scan_a_sweep_and_a_one_off_are_found_and_steady_traffic_is_not() {
        let mut dests: Vec<(String, u16, i64, u64)> = Vec::new();
        for p in 1..=40u16 {
            dests.push((
                "10.0.0.9".into(),
                p,
                1_000_000_000 + i64::from(p) * 50_000_000,
                1,
            ));
        }
        for h in 1..=20u8 {
            dests.push((
                format!("10.1.2.{h}"),
                22,
                2_000_000_000_000 + i64::from(h),
                1,
            ));
        }
        dests.push(("10.2.0.1".into(), 443, 5, 1));
        for p in [80u16, 443, 8080] {
            dests.push(("10.3.0.1".into(), p, 10, 500));
        }
        let view: Vec<(&str, u16, i64, u64)> = dests
            .iter()
            .map(|(a, p, t, e)| (a.as_str(), *p, *t, *e))
            .collect();
        let found = of_app(&app(&view));
        let kinds: Vec<(Kind, usize)> = found.iter().map(|x| (x.kind, x.destinations)).collect();
        assert_eq!(
            kinds,
            [
                (Kind::PortScan, 40),
                (Kind::AddressSweep, 20),
                (Kind::SeenOnce, 1)
            ]
        );
        assert!(found[0]
            .reason
            .starts_with("port scan: 40 ports of tcp 10.0.0.9 in 1.9 s"));
    }

    #[test]
    fn a_range_first_reached_late_is_new() {
        let late = 3 * 86_400_000_000_000 - 3_600_000_000_000;
        let found = of_app(&app(&[
            ("10.3.0.1", 443, 0, 100),
            ("10.3.0.1", 443, 0, 100),
            ("198.51.100.7", 443, late, 50),
        ]));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].kind, Kind::NewRange);
        assert!(
            found[0].reason.contains("198.51.0.0/16"),
            "{}",
            found[0].reason
        );
    }
}
