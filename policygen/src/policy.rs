//! The validated policy: what replay evaluates and the enforcer loads.

use ipnet::IpNet;

use crate::dns_evidence::{Lifetime, Scope};
use crate::model::Evidence;
use crate::names::HostPattern;
use crate::rule_scope::RuleScope;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnknownAction {
    /// Default: a generated policy never takes the whole host down by surprise.
    #[default]
    Allow,
    Deny,
    /// Allow, but record the event as `would-deny`.
    Audit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    Enforce,
    /// Decide, but only record would-deny.
    Audit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
    Icmp,
}

impl Protocol {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "tcp" => Some(Protocol::Tcp),
            "udp" => Some(Protocol::Udp),
            "icmp" => Some(Protocol::Icmp),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Icmp => "icmp",
        }
    }
}

/// An inclusive port range; a single port has `lo == hi`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortRange {
    pub lo: u16,
    pub hi: u16,
}

impl PortRange {
    pub fn contains(&self, port: u16) -> bool {
        self.lo <= port && port <= self.hi
    }

    pub fn covers(&self, o: &PortRange) -> bool {
        self.lo <= o.lo && o.hi <= self.hi
    }

    pub fn width(&self) -> u32 {
        u32::from(self.hi - self.lo) + 1
    }
}

impl std::fmt::Display for PortRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.lo == self.hi {
            write!(f, "{}", self.lo)
        } else {
            write!(f, "{}-{}", self.lo, self.hi)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub id: String,
    pub protocol: Protocol,
    /// Always in canonical form: host bits clear, IPv4 never written as mapped IPv6.
    pub dst: IpNet,
    pub ports: PortRange,
    /// Who and until when it applies (unscoped: always, to every process of the app).
    pub scope: RuleScope,
    pub evidence: Option<Evidence>,
}

impl Rule {
    /// Whether this rule allows everything `other` allows.
    pub fn covers(&self, other: &Rule) -> bool {
        self.protocol == other.protocol
            && self.dst.contains(&other.dst)
            && self.ports.covers(&other.ports)
            && self.scope.covers(&other.scope)
    }
}

/// A rule by name: allows connects to addresses that DNS gave for a matching name
/// (see `matcher` for when an answer counts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameRule {
    pub id: String,
    pub protocol: Protocol,
    pub host: HostPattern,
    pub ports: PortRange,
    pub scope: RuleScope,
    pub evidence: Option<Evidence>,
}

impl NameRule {
    /// Whether this rule allows everything `other` allows.
    pub fn covers(&self, other: &NameRule) -> bool {
        self.protocol == other.protocol
            && self.host.covers(&other.host)
            && self.ports.covers(&other.ports)
            && self.scope.covers(&other.scope)
    }
}

/// Names denied whatever allows them: exact names, suffixes (a name and every name
/// under it) and prefixes (names that begin with the text, e.g. `ads.`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DenyList {
    exact: rustc_hash::FxHashMap<String, u32>,
    suffixes: rustc_hash::FxHashMap<String, u32>,
    prefixes: Vec<(String, u32)>,
    /// What each entry came from: its id, or the file it was imported from.
    sources: Vec<String>,
}

/// How a deny entry matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DenyKind {
    Host,
    Suffix,
    Prefix,
}

impl DenyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DenyKind::Host => "host",
            DenyKind::Suffix => "suffix",
            DenyKind::Prefix => "prefix",
        }
    }
}

impl DenyList {
    /// Registers where the next entries come from; returns its index for `add`.
    pub fn source(&mut self, id: &str) -> u32 {
        self.sources.push(id.to_owned());
        (self.sources.len() - 1) as u32
    }

    /// Adds a canonical name (or prefix); false when it was listed already.
    pub fn add(&mut self, kind: DenyKind, name: String, source: u32) -> bool {
        let map = match kind {
            DenyKind::Host => &mut self.exact,
            DenyKind::Suffix => &mut self.suffixes,
            DenyKind::Prefix => {
                if self.prefixes.iter().any(|(p, _)| *p == name) {
                    return false;
                }
                self.prefixes.push((name, source));
                return true;
            }
        };
        match map.entry(name) {
            std::collections::hash_map::Entry::Occupied(_) => false,
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(source);
                true
            }
        }
    }

    pub fn len(&self) -> usize {
        self.exact.len() + self.suffixes.len() + self.prefixes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every entry: how it matches, its name (or prefix), its source.
    pub fn entries(&self) -> impl Iterator<Item = (DenyKind, &str, &str)> {
        let src = |s: &u32| self.sources[*s as usize].as_str();
        let exact = self
            .exact
            .iter()
            .map(move |(n, s)| (DenyKind::Host, n.as_str(), src(s)));
        let suffixes = self
            .suffixes
            .iter()
            .map(move |(n, s)| (DenyKind::Suffix, n.as_str(), src(s)));
        let prefixes = self
            .prefixes
            .iter()
            .map(move |(n, s)| (DenyKind::Prefix, n.as_str(), src(s)));
        exact.chain(suffixes).chain(prefixes)
    }

    /// The source of the entry that denies `name` (canonical), if any.
    pub fn find(&self, name: &str) -> Option<&str> {
        let hit = self.exact.get(name).or_else(|| {
            // The name itself, then each parent: a.b.c, b.c, c.
            let mut rest = name;
            loop {
                if let Some(s) = self.suffixes.get(rest) {
                    return Some(s);
                }
                rest = rest.split_once('.')?.1;
            }
        });
        let hit = hit.or_else(|| {
            self.prefixes
                .iter()
                .find(|(p, _)| name.starts_with(p.as_str()))
                .map(|(_, s)| s)
        });
        hit.map(|&s| self.sources[s as usize].as_str())
    }
}

/// How DNS answers are used for name rules and deny lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NameSettings {
    pub scope: Scope,
    pub lifetime: Lifetime,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct App {
    pub name: String,
    pub sha256: [u8; 32],
    pub paths: Vec<String>,
    /// Process names it was seen under (hints, like `paths`).
    pub comms: Vec<String>,
    pub mode: Mode,
    pub rules: Vec<Rule>,
    pub name_rules: Vec<NameRule>,
    /// Held back for a person to decide; never matched.
    pub review: Vec<Rule>,
    pub name_review: Vec<NameRule>,
    /// Why each review entry (by id) was held: "seen once", "port scan: ...".
    pub review_reasons: std::collections::BTreeMap<String, String>,
    /// Names this app may never reach (besides the policy's own list).
    pub deny: DenyList,
    /// Overrides the policy's scope for this app.
    pub dns_scope: Option<Scope>,
    /// The cgroup subtree the app's rules apply in (each rule's scope has it already
    /// unless the rule names its own; kept to write the file back as it was).
    pub cgroup: Option<String>,
}

impl App {
    pub fn scope(&self, policy: &Policy) -> Scope {
        self.dns_scope.unwrap_or(policy.names.scope)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Policy {
    pub unknown_binary: UnknownAction,
    pub apps: Vec<App>,
    /// Names no binary may reach, known or not.
    pub deny: DenyList,
    pub names: NameSettings,
    /// Blocklist files `check` found; `blocklist::import` reads them into the lists.
    pub deny_files: Vec<crate::blocklist::DenyFileRef>,
}

impl Policy {
    /// Whether any decision depends on DNS answers.
    pub fn uses_names(&self) -> bool {
        !self.deny.is_empty()
            || !self.deny_files.is_empty()
            || self
                .apps
                .iter()
                .any(|a| !a.name_rules.is_empty() || !a.deny.is_empty())
    }

    /// The scopes of every allow rule.
    pub fn scopes(&self) -> impl Iterator<Item = &RuleScope> {
        self.apps.iter().flat_map(|a| {
            a.rules
                .iter()
                .map(|r| &r.scope)
                .chain(a.name_rules.iter().map(|r| &r.scope))
        })
    }

    /// Whether any decision depends on who connects or when (rule scopes).
    pub fn uses_scopes(&self) -> bool {
        self.scopes().any(RuleScope::is_scoped)
    }
}
