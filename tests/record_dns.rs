//! DNS answers in the trail: replies over UDP and TCP to the socket that asked become
//! `dns_answer` rows (question, CNAME chain, addresses, TTL, the asker's hash), and the
//! asker's later connects carry the name their address came from (`dst_name`). Real
//! queries from a real binary to a DNS server on loopback, through the real recorder.

mod common;

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;

use common::dns_server::{wire_name, Answer, DnsServer};
use common::*;

/// The `dns_answer` rows among `rows`, in order.
fn answer_rows<'a>(rows: &[&'a Row]) -> Vec<&'a Row> {
    rows.iter()
        .copied()
        .filter(|r| r["hook"] == "dns_answer")
        .collect()
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

#[test]
fn dns_answers_are_recorded_and_name_the_connects_that_follow() {
    require_root();
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let server = DnsServer::start(
        "127.0.10.53:53".parse().unwrap(),
        vec![
            (
                "api.example.test",
                Answer::Rounds(vec![
                    vec![ip("127.0.10.1"), ip("127.0.10.2")],
                    vec![ip("127.0.10.5"), ip("127.0.10.6")],
                ]),
            ),
            ("www.example.test", Answer::Alias("edge.cdn.example.test")),
            (
                "edge.cdn.example.test",
                Answer::Rounds(vec![vec![ip("127.0.10.7")]]),
            ),
        ],
        30,
    );
    let probe = settled_copy(Path::new(PROBE), tmp.path(), "dns-client");
    let out = tmp.path().join("trail");
    let rec = Recording::start(&out, &[]);
    let dns = |kind: &str, name: &str| format!("{kind}:{name}@{}", server.addr);
    let args = [
        dns("dns", "api.example.test"),
        "tcp:127.0.10.1:9".into(),
        dns("dnstcp", "www.example.test"),
        "tcp:127.0.10.7:9".into(),
        "tcp:127.0.10.99:9".into(),
        dns("dns", "api.example.test"),
        "udp:127.0.10.6:9".into(),
        dns("dns", "nowhere.example.test"),
    ];
    let said = Command::new(&probe.path).args(&args).output().unwrap();
    let said = String::from_utf8_lossy(&said.stdout);
    assert!(
        said.contains("api.example.test@127.0.10.53:53 ok 127.0.10.1,127.0.10.2"),
        "{said}"
    );
    assert!(
        said.contains("www.example.test@127.0.10.53:53 ok 127.0.10.7"),
        "{said}"
    );
    let (status, log) = rec.stop();
    assert!(status.success(), "{log}");
    drop(server);

    let rows = rows(&out);
    let mine = rows_of(&rows, &probe.path);
    let answers = answer_rows(&mine);
    assert_eq!(answers.len(), 4, "{answers:#?}");
    for a in &answers {
        assert_eq!(a["exe_sha256"], probe.sha256, "the asker's hash");
        assert_eq!(a["dst_addr"], "127.0.10.53");
        assert_eq!(a["dst_port"], "53");
        assert_eq!(a["dns_scope"], "app");
        assert_eq!(a["dns_qtype"], "A");
    }
    let field = |i: usize, k: &str| answers[i][k].clone();
    assert_eq!(
        (
            field(0, "dns_qname"),
            field(0, "dns_addrs"),
            field(0, "dns_ttl"),
            field(0, "protocol")
        ),
        (
            "api.example.test".into(),
            "[127.0.10.1, 127.0.10.2]".into(),
            "30".into(),
            "udp".into()
        )
    );
    assert_eq!(
        (
            field(1, "dns_qname"),
            field(1, "dns_cnames"),
            field(1, "dns_addrs"),
            field(1, "protocol")
        ),
        (
            "www.example.test".into(),
            "[edge.cdn.example.test]".into(),
            "[127.0.10.7]".into(),
            "tcp".into()
        )
    );
    assert_eq!(
        field(2, "dns_addrs"),
        "[127.0.10.5, 127.0.10.6]",
        "the rotated answer"
    );
    assert_eq!(
        (field(3, "dns_rcode"), field(3, "dns_addrs")),
        ("NXDOMAIN".into(), "[]".into())
    );

    let connect_to = |addr: &str| {
        mine.iter()
            .find(|r| r["hook"] == "connect" && r["dst_addr"] == addr && r["dst_port"] == "9")
            .unwrap_or_else(|| panic!("no connect to {addr}: {mine:#?}"))
    };
    assert_eq!(connect_to("127.0.10.1")["dst_name"], "api.example.test");
    assert_eq!(connect_to("127.0.10.7")["dst_name"], "www.example.test");
    assert_eq!(connect_to("127.0.10.6")["dst_name"], "api.example.test");
    assert_eq!(
        connect_to("127.0.10.99")["dst_name"],
        "NULL",
        "an address no answer gave"
    );
    // `analyze` shows destinations with the names they were reached under.
    let table = pinhole([
        "analyze".as_ref(),
        out.as_os_str(),
        "--app".as_ref(),
        probe.path.as_os_str(),
    ]);
    let text = String::from_utf8_lossy(&table.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("127.0.10.7") && l.contains(" 9 "))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.trim_end().ends_with("www.example.test"), "{line}");
    // The queries themselves are connects to the server, named by nothing.
    assert!(mine
        .iter()
        .filter(|r| r["dst_port"] == "53" && r["hook"] != "dns_answer")
        .all(|r| r["dst_name"] == "NULL"));
}

/// The scenario: a client fetches a name ten times while recording; then the
/// name's answers move. A policy learned by address denies every later fetch; the
/// policy learned by name, measured by replay on the held-out part, denies none.
#[test]
fn a_policy_by_name_survives_answers_that_move_and_one_by_address_does_not() {
    use pinhole_analyze::{summarize, Filter, ScanOptions};
    use pinhole_policygen::generate::{generate, Knobs};
    use pinhole_policygen::replay::replay;

    require_root();
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let (before, after) = (
        vec![ip("127.0.10.1"), ip("127.0.10.2")],
        vec![ip("127.0.10.5"), ip("127.0.10.6")],
    );
    let rounds = [vec![before.clone(); 10], vec![after.clone(); 10]].concat();
    let server = DnsServer::start(
        "127.0.10.53:53".parse().unwrap(),
        vec![("api.example.test", Answer::Rounds(rounds))],
        30,
    );
    let probe = settled_copy(Path::new(PROBE), tmp.path(), "fetcher");
    let cg = TestCgroup::new("pinhole-dns-rotate");
    let name = cg.path.file_name().unwrap().to_str().unwrap().to_owned();
    let out = tmp.path().join("trail");
    let rec = Recording::start(&out, &["--cgroup", &name]);
    let fetch = |n: usize| {
        let mut args = Vec::new();
        for _ in 0..n {
            args.push(format!("dns:api.example.test@{}", server.addr));
            // What a client does: connect to the first address answered.
            args.push("tcp:FIRST:8080".into());
        }
        // Each pair in its own run, so the connect can use the answer just given.
        let mut said = Vec::new();
        for pair in args.chunks(2) {
            let a = probe_in(&cg, &probe.path, &[&pair[0]]);
            let first = a[0].split(',').next().unwrap().to_owned();
            let target = pair[1].replace("FIRST", &first);
            probe_in(&cg, &probe.path, &[&target]);
            said.push(first);
        }
        said
    };
    assert!(fetch(10)
        .iter()
        .all(|a| a.starts_with("127.0.10.1") || a.starts_with("127.0.10.2")));
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let split = chrono::Utc::now();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert!(fetch(10).iter().all(|a| a.starts_with("127.0.10.5")));
    let (status, log) = rec.stop();
    assert!(status.success(), "{log}");
    drop(server);

    let split_ns = split.timestamp_nanos_opt().unwrap();
    let train = Filter {
        since_ns: None,
        until_ns: Some(split_ns),
        ..Default::default()
    };
    let held = Filter {
        since_ns: Some(split_ns),
        until_ns: None,
        ..Default::default()
    };
    let opts = ScanOptions {
        filter: train,
        skip_bad: false,
        threads: 2,
    };
    let summary = summarize(&out, &opts, &()).unwrap().summary;
    let denied_held_out = |knobs: &Knobs| {
        let g = generate(&summary, knobs);
        let app = g
            .policy
            .apps
            .iter()
            .find(|a| a.name == "fetcher")
            .expect("the app");
        let r = replay(&g.policy, &out, &held).unwrap();
        let rep = &r.apps[&Some(app.name.clone())];
        (app.name_rules.len(), rep.events, rep.denied)
    };
    let (by_name, events, denied) = denied_held_out(&Knobs::default());
    assert_eq!(by_name, 1, "one rule: the name");
    assert_eq!(
        (events, denied),
        (20, 0),
        "10 queries and 10 fetches, none denied"
    );
    let (by_name, events, denied) = denied_held_out(&Knobs {
        addresses_only: true,
        ..Default::default()
    });
    assert_eq!(by_name, 0);
    assert_eq!(
        (events, denied),
        (20, 10),
        "every fetch to the moved addresses denied"
    );

    // The generated file says so: a rule by name, from DNS evidence, that checks.
    let policy = tmp.path().join("policy.toml");
    let made = pinhole([
        "policy".as_ref(),
        "generate".as_ref(),
        out.as_os_str(),
        "--until".as_ref(),
        split.to_rfc3339().as_ref(),
        "-o".as_ref(),
        policy.as_os_str(),
    ]);
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let toml = std::fs::read_to_string(&policy).unwrap();
    assert!(toml.contains("host = \"api.example.test\""), "{toml}");
    assert!(toml.contains("source = \"dns\""), "{toml}");
    let checked = pinhole(["policy".as_ref(), "check".as_ref(), policy.as_os_str()]);
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stderr)
    );

    // The command says the same, side by side.
    let said = pinhole([
        "policy".as_ref(),
        "evaluate".as_ref(),
        out.as_os_str(),
        "--split".as_ref(),
        split.to_rfc3339().as_ref(),
    ]);
    let text = String::from_utf8_lossy(&said.stdout);
    assert!(
        said.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&said.stderr)
    );
    assert!(
        text.contains("false-deny rate 0.0000% (0 events)"),
        "{text}"
    );
    assert!(
        text.contains("the same policy by address only: false-deny rate 50.0000% (10 events)"),
        "{text}"
    );

    // The user's story, in the kernel: the generated policy enforced while the name has
    // moved once more, to addresses never seen. Every fetch by name succeeds; a connect
    // to an address learnt earlier, with no answer giving it now, is refused.
    let moved = vec![ip("127.0.10.7"), ip("127.0.10.8")];
    let server = DnsServer::start(
        "127.0.10.53:53".parse().unwrap(),
        vec![("api.example.test", Answer::Rounds(vec![moved]))],
        30,
    );
    let enforcer = Enforcer::start(&policy, &cg, &[]);
    let mut refused = 0;
    for _ in 0..10 {
        let ask = format!("dns:api.example.test@{}", server.addr);
        let a = probe_in(&cg, &probe.path, &[&ask]);
        let first = a[0].split(',').next().unwrap().to_owned();
        assert_eq!(first, "127.0.10.7");
        let got = probe_in(&cg, &probe.path, &[&format!("tcp:{first}:8080")]);
        refused += usize::from(got[0] == "EPERM");
    }
    let direct = probe_in(&cg, &probe.path, &["tcp:127.0.10.1:8080"]);
    let (status, log) = enforcer.stop();
    assert!(status.success(), "{log}");
    assert_eq!(refused, 0, "fetches by name refused under the name policy");
    assert_eq!(direct[0], "EPERM", "an address no answer gave");
}

/// Hostile and broken replies: cut short, looping compression pointers, answers for
/// another name, and a reply to a socket that asked nothing. None crashes the recorder,
/// none adds evidence, and each reply that reached an asker is in the trail as such.
#[test]
fn hostile_dns_replies_add_no_evidence_and_nothing_unasked_is_recorded() {
    require_root();
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    // After the id: flags (a response, NOERROR), counts, then the rest.
    let header = |qd: u8, an: u8| vec![0x81, 0x80, 0, qd, 0, an, 0, 0, 0, 0];
    let question = |name: &str| [wire_name(name), vec![0, 1, 0, 1]].concat();
    let cut = [header(1, 1), question("cut.example.test")[..7].to_vec()].concat();
    // The answer's owner is a pointer to itself.
    let looped = {
        let mut r = [header(1, 1), question("loop.example.test")].concat();
        let at = (r.len() + 2) as u8;
        r.extend([0xc0, at, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 127, 0, 10, 20]);
        r
    };
    // Answers for a name nobody asked.
    let other = [
        header(1, 1),
        question("other.example.test"),
        wire_name("victim.example.test"),
        vec![0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 127, 0, 10, 21],
    ]
    .concat();
    let server = DnsServer::start(
        "127.0.10.53:53".parse().unwrap(),
        vec![
            ("cut.example.test", Answer::Raw(cut)),
            ("loop.example.test", Answer::Raw(looped)),
            ("other.example.test", Answer::Raw(other)),
        ],
        30,
    );
    let probe = settled_copy(Path::new(PROBE), tmp.path(), "dns-victim");
    let out = tmp.path().join("trail");
    let rec = Recording::start(&out, &[]);
    let dns = |name: &str| format!("dns:{name}@{}", server.addr);
    Command::new(&probe.path)
        .args([
            dns("cut.example.test"),
            dns("loop.example.test"),
            dns("other.example.test"),
            "tcp:127.0.10.20:9".into(),
            "tcp:127.0.10.21:9".into(),
        ])
        .output()
        .unwrap();
    // A datagram from port 53 to a socket that never sent a query.
    let quiet = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let from53 = std::net::UdpSocket::bind("127.0.10.54:53").unwrap();
    let unasked = [
        vec![0x12, 0x34],
        header(1, 1),
        question("unasked.example.test"),
        wire_name("unasked.example.test"),
        vec![0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 127, 0, 10, 22],
    ]
    .concat();
    from53
        .send_to(&unasked, quiet.local_addr().unwrap())
        .unwrap();
    let mut buf = [0u8; 512];
    quiet.recv(&mut buf).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let (status, log) = rec.stop();
    assert!(status.success(), "{log}");
    drop(server);

    let rows = rows(&out);
    let mine = rows_of(&rows, &probe.path);
    let answers = answer_rows(&mine);
    assert_eq!(answers.len(), 3, "{answers:#?}");
    assert_eq!(answers[0]["dns_qname"], "NULL");
    assert!(
        answers[0]["note"].starts_with("unreadable DNS reply"),
        "{:?}",
        answers[0]
    );
    assert_eq!(
        answers[1]["dns_qname"], "NULL",
        "a pointer loop is unreadable"
    );
    assert_eq!(
        (
            answers[2]["dns_qname"].as_str(),
            answers[2]["dns_addrs"].as_str()
        ),
        ("other.example.test", "[]"),
        "records for another name are not the question's"
    );
    for addr in ["127.0.10.20", "127.0.10.21"] {
        let c = mine
            .iter()
            .find(|r| r["hook"] == "connect" && r["dst_addr"] == addr)
            .unwrap();
        assert_eq!(
            c["dst_name"], "NULL",
            "{addr} was vouched for by no readable answer"
        );
    }
    assert!(
        !rows
            .iter()
            .any(|r| r["dns_qname"] == "unasked.example.test"),
        "a reply to a socket that asked nothing is not recorded"
    );
}

/// Where applications ask the host's resolver (systemd-resolved, nscd) instead of a
/// DNS server, the resolver's own upstream answers are the evidence: recorded with
/// scope "host", and naming any process's later connect, flagged as the host's.
#[test]
fn the_host_resolvers_answers_name_other_processes_connects_with_host_scope() {
    require_root();
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let server = DnsServer::start(
        "127.0.10.53:53".parse().unwrap(),
        vec![(
            "svc.example.test",
            Answer::Rounds(vec![vec![ip("127.0.10.30")]]),
        )],
        30,
    );
    let resolver = settled_copy(Path::new(PROBE), tmp.path(), "fake-resolved");
    let app = settled_copy(Path::new(PROBE), tmp.path(), "an-app");
    let out = tmp.path().join("trail");
    let path = resolver.path.to_str().unwrap();
    let rec = Recording::start(&out, &["--host-resolver", path]);
    run(Command::new(&resolver.path).arg(format!("dns:svc.example.test@{}", server.addr)));
    run(Command::new(&app.path).arg("tcp:127.0.10.30:9"));
    let (status, log) = rec.stop();
    assert!(status.success(), "{log}");
    drop(server);
    let rows = rows(&out);
    let answer = rows_of(&rows, &resolver.path)
        .into_iter()
        .find(|r| r["hook"] == "dns_answer")
        .expect("the resolver's answer");
    assert_eq!(
        (answer["dns_qname"].as_str(), answer["dns_scope"].as_str()),
        ("svc.example.test", "host")
    );
    let connect = rows_of(&rows, &app.path)
        .into_iter()
        .find(|r| r["hook"] == "connect")
        .expect("the app's connect");
    assert_eq!(
        (connect["dst_name"].as_str(), connect["dns_scope"].as_str()),
        ("svc.example.test", "host")
    );
}
