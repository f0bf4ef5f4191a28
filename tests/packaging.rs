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
