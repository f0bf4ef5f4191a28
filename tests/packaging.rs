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
        assert!(text.contains("CapabilityBoundingSet=CAP_BPF"), "{name}");
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
