//! Synthetic datasets in the recorder's exact format, written through the real sink so
//! the format cannot drift. Realistic shape: Zipf-popular apps and destinations,
//! destinations clustered in /24 and /64 networks, a daily rhythm, several days, and a
//! few injected anomalies (a binary whose hash changes, a one-off destination, a port
//! scan). The same configuration and seed give the same events.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Zipf};

use crate::error::SinkError;
use crate::event::{ExeRef, ExeStatus, Hook, Protocol, Verdict};
use crate::sink::{Sink, SinkConfig};
use crate::Event;

const DAY_NS: i64 = 86_400_000_000_000;
/// Ports real clients use, most common first.
const PORTS: [u16; 12] = [443, 80, 53, 8080, 5432, 6379, 22, 123, 9200, 3306, 8443, 25];

#[derive(Debug, Clone)]
pub struct SynthConfig {
    pub events: u64,
    pub apps: usize,
    /// Distinct destinations across all apps.
    pub destinations: usize,
    pub days: u32,
    /// First day, as nanoseconds since the epoch at its midnight UTC.
    pub start_ns: i64,
    /// Zipf exponent for app and destination popularity.
    pub skew: f64,
    pub seed: u64,
    pub host: String,
    pub anomalies: bool,
    /// The day (0-based) the anomalies happen on; None: the last day.
    pub anomaly_day: Option<u32>,
    /// Publish about this many files (a file every `events / files` events), as a long
    /// recording with short rotation would; None: by size only.
    pub files: Option<u64>,
    /// Flush every this many events (a recorder flushes once a second).
    pub flush_every: Option<u64>,
    /// Never publish: leave everything in one staged segment, as a recorder killed
    /// before its first rotation would (for recovery tests and benchmarks).
    pub leave_staged: bool,
    /// The share of TCP destinations reached by name: an app's connect to one is
    /// preceded by a `dns_answer` row for it (at most one per app, name and TTL of 300 s)
    /// and carries the name in `dst_name`. 0: a dataset without names.
    pub names: f64,
    /// The share of connects and sends an enforcer refused: half `denied`, half
    /// `would-deny` (chosen by event index, so other datasets stay as they were).
    pub refused: f64,
    /// Sign the trail's checkpoints with this key, as `record --signing-key` does.
    pub signing_key: Option<crate::evidence::SigningKey>,
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig {
            events: 100_000,
            apps: 50,
            destinations: 2_000,
            days: 3,
            start_ns: 1_795_305_600_000_000_000, // 2026-11-22
            skew: 1.1,
            seed: 1,
            host: "synth-1".into(),
            anomalies: true,
            anomaly_day: None,
            files: None,
            flush_every: None,
            leave_staged: false,
            names: 0.0,
            refused: 0.0,
            signing_key: None,
        }
    }
}

/// The TTL of synthetic answers, in seconds.
const ANSWER_TTL: u32 = 300;

/// The name destination `i` is reached by, when it has one: chosen by index, not by
/// the random stream, so that datasets without names stay as they were.
fn name_of(i: usize, dest: &Dest, share: f64) -> Option<String> {
    let pick = (i as u64).wrapping_mul(2_654_435_761) % 1000;
    (dest.protocol == Protocol::Tcp && (pick as f64) < share * 1000.0)
        .then(|| format!("h{i}.svc{}.example{}.com", i % 300, i % 40))
}

struct App {
    sha256: [u8; 32],
    path: String,
    comm: String,
    uid: u32,
    /// Indexes into the destination pool, most used first.
    dests: Vec<usize>,
}

#[derive(Clone, Copy)]
struct Dest {
    addr: IpAddr,
    port: u16,
    protocol: Protocol,
}

/// What was written, for tests to compare against.
#[derive(Debug, Default)]
pub struct SynthReport {
    pub events: u64,
    /// The app whose binary changes on the last day: (old sha256, new sha256).
    pub rehashed: Option<([u8; 32], [u8; 32])>,
    /// The app (sha256) that talks once to a destination nobody else uses.
    pub one_off: Option<([u8; 32], IpAddr, u16)>,
    /// The app (sha256) that scans ports 1..=1024 of one address.
    pub scanner: Option<([u8; 32], IpAddr)>,
}

fn digest(rng: &mut ChaCha8Rng) -> [u8; 32] {
    let mut d = [0u8; 32];
    rng.fill(&mut d);
    d
}

fn destination_pool(rng: &mut ChaCha8Rng, n: usize) -> Vec<Dest> {
    (0..n)
        .map(|i| {
            // Networks of 8 to 64 neighbours, as CDNs and clusters give.
            let net = (i / 32) as u32;
            let host = (i % 32) as u32 + 1;
            let kind = rng.random_range(0..100);
            let (addr, protocol): (IpAddr, Protocol) = match kind {
                0..=54 => (
                    Ipv4Addr::from(0x2d00_0000 + (net << 8) + host).into(),
                    Protocol::Tcp,
                ),
                55..=69 => (
                    Ipv4Addr::from(0x0a00_0000 + (net << 8) + host).into(),
                    Protocol::Tcp,
                ),
                70..=79 => {
                    let seg = net as u16;
                    (
                        Ipv6Addr::new(0x2001, 0xdb8, seg, 0, 0, 0, 0, host as u16).into(),
                        Protocol::Tcp,
                    )
                }
                80..=91 => (
                    Ipv4Addr::from(0x0a00_0000 + (net << 8) + host).into(),
                    Protocol::Udp,
                ),
                _ => (Ipv4Addr::new(127, 0, 0, 1).into(), Protocol::Tcp),
            };
            let port = if protocol == Protocol::Udp {
                if rng.random_bool(0.7) {
                    53
                } else {
                    123
                }
            } else {
                PORTS[rng
                    .random_range(0..PORTS.len())
                    .min(rng.random_range(0..PORTS.len()))]
            };
            Dest {
                addr,
                port,
                protocol,
            }
        })
        .collect()
}

fn apps(rng: &mut ChaCha8Rng, n: usize, pool: usize) -> Vec<App> {
    let zipf = Zipf::new(pool as f64, 1.0).expect("pool is not empty");
    (0..n)
        .map(|i| {
            let k = 1 + (rng.random_range(0..40) * rng.random_range(1..5)).min(pool - 1);
            let mut dests: Vec<usize> = (0..k).map(|_| zipf.sample(rng) as usize - 1).collect();
            dests.sort_unstable();
            dests.dedup();
            App {
                sha256: digest(rng),
                path: format!("/usr/bin/app-{i}"),
                comm: format!("app-{i}"),
                uid: [0, 33, 1000, 1001][rng.random_range(0..4)],
                dests,
            }
        })
        .collect()
}

/// A time of day with more traffic in working hours.
fn time_of_day(rng: &mut ChaCha8Rng) -> i64 {
    let hour = if rng.random_bool(0.7) {
        rng.random_range(8..19)
    } else {
        rng.random_range(0..24)
    };
    hour * 3_600_000_000_000 + rng.random_range(0..3_600_000_000_000)
}

/// Writes a dataset into `out` (which must not hold another writer's dataset).
pub fn generate(cfg: &SynthConfig, out: &Path) -> Result<SynthReport, SinkError> {
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let pool = destination_pool(&mut rng, cfg.destinations.max(1));
    let mut apps = apps(&mut rng, cfg.apps.max(1), pool.len());
    let app_zipf = Zipf::new(apps.len() as f64, cfg.skew).expect("apps is not empty");
    let mut sink_cfg = SinkConfig::new(out, cfg.host.clone());
    sink_cfg.signing_key = cfg.signing_key.clone();
    sink_cfg.rotate_bytes = if cfg.leave_staged { u64::MAX } else { 64 << 20 };
    if cfg.leave_staged {
        sink_cfg.rotate_interval = std::time::Duration::MAX;
    }
    let (mut sink, _) = Sink::open(sink_cfg)?;
    let mut report = SynthReport::default();
    let days = cfg.days.max(1) as i64;
    let per_day = cfg.events / days as u64;
    let mut pid_base = 1000u32;
    let rotate_every = cfg.files.map(|f| (cfg.events / f.max(1)).max(1));
    let names: Vec<Option<String>> = pool
        .iter()
        .enumerate()
        .map(|(i, d)| name_of(i, d, cfg.names))
        .collect();
    // When each (app, destination) last got an answer.
    let mut answered: std::collections::HashMap<(usize, usize), i64> = Default::default();

    let anomaly_day = cfg
        .anomaly_day
        .map_or(days - 1, |d| i64::from(d).min(days - 1));
    for day in 0..days {
        let last_day = day == days - 1;
        let anomalies_today = day == anomaly_day;
        if anomalies_today && cfg.anomalies && apps.len() > 1 {
            // A reinstall with other bytes: same path, new hash.
            let old = apps[1].sha256;
            apps[1].sha256 = digest(&mut rng);
            report.rehashed = Some((old, apps[1].sha256));
        }
        let midnight = cfg.start_ns + day * DAY_NS;
        let today = if last_day {
            cfg.events - per_day * (days as u64 - 1)
        } else {
            per_day
        };
        let mut times: Vec<i64> = (0..today)
            .map(|_| midnight + time_of_day(&mut rng))
            .collect();
        times.sort_unstable();
        for ts in times {
            let a = app_zipf.sample(&mut rng) as usize - 1;
            let app = &apps[a];
            let d = app.dests[Zipf::new(app.dests.len() as f64, cfg.skew)
                .expect("dests")
                .sample(&mut rng) as usize
                - 1];
            let dest = pool[d];
            let pid = pid_base + (a as u32) * 7 + (ts / 3_600_000_000_000 % 5) as u32;
            let name = names[d].as_deref();
            if let Some(n) = name {
                let last = answered.entry((a, d)).or_insert(i64::MIN);
                if ts.saturating_sub(*last) > i64::from(ANSWER_TTL) * 1_000_000_000 {
                    append_answer(&mut sink, ts - 1_000_000, app, pid, n, dest.addr)?;
                    *last = ts;
                    report.events += 1;
                }
            }
            let pick = report.events.wrapping_mul(2_654_435_761) % 1000;
            let verdict = match pick {
                p if (p as f64) >= cfg.refused * 1000.0 => Verdict::Observed,
                p if p % 2 == 0 => Verdict::Denied,
                _ => Verdict::WouldDeny,
            };
            let mut event = row(ts, app, pid, dest, name, None);
            event.verdict = verdict;
            sink.append(&event)?;
            report.events += 1;
            if rotate_every.is_some_and(|n| report.events % n == 0) {
                sink.rotate()?;
            }
            if cfg.flush_every.is_some_and(|n| report.events % n == 0) {
                sink.flush()?;
            }
        }
        pid_base += 10_000;
        if anomalies_today && cfg.anomalies && apps.len() > 3 {
            let noon = midnight + DAY_NS / 2;
            let one_off = Dest {
                addr: Ipv4Addr::new(198, 51, 100, 77).into(),
                port: 4444,
                protocol: Protocol::Tcp,
            };
            append(&mut sink, noon, &apps[2], pid_base, one_off, None)?;
            report.one_off = Some((apps[2].sha256, one_off.addr, one_off.port));
            let target: IpAddr = Ipv4Addr::new(10, 250, 0, 9).into();
            for port in 1..=1024u16 {
                let probe = Dest {
                    addr: target,
                    port,
                    protocol: Protocol::Tcp,
                };
                append(
                    &mut sink,
                    noon + 1_000_000 + i64::from(port) * 50_000,
                    &apps[3],
                    pid_base + 1,
                    probe,
                    None,
                )?;
            }
            report.scanner = Some((apps[3].sha256, target));
            report.events += 1025;
        }
    }
    if cfg.leave_staged {
        sink.flush()?;
        // As if killed: the segment stays staged (the lock goes with the process).
        std::mem::forget(sink);
        return Ok(report);
    }
    sink.close()?;
    Ok(report)
}

fn append(
    sink: &mut Sink,
    ts: i64,
    app: &App,
    pid: u32,
    dest: Dest,
    name: Option<&str>,
) -> Result<(), SinkError> {
    sink.append(&row(ts, app, pid, dest, name, None))
}

/// The `dns_answer` row of an app's query for `name`, answered with `addr`.
fn append_answer(
    sink: &mut Sink,
    ts: i64,
    app: &App,
    pid: u32,
    name: &str,
    addr: IpAddr,
) -> Result<(), SinkError> {
    let reply = crate::dns::DnsReply {
        qname: name.to_owned(),
        qtype: if addr.is_ipv4() { "A" } else { "AAAA" }.to_owned(),
        rcode: "NoError".to_owned(),
        cnames: Vec::new(),
        addrs: vec![addr],
        ttl: ANSWER_TTL,
        truncated: false,
    };
    let server = Dest {
        addr: Ipv4Addr::new(127, 0, 0, 53).into(),
        port: 53,
        protocol: Protocol::Udp,
    };
    let dns = crate::event::DnsFields {
        reply: &reply,
        host_scope: false,
    };
    sink.append(&row(ts, app, pid, server, None, Some(dns)))
}

/// One row of `app`'s: a connect (or send) to `dest`, or with `dns` a DNS answer.
fn row<'a>(
    ts: i64,
    app: &'a App,
    pid: u32,
    dest: Dest,
    name: Option<&'a str>,
    dns: Option<crate::event::DnsFields<'a>>,
) -> Event<'a> {
    let hook = match (&dns, dest.protocol) {
        (Some(_), _) => Hook::DnsAnswer,
        (None, Protocol::Udp) => Hook::Sendmsg,
        (None, _) => Hook::Connect,
    };
    Event {
        ts_ns: ts,
        pid,
        tid: pid,
        ppid: 1,
        uid: app.uid,
        gid: app.uid,
        comm: &app.comm,
        exe: ExeRef {
            path: Some(&app.path),
            sha256: Some(&app.sha256),
            status: ExeStatus::Ok,
            dev: 2049,
            ino: 1000 + pid as u64 % 97,
        },
        cgroup_id: 1,
        cgroup: None,
        netns: 4026531840,
        dst_addr: dest.addr,
        dst_port: dest.port,
        protocol: dest.protocol,
        hook,
        verdict: Verdict::Observed,
        sock_cookie: ts as u64 / 1000,
        rule_id: None,
        app: None,
        note: None,
        dst_name: name,
        dst_name_from_host: false,
        dns,
    }
}

/// The binary hash of `example_event`.
pub const EXAMPLE_SHA: [u8; 32] = [7; 32];

/// One plausible event (curl connecting to 10.1.2.3 on `port`), for tests and examples.
pub fn example_event(ts_ns: i64, port: u16) -> Event<'static> {
    Event {
        ts_ns,
        pid: 100,
        tid: 101,
        ppid: 1,
        uid: 1000,
        gid: 1000,
        comm: "curl",
        exe: ExeRef {
            path: Some("/usr/bin/curl"),
            sha256: Some(&EXAMPLE_SHA),
            status: ExeStatus::Ok,
            dev: 2049,
            ino: 42,
        },
        cgroup_id: 1,
        cgroup: None,
        netns: 4026531840,
        dst_addr: IpAddr::V6(Ipv4Addr::new(10, 1, 2, 3).to_ipv6_mapped()),
        dst_port: port,
        protocol: Protocol::Tcp,
        hook: Hook::Connect,
        verdict: Verdict::Observed,
        sock_cookie: ts_ns as u64,
        rule_id: None,
        app: None,
        note: None,
        dst_name: None,
        dst_name_from_host: false,
        dns: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_events_and_anomalies_present() {
        let cfg = SynthConfig {
            events: 3_000,
            apps: 10,
            destinations: 200,
            days: 2,
            ..Default::default()
        };
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let ra = generate(&cfg, a.path()).unwrap();
        let rb = generate(&cfg, b.path()).unwrap();
        assert_eq!(ra.events, 3_000 + 1025);
        assert_eq!(ra.rehashed, rb.rehashed);
        assert!(ra.one_off.is_some() && ra.scanner.is_some());
        let files = crate::layout::published_files(a.path()).unwrap();
        assert_eq!(files.len(), 2, "one file per day");
        assert!(files[1].to_string_lossy().contains("date=2026-11-23"));
    }
}
