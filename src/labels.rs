//! What an enforcer decision's app id and rule number mean: the compiled policy of the
//! generation that decided, kept while its decisions can still arrive.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pinhole_policygen::compile::Compiled;

use crate::skel::connect_event;

/// How long a replaced policy's labels are kept: its last decisions are still in the
/// ring for a poll interval after the reload (at most 1 s, `--poll-interval`'s bound).
const RETIRED_KEPT: Duration = Duration::from_secs(2);

/// The enforcer's policies by generation: what its app ids and rule numbers mean.
/// Replaced generations are forgotten once their decisions have been drained, so
/// memory follows the policies in force, not the number of reloads.
#[derive(Default)]
pub struct Labels {
    by_generation: HashMap<u32, Arc<Compiled>>,
    /// Replaced generations, and when they were replaced.
    retired: Vec<(u32, Instant)>,
}

impl Labels {
    pub fn new() -> Self {
        Self::default()
    }

    /// A generation whose decisions may still be in the ring (a persisted enforcer's,
    /// taken over): kept as if replaced now.
    pub fn insert_retired(&mut self, generation: u32, policy: Arc<Compiled>) {
        self.by_generation.insert(generation, policy);
        self.retired.push((generation, Instant::now()));
    }

    /// The policy now in force; every other generation starts its grace period.
    pub fn insert_current(&mut self, generation: u32, policy: Arc<Compiled>) {
        self.prune(Instant::now());
        let now = Instant::now();
        for g in self.by_generation.keys() {
            if !self.retired.iter().any(|(r, _)| r == g) {
                self.retired.push((*g, now));
            }
        }
        self.by_generation.insert(generation, policy);
    }

    /// The ring's drain starts now: every retired generation's grace starts over. A
    /// taken-over enforcer's decisions wait in the pinned ring until then, and the
    /// set-up in between (attaching, pinning) can outlast the grace on a slow machine:
    /// their rows lost the app's name in a QEMU guest.
    pub fn drain_starts(&mut self, now: Instant) {
        for (_, at) in &mut self.retired {
            *at = now;
        }
    }

    /// Forgets generations replaced more than `RETIRED_KEPT` before `now`.
    pub fn prune(&mut self, now: Instant) {
        let by = &mut self.by_generation;
        self.retired.retain(|(g, at)| {
            let keep = now.duration_since(*at) < RETIRED_KEPT;
            if !keep {
                by.remove(g);
            }
            keep
        });
    }

    pub fn get(&self, generation: u32) -> Option<&Arc<Compiled>> {
        self.by_generation.get(&generation)
    }

    /// How many policies are held.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_generation.len()
    }
}

/// The app name and rule id an enforcer decision carries (none for the recorder).
pub fn label<'l>(labels: &'l Labels, e: &connect_event) -> (Option<&'l str>, Option<&'l str>) {
    let Some(policy) = labels.get(e.generation) else {
        return (None, None);
    };
    (
        policy.app(e.app_id).map(|a| a.name.as_str()),
        policy.rule(e.rule).map(|(_, id)| id),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Arc<Compiled> {
        let p = pinhole_policygen::check("version = 1\n", Default::default()).unwrap();
        Arc::new(pinhole_policygen::compile::compile(&p))
    }

    /// Regression: every reload kept the previous policy's labels for good (165 MB to
    /// 433 MB over 24 reloads of a 100,000-rule policy).
    #[test]
    fn reloads_do_not_accumulate_policies() {
        let mut labels = Labels::new();
        labels.insert_retired(1, policy());
        for generation in 2..=101 {
            labels.insert_current(generation, policy());
        }
        // The one in force and the ones replaced within the grace period.
        assert!(labels.get(101).is_some());
        assert!(labels.get(100).is_some(), "still draining");
        labels.prune(Instant::now() + RETIRED_KEPT);
        assert_eq!(labels.len(), 1, "only the policy in force is left");
        assert!(labels.get(101).is_some());
    }

    /// Regression: a taken-over generation's labels expired during a slow set-up,
    /// before its queued decisions were drained.
    #[test]
    fn a_taken_over_generation_is_kept_from_when_the_drain_starts() {
        let mut labels = Labels::new();
        labels.insert_retired(1, policy());
        labels.insert_current(2, policy());
        let drain = Instant::now() + RETIRED_KEPT * 3;
        labels.drain_starts(drain);
        labels.prune(drain + RETIRED_KEPT / 2);
        assert!(
            labels.get(1).is_some(),
            "its decisions are still being drained"
        );
        labels.prune(drain + RETIRED_KEPT);
        assert!(labels.get(1).is_none());
    }
}
