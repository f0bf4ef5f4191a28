//! The recorder sandboxes itself once started: every thread ends with only the
//! capabilities the loop uses (in every set, the bounding set included) and no new
//! privileges (Landlock's precondition), it still records, publishes and serves its
//! metrics, and `--no-sandbox` leaves it as it started. What Landlock refuses (writes
//! outside the dataset, exec, TCP connect) is tested in src/sandbox.rs. A dedicated
//! user holding only the documented capabilities (ambient, as the service unit gives
//! them) records and sandboxes itself too.

mod common;

use std::fs;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// CAP_DAC_READ_SEARCH (2), CAP_SYS_PTRACE (19), CAP_SYS_NICE (23), CAP_BPF (39).
const RECORDER_CAPS: u64 = (1 << 2) | (1 << 19) | (1 << 23) | (1 << 39);

#[test]
fn a_recorder_keeps_only_the_capabilities_it_uses_on_every_thread() {
    require_root();
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("events");
    let rec = Recording::start(
        &out,
        &[
            "--sandbox-strict",
            "--metrics-listen",
            "127.0.0.1:39728",
            "--flush-interval",
            "100ms",
            "--rotate-interval",
            "300ms",
        ],
    );
    let pid = rec.pid();
    let deadline = Instant::now() + Duration::from_secs(10) * slowdown();
    while caps_of(pid, "CapEff").iter().any(|c| *c != RECORDER_CAPS) {
        assert!(
            Instant::now() < deadline,
            "capabilities never reduced: {:x?}",
            caps_of(pid, "CapEff")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    run(Command::new(LOADGEN).args(["--port", "40093", "--count", "3"]));
    std::thread::sleep(Duration::from_millis(1000) * slowdown());
    let threads = per_thread(pid, "CapEff").len();
    assert!(
        threads >= 2,
        "the poller and metrics threads run: {threads}"
    );
    for set in ["CapEff", "CapPrm", "CapBnd"] {
        assert!(
            caps_of(pid, set).iter().all(|c| *c == RECORDER_CAPS),
            "{set}: {:x?}",
            caps_of(pid, set)
        );
    }
    for set in ["CapInh", "CapAmb"] {
        assert!(caps_of(pid, set).iter().all(|c| *c == 0), "{set}");
    }
    assert!(per_thread(pid, "NoNewPrivs").iter().all(|v| v == "1"));
    let metrics = scrape(39728);
    let (status, log) = rec.stop();
    assert!(status.success(), "{log}");
    assert!(log.contains("sandbox in force"), "{log}");
    assert!(!log.contains("could not raise"), "{log}");
    assert!(log.contains("landlock filesystem"), "{log}");
    for layer in ["landlock_filesystem", "landlock_tcp", "capabilities"] {
        assert!(
            metrics.contains(&format!("pinhole_sandbox_layer{{layer=\"{layer}\"}} 1")),
            "{metrics}"
        );
    }
    let rows = rows(&out);
    assert!(
        rows.iter().filter(|r| r["dst_port"] == "40093").count() == 3,
        "recorded and published inside the sandbox"
    );
}

#[test]
fn no_sandbox_leaves_the_recorder_as_it_started() {
    require_root();
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("events");
    let rec = Recording::start(&out, &["--no-sandbox"]);
    std::thread::sleep(Duration::from_millis(500) * slowdown());
    let ours = caps_of(std::process::id(), "CapEff")[0];
    assert!(caps_of(rec.pid(), "CapEff").iter().all(|c| *c == ours));
    let (status, log) = rec.stop();
    assert!(status.success(), "{log}");
    assert!(!log.contains("sandbox"), "{log}");
}

#[test]
fn a_dedicated_user_with_the_documented_capabilities_records_in_its_sandbox() {
    require_root();
    let _serial = serial();
    let tmp = owned_by("nobody");
    let out = tmp.path().join("events");
    let rec = Recording::start_as(
        ("nobody", "nogroup"),
        DOCUMENTED_CAPS,
        &out,
        &[
            "--sandbox-strict",
            "--flush-interval",
            "100ms",
            "--rotate-interval",
            "300ms",
        ],
    );
    let pid = rec.pid();
    let uid = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(
        uid.lines()
            .any(|l| l.starts_with("Uid:") && !l.contains("\t0\t")),
        "{uid}"
    );
    run(Command::new(LOADGEN).args(["--port", "40094", "--count", "3"]));
    std::thread::sleep(Duration::from_millis(1000) * slowdown());
    let (status, log) = rec.stop();
    assert!(status.success(), "{log}");
    assert!(log.contains("sandbox in force"), "{log}");
    assert!(log.contains("capabilities reduced"), "{log}");
    let rows = rows(&out);
    let ours: Vec<_> = rows.iter().filter(|r| r["dst_port"] == "40094").collect();
    assert_eq!(ours.len(), 3, "recorded as nobody");
    // Root's process, hashed by a recorder that is not root.
    assert!(ours.iter().all(|r| r["exe_sha256"].len() == 64), "{ours:?}");
    use std::os::unix::fs::MetadataExt;
    for f in pinhole_recorder::layout::published_files(&out).unwrap() {
        let m = fs::metadata(&f).unwrap();
        assert_eq!(m.mode() & 0o777, 0o640, "{}", f.display());
        assert_ne!(m.uid(), 0, "{} is the service user's", f.display());
    }
}

#[test]
fn a_dedicated_user_without_one_capability_is_told_which() {
    require_root();
    let tmp = owned_by("nobody");
    let out = setpriv(
        ("nobody", "nogroup"),
        "+perfmon,+net_admin,+sys_admin,+sys_ptrace,+dac_read_search",
    )
    .args(["record", "--out"])
    .arg(tmp.path().join("events"))
    .output()
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("CAP_BPF (loading BPF programs)"), "{err}");
    assert!(!err.contains("CAP_PERFMON"), "{err}");
}
