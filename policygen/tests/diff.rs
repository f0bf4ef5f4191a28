//! `diff` on known pairs of policies.

use pinhole_policygen::check::{check, Limits};
use pinhole_policygen::diff::{diff, to_text};

/// (name, the hex digit its sha256 repeats, mode, rules as (id, dst, ports)).
type AppSpec<'a> = (&'a str, char, &'a str, &'a [(&'a str, &'a str, &'a str)]);

fn policy(unknown: &str, apps: &[AppSpec<'_>]) -> pinhole_policygen::Policy {
    let mut s = format!("version = 1\n[defaults]\nunknown_binary = \"{unknown}\"\n");
    for (name, hexchar, mode, rules) in apps {
        s += &format!(
            "[[app]]\nname = \"{name}\"\nsha256 = \"{}\"\nmode = \"{mode}\"\n",
            hexchar.to_string().repeat(64)
        );
        for (id, dst, ports) in *rules {
            s += &format!("[[app.allow]]\nid = \"{id}\"\nprotocol = \"tcp\"\ndst = \"{dst}\"\nports = \"{ports}\"\n");
        }
    }
    check(&s, Limits::default()).unwrap()
}

#[test]
fn known_pairs() {
    let old = policy(
        "allow",
        &[
            (
                "web",
                'a',
                "enforce",
                &[
                    ("w1", "10.0.0.1", "443"),
                    ("w2", "10.0.1.0/24", "80"),
                    ("w3", "10.9.0.1", "22"),
                    ("w4", "10.5.0.1", "25"),
                ],
            ),
            ("gone", 'b', "enforce", &[]),
        ],
    );
    let new = policy(
        "deny",
        &[
            // Same meaning under a new id is no change; w1 widened, w2 narrowed, w3 gone, one new.
            (
                "web",
                'a',
                "audit",
                &[
                    ("x1", "10.0.0.0/24", "443"),
                    ("x2", "10.0.1.7", "80"),
                    ("x4", "10.5.0.1", "25"),
                    ("x5", "10.7.0.1", "8080"),
                ],
            ),
            ("fresh", 'c', "enforce", &[]),
        ],
    );
    let d = diff(&old, &new);
    assert_eq!(d.unknown_binary, Some(("allow".into(), "deny".into())));
    assert_eq!(d.apps_added.len(), 1);
    assert!(d.apps_added[0].starts_with("fresh (sha256 cccccccccccc)"));
    assert!(d.apps_removed[0].starts_with("gone"));
    let w = &d.apps_changed[0];
    assert_eq!(w.mode, Some(("enforce".into(), "audit".into())));
    assert_eq!(
        w.widened,
        [(
            "tcp 10.0.0.1/32 port 443 (w1)".to_owned(),
            "tcp 10.0.0.0/24 port 443 (x1)".to_owned()
        )]
    );
    assert_eq!(
        w.narrowed,
        [(
            "tcp 10.0.1.0/24 port 80 (w2)".to_owned(),
            "tcp 10.0.1.7/32 port 80 (x2)".to_owned()
        )]
    );
    assert_eq!(w.added, ["tcp 10.7.0.1/32 port 8080 (x5)"]);
    assert_eq!(w.removed, ["tcp 10.9.0.1/32 port 22 (w3)"]);
    let text = to_text(&d);
    assert!(
        text.contains("~ unknown_binary: allow -> deny\n+ app fresh"),
        "{text}"
    );
    assert!(
        text.contains(
            "    widened: tcp 10.0.0.1/32 port 443 (w1) -> tcp 10.0.0.0/24 port 443 (x1)"
        ),
        "{text}"
    );

    let same = diff(&old, &old);
    assert!(same.is_empty());
    assert_eq!(to_text(&same), "no changes in meaning\n");
}
