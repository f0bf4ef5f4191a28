//! Compares two policies by meaning: apps (by hash) added or removed, mode changes, and
//! rules added, removed, widened or narrowed, whatever their ids.

use serde::Serialize;

use crate::policy::{App, Mode, Policy, Rule, UnknownAction};

#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct PolicyDiff {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unknown_binary: Option<(String, String)>,
    pub apps_added: Vec<String>,
    pub apps_removed: Vec<String>,
    pub apps_changed: Vec<AppDiff>,
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
}

impl PolicyDiff {
    pub fn is_empty(&self) -> bool {
        *self == PolicyDiff::default()
    }
}

fn show(r: &Rule) -> String {
    format!(
        "{} {} port {} ({})",
        r.protocol.as_str(),
        r.dst,
        r.ports,
        r.id
    )
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

fn same(a: &Rule, b: &Rule) -> bool {
    a.protocol == b.protocol && a.dst == b.dst && a.ports == b.ports
}

fn app_diff(old: &App, new: &App) -> AppDiff {
    let mut d = AppDiff {
        app: app_label(new),
        ..Default::default()
    };
    if old.mode != new.mode {
        d.mode = Some((mode(old.mode), mode(new.mode)));
    }
    let mut old_used = vec![false; old.rules.len()];
    for n in &new.rules {
        if let Some(i) = old.rules.iter().position(|o| same(o, n)) {
            old_used[i] = true;
            continue;
        }
        let wider: Vec<usize> = (0..old.rules.len())
            .filter(|&i| n.covers(&old.rules[i]))
            .collect();
        let narrower = old.rules.iter().position(|o| o.covers(n));
        if !wider.is_empty() {
            for i in wider {
                old_used[i] = true;
                d.widened.push((show(&old.rules[i]), show(n)));
            }
        } else if let Some(i) = narrower {
            old_used[i] = true;
            d.narrowed.push((show(&old.rules[i]), show(n)));
        } else {
            d.added.push(show(n));
        }
    }
    d.removed = old
        .rules
        .iter()
        .zip(old_used)
        .filter(|(_, used)| !used)
        .map(|(r, _)| show(r))
        .collect();
    d
}

pub fn diff(old: &Policy, new: &Policy) -> PolicyDiff {
    let mut out = PolicyDiff::default();
    if old.unknown_binary != new.unknown_binary {
        out.unknown_binary = Some((unknown(old.unknown_binary), unknown(new.unknown_binary)));
    }
    for n in &new.apps {
        match old.apps.iter().find(|o| o.sha256 == n.sha256) {
            None => out.apps_added.push(app_label(n)),
            Some(o) => {
                let d = app_diff(o, n);
                if d.mode.is_some()
                    || !(d.added.is_empty()
                        && d.removed.is_empty()
                        && d.widened.is_empty()
                        && d.narrowed.is_empty())
                {
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
    }
    if s.is_empty() {
        s.push_str("no changes in meaning\n");
    }
    s
}
