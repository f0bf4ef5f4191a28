//! Activity over time: per hour, an app's events and how many of them an enforcer
//! denied or would have denied. What the report plots, and what `analyze --format
//! json` lists per app, so both come from one count.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Counts of one hour (or, once folded, one period).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub events: u64,
    pub denied: u64,
    pub would_deny: u64,
}

impl Counts {
    fn add(&mut self, o: Counts) {
        self.events += o.events;
        self.denied += o.denied;
        self.would_deny += o.would_deny;
    }
}

/// Hours since the epoch and their counts while a scan runs. Rows come in time order,
/// so an event almost always lands on the last entry (one comparison); entries out of
/// order are appended and folded when the vector would grow.
#[derive(Debug, Default)]
pub(crate) struct HourRun(Vec<(i64, Counts)>);

impl HourRun {
    /// Counts one event of `hour`; the returned entry takes its verdict.
    pub fn event(&mut self, hour: i64) -> &mut Counts {
        if self.0.last().is_none_or(|(h, _)| *h != hour) {
            self.push(hour, Counts::default());
        }
        let last = &mut self.0.last_mut().expect("just pushed").1;
        last.events += 1;
        last
    }

    pub fn absorb(&mut self, o: &HourRun) {
        for &(h, c) in &o.0 {
            match self.0.last_mut() {
                Some((last, mine)) if *last == h => mine.add(c),
                _ => self.push(h, c),
            }
        }
    }

    /// Appends an entry, folding first when the vector would grow: it stays within
    /// twice the distinct hours however the rows alternate.
    fn push(&mut self, hour: i64, c: Counts) {
        if self.0.len() == self.0.capacity() && self.0.len() >= 64 {
            self.fold_in_place();
        }
        self.0.push((hour, c));
    }

    fn fold_in_place(&mut self) {
        let folded = self.folded();
        self.0.clear();
        self.0.extend(folded);
    }

    /// One entry per hour, in order.
    pub fn folded(&self) -> BTreeMap<i64, Counts> {
        let mut out: BTreeMap<i64, Counts> = BTreeMap::new();
        for &(h, c) in &self.0 {
            out.entry(h).or_default().add(c);
        }
        out
    }
}

/// Adds `o`'s hours into `into` (summaries of disjoint parts merge exactly).
pub fn merge(into: &mut BTreeMap<i64, Counts>, o: BTreeMap<i64, Counts>) {
    for (h, c) in o {
        into.entry(h).or_default().add(c);
    }
}

/// The period activity is shown in: an hour when the data spans less than two days,
/// else a day (the learning curve's rule, applied to the whole dataset so every app's
/// series lines up).
pub fn period_hours(first_ns: i64, last_ns: i64) -> i64 {
    const DAY_NS: i64 = 24 * 3_600_000_000_000;
    if last_ns - first_ns < 2 * DAY_NS {
        1
    } else {
        24
    }
}

/// One period's counts as `analyze` prints them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PeriodActivity {
    pub start: String,
    pub events: u64,
    pub denied: u64,
    pub would_deny: u64,
}

/// Hourly counts folded into periods of `hours` hours (periods start at a multiple of
/// the period since the epoch, midnight UTC for days); empty periods are left out.
pub fn by_period(hourly: &BTreeMap<i64, Counts>, hours: i64) -> Vec<PeriodActivity> {
    let mut per: BTreeMap<i64, Counts> = BTreeMap::new();
    for (&h, &c) in hourly {
        per.entry(h.div_euclid(hours)).or_default().add(c);
    }
    per.into_iter()
        .map(|(p, c)| PeriodActivity {
            start: crate::profile::rfc3339(p * hours * 3_600_000_000_000),
            events: c.events,
            denied: c.denied,
            would_deny: c.would_deny,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_order_hours_fold_into_one_count_each() {
        let mut run = HourRun::default();
        for i in 0..1000 {
            // Alternating hours: the worst case for the last-entry check.
            run.event(i % 3).denied += u64::from(i % 2 == 0);
        }
        assert!(run.0.len() <= 200, "folded as it grew: {}", run.0.len());
        let f = run.folded();
        assert_eq!(f.len(), 3);
        assert_eq!(f.values().map(|c| c.events).sum::<u64>(), 1000);
        assert_eq!(f.values().map(|c| c.denied).sum::<u64>(), 500);
        let mut other = HourRun::default();
        other.event(7).would_deny += 1;
        run.absorb(&other);
        assert_eq!(run.folded()[&7].would_deny, 1);
    }

    #[test]
    fn days_start_at_midnight_and_empty_periods_are_left_out() {
        let hourly: BTreeMap<i64, Counts> = [(1, 2), (23, 3), (24, 4), (24 * 5 + 2, 1)]
            .into_iter()
            .map(|(h, e)| {
                (
                    h,
                    Counts {
                        events: e,
                        ..Default::default()
                    },
                )
            })
            .collect();
        let days = by_period(&hourly, 24);
        let got: Vec<(&str, u64)> = days.iter().map(|p| (p.start.as_str(), p.events)).collect();
        assert_eq!(
            got,
            [
                ("1970-01-01T00:00:00Z", 5),
                ("1970-01-02T00:00:00Z", 4),
                ("1970-01-06T00:00:00Z", 1)
            ]
        );
        assert_eq!(by_period(&hourly, 1).len(), 4);
        assert_eq!(period_hours(0, 47 * 3_600_000_000_000), 1);
        assert_eq!(period_hours(0, 48 * 3_600_000_000_000), 24);
    }
}
