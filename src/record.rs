//! `pinhole record`: capture every outbound connect into the Parquet dataset.

use std::mem::MaybeUninit;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use pinhole_recorder::printable::printable;
use pinhole_recorder::{Hook, Sink, SinkConfig};

use crate::capture;
use crate::hook_links::HookLinks;
use crate::identity::Resolver;
use crate::mounts;
use crate::record_persist;
use crate::status::StatusLine;
use crate::trail::Writer;

/// Options of `pinhole record`.
#[derive(Debug, clap::Args)]
pub struct RecordArgs {
    /// Dataset directory (hive layout: <out>/date=YYYY-MM-DD/*.parquet).
    #[arg(long, short, default_value = "/var/lib/pinhole/events")]
    pub out: PathBuf,
    /// Stop after this long (e.g. 30s, 5m); otherwise run until SIGINT or SIGTERM.
    #[arg(long, value_parser = crate::option_ranges::run_duration)]
    pub duration: Option<Duration>,
    /// Make buffered events durable this often: the most a kill -9 can lose.
    #[arg(long, default_value = "1s", value_parser = crate::option_ranges::flush_interval)]
    pub flush_interval: Duration,
    /// Publish the current file after this long.
    #[arg(long, default_value = "15m", value_parser = crate::option_ranges::rotate_interval)]
    pub rotate_interval: Duration,
    /// Publish the current file once it reaches this size (e.g. 128MiB).
    #[arg(long, default_value = "128MiB")]
    pub rotate_size: bytesize::ByteSize,
    /// Connect ring buffer size; a power of two (e.g. 8MiB). Larger absorbs longer bursts.
    #[arg(long, default_value = "8MiB", value_parser = crate::option_ranges::ring_size)]
    pub ring_size: u32,
    /// How often the ring buffer is drained.
    #[arg(long, default_value = "5ms", value_parser = crate::option_ranges::poll_interval)]
    pub poll_interval: Duration,
    /// Record only this cgroup-v2 subtree (absolute, or relative to the cgroup-v2 mount).
    #[arg(long)]
    pub cgroup: Option<PathBuf>,
    /// Host name written into every row (default: this machine's host name).
    #[arg(long, value_parser = crate::option_ranges::host_name)]
    pub host: Option<String>,
    /// Codec of the Parquet files' string and hash columns: lz4 reads fastest (no codec
    /// set-up per column chunk), zstd makes smaller files.
    #[arg(long, value_enum, default_value_t = CompressionArg::Lz4)]
    pub compression: CompressionArg,
    /// zstd's level (1-22), with `--compression zstd`.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=22))]
    pub zstd_level: i32,
    /// When stopping, leave the programs attached and their rings pinned, so that the
    /// next `pinhole record` (a restart, an upgrade) drains what they capture meanwhile.
    #[arg(long)]
    pub persist: bool,
    /// Remove what a `--persist` run left attached and pinned, and exit.
    #[arg(long)]
    pub release: bool,
    /// When the disk is full: `continue` counts what cannot be written as lost and
    /// resumes when space returns; `stop` ends recording with an error.
    #[arg(long, value_enum, default_value_t = OnDiskFull::Continue)]
    pub on_disk_full: OnDiskFull,
    /// The host's own DNS resolvers (executables): the answers they receive, for
    /// whichever process asked them, are recorded with scope "host" and name other
    /// processes' connects (hosts where applications resolve through systemd-resolved
    /// or nscd send no DNS packet of their own). Repeatable; replaces the defaults.
    #[arg(long = "host-resolver", default_values_t = crate::dns_rows::DEFAULT_HOST_RESOLVERS.map(String::from))]
    pub host_resolvers: Vec<String>,
    /// Remove published files of a date more than this many days before today (UTC),
    /// oldest first. Staged data and the newest file are never removed.
    #[arg(long, value_name = "DAYS")]
    pub retain_days: Option<u32>,
    /// Remove the oldest published files while the dataset's published files take more
    /// than this (e.g. 20GiB). Staged data and the newest file are never removed.
    #[arg(long, value_name = "SIZE")]
    pub retain_size: Option<bytesize::ByteSize>,
    /// Serve Prometheus metrics on this address (e.g. 127.0.0.1:9724): events, losses,
    /// files and bytes published, the hash cache, retention.
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Exit if a layer of the sandbox cannot be applied (Landlock filesystem and TCP
    /// rules, reduced capabilities); by default what the kernel allows is applied and
    /// what is missing is logged.
    #[arg(long, conflicts_with = "no_sandbox")]
    pub sandbox_strict: bool,
    /// Do not sandbox the recorder once it has started (for debugging).
    #[arg(long)]
    pub no_sandbox: bool,
    /// Sign a checkpoint of the dataset's evidence log after every published file with
    /// this private key (from `pinhole trail keygen`; a file only its owner may read).
    #[arg(long, value_name = "FILE")]
    pub signing_key: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CompressionArg {
    Lz4,
    Zstd,
}

impl CompressionArg {
    pub fn codec(self, zstd_level: i32) -> pinhole_recorder::Codec {
        match self {
            CompressionArg::Lz4 => pinhole_recorder::Codec::Lz4,
            CompressionArg::Zstd => pinhole_recorder::Codec::Zstd(zstd_level),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnDiskFull {
    Continue,
    Stop,
}

/// What the recorder may still do once started: write its dataset, /run/pinhole and
/// its pins (with --persist, or a taken-over recorder's, removed at the stop); hash executables (CAP_SYS_PTRACE, CAP_DAC_READ_SEARCH);
/// raise the ring-buffer thread's priority (CAP_SYS_NICE);
/// read its maps and detach (CAP_BPF: bpf() itself needs it where unprivileged BPF is
/// off); pin what stays attached with --persist (the loading capabilities).
fn sandbox_spec(args: &RecordArgs) -> Result<crate::sandbox::Spec> {
    use caps::Capability::*;
    let run_dir = PathBuf::from("/run/pinhole");
    std::fs::create_dir_all(&run_dir).context("creating /run/pinhole")?;
    let mut writable = vec![args.out.clone(), run_dir];
    // CAP_SYS_NICE: the ring-buffer thread, started after the sandbox, raises its
    // priority (it loses fewer events under load).
    let mut keep = vec![CAP_BPF, CAP_SYS_PTRACE, CAP_DAC_READ_SEARCH, CAP_SYS_NICE];
    let pins = record_persist::pin_dir();
    if args.persist {
        std::fs::create_dir_all(&pins).with_context(|| format!("creating {}", pins.display()))?;
        keep.extend([CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_PERFMON]);
    }
    // A taken-over recorder's pins, and their directory, are removed at the stop.
    if pins.exists() {
        writable.push(
            pins.parent()
                .map_or(pins.clone(), std::path::Path::to_path_buf),
        );
    }
    if crate::sandbox::needs_dac_override(&writable) {
        keep.push(CAP_DAC_OVERRIDE);
    }
    Ok(crate::sandbox::Spec {
        writable,
        bind_port: args.metrics_listen.map(|a| a.port()),
        keep,
    })
}

/// A terminal's Ctrl-Z (SIGTSTP) must not stop pinhole: a stopped recorder loses
/// events, and a stopped enforcer would hold execs until its watchdog steps in.
pub fn ignore_terminal_stop() {
    for sig in [libc::SIGTSTP, libc::SIGTTIN, libc::SIGTTOU] {
        // SAFETY: ignoring a signal has no memory effects.
        unsafe { libc::signal(sig, libc::SIG_IGN) };
    }
}

/// At stop: with `persist` the links are pinned and left attached, else they are
/// detached and anything a persisted run left pinned is removed.
fn finish_links(
    mut links: HookLinks,
    persist: bool,
    skel: &crate::skel::record::RecordSkel<'_>,
    target: &std::path::Path,
    lost_published: u64,
) -> Result<()> {
    if persist {
        record_persist::pin(&mut links, skel, target, lost_published)?;
        links.leave_pinned();
        return Ok(());
    }
    links.unpin()?;
    drop(links);
    record_persist::release()?;
    Ok(())
}

/// What the row marking a start says: this pinhole, and how the previous run ended
/// when it left staged events behind or its programs attached.
fn start_note(recovery: &pinhole_recorder::RecoveryReport, took_over: bool) -> String {
    let mut note = format!(
        "started: pinhole {} (pid {})",
        env!("CARGO_PKG_VERSION"),
        std::process::id()
    );
    if took_over {
        note.push_str("; took over the programs the previous run left attached (--persist): nothing was missed in between, except events counted lost");
    }
    if !recovery.files_published.is_empty() {
        note.push_str(&format!(
            "; the previous run did not stop cleanly: {} staged events recovered into {} files",
            recovery.events_recovered,
            recovery.files_published.len()
        ));
    }
    note
}

pub fn run(args: RecordArgs) -> Result<()> {
    crate::privileges::require("pinhole record", crate::privileges::DAEMON)?;
    if args.release {
        let removed = record_persist::release()?;
        println!("removed {} pins of a persisted recorder", removed.len());
        return Ok(());
    }
    ignore_terminal_stop();
    // A port in use is refused before anything is loaded; it is served once the
    // sandbox is in force, so that its thread is confined too.
    if let Some(addr) = args.metrics_listen {
        crate::metrics::check_free(addr)?;
    }
    // Handlers first: a signal during set-up must find them installed.
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // A second signal exits at once; what was staged is recovered by the next run.
        signal_hook::flag::register_conditional_shutdown(sig, 130, stop.clone())
            .context("installing signal handlers")?;
        signal_hook::flag::register(sig, stop.clone()).context("installing signal handlers")?;
    }
    // Which signal it was, for the row that marks the stop.
    let terminated = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGTERM, terminated.clone())
        .context("installing signal handlers")?;
    let ring = args.ring_size;
    let rotate = args.rotate_size.as_u64();
    if !(4 << 10..=64 << 30).contains(&rotate) {
        bail!(
            "--rotate-size {} must be between 4KiB and 64GiB",
            args.rotate_size
        );
    }
    let host = match &args.host {
        Some(h) => h.clone(),
        None => gethostname::gethostname().to_string_lossy().into_owned(),
    };
    let mut cfg = SinkConfig::new(&args.out, host);
    cfg.flush_interval = args.flush_interval;
    cfg.rotate_interval = args.rotate_interval;
    cfg.rotate_bytes = rotate;
    cfg.compression = args.compression.codec(args.zstd_level);
    cfg.signing_key = crate::evidence_cli::signing_key(args.signing_key.as_deref())?;
    let retention_key = cfg.signing_key.clone();
    cfg.on_disk_full = match args.on_disk_full {
        OnDiskFull::Continue => pinhole_recorder::DiskFullAction::Continue,
        OnDiskFull::Stop => pinhole_recorder::DiskFullAction::Stop,
    };

    // Recovery first: what an earlier unclean stop left is published before new data.
    let (mut sink, recovery) = Sink::open(cfg).context("opening the dataset")?;
    if !recovery.files_published.is_empty() || recovery.already_published > 0 {
        tracing::warn!(
            files = recovery.files_published.len(),
            events = recovery.events_recovered,
            torn_logs = recovery.torn_logs,
            "recovered events staged by an earlier run that did not stop cleanly"
        );
    }

    let cg_root = mounts::cgroup2_root(std::path::Path::new("/run/pinhole/cgroup2"))?;
    let target = match &args.cgroup {
        Some(c) => mounts::resolve_cgroup(&cg_root, c)?,
        None => cg_root,
    };
    mounts::ensure_tracefs()?;
    let mut object = MaybeUninit::uninit();
    let persisted = record_persist::pinned(&target)?;
    let skel = capture::load(&mut object, ring, persisted.as_ref().map(|p| &p.maps))?;
    let (links, lost_base) = match persisted {
        Some(mut p) => {
            p.links
                .swap_to(&record_persist::programs(&skel), &mut || Ok(()))?;
            tracing::info!(
                "took over the persisted recorder's programs: what they captured meanwhile follows"
            );
            (p.links, Some(p.lost_published))
        }
        None => (
            HookLinks::attach(&record_persist::programs(&skel), &target)?,
            None,
        ),
    };
    tracing::info!(cgroup = %target.display(), out = %args.out.display(), "attached; recording");
    let mut notifier = crate::service::Notifier::new();
    notifier.ready(&format!("recording into {}", args.out.display()));

    crate::identity::fd_budget::init();
    // Before the sandbox: the iterator is a BPF program and fanotify_init needs
    // CAP_SYS_ADMIN; what they give is read after it.
    let running = crate::snapshot::running_processes();
    let watch = crate::identity::ExecWatch::start();
    let layers = match args.no_sandbox {
        true => None,
        false => Some(crate::sandbox::apply(
            &sandbox_spec(&args)?,
            args.sandbox_strict,
        )?),
    };
    if let Some(addr) = args.metrics_listen {
        crate::metrics::serve(addr, "record")?;
    }
    if let Some(l) = &layers {
        crate::metrics::sandbox(l);
    }
    let poll_stop = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel();
    let deadline = args.duration.map(|d| Instant::now() + d);

    std::thread::scope(|s| -> Result<()> {
        let rings = (
            capture::map_handle(&skel.maps.connect_events)?,
            capture::map_handle(&skel.maps.exec_events)?,
        );
        let (poll_stop, interval) = (&poll_stop, args.poll_interval);
        let poller = s.spawn(move || capture::poll_loop(&rings.0, &rings.1, interval, poll_stop, tx, watch));
        let _stop_poller = capture::StopOnDrop(poll_stop);
        let mut writer = Writer::new(&mut sink);
        writer.set_host_resolvers(crate::dns_rows::HostResolvers::new(&args.host_resolvers));
        writer.set_lost_base(lost_base.unwrap_or(0));
        writer.marker(Hook::RecordingStarted, &start_note(&recovery, lost_base.is_some()))?;
        let mut resolver = Resolver::default();
        // Kept open, hashed when an event of one of them needs it.
        match running {
            Ok(procs) => procs.into_iter().for_each(|c| resolver.defer(c)),
            Err(e) => tracing::warn!("no start-up snapshot of running processes: {e:#}"),
        }

        let mut status = StatusLine::new(match &layers {
            Some(l) if l.missing.is_empty() => "recording (sandboxed)",
            Some(_) => "recording (sandbox incomplete)",
            None => "recording (no sandbox)",
        });
        let mut keeper = crate::record_retention::Keeper::new(
            pinhole_recorder::retention::Retention {
                max_age_days: args.retain_days,
                max_bytes: args.retain_size.map(|s| s.as_u64()),
            },
            args.out.clone(),
            retention_key,
        );
        let mut by_duration = false;
        let mut links = Some(links);
        let mut result = Ok(());
        let mut last_lost_read = Instant::now() - Duration::from_secs(1);
        let mut short = crate::identity::fd_budget::Warner::default();
        loop {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(msg) => {
                    if let Err(e) = writer.handle(&mut resolver, msg) {
                        result = Err(e);
                        stop.store(true, Ordering::Release);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            let now = Instant::now();
            if now.duration_since(last_lost_read) >= Duration::from_millis(500) {
                last_lost_read = now;
                // Never leave this loop early: the poll thread only stops when told to.
                match capture::lost_events(&skel.maps.lost_events) {
                    Ok(n) => writer.set_lost(n),
                    Err(e) => tracing::warn!("{e:#}"),
                }
                short.check(now);
                let c = writer.counters();
                let bytes = writer.sink.stats().bytes_published.load(Ordering::Relaxed);
                crate::metrics::trail(c, bytes);
                crate::metrics::identities(resolver.cached(), resolver.stats());
                crate::metrics::retention(keeper.removed_files, keeper.removed_bytes);
            }
            if result.is_ok() {
                if let Err(e) = writer.sink.tick(now) {
                    result = Err(e.into());
                    stop.store(true, Ordering::Release);
                }
            }
            status.update(writer.counters());
            keeper.tick(now, writer.counters().files);
            notifier.alive(now);
            let expired = deadline.is_some_and(|d| now >= d);
            if expired && links.is_some() {
                by_duration = true;
            }
            if (stop.load(Ordering::Acquire) || expired) && links.is_some() {
                if let Some(l) = links.take() {
                    // --persist: what the programs capture from now on waits in the
                    // pinned rings. Otherwise detach first, then drain: nothing new
                    // arrives, nothing queued is lost.
                    if let Err(e) = finish_links(l, args.persist, &skel, &target, writer.lost_total()) {
                        result = result.and(Err(e));
                    }
                }
                poll_stop.store(true, Ordering::Release);
            }
        }
        status.finish();
        notifier.stopping();
        let polled = poller.join().map_err(|_| anyhow::anyhow!("the ring-buffer thread panicked"))?;
        writer.set_lost(capture::lost_events(&skel.maps.lost_events)?);
        let mut why = match (&result, &polled) {
            (Err(e), _) | (_, Err(e)) => format!("stopped by an error: {e:#}"),
            _ if by_duration => "stopped: --duration reached".into(),
            _ if terminated.load(Ordering::Acquire) => "stopped by SIGTERM".into(),
            _ => "stopped by SIGINT".into(),
        };
        if args.persist {
            why.push_str("; the programs stay attached (--persist): the next `pinhole record` drains what they capture meanwhile");
        }
        // Best effort when stopping on an error: the sink may be what failed.
        if let Err(e) = writer.marker(Hook::RecordingStopped, &printable(&why)) {
            tracing::warn!("the row marking the stop was not written: {e:#}");
        }
        let counters = writer.counters();
        let resolver = resolver.stats();
        result.and(polled).context("recording stopped")?;
        tracing::info!(
            events = counters.events,
            lost = counters.lost,
            binaries_hashed = resolver.files_hashed,
            unresolved = resolver.unresolved,
            exec_descriptors_not_kept = crate::identity::fd_budget::refused(),
            lost_to_full_disk = writer.sink.lost_to_full_disk(),
            retention_removed_files = keeper.removed_files,
            retention_removed_bytes = keeper.removed_bytes,
            "recording finished"
        );
        Ok(())
    })
    .inspect_err(|_| {
        crate::status::say(&format!(
            "pinhole: data already published in {} is intact; staged events are published by the next `pinhole record` on it",
            args.out.display()
        ))
    })?;
    let stats = sink.close().context("publishing the last file")?;
    crate::status::say(&format!(
        "pinhole: {} events written, {} files published in {}",
        stats.events_written.load(Ordering::Relaxed),
        stats.files_published.load(Ordering::Relaxed),
        args.out.display()
    ));
    Ok(())
}
