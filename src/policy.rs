//! `pinhole policy`: per-binary allow policies.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use pinhole_analyze::{summarize, Filter, ScanOptions};
use pinhole_policygen::check::{check, Limits};
use pinhole_policygen::generate::{generate, Knobs};
use pinhole_policygen::replay::{replay, ReplayReport};
use pinhole_policygen::write::to_toml;
use pinhole_policygen::{Mode, UnknownAction};

use pinhole_recorder::printable::printable;

use crate::analyze::parse_time;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum UnknownArg {
    Allow,
    Deny,
    Audit,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ModeArg {
    Enforce,
    Audit,
}

/// The generalisation knobs, shared by `generate` and `evaluate`.
#[derive(Debug, clap::Args)]
pub struct KnobArgs {
    /// Events a destination needs to become a rule (else it is held for review).
    #[arg(long, default_value_t = 1)]
    pub min_events: u64,
    /// Distinct days a destination needs to become a rule.
    #[arg(long, default_value_t = 1)]
    pub min_days: usize,
    /// Fold IPv4 addresses of one protocol and port into a prefix when this many share one (0: never).
    #[arg(long, default_value_t = 4)]
    pub v4_fold_threshold: usize,
    /// The widest IPv4 prefix folding may produce.
    #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u8).range(8..=32))]
    pub v4_max_width: u8,
    #[arg(long, default_value_t = 4)]
    pub v6_fold_threshold: usize,
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u8).range(32..=128))]
    pub v6_max_width: u8,
    /// Collapse a destination's ephemeral ports (>= 32768) into one range from this many (0: never).
    #[arg(long, default_value_t = 4)]
    pub ephemeral_threshold: usize,
    /// At most this many rules per app; the least used go to review.
    #[arg(long, default_value_t = 256)]
    pub max_rules: usize,
    /// Allow the review items too.
    #[arg(long)]
    pub include_review: bool,
    /// Learn from port scans, address sweeps and destinations seen once like any
    /// traffic, instead of holding them for review.
    #[arg(long)]
    pub allow_anomalies: bool,
    /// Learn from would-deny decisions too (audit-mode learning: an enforcer run with
    /// `--mode audit` records what it would have denied). Denied connects never teach.
    #[arg(long)]
    pub learn_would_deny: bool,
    /// Fold names into one "*.domain" rule from this many distinct names under one
    /// registrable domain on the same protocol and port (0: never).
    #[arg(long, default_value_t = 4)]
    pub name_wildcard_threshold: usize,
    /// Ignore the DNS evidence in the dataset: rules by address only.
    #[arg(long)]
    pub addresses_only: bool,
    /// What the policy does with binaries it does not name.
    #[arg(long, value_enum, default_value = "allow")]
    pub unknown_binary: UnknownArg,
    /// Mode written for every app.
    #[arg(long, value_enum, default_value = "enforce")]
    pub mode: ModeArg,
}

impl KnobArgs {
    fn knobs(&self) -> Knobs {
        Knobs {
            min_events: self.min_events,
            min_days: self.min_days,
            v4_fold_threshold: self.v4_fold_threshold,
            v4_max_width: self.v4_max_width,
            v6_fold_threshold: self.v6_fold_threshold,
            v6_max_width: self.v6_max_width,
            ephemeral_threshold: self.ephemeral_threshold,
            max_rules_per_app: self.max_rules,
            include_review: self.include_review,
            hold_anomalies: !self.allow_anomalies,
            name_wildcard_threshold: self.name_wildcard_threshold,
            addresses_only: self.addresses_only,
            unknown_binary: match self.unknown_binary {
                UnknownArg::Allow => UnknownAction::Allow,
                UnknownArg::Deny => UnknownAction::Deny,
                UnknownArg::Audit => UnknownAction::Audit,
            },
            mode: match self.mode {
                ModeArg::Enforce => Mode::Enforce,
                ModeArg::Audit => Mode::Audit,
            },
        }
    }
}

/// Options of `pinhole policy generate`.
#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    /// Dataset directory written by `pinhole record`.
    pub dataset: PathBuf,
    /// Learn from events at or after this UTC date or RFC 3339 time.
    #[arg(long, value_parser = parse_time)]
    pub since: Option<DateTime<Utc>>,
    /// Learn from events before this time (replay the rest with `policy replay --since`).
    #[arg(long, value_parser = parse_time)]
    pub until: Option<DateTime<Utc>>,
    /// Write the policy here (default: standard output).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Print each app's generalisation decisions and their evidence to stderr.
    #[arg(long)]
    pub explain: bool,
    #[command(flatten)]
    pub knobs: KnobArgs,
}

/// Options of `pinhole policy replay`.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    pub policy: PathBuf,
    pub dataset: PathBuf,
    /// Replay events at or after this time (the held-out part).
    #[arg(long, value_parser = parse_time)]
    pub since: Option<DateTime<Utc>>,
    #[arg(long, value_parser = parse_time)]
    pub until: Option<DateTime<Utc>>,
    /// Exit with status 3 if more than this share of events would be denied (e.g. 0.001).
    #[arg(long)]
    pub max_deny_rate: Option<f64>,
    /// Denied destinations shown per app.
    #[arg(long, default_value_t = 3)]
    pub top: usize,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Options of `pinhole policy evaluate`.
#[derive(Debug, clap::Args)]
pub struct EvaluateArgs {
    pub dataset: PathBuf,
    /// Learn from events before this time, replay the events from it on.
    #[arg(long, value_parser = parse_time)]
    pub split: DateTime<Utc>,
    #[command(flatten)]
    pub knobs: KnobArgs,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Options of `pinhole policy update`.
#[derive(Debug, clap::Args)]
pub struct UpdateArgs {
    /// The policy in force.
    pub policy: PathBuf,
    pub dataset: PathBuf,
    /// Learn from events at or after this time (default: the latest `last_seen` of the
    /// policy's evidence, when it was generated).
    #[arg(long, value_parser = parse_time)]
    pub since: Option<DateTime<Utc>>,
    /// Write the updated policy here (default: standard output, the change on stderr).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub knobs: KnobArgs,
}

#[derive(Debug, clap::Subcommand)]
pub enum PolicyCommand {
    /// Generate a per-binary allow policy from recorded traffic.
    Generate(GenerateArgs),
    /// Replay recorded events against a policy: what would it have denied?
    Replay(ReplayArgs),
    /// Generate from the events before --split and replay the events after it.
    Evaluate(EvaluateArgs),
    /// Propose what the trail justifies since a policy was made (what its apps were
    /// refused or reached with support, new apps, new versions of its apps), keeping
    /// every existing rule, id, review entry and comment; prints the change.
    Update(UpdateArgs),
    /// Compare two policies by meaning: apps and rules added, removed, widened, narrowed.
    Diff {
        old: PathBuf,
        new: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Validate a policy file: syntax and meaning, with line and column for each problem.
    Check {
        file: PathBuf,
        /// Refuse IPv4 prefixes shorter than this.
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u8).range(0..=32))]
        min_v4_prefix: u8,
        /// Refuse IPv6 prefixes shorter than this.
        #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u8).range(0..=128))]
        min_v6_prefix: u8,
        /// Print the result, or each problem with its line and column, as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: PolicyCommand) -> Result<()> {
    match cmd {
        PolicyCommand::Generate(args) => generate_cmd(args),
        PolicyCommand::Replay(args) => replay_cmd(args),
        PolicyCommand::Evaluate(args) => evaluate_cmd(args),
        PolicyCommand::Update(args) => update_cmd(args),
        PolicyCommand::Diff { old, new, json } => {
            let d = pinhole_policygen::diff::diff(&load_policy(&old)?, &load_policy(&new)?);
            if json {
                println!("{}", serde_json::to_string_pretty(&d)?);
            } else {
                print!("{}", pinhole_policygen::diff::to_text(&d));
            }
            Ok(())
        }
        PolicyCommand::Check {
            file,
            min_v4_prefix,
            min_v6_prefix,
            json,
        } => {
            let limits = Limits {
                min_v4_prefix,
                min_v6_prefix,
            };
            check_cmd(&file, limits, json)
        }
    }
}

/// `policy check`: ok with what the policy holds, or every problem (exit status 1).
fn check_cmd(file: &std::path::Path, limits: Limits, json: bool) -> Result<()> {
    let src = read_policy_text(file)?;
    if json {
        let base = file.parent().unwrap_or(std::path::Path::new("."));
        let outcome = check(&src, limits)
            .and_then(|mut p| pinhole_policygen::blocklist::import(&mut p, base).map(|()| p));
        let out = match &outcome {
            Ok(p) => serde_json::json!({ "file": file, "ok": true, "summary": policy_counts(p) }),
            Err(diags) => serde_json::json!({
                "file": file,
                "ok": false,
                "problems": diags.iter().map(|d| serde_json::json!({
                    "line": d.line, "column": d.column, "message": d.message,
                })).collect::<Vec<_>>(),
            }),
        };
        println!("{}", serde_json::to_string_pretty(&out)?);
        if let Err(diags) = outcome {
            bail!("{}: {} problem(s)", file.display(), diags.len());
        }
        return Ok(());
    }
    let p = checked(&src, file, limits, "")?;
    let c = policy_counts(&p);
    println!(
        "{}: ok: {} apps, {} allow rules by address, {} by name, {} held for review, {} names denied",
        file.display(),
        c["apps"],
        c["rules_by_address"],
        c["rules_by_name"],
        c["review"],
        c["names_denied"]
    );
    Ok(())
}

/// What a checked policy holds, counted.
fn policy_counts(p: &pinhole_policygen::Policy) -> serde_json::Value {
    let count = |f: fn(&pinhole_policygen::App) -> usize| -> usize { p.apps.iter().map(f).sum() };
    serde_json::json!({
        "apps": p.apps.len(),
        "rules_by_address": count(|a| a.rules.len()),
        "rules_by_name": count(|a| a.name_rules.len()),
        "review": count(|a| a.review.len() + a.name_review.len()),
        "names_denied": p.deny.len() + count(|a| a.deny.len()),
    })
}

/// Checks `src` (read from `path`) and imports its blocklists (relative to `path`'s
/// directory); on problems prints each as FILE:LINE:COL and fails.
fn checked(
    src: &str,
    path: &std::path::Path,
    limits: Limits,
    consequence: &str,
) -> Result<pinhole_policygen::Policy> {
    let fail = |diags: Vec<pinhole_policygen::Diagnostic>| {
        for d in &diags {
            eprintln!("{}:{d}", path.display());
        }
        let then = match consequence {
            "" => String::new(),
            c => format!("; {c}"),
        };
        anyhow::Error::new(Problems {
            summary: format!("{}: {} problem(s){then}", path.display(), diags.len()),
            lines: diags.iter().map(|d| d.to_string()).collect(),
        })
    };
    let mut policy = check(src, limits).map_err(fail)?;
    let base = path.parent().unwrap_or(std::path::Path::new("."));
    pinhole_policygen::blocklist::import(&mut policy, base).map_err(fail)?;
    Ok(policy)
}

/// Reads a checked policy's blocklist files (named relative to `base`); on problems
/// prints each as FILE:LINE:COL and fails with `Problems`.
pub fn import_blocklists(
    policy: &mut pinhole_policygen::Policy,
    path: &std::path::Path,
    base: &std::path::Path,
    consequence: &str,
) -> Result<()> {
    pinhole_policygen::blocklist::import(policy, base).map_err(|diags| {
        for d in &diags {
            eprintln!("{}:{d}", path.display());
        }
        anyhow::Error::new(Problems {
            summary: format!(
                "{}: {} problem(s) in its blocklists; {consequence}",
                path.display(),
                diags.len()
            ),
            lines: diags.iter().map(|d| d.to_string()).collect(),
        })
    })
}

fn generate_cmd(a: GenerateArgs) -> Result<()> {
    let outcome = summarize(
        &a.dataset,
        &scan_options(learning(filter(a.since, a.until), &a.knobs)),
        &(),
    )?;
    let knobs = a.knobs.knobs();
    let g = generate(&outcome.summary, &knobs);
    let window = |t: Option<DateTime<Utc>>| t.map_or("-".to_owned(), |t| t.to_rfc3339());
    let header = vec![
        format!(
            "pinhole policy, generated by pinhole {} from {}",
            env!("CARGO_PKG_VERSION"),
            a.dataset.display()
        ),
        format!(
            "training window: since {} until {}; {} events in {} files",
            window(a.since),
            window(a.until),
            outcome.summary.events,
            outcome.files
        ),
        "Review it before enforcing: each rule carries the evidence it was made from.".into(),
    ];
    let text = to_toml(&g.policy, &header);
    if a.explain {
        for (app, notes) in &g.explain {
            eprintln!("{app}:");
            if notes.is_empty() {
                eprintln!("  exact rules only");
            }
            for n in notes {
                eprintln!("  {n}");
            }
        }
    }
    match &a.output {
        Some(p) => std::fs::write(p, &text).with_context(|| format!("writing {}", p.display()))?,
        None => print!("{text}"),
    }
    let rules: usize = g.policy.apps.iter().map(|x| x.rules.len()).sum();
    let review: usize = g.policy.apps.iter().map(|x| x.review.len()).sum();
    eprintln!(
        "pinhole: {} apps, {rules} allow rules, {review} held for review",
        g.policy.apps.len()
    );
    Ok(())
}

fn filter(since: Option<DateTime<Utc>>, until: Option<DateTime<Utc>>) -> Filter {
    let ns = |t: Option<DateTime<Utc>>| t.and_then(|t| t.timestamp_nanos_opt());
    Filter {
        since_ns: ns(since),
        until_ns: ns(until),
        ..Default::default()
    }
}

/// The events a policy learns from: `filter`, with would-deny ones if asked.
fn learning(filter: Filter, knobs: &KnobArgs) -> Filter {
    Filter {
        learn_would_deny: knobs.learn_would_deny,
        ..filter
    }
}

fn scan_options(filter: Filter) -> ScanOptions {
    ScanOptions {
        filter,
        skip_bad: false,
        threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
    }
}

/// When a policy's evidence ends: the latest `last_seen` of its rules.
fn evidence_end(p: &pinhole_policygen::Policy) -> Option<DateTime<Utc>> {
    p.apps
        .iter()
        .flat_map(|a| {
            let addr = a.rules.iter().chain(&a.review).map(|r| r.evidence.as_ref());
            let names = a
                .name_rules
                .iter()
                .chain(&a.name_review)
                .map(|r| r.evidence.as_ref());
            addr.chain(names)
        })
        .flatten()
        .filter_map(|e| DateTime::parse_from_rfc3339(&e.last_seen).ok())
        .map(|t| t.with_timezone(&Utc))
        .max()
}

fn update_cmd(a: UpdateArgs) -> Result<()> {
    let src = read_policy_text(&a.policy)?;
    // Its own blocklists are not needed to add rules, and stay referenced as written.
    let old = crate::policy::check_text(&src, &a.policy, "nothing was updated")?;
    let since = a.since.or_else(|| evidence_end(&old));
    let Some(since) = since else {
        bail!(
            "{}: no rule has evidence to tell when the policy was made; give --since",
            a.policy.display()
        );
    };
    let window = Filter {
        learn_would_deny: true,
        learn_denied: true,
        ..filter(Some(since), None)
    };
    let trail = summarize(&a.dataset, &scan_options(window), &())
        .with_context(|| format!("reading the trail since {}", since.to_rfc3339()))?;
    let stamp = format!(
        "{} from events since {}",
        Utc::now().to_rfc3339(),
        since.to_rfc3339()
    );
    let u = pinhole_policygen::update::update(&src, &old, &trail.summary, &a.knobs.knobs(), &stamp);
    // The result must check as the original did; then say what changed, by meaning.
    let new = check_text(
        &u.text,
        std::path::Path::new("the updated policy"),
        "nothing was written",
    )?;
    let change = pinhole_policygen::diff::to_text(&pinhole_policygen::diff::diff(&old, &new));
    for n in &u.notes {
        eprintln!("pinhole: {n}");
    }
    match &a.output {
        Some(p) => {
            std::fs::write(p, &u.text).with_context(|| format!("writing {}", p.display()))?;
            print!("{change}");
        }
        None => {
            print!("{}", u.text);
            eprint!("{change}");
        }
    }
    eprintln!(
        "pinhole: {} rule(s) and review entries added to existing apps, {} app(s) added",
        u.rules_added, u.apps_added
    );
    Ok(())
}

fn load_policy(path: &std::path::Path) -> Result<pinhole_policygen::Policy> {
    Ok(load_checked(path, "nothing was replayed")?.1)
}

/// The largest policy file read: about 3 million rules.
const MAX_POLICY_BYTES: u64 = 512 << 20;

/// A policy file's text; a FIFO, device or oversized file is refused, never waited on.
pub fn read_policy_text(path: &std::path::Path) -> Result<String> {
    pinhole_recorder::regular::read_text(path, MAX_POLICY_BYTES)
        .with_context(|| format!("reading {}", path.display()))
}

/// A policy's problems: the error names the count and what was not done; `lines` are
/// the problems as LINE:COL: what (the reload command prints them for the daemon).
#[derive(Debug)]
pub struct Problems {
    pub summary: String,
    pub lines: Vec<String>,
}

impl std::fmt::Display for Problems {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.summary)
    }
}

impl std::error::Error for Problems {}

/// Checks a policy's text, without its blocklists; on problems prints each as
/// FILE:LINE:COL and fails with `Problems` saying what was not done.
pub fn check_text(
    src: &str,
    path: &std::path::Path,
    consequence: &str,
) -> Result<pinhole_policygen::Policy> {
    check(src, Limits::default()).map_err(|diags| {
        for d in &diags {
            eprintln!("{}:{d}", path.display());
        }
        anyhow::Error::new(Problems {
            summary: format!(
                "{}: {} problem(s); {consequence}",
                path.display(),
                diags.len()
            ),
            lines: diags.iter().map(|d| d.to_string()).collect(),
        })
    })
}

/// Reads and checks a policy file, blocklists included (see `checked`).
pub fn load_checked(
    path: &std::path::Path,
    consequence: &str,
) -> Result<(String, pinhole_policygen::Policy)> {
    let src = read_policy_text(path)?;
    let policy = checked(&src, path, Limits::default(), consequence)?;
    Ok((src, policy))
}

fn print_replay(r: &ReplayReport, top: usize, seconds: f64) {
    println!(
        "{:<32} {:>10} {:>10} {:>9} {:>7}  TOP DENIED",
        "APP", "EVENTS", "DENIED", "RATE", "DESTS"
    );
    for (app, a) in &r.apps {
        let name = printable(app.as_deref().unwrap_or("(binaries not in the policy)"));
        let tops: Vec<String> = a
            .top(top)
            .iter()
            .map(|(d, n)| format!("{} x{n}", printable(d)))
            .collect();
        println!(
            "{:<32} {:>10} {:>10} {:>8.3}% {:>7}  {}",
            name,
            a.events,
            a.denied,
            a.rate() * 100.0,
            a.denied_dests.len(),
            tops.join(", ")
        );
    }
    println!(
        "\n{} events in {} files: {} would be denied ({:.4}%); replayed at {:.0} events/s",
        r.events,
        r.files,
        r.denied(),
        r.deny_rate() * 100.0,
        r.events as f64 / seconds.max(1e-9)
    );
}

fn replay_cmd(a: ReplayArgs) -> Result<()> {
    let policy = load_policy(&a.policy)?;
    let started = std::time::Instant::now();
    let report = replay(&policy, &a.dataset, &filter(a.since, a.until))?;
    if policy.uses_names() && report.dns_answers == 0 {
        tracing::warn!(
            "the dataset holds no DNS answers: this policy's name rules and deny lists \
             matched nothing in this replay (connects they would allow count as denied)"
        );
    }
    let seconds = started.elapsed().as_secs_f64();
    match a.json {
        true => println!(
            "{}",
            serde_json::to_string_pretty(&replay_json(&report, a.top, seconds))?
        ),
        false => print_replay(&report, a.top, seconds),
    }
    if let Some(max) = a.max_deny_rate {
        if report.deny_rate() > max {
            eprintln!(
                "pinhole: deny rate {:.4}% is above --max-deny-rate {:.4}%",
                report.deny_rate() * 100.0,
                max * 100.0
            );
            std::process::exit(3);
        }
    }
    Ok(())
}

fn evaluate_cmd(a: EvaluateArgs) -> Result<()> {
    let train = summarize(
        &a.dataset,
        &scan_options(learning(filter(None, Some(a.split)), &a.knobs)),
        &(),
    )
    .context("reading the training part (before --split)")?;
    let knobs = a.knobs.knobs();
    let g = generate(&train.summary, &knobs);
    let started = std::time::Instant::now();
    let report = replay(&g.policy, &a.dataset, &filter(Some(a.split), None))?;
    let seconds = started.elapsed().as_secs_f64();
    let rules: Vec<usize> = g
        .policy
        .apps
        .iter()
        .map(|x| x.rules.len() + x.name_rules.len())
        .collect();
    let by_name: usize = g.policy.apps.iter().map(|x| x.name_rules.len()).sum();
    let total: usize = rules.iter().sum();
    // The same training without the names, when there were any: what DNS is worth.
    let by_address = match by_name > 0 {
        true => {
            let addresses = pinhole_policygen::generate::Knobs {
                addresses_only: true,
                ..knobs
            };
            let g = generate(&train.summary, &addresses);
            Some(replay(&g.policy, &a.dataset, &filter(Some(a.split), None))?)
        }
        false => None,
    };
    if a.json {
        let out = serde_json::json!({
            "split": a.split.to_rfc3339(),
            "trained_on_events": train.summary.events,
            "apps": rules.len(),
            "rules": total,
            "rules_by_name": by_name,
            "held_out_events": report.events,
            "false_deny_rate": report.deny_rate(),
            "false_denied_events": report.denied(),
            "events_per_second": report.events as f64 / seconds.max(1e-9),
            "by_address_only": by_address.as_ref().map(|r| serde_json::json!({
                "false_deny_rate": r.deny_rate(),
                "false_denied_events": r.denied(),
            })),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!(
        "trained on {} events before {}: {} apps, {} rules ({by_name} by name; {:.1} per app, at most {})",
        train.summary.events,
        a.split.to_rfc3339(),
        rules.len(),
        total,
        total as f64 / rules.len().max(1) as f64,
        rules.iter().max().unwrap_or(&0)
    );
    println!(
        "held out {} events from {}: false-deny rate {:.4}% ({} events); replayed at {:.0} events/s",
        report.events,
        a.split.to_rfc3339(),
        report.deny_rate() * 100.0,
        report.denied(),
        report.events as f64 / seconds.max(1e-9)
    );
    if let Some(r) = by_address {
        println!(
            "the same policy by address only: false-deny rate {:.4}% ({} events)",
            r.deny_rate() * 100.0,
            r.denied()
        );
    }
    Ok(())
}

/// A replay report for scripts: totals, then per app its events, denials and the
/// `top` most denied destinations.
fn replay_json(r: &ReplayReport, top: usize, seconds: f64) -> serde_json::Value {
    let apps: Vec<serde_json::Value> = r
        .apps
        .iter()
        .map(|(app, a)| {
            let denied: Vec<serde_json::Value> = a
                .top(top)
                .iter()
                .map(|(d, n)| serde_json::json!({ "destination": d, "events": n }))
                .collect();
            serde_json::json!({
                "app": app,
                "events": a.events,
                "denied": a.denied,
                "deny_rate": a.rate(),
                "top_denied": denied,
            })
        })
        .collect();
    serde_json::json!({
        "files": r.files,
        "events": r.events,
        "denied": r.denied(),
        "deny_rate": r.deny_rate(),
        "dns_answers": r.dns_answers,
        "events_per_second": r.events as f64 / seconds.max(1e-9),
        "apps": apps,
    })
}
