//! Helpers for the root integration tests: run the real `pinhole` binary, make real
//! connects from known binaries, and read the published Parquet back.

#![allow(dead_code)]

pub mod dns_server;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use arrow_cast::display::{ArrayFormatter, FormatOptions};
use sha2::{Digest, Sha256};

pub const PINHOLE: &str = env!("CARGO_BIN_EXE_pinhole");
pub const LOADGEN: &str = env!("CARGO_BIN_EXE_pinhole-loadgen");

/// Recorders see the whole machine: tests that check what is loaded run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn require_root() {
    // SAFETY: no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the integration tests load BPF programs and must run as root (see README: Tests)"
    );
}

/// `pinhole` run by `setpriv` as `user` and `group` holding only `caps` (setpriv's
/// syntax, `+bpf,+perfmon`) as ambient capabilities: a service's `User=` with
/// `AmbientCapabilities=`.
pub fn setpriv(who: (&str, &str), caps: &str) -> Command {
    setpriv_exec(who, caps, PINHOLE)
}

/// As `setpriv`, running `program`.
pub fn setpriv_exec((user, group): (&str, &str), caps: &str, program: &str) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args([
        &format!("--reuid={user}"),
        &format!("--regid={group}"),
        "--clear-groups",
        &format!("--inh-caps=-all,{caps}"),
        &format!("--ambient-caps=-all,{caps}"),
        &format!("--bounding-set=-all,{caps}"),
        "--",
        program,
    ]);
    cmd
}

/// A temporary directory `user` owns.
pub fn owned_by(user: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    run(Command::new("chown")
        .arg(format!("{user}:"))
        .arg(tmp.path()));
    tmp
}

/// While alive, `/run/pinhole` and `/sys/fs/bpf/pinhole` belong to `user`, as the
/// units make them (`RuntimeDirectory=`, and an `ExecStartPre=+install -d` for the
/// pins); dropped, they and what was made in them belong to root again, and a
/// directory made here goes if empty (what is left in it is the suite's to report).
pub struct ServiceDirs {
    made: Vec<&'static str>,
}

const SERVICE_DIRS: [&str; 2] = ["/run/pinhole", "/sys/fs/bpf/pinhole"];

impl ServiceDirs {
    pub fn owned_by(user: &str) -> ServiceDirs {
        let mut made = Vec::new();
        for d in SERVICE_DIRS {
            if !Path::new(d).exists() {
                fs::create_dir_all(d).unwrap();
                made.push(d);
            }
            run(Command::new("chown").arg(format!("{user}:")).arg(d));
        }
        ServiceDirs { made }
    }
}

impl Drop for ServiceDirs {
    fn drop(&mut self) {
        for d in SERVICE_DIRS {
            let _ = Command::new("chown").args(["-R", "root:root", d]).status();
        }
        for d in &self.made {
            let _ = fs::remove_dir(d);
        }
    }
}

/// The capabilities the README and the units give a service run as its own user.
pub const DOCUMENTED_CAPS: &str =
    "+bpf,+perfmon,+net_admin,+sys_admin,+sys_ptrace,+dac_read_search,+sys_nice";

/// The same set as a mask of /proc/PID/status (CAP_DAC_READ_SEARCH 2, CAP_NET_ADMIN 12,
/// CAP_SYS_PTRACE 19, CAP_SYS_ADMIN 21, CAP_SYS_NICE 23, CAP_PERFMON 38, CAP_BPF 39).
pub const DOCUMENTED_CAPS_MASK: u64 =
    (1 << 2) | (1 << 12) | (1 << 19) | (1 << 21) | (1 << 23) | (1 << 38) | (1 << 39);

/// `pinhole enforce reload POLICY`, which must succeed (its stderr shown if not).
pub fn reload_ok(policy: &Path) {
    let out = pinhole(["enforce".as_ref(), "reload".as_ref(), policy.as_os_str()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A policy in which `exe` (pinned by its hash and path) may connect over TCP to
/// 127.0.0.1:`port` only; other binaries are allowed.
pub fn one_port_policy(exe: &Path, port: u16) -> String {
    format!(
        "version = 1\n[defaults]\nunknown_binary = \"allow\"\n\n[[app]]\nname = \"probe\"\n\
         sha256 = \"{}\"\npaths = [\"{}\"]\nmode = \"enforce\"\n\n[[app.allow]]\nid = \"one\"\n\
         protocol = \"tcp\"\ndst = \"127.0.0.1\"\nports = {port}\n",
        sha256_of(exe),
        exe.display()
    )
}

/// A field of /proc/PID/task/TID/status for each thread of `pid`.
pub fn per_thread(pid: u32, field: &str) -> Vec<String> {
    let mut out = Vec::new();
    for t in fs::read_dir(format!("/proc/{pid}/task")).unwrap().flatten() {
        let status = fs::read_to_string(t.path().join("status")).unwrap_or_default();
        if let Some(v) = status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{field}:")))
        {
            out.push(v.trim().to_owned());
        }
    }
    out
}

/// A capability set (CapEff, CapBnd...) of each thread of `pid`.
pub fn caps_of(pid: u32, set: &str) -> Vec<u64> {
    per_thread(pid, set)
        .iter()
        .map(|h| u64::from_str_radix(h, 16).unwrap())
        .collect()
}

/// IDs of loaded BPF programs whose name starts with `prefix`.
pub fn loaded_programs(prefix: &str) -> BTreeSet<String> {
    let out = Command::new("bpftool")
        .args(["prog", "list"])
        .output()
        .expect("bpftool prog list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(&format!("name {prefix}")))
        .filter_map(|l| l.split(':').next().map(str::to_owned))
        .collect()
}

/// Programs loaded since `before` was taken. Not an equality with `before`: a program
/// of an earlier test may still be being freed (the kernel releases them
/// asynchronously) and leave the list meanwhile.
pub fn newly_loaded(prefix: &str, before: &BTreeSet<String>) -> Vec<String> {
    loaded_programs(prefix)
        .difference(before)
        .cloned()
        .collect()
}

/// Spawns a pinhole command with its log on a reader thread and returns once a log line
/// contains `ready`, with every line seen so far.
pub fn spawn_until(mut cmd: Command, ready: &str) -> (Child, mpsc::Receiver<String>, Vec<String>) {
    let mut child = cmd
        .env(
            "RUST_LOG",
            std::env::var("PINHOLE_TEST_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(30) * slowdown()) {
            Ok(line) => {
                let done = line.contains(ready);
                seen.push(line);
                if done {
                    return (child, rx, seen);
                }
            }
            Err(_) => {
                child.kill().ok();
                child.wait().ok();
                panic!("{cmd:?} did not start:\n{}", seen.join("\n"))
            }
        }
    }
}

/// A running `pinhole record`.
pub struct Recording {
    child: Child,
    pub out: PathBuf,
    stderr: mpsc::Receiver<String>,
    /// Lines printed before the recorder reported it was attached.
    startup_log: Vec<String>,
    programs_before: BTreeSet<String>,
    /// The public key of the trail this recording signs, checked at a clean stop.
    signed_by: Option<PathBuf>,
}

/// The suite's trail key pair, made once per test binary: every recording `start`
/// makes signs its trail with it, and `stop` verifies the trail (an honest trail must
/// verify, whatever the test did to the recorder).
pub fn suite_keys() -> &'static (PathBuf, PathBuf) {
    static KEYS: std::sync::OnceLock<(PathBuf, PathBuf)> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| {
        let keygen = |dir: &Path| {
            let pair = (dir.join("pinhole.key"), dir.join("pinhole.pub"));
            let made = pair.1.exists()
                || pinhole([
                    "trail".as_ref(),
                    "keygen".as_ref(),
                    "--out".as_ref(),
                    dir.as_os_str(),
                ])
                .status
                .success();
            made.then_some(pair)
        };
        // Under target/ (kept between runs, removed with it); a guest sees that read-only,
        // so it makes its own pair in its /tmp when the host has made none.
        keygen(&Path::new(env!("CARGO_TARGET_TMPDIR")).join("suite-keys")).unwrap_or_else(|| {
            let dir = tempfile::Builder::new()
                .prefix("pinhole-suite-keys")
                .tempdir()
                .unwrap()
                .keep();
            keygen(&dir).expect("pinhole trail keygen")
        })
    })
}

/// Runs `pinhole verify` on `out` with `public` and panics unless it says verified.
pub fn assert_trail_verifies(out: &Path, public: &Path) {
    let v = pinhole([
        "verify".as_ref(),
        out.as_os_str(),
        "--key".as_ref(),
        public.as_os_str(),
    ]);
    assert!(
        v.status.success(),
        "the honest trail {} does not verify:\n{}{}",
        out.display(),
        String::from_utf8_lossy(&v.stdout),
        String::from_utf8_lossy(&v.stderr)
    );
}

impl Recording {
    /// Starts recording into `out`, its trail signed with the suite's key (unless the
    /// test gives its own), and returns once the programs are attached.
    pub fn start(out: &Path, extra: &[&str]) -> Recording {
        if extra.contains(&"--signing-key") {
            return Self::start_via(Command::new(PINHOLE), out, extra);
        }
        let (private, public) = suite_keys();
        let mut args = extra.to_vec();
        args.extend(["--signing-key", private.to_str().unwrap()]);
        let mut r = Self::start_via(Command::new(PINHOLE), out, &args);
        r.signed_by = Some(public.clone());
        r
    }

    /// As `start`, under a descriptor limit (soft and hard) of `nofile`.
    pub fn start_with_nofile(nofile: u32, out: &Path, extra: &[&str]) -> Recording {
        let mut cmd = Command::new("prlimit");
        cmd.arg(format!("--nofile={nofile}")).arg("--").arg(PINHOLE);
        Self::start_via(cmd, out, extra)
    }

    /// As `start`, through `setpriv`.
    pub fn start_as(
        (user, group): (&str, &str),
        caps: &str,
        out: &Path,
        extra: &[&str],
    ) -> Recording {
        Self::start_via(setpriv((user, group), caps), out, extra)
    }

    /// As `start`, with `cmd` (a wrapper, its arguments and the binary) before `record`.
    pub fn start_via(mut cmd: Command, out: &Path, extra: &[&str]) -> Recording {
        let programs_before = loaded_programs("record_");
        cmd.arg("record").arg("--out").arg(out).args(extra);
        let (child, stderr, seen) = spawn_until(cmd, "attached; recording");
        Recording {
            child,
            out: out.to_owned(),
            stderr,
            startup_log: seen,
            programs_before,
            signed_by: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGINT, wait, and check that it left no program loaded and, when it signed its
    /// trail with the suite's key, that the trail verifies.
    pub fn stop(self) -> (ExitStatus, String) {
        self.stop_with(libc::SIGINT)
    }

    /// As `stop`, with another signal.
    pub fn stop_with(self, sig: i32) -> (ExitStatus, String) {
        let before = self.programs_before.clone();
        let (out, signed_by) = (self.out.clone(), self.signed_by.clone());
        let (status, log) = self.stop_leaving_programs(sig);
        if let Some(public) = signed_by {
            assert_trail_verifies(&out, &public);
        }
        let left: Vec<_> = loaded_programs("record_")
            .difference(&before)
            .cloned()
            .collect();
        assert!(left.is_empty(), "programs left loaded after stop: {left:?}");
        (status, log)
    }

    /// Signals `sig` and waits, without checking that the programs were unloaded
    /// (`--persist` leaves them attached on purpose).
    pub fn stop_leaving_programs(mut self, sig: i32) -> (ExitStatus, String) {
        // SAFETY: plain signal to our own child.
        unsafe { libc::kill(self.child.id() as i32, sig) };
        let status = self.child.wait().expect("wait for pinhole record");
        let log: Vec<String> = self
            .startup_log
            .drain(..)
            .chain(self.stderr.iter())
            .collect();
        (status, log.join("\n"))
    }

    pub fn kill9(mut self) -> String {
        self.child.kill().expect("SIGKILL");
        self.child.wait().unwrap();
        self.startup_log
            .drain(..)
            .chain(self.stderr.iter())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

pub type Row = BTreeMap<String, String>;

pub fn read_file(path: &Path) -> (Vec<RecordBatch>, BTreeMap<String, String>) {
    pinhole_recorder::readback::read_file(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every row of every published file, each column rendered as text (binary as hex).
pub fn rows(out: &Path) -> Vec<Row> {
    let mut rows = Vec::new();
    for path in pinhole_recorder::layout::published_files(out).unwrap() {
        for batch in read_file(&path).0 {
            let opts = FormatOptions::default().with_null("NULL");
            let schema = batch.schema();
            let fmts: Vec<_> = batch
                .columns()
                .iter()
                .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts).unwrap())
                .collect();
            for i in 0..batch.num_rows() {
                rows.push(
                    schema
                        .fields()
                        .iter()
                        .zip(&fmts)
                        .map(|(f, fmt)| (f.name().clone(), fmt.value(i).to_string()))
                        .collect(),
                );
            }
        }
    }
    rows
}

/// A binary copied to a fresh path, so its inode and hash are known to the test.
pub struct Copy {
    pub path: PathBuf,
    pub sha256: String,
    pub dev: u64,
    pub ino: u64,
}

pub fn fresh_copy(src: &Path, dir: &Path, name: &str) -> Copy {
    let path = dir.join(name);
    fs::copy(src, &path).unwrap();
    let bytes = fs::read(&path).unwrap();
    let meta = fs::metadata(&path).unwrap();
    Copy {
        sha256: hex::encode(Sha256::digest(&bytes)),
        dev: meta.dev(),
        ino: meta.ino(),
        path,
    }
}

/// How long after its last change a file's unchanged change time proves its bytes to
/// the recorder (src/identity/hash.rs, SETTLED_NS), with a margin.
pub const SETTLE: Duration = Duration::from_millis(2_200);

/// A fresh copy that has settled: a process that runs it and exits before the
/// recorder hashes it still gets its hash (fresh and unsettled, it gets `modified`).
pub fn settled_copy(src: &Path, dir: &Path, name: &str) -> Copy {
    let c = fresh_copy(src, dir, name);
    std::thread::sleep(SETTLE);
    c
}

pub fn sha256_of(path: &Path) -> String {
    hex::encode(Sha256::digest(fs::read(path).unwrap()))
}

/// A copy of the probe at `dir/probe` (made once) and a policy naming it app `name` in
/// enforce mode, allowed TCP to 127.0.0.1:`port` only (unknown binaries allowed).
pub fn one_app_policy(dir: &Path, name: &str, port: u16) -> (PathBuf, PathBuf) {
    let exe = dir.join("probe");
    if !exe.exists() {
        fs::copy(PROBE, &exe).unwrap();
    }
    let policy = dir.join(format!("policy-{port}.toml"));
    fs::write(
        &policy,
        format!(
            "version = 1\n[defaults]\nunknown_binary = \"allow\"\n\n[[app]]\nname = \"{name}\"\n\
             sha256 = \"{}\"\npaths = [\"{}\"]\nmode = \"enforce\"\n\n[[app.allow]]\nid = \"p\"\n\
             protocol = \"tcp\"\ndst = \"127.0.0.1\"\nports = {port}\n",
            sha256_of(&exe),
            exe.display()
        ),
    )
    .unwrap();
    (exe, policy)
}

/// Runs `pinhole` with `args` to completion and returns what it printed and its status.
pub fn pinhole<I, S>(args: I) -> std::process::Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    Command::new(PINHOLE)
        .args(args)
        .output()
        .expect("spawn pinhole")
}

/// Runs `cmd` to completion, panicking with its output on failure.
pub fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Inode number of a namespace or cgroup path, as the kernel reports ids.
pub fn inode_of(path: &Path) -> u64 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .ino()
}

/// The cgroup id of this process (the inode of its cgroup-v2 directory).
pub fn own_cgroup_id() -> u64 {
    let rel = fs::read_to_string("/proc/self/cgroup")
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("0::")
                .map(|p| p.trim_start_matches('/').to_owned())
        })
        .expect("a cgroup-v2 entry in /proc/self/cgroup");
    inode_of(&cgroup2_mount().join(rel))
}

pub fn rows_of<'a>(rows: &'a [Row], exe: &Path) -> Vec<&'a Row> {
    let p = exe.to_string_lossy();
    rows.iter().filter(|r| r["exe_path"] == p).collect()
}

/// The cgroup-v2 mount point.
pub fn cgroup2_mount() -> PathBuf {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .find(|l| {
            l.split(" - ")
                .nth(1)
                .is_some_and(|p| p.starts_with("cgroup2 "))
        })
        .and_then(|l| l.split_whitespace().nth(4).map(PathBuf::from))
        .expect("a cgroup2 mount")
}

/// A named network namespace with only loopback, made by a test, removed when dropped.
pub struct TestNetns {
    pub name: String,
}

impl TestNetns {
    pub fn new(name: &str) -> TestNetns {
        let name = format!("{name}-{}", std::process::id());
        let ip = |args: &[&str]| {
            let st = Command::new("ip").args(args).status().expect("running ip");
            assert!(st.success(), "ip {args:?}");
        };
        ip(&["netns", "add", &name]);
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        TestNetns { name }
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// Runs `probe` with `args` in `cgroup` and in this namespace; its answers.
    pub fn probe(&self, cgroup: &TestCgroup, probe: &Path, args: &[String]) -> Vec<String> {
        self.probe_as(cgroup, (0, 0), probe, args)
    }

    /// `probe` as user `uid` with primary group `gid` (no supplementary groups).
    pub fn probe_as(
        &self,
        cgroup: &TestCgroup,
        (uid, gid): (u32, u32),
        probe: &Path,
        args: &[String],
    ) -> Vec<String> {
        let mut cmd = cgroup.command(Path::new("ip"));
        cmd.args(["netns", "exec", &self.name]);
        if (uid, gid) != (0, 0) {
            cmd.args(["setpriv", "--clear-groups"])
                .arg(format!("--reuid={uid}"))
                .arg(format!("--regid={gid}"));
        }
        cmd.arg(probe).args(args);
        answers(run(&mut cmd), args.len())
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A child cgroup of the cgroup-v2 root made by a test, removed when dropped.
pub struct TestCgroup {
    pub path: PathBuf,
}

impl TestCgroup {
    pub fn new(name: &str) -> TestCgroup {
        let path = cgroup2_mount().join(format!("{name}-{}", std::process::id()));
        fs::create_dir(&path).unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        TestCgroup { path }
    }

    pub fn id(&self) -> u64 {
        inode_of(&self.path)
    }

    /// A cgroup below this one; drop it before its parent.
    pub fn child(&self, name: &str) -> TestCgroup {
        let path = self.path.join(name);
        fs::create_dir(&path).unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        TestCgroup { path }
    }

    /// A command that moves itself into this cgroup, then execs `program`.
    pub fn command(&self, program: &Path) -> Command {
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg("echo $$ > \"$1/cgroup.procs\" && shift && exec \"$@\"")
            .arg("sh")
            .arg(&self.path)
            .arg(program);
        c
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        // Processes have exited by now; an empty cgroup can be removed.
        for _ in 0..50 {
            if fs::remove_dir(&self.path).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("could not remove test cgroup {}", self.path.display());
    }
}

pub const PROBE: &str = env!("CARGO_BIN_EXE_pinhole-probe");

/// How much slower than this machine the tests run (`PINHOLE_TEST_SLOWDOWN`, set by the
/// QEMU guest of tests/vm, whose software CPU is about 25 times slower): deadlines that
/// wait for a condition are stretched by it, never shortened.
pub fn slowdown() -> u32 {
    std::env::var("PINHOLE_TEST_SLOWDOWN")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
        .max(1)
}

/// The enforcer backend the suite runs with (`PINHOLE_TEST_BACKEND=lsm|cgroup`; the
/// guest runs the enforcer's tests with `lsm`), None for the enforcer's own choice.
pub fn test_backend() -> Option<String> {
    std::env::var("PINHOLE_TEST_BACKEND")
        .ok()
        .filter(|b| !b.is_empty())
}

/// Whether the enforcer's LSM backend can run here: bpf among the active LSMs (the
/// enforcer mounts securityfs where it is missing) and programs of type lsm load.
pub fn lsm_backend_available() -> bool {
    let listed = fs::read_to_string("/sys/kernel/security/lsm")
        .is_ok_and(|l| l.trim().split(',').any(|x| x == "bpf"));
    listed && libbpf_rs::ProgramType::Lsm.is_supported().unwrap_or(false)
}

/// A running `pinhole enforce`, always confined to a cgroup the test made.
pub struct Enforcer {
    child: Option<Child>,
    stderr: mpsc::Receiver<String>,
    log: Vec<String>,
    /// The trail (`--out`) it signs with the suite's key, and the public key: checked
    /// at a clean stop.
    signed: Option<(PathBuf, PathBuf)>,
}

impl Enforcer {
    /// Starts enforcing `policy` in `cgroup` and returns once it reports enforcing; a
    /// trail it writes (`--out`) is signed with the suite's key unless the test gives
    /// its own.
    pub fn start(policy: &Path, cgroup: &TestCgroup, extra: &[&str]) -> Enforcer {
        let out = extra
            .iter()
            .position(|a| *a == "--out")
            .and_then(|i| extra.get(i + 1));
        let Some(out) = out.filter(|_| !extra.contains(&"--signing-key")) else {
            return Self::start_via(Command::new(PINHOLE), policy, cgroup, extra);
        };
        let (private, public) = suite_keys();
        let mut args = extra.to_vec();
        args.extend(["--signing-key", private.to_str().unwrap()]);
        let mut e = Self::start_via(Command::new(PINHOLE), policy, cgroup, &args);
        e.signed = Some((PathBuf::from(out), public.clone()));
        e
    }

    /// As `start`, through `setpriv` as `user` and `group` holding only `caps`
    /// (ambient), as `Recording::start_as`.
    pub fn start_as(
        who: (&str, &str),
        caps: &str,
        policy: &Path,
        cgroup: &TestCgroup,
        extra: &[&str],
    ) -> Enforcer {
        Self::start_via(setpriv(who, caps), policy, cgroup, extra)
    }

    fn start_via(mut cmd: Command, policy: &Path, cgroup: &TestCgroup, extra: &[&str]) -> Enforcer {
        cmd.arg("enforce")
            .arg(policy)
            .arg("--cgroup")
            .arg(&cgroup.path)
            // Programs attach to the test's cgroup, never to the host's root.
            .arg("--attach-cgroup")
            .arg(&cgroup.path)
            .args(extra);
        if let Some(b) = test_backend().filter(|_| !extra.contains(&"--backend")) {
            cmd.arg("--backend").arg(b);
        }
        let (child, stderr, log) = spawn_until(cmd, " enforcing ");
        Enforcer {
            child: Some(child),
            stderr,
            log,
            signed: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// SIGINT, wait; returns the exit status and the whole log. A trail it signed with
    /// the suite's key must verify.
    pub fn stop(mut self) -> (ExitStatus, String) {
        let mut child = self.child.take().unwrap();
        // SAFETY: plain signal to our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        let status = child.wait().expect("wait for pinhole enforce");
        self.log.extend(self.stderr.iter());
        if let Some((out, public)) = &self.signed {
            assert_trail_verifies(out, public);
        }
        (status, self.log.join("\n"))
    }

    /// SIGKILL: what a crash looks like.
    pub fn kill9(mut self) -> String {
        let mut child = self.child.take().unwrap();
        child.kill().expect("SIGKILL");
        child.wait().unwrap();
        self.log.extend(self.stderr.iter());
        self.log.join("\n")
    }
}

impl Drop for Enforcer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().ok();
            c.wait().ok();
            // A test failed while this enforcer ran: its log says what it saw.
            self.log.extend(self.stderr.try_iter());
            eprintln!("pinhole enforce log:\n{}", self.log.join("\n"));
        }
    }
}

/// Runs pinhole-probe (or a copy of it) in `cgroup`, inside a fresh network namespace
/// with only loopback, and returns its answer per probe.
pub fn probe_isolated(cgroup: &TestCgroup, probe: &Path, probes: &[String]) -> Vec<String> {
    probe_isolated_as(cgroup, (0, 0), probe, probes)
}

/// `probe_isolated` with the probe running as user `uid` and primary group `gid` (no
/// supplementary groups); the probe must be reachable for that user.
pub fn probe_isolated_as(
    cgroup: &TestCgroup,
    (uid, gid): (u32, u32),
    probe: &Path,
    probes: &[String],
) -> Vec<String> {
    let script =
        "ip link set lo up; echo '0 2147483647' > /proc/sys/net/ipv4/ping_group_range; exec \"$@\"";
    let mut cmd = cgroup.command(Path::new("unshare"));
    cmd.args(["-n", "sh", "-c", script, "sh"]);
    if (uid, gid) != (0, 0) {
        cmd.args(["setpriv", "--clear-groups"])
            .arg(format!("--reuid={uid}"))
            .arg(format!("--regid={gid}"));
    }
    cmd.arg(probe).args(probes);
    answers(run(&mut cmd), probes.len())
}

/// Runs a probe binary in `cgroup` in the host's network namespace (loopback targets).
pub fn probe_in(cgroup: &TestCgroup, probe: &Path, probes: &[&str]) -> Vec<String> {
    let mut cmd = cgroup.command(probe);
    cmd.args(probes);
    answers(run(&mut cmd), probes.len())
}

fn answers(out: std::process::Output, n: usize) -> Vec<String> {
    let text = String::from_utf8_lossy(&out.stdout);
    let got: Vec<String> = text
        .lines()
        .filter_map(|l| l.rsplit_once(' ').map(|(_, a)| a.to_owned()))
        .collect();
    assert_eq!(got.len(), n, "probe output: {text}");
    got
}

/// Makes sure nothing an enforcer test pinned is left behind.
pub fn assert_nothing_pinned() {
    let pins = Path::new("/sys/fs/bpf/pinhole/enforce");
    let left: Vec<_> = fs::read_dir(pins)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "pins left behind: {left:?}");
}

/// Enforcer programs still loaded after up to 3 s (the kernel frees programs after an
/// RCU grace period once their last link or pin is gone).
pub fn enforcer_programs_left() -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(3) * slowdown();
    loop {
        let left: Vec<String> = loaded_programs("enforce_").into_iter().collect();
        if left.is_empty() || Instant::now() > deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// GET /metrics; retried while the listener comes up.
pub fn scrape(port: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(10) * slowdown();
    loop {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .unwrap();
            let mut text = String::new();
            s.read_to_string(&mut text).unwrap();
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
            return body.to_owned();
        }
        assert!(Instant::now() < deadline, "nothing listens on port {port}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
