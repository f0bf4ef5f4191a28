//! Finding allow rules that another rule of the same app makes redundant (duplicates
//! and shadowed rules), in O(n log n) rather than by comparing every pair: a policy of
//! 100,000 rules is checked at every `enforce` start and reload.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use ipnet::IpNet;

use rustc_hash::FxHashMap;

use crate::policy::{Protocol, Rule};
use crate::rule_scope::RuleScope;

/// `covered` allows nothing that `by` does not (both are indexes into the input).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shadowed {
    pub covered: usize,
    pub by: usize,
}

/// Rules at one exact prefix, keyed by their first port. Only rules no other covers are
/// inserted, so they form an antichain: sorted by `lo`, their `hi` ascend too, and the
/// last rule starting at or below a port range is the only one that can contain it.
/// Most prefixes of a large policy hold one rule: kept inline, without a tree.
enum PortIndex {
    One(u16, u16, usize),
    Many(BTreeMap<u16, (u16, usize)>),
}

impl PortIndex {
    /// The rule containing ports `lo..=hi`, if any.
    fn containing(&self, lo: u16, hi: u16) -> Option<usize> {
        let (start, end, i) = match self {
            PortIndex::One(start, end, i) => (*start, *end, *i),
            PortIndex::Many(m) => {
                let (&start, &(end, i)) = m.range(..=lo).next_back()?;
                (start, end, i)
            }
        };
        (start <= lo && end >= hi).then_some(i)
    }

    fn insert(&mut self, lo: u16, hi: u16, i: usize) {
        if let PortIndex::One(l, h, j) = *self {
            *self = PortIndex::Many(BTreeMap::from([(l, (h, j))]));
        }
        if let PortIndex::Many(m) = self {
            m.insert(lo, (hi, i));
        }
    }
}

/// Every rule covered by another, each reported once, against the widest rule that
/// covers it (file order breaks ties, so the first of two identical rules stands).
/// A scoped rule is compared with the unscoped rules and those of the same scope; one
/// covered only by a rule of a wider, different scope is left alone (it is redundant,
/// not wrong).
pub fn find(rules: &[&Rule]) -> Vec<Shadowed> {
    if rules.iter().all(|r| !r.scope.is_scoped()) {
        return find_among(rules);
    }
    let mut groups: HashMap<&RuleScope, Vec<usize>> = HashMap::new();
    for (i, r) in rules.iter().enumerate() {
        groups.entry(&r.scope).or_default().push(i);
    }
    let unscoped = groups.remove(&RuleScope::default()).unwrap_or_default();
    let mut found = Vec::new();
    let mut among = |members: Vec<usize>, report: &dyn Fn(usize) -> bool| {
        let subset: Vec<&Rule> = members.iter().map(|&i| rules[i]).collect();
        for s in find_among(&subset) {
            let (covered, by) = (members[s.covered], members[s.by]);
            if report(covered) {
                found.push(Shadowed { covered, by });
            }
        }
    };
    among(unscoped.clone(), &|_| true);
    for (scope, members) in groups {
        let all: Vec<usize> = unscoped.iter().chain(&members).copied().collect();
        among(all, &|i| rules[i].scope == *scope);
    }
    found.sort_by_key(|s| s.covered);
    found
}

fn find_among(rules: &[&Rule]) -> Vec<Shadowed> {
    let mut order: Vec<usize> = (0..rules.len()).collect();
    // Wider rules first: whatever covers a rule is processed before it.
    order.sort_by_key(|&i| {
        let r = &rules[i];
        (
            r.protocol,
            r.dst.addr().is_ipv4(),
            r.dst.prefix_len(),
            std::cmp::Reverse(r.ports.width()),
            i,
        )
    });
    let mut by_prefix: FxHashMap<(Protocol, IpNet), PortIndex> = FxHashMap::default();
    let mut lengths: HashMap<(Protocol, bool), BTreeSet<u8>> = HashMap::new();
    let mut found = Vec::new();
    for i in order {
        let r = &rules[i];
        let family = (r.protocol, r.dst.addr().is_ipv4());
        let present = lengths.entry(family).or_default();
        let coverer = present.range(..=r.dst.prefix_len()).find_map(|&len| {
            let index = by_prefix.get(&(r.protocol, supernet(r.dst.addr(), len)))?;
            index.containing(r.ports.lo, r.ports.hi)
        });
        match coverer {
            Some(j) => found.push(Shadowed { covered: i, by: j }),
            None => {
                present.insert(r.dst.prefix_len());
                let (lo, hi) = (r.ports.lo, r.ports.hi);
                by_prefix
                    .entry((r.protocol, r.dst))
                    .and_modify(|p| p.insert(lo, hi, i))
                    .or_insert(PortIndex::One(lo, hi, i));
            }
        }
    }
    found.sort_by_key(|s| s.covered);
    found
}

fn supernet(addr: IpAddr, len: u8) -> IpNet {
    IpNet::new(addr, len)
        .expect("a prefix length of an existing rule")
        .trunc()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::PortRange;

    fn rule(dst: &str, lo: u16, hi: u16) -> Rule {
        Rule {
            id: dst.into(),
            protocol: Protocol::Tcp,
            dst: dst.parse().unwrap(),
            ports: PortRange { lo, hi },
            scope: Default::default(),
            evidence: None,
        }
    }

    /// The pairwise definition, for comparison.
    fn naive(rules: &[Rule]) -> Vec<usize> {
        (0..rules.len())
            .filter(|&i| {
                (0..rules.len()).any(|j| {
                    j != i && rules[j].covers(&rules[i]) && (!rules[i].covers(&rules[j]) || j < i)
                })
            })
            .collect()
    }

    #[test]
    fn agrees_with_the_pairwise_definition() {
        let nets = [
            "10.0.0.0/8",
            "10.1.0.0/16",
            "10.1.2.0/24",
            "10.1.2.3/32",
            "10.2.0.0/16",
            "2001:db8::/32",
            "2001:db8::1/128",
        ];
        let ports = [(1, 1024), (443, 443), (80, 443), (1000, 2000), (443, 8443)];
        // Every combination of up to three rules, in every file order the loop yields.
        let all: Vec<Rule> = nets
            .iter()
            .flat_map(|n| ports.iter().map(move |&(lo, hi)| rule(n, lo, hi)))
            .collect();
        for a in 0..all.len() {
            for b in 0..all.len() {
                for c in [0, 7, 13, 21, 34] {
                    let rules = vec![all[a].clone(), all[b].clone(), all[c].clone()];
                    let refs: Vec<&Rule> = rules.iter().collect();
                    let got: Vec<usize> = find(&refs).iter().map(|s| s.covered).collect();
                    assert_eq!(got, naive(&rules), "{rules:?}");
                    for s in find(&refs) {
                        assert!(rules[s.by].covers(&rules[s.covered]));
                    }
                }
            }
        }
    }
}
