//! Replay on datasets with known answers: the training window replays clean, and the
//! held-out anomalies the generator injected are exactly what would be denied.

use pinhole_analyze::{summarize, Filter, ScanOptions};
use pinhole_policygen::generate::{generate, Knobs};
use pinhole_policygen::replay::replay;
use pinhole_recorder::synth::{generate as synth, SynthConfig};

const DAY: i64 = 86_400_000_000_000;

#[test]
fn training_replays_clean_and_held_out_anomalies_are_denied() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SynthConfig {
        events: 30_000,
        apps: 20,
        destinations: 500,
        days: 3,
        ..Default::default()
    };
    let report = synth(&cfg, dir.path()).unwrap();
    let split = cfg.start_ns + 2 * DAY;
    let train = Filter {
        since_ns: None,
        until_ns: Some(split),
        ..Default::default()
    };
    let s = summarize(
        dir.path(),
        &ScanOptions {
            filter: train,
            skip_bad: false,
            threads: 2,
        },
        &(),
    )
    .unwrap()
    .summary;
    let g = generate(&s, &Knobs::default());

    // Soundness through the real files and the replay path: nothing of the training
    // window would be denied but what was held for review (destinations seen once).
    let r = replay(&g.policy, dir.path(), &train).unwrap();
    assert_eq!(r.events, s.events);
    let held_events: u64 = g
        .policy
        .apps
        .iter()
        .flat_map(|a| &a.review)
        .map(|x| x.evidence.as_ref().unwrap().events)
        .sum();
    assert!(held_events > 0);
    assert_eq!(r.denied(), held_events);
    // Learnt like any traffic, the training window replays clean.
    let all = generate(
        &s,
        &Knobs {
            hold_anomalies: false,
            ..Knobs::default()
        },
    );
    let r = replay(&all.policy, dir.path(), &train).unwrap();
    assert_eq!(
        r.denied(),
        0,
        "{:?}",
        r.apps
            .iter()
            .filter(|(_, a)| a.denied > 0)
            .collect::<Vec<_>>()
    );

    // Held out: the one-off destination and every port of the scan are denied.
    let held = replay(
        &g.policy,
        dir.path(),
        &Filter {
            since_ns: Some(split),
            until_ns: None,
            ..Default::default()
        },
    )
    .unwrap();
    let (one_off_sha, addr, port) = report.one_off.unwrap();
    let (scan_sha, target) = report.scanner.unwrap();
    let app_of = |sha: [u8; 32]| {
        g.policy
            .apps
            .iter()
            .find(|a| a.sha256 == sha)
            .map(|a| a.name.clone())
    };
    let one_off = &held.apps[&app_of(one_off_sha)];
    assert_eq!(
        one_off.denied_dests.get(&format!("tcp {addr}:{port}")),
        Some(&1)
    );
    let scanner = &held.apps[&app_of(scan_sha)];
    let scanned = scanner
        .denied_dests
        .keys()
        .filter(|d| d.starts_with(&format!("tcp {target}:")))
        .count();
    assert!(scanned >= 1000, "the scan's ports are denied: {scanned}");
    // The rehashed binary is unknown to the policy: the default (allow) applies.
    let unknown = &held.apps[&None];
    assert!(unknown.events > 0 && unknown.denied == 0);
    assert!(
        held.deny_rate() > 0.0 && held.deny_rate() < 0.2,
        "{}",
        held.deny_rate()
    );
}

/// Name rules and deny lists replayed with the DNS answers the trail holds: an answer
/// vouches for its addresses to its receiver until its TTL (raised to the minimum, plus
/// grace) runs out, and a denied name wins over an address rule.
#[test]
fn replay_decides_names_with_the_answers_in_the_trail() {
    use pinhole_policygen::check::{check, Limits};
    use pinhole_recorder::event::{DnsFields, Hook};
    use pinhole_recorder::{Sink, SinkConfig};

    let sha = CLIENT;
    let dir = tempfile::tempdir().unwrap();
    let (mut sink, _) = Sink::open(SinkConfig::new(dir.path(), "h")).unwrap();
    let row = |t: i64, addr: &str, port: u16, hook: Hook| client_row(T0 + t * S, addr, port, hook);
    let api = reply("api.example.test", "10.0.0.1");
    let ads = reply("x.ads.example.test", "10.0.0.2");
    for (t, r) in [(0, &api), (0, &ads)] {
        let mut e = row(t, "127.0.0.53", 53, Hook::DnsAnswer);
        e.dns = Some(DnsFields {
            reply: r,
            host_scope: false,
        });
        sink.append(&e).unwrap();
    }
    for (t, addr) in [
        (1, "10.0.0.1"),
        (1, "10.0.0.9"),
        (2, "10.0.0.2"),
        (1000, "10.0.0.1"),
    ] {
        sink.append(&row(t, addr, 443, Hook::Connect)).unwrap();
    }
    sink.close().unwrap();
    // The same binary on another host, which received no answer: its file joins the
    // dataset as a fleet's files do, copied in.
    let elsewhere = tempfile::tempdir().unwrap();
    let (mut other, _) = Sink::open(SinkConfig::new(elsewhere.path(), "other")).unwrap();
    other
        .append(&row(1, "10.0.0.1", 443, Hook::Connect))
        .unwrap();
    other.close().unwrap();
    for f in pinhole_recorder::layout::published_files(elsewhere.path()).unwrap() {
        let rel = f.strip_prefix(elsewhere.path()).unwrap();
        std::fs::copy(&f, dir.path().join(rel)).unwrap();
    }
    let policy = check(
        &format!(
            "version = 1\n[[deny]]\nsuffix = \"ads.example.test\"\n[[app]]\nname = \"client\"\nsha256 = \"{}\"\n\
             [[app.allow]]\nid = \"api\"\nprotocol = \"tcp\"\nhost = \"api.example.test\"\nports = 443\n\
             [[app.allow]]\nid = \"addr\"\nprotocol = \"tcp\"\ndst = \"10.0.0.2\"\nports = 443\n",
            hex::encode(sha)
        ),
        Limits::default(),
    )
    .unwrap();
    let r = replay(&policy, dir.path(), &Filter::default()).unwrap();
    assert_eq!((r.files, r.dns_answers), (2, 2));
    assert_eq!((r.events, r.denied()), (5, 4));
    let denied = &r.apps[&Some("client".to_string())].denied_dests;
    assert_eq!(
        denied["tcp 10.0.0.1:443"], 2,
        "expired after 60 + 300 s, and on a host that received no answer"
    );
    assert_eq!(denied["tcp 10.0.0.9:443"], 1, "never resolved");
    assert_eq!(
        denied["tcp 10.0.0.2:443"], 1,
        "a denied name wins over the address rule"
    );
}

const T0: i64 = 1_795_305_600_000_000_000; // 2026-11-22, midnight UTC
const S: i64 = 1_000_000_000;
static CLIENT: [u8; 32] = [0xaa; 32];

/// A row of the binary `CLIENT`'s.
fn client_row(
    ts_ns: i64,
    addr: &str,
    port: u16,
    hook: pinhole_recorder::event::Hook,
) -> pinhole_recorder::Event<'static> {
    use pinhole_recorder::event::{ExeRef, ExeStatus, Protocol, Verdict};
    pinhole_recorder::Event {
        ts_ns,
        pid: 7,
        tid: 7,
        ppid: 1,
        uid: 0,
        gid: 0,
        comm: "client",
        exe: ExeRef {
            path: Some("/usr/bin/client"),
            sha256: Some(&CLIENT),
            status: ExeStatus::Ok,
            dev: 1,
            ino: 2,
        },
        cgroup_id: 1,
        cgroup: None,
        netns: 1,
        dst_addr: addr.parse().unwrap(),
        dst_port: port,
        protocol: Protocol::Tcp,
        hook,
        verdict: Verdict::Observed,
        sock_cookie: 1,
        rule_id: None,
        app: None,
        note: None,
        dst_name: None,
        dst_name_from_host: false,
        dns: None,
    }
}

/// An answer for `name` giving `addr`, TTL 60 s.
fn reply(name: &str, addr: &str) -> pinhole_recorder::dns::DnsReply {
    pinhole_recorder::dns::DnsReply {
        qname: name.into(),
        qtype: "A".into(),
        rcode: "NOERROR".into(),
        cnames: vec![],
        addrs: vec![addr.parse().unwrap()],
        ttl: 60,
        truncated: false,
    }
}

/// Regression: replaying from a time (`evaluate --split`, `replay --since`) skipped the
/// files of earlier days, answers included, so a connect just after midnight whose
/// answer came just before was denied (0.06 points of false-deny on a synthetic set).
#[test]
fn an_answer_just_before_the_window_vouches_for_a_connect_inside_it() {
    use pinhole_policygen::check::{check, Limits};
    use pinhole_recorder::event::{DnsFields, Hook};
    use pinhole_recorder::{Sink, SinkConfig};

    let dir = tempfile::tempdir().unwrap();
    let (mut sink, _) = Sink::open(SinkConfig::new(dir.path(), "h")).unwrap();
    let midnight = T0 + 86_400 * S;
    let api = reply("api.example.test", "10.0.0.1");
    let mut answer = client_row(midnight - 10 * S, "127.0.0.53", 53, Hook::DnsAnswer);
    answer.dns = Some(DnsFields {
        reply: &api,
        host_scope: false,
    });
    sink.append(&answer).unwrap();
    sink.rotate().unwrap();
    sink.append(&client_row(
        midnight + 10 * S,
        "10.0.0.1",
        443,
        Hook::Connect,
    ))
    .unwrap();
    sink.close().unwrap();
    let policy = check(
        &format!(
            "version = 1\n[[app]]\nname = \"client\"\nsha256 = \"{}\"\n\
             [[app.allow]]\nid = \"api\"\nprotocol = \"tcp\"\nhost = \"api.example.test\"\nports = 443\n",
            hex::encode(CLIENT)
        ),
        Limits::default(),
    )
    .unwrap();
    let window = Filter {
        since_ns: Some(midnight),
        until_ns: None,
        ..Default::default()
    };
    let r = replay(&policy, dir.path(), &window).unwrap();
    assert_eq!((r.events, r.dns_answers), (1, 1));
    assert_eq!(r.denied(), 0, "the answer from the day before counts");
}

/// Replay decides scoped rules by the trail's uid, gid, cgroup and time, as the kernel
/// does: the same destination allowed for one user, in one cgroup, until an instant.
#[test]
fn replay_decides_scoped_rules_by_who_and_when() {
    use pinhole_policygen::check::{check, Limits};
    use pinhole_recorder::event::Hook;
    use pinhole_recorder::{Sink, SinkConfig};

    let dir = tempfile::tempdir().unwrap();
    let (mut sink, _) = Sink::open(SinkConfig::new(dir.path(), "h")).unwrap();
    // (seconds after T0, uid, cgroup, port): denied or not.
    let events: [(i64, u32, Option<&str>, u16, bool); 8] = [
        (0, 0, None, 22, false),
        (1, 1000, None, 22, true),
        (2, 1000, Some("/system.slice/web.service"), 443, false),
        (
            3,
            1000,
            Some("/system.slice/web.service/worker"),
            443,
            false,
        ),
        (4, 1000, Some("/system.slice/web.services"), 443, true),
        (5, 1000, None, 443, true),
        (10, 0, None, 8080, false),
        (70, 0, None, 8080, true),
    ];
    for &(t, uid, cgroup, port, _) in &events {
        let mut row = client_row(T0 + t * S, "10.0.0.1", port, Hook::Connect);
        row.uid = uid;
        row.gid = uid;
        row.cgroup = cgroup;
        sink.append(&row).unwrap();
    }
    sink.close().unwrap();
    let expires = pinhole_analyze::profile::rfc3339(T0 + 60 * S);
    let policy = check(
        &format!(
            "version = 1\n[[app]]\nname = \"client\"\nsha256 = \"{}\"\n\
             [[app.allow]]\nid = \"ssh\"\nprotocol = \"tcp\"\ndst = \"10.0.0.1\"\nports = 22\nuids = [0]\n\
             [[app.allow]]\nid = \"web\"\nprotocol = \"tcp\"\ndst = \"10.0.0.0/8\"\nports = 443\ncgroup = \"/system.slice/web.service\"\n\
             [[app.allow]]\nid = \"temp\"\nprotocol = \"tcp\"\ndst = \"10.0.0.1\"\nports = 8080\nexpires = \"{expires}\"\n",
            hex::encode(CLIENT)
        ),
        Limits::default(),
    )
    .unwrap();
    let r = replay(&policy, dir.path(), &Filter::default()).unwrap();
    let want = events.iter().filter(|e| e.4).count() as u64;
    assert_eq!((r.events, r.denied()), (events.len() as u64, want));
    let denied = &r.apps[&Some("client".to_owned())].denied_dests;
    assert_eq!(denied["tcp 10.0.0.1:443"], 2, "{denied:?}");
    assert_eq!(denied["tcp 10.0.0.1:8080"], 1, "{denied:?}");
}
