//! Compiles a policy into the flat tables the kernel enforcer looks up, and a Rust model
//! of that lookup so the tables can be checked against the matcher without a kernel.
//!
//! The kernel does one longest-prefix lookup keyed by (app, protocol, family, address)
//! (nodes of whole addresses are kept apart, in a hash map looked up first: the same
//! answer, cheaper to fill) and then a binary search over sorted, disjoint port spans. For that to report the
//! matcher's most specific rule, each prefix node carries the port partition of every
//! rule that could match below it: its own rules and those of every enclosing prefix
//! of the same app, protocol and family, resolved by specificity at compile time.
//!
//! A scoped rule (matcher item 9) may not hold for a connect, and then the next rule in
//! specificity order decides: a span whose best rule is scoped carries a chain, the
//! span's rules in that order up to the first unscoped one, which the kernel walks
//! checking each scope (`rule_scopes`).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::net::IpAddr;

use ipnet::IpNet;

use crate::compile_names::{compile_names, NameTables, Numbering, GLOBAL};
use crate::dns_evidence::Scope;
use crate::matcher::Verdict;
use crate::policy::{Mode, Policy, Protocol, UnknownAction};
use crate::rule_scope::{RuleScope, Subject};

/// Address family tags in the trie key (not AF_* values: only the two that exist here).
pub const FAMILY_V4: u8 = 4;
pub const FAMILY_V6: u8 = 6;

/// The most binary-search steps a port lookup can need: spans never exceed 65,536.
pub const MAX_SEARCH_STEPS: u32 = 17;

/// The IP protocol number a policy protocol is keyed by; ICMPv6 is folded into ICMP.
pub fn ipproto(p: Protocol) -> u8 {
    match p {
        Protocol::Tcp => 6,
        Protocol::Udp => 17,
        Protocol::Icmp => 1,
    }
}

/// The protocol a socket's IPPROTO_* value is matched as; None when no rule can name it.
pub fn protocol_class(ipproto: u8) -> Option<u8> {
    match ipproto {
        6 | 17 | 1 => Some(ipproto),
        58 => Some(1),
        _ => None,
    }
}

/// One node of the destination trie: all rules of one app for one protocol and prefix.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DestKey {
    pub app_id: u32,
    pub protocol: u8,
    pub family: u8,
    /// IPv4 uses the first four bytes; the rest stay zero.
    pub addr: [u8; 16],
    /// Address bits only; the kernel key adds the fixed (app, protocol, family) bytes.
    pub prefix_len: u8,
}

/// Ports `lo..=hi` are allowed by global rule number `rule` (1-based; see `Compiled::rule`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortSpan {
    pub lo: u16,
    pub hi: u16,
    pub rule: u32,
    /// 0 when `rule` is unscoped; else 1 + the index in `Compiled::chains` of the
    /// candidates in order (`rule` first), ending with an unscoped rule or a 0.
    pub chain: u32,
}

/// The most rules a chain may hold (the kernel walks it in a bounded loop).
pub const MAX_CHAIN: usize = 8;

/// Chains of candidate rules, shared between spans that have the same.
#[derive(Debug, Default)]
pub(crate) struct Chains {
    pub list: Vec<u32>,
    index: HashMap<Vec<u32>, u32>,
    /// The rule ids of chains cut at `MAX_CHAIN` (the enforcer refuses such a policy).
    pub overlong: Vec<u32>,
}

impl Chains {
    /// The chain value of a span whose candidates are `rules` (in order).
    fn of(&mut self, rules: &[u32], scoped: impl Fn(u32) -> bool) -> u32 {
        let end = rules
            .iter()
            .position(|&r| !scoped(r))
            .map_or(rules.len(), |i| i + 1);
        let mut chain = rules[..end].to_vec();
        if chain.len() == 1 && !scoped(chain[0]) {
            return 0;
        }
        if chain.len() > MAX_CHAIN {
            self.overlong.push(chain[0]);
            chain.truncate(MAX_CHAIN);
        }
        if scoped(*chain.last().expect("not empty")) {
            chain.push(0);
        }
        let list = &mut self.list;
        *self.index.entry(chain).or_insert_with_key(|c| {
            list.extend(c);
            (list.len() - c.len()) as u32 + 1
        })
    }
}

/// A trie node's slice of `Compiled::spans`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanRange {
    pub start: u32,
    pub count: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompiledApp {
    pub name: String,
    pub sha256: [u8; 32],
    pub mode: Mode,
    /// Whose DNS answers vouch for its connects.
    pub dns_scope: Scope,
}

/// A policy as kernel tables. App ids are 1-based (0 means "unknown binary").
#[derive(Debug, Clone)]
pub struct Compiled {
    pub unknown_binary: UnknownAction,
    pub apps: Vec<CompiledApp>,
    /// Global rule number n (1-based) is `rules[n - 1]`: (app index, rule id), address
    /// rules first, then name rules and deny entries (app index `GLOBAL` for the
    /// policy's own deny list, whose ids are the entries' sources).
    pub rules: Vec<(u32, String)>,
    pub dests: Vec<(DestKey, SpanRange)>,
    pub spans: Vec<PortSpan>,
    /// The candidate chains of spans whose best rule is scoped (see `PortSpan::chain`).
    pub chains: Vec<u32>,
    /// The scopes of scoped rules, by global rule number.
    pub scopes: BTreeMap<u32, RuleScope>,
    /// Rules whose spans have more than `MAX_CHAIN` overlapping candidates.
    pub overlong_chains: Vec<String>,
    /// The longest span list of one node (the binary search is bounded anyway).
    pub max_node_spans: u32,
    /// Name rules and deny lists, when the policy has any.
    pub names: Option<NameTables>,
}

/// A rule prepared for partitioning: its place in the matcher's specificity order.
pub(crate) struct Candidate {
    pub prefix_len: u8,
    pub lo: u16,
    pub hi: u16,
    pub scoped: bool,
    pub order: usize,
    pub rule: u32,
}

impl Candidate {
    /// Lower ranks win: longer prefix, then narrower ports, then scoped, then earlier
    /// in the file.
    fn rank(&self) -> (Reverse<u8>, u32, bool, usize) {
        (
            Reverse(self.prefix_len),
            u32::from(self.hi - self.lo),
            !self.scoped,
            self.order,
        )
    }
}

/// A rule placed in its group (app, protocol, family) and node (prefix length, address).
struct NodeEntry {
    group: (u32, u8, u8),
    node: (u8, [u8; 16]),
    candidate: Candidate,
}

fn family_and_bytes(net: &IpNet) -> (u8, [u8; 16]) {
    let mut bytes = [0u8; 16];
    match net {
        IpNet::V4(n) => {
            bytes[..4].copy_from_slice(&n.network().octets());
            (FAMILY_V4, bytes)
        }
        IpNet::V6(n) => (FAMILY_V6, n.network().octets()),
    }
}

/// The node a query address is looked up under: IPv4-mapped IPv6 is matched as IPv4.
pub fn query_key(addr: IpAddr) -> (u8, [u8; 16]) {
    let mut bytes = [0u8; 16];
    match addr {
        IpAddr::V4(v4) => {
            bytes[..4].copy_from_slice(&v4.octets());
            (FAMILY_V4, bytes)
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => query_key(IpAddr::V4(v4)),
            None => (FAMILY_V6, v6.octets()),
        },
    }
}

/// `addr` with every bit past the first `prefix_len` cleared.
fn truncated(addr: &[u8; 16], prefix_len: u8) -> [u8; 16] {
    let mut out = [0u8; 16];
    let full = usize::from(prefix_len / 8).min(16);
    out[..full].copy_from_slice(&addr[..full]);
    let rest = prefix_len % 8;
    if rest != 0 && full < 16 {
        out[full] = addr[full] & (0xffu8 << (8 - rest));
    }
    out
}

fn prefix_matches(node: &[u8; 16], prefix_len: u8, addr: &[u8; 16]) -> bool {
    let full = usize::from(prefix_len / 8);
    let rest = prefix_len % 8;
    if node[..full] != addr[..full] {
        return false;
    }
    rest == 0 || (node[full] ^ addr[full]) >> (8 - rest) == 0
}

/// Resolves overlapping port ranges into disjoint spans, each owned by its best rule
/// (with the chain of those after it when it is scoped).
pub(crate) fn partition(mut rules: Vec<&Candidate>, chains: &mut Chains) -> Vec<PortSpan> {
    if let [only] = rules[..] {
        // Most nodes of a large policy: one rule, nothing to resolve.
        let chain = match only.scoped {
            true => chains.of(&[only.rule], |_| true),
            false => 0,
        };
        return vec![PortSpan {
            lo: only.lo,
            hi: only.hi,
            rule: only.rule,
            chain,
        }];
    }
    rules.sort_by_key(|c| c.rank());
    let mut starts: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for (rank, c) in rules.iter().enumerate() {
        starts.entry(u32::from(c.lo)).or_default().push(rank);
        starts.entry(u32::from(c.hi) + 1).or_default();
    }
    let points: Vec<u32> = starts.keys().copied().collect();
    let mut active: BinaryHeap<Reverse<usize>> = BinaryHeap::new();
    let mut spans: Vec<PortSpan> = Vec::new();
    let any_scoped = rules.iter().any(|c| c.scoped);
    let scoped: HashMap<u32, bool> = match any_scoped {
        true => rules.iter().map(|c| (c.rule, c.scoped)).collect(),
        false => HashMap::new(),
    };
    for (i, &at) in points.iter().enumerate() {
        active.extend(starts[&at].iter().map(|&r| Reverse(r)));
        while active
            .peek()
            .is_some_and(|Reverse(r)| u32::from(rules[*r].hi) < at)
        {
            active.pop();
        }
        let (Some(&Reverse(best)), Some(&end)) = (active.peek(), points.get(i + 1)) else {
            continue;
        };
        let (lo, hi, rule) = (at as u16, (end - 1) as u16, rules[best].rule);
        let chain = match rules[best].scoped {
            false => 0,
            true => {
                // Every candidate still covering `at`, in rank order.
                let mut live: Vec<usize> = active
                    .iter()
                    .map(|Reverse(r)| *r)
                    .filter(|&r| u32::from(rules[r].hi) >= at)
                    .collect();
                live.sort_unstable();
                let order: Vec<u32> = live.iter().map(|&r| rules[r].rule).collect();
                chains.of(&order, |r| scoped[&r])
            }
        };
        match spans.last_mut() {
            Some(last)
                if last.rule == rule && last.chain == chain && u32::from(last.hi) + 1 == at =>
            {
                last.hi = hi
            }
            _ => spans.push(PortSpan {
                lo,
                hi,
                rule,
                chain,
            }),
        }
    }
    spans
}

/// Builds the kernel tables; deterministic for a given policy.
pub fn compile(policy: &Policy) -> Compiled {
    let mut rules = Vec::new();
    let mut scopes = BTreeMap::new();
    let mut chains = Chains::default();
    // Every rule under its (app, protocol, family) and then its prefix node: sorted
    // once, so that a group's nodes are runs of it (a tree of a million nodes, each
    // with its own list, cost most of a large policy's compile).
    let mut entries: Vec<NodeEntry> =
        Vec::with_capacity(policy.apps.iter().map(|a| a.rules.len()).sum());
    for (app_index, app) in policy.apps.iter().enumerate() {
        let app_id = app_index as u32 + 1;
        for (order, r) in app.rules.iter().enumerate() {
            rules.push((app_index as u32, r.id.clone()));
            if r.scope.is_scoped() {
                scopes.insert(rules.len() as u32, r.scope.clone());
            }
            let (family, addr) = family_and_bytes(&r.dst);
            entries.push(NodeEntry {
                group: (app_id, ipproto(r.protocol), family),
                node: (r.dst.prefix_len(), addr),
                candidate: Candidate {
                    prefix_len: r.dst.prefix_len(),
                    lo: r.ports.lo,
                    hi: r.ports.hi,
                    scoped: r.scope.is_scoped(),
                    order,
                    rule: rules.len() as u32,
                },
            });
        }
    }
    entries.sort_unstable_by_key(|e| (e.group, e.node, e.candidate.order));
    let mut dests = Vec::new();
    let mut spans = Vec::new();
    let mut max_node_spans = 0;
    for group in entries.chunk_by(|a, b| a.group == b.group) {
        let (app_id, protocol, family) = group[0].group;
        let nodes: Vec<&[NodeEntry]> = group.chunk_by(|a, b| a.node == b.node).collect();
        // A node's rules apply to it and to every longer prefix inside it: look up its
        // enclosing prefixes by the lengths present (a few), not every other node.
        let lens: BTreeSet<u8> = nodes.iter().map(|n| n[0].node.0).collect();
        let index: HashMap<(u8, [u8; 16]), usize> = match lens.len() {
            1 => HashMap::new(),
            _ => nodes
                .iter()
                .enumerate()
                .map(|(i, n)| (n[0].node, i))
                .collect(),
        };
        for own in &nodes {
            let (prefix_len, addr) = own[0].node;
            let applicable: Vec<&Candidate> = match lens.len() {
                1 => own.iter().map(|e| &e.candidate).collect(),
                _ => lens
                    .range(..=prefix_len)
                    .filter_map(|&plen| index.get(&(plen, truncated(&addr, plen))))
                    .flat_map(|&i| nodes[i].iter().map(|e| &e.candidate))
                    .collect(),
            };
            debug_assert!(applicable.len() >= own.len());
            let node_spans = partition(applicable, &mut chains);
            let range = SpanRange {
                start: spans.len() as u32,
                count: node_spans.len() as u32,
            };
            max_node_spans = max_node_spans.max(range.count);
            spans.extend(node_spans);
            let key = DestKey {
                app_id,
                protocol,
                family,
                addr,
                prefix_len,
            };
            dests.push((key, range));
        }
    }
    let names = policy.uses_names().then(|| {
        let mut n = Numbering {
            rules: &mut rules,
            spans: &mut spans,
            chains: &mut chains,
            scopes: &mut scopes,
        };
        compile_names(policy, &mut n)
    });
    let overlong_chains = chains
        .overlong
        .iter()
        .map(|&r| rules[r as usize - 1].1.clone())
        .collect();
    Compiled {
        unknown_binary: policy.unknown_binary,
        apps: policy
            .apps
            .iter()
            .map(|a| CompiledApp {
                name: a.name.clone(),
                sha256: a.sha256,
                mode: a.mode,
                dns_scope: a.scope(policy),
            })
            .collect(),
        rules,
        dests,
        spans,
        chains: chains.list,
        scopes,
        overlong_chains,
        max_node_spans,
        names,
    }
}

/// What the tables decide for one connect: the verdict, the app id (0 = unknown) and the
/// global rule number (0 = none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableDecision {
    pub verdict: Verdict,
    pub app_id: u32,
    pub rule: u32,
}

/// The kernel's lookup, step for step, over the compiled tables.
pub struct TableModel<'c> {
    compiled: &'c Compiled,
    by_hash: HashMap<[u8; 32], u32>,
    by_group: HashMap<(u32, u8, u8), Vec<usize>>,
}

impl<'c> TableModel<'c> {
    pub fn new(compiled: &'c Compiled) -> Self {
        let mut by_group: HashMap<(u32, u8, u8), Vec<usize>> = HashMap::new();
        for (i, (k, _)) in compiled.dests.iter().enumerate() {
            by_group
                .entry((k.app_id, k.protocol, k.family))
                .or_default()
                .push(i);
        }
        TableModel {
            compiled,
            by_hash: compiled
                .apps
                .iter()
                .enumerate()
                .map(|(i, a)| (a.sha256, i as u32 + 1))
                .collect(),
            by_group,
        }
    }

    /// The rule number allowing `port` under the longest matching node, if any, for
    /// `who` at `t_ns`.
    pub fn lookup(
        &self,
        app_id: u32,
        ipproto: u8,
        addr: IpAddr,
        port: u16,
        who: &Subject<'_>,
        t_ns: i64,
    ) -> u32 {
        let Some(protocol) = protocol_class(ipproto) else {
            return 0;
        };
        let (family, bytes) = query_key(addr);
        let Some(nodes) = self.by_group.get(&(app_id, protocol, family)) else {
            return 0;
        };
        let best = nodes
            .iter()
            .map(|&i| &self.compiled.dests[i])
            .filter(|(k, _)| prefix_matches(&k.addr, k.prefix_len, &bytes))
            .max_by_key(|(k, _)| k.prefix_len);
        let Some((_, range)) = best else {
            return 0;
        };
        let spans =
            &self.compiled.spans[range.start as usize..(range.start + range.count) as usize];
        // The same bounded search the BPF program runs: last span starting at or below.
        let (mut lo, mut hi) = (0usize, spans.len());
        for _ in 0..MAX_SEARCH_STEPS {
            if lo >= hi {
                break;
            }
            let mid = (lo + hi) / 2;
            if spans[mid].lo <= port {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        match lo.checked_sub(1).map(|i| spans[i]) {
            Some(s) if port <= s.hi => self.walk_chain(s, who, t_ns),
            _ => 0,
        }
    }

    /// The span's first candidate whose scope holds (what `rule_in_spans` does).
    fn walk_chain(&self, s: PortSpan, who: &Subject<'_>, t_ns: i64) -> u32 {
        if s.chain == 0 {
            return s.rule;
        }
        let start = s.chain as usize - 1;
        for &rule in self.compiled.chains[start..].iter().take(MAX_CHAIN) {
            let holds = |r| {
                self.compiled
                    .scopes
                    .get(&r)
                    .is_none_or(|scope| scope.holds(who, t_ns))
            };
            if rule == 0 || holds(rule) {
                return rule;
            }
        }
        0
    }

    pub fn decide(
        &self,
        sha256: Option<&[u8; 32]>,
        ipproto: u8,
        (addr, port): (IpAddr, u16),
        who: &Subject<'_>,
        t_ns: i64,
    ) -> TableDecision {
        let Some(app_id) = sha256.and_then(|h| self.by_hash.get(h)).copied() else {
            let verdict = match self.compiled.unknown_binary {
                UnknownAction::Allow => Verdict::Allowed,
                UnknownAction::Deny => Verdict::Denied,
                UnknownAction::Audit => Verdict::WouldDeny,
            };
            return TableDecision {
                verdict,
                app_id: 0,
                rule: 0,
            };
        };
        let rule = self.lookup(app_id, ipproto, addr, port, who, t_ns);
        let mode = self.compiled.apps[app_id as usize - 1].mode;
        let verdict = match (rule, mode) {
            (1.., _) => Verdict::Allowed,
            (0, Mode::Enforce) => Verdict::Denied,
            (0, Mode::Audit) => Verdict::WouldDeny,
        };
        TableDecision {
            verdict,
            app_id,
            rule,
        }
    }
}

impl Compiled {
    /// The rule id and app name behind a global rule number.
    pub fn rule(&self, number: u32) -> Option<(&str, &str)> {
        let (app, id) = self.rules.get(number.checked_sub(1)? as usize)?;
        let app_name = match *app {
            GLOBAL => "",
            i => self.apps[i as usize].name.as_str(),
        };
        Some((app_name, id.as_str()))
    }

    pub fn app(&self, app_id: u32) -> Option<&CompiledApp> {
        self.apps.get(app_id.checked_sub(1)? as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(prefix_len: u8, lo: u16, hi: u16, order: usize) -> Candidate {
        Candidate {
            prefix_len,
            lo,
            hi,
            scoped: false,
            order,
            rule: order as u32 + 1,
        }
    }

    #[test]
    fn partition_prefers_longer_prefix_then_narrower_range() {
        let wide = cand(16, 1, 1000, 0);
        let narrow = cand(16, 400, 500, 1);
        let longer = cand(24, 450, 2000, 2);
        let spans = partition(vec![&wide, &narrow, &longer], &mut Chains::default());
        let got: Vec<(u16, u16, u32)> = spans.iter().map(|s| (s.lo, s.hi, s.rule)).collect();
        assert_eq!(got, vec![(1, 399, 1), (400, 449, 2), (450, 2000, 3)]);
    }

    #[test]
    fn partition_merges_adjacent_spans_of_one_rule_and_keeps_gaps() {
        let a = cand(32, 10, 20, 0);
        let b = cand(32, 15, 15, 1);
        let c = cand(32, 30, 65535, 2);
        let spans = partition(vec![&a, &b, &c], &mut Chains::default());
        let got: Vec<(u16, u16, u32)> = spans.iter().map(|s| (s.lo, s.hi, s.rule)).collect();
        assert_eq!(
            got,
            vec![(10, 14, 1), (15, 15, 2), (16, 20, 1), (30, 65535, 3)]
        );
    }

    #[test]
    fn equal_rules_go_to_the_first_in_the_file() {
        let a = cand(32, 443, 443, 0);
        let b = cand(32, 443, 443, 1);
        assert_eq!(partition(vec![&b, &a], &mut Chains::default())[0].rule, 1);
    }

    #[test]
    fn scoped_best_rules_carry_their_fallbacks_up_to_an_unscoped_one() {
        let mut scoped = cand(24, 443, 443, 0);
        scoped.scoped = true;
        let wide = cand(16, 1, 1000, 1);
        let mut other = cand(8, 1, 65535, 2);
        other.scoped = true;
        let mut chains = Chains::default();
        let spans = partition(vec![&scoped, &wide, &other], &mut chains);
        let got: Vec<(u16, u16, u32, u32)> = spans
            .iter()
            .map(|s| (s.lo, s.hi, s.rule, s.chain))
            .collect();
        // 443: the scoped /24, then the unscoped /16 (the /8 is never reached);
        // past 1000: the scoped /8 alone, then nothing.
        assert_eq!(
            got,
            vec![
                (1, 442, 2, 0),
                (443, 443, 1, 1),
                (444, 1000, 2, 0),
                (1001, 65535, 3, 3)
            ]
        );
        assert_eq!(chains.list, vec![1, 2, 3, 0]);
    }

    #[test]
    fn prefix_match_is_bitwise() {
        let node = [10, 1, 2, 128, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let mut addr = node;
        addr[3] = 200;
        assert!(prefix_matches(&node, 25, &addr));
        addr[3] = 100;
        assert!(!prefix_matches(&node, 25, &addr));
        assert!(prefix_matches(&node, 24, &addr));
        assert!(prefix_matches(&node, 0, &[0xff; 16]));
    }
}
