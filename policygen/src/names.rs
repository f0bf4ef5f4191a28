//! Host names in policies: validation (IDNA, lengths, characters), the one wildcard
//! semantics, its limit (never wider than a registrable domain, by the Public Suffix
//! List) and matching against names seen in DNS answers.
//!
//! Names are compared in canonical form: ASCII (internationalised labels as IDNA
//! A-labels, `xn--...`), lowercase, without the trailing root dot.
//!
//! Wildcards: `*.example.com` matches a name of one or more labels before
//! `example.com` (`a.example.com`, `a.b.example.com`), never `example.com` itself. The
//! part after `*.` must be a registrable domain or a name under one: `*.com` and
//! `*.co.uk` are refused, and so is any wildcard over a name the list does not know
//! as registrable (`*.test`).

use std::fmt;

use idna::uts46::{AsciiDenyList, DnsLength, Hyphens, Uts46};

/// Longest name in presentation form without the root dot (RFC 1035: 255 octets on
/// the wire).
pub const MAX_NAME: usize = 253;
/// Longest label (RFC 1035).
pub const MAX_LABEL: usize = 63;

/// `text` in canonical form, or why it is not a host name.
pub fn canonical_name(text: &str) -> Result<String, String> {
    let trimmed = text.strip_suffix('.').unwrap_or(text);
    if trimmed.is_empty() {
        return Err("an empty name".into());
    }
    let ascii = Uts46::new()
        .to_ascii(
            trimmed.as_bytes(),
            AsciiDenyList::EMPTY,
            // Real names break the positional hyphen rules (`r1---sn-x.googlevideo.com`).
            Hyphens::Allow,
            DnsLength::Ignore,
        )
        .map_err(|_| "not a valid internationalised domain name (IDNA)".to_string())?;
    check_ascii(&ascii)?;
    Ok(ascii.into_owned())
}

/// Lengths and characters of an ASCII name: letters, digits, `-` (not first or last
/// in a label) and `_` (service names such as `_dmarc`).
fn check_ascii(name: &str) -> Result<(), String> {
    if name.len() > MAX_NAME {
        return Err(format!(
            "{} characters long; a name has at most {MAX_NAME}",
            name.len()
        ));
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err("an empty label (two dots in a row, or a leading dot)".into());
        }
        if label.len() > MAX_LABEL {
            return Err(format!(
                "a label of {} characters; a label has at most {MAX_LABEL}",
                label.len()
            ));
        }
        if let Some(ch) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(format!(
                "the character {ch:?}; expected letters, digits, '-' or '_'"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("the label \"{label}\" starts or ends with '-'"));
        }
    }
    Ok(())
}

/// A name as it arrives in a DNS answer, made comparable: lowercase, no root dot.
/// Names on the wire are ASCII already; anything else is left as is and matches no
/// rule (rules are canonical).
pub fn observed(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

/// The host of a name rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HostPattern {
    /// Exactly this name.
    Exact(String),
    /// Any name of one or more labels under this one (written `*.base`).
    Wildcard(String),
}

impl HostPattern {
    /// Parses and validates a rule's `host`.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.strip_prefix("*.") {
            Some(base) => {
                let base = canonical_name(base)?;
                if psl::domain_str(&base).is_none() {
                    let suffix = psl::suffix_str(&base).unwrap_or(&base);
                    return Err(format!(
                        "*.{base} is wider than a registrable domain ({suffix} is a public \
                         suffix: name a domain under it, e.g. *.example.{suffix})"
                    ));
                }
                Ok(HostPattern::Wildcard(base))
            }
            None if text.contains('*') => Err(
                "a wildcard is only allowed as the whole first label (\"*.example.com\")".into(),
            ),
            None => Ok(HostPattern::Exact(canonical_name(text)?)),
        }
    }

    /// Whether `name` (canonical, see `observed`) matches.
    pub fn matches(&self, name: &str) -> bool {
        match self {
            HostPattern::Exact(h) => name == h,
            HostPattern::Wildcard(base) => name
                .strip_suffix(base.as_str())
                .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
        }
    }

    /// Orders patterns by how narrow they are: an exact name before any wildcard, then
    /// wildcards over longer names.
    pub fn specificity(&self) -> (bool, usize) {
        match self {
            HostPattern::Exact(h) => (true, h.split('.').count()),
            HostPattern::Wildcard(b) => (false, b.split('.').count()),
        }
    }

    /// Whether every name this pattern matches is matched by `self`.
    pub fn covers(&self, other: &HostPattern) -> bool {
        match (self, other) {
            (HostPattern::Exact(a), HostPattern::Exact(b)) => a == b,
            (HostPattern::Wildcard(_), HostPattern::Exact(b)) => self.matches(b),
            (HostPattern::Wildcard(a), HostPattern::Wildcard(b)) => a == b || self.matches(b),
            (HostPattern::Exact(_), HostPattern::Wildcard(_)) => false,
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Exact(h) => f.write_str(h),
            HostPattern::Wildcard(b) => write!(f, "*.{b}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_canonical_ascii() {
        assert_eq!(
            canonical_name("API.Example.COM.").unwrap(),
            "api.example.com"
        );
        assert_eq!(
            canonical_name("bücher.example").unwrap(),
            "xn--bcher-kva.example"
        );
        assert_eq!(
            canonical_name("_dmarc.example.com").unwrap(),
            "_dmarc.example.com"
        );
        assert_eq!(
            canonical_name("r1---sn-4g5e6nsz.googlevideo.com").unwrap(),
            "r1---sn-4g5e6nsz.googlevideo.com"
        );
    }

    #[test]
    fn bad_names_say_why() {
        let long_label = format!("{}.example.com", "a".repeat(64));
        let long_name = format!("{}.com", ["abcdefghij"; 23].join("."));
        for (bad, why) in [
            ("", "empty"),
            (".", "empty"),
            ("a..b", "empty label"),
            (long_label.as_str(), "at most 63"),
            (long_name.as_str(), "at most 253"),
            ("a b.com", "character"),
            ("-a.com", "starts or ends"),
            ("a/b.com", "character"),
        ] {
            let e = canonical_name(bad).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }

    #[test]
    fn a_wildcard_is_one_or_more_labels_never_the_bare_domain() {
        let p = HostPattern::parse("*.Example.com").unwrap();
        assert_eq!(p.to_string(), "*.example.com");
        assert!(p.matches("a.example.com"));
        assert!(p.matches("a.b.example.com"));
        assert!(!p.matches("example.com"));
        assert!(!p.matches("badexample.com"));
        assert!(!p.matches("a.example.com.evil"));
        let exact = HostPattern::parse("api.example.com").unwrap();
        assert!(exact.matches("api.example.com"));
        assert!(!exact.matches("x.api.example.com"));
        assert!(p.covers(&exact) && !exact.covers(&p));
        assert!(p.covers(&HostPattern::parse("*.cdn.example.com").unwrap()));
    }

    #[test]
    fn no_wildcard_wider_than_a_registrable_domain() {
        for bad in ["*.com", "*.co.uk", "*.test", "*.github.io"] {
            let e = HostPattern::parse(bad).unwrap_err();
            assert!(e.contains("wider than a registrable domain"), "{bad}: {e}");
        }
        for good in [
            "*.example.co.uk",
            "*.example.test",
            "*.user.github.io",
            "*.a.b.example.com",
        ] {
            HostPattern::parse(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for bad in ["api.*.com", "*api.example.com", "*"] {
            assert!(HostPattern::parse(bad).is_err(), "{bad}");
        }
    }
}
