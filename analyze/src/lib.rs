//! Per-application network profiles learned from a pinhole dataset: what each binary
//! (by SHA-256) talks to, how its destinations group, and whether learning can stop.

pub mod anomalies;
pub mod dataset;
pub mod error;
pub mod foreign;
pub mod guard;
pub mod profile;
mod scan;
mod small_set;
pub mod summary;
pub mod table;
pub mod timeline;

pub use dataset::{summarize, Filter, Progress, ScanOptions, ScanOutcome};
pub use error::AnalyzeError;
pub use profile::{build_profiles, ProfileDoc};
pub use summary::Summary;
