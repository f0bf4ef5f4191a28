//! `pinhole policy check` as a user runs it.

use std::process::Command;

const PINHOLE: &str = env!("CARGO_BIN_EXE_pinhole");

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
    let out = Command::new(PINHOLE)
        .args(["policy", "check"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout)
        .contains("ok: 1 apps, 1 allow rules, 0 held for review"));

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, format!("version = 1\n[[app]]\nname = \"x\"\nsha256 = \"{sha}\"\n[[app.allow]]\nid = \"x-1\"\nprotocol = \"tcp\"\ndst = \"0.0.0.0/0\"\nports = 99999\n")).unwrap();
    let out = Command::new(PINHOLE)
        .args(["policy", "check"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml:8:7: dst \"0.0.0.0/0\" is over-broad"),
        "{err}"
    );
    assert!(
        err.contains("bad.toml:9:9: ports 99999: expected a port 1-65535"),
        "{err}"
    );
    assert!(
        err.contains("2 problem(s)") && !err.contains("panicked"),
        "{err}"
    );
}
