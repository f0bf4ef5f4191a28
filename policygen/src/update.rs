//! `policy update`: what the trail justifies since a policy was made, proposed as
//! additions to its file: rules for what its apps were refused (or reached) with
//! enough support, new apps, and new versions of known apps (other bytes under a path
//! one of its apps has). Every existing rule, id, review entry, deny entry and comment
//! stays as written: additions are inserted as text at the end of each app's section
//! (`[[app.allow]]` tables belong to the last `[[app]]` above them), new apps at the end.

use std::collections::BTreeSet;

use pinhole_analyze::summary::Summary;

use crate::generate::{generate, Knobs};
use crate::pieces::headers;
use crate::policy::{App, NameRule, Policy, Rule};
use crate::write::{app_text, rules_text};

/// The updated policy's text and what was added, for people.
pub struct Update {
    pub text: String,
    pub notes: Vec<String>,
    /// Rules and review entries added to existing apps, and apps added.
    pub rules_added: usize,
    pub apps_added: usize,
}

fn uncovered<'a>(new: &'a [Rule], old: &[&[Rule]]) -> Vec<&'a Rule> {
    new.iter()
        .filter(|r| !old.iter().any(|list| list.iter().any(|o| o.covers(r))))
        .collect()
}

fn uncovered_names<'a>(new: &'a [NameRule], old: &[&[NameRule]]) -> Vec<&'a NameRule> {
    new.iter()
        .filter(|r| !old.iter().any(|list| list.iter().any(|o| o.covers(r))))
        .collect()
}

/// An id not used in the policy yet (ids are unique across it).
fn fresh_id(id: &str, used: &mut BTreeSet<String>) -> String {
    let mut candidate = id.to_owned();
    let mut n = 1;
    while used.contains(&candidate) {
        candidate = format!("{id}-u{n}");
        n += 1;
    }
    used.insert(candidate.clone());
    candidate
}

/// What `candidate` (generated from the trail) adds to `old`, as an app holding only
/// the additions (allow rules with support, the rest for review, with why).
fn additions(old: &App, candidate: &App, used: &mut BTreeSet<String>) -> App {
    let mut add = App {
        name: old.name.clone(),
        sha256: old.sha256,
        ..Default::default()
    };
    let (rules, review) = (&old.rules[..], &old.review[..]);
    for r in uncovered(&candidate.rules, &[rules, review]) {
        add.rules.push(Rule {
            id: fresh_id(&r.id, used),
            ..r.clone()
        });
    }
    for r in uncovered(&candidate.review, &[rules, review]) {
        let id = fresh_id(&r.id, used);
        if let Some(why) = candidate.review_reasons.get(&r.id) {
            add.review_reasons.insert(id.clone(), why.clone());
        }
        add.review.push(Rule { id, ..r.clone() });
    }
    let (names, name_review) = (&old.name_rules[..], &old.name_review[..]);
    for r in uncovered_names(&candidate.name_rules, &[names, name_review]) {
        add.name_rules.push(NameRule {
            id: fresh_id(&r.id, used),
            ..r.clone()
        });
    }
    for r in uncovered_names(&candidate.name_review, &[names, name_review]) {
        add.name_review.push(NameRule {
            id: fresh_id(&r.id, used),
            ..r.clone()
        });
    }
    add
}

fn count(a: &App) -> usize {
    a.rules.len() + a.review.len() + a.name_rules.len() + a.name_review.len()
}

/// Proposes the additions `summary` (the trail since the policy was made, refusals
/// included) justifies to the policy `old`, whose text is `src`.
pub fn update(src: &str, old: &Policy, summary: &Summary, knobs: &Knobs, stamp: &str) -> Update {
    let candidate = generate(summary, knobs).policy;
    let mut used: BTreeSet<String> = old
        .apps
        .iter()
        .flat_map(|a| {
            a.rules.iter().chain(&a.review).map(|r| r.id.clone()).chain(
                a.name_rules
                    .iter()
                    .chain(&a.name_review)
                    .map(|r| r.id.clone()),
            )
        })
        .collect();
    let mut names: BTreeSet<String> = old.apps.iter().map(|a| a.name.clone()).collect();
    let mut per_app: Vec<Option<App>> = vec![None; old.apps.len()];
    let mut new_apps: Vec<App> = Vec::new();
    let mut notes = Vec::new();
    for c in &candidate.apps {
        if let Some(i) = old.apps.iter().position(|a| a.sha256 == c.sha256) {
            let add = additions(&old.apps[i], c, &mut used);
            if count(&add) > 0 {
                notes.push(format!(
                    "{}: {} rule(s) to allow, {} to review",
                    old.apps[i].name,
                    add.rules.len() + add.name_rules.len(),
                    add.review.len() + add.name_review.len()
                ));
                per_app[i] = Some(add);
            }
            continue;
        }
        let mut app = c.clone();
        let sha8 = &hex::encode(c.sha256)[..8];
        match old
            .apps
            .iter()
            .find(|a| a.paths.iter().any(|p| c.paths.contains(p)))
        {
            Some(known) => {
                // The same program's new bytes: learnt from its own traffic, in the
                // known version's mode.
                app.name = format!("{}.{sha8}", known.name);
                app.mode = known.mode;
                notes.push(format!(
                    "{}: a new version of {} (other bytes under {}), {} rule(s)",
                    app.name,
                    known.name,
                    known
                        .paths
                        .iter()
                        .find(|p| c.paths.contains(p))
                        .map_or("", |p| p),
                    count(&app)
                ));
            }
            None => {
                if names.contains(&app.name) {
                    app.name = format!("{}.{sha8}", app.name);
                }
                notes.push(format!("{}: a new app, {} rule(s)", app.name, count(&app)));
            }
        }
        names.insert(app.name.clone());
        let ids: Vec<String> = app
            .rules
            .iter()
            .chain(&app.review)
            .map(|r| r.id.clone())
            .collect();
        for (r, id) in app.rules.iter_mut().chain(app.review.iter_mut()).zip(ids) {
            let fresh = fresh_id(&id, &mut used);
            if let Some(why) = app.review_reasons.remove(&id) {
                app.review_reasons.insert(fresh.clone(), why);
            }
            r.id = fresh;
        }
        for r in app.name_rules.iter_mut().chain(app.name_review.iter_mut()) {
            r.id = fresh_id(&r.id, &mut used);
        }
        new_apps.push(app);
    }

    // Insert from the end so that earlier offsets stay valid.
    let app_starts: Vec<usize> = headers(src)
        .into_iter()
        .filter(|(_, key)| key == "app")
        .map(|(at, _)| at)
        .collect();
    let mut text = src.to_owned();
    if !text.ends_with('\n') {
        text.push('\n');
    }
    let mut tail = String::new();
    for app in &new_apps {
        tail.push_str(&format!("\n# added by pinhole policy update ({stamp})"));
        tail.push_str(&app_text(app));
    }
    text.push_str(&tail);
    for (i, add) in per_app.iter().enumerate().rev() {
        let Some(add) = add else { continue };
        let at = app_starts
            .get(i + 1)
            .copied()
            .unwrap_or(src.len().min(text.len()));
        let block = format!(
            "\n# added by pinhole policy update ({stamp}){}\n",
            rules_text(add)
        );
        text.insert_str(at, &block);
    }
    Update {
        text,
        notes,
        rules_added: per_app.iter().flatten().map(count).sum(),
        apps_added: new_apps.len(),
    }
}
