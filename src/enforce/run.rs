//! `pinhole enforce POLICY`: loads the policy into the kernel, keeps the identity table
//! current as binaries run, swaps policies on reload, and writes every decision to the
//! audit trail (or at least logs denials).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use libbpf_rs::{MapCore, MapHandle};
use pinhole_policygen::compile::{compile, Compiled};
use pinhole_recorder::{Sink, SinkConfig};
use sha2::{Digest, Sha256};

use super::backend::{self, Backend, BackendChoice};
use super::confine;
use super::denials::DenialLog;
use super::exec_gate::{self, ExecGate};
use super::generation::{self, Generation, Links, Options, Shared};
use super::identities::{self, AppsByHash};
use super::state::{self, State};
use super::EnforceArgs;
use crate::capture::{self, Captured};
use crate::identity::Resolver;
use crate::mounts;
use crate::status::StatusLine;
use crate::trail::{Labels, Writer};

/// A checked, compiled policy and where it came from.
struct Loaded {
    text: String,
    policy: pinhole_policygen::Policy,
    compiled: Arc<Compiled>,
}

fn load(path: &Path, consequence: &str) -> Result<Loaded> {
    let raw = crate::policy::read_policy_text(path)?;
    // Checked without the request's header line, so that line numbers are the file's.
    let text = state::strip_request_header(&raw).to_owned();
    // A reload request's file is ours, not the user's: name what it is instead.
    let shown = match text.len() < raw.len() {
        true => Path::new("the requested policy"),
        false => path,
    };
    let base = state::request_base(&raw)
        .unwrap_or_else(|| path.parent().unwrap_or(Path::new(".")).to_path_buf());
    drop(raw);
    let started = Instant::now();
    let mut policy = crate::policy::check_text(&text, shown, consequence)?;
    crate::policy::import_blocklists(&mut policy, shown, &base, consequence)?;
    let checked = started.elapsed();
    let compiled = Arc::new(compile(&policy));
    tracing::debug!(
        check_ms = checked.as_millis() as u64,
        compile_ms = (started.elapsed() - checked).as_millis() as u64,
        "policy checked and compiled"
    );
    Ok(Loaded {
        text,
        policy,
        compiled,
    })
}

/// Why a reload was refused, for the reload command: one line, then the policy's
/// problems (at most `MAX_RELAYED`) as LINE:COL: what, one per line.
fn refusal(e: &anyhow::Error) -> String {
    const MAX_RELAYED: usize = 100;
    let mut why = format!("{e:#}");
    if let Some(p) = e.downcast_ref::<crate::policy::Problems>() {
        for line in p.lines.iter().take(MAX_RELAYED) {
            why.push('\n');
            why.push_str(line);
        }
        if p.lines.len() > MAX_RELAYED {
            let more = p.lines.len() - MAX_RELAYED;
            why.push_str(&format!("\n(and {more} more: see the enforcer's log)"));
        }
    }
    why
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

pub fn run(args: EnforceArgs) -> Result<()> {
    let path = args
        .policy
        .clone()
        .context("no policy file given (pinhole enforce POLICY.toml)")?;
    // A bad file is refused before anything touches the kernel.
    let loaded = load(&path, "nothing was loaded")?;
    crate::privileges::require("pinhole enforce", crate::privileges::DAEMON)?;
    crate::record::ignore_terminal_stop();
    // A port in use is refused before anything is loaded; it is served once the
    // sandbox is in force, so that its thread is confined too.
    if let Some(addr) = args.metrics_listen {
        crate::metrics::check_free(addr)?;
    }
    // Handlers first: a signal that arrives during set-up must not kill the process
    // half-way (SIGHUP's default action is to terminate).
    let stop = Arc::new(AtomicBool::new(false));
    let reload = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(sig, 130, stop.clone())
            .context("installing signal handlers")?;
        signal_hook::flag::register(sig, stop.clone()).context("installing signal handlers")?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGHUP, reload.clone())
        .context("installing the SIGHUP handler")?;

    let previous = state::read()?;
    if let Some(s) = previous.as_ref().filter(|s| state::is_running(s.pid)) {
        bail!(
            "an enforcer is already running (pid {}); use `pinhole enforce reload` or `pinhole enforce stop`",
            s.pid
        );
    }
    let cg_root = mounts::cgroup2_root(Path::new("/run/pinhole/cgroup2"))?;
    let target = match &args.cgroup {
        Some(c) => mounts::resolve_cgroup(&cg_root, c)?,
        None => cg_root.clone(),
    };
    // Programs attach above the scope (the root), so that a socket made outside it and
    // used by a caller inside still passes them; the scope itself is checked per call.
    let attach_at = match &args.attach_cgroup {
        Some(a) => mounts::resolve_cgroup(&cg_root, a)?,
        None => cg_root.clone(),
    };
    if !target.starts_with(&attach_at) {
        bail!(
            "--attach-cgroup {} is not an ancestor of --cgroup {}",
            attach_at.display(),
            target.display()
        );
    }
    let scope = match target == cg_root {
        true => None,
        false => Some(mounts::cgroup_scope(&cg_root, &target)?),
    };
    let takeover = state::has_pins();
    let (mut backend, mut backend_reason) =
        backend::first_choice(args.backend, backend::KernelSupport::probe())?;
    let previous = if takeover {
        let prev = previous.with_context(|| {
            format!(
                "pinned enforcer links exist in {} but no state in {}; `pinhole enforce stop` removes them",
                state::PIN_DIR,
                state::STATE_DIR
            )
        })?;
        if Path::new(&prev.cgroup) != target {
            bail!(
                "a persisted enforcer is attached to {}, not {}; `pinhole enforce stop` first",
                prev.cgroup,
                target.display()
            );
        }
        // Its links are taken over in place: the same hooks, so the same backend.
        let pinned = Backend::parse(&prev.backend);
        if args.backend == BackendChoice::Auto {
            backend = pinned;
            backend_reason = "auto: the persisted enforcer's, whose links it took over".into();
        } else if pinned != backend {
            bail!(
                "a persisted enforcer uses the {} backend, not {}; `pinhole enforce stop` first",
                pinned.as_str(),
                backend.as_str()
            );
        }
        Some(prev)
    } else {
        None
    };
    mounts::ensure_tracefs()?;
    if args.persist {
        mounts::ensure_bpffs()?;
    }
    let mut sink = match &args.out {
        Some(out) => {
            let host = gethostname::gethostname().to_string_lossy().into_owned();
            let mut cfg = SinkConfig::new(out, host);
            cfg.flush_interval = args.flush_interval;
            cfg.signing_key = crate::evidence_cli::signing_key(args.signing_key.as_deref())?;
            Some(Sink::open(cfg).context("opening the dataset")?.0)
        }
        None => None,
    };

    let mut resolver = Resolver::default();
    identities::offer_policy_paths(&loaded.policy, &mut resolver);
    identities::offer_running(&mut resolver, &AppsByHash::new(&loaded.compiled));

    let mut opts = Options {
        force_audit: args.mode == super::RunMode::Audit,
        send_allowed: args.out.is_some(),
        ring_bytes: args.ring_size,
        identity_capacity: args.identity_capacity,
        name_capacity: args.name_capacity,
        scope,
        backend,
    };
    let shared = match takeover {
        true => Some(pinned_shared()?),
        false => None,
    };
    let number = previous.as_ref().map_or(1, |s| s.generation + 1);
    let loading = Instant::now();
    let load = |opts| {
        generation::load(
            number,
            loaded.compiled.clone(),
            opts,
            shared.as_ref(),
            &args.host_resolvers,
        )
    };
    let gen = match load(opts) {
        Err(e) if backend == Backend::Lsm && args.backend == BackendChoice::Auto && !takeover => {
            backend_reason = backend::fallback_reason(&e);
            tracing::warn!("{backend_reason}; enforcing with the cgroup hooks");
            backend = Backend::Cgroup;
            opts.backend = backend;
            load(opts)?
        }
        other => other?,
    };
    tracing::info!(backend = backend.as_str(), why = %backend_reason, "enforcer backend");
    tracing::debug!(
        took_ms = loading.elapsed().as_millis(),
        "programs and tables loaded into the kernel"
    );
    let shared = match shared {
        Some(s) => s,
        None => gen.shared()?,
    };
    let mut apps = AppsByHash::new(&loaded.compiled);
    let per_app = identities::seed(&gen.skel.maps.identities, &apps, &resolver)?;
    identities::report_seeding(&loaded.compiled, &per_app);
    let gate_target = Arc::new(Mutex::new(exec_gate::Target::new(
        apps.clone(),
        MapHandle::try_from(&gen.skel.maps.identities)?,
        resolver.sizes(),
    )));
    let gate = match args.no_exec_gate {
        true => None,
        false => ExecGate::prepare(),
    };
    // Everything that executes or needs more than the loop's rights is done: from here
    // on every thread this process starts is confined.
    let layers = confine::apply(
        args.out.as_deref(),
        args.persist,
        args.metrics_listen.map(|a| a.port()),
        args.no_sandbox,
        args.sandbox_strict,
    )?;
    if let Some(addr) = args.metrics_listen {
        crate::metrics::serve(addr, "enforce")?;
    }
    if let Some(l) = &layers {
        crate::metrics::sandbox(l);
    }
    let _gate = gate.map(|g| g.start(gate_target.clone()));

    let mut labels = Labels::new();
    if let Some(prev) = &previous {
        // Decisions the persisted programs queued while no process read them.
        if let Ok(text) = std::fs::read_to_string(state::policy_copy()) {
            if let Ok(p) = pinhole_policygen::check(&text, Default::default()) {
                labels.insert_retired(prev.generation, Arc::new(compile(&p)));
            }
        }
    }
    labels.insert_current(number, loaded.compiled.clone());

    let mut links = match takeover {
        true => {
            let mut l = Links::open_pinned(&state::pin_dir(), backend)?;
            l.swap_to(&gen, &shared)?;
            tracing::info!("took over the persisted enforcer without a gap");
            l
        }
        false => Links::attach(&gen, &shared, &attach_at)?,
    };
    if args.persist {
        if let Err(e) = links
            .pin(&state::pin_dir())
            .and_then(|_| pin_maps(&gen, &shared))
        {
            // Half-pinned state would outlive us: remove it, and fail open.
            state::remove_all().ok();
            return Err(e);
        }
    }
    let mut st = State {
        pid: std::process::id(),
        persisted: args.persist,
        cgroup: target.display().to_string(),
        mode: args.mode.as_str().to_owned(),
        generation: number,
        policy_sha256: sha256_hex(&loaded.text),
        policy_path: path.display().to_string(),
        out: args.out.as_ref().map(|o| o.display().to_string()),
        counters_map_id: gen.skel.maps.counters.info()?.info.id,
        name_maps: Some(state::NameMapIds {
            evidence: shared.name_evidence.info()?.info.id,
            texts: shared.name_texts.info()?.info.id,
            stats: shared.name_stats.info()?.info.id,
        }),
        loaded_at: chrono::Utc::now().to_rfc3339(),
        reload_error: None,
        last_request: None,
        last_request_ok: None,
        identity_evictions: 0,
        backend: backend.as_str().to_owned(),
        backend_reason,
        sandbox: layers.as_ref().map(|l| l.describe()),
    };
    state::write_atomic(&state::policy_copy(), loaded.text.as_bytes())?;
    state::write(&st)?;
    tracing::info!(
        cgroup = %target.display(),
        mode = args.mode.as_str(),
        apps = loaded.compiled.apps.len(),
        rules = loaded.compiled.rules.len(),
        persist = args.persist,
        "enforcing {}",
        path.display()
    );
    if !args.persist {
        tracing::info!("enforcement ends when this process exits (fail-open); --persist keeps it");
    }
    // The checked policy and its text are done with (the compiled tables stay, shared
    // with the labels): with a million rules they are hundreds of MB.
    drop(loaded);

    crate::identity::fd_budget::init();
    let watch = crate::identity::ExecWatch::start();
    let poll_stop = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel();
    let deadline = args.duration.map(|d| Instant::now() + d);
    let mut current = gen;
    let result = std::thread::scope(|s| -> Result<()> {
        let rings = (
            MapHandle::try_from(&shared.connect_events)?,
            MapHandle::try_from(&shared.exec_events)?,
        );
        let (poll_stop, interval) = (&poll_stop, args.poll_interval);
        let poller =
            s.spawn(move || capture::poll_loop(&rings.0, &rings.1, interval, poll_stop, tx, watch));
        // However this closure ends (a panic included), the poll thread is told to stop,
        // or the scope would wait for it forever with the programs attached.
        let _stop_poller = capture::StopOnDrop(poll_stop);
        let mut writer = sink.as_mut().map(Writer::new);
        if let Some(w) = writer.as_mut() {
            w.set_kernel_names(MapHandle::try_from(&shared.name_texts)?);
        }
        let mut denials = DenialLog::default();
        let mut unsettled = identities::Unsettled::default();
        let mut status = StatusLine::new(match &layers {
            Some(l) if l.missing.is_empty() => "enforcing (sandboxed)",
            Some(_) => "enforcing (sandbox incomplete)",
            None => "enforcing (no sandbox)",
        });
        let mut notifier = crate::service::Notifier::new();
        notifier.ready(&format!("enforcing {}", path.display()));
        let mut attached = true;
        labels.drain_starts(Instant::now());
        // How far the rings' contents have been handled: a replaced policy's labels
        // go only once what was consumed after its grace has been written.
        let mut drained = Instant::now();
        let mut result = Ok(());
        let mut last_lost = Instant::now();
        let mut last_names: Option<Instant> = None;
        loop {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(Captured::Exec(c)) => {
                    let map = &current.skel.maps.identities;
                    if let Err(e) = identities::learn(map, &apps, &mut resolver, &mut unsettled, c)
                    {
                        tracing::warn!("{e:#}");
                    }
                }
                Ok(Captured::Connects(batch, consumed)) => {
                    drained = drained.max(consumed);
                    let batch = capture::only_connects(batch);
                    denials.note(&batch, &labels, writer.is_none());

                    if let Some(w) = writer.as_mut() {
                        if let Err(e) = w.append_all(&mut resolver, &labels, &batch) {
                            result = Err(e);
                            stop.store(true, Ordering::Release);
                        }
                    }
                }
                // Nothing queued: everything consumed so far has been handled.
                Err(RecvTimeoutError::Timeout) => drained = Instant::now(),
                Err(RecvTimeoutError::Disconnected) => break,
            }
            for c in unsettled.due() {
                let map = &current.skel.maps.identities;
                if let Err(e) = identities::learn(map, &apps, &mut resolver, &mut unsettled, c) {
                    tracing::warn!("{e:#}");
                }
            }
            let now = Instant::now();
            labels.prune(drained);
            if reload.swap(false, Ordering::AcqRel) && attached {
                let taken = state::take_reload_request();
                let requested = taken
                    .as_ref()
                    .and_then(|t| std::fs::read_to_string(t).ok())
                    .map(|t| sha256_hex(&t));
                let mut ctx = Reload {
                    policy: taken.as_deref().unwrap_or(&path),
                    opts,
                    shared: &shared,
                    resolver: &mut resolver,
                    gate: &gate_target,
                    persist: args.persist,
                    host_resolvers: &args.host_resolvers,
                };
                let outcome = ctx.run(&current, &mut links);
                state::set_reload_phase(None);
                match outcome {
                    Ok((gen, text)) => {
                        labels.insert_current(gen.number, gen.compiled.clone());
                        apps = AppsByHash::new(&gen.compiled);
                        st.generation = gen.number;
                        st.policy_sha256 = sha256_hex(&text);
                        // Errors inside this loop must not leave it: the poll thread
                        // only stops when told to, and the scope waits for it.
                        st.counters_map_id = gen.skel.maps.counters.info().map_or(0, |i| i.info.id);
                        st.loaded_at = chrono::Utc::now().to_rfc3339();
                        st.reload_error = None;
                        st.last_request_ok = Some(true);
                        current = gen;
                        crate::metrics::reload(true, current.number);
                        tracing::info!(generation = current.number, "reloaded the policy");
                    }
                    Err(e) => {
                        tracing::error!(
                            "reload refused, the previous policy stays in force: {e:#}"
                        );
                        st.reload_error = Some(refusal(&e));
                        st.last_request_ok = Some(false);
                        crate::metrics::reload(false, current.number);
                    }
                }
                if let Some(t) = &taken {
                    std::fs::remove_file(t).ok();
                }
                st.last_request = requested;
                if let Err(e) = state::write(&st) {
                    tracing::warn!("{e:#}");
                }
            }
            if now.duration_since(last_lost) >= Duration::from_millis(500) {
                last_lost = now;
                let scopes = &current.skel.maps.rule_scopes;
                match super::rule_scopes::refresh(scopes, &current.compiled) {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::info!(scopes = n, "rule cgroups made anew: scopes follow them")
                    }
                    Err(e) => tracing::warn!("{e:#}"),
                }
                let evictions = super::tables::identity_evictions();
                crate::metrics::identity_evictions(evictions);
                if args.metrics_listen.is_some() {
                    let apps = &current.compiled.apps;
                    match super::tables::read_counters(
                        &current.skel.maps.counters,
                        apps.len() as u32 + 1,
                    ) {
                        Ok(counts) => crate::metrics::decisions(
                            std::iter::once("(unknown binary)")
                                .chain(apps.iter().map(|a| a.name.as_str()))
                                .zip(counts.iter().map(|c| [c.allowed, c.denied, c.would_deny])),
                        ),
                        Err(e) => tracing::warn!("{e:#}"),
                    }
                }
                if let Some(w) = writer.as_ref() {
                    let bytes = w.sink.stats().bytes_published.load(Ordering::Relaxed);
                    crate::metrics::trail(w.counters(), bytes);
                }
                // Counting live evidence walks the map: every 10 s, not every turn.
                let names_due =
                    last_names.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(10));
                if args.metrics_listen.is_some() && current.compiled.names.is_some() && names_due {
                    last_names = Some(now);
                    match super::names::read_stats(&st) {
                        Ok(n) => crate::metrics::names(&n),
                        Err(e) => tracing::warn!("{e:#}"),
                    }
                }
                if evictions != st.identity_evictions {
                    st.identity_evictions = evictions;
                    if let Err(e) = state::write(&st) {
                        tracing::warn!("{e:#}");
                    }
                }
                match capture::lost_events(&shared.lost_events) {
                    Ok(n) => match writer.as_mut() {
                        Some(w) => w.set_lost(n),
                        None => denials.lost = n,
                    },
                    Err(e) => tracing::warn!("{e:#}"),
                }
            }
            if let Some(w) = writer.as_mut().filter(|_| result.is_ok()) {
                if let Err(e) = w.sink.tick(now) {
                    result = Err(e.into());
                    stop.store(true, Ordering::Release);
                }
            }
            status.update(match writer.as_ref() {
                Some(w) => w.counters(),
                None => denials.counters(),
            });
            notifier.alive(now);
            let expired = deadline.is_some_and(|d| now >= d);
            if (stop.load(Ordering::Acquire) || expired) && attached {
                attached = false;
                // Persisted links stay; otherwise detaching ends enforcement (fail-open).
                // Either way nothing new arrives for this process: drain and stop.
                poll_stop.store(true, Ordering::Release);
            }
        }
        status.finish();
        notifier.stopping();
        poller
            .join()
            .map_err(|_| anyhow::anyhow!("the ring-buffer thread panicked"))??;
        if let Some(w) = writer.as_mut() {
            w.set_lost(capture::lost_events(&shared.lost_events)?);
        }
        result
    });
    let finish = if args.persist {
        links.leave_pinned();
        st.pid = 0;
        state::write(&st)?;
        crate::status::say(&format!(
            "pinhole: the policy stays enforced (pinned in {}); `pinhole enforce stop` removes it",
            state::PIN_DIR
        ));
        Ok(())
    } else {
        links.unpin()?;
        drop(links);
        state::remove_all().map(|_| ())
    };
    if let Some(sink) = sink {
        let stats = sink.close().context("publishing the last file")?;
        crate::status::say(&format!(
            "pinhole: {} decisions written, {} files published",
            stats.events_written.load(Ordering::Relaxed),
            stats.files_published.load(Ordering::Relaxed)
        ));
    }
    result.context("enforcement stopped")?;
    finish
}

/// Opens the rings and loss counters a persisted enforcer left pinned.
fn pinned_shared() -> Result<Shared> {
    let open = |name: &str| {
        let p = state::pin_dir().join(name);
        MapHandle::from_pinned_path(&p)
            .with_context(|| format!("opening pinned map {}", p.display()))
    };
    Ok(Shared {
        connect_events: open("connect_events")?,
        exec_events: open("exec_events")?,
        lost_events: open("lost_events")?,
        mptcp_owners: open("mptcp_owners")?,
        name_evidence: open("name_evidence")?,
        name_ids: open("name_ids")?,
        name_texts: open("name_texts")?,
        name_id_next: open("name_id_next")?,
        name_askers: open("name_askers")?,
        name_stats: open("name_stats")?,
        name_epoch: open_or_new_array("name_epoch", 8)?,
        active_generation: open_or_new_array("active_generation", 4)?,
    })
}

/// A persisted enforcer of an older pinhole pinned neither the active-generation map
/// (only the LSM backend's programs read it, and it had none) nor the evidence epoch
/// (it cached no verdicts): the takeover gets a fresh one-entry array.
fn open_or_new_array(name: &str, value_size: u32) -> Result<MapHandle> {
    let p = state::pin_dir().join(name);
    if p.exists() {
        return MapHandle::from_pinned_path(&p)
            .with_context(|| format!("opening pinned map {}", p.display()));
    }
    let opts = libbpf_rs::libbpf_sys::bpf_map_create_opts {
        sz: std::mem::size_of::<libbpf_rs::libbpf_sys::bpf_map_create_opts>() as _,
        ..Default::default()
    };
    // The kernel keeps 15 bytes of a map's name.
    let short = &name[..name.len().min(15)];
    MapHandle::create(
        libbpf_rs::MapType::Array,
        Some(short),
        4,
        value_size,
        1,
        &opts,
    )
    .with_context(|| format!("creating the {name} map for a persisted enforcer"))
}

/// Pins the shared maps (once) and this generation's counters (replacing the last).
fn pin_maps(gen: &Generation, shared: &Shared) -> Result<()> {
    let dir = state::pin_dir();
    for (name, map) in [
        ("connect_events", &shared.connect_events),
        ("exec_events", &shared.exec_events),
        ("lost_events", &shared.lost_events),
        ("mptcp_owners", &shared.mptcp_owners),
        ("name_evidence", &shared.name_evidence),
        ("name_ids", &shared.name_ids),
        ("name_texts", &shared.name_texts),
        ("name_id_next", &shared.name_id_next),
        ("name_askers", &shared.name_askers),
        ("name_stats", &shared.name_stats),
        ("name_epoch", &shared.name_epoch),
        ("active_generation", &shared.active_generation),
    ] {
        let p = dir.join(name);
        if !p.exists() {
            MapHandle::try_from(map)?
                .pin(&p)
                .with_context(|| format!("pinning {}", p.display()))?;
        }
    }
    let p = dir.join("counters");
    if p.exists() {
        std::fs::remove_file(&p).with_context(|| format!("replacing {}", p.display()))?;
    }
    MapHandle::try_from(&gen.skel.maps.counters)?
        .pin(&p)
        .with_context(|| format!("pinning {}", p.display()))
}

/// What a reload needs from the running enforcer.
struct Reload<'a> {
    /// The taken request, or the file the enforcer was started with (SIGHUP alone).
    policy: &'a Path,
    opts: Options,
    shared: &'a Shared,
    resolver: &'a mut Resolver,
    gate: &'a Mutex<exec_gate::Target>,
    persist: bool,
    host_resolvers: &'a [String],
}

impl Reload<'_> {
    /// Loads the requested policy as a new generation with complete tables, then moves
    /// every hook to it.
    fn run(&mut self, current: &Generation, links: &mut Links) -> Result<(Generation, String)> {
        let phase = |p: &str| state::set_reload_phase(Some(p));
        phase("checking and compiling the policy");
        let loaded = load(self.policy, "the previous policy stays in force")?;
        phase("loading the programs and tables into the kernel");
        let gen = generation::load(
            current.number + 1,
            loaded.compiled.clone(),
            self.opts,
            Some(self.shared),
            self.host_resolvers,
        )?;
        phase("placing the identities of hashed files");
        let apps = AppsByHash::new(&loaded.compiled);
        // The new policy's files, and running processes of its apps' sizes, may not
        // have been hashed for the previous one.
        identities::offer_policy_paths(&loaded.policy, self.resolver);
        identities::offer_running(self.resolver, &apps);
        let per_app = identities::seed(&gen.skel.maps.identities, &apps, self.resolver)?;
        identities::report_seeding(&loaded.compiled, &per_app);
        phase("moving the hooks to the new policy");
        if let Err(e) = links.swap_to(&gen, self.shared) {
            // Put back the hooks that did switch: one policy decides, never two.
            links.swap_to(current, self.shared).ok();
            return Err(e);
        }
        // Only now: the gate writes to the table of the policy in force.
        self.gate
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retarget(
                apps,
                MapHandle::try_from(&gen.skel.maps.identities)?,
                self.resolver.sizes(),
            );
        if self.persist {
            links.pin(&state::pin_dir())?;
            pin_maps(&gen, self.shared)?;
        }
        state::write_atomic(&state::policy_copy(), loaded.text.as_bytes())?;
        Ok((gen, loaded.text))
    }
}
