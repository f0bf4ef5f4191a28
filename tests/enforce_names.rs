//! Names enforced in the kernel: a name rule allows exactly the addresses the app's
//! own DNS answers gave, from the moment each answer arrives (no race with the
//! application reading it); hostile or broken replies add nothing; the live evidence
//! and the name counters are visible. Real queries to a DNS server on loopback, real
//! connects, the enforcer confined to a cgroup the test makes.

mod common;

use std::fs;
use std::net::Ipv4Addr;
use std::path::Path;

use common::dns_server::{wire_name, Answer, DnsServer};
use common::*;

const SERVER: &str = "127.0.10.53:53";

/// A policy for one app (the probe copy `sha`): the rules given, and DNS to SERVER.
fn policy(sha: &str, path: &Path, rules: &str) -> String {
    format!(
        r#"version = 1
[defaults]
unknown_binary = "allow"

[[app]]
name = "client"
sha256 = "{sha}"
paths = ["{}"]

[[app.allow]]
id = "dns"
protocol = "udp"
dst = "127.0.10.53/32"
ports = 53
{rules}"#,
        path.display()
    )
}

/// An enforcer of `policy_text` confined to a cgroup of its own.
struct Enforced {
    cg: TestCgroup,
    enforcer: Enforcer,
}

impl Enforced {
    fn start(dir: &Path, policy_text: &str, cgroup: &str, extra: &[&str]) -> Enforced {
        let policy_path = dir.join("policy.toml");
        fs::write(&policy_path, policy_text).unwrap();
        let cg = TestCgroup::new(cgroup);
        let enforcer = Enforcer::start(&policy_path, &cg, extra);
        Enforced { cg, enforcer }
    }

    /// Stops the enforcer (it must exit cleanly); nothing stays pinned.
    fn finish(self) {
        let (status, log) = self.enforcer.stop();
        assert!(status.success(), "{log}");
        drop(self.cg);
        assert_nothing_pinned();
    }
}

/// Addresses 127.1.x.y, one per round: every query gets a new one.
fn rotating(rounds: u32) -> Answer {
    Answer::Rounds(
        (0..rounds)
            .map(|i| vec![Ipv4Addr::new(127, 1, (i / 250) as u8, (i % 250) as u8 + 1)])
            .collect(),
    )
}

#[test]
fn the_first_connect_after_each_answer_is_decided_with_it() {
    require_root();
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let _server = DnsServer::start(
        SERVER.parse().unwrap(),
        vec![("race.example.test", rotating(1000))],
        1,
    );
    let app = settled_copy(Path::new(PROBE), tmp.path(), "racer");
    let rules = r#"
[[app.allow]]
id = "race"
protocol = "tcp"
host = "race.example.test"
ports = 9
"#;
    let out = tmp.path().join("trail");
    let text = policy(&app.sha256, &app.path, rules);
    let e = Enforced::start(
        tmp.path(),
        &text,
        "pinhole-names-race",
        &["--out", out.to_str().unwrap()],
    );
    let cg = &e.cg;
    let race = format!("race:1000:9:race.example.test@{SERVER}");
    let got = probe_in(cg, &app.path, &[race.as_str(), "tcp:127.2.0.1:9"]);
    // Every one of 1,000 fresh answers decided the connect right after it.
    assert_eq!(got[0], "denied=0,failed=0");
    // An address no answer gave is refused.
    assert_eq!(got[1], "EPERM");
    e.finish();

    let rows = rows(&out);
    let mine: Vec<&Row> = rows_of(&rows, &app.path)
        .into_iter()
        .filter(|r| r["dst_port"] == "9")
        .collect();
    assert_eq!(mine.len(), 1001);
    let by_name = mine
        .iter()
        .filter(|r| {
            r["verdict"] == "allowed"
                && r["rule_id"] == "race"
                && r["dst_name"] == "race.example.test"
        })
        .count();
    assert_eq!(
        by_name, 1000,
        "allowed by the name rule, named in the trail"
    );
    let direct = mine.iter().find(|r| r["dst_addr"] == "127.2.0.1").unwrap();
    assert_eq!(
        (direct["verdict"].as_str(), direct["dst_name"].as_str()),
        ("denied", "NULL")
    );
}

/// The kernel remembers a name verdict per (app, address, protocol, port) until the
/// evidence changes: an answer naming a denied name for an address the app was just
/// allowed to reach, by the cached verdict, refuses the very next connect there.
#[test]
fn a_remembered_verdict_gives_way_to_the_next_answer() {
    require_root();
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    const ROUNDS: u8 = 20;
    let addrs = || {
        Answer::Rounds(
            (1..=ROUNDS)
                .map(|i| vec![Ipv4Addr::new(127, 1, 11, i)])
                .collect(),
        )
    };
    // Both names answer the same address in each round.
    let _server = DnsServer::start(
        SERVER.parse().unwrap(),
        vec![
            ("shop.example.com", addrs()),
            ("social.example.com", addrs()),
        ],
        600,
    );
    let app = settled_copy(Path::new(PROBE), tmp.path(), "browser");
    let rules = r#"
[[app.allow]]
id = "example"
protocol = "tcp"
host = "*.example.com"
ports = 9

[[app.deny]]
id = "no-social"
host = "social.example.com"
"#;
    let out = tmp.path().join("trail");
    let text = policy(&app.sha256, &app.path, rules);
    let e = Enforced::start(
        tmp.path(),
        &text,
        "pinhole-names-cache",
        &["--out", out.to_str().unwrap()],
    );
    let shop = format!("dns:shop.example.com@{SERVER}");
    let social = format!("dns:social.example.com@{SERVER}");
    let mut args = Vec::new();
    for i in 1..=ROUNDS {
        let tcp = format!("tcp:127.1.11.{i}:9");
        args.extend([shop.clone(), tcp.clone(), tcp.clone(), social.clone(), tcp]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let got = probe_in(&e.cg, &app.path, &args);
    for (round, r) in got.chunks(5).enumerate() {
        assert_eq!(
            (r[1].as_str(), r[2].as_str(), r[4].as_str()),
            ("ECONNREFUSED", "ECONNREFUSED", "EPERM"),
            "round {round}: allowed by shop.example.com twice, then denied by social.example.com"
        );
    }
    e.finish();
    let rows = rows(&out);
    let denied = rows_of(&rows, &app.path)
        .into_iter()
        .filter(|r| r["verdict"] == "denied" && r["rule_id"] == "no-social")
        .count();
    assert_eq!(
        denied,
        usize::from(ROUNDS),
        "each denial in the trail, by the deny entry"
    );
}

/// A reply without its id (the test server puts the query's in front): one question
/// for `qname` (wire format), then `answers` (records, already encoded).
fn reply(qname: &[u8], answers: &[Vec<u8>]) -> Vec<u8> {
    let mut m = vec![0x81, 0x80, 0, 1];
    m.extend_from_slice(&(answers.len() as u16).to_be_bytes());
    m.extend_from_slice(&[0, 0, 0, 0]);
    m.extend_from_slice(qname);
    m.extend_from_slice(&[0, 1, 0, 1]);
    for a in answers {
        m.extend_from_slice(a);
    }
    m
}

/// An A record owned by `owner` (wire format, or a compression pointer).
fn a_record(owner: &[u8], addr: [u8; 4]) -> Vec<u8> {
    let mut r = owner.to_vec();
    r.extend_from_slice(&[0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
    r.extend_from_slice(&addr);
    r
}

/// Where the first answer starts in a message for `qname` (the header is 12 bytes).
fn first_answer_at(qname: &[u8]) -> u16 {
    12 + qname.len() as u16 + 4
}

#[test]
fn hostile_replies_add_no_evidence_and_a_good_one_does() {
    require_root();
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let q = wire_name("q.example.com");
    let at = first_answer_at(&q);
    let ptr = |to: u16| vec![0xc0 | (to >> 8) as u8, to as u8];
    let long_label = format!("{}.example.com", "a".repeat(64));
    let long_name = format!("{}.example.com", vec!["b".repeat(60); 5].join("."));
    let many: Vec<Vec<u8>> = (1..=100)
        .map(|i| a_record(&ptr(12), [127, 1, 7, i]))
        .collect();
    let hostile: Vec<(&str, Vec<u8>, [u8; 4])> = vec![
        // A record owned by a pointer to itself: a compression loop.
        (
            "loop.example.com",
            reply(&q, &[a_record(&ptr(at), [127, 1, 6, 1])]),
            [127, 1, 6, 1],
        ),
        // A pointer forward, past itself.
        (
            "fwd.example.com",
            reply(&q, &[a_record(&ptr(at + 40), [127, 1, 6, 2])]),
            [127, 1, 6, 2],
        ),
        // A label of 64 bytes (the length byte's top bits set: no such label type).
        (
            "label.example.com",
            reply(
                &wire_name(&long_label),
                &[a_record(&ptr(12), [127, 1, 6, 3])],
            ),
            [127, 1, 6, 3],
        ),
        // A name over 253 characters.
        (
            "long.example.com",
            reply(
                &wire_name(&long_name),
                &[a_record(&ptr(12), [127, 1, 6, 4])],
            ),
            [127, 1, 6, 4],
        ),
        // An answer for another name than the question's.
        (
            "other.example.com",
            reply(
                &q,
                &[a_record(&wire_name("evil.example.com"), [127, 1, 6, 5])],
            ),
            [127, 1, 6, 5],
        ),
        // Cut in the middle of its record.
        (
            "cut.example.com",
            {
                let mut r = reply(&q, &[a_record(&ptr(12), [127, 1, 6, 6])]);
                r.truncate(r.len() - 3);
                r
            },
            [127, 1, 6, 6],
        ),
        // 100 answers: read up to the kernel's bound, the rest skipped (not an error).
        ("many.example.com", reply(&q, &many), [127, 1, 7, 100]),
    ];
    let mut names: Vec<(&str, Answer)> = hostile
        .iter()
        .map(|(n, bytes, _)| (*n, Answer::Raw(bytes.clone())))
        .collect();
    // The good one: the same question, answered properly.
    names.push((
        "q.example.com",
        Answer::Rounds(vec![vec![Ipv4Addr::new(127, 1, 8, 1)]]),
    ));
    let _server = DnsServer::start(SERVER.parse().unwrap(), names, 60);
    let app = settled_copy(Path::new(PROBE), tmp.path(), "asker");
    let rules = r#"
[[app.allow]]
id = "example"
protocol = "tcp"
host = "*.example.com"
ports = 9
"#;
    let text = policy(&app.sha256, &app.path, rules);
    let e = Enforced::start(tmp.path(), &text, "pinhole-names-hostile", &[]);
    let cg = &e.cg;
    for (name, _, addr) in &hostile {
        let ask = format!("dns:{name}@{SERVER}");
        let connect = format!("tcp:{}:9", Ipv4Addr::from(*addr));
        let got = probe_in(cg, &app.path, &[ask.as_str(), connect.as_str()]);
        assert_eq!(got[1], "EPERM", "{name}: {got:?}");
    }
    // The first of the 100 answers counts.
    let got = probe_in(
        cg,
        &app.path,
        &[&format!("dns:many.example.com@{SERVER}"), "tcp:127.1.7.1:9"],
    );
    assert_eq!(got[1], "ECONNREFUSED", "{got:?}");
    let got = probe_in(
        cg,
        &app.path,
        &[&format!("dns:q.example.com@{SERVER}"), "tcp:127.1.8.1:9"],
    );
    assert_eq!(got[1], "ECONNREFUSED", "a good answer allows: {got:?}");

    // What `enforce names` and `status` show.
    let names = pinhole(["enforce", "names", "--format", "json"]);
    let said = String::from_utf8_lossy(&names.stdout);
    assert!(names.status.success(), "{said}");
    let listed: serde_json::Value = serde_json::from_str(&said).unwrap();
    let has = |name: &str, addr: &str| {
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["receiver"] == "client" && v["name"] == name && v["address"] == addr)
    };
    assert!(has("q.example.com", "127.1.8.1"), "{said}");
    assert!(has("q.example.com", "127.1.7.1"), "{said}");
    assert!(!has("evil.example.com", "127.1.6.5"), "{said}");
    let status = pinhole(["enforce", "status", "--format", "json"]);
    let st: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let n = &st["names"];
    assert!(n["unreadable_replies"].as_u64().unwrap() >= 4, "{n}");
    assert!(n["answers_skipped"].as_u64().unwrap() >= 1, "{n}");
    assert_eq!(n["evidence_entries_evicted"], 0, "{n}");
    e.finish();
}

/// Regression: a TCP answer longer than the kernel's copy (1,232 bytes) was discarded
/// whole, so a name whose answer needed TCP (too big for a datagram) never vouched
/// for any address. Now the records before the cut count.
#[test]
fn a_tcp_answer_longer_than_the_copy_counts_up_to_the_cut() {
    require_root();
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let long = format!(
        "{}.{}.{}.example.com",
        "a".repeat(60),
        "b".repeat(60),
        "c".repeat(60)
    );
    let q = wire_name(&long);
    // Each record repeats the long owner (no compression): 212 bytes; the fifth one
    // crosses byte 1,232.
    let records: Vec<Vec<u8>> = (1..=6).map(|i| a_record(&q, [127, 1, 9, i])).collect();
    let bytes = reply(&q, &records);
    assert!(bytes.len() > 1232 && 14 + q.len() + 4 + 4 * 212 < 1232);
    let _server = DnsServer::start(
        SERVER.parse().unwrap(),
        vec![("big.example.com", Answer::Raw(bytes))],
        60,
    );
    let app = settled_copy(Path::new(PROBE), tmp.path(), "big-asker");
    let rules = r#"
[[app.allow]]
id = "dns-tcp"
protocol = "tcp"
dst = "127.0.10.53/32"
ports = 53

[[app.allow]]
id = "example"
protocol = "tcp"
host = "*.example.com"
ports = 9
"#;
    let text = policy(&app.sha256, &app.path, rules);
    let e = Enforced::start(tmp.path(), &text, "pinhole-names-tcp", &[]);
    let cg = &e.cg;
    let ask = format!("dnstcp:big.example.com@{SERVER}");
    let got = probe_in(
        cg,
        &app.path,
        &[
            &ask,
            "tcp:127.1.9.1:9",
            "tcp:127.1.9.4:9",
            "tcp:127.1.9.5:9",
        ],
    );
    assert_eq!(
        &got[1..],
        ["ECONNREFUSED", "ECONNREFUSED", "EPERM"],
        "{got:?}"
    );
    e.finish();
}

/// A blocklist file denies by name in the kernel, and after a reload (from another
/// directory than the first policy's) the evidence already learnt still counts, judged
/// by the new policy: no answer is needed again.
#[test]
fn blocklists_deny_and_evidence_outlives_a_reload() {
    require_root();
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let ip = |d: u8| Ipv4Addr::new(127, 1, 10, d);
    let _server = DnsServer::start(
        SERVER.parse().unwrap(),
        vec![
            ("blocked.example.com", Answer::Rounds(vec![vec![ip(1)]])),
            ("fine.example.com", Answer::Rounds(vec![vec![ip(2)]])),
            ("late.example.com", Answer::Rounds(vec![vec![ip(3)]])),
        ],
        600,
    );
    let app = settled_copy(Path::new(PROBE), tmp.path(), "browser");
    let rules = r#"
[[app.allow]]
id = "example"
protocol = "tcp"
host = "*.example.com"
ports = 9
"#;
    let deny = "\n[[deny]]\nid = \"blocklist\"\nfile = \"block.txt\"\nformat = \"hosts\"\n";
    let first =
        policy(&app.sha256, &app.path, rules).replacen("\n[[app]]", &format!("{deny}\n[[app]]"), 1);
    fs::write(
        tmp.path().join("block.txt"),
        "0.0.0.0 blocked.example.com\n",
    )
    .unwrap();
    let e = Enforced::start(tmp.path(), &first, "pinhole-names-block", &[]);
    let cg = &e.cg;
    let dns = |n: &str| format!("dns:{n}.example.com@{SERVER}");
    let got = probe_in(
        cg,
        &app.path,
        &[
            &dns("blocked"),
            "tcp:127.1.10.1:9",
            &dns("fine"),
            "tcp:127.1.10.2:9",
        ],
    );
    assert_eq!(
        (got[1].as_str(), got[3].as_str()),
        ("EPERM", "ECONNREFUSED")
    );

    // The second policy, elsewhere, blocks `late` too (its own list) and not `blocked`.
    let other = tempfile::tempdir().unwrap();
    fs::write(other.path().join("block.txt"), "0.0.0.0 late.example.com\n").unwrap();
    let second = other.path().join("policy.toml");
    fs::write(&second, &first).unwrap();
    reload_ok(&second);
    // No new answers for `blocked` and `fine`: the evidence from before the reload.
    let got = probe_in(
        cg,
        &app.path,
        &[
            "tcp:127.1.10.1:9",
            "tcp:127.1.10.2:9",
            &dns("late"),
            "tcp:127.1.10.3:9",
        ],
    );
    assert_eq!(got[0], "ECONNREFUSED", "no longer blocked");
    assert_eq!(got[1], "ECONNREFUSED", "still vouched for");
    assert_eq!(got[3], "EPERM", "blocked by the new list");
    e.finish();
}

/// The evidence is bounded: past `--name-capacity` (receiver, address) entries the
/// least recently used go, past 8 names for one address the one expiring first goes;
/// both are counted in `status`, never silent.
#[test]
fn evidence_evictions_are_counted() {
    require_root();
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let names: Vec<String> = (0..10).map(|i| format!("n{i}.example.com")).collect();
    let mut served: Vec<(&str, Answer)> = vec![("many.example.com", rotating(40))];
    for n in &names {
        served.push((
            n.as_str(),
            Answer::Rounds(vec![vec![Ipv4Addr::new(127, 1, 21, 1)]]),
        ));
    }
    let _server = DnsServer::start(SERVER.parse().unwrap(), served, 600);
    let app = settled_copy(Path::new(PROBE), tmp.path(), "counter");
    let rules = "\n[[app.allow]]\nid = \"example\"\nprotocol = \"tcp\"\nhost = \"*.example.com\"\nports = 9\n";
    let text = policy(&app.sha256, &app.path, rules);
    let e = Enforced::start(
        tmp.path(),
        &text,
        "pinhole-names-evict",
        &[
            "--name-capacity",
            "16",
            "--metrics-listen",
            "127.0.0.1:39736",
        ],
    );
    let mut asks: Vec<String> = (0..40)
        .map(|_| format!("dns:many.example.com@{SERVER}"))
        .collect();
    asks.extend(names.iter().map(|n| format!("dns:{n}@{SERVER}")));
    let args: Vec<&str> = asks.iter().map(String::as_str).collect();
    probe_in(&e.cg, &app.path, &args);

    let status = pinhole(["enforce", "status", "--format", "json"]);
    let st: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let n = &st["names"];
    let (added, live) = (
        n["evidence_entries_added"].as_u64().unwrap(),
        n["evidence_entries_live"].as_u64().unwrap(),
    );
    assert_eq!(added, 41, "{n}");
    assert!(live <= 16, "{n}");
    assert_eq!(
        n["evidence_entries_evicted"].as_u64().unwrap(),
        added - live,
        "{n}"
    );
    assert_eq!(
        n["names_pushed_out"], 2,
        "10 names for one address, 8 kept: {n}"
    );
    let listed = pinhole(["enforce", "names", "--app", "client", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let shared = v
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["address"] == "127.1.21.1")
        .count();
    assert!(shared <= 8, "{v}");
    let table = pinhole(["enforce", "names"]);
    assert!(String::from_utf8_lossy(&table.stdout).contains("RECEIVER"));
    // The same counts in the metrics (refreshed every 10 s).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15) * slowdown();
    let mut text = scrape(39736);
    while !text.contains("pinhole_name_evidence_added_total 41") {
        assert!(std::time::Instant::now() < deadline, "{text}");
        std::thread::sleep(std::time::Duration::from_millis(500));
        text = scrape(39736);
    }
    let evicted = format!("pinhole_name_evidence_evicted_total {}", added - live);
    assert!(text.contains(&evicted), "{evicted}: {text}");
    assert!(text.contains("pinhole_names_pushed_out_total 2"), "{text}");
    e.finish();
}
