//! `compact` on real files: each past day of each host becomes one file holding exactly
//! the rows it replaced, with their lost events and a list of what it replaced; today,
//! single files, a running writer's open file and unreadable days are left as they were.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use arrow_cast::display::{ArrayFormatter, FormatOptions};
use chrono::NaiveDate;
use pinhole_recorder::compact::{compact, CompactError, CompactOptions};
use pinhole_recorder::layout::published_files;
use pinhole_recorder::readback::read_file;
use pinhole_recorder::schema::meta;
use pinhole_recorder::synth::{example_event, generate, SynthConfig};
use pinhole_recorder::{Codec, Sink, SinkConfig};

fn day(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

/// Two hosts over three days (2026-11-22..24), many files each.
fn two_hosts(out: &Path) {
    for (host, seed, files) in [("alpha", 1, 30), ("beta", 2, 9)] {
        let cfg = SynthConfig {
            events: 6_000,
            apps: 5,
            destinations: 50,
            days: 3,
            seed,
            host: host.into(),
            anomalies: false,
            files: Some(files),
            ..Default::default()
        };
        generate(&cfg, out).unwrap();
    }
}

/// Every row of `batches` as text, all columns.
fn rows_of(batches: &[RecordBatch]) -> Vec<String> {
    let mut rows = Vec::new();
    for b in batches {
        let formatters: Vec<_> = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &FormatOptions::default()).unwrap())
            .collect();
        for r in 0..b.num_rows() {
            let cells: Vec<String> = formatters.iter().map(|f| f.value(r).to_string()).collect();
            rows.push(cells.join("|"));
        }
    }
    rows
}

/// The sorted rows of each partition, keyed by its directory name.
fn rows_by_day(out: &Path) -> BTreeMap<String, Vec<String>> {
    let mut days: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for f in published_files(out).unwrap() {
        let dir = f
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        days.entry(dir)
            .or_default()
            .extend(rows_of(&read_file(&f).unwrap().0));
    }
    for rows in days.values_mut() {
        rows.sort();
    }
    days
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

fn opts(before: &str) -> CompactOptions {
    CompactOptions {
        before: day(before),
        codec: Codec::Lz4,
        signing_key: None,
    }
}

#[test]
fn each_past_day_of_each_host_becomes_one_file_with_the_same_rows() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    two_hosts(out);
    let before = rows_by_day(out);
    let today_files = files_in(&out.join("date=2026-11-24"));

    let report = compact(out, opts("2026-11-24")).unwrap();
    assert_eq!(report.merged.len(), 4, "{report:?}");
    assert!(report.skipped.is_empty(), "{report:?}");
    assert_eq!(
        rows_by_day(out),
        before,
        "the rows of every day are kept, once"
    );
    for d in ["date=2026-11-22", "date=2026-11-23"] {
        let files = files_in(&out.join(d));
        assert_eq!(files.len(), 2, "one file per host: {files:?}");
        for f in &files {
            let (batches, kv) = read_file(f).unwrap();
            let replaced = &kv[meta::COMPACTED_FROM];
            let lines: Vec<&str> = replaced.lines().collect();
            assert!(lines.len() >= 2, "{replaced}");
            let listed_rows: u64 = lines
                .iter()
                .map(|l| {
                    l.split(' ')
                        .find_map(|w| w.strip_prefix("rows="))
                        .unwrap()
                        .parse::<u64>()
                        .unwrap()
                })
                .sum();
            let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
            assert_eq!(listed_rows, rows as u64);
            assert!(lines
                .iter()
                .all(|l| l.contains(" sha256=") && l.contains(".parquet ")));
            assert!(kv.contains_key(meta::FIRST_TS) && kv.contains_key(meta::LAST_TS));
            assert_eq!(kv[meta::LOST_EVENTS], "0");
        }
    }
    assert_eq!(
        files_in(&out.join("date=2026-11-24")),
        today_files,
        "today is left"
    );
    assert!(files_in(&out.join(".compact")).iter().all(|p| !p
        .file_name()
        .unwrap()
        .to_string_lossy()
        .starts_with("date=")));

    // A second run has nothing left to do.
    let again = compact(out, opts("2026-11-24")).unwrap();
    assert!(again.merged.is_empty(), "{again:?}");
    assert_eq!(rows_by_day(out), before);
}

#[test]
fn lost_events_are_summed_and_a_single_file_is_left_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    two_hosts(out);
    let d = out.join("date=2026-11-22");
    // Give two of alpha's files lost events (as a recorder would have written them).
    let alpha: Vec<PathBuf> = files_in(&d)
        .into_iter()
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("alpha")
        })
        .collect();
    // A third host with one file only: nothing to merge.
    let lone = SynthConfig {
        events: 10,
        days: 1,
        host: "gamma".into(),
        anomalies: false,
        ..Default::default()
    };
    generate(&lone, out).unwrap();
    let gamma = files_in(&d)
        .into_iter()
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("gamma")
        })
        .unwrap();
    let gamma_ino = fs::metadata(&gamma).unwrap().ino();
    for (f, lost) in alpha.iter().zip([5, 6]) {
        let (batches, _) = read_file(f).unwrap();
        rewrite_with_lost(f, &batches, lost);
    }

    let report = compact(out, opts("2026-11-23")).unwrap();
    let alpha_merged = report.merged.iter().find(|m| m.host == "alpha").unwrap();
    assert_eq!(alpha_merged.lost_events, 11);
    let (_, kv) = read_file(&alpha_merged.output).unwrap();
    assert_eq!(kv[meta::LOST_EVENTS], "11");
    assert_eq!(
        fs::metadata(&gamma).unwrap().ino(),
        gamma_ino,
        "gamma's file is the same file"
    );
}

/// Rewrites a file with `lost` in its lost-event metadata, keeping its rows.
fn rewrite_with_lost(path: &Path, batches: &[RecordBatch], lost: u64) {
    use parquet::arrow::ArrowWriter;
    use parquet::file::metadata::KeyValue;
    use parquet::file::properties::WriterProperties;
    let props = WriterProperties::builder()
        .set_key_value_metadata(Some(vec![
            KeyValue::new(meta::HOST.into(), "alpha".to_string()),
            KeyValue::new(meta::LOST_EVENTS.into(), lost.to_string()),
        ]))
        .build();
    let tmp = path.with_extension("rewrite");
    let mut w = ArrowWriter::try_new(
        fs::File::create(&tmp).unwrap(),
        batches[0].schema(),
        Some(props),
    )
    .unwrap();
    for b in batches {
        w.write(b).unwrap();
    }
    w.close().unwrap();
    fs::rename(tmp, path).unwrap();
}

#[test]
fn a_running_writers_open_file_of_that_day_is_published_into_the_compacted_day() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    two_hosts(out);
    let before = rows_by_day(out);
    // A recorder still writing a file of 2026-11-22 (an event just before midnight).
    let (mut sink, _) = Sink::open(SinkConfig::new(out, "late")).unwrap();
    let ts = 1_795_305_600_000_000_000 + 86_400_000_000_000 - 1_000;
    let mut e = example_event(ts, 80);
    sink.append(&e).unwrap();
    sink.flush().unwrap();
    let open: Vec<PathBuf> = files_in(&out.join("date=2026-11-22"))
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".parquet.tmp"))
        .collect();
    assert_eq!(open.len(), 1, "the writer's file is open in the day");

    let report = compact(out, opts("2026-11-24")).unwrap();
    assert_eq!(report.merged.len(), 4);
    e.ts_ns += 1;
    sink.append(&e).unwrap();
    sink.close().unwrap();

    let after = rows_by_day(out);
    assert_eq!(after["date=2026-11-23"], before["date=2026-11-23"]);
    assert_eq!(
        after["date=2026-11-22"].len(),
        before["date=2026-11-22"].len() + 2,
        "the writer's two rows are published into the live day"
    );
    let names: Vec<String> = files_in(&out.join("date=2026-11-22"))
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(names.iter().any(|n| n.starts_with("late-")), "{names:?}");
}

#[test]
fn an_unreadable_file_leaves_its_day_and_names_itself() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    two_hosts(out);
    let bad = out.join("date=2026-11-22/zz-broken.parquet");
    fs::write(&bad, b"PAR1 this is not parquet").unwrap();
    let before = files_in(&out.join("date=2026-11-22"));

    let report = compact(out, opts("2026-11-24")).unwrap();
    assert_eq!(
        files_in(&out.join("date=2026-11-22")),
        before,
        "the day is left"
    );
    assert_eq!(report.skipped.len(), 1, "{report:?}");
    assert!(
        report.skipped[0].1.contains("zz-broken.parquet"),
        "{report:?}"
    );
    assert_eq!(
        report.merged.len(),
        2,
        "the other day is compacted: {report:?}"
    );
}

#[test]
fn a_second_compaction_at_the_same_time_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    two_hosts(out);
    fs::create_dir_all(out.join(".compact")).unwrap();
    let held = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(out.join(".compact/.lock"))
        .unwrap();
    held.lock().unwrap();
    match compact(out, opts("2026-11-24")) {
        Err(e @ CompactError::Busy { .. }) => {
            assert!(e.to_string().contains("another `pinhole compact`"), "{e}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn files_another_engine_rewrote_merge_in_pinholes_schema() {
    use arrow_array::{ArrayRef, StringArray};
    use arrow_schema::{DataType, Field, Schema};
    use parquet::arrow::ArrowWriter;
    use parquet::basic::Compression;
    use parquet::file::properties::WriterProperties;
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    two_hosts(out);
    let d = out.join("date=2026-11-23");
    let before = rows_by_day(out);
    // Rewrite each of beta's files as a plain-string, snappy file without metadata.
    for f in files_in(&d) {
        if !f.file_name().unwrap().to_string_lossy().starts_with("beta") {
            continue;
        }
        let (batches, _) = read_file(&f).unwrap();
        let plain: Vec<RecordBatch> = batches
            .iter()
            .map(|b| {
                let fields: Vec<Field> = b
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| match f.data_type() {
                        DataType::Dictionary(_, v) => {
                            Field::new(f.name(), v.as_ref().clone(), f.is_nullable())
                        }
                        _ => f.as_ref().clone(),
                    })
                    .collect();
                let columns: Vec<ArrayRef> = b
                    .columns()
                    .iter()
                    .zip(&fields)
                    .map(|(c, f)| arrow_cast::cast(c, f.data_type()).unwrap())
                    .collect();
                RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
            })
            .collect();
        assert!(plain[0]
            .column_by_name("host")
            .unwrap()
            .as_any()
            .is::<StringArray>());
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build();
        let mut w = ArrowWriter::try_new(
            fs::File::create(&f).unwrap(),
            plain[0].schema(),
            Some(props),
        )
        .unwrap();
        for b in &plain {
            w.write(b).unwrap();
        }
        w.close().unwrap();
    }
    let report = compact(out, opts("2026-11-24")).unwrap();
    let beta = report
        .merged
        .iter()
        .find(|m| m.host == "beta" && m.date == day("2026-11-23"))
        .expect("beta's rewritten files are merged under their host column's name");
    assert!(beta.files_before >= 2);
    assert_eq!(
        rows_by_day(out)["date=2026-11-23"],
        before["date=2026-11-23"]
    );
}
