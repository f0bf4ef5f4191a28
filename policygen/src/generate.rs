//! Turns observed traffic (an analyzer summary of the training window) into a policy.
//! Rules start exact; every widening is driven by evidence, bounded by a knob, and
//! explained. Destinations without enough support go to the review section.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use pinhole_analyze::anomalies;
use pinhole_analyze::summary::{AppKey, AppSummary, DestKey, DestSummary, Summary};
use sha2::{Digest, Sha256};

use crate::generate_names::NamePlan;
use crate::model::Evidence;
use crate::policy::{App, Mode, Policy, PortRange, Protocol, Rule, UnknownAction};

/// The first port of Linux's default ephemeral range.
pub const EPHEMERAL_LO: u16 = 32768;

#[derive(Debug, Clone)]
pub struct Knobs {
    /// A destination needs this many events, and events on this many distinct days,
    /// to become a rule; below either it goes to review.
    pub min_events: u64,
    pub min_days: usize,
    /// Fold addresses of one (protocol, port) into their covering prefix when at least
    /// this many distinct addresses fall in one prefix of the maximum width.
    pub v4_fold_threshold: usize,
    pub v4_max_width: u8,
    pub v6_fold_threshold: usize,
    pub v6_max_width: u8,
    /// Collapse ports >= 32768 of one destination into 32768-65535 when at least this
    /// many distinct ephemeral ports were used (0 never collapses).
    pub ephemeral_threshold: usize,
    /// Rules beyond this many per app (least used first) go to review.
    pub max_rules_per_app: usize,
    /// Make review items allow rules too.
    pub include_review: bool,
    /// Hold port scans, address sweeps and destinations seen once for review
    /// (`pinhole_analyze::anomalies`); false learns them like any traffic.
    pub hold_anomalies: bool,
    /// Fold names of one (protocol, port) into `*.domain` when at least this many
    /// distinct names share the registrable domain (0 never folds).
    pub name_wildcard_threshold: usize,
    /// Ignore DNS evidence: address rules only (to compare with name rules).
    pub addresses_only: bool,
    pub unknown_binary: UnknownAction,
    pub mode: Mode,
}

impl Default for Knobs {
    fn default() -> Self {
        Knobs {
            min_events: 1,
            min_days: 1,
            v4_fold_threshold: 4,
            v4_max_width: 24,
            v6_fold_threshold: 4,
            v6_max_width: 64,
            ephemeral_threshold: 4,
            max_rules_per_app: 256,
            include_review: false,
            hold_anomalies: true,
            name_wildcard_threshold: 4,
            addresses_only: false,
            unknown_binary: UnknownAction::Allow,
            mode: Mode::Enforce,
        }
    }
}

/// A policy and, per app, the decisions that shaped it.
pub struct Generated {
    pub policy: Policy,
    pub explain: BTreeMap<String, Vec<String>>,
}

#[derive(Clone)]
pub(crate) struct Acc {
    events: u64,
    first_ns: i64,
    last_ns: i64,
    days: BTreeSet<i64>,
}

impl Acc {
    fn of(d: &DestSummary) -> Self {
        Acc {
            events: d.events,
            first_ns: d.first_ns,
            last_ns: d.last_ns,
            days: d.days.clone(),
        }
    }

    pub(crate) fn add(&mut self, o: &Acc) {
        self.events += o.events;
        self.first_ns = self.first_ns.min(o.first_ns);
        self.last_ns = self.last_ns.max(o.last_ns);
        self.days.extend(&o.days);
    }

    fn evidence(&self) -> Evidence {
        let t = |ns| pinhole_analyze::profile::rfc3339(ns);
        Evidence {
            events: self.events,
            first_seen: t(self.first_ns),
            last_seen: t(self.last_ns),
            days: self.days.len() as u32,
            source: None,
        }
    }

    /// Evidence naming what tied the rule to its destination ("dns" or "address").
    pub(crate) fn evidence_from(&self, source: &str) -> Evidence {
        Evidence {
            source: Some(source.to_owned()),
            ..self.evidence()
        }
    }
}

/// Stable across regenerations: derived from what the rule allows, not its position.
fn rule_id(app: &str, protocol: Protocol, dst: &IpNet, ports: &PortRange) -> String {
    let h = Sha256::digest(format!("{}|{dst}|{ports}", protocol.as_str()));
    format!("{app}-{}", hex::encode(&h[..4]))
}

fn slug(s: &str) -> String {
    // Rule ids allow '-', '_' and '.'; the binary's file name is what a reviewer knows.
    let base = s.rsplit('/').next().unwrap_or(s);
    pinhole_recorder::layout::safe_name(base, "-_.", "app")
}

/// The smallest prefix covering all `addrs` (same family).
fn covering(addrs: &[IpAddr]) -> IpNet {
    let first = IpNet::from(addrs[0]);
    let mut len = first.max_prefix_len();
    loop {
        let net = IpNet::new(addrs[0], len).expect("valid length").trunc();
        if addrs.iter().all(|a| net.contains(a)) {
            return net;
        }
        len -= 1;
    }
}

fn parse_protocol(s: &str) -> Option<Protocol> {
    Protocol::parse(s)
}

/// Generates a policy from the summary of the training window.
pub fn generate(summary: &Summary, knobs: &Knobs) -> Generated {
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    for (k, a) in &summary.apps {
        if matches!(k, AppKey::Hash(_)) {
            *names.entry(app_name(a)).or_default() += 1;
        }
    }
    let mut apps = Vec::new();
    let paths = anomalies::PathIndex::new(summary);
    let mut explain = BTreeMap::new();
    for (k, a) in &summary.apps {
        let AppKey::Hash(sha) = k else { continue };
        let mut name = app_name(a);
        if names[&name] > 1 {
            // The same name under several hashes: tell them apart in ids.
            name = format!("{name}.{}", &hex::encode(sha)[..8]);
        }
        if a.dests.is_empty() {
            // Zero rules would deny the app everything on the word of unreadable rows.
            explain.insert(
                name,
                vec![format!(
                    "not written: none of its {} events has a destination that could be read ({} unreadable)",
                    a.events, a.unreadable
                )],
            );
            continue;
        }
        let (app, mut notes) = app_policy(&name, sha, a, knobs);
        notes.extend(
            paths
                .new_bytes(sha, a)
                .into_iter()
                .map(|x| format!("flagged: {}", x.reason)),
        );
        explain.insert(name, notes);
        apps.push(app);
    }
    apps.sort_by(|a, b| a.name.cmp(&b.name));
    Generated {
        policy: Policy {
            unknown_binary: knobs.unknown_binary,
            apps,
            ..Default::default()
        },
        explain,
    }
}

fn app_name(a: &AppSummary) -> String {
    a.paths
        .iter()
        .next()
        .or(a.comms.iter().next())
        .map(|s| slug(s))
        .unwrap_or_else(|| "app".into())
}

fn app_policy(name: &str, sha: &[u8; 32], a: &AppSummary, knobs: &Knobs) -> (App, Vec<String>) {
    let mut notes = Vec::new();
    let mut review: Vec<Rule> = Vec::new();
    let mut names = NamePlan::default();
    // Whether DNS evidence was recorded for this app at all: then address rules say
    // that no answer named their destination.
    let with_dns = !knobs.addresses_only && a.dests.values().any(|s| !s.names.is_empty());
    // (protocol, port) -> address -> evidence, for supported destinations.
    let mut by_port: BTreeMap<(Protocol, u16), BTreeMap<IpAddr, Acc>> = BTreeMap::new();
    // Scans, sweeps and one-offs are held for review, with why; the rest is told.
    let found = anomalies::of_app(a);
    let mut held: BTreeMap<&DestKey, &str> = BTreeMap::new();
    for x in &found {
        match x.holds() && knobs.hold_anomalies {
            true => held.extend(x.dests.iter().map(|d| (d, x.reason.as_str()))),
            false => notes.push(format!("flagged: {}", x.reason)),
        }
    }
    let mut reasons: BTreeMap<String, String> = BTreeMap::new();
    for (d, s) in &a.dests {
        let Some(protocol) = parse_protocol(&d.protocol) else {
            notes.push(format!(
                "skipped {} {} port {}: protocol not expressible in a policy",
                d.protocol, d.addr, d.port
            ));
            continue;
        };
        let acc = Acc::of(s);
        let anomaly = held.get(d).copied();
        let supported =
            anomaly.is_none() && s.events >= knobs.min_events && s.days.len() >= knobs.min_days;
        if !knobs.addresses_only && names.add(name, protocol, d.port, &s.names, &acc, supported) {
            continue;
        }
        if !supported {
            let dst = IpNet::from(d.addr);
            let ports = PortRange {
                lo: d.port,
                hi: d.port,
            };
            let why = match anomaly {
                Some(reason) => reason.to_owned(),
                None => format!(
                    "{} events on {} day(s), below --min-events {} / --min-days {}",
                    s.events,
                    s.days.len(),
                    knobs.min_events,
                    knobs.min_days
                ),
            };
            notes.push(format!(
                "review {} {} port {}: {why}",
                protocol.as_str(),
                d.addr,
                d.port
            ));
            let id = rule_id(name, protocol, &dst, &ports);
            reasons.insert(id.clone(), why);
            review.push(Rule {
                id,
                protocol,
                dst,
                ports,
                scope: Default::default(),
                evidence: Some(acc.evidence()),
            });
            continue;
        }
        by_port
            .entry((protocol, d.port))
            .or_default()
            .insert(d.addr, acc);
    }

    // Addresses: exact, or folded into a covering prefix when enough share one.
    let mut by_dst: BTreeMap<(Protocol, IpNet), BTreeMap<u16, Acc>> = BTreeMap::new();
    for ((protocol, port), addrs) in by_port {
        let mut groups: BTreeMap<IpNet, Vec<(IpAddr, Acc)>> = BTreeMap::new();
        for (addr, acc) in addrs {
            let width = if addr.is_ipv4() {
                knobs.v4_max_width
            } else {
                knobs.v6_max_width
            };
            let outer = IpNet::new(addr, width.min(IpNet::from(addr).max_prefix_len()))
                .expect("valid width")
                .trunc();
            groups.entry(outer).or_default().push((addr, acc));
        }
        for (outer, members) in groups {
            let threshold = if outer.addr().is_ipv4() {
                knobs.v4_fold_threshold
            } else {
                knobs.v6_fold_threshold
            };
            if threshold > 0 && members.len() >= threshold {
                let addrs: Vec<IpAddr> = members.iter().map(|(a, _)| *a).collect();
                let net = covering(&addrs);
                let mut acc = members[0].1.clone();
                members[1..].iter().for_each(|(_, m)| acc.add(m));
                notes.push(format!(
                    "folded {} addresses for {} port {port} into {net} (threshold {threshold}, widest /{}): {} events on {} day(s), {}",
                    members.len(),
                    protocol.as_str(),
                    outer.prefix_len(),
                    acc.events,
                    acc.days.len(),
                    shown_list(&addrs)
                ));
                merge_into(by_dst.entry((protocol, net)).or_default(), port, acc);
            } else {
                for (addr, acc) in members {
                    merge_into(
                        by_dst.entry((protocol, IpNet::from(addr))).or_default(),
                        port,
                        acc,
                    );
                }
            }
        }
    }

    // Ports: contiguous runs become ranges (allows nothing new); many ephemeral ports
    // collapse into the ephemeral range.
    let mut rules: Vec<(Rule, Acc)> = Vec::new();
    for ((protocol, dst), ports) in by_dst {
        let eph: Vec<u16> = ports
            .keys()
            .copied()
            .filter(|p| *p >= EPHEMERAL_LO)
            .collect();
        let collapse = knobs.ephemeral_threshold > 0 && eph.len() >= knobs.ephemeral_threshold;
        let mut ranges: Vec<(PortRange, Acc)> = Vec::new();
        let mut eph_acc: Option<Acc> = None;
        for (port, acc) in ports {
            if collapse && port >= EPHEMERAL_LO {
                match &mut eph_acc {
                    Some(e) => e.add(&acc),
                    None => eph_acc = Some(acc),
                }
                continue;
            }
            match ranges.last_mut() {
                Some((r, a)) if r.hi.checked_add(1) == Some(port) => {
                    r.hi = port;
                    a.add(&acc);
                }
                _ => ranges.push((PortRange { lo: port, hi: port }, acc)),
            }
        }
        if let Some(acc) = eph_acc {
            notes.push(format!(
                "collapsed {} ephemeral ports of {} {dst} into {EPHEMERAL_LO}-65535 (threshold {}): {} events on {} day(s)",
                eph.len(),
                protocol.as_str(),
                knobs.ephemeral_threshold,
                acc.events,
                acc.days.len()
            ));
            ranges.push((
                PortRange {
                    lo: EPHEMERAL_LO,
                    hi: 65535,
                },
                acc,
            ));
        }
        for (ports, acc) in ranges {
            let rule = Rule {
                id: rule_id(name, protocol, &dst, &ports),
                protocol,
                dst,
                ports,
                scope: Default::default(),
                evidence: Some(acc.evidence()),
            };
            rules.push((rule, acc));
        }
    }

    // Folding per port can leave one rule inside another (a prefix made for one port
    // covering an exact address kept for another, once both collapse to the ephemeral
    // range). The covering rule already allows it: merge it there.
    rules.sort_by_key(|(r, _)| {
        (
            r.dst.prefix_len(),
            std::cmp::Reverse(r.ports.width()),
            r.protocol,
            r.dst,
            r.ports,
        )
    });
    let mut kept: Vec<(Rule, Acc)> = Vec::new();
    for (rule, acc) in rules {
        match kept.iter_mut().find(|(k, _)| k.covers(&rule)) {
            Some((k, kacc)) => {
                notes.push(format!(
                    "merged {} {} port {} into {} {} port {}",
                    rule.protocol.as_str(),
                    rule.dst,
                    rule.ports,
                    k.protocol.as_str(),
                    k.dst,
                    k.ports
                ));
                kacc.add(&acc);
            }
            None => kept.push((rule, acc)),
        }
    }
    let mut rules: Vec<(Rule, u64)> = kept
        .into_iter()
        .map(|(mut r, acc)| {
            r.evidence = Some(acc.evidence());
            (r, acc.events)
        })
        .collect();

    if rules.len() > knobs.max_rules_per_app {
        rules.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.id.cmp(&b.0.id)));
        let extra = rules.split_off(knobs.max_rules_per_app);
        notes.push(format!(
            "{} least-used rules moved to review (--max-rules {})",
            extra.len(),
            knobs.max_rules_per_app
        ));
        review.extend(extra.into_iter().map(|(r, _)| r));
    }
    let mut rules: Vec<Rule> = rules.into_iter().map(|(r, _)| r).collect();
    if knobs.include_review {
        // Items a wider rule already allows would only shadow-duplicate it.
        let extra: Vec<Rule> = review
            .drain(..)
            .filter(|r| !rules.iter().any(|a| a.covers(r)))
            .collect();
        notes.push(format!(
            "{} review items allowed (--include-review)",
            extra.len()
        ));
        rules.extend(extra);
    }
    let key = |r: &Rule| (r.protocol, r.dst, r.ports);
    rules.sort_by_key(key);
    review.sort_by_key(key);
    if with_dns {
        for r in rules.iter_mut().chain(review.iter_mut()) {
            if let Some(e) = r.evidence.as_mut() {
                e.source = Some("address".into());
            }
        }
        if !rules.is_empty() {
            notes.push(format!(
                "{} rules by address: no DNS answer this app received named their destinations",
                rules.len()
            ));
        }
    }
    let (mut name_rules, mut name_review) =
        names.finish(name, knobs.name_wildcard_threshold, &mut notes);
    if knobs.include_review {
        let extra: Vec<_> = name_review
            .drain(..)
            .filter(|r| !name_rules.iter().any(|a| a.covers(r)))
            .collect();
        name_rules.extend(extra);
    }
    let app = App {
        name: name.to_owned(),
        sha256: *sha,
        paths: a.paths.iter().cloned().collect(),
        comms: a.comms.iter().cloned().collect(),
        mode: knobs.mode,
        rules,
        name_rules,
        review,
        name_review,
        review_reasons: reasons,
        deny: Default::default(),
        dns_scope: None,
        cgroup: None,
    };
    (app, notes)
}

/// Up to eight addresses, then how many more.
fn shown_list(addrs: &[IpAddr]) -> String {
    let mut s = addrs
        .iter()
        .take(8)
        .map(IpAddr::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    if addrs.len() > 8 {
        s += &format!(" and {} more", addrs.len() - 8);
    }
    s
}

fn merge_into(ports: &mut BTreeMap<u16, Acc>, port: u16, acc: Acc) {
    match ports.get_mut(&port) {
        Some(a) => a.add(&acc),
        None => {
            ports.insert(port, acc);
        }
    }
}
