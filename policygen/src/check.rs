//! Validation of a policy file: syntax, unknown fields, malformed addresses, prefixes,
//! ports and ranges, duplicate ids and apps, duplicate or shadowed rules, and rules
//! broader than the configured limits. Every problem is reported with its line and
//! column and what was expected; a file with no problem becomes a `Policy`.

use std::collections::HashSet;
use std::net::IpAddr;
use std::ops::Range;

use ipnet::IpNet;
use rustc_hash::FxHashMap;
use toml::Spanned;

use crate::blocklist::{BlocklistFormat, DenyFileRef};
use crate::dns_evidence::{Lifetime, Scope};
use crate::model::{
    AppSection, DefaultsSection, DenySection, PolicyPiece, PortsField, RuleSection, POLICY_VERSION,
};
use crate::names::{canonical_name, HostPattern};
use crate::policy::{
    App, DenyKind, DenyList, Mode, NameRule, NameSettings, Policy, PortRange, Protocol, Rule,
    UnknownAction,
};
use crate::rule_scope::{check_cgroup_path, Expiry, RuleScope, ScopeParts, MAX_SCOPE_IDS};

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
    /// Byte offset where each line starts, so a position costs a binary search; made
    /// at the first problem (a valid file of a million rules never needs it).
    line_starts: std::cell::OnceCell<Vec<usize>>,
    diags: Vec<Diagnostic>,
    /// Where the piece being checked starts in `src` (its spans count from there); a
    /// piece parsed behind a synthetic `[[app]]` line starts before its text.
    base: isize,
}

impl<'a> Checker<'a> {
    fn new(src: &'a str) -> Self {
        Checker {
            src,
            line_starts: std::cell::OnceCell::new(),
            diags: Vec::new(),
            base: 0,
        }
    }

    /// A span of the current piece, in `src`.
    fn abs(&self, span: Range<usize>) -> Range<usize> {
        let shift = |x: usize| (x as isize + self.base).max(0) as usize;
        shift(span.start)..shift(span.end)
    }

    fn line_starts(&self) -> &[usize] {
        self.line_starts.get_or_init(|| {
            std::iter::once(0)
                .chain(self.src.match_indices('\n').map(|(i, _)| i + 1))
                .collect()
        })
    }

    /// The 1-based line holding byte `offset`.
    fn line_of(&self, offset: usize) -> usize {
        self.line_starts().partition_point(|&s| s <= offset)
    }

    /// A problem at `span` of the current piece.
    fn at(&mut self, span: Range<usize>, message: impl Into<String>) {
        let span = self.abs(span);
        self.at_abs(span, message);
    }

    /// A problem at `span` of `src`.
    fn at_abs(&mut self, span: Range<usize>, message: impl Into<String>) {
        let offset = span.start.min(self.src.len());
        let line = self.line_of(offset);
        let column = self.src[self.line_starts()[line - 1]..offset]
            .chars()
            .count()
            + 1;
        // Messages quote the file's text, which may hold control characters.
        let message = pinhole_recorder::printable::printable(&message.into()).into_owned();
        self.diags.push(Diagnostic {
            line,
            column,
            message,
        });
    }
}

/// Source bytes per piece: small enough that parsing one costs little memory, large
/// enough that pieces are few.
const PIECE_BYTES: usize = 256 << 10;

/// Validates `src`; on success the policy, else every problem found, in file order.
pub fn check(src: &str, limits: Limits) -> Result<Policy, Vec<Diagnostic>> {
    check_in_pieces(src, limits, PIECE_BYTES)
}

/// An app being read, possibly across pieces.
struct AppBuild {
    app: App,
    allow: Vec<(Rule, Range<usize>)>,
    names: Vec<(NameRule, Range<usize>)>,
}

/// A checked rule: by address or by name, with its span in `src`.
enum Checked {
    Addr(Rule, Range<usize>),
    Name(NameRule, Range<usize>),
}

impl AppBuild {
    fn allow(&mut self, rule: Checked) {
        match rule {
            Checked::Addr(r, span) => self.allow.push((r, span)),
            Checked::Name(r, span) => self.names.push((r, span)),
        }
    }

    /// A review entry, and why it was held (kept for rewriting and updating).
    fn review(&mut self, rule: Checked, reason: Option<&String>) {
        let id = match &rule {
            Checked::Addr(r, _) => r.id.clone(),
            Checked::Name(r, _) => r.id.clone(),
        };
        // The writer's generic text is no reason of the entry's own.
        if let Some(why) = reason.filter(|w| *w != crate::write::GENERIC_REVIEW_REASON) {
            self.app.review_reasons.insert(id, why.clone());
        }
        match rule {
            Checked::Addr(r, _) => self.app.review.push(r),
            Checked::Name(r, _) => self.app.name_review.push(r),
        }
    }
}

/// The line a piece that goes on with an app is parsed behind.
const APP_LINE: &str = "[[app]]\n";

/// Where a piece's spans count from, in the source.
fn piece_base(piece: &crate::pieces::Piece) -> isize {
    let start = piece.range.start as isize;
    match piece.continues_app {
        true => start - APP_LINE.len() as isize,
        false => start,
    }
}

fn parse_piece(src: &str, piece: &crate::pieces::Piece) -> Result<PolicyPiece, toml::de::Error> {
    let text = &src[piece.range.clone()];
    match piece.continues_app {
        true => toml::from_str(&format!("{APP_LINE}{text}")),
        false => toml::from_str(text),
    }
}

/// Parses the pieces on the machine's threads and hands them to `take` in order, until
/// it returns false. At most a few parsed pieces wait at a time: memory stays bounded.
fn parse_pieces(
    src: &str,
    pieces: &[crate::pieces::Piece],
    mut take: impl FnMut(usize, &crate::pieces::Piece, Result<PolicyPiece, toml::de::Error>) -> bool,
) {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(4);
    if threads < 2 || pieces.len() < 2 {
        for (i, p) in pieces.iter().enumerate() {
            if !take(i, p, parse_piece(src, p)) {
                return;
            }
        }
        return;
    }
    use std::sync::atomic::{AtomicUsize, Ordering};
    let next = AtomicUsize::new(0);
    // The first piece not yet handed over; workers stay within `ahead` of it.
    let frontier = AtomicUsize::new(0);
    let ahead = threads * 2;
    std::thread::scope(|s| {
        // Made inside the scope: when `take` stops early, dropping `rx` here ends the
        // workers' sends, so the scope can join them.
        let (tx, rx) = std::sync::mpsc::sync_channel(ahead);
        for _ in 0..threads {
            let tx = tx.clone();
            let (next, frontier) = (&next, &frontier);
            s.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= pieces.len() {
                    return;
                }
                while i > frontier.load(Ordering::Acquire) + ahead {
                    std::thread::sleep(std::time::Duration::from_micros(200));
                }
                if tx.send((i, parse_piece(src, &pieces[i]))).is_err() {
                    return;
                }
            });
        }
        drop(tx);
        let mut waiting = std::collections::BTreeMap::new();
        let mut want = 0;
        for (i, parsed) in rx.iter() {
            waiting.insert(i, parsed);
            while let Some(parsed) = waiting.remove(&want) {
                if !take(want, &pieces[want], parsed) {
                    // Workers still waiting for the frontier must see the end.
                    frontier.store(usize::MAX / 2, Ordering::Release);
                    return;
                }
                want += 1;
                frontier.store(want, Ordering::Release);
            }
        }
    });
}

/// What the checker carries from piece to piece.
#[derive(Default)]
struct Reading {
    version: Option<(u32, Range<usize>)>,
    unknown_binary: UnknownAction,
    defaults_at: Option<Range<usize>>,
    apps: Vec<AppBuild>,
    /// Every rule id seen, where first used (ids are unique in the file).
    ids: FxHashMap<String, Range<usize>>,
    hashes: HashSet<[u8; 32]>,
    names: NameSettings,
    deny: DenyList,
    deny_files: Vec<DenyFileRef>,
}

/// `check`, parsing `src` in pieces of about `piece_bytes` (see `pieces`): memory
/// follows a piece, not the file, and the outcome is the same for any piece size.
fn check_in_pieces(
    src: &str,
    limits: Limits,
    piece_bytes: usize,
) -> Result<Policy, Vec<Diagnostic>> {
    let mut c = Checker::new(src);
    let mut r = Reading::default();
    let pieces = crate::pieces::pieces(src, piece_bytes);
    let mut failed = None;
    parse_pieces(src, &pieces, |i, piece, parsed| {
        c.base = piece_base(piece);
        match parsed {
            Ok(file) => {
                read_piece(&mut c, &mut r, file, i == 0, piece.continues_app, limits);
                true
            }
            Err(e) => {
                failed = Some(e);
                false
            }
        }
    });
    if let Some(e) = failed {
        let span = e.span().unwrap_or(0..0);
        c.at(span, e.message().trim().to_owned());
        return Err(c.diags);
    }
    finish(c, r)
}

/// Checks one piece's tables and adds them to what was read.
fn read_piece(
    c: &mut Checker<'_>,
    r: &mut Reading,
    file: PolicyPiece,
    first: bool,
    continues_app: bool,
    limits: Limits,
) {
    if let Some(v) = &file.version {
        // Only the first piece can hold top-level keys (they precede every table).
        debug_assert!(first);
        r.version = Some((*v.get_ref(), c.abs(v.span())));
    }
    if let Some(d) = &file.defaults {
        let span = c.abs(d.span());
        if let Some(first) = r.defaults_at.replace(span.clone()) {
            let line = c.line_of(first.start);
            c.at_abs(span, format!("duplicate [defaults] (first on line {line})"));
        }
        r.unknown_binary = unknown_binary(c, d.get_ref());
        r.names = name_settings(c, d.get_ref());
    }
    for item in &file.deny {
        deny_entry(c, item, &mut r.deny, None, &mut r.deny_files);
    }
    for (i, app) in file.apps.into_iter().enumerate() {
        let span = app.span();
        let a = app.into_inner();
        if i == 0 && continues_app {
            let index = r.apps.len().checked_sub(1);
            let Some(last) = r.apps.last_mut() else {
                continue;
            };
            let cgroup = last.app.cgroup.clone();
            for item in &a.allow {
                if let Some(rule) = rule(c, item, &mut r.ids, limits, cgroup.as_deref()) {
                    last.allow(rule);
                }
            }
            for item in &a.review {
                if let Some(rule) = rule(c, item, &mut r.ids, limits, cgroup.as_deref()) {
                    last.review(rule, item.get_ref().reason.as_ref());
                }
            }
            for item in &a.deny {
                deny_entry(c, item, &mut last.app.deny, index, &mut r.deny_files);
            }
            continue;
        }
        let build = new_app(c, r, a, span, limits);
        r.apps.push(build);
    }
}

/// `dns_scope`, `dns_min_ttl` and `dns_grace` of `[defaults]`.
fn name_settings(c: &mut Checker<'_>, d: &DefaultsSection) -> NameSettings {
    let defaults = Lifetime::default();
    let seconds = |c: &mut Checker<'_>, v: &Option<Spanned<i64>>, key: &str, default: u32| {
        let Some(v) = v else { return default };
        match u32::try_from(*v.get_ref()) {
            Ok(s) if s <= 7 * 86_400 => s,
            _ => {
                c.at(
                    v.span(),
                    format!(
                        "{key} = {}: expected seconds from 0 to 604800 (a week)",
                        v.get_ref()
                    ),
                );
                default
            }
        }
    };
    NameSettings {
        scope: d.dns_scope.as_ref().map_or(Scope::App, |s| scope(c, s)),
        lifetime: Lifetime {
            min_ttl: seconds(c, &d.dns_min_ttl, "dns_min_ttl", defaults.min_ttl),
            grace: seconds(c, &d.dns_grace, "dns_grace", defaults.grace),
        },
    }
}

fn scope(c: &mut Checker<'_>, s: &Spanned<String>) -> Scope {
    Scope::parse(s.get_ref()).unwrap_or_else(|| {
        c.at(
            s.span(),
            format!(
                "dns_scope = \"{}\": expected \"app\" or \"host\"",
                s.get_ref()
            ),
        );
        Scope::App
    })
}

/// One `[[deny]]` or `[[app.deny]]` entry, added to `list` (files are noted, for
/// `blocklist::import`, with the index of their app).
fn deny_entry(
    c: &mut Checker<'_>,
    item: &Spanned<DenySection>,
    list: &mut DenyList,
    app: Option<usize>,
    files: &mut Vec<DenyFileRef>,
) {
    let d = item.get_ref();
    let given: Vec<(&str, &Spanned<String>)> = [
        ("host", &d.host),
        ("suffix", &d.suffix),
        ("prefix", &d.prefix),
        ("file", &d.file),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
    .collect();
    let [(key, value)] = given[..] else {
        c.at(
            item.span(),
            "a deny entry needs exactly one of `host`, `suffix`, `prefix` or `file`",
        );
        return;
    };
    if let Some(format) = d.format.as_ref().filter(|_| key != "file") {
        c.at(format.span(), "`format` is only for a `file` entry");
    }
    let text = value.get_ref();
    let id = match &d.id {
        Some(id) => id.get_ref().clone(),
        None => format!("deny:{key}:{text}"),
    };
    match key {
        "file" => {
            let format = match d.format.as_ref() {
                None => Some(BlocklistFormat::Hosts),
                Some(f) => BlocklistFormat::parse(f.get_ref()).or_else(|| {
                    c.at(
                        f.span(),
                        format!(
                            "format = \"{}\": expected \"hosts\" or \"domains\"",
                            f.get_ref()
                        ),
                    );
                    None
                }),
            };
            let at = c.abs(value.span());
            let line = c.line_of(at.start);
            let column = c.src[c.line_starts()[line - 1]..at.start].chars().count() + 1;
            if let Some(format) = format {
                files.push(DenyFileRef {
                    path: text.clone(),
                    format,
                    app,
                    source: list.source(&id),
                    line,
                    column,
                });
            }
        }
        "prefix" => {
            let ok = !text.is_empty()
                && text.len() <= crate::names::MAX_NAME
                && text
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch));
            if !ok {
                c.at(
                    value.span(),
                    format!("prefix \"{text}\": expected the start of a name (letters, digits, '-', '_', '.')"),
                );
                return;
            }
            let source = list.source(&id);
            list.add(DenyKind::Prefix, text.to_ascii_lowercase(), source);
        }
        _ => match canonical_name(text) {
            Ok(name) => {
                let kind = if key == "host" {
                    DenyKind::Host
                } else {
                    DenyKind::Suffix
                };
                let source = list.source(&id);
                list.add(kind, name, source);
            }
            Err(why) => c.at(value.span(), format!("{key} \"{text}\": {why}")),
        },
    }
}

fn unknown_binary(c: &mut Checker<'_>, d: &DefaultsSection) -> UnknownAction {
    match d.unknown_binary.as_ref() {
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
    }
}

/// An `[[app]]` table: its identity, mode and the rules it holds so far.
fn new_app(
    c: &mut Checker<'_>,
    r: &mut Reading,
    a: AppSection,
    span: Range<usize>,
    limits: Limits,
) -> AppBuild {
    let missing = |c: &mut Checker<'_>, field: &str| {
        c.at(span.start..span.start, format!("missing field `{field}`"));
    };
    if a.name.is_none() {
        missing(c, "name");
    }
    let sha = match &a.sha256 {
        Some(s) => parse_sha(c, s),
        None => {
            missing(c, "sha256");
            None
        }
    };
    if let (Some(h), Some(s)) = (sha, &a.sha256) {
        if !r.hashes.insert(h) {
            c.at(
                s.span(),
                format!(
                    "sha256 {} names a second app; each binary has one [[app]]",
                    s.get_ref()
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
    let dns_scope = a.dns_scope.as_ref().map(|s| scope(c, s));
    let cgroup = a.cgroup.as_ref().and_then(|g| cgroup_path(c, g));
    let mut build = AppBuild {
        app: App {
            name: a.name.map(|n| n.into_inner()).unwrap_or_default(),
            sha256: sha.unwrap_or_default(),
            paths: a.paths,
            comms: a.comms,
            mode,
            rules: Vec::new(),
            name_rules: Vec::new(),
            review: Vec::new(),
            name_review: Vec::new(),
            review_reasons: Default::default(),
            deny: DenyList::default(),
            dns_scope,
            cgroup: cgroup.clone(),
        },
        allow: Vec::new(),
        names: Vec::new(),
    };
    for item in &a.allow {
        if let Some(rule) = rule(c, item, &mut r.ids, limits, cgroup.as_deref()) {
            build.allow(rule);
        }
    }
    for item in &a.review {
        if let Some(rule) = rule(c, item, &mut r.ids, limits, cgroup.as_deref()) {
            build.review(rule, item.get_ref().reason.as_ref());
        }
    }
    let index = Some(r.apps.len());
    for item in &a.deny {
        deny_entry(c, item, &mut build.app.deny, index, &mut r.deny_files);
    }
    build
}

/// Checks what needs the whole file (the version, shadowed rules) and builds the policy.
fn finish(mut c: Checker<'_>, r: Reading) -> Result<Policy, Vec<Diagnostic>> {
    match &r.version {
        None => c.at_abs(0..0, "missing field `version`"),
        Some((v, span)) if *v != POLICY_VERSION => c.at_abs(
            span.clone(),
            format!("policy version {v} is not supported; expected {POLICY_VERSION}"),
        ),
        Some(_) => {}
    }
    let mut apps = Vec::with_capacity(r.apps.len());
    for mut b in r.apps {
        report_shadowed(&mut c, &mut b.allow);
        report_shadowed_names(&mut c, &mut b.names);
        b.app.rules = b.allow.into_iter().map(|(rule, _)| rule).collect();
        b.app.name_rules = b.names.into_iter().map(|(rule, _)| rule).collect();
        apps.push(b.app);
    }
    if c.diags.is_empty() {
        Ok(Policy {
            unknown_binary: r.unknown_binary,
            apps,
            deny: r.deny,
            names: r.names,
            deny_files: r.deny_files,
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

/// A scope's cgroup path, checked.
fn cgroup_path(c: &mut Checker<'_>, g: &Spanned<String>) -> Option<String> {
    match check_cgroup_path(g.get_ref()) {
        Ok(()) => Some(g.get_ref().clone()),
        Err(why) => {
            c.at(
                g.span(),
                format!("cgroup \"{}\": {why}", g.get_ref().escape_debug()),
            );
            None
        }
    }
}

/// A `uids` or `gids` list: ids a task can have, at most `MAX_SCOPE_IDS`.
fn scope_ids(c: &mut Checker<'_>, field: &str, list: &Spanned<Vec<i64>>) -> Option<Vec<u32>> {
    let ids = list.get_ref();
    let bad = ids
        .iter()
        .find(|&&id| !(0..i64::from(u32::MAX)).contains(&id));
    let problem = match (bad, ids.len()) {
        (Some(id), _) => format!("{field}: {id} is not a user or group id (0 to 4294967294)"),
        (None, 0) => {
            format!("{field}: an empty list would match no one; leave it out to match everyone")
        }
        (None, n) if n > MAX_SCOPE_IDS => format!(
            "{field}: {n} ids; a rule takes at most {MAX_SCOPE_IDS} (split it into several rules)"
        ),
        _ => return Some(ids.iter().map(|&id| id as u32).collect()),
    };
    c.at(list.span(), problem);
    None
}

/// A rule's scope (the app's cgroup unless it names its own); None after an error.
fn rule_scope(c: &mut Checker<'_>, r: &RuleSection, app_cgroup: Option<&str>) -> Option<RuleScope> {
    let asked = r.uids.is_some() || r.gids.is_some() || r.cgroup.is_some() || r.expires.is_some();
    if !asked && app_cgroup.is_none() {
        return Some(RuleScope::default());
    }
    let mut ok = true;
    let mut ids = |c: &mut Checker<'_>, field, list: &Option<Spanned<Vec<i64>>>| match list {
        None => Vec::new(),
        Some(l) => scope_ids(c, field, l).unwrap_or_else(|| {
            ok = false;
            Vec::new()
        }),
    };
    let uids = ids(c, "uids", &r.uids);
    let gids = ids(c, "gids", &r.gids);
    let cgroup = match &r.cgroup {
        None => app_cgroup.map(str::to_owned),
        Some(g) => {
            let path = cgroup_path(c, g);
            ok &= path.is_some();
            path
        }
    };
    let expires = match &r.expires {
        None => None,
        Some(e) => match chrono::DateTime::parse_from_rfc3339(e.get_ref()) {
            Ok(t) => t.timestamp_nanos_opt().map(|ns| Expiry {
                ns,
                text: e.get_ref().clone(),
            }),
            Err(why) => {
                c.at(
                    e.span(),
                    format!(
                        "expires \"{}\": {why}; expected an RFC 3339 time such as \"2027-01-31T00:00:00Z\"",
                        e.get_ref().escape_debug()
                    ),
                );
                ok = false;
                None
            }
        },
    };
    ok.then_some(RuleScope::from(ScopeParts {
        uids,
        gids,
        cgroup,
        expires,
    }))
}

/// One rule, checked; with its span in `src` (where a shadowing is reported).
fn rule(
    c: &mut Checker<'_>,
    item: &Spanned<RuleSection>,
    ids: &mut FxHashMap<String, Range<usize>>,
    limits: Limits,
    app_cgroup: Option<&str>,
) -> Option<Checked> {
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
        ids.insert(id.clone(), c.abs(r.id.span()));
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
    let ports = parse_ports(c, &r.ports);
    let scope = rule_scope(c, r, app_cgroup);
    let span = c.abs(item.span());
    match (&r.dst, &r.host) {
        (Some(dst), None) => {
            let dst = parse_dst(c, dst, limits);
            let (protocol, dst, ports, scope) = (protocol?, dst?, ports?, scope?);
            Some(Checked::Addr(
                Rule {
                    id: id.clone(),
                    protocol,
                    dst,
                    ports,
                    scope,
                    evidence: r.evidence.clone(),
                },
                span,
            ))
        }
        (None, Some(host)) => {
            let pattern = HostPattern::parse(host.get_ref());
            if let Err(why) = &pattern {
                c.at(host.span(), format!("host \"{}\": {why}", host.get_ref()));
            }
            let (protocol, host, ports, scope) = (protocol?, pattern.ok()?, ports?, scope?);
            Some(Checked::Name(
                NameRule {
                    id: id.clone(),
                    protocol,
                    host,
                    ports,
                    scope,
                    evidence: r.evidence.clone(),
                },
                span,
            ))
        }
        _ => {
            c.at(
                item.span(),
                format!("rule \"{id}\": expected exactly one of `dst` (an address or prefix) or `host` (a name)"),
            );
            None
        }
    }
}

/// Reports every name rule another one of the app makes redundant, and drops it: a
/// rule is covered by one of the same protocol whose pattern covers its own (the same
/// name, or a wildcard over one of its parents) and whose ports cover its ports.
fn report_shadowed_names(c: &mut Checker<'_>, out: &mut Vec<(NameRule, Range<usize>)>) {
    let mut by_pattern: FxHashMap<(Protocol, &HostPattern), Vec<usize>> = FxHashMap::default();
    for (i, (r, _)) in out.iter().enumerate() {
        by_pattern.entry((r.protocol, &r.host)).or_default().push(i);
    }
    let mut covered = Vec::new();
    for (i, (r, _)) in out.iter().enumerate() {
        // Candidate patterns: its own, then wildcards over each proper parent.
        let name = match &r.host {
            HostPattern::Exact(n) | HostPattern::Wildcard(n) => n.as_str(),
        };
        let mut candidates = vec![r.host.clone()];
        let mut rest = name;
        while let Some((_, parent)) = rest.split_once('.') {
            candidates.push(HostPattern::Wildcard(parent.to_owned()));
            rest = parent;
        }
        let by = candidates.iter().find_map(|p| {
            by_pattern
                .get(&(r.protocol, p))?
                .iter()
                .copied()
                .find(|&j| {
                    let o = &out[j].0;
                    j != i && o.covers(r) && (!r.covers(o) || j < i)
                })
        });
        if let Some(j) = by {
            covered.push((i, j));
        }
    }
    for &(i, j) in &covered {
        let (rule, other) = (&out[i].0, &out[j].0);
        let what = if rule.covers(other) {
            "duplicates"
        } else {
            "is shadowed by"
        };
        c.at_abs(
            out[i].1.clone(),
            format!(
                "rule \"{}\" {what} rule \"{}\" ({} {} port {})",
                rule.id,
                other.id,
                other.protocol.as_str(),
                other.host,
                other.ports
            ),
        );
    }
    let mut keep = vec![true; out.len()];
    covered.iter().for_each(|&(i, _)| keep[i] = false);
    let mut flags = keep.into_iter();
    out.retain(|_| flags.next().unwrap_or(true));
}

/// Reports, at the covered rule, every allow rule another one makes redundant, and drops it.
fn report_shadowed(c: &mut Checker<'_>, out: &mut Vec<(Rule, Range<usize>)>) {
    let rules: Vec<&Rule> = out.iter().map(|(r, _)| r).collect();
    let shadowed = crate::shadow::find(&rules);
    for s in &shadowed {
        let (rule, other) = (&rules[s.covered], &rules[s.by]);
        let what = if rule.covers(other) {
            "duplicates"
        } else {
            "is shadowed by"
        };
        c.at_abs(
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

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const SHB: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn rule(id: &str, dst: &str, ports: &str) -> String {
        format!("[[app.allow]]\nid = \"{id}\"\nprotocol = \"tcp\"\ndst = \"{dst}\"\nports = {ports}\n\n")
    }

    /// Policies that exercise everything a piece boundary could break: rules of one app
    /// across pieces, a shadowed rule and a duplicate id in another piece than the rule
    /// they clash with, review entries, [defaults] after apps, errors late in the file,
    /// and a multi-line string holding a header.
    fn corpus() -> Vec<String> {
        let mut many = format!("version = 1\n[[app]]\nname = \"a\"\nsha256 = \"{SHA}\"\n");
        for i in 0..40 {
            many += &rule(&format!("r{i}"), &format!("10.0.{i}.0/24"), "443");
        }
        let valid = many.clone()
            + &format!("[[app]]\nname = \"b\"\nsha256 = \"{SHB}\"\nmode = \"audit\"\n")
            + &rule("b1", "192.0.2.1", "\"1-1024\"")
            + "[[app.review]]\nid = \"rv\"\nprotocol = \"udp\"\ndst = \"198.51.100.7\"\nports = 53\nreason = \"\"\"\n[[app]]\nnot a header\n\"\"\"\n\n"
            + "[defaults]\nunknown_binary = \"deny\"\n";
        let shadowed = many.clone() + &rule("late", "10.0.3.7", "443");
        let duplicate = many.clone() + &rule("r2", "172.16.0.1", "80");
        let bad_late =
            many.clone() + &rule("x", "10.0.0.300", "80") + "[[app]]\nsha256 = \"nothex\"\n";
        let no_version = many.replacen("version = 1\n", "", 1);
        let syntax_late = many.clone() + "[[app.allow]]\nid = \n" + &many[12..];
        let names = many.clone()
            + "[[app.allow]]\nid = \"n1\"\nprotocol = \"tcp\"\nhost = \"*.example.com\"\nports = 443\n"
            + "[[app.deny]]\nsuffix = \"ads.example\"\n"
            + &rule("after-deny", "10.9.0.0/16", "443")
            + "[[app.allow]]\nid = \"n2\"\nprotocol = \"tcp\"\nhost = \"api.example.com\"\nports = 443\n"
            + "[[deny]]\nprefix = \"ads.\"\n";
        vec![
            valid,
            shadowed,
            duplicate,
            bad_late,
            no_version,
            syntax_late,
            names,
        ]
    }

    #[test]
    fn any_piece_size_gives_the_same_outcome() {
        for src in corpus() {
            let whole = check_in_pieces(&src, Limits::default(), usize::MAX);
            for piece in [1, 100, 700] {
                assert_eq!(
                    check_in_pieces(&src, Limits::default(), piece),
                    whole,
                    "pieces of {piece} bytes:\n{src}"
                );
            }
        }
        let outcomes: Vec<_> = corpus()
            .iter()
            .map(|s| check_in_pieces(s, Limits::default(), 1))
            .collect();
        let valid = outcomes[0].as_ref().unwrap();
        assert_eq!(valid.apps[0].rules.len(), 40);
        assert_eq!(valid.apps[1].review.len(), 1);
        assert_eq!(valid.unknown_binary, UnknownAction::Deny);
        let text = |i: usize| format!("{:?}", outcomes[i].as_ref().unwrap_err());
        assert!(
            text(1).contains("rule \\\"late\\\" is shadowed by rule \\\"r3\\\""),
            "{}",
            text(1)
        );
        assert!(
            text(2).contains("duplicate rule id \\\"r2\\\""),
            "{}",
            text(2)
        );
        assert!(
            text(3).contains("10.0.0.300") && text(3).contains("missing field `name`"),
            "{}",
            text(3)
        );
        assert!(text(4).contains("missing field `version`"), "{}", text(4));
        assert_eq!(
            outcomes[5].as_ref().unwrap_err().len(),
            1,
            "a syntax error stops"
        );
        assert!(
            text(6).contains("rule \\\"n2\\\" is shadowed by rule \\\"n1\\\""),
            "{}",
            text(6)
        );
    }
}
