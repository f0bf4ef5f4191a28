//! pinhole: per-binary egress recording and enforcement for Linux.

mod analyze;
mod capture;
mod cgroup_paths;
mod clock;
mod compact;
mod config;
mod dns_rows;
mod docs;
mod enforce;
mod evidence_cli;
mod hook_links;
mod identity;
mod labels;
mod metrics;
mod mounts;
mod option_ranges;
mod policy;
mod privileges;
mod record;
mod record_persist;
mod record_retention;
mod report;
mod ring_fill;
mod sandbox;
mod service;
mod skel;
mod snapshot;
mod status;
mod trail;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// Records every outbound connection with the SHA-256 of the binary that made it,
/// into a Parquet dataset any data engine can read.
#[derive(Debug, Parser)]
#[command(name = "pinhole", version, propagate_version = true)]
struct Cli {
    /// More log output (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Configuration file for `record` and `enforce`: their options under [record] and
    /// [enforce], keyed by long name; the command line wins (default:
    /// /etc/pinhole/pinhole.toml where it exists).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<std::path::PathBuf>,
    /// Log lines as text, or as one JSON object each (for log shippers).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Record every outbound connect and UDP send, with the binary's SHA-256.
    Record(record::RecordArgs),
    /// Learn each application's normal destinations from a recorded dataset.
    Analyze(analyze::AnalyzeArgs),
    /// Enforce a policy in the kernel and record every decision.
    Enforce(enforce::EnforceArgs),
    /// The enforcer's exec-gate watchdog (started by `pinhole enforce`, not by people).
    #[command(hide = true)]
    ExecGateWatchdog(enforce::WatchdogArgs),
    /// Print the SHA-256 of files as pinhole records them (sha256sum's format).
    Hash {
        /// Files to hash.
        #[arg(required = true)]
        files: Vec<std::path::PathBuf>,
    },
    /// Merge each past day's files into one file per day and host, atomically.
    Compact(compact::CompactArgs),
    /// The trail's signing key (`trail keygen`).
    #[command(subcommand)]
    Trail(evidence_cli::TrailCommand),
    /// Check a dataset against its signed evidence log with the public key alone:
    /// exit 0 verified, 1 tampered (each finding named), 2 cannot verify.
    Verify(evidence_cli::VerifyArgs),
    /// Write one self-contained HTML report on a dataset: activity, learning, denials
    /// and destinations as charts, the trail's verification, a policy's replay.
    Report(report::ReportArgs),
    /// Work with per-binary allow policies.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Work with the configuration file of `record` and `enforce`.
    #[command(subcommand)]
    Config(config::ConfigCommand),
    /// Write man pages and shell completions (for packages).
    #[command(hide = true)]
    Docs(docs::DocsArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn init_logging(verbose: u8, format: LogFormat) {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        // Its report of a failed write is an eprintln!, which panics on a closed stderr.
        .log_internal_errors(false);
    match format {
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => {
            status::JSON_LOGS.store(true, std::sync::atomic::Ordering::Relaxed);
            logs.json().with_current_span(false).init()
        }
    }
    // libbpf's own messages (a verifier log runs to thousands of lines) go through the
    // same logs, as details: pinhole reports what failed itself, with context, and a
    // JSON log stays one object per line.
    libbpf_rs::set_print(Some((libbpf_rs::PrintLevel::Info, libbpf_message)));
}

fn libbpf_message(_level: libbpf_rs::PrintLevel, message: String) {
    tracing::debug!("{}", message.trim_end());
}

/// Commands that print a result and exit end quietly when their reader goes away
/// (`pinhole policy generate ... | head`), as `cat` and `grep` do, instead of
/// panicking on the failed write. The recorder and the enforcer keep ignoring SIGPIPE:
/// a closed log pipe must never kill them.
fn quiet_on_closed_pipe(command: &Command) {
    let daemon = match command {
        Command::Record(_) | Command::ExecGateWatchdog(_) => true,
        Command::Enforce(args) => args.runs_enforcer(),
        Command::Analyze(_)
        | Command::Policy(_)
        | Command::Compact(_)
        | Command::Trail(_)
        | Command::Verify(_)
        | Command::Report(_)
        | Command::Hash { .. }
        | Command::Config(_)
        | Command::Docs(_) => false,
    };
    if !daemon {
        // SAFETY: restoring the default disposition of a signal has no memory effects.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
}

/// Reports an error the way every command does; control characters escaped.
fn report(e: &anyhow::Error) -> ExitCode {
    let text = format!("{e:#}");
    let message = pinhole_recorder::printable::printable(&text);
    if status::JSON_LOGS.load(std::sync::atomic::Ordering::Relaxed) {
        tracing::error!("{message}");
    } else {
        status::say(&format!("pinhole: error: {message}"));
    }
    ExitCode::FAILURE
}

fn main() -> ExitCode {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let (argv, config) = match config::merged_args(Cli::command(), argv) {
        Ok(merged) => merged,
        Err(e) => return report(&e),
    };
    let cli = Cli::parse_from(argv);
    init_logging(cli.verbose, cli.log_format);
    if let Some(path) = config {
        tracing::info!("configuration: {}", path.display());
    }
    quiet_on_closed_pipe(&cli.command);
    let result = match cli.command {
        Command::Record(args) => record::run(args),
        Command::Analyze(args) => analyze::run(args),
        Command::Policy(cmd) => policy::run(cmd),
        Command::Enforce(args) => enforce::run(args),
        Command::ExecGateWatchdog(args) => enforce::run_watchdog(args),
        Command::Compact(args) => compact::run(args),
        Command::Trail(cmd) => evidence_cli::run(cmd),
        Command::Verify(args) => return evidence_cli::verify(&args),
        Command::Report(args) => match report::run(args) {
            Ok(code) => return code,
            Err(e) => Err(e),
        },
        Command::Hash { files } => identity::print_hashes(&files),
        Command::Config(cmd) => config::run(cmd, Cli::command()),
        Command::Docs(args) => docs::run(args, Cli::command()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // Messages quote paths, names and file contents: escape what a terminal obeys.
        Err(e) => report(&e),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
