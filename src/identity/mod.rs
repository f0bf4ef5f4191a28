//! Binary identity: which file a process runs, and that file's SHA-256.

mod exec_watch;
pub mod fd_budget;
mod hash;
mod key;
mod lasting;
mod read_lease;
mod resolver;

pub use exec_watch::{mark_exec_filesystems, ExecWatch};
pub use hash::{sha256_file, until_lasting};
pub use key::{user_dev_to_kernel, ExeKey};
pub use resolver::{Candidate, Resolver, ResolverStats};

/// `pinhole hash FILE...`: the digest pinhole would record for each file, computed by
/// the same code path (and the same unchanged-while-hashing check) as the recorder's.
pub fn print_hashes(files: &[std::path::PathBuf]) -> anyhow::Result<()> {
    use anyhow::Context;
    for path in files {
        let mut file = pinhole_recorder::regular::open_regular(path)
            .with_context(|| format!("opening {}", path.display()))?;
        let meta = file
            .metadata()
            .with_context(|| format!("reading {}", path.display()))?;
        let key = ExeKey::from_metadata(&meta);
        let digest = sha256_file(&mut file, &key, Default::default())
            .map_err(|e| anyhow::anyhow!("hashing {}: {e:?}", path.display()))?;
        println!("{}  {}", hex::encode(digest.sha256), path.display());
    }
    Ok(())
}
