//! The enforcer's backends: which one `auto` picks and why, `--backend lsm` refused
//! with one clear reason where the kernel cannot run it, and, where it can (the QEMU
//! guest of tests/vm), the LSM backend refusing packet sockets, deciding
//! host-wide calls only inside --cgroup, and reloading without a window.

mod common;

use std::fs;
use std::path::Path;

use common::*;

/// Closed loopback ports: a connect that passes the enforcer is refused by the stack.
const ALLOWED: u16 = 39301;
const OTHER: u16 = 39302;

fn policy(dir: &Path, port: u16) -> (std::path::PathBuf, std::path::PathBuf) {
    one_app_policy(dir, "probe", port)
}

/// Whether this kernel runs the LSM backend; says why a test is skipped where not.
fn lsm_backend_here() -> bool {
    let here = lsm_backend_available();
    if !here {
        eprintln!(
            "skipped: this kernel runs no BPF-LSM programs (tests/vm/run boots one that does)"
        );
    }
    here
}

fn status_text() -> String {
    String::from_utf8_lossy(&pinhole(["enforce", "status"]).stdout).into_owned()
}

#[test]
fn auto_says_which_backend_and_why() {
    require_root();
    let _guard = serial();
    let dir = tempfile::tempdir().unwrap();
    let (_, policy) = policy(dir.path(), ALLOWED);
    let cg = TestCgroup::new("pinhole-backend");
    let e = Enforcer::start(&policy, &cg, &["--backend", "auto"]);
    let status = status_text();
    let want = match lsm_backend_available() {
        true => "backend:    lsm (auto: bpf is an active LSM)",
        false => "backend:    cgroup (auto: bpf is ",
    };
    assert!(status.contains(want), "{status}");
    let (st, log) = e.stop();
    assert!(st.success(), "{log}");
}

#[test]
fn backend_lsm_is_refused_with_the_reason_where_the_kernel_cannot_run_it() {
    require_root();
    if lsm_backend_available() {
        eprintln!("skipped: this kernel runs BPF-LSM programs (the host's refuses them)");
        return;
    }
    let _guard = serial();
    let dir = tempfile::tempdir().unwrap();
    let (_, policy) = policy(dir.path(), ALLOWED);
    let cg = TestCgroup::new("pinhole-nolsm");
    let before = loaded_programs("enforce_");
    let out = pinhole([
        "enforce".as_ref(),
        policy.as_os_str(),
        "--backend".as_ref(),
        "lsm".as_ref(),
        "--cgroup".as_ref(),
        cg.path.as_os_str(),
        "--attach-cgroup".as_ref(),
        cg.path.as_os_str(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    // Not listed in /sys/kernel/security/lsm, or listed but no lsm program loads.
    assert!(
        err.contains(
            "--backend lsm: bpf is not an active LSM on this kernel (/sys/kernel/security/lsm: "
        ) || err.contains(
            "--backend lsm: bpf is an active LSM, but this kernel loads no BPF-LSM program"
        ),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert_eq!(
        newly_loaded("enforce_", &before),
        Vec::<String>::new(),
        "nothing was loaded"
    );
}

/// The LSM hooks are host-wide: a process outside --cgroup is not decided, one inside
/// is; a packet socket inside is refused and lands in the trail.
#[test]
fn the_lsm_backend_decides_only_inside_its_cgroup_and_refuses_packet_sockets() {
    require_root();
    if !lsm_backend_here() {
        return;
    }
    let _guard = serial();
    let dir = tempfile::tempdir().unwrap();
    let (exe, policy) = policy(dir.path(), ALLOWED);
    let inside = TestCgroup::new("pinhole-lsm-in");
    let outside = TestCgroup::new("pinhole-lsm-out");
    let trail = dir.path().join("trail");
    let e = Enforcer::start(
        &policy,
        &inside,
        &["--backend", "lsm", "--out", trail.to_str().unwrap()],
    );
    let allowed = format!("tcp:127.0.0.1:{ALLOWED}");
    let other = format!("tcp:127.0.0.1:{OTHER}");
    assert_eq!(
        probe_in(&inside, &exe, &[&allowed, &other, "packet"]),
        ["ECONNREFUSED", "EPERM", "EPERM"]
    );
    assert_eq!(
        probe_in(&outside, &exe, &[&allowed, &other, "packet"]),
        ["ECONNREFUSED", "ECONNREFUSED", "ok"],
        "outside --cgroup nothing is decided"
    );
    let (st, log) = e.stop();
    assert!(st.success(), "{log}");
    let rows = rows(&trail);
    let mine: Vec<_> = rows
        .iter()
        .filter(|r| r["exe_sha256"] == sha256_of(&exe))
        .map(|r| {
            (
                r["hook"].as_str(),
                r["dst_port"].as_str(),
                r["verdict"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        mine,
        [
            ("connect", ALLOWED.to_string().as_str(), "allowed"),
            ("connect", OTHER.to_string().as_str(), "denied"),
            ("packet_socket", "0", "denied"),
        ],
        "{rows:?}"
    );
}

/// A reload attaches the new LSM programs beside the old and switches which decide:
/// afterwards the new policy alone decides (two generations deciding at once would
/// deny both ports, since LSM verdicts are and-ed).
#[test]
fn the_lsm_backend_reloads_without_a_window() {
    require_root();
    if !lsm_backend_here() {
        return;
    }
    let _guard = serial();
    let dir = tempfile::tempdir().unwrap();
    let (exe, first) = policy(dir.path(), ALLOWED);
    let (_, second) = policy(dir.path(), OTHER);
    let cg = TestCgroup::new("pinhole-lsm-reload");
    let e = Enforcer::start(&first, &cg, &["--backend", "lsm"]);
    let allowed = format!("tcp:127.0.0.1:{ALLOWED}");
    let other = format!("tcp:127.0.0.1:{OTHER}");
    assert_eq!(
        probe_in(&cg, &exe, &[&allowed, &other]),
        ["ECONNREFUSED", "EPERM"]
    );
    reload_ok(&second);
    assert_eq!(
        probe_in(&cg, &exe, &[&allowed, &other]),
        ["EPERM", "ECONNREFUSED"],
        "the new policy alone decides (LSM verdicts of two generations would deny both)"
    );
    assert!(status_text().contains("generation: 2"));
    let (st, log) = e.stop();
    assert!(st.success(), "{log}");
}

/// Regression: a persisted enforcer left by a pinhole from before the LSM backend pinned
/// no active-generation map and recorded no backend; taking it over failed at opening
/// the missing pin. It now takes over with the cgroup hooks it was using.
#[test]
fn an_older_persisted_enforcer_is_taken_over() {
    require_root();
    let _guard = serial();
    let dir = tempfile::tempdir().unwrap();
    let (exe, policy) = policy(dir.path(), ALLOWED);
    let cg = TestCgroup::new("pinhole-older");
    let cgroup = ["--persist", "--backend", "cgroup"];
    let log = Enforcer::start(&policy, &cg, &cgroup).kill9();
    assert!(log.contains(" enforcing "), "{log}");
    // What the older version left: no such pin, no backend in the state.
    fs::remove_file("/sys/fs/bpf/pinhole/enforce/active_generation").unwrap();
    let state = Path::new("/run/pinhole/enforce/state.json");
    let mut st: serde_json::Value = serde_json::from_slice(&fs::read(state).unwrap()).unwrap();
    let fields = st.as_object_mut().unwrap();
    fields.remove("backend").unwrap();
    fields.remove("backend_reason").unwrap();
    fs::write(state, serde_json::to_vec(&st).unwrap()).unwrap();

    let e = Enforcer::start(&policy, &cg, &["--persist", "--backend", "auto"]);
    let other = format!("tcp:127.0.0.1:{OTHER}");
    assert_eq!(probe_in(&cg, &exe, &[&other]), ["EPERM"]);
    assert!(status_text().contains("backend:    cgroup (auto: the persisted enforcer's"));
    let (st, log) = e.stop();
    assert!(st.success(), "{log}");
    let stop = pinhole(["enforce", "stop"]);
    assert!(
        stop.status.success(),
        "{}",
        String::from_utf8_lossy(&stop.stderr)
    );
    assert_nothing_pinned();
}
