//! Binary identity: which file a process runs, and that file's SHA-256.

mod hash;
mod key;
mod resolver;

pub use key::ExeKey;
pub use resolver::{Candidate, Resolver};
