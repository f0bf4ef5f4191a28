//! Only observed and allowed traffic teaches: a dataset holding an enforcer's
//! decisions (written with `enforce --out` into the recorder's directory) generates no
//! rule from a denial, and none from a would-deny unless audit-mode learning is asked.

use pinhole_analyze::{summarize, Filter, ScanOptions};
use pinhole_policygen::generate::{generate, Knobs};
use pinhole_recorder::event::{ExeRef, ExeStatus, Hook, Protocol, Verdict};
use pinhole_recorder::{Event, Sink, SinkConfig};

const T0: i64 = 1_795_305_600_000_000_000;
static CURL: [u8; 32] = [0xc1; 32];

fn curl(t: i64, port: u16, verdict: Verdict) -> Event<'static> {
    Event {
        ts_ns: T0 + t * 1_000_000_000,
        pid: 9,
        tid: 9,
        ppid: 1,
        uid: 1000,
        gid: 1000,
        comm: "curl",
        exe: ExeRef {
            path: Some("/usr/bin/curl"),
            sha256: Some(&CURL),
            status: ExeStatus::Ok,
            dev: 1,
            ino: 3,
        },
        cgroup_id: 1,
        cgroup: None,
        netns: 1,
        dst_addr: "127.0.0.1".parse().unwrap(),
        dst_port: port,
        protocol: Protocol::Tcp,
        hook: Hook::Connect,
        verdict,
        sock_cookie: 1,
        rule_id: None,
        app: Some("curl"),
        note: None,
        dst_name: None,
        dst_name_from_host: false,
        dns: None,
    }
}

fn learnt_ports(dir: &std::path::Path, learn_would_deny: bool) -> Vec<String> {
    let opts = ScanOptions {
        filter: Filter {
            learn_would_deny,
            ..Default::default()
        },
        skip_bad: false,
        threads: 2,
    };
    let summary = summarize(dir, &opts, &()).unwrap().summary;
    let g = generate(&summary, &Knobs::default());
    let app = &g.policy.apps[0];
    app.rules
        .iter()
        .chain(&app.review)
        .map(|r| r.ports.to_string())
        .collect()
}

/// Regression: `policy generate` turned a denied `curl -> 127.0.0.1:18081` into an
/// allow rule.
#[test]
fn denied_and_would_deny_connects_teach_nothing_and_are_reported_apart() {
    let dir = tempfile::tempdir().unwrap();
    let (mut sink, _) = Sink::open(SinkConfig::new(dir.path(), "h")).unwrap();
    for t in 0..3 {
        sink.append(&curl(t, 8080, Verdict::Observed)).unwrap();
        sink.append(&curl(t, 8443, Verdict::Allowed)).unwrap();
        sink.append(&curl(t, 18081, Verdict::Denied)).unwrap();
        sink.append(&curl(t, 18082, Verdict::WouldDeny)).unwrap();
    }
    sink.close().unwrap();

    assert_eq!(learnt_ports(dir.path(), false), ["8080", "8443"]);
    assert_eq!(
        learnt_ports(dir.path(), true),
        ["8080", "8443", "18082"],
        "audit-mode learning takes would-deny, never denied"
    );

    let summary = summarize(
        dir.path(),
        &ScanOptions {
            filter: Filter::default(),
            skip_bad: false,
            threads: 1,
        },
        &(),
    )
    .unwrap()
    .summary;
    let app = summary.apps.values().next().unwrap();
    let refused: Vec<(u16, u64, u64)> = app
        .refused
        .iter()
        .map(|(k, r)| (k.port, r.denied, r.would_deny))
        .collect();
    assert_eq!(refused, [(18081, 3, 0), (18082, 0, 3)]);
}
