//! `--metrics-listen`: a real scrape over loopback of a recorder and of an enforcer,
//! checked by Prometheus's own `promtool check metrics`.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// The value of the first sample whose line starts with `prefix`.
fn sample(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no sample {prefix} in:\n{text}"))
}

/// `promtool check metrics` (setup.sh unpacks Debian's under target/promtool).
fn promtool_accepts(text: &str) {
    let promtool = std::env::var("PINHOLE_TEST_PROMTOOL").unwrap_or_else(|_| "promtool".into());
    let mut child = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("{promtool}: {e} (setup.sh test unpacks Debian's prometheus package)")
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_recorder_serves_its_counters() {
    require_root();
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("events");
    let rec = Recording::start(
        &out,
        &[
            "--metrics-listen",
            "127.0.0.1:39724",
            "--rotate-interval",
            "300ms",
            "--flush-interval",
            "100ms",
        ],
    );
    run(Command::new(LOADGEN).args(["--port", "40091", "--count", "3"]));
    std::thread::sleep(Duration::from_millis(1500) * slowdown());
    let text = scrape(39724);
    let (status, log) = rec.stop();
    assert!(status.success(), "{log}");
    promtool_accepts(&text);
    assert!(sample(&text, "pinhole_events_total") >= 3.0, "{text}");
    assert!(
        sample(&text, "pinhole_files_published_total") >= 1.0,
        "{text}"
    );
    assert!(
        sample(&text, "pinhole_bytes_published_total") > 0.0,
        "{text}"
    );
    assert!(
        sample(&text, "pinhole_last_publish_timestamp_seconds") > 1.7e9,
        "{text}"
    );
    assert!(text.contains("pinhole_info{command=\"record\""), "{text}");
    for name in [
        "pinhole_events_lost_total",
        "pinhole_hash_cache_entries",
        "pinhole_files_hashed_total",
    ] {
        sample(&text, name);
    }
    // Sampled every round: the peak of a ring's fill, a ratio.
    for ring in ["connect", "exec"] {
        let peak = sample(
            &text,
            &format!("pinhole_ring_fill_ratio{{ring=\"{ring}\",quantile=\"1\"}}"),
        );
        assert!((0.0..=1.0).contains(&peak), "{text}");
        assert!(
            sample(
                &text,
                &format!("pinhole_ring_fill_ratio_count{{ring=\"{ring}\"}}")
            ) >= 1.0
        );
    }
}

#[test]
fn a_port_in_use_is_refused_before_anything_is_loaded() {
    require_root();
    let _serial = serial();
    let busy = std::net::TcpListener::bind("127.0.0.1:39725").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let out = pinhole([
        "record".as_ref(),
        "--metrics-listen".as_ref(),
        "127.0.0.1:39725".as_ref(),
        "--out".as_ref(),
        tmp.path().as_os_str(),
    ]);
    drop(busy);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("serving metrics on 127.0.0.1:39725 (--metrics-listen)"),
        "{err}"
    );
    assert!(
        !tmp.path().join(".pinhole.lock").exists(),
        "nothing started: {err}"
    );
}

#[test]
fn an_enforcer_serves_decisions_by_app_and_verdict() {
    require_root();
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let (exe, policy) = one_app_policy(dir.path(), "metered", 39311);
    let cg = TestCgroup::new("pinhole-metrics");
    let e = Enforcer::start(&policy, &cg, &["--metrics-listen", "127.0.0.1:39726"]);
    let got = probe_in(
        &cg,
        Path::new(&exe),
        &[
            "tcp:127.0.0.1:39311",
            "tcp:127.0.0.1:39312",
            "tcp:127.0.0.1:39313",
        ],
    );
    assert_eq!(got[1], "EPERM", "{got:?}");
    let deadline = Instant::now() + Duration::from_secs(10) * slowdown();
    let text = loop {
        let text = scrape(39726);
        let denied = "pinhole_decisions_total{app=\"metered\",verdict=\"denied\"}";
        if text.contains(denied) && sample(&text, denied) >= 2.0 {
            break text;
        }
        assert!(Instant::now() < deadline, "{text}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let (status, log) = e.stop();
    assert!(status.success(), "{log}");
    promtool_accepts(&text);
    assert_eq!(
        sample(
            &text,
            "pinhole_decisions_total{app=\"metered\",verdict=\"allowed\"}"
        ),
        1.0
    );
    assert!(text.contains("pinhole_info{command=\"enforce\""), "{text}");
    sample(&text, "pinhole_ring_fill_ratio_count{ring=\"connect\"}");
}
