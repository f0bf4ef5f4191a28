//! Replay on datasets with known answers: the training window replays clean, and the
//! held-out anomalies the generator injected are exactly what would be denied.

use pinhole_analyze::{summarize, Filter, ScanOptions};
use pinhole_policygen::generate::{generate, Knobs};
use pinhole_policygen::replay::replay;
use pinhole_recorder::synth::{generate as synth, SynthConfig};

const DAY: i64 = 86_400_000_000_000;

#[test]
fn training_replays_clean_and_held_out_anomalies_are_denied() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SynthConfig {
        events: 30_000,
        apps: 20,
        destinations: 500,
        days: 3,
        ..Default::default()
    };
    let report = synth(&cfg, dir.path()).unwrap();
    let split = cfg.start_ns + 2 * DAY;
    let train = Filter {
        since_ns: None,
        until_ns: Some(split),
    };
    let s = summarize(
        dir.path(),
        &ScanOptions {
            filter: train,
            skip_bad: false,
            threads: 2,
        },
        &(),
    )
    .unwrap()
    .summary;
    let g = generate(&s, &Knobs::default());

    // Soundness through the real files and the replay path: nothing of the training
    // window would be denied.
    let r = replay(&g.policy, dir.path(), &train).unwrap();
    assert_eq!(r.events, s.events);
    assert_eq!(
        r.denied(),
        0,
        "{:?}",
        r.apps
            .iter()
            .filter(|(_, a)| a.denied > 0)
            .collect::<Vec<_>>()
    );

    // Held out: the one-off destination and every port of the scan are denied.
    let held = replay(
        &g.policy,
        dir.path(),
        &Filter {
            since_ns: Some(split),
            until_ns: None,
        },
    )
    .unwrap();
    let (one_off_sha, addr, port) = report.one_off.unwrap();
    let (scan_sha, target) = report.scanner.unwrap();
    let app_of = |sha: [u8; 32]| {
        g.policy
            .apps
            .iter()
            .find(|a| a.sha256 == sha)
            .map(|a| a.name.clone())
    };
    let one_off = &held.apps[&app_of(one_off_sha)];
    assert_eq!(
        one_off.denied_dests.get(&format!("tcp {addr}:{port}")),
        Some(&1)
    );
    let scanner = &held.apps[&app_of(scan_sha)];
    let scanned = scanner
        .denied_dests
        .keys()
        .filter(|d| d.starts_with(&format!("tcp {target}:")))
        .count();
    assert!(scanned >= 1000, "the scan's ports are denied: {scanned}");
    // The rehashed binary is unknown to the policy: the default (allow) applies.
    let unknown = &held.apps[&None];
    assert!(unknown.events > 0 && unknown.denied == 0);
    assert!(
        held.deny_rate() > 0.0 && held.deny_rate() < 0.2,
        "{}",
        held.deny_rate()
    );
}
