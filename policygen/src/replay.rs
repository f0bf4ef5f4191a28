//! Replays recorded events against a policy with the matcher's semantics, and reports
//! per app what it would have denied. Streams the dataset column by column; decisions
//! are memoised per distinct (binary, protocol, address, port) of each file.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, TimestampNanosecondType, UInt16Type};
use arrow_array::Array;
use pinhole_analyze::dataset::{dataset_files, read_columns};
use pinhole_analyze::guard::decode_guarded;
use pinhole_analyze::{AnalyzeError, Filter};
use pinhole_recorder::event::hook_has_destination;

use crate::dns_evidence::DnsEvidence;
use crate::matcher::{Matcher, Query, Verdict};
use crate::policy::{Policy, Protocol};

/// A distinct (binary, protocol, address, port) of the run...
type MemoKey = (Option<[u8; 32]>, String, String, u16);
/// ...and what was decided for it: (app name, denied, destination text).
type Memo = (Option<String>, bool, String);

const COLUMNS: [&str; 6] = [
    "ts",
    "exe_sha256",
    "protocol",
    "dst_addr",
    "dst_port",
    "hook",
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

/// Replays every event of the dataset within `filter` against `policy`.
pub fn replay(
    policy: &Policy,
    dataset: &Path,
    filter: &Filter,
) -> Result<ReplayReport, AnalyzeError> {
    let matcher = Matcher::new(policy);
    let files = dataset_files(dataset, filter)?;
    let mut report = ReplayReport {
        files: files.len(),
        ..Default::default()
    };
    // The trail holds no DNS answers yet (schema 2 records connects only), so the
    // evidence stays empty: name rules and deny lists match nothing, and decisions do
    // not depend on time, which is what lets one memo serve the whole run.
    let evidence = DnsEvidence::new(policy.names.lifetime);
    let mut memo: HashMap<MemoKey, Memo> = HashMap::new();
    for path in &files {
        decode_guarded(path, || {
            replay_file(path, filter, &matcher, &evidence, &mut memo, &mut report)
        })?;
    }
    Ok(report)
}

/// Adds one file's events within `filter` to `report`.
fn replay_file(
    path: &Path,
    filter: &Filter,
    matcher: &Matcher<'_>,
    evidence: &DnsEvidence,
    memo: &mut HashMap<MemoKey, Memo>,
    report: &mut ReplayReport,
) -> Result<(), AnalyzeError> {
    for batch in read_columns(path, &COLUMNS)? {
        let batch = batch.map_err(|e| AnalyzeError::Corrupt {
            path: path.to_owned(),
            detail: e.to_string(),
        })?;
        let ts = batch.column(0).as_primitive::<TimestampNanosecondType>();
        let sha = batch.column(1).as_fixed_size_binary();
        let proto = batch.column(2).as_dictionary::<Int32Type>();
        let addr = batch.column(3).as_dictionary::<Int32Type>();
        let port = batch.column(4).as_primitive::<UInt16Type>();
        let proto_values = proto.values().as_string::<i32>();
        let addr_values = addr.values().as_string::<i32>();
        let hook = batch.column(5).as_dictionary::<Int32Type>();
        // Only connects and sends have a destination to replay.
        let to_destination: Vec<bool> = (0..hook.values().len())
            .map(|k| hook_has_destination(hook.values().as_string::<i32>().value(k)))
            .collect();
        for i in 0..batch.num_rows() {
            if hook.is_valid(i) && !to_destination[hook.keys().value(i) as usize] {
                continue;
            }
            let t = ts.value(i);
            if filter.since_ns.is_some_and(|s| t < s) || filter.until_ns.is_some_and(|u| t >= u) {
                continue;
            }
            let h: Option<[u8; 32]> = sha
                .is_valid(i)
                .then(|| sha.value(i).try_into().expect("32 bytes"));
            let p = proto_values.value(proto.keys().value(i) as usize);
            let a = addr_values.value(addr.keys().value(i) as usize);
            let key = (h, p.to_owned(), a.to_owned(), port.value(i));
            let (app, denied, dest) = memo.entry(key).or_insert_with_key(|(h, p, a, port)| {
                decide(matcher, evidence, h.as_ref(), p, a, *port, t)
            });
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

fn decide(
    m: &Matcher<'_>,
    evidence: &DnsEvidence,
    sha: Option<&[u8; 32]>,
    proto: &str,
    addr: &str,
    port: u16,
    t_ns: i64,
) -> (Option<String>, bool, String) {
    let dest = format!("{proto} {addr}:{port}");
    let (Some(protocol), Ok(ip)) = (Protocol::parse(proto), addr.parse::<IpAddr>()) else {
        // A protocol no rule can name: the app's default applies as if nothing matched.
        let d = m.decide(
            &Query {
                sha256: sha,
                protocol: Protocol::Icmp,
                addr: IpAddr::from([0, 0, 0, 0]),
                port: 0,
                t_ns,
            },
            evidence,
        );
        return (
            d.app.map(|a| a.name.clone()),
            d.verdict != Verdict::Allowed,
            dest,
        );
    };
    let d = m.decide(
        &Query {
            sha256: sha,
            protocol,
            addr: ip,
            port,
            t_ns,
        },
        evidence,
    );
    (
        d.app.map(|a| a.name.clone()),
        d.verdict != Verdict::Allowed,
        dest,
    )
}
