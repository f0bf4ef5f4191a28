//! pinhole in scripts: every command that prints ends quietly when its reader goes
//! away (`pinhole policy generate ... | head`), and `enforce status --format json`
//! prints JSON even when nothing is loaded.

mod common;

use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};

use common::*;

/// A three-day synthetic dataset in `dir`, and a policy learnt from its first two days.
fn dataset_and_policy(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let ds = dir.join("ds");
    let cfg = pinhole_recorder::synth::SynthConfig {
        events: 20_000,
        apps: 10,
        destinations: 200,
        days: 3,
        ..Default::default()
    };
    pinhole_recorder::synth::generate(&cfg, &ds).unwrap();
    let policy = dir.join("p.toml");
    let made = pinhole([
        "policy".as_ref(),
        "generate".as_ref(),
        ds.as_os_str(),
        "--until".as_ref(),
        "2026-11-24".as_ref(),
        "-o".as_ref(),
        policy.as_os_str(),
    ]);
    assert!(made.status.success());
    (ds, policy)
}

/// Runs pinhole with `args`, its standard output a pipe closed before it writes.
fn with_closed_stdout(args: &[&std::ffi::OsStr]) -> (std::process::ExitStatus, String) {
    let mut child = Command::new(PINHOLE)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (child.wait().unwrap(), err)
}

/// Regression: a closed standard output made pinhole panic ("failed printing to
/// stdout: Broken pipe").
#[test]
fn every_printing_command_ends_quietly_when_its_reader_goes_away() {
    let tmp = tempfile::tempdir().unwrap();
    let (ds, policy) = dataset_and_policy(tmp.path());
    let (d, p) = (ds.as_os_str(), policy.as_os_str());
    let os = |s: &'static str| std::ffi::OsStr::new(s);
    let commands: Vec<Vec<&std::ffi::OsStr>> = vec![
        vec![os("analyze"), d],
        vec![os("analyze"), d, os("--format"), os("json")],
        vec![os("policy"), os("generate"), d],
        vec![os("policy"), os("generate"), d, os("--explain")],
        vec![os("policy"), os("replay"), p, d],
        vec![
            os("policy"),
            os("evaluate"),
            d,
            os("--split"),
            os("2026-11-23"),
        ],
        vec![os("policy"), os("check"), p],
        vec![os("policy"), os("diff"), p, p],
        vec![os("hash"), p],
    ];
    for args in &commands {
        let (status, err) = with_closed_stdout(args);
        assert!(
            !err.contains("panicked") && !err.contains("Broken pipe"),
            "{args:?}: {err}"
        );
        assert!(
            status.success() || status.signal() == Some(libc::SIGPIPE),
            "{args:?}: {status:?} {err}"
        );
    }
}

#[test]
fn status_as_json_with_nothing_loaded_is_json() {
    require_root();
    let _serial = serial();
    let out = pinhole(["enforce", "status", "--format", "json"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(v["running"], false);
}

/// `replay`, `evaluate` and `check` print JSON for scripts, problems included.
#[test]
fn replay_evaluate_and_check_speak_json() {
    let tmp = tempfile::tempdir().unwrap();
    let (ds, policy) = dataset_and_policy(tmp.path());
    let d = ds.to_str().unwrap();
    let p = policy.to_str().unwrap();
    let json = |args: &[&str]| -> (bool, serde_json::Value) {
        let out = pinhole(args);
        let v = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", String::from_utf8_lossy(&out.stdout)));
        (out.status.success(), v)
    };
    let (ok, r) = json(&["policy", "replay", p, d, "--since", "2026-11-24", "--json"]);
    assert!(ok);
    assert!(r["events"].as_u64().unwrap() > 0 && r["denied"].as_u64().unwrap() > 0);
    assert!(r["apps"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| !a["top_denied"].as_array().unwrap().is_empty()));
    let (ok, e) = json(&["policy", "evaluate", d, "--split", "2026-11-24", "--json"]);
    assert!(ok);
    assert!(e["held_out_events"].as_u64().unwrap() > 0);
    assert!(e["false_deny_rate"].as_f64().is_some());
    let (ok, c) = json(&["policy", "check", p, "--json"]);
    assert!(ok && c["ok"] == true && c["summary"]["apps"].as_u64().unwrap() > 0);
    let bad = tmp.path().join("bad.toml");
    std::fs::write(
        &bad,
        "version = 1\n[[app]]\nname = \"x\"\nsha256 = \"zz\"\n",
    )
    .unwrap();
    let (ok, c) = json(&["policy", "check", bad.to_str().unwrap(), "--json"]);
    assert!(!ok);
    let problem = &c["problems"][0];
    assert_eq!(
        (problem["line"].as_u64(), c["ok"].as_bool()),
        (Some(4), Some(false))
    );
    assert!(
        problem["message"].as_str().unwrap().contains("sha256"),
        "{c}"
    );
}

/// `--log-format json`: every line a recorder writes on stderr is one JSON object with
/// a level and a message (libbpf's own messages and the closing summary included).
#[test]
fn json_logs_are_one_object_per_line() {
    require_root();
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(PINHOLE)
        .args([
            "--log-format",
            "json",
            "-v",
            "record",
            "--duration",
            "1s",
            "--out",
        ])
        .arg(tmp.path().join("events"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stderr).unwrap();
    let mut messages = Vec::new();
    for line in text.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            v["level"].is_string() && v["timestamp"].is_string(),
            "{line}"
        );
        messages.push(v["fields"]["message"].as_str().unwrap().to_owned());
    }
    assert!(
        messages.iter().any(|m| m == "attached; recording"),
        "{messages:?}"
    );
    assert!(
        messages.iter().any(|m| m.contains("events written")),
        "{messages:?}"
    );

    let out = Command::new(PINHOLE)
        .args([
            "--log-format",
            "json",
            "policy",
            "check",
            "/nonexistent.toml",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!(v["level"], "ERROR");
}
