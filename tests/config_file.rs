//! The configuration file as an operator uses it: `pinhole config check`, and a
//! recorder that takes its options from the file, with flags overriding it.

mod common;

use std::ffi::OsStr;
use std::fs;
use std::process::Command;

use common::*;
use parquet::file::reader::{FileReader, SerializedFileReader};

#[test]
fn config_check_reports_ok_or_the_problem_at_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("pinhole.toml");
    fs::write(
        &good,
        "# pinhole's services\n[record]\nout = \"/var/lib/pinhole/events\"\nrotate-interval = \"5m\"\nhost-resolver = [\"/usr/lib/systemd/systemd-resolved\"]\n\n[enforce]\npolicy = \"/etc/pinhole/policy.toml\"\nmode = \"audit\"\npersist = true\n",
    )
    .unwrap();
    let out = pinhole([OsStr::new("config"), "check".as_ref(), good.as_ref()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .ends_with(": ok ([record] 3 settings, [enforce] 3 settings)\n"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    for (text, want) in [
        ("[record]\nrotate-intervall = \"5m\"\n", "bad.toml:2:1: unknown key `rotate-intervall` in [record]"),
        ("[enforce]\nring-size = \"3MiB\"\n", "bad.toml:2:1: [enforce] ring-size: invalid value '3MiB' for '--ring-size <RING_SIZE>': must be a power of two"),
        ("[enforce]\nname-capacity = 3\n", "bad.toml:2:1: [enforce] name-capacity: invalid value '3'"),
        ("[record]\npersist = 1\n", "bad.toml:2:1: [record] persist: a switch: write true or false"),
        ("[recorder]\n", "bad.toml:1:2: unknown section `recorder`"),
        ("[record]\nout = \"a\nb\"\n", "bad.toml:2:"),
    ] {
        let bad = dir.path().join("bad.toml");
        fs::write(&bad, text).unwrap();
        let out = pinhole([OsStr::new("config"), "check".as_ref(), bad.as_ref()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{text}: {err}");
        assert!(err.contains(want), "{text}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn the_example_configuration_checks() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/dist/pinhole.toml");
    let out = pinhole(["config", "check", example]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout)
        .contains("ok ([record] 8 settings, [enforce] 5 settings)"));
}

#[test]
fn the_recorder_runs_from_the_config_file_and_its_flags_win() {
    require_root();
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events");
    let config = dir.path().join("pinhole.toml");
    fs::write(
        &config,
        format!(
            "[record]\nout = \"{}\"\nhost = \"config-host\"\ncompression = \"zstd\"\nflush-interval = \"100ms\"\n",
            events.display()
        ),
    )
    .unwrap();
    let mut cmd = Command::new(PINHOLE);
    cmd.arg("record")
        .arg("--config")
        .arg(&config)
        .args(["--host", "flag-host"]);
    let (mut child, stderr, seen) = spawn_until(cmd, "attached; recording");
    assert!(
        seen.iter()
            .any(|l| l.contains(&format!("configuration: {}", config.display()))),
        "the log names the file: {seen:?}"
    );
    run(Command::new(LOADGEN).args(["--port", "40061", "--count", "3"]));
    // SAFETY: plain signal to our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    let log: Vec<String> = seen.into_iter().chain(stderr.iter()).collect();
    assert!(status.success(), "{}", log.join("\n"));

    // The file chose where and how to write; the flag chose the host name.
    let rows = rows(&events);
    let mine: Vec<&Row> = rows.iter().filter(|r| r["dst_port"] == "40061").collect();
    assert_eq!(mine.len(), 3, "{}", log.join("\n"));
    assert!(mine.iter().all(|r| r["host"] == "flag-host"));
    let file = pinhole_recorder::layout::published_files(&events).unwrap()[0].clone();
    let reader = SerializedFileReader::new(fs::File::open(&file).unwrap()).unwrap();
    let meta = reader.metadata().row_group(0);
    let host = (0..meta.num_columns())
        .map(|i| meta.column(i))
        .find(|c| c.column_path().string() == "host")
        .unwrap();
    assert!(
        matches!(host.compression(), parquet::basic::Compression::ZSTD(_)),
        "{:?}",
        host.compression()
    );
}
