//! `pinhole analyze` as a user runs it: output forms, exit codes and messages.
//! Needs no root: it reads a synthetic dataset.

use std::path::Path;
use std::process::Command;

use pinhole_recorder::synth::{generate, SynthConfig};

const PINHOLE: &str = env!("CARGO_BIN_EXE_pinhole");

fn dataset(dir: &Path) {
    let cfg = SynthConfig {
        events: 5_000,
        apps: 12,
        destinations: 300,
        days: 2,
        ..Default::default()
    };
    generate(&cfg, dir).unwrap();
}

fn analyze(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(PINHOLE)
        .arg("analyze")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn table_json_file_and_one_app() {
    let dir = tempfile::tempdir().unwrap();
    dataset(dir.path());
    let ds = dir.path().to_str().unwrap();

    let (code, table, _) = analyze(&[ds]);
    assert_eq!(code, Some(0));
    assert!(table.contains("6025 events in 2 files"), "{table}");
    assert!(
        table.contains("/usr/bin/app-0") && table.contains("LEARNING"),
        "{table}"
    );

    let json_path = dir.path().join("profiles.json");
    let (code, stdout, _) = analyze(&[
        ds,
        "--format",
        "json",
        "-o",
        json_path.to_str().unwrap(),
        "--since",
        "2026-11-22",
        "--until",
        "2026-11-23T12:00:00Z",
    ]);
    assert_eq!(code, Some(0));
    assert!(stdout.is_empty(), "-o writes to the file only");
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    assert_eq!(doc["format"], "pinhole.profiles");
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["dataset"]["until"], "2026-11-23T12:00:00Z");
    assert!(doc["dataset"]["events"].as_u64().unwrap() < 6025);

    let (code, detail, _) = analyze(&[ds, "--app", "app-2"]);
    assert_eq!(code, Some(0));
    assert!(
        detail.contains("id:        sha256:") && detail.contains("PREFIX"),
        "{detail}"
    );
    let sha = detail.split("sha256:").nth(1).unwrap()[..8].to_owned();
    let (code, by_prefix, _) = analyze(&[ds, "--app", &sha]);
    assert_eq!(
        (code, by_prefix),
        (Some(0), detail),
        "a sha256 prefix finds the same app"
    );
}

#[test]
fn unknown_app_and_empty_dataset_fail_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    dataset(dir.path());
    let ds = dir.path().to_str().unwrap();
    let (code, _, err) = analyze(&[ds, "--app", "no-such-tool"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("no application matches `no-such-tool`") && err.contains("app-0"),
        "{err}"
    );

    let empty = tempfile::tempdir().unwrap();
    let (code, _, err) = analyze(&[empty.path().to_str().unwrap()]);
    assert_eq!(code, Some(1));
    assert!(err.contains("no events in"), "{err}");

    let (code, _, err) = analyze(&[ds, "--since", "yesterday"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("neither a date"), "{err}");

    let (code, _, err) = analyze(&["/nonexistent/pinhole"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("/nonexistent/pinhole"), "{err}");
}

#[test]
fn skip_bad_carries_on_and_lists_the_files() {
    let dir = tempfile::tempdir().unwrap();
    dataset(dir.path());
    let bad = dir.path().join("date=2026-11-22").join("broken.parquet");
    std::fs::write(&bad, b"PAR1 not really").unwrap();
    let ds = dir.path().to_str().unwrap();
    let (code, _, err) = analyze(&[ds]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("broken.parquet") && !err.contains("panicked"),
        "{err}"
    );
    let (code, out, err) = analyze(&[ds, "--skip-bad"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("6025 events"), "{out}");
    assert!(
        err.contains("skipped 1 unreadable file") && err.contains("broken.parquet"),
        "{err}"
    );
}

/// A day compacted by another engine (DuckDB's COPY with snappy and plain strings;
/// pyarrow with gzip, large strings, variable-length hashes and int64 integers; neither
/// keeps pinhole's metadata) is read as pinhole's own: the same profiles as the
/// original files.
#[test]
fn days_rewritten_by_other_engines_analyze_as_the_originals() {
    let python = std::env::var("PINHOLE_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let dir = tempfile::tempdir().unwrap();
    let original = dir.path().join("original");
    dataset(&original);
    let (code, want, err) = analyze(&[original.to_str().unwrap(), "--format", "json"]);
    assert_eq!(code, Some(0), "{err}");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/rewrite_days.py");
    for engine in ["duckdb", "pyarrow"] {
        let rewritten = dir.path().join(engine);
        let res = Command::new(&python)
            .args([
                script,
                original.to_str().unwrap(),
                rewritten.to_str().unwrap(),
                engine,
            ])
            .output()
            .unwrap();
        assert!(
            res.status.success(),
            "{python} could not rewrite the dataset (setup.sh installs duckdb and pyarrow): {}",
            String::from_utf8_lossy(&res.stderr)
        );
        let (code, got, err) = analyze(&[rewritten.to_str().unwrap(), "--format", "json"]);
        assert_eq!(code, Some(0), "{engine}: {err}");
        let strip = |t: &str| {
            let mut v: serde_json::Value = serde_json::from_str(t).unwrap();
            // Where the profiles were read from differs, and nothing else may.
            v.as_object_mut().unwrap().remove("dataset");
            v
        };
        assert_eq!(strip(&got), strip(&want), "{engine}");
    }
    // A Parquet file that is not pinhole's at all is still refused by name.
    let other = dir.path().join("other/date=2026-01-01");
    std::fs::create_dir_all(&other).unwrap();
    let res = Command::new(&python)
        .args([
            "-c",
            "import pyarrow as pa, pyarrow.parquet as pq, sys; pq.write_table(pa.table({'a': [1]}), sys.argv[1])",
            other.join("x.parquet").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(res.status.success());
    let (code, _, err) = analyze(&[dir.path().join("other").to_str().unwrap()]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("not a pinhole dataset file"), "{err}");
}
