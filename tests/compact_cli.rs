//! `pinhole compact` as a process: killed (-9) before each of its file-system steps, it
//! leaves every day readable exactly once, and the next run finishes the job; bad input
//! gets an error naming the problem. Needs no root: it works on a synthetic dataset.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;

use common::PINHOLE;
use pinhole_recorder::layout::published_files;
use pinhole_recorder::readback::{event_times, read_file};
use pinhole_recorder::synth::{generate, SynthConfig};

/// The syscalls that change the dataset or make a change durable: the kill points.
const STEPS: &str =
    "rename,renameat,renameat2,link,linkat,unlink,unlinkat,rmdir,mkdir,mkdirat,fsync,fdatasync";
const BEFORE: &str = "2026-11-24";

/// Two hosts, three days (2026-11-22..24), several files per host and day.
fn dataset(out: &Path) {
    for (host, seed, files) in [("alpha", 1, 12), ("beta", 2, 6)] {
        let cfg = SynthConfig {
            events: 3_000,
            apps: 4,
            destinations: 30,
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

/// Per day: the rows and the sum of their times. A day read twice, or partly, differs.
fn days(out: &Path) -> BTreeMap<String, (usize, i128)> {
    let mut days: BTreeMap<String, (usize, i128)> = BTreeMap::new();
    for f in published_files(out).unwrap() {
        let day = f
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let e = days.entry(day).or_default();
        for b in read_file(&f).unwrap().0 {
            e.0 += b.num_rows();
            e.1 += event_times(&b)
                .unwrap()
                .iter()
                .map(|&t| i128::from(t))
                .sum::<i128>();
        }
    }
    days
}

fn files_of(day: &Path) -> usize {
    fs::read_dir(day).unwrap().count()
}

fn copy_dir(from: &Path, to: &Path) {
    let _ = fs::remove_dir_all(to);
    let st = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success());
}

/// Runs `pinhole compact` on `work` under strace with `strace_args`.
fn compact_traced(work: &Path, strace_args: &[String]) -> std::process::Output {
    Command::new("strace")
        .args(["-f", "-qq"])
        .args(strace_args)
        .arg(PINHOLE)
        .arg("compact")
        .arg(work)
        .args(["--before", BEFORE])
        .output()
        .expect("strace (setup.sh installs it)")
}

/// The steps of a run, in order: each syscall's name and which call of that name it is
/// (strace counts `when=` per syscall).
fn steps_of(trace: &str) -> Vec<(String, usize)> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    trace
        .lines()
        .filter_map(|l| {
            let call = l.split_whitespace().nth(1)?;
            let name = call.split('(').next()?.to_owned();
            let n = seen.entry(name.clone()).or_default();
            *n += 1;
            Some((name, *n))
        })
        .collect()
}

#[test]
fn killed_before_any_step_the_day_is_readable_exactly_once_and_the_next_run_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let pristine = dir.path().join("pristine");
    dataset(&pristine);
    let expected = days(&pristine);
    let work = dir.path().join("work");
    // A run without a kill lists the steps.
    copy_dir(&pristine, &work);
    let trace = dir.path().join("steps.txt");
    let out = compact_traced(
        &work,
        &[
            "-o".into(),
            trace.display().to_string(),
            "-e".into(),
            format!("trace={STEPS}"),
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let steps = steps_of(&fs::read_to_string(&trace).unwrap());
    // Two days: per host a write, fsync and rename; a swap; the replaced files removed.
    assert!(steps.len() >= 30, "{steps:?}");
    for (name, n) in &steps {
        let step = format!("{name} #{n}");
        copy_dir(&pristine, &work);
        let out = compact_traced(
            &work,
            &[
                "-o".into(),
                "/dev/null".into(),
                "-e".into(),
                format!("trace={name}"),
                "-e".into(),
                format!("inject={name}:signal=KILL:when={n}"),
            ],
        );
        assert!(!out.status.success(), "not killed before {step}");
        assert_eq!(
            days(&work),
            expected,
            "killed before {step}: every day once"
        );
        let out = Command::new(PINHOLE)
            .arg("compact")
            .arg(&work)
            .args(["--before", BEFORE])
            .output()
            .unwrap();
        assert!(out.status.success(), "after a kill before {step}: {out:?}");
        assert_eq!(
            days(&work),
            expected,
            "after a kill before {step} and a rerun"
        );
        for d in ["date=2026-11-22", "date=2026-11-23"] {
            assert_eq!(
                files_of(&work.join(d)),
                2,
                "{step}: one file per host in {d}"
            );
        }
        let leftovers = fs::read_dir(work.join(".compact"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with("date=")
            })
            .count();
        assert_eq!(leftovers, 0, "{step}: nothing left set aside");
        assert_eq!(
            files_of(&work.join("date=2026-11-24")),
            6,
            "{step}: today is left"
        );
    }
}

#[test]
fn bad_input_is_named_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nowhere");
    let out = Command::new(PINHOLE)
        .arg("compact")
        .arg(&missing)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("nowhere"), "{err}");

    let out = Command::new(PINHOLE)
        .arg("compact")
        .arg(dir.path())
        .args(["--before", "2026-13-01"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("not a date"), "{err}");

    let data = dir.path().join("data");
    dataset(&data);
    let before = days(&data);
    fs::write(
        data.join("date=2026-11-23/zz-broken.parquet"),
        b"not parquet at all",
    )
    .unwrap();
    let out = Command::new(PINHOLE)
        .arg("compact")
        .arg(&data)
        .args(["--before", BEFORE])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("zz-broken.parquet"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("2026-11-22 alpha: 4 files"), "{stdout}");
    // The broken file is left for the operator; nothing else changed in its day.
    fs::remove_file(data.join("date=2026-11-23/zz-broken.parquet")).unwrap();
    let after = days(&data);
    assert_eq!(after["date=2026-11-22"], before["date=2026-11-22"]);
    assert_eq!(files_of(&data.join("date=2026-11-23")), 6);
}
