//! Root integration tests of `pinhole record`: the real BPF programs, real connects
//! from known binaries, and the published Parquet read back field by field.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::*;

fn expect_ok_row(row: &Row, copy: &Copy) {
    assert_eq!(row["exe_sha256"], copy.sha256, "{row:?}");
    assert_eq!(row["exe_status"], "ok", "{row:?}");
    assert_eq!(row["exe_dev"], copy.dev.to_string(), "{row:?}");
    assert_eq!(row["exe_ino"], copy.ino.to_string(), "{row:?}");
    assert_eq!(row["verdict"], "observed");
}

#[test]
fn records_tcp_and_udp_over_ipv4_and_ipv6_with_every_field() {
    require_root();
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let copy = settled_copy(Path::new(LOADGEN), tmp.path(), "ph-fields");
    let rec = Recording::start(&tmp.path().join("events"), &[]);

    // (mode, address, port, expected protocol, expected hook, ip_version, canonical address)
    let cases = [
        (
            "tcp",
            "127.0.0.1",
            40001,
            "tcp",
            "connect",
            "4",
            "127.0.0.1",
        ),
        ("tcp", "::1", 40002, "tcp", "connect", "6", "::1"),
        (
            "udp",
            "127.0.0.1",
            40003,
            "udp",
            "connect",
            "4",
            "127.0.0.1",
        ),
        ("udp", "::1", 40004, "udp", "connect", "6", "::1"),
        (
            "sendto",
            "127.0.0.1",
            40005,
            "udp",
            "sendmsg",
            "4",
            "127.0.0.1",
        ),
        ("sendto", "::1", 40006, "udp", "sendmsg", "6", "::1"),
        // An IPv4-mapped destination on an IPv6 socket is shown, and counted, as IPv4.
        (
            "tcp",
            "::ffff:127.0.0.1",
            40007,
            "tcp",
            "connect",
            "4",
            "127.0.0.1",
        ),
    ];
    let mut pids = Vec::new();
    for (mode, addr, port, ..) in cases {
        let child = Command::new(&copy.path)
            .args([
                "--mode",
                mode,
                "--addr",
                addr,
                "--port",
                &port.to_string(),
                "--count",
                "1",
            ])
            .output()
            .unwrap();
        assert!(child.status.success());
        pids.push(port);
    }
    let (status, log) = rec.stop();
    assert!(status.success(), "{log}");

    let rows = rows(&tmp.path().join("events"));
    let mine = rows_of(&rows, &copy.path);
    let netns = inode_of(Path::new("/proc/self/ns/net")).to_string();
    let cgroup = own_cgroup_id().to_string();
    let me = std::process::id().to_string();
    for (mode, _addr, port, proto, hook, ipv, canonical) in cases {
        let hits: Vec<_> = mine
            .iter()
            .filter(|r| r["dst_port"] == port.to_string())
            .collect();
        assert_eq!(hits.len(), 1, "{mode} to port {port}: {hits:?}");
        let r = hits[0];
        expect_ok_row(r, &copy);
        assert_eq!(r["protocol"], proto);
        assert_eq!(r["hook"], hook);
        assert_eq!(r["ip_version"], ipv);
        assert_eq!(r["dst_addr"], canonical);
        assert_eq!(r["ppid"], me, "parent is this test process");
        assert_eq!(r["tid"], r["pid"], "single-threaded process");
        assert_eq!(r["uid"], "0");
        assert_eq!(r["gid"], "0");
        assert_eq!(r["comm"], "ph-fields");
        assert_eq!(r["netns"], netns);
        assert_eq!(r["cgroup_id"], cgroup);
        assert!(!r["host"].is_empty());
        assert_ne!(r["sock_cookie"], "0");
        assert_eq!(r["rule_id"], "NULL");
        let ts = chrono::DateTime::parse_from_rfc3339(&r["ts"]).expect("ts is a UTC timestamp");
        let ts_ns: i64 = r["ts_ns"].parse().expect("ts_ns is an integer");
        assert_eq!(
            ts.timestamp_micros(),
            ts_ns.div_euclid(1000),
            "ts is ts_ns in microseconds"
        );
        assert!(
            (chrono::Utc::now() - ts.to_utc()).num_seconds().abs() < 120,
            "ts {ts}"
        );
    }
}

#[test]
fn records_connects_inside_a_network_namespace() {
    require_root();
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let copy = settled_copy(Path::new(LOADGEN), tmp.path(), "ph-netns");
    let ns = format!("pinhole-test-{}", std::process::id());
    run(Command::new("ip").args(["netns", "add", &ns]));
    let cleanup = scopeguard(|| {
        let _ = Command::new("ip").args(["netns", "delete", &ns]).status();
    });
    run(Command::new("ip").args(["-n", &ns, "link", "set", "lo", "up"]));
    let ns_inode = inode_of(&Path::new("/run/netns").join(&ns)).to_string();

    let rec = Recording::start(&tmp.path().join("events"), &[]);
    run(Command::new("ip")
        .args(["netns", "exec", &ns])
        .arg(&copy.path)
        .args(["--port", "40010", "--count", "3"]));
    let (status, log) = rec.stop();
    assert!(status.success(), "{log}");
    drop(cleanup);

    let rows = rows(&tmp.path().join("events"));
    let mine = rows_of(&rows, &copy.path);
    assert_eq!(mine.len(), 3, "{mine:?}");
    for r in mine {
        expect_ok_row(r, &copy);
        assert_eq!(r["netns"], ns_inode, "the namespace's own inode");
        assert_eq!(r["dst_port"], "40010");
    }
}

#[test]
fn short_lived_processes_all_get_their_hash() {
    require_root();
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let copy = settled_copy(Path::new(LOADGEN), tmp.path(), "ph-short");
    let rec = Recording::start(&tmp.path().join("events"), &[]);
    // 1,000 runs of one fresh copy, each connecting once and exiting at once.
    for _ in 0..1000 {
        run(Command::new(&copy.path).args(["--port", "40020", "--count", "1"]));
    }
    // And settled copies that are deleted as soon as their single run is over: only a
    // handle opened while the process lived can still hash them, and only a hash
    // taken before the unlink moved the change time can be proven (after it, a rewrite
    // could look the same: those rows say `modified` or `exited`, never another hash).
    let gone: Vec<Copy> = (0..30)
        .map(|i| fresh_copy(Path::new(LOADGEN), tmp.path(), &format!("ph-gone-{i}")))
        .collect();
    std::thread::sleep(SETTLE);
    for (i, c) in gone.iter().enumerate() {
        run(Command::new(&c.path).args(["--port", &(40100 + i).to_string(), "--count", "1"]));
        fs::remove_file(&c.path).unwrap();
    }
    let (status, log) = rec.stop();
    assert!(status.success(), "{log}");

    let rows = rows(&tmp.path().join("events"));
    let mine = rows_of(&rows, &copy.path);
    assert_eq!(mine.len(), 1000);
    for r in &mine {
        expect_ok_row(r, &copy);
    }
    let pids: std::collections::BTreeSet<_> = mine.iter().map(|r| r["pid"].clone()).collect();
    assert_eq!(pids.len(), 1000, "one row per process");
    // Deleted files free their inode numbers for the next copy: match on the port.
    let mut unproven = 0;
    for (i, c) in gone.into_iter().enumerate() {
        let port = (40100 + i).to_string();
        let hits: Vec<_> = rows
            .iter()
            .filter(|r| r["dst_port"] == port && r["comm"].starts_with("ph-gone"))
            .collect();
        assert_eq!(hits.len(), 1, "{}", c.path.display());
        if hits[0]["exe_status"] != "ok" {
            assert_eq!(hits[0]["exe_sha256"], "NULL");
            unproven += 1;
            continue;
        }
        assert_eq!(
            hits[0]["exe_sha256"],
            c.sha256,
            "{:?}\n{}",
            hits[0],
            log.lines()
                .filter(|l| l.contains("ph-gone"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        assert_eq!(hits[0]["exe_status"], "ok");
        assert_eq!(hits[0]["exe_ino"], c.ino.to_string());
    }
    eprintln!("{unproven} of 30 deleted copies were unlinked before they could be hashed");
}

/// A process that started before the recorder and exits right after its connect has
/// no /proc entry left when its event is read: only the start-up snapshot (the task
/// iterator, once refused by this host's verifier) knows its file.
#[test]
fn a_process_started_before_the_recorder_gets_its_hash_after_it_exits() {
    require_root();
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let python = fs::canonicalize("/usr/bin/python3").unwrap();
    let copy = settled_copy(&python, tmp.path(), "ph-early");
    let script = "import os, socket, sys\n\
                  sys.stdin.readline()\n\
                  socket.socket().connect_ex(('127.0.0.1', 40030))\n\
                  os._exit(0)\n";
    let mut early = Command::new(&copy.path)
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = tmp.path().join("events");
    let rec = Recording::start(&out, &[]);
    // Long enough for the start-up snapshot to pass.
    std::thread::sleep(std::time::Duration::from_millis(1500) * slowdown());
    drop(early.stdin.take());
    early.wait().unwrap();
    let (status, log) = rec.stop();
    assert!(status.success(), "{log}");
    assert!(!log.contains("snapshot"), "{log}");
    let rows = rows(&out);
    let hits: Vec<_> = rows.iter().filter(|r| r["dst_port"] == "40030").collect();
    assert_eq!(hits.len(), 1, "{rows:?}");
    expect_ok_row(hits[0], &copy);
}

#[test]
fn symlinks_and_shims_resolve_to_the_real_interpreter() {
    require_root();
    let _serial = serial();
    let python = Path::new("/usr/bin/python3");
    assert!(
        python.exists(),
        "/usr/bin/python3 is installed by the test set-up"
    );
    let real = fs::canonicalize(python).unwrap();
    assert_ne!(real, python, "/usr/bin/python3 is a symlink on Debian");
    let tmp = tempfile::tempdir().unwrap();
    // A shim in the style of pyenv: a script that execs the interpreter.
    let shim = tmp.path().join("python-shim");
    fs::write(&shim, "#!/bin/sh\nexec /usr/bin/python3 \"$@\"\n").unwrap();
    run(Command::new("chmod").arg("+x").arg(&shim));
    let rec = Recording::start(&tmp.path().join("events"), &[]);
    let script = "import socket\ns=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.connect(('127.0.0.1', {port}))";
    run(Command::new(python).args(["-c", &script.replace("{port}", "40030")]));
    run(Command::new(&shim).args(["-c", &script.replace("{port}", "40031")]));
    let (status, log) = rec.stop();
    assert!(status.success(), "{log}");

    let rows = rows(&tmp.path().join("events"));
    let sha = sha256_of(&real);
    for port in ["40030", "40031"] {
        let hits: Vec<_> = rows
            .iter()
            .filter(|r| r["dst_port"] == port && r["protocol"] == "udp")
            .collect();
        assert_eq!(hits.len(), 1, "port {port}: {hits:?}");
        assert_eq!(
            hits[0]["exe_path"],
            real.to_string_lossy(),
            "resolved path, not the link or shim"
        );
        assert_eq!(hits[0]["exe_sha256"], sha);
    }
}

/// Runs `f` when dropped.
pub fn scopeguard<F: FnOnce()>(f: F) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}

/// What `tests/py/SCRIPT` printed reading the dataset at `out` with another engine
/// (setup.sh installs `what` in the test venv).
fn read_with(script: &str, out: &Path, what: &str) -> String {
    let python = std::env::var("PINHOLE_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/py")
        .join(script);
    let res = Command::new(&python)
        .arg(&script)
        .arg(out)
        .output()
        .unwrap();
    assert!(
        res.status.success(),
        "{python} could not read the dataset (setup.sh installs {what}): {}",
        String::from_utf8_lossy(&res.stderr)
    );
    String::from_utf8_lossy(&res.stdout).into_owned()
}

#[test]
fn the_dataset_reads_as_one_table_in_duckdb_and_pyarrow() {
    require_root();
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("events");
    let copy = settled_copy(Path::new(LOADGEN), tmp.path(), "ph-engines");
    // At least two files: rotation by time.
    let rec = Recording::start(
        &out,
        &["--flush-interval", "100ms", "--rotate-interval", "150ms"],
    );
    run(Command::new(&copy.path).args(["--port", "40040", "--count", "5"]));
    // Long enough for the start-up snapshot, a flush and a rotation to pass.
    std::thread::sleep(std::time::Duration::from_millis(1500) * slowdown());
    run(Command::new(&copy.path).args([
        "--mode", "sendto", "--addr", "::1", "--port", "40041", "--count", "5",
    ]));
    let (status, log) = rec.stop();
    assert!(status.success(), "{log}");
    assert!(
        pinhole_recorder::layout::published_files(&out)
            .unwrap()
            .len()
            >= 2
    );
    let ours = rows(&out).len();

    let text = read_with("read_dataset.py", &out, "duckdb and pyarrow");
    let seen = |key: &str| {
        let start = text
            .find(&format!("\"{key}\": "))
            .unwrap_or_else(|| panic!("{key} in {text}"))
            + key.len()
            + 4;
        text[start..]
            .split([',', '}'])
            .next()
            .unwrap()
            .trim()
            .to_owned()
    };
    assert_eq!(seen("duckdb_rows"), ours.to_string(), "{text}");
    assert_eq!(seen("pyarrow_rows"), ours.to_string(), "{text}");
    assert_eq!(
        seen("duckdb_hashed_rows"),
        ours.to_string(),
        "every row has its hash: {text}"
    );
    assert_eq!(seen("duckdb_dates"), "1", "{text}");
    assert!(
        text.contains(
            "\"duckdb_hooks\": [\"connect\", \"recording_started\", \"recording_stopped\", \"sendmsg\"]"
        ),
        "{text}"
    );
    assert!(
        text.contains("\"date\""),
        "hive partition column visible: {text}"
    );
    assert!(text.contains("\"schema_versions\": [\"3\"]"), "{text}");
    assert!(text.contains("fixed_size_binary[32]"), "{text}");
    assert!(text.contains("timestamp[us, tz=UTC]"), "{text}");
}

#[test]
fn cgroup_option_records_only_that_subtree() {
    require_root();
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let copy = settled_copy(Path::new(LOADGEN), tmp.path(), "ph-cgroup");
    let cg = TestCgroup::new("pinhole-test-record");
    let name = cg.path.file_name().unwrap().to_str().unwrap().to_owned();
    // Relative to the cgroup-v2 mount, as a user would write it.
    let rec = Recording::start(&tmp.path().join("events"), &["--cgroup", &name]);
    run(cg
        .command(&copy.path)
        .args(["--port", "40070", "--count", "2"]));
    run(Command::new(&copy.path).args(["--port", "40071", "--count", "2"]));
    let (status, log) = rec.stop();
    assert!(status.success(), "{log}");
    let rows = rows(&tmp.path().join("events"));
    let mine = rows_of(&rows, &copy.path);
    assert_eq!(
        mine.len(),
        2,
        "only the connects made inside the cgroup: {mine:?}"
    );
    // The recorder names the cgroup by its path too (what rule scopes name).
    let path = format!(
        "/{}",
        cg.path.strip_prefix(cgroup2_mount()).unwrap().display()
    );
    for r in mine {
        assert_eq!(r["dst_port"], "40070");
        assert_eq!(r["cgroup_id"], cg.id().to_string());
        assert_eq!(r["cgroup"], path);
    }
    assert!(
        rows.iter()
            .filter(|r| !r["hook"].starts_with("recording_"))
            .all(|r| r["cgroup_id"] == cg.id().to_string()),
        "nothing from outside the subtree"
    );
}

/// Spark reads the dataset with no legacy flag and every column as what it is: `ts` a
/// timestamp (microseconds, with the exact nanoseconds in `ts_ns`), 64-bit ids as
/// integers rather than decimal(20,0).
#[test]
fn the_dataset_reads_in_spark_with_native_types() {
    require_root();
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("events");
    let copy = settled_copy(Path::new(LOADGEN), tmp.path(), "ph-spark");
    let rec = Recording::start(&out, &[]);
    run(Command::new(&copy.path).args(["--port", "40042", "--count", "3"]));
    let (status, log) = rec.stop();
    assert!(status.success(), "{log}");
    let rows = rows(&out);
    let text = read_with("read_spark.py", &out, "pyspark and a JRE");
    let json: serde_json::Value =
        serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(json["rows"], rows.len(), "{text}");
    let types = &json["types"];
    assert_eq!(types["ts"], "timestamp", "{text}");
    for c in [
        "ts_ns",
        "exe_dev",
        "exe_ino",
        "cgroup_id",
        "sock_cookie",
        "pid",
    ] {
        assert_eq!(types[c], "bigint", "{c}: {text}");
    }
    assert_eq!(types["dns_addrs"], "array<string>", "{text}");
    assert!(!text.contains("decimal"), "{text}");
    let first = rows
        .iter()
        .min_by_key(|r| r["ts_ns"].parse::<i64>().unwrap())
        .unwrap();
    assert_eq!(json["first_ts_ns"].to_string(), first["ts_ns"], "{text}");
}
