//! Loads the recorder's BPF programs, attaches them to a cgroup, and drains their ring
//! buffers on a timer into a channel of owned messages.

use std::cell::RefCell;
use std::fs::{self, File};
use std::mem::MaybeUninit;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags, MapHandle, OpenObject, RingBufferBuilder};

use crate::clock::BootClock;
use crate::identity::{fd_budget, Candidate, ExeKey, ExecWatch};
use crate::record_persist::PinnedMaps;
use crate::skel::record::{RecordSkel, RecordSkelBuilder};
use crate::skel::{c_str, connect_event, dns_event, exec_event, parse};

/// What the poll thread hands to the writer, in an order that keeps every exec ahead
/// of the connects its process made.
pub enum Captured {
    Exec(Candidate),
    /// The connect ring's records in ring order (a DNS reply before the connects that
    /// follow it), and when they were consumed.
    Connects(Vec<Ringed>, Instant),
}

/// A record of the connect ring.
pub enum Ringed {
    Connect(connect_event),
    /// The recorder's only: a DNS reply to a socket that asked.
    Dns(Box<DnsCapture>),
}

/// A DNS reply as the kernel copied it.
pub struct DnsCapture {
    /// The query's sender; boot_ns is the reply's arrival, dst the server.
    pub asker: connect_event,
    /// The DNS message, or its first PINHOLE_DNS_MAX bytes.
    pub message: Vec<u8>,
    /// The message was longer than what was copied (or than one TCP segment).
    pub cut: bool,
}

impl DnsCapture {
    fn from_event(e: &dns_event) -> Self {
        let len = usize::from(e.len).min(e.data.len());
        DnsCapture {
            asker: e.asker,
            message: e.data[..len].to_vec(),
            cut: usize::from(e.msg_len) > len,
        }
    }
}

/// The connects of a batch (the enforcer's ring carries nothing else).
pub fn only_connects(batch: Vec<Ringed>) -> Vec<connect_event> {
    batch
        .into_iter()
        .filter_map(|r| match r {
            Ringed::Connect(e) => Some(e),
            Ringed::Dns(_) => None,
        })
        .collect()
}

/// A connect-ring sample: the two record types differ in size.
fn ringed(data: &[u8]) -> Option<Ringed> {
    if data.len() == std::mem::size_of::<dns_event>() {
        // Boxed before copying: the record is 1.3 KB.
        let mut e = Box::<dns_event>::default();
        plain::copy_from_bytes(&mut *e, data).ok()?;
        return Some(Ringed::Dns(Box::new(DnsCapture::from_event(&e))));
    }
    parse::<connect_event>(data).map(Ringed::Connect)
}

/// Loads the recorder's programs; with `pinned`, into the maps a persisted recorder
/// left (its rings hold what was captured while no process ran).
pub fn load<'obj>(
    open_object: &'obj mut MaybeUninit<OpenObject>,
    ring_bytes: u32,
    pinned: Option<&PinnedMaps>,
) -> Result<RecordSkel<'obj>> {
    let mut open = RecordSkelBuilder::default()
        .open(open_object)
        .context("opening the recorder's BPF object")?;
    match pinned {
        Some(PinnedMaps(maps)) => {
            let m = &mut open.maps;
            for (name, map) in maps {
                let target = match *name {
                    "connect_events" => &mut m.connect_events,
                    "exec_events" => &mut m.exec_events,
                    "lost_events" => &mut m.lost_events,
                    "dns_askers" => &mut m.dns_askers,
                    _ => &mut m.mptcp_owners,
                };
                target
                    .reuse_fd(map.as_fd())
                    .with_context(|| format!("reusing the pinned map {name}"))?;
            }
        }
        None => open
            .maps
            .connect_events
            .set_max_entries(ring_bytes)
            .with_context(|| format!("sizing the connect ring buffer to {ring_bytes} bytes (must be a power of two multiple of the page size)"))?,
    }
    open.load().context(
        "loading the recorder's BPF programs into the kernel (needs root, BTF at /sys/kernel/btf/vmlinux, and cgroup BPF support)",
    )
}

/// Sum of the per-CPU loss counters (`lost_events` of record.bpf.c or enforce.bpf.c):
/// events the kernel could not hand over.
pub fn lost_events(map: &dyn MapCore) -> Result<u64> {
    let mut total = 0;
    for slot in 0u32..3 {
        let per_cpu = map
            .lookup_percpu(&slot.to_ne_bytes(), MapFlags::ANY)
            .context("reading the lost-event counters")?
            .unwrap_or_default();
        total += per_cpu
            .iter()
            .map(|v| u64::from_ne_bytes(v[..8].try_into().unwrap_or_default()))
            .sum::<u64>();
    }
    Ok(total)
}

/// An owned handle on a skeleton's map, for another thread (skeleton maps are not `Sync`).
pub fn map_handle<T: std::fmt::Debug>(map: &libbpf_rs::MapImpl<'_, T>) -> Result<MapHandle> {
    MapHandle::try_from(map).with_context(|| format!("duplicating map {:?}", map.name()))
}

/// Opens the new executable while the process most likely still runs. If it is gone
/// already, the poll loop takes the descriptor fanotify pinned at exec time instead.
/// Past the descriptor budget nothing is opened (the resolver tries /proc later).
fn exec_candidate(e: &exec_event, clock: BootClock) -> Candidate {
    let proc_exe = format!("/proc/{}/exe", e.pid);
    let held = fd_budget::take();
    let file = held.as_ref().and_then(|_| File::open(&proc_exe).ok());
    let held = held.filter(|_| file.is_some());
    let path = match file {
        Some(_) => fs::read_link(&proc_exe)
            .ok()
            .map(|p| p.to_string_lossy().into_owned()),
        None => None,
    }
    .or_else(|| Some(c_str(&e.filename).into_owned()).filter(|f| !f.is_empty()));
    Candidate {
        pid: e.pid,
        key: ExeKey::from(&e.exe),
        file,
        path,
        at_ns: Some(clock.to_unix_ns(e.boot_ns)),
        held,
    }
}

/// The poller races short-lived processes to their /proc/<pid>/exe: on a busy host it
/// should get the CPU first. Failure (e.g. no CAP_SYS_NICE) only costs that edge.
fn raise_priority() {
    // SAFETY: gettid and setpriority on our own thread id have no memory effects.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, -10) };
    if rc != 0 {
        tracing::debug!(
            "could not raise the ring-buffer thread's priority: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// A wait interrupted by a stop and continue (SIGSTOP, Ctrl-Z, a tracer attaching or
/// detaching) is not an error: epoll_wait is never restarted, so the next round retries.
fn retry_interrupted(r: libbpf_rs::Result<()>) -> libbpf_rs::Result<()> {
    match r {
        Err(e) if e.kind() == libbpf_rs::ErrorKind::Interrupted => Ok(()),
        other => other,
    }
}

/// Sets its flag when dropped: however a loop that feeds on the poll thread ends (an
/// error, a panic), the thread is told to stop, or a scope would wait for it forever.
pub struct StopOnDrop<'a>(pub &'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Drains both rings (`connect_events`, `exec_events` of either program) every
/// `interval` (and at once on an exec) until `stop` is set, then drains once more.
/// Connect records are consumed before exec records in each round, so the exec behind
/// any consumed connect has been consumed too.
pub fn poll_loop(
    connect_ring: &dyn MapCore,
    exec_ring: &dyn MapCore,
    interval: Duration,
    stop: &AtomicBool,
    tx: Sender<Captured>,
    mut watch: Option<ExecWatch>,
) -> Result<()> {
    let connects = RefCell::new(Vec::<Ringed>::with_capacity(4096));
    let execs = RefCell::new(Vec::<Candidate>::new());
    let clock = BootClock::now();
    let mut builder = RingBufferBuilder::new();
    builder
        .add(connect_ring, |data: &[u8]| {
            if let Some(r) = ringed(data) {
                connects.borrow_mut().push(r);
            }
            0
        })
        .context("adding the connect ring buffer")?
        .add(exec_ring, |data: &[u8]| {
            if let Some(e) = parse::<exec_event>(data) {
                execs.borrow_mut().push(exec_candidate(&e, clock));
            }
            0
        })
        .context("adding the exec ring buffer")?;
    let rings = builder.build().context("creating the ring buffer poller")?;
    let fill = crate::ring_fill::RingFill::new(&rings, &["connect", "exec"]);
    raise_priority();

    loop {
        let stopping = stop.load(Ordering::Acquire);
        // Returns early only for execs (connects are submitted without wakeup).
        retry_interrupted(rings.poll(if stopping { Duration::ZERO } else { interval }))
            .context("polling ring buffers")?;
        fill.sample();
        retry_interrupted(rings.consume()).context("consuming ring buffers")?;
        // The exec-time open precedes the exec tracepoint, so every exec consumed above
        // has its notification queued by now.
        if let Some(w) = watch.as_mut() {
            w.collect();
        }
        for mut c in execs.borrow_mut().drain(..) {
            if c.file.is_none() {
                if let Some((file, held)) = watch.as_mut().and_then(|w| w.take(c.pid, &c.key)) {
                    (c.file, c.held) = (Some(file), Some(held));
                }
            }
            if tx.send(Captured::Exec(c)).is_err() {
                return Ok(());
            }
        }
        let batch = std::mem::replace(&mut *connects.borrow_mut(), Vec::with_capacity(4096));
        if !batch.is_empty() && tx.send(Captured::Connects(batch, Instant::now())).is_err() {
            return Ok(());
        }
        if stopping {
            return Ok(());
        }
    }
}
