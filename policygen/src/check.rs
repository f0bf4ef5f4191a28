//! Validation of a policy file: syntax, unknown fields, malformed addresses, prefixes,
//! ports and ranges, duplicate ids and apps, duplicate or shadowed rules, and rules
//! broader than the configured limits. Every problem is reported with its line and
//! column and what was expected; a file with no problem becomes a `Policy`.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::ops::Range;

use ipnet::IpNet;
use toml::Spanned;

use crate::model::{PolicyFile, PortsField, RuleSection, POLICY_VERSION};
use crate::policy::{App, Mode, Policy, PortRange, Protocol, Rule, UnknownAction};

/// One problem in a policy file; `line` and `column` count from 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)
    }
}

/// The widest prefix a rule may allow; anything wider is refused as over-broad.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub min_v4_prefix: u8,
    pub min_v6_prefix: u8,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            min_v4_prefix: 8,
            min_v6_prefix: 32,
        }
    }
}

struct Checker<'a> {
    src: &'a str,
    /// Byte offset where each line starts, so a position costs a binary search.
    line_starts: Vec<usize>,
    diags: Vec<Diagnostic>,
}

impl<'a> Checker<'a> {
    fn new(src: &'a str) -> Self {
        let line_starts = std::iter::once(0)
            .chain(src.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Checker {
            src,
            line_starts,
            diags: Vec::new(),
        }
    }

    /// The 1-based line holding byte `offset`.
    fn line_of(&self, offset: usize) -> usize {
        self.line_starts.partition_point(|&s| s <= offset)
    }

    fn at(&mut self, span: Range<usize>, message: impl Into<String>) {
        let offset = span.start.min(self.src.len());
        let line = self.line_of(offset);
        let column = self.src[self.line_starts[line - 1]..offset].chars().count() + 1;
        // Messages quote the file's text, which may hold control characters.
        let message = pinhole_recorder::printable::printable(&message.into()).into_owned();
        self.diags.push(Diagnostic {
            line,
            column,
            message,
        });
    }
}

/// Validates `src`; on success the policy, else every problem found, in file order.
pub fn check(src: &str, limits: Limits) -> Result<Policy, Vec<Diagnostic>> {
    let mut c = Checker::new(src);
    let file: PolicyFile = match toml::from_str(src) {
        Ok(f) => f,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            c.at(span, e.message().trim().to_owned());
            return Err(c.diags);
        }
    };
    if *file.version.get_ref() != POLICY_VERSION {
        c.at(
            file.version.span(),
            format!(
                "policy version {} is not supported; expected {POLICY_VERSION}",
                file.version.get_ref()
            ),
        );
    }
    let unknown_binary = match file
        .defaults
        .as_ref()
        .and_then(|d| d.get_ref().unknown_binary.as_ref())
    {
        None => UnknownAction::Allow,
        Some(v) => {
            match v.get_ref().as_str() {
                "allow" => UnknownAction::Allow,
                "deny" => UnknownAction::Deny,
                "audit" => UnknownAction::Audit,
                other => {
                    c.at(v.span(), format!("unknown_binary = \"{other}\": expected \"allow\", \"deny\" or \"audit\""));
                    UnknownAction::Allow
                }
            }
        }
    };

    let mut apps = Vec::new();
    let mut ids: HashMap<String, Range<usize>> = HashMap::new();
    let mut hashes: HashSet<[u8; 32]> = HashSet::new();
    for app in &file.apps {
        let a = app.get_ref();
        let sha = parse_sha(&mut c, &a.sha256);
        if let Some(h) = sha {
            if !hashes.insert(h) {
                c.at(
                    a.sha256.span(),
                    format!(
                        "sha256 {} names a second app; each binary has one [[app]]",
                        a.sha256.get_ref()
                    ),
                );
            }
        }
        let mode = match a.mode.as_ref().map(|m| (m.get_ref().as_str(), m.span())) {
            None | Some(("enforce", _)) => Mode::Enforce,
            Some(("audit", _)) => Mode::Audit,
            Some((other, span)) => {
                c.at(
                    span,
                    format!("mode = \"{other}\": expected \"enforce\" or \"audit\""),
                );
                Mode::Enforce
            }
        };
        let rules = rules(&mut c, &a.allow, &mut ids, limits, true);
        let review = rules_of(&mut c, &a.review, &mut ids, limits);
        apps.push(App {
            name: a.name.get_ref().clone(),
            sha256: sha.unwrap_or_default(),
            paths: a.paths.clone(),
            comms: a.comms.clone(),
            mode,
            rules,
            review,
        });
    }
    if c.diags.is_empty() {
        Ok(Policy {
            unknown_binary,
            apps,
        })
    } else {
        c.diags.sort_by_key(|d| (d.line, d.column));
        Err(c.diags)
    }
}

fn parse_sha(c: &mut Checker<'_>, s: &Spanned<String>) -> Option<[u8; 32]> {
    let text = s.get_ref();
    let mut out = [0u8; 32];
    if text.len() == 64
        && hex::decode_to_slice(text, &mut out).is_ok()
        && text.chars().all(|ch| !ch.is_ascii_uppercase())
    {
        Some(out)
    } else {
        c.at(
            s.span(),
            format!("sha256 \"{text}\": expected 64 lowercase hex digits"),
        );
        None
    }
}

fn rules_of(
    c: &mut Checker<'_>,
    items: &[Spanned<RuleSection>],
    ids: &mut HashMap<String, Range<usize>>,
    limits: Limits,
) -> Vec<Rule> {
    rules(c, items, ids, limits, false)
}

/// Parses rules; for allow rules also refuses duplicates and rules another one shadows.
fn rules(
    c: &mut Checker<'_>,
    items: &[Spanned<RuleSection>],
    ids: &mut HashMap<String, Range<usize>>,
    limits: Limits,
    allow: bool,
) -> Vec<Rule> {
    let mut out: Vec<(Rule, Range<usize>)> = Vec::new();
    for item in items {
        let r = item.get_ref();
        let id = r.id.get_ref();
        if id.is_empty()
            || !id
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "-_.:".contains(ch))
        {
            c.at(
                r.id.span(),
                format!("id \"{id}\": expected letters, digits, '-', '_', '.' or ':'"),
            );
        }
        if let Some(first) = ids.get(id).cloned() {
            let line = c.line_of(first.start);
            c.at(
                r.id.span(),
                format!("duplicate rule id \"{id}\" (first used on line {line})"),
            );
        } else {
            ids.insert(id.clone(), r.id.span());
        }
        let protocol = Protocol::parse(r.protocol.get_ref());
        if protocol.is_none() {
            c.at(
                r.protocol.span(),
                format!(
                    "protocol \"{}\": expected \"tcp\", \"udp\" or \"icmp\"",
                    r.protocol.get_ref()
                ),
            );
        }
        let dst = parse_dst(c, &r.dst, limits);
        let ports = parse_ports(c, &r.ports);
        if let (Some(protocol), Some(dst), Some(ports)) = (protocol, dst, ports) {
            let rule = Rule {
                id: id.clone(),
                protocol,
                dst,
                ports,
                evidence: r.evidence.clone(),
            };
            out.push((rule, item.span()));
        }
    }
    if allow {
        report_shadowed(c, &mut out);
    }
    out.into_iter().map(|(r, _)| r).collect()
}

/// Reports, at the covered rule, every allow rule another one makes redundant, and drops it.
fn report_shadowed(c: &mut Checker<'_>, out: &mut Vec<(Rule, Range<usize>)>) {
    let rules: Vec<Rule> = out.iter().map(|(r, _)| r.clone()).collect();
    let shadowed = crate::shadow::find(&rules);
    for s in &shadowed {
        let (rule, other) = (&rules[s.covered], &rules[s.by]);
        let what = if rule.covers(other) {
            "duplicates"
        } else {
            "is shadowed by"
        };
        c.at(
            out[s.covered].1.clone(),
            format!(
                "rule \"{}\" {what} rule \"{}\" ({} {} port {})",
                rule.id,
                other.id,
                other.protocol.as_str(),
                other.dst,
                other.ports
            ),
        );
    }
    let mut keep = vec![true; out.len()];
    shadowed.iter().for_each(|s| keep[s.covered] = false);
    let mut flags = keep.into_iter();
    out.retain(|_| flags.next().unwrap_or(true));
}

/// An address (a /32 or /128) or a prefix, canonical, and no wider than the limits.
fn parse_dst(c: &mut Checker<'_>, s: &Spanned<String>, limits: Limits) -> Option<IpNet> {
    let text = s.get_ref();
    let net = match text.parse::<IpNet>() {
        Ok(n) => n,
        Err(_) => match text.parse::<IpAddr>() {
            Ok(a) => IpNet::from(a),
            Err(_) => {
                c.at(s.span(), format!("dst \"{text}\": expected an IP address or prefix, e.g. \"192.0.2.10\", \"10.1.0.0/16\" or \"2001:db8::/48\""));
                return None;
            }
        },
    };
    if let IpNet::V6(v6) = net {
        if v6.addr().to_ipv4_mapped().is_some() {
            c.at(s.span(), format!("dst \"{text}\": write IPv4-mapped addresses in IPv4 form (events are matched on the IPv4 address)"));
            return None;
        }
    }
    if net.trunc() != net {
        c.at(
            s.span(),
            format!(
                "dst \"{text}\" has host bits set: expected \"{}\"",
                net.trunc()
            ),
        );
        return None;
    }
    let (min, family) = if net.addr().is_ipv4() {
        (limits.min_v4_prefix, "IPv4")
    } else {
        (limits.min_v6_prefix, "IPv6")
    };
    if net.prefix_len() < min {
        c.at(
            s.span(),
            format!("dst \"{text}\" is over-broad: {family} prefixes must be /{min} or longer"),
        );
        return None;
    }
    Some(net)
}

fn parse_ports(c: &mut Checker<'_>, s: &Spanned<PortsField>) -> Option<PortRange> {
    // Port 0 is real: ping (ICMP) sockets pass the connect hooks with it.
    let port = |v: i64| u16::try_from(v).ok();
    let parsed = match s.get_ref() {
        PortsField::One(v) => port(*v).map(|p| PortRange { lo: p, hi: p }),
        PortsField::Text(t) => {
            let (lo, hi) = t.split_once('-').unwrap_or((t, t));
            match (
                lo.trim().parse::<i64>().ok().and_then(port),
                hi.trim().parse::<i64>().ok().and_then(port),
            ) {
                (Some(lo), Some(hi)) if lo <= hi => Some(PortRange { lo, hi }),
                _ => None,
            }
        }
    };
    if parsed.is_none() {
        let shown = match s.get_ref() {
            PortsField::One(v) => v.to_string(),
            PortsField::Text(t) => format!("\"{t}\""),
        };
        c.at(
            s.span(),
            format!("ports {shown}: expected a port 0-65535 or a range \"lo-hi\" with lo <= hi"),
        );
    }
    parsed
}
