//! The shape of the shared semantics cases (tests/cases/semantics.toml), read by the
//! matcher's test and the kernel enforcer's test alike.

use serde::Deserialize;

#[derive(Deserialize)]
pub struct Cases {
    pub suite: Vec<Suite>,
}

#[derive(Deserialize)]
pub struct Suite {
    pub name: String,
    pub policy: String,
    /// DNS answers, applied in time order before the events at or after their time.
    #[serde(default)]
    pub answers: Vec<AnswerCase>,
    pub events: Vec<Case>,
}

#[derive(Deserialize)]
pub struct AnswerCase {
    /// Seconds.
    pub t: i64,
    /// The receiving binary's hash, "" for a binary without one, or "host" for the
    /// host's resolver.
    pub receiver: String,
    /// The question's name, then the CNAME chain.
    pub names: Vec<String>,
    pub addrs: Vec<String>,
    pub ttl: u32,
}

#[derive(Deserialize)]
pub struct Case {
    /// `""` for a connect (or send) to addr:port; `"source_route"` for a source route
    /// through addr set on a socket (decided by what no rule can allow).
    #[serde(default)]
    pub kind: String,
    pub sha256: String,
    pub protocol: String,
    pub addr: String,
    pub port: u16,
    pub verdict: String,
    pub rule: String,
    /// Seconds (events of a suite are in time order).
    #[serde(default)]
    pub t: i64,
    /// Who connects (rule scopes): root unless said.
    #[serde(default)]
    pub uid: u32,
    #[serde(default)]
    pub gid: u32,
    /// The cgroup below the suite's own ("" for the suite's own, "/" in a policy).
    #[serde(default)]
    pub cgroup: String,
}

/// The cases, parsed (the file sits next to this one, whichever crate includes it).
pub fn load() -> Cases {
    toml::from_str(include_str!("semantics.toml")).unwrap()
}
