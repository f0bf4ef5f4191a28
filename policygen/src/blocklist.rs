//! Blocklist files a policy imports into its deny lists (`[[deny]] file = ...`), in
//! the two formats such lists are published in:
//!
//! - `hosts`: hosts-file lines, `0.0.0.0 ads.example.com tracker.example.com`; each
//!   name after the address is denied exactly. Local names (`localhost`,
//!   `broadcasthost`, ...) are skipped.
//! - `domains`: one domain per line (an optional leading `*.` is accepted); each is
//!   denied with every name under it.
//!
//! `#` starts a comment in both. A bad line is a problem of the policy, reported with
//! the file and line.

use std::path::Path;

use crate::check::Diagnostic;
use crate::names::canonical_name;
use crate::policy::{DenyKind, Policy};

/// Problems reported per file before the rest are only counted.
const MAX_REPORTED: usize = 20;

/// The largest blocklist read: the biggest public lists are tens of megabytes.
const MAX_FILE_BYTES: u64 = 256 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlocklistFormat {
    Hosts,
    Domains,
}

impl BlocklistFormat {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "hosts" => Some(BlocklistFormat::Hosts),
            "domains" => Some(BlocklistFormat::Domains),
            _ => None,
        }
    }
}

/// A `file` deny entry found by `check`, imported by `import`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DenyFileRef {
    pub path: String,
    pub format: BlocklistFormat,
    /// The app whose list it extends (an index into `Policy::apps`); None: the policy's.
    pub app: Option<usize>,
    /// Its source in that list.
    pub source: u32,
    /// Where the entry's `file` is in the policy file.
    pub line: usize,
    pub column: usize,
}

/// Names hosts files map that are the machine's own, not something to deny.
const LOCAL_NAMES: [&str; 9] = [
    "localhost",
    "localhost.localdomain",
    "local",
    "broadcasthost",
    "ip6-localhost",
    "ip6-loopback",
    "ip6-localnet",
    "ip6-allnodes",
    "ip6-allrouters",
];

/// A blocklist's entries: how each matches, and its canonical name.
pub type Entries = Vec<(DenyKind, String)>;

/// The entries of a blocklist's text; problems as (line, what).
pub fn parse(text: &str, format: BlocklistFormat) -> Result<Entries, Vec<(usize, String)>> {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut fields = line.split_whitespace();
        let (kind, names): (DenyKind, Vec<&str>) = match format {
            BlocklistFormat::Hosts => {
                let addr = fields.next().unwrap_or("");
                if addr.parse::<std::net::IpAddr>().is_err() {
                    problems.push((
                        i + 1,
                        format!("\"{addr}\": expected an address then names (hosts format)"),
                    ));
                    continue;
                }
                let names = fields.filter(|n| !LOCAL_NAMES.contains(n)).collect();
                (DenyKind::Host, names)
            }
            BlocklistFormat::Domains => {
                let names: Vec<&str> = fields.collect();
                if names.len() != 1 {
                    problems.push((
                        i + 1,
                        "expected one domain per line (domains format)".into(),
                    ));
                    continue;
                }
                let name = names[0].strip_prefix("*.").unwrap_or(names[0]);
                (DenyKind::Suffix, vec![name])
            }
        };
        for name in names {
            match canonical_name(name) {
                Ok(n) => out.push((kind, n)),
                Err(why) => problems.push((i + 1, format!("\"{name}\": {why}"))),
            }
        }
    }
    match problems.is_empty() {
        true => Ok(out),
        false => Err(problems),
    }
}

/// Reads every blocklist `check` found into its deny list; `base` is the directory
/// relative paths are read from (the policy file's). Problems are reported at the
/// entry's `file` in the policy.
pub fn import(policy: &mut Policy, base: &Path) -> Result<(), Vec<Diagnostic>> {
    let mut diags = Vec::new();
    for f in std::mem::take(&mut policy.deny_files) {
        let at = |message: String| Diagnostic {
            line: f.line,
            column: f.column,
            message: pinhole_recorder::printable::printable(&message).into_owned(),
        };
        let path = base.join(&f.path);
        let text = match pinhole_recorder::regular::read_text(&path, MAX_FILE_BYTES) {
            Ok(t) => t,
            Err(e) => {
                diags.push(at(format!("file \"{}\": {e}", f.path)));
                continue;
            }
        };
        let entries = match parse(&text, f.format) {
            Ok(e) => e,
            Err(problems) => {
                for (line, what) in problems.iter().take(MAX_REPORTED) {
                    diags.push(at(format!("file \"{}\" line {line}: {what}", f.path)));
                }
                if problems.len() > MAX_REPORTED {
                    let more = problems.len() - MAX_REPORTED;
                    diags.push(at(format!("file \"{}\": {more} more bad lines", f.path)));
                }
                continue;
            }
        };
        let list = match f.app {
            Some(i) => &mut policy.apps[i].deny,
            None => &mut policy.deny,
        };
        for (kind, name) in entries {
            list.add(kind, name, f.source);
        }
    }
    match diags.is_empty() {
        true => Ok(()),
        false => Err(diags),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_lines_deny_their_names_exactly() {
        let text = "# a list\n0.0.0.0 ads.example.com Tracker.Example.com # two\n\n127.0.0.1 localhost\n:: ip6-localhost\n";
        let got = parse(text, BlocklistFormat::Hosts).unwrap();
        assert_eq!(
            got,
            [
                (DenyKind::Host, "ads.example.com".to_string()),
                (DenyKind::Host, "tracker.example.com".to_string())
            ]
        );
    }

    #[test]
    fn domain_lines_deny_their_subtrees() {
        let got = parse("example.net\n*.ads.example.org\n", BlocklistFormat::Domains).unwrap();
        assert_eq!(
            got,
            [
                (DenyKind::Suffix, "example.net".to_string()),
                (DenyKind::Suffix, "ads.example.org".to_string())
            ]
        );
    }

    #[test]
    fn bad_lines_are_reported_by_number() {
        let e = parse(
            "ok.example\nnot an entry\nbad..name\n",
            BlocklistFormat::Domains,
        )
        .unwrap_err();
        assert_eq!(e.iter().map(|(l, _)| *l).collect::<Vec<_>>(), [2, 3]);
        let e = parse("ads.example.com\n", BlocklistFormat::Hosts).unwrap_err();
        assert!(e[0].1.contains("expected an address"), "{e:?}");
    }
}
