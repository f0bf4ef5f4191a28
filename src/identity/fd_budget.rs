//! A bound on the descriptors held for executables not hashed yet.
//!
//! Each exec can pin a descriptor of its file (fanotify's, or /proc/<pid>/exe) until
//! the file is hashed; at thousands of execs a second that outgrows the descriptor
//! limit (1,024 by default under systemd) and would kill pinhole with EMFILE. Past the
//! bound a descriptor is not kept, and that is counted: such an executable is then
//! identified through /proc at its process's first connect, as on a host without
//! fanotify.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Descriptors left for everything else: BPF objects, dataset files, sockets, and the
/// burst one fanotify read installs (a 4 KiB buffer of 24-byte events).
const RESERVE: usize = 512;
/// Above this a larger budget buys nothing: it is two seconds of a heavy exec storm.
const MAX_BUDGET: usize = 8_192;
/// The least budget, even under a tiny limit.
const MIN_BUDGET: usize = 32;

static LIMIT: AtomicUsize = AtomicUsize::new(MIN_BUDGET);
static USED: AtomicUsize = AtomicUsize::new(0);
static REFUSED: AtomicU64 = AtomicU64::new(0);

/// Raises the soft descriptor limit to the hard one (pinhole never uses select) and
/// sizes the budget from it; returns the budget.
pub fn init() -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim = raised;
            }
        }
    }
    let soft = usize::try_from(lim.rlim_cur).unwrap_or(usize::MAX);
    let budget = budget_for(soft);
    LIMIT.store(budget, Ordering::Relaxed);
    tracing::debug!(
        soft_limit = soft,
        budget,
        "descriptor budget for unhashed executables"
    );
    budget
}

fn budget_for(soft_limit: usize) -> usize {
    (soft_limit.saturating_sub(RESERVE) / 2).clamp(MIN_BUDGET, MAX_BUDGET)
}

/// Leave to hold one descriptor; released when dropped.
#[derive(Debug)]
pub struct Token(());

impl Drop for Token {
    fn drop(&mut self) {
        USED.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A token if the budget has room; else the refusal is counted.
pub fn take() -> Option<Token> {
    let limit = LIMIT.load(Ordering::Relaxed);
    let taken = USED
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < limit).then_some(n + 1)
        })
        .is_ok();
    if taken {
        Some(Token(()))
    } else {
        REFUSED.fetch_add(1, Ordering::Relaxed);
        None
    }
}

/// Descriptors not kept because the budget was spent, since start.
pub fn refused() -> u64 {
    REFUSED.load(Ordering::Relaxed)
}

/// Logs, at most every ten seconds, that descriptors were not kept.
#[derive(Default)]
pub struct Warner {
    seen: u64,
    last: Option<std::time::Instant>,
}

impl Warner {
    pub fn check(&mut self, now: std::time::Instant) {
        let n = refused();
        if n == self.seen
            || self
                .last
                .is_some_and(|t| now.duration_since(t).as_secs() < 10)
        {
            return;
        }
        tracing::warn!(
            not_kept = n - self.seen,
            budget = LIMIT.load(Ordering::Relaxed),
            "exec storm: executables' descriptors not kept past the descriptor budget (they are identified through /proc at their first connect)"
        );
        self.seen = n;
        self.last = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_follows_the_limit_within_bounds() {
        assert_eq!(budget_for(1_024), 256);
        assert_eq!(budget_for(100), MIN_BUDGET);
        assert_eq!(budget_for(1 << 20), MAX_BUDGET);
    }

    #[test]
    fn tokens_past_the_budget_are_refused_and_counted_then_returned() {
        LIMIT.store(USED.load(Ordering::Acquire) + 2, Ordering::Relaxed);
        let before = refused();
        let a = take().unwrap();
        let _b = take().unwrap();
        assert!(take().is_none());
        assert_eq!(refused(), before + 1);
        drop(a);
        assert!(take().is_some(), "a returned token makes room");
        LIMIT.store(MIN_BUDGET, Ordering::Relaxed);
    }
}
