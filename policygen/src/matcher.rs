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

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::policy::{App, Mode, Policy, Protocol, Rule, UnknownAction};

/// The dataset's verdicts: what the matcher decides is what the audit trail records.
pub use pinhole_recorder::event::Verdict;

/// One event as the matcher sees it.
#[derive(Debug, Clone, Copy)]
pub struct Query<'a> {
    pub sha256: Option<&'a [u8; 32]>,
    pub protocol: Protocol,
    pub addr: IpAddr,
    pub port: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision<'p> {
    pub verdict: Verdict,
    pub app: Option<&'p App>,
    pub rule: Option<&'p Rule>,
}

/// A policy ready for many lookups: apps by hash.
pub struct Matcher<'p> {
    policy: &'p Policy,
    by_hash: HashMap<[u8; 32], &'p App>,
}

fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    }
}

fn rule_matches(r: &Rule, protocol: Protocol, addr: IpAddr, port: u16) -> bool {
    r.protocol == protocol && r.dst.contains(&addr) && r.ports.contains(port)
}

/// Orders matching rules: longer prefix, then narrower ports, first wins ties.
fn more_specific(a: &Rule, b: &Rule) -> bool {
    let plen = |n: &IpNet| n.prefix_len();
    (plen(&a.dst), std::cmp::Reverse(a.ports.width()))
        > (plen(&b.dst), std::cmp::Reverse(b.ports.width()))
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
        }
    }

    pub fn decide(&self, q: &Query<'_>) -> Decision<'p> {
        let Some(app) = q.sha256.and_then(|h| self.by_hash.get(h)).copied() else {
            return self.unknown();
        };
        let addr = canonical(q.addr);
        let mut best: Option<&'p Rule> = None;
        for r in &app.rules {
            if rule_matches(r, q.protocol, addr, q.port) && best.is_none_or(|b| more_specific(r, b))
            {
                best = Some(r);
            }
        }
        let verdict = match best {
            Some(_) => Verdict::Allowed,
            None => no_rule_verdict(app.mode),
        };
        Decision {
            verdict,
            app: Some(app),
            rule: best,
        }
    }
}
