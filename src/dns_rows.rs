//! DNS answers in the trail: a captured reply becomes a `dns_answer` row, and the
//! answers an application received name the destinations of its later connects
//! (`dst_name`), by the policy semantics' rules for when an answer counts
//! (`pinhole_policygen::dns_evidence`, app scope, default lifetime).

use std::net::IpAddr;

use pinhole_policygen::dns_evidence::{Answer, DnsEvidence, Lifetime, Receiver, Scope};
use pinhole_recorder::dns::{parse_reply, DnsReply};

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
    /// Notes an answer `app` received at `t_ns`.
    pub fn add(&mut self, app: Option<&[u8; 32]>, reply: &DnsReply, t_ns: i64) {
        if reply.addrs.is_empty() {
            return;
        }
        let mut names = Vec::with_capacity(1 + reply.cnames.len());
        names.push(reply.qname.clone());
        names.extend(reply.cnames.iter().cloned());
        self.evidence.add(&Answer {
            t_ns,
            receiver: Receiver::App(app.copied()),
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
    /// it was one).
    pub fn name_for(&self, app: Option<&[u8; 32]>, addr: IpAddr, t_ns: i64) -> Option<&str> {
        self.evidence.names_for(app, Scope::App, addr, t_ns).next()
    }
}
