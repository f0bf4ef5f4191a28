//! `pinhole report`: one self-contained HTML page on a dataset for people: activity,
//! learning, denials and destinations as charts, the trail's verification and, with a
//! policy, its replay; the figures are `analyze`'s.

mod charts;
mod facts;
mod figures;
mod html;

use std::path::PathBuf;

use anyhow::Result;
use pinhole_analyze::Filter;
use pinhole_recorder::printable::printable;

/// Options of `pinhole report`.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// Dataset directory written by `pinhole record` or `pinhole enforce`.
    pub dataset: PathBuf,
    /// Also show this policy's size and what it would have denied of the dataset.
    #[arg(long, value_name = "POLICY")]
    pub policy: Option<PathBuf>,
    /// The trail's public key: the report then states `pinhole verify`'s verdict.
    #[arg(long, value_name = "PUBKEY")]
    pub key: Option<PathBuf>,
    /// A checkpoint kept elsewhere, for the verification (see `pinhole verify`).
    #[arg(long, value_name = "FILE", requires = "key")]
    pub checkpoint: Option<PathBuf>,
    /// The HTML file to write.
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    /// Carry on past unreadable files, listing them at the end.
    #[arg(long)]
    pub skip_bad: bool,
}

/// Writes the report; exits 3 (the report written) when the trail is tampered, as
/// `policy replay` exits 3 when its check fails: an error is 1.
pub fn run(args: ReportArgs) -> Result<std::process::ExitCode> {
    let loaded =
        crate::analyze::load_profiles(&args.dataset, Filter::default(), args.skip_bad, None)?;
    let trail = facts::trail(
        &args.dataset,
        args.key.as_deref(),
        args.checkpoint.as_deref(),
    );
    let policy = args
        .policy
        .as_deref()
        .map(|p| facts::policy(p, &args.dataset))
        .transpose()?;
    let generated = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let page = html::page(&loaded.doc, &trail, policy.as_ref(), &generated)?;
    // Renamed into place: a reader never sees half a report.
    crate::enforce::state::write_atomic(&args.output, page.as_bytes())?;
    crate::analyze::print_skipped(&loaded.skipped);
    let shown = printable(&args.output.display().to_string()).into_owned();
    eprintln!(
        "pinhole: report written to {shown} (trail: {})",
        trail.verdict()
    );
    Ok(match trail {
        facts::Trail::Tampered(_) => std::process::ExitCode::from(3),
        _ => std::process::ExitCode::SUCCESS,
    })
}
