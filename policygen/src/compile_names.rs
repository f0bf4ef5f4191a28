//! Compiles a policy's names (name rules and deny lists) into the kernel enforcer's
//! name tables (bpf/name_decide.h).
//!
//! Every name the policy mentions becomes up to two patterns: "exactly this name" and
//! "any name below it" (a wildcard's base, a deny suffix), and each deny prefix one
//! more. A name seen in a DNS answer is looked up once per generation: its full text,
//! each parent domain and each prefix length the policy uses, giving the patterns it
//! matches and the global deny entry hitting it. Per app and pattern, the name rules
//! become port spans as address rules do; the app's rule numbers follow the matcher's
//! order (exact names first, then wildcards over longer names, narrower ports, file
//! order), so the kernel reports the lowest number among the names' rules.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::compile::{ipproto, partition, Candidate, Chains, PortSpan};
use crate::dns_evidence::{Lifetime, Scope};
use crate::names::HostPattern;
use crate::policy::{DenyKind, DenyList, Policy};
use crate::rule_scope::RuleScope;

/// The deny entries of a name the policy lists, as rule numbers (0: none).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NamePattern {
    pub exact: u32,
    pub under: u32,
    pub deny_exact: u32,
    pub deny_under: u32,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NamePrefix {
    pub pattern: u32,
    pub global_deny: u32,
}

/// An app's rules for one pattern and protocol (protocol 0: the app's deny entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NameRuleKey {
    pub app_id: u32,
    pub pattern: u32,
    pub protocol: u8,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NameRuleValue {
    pub start: u32,
    pub count: u32,
    pub deny: u32,
}

/// The kernel's name tables for one policy.
#[derive(Debug, Clone, Default)]
pub struct NameTables {
    /// Keyed by the name reversed byte for byte.
    pub patterns: Vec<(String, NamePattern)>,
    pub prefixes: Vec<(String, NamePrefix)>,
    pub prefix_lens: BTreeSet<usize>,
    pub rules: Vec<(NameRuleKey, NameRuleValue)>,
    /// For binaries outside the policy; apps carry their own.
    pub scope: Scope,
    pub lifetime: Lifetime,
}

impl crate::compile::Compiled {
    /// Whether what the names decide for a connect depends only on its app, address,
    /// protocol and port and on the DNS evidence, so a kernel may remember it until the
    /// evidence changes: no name rule's ports lead to a scoped rule (a scope asks who
    /// calls, and when). True without names.
    pub fn name_verdicts_unscoped(&self) -> bool {
        let Some(names) = &self.names else {
            return true;
        };
        names.rules.iter().all(|(_, v)| {
            let start = v.start as usize;
            self.spans
                .get(start..start + v.count as usize)
                .is_some_and(|spans| spans.iter().all(|s| s.chain == 0))
        })
    }
}

/// Where the rule numbers and port spans of the whole policy are gathered.
pub(crate) struct Numbering<'a> {
    /// Global rule number n is `rules[n - 1]`: (app index or GLOBAL, id).
    pub rules: &'a mut Vec<(u32, String)>,
    pub spans: &'a mut Vec<PortSpan>,
    pub chains: &'a mut Chains,
    pub scopes: &'a mut BTreeMap<u32, RuleScope>,
}

/// The app index of what belongs to no app (the policy's deny list).
pub const GLOBAL: u32 = u32::MAX;

#[derive(Default)]
struct Patterns {
    ids: HashMap<(u8, String), u32>,
    by_name: BTreeMap<String, NamePattern>,
    prefixes: BTreeMap<String, NamePrefix>,
}

const EXACT: u8 = 0;
const UNDER: u8 = 1;
const PREFIX: u8 = 2;

impl Patterns {
    fn id(&mut self, kind: u8, name: &str) -> u32 {
        let next = self.ids.len() as u32 + 1;
        let id = *self.ids.entry((kind, name.to_owned())).or_insert(next);
        match kind {
            EXACT => self.by_name.entry(name.to_owned()).or_default().exact = id,
            UNDER => self.by_name.entry(name.to_owned()).or_default().under = id,
            _ => self.prefixes.entry(name.to_owned()).or_default().pattern = id,
        }
        id
    }

    /// The patterns a deny entry hits: the name itself, names below it, a prefix.
    fn of_deny(&mut self, kind: DenyKind, name: &str) -> Vec<u32> {
        match kind {
            DenyKind::Host => vec![self.id(EXACT, name)],
            DenyKind::Suffix => vec![self.id(EXACT, name), self.id(UNDER, name)],
            DenyKind::Prefix => vec![self.id(PREFIX, name)],
        }
    }

    fn deny_globally(&mut self, kind: DenyKind, name: &str, number: u32) {
        let first = |slot: &mut u32| {
            if *slot == 0 {
                *slot = number;
            }
        };
        match kind {
            DenyKind::Host => first(&mut self.by_name.entry(name.into()).or_default().deny_exact),
            DenyKind::Suffix => {
                let p = self.by_name.entry(name.into()).or_default();
                first(&mut p.deny_exact);
                first(&mut p.deny_under);
            }
            DenyKind::Prefix => {
                first(&mut self.prefixes.entry(name.into()).or_default().global_deny)
            }
        }
    }
}

/// Deny entries in the matcher's order of precedence: names, then suffixes, then
/// prefixes (so that where two hit one pattern, the matcher's is kept).
fn ordered(list: &DenyList) -> Vec<(DenyKind, &str, &str)> {
    let mut entries: Vec<_> = list.entries().collect();
    entries.sort_by_key(|&(kind, name, _)| (kind, name));
    entries
}

/// The number of a deny entry's source, one per (app, source).
fn deny_number(
    n: &mut Numbering<'_>,
    numbers: &mut HashMap<(u32, String), u32>,
    app: u32,
    source: &str,
) -> u32 {
    *numbers.entry((app, source.to_owned())).or_insert_with(|| {
        n.rules.push((app, source.to_owned()));
        n.rules.len() as u32
    })
}

/// Builds the name tables, adding the name rules' and deny entries' numbers and spans.
pub(crate) fn compile_names(policy: &Policy, n: &mut Numbering<'_>) -> NameTables {
    let mut pats = Patterns::default();
    let mut numbers = HashMap::new();
    let mut rules: Vec<(NameRuleKey, NameRuleValue)> = Vec::new();
    for (kind, name, source) in ordered(&policy.deny) {
        let number = deny_number(n, &mut numbers, GLOBAL, source);
        pats.deny_globally(kind, name, number);
        pats.of_deny(kind, name);
    }
    let mut app_denies: BTreeMap<NameRuleKey, u32> = BTreeMap::new();
    for (index, app) in policy.apps.iter().enumerate() {
        let app_id = index as u32 + 1;
        for (kind, name, source) in ordered(&app.deny) {
            let number = deny_number(n, &mut numbers, index as u32, source);
            for pattern in pats.of_deny(kind, name) {
                let key = NameRuleKey {
                    app_id,
                    pattern,
                    protocol: 0,
                };
                app_denies.entry(key).or_insert(number);
            }
        }
        // Numbers in the matcher's order, so the lowest among several names wins.
        let mut order: Vec<usize> = (0..app.name_rules.len()).collect();
        order.sort_by_key(|&i| {
            let r = &app.name_rules[i];
            let (exact, labels) = r.host.specificity();
            (
                !exact,
                std::cmp::Reverse(labels),
                r.ports.width(),
                !r.scope.is_scoped(),
                i,
            )
        });
        let mut groups: BTreeMap<NameRuleKey, Vec<Candidate>> = BTreeMap::new();
        for i in order {
            let r = &app.name_rules[i];
            n.rules.push((index as u32, r.id.clone()));
            if r.scope.is_scoped() {
                n.scopes.insert(n.rules.len() as u32, r.scope.clone());
            }
            let pattern = match &r.host {
                HostPattern::Exact(h) => pats.id(EXACT, h),
                HostPattern::Wildcard(b) => pats.id(UNDER, b),
            };
            let key = NameRuleKey {
                app_id,
                pattern,
                protocol: ipproto(r.protocol),
            };
            groups.entry(key).or_default().push(Candidate {
                prefix_len: 0,
                lo: r.ports.lo,
                hi: r.ports.hi,
                scoped: r.scope.is_scoped(),
                order: i,
                rule: n.rules.len() as u32,
            });
        }
        for (key, cands) in groups {
            let spans = partition(cands.iter().collect(), n.chains);
            let value = NameRuleValue {
                start: n.spans.len() as u32,
                count: spans.len() as u32,
                deny: 0,
            };
            n.spans.extend(spans);
            rules.push((key, value));
        }
    }
    rules.extend(app_denies.into_iter().map(|(key, deny)| {
        (
            key,
            NameRuleValue {
                deny,
                ..Default::default()
            },
        )
    }));
    NameTables {
        patterns: pats
            .by_name
            .into_iter()
            .map(|(name, p)| (name.bytes().rev().map(char::from).collect(), p))
            .collect(),
        prefix_lens: pats.prefixes.keys().map(String::len).collect(),
        prefixes: pats.prefixes.into_iter().collect(),
        rules,
        scope: policy.names.scope,
        lifetime: policy.names.lifetime,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::compile;

    fn policy(text: &str) -> Policy {
        crate::check(text, Default::default()).unwrap()
    }

    #[test]
    fn rule_numbers_follow_the_matchers_order_of_name_rules() {
        let c = compile(&policy(
            r#"version = 1
[[app]]
name = "a"
sha256 = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
[[app.allow]]
id = "wide"
protocol = "tcp"
host = "*.example.com"
ports = 443
[[app.allow]]
id = "exact"
protocol = "tcp"
host = "api.example.com"
ports = "1-1024"
[[app.allow]]
id = "deeper"
protocol = "udp"
host = "*.eu.example.com"
ports = 443
"#,
        ));
        let ids: Vec<&str> = c.rules.iter().map(|(_, id)| id.as_str()).collect();
        assert_eq!(ids, ["exact", "deeper", "wide"], "exact, then longer bases");
        let names = c.names.as_ref().unwrap();
        let reversed: Vec<&str> = names.patterns.iter().map(|(n, _)| n.as_str()).collect();
        assert!(reversed.contains(&"moc.elpmaxe.ipa"));
        assert!(reversed.contains(&"moc.elpmaxe"));
        assert_eq!(names.rules.len(), 3);
    }

    #[test]
    fn name_verdicts_are_unscoped_until_a_name_rule_has_a_scope() {
        let text = |scope: &str| {
            format!(
                r#"version = 1
[[app]]
name = "a"
sha256 = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
[[app.allow]]
id = "net"
protocol = "tcp"
dst = "10.0.0.0/8"
ports = 22
uids = [0]
[[app.allow]]
id = "api"
protocol = "tcp"
host = "api.example.com"
ports = 443
{scope}
[[app.deny]]
host = "ads.example.com"
"#
            )
        };
        // A scoped address rule and a deny entry leave name verdicts to the evidence.
        assert!(compile(&policy(&text(""))).name_verdicts_unscoped());
        for scope in [
            "uids = [1000]",
            "gids = [100]",
            "cgroup = \"/web\"",
            "expires = \"2099-01-01T00:00:00Z\"",
        ] {
            assert!(
                !compile(&policy(&text(scope))).name_verdicts_unscoped(),
                "{scope}"
            );
        }
    }

    #[test]
    fn deny_entries_get_one_number_per_source_and_the_first_kind_wins() {
        let c = compile(&policy(
            r#"version = 1
[[deny]]
id = "ads"
suffix = "ads.example"
[[deny]]
host = "ads.example"
[[deny]]
prefix = "telemetry."
[[app]]
name = "a"
sha256 = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
[[app.deny]]
id = "no-social"
host = "social.example.com"
"#,
        ));
        let names = c.names.as_ref().unwrap();
        let ads = names
            .patterns
            .iter()
            .find(|(n, _)| n == "elpmaxe.sda")
            .unwrap()
            .1;
        assert_eq!(c.rule(ads.deny_exact), Some(("", "deny:host:ads.example")));
        assert_eq!(c.rule(ads.deny_under), Some(("", "ads")));
        assert_eq!(names.prefix_lens.iter().copied().collect::<Vec<_>>(), [10]);
        let app_deny = names.rules.iter().find(|(k, _)| k.protocol == 0).unwrap();
        assert_eq!(c.rule(app_deny.1.deny), Some(("a", "no-social")));
    }
}
