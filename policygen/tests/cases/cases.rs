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
    pub events: Vec<Case>,
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
}

/// The cases, parsed (the file sits next to this one, whichever crate includes it).
pub fn load() -> Cases {
    toml::from_str(include_str!("semantics.toml")).unwrap()
}
