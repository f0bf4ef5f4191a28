//! The enforcer sandboxes itself once its first policy is loaded: every thread (the
//! poller, the exec gate and its hashers, the metrics server) ends with the loading
//! capabilities and no other, in every set, and no new privileges; it still decides,
//! reloads (a new generation is loaded and attached inside the sandbox), writes its
//! trail and serves metrics, and `enforce status` says which layers are in force. The
//! exec gate's watchdog, the one process it starts, holds no capability at all. What
//! Landlock refuses (writes outside the allowed directories, exec, TCP connect) is
//! tested in src/sandbox.rs.

mod common;

use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;

const P1: u16 = 39161;
const P2: u16 = 39162;
const METRICS: u16 = 39727;

/// Every reload loads and attaches: the enforcer keeps all it was given.
const ENFORCER_CAPS: u64 = DOCUMENTED_CAPS_MASK;

/// A copy of the probe, and two policies for it: the first allows P1, the second P2.
fn setup() -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("probe");
    fs::copy(PROBE, &exe).unwrap();
    let first = dir.path().join("first.toml");
    fs::write(&first, one_port_policy(&exe, P1)).unwrap();
    let second = dir.path().join("second.toml");
    fs::write(&second, one_port_policy(&exe, P2)).unwrap();
    (dir, exe, first, second)
}

fn tcp(port: u16) -> String {
    format!("tcp:127.0.0.1:{port}")
}

/// The pid of `parent`'s child running `pinhole exec-gate-watchdog`.
fn watchdog_of(parent: u32) -> Option<u32> {
    fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let status = fs::read_to_string(e.path().join("status")).ok()?;
        let ppid = status.lines().find_map(|l| l.strip_prefix("PPid:"))?;
        let cmdline = fs::read(e.path().join("cmdline")).ok()?;
        let is_watchdog = String::from_utf8_lossy(&cmdline).contains("exec-gate-watchdog");
        (ppid.trim() == parent.to_string() && is_watchdog).then_some(pid)
    })
}

#[test]
fn an_enforcer_keeps_only_its_loading_capabilities_on_every_thread_and_still_reloads() {
    require_root();
    let _guard = serial();
    let (dir, exe, first, second) = setup();
    let trail = dir.path().join("trail");
    let cg = TestCgroup::new("pinhole-enforce-sandbox");
    let metrics = format!("127.0.0.1:{METRICS}");
    let e = Enforcer::start(
        &first,
        &cg,
        &[
            "--sandbox-strict",
            "--metrics-listen",
            &metrics,
            "--out",
            trail.to_str().unwrap(),
            "--flush-interval",
            "100ms",
        ],
    );
    let pid = e.pid();
    let deadline = Instant::now() + Duration::from_secs(10) * slowdown();
    while caps_of(pid, "CapEff").iter().any(|c| *c != ENFORCER_CAPS) {
        assert!(
            Instant::now() < deadline,
            "capabilities never reduced: {:x?}",
            caps_of(pid, "CapEff")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        probe_in(&cg, &exe, &[&tcp(P1), &tcp(P2)]),
        ["ECONNREFUSED", "EPERM"]
    );
    let scraped = scrape(METRICS);

    // A reload loads and attaches a new generation from inside the sandbox.
    reload_ok(&second);
    assert_eq!(
        probe_in(&cg, &exe, &[&tcp(P1), &tcp(P2)]),
        ["EPERM", "ECONNREFUSED"]
    );

    let threads = per_thread(pid, "CapEff").len();
    // The poller, the exec gate and its two hashers, the metrics server.
    assert!(threads >= 5, "the enforcer's threads run: {threads}");
    for set in ["CapEff", "CapPrm", "CapBnd"] {
        assert!(
            caps_of(pid, set).iter().all(|c| *c == ENFORCER_CAPS),
            "{set}: {:x?}",
            caps_of(pid, set)
        );
    }
    for set in ["CapInh", "CapAmb"] {
        assert!(caps_of(pid, set).iter().all(|c| *c == 0), "{set}");
    }
    assert!(per_thread(pid, "NoNewPrivs").iter().all(|v| v == "1"));
    let watchdog = watchdog_of(pid).expect("the exec gate's watchdog runs");
    for set in ["CapEff", "CapPrm", "CapBnd", "CapAmb"] {
        assert_eq!(caps_of(watchdog, set), [0], "the watchdog's {set}");
    }
    assert_eq!(per_thread(watchdog, "NoNewPrivs"), ["1"]);

    let status = pinhole(["enforce", "status"]);
    let said = String::from_utf8_lossy(&status.stdout);
    assert!(said.contains("sandbox:    landlock filesystem"), "{said}");
    assert!(said.contains("capabilities reduced"), "{said}");
    let (st, log) = e.stop();
    assert!(st.success(), "{log}");
    assert!(log.contains("sandbox in force"), "{log}");
    assert!(!log.contains("already running"), "{log}");
    for layer in ["landlock_filesystem", "landlock_tcp", "capabilities"] {
        assert!(
            scraped.contains(&format!("pinhole_sandbox_layer{{layer=\"{layer}\"}} 1")),
            "{scraped}"
        );
    }
    let rows = rows(&trail);
    let denied: Vec<&str> = rows_of(&rows, &exe)
        .iter()
        .filter(|r| r["verdict"] == "denied")
        .map(|r| r["dst_port"].as_str())
        .collect();
    assert_eq!(
        denied,
        [P2.to_string(), P1.to_string()],
        "both generations' denials written"
    );
    assert_nothing_pinned();
    assert_eq!(enforcer_programs_left(), Vec::<String>::new());
}

#[test]
fn a_persisted_enforcer_pins_reloads_and_is_stopped_from_inside_its_sandbox() {
    require_root();
    let _guard = serial();
    let (_dir, exe, first, second) = setup();
    let cg = TestCgroup::new("pinhole-enforce-sandbox-persist");
    let e = Enforcer::start(&first, &cg, &["--sandbox-strict", "--persist"]);
    reload_ok(&second);
    let (st, log) = e.stop();
    assert!(st.success(), "{log}");
    assert!(log.contains("sandbox in force"), "{log}");
    // The reload's counters were pinned in place of the first generation's.
    assert_eq!(
        probe_in(&cg, &exe, &[&tcp(P1), &tcp(P2)]),
        ["EPERM", "ECONNREFUSED"]
    );
    // A new sandboxed enforcer takes the pins over, and removes them at its stop.
    let e = Enforcer::start(&second, &cg, &["--sandbox-strict"]);
    assert_eq!(
        probe_in(&cg, &exe, &[&tcp(P1), &tcp(P2)]),
        ["EPERM", "ECONNREFUSED"]
    );
    let (st, log) = e.stop();
    assert!(st.success(), "{log}");
    assert!(log.contains("took over"), "{log}");
    assert_nothing_pinned();
    assert_eq!(enforcer_programs_left(), Vec::<String>::new());
}

#[test]
fn no_sandbox_leaves_the_enforcer_as_it_started() {
    require_root();
    let _guard = serial();
    let (_dir, _, first, _) = setup();
    let cg = TestCgroup::new("pinhole-enforce-no-sandbox");
    let e = Enforcer::start(&first, &cg, &["--no-sandbox"]);
    let ours = caps_of(std::process::id(), "CapEff")[0];
    assert!(caps_of(e.pid(), "CapEff").iter().all(|c| *c == ours));
    let status = pinhole(["enforce", "status"]);
    let said = String::from_utf8_lossy(&status.stdout);
    assert!(said.contains("sandbox:    off (--no-sandbox)"), "{said}");
    let (st, log) = e.stop();
    assert!(st.success(), "{log}");
    assert!(!log.contains("sandbox in force"), "{log}");
}
