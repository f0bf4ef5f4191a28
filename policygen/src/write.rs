//! Writes a policy as TOML for a human reviewer: stable order and layout, so the same
//! policy gives the same bytes and diffs well in git.

use std::fmt::Write;

use crate::dns_evidence::Lifetime;
use crate::model::{Evidence, POLICY_VERSION};
use crate::policy::{App, Mode, NameRule, Policy, PortRange, Protocol, Rule, UnknownAction};
use crate::rule_scope::RuleScope;

/// The reason written for a review entry that has none of its own.
pub const GENERIC_REVIEW_REASON: &str =
    "below minimum support, or beyond the rule limit: review before allowing";

/// A TOML basic string.
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Where a rule's destination is: `dst = "..."` or `host = "..."`.
enum Target {
    Dst(String),
    Host(String),
}

struct RuleText<'a> {
    id: &'a str,
    protocol: Protocol,
    target: Target,
    ports: PortRange,
    scope: &'a RuleScope,
    evidence: Option<&'a Evidence>,
}

impl<'a> From<&'a Rule> for RuleText<'a> {
    fn from(r: &'a Rule) -> Self {
        let dst = if r.dst.prefix_len() == r.dst.max_prefix_len() {
            r.dst.addr().to_string()
        } else {
            r.dst.to_string()
        };
        RuleText {
            id: &r.id,
            protocol: r.protocol,
            target: Target::Dst(dst),
            ports: r.ports,
            scope: &r.scope,
            evidence: r.evidence.as_ref(),
        }
    }
}

impl<'a> From<&'a NameRule> for RuleText<'a> {
    fn from(r: &'a NameRule) -> Self {
        RuleText {
            id: &r.id,
            protocol: r.protocol,
            target: Target::Host(r.host.to_string()),
            ports: r.ports,
            scope: &r.scope,
            evidence: r.evidence.as_ref(),
        }
    }
}

/// A rule's scope keys; its cgroup only where it is not the app's.
fn scope(out: &mut String, s: &RuleScope, app_cgroup: Option<&str>) {
    let list = |ids: &[u32]| {
        ids.iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !s.uids.is_empty() {
        let _ = writeln!(out, "uids = [{}]", list(&s.uids));
    }
    if !s.gids.is_empty() {
        let _ = writeln!(out, "gids = [{}]", list(&s.gids));
    }
    if let Some(c) = s.cgroup.as_deref().filter(|&c| Some(c) != app_cgroup) {
        let _ = writeln!(out, "cgroup = {}", quoted(c));
    }
    if let Some(e) = &s.expires {
        let _ = writeln!(out, "expires = {}", quoted(&e.text));
    }
}

fn rule(
    out: &mut String,
    table: &str,
    r: RuleText<'_>,
    reason: Option<&str>,
    app_cgroup: Option<&str>,
) {
    let _ = writeln!(out, "\n[[app.{table}]]");
    let _ = writeln!(out, "id = {}", quoted(r.id));
    let _ = writeln!(out, "protocol = {}", quoted(r.protocol.as_str()));
    match &r.target {
        Target::Dst(d) => writeln!(out, "dst = {}", quoted(d)),
        Target::Host(h) => writeln!(out, "host = {}", quoted(h)),
    }
    .ok();
    if r.ports.lo == r.ports.hi {
        let _ = writeln!(out, "ports = {}", r.ports.lo);
    } else {
        let _ = writeln!(out, "ports = {}", quoted(&r.ports.to_string()));
    }
    scope(out, r.scope, app_cgroup);
    if let Some(e) = r.evidence {
        let source = e
            .source
            .as_ref()
            .map_or(String::new(), |s| format!(", source = {}", quoted(s)));
        let _ = writeln!(
            out,
            "evidence = {{ events = {}, first_seen = {}, last_seen = {}, days = {}{source} }}",
            e.events,
            quoted(&e.first_seen),
            quoted(&e.last_seen),
            e.days
        );
    }
    if let Some(reason) = reason {
        let _ = writeln!(out, "reason = {}", quoted(reason));
    }
}

/// The policy as TOML, with `header` lines written as comments at the top. Deny lists
/// are not written: they are the owner's (hand-written or imported), never generated.
pub fn to_toml(p: &Policy, header: &[String]) -> String {
    let mut out = String::new();
    for h in header {
        let _ = writeln!(out, "# {h}");
    }
    let _ = writeln!(out, "version = {POLICY_VERSION}\n\n[defaults]");
    let unknown = match p.unknown_binary {
        UnknownAction::Allow => "allow",
        UnknownAction::Deny => "deny",
        UnknownAction::Audit => "audit",
    };
    let _ = writeln!(
        out,
        "# Binaries this policy does not name: allow, deny or audit.\nunknown_binary = {}",
        quoted(unknown)
    );
    if p.names.scope != Default::default() {
        let _ = writeln!(out, "dns_scope = {}", quoted(p.names.scope.as_str()));
    }
    if p.names.lifetime != Lifetime::default() {
        let l = p.names.lifetime;
        let _ = writeln!(out, "dns_min_ttl = {}\ndns_grace = {}", l.min_ttl, l.grace);
    }
    for app in &p.apps {
        out.push_str(&app_text(app));
    }
    out
}

/// One app's section: its `[[app]]` header and keys, then its rules.
pub fn app_text(app: &App) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n[[app]]\nname = {}\nsha256 = {}",
        quoted(&app.name),
        quoted(&hex::encode(app.sha256))
    );
    let paths: Vec<String> = app.paths.iter().map(|s| quoted(s)).collect();
    let _ = writeln!(out, "paths = [{}]", paths.join(", "));
    let comms: Vec<String> = app.comms.iter().map(|s| quoted(s)).collect();
    let _ = writeln!(out, "comms = [{}]", comms.join(", "));
    let mode = match app.mode {
        Mode::Enforce => "enforce",
        Mode::Audit => "audit",
    };
    let _ = writeln!(out, "mode = {}", quoted(mode));
    if let Some(scope) = app.dns_scope {
        let _ = writeln!(out, "dns_scope = {}", quoted(scope.as_str()));
    }
    if let Some(cgroup) = &app.cgroup {
        let _ = writeln!(out, "cgroup = {}", quoted(cgroup));
    }
    out.push_str(&rules_text(app));
    out
}

/// An app's rules as `[[app.allow]]` and `[[app.review]]` tables (names first), each
/// review entry with its reason.
pub fn rules_text(app: &App) -> String {
    let mut out = String::new();
    let why = |id: &str| {
        app.review_reasons
            .get(id)
            .map_or(GENERIC_REVIEW_REASON, String::as_str)
    };
    let cg = app.cgroup.as_deref();
    for r in &app.name_rules {
        rule(&mut out, "allow", r.into(), None, cg);
    }
    for r in &app.rules {
        rule(&mut out, "allow", r.into(), None, cg);
    }
    for r in &app.name_review {
        rule(&mut out, "review", r.into(), Some(why(&r.id)), cg);
    }
    for r in &app.review {
        rule(&mut out, "review", r.into(), Some(why(&r.id)), cg);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::{check, Limits};

    #[test]
    fn name_rules_and_dns_settings_survive_a_round_trip() {
        let src = "version = 1\n[defaults]\ndns_scope = \"host\"\ndns_min_ttl = 5\ndns_grace = 0\n\
                   [[app]]\nname = \"x\"\nsha256 = \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"\ndns_scope = \"app\"\n\
                   [[app.allow]]\nid = \"n\"\nprotocol = \"tcp\"\nhost = \"*.example.com\"\nports = \"80-443\"\n\
                   evidence = { events = 3, first_seen = \"a\", last_seen = \"b\", days = 1, source = \"dns\" }\n\
                   [[app.allow]]\nid = \"d\"\nprotocol = \"udp\"\ndst = \"10.0.0.0/8\"\nports = 53\n\
                   [[app.review]]\nid = \"r\"\nprotocol = \"tcp\"\nhost = \"rare.example.org\"\nports = 1\n";
        let p = check(src, Limits::default()).unwrap();
        let again = check(&to_toml(&p, &[]), Limits::default()).unwrap();
        assert_eq!(again, p);
        assert_eq!(
            again.apps[0].name_rules[0]
                .evidence
                .as_ref()
                .unwrap()
                .source
                .as_deref(),
            Some("dns")
        );
    }

    #[test]
    fn scopes_survive_a_round_trip() {
        let src = "version = 1\n[[app]]\nname = \"x\"\nsha256 = \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"\ncgroup = \"/system.slice/x.service\"\n\
                   [[app.allow]]\nid = \"a\"\nprotocol = \"tcp\"\ndst = \"10.0.0.1\"\nports = 443\nuids = [0, 33]\ngids = [33]\nexpires = \"2027-01-31T00:00:00Z\"\n\
                   [[app.allow]]\nid = \"b\"\nprotocol = \"tcp\"\nhost = \"example.com\"\nports = 443\ncgroup = \"/user.slice\"\n";
        let p = check(src, Limits::default()).unwrap();
        let a = &p.apps[0];
        assert_eq!(
            a.rules[0].scope.cgroup.as_deref(),
            Some("/system.slice/x.service")
        );
        assert_eq!(a.rules[0].scope.uids, vec![0, 33]);
        assert_eq!(a.name_rules[0].scope.cgroup.as_deref(), Some("/user.slice"));
        let text = to_toml(&p, &[]);
        assert_eq!(text.matches("cgroup = ").count(), 2, "{text}");
        assert_eq!(check(&text, Limits::default()).unwrap(), p);
    }
}
