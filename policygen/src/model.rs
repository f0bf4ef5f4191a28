//! The policy file as written: what serde reads from TOML, with the source positions
//! that error messages need. `check` turns it into a validated `Policy`.

use serde::Deserialize;
use toml::Spanned;

/// The file format version this build reads and writes.
pub const POLICY_VERSION: u32 = 1;

/// One piece of a policy file (see `pieces`): the first holds `version` and usually
/// `[defaults]`; every piece holds apps, the first of which may go on with the previous
/// piece's last app. Required fields are checked by `check`, across pieces.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyPiece {
    #[serde(default)]
    pub version: Option<Spanned<u32>>,
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
    #[serde(default)]
    pub name: Option<Spanned<String>>,
    #[serde(default)]
    pub sha256: Option<Spanned<String>>,
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
