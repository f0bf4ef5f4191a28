//! The audit trail's writer: turns captured kernel records (observed by the recorder or
//! decided by the enforcer) into dataset rows, resolving each executable to its hash.

use std::sync::atomic::Ordering;

use anyhow::Result;
use pinhole_recorder::event::{DnsFields, ExeRef, Hook, Protocol, Verdict};
use pinhole_recorder::{Event, Sink};

use crate::capture::{Captured, DnsCapture, Ringed};
use crate::clock::BootClock;
use crate::dns_rows::{read_reply, HostResolvers, NameBook, ReadReply};
use crate::identity::{ExeKey, Resolver};
pub use crate::labels::{label, Labels};
use crate::skel::{c_str, connect_event};
use crate::status::Counters;

/// This process's executable, hashed once: marker rows name the pinhole that wrote them.
struct OwnIdentity {
    key: ExeKey,
    path: Option<String>,
    sha256: Option<[u8; 32]>,
    status: pinhole_recorder::ExeStatus,
}

fn own_identity() -> &'static OwnIdentity {
    static ME: std::sync::OnceLock<OwnIdentity> = std::sync::OnceLock::new();
    ME.get_or_init(|| {
        let path = std::fs::read_link("/proc/self/exe")
            .ok()
            .map(|p| p.to_string_lossy().into_owned());
        let hashed = std::fs::File::open("/proc/self/exe")
            .ok()
            .and_then(|mut f| {
                let key = ExeKey::from_metadata(&f.metadata().ok()?);
                let d = crate::identity::sha256_file(&mut f, &key, Default::default()).ok()?;
                Some((key, d.sha256))
            });
        let (key, sha256, status) = match hashed {
            Some((k, h)) => (k, Some(h), pinhole_recorder::ExeStatus::Ok),
            None => (
                ExeKey {
                    dev: 0,
                    ino: 0,
                    ctime_sec: 0,
                    ctime_nsec: 0,
                },
                None,
                pinhole_recorder::ExeStatus::Unreadable,
            ),
        };
        OwnIdentity {
            key,
            path,
            sha256,
            status,
        }
    })
}

/// Turns captured records into dataset rows.
pub struct Writer<'s> {
    pub sink: &'s mut Sink,
    clock: BootClock,
    events: u64,
    lost: u64,
    lost_base: u64,
    /// Names from the DNS answers recorded so far, for `dst_name`.
    names: NameBook,
    host_resolvers: HostResolvers,
    /// The enforcer's name texts (bpf/name_decide.h): the name whose rule allowed a
    /// connect, by the id its decision carries.
    kernel_names: Option<KernelNames>,
    /// For the `cgroup` column.
    cgroups: crate::cgroup_paths::CgroupPaths,
}

/// Name texts read from the enforcer's kernel map, remembered by id.
struct KernelNames {
    texts: libbpf_rs::MapHandle,
    known: std::collections::HashMap<u32, Option<String>>,
}

impl KernelNames {
    /// Entries remembered at most; then forgotten all at once (ids are never reused).
    const MAX: usize = 65_536;

    fn name(&mut self, id: u32) -> Option<&str> {
        if self.known.len() >= Self::MAX {
            self.known.clear();
        }
        let texts = &self.texts;
        self.known
            .entry(id)
            .or_insert_with(|| {
                use libbpf_rs::MapCore;
                let bytes = texts
                    .lookup(&id.to_ne_bytes(), libbpf_rs::MapFlags::ANY)
                    .ok()??;
                crate::skel::dns_name_text(&bytes)
            })
            .as_deref()
    }
}

/// What a row adds to its kernel record.
#[derive(Default)]
struct RowExtra<'a> {
    hook: Option<Hook>,
    dns: Option<DnsFields<'a>>,
    note: Option<&'a str>,
}

impl<'s> Writer<'s> {
    pub fn new(sink: &'s mut Sink) -> Self {
        Writer {
            sink,
            clock: BootClock::now(),
            events: 0,
            lost: 0,
            lost_base: 0,
            names: NameBook::default(),
            host_resolvers: HostResolvers::new(&[]),
            kernel_names: None,
            cgroups: crate::cgroup_paths::CgroupPaths::new(),
        }
    }

    /// The enforcer's name texts, for the names its decisions carry.
    pub fn set_kernel_names(&mut self, texts: libbpf_rs::MapHandle) {
        self.kernel_names = Some(KernelNames {
            texts,
            known: Default::default(),
        });
    }

    /// The executables whose DNS answers are the host's (see `HostResolvers`).
    pub fn set_host_resolvers(&mut self, r: HostResolvers) {
        self.host_resolvers = r;
    }

    /// Losses of the kernel's counter that an earlier run already published (a counter
    /// pinned across runs with `--persist` goes on counting).
    pub fn set_lost_base(&mut self, base: u64) {
        self.lost_base = base;
    }

    /// The kernel's cumulative count, as the counter says (for the next run's base).
    pub fn lost_total(&self) -> u64 {
        self.lost + self.lost_base
    }

    /// The kernel's cumulative loss count: into the dataset, the status line and a log.
    pub fn set_lost(&mut self, counter: u64) {
        let total = counter.saturating_sub(self.lost_base);
        if total > self.lost {
            tracing::warn!(
                lost = total - self.lost,
                total,
                "the kernel dropped events: the ring buffer was full (a larger --ring-size or shorter --poll-interval helps)"
            );
        }
        self.lost = total;
        self.sink.set_lost_total(total);
    }

    pub fn counters(&self) -> Counters {
        let stats = self.sink.stats();
        Counters {
            events: self.events,
            written: stats.events_written.load(Ordering::Relaxed),
            lost: self.lost,
            files: stats.files_published.load(Ordering::Relaxed),
        }
    }

    /// A row marking the recording itself (`RecordingStarted`/`Stopped`), made by this
    /// process, with `note` saying why.
    pub fn marker(&mut self, hook: Hook, note: &str) -> Result<()> {
        let me = own_identity();
        let ts_ns = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
        // SAFETY: getppid, getuid and getgid have no preconditions.
        let (ppid, uid, gid) = unsafe { (libc::getppid(), libc::getuid(), libc::getgid()) };
        let row = Event {
            ts_ns,
            pid: std::process::id(),
            tid: std::process::id(),
            ppid: ppid as u32,
            uid,
            gid,
            comm: "pinhole",
            exe: ExeRef {
                path: me.path.as_deref(),
                sha256: me.sha256.as_ref(),
                status: me.status,
                dev: me.key.dev,
                ino: me.key.ino,
            },
            cgroup_id: 0,
            cgroup: None,
            netns: 0,
            dst_addr: std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            dst_port: 0,
            protocol: Protocol::Other(0),
            hook,
            verdict: Verdict::Observed,
            sock_cookie: 0,
            rule_id: None,
            app: None,
            note: Some(note),
            dst_name: None,
            dst_name_from_host: false,
            dns: None,
        };
        self.sink.append(&row)?;
        Ok(())
    }

    /// The recorder's path: observed events carry no policy labels.
    pub fn handle(&mut self, resolver: &mut Resolver, msg: Captured) -> Result<()> {
        match msg {
            Captured::Exec(c) => resolver.offer(c),
            Captured::Connects(batch, _) => {
                let labels = Labels::new();
                for r in &batch {
                    match r {
                        Ringed::Connect(e) => self.append(resolver, &labels, e)?,
                        Ringed::Dns(d) => self.append_dns(resolver, d)?,
                    }
                }
                self.events += batch.len() as u64;
            }
        }
        Ok(())
    }

    pub fn append_all(
        &mut self,
        resolver: &mut Resolver,
        labels: &Labels,
        batch: &[connect_event],
    ) -> Result<()> {
        for e in batch {
            self.append(resolver, labels, e)?;
        }
        self.events += batch.len() as u64;
        Ok(())
    }

    pub fn append(
        &mut self,
        resolver: &mut Resolver,
        labels: &Labels,
        e: &connect_event,
    ) -> Result<()> {
        self.append_row(resolver, labels, e, RowExtra::default())
    }

    /// A `dns_answer` row for a reply, and its names for the asker's later connects.
    fn append_dns(&mut self, resolver: &mut Resolver, d: &DnsCapture) -> Result<()> {
        let e = &d.asker;
        match read_reply(&d.message, d.cut) {
            ReadReply::Read(reply) => {
                let key = ExeKey::from(&e.exe);
                let ts = self.clock.to_unix_ns(e.boot_ns);
                let exe = resolver.resolve(e.pid, key, ts);
                let host = self.host_resolvers.contains(exe.path.as_deref());
                self.names.add(exe.sha256.as_ref(), host, &reply, ts);
                let dns = DnsFields {
                    reply: &reply,
                    host_scope: host,
                };
                let extra = RowExtra {
                    hook: Some(Hook::DnsAnswer),
                    dns: Some(dns),
                    note: None,
                };
                self.append_row(resolver, &Labels::new(), e, extra)
            }
            ReadReply::Unreadable(why) => {
                tracing::debug!("{why}");
                let extra = RowExtra {
                    hook: Some(Hook::DnsAnswer),
                    dns: None,
                    note: Some(&why),
                };
                self.append_row(resolver, &Labels::new(), e, extra)
            }
        }
    }

    fn append_row(
        &mut self,
        resolver: &mut Resolver,
        labels: &Labels,
        e: &connect_event,
        extra: RowExtra<'_>,
    ) -> Result<()> {
        let key = ExeKey::from(&e.exe);
        let ts_ns = self.clock.to_unix_ns(e.boot_ns);
        let exe = resolver.resolve(e.pid, key, ts_ns);
        let comm = c_str(&e.comm);
        let (app, rule) = label(labels, e);
        let hook = extra.hook.unwrap_or(match e.hook {
            2 => Hook::Sendmsg,
            3 => Hook::SockCreate,
            4 => Hook::Setsockopt,
            5 => Hook::Egress,
            6 => Hook::MptcpSubflow,
            8 => Hook::PacketSocket,
            _ => Hook::Connect,
        });
        let named = match hook {
            Hook::Connect | Hook::Sendmsg => {
                self.names.name_for(exe.sha256.as_ref(), dst_addr(e), ts_ns)
            }
            _ => None,
        };
        // The enforcer's own: the name whose rule allowed this connect.
        let decided_by_name = match (&mut self.kernel_names, e.name_id) {
            (Some(k), id) if id != 0 => k.name(id),
            _ => None,
        };
        let named = named.or(decided_by_name.map(|n| (n, false)));
        let cgroup = self.cgroups.path(e.cgroup_id);
        let row = Event {
            ts_ns,
            pid: e.pid,
            tid: e.tid,
            ppid: e.ppid,
            uid: e.uid,
            gid: e.gid,
            comm: &comm,
            exe: ExeRef {
                path: exe.path.as_deref(),
                sha256: exe.sha256.as_ref(),
                status: exe.status,
                dev: key.dev,
                ino: key.ino,
            },
            cgroup_id: e.cgroup_id,
            cgroup: cgroup.as_deref(),
            netns: e.netns,
            dst_addr: dst_addr(e),
            dst_port: e.dst.port,
            protocol: Protocol::from_ipproto(e.dst.protocol),
            hook,
            verdict: verdict(e.verdict),
            sock_cookie: e.sock_cookie,
            rule_id: rule,
            app,
            note: extra.note,
            dst_name: named.map(|(n, _)| n),
            dst_name_from_host: named.is_some_and(|(_, host)| host),
            dns: extra.dns,
        };
        self.sink.append(&row)?;
        Ok(())
    }
}

/// `enum pinhole_verdict` of bpf/pinhole.h.
pub fn verdict(v: u8) -> Verdict {
    match v {
        1 => Verdict::Allowed,
        2 => Verdict::Denied,
        3 => Verdict::WouldDeny,
        _ => Verdict::Observed,
    }
}

/// The kernel stores addresses in network byte order, word by word.
pub fn dst_addr(e: &connect_event) -> std::net::IpAddr {
    let bytes = |w: u32| w.to_ne_bytes();
    // A packet socket has no IP version (0): its destination is 0.0.0.0.
    if e.dst.ip_version != 6 {
        std::net::Ipv4Addr::from(bytes(e.dst.addr[0])).into()
    } else {
        let mut b = [0u8; 16];
        for (i, w) in e.dst.addr.iter().enumerate() {
            b[i * 4..i * 4 + 4].copy_from_slice(&bytes(*w));
        }
        std::net::Ipv6Addr::from(b).into()
    }
}
