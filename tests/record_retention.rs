//! Retention while recording: files past the age bound go at start, the oldest go
//! after each publish while the dataset is over its size bound, each removal logged;
//! staged data and the newest file stay.

mod common;

use std::fs;
use std::process::Command;
use std::time::Duration;

use common::*;

#[test]
fn retention_bounds_the_dataset_while_recording() {
    require_root();
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("events");
    // An old day and a foreign file in it: retention goes by the partition's date.
    let old = out.join("date=2020-01-01");
    fs::create_dir_all(&old).unwrap();
    fs::write(old.join("ancient.parquet"), b"not even parquet").unwrap();
    let rec = Recording::start(
        &out,
        &[
            "--flush-interval",
            "100ms",
            "--rotate-interval",
            "200ms",
            "--retain-days",
            "30",
            "--retain-size",
            "1B",
        ],
    );
    for port in 40081..40085 {
        run(Command::new(LOADGEN).args(["--port", &port.to_string(), "--count", "2"]));
        std::thread::sleep(Duration::from_millis(600) * slowdown());
    }
    let (status, log) = rec.stop();
    assert!(status.success(), "{log}");
    assert!(!old.exists(), "the old day is gone: {log}");
    let removals = log
        .lines()
        .filter(|l| l.contains("retention removed a published file"))
        .count();
    assert!(removals >= 3, "{log}");
    assert!(log.contains("over 30 days old"), "{log}");
    assert!(log.contains("the dataset was over 1 bytes"), "{log}");
    // Over the size bound after every publish: the newest file before the stop stays,
    // and the stop publishes one more.
    let left = pinhole_recorder::layout::published_files(&out).unwrap();
    assert!((1..=2).contains(&left.len()), "{left:?}");
    assert!(
        log.contains(&format!("retention_removed_files={removals}")),
        "{log}"
    );
    let rows = rows(&out);
    assert!(
        rows.iter().any(|r| r["dst_port"] == "40084"),
        "the newest connects are kept"
    );
}
