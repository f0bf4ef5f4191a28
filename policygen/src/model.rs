//! The policy file as written: what serde reads from TOML, with the source positions
//! that error messages need. `check` turns it into a validated `Policy`.

use serde::Deserialize;
use toml::Spanned;

/// The file format version this build reads and writes.
pub const POLICY_VERSION: u32 = 1;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    pub version: Spanned<u32>,
    #[serde(default)]
    pub defaults: Option<Spanned<DefaultsSection>>,
    #[serde(default, rename = "app")]
    pub apps: Vec<Spanned<AppSection>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefaultsSection {
    /// What happens to binaries the policy does not name: allow, deny or audit.
    #[serde(default)]
    pub unknown_binary: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppSection {
    pub name: Spanned<String>,
    pub sha256: Spanned<String>,
    /// Where the binary was seen: hints for a reviewer, not part of the identity.
    #[serde(default)]
    pub paths: Vec<String>,
    #[serde(default)]
    pub comms: Vec<String>,
    #[serde(default)]
    pub mode: Option<Spanned<String>>,
    #[serde(default)]
    pub allow: Vec<Spanned<RuleSection>>,
    /// Rare or suspicious destinations kept for review; never enforced.
    #[serde(default)]
    pub review: Vec<Spanned<RuleSection>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSection {
    pub id: Spanned<String>,
    pub protocol: Spanned<String>,
    /// An address or a prefix (IPv4 or IPv6).
    pub dst: Spanned<String>,
    /// A port, or an inclusive range "lo-hi".
    pub ports: Spanned<PortsField>,
    #[serde(default)]
    pub evidence: Option<Evidence>,
    /// Why a review item was held back (review entries only).
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum PortsField {
    One(i64),
    Text(String),
}

/// Why a rule exists: what was observed.
#[derive(Debug, Deserialize, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Evidence {
    pub events: u64,
    pub first_seen: String,
    pub last_seen: String,
    pub days: u32,
}
