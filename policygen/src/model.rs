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
    /// Names no binary may reach.
    #[serde(default)]
    pub deny: Vec<Spanned<DenySection>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefaultsSection {
    /// What happens to binaries the policy does not name: allow, deny or audit.
    #[serde(default)]
    pub unknown_binary: Option<Spanned<String>>,
    /// Whose DNS answers count for name rules: "app" (its own) or "host" (its own and
    /// the host resolver's).
    #[serde(default)]
    pub dns_scope: Option<Spanned<String>>,
    /// Seconds an answer counts for at least, whatever its TTL.
    #[serde(default)]
    pub dns_min_ttl: Option<Spanned<i64>>,
    /// Seconds an answer counts for past its (minimum) TTL.
    #[serde(default)]
    pub dns_grace: Option<Spanned<i64>>,
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
    pub dns_scope: Option<Spanned<String>>,
    /// The cgroup subtree (a path under the cgroup-v2 root) every rule of the app is
    /// limited to, unless a rule names its own.
    #[serde(default)]
    pub cgroup: Option<Spanned<String>>,
    #[serde(default)]
    pub allow: Vec<Spanned<RuleSection>>,
    /// Rare or suspicious destinations kept for review; never enforced.
    #[serde(default)]
    pub review: Vec<Spanned<RuleSection>>,
    /// Names this binary may never reach.
    #[serde(default)]
    pub deny: Vec<Spanned<DenySection>>,
}

/// One deny entry: exactly one of `host`, `suffix`, `prefix` or `file`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DenySection {
    #[serde(default)]
    pub id: Option<Spanned<String>>,
    /// Exactly this name.
    #[serde(default)]
    pub host: Option<Spanned<String>>,
    /// This name and every name under it.
    #[serde(default)]
    pub suffix: Option<Spanned<String>>,
    /// Names beginning with this text ("ads.", "telemetry-").
    #[serde(default)]
    pub prefix: Option<Spanned<String>>,
    /// A blocklist file (relative to the policy's directory).
    #[serde(default)]
    pub file: Option<Spanned<String>>,
    /// The file's format: "hosts" (exact names) or "domains" (suffixes).
    #[serde(default)]
    pub format: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSection {
    pub id: Spanned<String>,
    pub protocol: Spanned<String>,
    /// An address or a prefix (IPv4 or IPv6); or, instead, `host`.
    #[serde(default)]
    pub dst: Option<Spanned<String>>,
    /// A name, or a wildcard "*.example.com".
    #[serde(default)]
    pub host: Option<Spanned<String>>,
    /// A port, or an inclusive range "lo-hi".
    pub ports: Spanned<PortsField>,
    /// Only connects by these users (uids)...
    #[serde(default)]
    pub uids: Option<Spanned<Vec<i64>>>,
    /// ...or with these primary groups (gids)...
    #[serde(default)]
    pub gids: Option<Spanned<Vec<i64>>>,
    /// ...from this cgroup subtree...
    #[serde(default)]
    pub cgroup: Option<Spanned<String>>,
    /// ...until this instant (RFC 3339, "2027-01-31T00:00:00Z").
    #[serde(default)]
    pub expires: Option<Spanned<String>>,
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
    /// What tied the rule to its destination: "dns" (answers named it) or "address"
    /// (no answer did: the address was used as such).
    #[serde(default)]
    pub source: Option<String>,
}
