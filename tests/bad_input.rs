//! Bad input, as the hostile tester fed it: non-regular files where files are read,
//! names that try to drive the terminal, rows nobody can understand, and option values
//! out of range. Each gets a clear error or an escaped display, never a hang.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::types::Int32Type;
use arrow_array::{ArrayRef, DictionaryArray, RecordBatch, StringArray};
use common::*;
use parquet::arrow::ArrowWriter;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use pinhole_recorder::event::{Event, ExeRef, ExeStatus, Hook, Protocol, Verdict};
use pinhole_recorder::{Sink, SinkConfig};

/// Runs pinhole, killing it if it has not finished within `limit`: a hang fails.
fn pinhole_within(limit: Duration, args: &[&str]) -> Output {
    let mut child = Command::new(PINHOLE)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            child.kill().ok();
            let out = child.wait_with_output().unwrap();
            panic!(
                "pinhole {args:?} hung for {limit:?}:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
}

/// A dataset of `n` events by one binary named `path`, `comm`, to 127.0.0.1:`port`.
fn dataset(out: &Path, path: &str, comm: &str, n: u32) {
    let (mut sink, _) = Sink::open(SinkConfig::new(out, "h")).unwrap();
    let sha = [7u8; 32];
    for i in 0..n {
        sink.append(&Event {
            ts_ns: 1_764_000_000_000_000_000 + i64::from(i) * 60_000_000_000,
            pid: 100 + i,
            tid: 100 + i,
            ppid: 1,
            uid: 0,
            gid: 0,
            comm,
            exe: ExeRef {
                path: Some(path),
                sha256: Some(&sha),
                status: ExeStatus::Ok,
                dev: 1,
                ino: 2,
            },
            cgroup_id: 1,
            cgroup: None,
            netns: 1,
            dst_addr: "127.0.0.1".parse().unwrap(),
            dst_port: 8000 + (i % 3) as u16,
            protocol: Protocol::Tcp,
            hook: Hook::Connect,
            verdict: Verdict::Observed,
            sock_cookie: u64::from(i),
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
}

#[test]
fn a_fifo_named_parquet_is_refused_not_waited_on() {
    let dir = tempfile::tempdir().unwrap();
    let ds = dir.path().join("ds");
    dataset(&ds, "/usr/bin/x", "x", 30);
    let part = std::fs::read_dir(&ds)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("date="))
        .unwrap();
    mkfifo(&part.join("zz-fifo.parquet"));
    let d = ds.to_str().unwrap();
    let policy = dir.path().join("p.toml");
    std::fs::write(&policy, "version = 1\n").unwrap();
    let p = policy.to_str().unwrap();
    let limit = Duration::from_secs(60);
    for args in [
        vec!["analyze", d],
        vec!["policy", "replay", p, d],
        vec!["policy", "generate", d],
        vec!["policy", "evaluate", d, "--split", "2030-01-01"],
    ] {
        let o = pinhole_within(limit, &args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", text(&o));
        assert!(
            text(&o).contains("zz-fifo.parquet") && text(&o).contains("is a FIFO"),
            "{args:?}: {}",
            text(&o)
        );
    }
}

#[test]
fn a_policy_that_is_a_fifo_or_a_device_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("policy.toml");
    mkfifo(&fifo);
    for (file, what) in [
        (fifo.to_str().unwrap(), "FIFO"),
        ("/dev/zero", "character device"),
    ] {
        let o = pinhole_within(Duration::from_secs(30), &["policy", "check", file]);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        assert!(text(&o).contains(what), "{}", text(&o));
        let o = pinhole_within(Duration::from_secs(30), &["enforce", file]);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    }
}

#[test]
fn policy_paths_naming_a_fifo_or_dev_zero_do_not_hang_enforce() {
    require_root();
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("app-fifo");
    mkfifo(&fifo);
    let policy = dir.path().join("p.toml");
    std::fs::write(
        &policy,
        format!(
            "version = 1\n[[app]]\nname = \"x\"\nsha256 = \"{}\"\npaths = [\"/dev/zero\", \"{}\"]\n",
            "ab".repeat(32),
            fifo.display()
        ),
    )
    .unwrap();
    let cg = TestCgroup::new("bad-paths");
    let o = pinhole_within(
        Duration::from_secs(60),
        &[
            "enforce",
            policy.to_str().unwrap(),
            "--cgroup",
            cg.path.to_str().unwrap(),
            "--attach-cgroup",
            cg.path.to_str().unwrap(),
            "--duration",
            "1s",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("is a character device"), "{}", text(&o));
    assert!(text(&o).contains("is a FIFO"), "{}", text(&o));
}

#[test]
fn control_characters_in_names_are_escaped_in_analyze() {
    let dir = tempfile::tempdir().unwrap();
    let ds = dir.path().join("ds");
    dataset(
        &ds,
        "/tmp/evil\nFORGED-LINE 9999\u{1b}[31m",
        "x\u{1b}]0;title\u{7}",
        30,
    );
    let d = ds.to_str().unwrap();
    for args in [
        vec!["analyze", d],
        vec!["analyze", d, "--app", "0707"],
        vec!["analyze", d, "--app", "nothing-by-this-name"],
    ] {
        let o = pinhole_within(Duration::from_secs(60), &args);
        let out = text(&o);
        assert!(!out.contains('\u{1b}') && !out.contains('\u{7}'), "{out:?}");
        assert!(!out.lines().any(|l| l.starts_with("FORGED")), "{out}");
        if o.status.success() {
            assert!(out.contains("/tmp/evil\\nFORGED-LINE"), "{out}");
        } else {
            assert!(out.contains("no application matches"), "{out}");
        }
    }
}

/// Rewrites every file of `ds` with `dst_addr` replaced by `value`.
fn corrupt_dst_addr(ds: &Path, value: &str) {
    for f in pinhole_recorder::layout::published_files(ds).unwrap() {
        let (batches, kv) = read_file(&f);
        let schema = batches[0].schema();
        let idx = schema.index_of("dst_addr").unwrap();
        let props = WriterProperties::builder()
            .set_key_value_metadata(Some(
                kv.iter()
                    .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
                    .collect(),
            ))
            .build();
        let mut w = ArrowWriter::try_new(
            std::fs::File::create(&f).unwrap(),
            schema.clone(),
            Some(props),
        )
        .unwrap();
        for b in &batches {
            let keys = arrow_array::Int32Array::from(vec![0; b.num_rows()]);
            let values = Arc::new(StringArray::from(vec![value]));
            let col: ArrayRef =
                Arc::new(DictionaryArray::<Int32Type>::try_new(keys, values).unwrap());
            let mut cols = b.columns().to_vec();
            cols[idx] = col;
            w.write(&RecordBatch::try_new(schema.clone(), cols).unwrap())
                .unwrap();
        }
        w.close().unwrap();
    }
}

#[test]
fn unreadable_destinations_are_counted_not_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let ds = dir.path().join("ds");
    dataset(&ds, "/usr/bin/garbled", "garbled", 40);
    corrupt_dst_addr(&ds, "not-an-address");
    let d = ds.to_str().unwrap();
    let o = pinhole_within(Duration::from_secs(60), &["analyze", d, "--format", "json"]);
    assert!(o.status.success(), "{}", text(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let app = &doc["apps"][0];
    assert_eq!(app["unreadable_events"], 40, "{app}");
    assert_eq!(app["destinations"].as_array().unwrap().len(), 0);
    assert_eq!(app["learning"]["verdict"], "too little data", "{app}");
    let o = pinhole_within(Duration::from_secs(60), &["analyze", d]);
    assert!(
        text(&o).contains(
            "40 events of 1 app(s) have a protocol or destination that could not be read"
        ),
        "{}",
        text(&o)
    );
    // No app with zero rules (which would deny it everything) is generated from them.
    let o = pinhole_within(
        Duration::from_secs(60),
        &["policy", "generate", d, "--explain"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let policy = String::from_utf8_lossy(&o.stdout);
    assert!(!policy.contains("[[app]]"), "{policy}");
    assert!(text(&o).contains("40 unreadable"), "{}", text(&o));
}

#[test]
fn out_of_range_options_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ev");
    let o_ = out.to_str().unwrap();
    let long_host = "h".repeat(300);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["record", "--out", o_, "--poll-interval", "1000y"],
            "between 1ms and 1s",
        ),
        (
            vec!["record", "--out", o_, "--duration", "1000y"],
            "--duration",
        ),
        (
            vec!["record", "--out", o_, "--flush-interval", "0s"],
            "--flush-interval",
        ),
        (
            vec!["record", "--out", o_, "--host", &long_host],
            "1 to 253 bytes",
        ),
        (
            vec!["enforce", "p.toml", "--poll-interval", "1000y"],
            "between 1ms and 1s",
        ),
    ];
    for (args, want) in cases {
        let o = pinhole_within(Duration::from_secs(30), &args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
        assert!(text(&o).contains(want), "{args:?}: {}", text(&o));
    }
}
