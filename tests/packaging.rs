//! What a package ships: systemd units that `systemd-analyze verify` accepts, man
//! pages and completions made from the command line, and the recorder speaking
//! systemd's notify protocol (readiness, watchdog, stopping).

mod common;

use std::fs;
use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn the_units_verify() {
    let dir = tempfile::tempdir().unwrap();
    let mut units = Vec::new();
    for name in ["pinhole-record.service", "pinhole-enforce.service"] {
        let text =
            fs::read_to_string(format!("{}/dist/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap();
        assert!(
            text.contains("Type=notify") && text.contains("WatchdogSec="),
            "{name}"
        );
        assert!(text.contains("User=pinhole"), "{name}");
        // The capabilities the non-root tests run with are the unit's.
        assert_eq!(
            unit_caps(&text, "AmbientCapabilities="),
            unit_caps(&text, "CapabilityBoundingSet=")
        );
        assert_eq!(
            unit_caps(&text, "AmbientCapabilities="),
            DOCUMENTED_CAPS,
            "{name}"
        );
        // The binary a package installs is this build's here.
        let path = dir.path().join(name);
        fs::write(&path, text.replace("/usr/bin/pinhole", PINHOLE)).unwrap();
        units.push(path);
    }
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(&units)
        .output()
        .expect("systemd-analyze (setup.sh test installs systemd)");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.trim().is_empty(), "{err}");
}

/// A unit's capability list in setpriv's syntax (`+bpf,+perfmon`).
fn unit_caps(unit: &str, key: &str) -> String {
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or_else(|| panic!("no {key}"));
    line.split_whitespace()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
        .collect::<Vec<_>>()
        .join(",")
}

#[test]
fn man_pages_and_completions_are_made_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = pinhole(["docs".as_ref(), "--out".as_ref(), dir.path().as_os_str()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let page = fs::read_to_string(dir.path().join("man/pinhole-record.1")).unwrap();
    assert!(
        page.starts_with(".ie") || page.contains(".TH pinhole-record 1"),
        "{page}"
    );
    assert!(page.contains("retain\\-days"), "{page}");
    assert!(dir.path().join("man/pinhole-enforce-status.1").exists());
    assert!(
        !dir.path().join("man/pinhole-docs.1").exists(),
        "hidden commands have none"
    );
    let bash = fs::read_to_string(dir.path().join("completions/pinhole.bash")).unwrap();
    assert!(bash.contains("--metrics-listen"), "bash completions");
    assert!(dir.path().join("completions/_pinhole").exists());
    assert!(dir.path().join("completions/pinhole.fish").exists());
}

#[test]
fn the_recorder_tells_systemd_it_is_ready_alive_and_stopping() {
    require_root();
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let socket_path = tmp.path().join("notify");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut cmd = Command::new(PINHOLE);
    cmd.args(["record", "--out"])
        .arg(tmp.path().join("events"))
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "400000");
    let (mut child, stderr, seen) = spawn_until(cmd, "attached; recording");
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    let deadline = Instant::now() + Duration::from_secs(5) * slowdown();
    while got
        .iter()
        .filter(|m: &&String| m.contains("WATCHDOG=1"))
        .count()
        < 2
    {
        assert!(Instant::now() < deadline, "{got:?}");
        if let Ok(n) = socket.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    // SAFETY: a plain signal to our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    let log: Vec<String> = seen.into_iter().chain(stderr.iter()).collect();
    assert!(status.success(), "{}", log.join("\n"));
    while let Ok(n) = socket.recv(&mut buf) {
        got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert!(
        got[0].starts_with("READY=1\nSTATUS=recording into "),
        "{got:?}"
    );
    assert!(got.last().unwrap().contains("STOPPING=1"), "{got:?}");
}

/// Purges the package when dropped, so a failing test leaves the host as it was (but
/// for the system user, which Debian's packages never remove).
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").args(["--purge", "pinhole"]).output();
    }
}

/// `cargo deb` builds the package (from this build's binary; `dist/build-deb.sh` makes
/// the release one), it holds what it should, installs with its user, and the installed
/// binary records as that user with the unit's capabilities (no systemd runs here: the
/// guest has no systemd as init either, so the units themselves are only verified).
#[test]
fn the_package_builds_installs_and_records_as_its_user() {
    require_root();
    let _serial = serial();
    if Command::new("cargo")
        .args(["deb", "--version"])
        .output()
        .map_or(true, |o| !o.status.success())
    {
        eprintln!("skipped: cargo-deb is not installed (./setup.sh test installs it)");
        return;
    }
    if Command::new("dpkg-query")
        .args(["-W", "pinhole"])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        eprintln!("skipped: a pinhole package is installed on this host; it is left alone");
        return;
    }
    let root = env!("CARGO_MANIFEST_DIR");
    let dir = tempfile::tempdir().unwrap();
    run(Command::new(PINHOLE)
        .args(["docs", "--out"])
        .arg(format!("{root}/target/dist")));
    run(Command::new("cargo")
        .current_dir(root)
        .args([
            "deb",
            "--no-build",
            "--locked",
            "--profile",
            "dev",
            "--strip",
            "-o",
        ])
        .arg(dir.path()));
    let deb = dir
        .path()
        .join(format!("pinhole_{}-1_amd64.deb", env!("CARGO_PKG_VERSION")));
    let contents =
        String::from_utf8(run(Command::new("dpkg-deb").arg("-c").arg(&deb)).stdout).unwrap();
    for f in [
        "./usr/bin/pinhole",
        "./lib/systemd/system/pinhole-record.service",
        "./lib/systemd/system/pinhole-enforce.service",
        "./etc/pinhole/pinhole.toml",
        "./usr/share/man/man1/pinhole-compact.1.gz",
        "./usr/share/bash-completion/completions/pinhole",
        "./usr/share/doc/pinhole/copyright",
    ] {
        assert!(
            contents.contains(f),
            "{f} missing from the package:\n{contents}"
        );
    }
    let info = String::from_utf8(run(Command::new("dpkg-deb").arg("-I").arg(&deb)).stdout).unwrap();
    assert!(
        info.contains("adduser") && info.contains("postinst"),
        "{info}"
    );

    let installed = Installed;
    run(Command::new("dpkg").arg("-i").arg(&deb));
    run(Command::new("getent").args(["passwd", "pinhole"]));
    let out = run(Command::new("stat").args(["-c", "%U:%G %a", "/etc/pinhole/pinhole.toml"]));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "root:pinhole 640"
    );
    let out = Command::new("systemd-analyze")
        .args([
            "verify",
            "--man=no",
            "/lib/systemd/system/pinhole-record.service",
            "/lib/systemd/system/pinhole-enforce.service",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.trim().is_empty(), "{err}");

    // As the unit would run it: its user, its capabilities, its configuration file.
    let unit = fs::read_to_string("/lib/systemd/system/pinhole-record.service").unwrap();
    let caps = unit_caps(&unit, "AmbientCapabilities=");
    let check = setpriv(("pinhole", "pinhole"), &caps)
        .args(["config", "check", "/etc/pinhole/pinhole.toml"])
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "the service user reads its configuration: {check:?}"
    );
    let data = owned_by("pinhole");
    let _dirs = ServiceDirs::owned_by("pinhole");
    let cmd = setpriv_exec(("pinhole", "pinhole"), &caps, "/usr/bin/pinhole");
    let rec = Recording::start_via(
        cmd,
        &data.path().join("events"),
        &["--flush-interval", "100ms"],
    );
    run(Command::new(LOADGEN).args(["--port", "40095", "--count", "2"]));
    std::thread::sleep(Duration::from_millis(800) * slowdown());
    let (status, log) = rec.stop();
    assert!(status.success(), "{log}");
    assert_eq!(
        rows(&data.path().join("events"))
            .iter()
            .filter(|r| r["dst_port"] == "40095")
            .count(),
        2
    );
    drop(installed);
}

/// `systemctl ARGS`, which must succeed.
fn systemctl(args: &[&str]) -> String {
    String::from_utf8(run(Command::new("systemctl").args(args)).stdout).unwrap()
}

/// `systemctl start UNIT`, which returns once the service said it is ready; a failure
/// shows the unit's journal.
fn start(unit: &str) {
    let out = Command::new("systemctl")
        .args(["start", unit])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "systemctl start {unit}: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        unit_journal(unit)
    );
}

/// A property of a unit (`systemctl show -p NAME --value`).
fn unit_property(unit: &str, name: &str) -> String {
    systemctl(&["show", unit, "-p", name, "--value"])
        .trim()
        .to_owned()
}

/// What the unit promises of its main process: its user, its capabilities (kept by its
/// sandbox), no new privileges, a read-only system but for the dataset and /run/pinhole,
/// a private /tmp.
fn assert_confined_as_the_unit_says(unit: &str, pid: u32) {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |f: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{f}:")))
            .unwrap_or_else(|| panic!("{f} in {status}"))
            .trim()
            .to_owned()
    };
    let uid = String::from_utf8(run(Command::new("id").args(["-u", "pinhole"])).stdout).unwrap();
    assert_eq!(
        field("Uid").split_whitespace().next(),
        Some(uid.trim()),
        "{unit}"
    );
    for set in ["CapEff", "CapPrm", "CapBnd"] {
        let got = u64::from_str_radix(&field(set), 16).unwrap();
        assert_eq!(got, DOCUMENTED_CAPS_MASK, "{unit}: {set}");
    }
    assert_eq!(field("NoNewPrivs"), "1", "{unit}");
    // mountinfo: ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS ...
    let mounts = fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    let options = |at: &str| {
        mounts
            .lines()
            .rfind(|l| l.split(' ').nth(4) == Some(at))
            .map(|l| l.split(' ').nth(5).unwrap().to_owned())
    };
    let ro = |at: &str| options(at).is_some_and(|o| o.split(',').any(|x| x == "ro"));
    assert!(
        ro("/"),
        "{unit}: ProtectSystem=strict leaves / writable:\n{mounts}"
    );
    assert!(
        !ro("/var/lib/pinhole") && options("/var/lib/pinhole").is_some(),
        "{unit}:\n{mounts}"
    );
    assert!(
        options("/tmp").is_some(),
        "{unit}: no private /tmp:\n{mounts}"
    );
}

/// The probe's answers, one per probe (run directly: in the guest the enforcer is the
/// whole machine's).
fn probe(exe: &std::path::Path, probes: &[&str]) -> Vec<String> {
    let out = run(Command::new(exe).args(probes));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.rsplit_once(' ').map(|(_, a)| a.to_owned()))
        .collect()
}

/// The units under a real systemd (a guest booted with systemd as init, the package
/// installed there): both start as notify services, run as the unit says (user,
/// capabilities, namespaces), sandbox themselves; the recorder killed with SIGKILL is
/// restarted and recovers what the killed run had staged; the enforcer denies, reloads with
/// `systemctl reload`, and both trails hold what happened.
#[test]
#[ignore = "runs in a guest booted with systemd as init: tests/vm/suite"]
fn the_units_run_under_systemd() {
    let init = fs::read_to_string("/proc/1/comm").unwrap_or_default();
    assert_eq!(
        init.trim(),
        "systemd",
        "tests/vm/suite runs this in a guest booted with systemd"
    );
    let deb = std::env::var("PINHOLE_TEST_DEB").expect("PINHOLE_TEST_DEB names the package");
    let started = Instant::now();
    let step = |what: &str| eprintln!("units: {what} at {} s", started.elapsed().as_secs());
    // man-db's trigger would index every manual page on the emulated CPU (minutes).
    fs::remove_file("/var/lib/man-db/auto-update").ok();
    run(Command::new("dpkg").arg("-i").arg(&deb));
    // The guest's CPU is emulated, about 25 times slower: so are the units' start and
    // watchdog allowances (a reload's load alone takes tens of seconds there).
    for unit in ["pinhole-record", "pinhole-enforce"] {
        let dir = format!("/etc/systemd/system/{unit}.service.d");
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            format!("{dir}/slow-guest.conf"),
            "[Service]\nTimeoutStartSec=600\nWatchdogSec=600\n",
        )
        .unwrap();
    }
    systemctl(&["daemon-reload"]);

    step("installed");
    // The recorder: ready, confined, restarted after a crash, the crashed run's staged
    // events recovered.
    start("pinhole-record");
    step("recorder started");
    assert_eq!(unit_property("pinhole-record", "ActiveState"), "active");
    let pid: u32 = unit_property("pinhole-record", "MainPID").parse().unwrap();
    assert_confined_as_the_unit_says("pinhole-record", pid);
    run(Command::new(LOADGEN).args(["--port", "40096", "--count", "2"]));
    // Staged (flush-interval 1s, in real seconds) before the crash.
    std::thread::sleep(Duration::from_secs(3));
    // SAFETY: a signal to the service's process.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let deadline = Instant::now() + Duration::from_secs(8) * slowdown();
    loop {
        let now: u32 = unit_property("pinhole-record", "MainPID").parse().unwrap();
        if now != 0 && now != pid && unit_property("pinhole-record", "ActiveState") == "active" {
            break;
        }
        assert!(Instant::now() < deadline, "the recorder was not restarted");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(unit_property("pinhole-record", "NRestarts"), "1");
    step("recorder restarted");
    run(Command::new(LOADGEN).args(["--port", "40097", "--count", "2"]));
    // A clean stop drains the rings and publishes everything.
    std::thread::sleep(Duration::from_secs(1));
    systemctl(&["stop", "pinhole-record.service"]);
    step("recorder stopped");
    let journal = unit_journal("pinhole-record");
    assert_sandboxed(&journal);
    assert!(
        journal.contains("recovered events staged by an earlier run"),
        "{journal}"
    );
    let events = std::path::Path::new("/var/lib/pinhole/events");
    let recorded = rows(events);
    for port in ["40096", "40097"] {
        let n = recorded.iter().filter(|r| r["dst_port"] == port).count();
        assert_eq!(n, 2, "port {port}: {journal}");
    }

    // The enforcer: denies, reloads, writes its decisions.
    // A copy on a tmpfs the service sees (its /tmp is private; the checkout is on 9p).
    let exe = std::path::Path::new("/run/pinhole-probe");
    fs::copy(PROBE, exe).unwrap();
    fs::write("/etc/pinhole/policy.toml", one_port_policy(exe, 39171)).unwrap();
    let config = fs::read_to_string("/etc/pinhole/pinhole.toml").unwrap();
    let config = config.replace("mode = \"audit\"", "mode = \"enforce\"");
    fs::write("/etc/pinhole/pinhole.toml", config).unwrap();
    start("pinhole-enforce");
    step("enforcer started");
    let pid: u32 = unit_property("pinhole-enforce", "MainPID").parse().unwrap();
    assert_confined_as_the_unit_says("pinhole-enforce", pid);
    let (allowed, other) = ("tcp:127.0.0.1:39171", "tcp:127.0.0.1:39172");
    assert_eq!(probe(exe, &[allowed, other]), ["ECONNREFUSED", "EPERM"]);
    fs::write("/etc/pinhole/policy.toml", one_port_policy(exe, 39172)).unwrap();
    systemctl(&["reload", "pinhole-enforce.service"]);
    let deadline = Instant::now() + Duration::from_secs(4) * slowdown();
    while probe(exe, &[other]) != ["ECONNREFUSED"] {
        assert!(Instant::now() < deadline, "systemctl reload did not reload");
        std::thread::sleep(Duration::from_millis(500));
    }
    let status =
        String::from_utf8(run(Command::new("pinhole").args(["enforce", "status"])).stdout).unwrap();
    assert!(
        status.contains("sandbox:    landlock filesystem"),
        "{status}"
    );
    assert_eq!(unit_property("pinhole-enforce", "NRestarts"), "0");
    step("enforcer reloaded");
    systemctl(&["stop", "pinhole-enforce.service"]);
    step("enforcer stopped");
    assert_eq!(
        probe(exe, &[allowed]),
        ["ECONNREFUSED"],
        "fail-open after the stop"
    );
    let journal = unit_journal("pinhole-enforce");
    assert_sandboxed(&journal);
    let decisions = rows(std::path::Path::new("/var/lib/pinhole/decisions"));
    let denied: Vec<&str> = decisions
        .iter()
        .filter(|r| r["verdict"] == "denied")
        .map(|r| r["dst_port"].as_str())
        .collect();
    // Denied until the reload took effect (the wait above probes it), then allowed.
    assert!(
        !denied.is_empty() && denied.iter().all(|p| *p == "39172"),
        "{denied:?}\n{journal}"
    );
}

/// The journal says the sandbox's layers were applied (Landlock's TCP rules need Linux
/// 6.7: the guest's 6.1 has the filesystem rules only).
fn assert_sandboxed(journal: &str) {
    assert!(
        journal.contains("layers=landlock filesystem") && journal.contains("capabilities reduced"),
        "{journal}"
    );
}

/// The unit's messages in the journal since boot.
fn unit_journal(unit: &str) -> String {
    String::from_utf8(run(Command::new("journalctl").args(["-b", "-o", "cat", "-u", unit])).stdout)
        .unwrap()
}
