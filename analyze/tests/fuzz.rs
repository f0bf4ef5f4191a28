//! Fuzzed input: thousands of mutants of a real dataset file, each summarised and
//! replay-read, must each end in a result or an error naming the file: no panic
//! escapes, and no file takes long (a hang fails the test).

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use pinhole_analyze::dataset::{read_columns, summarize_file, COLUMNS};
use pinhole_analyze::guard::decode_guarded;
use pinhole_analyze::Filter;
use pinhole_recorder::layout::published_files;
use pinhole_recorder::synth::{generate, SynthConfig};
use rand::{Rng, SeedableRng};

const MUTANTS: usize = 3_000;
/// The whole run's budget, so the suite stays bounded on a slow machine.
const BUDGET: Duration = Duration::from_secs(120);
/// Longer than any one mutant may take.
const HANG: Duration = Duration::from_secs(20);

fn seed_file(dir: &Path) -> Vec<u8> {
    let cfg = SynthConfig {
        events: 3_000,
        apps: 5,
        destinations: 40,
        days: 1,
        ..Default::default()
    };
    generate(&cfg, dir).unwrap();
    let files = published_files(dir).unwrap();
    std::fs::read(&files[0]).unwrap()
}

/// Flips, overwrites or truncates a few bytes; half the time in the footer, where the
/// decoder trusts lengths and offsets it reads.
fn mutate(rng: &mut impl Rng, original: &[u8]) -> Vec<u8> {
    let mut m = original.to_vec();
    let footer = m.len().saturating_sub(2048);
    for _ in 0..rng.random_range(1..=8) {
        let at = if rng.random_bool(0.5) {
            rng.random_range(footer..m.len())
        } else {
            rng.random_range(0..m.len())
        };
        match rng.random_range(0..3) {
            0 => m[at] ^= 1 << rng.random_range(0..8),
            1 => m[at] = rng.random(),
            _ => m[at] = [0x00, 0xff, 0x7f, 0x80][rng.random_range(0..4)],
        }
    }
    if rng.random_ratio(1, 20) {
        let keep = rng.random_range(0..m.len());
        m.drain(keep..m.len().saturating_sub(8).max(keep));
    }
    m
}

/// Everything a reader of the dataset does with one file.
fn read_all(path: &Path) -> Result<(), String> {
    decode_guarded(path, || {
        summarize_file(path, &Filter::default()).map(|_| ())
    })
    .map_err(|e| e.to_string())?;
    decode_guarded(path, || {
        for batch in read_columns(path, &COLUMNS)? {
            batch.map_err(|e| pinhole_analyze::AnalyzeError::Corrupt {
                path: path.to_owned(),
                detail: e.to_string(),
            })?;
        }
        Ok(())
    })
    .map_err(|e| e.to_string())
}

#[test]
fn fuzzed_files_never_panic_or_hang() {
    let dir = tempfile::tempdir().unwrap();
    let original = seed_file(&dir.path().join("seed"));
    let work = dir.path().join("mutants");
    std::fs::create_dir_all(&work).unwrap();
    let (tx, rx) = mpsc::channel::<(usize, PathBuf, Result<(), String>)>();
    let worker = std::thread::spawn(move || {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x5eed_f022);
        let started = Instant::now();
        for i in 0..MUTANTS {
            if started.elapsed() > BUDGET {
                break;
            }
            let path = work.join(format!("m{i}.parquet"));
            std::fs::write(&path, mutate(&mut rng, &original)).unwrap();
            // A panic that escapes the guard ends this thread: the test sees it below.
            let r = read_all(&path);
            if tx.send((i, path.clone(), r)).is_err() {
                return;
            }
            std::fs::remove_file(&path).ok();
        }
    });
    let (mut done, mut errors, mut panics_caught) = (0, 0, 0);
    loop {
        match rx.recv_timeout(HANG) {
            Ok((_, path, r)) => {
                done += 1;
                if let Err(e) = r {
                    errors += 1;
                    if e.contains("decoder failed") {
                        panics_caught += 1;
                        eprintln!("caught: {e}");
                    }
                    assert!(
                        e.contains(&*path.to_string_lossy()),
                        "error does not name the file: {e}"
                    );
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!("a mutant took longer than {HANG:?} after {done} files: a hang")
            }
        }
    }
    assert!(worker.join().is_ok(), "a panic escaped after {done} files");
    assert!(done >= 500, "only {done} mutants in the budget");
    eprintln!(
        "{done} mutants read, {errors} refused with an error naming the file \
         ({panics_caught} of them decoder panics caught), 0 panics escaped"
    );
}
