//! The shared semantics cases (tests/cases/semantics.toml) against the Rust matcher.

use pinhole_policygen::check::{check, Limits};
use pinhole_policygen::compile::{compile, ipproto, TableModel};
use pinhole_policygen::dns_evidence::{Answer, DnsEvidence, Receiver};
use pinhole_policygen::matcher::{Matcher, Query};
use pinhole_policygen::rule_scope::Subject;
use pinhole_policygen::Protocol;

#[path = "cases/cases.rs"]
mod cases;

#[test]
fn every_semantics_case_holds() {
    let cases = cases::load();
    let (mut n, mut names) = (0, 0);
    for suite in cases.suite {
        let policy = check(&suite.policy, Limits::default())
            .unwrap_or_else(|d| panic!("{}: {d:?}", suite.name));
        let m = Matcher::new(&policy);
        let compiled = compile(&policy);
        let tables = TableModel::new(&compiled);
        let mut evidence = DnsEvidence::new(policy.names.lifetime);
        let mut answers = suite.answers.iter().peekable();
        for c in suite.events {
            while let Some(a) = answers.next_if(|a| a.t <= c.t) {
                let receiver = match a.receiver.as_str() {
                    "host" => Receiver::Host,
                    "" => Receiver::App(None),
                    h => {
                        let mut sha = [0u8; 32];
                        hex::decode_to_slice(h, &mut sha).unwrap();
                        Receiver::App(Some(sha))
                    }
                };
                let addrs: Vec<std::net::IpAddr> =
                    a.addrs.iter().map(|x| x.parse().unwrap()).collect();
                evidence.add(&Answer {
                    t_ns: a.t * 1_000_000_000,
                    receiver,
                    names: &a.names,
                    addrs: &addrs,
                    ttl: a.ttl,
                });
            }
            let mut sha = [0u8; 32];
            let has = !c.sha256.is_empty();
            if has {
                hex::decode_to_slice(&c.sha256, &mut sha).unwrap();
            }
            let q = Query {
                sha256: has.then_some(&sha),
                protocol: Protocol::parse(&c.protocol).unwrap(),
                addr: c.addr.parse().unwrap(),
                port: c.port,
                t_ns: c.t * 1_000_000_000,
                subject: Subject {
                    uid: Some(c.uid),
                    gid: Some(c.gid),
                    // "" is the suite's own cgroup: "/" as a policy names it.
                    cgroup: Some(if c.cgroup.is_empty() { "/" } else { &c.cgroup }),
                },
            };
            if c.kind == "source_route" {
                let d = m.decide_beyond_rules(q.sha256);
                assert_eq!(
                    (d.verdict.as_str(), d.rule.is_none()),
                    (c.verdict.as_str(), c.rule.is_empty()),
                    "{}: source route through {}",
                    suite.name,
                    c.addr
                );
                n += 1;
                continue;
            }
            let d = m.decide(&q, &evidence);
            let got = (d.verdict.as_str(), d.rule_id().unwrap_or(""));
            assert_eq!(
                got,
                (c.verdict.as_str(), c.rule.as_str()),
                "{}: {} {} port {} at {} s",
                suite.name,
                c.protocol,
                c.addr,
                c.port,
                c.t
            );
            n += 1;
            if policy.uses_names() {
                // The enforcer's tables hold addresses only: a policy with names is
                // refused by `pinhole enforce` until its kernel side lands (issue 11).
                names += 1;
                continue;
            }
            // The enforcer's tables, looked up the way the BPF program does.
            let t = tables.decide(
                q.sha256,
                ipproto(q.protocol),
                (q.addr, q.port),
                &q.subject,
                q.t_ns,
            );
            let t_rule = compiled.rule(t.rule).map_or("", |(_, id)| id);
            assert_eq!(
                (t.verdict.as_str(), t_rule),
                got,
                "tables, {}: {} {} port {}",
                suite.name,
                c.protocol,
                c.addr,
                c.port
            );
        }
    }
    assert_eq!((n, names), (69, 32));
}
