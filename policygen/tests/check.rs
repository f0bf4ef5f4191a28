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

fn host_rule(id: &str, host: &str, ports: &str) -> String {
    format!(
        "[[app.allow]]\nid = \"{id}\"\nprotocol = \"tcp\"\nhost = \"{host}\"\nports = {ports}\n"
    )
}

#[test]
fn name_rules_are_validated_and_canonical() {
    let src = app(&(host_rule("a", "API.Example.com.", "443")
        + &host_rule("b", "*.bücher.example", "443")
        + &rule("c", "10.0.0.0/24", "443")));
    let p = check(&src, Limits::default()).unwrap();
    let hosts: Vec<String> = p.apps[0]
        .name_rules
        .iter()
        .map(|r| r.host.to_string())
        .collect();
    assert_eq!(hosts, ["api.example.com", "*.xn--bcher-kva.example"]);
    assert_eq!(p.apps[0].rules.len(), 1);

    let long = format!("{}.example.com", "a".repeat(64));
    let e = errors(&app(&(host_rule("w", "*.co.uk", "443")
        + &host_rule("x", "*.com", "443")
        + &host_rule("y", &long, "443")
        + &host_rule("z", "api.*.example.com", "443"))));
    assert_eq!(e.len(), 4, "{e:?}");
    assert!(
        e[0].starts_with("8:8: host \"*.co.uk\": *.co.uk is wider than a registrable domain"),
        "{e:?}"
    );
    assert!(
        e[1].contains("*.com is wider than a registrable domain"),
        "{e:?}"
    );
    assert!(e[2].contains("at most 63"), "{e:?}");
    assert!(
        e[3].contains("only allowed as the whole first label"),
        "{e:?}"
    );

    let both = "[[app.allow]]\nid = \"b\"\nprotocol = \"tcp\"\ndst = \"10.0.0.1\"\nhost = \"a.example.com\"\nports = 1\n";
    let e = errors(&app(both));
    assert!(e[0].contains("expected exactly one of `dst`"), "{e:?}");
    let neither = "[[app.allow]]\nid = \"b\"\nprotocol = \"tcp\"\nports = 1\n";
    assert!(errors(&app(neither))[0].contains("expected exactly one of `dst`"));
}

#[test]
fn name_rules_covered_by_another_are_reported() {
    let e = errors(&app(&(host_rule("wild", "*.example.com", "\"1-1024\"")
        + &host_rule("api", "api.example.com", "443")
        + &host_rule("deep", "*.eu.example.com", "80")
        + &host_rule("same", "*.example.com", "\"1-1024\"")
        + &host_rule("bare", "example.com", "443")
        + &host_rule("other-port", "cdn.example.com", "8443"))));
    assert_eq!(e.len(), 3, "{e:?}");
    assert!(
        e[0].contains("rule \"api\" is shadowed by rule \"wild\" (tcp *.example.com port 1-1024)"),
        "{e:?}"
    );
    assert!(
        e[1].contains("rule \"deep\" is shadowed by rule \"wild\""),
        "{e:?}"
    );
    assert!(
        e[2].contains("rule \"same\" duplicates rule \"wild\""),
        "{e:?}"
    );
}

#[test]
fn deny_entries_and_dns_settings_are_validated() {
    let src = format!(
        "version = 1\n[defaults]\ndns_scope = \"host\"\ndns_min_ttl = 120\ndns_grace = 0\n\
         [[deny]]\nsuffix = \"Ads.Example\"\n[[deny]]\nid = \"t\"\nprefix = \"telemetry.\"\n\
         [[app]]\nname = \"x\"\nsha256 = \"{SHA}\"\ndns_scope = \"app\"\n[[app.deny]]\nhost = \"social.example.com\"\n"
    );
    let p = check(&src, Limits::default()).unwrap();
    assert_eq!(p.names.scope.as_str(), "host");
    assert_eq!((p.names.lifetime.min_ttl, p.names.lifetime.grace), (120, 0));
    assert_eq!(p.apps[0].dns_scope.map(|s| s.as_str()), Some("app"));
    assert_eq!(
        p.deny.find("x.ads.example"),
        Some("deny:suffix:Ads.Example")
    );
    assert_eq!(p.deny.find("ads.example"), Some("deny:suffix:Ads.Example"));
    assert_eq!(p.deny.find("telemetry.vendor.example"), Some("t"));
    assert_eq!(p.deny.find("myads.example"), None);
    assert_eq!(
        p.apps[0].deny.find("social.example.com"),
        Some("deny:host:social.example.com")
    );
    assert_eq!(p.apps[0].deny.find("x.social.example.com"), None);

    let e = errors(
        "version = 1\n[defaults]\ndns_scope = \"everyone\"\ndns_min_ttl = -1\n\
         [[deny]]\nhost = \"a.example\"\nsuffix = \"b.example\"\n[[deny]]\nhost = \"bad..name\"\n\
         [[deny]]\nfile = \"x.txt\"\nformat = \"csv\"\n[[deny]]\nprefix = \"a b\"\n",
    );
    assert_eq!(e.len(), 6, "{e:?}");
    assert!(
        e[0].starts_with("3:13: dns_scope = \"everyone\": expected \"app\" or \"host\""),
        "{e:?}"
    );
    assert!(
        e[1].starts_with("4:15: dns_min_ttl = -1: expected seconds"),
        "{e:?}"
    );
    assert!(
        e[2].contains("exactly one of `host`, `suffix`, `prefix` or `file`"),
        "{e:?}"
    );
    assert!(e[3].contains("host \"bad..name\": an empty label"), "{e:?}");
    assert!(
        e[4].contains("format = \"csv\": expected \"hosts\" or \"domains\""),
        "{e:?}"
    );
    assert!(e[5].contains("prefix \"a b\""), "{e:?}");
}

#[test]
fn blocklist_files_are_imported_relative_to_the_policy_with_their_problems() {
    use pinhole_policygen::blocklist::import;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("hosts.txt"),
        "0.0.0.0 ads.example.com\n0.0.0.0 bad..name\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("domains.txt"),
        "# tracking\ntracker.example\n",
    )
    .unwrap();
    let src = format!(
        "version = 1\n[[deny]]\nfile = \"domains.txt\"\nformat = \"domains\"\n\
         [[app]]\nname = \"x\"\nsha256 = \"{SHA}\"\n[[app.deny]]\nid = \"mine\"\nfile = \"hosts.txt\"\n"
    );
    let mut p = check(&src, Limits::default()).unwrap();
    let e: Vec<String> = import(&mut p, dir.path())
        .unwrap_err()
        .iter()
        .map(|d| d.to_string())
        .collect();
    assert_eq!(e, ["10:8: file \"hosts.txt\" line 2: \"bad..name\": an empty label (two dots in a row, or a leading dot)"]);
    std::fs::write(dir.path().join("hosts.txt"), "0.0.0.0 ads.example.com\n").unwrap();
    let mut p = check(&src, Limits::default()).unwrap();
    import(&mut p, dir.path()).unwrap();
    assert_eq!(
        p.deny.find("x.tracker.example"),
        Some("deny:file:domains.txt")
    );
    assert_eq!(p.apps[0].deny.find("ads.example.com"), Some("mine"));
    let mut missing = check(&src.replace("hosts.txt", "nowhere.txt"), Limits::default()).unwrap();
    let e = import(&mut missing, dir.path()).unwrap_err();
    assert!(e[0].message.contains("nowhere.txt"), "{e:?}");
}

#[test]
fn scopes_are_validated() {
    let scoped = |extra: &str| app(&(rule("a", "10.0.0.1", "22") + extra));
    let e = errors(&scoped("uids = [-1]\n"));
    assert_eq!(
        e,
        ["10:8: uids: -1 is not a user or group id (0 to 4294967294)"]
    );
    let e = errors(&scoped("gids = []\n"));
    assert!(
        e[0].starts_with("10:8: gids: an empty list would match no one"),
        "{e:?}"
    );
    let e = errors(&scoped("uids = [1, 2, 3, 4, 5, 6, 7, 8, 9]\n"));
    assert!(e[0].contains("9 ids; a rule takes at most 8"), "{e:?}");
    let e = errors(&scoped("cgroup = \"system.slice\"\n"));
    assert!(
        e[0].starts_with("10:10: cgroup \"system.slice\": expected a path"),
        "{e:?}"
    );
    let e = errors(&scoped("cgroup = \"/a/../b\"\n"));
    assert!(e[0].contains("'..'"), "{e:?}");
    let e = errors(&scoped("expires = \"tomorrow\"\n"));
    assert!(
        e[0].starts_with("10:11: expires \"tomorrow\":") && e[0].contains("RFC 3339"),
        "{e:?}"
    );
    let e = errors(&format!(
        "version = 1\n[[app]]\nname = \"x\"\nsha256 = \"{SHA}\"\ncgroup = \"relative\"\n"
    ));
    assert!(e[0].starts_with("5:10: cgroup \"relative\""), "{e:?}");
    let ok = check(
        &scoped("uids = [0, 33]\ngids = [33]\ncgroup = \"/\"\nexpires = \"2027-01-31T00:00:00+01:00\"\n"),
        Limits::default(),
    )
    .unwrap();
    let s = &ok.apps[0].rules[0].scope;
    assert_eq!(s.expires.as_ref().unwrap().ns, 1_801_350_000_000_000_000);
}

#[test]
fn scoped_rules_are_shadowed_only_by_rules_holding_wherever_they_do() {
    let a = rule("wide", "10.0.0.0/8", "\"1-1024\"");
    let root = rule("root-ssh", "10.0.0.1", "22") + "uids = [0]\n";
    // An unscoped rule covers a scoped one.
    let e = errors(&app(&(a.clone() + &root)));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].contains("rule \"root-ssh\" is shadowed by rule \"wide\""),
        "{e:?}"
    );
    // A scoped rule never covers an unscoped one, nor one of another scope.
    let narrow_wide = rule("wide", "10.0.0.0/8", "\"1-1024\"") + "uids = [1000]\n";
    assert_eq!(errors(&app(&(narrow_wide + &root))), Vec::<String>::new());
    let plain = rule("ssh", "10.0.0.1", "22");
    let scoped_wide = rule("wide", "10.0.0.0/8", "\"1-1024\"") + "uids = [0]\n";
    assert_eq!(
        errors(&app(&(scoped_wide.clone() + &plain))),
        Vec::<String>::new()
    );
    // The same scope: shadowed as without one.
    let e = errors(&app(&(scoped_wide + &root)));
    assert!(
        e[0].contains("rule \"root-ssh\" is shadowed by rule \"wide\""),
        "{e:?}"
    );
}
