//! What a report states besides the profiles: the trail's verification and, with a
//! policy, its size and its replay on the dataset.

use std::path::Path;

use anyhow::{Context, Result};
use pinhole_analyze::Filter;
use pinhole_policygen::replay::{replay, ReplayReport};
use pinhole_policygen::Policy;
use pinhole_recorder::evidence;

/// The trail's state as `pinhole verify` would report it.
pub enum Trail {
    Verified(evidence::Report),
    Tampered(evidence::Report),
    CannotVerify(String),
    /// No public key given: `why` says what the dataset holds.
    NotChecked(String),
}

impl Trail {
    pub fn verdict(&self) -> &'static str {
        match self {
            Trail::Verified(_) => "verified",
            Trail::Tampered(_) => "tampered",
            Trail::CannotVerify(_) => "cannot verify",
            Trail::NotChecked(_) => "not checked",
        }
    }
}

pub fn trail(dataset: &Path, key: Option<&Path>, checkpoint: Option<&Path>) -> Trail {
    let Some(key) = key else {
        let why = match evidence::is_signed(dataset) {
            true => "the trail is signed; give --key PUBKEY to verify it here",
            false if evidence::log_path(dataset).exists() => {
                "the trail's log is not signed (recorded without --signing-key)"
            }
            false => "the dataset has no evidence log",
        };
        return Trail::NotChecked(why.into());
    };
    match crate::evidence_cli::check_trail(dataset, key, checkpoint) {
        Ok(r) if r.tampered() => Trail::Tampered(r),
        Ok(r) => Trail::Verified(r),
        Err(e) => Trail::CannotVerify(format!("{e:#}")),
    }
}

/// A policy's size and what it would have denied of the dataset.
pub struct PolicyFacts {
    pub path: String,
    pub apps: usize,
    pub rules: usize,
    pub name_rules: usize,
    /// Entries held back for a person to decide.
    pub review: usize,
    pub audit_apps: usize,
    pub unknown_binary: String,
    pub replay: ReplayReport,
}

pub fn policy(path: &Path, dataset: &Path) -> Result<PolicyFacts> {
    let (_, policy): (String, Policy) = crate::policy::load_checked(path, "no report was written")?;
    let replay = replay(&policy, dataset, &Filter::default())
        .with_context(|| format!("replaying {} on the dataset", path.display()))?;
    Ok(PolicyFacts {
        path: path.display().to_string(),
        apps: policy.apps.len(),
        rules: policy.apps.iter().map(|a| a.rules.len()).sum(),
        name_rules: policy.apps.iter().map(|a| a.name_rules.len()).sum(),
        review: policy
            .apps
            .iter()
            .map(|a| a.review.len() + a.name_review.len())
            .sum(),
        audit_apps: policy
            .apps
            .iter()
            .filter(|a| a.mode == pinhole_policygen::policy::Mode::Audit)
            .count(),
        unknown_binary: format!("{:?}", policy.unknown_binary).to_lowercase(),
        replay,
    })
}
