//! The enforcer's failure modes and identity rules, against the real kernel, each in a
//! cgroup the test creates: bad policies refused before loading, audit mode, atomic
//! reload, takeover of a persisted enforcer, and identity pinned to the bytes.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;

/// A probe copy with its own hash, and a policy pinning it with `rules` (TOML bodies).
fn setup(dir: &Path, unknown: &str, mode: &str, ports: &[u16]) -> (PathBuf, PathBuf) {
    let exe = dir.join("probe");
    fs::copy(PROBE, &exe).unwrap();
    let policy = dir.join("policy.toml");
    fs::write(&policy, policy_text(&exe, unknown, mode, ports)).unwrap();
    (exe, policy)
}

fn policy_text(exe: &Path, unknown: &str, mode: &str, ports: &[u16]) -> String {
    let mut t = format!(
        "version = 1\n[defaults]\nunknown_binary = \"{unknown}\"\n\n[[app]]\nname = \"probe\"\n\
         sha256 = \"{}\"\npaths = [\"{}\"]\nmode = \"{mode}\"\n",
        sha256_of(exe),
        exe.display()
    );
    for p in ports {
        t += &format!("\n[[app.allow]]\nid = \"port-{p}\"\nprotocol = \"tcp\"\ndst = \"127.0.0.1\"\nports = {p}\n");
    }
    t
}

fn tcp(port: u16) -> String {
    format!("tcp:127.0.0.1:{port}")
}

/// Closed loopback ports: a connect that passes the enforcer is refused by the stack.
const P1: u16 = 39101;
const P2: u16 = 39102;
const P3: u16 = 39103;

#[test]
fn a_bad_policy_is_refused_before_anything_is_loaded() {
    require_root();
    let _guard = serial();
    let dir = tempfile::tempdir().unwrap();
    let cg = TestCgroup::new("pinhole-bad");
    let before = loaded_programs("enforce_");
    let bad = dir.path().join("bad.toml");
    fs::write(
        &bad,
        "version = 1\n[[app]]\nname = \"x\"\nsha256 = \"abc\"\n\n[[app.allow]]\nid = \"r\"\nprotocol = \"tcp\"\ndst = \"10.0.0.0/33\"\nports = 80\n",
    )
    .unwrap();
    for (file, want) in [
        (bad.clone(), "bad.toml:4:"),
        (dir.path().join("missing.toml"), "missing.toml"),
    ] {
        let out = pinhole([
            "enforce".as_ref(),
            file.as_os_str(),
            "--cgroup".as_ref(),
            cg.path.as_os_str(),
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(want), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let out = pinhole([
        "enforce".as_ref(),
        bad.as_os_str(),
        "--cgroup".as_ref(),
        cg.path.as_os_str(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("nothing was loaded") && err.contains("/33"),
        "{err}"
    );
    assert_eq!(
        newly_loaded("enforce_", &before),
        Vec::<String>::new(),
        "nothing was loaded"
    );
    assert_nothing_pinned();
}

#[test]
fn audit_mode_never_denies_and_records_would_deny() {
    require_root();
    let _guard = serial();
    let dir = tempfile::tempdir().unwrap();
    let (exe, policy) = setup(dir.path(), "deny", "enforce", &[P1]);
    let cg = TestCgroup::new("pinhole-audit");
    let trail = dir.path().join("trail");
    let e = Enforcer::start(
        &policy,
        &cg,
        &["--mode", "audit", "--out", trail.to_str().unwrap()],
    );
    let got = probe_in(&cg, &exe, &[&tcp(P1), &tcp(P2), "raw4"]);
    assert_eq!(got, ["ECONNREFUSED", "ECONNREFUSED", "ok"]);
    let (status, log) = e.stop();
    assert!(status.success(), "{log}");
    let rows = rows(&trail);
    let mine = rows_of(&rows, &exe);
    let verdicts: Vec<(&str, &str)> = mine
        .iter()
        .map(|r| (r["verdict"].as_str(), r["rule_id"].as_str()))
        .collect();
    assert!(
        verdicts.contains(&("allowed", "port-39101")),
        "{verdicts:?}"
    );
    assert_eq!(
        verdicts.iter().filter(|v| v.0 == "would-deny").count(),
        2,
        "the closed port and the raw socket: {verdicts:?}"
    );
    assert!(!verdicts.iter().any(|v| v.0 == "denied"));
}

/// Sets the flag when dropped: a failing assertion must stop the hammer thread too, or
/// the test's thread scope would wait for it forever.
struct StopOnDrop<'a>(&'a std::sync::atomic::AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Release);
    }
}

/// Runs probes in the cgroup over and over on a thread until `stop`, returning every
/// answer per probe.
fn hammer(
    cg: &TestCgroup,
    exe: &Path,
    probes: &[String],
    stop: &std::sync::atomic::AtomicBool,
) -> Vec<Vec<String>> {
    let mut answers = vec![Vec::new(); probes.len()];
    let args: Vec<&str> = probes.iter().map(String::as_str).collect();
    while !stop.load(std::sync::atomic::Ordering::Acquire) {
        for (i, a) in probe_in(cg, exe, &args).into_iter().enumerate() {
            answers[i].push(a);
        }
    }
    answers
}

#[test]
fn reload_swaps_policies_without_an_allow_all_or_deny_all_window() {
    require_root();
    let _guard = serial();
    let dir = tempfile::tempdir().unwrap();
    let (exe, policy_a) = setup(dir.path(), "deny", "enforce", &[P1]);
    let policy_b = dir.path().join("b.toml");
    fs::write(&policy_b, policy_text(&exe, "deny", "enforce", &[P1, P2])).unwrap();
    let bad = dir.path().join("bad.toml");
    fs::write(
        &bad,
        "version = 1\n[defaults]\nunknown_binary = \"sometimes\"\n",
    )
    .unwrap();
    let cg = TestCgroup::new("pinhole-reload");
    let e = Enforcer::start(&policy_a, &cg, &[]);
    assert_eq!(probe_in(&cg, &exe, &[&tcp(P2)]), ["EPERM"]);

    let stop = std::sync::atomic::AtomicBool::new(false);
    let probes = vec![tcp(P1), tcp(P3)];
    let answers = std::thread::scope(|s| {
        let h = s.spawn(|| hammer(&cg, &exe, &probes, &stop));
        let _stop = StopOnDrop(&stop);
        for i in 0..6 {
            let p = if i % 2 == 0 { &policy_b } else { &policy_a };
            reload_ok(p);
        }
        stop.store(true, std::sync::atomic::Ordering::Release);
        h.join().unwrap()
    });
    assert!(answers[0].len() >= 6, "probed throughout the reloads");
    assert!(
        answers[0].iter().all(|a| a == "ECONNREFUSED"),
        "allowed in both: never denied"
    );
    assert!(
        answers[1].iter().all(|a| a == "EPERM"),
        "denied in both: never allowed"
    );
    // Ended on policy A. Now B, then a broken file: refused, B stays.
    let out = pinhole(["enforce".as_ref(), "reload".as_ref(), policy_b.as_os_str()]);
    assert!(out.status.success());
    assert_eq!(probe_in(&cg, &exe, &[&tcp(P2)]), ["ECONNREFUSED"]);
    let out = pinhole(["enforce".as_ref(), "reload".as_ref(), bad.as_os_str()]);
    assert_eq!(out.status.code(), Some(1));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("nothing was changed"), "{said}");
    // The enforcer's check is relayed, with the user's file and its own line numbers.
    assert!(said.contains(&format!("{}:3:", bad.display())), "{said}");
    assert_eq!(probe_in(&cg, &exe, &[&tcp(P2)]), ["ECONNREFUSED"]);
    // SIGHUP re-reads the file the enforcer was started with (policy A).
    unsafe { libc::kill(e.pid() as i32, libc::SIGHUP) };
    let deadline = Instant::now() + Duration::from_secs(10) * slowdown();
    while probe_in(&cg, &exe, &[&tcp(P2)]) != ["EPERM"] {
        assert!(Instant::now() < deadline, "SIGHUP did not reload");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Counters are per loaded policy: exactly the decisions made since the last reload.
    // (The state file names the new policy's counters just after the hooks switch.)
    let status_json = || -> serde_json::Value {
        serde_json::from_slice(&pinhole(["enforce", "status", "--format", "json"]).stdout).unwrap()
    };
    let mut before = status_json();
    while before["generation"] != 9 {
        assert!(
            Instant::now() < deadline,
            "the state never showed the SIGHUP reload"
        );
        std::thread::sleep(Duration::from_millis(20));
        before = status_json();
    }
    let got = probe_in(&cg, &exe, &[&tcp(P1), &tcp(P2), &tcp(P3), &tcp(P3)]);
    assert_eq!(got, ["ECONNREFUSED", "EPERM", "EPERM", "EPERM"]);
    let json = status_json();
    assert_eq!(
        json["generation"], 9,
        "1 + 7 reloads + SIGHUP; the refused one loads nothing"
    );
    let count = |j: &serde_json::Value, k: &str| j["apps"][1][k].as_u64().unwrap();
    assert_eq!(json["apps"][1]["app"], "probe");
    assert_eq!(count(&json, "denied") - count(&before, "denied"), 3);
    assert_eq!(count(&json, "allowed") - count(&before, "allowed"), 1);
    let (st, log) = e.stop();
    assert!(st.success(), "{log}");
    assert_eq!(enforcer_programs_left(), Vec::<String>::new());
}

#[test]
fn a_restarted_persisted_enforcer_takes_over_without_a_gap() {
    require_root();
    let _guard = serial();
    let dir = tempfile::tempdir().unwrap();
    let (exe, policy) = setup(dir.path(), "deny", "enforce", &[P1]);
    let cg = TestCgroup::new("pinhole-takeover");
    let log = Enforcer::start(&policy, &cg, &["--persist"]).kill9();
    assert!(log.contains(" enforcing "));
    let stop = std::sync::atomic::AtomicBool::new(false);
    let probes = vec![tcp(P1), tcp(P3)];
    let trail = dir.path().join("trail");
    let answers = std::thread::scope(|s| {
        let h = s.spawn(|| hammer(&cg, &exe, &probes, &stop));
        let _stop = StopOnDrop(&stop);
        std::thread::sleep(Duration::from_millis(200));
        let e = Enforcer::start(
            &policy,
            &cg,
            &["--persist", "--out", trail.to_str().unwrap()],
        );
        std::thread::sleep(Duration::from_millis(200));
        stop.store(true, std::sync::atomic::Ordering::Release);
        let answers = h.join().unwrap();
        let (status, log) = e.stop();
        assert!(status.success(), "{log}");
        assert!(
            log.contains("took over the persisted enforcer"),
            "the second enforcer took over the pinned links: {log}"
        );
        (answers, log)
    });
    let (answers, log) = answers;
    assert!(answers[0].iter().all(|a| a == "ECONNREFUSED"));
    assert!(
        answers[1].iter().all(|a| a == "EPERM"),
        "enforced throughout"
    );
    // Denials made while no process ran waited in the pinned ring: the one that took
    // over wrote them, with the first policy's names, next to its own.
    let rows = rows(&trail);
    let denied = rows
        .iter()
        .filter(|r| r["dst_port"] == P3.to_string() && r["verdict"] == "denied")
        .filter(|r| r["app"] == "probe")
        .count();
    let p3: Vec<_> = rows
        .iter()
        .filter(|r| r["dst_port"] == P3.to_string())
        .map(|r| {
            format!(
                "{} {} {} {}",
                r["ts"], r["verdict"], r["app"], r["exe_status"]
            )
        })
        .collect();
    assert_eq!(
        denied,
        answers[1].len(),
        "rows to port {P3}: {p3:#?}\nthe enforcer that took over: {log}"
    );
    let out = pinhole(["enforce", "stop"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(probe_in(&cg, &exe, &[&tcp(P3)]), ["ECONNREFUSED"]);
    assert_nothing_pinned();
    assert_eq!(enforcer_programs_left(), Vec::<String>::new());
}

/// Retries until the answer is `want` (a fresh inode is hashed after its exec).
fn eventually(cg: &TestCgroup, exe: &Path, probe: &str, want: &str) -> usize {
    let deadline = Instant::now() + Duration::from_secs(5) * slowdown();
    let mut tries = 1;
    while probe_in(cg, exe, &[probe]) != [want] {
        assert!(
            Instant::now() < deadline,
            "{} never answered {want}",
            exe.display()
        );
        std::thread::sleep(Duration::from_millis(20));
        tries += 1;
    }
    tries
}

#[test]
fn identity_follows_the_bytes_not_the_path() {
    require_root();
    let _guard = serial();
    let dir = tempfile::tempdir().unwrap();
    let (exe, policy) = setup(dir.path(), "deny", "enforce", &[P1]);
    let cg = TestCgroup::new("pinhole-identity");
    let e = Enforcer::start(&policy, &cg, &[]);
    assert_eq!(probe_in(&cg, &exe, &[&tcp(P1)]), ["ECONNREFUSED"]);
    // Renamed: same bytes, same inode, new change time. The exec gate holds the exec
    // until the file is rehashed, so even the first connect is the app's.
    let moved = dir.path().join("moved-probe");
    fs::rename(&exe, &moved).unwrap();
    assert_eq!(eventually(&cg, &moved, &tcp(P1), "ECONNREFUSED"), 1);
    // Copied: a new inode with the same bytes.
    let copy = dir.path().join("copied-probe");
    fs::copy(&moved, &copy).unwrap();
    assert_eq!(eventually(&cg, &copy, &tcp(P1), "ECONNREFUSED"), 1);
    // Modified in place: same inode and path, other bytes: an unknown binary, for good.
    let mut f = fs::OpenOptions::new().append(true).open(&moved).unwrap();
    std::io::Write::write_all(&mut f, b"\0changed").unwrap();
    drop(f);
    for _ in 0..5 {
        assert_eq!(probe_in(&cg, &moved, &[&tcp(P1)]), ["EPERM"]);
        std::thread::sleep(Duration::from_millis(50));
    }
    // The untouched copy keeps its rules.
    assert_eq!(probe_in(&cg, &copy, &[&tcp(P1)]), ["ECONNREFUSED"]);
    let (st, log) = e.stop();
    assert!(st.success(), "{log}");

    // Without the gate, the exec tracepoint and the first connect report the new file,
    // and it is recognised once hashed (the first connects may come too early).
    let e = Enforcer::start(&policy, &cg, &["--no-exec-gate"]);
    let late = dir.path().join("late-copy");
    fs::copy(&copy, &late).unwrap();
    eventually(&cg, &late, &tcp(P1), "ECONNREFUSED");
    let (st, log) = e.stop();
    assert!(st.success(), "{log}");
}

#[test]
fn a_policy_that_matches_no_binary_here_warns_loudly() {
    require_root();
    let _guard = serial();
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("elsewhere.toml");
    fs::write(
        &policy,
        format!(
            "version = 1\n[[app]]\nname = \"elsewhere\"\nsha256 = \"{}\"\npaths = [\"/nonexistent/bin/x\"]\n",
            "ab".repeat(32)
        ),
    )
    .unwrap();
    let cg = TestCgroup::new("pinhole-nomatch");
    let e = Enforcer::start(&policy, &cg, &[]);
    let (status, log) = e.stop();
    assert!(status.success(), "{log}");
    assert!(
        log.contains("WARN") && log.contains("NO app of this policy matched"),
        "{log}"
    );
}

/// A process started before the enforcer is its app from the start, and one that only a
/// reloaded policy names becomes that app at the reload. Its file's identity comes from
/// the running process (the policy's path hint is another copy of the same bytes), and
/// the enforcer hashes only running executables of an app's size.
#[test]
fn processes_running_before_the_start_or_a_reload_are_their_apps() {
    require_root();
    let _guard = serial();
    let dir = tempfile::tempdir().unwrap();
    let (exe, policy_a) = setup(dir.path(), "deny", "enforce", &[P1]);
    let python = fs::canonicalize("/usr/bin/python3").unwrap();
    let runner = settled_copy(&python, dir.path(), "py");
    let hint = fresh_copy(&python, dir.path(), "py-hint");
    let policy_b = dir.path().join("b.toml");
    fs::write(
        &policy_b,
        policy_text(&exe, "deny", "enforce", &[P1])
            + &format!(
                "\n[[app]]\nname = \"py\"\nsha256 = \"{}\"\npaths = [\"{}\"]\nmode = \"enforce\"\n\n\
                 [[app.allow]]\nid = \"py\"\nprotocol = \"tcp\"\ndst = \"127.0.0.1\"\nports = {P2}\n",
                runner.sha256,
                hint.path.display()
            ),
    )
    .unwrap();
    let cg = TestCgroup::new("pinhole-running");
    // Connects to each port it reads and prints the outcome's errno name.
    let script = "import errno, socket, sys\n\
                  for line in sys.stdin:\n    \
                      s = socket.socket()\n    \
                      r = s.connect_ex(('127.0.0.1', int(line)))\n    \
                      print(errno.errorcode.get(r, r), flush=True)\n    \
                      s.close()\n";
    let mut py = cg
        .command(&runner.path)
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut to_py = py.stdin.take().unwrap();
    let mut from_py = std::io::BufReader::new(py.stdout.take().unwrap());
    let mut connect = |port: u16| {
        use std::io::{BufRead, Write};
        writeln!(to_py, "{port}").unwrap();
        let mut answer = String::new();
        from_py.read_line(&mut answer).unwrap();
        answer.trim().to_owned()
    };
    assert_eq!(connect(P2), "ECONNREFUSED", "no enforcer yet");

    let e = Enforcer::start(&policy_a, &cg, &[]);
    assert_eq!(connect(P2), "EPERM", "an unknown binary under policy A");
    reload_ok(&policy_b);
    assert_eq!(connect(P2), "ECONNREFUSED", "the app py after the reload");
    assert_eq!(connect(P1), "EPERM", "and only what py may do");
    let (st, log) = e.stop();
    assert!(st.success(), "{log}");

    let e = Enforcer::start(&policy_b, &cg, &[]);
    assert_eq!(connect(P2), "ECONNREFUSED", "the app py from the start");
    assert_eq!(connect(P1), "EPERM");
    let (st, log) = e.stop();
    assert!(st.success(), "{log}");
    drop(to_py);
    py.wait().unwrap();
    assert_eq!(enforcer_programs_left(), Vec::<String>::new());
}

/// An unknown binary that was running before the enforcer started, and exits right
/// after a denied connect, is still named by its hash in the trail: its file was kept
/// open at the start (not hashed then: it is no app's size).
#[test]
fn a_denied_process_from_before_the_start_keeps_its_hash_in_the_trail() {
    require_root();
    let _guard = serial();
    let dir = tempfile::tempdir().unwrap();
    let (_, policy) = setup(dir.path(), "deny", "enforce", &[P1]);
    let python = fs::canonicalize("/usr/bin/python3").unwrap();
    let early = settled_copy(&python, dir.path(), "py-early");
    let cg = TestCgroup::new("pinhole-early");
    let script = format!(
        "import os, socket, sys\nsys.stdin.readline()\n\
         socket.socket().connect_ex(('127.0.0.1', {P2}))\nos._exit(0)\n"
    );
    let mut py = cg
        .command(&early.path)
        .args(["-c", &script])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let trail = dir.path().join("trail");
    let e = Enforcer::start(&policy, &cg, &["--out", trail.to_str().unwrap()]);
    drop(py.stdin.take());
    py.wait().unwrap();
    std::thread::sleep(Duration::from_millis(300) * slowdown());
    let (st, log) = e.stop();
    assert!(st.success(), "{log}");
    let rows = rows(&trail);
    let denied: Vec<_> = rows
        .iter()
        .filter(|r| r["dst_port"] == P2.to_string() && r["verdict"] == "denied")
        .collect();
    assert_eq!(denied.len(), 1, "{rows:?}");
    assert_eq!(
        denied[0]["exe_sha256"], early.sha256,
        "{:?}\n{log}",
        denied[0]
    );
    assert_eq!(enforcer_programs_left(), Vec::<String>::new());
}

/// The enforcer as the service runs it: a dedicated user holding only the documented
/// capabilities (ambient). It sandboxes itself, decides, writes its trail as that
/// user, and answers `enforce status`.
#[test]
fn a_dedicated_user_with_the_documented_capabilities_enforces() {
    require_root();
    let _guard = serial();
    let dir = owned_by("nobody");
    let (exe, policy) = setup(dir.path(), "deny", "enforce", &[P1]);
    let cg = TestCgroup::new("pinhole-nonroot");
    let _dirs = ServiceDirs::owned_by("nobody");
    let trail = dir.path().join("trail");
    let e = Enforcer::start_as(
        ("nobody", "nogroup"),
        DOCUMENTED_CAPS,
        &policy,
        &cg,
        &["--out", trail.to_str().unwrap(), "--sandbox-strict"],
    );
    let got = probe_in(&cg, &exe, &[&tcp(P1), &tcp(P2)]);
    assert_eq!(got, ["ECONNREFUSED", "EPERM"]);
    let status = pinhole(["enforce", "status"]);
    assert!(status.status.success(), "{status:?}");
    let (st, log) = e.stop();
    assert!(st.success(), "{log}");
    assert!(log.contains("sandbox in force"), "{log}");
    let rows = rows(&trail);
    let verdicts: Vec<&str> = rows_of(&rows, &exe)
        .iter()
        .map(|r| r["verdict"].as_str())
        .collect();
    assert!(verdicts.contains(&"denied"), "{verdicts:?}");
    use std::os::unix::fs::MetadataExt;
    for f in pinhole_recorder::layout::published_files(&trail).unwrap() {
        assert_ne!(fs::metadata(&f).unwrap().uid(), 0, "{}", f.display());
    }
}
