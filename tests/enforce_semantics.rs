//! The shared semantics cases (policygen/tests/cases/semantics.toml) decided by the
//! real kernel enforcer: real connects from binaries whose hashes the policy pins, in a
//! cgroup and a loopback-only network namespace the test creates, with the verdicts
//! and rule ids read back from the audit trail.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;

use common::*;

#[path = "../policygen/tests/cases/cases.rs"]
mod cases;
#[path = "enforce_semantics/names.rs"]
mod names;
#[path = "enforce_semantics/scoped.rs"]
mod scoped;

use cases::Case;

/// A copy of pinhole-probe with bytes appended, so each stands for a different binary.
fn probe_copy(dir: &std::path::Path, name: &str, tag: u8) -> (PathBuf, String) {
    let path = dir.join(name);
    let mut bytes = fs::read(PROBE).unwrap();
    bytes.extend_from_slice(&[0, tag]);
    fs::write(&path, &bytes).unwrap();
    fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let sha = sha256_of(&path);
    (path, sha)
}

/// The suite's policy with each app's hash replaced by a probe copy's (at a known
/// path), and, with `dns`, each app allowed to ask the test's DNS server.
fn pin_apps(text: &str, dir: &std::path::Path, dns: bool) -> (String, BTreeMap<String, PathBuf>) {
    let mut policy = text.to_owned();
    if dns {
        let mut sections: Vec<String> = policy.split("\n[[app]]\n").map(str::to_owned).collect();
        for (i, app) in sections.iter_mut().enumerate().skip(1) {
            app.push_str(&format!(
                "\n[[app.allow]]\nid = \"test-dns-{i}\"\nprotocol = \"udp\"\ndst = \"{}/32\"\nports = 53\n",
                names::DNS.ip()
            ));
        }
        policy = sections.join("\n[[app]]\n");
    }
    let mut binaries: BTreeMap<String, PathBuf> = BTreeMap::new();
    let app_hashes: Vec<String> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("sha256 = \""))
        .map(|h| h.trim_end_matches('"').to_owned())
        .collect();
    for (i, old) in app_hashes.iter().enumerate() {
        let (path, sha) = probe_copy(dir, &format!("app{i}"), i as u8 + 1);
        policy = policy.replace(
            &format!("sha256 = \"{old}\""),
            &format!("sha256 = \"{sha}\"\npaths = [\"{}\"]", path.display()),
        );
        binaries.insert(old.clone(), path);
    }
    (policy, binaries)
}

fn probe_arg(c: &Case) -> String {
    let addr: std::net::IpAddr = c.addr.parse().unwrap();
    let kind = match c.protocol.as_str() {
        _ if c.kind == "source_route" => "srcroute",
        "tcp" => "tcp",
        "udp" => "udp",
        "icmp" => "icmp",
        other => panic!("no probe for protocol {other}"),
    };
    format!("{kind}:{}", std::net::SocketAddr::new(addr, c.port))
}

#[test]
fn every_semantics_case_holds_in_the_kernel() {
    require_root();
    let _guard = serial();
    let cases = cases::load();
    let (mut checked, mut names) = (0, 0);
    let mut skipped = Vec::new();
    for (s, suite) in cases.suite.iter().enumerate() {
        // Where a slow guest's time goes, suite by suite.
        let started = std::time::Instant::now();
        let took = || format!("{:.1} s", started.elapsed().as_secs_f64());
        let dir = tempfile::tempdir().unwrap();
        // TTLs and expiry run on the kernel's clock, so on a slow (emulated) CPU a timed
        // suite takes minutes (a suite second lasts longer, see `scoped`): the guest
        // plays those with the LSM backend, whose kernel the host cannot run; the host
        // plays them all with the cgroup hooks.
        let timed = !suite.answers.is_empty() || suite.events.iter().any(|c| c.t != 0);
        if timed && slowdown() > 1 && test_backend().as_deref() != Some("lsm") {
            eprintln!(
                "skipped: suite \"{}\" is timed in real seconds, and this CPU is {}x slower \
                 (on a slow CPU timed suites run with the LSM backend only)",
                suite.name,
                slowdown()
            );
            skipped.push(suite.events.len());
            continue;
        }
        if !suite.answers.is_empty() {
            let (n, left_out) = names::check_suite(s, suite);
            names += n;
            skipped.push(left_out);
            eprintln!("suite \"{}\": {}", suite.name, took());
            continue;
        }
        // Other users run the probe copies too.
        fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let (policy, binaries) = pin_apps(&suite.policy, dir.path(), false);
        let (unknown, _) = probe_copy(dir.path(), "unknown", 0xee);
        let cg = TestCgroup::new(&format!("pinhole-sem{s}"));
        let scoped = scoped::Setup::new(&cg, &policy, &suite.events);
        let policy_path = dir.path().join("policy.toml");
        fs::write(&policy_path, &scoped.policy).unwrap();
        let out = dir.path().join("trail");
        let enforcer = Enforcer::start(&policy_path, &cg, &["--out", out.to_str().unwrap()]);
        eprintln!(
            "suite \"{}\": enforcer started after {}",
            suite.name,
            took()
        );

        // Events in file order: one probe run per stretch with the same binary, user,
        // cgroup and time.
        let mut per_binary: BTreeMap<PathBuf, Vec<&Case>> = BTreeMap::new();
        let exe_of = |c: &Case| binaries.get(&c.sha256).unwrap_or(&unknown).clone();
        for c in &suite.events {
            per_binary.entry(exe_of(c)).or_default().push(c);
        }
        let same_run = |a: &&Case, b: &&Case| {
            (exe_of(a), a.uid, a.gid, &a.cgroup, a.t) == (exe_of(b), b.uid, b.gid, &b.cgroup, b.t)
        };
        let events: Vec<&Case> = suite.events.iter().collect();
        for run in events.chunk_by(same_run) {
            let (first, exe) = (run[0], exe_of(run[0]));
            scoped.wait_for(first.t);
            let args: Vec<String> = run.iter().map(|c| probe_arg(c)).collect();
            let got = probe_isolated_as(scoped.cgroup(first), (first.uid, first.gid), &exe, &args);
            scoped.assert_before_next_boundary(first.t);
            for (c, answer) in run.iter().zip(&got) {
                let denied = answer == "EPERM";
                assert_eq!(
                    denied,
                    c.verdict == "denied",
                    "{}: {} from {} answered {answer}, expected {}",
                    suite.name,
                    probe_arg(c),
                    exe.display(),
                    c.verdict
                );
            }
        }
        eprintln!("suite \"{}\": probes done after {}", suite.name, took());
        let (status, log) = enforcer.stop();
        assert!(status.success(), "{log}");
        let rows = rows(&out);
        eprintln!(
            "suite \"{}\": stopped and read after {}",
            suite.name,
            took()
        );
        scoped.check_subjects(&suite.name, &rows, &per_binary);
        for (exe, all_events) in &per_binary {
            // Source-route cases are decided at setsockopt; the connect after an allowed
            // one is decided (and recorded) too, apart.
            for source_route in [false, true] {
                let hook_matches = |r: &Row| match source_route {
                    true => r["hook"] == "setsockopt",
                    false => r["hook"] != "setsockopt",
                };
                let events: Vec<&Case> = all_events
                    .iter()
                    .copied()
                    .filter(|c| (c.kind == "source_route") == source_route)
                    .collect();
                let mut mine: Vec<&Row> = rows_of(&rows, exe)
                    .into_iter()
                    .filter(|r| r["hook"] != "sock_create" && hook_matches(r))
                    .collect();
                mine.sort_by(|a, b| a["ts_ns"].cmp(&b["ts_ns"]));
                if !source_route {
                    // Connects that followed a source route the enforcer let through.
                    let followed = all_events
                        .iter()
                        .filter(|c| c.kind == "source_route" && c.verdict != "denied")
                        .count();
                    assert_eq!(
                        mine.len(),
                        events.len() + followed,
                        "{}: rows of {}",
                        suite.name,
                        exe.display()
                    );
                    if followed > 0 {
                        continue;
                    }
                }
                assert_eq!(
                    mine.len(),
                    events.len(),
                    "{}: rows of {}",
                    suite.name,
                    exe.display()
                );
                check_rows(&suite.name, &events, &mine);
                checked += events.len();
            }
        }
        drop(scoped);
        drop(cg);
    }
    // Every case was checked, or its suite skipped out loud above.
    assert_eq!(checked + names + skipped.iter().sum::<usize>(), 37 + 32);
    if skipped.iter().sum::<usize>() == 0 {
        assert_eq!((checked, names), (37, 32));
    }
    assert_nothing_pinned();
}

/// Each recorded decision has the case's verdict and rule id, in order.
pub(crate) fn check_rows(suite: &str, events: &[&Case], rows: &[&Row]) {
    for (c, r) in events.iter().zip(rows) {
        let want_rule = if c.rule.is_empty() {
            "NULL"
        } else {
            c.rule.as_str()
        };
        assert_eq!(
            (r["verdict"].as_str(), r["rule_id"].as_str()),
            (c.verdict.as_str(), want_rule),
            "{}: {}",
            suite,
            probe_arg(c)
        );
    }
}
