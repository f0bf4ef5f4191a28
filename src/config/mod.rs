//! The configuration file: every option of `record` and `enforce` can be set in
//! `/etc/pinhole/pinhole.toml` (or `--config FILE`) under `[record]` and `[enforce]`,
//! keyed by its long option name; options given on the command line win. The file's
//! settings become command-line arguments, so clap checks them exactly as it checks
//! flags, and a problem is reported at the setting's line and column.

mod file;

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Result};
use clap::parser::ValueSource;
use clap::ArgAction;

pub use file::SECTIONS;
use file::{ConfigFile, Setting, Value};

/// Read by `record` and `enforce` when it exists and neither `--config` nor
/// PINHOLE_CONFIG says otherwise.
pub const DEFAULT_PATH: &str = "/etc/pinhole/pinhole.toml";

/// `pinhole config ...`
#[derive(Debug, clap::Subcommand)]
pub enum ConfigCommand {
    /// Check a configuration file: its syntax, and each setting as its command would.
    Check {
        /// The file (default: /etc/pinhole/pinhole.toml).
        file: Option<PathBuf>,
    },
}

/// The command line after the configuration file's settings for the command being run
/// were added, and the file they came from. A command line clap refuses, or a command
/// the file does not configure, is returned unchanged (clap reports its own errors).
pub fn merged_args(
    cmd: clap::Command,
    argv: Vec<OsString>,
) -> Result<(Vec<OsString>, Option<PathBuf>)> {
    let Ok(m) = cmd.clone().try_get_matches_from(&argv) else {
        return Ok((argv, None));
    };
    let Some((section, sm)) = m.subcommand() else {
        return Ok((argv, None));
    };
    // Only the daemons read it: `enforce status` and the like ask a running one.
    if !SECTIONS.contains(&section) || sm.subcommand().is_some() {
        return Ok((argv, None));
    }
    let explicit = sm.get_one::<PathBuf>("config").cloned();
    // PINHOLE_CONFIG names another default; set empty, none (the test suite's).
    let default = match std::env::var_os("PINHOLE_CONFIG") {
        Some(p) if p.is_empty() => None,
        Some(p) => Some(PathBuf::from(p)),
        None => Some(PathBuf::from(DEFAULT_PATH)).filter(|p| p.exists()),
    };
    let path = match explicit.or(default) {
        Some(p) => p,
        None => return Ok((argv, None)),
    };
    let config = file::load(&path)?;
    let sub = cmd
        .find_subcommand(section)
        .expect("matched subcommand")
        .clone();
    let (options, positionals) = to_args(&sub, section, config.section(section), |id| {
        sm.value_source(id) == Some(ValueSource::CommandLine)
    })?;
    let at = subcommand_index(&argv, section);
    let mut merged: Vec<OsString> = argv[..=at].to_vec();
    merged.extend(options.iter().map(|(_, a)| OsString::from(a)));
    merged.extend(argv[at + 1..].iter().cloned());
    merged.extend(positionals.iter().map(|(_, a)| OsString::from(a)));
    if let Err(e) = cmd.try_get_matches_from(&merged) {
        // "--flush-interval <FLUSH_INTERVAL>", or "[POLICY]" for a positional.
        let named = e
            .get(clap::error::ContextKind::InvalidArg)
            .map(|a| a.to_string())
            .unwrap_or_default();
        let token = named.split(' ').next().unwrap_or_default();
        let culprit = options.iter().chain(&positionals).find(|(s, _)| {
            token == format!("--{}", s.key)
                || token
                    .trim_matches(['[', ']', '<', '>'])
                    .eq_ignore_ascii_case(&s.key)
        });
        if let Some((s, _)) = culprit {
            bail!("{}: [{section}] {}: {}", s.at, s.key, first_line(&e));
        }
    }
    Ok((merged, Some(path)))
}

/// The first line of clap's message, without its "error: ".
fn first_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let line = text.lines().next().unwrap_or_default();
    line.trim_start_matches("error: ").to_owned()
}

/// Where the subcommand's name is on the command line (after global options).
fn subcommand_index(argv: &[OsString], name: &str) -> usize {
    (1..argv.len())
        .find(|&i| argv[i] == name && argv[i - 1] != "--config")
        .expect("clap found the subcommand")
}

/// The options a file may set: not hidden ones, nor those about pinhole itself.
fn settable(sub: &clap::Command) -> impl Iterator<Item = &clap::Arg> {
    sub.get_arguments().filter(|a| {
        !a.is_hide_set()
            && !matches!(
                a.get_id().as_str(),
                "config" | "verbose" | "help" | "version"
            )
    })
}

type Args<'s> = Vec<(&'s Setting, String)>;

/// The settings as options (`--key=value`) and positionals, leaving out those whose
/// option the command line gives.
fn to_args<'s>(
    sub: &clap::Command,
    section: &str,
    settings: &'s [Setting],
    on_command_line: impl Fn(&str) -> bool,
) -> Result<(Args<'s>, Args<'s>)> {
    let (mut options, mut positionals) = (Vec::new(), Vec::new());
    for s in settings {
        let arg = settable(sub).find(|a| {
            if a.is_positional() {
                a.get_id() == s.key.as_str()
            } else {
                a.get_long() == Some(s.key.as_str())
            }
        });
        let Some(arg) = arg else {
            let known: Vec<String> = settable(sub)
                .map(|a| {
                    a.get_long()
                        .map_or_else(|| a.get_id().to_string(), str::to_owned)
                })
                .collect();
            bail!(
                "{}: unknown key `{}` in [{section}] (the options of `pinhole {section}`: {})",
                s.at,
                s.key,
                known.join(", ")
            );
        };
        if on_command_line(arg.get_id().as_str()) {
            continue;
        }
        let wrong = |why: &str| anyhow!("{}: [{section}] {}: {why}", s.at, s.key);
        let flag = matches!(arg.get_action(), ArgAction::SetTrue);
        let many = matches!(arg.get_action(), ArgAction::Append);
        let option = format!("--{}", s.key);
        match (&s.value, flag) {
            (Value::Flag(true), true) => options.push((s, option)),
            (Value::Flag(false), true) => {}
            (_, true) => return Err(wrong("a switch: write true or false")),
            (Value::Flag(_), false) => return Err(wrong("takes a value, not true or false")),
            (Value::One(v), false) if arg.is_positional() => {
                if v.starts_with('-') {
                    return Err(wrong("must not begin with '-'"));
                }
                positionals.push((s, v.clone()));
            }
            (Value::One(v), false) => options.push((s, format!("{option}={v}"))),
            (Value::Many(vs), false) if many => {
                options.extend(vs.iter().map(|v| (s, format!("{option}={v}"))));
            }
            (Value::Many(_), false) => return Err(wrong("takes one value, not an array")),
        }
    }
    Ok((options, positionals))
}

/// `pinhole config check [FILE]`: every section's settings through its command's checks.
pub fn run(cmd: ConfigCommand, cli: clap::Command) -> Result<()> {
    let ConfigCommand::Check { file } = cmd;
    let path = file.unwrap_or_else(|| PathBuf::from(DEFAULT_PATH));
    let config: ConfigFile = file::load(&path)?;
    let mut counts = Vec::new();
    for section in SECTIONS {
        let argv: Vec<OsString> = vec![
            "pinhole".into(),
            "--config".into(),
            path.clone().into_os_string(),
            section.into(),
        ];
        let (merged, _) = merged_args(cli.clone(), argv)?;
        if let Err(e) = cli.clone().try_get_matches_from(&merged) {
            bail!("{}: [{section}]: {}", path.display(), first_line(&e));
        }
        counts.push(format!(
            "[{section}] {} settings",
            config.section(section).len()
        ));
    }
    println!(
        "{}: ok ({})",
        pinhole_recorder::printable::printable(&path.display().to_string()),
        counts.join(", ")
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, FromArgMatches};

    use std::path::Path;

    use super::*;
    use crate::enforce::RunMode;
    use crate::{Cli, Command};

    /// The command line pinhole would run after merging `config` into `args`.
    fn merged(config: &str, args: &[&str]) -> Result<Cli> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pinhole.toml");
        std::fs::write(&path, config).unwrap();
        let mut argv: Vec<OsString> = vec!["pinhole".into(), "--config".into(), path.into()];
        argv.extend(args.iter().map(OsString::from));
        let (argv, used) = merged_args(Cli::command(), argv)?;
        assert!(used.is_some());
        let m = Cli::command().try_get_matches_from(argv)?;
        Ok(Cli::from_arg_matches(&m)?)
    }

    #[test]
    fn the_file_sets_options_and_the_command_line_wins() {
        let cli = merged(
            "[record]\nout = \"/from/config\"\nhost = \"config-host\"\ncompression = \"zstd\"\npersist = true\nhost-resolver = [\"/a\", \"/b\"]\n",
            &["record", "--host", "flag-host"],
        )
        .unwrap();
        let Command::Record(r) = cli.command else {
            panic!("not record")
        };
        assert_eq!(r.out, PathBuf::from("/from/config"));
        assert_eq!(r.host.as_deref(), Some("flag-host"));
        assert_eq!(r.compression, crate::record::CompressionArg::Zstd);
        assert!(r.persist);
        assert_eq!(r.host_resolvers, ["/a", "/b"]);
    }

    #[test]
    fn the_enforcer_takes_its_policy_from_the_file_unless_given() {
        let config =
            "[enforce]\npolicy = \"/etc/pinhole/policy.toml\"\nmode = \"audit\"\npersist = false\n";
        let cli = merged(config, &["enforce", "--mode", "enforce"]).unwrap();
        let Command::Enforce(e) = cli.command else {
            panic!("not enforce")
        };
        assert_eq!(
            e.policy.as_deref(),
            Some(Path::new("/etc/pinhole/policy.toml"))
        );
        assert_eq!(e.mode, RunMode::Enforce);
        let cli = merged(config, &["enforce", "/tmp/other.toml"]).unwrap();
        let Command::Enforce(e) = cli.command else {
            panic!("not enforce")
        };
        assert_eq!(e.policy.as_deref(), Some(Path::new("/tmp/other.toml")));
        assert_eq!(e.mode, RunMode::Audit);
        // Asking a running enforcer reads no configuration.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[enforce]\nnonsense = 1\n").unwrap();
        let argv: Vec<OsString> = [
            "pinhole",
            "--config",
            path.to_str().unwrap(),
            "enforce",
            "status",
        ]
        .map(OsString::from)
        .to_vec();
        assert_eq!(merged_args(Cli::command(), argv).unwrap().1, None);
    }

    #[test]
    fn problems_are_named_at_their_line_and_column() {
        let e = merged(
            "[record]\nout = \"/d\"\nflush-intervall = \"1s\"\n",
            &["record"],
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("pinhole.toml:3:1: unknown key `flush-intervall` in [record] (the options of `pinhole record`: out, duration, flush-interval,"),
            "{e}"
        );
        let e = merged("[record]\n\nflush-interval = \"0s\"\n", &["record"]).unwrap_err();
        assert!(
            e.to_string().contains("pinhole.toml:3:1: [record] flush-interval: invalid value '0s' for '--flush-interval"),
            "{e}"
        );
        let e = merged("[record]\npersist = \"yes\"\n", &["record"]).unwrap_err();
        assert!(
            e.to_string()
                .contains("pinhole.toml:2:1: [record] persist: a switch: write true or false"),
            "{e}"
        );
        let e = merged("[record]\nout = [\"/a\", \"/b\"]\n", &["record"]).unwrap_err();
        assert!(
            e.to_string()
                .contains("[record] out: takes one value, not an array"),
            "{e}"
        );
        let e = merged("[enforce]\nattach-cgroup = \"/x\"\n", &["enforce"]).unwrap_err();
        assert!(
            e.to_string().contains("unknown key `attach-cgroup`"),
            "hidden options are not settable: {e}"
        );
        let e = merged("[enforce]\nbackend = \"ebpf\"\n", &["enforce"]).unwrap_err();
        assert!(
            e.to_string()
                .contains("pinhole.toml:2:1: [enforce] backend: invalid value 'ebpf'"),
            "{e}"
        );
    }
}
