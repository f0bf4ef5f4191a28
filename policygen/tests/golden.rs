//! The written format, byte for byte: a fixed input and its committed output. A change
//! here is a change of the public file format; update the golden file deliberately.

use std::collections::BTreeSet;

use pinhole_analyze::summary::{AppKey, AppSummary, DestKey, DestSummary, Summary};
use pinhole_policygen::generate::{generate, Knobs};
use pinhole_policygen::write::to_toml;

const DAY: i64 = 86_400_000_000_000;
const T0: i64 = 1_795_305_600_000_000_000; // 2026-11-22

fn fixed_summary() -> Summary {
    let mut s = Summary::default();
    let seen = [
        ("tcp", "10.0.0.1", 443, 120, 3),
        ("tcp", "10.0.0.2", 443, 80, 3),
        ("tcp", "10.0.0.3", 443, 40, 2),
        ("tcp", "10.0.0.4", 443, 10, 1),
        ("udp", "10.0.0.53", 53, 300, 3),
        ("tcp", "2001:db8::10", 8443, 5, 1),
        ("tcp", "203.0.113.9", 4444, 1, 1),
    ];
    let mut a = AppSummary {
        paths: BTreeSet::from(["/usr/bin/curl".to_owned()]),
        comms: BTreeSet::from(["curl".to_owned()]),
        ..Default::default()
    };
    for (proto, addr, port, events, days) in seen {
        let mut d = DestSummary::new(T0);
        d.events = events;
        d.last_ns = T0 + (days - 1) * DAY + 3_600_000_000_000;
        d.days = (0..days).map(|i| T0 / DAY + i).collect();
        a.dests.insert(
            DestKey {
                protocol: proto.into(),
                addr: addr.parse().unwrap(),
                port,
            },
            d,
        );
    }
    s.apps.insert(AppKey::Hash([0x2a; 32]), a);
    s
}

#[test]
fn generated_policy_matches_the_golden_file() {
    let g = generate(
        &fixed_summary(),
        &Knobs {
            min_events: 2,
            ..Knobs::default()
        },
    );
    let text = to_toml(&g.policy, &["golden test".into()]);
    let golden = include_str!("golden/curl.toml");
    assert_eq!(text, golden, "the policy file format changed:\n{text}");
}
