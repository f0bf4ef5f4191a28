//! The report page: one self-contained HTML file (inline style and SVG, no request at
//! view time). Every figure a person reads sits in an element with a `data-fig` key, so
//! a script (or the browser test) can compare the page with `analyze --format json`.

use std::fmt::Write;

use anyhow::Result;
use pinhole_analyze::profile::ProfileDoc;
use pinhole_recorder::printable::printable;

use super::charts::{self, Series};
use super::facts::{PolicyFacts, Trail};
use super::figures::{self, app_name, Column, Figures};

/// Text for HTML content or a quoted attribute: control characters escaped as the
/// terminal output does, then HTML's specials.
pub fn esc(s: &str) -> String {
    let s = printable(s);
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A table cell holding one figure under `key`.
fn fig(key: &str, value: impl std::fmt::Display) -> String {
    format!(
        "<td data-fig=\"{}\">{}</td>",
        esc(key),
        esc(&value.to_string())
    )
}

const STYLE: &str = "
body{font-family:sans-serif;margin:24px auto;max-width:1000px;color:#222}
h1{margin-bottom:4px}h2{margin-top:36px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
td,th{border:1px solid #ddd;padding:3px 6px;text-align:right}
td:first-child,th:first-child{text-align:left}
.verdict{display:inline-block;padding:4px 10px;border-radius:4px;font-weight:bold}
.verified{background:#d8f0d8}.tampered{background:#f6caca}.unknown{background:#eee}
figure.chart{margin:12px 0}details{margin:4px 0 16px}code{font-size:12px}
code.sha{font-size:10px;word-break:break-all}
";

/// A series per column over `periods`, for the line charts.
fn series(columns: &[Column], periods: &[i64]) -> Vec<Series> {
    columns
        .iter()
        .map(|c| Series {
            name: c.name.clone(),
            points: periods
                .iter()
                .zip(&c.values)
                .map(|(&t, &v)| (t, v as f64))
                .collect(),
        })
        .collect()
}

fn chart(out: &mut String, id: &str, svg: &str) {
    let _ = write!(
        out,
        "<figure class=\"chart\" data-chart=\"{id}\">{svg}</figure>"
    );
}

/// The data behind a line chart: a row per period, a column per series.
fn series_table(out: &mut String, chart: &str, columns: &[Column], periods: &[i64]) {
    out.push_str("<details><summary>Data</summary><table><tr><th>period start</th>");
    for c in columns {
        let _ = write!(out, "<th>{}</th>", esc(&c.name));
    }
    out.push_str("</tr>");
    for (i, &t) in periods.iter().enumerate() {
        let start = pinhole_analyze::profile::rfc3339(t);
        let _ = write!(out, "<tr><td>{}</td>", esc(&start));
        for c in columns {
            out.push_str(&fig(&format!("{chart}/{}/{start}", c.id), c.values[i]));
        }
        out.push_str("</tr>");
    }
    out.push_str("</table></details>");
}

fn header(out: &mut String, doc: &ProfileDoc, generated: &str) {
    let d = &doc.dataset;
    let _ = write!(
        out,
        "<h1>pinhole report</h1><p>Dataset <code>{}</code>, written {}.</p><table>\
         <tr><td>events</td>{}</tr><tr><td>files</td>{}</tr>\
         <tr><td>first event</td>{}</tr><tr><td>last event</td>{}</tr>\
         <tr><td>applications (by SHA-256)</td>{}</tr>\
         <tr><td>unresolved executables</td>{}</tr></table>",
        esc(&d.path),
        esc(generated),
        fig("dataset/events", d.events),
        fig("dataset/files", d.files),
        fig("dataset/first_seen", &d.first_seen),
        fig("dataset/last_seen", &d.last_seen),
        fig("dataset/apps", doc.apps.len()),
        fig("dataset/unresolved", doc.unresolved.len()),
    );
}

fn trail(out: &mut String, t: &Trail) {
    out.push_str("<h2>Trail verification</h2>");
    let class = match t {
        Trail::Verified(_) => "verified",
        Trail::Tampered(_) => "tampered",
        _ => "unknown",
    };
    let _ = write!(
        out,
        "<p><span class=\"verdict {class}\" data-fig=\"trail/verdict\">{}</span></p>",
        t.verdict()
    );
    match t {
        Trail::Verified(r) | Trail::Tampered(r) => {
            let _ = write!(
                out,
                "<table><tr><td>log entries</td>{}</tr><tr><td>signed by the checkpoint</td>{}</tr>\
                 <tr><td>files intact</td>{}</tr><tr><td>files retired or replaced</td>{}</tr></table>",
                fig("trail/entries", r.entries),
                fig("trail/signed", r.signed),
                fig("trail/files_intact", r.files_intact),
                fig("trail/files_retired", r.files_retired),
            );
            for f in &r.findings {
                let _ = write!(out, "<p class=\"finding\">TAMPERED: {}</p>", esc(f));
            }
            for n in &r.notes {
                let _ = write!(out, "<p>Note: {}</p>", esc(n));
            }
            out.push_str(
                "<p>What this proves: every file the log lists is unchanged and the log is \
                 the one the key signed. Completeness since a checkpoint kept elsewhere is \
                 proved only with <code>pinhole verify --checkpoint</code>.</p>",
            );
        }
        Trail::CannotVerify(why) | Trail::NotChecked(why) => {
            let _ = write!(out, "<p>{}</p>", esc(why));
        }
    }
}

fn apps_table(out: &mut String, doc: &ProfileDoc) {
    out.push_str(
        "<h2>Applications</h2><table><tr><th>app</th><th>SHA-256</th><th>events</th>\
         <th>destinations</th><th>denied</th><th>would-deny</th><th>learning</th>\
         <th>last new destination</th></tr>",
    );
    for a in doc.apps.iter().chain(&doc.unresolved) {
        let k = |what: &str| format!("app/{}/{what}", a.id);
        let denied: u64 = a.refused.iter().map(|r| r.denied).sum();
        let would: u64 = a.refused.iter().map(|r| r.would_deny).sum();
        let _ = write!(
            out,
            "<tr><td>{}</td><td><code class=\"sha\">{}</code></td>{}{}{}{}{}<td>{}</td></tr>",
            esc(&app_name(a)),
            esc(a.sha256.as_deref().unwrap_or(&a.exe_status)),
            fig(&k("events"), a.events),
            fig(&k("destinations"), a.destinations.len()),
            fig(&k("denied"), denied),
            fig(&k("would_deny"), would),
            fig(&k("verdict"), &a.learning.verdict),
            esc(&a.learning.last_new_destination),
        );
    }
    out.push_str("</table>");
}

fn learning(out: &mut String, doc: &ProfileDoc) -> Result<()> {
    out.push_str(
        "<h2>Learning</h2><p>Distinct destinations each app has used so far. A curve that \
         has gone flat is what <em>stable</em> means: no new destination in the last \
         quarter of the time the app was seen (at least an hour).</p>",
    );
    let curves: Vec<Series> = figures::learning_curves(doc)
        .into_iter()
        .map(|(name, points)| Series { name, points })
        .collect();
    let svg = charts::time_lines("Distinct destinations learned", "destinations", &curves)?;
    chart(out, "learning", &svg);
    out.push_str(
        "<details><summary>New destinations per period</summary><table><tr><th>app</th>\
         <th>verdict</th><th>period</th><th>new destinations (period start: count)</th></tr>",
    );
    for a in &doc.apps {
        let per: Vec<String> = a
            .learning
            .new_destinations
            .iter()
            .map(|p| {
                format!(
                    "<span>{}: <b data-fig=\"{}\">{}</b></span>",
                    esc(&p.start),
                    esc(&format!("learn/{}/{}", a.id, p.start)),
                    p.count
                )
            })
            .collect();
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&app_name(a)),
            esc(&a.learning.verdict),
            esc(&a.learning.period),
            per.join(", ")
        );
    }
    out.push_str("</table></details>");
    Ok(())
}

fn refusals(out: &mut String, f: &Figures) -> Result<()> {
    out.push_str(
        "<h2>Denials</h2><p>Connects an enforcer denied, and those it would have denied \
         in audit mode.</p>",
    );
    let svg = charts::time_lines(
        "Denied and would-deny connects",
        "events",
        &series(&f.refused, &f.periods),
    )?;
    chart(out, "refused", &svg);
    series_table(out, "refused", &f.refused, &f.periods);
    if f.refused_by_app.is_empty() {
        out.push_str("<p>No app was denied anything.</p>");
        return Ok(());
    }
    let labels: Vec<String> = f.refused_by_app.iter().map(|r| r.name.clone()).collect();
    let stacks = [
        (
            "denied",
            f.refused_by_app.iter().map(|r| r.denied).collect(),
        ),
        (
            "would-deny",
            f.refused_by_app.iter().map(|r| r.would_deny).collect(),
        ),
    ];
    let svg = charts::bars("Denials by app", "events", &labels, &stacks)?;
    chart(out, "refused-by-app", &svg);
    out.push_str("<details><summary>Data</summary><table><tr><th>app</th><th>denied</th><th>would-deny</th></tr>");
    for r in &f.refused_by_app {
        let _ = write!(
            out,
            "<tr><td>{}</td>{}{}</tr>",
            esc(&r.name),
            fig(&format!("refused-by-app/{}/denied", r.id), r.denied),
            fig(&format!("refused-by-app/{}/would_deny", r.id), r.would_deny),
        );
    }
    out.push_str("</table></details>");
    Ok(())
}

fn destinations(out: &mut String, f: &Figures) -> Result<()> {
    out.push_str("<h2>Top destinations</h2>");
    let label = |d: &figures::Destination| match d.names.first() {
        Some(n) => format!("{} {} ({}):{}", d.protocol, n, d.address, d.port),
        None => format!("{} {}:{}", d.protocol, d.address, d.port),
    };
    let labels: Vec<String> = f.destinations.iter().map(label).collect();
    let stacks = [("events", f.destinations.iter().map(|d| d.events).collect())];
    let svg = charts::bars(
        "Busiest destinations (all apps)",
        "events",
        &labels,
        &stacks,
    )?;
    chart(out, "destinations", &svg);
    out.push_str(
        "<table><tr><th>protocol</th><th>address</th><th>port</th><th>names</th>\
         <th>events</th><th>apps</th></tr>",
    );
    for d in &f.destinations {
        let k = format!("dest/{}/{}/{}", d.protocol, d.address, d.port);
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td>{}{}</tr>",
            esc(&d.protocol),
            esc(&d.address),
            d.port,
            esc(&d.names.join(", ")),
            fig(&format!("{k}/events"), d.events),
            fig(&format!("{k}/apps"), d.apps),
        );
    }
    out.push_str("</table>");
    Ok(())
}

fn policy(out: &mut String, p: &PolicyFacts) {
    let r = &p.replay;
    let _ = write!(
        out,
        "<h2>Policy</h2><p><code>{}</code>, replayed on every event of the dataset.</p><table>\
         <tr><td>apps</td>{}</tr><tr><td>address rules</td>{}</tr><tr><td>name rules</td>{}</tr>\
         <tr><td>held for review</td>{}</tr><tr><td>apps in audit mode</td>{}</tr>\
         <tr><td>unknown binaries</td>{}</tr><tr><td>replayed events</td>{}</tr>\
         <tr><td>would be denied</td>{}</tr><tr><td>deny rate</td><td>{:.4}%</td></tr></table>",
        esc(&p.path),
        fig("policy/apps", p.apps),
        fig("policy/rules", p.rules),
        fig("policy/name_rules", p.name_rules),
        fig("policy/review", p.review),
        fig("policy/audit_apps", p.audit_apps),
        fig("policy/unknown_binary", &p.unknown_binary),
        fig("replay/events", r.events),
        fig("replay/denied", r.denied()),
        r.deny_rate() * 100.0,
    );
    out.push_str(
        "<table><tr><th>policy app</th><th>events</th><th>would be denied</th>\
         <th>most denied</th></tr>",
    );
    for (app, a) in &r.apps {
        let name = app.as_deref().unwrap_or("(binaries not in the policy)");
        let top: Vec<String> = a.top(3).iter().map(|(d, n)| format!("{d} x{n}")).collect();
        let _ = write!(
            out,
            "<tr><td>{}</td>{}{}<td>{}</td></tr>",
            esc(name),
            fig(&format!("replay/{name}/events"), a.events),
            fig(&format!("replay/{name}/denied"), a.denied),
            esc(&top.join(", ")),
        );
    }
    out.push_str("</table>");
}

/// Measures each chart once laid out: the browser test (or anyone) can read where and
/// how large every chart was drawn from `data-box`.
const MEASURE: &str = "<script>for(const f of document.querySelectorAll('figure.chart')){\
const r=f.querySelector('svg').getBoundingClientRect();\
f.dataset.box=[r.left+scrollX,r.top+scrollY,r.width,r.height].map(Math.round).join(',')}</script>";

pub fn page(
    doc: &ProfileDoc,
    trail_state: &Trail,
    policy_facts: Option<&PolicyFacts>,
    generated: &str,
) -> Result<String> {
    let f = figures::figures(doc);
    let mut out = String::with_capacity(1 << 16);
    let _ = write!(
        out,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>pinhole report: {}</title><style>{STYLE}</style></head><body>",
        esc(&doc.dataset.path)
    );
    header(&mut out, doc, generated);
    trail(&mut out, trail_state);
    out.push_str("<h2>Events per app</h2>");
    let svg = charts::time_lines(
        &format!("Events per {}", doc.activity_period),
        "events",
        &series(&f.events, &f.periods),
    )?;
    chart(&mut out, "events", &svg);
    series_table(&mut out, "events", &f.events, &f.periods);
    apps_table(&mut out, doc);
    learning(&mut out, doc)?;
    refusals(&mut out, &f)?;
    destinations(&mut out, &f)?;
    if let Some(p) = policy_facts {
        policy(&mut out, p);
    }
    out.push_str(MEASURE);
    out.push_str("</body></html>\n");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pinhole_analyze::profile::DatasetInfo;
    use pinhole_analyze::summary::{AppKey, AppSummary, Summary};

    #[test]
    fn recorded_names_cannot_inject_markup_or_terminal_codes() {
        let hostile = "<script>alert(1)</script>\u{1b}[31m\"'&";
        let mut app = AppSummary {
            events: 3,
            first_ns: 0,
            last_ns: 7_200_000_000_000,
            ..Default::default()
        };
        app.comms.insert(hostile.into());
        app.paths.insert(format!("/tmp/{hostile}"));
        app.activity.insert(0, Default::default());
        let mut summary = Summary {
            events: 3,
            first_ns: Some(0),
            last_ns: Some(7_200_000_000_000),
            ..Default::default()
        };
        summary.apps.insert(AppKey::Hash([1; 32]), app.clone());
        summary.apps.insert(
            AppKey::Unresolved {
                status: "gone".into(),
                exe: hostile.into(),
            },
            app,
        );
        let info = DatasetInfo {
            path: hostile.into(),
            files: 1,
            events: 3,
            first_seen: String::new(),
            last_seen: String::new(),
            since: None,
            until: None,
        };
        let doc = pinhole_analyze::build_profiles(&summary, info);
        let trail = Trail::NotChecked(hostile.into());
        let html = page(&doc, &trail, None, hostile).unwrap();
        assert!(!html.contains("<script>alert"), "markup escaped");
        assert!(!html.contains('\u{1b}'), "control characters escaped");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert_eq!(
            html.matches("<script>").count(),
            1,
            "only the page's own script"
        );
    }
}
