//! `pinhole policy`: per-binary allow policies.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use pinhole_policygen::check::{check, Limits};

#[derive(Debug, clap::Subcommand)]
pub enum PolicyCommand {
    /// Validate a policy file: syntax and meaning, with line and column for each problem.
    Check {
        file: PathBuf,
        /// Refuse IPv4 prefixes shorter than this.
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u8).range(0..=32))]
        min_v4_prefix: u8,
        /// Refuse IPv6 prefixes shorter than this.
        #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u8).range(0..=128))]
        min_v6_prefix: u8,
    },
}

pub fn run(cmd: PolicyCommand) -> Result<()> {
    match cmd {
        PolicyCommand::Check {
            file,
            min_v4_prefix,
            min_v6_prefix,
        } => {
            let src = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            match check(
                &src,
                Limits {
                    min_v4_prefix,
                    min_v6_prefix,
                },
            ) {
                Ok(p) => {
                    let rules: usize = p.apps.iter().map(|a| a.rules.len()).sum();
                    let review: usize = p.apps.iter().map(|a| a.review.len()).sum();
                    println!(
                        "{}: ok: {} apps, {rules} allow rules, {review} held for review",
                        file.display(),
                        p.apps.len()
                    );
                    Ok(())
                }
                Err(diags) => {
                    for d in &diags {
                        eprintln!("{}:{d}", file.display());
                    }
                    bail!("{}: {} problem(s)", file.display(), diags.len())
                }
            }
        }
    }
}
