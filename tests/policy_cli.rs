//! `pinhole policy check` as a user runs it.

mod common;

use std::ffi::OsStr;

use common::pinhole;

#[test]
fn check_reports_ok_or_each_problem_with_its_position() {
    let dir = tempfile::tempdir().unwrap();
    let sha = "ab".repeat(32);
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        format!("version = 1\n[[app]]\nname = \"x\"\nsha256 = \"{sha}\"\n[[app.allow]]\nid = \"x-1\"\nprotocol = \"tcp\"\ndst = \"10.0.0.0/24\"\nports = 443\n"),
    )
    .unwrap();
    let out = pinhole([OsStr::new("policy"), "check".as_ref(), good.as_ref()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(
        "ok: 1 apps, 1 allow rules by address, 0 by name, 0 held for review, 0 names denied"
    ));

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, format!("version = 1\n[[app]]\nname = \"x\"\nsha256 = \"{sha}\"\n[[app.allow]]\nid = \"x-1\"\nprotocol = \"tcp\"\ndst = \"0.0.0.0/0\"\nports = 99999\n")).unwrap();
    let out = pinhole([OsStr::new("policy"), "check".as_ref(), bad.as_ref()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml:8:7: dst \"0.0.0.0/0\" is over-broad"),
        "{err}"
    );
    assert!(
        err.contains("bad.toml:9:9: ports 99999: expected a port 0-65535"),
        "{err}"
    );
    assert!(
        err.contains("2 problem(s)") && !err.contains("panicked"),
        "{err}"
    );
}

#[test]
fn generate_replay_and_evaluate_on_a_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let ds = dir.path().join("events");
    let cfg = pinhole_recorder::synth::SynthConfig {
        events: 6_000,
        apps: 10,
        destinations: 200,
        days: 3,
        ..Default::default()
    };
    pinhole_recorder::synth::generate(&cfg, &ds).unwrap();
    let policy = dir.path().join("policy.toml");
    let out = pinhole([
        OsStr::new("policy"),
        "generate".as_ref(),
        ds.as_ref(),
        "--until".as_ref(),
        "2026-11-24".as_ref(),
        "--explain".as_ref(),
        // Destinations seen once would be held for review (and replay as denied);
        // this test is about the commands, so everything seen is learnt.
        "--allow-anomalies".as_ref(),
        "-o".as_ref(),
        policy.as_ref(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("app-0:") && err.contains("allow rules"),
        "--explain lists decisions per app: {err}"
    );
    assert!(
        pinhole([OsStr::new("policy"), "check".as_ref(), policy.as_ref()])
            .status
            .success()
    );

    let replay = |extra: &[&str]| {
        let mut args = vec![
            OsStr::new("policy"),
            "replay".as_ref(),
            policy.as_ref(),
            ds.as_ref(),
        ];
        args.extend(extra.iter().map(OsStr::new));
        pinhole(args)
    };
    let clean = replay(&["--until", "2026-11-24", "--max-deny-rate", "0"]);
    assert!(
        clean.status.success(),
        "the training window replays without denials"
    );
    let held = replay(&["--since", "2026-11-24", "--max-deny-rate", "0.0001"]);
    assert_eq!(
        held.status.code(),
        Some(3),
        "the anomalies push the held-out rate over the gate"
    );
    let text = String::from_utf8_lossy(&held.stdout);
    assert!(
        text.contains("would be denied") && text.contains("events/s"),
        "{text}"
    );

    let eval = pinhole([
        OsStr::new("policy"),
        "evaluate".as_ref(),
        ds.as_ref(),
        "--split".as_ref(),
        "2026-11-24".as_ref(),
    ]);
    assert!(
        eval.status.success(),
        "{}",
        String::from_utf8_lossy(&eval.stderr)
    );
    let text = String::from_utf8_lossy(&eval.stdout);
    assert!(
        text.contains("rules (") && text.contains("false-deny rate"),
        "{text}"
    );
}
