//! How full the rings are when the poller comes round, for the metrics: a ring that is
//! often near full is about to lose events (`pinhole_events_lost_total` says when it
//! did). Sampled once a round, before consuming; the exporter's summary keeps the
//! quantiles (its `quantile="1"` is the peak) over a rolling window.

use libbpf_rs::{AsRawLibbpf, RingBuffer};
use metrics::{describe_histogram, histogram, Histogram};

/// The rings of a poller, in the order they were added, with their names.
pub struct RingFill {
    rings: Vec<(*const libbpf_sys::ring, Histogram)>,
}

impl RingFill {
    /// `names` in the order the rings were added to `rb`.
    pub fn new(rb: &RingBuffer<'_>, names: &[&'static str]) -> RingFill {
        describe_histogram!(
            "pinhole_ring_fill_ratio",
            "How full a ring buffer was (0 to 1) when the poller came round, by ring."
        );
        let raw = rb.as_libbpf_object().as_ptr();
        let rings = names
            .iter()
            .enumerate()
            .filter_map(|(i, name)| {
                // SAFETY: `raw` is the live ring_buffer of `rb`; an index past its
                // rings gives NULL, which is skipped.
                let ring = unsafe { libbpf_sys::ring_buffer__ring(raw, i as u32) };
                (!ring.is_null()).then(|| {
                    (
                        ring.cast_const(),
                        histogram!("pinhole_ring_fill_ratio", "ring" => *name),
                    )
                })
            })
            .collect();
        RingFill { rings }
    }

    /// Records each ring's fill now.
    pub fn sample(&self) {
        for (ring, h) in &self.rings {
            // SAFETY: the rings belong to the RingBuffer this was made from, which the
            // poller keeps alive for as long as it uses this.
            let (used, size) = unsafe {
                (
                    libbpf_sys::ring__avail_data_size(*ring),
                    libbpf_sys::ring__size(*ring),
                )
            };
            if size > 0 {
                h.record(used as f64 / size as f64);
            }
        }
    }
}
