//! `pinhole enforce status | reload | stop`: talk to the running or persisted enforcer
//! through its state file, its signals and its kernel maps.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use libbpf_rs::MapHandle;
use pinhole_policygen::compile::{compile, Compiled};
use sha2::{Digest, Sha256};

use pinhole_recorder::printable::printable;

use super::state::{self, State};
use super::tables::{read_counters, Counts};

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Output format.
    #[arg(long, value_parser = ["table", "json"], default_value = "table")]
    format: String,
}

#[derive(Debug, clap::Args)]
pub struct ReloadArgs {
    /// The new policy (checked before the enforcer is asked to load it).
    policy: PathBuf,
}

#[derive(serde::Serialize)]
struct AppStatus {
    app: Option<String>,
    sha256: Option<String>,
    mode: Option<String>,
    #[serde(flatten)]
    counts: Counts,
}

#[derive(serde::Serialize)]
struct Status {
    running: bool,
    #[serde(flatten)]
    state: State,
    apps: Vec<AppStatus>,
    /// DNS replies read and name evidence kept (policies with names only).
    names: Option<super::names::NameStats>,
}

/// The policy in force, from the enforcer's copy of it.
pub fn active_policy() -> Result<Compiled> {
    let text = std::fs::read_to_string(state::policy_copy())
        .with_context(|| format!("reading {}", state::policy_copy().display()))?;
    // Apps, hashes and whether names are used: blocklist files add only names denied.
    let policy = pinhole_policygen::check(&text, Default::default()).map_err(|_| {
        anyhow::anyhow!(
            "the active policy copy in {} does not check",
            state::STATE_DIR
        )
    })?;
    Ok(compile(&policy))
}

pub fn status(args: StatusArgs) -> Result<()> {
    crate::privileges::require("pinhole enforce status", crate::privileges::CONTROL)?;
    let Some(st) = state::read()? else {
        if state::has_pins() {
            bail!(
                "pinned enforcer links exist in {} without state; `pinhole enforce stop` removes them",
                state::PIN_DIR
            );
        }
        match args.format.as_str() {
            "json" => println!(
                "{}",
                serde_json::json!({ "running": false, "loaded": false })
            ),
            _ => println!("not enforcing: no enforcer is loaded"),
        }
        return Ok(());
    };
    let running = state::is_running(st.pid);
    let counters = if state::has_pins() {
        let p = state::pin_dir().join("counters");
        MapHandle::from_pinned_path(&p).with_context(|| format!("opening {}", p.display()))?
    } else if running {
        MapHandle::from_map_id(st.counters_map_id).context("opening the enforcer's counters")?
    } else {
        match args.format.as_str() {
            "json" => println!(
                "{}",
                serde_json::json!({ "running": false, "loaded": false, "stale_pid": st.pid })
            ),
            _ => println!(
                "not enforcing: the enforcer (pid {}) exited without --persist; its state is stale",
                st.pid
            ),
        }
        return Ok(());
    };
    let compiled = active_policy()?;
    let counts = read_counters(&counters, compiled.apps.len() as u32 + 1)?;
    let mut apps = vec![AppStatus {
        app: None,
        sha256: None,
        mode: None,
        counts: counts[0],
    }];
    for (a, c) in compiled.apps.iter().zip(&counts[1..]) {
        apps.push(AppStatus {
            app: Some(a.name.clone()),
            sha256: Some(hex::encode(a.sha256)),
            mode: Some(format!("{:?}", a.mode).to_lowercase()),
            counts: *c,
        });
    }
    let names = match compiled.names {
        Some(_) => Some(super::names::read_stats(&st)?),
        None => None,
    };
    let status = Status {
        running,
        state: st,
        apps,
        names,
    };
    if args.format == "json" {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print_status(&status);
    }
    Ok(())
}

fn print_status(s: &Status) {
    let st = &s.state;
    let who = match (s.running, st.persisted) {
        (true, _) => format!("running (pid {})", st.pid),
        (false, true) => "persisted: programs pinned, no process (decisions are queued)".into(),
        (false, false) => "not running".into(),
    };
    println!("enforcer:   {who}");
    println!(
        "policy:     {} (sha256 {})",
        st.policy_path, st.policy_sha256
    );
    println!("generation: {} loaded {}", st.generation, st.loaded_at);
    println!("mode:       {}", st.mode);
    println!("backend:    {} ({})", st.backend, st.backend_reason);
    println!("cgroup:     {}", st.cgroup);
    if s.running {
        let sandbox = st.sandbox.as_deref().unwrap_or("off (--no-sandbox)");
        println!("sandbox:    {sandbox}");
    }
    println!(
        "audit trail: {}",
        st.out.as_deref().unwrap_or("(none: denials are logged)")
    );
    if let Some(e) = &st.reload_error {
        println!("last reload refused: {e}");
    }
    if st.identity_evictions > 0 {
        println!(
            "identity table: {} entries evicted when full (raise --identity-capacity)",
            st.identity_evictions
        );
    }
    if let Some(n) = &s.names {
        println!(
            "names:      {} DNS replies read ({} unreadable), {} addresses vouched for now",
            n.replies, n.unreadable_replies, n.evidence_entries_live
        );
        println!(
            "            evicted: {} evidence entries (least recently used), {} names from full entries, {} names forgotten",
            n.evidence_entries_evicted, n.names_pushed_out, n.names_forgotten
        );
    }
    println!();
    println!(
        "{:<28} {:<14} {:<8} {:>12} {:>10} {:>11}",
        "APP", "SHA256", "MODE", "ALLOWED", "DENIED", "WOULD-DENY"
    );
    for a in &s.apps {
        println!(
            "{:<28} {:<14} {:<8} {:>12} {:>10} {:>11}",
            a.app.as_deref().unwrap_or("(unknown binaries)"),
            a.sha256.as_deref().map_or("-", |h| &h[..12]),
            a.mode.as_deref().unwrap_or("-"),
            a.counts.allowed,
            a.counts.denied,
            a.counts.would_deny
        );
    }
}

pub fn reload(args: ReloadArgs) -> Result<()> {
    // Checked once, by the enforcer, which relays the problems: a second check here
    // would add seconds to a large policy's reload.
    let text = crate::policy::read_policy_text(&args.policy)?;
    crate::privileges::require("pinhole enforce reload", crate::privileges::CONTROL)?;
    let st = state::read()?
        .context("no enforcer is loaded (start one with `pinhole enforce POLICY`)")?;
    if !state::is_running(st.pid) {
        bail!(
            "no enforcer process is running (persisted programs keep the last policy); \
             `pinhole enforce --persist {}` takes over with the new one",
            args.policy.display()
        );
    }
    // The policy's directory goes along: its blocklist files are named relative to it.
    let dir = std::path::absolute(&args.policy)?
        .parent()
        .map(|d| d.display().to_string())
        .unwrap_or_default();
    let nonce = format!(
        "{} {} {dir}",
        std::process::id(),
        chrono::Utc::now().to_rfc3339()
    );
    let request_text = format!("{}{nonce}\n{text}", state::REQUEST_HEADER);
    let want = hex::encode(Sha256::digest(request_text.as_bytes()));
    let request = state::reload_request();
    state::write_atomic(&request, request_text.as_bytes())?;
    // SAFETY: kill with a valid signal number has no memory effects.
    if unsafe { libc::kill(st.pid as libc::pid_t, libc::SIGHUP) } != 0 {
        bail!(
            "signalling pid {}: {}",
            st.pid,
            std::io::Error::last_os_error()
        );
    }
    // Done when the enforcer reports having taken this request, however long a large
    // policy takes; only the enforcer's exit ends the wait otherwise.
    let spinner = crate::status::Spinner::new("reloading");
    let started = Instant::now();
    loop {
        let now = state::read()?.context("the enforcer's state disappeared during reload")?;
        match state::request_outcome(&now, &want) {
            Some(Ok(generation)) => {
                spinner.finish();
                println!(
                    "reloaded {} (generation {generation}) in {:.1} s",
                    args.policy.display(),
                    started.elapsed().as_secs_f64()
                );
                return Ok(());
            }
            Some(Err(why)) => {
                spinner.finish();
                let mut lines = why.lines();
                let first = lines.next().unwrap_or_default();
                for problem in lines {
                    eprintln!("{}:{}", args.policy.display(), printable(problem));
                }
                bail!(
                    "the enforcer refused the new policy; nothing was changed, the previous \
                     one stays in force: {}",
                    printable(first)
                )
            }
            None => {}
        }
        if !state::is_running(st.pid) {
            spinner.finish();
            bail!(
                "the enforcer (pid {}) exited before taking the reload request",
                st.pid
            );
        }
        let phase = state::reload_phase().unwrap_or_else(|| "waiting for the enforcer".into());
        spinner.say(&format!(
            "{} ({:.0} s)",
            pinhole_recorder::printable::printable(&phase),
            started.elapsed().as_secs_f64()
        ));
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn stop() -> Result<()> {
    crate::privileges::require("pinhole enforce stop", crate::privileges::CONTROL)?;
    let st = state::read()?;
    if let Some(s) = st.as_ref().filter(|s| state::is_running(s.pid)) {
        // SAFETY: as above.
        unsafe { libc::kill(s.pid as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while state::is_running(s.pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if state::is_running(s.pid) {
            bail!("the enforcer (pid {}) did not exit within 30 s", s.pid);
        }
        println!("stopped the enforcer (pid {})", s.pid);
    }
    let removed = state::remove_all()?;
    if !removed.is_empty() {
        println!(
            "removed {} pinned objects from {}: enforcement has ended",
            removed.len(),
            state::PIN_DIR
        );
    } else if st.is_none() {
        println!("nothing to stop: no enforcer is loaded");
    }
    Ok(())
}
