//! `pinhole analyze`: per-application profiles from a recorded dataset.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use chrono::{DateTime, NaiveDate, Utc};
use indicatif::{ProgressBar, ProgressStyle};
use pinhole_analyze::profile::{rfc3339, DatasetInfo, ProfileDoc};
use pinhole_analyze::{
    build_profiles, summarize, table, AnalyzeError, Filter, Progress, ScanOptions,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

/// Options of `pinhole analyze`.
#[derive(Debug, clap::Args)]
pub struct AnalyzeArgs {
    /// Dataset directory (or one Parquet file) written by `pinhole record`.
    pub dataset: PathBuf,
    /// Only events at or after this UTC date or RFC 3339 time.
    #[arg(long, value_parser = parse_time)]
    pub since: Option<DateTime<Utc>>,
    /// Only events before this UTC date or RFC 3339 time.
    #[arg(long, value_parser = parse_time)]
    pub until: Option<DateTime<Utc>>,
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Write the output to this file instead of standard output.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Show one app in detail: a name, a path, or a sha256 prefix (4+ hex digits).
    #[arg(long)]
    pub app: Option<String>,
    /// Carry on past unreadable files, listing them at the end.
    #[arg(long)]
    pub skip_bad: bool,
    /// Worker threads (default: the number of cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Count would-deny decisions as traffic (audit-mode learning); by default they
    /// are listed apart with the denied ones, under `refused`.
    #[arg(long)]
    pub learn_would_deny: bool,
}

/// A date (midnight UTC) or an RFC 3339 time.
pub fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(d) = s.parse::<NaiveDate>() {
        return Ok(d.and_hms_opt(0, 0, 0).expect("midnight").and_utc());
    }
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.to_utc())
        .map_err(|_| format!("`{s}` is neither a date (YYYY-MM-DD) nor an RFC 3339 time"))
}

struct Bar(ProgressBar);

impl Progress for Bar {
    fn files(&self, total: usize) {
        self.0.set_length(total as u64);
    }
    fn file_done(&self, rows: u64, file_started: bool) {
        if file_started {
            self.0.inc(1);
        }
        let done = self.0.message().parse::<u64>().unwrap_or(0) + rows;
        self.0.set_message(done.to_string());
    }
}

/// Profiles of a dataset as `analyze` builds them, and the files skipped (`skip_bad`).
pub struct Loaded {
    pub doc: ProfileDoc,
    pub skipped: Vec<(PathBuf, AnalyzeError)>,
}

/// Scans `dataset` (a progress bar on a terminal) and builds its profiles.
pub fn load_profiles(
    dataset: &Path,
    filter: Filter,
    skip_bad: bool,
    threads: Option<usize>,
) -> Result<Loaded> {
    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::new(0)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} files, {msg} rows, {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let threads =
        threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let opts = ScanOptions {
        filter,
        skip_bad,
        threads,
    };
    let outcome = summarize(dataset, &opts, &Bar(bar.clone()));
    bar.finish_and_clear();
    let outcome = outcome?;
    let s = &outcome.summary;
    let doc = build_profiles(
        s,
        DatasetInfo {
            path: dataset.display().to_string(),
            files: outcome.files,
            events: s.events,
            first_seen: rfc3339(s.first_ns.unwrap_or_default()),
            last_seen: rfc3339(s.last_ns.unwrap_or_default()),
            since: opts.filter.since_ns.map(rfc3339),
            until: opts.filter.until_ns.map(rfc3339),
        },
    );
    Ok(Loaded {
        doc,
        skipped: outcome.skipped,
    })
}

pub fn run(args: AnalyzeArgs) -> Result<()> {
    let filter = Filter {
        since_ns: args.since.and_then(|t| t.timestamp_nanos_opt()),
        until_ns: args.until.and_then(|t| t.timestamp_nanos_opt()),
        learn_would_deny: args.learn_would_deny,
        learn_denied: false,
    };
    let Loaded { doc, skipped } =
        load_profiles(&args.dataset, filter, args.skip_bad, args.threads)?;

    let text = match (&args.app, args.format) {
        (Some(q), format) => {
            let found = doc.find(q);
            if found.is_empty() {
                let known: Vec<String> = doc
                    .apps
                    .iter()
                    .take(8)
                    .map(|a| a.comms.first().cloned().unwrap_or_else(|| a.id.clone()))
                    .collect();
                return Err(AnalyzeError::UnknownApp {
                    query: q.clone(),
                    known: known.join(", "),
                }
                .into());
            }
            match format {
                Format::Json => serde_json::to_string_pretty(&found)? + "\n",
                Format::Table => found
                    .iter()
                    .map(|a| table::detail(a))
                    .collect::<Vec<_>>()
                    .join("\n"),
            }
        }
        (None, Format::Json) => serde_json::to_string_pretty(&doc)? + "\n",
        (None, Format::Table) => table::overview(&doc),
    };
    match &args.output {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?
        }
        None => {
            let mut out = std::io::stdout().lock();
            // A closed pipe (e.g. `| head`) is not an error.
            if let Err(e) = out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
                if e.kind() != std::io::ErrorKind::BrokenPipe {
                    return Err(e).context("writing to standard output");
                }
            }
        }
    }
    print_skipped(&skipped);
    Ok(())
}

/// Lists the files `--skip-bad` passed over, on standard error.
pub fn print_skipped(skipped: &[(PathBuf, AnalyzeError)]) {
    if skipped.is_empty() {
        return;
    }
    eprintln!("pinhole: skipped {} unreadable file(s):", skipped.len());
    for (path, e) in skipped {
        let what = format!("{}: {e}", path.display());
        eprintln!("  {}", pinhole_recorder::printable::printable(&what));
    }
}
