//! `pinhole enforce`: the kernel applies a policy per binary, and every decision lands
//! in the audit trail.

mod backend;
mod confine;
mod control;
mod denials;
mod exec_gate;
mod generation;
mod identities;
mod name_tables;
pub mod names;
mod rule_scopes;
mod run;
pub(crate) mod state;
mod tables;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;

pub use exec_gate::watchdog::{run as run_watchdog, WatchdogArgs};

/// Options of `pinhole enforce POLICY` and its subcommands.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct EnforceArgs {
    #[command(subcommand)]
    command: Option<EnforceCommand>,
    /// The policy to enforce (checked before anything is loaded).
    pub(crate) policy: Option<PathBuf>,
    /// Write every decision into this dataset (the recorder's format, with verdicts).
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// Which kernel hooks enforce: `lsm` (BPF-LSM: also refuses packet sockets), `cgroup`
    /// (the cgroup socket hooks, on every kernel), or `auto`: lsm where bpf is an active
    /// LSM (/sys/kernel/security/lsm) and its programs load, otherwise cgroup.
    #[arg(long, value_enum, default_value_t = backend::BackendChoice::Auto)]
    backend: backend::BackendChoice,
    /// `enforce` denies; `audit` decides but only records would-deny.
    #[arg(long, value_enum, default_value_t = RunMode::Enforce)]
    pub(crate) mode: RunMode,
    /// Keep enforcing after this process exits (programs pinned in /sys/fs/bpf/pinhole).
    #[arg(long)]
    persist: bool,
    /// Decide only calls made by processes in this cgroup-v2 subtree at the time of the
    /// call, whichever cgroup their sockets were made in (absolute, or relative to the
    /// cgroup-v2 mount).
    #[arg(long)]
    cgroup: Option<PathBuf>,
    /// Where the programs attach (default: the cgroup-v2 root); an ancestor of --cgroup.
    /// Tests use it to keep every program inside a cgroup they made.
    #[arg(long, hide = true)]
    attach_cgroup: Option<PathBuf>,
    /// Stop after this long (e.g. 30s); otherwise run until SIGINT or SIGTERM.
    #[arg(long, value_parser = crate::option_ranges::run_duration)]
    duration: Option<Duration>,
    /// Make buffered decisions durable this often (with --out).
    #[arg(long, default_value = "1s", value_parser = crate::option_ranges::flush_interval)]
    flush_interval: Duration,
    /// Decision ring buffer size; a power of two.
    #[arg(long, default_value = "8MiB", value_parser = crate::option_ranges::ring_size)]
    ring_size: u32,
    /// Do not hold execs of unhashed files until they are hashed (fanotify permission
    /// events); a fresh copy of an app is then unknown for its first connects.
    #[arg(long)]
    no_exec_gate: bool,
    /// Entries of the kernel's identity table: app file versions (copies, reinstalls)
    /// recognised at once. When full, the least useful are evicted (never the policy's
    /// own paths) and counted in `status`.
    #[arg(long, default_value_t = 65_536, value_parser = clap::value_parser!(u32).range(16..=4_194_304))]
    identity_capacity: u32,
    /// Entries of the kernel's name evidence: (app, address) pairs that DNS answers
    /// vouch for at once. When full, the least recently used are evicted, and counted
    /// in `status`.
    #[arg(long, default_value_t = 65_536, value_parser = clap::value_parser!(u32).range(16..=4_194_304))]
    name_capacity: u32,
    /// How often the ring buffer is drained.
    #[arg(long, default_value = "5ms", value_parser = crate::option_ranges::poll_interval)]
    poll_interval: Duration,
    /// The host's own DNS resolvers (executables): the answers they receive count for
    /// apps in DNS scope "host" (`dns_scope`), as in `record`. Repeatable; replaces the
    /// defaults.
    #[arg(long = "host-resolver", default_values_t = crate::dns_rows::DEFAULT_HOST_RESOLVERS.map(String::from))]
    host_resolvers: Vec<String>,
    /// Serve Prometheus metrics on this address (e.g. 127.0.0.1:9724): events, losses,
    /// files and bytes published, the hash cache, decisions by app and verdict, reloads, evictions.
    #[arg(long, value_name = "ADDR")]
    pub(crate) metrics_listen: Option<std::net::SocketAddr>,
    /// Exit if a layer of the sandbox cannot be applied (Landlock filesystem and TCP
    /// rules, reduced capabilities); by default a missing layer is logged and
    /// enforcement goes on.
    #[arg(long, conflicts_with = "no_sandbox")]
    sandbox_strict: bool,
    /// Do not sandbox the enforcer once it has started (for debugging).
    #[arg(long)]
    no_sandbox: bool,
    /// Sign a checkpoint of the --out dataset's evidence log after every published file
    /// with this private key (from `pinhole trail keygen`).
    #[arg(long, value_name = "FILE", requires = "out")]
    signing_key: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RunMode {
    Enforce,
    Audit,
}

impl RunMode {
    fn as_str(self) -> &'static str {
        match self {
            RunMode::Enforce => "enforce",
            RunMode::Audit => "audit",
        }
    }
}

#[derive(Debug, clap::Subcommand)]
enum EnforceCommand {
    /// What is loaded: policy hash, mode, cgroup, and per-app counters from the kernel.
    Status(control::StatusArgs),
    /// Swap in a new policy atomically (SIGHUP to the enforcer does the same).
    Reload(control::ReloadArgs),
    /// Stop the enforcer and remove persisted programs and maps.
    Stop,
    /// The live name evidence: which DNS answers vouch for which addresses, to which
    /// app, for how long (for debugging a denial by name).
    Names(names::NamesArgs),
}

impl EnforceArgs {
    /// Whether this starts an enforcer (rather than asking one something).
    pub fn runs_enforcer(&self) -> bool {
        self.command.is_none()
    }
}

pub fn run(args: EnforceArgs) -> Result<()> {
    match args.command {
        Some(EnforceCommand::Status(a)) => control::status(a),
        Some(EnforceCommand::Reload(a)) => control::reload(a),
        Some(EnforceCommand::Stop) => control::stop(),
        Some(EnforceCommand::Names(a)) => names::names(a),
        None => run::run(args),
    }
}
