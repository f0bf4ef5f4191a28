//! What the evidence trail costs per published file (BENCHMARKS.md, "Tamper evidence"):
//! two datasets written side by side, file by file, one signed and one not; each
//! publish (`rotate`) timed, then the parts of it: reading a file's facts (its SHA-256
//! and footer), appending an entry (fsynced), signing and writing a checkpoint.
//!
//!   cargo run --release --example evidence_cost -- [FILES] [EVENTS_PER_FILE]

use std::path::Path;
use std::time::{Duration, Instant};

use pinhole_recorder::evidence::{self, Entry, EvidenceLog, FileFacts, SigningKey};
use pinhole_recorder::layout::published_files;
use pinhole_recorder::synth::example_event;
use pinhole_recorder::{Sink, SinkConfig};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    let mut args = std::env::args()
        .skip(1)
        .map(|a| a.parse::<usize>().expect("a number"));
    let files = args.next().unwrap_or(100);
    let per_file = args.next().unwrap_or(20_000);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (key_path, _) = evidence::generate(&dir.path().join("keys"), "pinhole.bench/k").unwrap();
    let key = SigningKey::load(&key_path).unwrap();

    let open = |name: &str, key: Option<SigningKey>| {
        let mut cfg = SinkConfig::new(dir.path().join(name), "bench");
        cfg.signing_key = key;
        Sink::open(cfg).unwrap().0
    };
    let mut sinks = [open("unsigned", None), open("signed", Some(key.clone()))];
    let mut times = [Vec::new(), Vec::new()];
    let t0 = 1_764_547_200_000_000_000i64;
    for f in 0..files {
        for (sink, times) in sinks.iter_mut().zip(times.iter_mut()) {
            for e in 0..per_file {
                let ts = t0 + (f * per_file + e) as i64 * 1_000_000;
                sink.append(&example_event(ts, (e % 60_000) as u16))
                    .unwrap();
            }
            let started = Instant::now();
            sink.rotate().unwrap();
            times.push(started.elapsed());
        }
    }
    let [unsigned, signed] = times;
    let signed_out = dir.path().join("signed");
    let sample = published_files(&signed_out).unwrap()[0].clone();
    let bytes = std::fs::metadata(&sample).unwrap().len();

    let facts: Vec<Duration> = (0..20)
        .map(|_| {
            let t = Instant::now();
            FileFacts::of(&signed_out, &sample).unwrap();
            t.elapsed()
        })
        .collect();
    let append = |out: &Path, key: Option<SigningKey>| {
        let mut log = EvidenceLog::open(out, key).unwrap();
        (0..200)
            .map(|i| {
                let t = Instant::now();
                log.append(Entry::Stop {
                    at: evidence::now(),
                    writer: format!("bench {i}"),
                    pid: 1,
                })
                .unwrap();
                t.elapsed()
            })
            .collect::<Vec<_>>()
    };
    let plain = append(&dir.path().join("append-unsigned"), None);
    let with_sig = append(&dir.path().join("append-signed"), Some(key));
    println!("| files | events per file | file size | publish, unsigned log (median) | publish, signed (median) | file facts (SHA-256 + footer) | append (fsync) | append + sign + checkpoint |");
    println!("|---|---|---|---|---|---|---|---|");
    println!(
        "| {files} | {per_file} | {:.2} MB | {} | {} | {} | {} | {} |",
        bytes as f64 / 1e6,
        ms(median(unsigned)),
        ms(median(signed)),
        ms(median(facts)),
        ms(median(plain)),
        ms(median(with_sig)),
    );
    for s in sinks {
        s.close().unwrap();
    }
}
