//! Who and when a rule applies to: users, groups, a cgroup subtree and an expiry time
//! (matcher items 9 and 10). A rule without any of them applies to every connect of
//! its app, as before.

/// The most user or group ids one rule may list (the kernel checks them in a bounded
/// loop); more are written as several rules.
pub const MAX_SCOPE_IDS: usize = 8;

/// A rule's scope; every part that is set must hold. Read its parts through `Deref`.
/// Boxed, and absent when nothing is set: a million unscoped rules cost a pointer
/// each, not the parts' hundred bytes.
#[derive(Debug, Clone, PartialEq, Eq, Default, Hash)]
pub struct RuleScope(Option<Box<ScopeParts>>);

/// What a scope is made of.
#[derive(Debug, Clone, PartialEq, Eq, Default, Hash)]
pub struct ScopeParts {
    /// The connecting task's uid is one of these (empty: any).
    pub uids: Vec<u32>,
    /// Its primary gid is one of these (empty: any).
    pub gids: Vec<u32>,
    /// It runs in this cgroup or below it: a path under the cgroup-v2 root, "/a/b".
    pub cgroup: Option<String>,
    /// The rule stops applying at this instant.
    pub expires: Option<Expiry>,
}

static UNSCOPED: ScopeParts = ScopeParts {
    uids: Vec::new(),
    gids: Vec::new(),
    cgroup: None,
    expires: None,
};

impl std::ops::Deref for RuleScope {
    type Target = ScopeParts;

    fn deref(&self) -> &ScopeParts {
        self.0.as_deref().unwrap_or(&UNSCOPED)
    }
}

impl From<ScopeParts> for RuleScope {
    fn from(parts: ScopeParts) -> Self {
        let empty = parts.uids.is_empty()
            && parts.gids.is_empty()
            && parts.cgroup.is_none()
            && parts.expires.is_none();
        match empty {
            true => RuleScope(None),
            false => RuleScope(Some(Box::new(parts))),
        }
    }
}

/// An expiry instant, with the text it was written as (kept for writing it back).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Expiry {
    pub ns: i64,
    pub text: String,
}

/// Who made a connect, as far as scopes ask (None: not known, so no scope holds).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Subject<'a> {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// The task's cgroup, in the same form as `RuleScope::cgroup`.
    pub cgroup: Option<&'a str>,
}

/// Whether cgroup path `path` is `root` or lies below it.
pub fn cgroup_under(path: &str, root: &str) -> bool {
    root == "/"
        || path == root
        || path
            .strip_prefix(root)
            .is_some_and(|rest| rest.starts_with('/'))
}

fn ids_cover(outer: &[u32], inner: &[u32]) -> bool {
    outer.is_empty() || (!inner.is_empty() && inner.iter().all(|i| outer.contains(i)))
}

impl RuleScope {
    /// Whether any part is set.
    pub fn is_scoped(&self) -> bool {
        self.0.is_some()
    }

    /// Whether the rule applies to `who` at `t_ns` (ns since the epoch).
    pub fn holds(&self, who: &Subject<'_>, t_ns: i64) -> bool {
        let listed =
            |ids: &[u32], id: Option<u32>| ids.is_empty() || id.is_some_and(|id| ids.contains(&id));
        listed(&self.uids, who.uid)
            && listed(&self.gids, who.gid)
            && self
                .cgroup
                .as_deref()
                .is_none_or(|root| who.cgroup.is_some_and(|p| cgroup_under(p, root)))
            && self.expires.as_ref().is_none_or(|e| t_ns < e.ns)
    }

    /// Whether this scope holds wherever `other` does.
    pub fn covers(&self, other: &RuleScope) -> bool {
        ids_cover(&self.uids, &other.uids)
            && ids_cover(&self.gids, &other.gids)
            && self.cgroup.as_deref().is_none_or(|root| {
                other
                    .cgroup
                    .as_deref()
                    .is_some_and(|p| cgroup_under(p, root))
            })
            && self
                .expires
                .as_ref()
                .is_none_or(|e| other.expires.as_ref().is_some_and(|o| o.ns <= e.ns))
    }

    /// The scope in words for people, " for uid 0, 33 in /x until T"; "" unscoped.
    pub fn describe(&self) -> String {
        let list = |ids: &[u32]| {
            ids.iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut out = String::new();
        if !self.uids.is_empty() {
            out += &format!(" for uid {}", list(&self.uids));
        }
        if !self.gids.is_empty() {
            out += &format!(" for gid {}", list(&self.gids));
        }
        if let Some(c) = &self.cgroup {
            out += &format!(" in {}", c.escape_debug());
        }
        if let Some(e) = &self.expires {
            out += &format!(" until {}", e.text.escape_debug());
        }
        out
    }

    /// The expiry instants of `scopes`, sorted and distinct: between two of them every
    /// scope's answer for a subject stays the same.
    pub fn expiry_instants<'s>(scopes: impl Iterator<Item = &'s RuleScope>) -> Vec<i64> {
        let mut v: Vec<i64> = scopes
            .filter_map(|s| s.expires.as_ref().map(|e| e.ns))
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}

/// A cgroup path as a scope names it, checked: absolute, no empty, `.` or `..` parts,
/// no trailing slash (except the root itself), printable.
pub fn check_cgroup_path(text: &str) -> Result<(), String> {
    if !text.starts_with('/') {
        return Err("expected a path under the cgroup-v2 root beginning with '/', e.g. \"/system.slice/nginx.service\"".into());
    }
    if text.chars().any(char::is_control) {
        return Err("control characters are not allowed".into());
    }
    if text == "/" {
        return Ok(());
    }
    if text[1..]
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..")
    {
        return Err("empty, '.' or '..' parts (and a trailing '/') are not allowed".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(uids: &[u32], cgroup: Option<&str>, expires: Option<i64>) -> RuleScope {
        RuleScope::from(ScopeParts {
            uids: uids.to_vec(),
            gids: Vec::new(),
            cgroup: cgroup.map(str::to_owned),
            expires: expires.map(|ns| Expiry {
                ns,
                text: String::new(),
            }),
        })
    }

    #[test]
    fn cgroup_subtrees_are_whole_path_parts() {
        assert!(cgroup_under("/a/b", "/a"));
        assert!(cgroup_under("/a", "/a"));
        assert!(!cgroup_under("/ab", "/a"));
        assert!(cgroup_under("/anything", "/"));
    }

    #[test]
    fn unknown_subjects_hold_no_scope() {
        let s = scope(&[1000], None, None);
        assert!(!s.holds(&Subject::default(), 0));
        let c = scope(&[], Some("/a"), None);
        assert!(!c.holds(&Subject::default(), 0));
        assert!(RuleScope::default().holds(&Subject::default(), 0));
    }

    #[test]
    fn expiry_is_exclusive() {
        let s = scope(&[], None, Some(100));
        assert!(s.holds(&Subject::default(), 99));
        assert!(!s.holds(&Subject::default(), 100));
    }

    #[test]
    fn covering_needs_every_part_wider() {
        let any = RuleScope::default();
        let users = scope(&[1, 2], None, None);
        let one = scope(&[2], Some("/a/b"), Some(5));
        assert!(any.covers(&users) && users.covers(&one));
        assert!(!one.covers(&users) && !users.covers(&any));
        assert!(scope(&[], Some("/a"), Some(9)).covers(&one));
        assert!(!scope(&[], Some("/a"), Some(4)).covers(&one));
    }

    #[test]
    fn cgroup_paths_are_checked() {
        assert!(check_cgroup_path("/system.slice/x.service").is_ok());
        assert!(check_cgroup_path("/").is_ok());
        for bad in ["system.slice", "/a/", "/a//b", "/a/../b", "/a\n"] {
            assert!(check_cgroup_path(bad).is_err(), "{bad}");
        }
    }
}
