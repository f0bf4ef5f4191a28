//! Name rules from DNS evidence. A destination whose connects carried a name
//! (`dst_name`: an answer this app received gave the address for it) is allowed by name
//! instead of by address: one rule per (protocol, port, name), so the rule keeps working
//! when the name's addresses move. Sibling names become one wildcard only on evidence:
//! at least `threshold` distinct names under one registrable domain (Public Suffix
//! List) on the same protocol and port.

use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest, Sha256};

use crate::generate::Acc;
use crate::names::HostPattern;
use crate::policy::{NameRule, PortRange, Protocol};

/// Name rules and their notes for one app.
#[derive(Default)]
pub(crate) struct NamePlan {
    /// (protocol, port) -> name -> evidence, for destinations with enough support.
    supported: BTreeMap<(Protocol, u16), BTreeMap<String, Acc>>,
    review: Vec<NameRule>,
}

/// Stable across regenerations, like address rule ids.
fn rule_id(app: &str, protocol: Protocol, host: &HostPattern, ports: &PortRange) -> String {
    let h = Sha256::digest(format!("{}|{host}|{ports}", protocol.as_str()));
    format!("{app}-{}", hex::encode(&h[..4]))
}

fn rule(app: &str, protocol: Protocol, host: HostPattern, port: u16, acc: &Acc) -> NameRule {
    let ports = PortRange { lo: port, hi: port };
    NameRule {
        id: rule_id(app, protocol, &host, &ports),
        protocol,
        host,
        ports,
        scope: Default::default(),
        evidence: Some(acc.evidence_from("dns")),
    }
}

impl NamePlan {
    /// A destination reached under `names` (names that are not valid host names, as a
    /// hostile server could send, are left to the address rules: false).
    pub fn add(
        &mut self,
        app: &str,
        protocol: Protocol,
        port: u16,
        names: &BTreeSet<String>,
        acc: &Acc,
        supported: bool,
    ) -> bool {
        let valid: Vec<HostPattern> = names
            .iter()
            .filter_map(|n| HostPattern::parse(n).ok())
            .filter(|p| matches!(p, HostPattern::Exact(_)))
            .collect();
        if valid.is_empty() {
            return false;
        }
        for host in valid {
            let HostPattern::Exact(name) = &host else {
                continue;
            };
            if supported {
                let per = self.supported.entry((protocol, port)).or_default();
                match per.get_mut(name) {
                    Some(a) => a.add(acc),
                    None => {
                        per.insert(name.clone(), acc.clone());
                    }
                }
            } else {
                self.review.push(rule(app, protocol, host, port, acc));
            }
        }
        true
    }

    /// The rules: exact names, or a wildcard where `threshold` (0: never) siblings
    /// share a registrable domain. Notes say what was folded.
    pub fn finish(
        self,
        app: &str,
        threshold: usize,
        notes: &mut Vec<String>,
    ) -> (Vec<NameRule>, Vec<NameRule>) {
        let mut rules = Vec::new();
        for ((protocol, port), names) in self.supported {
            let mut by_domain: BTreeMap<String, Vec<(String, Acc)>> = BTreeMap::new();
            for (name, acc) in names {
                let domain = psl::domain_str(&name).unwrap_or(&name).to_owned();
                by_domain.entry(domain).or_default().push((name, acc));
            }
            for (domain, members) in by_domain {
                // The bare domain is not under its own wildcard: it stays exact.
                let (bare, under): (Vec<_>, Vec<_>) =
                    members.into_iter().partition(|(n, _)| *n == domain);
                for (name, acc) in bare {
                    rules.push(rule(app, protocol, HostPattern::Exact(name), port, &acc));
                }
                let wild = HostPattern::parse(&format!("*.{domain}"));
                match wild {
                    Ok(w) if threshold > 0 && under.len() >= threshold => {
                        let mut acc = under[0].1.clone();
                        under[1..].iter().for_each(|(_, a)| acc.add(a));
                        notes.push(format!(
                            "folded {} names under {domain} for {} port {port} into {w} (threshold {threshold}): {}",
                            under.len(),
                            protocol.as_str(),
                            under.iter().map(|(n, _)| n.as_str()).take(8).collect::<Vec<_>>().join(", ")
                        ));
                        rules.push(rule(app, protocol, w, port, &acc));
                    }
                    _ => {
                        for (name, acc) in under {
                            rules.push(rule(app, protocol, HostPattern::Exact(name), port, &acc));
                        }
                    }
                }
            }
        }
        let key = |r: &NameRule| (r.protocol, r.host.clone(), r.ports);
        rules.sort_by_key(key);
        let mut review = self.review;
        review.sort_by_key(key);
        review.dedup_by_key(|r| key(r));
        (rules, review)
    }
}
