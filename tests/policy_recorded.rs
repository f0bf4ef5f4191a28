//! The policy commands on a dataset recorded for real by `pinhole record` (root): the
//! policy generated from a recording allows everything recorded, pins the binary by
//! hash, and denies a destination the binary never used.

mod common;

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;

use common::*;

#[test]
fn generate_check_and_replay_on_a_real_recording() {
    require_root();
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("events");
    let copy = settled_copy(Path::new(LOADGEN), tmp.path(), "ph-policy");
    let rec = Recording::start(&out, &[]);
    run(Command::new(&copy.path).args(["--port", "40050", "--count", "3"]));
    run(Command::new(&copy.path).args([
        "--mode", "sendto", "--addr", "::1", "--port", "40051", "--count", "2",
    ]));
    let (status, log) = rec.stop();
    assert!(status.success(), "{log}");

    let policy = tmp.path().join("policy.toml");
    let gen = pinhole([
        OsStr::new("policy"),
        "generate".as_ref(),
        out.as_ref(),
        "-o".as_ref(),
        policy.as_ref(),
    ]);
    assert!(
        gen.status.success(),
        "{}",
        String::from_utf8_lossy(&gen.stderr)
    );
    let text = std::fs::read_to_string(&policy).unwrap();
    assert!(
        text.contains(&format!("sha256 = \"{}\"", copy.sha256)),
        "the copy is pinned by its hash:\n{text}"
    );
    assert!(
        text.contains("dst = \"127.0.0.1\"\nports = 40050")
            && text.contains("dst = \"::1\"\nports = 40051"),
        "{text}"
    );
    assert!(
        pinhole([OsStr::new("policy"), "check".as_ref(), policy.as_ref()])
            .status
            .success()
    );

    // Everything recorded is allowed by the policy made from it.
    let replay_gated = |dataset: &Path| {
        pinhole([
            OsStr::new("policy"),
            "replay".as_ref(),
            policy.as_ref(),
            dataset.as_ref(),
            "--max-deny-rate".as_ref(),
            "0".as_ref(),
        ])
    };
    let replay = replay_gated(&out);
    assert!(
        replay.status.success(),
        "{}",
        String::from_utf8_lossy(&replay.stdout)
    );

    // A new destination of the same binary would be denied.
    let out2 = tmp.path().join("events2");
    let rec = Recording::start(&out2, &[]);
    run(Command::new(&copy.path).args(["--port", "40052", "--count", "1"]));
    let (status, log) = rec.stop();
    assert!(status.success(), "{log}");
    let replay = replay_gated(&out2);
    assert_eq!(replay.status.code(), Some(3));
    let report = String::from_utf8_lossy(&replay.stdout);
    assert!(report.contains("tcp 127.0.0.1:40052 x1"), "{report}");
}
