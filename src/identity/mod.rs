//! Binary identity: which file a process runs, and that file's SHA-256.

mod exec_watch;
mod hash;
mod key;
mod resolver;

pub use exec_watch::{mark_exec_filesystems, ExecWatch};
pub use hash::sha256_file;
pub use key::{user_dev_to_kernel, ExeKey};
pub use resolver::{Candidate, Resolver};
