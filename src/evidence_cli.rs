//! `pinhole trail keygen` makes the trail's signing key; `pinhole verify` checks a
//! dataset against its log and signed checkpoint with the public key alone, naming
//! every file or entry that does not match, and exits 0 (verified), 1 (tampered) or 2
//! (cannot verify).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use pinhole_recorder::evidence::{self, VerifyingKey};
use pinhole_recorder::printable::printable;

#[derive(Debug, clap::Subcommand)]
pub enum TrailCommand {
    /// Make a key pair: DIR/pinhole.key (the private key, mode 0600, for `record` and
    /// `enforce --signing-key`) and DIR/pinhole.pub (for auditors' `pinhole verify`).
    /// Existing files are never overwritten.
    Keygen {
        /// The directory to write both files into.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// The key's name, shown on every signature (no spaces or '+'); default
        /// pinhole/<host name>.
        #[arg(long)]
        name: Option<String>,
    },
}

pub fn run(cmd: TrailCommand) -> Result<()> {
    match cmd {
        TrailCommand::Keygen { out, name } => {
            let name = name.unwrap_or_else(|| {
                let host = gethostname::gethostname().to_string_lossy().into_owned();
                format!(
                    "pinhole/{}",
                    host.replace(|c: char| c.is_whitespace() || c == '+', "-")
                )
            });
            let (private, public) = evidence::generate(&out, &name)
                .with_context(|| format!("making a key pair in {}", out.display()))?;
            println!(
                "private key: {} (mode 0600; for `pinhole record --signing-key`, never share it)",
                printable(&private.display().to_string())
            );
            println!(
                "public key:  {} (for auditors: `pinhole verify DATASET --key {}`)",
                printable(&public.display().to_string()),
                printable(&public.display().to_string())
            );
            Ok(())
        }
    }
}

/// The signing key given with --signing-key, read once at start (before any sandbox).
pub fn signing_key(path: Option<&std::path::Path>) -> Result<Option<evidence::SigningKey>> {
    path.map(|p| evidence::SigningKey::load(p).context("--signing-key"))
        .transpose()
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The dataset (the directory `record --out` or `enforce --out` wrote).
    dataset: PathBuf,
    /// The trail's public key (pinhole.pub from `pinhole trail keygen`).
    #[arg(long, value_name = "PUBKEY")]
    key: PathBuf,
    /// A checkpoint kept elsewhere (written by an earlier `verify --export-checkpoint`):
    /// the log must still hold everything it signed, unchanged.
    #[arg(long, value_name = "FILE")]
    checkpoint: Option<PathBuf>,
    /// Once verified, write the dataset's latest signed checkpoint here, to keep
    /// somewhere its writer cannot reach.
    #[arg(long, value_name = "FILE")]
    export_checkpoint: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Text,
    Json,
}

/// Exit codes: 0 verified, 1 tampered, 2 cannot verify.
pub fn verify(args: &VerifyArgs) -> ExitCode {
    let report = match check(args) {
        Ok(r) => r,
        Err(e) => {
            let why = printable(&format!("{e:#}")).into_owned();
            match args.format {
                Format::Json => println!(
                    "{}",
                    serde_json::json!({ "verdict": "cannot_verify", "reason": why })
                ),
                Format::Text => eprintln!("pinhole: cannot verify: {why}"),
            }
            return ExitCode::from(2);
        }
    };
    match args.format {
        Format::Json => println!("{}", json(&report)),
        Format::Text => print_text(args, &report),
    }
    if report.tampered() {
        return ExitCode::from(1);
    }
    if let Some(path) = &args.export_checkpoint {
        if let Err(e) = std::fs::write(path, &report.checkpoint) {
            eprintln!(
                "pinhole: cannot export the checkpoint to {}: {}",
                printable(&path.display().to_string()),
                e
            );
            return ExitCode::from(2);
        }
    }
    ExitCode::SUCCESS
}

fn check(args: &VerifyArgs) -> Result<evidence::Report> {
    check_trail(&args.dataset, &args.key, args.checkpoint.as_deref())
}

/// Verifies the trail in `dataset` with the public key in `key`, against a checkpoint
/// kept elsewhere when given (`verify`, and the report's verification).
pub fn check_trail(
    dataset: &std::path::Path,
    key: &std::path::Path,
    checkpoint: Option<&std::path::Path>,
) -> Result<evidence::Report> {
    let key = VerifyingKey::load(key)?;
    let kept = match checkpoint {
        Some(p) => Some(std::fs::read(p).with_context(|| format!("reading {}", p.display()))?),
        None => None,
    };
    if !dataset.is_dir() {
        anyhow::bail!("{} is not a directory", dataset.display());
    }
    Ok(evidence::verify(dataset, &key, kept.as_deref())?)
}

fn json(r: &evidence::Report) -> serde_json::Value {
    serde_json::json!({
        "verdict": if r.tampered() { "tampered" } else { "verified" },
        "entries": r.entries,
        "signed": r.signed,
        "files_intact": r.files_intact,
        "files_retired": r.files_retired,
        "findings": r.findings,
        "notes": r.notes,
    })
}

fn print_text(args: &VerifyArgs, r: &evidence::Report) {
    println!(
        "trail:    {}",
        printable(&args.dataset.display().to_string())
    );
    println!("entries:  {} ({} signed)", r.entries, r.signed);
    println!(
        "files:    {} intact, {} retired or replaced",
        r.files_intact, r.files_retired
    );
    for n in &r.notes {
        println!("note:     {}", printable(n));
    }
    for f in &r.findings {
        println!("TAMPERED: {}", printable(f));
    }
    match r.tampered() {
        true => println!("verdict:  TAMPERED ({} findings)", r.findings.len()),
        false => println!("verdict:  verified"),
    }
}
