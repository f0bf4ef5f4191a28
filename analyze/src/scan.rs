//! Aggregates record batches into a `Summary`. Strings are handled as integer ids
//! taken from the Arrow dictionaries, and rows arrive in time order, so last-value
//! checks spare most set inserts: the per-row cost is one hash lookup of (app,
//! protocol, address, port). A scan of one file (or part) is absorbed into a worker's
//! scan when it is done: memory follows distinct applications and destinations, and
//! strings become `String`s once per worker, not once per file.

use std::net::IpAddr;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, UInt16Type, UInt32Type};
use arrow_array::{Array, ArrowPrimitiveType, PrimitiveArray, RecordBatch};
use pinhole_recorder::event::{hook_has_destination, hook_is_dns, hook_is_marker};
use rustc_hash::FxHashMap;

use crate::small_set::SmallSet;
use crate::summary::{AppKey, AppSummary, DestKey, DestSummary, Summary};
use crate::timeline::HourRun;

const HOUR_NS: i64 = 3_600_000_000_000;
const DAY_NS: i64 = 24 * HOUR_NS;

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum LocalApp {
    Hash([u8; 32]),
    Unresolved { status: u32, exe: u32 },
}

struct LocalDest {
    events: u64,
    first_ns: i64,
    last_ns: i64,
    hours: SmallSet<i64>,
    days: SmallSet<i64>,
    users: SmallSet<u32>,
    /// Interned `dst_name`s.
    names: SmallSet<u32>,
    last_hour: i64,
    last_uid: u32,
    last_name: u32,
}

impl LocalDest {
    fn new(t: i64) -> Self {
        LocalDest {
            events: 0,
            first_ns: t,
            last_ns: t,
            hours: SmallSet::default(),
            days: SmallSet::default(),
            users: SmallSet::default(),
            names: SmallSet::default(),
            last_hour: i64::MIN,
            last_uid: u32::MAX,
            last_name: u32::MAX,
        }
    }

    /// Adds `o`, whose name ids `tr` translates into this scan's.
    fn absorb(&mut self, o: &LocalDest, tr: impl Fn(u32) -> u32) {
        self.events += o.events;
        self.first_ns = self.first_ns.min(o.first_ns);
        self.last_ns = self.last_ns.max(o.last_ns);
        self.hours.extend(&o.hours);
        self.days.extend(&o.days);
        self.users.extend(&o.users);
        for &n in o.names.iter() {
            self.names.insert(tr(n));
        }
    }

    fn summary(&self, name: impl Fn(u32) -> String) -> DestSummary {
        DestSummary {
            events: self.events,
            first_ns: self.first_ns,
            last_ns: self.last_ns,
            days: self.days.iter().copied().collect(),
            hours: self.hours.iter().copied().collect(),
            users: self.users.iter().copied().collect(),
            names: self.names.iter().map(|&n| name(n)).collect(),
        }
    }
}

#[derive(Default)]
struct LocalAppAcc {
    events: u64,
    first_ns: i64,
    last_ns: i64,
    paths: Vec<u32>,
    comms: Vec<u32>,
    users: Vec<u32>,
    pids: Vec<u32>,
    without_destination: u64,
    activity: HourRun,
}

/// Remembers the last value pushed so runs of equal values cost one comparison; a
/// full vector is deduplicated before it grows, so it stays within twice the distinct
/// values however many rows alternate between them.
fn push_new(v: &mut Vec<u32>, x: u32) {
    if v.last() != Some(&x) {
        if v.len() == v.capacity() && v.len() >= 64 {
            v.sort_unstable();
            v.dedup();
        }
        v.push(x);
    }
}

#[derive(Default)]
pub(crate) struct FileScan {
    strings: Vec<String>,
    string_ids: FxHashMap<String, u32>,
    apps: Vec<(LocalApp, LocalAppAcc)>,
    app_ids: FxHashMap<LocalApp, u32>,
    dests: FxHashMap<(u32, u32, u32, u16), LocalDest>,
    /// (denied, would-deny) connects by (app, protocol, address, port).
    refused: FxHashMap<(u32, u32, u32, u16), [u64; 2]>,
    events: u64,
    first_ns: Option<i64>,
    last_ns: Option<i64>,
}

/// A column whose presence and type the file check has already established.
fn primitive<'a, T: ArrowPrimitiveType>(
    batch: &'a RecordBatch,
    name: &str,
) -> &'a PrimitiveArray<T> {
    batch
        .column_by_name(name)
        .expect("validated")
        .as_primitive::<T>()
}

/// The protocol names the recorder writes (`tcp`, `udp`, `icmp`, `ipproto-N`).
fn known_protocol(p: &str) -> bool {
    matches!(p, "tcp" | "udp" | "icmp")
        || p.strip_prefix("ipproto-")
            .is_some_and(|n| n.parse::<u8>().is_ok())
}

/// Time window applied row by row (files are pruned by partition date before).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Window {
    pub since_ns: Option<i64>,
    pub until_ns: Option<i64>,
    pub learn_would_deny: bool,
    pub learn_denied: bool,
}

/// What a row's verdict makes of it: evidence, or a refusal counted apart.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Teaches {
    Yes,
    Denied,
    WouldDeny,
}

fn teaches(verdict: &str, learn_would_deny: bool, learn_denied: bool) -> Teaches {
    match verdict {
        "denied" if !learn_denied => Teaches::Denied,
        "would-deny" if !learn_would_deny => Teaches::WouldDeny,
        _ => Teaches::Yes,
    }
}

impl FileScan {
    fn intern(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.string_ids.get(s) {
            return id;
        }
        let id = self.strings.len() as u32;
        self.strings.push(s.to_owned());
        self.string_ids.insert(s.to_owned(), id);
        id
    }

    /// Interns a dictionary column's values; the result maps each key to an id.
    fn dict_ids(&mut self, batch: &RecordBatch, col: &str) -> (Vec<u32>, Vec<Option<u32>>) {
        let dict = batch
            .column_by_name(col)
            .expect("validated")
            .as_dictionary::<Int32Type>();
        let values = dict.values().as_string::<i32>();
        let map: Vec<u32> = (0..values.len())
            .map(|i| self.intern(values.value(i)))
            .collect();
        let keys = dict.keys();
        let ids = (0..dict.len())
            .map(|i| dict.is_valid(i).then(|| map[keys.value(i) as usize]))
            .collect();
        (map, ids)
    }

    /// Events counted so far.
    pub fn events(&self) -> u64 {
        self.events
    }

    pub fn add_batch(&mut self, batch: &RecordBatch, window: Window) {
        // Nanoseconds, from `ts_ns` or (schema 1) `ts`; checked when the file opened.
        let ts = pinhole_recorder::readback::event_times(batch).expect("validated");
        let pid = primitive::<UInt32Type>(batch, "pid");
        let uid = primitive::<UInt32Type>(batch, "uid");
        let port = primitive::<UInt16Type>(batch, "dst_port");
        let sha = batch
            .column_by_name("exe_sha256")
            .expect("validated")
            .as_fixed_size_binary();
        let (_, comm) = self.dict_ids(batch, "comm");
        let (_, path) = self.dict_ids(batch, "exe_path");
        let (_, status) = self.dict_ids(batch, "exe_status");
        let (_, proto) = self.dict_ids(batch, "protocol");
        let (_, addr) = self.dict_ids(batch, "dst_addr");
        let (hook_names, hook) = self.dict_ids(batch, "hook");
        // Read only where some row is an enforcer's decision (see `scan_part`).
        let (verdict_names, verdict) = match batch.column_by_name("verdict") {
            Some(_) => self.dict_ids(batch, "verdict"),
            None => (Vec::new(), vec![None; batch.num_rows()]),
        };
        let teach: Vec<Teaches> = verdict_names
            .iter()
            .map(|&id| {
                teaches(
                    &self.strings[id as usize],
                    window.learn_would_deny,
                    window.learn_denied,
                )
            })
            .collect();
        // What an enforcer decided, whatever learning makes of it: 1 denied, 2 would-deny.
        let decided: Vec<u8> = verdict_names
            .iter()
            .map(|&id| match self.strings[id as usize].as_str() {
                "denied" => 1,
                "would-deny" => 2,
                _ => 0,
            })
            .collect();
        let verdict_keys = batch
            .column_by_name("verdict")
            .map(|c| c.as_dictionary::<Int32Type>().keys().clone());
        // Absent from files of schema 1: no names there.
        let dst_name = match batch.column_by_name("dst_name") {
            Some(_) => self.dict_ids(batch, "dst_name").1,
            None => vec![None; batch.num_rows()],
        };
        // Only connects and sends have a destination; a raw or ping socket being opened,
        // or an enforcer's source-route decision, is counted apart.
        let to_destination: Vec<bool> = hook_names
            .iter()
            .map(|&id| hook_has_destination(&self.strings[id as usize]))
            .collect();
        // Rows that mark when recording started or stopped are no one's events, and DNS
        // answers are evidence about names, not traffic of their own.
        let marker: Vec<bool> = hook_names
            .iter()
            .map(|&id| {
                let hook = &self.strings[id as usize];
                hook_is_marker(hook) || hook_is_dns(hook)
            })
            .collect();
        let hook_keys = batch
            .column_by_name("hook")
            .expect("validated")
            .as_dictionary::<Int32Type>()
            .keys()
            .clone();

        let mut last: Option<([u8; 32], u32)> = None;
        for i in 0..batch.num_rows() {
            let t = ts[i];
            if window.since_ns.is_some_and(|s| t < s) || window.until_ns.is_some_and(|u| t >= u) {
                continue;
            }
            if hook[i].is_some() && marker[hook_keys.value(i) as usize] {
                continue;
            }
            let comm_id = comm[i].unwrap_or(0);
            let app = if sha.is_valid(i) {
                let h: [u8; 32] = sha.value(i).try_into().expect("32-byte hash");
                match last {
                    Some((lh, id)) if lh == h => id,
                    _ => {
                        let id = self.app_id(LocalApp::Hash(h));
                        last = Some((h, id));
                        id
                    }
                }
            } else {
                // Without a hash, the app is what ran: its path, else its name.
                let exe = path[i].unwrap_or(comm_id);
                self.app_id(LocalApp::Unresolved {
                    status: status[i].unwrap_or(0),
                    exe,
                })
            };
            self.events += 1;
            self.first_ns = Some(self.first_ns.map_or(t, |f| f.min(t)));
            self.last_ns = Some(self.last_ns.map_or(t, |l| l.max(t)));
            let u = uid.value(i);
            let acc = &mut self.apps[app as usize].1;
            if acc.events == 0 {
                acc.first_ns = t;
                acc.last_ns = t;
            }
            acc.events += 1;
            acc.first_ns = acc.first_ns.min(t);
            acc.last_ns = acc.last_ns.max(t);
            if let Some(p) = path[i] {
                push_new(&mut acc.paths, p);
            }
            push_new(&mut acc.comms, comm_id);
            push_new(&mut acc.users, u);
            push_new(&mut acc.pids, pid.value(i));
            let counts = acc.activity.event(t.div_euclid(HOUR_NS));
            if let (Some(k), Some(_)) = (&verdict_keys, verdict[i]) {
                match decided[k.value(i) as usize] {
                    1 => counts.denied += 1,
                    2 => counts.would_deny += 1,
                    _ => {}
                }
            }
            if hook[i].is_some() && !to_destination[hook_keys.value(i) as usize] {
                acc.without_destination += 1;
                continue;
            }

            let key = (
                app,
                proto[i].unwrap_or(0),
                addr[i].unwrap_or(0),
                port.value(i),
            );
            let verdict_class = match (&verdict_keys, verdict[i]) {
                (Some(k), Some(_)) => teach[k.value(i) as usize],
                _ => Teaches::Yes,
            };
            if verdict_class != Teaches::Yes {
                let r = self.refused.entry(key).or_default();
                r[usize::from(verdict_class == Teaches::WouldDeny)] += 1;
                continue;
            }
            let d = self.dests.entry(key).or_insert_with(|| LocalDest::new(t));
            d.events += 1;
            d.first_ns = d.first_ns.min(t);
            d.last_ns = d.last_ns.max(t);
            let hour = t.div_euclid(HOUR_NS);
            if hour != d.last_hour {
                d.last_hour = hour;
                d.hours.insert(hour);
                d.days.insert(t.div_euclid(DAY_NS));
            }
            if u != d.last_uid {
                d.last_uid = u;
                d.users.insert(u);
            }
            if let Some(n) = dst_name[i].filter(|&n| n != d.last_name) {
                d.last_name = n;
                d.names.insert(n);
            }
        }
    }

    fn app_id(&mut self, key: LocalApp) -> u32 {
        if let Some(&id) = self.app_ids.get(&key) {
            return id;
        }
        let id = self.apps.len() as u32;
        self.apps.push((key, LocalAppAcc::default()));
        self.app_ids.insert(key, id);
        id
    }

    /// Adds a finished scan of another file (or part) to this one, translating its ids.
    pub fn absorb(&mut self, o: FileScan) {
        let strings: Vec<u32> = o.strings.iter().map(|s| self.intern(s)).collect();
        let tr = |id: u32| strings[id as usize];
        self.events += o.events;
        self.first_ns = match (self.first_ns, o.first_ns) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.last_ns = match (self.last_ns, o.last_ns) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        let mut apps = Vec::with_capacity(o.apps.len());
        for (local, acc) in o.apps {
            let key = match local {
                LocalApp::Hash(h) => LocalApp::Hash(h),
                LocalApp::Unresolved { status, exe } => LocalApp::Unresolved {
                    status: tr(status),
                    exe: tr(exe),
                },
            };
            let id = self.app_id(key);
            apps.push(id);
            let mine = &mut self.apps[id as usize].1;
            if acc.events == 0 {
                continue;
            }
            if mine.events == 0 {
                (mine.first_ns, mine.last_ns) = (acc.first_ns, acc.last_ns);
            }
            mine.events += acc.events;
            mine.first_ns = mine.first_ns.min(acc.first_ns);
            mine.last_ns = mine.last_ns.max(acc.last_ns);
            mine.without_destination += acc.without_destination;
            acc.paths
                .iter()
                .for_each(|&p| push_new(&mut mine.paths, tr(p)));
            acc.comms
                .iter()
                .for_each(|&c| push_new(&mut mine.comms, tr(c)));
            acc.users.iter().for_each(|&u| push_new(&mut mine.users, u));
            acc.pids.iter().for_each(|&p| push_new(&mut mine.pids, p));
            mine.activity.absorb(&acc.activity);
        }
        for ((app, proto, addr, port), r) in o.refused {
            let key = (apps[app as usize], tr(proto), tr(addr), port);
            let mine = self.refused.entry(key).or_default();
            mine[0] += r[0];
            mine[1] += r[1];
        }
        for ((app, proto, addr, port), d) in o.dests {
            let key = (apps[app as usize], tr(proto), tr(addr), port);
            match self.dests.entry(key) {
                std::collections::hash_map::Entry::Occupied(mut e) => e.get_mut().absorb(&d, tr),
                std::collections::hash_map::Entry::Vacant(e) => {
                    let mut mine = LocalDest::new(d.first_ns);
                    mine.absorb(&d, tr);
                    e.insert(mine);
                }
            }
        }
    }

    /// Converts ids back to strings: cost proportional to distinct pairs.
    pub fn finish(self) -> Summary {
        let s = |id: u32| self.strings.get(id as usize).cloned().unwrap_or_default();
        let mut out = Summary {
            events: self.events,
            first_ns: self.first_ns,
            last_ns: self.last_ns,
            ..Default::default()
        };
        let mut keys = Vec::with_capacity(self.apps.len());
        for (local, acc) in &self.apps {
            let key = match *local {
                LocalApp::Hash(h) => AppKey::Hash(h),
                LocalApp::Unresolved { status, exe } => AppKey::Unresolved {
                    status: s(status),
                    exe: s(exe),
                },
            };
            keys.push(key.clone());
            if acc.events == 0 {
                continue;
            }
            let app = AppSummary {
                events: acc.events,
                first_ns: acc.first_ns,
                last_ns: acc.last_ns,
                paths: acc.paths.iter().map(|&p| s(p)).collect(),
                comms: acc.comms.iter().map(|&c| s(c)).collect(),
                users: acc.users.iter().copied().collect(),
                pids: acc.pids.iter().copied().collect(),
                dests: Default::default(),
                unreadable: 0,
                without_destination: acc.without_destination,
                refused: Default::default(),
                activity: acc.activity.folded(),
            };
            out.apps.entry(key).or_default().merge(app);
        }
        for ((app, proto, addr, port), [denied, would_deny]) in self.refused {
            let app = out
                .apps
                .get_mut(&keys[app as usize])
                .expect("app of a destination");
            let (protocol, ip) = (s(proto), s(addr).parse::<IpAddr>());
            let Ok(ip) = ip.ok().filter(|_| known_protocol(&protocol)).ok_or(()) else {
                app.unreadable += denied + would_deny;
                continue;
            };
            let r = app
                .refused
                .entry(DestKey {
                    protocol,
                    addr: ip,
                    port,
                })
                .or_default();
            r.denied += denied;
            r.would_deny += would_deny;
        }
        for ((app, proto, addr, port), d) in self.dests {
            let app = out
                .apps
                .get_mut(&keys[app as usize])
                .expect("app of a destination");
            let (protocol, ip) = (s(proto), s(addr).parse::<IpAddr>());
            let Ok(ip) = ip.ok().filter(|_| known_protocol(&protocol)).ok_or(()) else {
                app.unreadable += d.events;
                continue;
            };
            let key = DestKey {
                protocol,
                addr: ip,
                port,
            };
            match app.dests.entry(key) {
                std::collections::btree_map::Entry::Occupied(mut e) => {
                    e.get_mut().merge(d.summary(s))
                }
                std::collections::btree_map::Entry::Vacant(e) => {
                    e.insert(d.summary(s));
                }
            }
        }
        out
    }
}
