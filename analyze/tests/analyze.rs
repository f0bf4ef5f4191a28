//! The analyzer on synthetic and crafted datasets: the merge property, agreement with
//! DuckDB, the JSON document, and bad input.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use arrow_array::{Int64Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use pinhole_analyze::dataset::summarize_file;
use pinhole_analyze::profile::{DatasetInfo, ProfileDoc};
use pinhole_analyze::summary::AppKey;
use pinhole_analyze::{build_profiles, summarize, AnalyzeError, Filter, ScanOptions, Summary};
use pinhole_recorder::layout::published_files;
use pinhole_recorder::synth::{generate, SynthConfig};

fn synth(dir: &Path, events: u64) -> pinhole_recorder::synth::SynthReport {
    let cfg = SynthConfig {
        events,
        apps: 30,
        destinations: 800,
        days: 3,
        ..Default::default()
    };
    generate(&cfg, dir).unwrap()
}

fn opts(threads: usize) -> ScanOptions {
    ScanOptions {
        filter: Filter::default(),
        skip_bad: false,
        threads,
    }
}

fn info() -> DatasetInfo {
    DatasetInfo {
        path: "x".into(),
        files: 0,
        events: 0,
        first_seen: String::new(),
        last_seen: String::new(),
        since: None,
        until: None,
    }
}

#[test]
fn per_file_summaries_merge_into_the_whole() {
    let dir = tempfile::tempdir().unwrap();
    synth(dir.path(), 20_000);
    let files = published_files(dir.path()).unwrap();
    assert!(files.len() >= 3);
    let whole = summarize(dir.path(), &opts(1), &()).unwrap().summary;
    // Merged in another order, and from two threads: the same summary.
    let mut merged = Summary::default();
    for f in files.iter().rev() {
        merged.merge(summarize_file(f, &Filter::default()).unwrap());
    }
    assert_eq!(merged, whole);
    assert_eq!(summarize(dir.path(), &opts(2), &()).unwrap().summary, whole);
    assert_eq!(whole.events, 20_000 + 1025);
}

/// Rewrites every file of `from` into `to` (same relative paths and metadata) with
/// row groups of at most `rows` rows.
fn with_small_row_groups(from: &Path, to: &Path, rows: usize) {
    for f in published_files(from).unwrap() {
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            fs::File::open(&f).unwrap(),
        )
        .unwrap();
        let kv = reader
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .cloned();
        let schema = reader.schema().clone();
        let out = to.join(f.strip_prefix(from).unwrap());
        fs::create_dir_all(out.parent().unwrap()).unwrap();
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(rows))
            .set_key_value_metadata(kv)
            .build();
        let mut w =
            ArrowWriter::try_new(fs::File::create(&out).unwrap(), schema, Some(props)).unwrap();
        for batch in reader.build().unwrap() {
            w.write(&batch.unwrap()).unwrap();
        }
        w.close().unwrap();
    }
}

/// Workers merge as they go and split files of several row groups between them; the
/// outcome is the same summary as reading each file whole, whatever the file count.
#[test]
fn many_files_and_split_row_groups_merge_into_the_same_summary() {
    let (few, split, many) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    for (dir, files) in [(&few, None), (&many, Some(60))] {
        let cfg = SynthConfig {
            events: 30_000,
            apps: 30,
            destinations: 800,
            days: 3,
            files,
            ..Default::default()
        };
        generate(&cfg, dir.path()).unwrap();
    }
    with_small_row_groups(few.path(), split.path(), 1_000);
    assert!(published_files(many.path()).unwrap().len() >= 60);
    let mut by_file = Summary::default();
    for f in &published_files(few.path()).unwrap() {
        by_file.merge(summarize_file(f, &Filter::default()).unwrap());
    }
    for threads in [1, 2, 3] {
        for dir in [&few, &split, &many] {
            let got = summarize(dir.path(), &opts(threads), &()).unwrap().summary;
            assert_eq!(got, by_file, "{threads} threads");
        }
    }
}

#[test]
fn profiles_are_deterministic_and_round_trip_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let report = synth(dir.path(), 10_000);
    let doc = build_profiles(
        &summarize(dir.path(), &opts(2), &()).unwrap().summary,
        info(),
    );
    let again = build_profiles(
        &summarize(dir.path(), &opts(1), &()).unwrap().summary,
        info(),
    );
    let json = serde_json::to_string_pretty(&doc).unwrap();
    assert_eq!(
        json,
        serde_json::to_string_pretty(&again).unwrap(),
        "same input, same bytes"
    );
    let back: ProfileDoc = serde_json::from_str(&json).unwrap();
    assert_eq!(back, doc);
    assert_eq!((doc.format.as_str(), doc.version), ("pinhole.profiles", 1));

    // The anomalies the generator injected are visible.
    let (old, new) = report.rehashed.unwrap();
    let old_app = doc
        .apps
        .iter()
        .find(|a| a.sha256.as_deref() == Some(&hex::encode(old)))
        .unwrap();
    assert_eq!(old_app.path_shared_with, [hex::encode(new)]);
    let (sha, addr, port) = report.one_off.unwrap();
    let app = doc
        .apps
        .iter()
        .find(|a| a.sha256.as_deref() == Some(&hex::encode(sha)))
        .unwrap();
    let d = app
        .destinations
        .iter()
        .find(|d| d.address == addr.to_string() && d.port == port)
        .unwrap();
    assert_eq!((d.events, d.days, d.scope.as_str()), (1, 1, "public"));
    assert_eq!(app.learning.verdict, "still learning");
    let (sha, target) = report.scanner.unwrap();
    let scanner = doc
        .apps
        .iter()
        .find(|a| a.sha256.as_deref() == Some(&hex::encode(sha)))
        .unwrap();
    let g = scanner
        .groups
        .iter()
        .find(|g| g.prefix == format!("{target}/24").replace(".9/", ".0/"))
        .unwrap();
    assert_eq!(g.ports, ["1-1024"], "the scan folds into one port range");
    assert_eq!(scanner.learning.verdict, "still learning");
}

#[test]
fn the_window_filters_rows_and_prunes_files() {
    let dir = tempfile::tempdir().unwrap();
    synth(dir.path(), 9_000);
    let day2 = chrono::NaiveDate::from_ymd_opt(2026, 11, 23)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc();
    let f = Filter {
        since_ns: day2.timestamp_nanos_opt(),
        until_ns: (day2 + chrono::Duration::hours(12)).timestamp_nanos_opt(),
        ..Default::default()
    };
    let out = summarize(
        dir.path(),
        &ScanOptions {
            filter: f,
            skip_bad: false,
            threads: 2,
        },
        &(),
    )
    .unwrap();
    assert_eq!(out.files, 1, "only the date=2026-11-23 file is read");
    let s = out.summary;
    assert!(s.first_ns.unwrap() >= f.since_ns.unwrap() && s.last_ns.unwrap() < f.until_ns.unwrap());
    assert!(s.events > 1_000 && s.events < 3_000, "{}", s.events);
}

#[test]
fn unresolved_rows_are_never_merged_into_a_hashed_app() {
    use pinhole_recorder::event::{ExeRef, ExeStatus, Hook, Protocol, Verdict};
    use pinhole_recorder::{Event, Sink, SinkConfig};
    let dir = tempfile::tempdir().unwrap();
    let (mut sink, _) = Sink::open(SinkConfig::new(dir.path(), "h")).unwrap();
    let sha = [9u8; 32];
    for (i, (hash, status)) in [
        (Some(&sha), ExeStatus::Ok),
        (None, ExeStatus::Exited),
        (None, ExeStatus::Modified),
    ]
    .into_iter()
    .enumerate()
    {
        sink.append(&Event {
            ts_ns: 1_795_305_600_000_000_000 + i as i64,
            pid: 5,
            tid: 5,
            ppid: 1,
            uid: 0,
            gid: 0,
            comm: "tool",
            exe: ExeRef {
                path: Some("/usr/bin/tool"),
                sha256: hash,
                status,
                dev: 1,
                ino: 2,
            },
            cgroup_id: 1,
            cgroup: None,
            netns: 1,
            dst_addr: "10.0.0.1".parse().unwrap(),
            dst_port: 443,
            protocol: Protocol::Tcp,
            hook: Hook::Connect,
            verdict: Verdict::Observed,
            sock_cookie: 1,
            rule_id: None,
            app: None,
            note: None,
            dst_name: None,
            dst_name_from_host: false,
            dns: None,
        })
        .unwrap();
    }
    sink.close().unwrap();
    let s = summarize(dir.path(), &opts(1), &()).unwrap().summary;
    assert_eq!(s.apps.len(), 3);
    assert_eq!(s.apps[&AppKey::Hash(sha)].events, 1);
    let doc = build_profiles(&s, info());
    assert_eq!(doc.apps.len(), 1);
    let ids: Vec<_> = doc.unresolved.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "unresolved:exited:/usr/bin/tool",
            "unresolved:modified:/usr/bin/tool"
        ]
    );
}

fn write_parquet(path: &Path, kv: Option<Vec<KeyValue>>) {
    let schema = Arc::new(Schema::new(vec![Field::new("ts", DataType::Int64, false)]));
    let batch =
        RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(vec![1, 2]))]).unwrap();
    let props = WriterProperties::builder()
        .set_key_value_metadata(kv)
        .build();
    let mut w = ArrowWriter::try_new(fs::File::create(path).unwrap(), schema, Some(props)).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

#[test]
fn bad_files_are_named_and_skippable() {
    let dir = tempfile::tempdir().unwrap();
    synth(dir.path(), 3_000);
    let part = dir.path().join("date=2026-11-22");
    let good = published_files(dir.path()).unwrap()[0].clone();
    let bytes = fs::read(&good).unwrap();
    fs::write(part.join("truncated.parquet"), &bytes[..bytes.len() / 2]).unwrap();
    fs::write(part.join("garbage.parquet"), b"not parquet at all").unwrap();
    write_parquet(&part.join("foreign.parquet"), None);
    write_parquet(
        &part.join("newer.parquet"),
        Some(vec![KeyValue::new(
            "pinhole.schema_version".into(),
            "99".to_string(),
        )]),
    );
    write_parquet(
        &part.join("wrong.parquet"),
        Some(vec![KeyValue::new(
            "pinhole.schema_version".into(),
            "1".to_string(),
        )]),
    );

    let check = |name: &str, expect: &dyn Fn(&AnalyzeError) -> bool| {
        let err = summarize_file(&part.join(name), &Filter::default()).unwrap_err();
        assert!(expect(&err), "{name}: {err:?}");
        assert!(
            err.to_string().contains(name),
            "the message names the file: {err}"
        );
    };
    check("truncated.parquet", &|e| {
        matches!(e, AnalyzeError::Corrupt { .. })
    });
    check("garbage.parquet", &|e| {
        matches!(e, AnalyzeError::Corrupt { .. })
    });
    check("foreign.parquet", &|e| {
        matches!(e, AnalyzeError::NotPinhole { .. })
    });
    check(
        "newer.parquet",
        &|e| matches!(e, AnalyzeError::NewerSchema { found, .. } if found == "99"),
    );
    check(
        "wrong.parquet",
        &|e| matches!(e, AnalyzeError::WrongSchema { column, .. } if column == "ts"),
    );

    // Without --skip-bad the first bad file stops the run; with it, all are listed.
    assert!(summarize(dir.path(), &opts(2), &()).is_err());
    let out = summarize(
        dir.path(),
        &ScanOptions {
            filter: Filter::default(),
            skip_bad: true,
            threads: 2,
        },
        &(),
    )
    .unwrap();
    assert_eq!(out.skipped.len(), 5);
    assert_eq!(
        out.summary.events,
        3_000 + 1025,
        "every good file still counted"
    );
}

#[test]
fn an_empty_dataset_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = summarize(dir.path(), &opts(1), &()).unwrap_err();
    assert!(matches!(err, AnalyzeError::Empty { .. }), "{err}");
    assert!(err.to_string().contains(&dir.path().display().to_string()));
}

/// Rows of one of `tests/py`'s queries run by DuckDB on `dataset`.
fn duckdb_rows(dataset: &Path, query: &str) -> Vec<serde_json::Value> {
    let python = std::env::var("PINHOLE_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/run_sql.py");
    let out = Command::new(&python)
        .arg(script)
        .arg(dataset)
        .arg(query)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{python} with duckdb (setup.sh installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn app_column(k: &AppKey) -> String {
    match k {
        AppKey::Hash(h) => hex::encode_upper(h),
        AppKey::Unresolved { status, exe } => format!("unresolved:{status}:{exe}"),
    }
}

#[test]
fn agrees_with_duckdb_running_the_documented_sql() {
    let dir = tempfile::tempdir().unwrap();
    // Half the TCP destinations by name: the profile's names agree too.
    let cfg = SynthConfig {
        events: 30_000,
        apps: 30,
        destinations: 800,
        days: 3,
        names: 0.5,
        ..Default::default()
    };
    generate(&cfg, dir.path()).unwrap();
    let duck = duckdb_rows(dir.path(), "duckdb_profile.sql");

    let s = summarize(dir.path(), &opts(2), &()).unwrap().summary;
    let mut ours = Vec::new();
    for (k, a) in &s.apps {
        let app = app_column(k);
        for (d, v) in &a.dests {
            ours.push(serde_json::json!([
                app,
                d.protocol,
                d.addr.to_string(),
                d.port,
                v.events,
                v.first_ns,
                v.last_ns,
                v.days.len(),
                v.hours.len(),
                v.users.len(),
                v.names.iter().cloned().collect::<Vec<_>>().join(",")
            ]));
        }
    }
    let key = |v: &serde_json::Value| {
        (
            v[0].as_str().unwrap().to_owned(),
            v[1].as_str().unwrap().to_owned(),
            v[2].as_str().unwrap().to_owned(),
            v[3].as_u64(),
        )
    };
    ours.sort_by_key(key);
    let mut duck = duck;
    duck.sort_by_key(key);
    assert_eq!(ours.len(), duck.len(), "same (app, destination) pairs");
    assert!(
        ours.iter()
            .any(|o| o[10].as_str().is_some_and(|n| !n.is_empty())),
        "some destinations by name"
    );
    for (o, d) in ours.iter().zip(&duck) {
        assert_eq!(o, d);
    }
}

#[test]
fn activity_per_hour_agrees_with_duckdb_and_adds_up_to_each_app() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SynthConfig {
        events: 20_000,
        apps: 20,
        destinations: 400,
        days: 3,
        refused: 0.1,
        files: Some(7),
        ..Default::default()
    };
    generate(&cfg, dir.path()).unwrap();
    let duck = duckdb_rows(dir.path(), "duckdb_activity.sql");
    let s = summarize(dir.path(), &opts(2), &()).unwrap().summary;
    let mut ours = Vec::new();
    for (k, a) in &s.apps {
        for (hour, c) in &a.activity {
            ours.push(serde_json::json!([
                app_column(k),
                hour,
                c.events,
                c.denied,
                c.would_deny
            ]));
        }
        // Every event is in one hour; refusals are among them.
        assert_eq!(a.activity.values().map(|c| c.events).sum::<u64>(), a.events);
    }
    assert_eq!(ours, duck);
    let refused: u64 = s
        .apps
        .values()
        .flat_map(|a| a.activity.values())
        .map(|c| c.denied + c.would_deny)
        .sum();
    assert!(
        refused > 1000,
        "the synthetic refusals are counted: {refused}"
    );

    // The profile folds hours into days for data spanning two days or more.
    let doc = build_profiles(&s, info());
    assert_eq!(doc.activity_period, "day");
    for app in &doc.apps {
        assert!(app.activity.iter().all(|p| p.start.ends_with("T00:00:00Z")));
        assert_eq!(
            app.activity.iter().map(|p| p.events).sum::<u64>(),
            app.events
        );
        let denied: u64 = app.refused.iter().map(|r| r.denied).sum();
        assert_eq!(app.activity.iter().map(|p| p.denied).sum::<u64>(), denied);
    }
}
