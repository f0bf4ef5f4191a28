//! The mergeable summary: per application and destination, counts, time bounds and
//! the sets that distinct counts need. Summaries of disjoint parts of a dataset (files,
//! hosts) merge into exactly the summary of the whole.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// One application: an executable identity. Rows without a hash are never merged into
/// a hashed app; they are grouped by why they have none and by what ran.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AppKey {
    Hash([u8; 32]),
    Unresolved { status: String, exe: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DestKey {
    pub protocol: String,
    pub addr: IpAddr,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestSummary {
    pub events: u64,
    pub first_ns: i64,
    pub last_ns: i64,
    /// Days and hours since the epoch (UTC) in which the destination was used.
    pub days: BTreeSet<i64>,
    pub hours: BTreeSet<i64>,
    pub users: BTreeSet<u32>,
    /// Names DNS answers gave this address for, to this app (`dst_name`).
    pub names: BTreeSet<String>,
}

impl DestSummary {
    pub fn new(ts: i64) -> Self {
        DestSummary {
            events: 0,
            first_ns: ts,
            last_ns: ts,
            days: BTreeSet::new(),
            hours: BTreeSet::new(),
            users: BTreeSet::new(),
            names: BTreeSet::new(),
        }
    }

    pub fn merge(&mut self, o: DestSummary) {
        self.events += o.events;
        self.first_ns = self.first_ns.min(o.first_ns);
        self.last_ns = self.last_ns.max(o.last_ns);
        self.days.extend(o.days);
        self.hours.extend(o.hours);
        self.users.extend(o.users);
        self.names.extend(o.names);
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AppSummary {
    pub events: u64,
    pub first_ns: i64,
    pub last_ns: i64,
    pub paths: BTreeSet<String>,
    pub comms: BTreeSet<String>,
    pub users: BTreeSet<u32>,
    pub pids: BTreeSet<u32>,
    pub dests: BTreeMap<DestKey, DestSummary>,
    /// Events whose protocol or destination address could not be understood: counted
    /// here, never silently dropped, never turned into a destination.
    pub unreadable: u64,
    /// Events with no destination: a raw or ping socket opened, a source route refused.
    pub without_destination: u64,
    /// Connects an enforcer denied (or would have, in audit mode), by destination:
    /// never learnt from (would-deny ones only with `Filter::learn_would_deny`).
    pub refused: BTreeMap<DestKey, Refused>,
    /// Events, denials and would-denies per hour since the epoch (UTC).
    pub activity: BTreeMap<i64, crate::timeline::Counts>,
}

/// Decisions of an enforcer against one destination that teach nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Refused {
    pub denied: u64,
    pub would_deny: u64,
}

impl AppSummary {
    pub fn merge(&mut self, o: AppSummary) {
        if self.events == 0 {
            self.first_ns = o.first_ns;
            self.last_ns = o.last_ns;
        } else if o.events > 0 {
            self.first_ns = self.first_ns.min(o.first_ns);
            self.last_ns = self.last_ns.max(o.last_ns);
        }
        self.events += o.events;
        self.unreadable += o.unreadable;
        self.without_destination += o.without_destination;
        for (k, r) in o.refused {
            let mine = self.refused.entry(k).or_default();
            mine.denied += r.denied;
            mine.would_deny += r.would_deny;
        }
        crate::timeline::merge(&mut self.activity, o.activity);
        self.paths.extend(o.paths);
        self.comms.extend(o.comms);
        self.users.extend(o.users);
        self.pids.extend(o.pids);
        for (k, d) in o.dests {
            match self.dests.entry(k) {
                std::collections::btree_map::Entry::Occupied(mut e) => e.get_mut().merge(d),
                std::collections::btree_map::Entry::Vacant(e) => {
                    e.insert(d);
                }
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Summary {
    pub events: u64,
    pub first_ns: Option<i64>,
    pub last_ns: Option<i64>,
    pub apps: BTreeMap<AppKey, AppSummary>,
}

impl Summary {
    pub fn merge(&mut self, o: Summary) {
        self.events += o.events;
        self.first_ns = min_opt(self.first_ns, o.first_ns);
        self.last_ns = max_opt(self.last_ns, o.last_ns);
        for (k, a) in o.apps {
            self.apps.entry(k).or_default().merge(a);
        }
    }
}

fn min_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    }
}

fn max_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, y) => x.or(y),
    }
}
