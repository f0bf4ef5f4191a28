//! The enforcer's compiled tables decide exactly what the matcher decides, for random
//! policies with nested prefixes, overlapping port ranges and rule scopes (users,
//! cgroups, expiry) that make the tables fall back along chains.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use pinhole_policygen::compile::{compile, ipproto, TableModel};
use pinhole_policygen::dns_evidence::DnsEvidence;
use pinhole_policygen::matcher::{Matcher, Query};
use pinhole_policygen::rule_scope::{Expiry, RuleScope, ScopeParts, Subject};
use pinhole_policygen::{App, Mode, Policy, PortRange, Protocol, Rule, UnknownAction};
use proptest::prelude::*;

/// Addresses from a tiny space, so prefixes nest and collide often.
fn addr() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        (0u8..4, 0u8..4).prop_map(|(c, d)| IpAddr::V4(Ipv4Addr::new(10, 1, c, d))),
        (0u16..4, 0u16..4)
            .prop_map(|(a, b)| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, a, 0, 0, 0, 0, b))),
    ]
}

fn net() -> impl Strategy<Value = IpNet> {
    (addr(), 0u8..=128).prop_map(|(a, len)| {
        let len = match a {
            IpAddr::V4(_) => 14 + len % 19, // /14 to /32
            IpAddr::V6(_) => 30 + len % 99, // /30 to /128
        };
        IpNet::new(a, len).unwrap().trunc()
    })
}

fn protocol() -> impl Strategy<Value = Protocol> {
    prop_oneof![
        Just(Protocol::Tcp),
        Just(Protocol::Udp),
        Just(Protocol::Icmp)
    ]
}

fn ports() -> impl Strategy<Value = PortRange> {
    (0u16..12, 0u16..6).prop_map(|(lo, w)| PortRange { lo, hi: lo + w })
}

/// Mostly unscoped; else one of a few users, cgroups or expiries, so scoped rules
/// overlap and fall back to each other.
fn scope() -> impl Strategy<Value = RuleScope> {
    (0u8..8, 0u8..3, 0u8..3, 0u8..3).prop_map(|(kind, uid, cg, exp)| match kind {
        0..=3 => RuleScope::default(),
        _ => RuleScope::from(ScopeParts {
            uids: if kind & 1 == 1 {
                vec![u32::from(uid) * 500]
            } else {
                vec![]
            },
            gids: vec![],
            cgroup: (kind & 2 == 2 && cg > 0).then(|| ["/", "/a", "/a/b"][cg as usize].to_owned()),
            expires: (kind == 7 || exp == 2).then(|| Expiry {
                ns: i64::from(exp) * 10,
                text: String::new(),
            }),
        }),
    })
}

fn app(index: usize) -> impl Strategy<Value = App> {
    (
        prop::collection::vec((protocol(), net(), ports(), scope()), 0..12),
        prop_oneof![Just(Mode::Enforce), Just(Mode::Audit)],
    )
        .prop_map(move |(rules, mode)| App {
            name: format!("app{index}"),
            sha256: [index as u8 + 1; 32],
            paths: vec![],
            comms: vec![],
            mode,
            rules: rules
                .into_iter()
                .enumerate()
                .map(|(i, (protocol, dst, ports, scope))| Rule {
                    id: format!("r{index}-{i}"),
                    protocol,
                    dst,
                    ports,
                    scope,
                    evidence: None,
                })
                .collect(),
            review: vec![],
            ..Default::default()
        })
}

fn policy() -> impl Strategy<Value = Policy> {
    (
        prop_oneof![
            Just(UnknownAction::Allow),
            Just(UnknownAction::Deny),
            Just(UnknownAction::Audit)
        ],
        (app(0), app(1)),
    )
        .prop_map(|(unknown_binary, (a, b))| Policy {
            unknown_binary,
            apps: vec![a, b],
            ..Default::default()
        })
}

/// The mapped form of IPv4 addresses is exercised too.
fn query_addr() -> impl Strategy<Value = IpAddr> {
    (addr(), any::<bool>()).prop_map(|(a, mapped)| match (a, mapped) {
        (IpAddr::V4(v4), true) => IpAddr::V6(v4.to_ipv6_mapped()),
        _ => a,
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn tables_decide_like_the_matcher(
        policy in policy(),
        events in prop::collection::vec((0u8..3, protocol(), query_addr(), 0u16..20, (0u32..3, 0usize..4, 0i64..30)), 1..40),
    ) {
        let matcher = Matcher::new(&policy);
        let compiled = compile(&policy);
        prop_assume!(compiled.overlong_chains.is_empty());
        let tables = TableModel::new(&compiled);
        for (who, protocol, addr, port, (uid, cg, t_ns)) in events {
            let sha = [who + 1; 32];
            let sha = (who < 3).then_some(&sha);
            let subject = Subject { uid: Some(uid * 500), gid: Some(0), cgroup: ["/", "/a", "/a/b", "/c"].get(cg).copied() };
            let want = matcher.decide(&Query { sha256: sha, protocol, addr, port, t_ns, subject }, &DnsEvidence::default());
            let got = tables.decide(sha, ipproto(protocol), (addr, port), &subject, t_ns);
            let got_rule = compiled.rule(got.rule).map(|(_, id)| id);
            prop_assert_eq!(got.verdict, want.verdict);
            prop_assert_eq!(got_rule, want.rule.map(|r| r.id.as_str()), "{:?} {} {}", protocol, addr, port);
        }
    }
}

#[test]
fn icmpv6_is_matched_as_icmp_and_other_protocols_never_match() {
    let p = Policy {
        unknown_binary: UnknownAction::Allow,
        apps: vec![App {
            name: "ping".into(),
            sha256: [1; 32],
            paths: vec![],
            comms: vec![],
            mode: Mode::Enforce,
            rules: vec![Rule {
                id: "any".into(),
                protocol: Protocol::Icmp,
                dst: "::/0".parse().unwrap(),
                ports: PortRange { lo: 0, hi: 65535 },
                scope: Default::default(),
                evidence: None,
            }],
            review: vec![],
            ..Default::default()
        }],
        ..Default::default()
    };
    let c = compile(&p);
    let t = TableModel::new(&c);
    assert_eq!(
        t.lookup(
            1,
            58,
            "2001:db8::1".parse().unwrap(),
            0,
            &Subject::default(),
            0
        ),
        1
    );
    assert_eq!(
        t.lookup(
            1,
            132,
            "2001:db8::1".parse().unwrap(),
            0,
            &Subject::default(),
            0
        ),
        0
    );
    // An IPv6 rule never matches an IPv4(-mapped) destination, as in the matcher.
    assert_eq!(
        t.lookup(
            1,
            1,
            "::ffff:10.0.0.1".parse().unwrap(),
            0,
            &Subject::default(),
            0
        ),
        0
    );
}
