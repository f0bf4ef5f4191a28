//! Replays recorded events against a policy with the matcher's semantics, and reports
//! per app what it would have denied. Streams the dataset column by column, in time
//! order: DNS answer rows become the evidence name rules and deny lists are decided
//! with. Decisions are memoised per distinct (binary, protocol, address, port, vouching
//! names and, for a policy with scoped rules, uid, gid, cgroup and the expiries passed)
//! for the run: nothing else decides.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, UInt16Type, UInt32Type};
use arrow_array::{Array, RecordBatch};
use pinhole_analyze::dataset::{dataset_files, read_columns};
use pinhole_analyze::guard::decode_guarded;
use pinhole_analyze::{AnalyzeError, Filter};
use pinhole_recorder::event::{hook_has_destination, hook_is_dns};
use pinhole_recorder::schema::{col, schema};

use crate::dns_evidence::{Answer, DnsEvidence, Receiver};
use crate::matcher::{Matcher, Query, Verdict};
use crate::policy::{Policy, Protocol};
use crate::rule_scope::Subject;

/// Who connected and how many rule expiries had passed (only for scoped policies)...
type WhoKey = Option<(u32, u32, Option<String>, usize)>;
/// ...and a distinct (binary, protocol, address, port) of the run...
type MemoKey = (Option<[u8; 32]>, String, String, u16, WhoKey);
/// ...and what was decided for it: (app name, denied, destination text).
type Memo = (Option<String>, bool, String);

const COLUMNS: [&str; 8] = [
    "ts",
    "exe_sha256",
    "protocol",
    "dst_addr",
    "dst_port",
    "hook",
    "uid",
    "gid",
];

/// A DNS answer row's columns (absent from files of schema 1).
const DNS_COLUMNS: [&str; 5] = [
    col::DNS_QNAME,
    col::DNS_CNAMES,
    col::DNS_ADDRS,
    col::DNS_TTL,
    col::DNS_SCOPE,
];

/// What replay found for one app of the policy (or for unknown binaries).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AppReplay {
    pub events: u64,
    /// Events the policy would deny (`denied` or `would-deny`).
    pub denied: u64,
    /// Denied destinations and how often: "tcp 10.0.0.1:443".
    pub denied_dests: BTreeMap<String, u64>,
}

impl AppReplay {
    pub fn rate(&self) -> f64 {
        if self.events == 0 {
            0.0
        } else {
            self.denied as f64 / self.events as f64
        }
    }

    /// The most denied destinations, most first.
    pub fn top(&self, n: usize) -> Vec<(&str, u64)> {
        let mut v: Vec<(&str, u64)> = self
            .denied_dests
            .iter()
            .map(|(k, c)| (k.as_str(), *c))
            .collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        v.truncate(n);
        v
    }
}

#[derive(Debug, Default)]
pub struct ReplayReport {
    /// Per app name; events of binaries the policy does not name are under `None`.
    pub apps: BTreeMap<Option<String>, AppReplay>,
    pub events: u64,
    pub files: usize,
    /// DNS answers the dataset held, the evidence for name rules and deny lists.
    pub dns_answers: u64,
}

impl ReplayReport {
    pub fn denied(&self) -> u64 {
        self.apps.values().map(|a| a.denied).sum()
    }

    /// Share of all replayed events that the policy would deny.
    pub fn deny_rate(&self) -> f64 {
        if self.events == 0 {
            0.0
        } else {
            self.denied() as f64 / self.events as f64
        }
    }
}

/// How far before a replay's window DNS answers are looked for (TTLs beyond an hour
/// are rare; an answer older than this is not seen by a replay that starts later).
pub const LOOKBACK_S: i64 = 3600;

/// Replays every event of the dataset within `filter` against `policy`.
pub fn replay(
    policy: &Policy,
    dataset: &Path,
    filter: &Filter,
) -> Result<ReplayReport, AnalyzeError> {
    let matcher = Matcher::new(policy);
    // Answers received before the window still vouch for connects inside it: with
    // names, files from up to `LOOKBACK` (plus the policy's minimum TTL and grace)
    // earlier are read for their answers.
    let files = match (policy.uses_names(), filter.since_ns) {
        (true, Some(since)) => {
            let life = policy.names.lifetime;
            let back = LOOKBACK_S + i64::from(life.min_ttl) + i64::from(life.grace);
            let wider = Filter {
                since_ns: Some(since.saturating_sub(back * 1_000_000_000)),
                ..*filter
            };
            dataset_files(dataset, &wider)?
        }
        _ => dataset_files(dataset, filter)?,
    };
    let mut report = ReplayReport {
        files: files.len(),
        ..Default::default()
    };
    let mut run = Run {
        matcher: &matcher,
        lifetime: policy.names.lifetime,
        evidence: HashMap::new(),
        none: DnsEvidence::new(policy.names.lifetime),
        memo: HashMap::new(),
        memo_named: HashMap::new(),
        names: policy.uses_names(),
        expiries: policy
            .uses_scopes()
            .then(|| crate::rule_scope::RuleScope::expiry_instants(policy.scopes())),
    };
    for path in &files {
        decode_guarded(path, || replay_file(path, filter, &mut run, &mut report))?;
    }
    Ok(report)
}

/// What replay carries from file to file.
struct Run<'m, 'p> {
    matcher: &'m Matcher<'p>,
    lifetime: crate::dns_evidence::Lifetime,
    /// Per recording host: an answer one host received vouches for nothing on another.
    evidence: HashMap<String, DnsEvidence>,
    /// For hosts that received no answer.
    none: DnsEvidence,
    memo: HashMap<MemoKey, Memo>,
    /// The same with the vouching names (joined by newlines), where some vouched.
    memo_named: HashMap<(MemoKey, String), Memo>,
    /// Whether the policy has name rules or deny lists (answers matter).
    names: bool,
    /// With scoped rules: their expiry instants, sorted (who connects and when matter).
    expiries: Option<Vec<i64>>,
}

/// A batch's DNS answer columns, when the file has them with the schema's types.
struct DnsColumns<'b> {
    qname: &'b arrow_array::DictionaryArray<Int32Type>,
    cnames: &'b arrow_array::ListArray,
    addrs: &'b arrow_array::ListArray,
    ttl: &'b arrow_array::PrimitiveArray<UInt32Type>,
    scope: &'b arrow_array::DictionaryArray<Int32Type>,
}

impl<'b> DnsColumns<'b> {
    fn of(batch: &'b RecordBatch, path: &Path) -> Result<Option<Self>, AnalyzeError> {
        let expected = schema();
        let mut cols = Vec::with_capacity(DNS_COLUMNS.len());
        for name in DNS_COLUMNS {
            let Some(c) = batch.column_by_name(name) else {
                return Ok(None);
            };
            let want = expected.field_with_name(name).expect("known").data_type();
            if c.data_type() != want {
                return Err(AnalyzeError::WrongSchema {
                    path: path.to_owned(),
                    column: name.into(),
                    problem: format!("has type {}, expected {want}", c.data_type()),
                });
            }
            cols.push(c);
        }
        Ok(Some(DnsColumns {
            qname: cols[0].as_dictionary(),
            cnames: cols[1].as_list(),
            addrs: cols[2].as_list(),
            ttl: cols[3].as_primitive(),
            scope: cols[4].as_dictionary(),
        }))
    }

    /// Row `i`'s answer as evidence for `sha`'s connects (or the host's).
    fn add(&self, i: usize, sha: Option<[u8; 32]>, t_ns: i64, evidence: &mut DnsEvidence) {
        if !self.qname.is_valid(i) || !self.addrs.is_valid(i) {
            return;
        }
        let text = |d: &arrow_array::DictionaryArray<Int32Type>, i: usize| {
            d.values()
                .as_string::<i32>()
                .value(d.keys().value(i) as usize)
                .to_owned()
        };
        let list = |l: &arrow_array::ListArray| -> Vec<String> {
            let v = l.value(i);
            let v = v.as_string::<i32>();
            (0..v.len()).map(|k| v.value(k).to_owned()).collect()
        };
        let mut names = vec![text(self.qname, i)];
        if self.cnames.is_valid(i) {
            names.extend(list(self.cnames));
        }
        let addrs: Vec<IpAddr> = list(self.addrs)
            .iter()
            .filter_map(|a| a.parse().ok())
            .collect();
        let host = self.scope.is_valid(i) && text(self.scope, i) == "host";
        evidence.add(&Answer {
            t_ns,
            receiver: if host {
                Receiver::Host
            } else {
                Receiver::App(sha)
            },
            names: &names,
            addrs: &addrs,
            ttl: if self.ttl.is_valid(i) {
                self.ttl.value(i)
            } else {
                0
            },
        });
    }
}

/// Adds one file's events within `filter` to `report`.
fn replay_file(
    path: &Path,
    filter: &Filter,
    run: &mut Run<'_, '_>,
    report: &mut ReplayReport,
) -> Result<(), AnalyzeError> {
    let wanted: Vec<&str> = COLUMNS
        .iter()
        .chain(&DNS_COLUMNS)
        .copied()
        .chain([col::TS_NS, col::HOST, col::CGROUP])
        .collect();
    for batch in read_columns(path, &wanted)? {
        let batch = batch.map_err(|e| AnalyzeError::Corrupt {
            path: path.to_owned(),
            detail: e.to_string(),
        })?;
        let ts = pinhole_recorder::readback::event_times(&batch).ok_or_else(|| {
            AnalyzeError::Corrupt {
                path: path.to_owned(),
                detail: "no usable time column".into(),
            }
        })?;
        // Checked by `read_columns`: present, with the schema's types.
        let column = |name: &str| batch.column_by_name(name).expect("validated");
        let sha = column("exe_sha256").as_fixed_size_binary();
        let proto = column("protocol").as_dictionary::<Int32Type>();
        let addr = column("dst_addr").as_dictionary::<Int32Type>();
        let port = column("dst_port").as_primitive::<UInt16Type>();
        let proto_values = proto.values().as_string::<i32>();
        let addr_values = addr.values().as_string::<i32>();
        let hook = column("hook").as_dictionary::<Int32Type>();
        let uid = column("uid").as_primitive::<UInt32Type>();
        let gid = column("gid").as_primitive::<UInt32Type>();
        let cgroup = batch
            .column_by_name(col::CGROUP)
            .and_then(|c| c.as_dictionary_opt::<Int32Type>());
        let cgroup_of = |i: usize| -> Option<&str> {
            cgroup.filter(|c| c.is_valid(i)).map(|c| {
                c.values()
                    .as_string::<i32>()
                    .value(c.keys().value(i) as usize)
            })
        };
        let host = batch
            .column_by_name(col::HOST)
            .and_then(|c| c.as_dictionary_opt::<Int32Type>());
        let host_of = |i: usize| -> &str {
            host.filter(|h| h.is_valid(i)).map_or("", |h| {
                h.values()
                    .as_string::<i32>()
                    .value(h.keys().value(i) as usize)
            })
        };
        let dns = DnsColumns::of(&batch, path)?;
        let hook_names = hook.values().as_string::<i32>();
        // Only connects and sends have a destination to replay; answers are evidence.
        let to_destination: Vec<bool> = (0..hook_names.len())
            .map(|k| hook_has_destination(hook_names.value(k)))
            .collect();
        let is_answer: Vec<bool> = (0..hook_names.len())
            .map(|k| hook_is_dns(hook_names.value(k)))
            .collect();
        for i in 0..batch.num_rows() {
            let t = ts[i];
            let h: Option<[u8; 32]> = sha
                .is_valid(i)
                .then(|| sha.value(i).try_into().expect("32 bytes"));
            if hook.is_valid(i) && is_answer[hook.keys().value(i) as usize] {
                // Answers before the window still count for connects inside it.
                if let (true, Some(d)) = (run.names, &dns) {
                    if filter.until_ns.is_none_or(|u| t < u) {
                        let lifetime = run.lifetime;
                        let evidence = run
                            .evidence
                            .entry(host_of(i).to_owned())
                            .or_insert_with(|| DnsEvidence::new(lifetime));
                        d.add(i, h, t, evidence);
                        report.dns_answers += 1;
                    }
                }
                continue;
            }
            if hook.is_valid(i) && !to_destination[hook.keys().value(i) as usize] {
                continue;
            }
            if filter.since_ns.is_some_and(|s| t < s) || filter.until_ns.is_some_and(|u| t >= u) {
                continue;
            }
            let p = proto_values.value(proto.keys().value(i) as usize);
            let a = addr_values.value(addr.keys().value(i) as usize);
            let evidence = match run.names {
                true => run.evidence.get(host_of(i)).unwrap_or(&run.none),
                false => &run.none,
            };
            let names = vouching(run.matcher, evidence, h.as_ref(), a, t);
            // A decision depends on the event's binary, destination, vouching names
            // and (scoped rules) who and when only: remembered by them for the run.
            let matcher = run.matcher;
            let who = run.expiries.as_ref().map(|e| {
                let epoch = e.partition_point(|&x| x <= t);
                (
                    uid.value(i),
                    gid.value(i),
                    cgroup_of(i).map(str::to_owned),
                    epoch,
                )
            });
            let key = (h, p.to_owned(), a.to_owned(), port.value(i), who);
            let (app, denied, dest) = match names.is_empty() {
                true => run
                    .memo
                    .entry(key)
                    .or_insert_with_key(|k| decide(matcher, &[], k, t)),
                false => run
                    .memo_named
                    .entry((key, names.join("\n")))
                    .or_insert_with_key(|(k, _)| decide(matcher, &names, k, t)),
            };
            let entry = report.apps.entry(app.clone()).or_default();
            entry.events += 1;
            if *denied {
                entry.denied += 1;
                *entry.denied_dests.entry(dest.clone()).or_default() += 1;
            }
            report.events += 1;
        }
    }
    Ok(())
}

/// The names vouching for a connect to `addr` at `t_ns` (none without names).
fn vouching<'e>(
    m: &Matcher<'_>,
    evidence: &'e DnsEvidence,
    sha: Option<&[u8; 32]>,
    addr: &str,
    t_ns: i64,
) -> Vec<&'e str> {
    if evidence.is_empty() {
        return Vec::new();
    }
    let Ok(ip) = addr.parse::<IpAddr>() else {
        return Vec::new();
    };
    let q = Query {
        sha256: sha,
        protocol: Protocol::Tcp,
        addr: ip,
        port: 0,
        t_ns,
        subject: Subject::default(),
    };
    m.vouching(&q, evidence)
}

/// The decision for memo key `k` at `t_ns` (any time with the same expiries passed).
fn decide(
    m: &Matcher<'_>,
    names: &[&str],
    k: &MemoKey,
    t_ns: i64,
) -> (Option<String>, bool, String) {
    let (sha, proto, addr, port, who) = k;
    let (sha, port) = (sha.as_ref(), *port);
    let subject = who
        .as_ref()
        .map_or_else(Subject::default, |(uid, gid, cgroup, _)| Subject {
            uid: Some(*uid),
            gid: Some(*gid),
            cgroup: cgroup.as_deref(),
        });
    let dest = format!("{proto} {addr}:{port}");
    let (Some(protocol), Ok(ip)) = (Protocol::parse(proto), addr.parse::<IpAddr>()) else {
        // A protocol no rule can name: the app's default applies as if nothing matched.
        let d = m.decide_vouched(
            &Query {
                sha256: sha,
                protocol: Protocol::Icmp,
                addr: IpAddr::from([0, 0, 0, 0]),
                port: 0,
                t_ns,
                subject,
            },
            names,
        );
        return (
            d.app.map(|a| a.name.clone()),
            d.verdict != Verdict::Allowed,
            dest,
        );
    };
    let d = m.decide_vouched(
        &Query {
            sha256: sha,
            protocol,
            addr: ip,
            port,
            t_ns,
            subject,
        },
        names,
    );
    (
        d.app.map(|a| a.name.clone()),
        d.verdict != Verdict::Allowed,
        dest,
    )
}
