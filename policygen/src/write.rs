//! Writes a policy as TOML for a human reviewer: stable order and layout, so the same
//! policy gives the same bytes and diffs well in git.

use std::fmt::Write;

use crate::model::POLICY_VERSION;
use crate::policy::{Mode, Policy, Rule, UnknownAction};

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

fn rule(out: &mut String, table: &str, r: &Rule, reason: Option<&str>) {
    let _ = writeln!(out, "\n[[app.{table}]]");
    let _ = writeln!(out, "id = {}", quoted(&r.id));
    let _ = writeln!(out, "protocol = {}", quoted(r.protocol.as_str()));
    let dst = if r.dst.prefix_len() == r.dst.max_prefix_len() {
        r.dst.addr().to_string()
    } else {
        r.dst.to_string()
    };
    let _ = writeln!(out, "dst = {}", quoted(&dst));
    if r.ports.lo == r.ports.hi {
        let _ = writeln!(out, "ports = {}", r.ports.lo);
    } else {
        let _ = writeln!(out, "ports = {}", quoted(&r.ports.to_string()));
    }
    if let Some(e) = &r.evidence {
        let _ = writeln!(
            out,
            "evidence = {{ events = {}, first_seen = {}, last_seen = {}, days = {} }}",
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

/// The policy as TOML, with `header` lines written as comments at the top.
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
    for app in &p.apps {
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
        for r in &app.rules {
            rule(&mut out, "allow", r, None);
        }
        for r in &app.review {
            rule(
                &mut out,
                "review",
                r,
                Some("below minimum support, or beyond the rule limit: review before allowing"),
            );
        }
    }
    out
}
