//! The matching semantics: the one specification of what a policy decides for an event.
//! `pinhole policy replay` evaluates recorded events with it; the kernel enforcer must
//! decide identically (both are tested against `tests/cases/semantics.toml`).
//!
//! 1. The binary is identified by its SHA-256 only. A binary with no hash, or a hash no
//!    app names, is unknown: `unknown_binary = allow` allows it, `deny` denies it, and
//!    `audit` allows it but records `would-deny`. Paths never identify.
//! 2. For a known app, a rule matches when its protocol equals the event's, the
//!    destination address lies in its prefix (IPv4-mapped IPv6 destinations are matched
//!    as IPv4) and the port lies in its inclusive range.
//! 3. When several rules match, the one reported is the most specific: the longest
//!    prefix, then the narrowest port range, then the first in the file.
//! 4. No matching rule: `denied` in enforce mode, `would-deny` in audit mode.
//!    Review entries never match.
//! 5. What no rule can allow (a raw socket, a source route set on a socket): `denied`
//!    for an app in enforce mode, `would-deny` in audit mode; an unknown binary gets
//!    `unknown_binary` as for a connect.
//! 6. Names. A connect's address is vouched for by a name when a DNS answer for that
//!    name (the question's name, or any CNAME target on the chain to the address) gave
//!    the address, and the answer counts: it was received at or before the connect, at
//!    most `max(ttl, dns_min_ttl) + dns_grace` seconds before it (`dns_evidence`), and
//!    by a process of this binary (scope `app`, the default) or, in scope `host`, by
//!    this binary or the host's resolver. A name rule (`host`) matches when protocol
//!    and port match and a vouching name matches its pattern (`names`: exact, or `*.`
//!    for one or more labels). A connect to an address no answer vouches for matches
//!    no name rule: a name never resolved, or an address typed in, is denied unless an
//!    address rule allows it.
//! 7. Among matching rules, name rules are reported before address rules: an exact
//!    name first, then wildcards over longer names; ties as in 3.
//! 8. Deny lists win over every allow: when a vouching name is denied by the policy's
//!    list or the app's (exact name, suffix, prefix), the connect is `denied` (app in
//!    enforce mode, or an unknown binary under `unknown_binary = allow` or `deny`) or
//!    `would-deny` (audit mode, or `unknown_binary = audit`), and the entry's source is
//!    reported.
//! 9. Scopes. A rule may be limited to users (`uids`), primary groups (`gids`), a
//!    cgroup subtree (`cgroup`, a path under the cgroup-v2 root; an app's `cgroup` is
//!    its rules' unless a rule names its own) and a time (`expires`, exclusive). A rule
//!    whose scope does not hold for the connect does not match it; a subject the record
//!    does not know (no cgroup path) holds no scope that asks about it.
//! 10. Among rules otherwise equally specific (items 3 and 7), a scoped rule is
//!     reported before an unscoped one.
//!
//! The kernel enforcer decides items 6 to 8 with answers as they arrive
//! (bpf/name_learn.h, bpf/name_decide.h), within bounds this file does not have: a reply
//! is read up to 1,232 bytes, 32 answers, 16 addresses and a chain of 5 names, CNAMEs in
//! the order written; an address keeps at most 8 vouching names per receiver (the one
//! expiring first makes room, counted); a binary outside the policy is told apart by
//! its file rather than its hash; rules behind a scoped one are checked up to 8 deep (a
//! policy needing more is refused); a subflow the kernel opens for an MPTCP connection
//! holds a cgroup scope only in the owner's own cgroup, not below. Within them it
//! decides as specified here.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::dns_evidence::DnsEvidence;
use crate::policy::{App, Mode, NameRule, Policy, Protocol, Rule, UnknownAction};
use crate::rule_scope::Subject;

/// The dataset's verdicts: what the matcher decides is what the audit trail records.
pub use pinhole_recorder::event::Verdict;

/// One event as the matcher sees it.
#[derive(Debug, Clone, Copy)]
pub struct Query<'a> {
    pub sha256: Option<&'a [u8; 32]>,
    pub protocol: Protocol,
    pub addr: IpAddr,
    pub port: u16,
    /// When it happened (ns since the epoch): which DNS answers count and which rules
    /// have expired depend on it.
    pub t_ns: i64,
    /// Who connected, for scoped rules.
    pub subject: Subject<'a>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision<'p> {
    pub verdict: Verdict,
    pub app: Option<&'p App>,
    /// The address rule that allowed it...
    pub rule: Option<&'p Rule>,
    /// ...or the name rule.
    pub name_rule: Option<&'p NameRule>,
    /// The deny entry's source (its id, or its file's) when a deny list decided.
    pub denied_by: Option<&'p str>,
}

impl<'p> Decision<'p> {
    /// The id of what decided: the allowing rule or the deny entry.
    pub fn rule_id(&self) -> Option<&'p str> {
        self.rule
            .map(|r| r.id.as_str())
            .or(self.name_rule.map(|r| r.id.as_str()))
            .or(self.denied_by)
    }
}

/// A policy ready for many lookups: apps by hash.
pub struct Matcher<'p> {
    policy: &'p Policy,
    by_hash: HashMap<[u8; 32], &'p App>,
    /// Whether any decision depends on DNS (skips the evidence lookup otherwise).
    uses_names: bool,
}

fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    }
}

fn rule_matches(r: &Rule, q: &Query<'_>, addr: IpAddr) -> bool {
    r.protocol == q.protocol
        && r.dst.contains(&addr)
        && r.ports.contains(q.port)
        && r.scope.holds(&q.subject, q.t_ns)
}

/// Orders matching rules: longer prefix, then narrower ports, then scoped; the first
/// wins ties.
fn more_specific(a: &Rule, b: &Rule) -> bool {
    let plen = |n: &IpNet| n.prefix_len();
    let rank = |r: &Rule| {
        (
            plen(&r.dst),
            std::cmp::Reverse(r.ports.width()),
            r.scope.is_scoped(),
        )
    };
    rank(a) > rank(b)
}

fn no_rule_verdict(mode: Mode) -> Verdict {
    match mode {
        Mode::Enforce => Verdict::Denied,
        Mode::Audit => Verdict::WouldDeny,
    }
}

impl<'p> Matcher<'p> {
    pub fn new(policy: &'p Policy) -> Self {
        Matcher {
            policy,
            by_hash: policy.apps.iter().map(|a| (a.sha256, a)).collect(),
            uses_names: policy.uses_names(),
        }
    }

    fn unknown(&self) -> Decision<'p> {
        let verdict = match self.policy.unknown_binary {
            UnknownAction::Allow => Verdict::Allowed,
            UnknownAction::Deny => Verdict::Denied,
            UnknownAction::Audit => Verdict::WouldDeny,
        };
        Decision {
            verdict,
            app: None,
            rule: None,
            name_rule: None,
            denied_by: None,
        }
    }

    /// A raw socket or a source route (item 5): no rule can allow it.
    pub fn decide_beyond_rules(&self, sha256: Option<&[u8; 32]>) -> Decision<'p> {
        let Some(app) = sha256.and_then(|h| self.by_hash.get(h)).copied() else {
            return self.unknown();
        };
        Decision {
            verdict: no_rule_verdict(app.mode),
            app: Some(app),
            rule: None,
            name_rule: None,
            denied_by: None,
        }
    }

    /// The deny entry that one of `names` hits (item 8), if any.
    fn denied(&self, app: Option<&'p App>, names: &[&str]) -> Option<&'p str> {
        names.iter().find_map(|n| {
            self.policy
                .deny
                .find(n)
                .or_else(|| app.and_then(|a| a.deny.find(n)))
        })
    }

    pub fn decide(&self, q: &Query<'_>, dns: &DnsEvidence) -> Decision<'p> {
        self.decide_vouched(q, &self.vouching(q, dns))
    }

    /// The names vouching for the query's address (item 6): none when the policy has
    /// no names.
    pub fn vouching<'e>(&self, q: &Query<'_>, dns: &'e DnsEvidence) -> Vec<&'e str> {
        if !self.uses_names {
            return Vec::new();
        }
        let app = q.sha256.and_then(|h| self.by_hash.get(h)).copied();
        let scope = app.map_or(self.policy.names.scope, |a| a.scope(self.policy));
        dns.names_for(q.sha256, scope, canonical(q.addr), q.t_ns)
            .collect()
    }

    /// The decision for a query whose vouching names are `names` (see `vouching`):
    /// with the query's binary, destination and (for scoped rules) subject and the
    /// expiries passed, it depends on nothing else, so callers may remember it by them.
    pub fn decide_vouched(&self, q: &Query<'_>, names: &[&str]) -> Decision<'p> {
        let app = q.sha256.and_then(|h| self.by_hash.get(h)).copied();
        let addr = canonical(q.addr);
        if let Some(source) = self.denied(app, names) {
            let verdict = match app {
                Some(a) => no_rule_verdict(a.mode),
                None if self.policy.unknown_binary == UnknownAction::Audit => Verdict::WouldDeny,
                None => Verdict::Denied,
            };
            return Decision {
                verdict,
                app,
                rule: None,
                name_rule: None,
                denied_by: Some(source),
            };
        }
        let Some(app) = app else {
            return self.unknown();
        };
        let mut best_name: Option<&'p NameRule> = None;
        for r in &app.name_rules {
            if r.protocol == q.protocol
                && r.ports.contains(q.port)
                && r.scope.holds(&q.subject, q.t_ns)
                && names.iter().any(|n| r.host.matches(n))
                && best_name.is_none_or(|b| more_specific_name(r, b))
            {
                best_name = Some(r);
            }
        }
        let mut best: Option<&'p Rule> = None;
        if best_name.is_none() {
            for r in &app.rules {
                if rule_matches(r, q, addr) && best.is_none_or(|b| more_specific(r, b)) {
                    best = Some(r);
                }
            }
        }
        let verdict = match best.is_some() || best_name.is_some() {
            true => Verdict::Allowed,
            false => no_rule_verdict(app.mode),
        };
        Decision {
            verdict,
            app: Some(app),
            rule: best,
            name_rule: best_name,
            denied_by: None,
        }
    }
}

/// Orders matching name rules (item 7): exact before wildcard, longer names first,
/// then narrower ports, then scoped; the first in the file wins ties.
fn more_specific_name(a: &NameRule, b: &NameRule) -> bool {
    let rank = |r: &NameRule| {
        (
            r.host.specificity(),
            std::cmp::Reverse(r.ports.width()),
            r.scope.is_scoped(),
        )
    };
    rank(a) > rank(b)
}
