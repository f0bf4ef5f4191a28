//! Anomalies injected inside the training window (a one-off destination, a 1,024-port
//! scan, a binary whose bytes change under its path) are flagged by `analyze` and held
//! for review by `generate`, each with its reason; none becomes an allow rule.

use pinhole_analyze::anomalies::Kind;
use pinhole_analyze::profile::{build_profiles, DatasetInfo};
use pinhole_analyze::{summarize, ScanOptions};
use pinhole_policygen::generate::{generate, Knobs};
use pinhole_policygen::matcher::{Matcher, Query};
use pinhole_policygen::{Protocol, Verdict};
use pinhole_recorder::synth::{generate as synth, SynthConfig};

#[test]
fn anomalies_inside_the_training_window_are_flagged_and_held_for_review() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SynthConfig {
        events: 60_000,
        apps: 20,
        destinations: 500,
        days: 4,
        anomaly_day: Some(1),
        ..Default::default()
    };
    let report = synth(&cfg, dir.path()).unwrap();
    let opts = ScanOptions {
        filter: Default::default(),
        skip_bad: false,
        threads: 2,
    };
    let s = summarize(dir.path(), &opts, &()).unwrap().summary;

    // analyze: each anomaly listed for its app.
    let info = DatasetInfo {
        path: "x".into(),
        files: 0,
        events: 0,
        first_seen: String::new(),
        last_seen: String::new(),
        since: None,
        until: None,
    };
    let doc = build_profiles(&s, info);
    let kinds_of = |sha: [u8; 32]| -> Vec<Kind> {
        let id = hex::encode(sha);
        let app = doc
            .apps
            .iter()
            .find(|a| a.sha256.as_deref() == Some(&id))
            .unwrap();
        app.anomalies.iter().map(|x| x.kind).collect()
    };
    let (one_off_sha, addr, port) = report.one_off.unwrap();
    let (scan_sha, target) = report.scanner.unwrap();
    let (_, new_sha) = report.rehashed.unwrap();
    assert!(kinds_of(one_off_sha).contains(&Kind::SeenOnce));
    assert!(kinds_of(scan_sha).contains(&Kind::PortScan));
    assert!(kinds_of(new_sha).contains(&Kind::NewBytes));

    // generate: held for review with why, never allowed.
    let g = generate(&s, &Knobs::default());
    let app = |sha: [u8; 32]| g.policy.apps.iter().find(|a| a.sha256 == sha).unwrap();
    let one_off = app(one_off_sha);
    let held = one_off
        .review
        .iter()
        .find(|r| r.dst.addr() == addr && r.ports.lo == port)
        .expect("the one-off is held");
    assert_eq!(one_off.review_reasons[&held.id], "seen once");
    let scanner = app(scan_sha);
    let scan_held = scanner
        .review
        .iter()
        .filter(|r| r.dst.addr() == target)
        .filter(|r| {
            scanner.review_reasons[&r.id].starts_with("port scan: 1024 ports of tcp 10.250.0.9")
        })
        .count();
    assert_eq!(scan_held, 1024);
    let m = Matcher::new(&g.policy);
    for (sha, a, p) in [
        (one_off_sha, addr, port),
        (scan_sha, target, 80),
        (scan_sha, target, 1000),
    ] {
        let q = Query {
            sha256: Some(&sha),
            protocol: Protocol::Tcp,
            addr: a,
            port: p,
            t_ns: 0,
            subject: Default::default(),
        };
        assert_eq!(
            m.decide(&q, &Default::default()).verdict,
            Verdict::Denied,
            "{a}:{p}"
        );
    }
    let new_app = app(new_sha);
    assert!(
        g.explain[&new_app.name]
            .iter()
            .any(|n| n.starts_with("flagged: new bytes under /usr/bin/app-1")),
        "{:?}",
        g.explain[&new_app.name]
    );
}
