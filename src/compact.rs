//! `pinhole compact`: each past day's many small files become one file per day and host.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use chrono::{NaiveDate, Utc};
use pinhole_recorder::compact::{compact, CompactOptions};
use pinhole_recorder::printable::printable;

use crate::record::CompressionArg;

/// Options of `pinhole compact`.
#[derive(Debug, clap::Args)]
pub struct CompactArgs {
    /// Dataset directory written by `pinhole record` or `pinhole enforce`.
    pub dataset: PathBuf,
    /// Compact the days before this UTC date (YYYY-MM-DD); default: today, so every
    /// finished day. A running recorder may go on writing into the dataset.
    #[arg(long, value_parser = parse_date)]
    pub before: Option<NaiveDate>,
    /// Codec of the merged files' string and hash columns (zstd suits cold days).
    #[arg(long, value_enum, default_value_t = CompressionArg::Lz4)]
    pub compression: CompressionArg,
    /// zstd's level (1-22), with `--compression zstd`.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=22))]
    pub zstd_level: i32,
    /// The trail's private key: the entries saying which files each merged file
    /// replaces are signed with it (a signed trail needs it, or it no longer verifies).
    #[arg(long, value_name = "FILE")]
    pub signing_key: Option<PathBuf>,
}

fn parse_date(s: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|e| format!("not a date (YYYY-MM-DD): {e}"))
}

pub fn run(args: CompactArgs) -> Result<()> {
    let before = args.before.unwrap_or_else(|| Utc::now().date_naive());
    let opts = CompactOptions {
        before,
        codec: args.compression.codec(args.zstd_level),
        signing_key: crate::evidence_cli::signing_key(args.signing_key.as_deref())?,
    };
    let dataset = printable(&args.dataset.display().to_string()).into_owned();
    let report = compact(&args.dataset, opts).with_context(|| format!("compacting {dataset}"))?;
    if report.leftovers_removed > 0 {
        tracing::info!(
            directories = report.leftovers_removed,
            "removed what an interrupted compaction left"
        );
    }
    for m in &report.merged {
        println!(
            "{} {}: {} files ({} bytes) -> {} ({} bytes), {} rows, {} lost events",
            m.date,
            printable(&m.host),
            m.files_before,
            m.bytes_before,
            printable(&m.output.display().to_string()),
            m.bytes_after,
            m.rows,
            m.lost_events,
        );
    }
    if report.merged.is_empty() && report.skipped.is_empty() {
        println!("nothing to compact before {before} in {dataset}");
    }
    for (date, why) in &report.skipped {
        eprintln!("{date}: left as it was: {}", printable(why));
    }
    if !report.skipped.is_empty() {
        bail!(
            "{} day(s) of {dataset} were left as they were",
            report.skipped.len()
        );
    }
    Ok(())
}
