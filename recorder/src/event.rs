//! One row of the dataset: an outbound connect or send, who made it, and the verdict.

use std::net::IpAddr;

/// Why `exe_sha256` is (or is not) set. The text forms are part of the public schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExeStatus {
    /// Hashed: the digest is of the file the process was running.
    Ok,
    /// The task has no user-space executable (a kernel thread).
    NoExecutable,
    /// The process exited before its executable could be opened, and no path still
    /// names the same file.
    Exited,
    /// The file changed after the event (its change time moved), so hashing it now
    /// would describe other bytes than those that ran.
    Modified,
    /// Opening or reading the executable failed (permissions, I/O error).
    Unreadable,
}

impl ExeStatus {
    pub const ALL: [ExeStatus; 5] = [
        ExeStatus::Ok,
        ExeStatus::NoExecutable,
        ExeStatus::Exited,
        ExeStatus::Modified,
        ExeStatus::Unreadable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ExeStatus::Ok => "ok",
            ExeStatus::NoExecutable => "no_executable",
            ExeStatus::Exited => "exited",
            ExeStatus::Modified => "modified",
            ExeStatus::Unreadable => "unreadable",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// Transport protocol of the socket, from its IPPROTO number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
    /// ICMP "ping" sockets (SOCK_DGRAM + IPPROTO_ICMP/ICMPV6) also pass the connect hooks.
    Icmp,
    Other(u8),
}

impl Protocol {
    pub fn from_ipproto(p: u8) -> Self {
        match p {
            6 => Protocol::Tcp,
            17 => Protocol::Udp,
            1 | 58 => Protocol::Icmp,
            n => Protocol::Other(n),
        }
    }

    pub fn as_str(self) -> std::borrow::Cow<'static, str> {
        match self {
            Protocol::Tcp => "tcp".into(),
            Protocol::Udp => "udp".into(),
            Protocol::Icmp => "icmp".into(),
            Protocol::Other(n) => format!("ipproto-{n}").into(),
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "tcp" => Some(Protocol::Tcp),
            "udp" => Some(Protocol::Udp),
            "icmp" => Some(Protocol::Icmp),
            _ => s
                .strip_prefix("ipproto-")?
                .parse()
                .ok()
                .map(Protocol::Other),
        }
    }
}

/// Which kernel hook saw the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hook {
    Connect,
    Sendmsg,
    /// The enforcer deciding whether a raw socket may be opened (no destination yet).
    SockCreate,
    /// The enforcer deciding whether a source route may be set on a socket.
    Setsockopt,
    /// The enforcer deciding a packet that carries a source route set another way.
    Egress,
    /// A subflow the kernel opened for an MPTCP connection (from a kernel worker).
    MptcpSubflow,
    /// A DNS reply received by the socket that asked (or by the host's resolver).
    DnsAnswer,
    /// The enforcer (LSM backend) deciding whether a packet socket (AF_PACKET) may be
    /// opened: it sends frames past every IP hook.
    PacketSocket,
    /// Not an event: the recorder started (`note` says how the previous run ended).
    RecordingStarted,
    /// Not an event: the recorder stopped (`note` says why). Until the next
    /// `recording_started` row of the same host, nothing was recorded.
    RecordingStopped,
}

/// Whether rows of the hook named `name` have a destination: connects and sends do; a
/// socket being opened, a source route or a subflow decision is counted apart.
pub fn hook_has_destination(name: &str) -> bool {
    matches!(name, "connect" | "sendmsg")
}

/// Whether rows of the hook named `name` are DNS answers (evidence, not connects).
pub fn hook_is_dns(name: &str) -> bool {
    name == "dns_answer"
}

/// Whether rows of the hook named `name` mark the recording itself, not an event.
pub fn hook_is_marker(name: &str) -> bool {
    matches!(name, "recording_started" | "recording_stopped")
}

impl Hook {
    pub fn as_str(self) -> &'static str {
        match self {
            Hook::Connect => "connect",
            Hook::Sendmsg => "sendmsg",
            Hook::SockCreate => "sock_create",
            Hook::Setsockopt => "setsockopt",
            Hook::Egress => "egress",
            Hook::MptcpSubflow => "mptcp_subflow",
            Hook::DnsAnswer => "dns_answer",
            Hook::PacketSocket => "packet_socket",
            Hook::RecordingStarted => "recording_started",
            Hook::RecordingStopped => "recording_stopped",
        }
    }
}

/// What pinhole decided. The recorder only observes; the enforcer decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    Observed,
    Allowed,
    Denied,
    WouldDeny,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Observed => "observed",
            Verdict::Allowed => "allowed",
            Verdict::Denied => "denied",
            Verdict::WouldDeny => "would-deny",
        }
    }
}

/// The executable behind an event, resolved by user space.
#[derive(Debug, Clone, Copy)]
pub struct ExeRef<'a> {
    pub path: Option<&'a str>,
    pub sha256: Option<&'a [u8; 32]>,
    pub status: ExeStatus,
    /// User-space `st_dev` encoding, so it compares with `stat -c %d`.
    pub dev: u64,
    pub ino: u64,
}

/// One dataset row, borrowing its strings so that appending allocates nothing.
#[derive(Debug, Clone, Copy)]
pub struct Event<'a> {
    /// Nanoseconds since the Unix epoch, UTC.
    pub ts_ns: i64,
    pub pid: u32,
    pub tid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    pub comm: &'a str,
    pub exe: ExeRef<'a>,
    pub cgroup_id: u64,
    /// The cgroup's path under the cgroup-v2 root ("/system.slice/x.service"), when
    /// user space could still find it.
    pub cgroup: Option<&'a str>,
    pub netns: u32,
    /// Canonical destination: an IPv4-mapped IPv6 address is stored as IPv4.
    pub dst_addr: IpAddr,
    pub dst_port: u16,
    pub protocol: Protocol,
    pub hook: Hook,
    pub verdict: Verdict,
    pub sock_cookie: u64,
    pub rule_id: Option<&'a str>,
    pub app: Option<&'a str>,
    /// Words for people: why recording started or stopped (marker rows only).
    pub note: Option<&'a str>,
    /// The name a DNS answer gave this destination for (connect and send rows).
    pub dst_name: Option<&'a str>,
    /// That answer was the host resolver's, not this process's own (`dns_scope` host).
    pub dst_name_from_host: bool,
    /// What a DNS answer row says (dns_answer rows only).
    pub dns: Option<DnsFields<'a>>,
}

/// A DNS answer row's content.
#[derive(Debug, Clone, Copy)]
pub struct DnsFields<'a> {
    pub reply: &'a crate::dns::DnsReply,
    /// Received by the host's resolver, for whichever process asked it (else by the
    /// process the row names).
    pub host_scope: bool,
}

/// The canonical form of a destination address: IPv4-mapped IPv6 becomes IPv4.
pub fn canonical_addr(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(addr),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_ipv6_is_shown_as_ipv4() {
        let a: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert_eq!(canonical_addr(a).to_string(), "127.0.0.1");
        let b: IpAddr = "::1".parse().unwrap();
        assert_eq!(canonical_addr(b).to_string(), "::1");
    }

    #[test]
    fn enum_text_forms_round_trip() {
        for s in ExeStatus::ALL {
            assert_eq!(ExeStatus::parse(s.as_str()), Some(s));
        }
        for p in [
            Protocol::Tcp,
            Protocol::Udp,
            Protocol::Icmp,
            Protocol::Other(132),
        ] {
            assert_eq!(Protocol::parse(&p.as_str()), Some(p));
        }
        assert_eq!(Protocol::from_ipproto(132).as_str(), "ipproto-132");
    }
}
