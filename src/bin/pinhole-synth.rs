//! pinhole-synth: writes a synthetic dataset in the recorder's exact format (through
//! its sink), for tests and benchmarks. Same options and seed, same events.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use pinhole_recorder::evidence::SigningKey;
use pinhole_recorder::synth::{generate, SynthConfig};

/// Writes a realistic synthetic pinhole dataset.
#[derive(Debug, Parser)]
#[command(name = "pinhole-synth")]
struct Args {
    /// Output dataset directory.
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    #[arg(long, default_value_t = 300)]
    apps: usize,
    #[arg(long, default_value_t = 30_000)]
    destinations: usize,
    #[arg(long, default_value_t = 5)]
    days: u32,
    /// Zipf exponent of app and destination popularity.
    #[arg(long, default_value_t = 1.1)]
    skew: f64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Leave out the injected anomalies (rehashed binary, one-off destination, port scan).
    #[arg(long)]
    no_anomalies: bool,
    /// The day (from 0) the anomalies happen on (default: the last day).
    #[arg(long)]
    anomaly_day: Option<u32>,
    /// Publish about this many files (as a long recording with short rotation would).
    #[arg(long)]
    files: Option<u64>,
    /// Flush every this many events (a recorder flushes once a second).
    #[arg(long)]
    flush_every: Option<u64>,
    /// Leave everything staged and unpublished, as a recorder killed before rotating.
    #[arg(long)]
    leave_staged: bool,
    /// The share (0 to 1) of TCP destinations reached by name: DNS answers in the
    /// trail before their connects, and `dst_name` on the connects.
    #[arg(long, default_value_t = 0.0)]
    names: f64,
    /// The share (0 to 1) of connects an enforcer refused (half denied, half would-deny).
    #[arg(long, default_value_t = 0.0)]
    refused: f64,
    /// Sign the trail's checkpoints with this private key (from `pinhole trail keygen`).
    #[arg(long, value_name = "FILE")]
    signing_key: Option<PathBuf>,
}

fn main() -> ExitCode {
    let a = Args::parse();
    let signing_key = match a.signing_key.as_deref().map(SigningKey::load).transpose() {
        Ok(k) => k,
        Err(e) => {
            eprintln!("pinhole-synth: --signing-key: {e}");
            return ExitCode::FAILURE;
        }
    };
    let cfg = SynthConfig {
        events: a.events,
        apps: a.apps,
        destinations: a.destinations,
        days: a.days,
        skew: a.skew,
        seed: a.seed,
        anomalies: !a.no_anomalies,
        anomaly_day: a.anomaly_day,
        files: a.files,
        flush_every: a.flush_every,
        leave_staged: a.leave_staged,
        names: a.names.clamp(0.0, 1.0),
        refused: a.refused.clamp(0.0, 1.0),
        signing_key,
        ..SynthConfig::default()
    };
    match generate(&cfg, &a.out) {
        Ok(r) => {
            eprintln!(
                "pinhole-synth: {} events written to {}",
                r.events,
                a.out.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("pinhole-synth: error: {e}");
            ExitCode::FAILURE
        }
    }
}
