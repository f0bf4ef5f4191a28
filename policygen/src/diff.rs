//! Compares two policies by meaning: apps (by hash) added or removed, mode changes,
//! rules (by address or by name) added, removed, widened or narrowed, whatever their
//! ids, deny entries added or removed, and how DNS answers are used.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::policy::{App, DenyList, Mode, NameRule, Policy, Rule, UnknownAction};

#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct PolicyDiff {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unknown_binary: Option<(String, String)>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns: Option<(String, String)>,
    pub apps_added: Vec<String>,
    pub apps_removed: Vec<String>,
    pub apps_changed: Vec<AppDiff>,
    pub deny_added: Vec<String>,
    pub deny_removed: Vec<String>,
}

#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct AppDiff {
    pub app: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<(String, String)>,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// (old rule, new rule): the new one allows everything the old did, and more.
    pub widened: Vec<(String, String)>,
    /// (old rule, new rule): the old one allowed everything the new does, and more.
    pub narrowed: Vec<(String, String)>,
    pub deny_added: Vec<String>,
    pub deny_removed: Vec<String>,
}

impl AppDiff {
    fn is_empty(&self) -> bool {
        self.mode.is_none()
            && self.added.is_empty()
            && self.removed.is_empty()
            && self.widened.is_empty()
            && self.narrowed.is_empty()
            && self.deny_added.is_empty()
            && self.deny_removed.is_empty()
    }
}

/// What the comparison needs of a rule, by address or by name.
trait Compared {
    fn same(&self, o: &Self) -> bool;
    fn covers(&self, o: &Self) -> bool;
    fn show(&self) -> String;
}

impl Compared for Rule {
    fn same(&self, o: &Self) -> bool {
        self.protocol == o.protocol
            && self.dst == o.dst
            && self.ports == o.ports
            && self.scope == o.scope
    }
    fn covers(&self, o: &Self) -> bool {
        Rule::covers(self, o)
    }
    fn show(&self) -> String {
        format!(
            "{} {} port {}{} ({})",
            self.protocol.as_str(),
            self.dst,
            self.ports,
            self.scope.describe(),
            self.id
        )
    }
}

impl Compared for NameRule {
    fn same(&self, o: &Self) -> bool {
        self.protocol == o.protocol
            && self.host == o.host
            && self.ports == o.ports
            && self.scope == o.scope
    }
    fn covers(&self, o: &Self) -> bool {
        NameRule::covers(self, o)
    }
    fn show(&self) -> String {
        format!(
            "{} {} port {}{} ({})",
            self.protocol.as_str(),
            self.host,
            self.ports,
            self.scope.describe(),
            self.id
        )
    }
}

/// Deny entries of `new` not in `old`, and of `old` not in `new`, as text.
fn deny_diff(old: &DenyList, new: &DenyList) -> (Vec<String>, Vec<String>) {
    let set = |l: &DenyList| -> BTreeSet<String> {
        l.entries()
            .map(|(kind, name, _)| format!("deny {} {name}", kind.as_str()))
            .collect()
    };
    let (o, n) = (set(old), set(new));
    (
        n.difference(&o).cloned().collect(),
        o.difference(&n).cloned().collect(),
    )
}

impl PolicyDiff {
    pub fn is_empty(&self) -> bool {
        *self == PolicyDiff::default()
    }
}

fn app_label(a: &App) -> String {
    format!("{} (sha256 {})", a.name, &hex::encode(a.sha256)[..12])
}

fn mode(m: Mode) -> String {
    match m {
        Mode::Enforce => "enforce",
        Mode::Audit => "audit",
    }
    .into()
}

fn unknown(u: UnknownAction) -> String {
    match u {
        UnknownAction::Allow => "allow",
        UnknownAction::Deny => "deny",
        UnknownAction::Audit => "audit",
    }
    .into()
}

fn app_diff(old: &App, new: &App) -> AppDiff {
    let mut d = AppDiff {
        app: app_label(new),
        ..Default::default()
    };
    if old.mode != new.mode {
        d.mode = Some((mode(old.mode), mode(new.mode)));
    }
    rules_diff(&old.name_rules, &new.name_rules, &mut d);
    rules_diff(&old.rules, &new.rules, &mut d);
    (d.deny_added, d.deny_removed) = deny_diff(&old.deny, &new.deny);
    d
}

fn rules_diff<R: Compared>(old: &[R], new: &[R], d: &mut AppDiff) {
    let mut old_used = vec![false; old.len()];
    for n in new {
        if let Some(i) = old.iter().position(|o| o.same(n)) {
            old_used[i] = true;
            continue;
        }
        let wider: Vec<usize> = (0..old.len()).filter(|&i| n.covers(&old[i])).collect();
        let narrower = old.iter().position(|o| o.covers(n));
        if !wider.is_empty() {
            for i in wider {
                old_used[i] = true;
                d.widened.push((old[i].show(), n.show()));
            }
        } else if let Some(i) = narrower {
            old_used[i] = true;
            d.narrowed.push((old[i].show(), n.show()));
        } else {
            d.added.push(n.show());
        }
    }
    d.removed.extend(
        old.iter()
            .zip(old_used)
            .filter(|(_, used)| !used)
            .map(|(r, _)| r.show()),
    );
}

fn dns(p: &Policy) -> String {
    let n = p.names;
    format!(
        "scope {}, min ttl {} s, grace {} s",
        n.scope.as_str(),
        n.lifetime.min_ttl,
        n.lifetime.grace
    )
}

pub fn diff(old: &Policy, new: &Policy) -> PolicyDiff {
    let mut out = PolicyDiff::default();
    if old.unknown_binary != new.unknown_binary {
        out.unknown_binary = Some((unknown(old.unknown_binary), unknown(new.unknown_binary)));
    }
    if old.names != new.names {
        out.dns = Some((dns(old), dns(new)));
    }
    (out.deny_added, out.deny_removed) = deny_diff(&old.deny, &new.deny);
    for n in &new.apps {
        match old.apps.iter().find(|o| o.sha256 == n.sha256) {
            None => out.apps_added.push(app_label(n)),
            Some(o) => {
                let d = app_diff(o, n);
                if !d.is_empty() {
                    out.apps_changed.push(d);
                }
            }
        }
    }
    out.apps_removed = old
        .apps
        .iter()
        .filter(|o| !new.apps.iter().any(|n| n.sha256 == o.sha256))
        .map(app_label)
        .collect();
    out
}

/// Plain-text rendering: one line per change.
pub fn to_text(d: &PolicyDiff) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    if let Some((a, b)) = &d.unknown_binary {
        let _ = writeln!(s, "~ unknown_binary: {a} -> {b}");
    }
    if let Some((a, b)) = &d.dns {
        let _ = writeln!(s, "~ dns: {a} -> {b}");
    }
    for e in &d.deny_added {
        let _ = writeln!(s, "+ {e}");
    }
    for e in &d.deny_removed {
        let _ = writeln!(s, "- {e}");
    }
    for a in &d.apps_added {
        let _ = writeln!(s, "+ app {a}");
    }
    for a in &d.apps_removed {
        let _ = writeln!(s, "- app {a}");
    }
    for a in &d.apps_changed {
        let _ = writeln!(s, "~ app {}", a.app);
        if let Some((x, y)) = &a.mode {
            let _ = writeln!(s, "    mode: {x} -> {y}");
        }
        for r in &a.added {
            let _ = writeln!(s, "    + {r}");
        }
        for r in &a.removed {
            let _ = writeln!(s, "    - {r}");
        }
        for (x, y) in &a.widened {
            let _ = writeln!(s, "    widened: {x} -> {y}");
        }
        for (x, y) in &a.narrowed {
            let _ = writeln!(s, "    narrowed: {x} -> {y}");
        }
        for e in &a.deny_added {
            let _ = writeln!(s, "    + {e}");
        }
        for e in &a.deny_removed {
            let _ = writeln!(s, "    - {e}");
        }
    }
    if s.is_empty() {
        s.push_str("no changes in meaning\n");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::{check, Limits};

    const SHA: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    fn policy(defaults: &str, deny: &str, rules: &str) -> Policy {
        let src = format!(
            "version = 1\n[defaults]\n{defaults}\n{deny}\n[[app]]\nname = \"x\"\nsha256 = \"{SHA}\"\n{rules}"
        );
        check(&src, Limits::default()).unwrap()
    }

    fn host(id: &str, host: &str) -> String {
        format!(
            "[[app.allow]]\nid = \"{id}\"\nprotocol = \"tcp\"\nhost = \"{host}\"\nports = 443\n"
        )
    }

    #[test]
    fn name_rules_deny_entries_and_dns_settings_are_compared_by_meaning() {
        let old = policy(
            "",
            "[[deny]]\nsuffix = \"ads.example\"\n",
            &(host("a", "api.example.com") + &host("b", "old.example.org")),
        );
        let new = policy(
            "dns_scope = \"host\"",
            "[[deny]]\nid = \"renamed\"\nsuffix = \"ads.example\"\n[[deny]]\nhost = \"t.example\"\n",
            &(host("w", "*.example.com")
                + &host("n", "new.example.org")
                + "[[app.deny]]\nprefix = \"telemetry.\"\n"),
        );
        let text = to_text(&diff(&old, &new));
        assert_eq!(
            text,
            "~ dns: scope app, min ttl 60 s, grace 300 s -> scope host, min ttl 60 s, grace 300 s\n\
             + deny host t.example\n\
             ~ app x (sha256 aaaaaaaaaaaa)\n    \
             + tcp new.example.org port 443 (n)\n    \
             - tcp old.example.org port 443 (b)\n    \
             widened: tcp api.example.com port 443 (a) -> tcp *.example.com port 443 (w)\n    \
             + deny prefix telemetry.\n"
        );
        assert!(diff(&new, &new).is_empty());
    }

    #[test]
    fn scope_changes_are_widenings_narrowings_or_changes() {
        let rule = |id: &str, scope: &str| {
            let port = 22 + id.as_bytes()[0] - b'a';
            format!("[[app.allow]]\nid = \"{id}\"\nprotocol = \"tcp\"\ndst = \"10.0.0.1\"\nports = {port}\n{scope}\n")
        };
        let old = policy(
            "",
            "",
            &(rule("a", "uids = [0]")
                + &rule("b", "")
                + &rule("c", "expires = \"2027-01-01T00:00:00Z\"")),
        );
        let new = policy(
            "",
            "",
            &(rule("a", "")
                + &rule("b", "cgroup = \"/system.slice/ssh.service\"")
                + &rule("c", "expires = \"2027-02-01T00:00:00Z\"")),
        );
        let text = to_text(&diff(&old, &new));
        assert!(
            text.contains(
                "widened: tcp 10.0.0.1/32 port 22 for uid 0 (a) -> tcp 10.0.0.1/32 port 22 (a)"
            ),
            "{text}"
        );
        assert!(
            text.contains("narrowed: tcp 10.0.0.1/32 port 23 (b) -> tcp 10.0.0.1/32 port 23 in /system.slice/ssh.service (b)"),
            "{text}"
        );
        assert!(
            text.contains("widened: tcp 10.0.0.1/32 port 24 until 2027-01-01T00:00:00Z (c) -> tcp 10.0.0.1/32 port 24 until 2027-02-01T00:00:00Z (c)"),
            "{text}"
        );
    }
}
