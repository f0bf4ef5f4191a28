//! `pinhole policy update`: an enforced policy grows from what its trail justifies
//! (refusals with support, new apps, new versions of its apps) while every rule, id,
//! review decision and comment already in the file stays as written.

mod common;

use common::*;
use pinhole_recorder::event::{ExeRef, ExeStatus, Hook, Protocol, Verdict};
use pinhole_recorder::{Event, Sink, SinkConfig};

const T0: i64 = 1_795_305_600_000_000_000; // 2026-11-22
const HOUR: i64 = 3_600_000_000_000;
static CURL: [u8; 32] = [0xc1; 32];
static CURL2: [u8; 32] = [0xc2; 32];
static WGET: [u8; 32] = [0x77; 32];

fn row(
    t: i64,
    sha: &'static [u8; 32],
    path: &'static str,
    port: u16,
    v: Verdict,
) -> Event<'static> {
    Event {
        ts_ns: t,
        pid: 9,
        tid: 9,
        ppid: 1,
        uid: 1000,
        gid: 1000,
        comm: "client",
        exe: ExeRef {
            path: Some(path),
            sha256: Some(sha),
            status: ExeStatus::Ok,
            dev: 1,
            ino: 3,
        },
        cgroup_id: 1,
        cgroup: None,
        netns: 1,
        dst_addr: "192.0.2.10".parse().unwrap(),
        dst_port: port,
        protocol: Protocol::Tcp,
        hook: Hook::Connect,
        verdict: v,
        sock_cookie: 1,
        rule_id: None,
        app: None,
        note: None,
        dst_name: None,
        dst_name_from_host: false,
        dns: None,
    }
}

#[test]
fn update_adds_what_the_trail_justifies_and_keeps_every_decision() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = tmp.path().join("ds");
    let (mut sink, _) = Sink::open(SinkConfig::new(&ds, "h")).unwrap();
    // Learning: curl reaches 8080 often, 7777 once (held for review).
    for h in 0..6 {
        sink.append(&row(
            T0 + h * HOUR,
            &CURL,
            "/usr/bin/curl",
            8080,
            Verdict::Observed,
        ))
        .unwrap();
    }
    sink.append(&row(
        T0 + 2 * HOUR,
        &CURL,
        "/usr/bin/curl",
        7777,
        Verdict::Observed,
    ))
    .unwrap();
    sink.rotate().unwrap();
    let policy = tmp.path().join("policy.toml");
    let made = pinhole([
        "policy".as_ref(),
        "generate".as_ref(),
        ds.as_os_str(),
        "-o".as_ref(),
        policy.as_os_str(),
    ]);
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    // A reviewer's touch: a comment; 7777 stays in review (their decision).
    let original = format!(
        "# reviewed by ops\n{}",
        std::fs::read_to_string(&policy).unwrap()
    );
    std::fs::write(&policy, &original).unwrap();
    assert!(original.contains("reason = \"seen once\""));

    // Enforced: what it refused and what else ran.
    let later = T0 + 24 * HOUR;
    for h in 0..5 {
        let t = later + h * 5 * HOUR;
        sink.append(&row(t, &CURL, "/usr/bin/curl", 9090, Verdict::Denied))
            .unwrap();
        sink.append(&row(t, &CURL, "/usr/bin/curl", 7777, Verdict::Denied))
            .unwrap();
        sink.append(&row(t, &CURL2, "/usr/bin/curl", 8080, Verdict::Observed))
            .unwrap();
        sink.append(&row(t, &WGET, "/usr/bin/wget", 443, Verdict::Observed))
            .unwrap();
    }
    sink.append(&row(
        later + HOUR,
        &CURL,
        "/usr/bin/curl",
        9443,
        Verdict::WouldDeny,
    ))
    .unwrap();
    sink.close().unwrap();

    let new = tmp.path().join("new.toml");
    let out = pinhole([
        "policy".as_ref(),
        "update".as_ref(),
        policy.as_os_str(),
        ds.as_os_str(),
        "-o".as_ref(),
        new.as_os_str(),
    ]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    let text = std::fs::read_to_string(&new).unwrap();
    // Everything that was there, in order, untouched.
    let mut rest = text.as_str();
    for line in original.lines().filter(|l| !l.is_empty()) {
        let at = rest
            .find(line)
            .unwrap_or_else(|| panic!("{line:?} lost:\n{text}"));
        rest = &rest[at + line.len()..];
    }
    let checked = pinhole(["policy".as_ref(), "check".as_ref(), new.as_os_str()]);
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stderr)
    );
    // 9090: denied with support, now allowed; 9443: seen once, for review; 7777: still
    // only the reviewer's entry.
    let tables: Vec<&str> = text.split("\n[[").collect();
    let with = |port: &str| -> Vec<&&str> {
        tables
            .iter()
            .filter(|t| t.contains(&format!("\nports = {port}\n")))
            .collect()
    };
    assert!(with("9090").iter().all(|t| t.starts_with("app.allow]]")) && with("9090").len() == 1);
    let t9443 = with("9443");
    assert!(
        t9443.len() == 1 && t9443[0].starts_with("app.review]]") && t9443[0].contains("seen once")
    );
    assert_eq!(
        with("7777").len(),
        1,
        "the review decision is kept, not proposed again"
    );
    // Inside curl's section: after its header, before the apps added.
    let (curl_at, rule_at) = (
        text.find("name = \"curl\"").unwrap(),
        text.find("ports = 9090").unwrap(),
    );
    assert!(curl_at < rule_at && rule_at < text.find("name = \"wget\"").unwrap());
    // The new app, and the new version of curl under its path.
    assert!(text.contains("name = \"wget\""), "{text}");
    assert!(
        text.contains(&format!("name = \"curl.{}\"", &hex::encode(CURL2)[..8])),
        "{text}"
    );
    assert!(said.contains("a new version of curl"), "{said}");
    let diff = String::from_utf8_lossy(&out.stdout);
    assert!(diff.contains("wget"), "the change is printed: {diff}");
}
