//! Per-binary allow policies: the reviewable TOML file, its validation with precise
//! positions, and the one specification of "does this rule match" that replay and the
//! kernel enforcer both implement.

pub mod blocklist;
pub mod check;
pub mod compile;
pub mod compile_names;
pub mod diff;
pub mod dns_evidence;
pub mod generate;
mod generate_names;
pub mod matcher;
pub mod model;
pub mod names;
mod pieces;
pub mod policy;
pub mod replay;
pub mod rule_scope;
pub mod shadow;
pub mod update;
pub mod write;

pub use check::{check, Diagnostic};
pub use matcher::{Decision, Query, Verdict};
pub use policy::{App, Mode, Policy, PortRange, Protocol, Rule, UnknownAction};
