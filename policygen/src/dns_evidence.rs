//! DNS evidence: which names an address was given for, to whom, and until when. Replay
//! builds it from the DNS answers in the trail, in time order; the matcher asks it
//! which names vouch for a connect's address.
//!
//! An answer vouches for each address it gives, under the question's name and every
//! CNAME target on the way to it, from when it was received until
//! `max(ttl, min_ttl) + grace` seconds later. A later answer for the same names to the
//! same receiver extends an entry that is still valid, or starts a new one.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use pinhole_recorder::event::canonical_addr as canonical;

use crate::names::observed;

const NS: i64 = 1_000_000_000;

/// Who received an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Receiver {
    /// A process running this binary (None: a binary whose hash is unknown).
    App(Option<[u8; 32]>),
    /// The host's own resolver (systemd-resolved, nscd, dnsmasq) asked upstream for
    /// whichever process asked it.
    Host,
}

/// Whose answers count for an app's connects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scope {
    /// Only answers this app's own processes received.
    #[default]
    App,
    /// Those, and answers the host's resolver received (hosts where applications
    /// resolve through systemd-resolved's socket or nscd send no DNS packet themselves).
    Host,
}

impl Scope {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "app" => Some(Scope::App),
            "host" => Some(Scope::Host),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::App => "app",
            Scope::Host => "host",
        }
    }
}

/// How long an answer counts past its receipt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime {
    /// Answers count for at least this long, whatever their TTL (seconds).
    pub min_ttl: u32,
    /// And this much longer, so that a reconnect just after expiry is not cut (seconds).
    pub grace: u32,
}

impl Default for Lifetime {
    fn default() -> Self {
        Lifetime {
            min_ttl: 60,
            grace: 300,
        }
    }
}

/// One DNS answer as the trail records it.
#[derive(Debug, Clone)]
pub struct Answer<'a> {
    pub t_ns: i64,
    pub receiver: Receiver,
    /// The question's name, then each CNAME target in order.
    pub names: &'a [String],
    pub addrs: &'a [IpAddr],
    /// The smallest TTL along the chain to the addresses, in seconds.
    pub ttl: u32,
}

#[derive(Debug, Clone)]
struct Entry {
    names: Arc<[String]>,
    from_ns: i64,
    until_ns: i64,
}

/// Evidence by address and receiver (a connect looks up its own, and the host's).
#[derive(Debug, Default)]
pub struct DnsEvidence {
    lifetime: Lifetime,
    by_addr: HashMap<(IpAddr, Receiver), Vec<Entry>>,
}

impl DnsEvidence {
    pub fn new(lifetime: Lifetime) -> Self {
        DnsEvidence {
            lifetime,
            by_addr: HashMap::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.by_addr.is_empty()
    }

    pub fn add(&mut self, a: &Answer<'_>) {
        if a.names.is_empty() {
            return;
        }
        let names: Arc<[String]> = a.names.iter().map(|n| observed(n)).collect();
        let life = i64::from(a.ttl.max(self.lifetime.min_ttl)) + i64::from(self.lifetime.grace);
        let until = a.t_ns.saturating_add(life.saturating_mul(NS));
        for &addr in a.addrs {
            let entries = self
                .by_addr
                .entry((canonical(addr), a.receiver))
                .or_default();
            match entries.iter_mut().find(|e| e.names == names) {
                Some(e) if a.t_ns <= e.until_ns => e.until_ns = e.until_ns.max(until),
                Some(e) => (e.from_ns, e.until_ns) = (a.t_ns, until),
                None => entries.push(Entry {
                    names: names.clone(),
                    from_ns: a.t_ns,
                    until_ns: until,
                }),
            }
        }
    }

    /// Drops what no longer counts at `now_ns` (answers are added in time order).
    pub fn sweep(&mut self, now_ns: i64) {
        self.by_addr.retain(|_, entries| {
            entries.retain(|e| e.until_ns > now_ns);
            !entries.is_empty()
        });
    }

    /// The names that vouch for `addr` for a connect at `t_ns` by `app` (a binary's
    /// hash; None when unknown) under `scope`.
    pub fn names_for<'s>(
        &'s self,
        app: Option<&[u8; 32]>,
        scope: Scope,
        addr: IpAddr,
        t_ns: i64,
    ) -> impl Iterator<Item = &'s str> + 's {
        let addr = canonical(addr);
        let own = self.by_addr.get(&(addr, Receiver::App(app.copied())));
        let host = match scope {
            Scope::Host => self.by_addr.get(&(addr, Receiver::Host)),
            Scope::App => None,
        };
        own.into_iter()
            .chain(host)
            .flatten()
            .filter(move |e| e.from_ns <= t_ns && t_ns < e.until_ns)
            .flat_map(|e| e.names.iter().map(String::as_str))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: [u8; 32] = [0xaa; 32];
    const B: [u8; 32] = [0xbb; 32];

    fn names(ev: &DnsEvidence, app: &[u8; 32], scope: Scope, addr: &str, t: i64) -> Vec<String> {
        let mut v: Vec<String> = ev
            .names_for(Some(app), scope, addr.parse().unwrap(), t * NS)
            .map(str::to_owned)
            .collect();
        v.sort();
        v
    }

    #[test]
    fn an_answer_vouches_for_its_names_to_its_receiver_for_its_lifetime() {
        let mut ev = DnsEvidence::new(Lifetime {
            min_ttl: 30,
            grace: 10,
        });
        let chain = vec![
            "WWW.example.com.".to_string(),
            "edge.cdn.example".to_string(),
        ];
        let addrs = ["192.0.2.1".parse().unwrap(), "2001:db8::1".parse().unwrap()];
        ev.add(&Answer {
            t_ns: 100 * NS,
            receiver: Receiver::App(Some(A)),
            names: &chain,
            addrs: &addrs,
            ttl: 5,
        });
        assert_eq!(
            names(&ev, &A, Scope::App, "192.0.2.1", 100),
            ["edge.cdn.example", "www.example.com"]
        );
        assert_eq!(names(&ev, &A, Scope::App, "::ffff:192.0.2.1", 139).len(), 2);
        // max(5, 30) + 10 = 40 s.
        assert!(names(&ev, &A, Scope::App, "192.0.2.1", 140).is_empty());
        assert!(
            names(&ev, &A, Scope::App, "192.0.2.1", 99).is_empty(),
            "not before it came"
        );
        assert!(
            names(&ev, &B, Scope::Host, "192.0.2.1", 100).is_empty(),
            "not to another app"
        );
        assert!(names(&ev, &A, Scope::App, "192.0.2.2", 100).is_empty());
    }

    #[test]
    fn the_hosts_resolver_counts_only_in_host_scope() {
        let mut ev = DnsEvidence::default();
        let n = vec!["api.example.com".to_string()];
        ev.add(&Answer {
            t_ns: 0,
            receiver: Receiver::Host,
            names: &n,
            addrs: &["192.0.2.9".parse().unwrap()],
            ttl: 600,
        });
        assert!(names(&ev, &A, Scope::App, "192.0.2.9", 1).is_empty());
        assert_eq!(
            names(&ev, &A, Scope::Host, "192.0.2.9", 1),
            ["api.example.com"]
        );
    }

    #[test]
    fn a_repeated_answer_extends_or_restarts_its_entry() {
        let mut ev = DnsEvidence::new(Lifetime {
            min_ttl: 0,
            grace: 0,
        });
        let n = vec!["a.example.com".to_string()];
        let addr = ["192.0.2.3".parse().unwrap()];
        let add = |ev: &mut DnsEvidence, t: i64| {
            ev.add(&Answer {
                t_ns: t * NS,
                receiver: Receiver::App(Some(A)),
                names: &n,
                addrs: &addr,
                ttl: 10,
            })
        };
        // In time order, as replay reads the trail.
        add(&mut ev, 0);
        add(&mut ev, 5);
        assert_eq!(names(&ev, &A, Scope::App, "192.0.2.3", 14).len(), 1);
        assert!(
            names(&ev, &A, Scope::App, "192.0.2.3", 20).is_empty(),
            "expired at 15"
        );
        add(&mut ev, 30);
        assert!(names(&ev, &A, Scope::App, "192.0.2.3", 29).is_empty());
        assert_eq!(names(&ev, &A, Scope::App, "192.0.2.3", 35).len(), 1);
        assert_eq!(
            ev.by_addr[&(addr[0], Receiver::App(Some(A)))].len(),
            1,
            "one entry, not one per answer"
        );
    }
}
