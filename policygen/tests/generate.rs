//! Policy generation: soundness on random data, each knob, and the round trip through
//! the written TOML and `check`.

use std::collections::BTreeSet;
use std::net::IpAddr;

use pinhole_analyze::summary::{AppKey, AppSummary, DestKey, DestSummary, Summary};
use pinhole_policygen::check::{check, Limits};
use pinhole_policygen::dns_evidence::DnsEvidence;
use pinhole_policygen::generate::{generate, Knobs};
use pinhole_policygen::matcher::{Matcher, Query};
use pinhole_policygen::write::to_toml;
use pinhole_policygen::{Protocol, Verdict};
use proptest::prelude::*;

const DAY: i64 = 86_400_000_000_000;

fn dest(events: u64, days: &[i64]) -> DestSummary {
    let mut d = DestSummary::new(days[0] * DAY);
    d.events = events;
    d.last_ns = days[days.len() - 1] * DAY;
    d.days = days.iter().copied().collect();
    d
}

/// (protocol, address, port, events, days) of one observed destination.
type Seen<'a> = (&'a str, &'a str, u16, u64, Vec<i64>);

fn summary(apps: Vec<([u8; 32], &str, Vec<Seen<'_>>)>) -> Summary {
    let mut s = Summary::default();
    for (sha, path, dests) in apps {
        let mut a = AppSummary {
            paths: BTreeSet::from([path.to_owned()]),
            ..Default::default()
        };
        for (proto, addr, port, events, days) in dests {
            a.events += events;
            a.dests.insert(
                DestKey {
                    protocol: proto.into(),
                    addr: addr.parse().unwrap(),
                    port,
                },
                dest(events, &days),
            );
        }
        s.events += a.events;
        s.apps.insert(AppKey::Hash(sha), a);
    }
    s
}

fn allowed(
    policy: &pinhole_policygen::Policy,
    sha: &[u8; 32],
    proto: &str,
    addr: &str,
    port: u16,
) -> (Verdict, Option<String>) {
    let m = Matcher::new(policy);
    let d = m.decide(
        &Query {
            sha256: Some(sha),
            protocol: Protocol::parse(proto).unwrap(),
            addr: addr.parse().unwrap(),
            port,
            t_ns: 0,
            subject: Default::default(),
        },
        &DnsEvidence::default(),
    );
    (d.verdict, d.rule.map(|r| r.id.clone()))
}

#[test]
fn exact_by_default_and_folded_on_evidence() {
    let sha = [1u8; 32];
    let s = summary(vec![(
        sha,
        "/usr/bin/web",
        vec![
            ("tcp", "10.0.0.1", 443, 10, vec![0]),
            ("tcp", "10.0.0.2", 443, 10, vec![0]),
            ("tcp", "10.0.0.3", 443, 10, vec![0]),
            ("tcp", "10.0.0.9", 443, 10, vec![1]),
            ("tcp", "10.9.0.1", 443, 10, vec![1]),
            ("tcp", "192.0.2.1", 8000, 2, vec![0]),
            ("tcp", "192.0.2.1", 8001, 2, vec![0]),
            ("udp", "10.0.0.53", 53, 5, vec![0, 1]),
        ],
    )]);
    let g = generate(&s, &Knobs::default());
    let app = &g.policy.apps[0];
    let shown: Vec<String> = app
        .rules
        .iter()
        .map(|r| format!("{} {} {}", r.protocol.as_str(), r.dst, r.ports))
        .collect();
    assert_eq!(
        shown,
        [
            "tcp 10.0.0.0/28 443",
            "tcp 10.9.0.1/32 443",
            "tcp 192.0.2.1/32 8000-8001",
            "udp 10.0.0.53/32 53"
        ],
        "four addresses in one /24 fold to their covering prefix; contiguous ports become a range"
    );
    let folded = &app.rules[0];
    assert_eq!(folded.evidence.as_ref().unwrap().events, 40);
    assert_eq!(folded.evidence.as_ref().unwrap().days, 2);
    assert!(g.explain["web"]
        .iter()
        .any(|l| l.contains("folded 4 addresses")));
    assert_eq!(
        allowed(&g.policy, &sha, "tcp", "10.0.0.12", 443).0,
        Verdict::Allowed,
        "the prefix allows a neighbour"
    );
    assert_eq!(
        allowed(&g.policy, &sha, "tcp", "10.0.0.12", 80).0,
        Verdict::Denied
    );

    let no_fold = Knobs {
        v4_fold_threshold: 5,
        ..Knobs::default()
    };
    assert_eq!(
        generate(&s, &no_fold).policy.apps[0].rules.len(),
        8 - 1,
        "below the threshold nothing folds"
    );
    let narrow = Knobs {
        v4_max_width: 30,
        ..Knobs::default()
    };
    let g = generate(&s, &narrow);
    assert!(
        g.policy.apps[0]
            .rules
            .iter()
            .all(|r| r.dst.prefix_len() >= 30),
        "never wider than the limit"
    );
}

#[test]
fn min_support_max_rules_and_ephemeral_ports() {
    let sha = [2u8; 32];
    let mut dests = vec![
        ("tcp", "203.0.113.5", 4444, 1, vec![3]),
        ("tcp", "10.0.0.1", 443, 50, vec![0, 1, 2]),
    ];
    for p in [40000u16, 40001, 50000, 60000, 61000] {
        dests.push(("udp", "10.0.0.2", p, 2, vec![0, 1]));
    }
    let s = summary(vec![(sha, "/usr/bin/agent", dests)]);
    let g = generate(
        &s,
        &Knobs {
            min_days: 2,
            ..Knobs::default()
        },
    );
    let app = &g.policy.apps[0];
    assert_eq!(
        app.review.len(),
        1,
        "one event on one day is held for review"
    );
    assert_eq!(app.review[0].dst.to_string(), "203.0.113.5/32");
    assert_eq!(
        allowed(&g.policy, &sha, "tcp", "203.0.113.5", 4444).0,
        Verdict::Denied,
        "review never matches"
    );
    let eph = app
        .rules
        .iter()
        .find(|r| r.protocol == Protocol::Udp)
        .unwrap();
    assert_eq!(eph.ports.to_string(), "32768-65535");
    assert_eq!(app.rules.len(), 2);

    let g = generate(
        &s,
        &Knobs {
            max_rules_per_app: 1,
            ephemeral_threshold: 0,
            ..Knobs::default()
        },
    );
    assert_eq!(g.policy.apps[0].rules.len(), 1);
    assert_eq!(
        g.policy.apps[0].rules[0].ports.to_string(),
        "443",
        "the busiest rule is kept"
    );

    let g = generate(
        &s,
        &Knobs {
            min_days: 2,
            include_review: true,
            ..Knobs::default()
        },
    );
    assert_eq!(
        allowed(&g.policy, &sha, "tcp", "203.0.113.5", 4444).0,
        Verdict::Allowed
    );
}

#[test]
fn written_policy_checks_and_reads_back_identically() {
    let s = summary(vec![
        (
            [3u8; 32],
            "/usr/bin/a",
            vec![
                ("tcp", "2001:db8::1", 443, 3, vec![0]),
                ("udp", "::1", 53, 2, vec![0]),
            ],
        ),
        (
            [4u8; 32],
            "/opt/b \"quoted\"",
            vec![("tcp", "127.0.0.1", 5432, 9, vec![0, 1])],
        ),
        (
            [5u8; 32],
            "/opt/b \"quoted\"",
            vec![("tcp", "127.0.0.1", 5432, 1, vec![1])],
        ),
    ]);
    let g = generate(&s, &Knobs::default());
    let text = to_toml(&g.policy, &["generated for a test".into()]);
    assert!(text.starts_with("# generated for a test\nversion = 1\n"));
    let back = check(&text, Limits::default()).unwrap_or_else(|d| panic!("{d:?}\n{text}"));
    assert_eq!(back, g.policy);
    assert_eq!(
        to_toml(&back, &["generated for a test".into()]),
        text,
        "same policy, same bytes"
    );
    let names: Vec<_> = back.apps.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(
        names,
        ["a", "b__quoted_.05050505", "b__quoted_.04040404"]
            .iter()
            .copied()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
    );
}

/// Found by the soundness property: a prefix folded for one port covered an exact
/// address kept for another once both collapsed to the ephemeral range.
#[test]
fn regression_fold_then_ephemeral_collapse_leaves_no_shadowed_rule() {
    let sha = [0u8; 32];
    let s = summary(vec![(
        sha,
        "/bin/app0",
        vec![
            ("tcp", "2001:db8:2::", 32814, 1, vec![0]),
            ("tcp", "2001:db8::", 32814, 1, vec![0]),
            ("tcp", "2001:db8::", 32768, 1, vec![0]),
        ],
    )]);
    let knobs = Knobs {
        v4_fold_threshold: 0,
        v6_fold_threshold: 1,
        v6_max_width: 32,
        ephemeral_threshold: 1,
        hold_anomalies: false,
        ..Knobs::default()
    };
    let g = generate(&s, &knobs);
    let policy = check(&to_toml(&g.policy, &[]), Limits::default()).expect("no shadowed rules");
    assert_eq!(policy.apps[0].rules.len(), 1);
    assert_eq!(
        policy.apps[0].rules[0].evidence.as_ref().unwrap().events,
        3,
        "evidence merged"
    );
    for (addr, port) in [
        ("2001:db8:2::", 32814),
        ("2001:db8::", 32814),
        ("2001:db8::", 32768),
    ] {
        assert_eq!(
            allowed(&policy, &sha, "tcp", addr, port).0,
            Verdict::Allowed
        );
    }
}

fn arb_addr() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        (0u8..4, 0u8..3, any::<u8>()).prop_map(|(a, b, c)| IpAddr::from([10, a, b, c])),
        (0u16..3, any::<u16>()).prop_map(|(a, b)| IpAddr::from([0x2001, 0xdb8, a, 0, 0, 0, 0, b])),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Soundness: every destination of the training data is allowed by the policy
    /// generated from it, whatever the widening knobs (support minimums at 1, anomalies
    /// learnt like any traffic).
    #[test]
    fn every_training_event_is_allowed(
        apps in prop::collection::vec(prop::collection::vec((0u8..3, arb_addr(), prop_oneof![0u16..100, 32768u16..33000], 1u64..5), 1..40), 1..4),
        v4_threshold in 0usize..6,
        v6_threshold in 0usize..6,
        v4_width in 8u8..32,
        v6_width in 32u8..128,
        eph in 0usize..5,
    ) {
        let mut s = Summary::default();
        for (i, dests) in apps.iter().enumerate() {
            let mut a = AppSummary { paths: BTreeSet::from([format!("/bin/app{i}")]), ..Default::default() };
            for (proto, addr, port, events) in dests {
                let protocol = ["tcp", "udp", "icmp"][*proto as usize];
                let k = DestKey { protocol: protocol.into(), addr: *addr, port: *port };
                a.dests.entry(k).or_insert_with(|| dest(*events, &[0]));
            }
            s.apps.insert(AppKey::Hash([i as u8; 32]), a);
        }
        let knobs = Knobs {
            v4_fold_threshold: v4_threshold, v6_fold_threshold: v6_threshold,
            v4_max_width: v4_width, v6_max_width: v6_width, ephemeral_threshold: eph,
            hold_anomalies: false,
            ..Knobs::default()
        };
        let g = generate(&s, &knobs);
        // The written policy passes check (no duplicate or shadowed rules, limits kept).
        let text = to_toml(&g.policy, &[]);
        let policy = check(&text, Limits { min_v4_prefix: 8, min_v6_prefix: 32 }).map_err(|d| TestCaseError::fail(format!("{d:?}")))?;
        let m = Matcher::new(&policy);
        for (k, a) in &s.apps {
            let AppKey::Hash(sha) = k else { unreachable!() };
            for d in a.dests.keys() {
                let q = Query { sha256: Some(sha), protocol: Protocol::parse(&d.protocol).unwrap(), addr: d.addr, port: d.port, t_ns: 0, subject: Default::default() };
                prop_assert_eq!(m.decide(&q, &DnsEvidence::default()).verdict, Verdict::Allowed, "{:?}", d);
            }
        }
    }
}

/// Ping sockets pass the connect hooks with port 0: a policy generated from them must
/// pass check and allow them.
#[test]
fn icmp_destinations_with_port_zero_round_trip() {
    let sha = [7u8; 32];
    let s = summary(vec![(
        sha,
        "/usr/bin/ping",
        vec![
            ("icmp", "192.0.2.1", 0, 3, vec![0]),
            ("icmp", "::1", 0, 1, vec![0]),
        ],
    )]);
    let g = generate(&s, &Knobs::default());
    let policy =
        check(&to_toml(&g.policy, &[]), Limits::default()).unwrap_or_else(|d| panic!("{d:?}"));
    assert_eq!(
        allowed(&policy, &sha, "icmp", "192.0.2.1", 0).0,
        Verdict::Allowed
    );
    assert_eq!(
        allowed(&policy, &sha, "icmp", "192.0.2.2", 0).0,
        Verdict::Denied
    );
}

/// Destinations whose connects carried a name become rules by name (one per name,
/// port and protocol; a wildcard from the threshold of sibling names up), the others
/// stay address rules, and every rule says which.
#[test]
fn names_from_dns_become_name_rules_and_addresses_stay_where_none_was_seen() {
    let sha = [9u8; 32];
    let mut s = summary(vec![(
        sha,
        "/usr/bin/client",
        vec![
            ("tcp", "10.0.0.1", 443, 5, vec![1]),
            ("tcp", "10.0.0.2", 443, 5, vec![2]),
            ("tcp", "10.1.0.1", 443, 3, vec![1]),
            ("tcp", "10.1.0.2", 443, 3, vec![1]),
            ("tcp", "10.1.0.3", 443, 3, vec![1]),
            ("tcp", "10.1.0.4", 443, 3, vec![1]),
            ("tcp", "10.2.0.1", 443, 2, vec![1]),
            ("udp", "192.0.2.1", 53, 9, vec![1, 2]),
        ],
    )]);
    let app = s.apps.get_mut(&AppKey::Hash(sha)).unwrap();
    let named = [
        ("10.0.0.1", "api.example.com"),
        ("10.0.0.2", "api.example.com"),
        ("10.1.0.1", "a.cdn.example.net"),
        ("10.1.0.2", "b.cdn.example.net"),
        ("10.1.0.3", "c.example.net"),
        ("10.1.0.4", "example.net"),
        ("10.2.0.1", "only.example.org"),
    ];
    for (addr, name) in named {
        let d = app
            .dests
            .iter_mut()
            .find(|(k, _)| k.addr.to_string() == addr)
            .unwrap()
            .1;
        d.names.insert(name.to_owned());
    }
    let g = generate(
        &s,
        &Knobs {
            name_wildcard_threshold: 3,
            ..Default::default()
        },
    );
    let a = &g.policy.apps[0];
    let hosts: Vec<String> = a
        .name_rules
        .iter()
        .map(|r| format!("{} {} {}", r.protocol.as_str(), r.host, r.ports))
        .collect();
    assert_eq!(
        hosts,
        [
            "tcp api.example.com 443",
            "tcp example.net 443",
            "tcp only.example.org 443",
            "tcp *.example.net 443"
        ],
        "{:#?}",
        g.explain
    );
    assert!(a
        .name_rules
        .iter()
        .all(|r| r.evidence.as_ref().unwrap().source.as_deref() == Some("dns")));
    assert_eq!(a.name_rules[0].evidence.as_ref().unwrap().events, 10);
    assert_eq!(a.rules.len(), 1, "only the unnamed resolver address");
    assert_eq!(
        a.rules[0].evidence.as_ref().unwrap().source.as_deref(),
        Some("address")
    );
    let notes = g.explain["client"].join("\n");
    assert!(
        notes.contains("folded 3 names under example.net"),
        "{notes}"
    );
    assert!(
        notes.contains("no DNS answer this app received named"),
        "{notes}"
    );
    // The written policy passes check as generated.
    let again = check(&to_toml(&g.policy, &[]), Limits::default()).unwrap();
    assert_eq!(again.apps[0].name_rules, a.name_rules);

    let none = generate(
        &s,
        &Knobs {
            name_wildcard_threshold: 0,
            ..Default::default()
        },
    );
    assert_eq!(
        none.policy.apps[0].name_rules.len(),
        6,
        "no wildcard when the knob is 0"
    );
}
