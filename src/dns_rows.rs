//! DNS answers in the trail: a captured reply becomes a `dns_answer` row, and the
//! answers an application received name the destinations of its later connects
//! (`dst_name`), by the policy semantics' rules for when an answer counts
//! (`pinhole_policygen::dns_evidence`, app scope, default lifetime).

use std::net::IpAddr;

use pinhole_policygen::dns_evidence::{Answer, DnsEvidence, Lifetime, Receiver, Scope};
use pinhole_recorder::dns::{parse_reply, DnsReply};

/// Where the usual host resolvers live on Debian and its relatives.
pub const DEFAULT_HOST_RESOLVERS: [&str; 5] = [
    "/usr/lib/systemd/systemd-resolved",
    "/usr/sbin/nscd",
    "/usr/sbin/dnsmasq",
    "/usr/sbin/unbound",
    "/usr/sbin/named",
];

/// The host resolvers' executables, as the resolver reports paths (symlinks followed).
pub struct HostResolvers(std::collections::HashSet<String>);

impl HostResolvers {
    pub fn new(paths: &[String]) -> Self {
        let canonical = paths.iter().flat_map(|p| {
            let real = std::fs::canonicalize(p)
                .ok()
                .map(|c| c.to_string_lossy().into_owned());
            std::iter::once(p.clone()).chain(real)
        });
        HostResolvers(canonical.collect())
    }

    pub fn contains(&self, path: Option<&str>) -> bool {
        path.is_some_and(|p| self.0.contains(p))
    }
}

/// Answers between two sweeps of expired evidence.
const SWEEP_EVERY: u64 = 4096;

/// The names each application's DNS answers gave to addresses, while they count.
pub struct NameBook {
    evidence: DnsEvidence,
    added: u64,
}

impl Default for NameBook {
    fn default() -> Self {
        NameBook {
            evidence: DnsEvidence::new(Lifetime::default()),
            added: 0,
        }
    }
}

/// A captured reply, read: what its row says, or why it could not be read.
pub enum ReadReply {
    Read(DnsReply),
    Unreadable(String),
}

/// Parses a captured DNS message; `cut` when the kernel copied only part of it.
pub fn read_reply(message: &[u8], cut: bool) -> ReadReply {
    match parse_reply(message) {
        Ok(r) => ReadReply::Read(r),
        Err(e) if cut => ReadReply::Unreadable(format!(
            "DNS reply longer than the {} bytes captured: {e}",
            message.len()
        )),
        Err(e) => ReadReply::Unreadable(format!("unreadable DNS reply: {e}")),
    }
}

impl NameBook {
    /// Notes an answer `app` (or, with `host`, the host's resolver) received at `t_ns`.
    pub fn add(&mut self, app: Option<&[u8; 32]>, host: bool, reply: &DnsReply, t_ns: i64) {
        if reply.addrs.is_empty() {
            return;
        }
        let mut names = Vec::with_capacity(1 + reply.cnames.len());
        names.push(reply.qname.clone());
        names.extend(reply.cnames.iter().cloned());
        self.evidence.add(&Answer {
            t_ns,
            receiver: match host {
                true => Receiver::Host,
                false => Receiver::App(app.copied()),
            },
            names: &names,
            addrs: &reply.addrs,
            ttl: reply.ttl,
        });
        self.added += 1;
        if self.added.is_multiple_of(SWEEP_EVERY) {
            self.evidence.sweep(t_ns);
        }
    }

    /// The name `app`'s answers gave `addr`, valid at `t_ns` (the question's name where
    /// it was one); else the name the host resolver's answers gave it (`true`).
    pub fn name_for(
        &self,
        app: Option<&[u8; 32]>,
        addr: IpAddr,
        t_ns: i64,
    ) -> Option<(&str, bool)> {
        if let Some(n) = self.evidence.names_for(app, Scope::App, addr, t_ns).next() {
            return Some((n, false));
        }
        self.evidence
            .names_for(app, Scope::Host, addr, t_ns)
            .next()
            .map(|n| (n, true))
    }
}
