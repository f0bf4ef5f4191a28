//! The validated policy: what replay evaluates and the enforcer loads.

use ipnet::IpNet;

use crate::model::Evidence;

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
    pub evidence: Option<Evidence>,
}

impl Rule {
    /// Whether this rule allows everything `other` allows.
    pub fn covers(&self, other: &Rule) -> bool {
        self.protocol == other.protocol
            && self.dst.contains(&other.dst)
            && self.ports.covers(&other.ports)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    pub name: String,
    pub sha256: [u8; 32],
    pub paths: Vec<String>,
    /// Process names it was seen under (hints, like `paths`).
    pub comms: Vec<String>,
    pub mode: Mode,
    pub rules: Vec<Rule>,
    /// Held back for a person to decide; never matched.
    pub review: Vec<Rule>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Policy {
    pub unknown_binary: UnknownAction,
    pub apps: Vec<App>,
}
