//! `check` on a corpus of bad policies: each problem at its line and column, saying
//! what is expected.

use pinhole_policygen::check::{check, Diagnostic, Limits};

const SHA: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

fn errors(src: &str) -> Vec<String> {
    check(src, Limits::default())
        .err()
        .unwrap_or_default()
        .iter()
        .map(Diagnostic::to_string)
        .collect()
}

fn app(rules: &str) -> String {
    format!("version = 1\n[[app]]\nname = \"x\"\nsha256 = \"{SHA}\"\n{rules}")
}

fn rule(id: &str, dst: &str, ports: &str) -> String {
    format!("[[app.allow]]\nid = \"{id}\"\nprotocol = \"tcp\"\ndst = \"{dst}\"\nports = {ports}\n")
}

#[test]
fn a_valid_policy_passes() {
    let src =
        app(&(rule("a", "10.0.0.0/24", "443") + &rule("b", "2001:db8::/48", "\"8000-8100\"")));
    let p = check(&src, Limits::default()).unwrap();
    assert_eq!(p.apps[0].rules.len(), 2);
    assert_eq!(p.apps[0].rules[1].ports.to_string(), "8000-8100");
}

#[test]
fn syntax_and_unknown_fields() {
    let e = errors("version = 1\n[[app]\n");
    assert_eq!(e.len(), 1);
    assert!(e[0].starts_with("2:"), "the broken header's line: {e:?}");
    let e = errors("version = 1\n[[app]]\nname = \"x\"\nsha256 = \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"\ncolour = \"red\"\n");
    assert_eq!(e.len(), 1);
    assert!(e[0].starts_with("5:1: unknown field `colour`"), "{e:?}");
    let e = errors("version = 2\n");
    assert_eq!(e, ["1:11: policy version 2 is not supported; expected 1"]);
    let e = errors("version = 1\n[defaults]\nunknown_binary = \"maybe\"\n");
    assert_eq!(
        e,
        ["3:18: unknown_binary = \"maybe\": expected \"allow\", \"deny\" or \"audit\""]
    );
}

#[test]
fn malformed_values_name_their_position() {
    let e = errors(&app(&rule("a", "10.0.0.300", "443")));
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with("8:7: dst \"10.0.0.300\": expected an IP address or prefix"),
        "{e:?}"
    );
    let e = errors(&app(&rule("a", "10.0.0.1/24", "443")));
    assert_eq!(
        e,
        ["8:7: dst \"10.0.0.1/24\" has host bits set: expected \"10.0.0.0/24\""]
    );
    let e = errors(&app(&rule("a", "0.0.0.0/0", "443")));
    assert_eq!(
        e,
        ["8:7: dst \"0.0.0.0/0\" is over-broad: IPv4 prefixes must be /8 or longer"]
    );
    let e = errors(&app(&rule("a", "::/0", "443")));
    assert_eq!(
        e,
        ["8:7: dst \"::/0\" is over-broad: IPv6 prefixes must be /32 or longer"]
    );
    let e = errors(&app(&rule("a", "::ffff:10.0.0.1", "443")));
    assert!(
        e[0].contains("write IPv4-mapped addresses in IPv4 form"),
        "{e:?}"
    );
    for bad in ["70000", "\"9-3\"", "\"http\"", "-1"] {
        let e = errors(&app(&rule("a", "10.0.0.1", bad)));
        assert_eq!(e.len(), 1, "{bad}");
        assert!(
            e[0].starts_with("9:9: ports ")
                && e[0].ends_with("expected a port 0-65535 or a range \"lo-hi\" with lo <= hi"),
            "{bad}: {e:?}"
        );
    }
    let e = errors(
        "version = 1
[[app]]
name = \"x\"
sha256 = \"ABC\"
",
    );
    assert_eq!(
        e,
        ["4:10: sha256 \"ABC\": expected 64 lowercase hex digits"]
    );
    let e = errors(&app(
        "[[app.allow]]\nid = \"a\"\nprotocol = \"sctp\"\ndst = \"10.0.0.1\"\nports = 1\n",
    ));
    assert_eq!(
        e,
        ["7:12: protocol \"sctp\": expected \"tcp\", \"udp\" or \"icmp\""]
    );
}

#[test]
fn duplicate_ids_apps_and_rules_and_shadowed_rules() {
    let e = errors(&app(
        &(rule("a", "10.0.0.1", "443") + &rule("a", "10.0.0.2", "443"))
    ));
    assert_eq!(e, ["11:6: duplicate rule id \"a\" (first used on line 6)"]);
    let e = errors(&app(
        &(rule("a", "10.0.0.1", "443") + &rule("b", "10.0.0.1", "443"))
    ));
    assert_eq!(
        e,
        ["10:1: rule \"b\" duplicates rule \"a\" (tcp 10.0.0.1/32 port 443)"]
    );
    let e = errors(&app(
        &(rule("a", "10.0.0.0/24", "\"1-1024\"") + &rule("b", "10.0.0.7", "443"))
    ));
    assert_eq!(
        e,
        ["10:1: rule \"b\" is shadowed by rule \"a\" (tcp 10.0.0.0/24 port 1-1024)"]
    );
    let e = errors(&app(
        &(rule("b", "10.0.0.7", "443") + &rule("a", "10.0.0.0/24", "443"))
    ));
    assert_eq!(
        e,
        ["5:1: rule \"b\" is shadowed by rule \"a\" (tcp 10.0.0.0/24 port 443)"]
    );
    let twice = format!("version = 1\n[[app]]\nname = \"x\"\nsha256 = \"{SHA}\"\n[[app]]\nname = \"y\"\nsha256 = \"{SHA}\"\n");
    let e = errors(&twice);
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with("7:10: sha256 ")
            && e[0].ends_with("names a second app; each binary has one [[app]]"),
        "{e:?}"
    );
}
