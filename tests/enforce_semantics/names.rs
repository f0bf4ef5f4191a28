//! The name suites of the shared semantics, in the kernel: the suite's DNS answers are
//! served by a DNS server in a network namespace the test makes (loopback only) and
//! asked for by the receiving binaries; the events are real connects from the same
//! binaries, at the suite's times after the answers (so TTL expiry is real time). On a
//! slow (emulated) CPU, whose probes take longer than the slack, the suite is played
//! without waiting, and the events that test an answer's lifetime are skipped out loud.

use std::collections::BTreeMap;
use std::fs;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::cases::{AnswerCase, Case, Suite};
use crate::common::dns_server::{Answer, Chain, DnsServer};
use crate::common::*;
use crate::{check_rows, pin_apps, probe_arg, probe_copy};

pub const DNS: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 10, 53)),
    53,
);

/// Answers at one suite time are all asked for within this; events at time t run
/// this long after the answers of time t began, so that whether an answer still
/// counts at an event is decided as in the suite: at t - t_answer whole seconds plus
/// less than this, never at a boundary.
const SLACK: Duration = Duration::from_millis(500);

enum Step<'a> {
    Answer(&'a AnswerCase),
    Event(&'a Case),
}

/// Runs one name suite; returns how many events were checked and how many skipped.
pub fn check_suite(s: usize, suite: &Suite) -> (usize, usize) {
    let compressed = slowdown() > 1;
    let dir = tempfile::tempdir().unwrap();
    // Events may run as other users (scoped rules).
    fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let (policy, binaries) = pin_apps(&suite.policy, dir.path(), true);
    let (unknown, _) = probe_copy(dir.path(), "unknown", 0xee);
    let (resolver, _) = probe_copy(dir.path(), "resolver", 0xdd);
    let policy_path = dir.path().join("policy.toml");
    fs::write(&policy_path, &policy).unwrap();
    let exe_of = |sha: &str| -> PathBuf {
        match sha {
            "host" => resolver.clone(),
            s => binaries.get(s).unwrap_or(&unknown).clone(),
        }
    };

    let ns = TestNetns::new(&format!("pinhole-sem{s}"));
    let mut table: BTreeMap<String, Vec<Chain>> = BTreeMap::new();
    for a in &suite.answers {
        table.entry(a.names[0].clone()).or_default().push(Chain {
            cnames: a.names[1..].to_vec(),
            addrs: a.addrs.iter().map(|x| x.parse().unwrap()).collect(),
            ttl: a.ttl,
        });
    }
    let served = table
        .iter()
        .map(|(n, c)| (n.as_str(), Answer::Chains(c.clone())))
        .collect();
    let _server = DnsServer::start_in(&ns.path(), DNS, served);
    let out = dir.path().join("trail");
    let cg = TestCgroup::new(&format!("pinhole-semn{s}"));
    let enforcer = Enforcer::start(
        &policy_path,
        &cg,
        &[
            "--out",
            out.to_str().unwrap(),
            "--host-resolver",
            resolver.to_str().unwrap(),
        ],
    );

    let t0 = suite.answers.iter().map(|a| a.t).min().unwrap();
    let mut steps: Vec<(i64, u8, Step)> = Vec::new();
    steps.extend(suite.answers.iter().map(|a| (a.t, 0, Step::Answer(a))));
    steps.extend(suite.events.iter().map(|c| (c.t, 1, Step::Event(c))));
    steps.sort_by_key(|(t, order, _)| (*t, *order));
    let mut ran: BTreeMap<PathBuf, Vec<&Case>> = BTreeMap::new();
    let mut skipped = 0;
    let mut last_answer_t = None;
    let base = Instant::now();
    for (t, _, step) in &steps {
        // Events before the first answer cannot depend on it: run at once.
        let at = base + Duration::from_secs((t - t0).max(0) as u64);
        match step {
            Step::Answer(a) if compressed => {
                last_answer_t = Some(a.t);
                ask(&ns, &cg, &exe_of(&a.receiver), a, &suite.name);
            }
            Step::Answer(a) => {
                wait_until(at);
                ask(&ns, &cg, &exe_of(&a.receiver), a, &suite.name);
                assert!(
                    Instant::now() < at + SLACK,
                    "{}: asking took too long for the suite's timing",
                    suite.name
                );
            }
            Step::Event(c) if compressed && last_answer_t.is_some_and(|a| t - a > 1) => {
                eprintln!(
                    "skipped: {} (t = {t}): {} tests an answer's lifetime in real seconds, \
                     and this CPU is {}x slower",
                    suite.name,
                    probe_arg(c),
                    slowdown()
                );
                skipped += 1;
            }
            Step::Event(c) => {
                if *t >= t0 && !compressed {
                    wait_until(at + SLACK);
                }
                let exe = exe_of(&c.sha256);
                let got = ns.probe_as(&cg, (c.uid, c.gid), &exe, &[probe_arg(c)]);
                assert_eq!(
                    got[0] == "EPERM",
                    c.verdict == "denied",
                    "{} (t = {t}): {} from {} answered {}, expected {}",
                    suite.name,
                    probe_arg(c),
                    exe.display(),
                    got[0],
                    c.verdict
                );
                ran.entry(exe).or_default().push(c);
            }
        }
    }
    let (status, log) = enforcer.stop();
    assert!(status.success(), "{log}");
    let rows = rows(&out);
    let mut checked = 0;
    for (exe, events) in &ran {
        let mut mine: Vec<&Row> = rows_of(&rows, exe)
            .into_iter()
            .filter(|r| r["dst_port"] != "53")
            .collect();
        mine.sort_by(|a, b| a["ts_ns"].cmp(&b["ts_ns"]));
        assert_eq!(
            mine.len(),
            events.len(),
            "{}: rows of {}",
            suite.name,
            exe.display()
        );
        check_rows(&suite.name, events, &mine);
        checked += events.len();
    }
    (checked, skipped)
}

/// Has `exe` ask the test's DNS server for the answer's first name.
fn ask(ns: &TestNetns, cg: &TestCgroup, exe: &std::path::Path, a: &AnswerCase, suite: &str) {
    let ask = format!("dns:{}@{DNS}", a.names[0]);
    let got = ns.probe(cg, exe, std::slice::from_ref(&ask));
    assert!(
        !got[0].starts_with('E'),
        "{suite}: {ask} from {} answered {}",
        exe.display(),
        got[0]
    );
}

fn wait_until(at: Instant) {
    let now = Instant::now();
    if at > now {
        std::thread::sleep(at - now);
    }
}
