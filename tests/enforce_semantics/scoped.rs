//! What scoped cases need in the kernel: the suite's cgroups made below the test's
//! own (a policy's "/web" is "<test cgroup>/web"), and its seconds played in real time
//! (a policy's expiry moved to the same clock), so that expiry is seen in the kernel
//! without a reload. On a slow (emulated) CPU a suite second lasts longer.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use super::cases::Case;
use super::common::{cgroup2_mount, slowdown, Row, TestCgroup};

/// How long after the policy is written its second 0 begins: the enforcer starts first.
const START_MARGIN: Duration = Duration::from_secs(5);

/// How long a suite second lasts: one, or half the CPU's slowdown, so that the probes
/// of one suite second still run within it (expiry is decided at whole seconds).
fn suite_second() -> Duration {
    Duration::from_millis(1000 * u64::from(slowdown().div_ceil(2)))
}

pub struct Setup<'c> {
    /// The policy with cgroups and expiries made real.
    pub policy: String,
    own: &'c TestCgroup,
    /// The test cgroup's path as policies name it.
    rel: String,
    /// Made shallow first; removed deepest first.
    children: Vec<(String, TestCgroup)>,
    /// Second 0 of the suite on the wall clock, for suites that keep time.
    start: Option<SystemTime>,
    /// The length of a suite second.
    second: Duration,
    /// The suite seconds at which an expiry changes verdicts.
    boundaries: Vec<i64>,
    scoped: bool,
}

fn rfc3339(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl<'c> Setup<'c> {
    pub fn new(own: &'c TestCgroup, policy: &str, events: &[Case]) -> Self {
        let rel = format!(
            "/{}",
            own.path.strip_prefix(cgroup2_mount()).unwrap().display()
        );
        let timed = policy.contains("\nexpires = ") || events.iter().any(|c| c.t != 0);
        let second = suite_second();
        // The enforcer's start is slower on a slow CPU too (6 to 18 s in the 25x guest,
        // against 1 s here), though not by all of it; a late start shows as a probe run
        // past the next expiry (`assert_before_next_boundary`).
        let margin = START_MARGIN * slowdown().min(6);
        let start = timed.then(|| SystemTime::now() + margin);
        let mut out = String::new();
        let mut boundaries = Vec::new();
        for line in policy.lines() {
            let value = |key: &str| {
                line.strip_prefix(key)
                    .and_then(|v| v.strip_prefix(" = \""))
                    .and_then(|v| v.strip_suffix('"'))
            };
            if let Some(path) = value("cgroup") {
                out += &format!("cgroup = \"{rel}{}\"\n", path.trim_end_matches('/'));
            } else if let (Some(at), Some(start)) = (value("expires"), start) {
                let secs = chrono::DateTime::parse_from_rfc3339(at)
                    .unwrap()
                    .timestamp();
                boundaries.push(secs);
                let real = start + second * secs as u32;
                out += &format!("expires = \"{}\"\n", rfc3339(real));
            } else {
                out += line;
                out.push('\n');
            }
        }
        let mut wanted: Vec<&str> = Vec::new();
        for c in events.iter().filter(|c| !c.cgroup.is_empty()) {
            let mut at = 0;
            while let Some(i) = c.cgroup[at + 1..].find('/') {
                wanted.push(&c.cgroup[..at + 1 + i]);
                at += 1 + i;
            }
            wanted.push(&c.cgroup);
        }
        wanted.sort_by_key(|p| (p.matches('/').count(), *p));
        wanted.dedup();
        let children = wanted
            .into_iter()
            .map(|p| (p.to_owned(), own.child(p.trim_start_matches('/'))))
            .collect();
        let scoped = ["uids = ", "gids = ", "cgroup = ", "expires = "]
            .iter()
            .any(|k| policy.contains(&format!("\n{k}")));
        Setup {
            policy: out,
            own,
            rel,
            children,
            start,
            second,
            boundaries,
            scoped,
        }
    }

    /// The cgroup a case runs in.
    pub fn cgroup(&self, c: &Case) -> &TestCgroup {
        self.children
            .iter()
            .find(|(p, _)| *p == c.cgroup)
            .map_or(self.own, |(_, g)| g)
    }

    /// Sleeps until second `t` of the suite (no-op for suites without time).
    pub fn wait_for(&self, t: i64) {
        let Some(start) = self.start else {
            return;
        };
        let at = start + self.second * t as u32;
        if let Ok(wait) = at.duration_since(SystemTime::now()) {
            std::thread::sleep(wait);
        }
        self.assert_before_next_boundary(t);
    }

    /// An event of second `t` may be decided any time before the next second at which an
    /// expiry changes verdicts: fails if that second has begun (the enforcer's start or
    /// earlier probes took too long for the suite's clock).
    pub fn assert_before_next_boundary(&self, t: i64) {
        let (Some(start), Some(next)) =
            (self.start, self.boundaries.iter().filter(|b| **b > t).min())
        else {
            return;
        };
        let deadline = start + self.second * *next as u32;
        assert!(
            SystemTime::now() < deadline,
            "the probes of second {t} of the suite ran into second {next}, when an expiry changes verdicts: the enforcer's start or the probes took too long for a {:?} suite second",
            self.second
        );
    }

    /// The trail names who made each decision of a scoped suite: uid, gid, cgroup path.
    pub fn check_subjects(
        &self,
        suite: &str,
        rows: &[Row],
        per_binary: &BTreeMap<PathBuf, Vec<&Case>>,
    ) {
        if !self.scoped {
            return;
        }
        for (exe, events) in per_binary {
            let mut mine: Vec<&Row> = super::common::rows_of(rows, exe)
                .into_iter()
                .filter(|r| r["hook"] == "connect" || r["hook"] == "sendmsg")
                .collect();
            mine.sort_by(|a, b| a["ts_ns"].cmp(&b["ts_ns"]));
            assert_eq!(mine.len(), events.len(), "{suite}: rows");
            for (c, r) in events.iter().zip(mine) {
                let path = format!("{}{}", self.rel, c.cgroup);
                assert_eq!(
                    (r["uid"].as_str(), r["gid"].as_str(), r["cgroup"].as_str()),
                    (
                        c.uid.to_string().as_str(),
                        c.gid.to_string().as_str(),
                        path.as_str()
                    ),
                    "{suite}: who made {} {}:{}",
                    c.protocol,
                    c.addr,
                    c.port
                );
            }
        }
    }
}

impl Drop for Setup<'_> {
    fn drop(&mut self) {
        while let Some(child) = self.children.pop() {
            drop(child);
        }
    }
}
