//! The full loop, for real: record real workloads (Python HTTP over IPv4 and IPv6, a
//! UDP query, curl) in a test cgroup, generate a policy from the recording, enforce it
//! in that cgroup, and check that the workloads still work, that what the policy does
//! not allow is refused with EPERM, and that every decision is in the audit trail.
//! Then --persist: enforcement survives kill -9 until `pinhole enforce stop`.

mod common;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Debian's interpreter (setup.sh installs it), whatever else is first on PATH.
const PYTHON: &str = "/usr/bin/python3";

/// A server outside the test cgroup (servers are not what is being enforced).
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_listening(addr: &str) {
    let deadline = Instant::now() + Duration::from_secs(10) * slowdown();
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "{addr} never listened");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn http_server(bind: &str, port: u16, dir: &Path) -> Server {
    let child = Command::new(PYTHON)
        .args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            bind,
            "--directory",
        ])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr = if bind.contains(':') {
        format!("[{bind}]:{port}")
    } else {
        format!("{bind}:{port}")
    };
    wait_listening(&addr);
    Server(child)
}

fn udp_server(port: u16) -> Server {
    let code = format!(
        "import socket\ns=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.bind(('127.0.0.1',{port}))\n\
         while True:\n    d,a=s.recvfrom(512)\n    s.sendto(b'answer:'+d,a)\n"
    );
    let child = Command::new(PYTHON).args(["-c", &code]).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(300) * slowdown());
    Server(child)
}

struct Ports {
    http4: u16,
    http6: u16,
    udp: u16,
}

/// The workloads: each returns whether it succeeded.
fn workloads(cg: &TestCgroup, p: &Ports, curl: &Path) -> Vec<(&'static str, bool)> {
    let py = |code: String| {
        cg.command(Path::new(PYTHON))
            .args(["-c", &code])
            .output()
            .unwrap()
    };
    let http4 = py(format!(
        "import urllib.request; urllib.request.urlopen('http://127.0.0.1:{}/', timeout=5).read()",
        p.http4
    ));
    let http6 = py(format!(
        "import urllib.request; urllib.request.urlopen('http://[::1]:{}/', timeout=5).read()",
        p.http6
    ));
    let udp = py(format!(
        "import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(5); \
         s.sendto(b'q', ('127.0.0.1', {})); assert s.recvfrom(512)[0] == b'answer:q'",
        p.udp
    ));
    let curl = cg
        .command(curl)
        .args(["-sS", "--max-time", "5", "-o", "/dev/null"])
        .arg(format!("http://127.0.0.1:{}/", p.http4))
        .output()
        .unwrap();
    vec![
        ("python http ipv4", http4.status.success()),
        ("python http ipv6", http6.status.success()),
        ("python udp query", udp.status.success()),
        ("curl", curl.status.success()),
    ]
}

/// The errno a Python connect to 127.0.0.1:port gets in the cgroup ("ok" if none).
fn python_connect(cg: &TestCgroup, port: u16) -> String {
    let code = format!(
        "import socket, errno\ns=socket.socket()\ntry:\n    s.connect(('127.0.0.1',{port})); print('ok')\n\
         except OSError as e:\n    print(errno.errorcode[e.errno])"
    );
    let out = run(cg.command(Path::new(PYTHON)).args(["-c", &code]));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn flip_last_byte(src: &Path, dst: &Path) {
    let mut bytes = std::fs::read(src).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(dst, &bytes).unwrap();
    std::fs::set_permissions(dst, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
}

fn curl_path() -> PathBuf {
    std::fs::canonicalize("/usr/bin/curl").expect("curl is installed by setup.sh test")
}

#[test]
fn record_generate_enforce_and_audit_the_full_loop() {
    require_root();
    let _guard = serial();
    let dir = tempfile::tempdir().unwrap();
    let www = dir.path().join("www");
    std::fs::create_dir(&www).unwrap();
    std::fs::write(www.join("index.html"), "hello").unwrap();
    let ports = Ports {
        http4: free_port(),
        http6: free_port(),
        udp: free_port(),
    };
    let _servers = [
        http_server("127.0.0.1", ports.http4, &www),
        http_server("::1", ports.http6, &www),
        udp_server(ports.udp),
    ];
    let curl = curl_path();
    let cg = TestCgroup::new("pinhole-loop");

    // 1. Learn.
    let learned = dir.path().join("learned");
    let rec = Recording::start(&learned, &["--cgroup", cg.path.to_str().unwrap()]);
    for _ in 0..3 {
        for (name, ok) in workloads(&cg, &ports, &curl) {
            assert!(ok, "{name} failed while recording");
        }
    }
    let (status, log) = rec.stop();
    assert!(status.success(), "{log}");

    // 2. Generate (unknown binaries denied, so a changed binary is visibly refused).
    let policy = dir.path().join("policy.toml");
    let out = pinhole([
        "policy",
        "generate",
        learned.to_str().unwrap(),
        "-o",
        policy.to_str().unwrap(),
        "--unknown-binary",
        "deny",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&policy).unwrap();
    let python = std::fs::canonicalize("/usr/bin/python3").unwrap();
    assert!(
        text.contains(&sha256_of(&python)),
        "python3 pinned:\n{text}"
    );
    assert!(text.contains(&sha256_of(&curl)), "curl pinned:\n{text}");

    // 3. Enforce in the same cgroup: the workloads still work.
    let trail = dir.path().join("trail");
    let enforcer = Enforcer::start(&policy, &cg, &["--out", trail.to_str().unwrap()]);
    for (name, ok) in workloads(&cg, &ports, &curl) {
        assert!(ok, "{name} failed under enforcement");
    }

    // 4. What the policy does not allow.
    let closed = free_port();
    assert_eq!(
        python_connect(&cg, closed),
        "EPERM",
        "new destination of an allowed binary"
    );
    let modified = dir.path().join("curl-modified");
    flip_last_byte(&curl, &modified);
    let m = cg
        .command(&modified)
        .args(["-sS", "--max-time", "5", "-o", "/dev/null"])
        .arg(format!("http://127.0.0.1:{}/", ports.http4))
        .output()
        .unwrap();
    assert!(
        !m.status.success(),
        "a one-byte-changed curl is an unknown binary, denied"
    );
    let copy = dir.path().join("curl-copy");
    std::fs::copy(&curl, &copy).unwrap();
    let c = cg
        .command(&copy)
        .args(["-sS", "--max-time", "5", "-o", "/dev/null"])
        .arg(format!("http://127.0.0.1:{}/", ports.http4))
        .output()
        .unwrap();
    assert!(
        c.status.success(),
        "curl copied to another path keeps its rules: {}",
        String::from_utf8_lossy(&c.stderr)
    );
    let raw = run(cg.command(Path::new(PYTHON)).args([
        "-c",
        "import socket\ntry:\n    socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP); print('ok')\n\
         except PermissionError: print('EPERM')",
    ]));
    assert_eq!(
        String::from_utf8_lossy(&raw.stdout).trim(),
        "EPERM",
        "raw socket"
    );

    // A packet socket sends frames past every IP hook: only the LSM backend sees it.
    let lsm = test_backend().as_deref() == Some("lsm");
    let packet = run(cg.command(Path::new(PYTHON)).args([
        "-c",
        "import socket\ntry:\n    socket.socket(socket.AF_PACKET, socket.SOCK_RAW); print('ok')\n\
         except PermissionError: print('EPERM')",
    ]));
    assert_eq!(
        String::from_utf8_lossy(&packet.stdout).trim(),
        if lsm { "EPERM" } else { "ok" },
        "packet socket"
    );

    let status = pinhole(["enforce", "status"]);
    let status_text = String::from_utf8_lossy(&status.stdout);
    assert!(status_text.contains("running (pid"), "{status_text}");
    let backend_line = if lsm {
        "backend:    lsm ("
    } else {
        "backend:    cgroup ("
    };
    assert!(status_text.contains(backend_line), "{status_text}");
    let (st, log) = enforcer.stop();
    assert!(st.success(), "{log}");

    // 5. Every decision is in the trail, with its verdict, rule and app.
    let rows = rows(&trail);
    let py_name = |r: &Row| r["exe_sha256"] == sha256_of(&python);
    let allowed_py: Vec<&Row> = rows
        .iter()
        .filter(|r| py_name(r) && r["verdict"] == "allowed")
        .collect();
    assert!(allowed_py.len() >= 3, "python's allowed connects recorded");
    assert!(allowed_py
        .iter()
        .all(|r| r["rule_id"] != "NULL" && r["app"] != "NULL"));
    let closed_rows: Vec<&Row> = rows
        .iter()
        .filter(|r| r["dst_port"] == closed.to_string())
        .collect();
    assert_eq!(closed_rows.len(), 1);
    assert_eq!(closed_rows[0]["verdict"], "denied");
    assert_eq!(closed_rows[0]["rule_id"], "NULL");
    assert_ne!(closed_rows[0]["app"], "NULL", "denied as the python app");
    let modified_rows = rows_of(&rows, &modified);
    assert!(!modified_rows.is_empty());
    assert!(modified_rows
        .iter()
        .all(|r| r["verdict"] == "denied" && r["app"] == "NULL"));
    let copy_rows = rows_of(&rows, &copy);
    assert!(!copy_rows.is_empty());
    assert!(copy_rows
        .iter()
        .all(|r| r["verdict"] == "allowed" && r["app"] != "NULL" && r["rule_id"] != "NULL"));
    let raw_rows: Vec<&Row> = rows.iter().filter(|r| r["hook"] == "sock_create").collect();
    assert_eq!(raw_rows.len(), 1);
    assert_eq!(raw_rows[0]["verdict"], "denied");
    assert_eq!(raw_rows[0]["protocol"], "icmp");
    let packet_rows: Vec<&Row> = rows
        .iter()
        .filter(|r| r["hook"] == "packet_socket")
        .collect();
    assert_eq!(packet_rows.len(), usize::from(lsm), "{packet_rows:?}");
    if lsm {
        assert_eq!(packet_rows[0]["verdict"], "denied");
        assert_ne!(packet_rows[0]["app"], "NULL", "refused as the python app");
    }

    // 6. --persist: enforcement outlives the process, until `stop`.
    let enforcer = Enforcer::start(&policy, &cg, &["--persist"]);
    let persisted = enforcer.kill9();
    assert!(persisted.contains(" enforcing "), "{persisted}");
    assert_eq!(
        python_connect(&cg, closed),
        "EPERM",
        "still enforced after kill -9"
    );
    for (name, ok) in workloads(&cg, &ports, &curl) {
        assert!(ok, "{name} failed under the persisted policy");
    }
    let status = pinhole(["enforce", "status"]);
    assert!(String::from_utf8_lossy(&status.stdout).contains("persisted"));
    let stop = pinhole(["enforce", "stop"]);
    assert!(
        stop.status.success(),
        "{}",
        String::from_utf8_lossy(&stop.stderr)
    );
    assert_eq!(
        python_connect(&cg, closed),
        "ECONNREFUSED",
        "nothing enforced after stop"
    );
    assert_nothing_pinned();
    assert_eq!(
        enforcer_programs_left(),
        Vec::<String>::new(),
        "programs left after stop"
    );
}
