//! The tamper-evident trail on real files: an honest trail verifies (after a crash and
//! recovery too); each tampering is detected and named: a modified, removed, inserted
//! or replaced file, reordered history, a truncated tail (against a checkpoint kept
//! elsewhere), a checkpoint signed by another key.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use pinhole_recorder::evidence::{self, SigningKey, VerifyingKey};
use pinhole_recorder::layout::published_files;
use pinhole_recorder::synth::example_event;
use pinhole_recorder::{Sink, SinkConfig};

const T0: i64 = 1_764_547_200_000_000_000; // 2025-12-01T00:00:00Z

struct Keys {
    _dir: tempfile::TempDir,
    signing: SigningKey,
    verifying: VerifyingKey,
}

fn keys(name: &str) -> Keys {
    let dir = tempfile::tempdir().unwrap();
    let (private, public) = evidence::generate(dir.path(), name).unwrap();
    Keys {
        signing: SigningKey::load(&private).unwrap(),
        verifying: VerifyingKey::load(&public).unwrap(),
        _dir: dir,
    }
}

/// One writer's session: `files` files of 3 events each, then a clean close. Each
/// session's events (and so its files' names) start at its own time.
fn session(out: &Path, key: &SigningKey, files: usize, first_port: u16) {
    let t0 = T0 + i64::from(first_port) * 1_000_000_000_000;
    let mut cfg = SinkConfig::new(out, "alpha");
    cfg.signing_key = Some(key.clone());
    let (mut sink, _) = Sink::open(cfg).unwrap();
    for f in 0..files {
        for e in 0..3 {
            let ts = t0 + (f as i64 * 10 + e) * 1_000_000_000;
            sink.append(&example_event(ts, first_port + f as u16))
                .unwrap();
        }
        sink.rotate().unwrap();
    }
    sink.close().unwrap();
}

fn trail(key: &SigningKey) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("events");
    session(&out, key, 3, 0);
    (dir, out)
}

fn verify(out: &Path, k: &Keys) -> evidence::Report {
    evidence::verify(out, &k.verifying, None).unwrap()
}

fn rel(out: &Path, f: &Path) -> String {
    evidence::relative(out, f).unwrap()
}

fn assert_found(r: &evidence::Report, want: &str) {
    assert!(
        r.findings.iter().any(|f| f.contains(want)),
        "no finding with {want:?}: {:?}",
        r.findings
    );
}

#[test]
fn an_honest_trail_verifies_and_every_file_and_run_is_an_entry() {
    let k = keys("pinhole.test/honest");
    let (_d, out) = trail(&k.signing);
    session(&out, &k.signing, 2, 2000);
    let r = verify(&out, &k);
    assert!(r.findings.is_empty(), "{:?}", r.findings);
    // Created, then per session a start, its files and a stop.
    assert_eq!(r.entries, 1 + (1 + 3 + 1) + (1 + 2 + 1));
    assert_eq!(r.signed, r.entries);
    assert_eq!(r.files_intact, 5);
    assert!(r.notes.is_empty(), "{:?}", r.notes);
    // What the writer entered as it wrote (hashed while writing) is what the files are,
    // footer and all.
    let log = fs::read_to_string(evidence::log_path(&out)).unwrap();
    let mut files = 0;
    for line in log.lines() {
        if let evidence::Entry::File(facts) = evidence::Leaf::decode(line.as_bytes()).unwrap().entry
        {
            let read = evidence::FileFacts::of(&out, &out.join(&facts.path)).unwrap();
            assert_eq!(facts, read);
            assert!(facts.rows == 3 && facts.first_ts.is_some(), "{facts:?}");
            files += 1;
        }
    }
    assert_eq!(files, 5);
    let text = String::from_utf8(r.checkpoint.clone()).unwrap();
    assert!(text.starts_with("pinhole/"), "{text}");
    assert!(text.contains("\n\u{2014} pinhole.test/honest "), "{text}");
}

#[test]
fn a_modified_file_is_named() {
    let k = keys("pinhole.test/m");
    let (_d, out) = trail(&k.signing);
    let f = &published_files(&out).unwrap()[1];
    let mut bytes = fs::read(f).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    fs::write(f, bytes).unwrap();
    assert_found(&verify(&out, &k), &format!("modified: {}", rel(&out, f)));
}

#[test]
fn a_removed_file_is_named() {
    let k = keys("pinhole.test/r");
    let (_d, out) = trail(&k.signing);
    let f = &published_files(&out).unwrap()[0];
    fs::remove_file(f).unwrap();
    let r = verify(&out, &k);
    assert_found(&r, &format!("removed: {}", rel(&out, f)));
    assert_eq!(r.findings.len(), 1, "{:?}", r.findings);
}

#[test]
fn an_inserted_and_a_replaced_file_are_named() {
    let k = keys("pinhole.test/i");
    let (_d, out) = trail(&k.signing);
    let (_d2, other) = trail(&k.signing);
    let files = published_files(&out).unwrap();
    let foreign = &published_files(&other).unwrap()[0];
    let inserted = files[0].with_file_name("alpha-inserted.parquet");
    fs::copy(foreign, &inserted).unwrap();
    // Same name, another (valid) file's bytes.
    fs::copy(foreign, &files[2]).unwrap();
    let r = verify(&out, &k);
    assert_found(&r, &format!("inserted: {}", rel(&out, &inserted)));
    assert_found(&r, &format!("modified: {}", rel(&out, &files[2])));
}

#[test]
fn reordered_history_is_named() {
    let k = keys("pinhole.test/o");
    let (_d, out) = trail(&k.signing);
    let log = evidence::log_path(&out);
    let text = fs::read_to_string(&log).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.swap(2, 3);
    fs::write(&log, lines.join("\n") + "\n").unwrap();
    let r = verify(&out, &k);
    assert_found(
        &r,
        "line 3 of the log: it holds entry 3: the history was reordered",
    );
    assert_found(
        &r,
        "line 4 of the log: it holds entry 2: the history was reordered",
    );
    assert_found(&r, "do not hash to the root its signed checkpoint signs");
}

#[test]
fn a_changed_entry_is_caught_by_the_signed_root() {
    let k = keys("pinhole.test/e");
    let (_d, out) = trail(&k.signing);
    let log = evidence::log_path(&out);
    // The entry and the file changed alike: only the signature can tell.
    let f = &published_files(&out).unwrap()[0];
    let (bytes, sha) = pinhole_recorder::file_digest::sha256_and_size(f).unwrap();
    fs::write(f, b"PAR1 not the recorded bytes PAR1").unwrap();
    let (nbytes, nsha) = pinhole_recorder::file_digest::sha256_and_size(f).unwrap();
    let text: Vec<String> = fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| match l.contains(&hex::encode(sha)) {
            true => l.replace(&hex::encode(sha), &hex::encode(nsha)).replace(
                &format!("\"bytes\":{bytes},"),
                &format!("\"bytes\":{nbytes},"),
            ),
            false => l.to_owned(),
        })
        .collect();
    fs::write(&log, text.join("\n") + "\n").unwrap();
    let r = verify(&out, &k);
    assert_found(&r, "do not hash to the root");
    assert_eq!(r.findings.len(), 1, "{:?}", r.findings);
}

#[test]
fn a_truncated_tail_is_found_against_a_checkpoint_kept_elsewhere() {
    let k = keys("pinhole.test/t");
    let (_d, out) = trail(&k.signing);
    let older = fs::read(evidence::checkpoint_path(&out)).unwrap();
    let older_log = fs::read(evidence::log_path(&out)).unwrap();
    let before: Vec<PathBuf> = published_files(&out).unwrap();
    session(&out, &k.signing, 2, 3000);
    let kept = verify(&out, &k).checkpoint;
    // The attacker rolls the trail back: the later files go, the log and checkpoint
    // are the earlier ones (validly signed).
    for f in published_files(&out).unwrap() {
        if !before.contains(&f) {
            fs::remove_file(f).unwrap();
        }
    }
    fs::write(evidence::log_path(&out), older_log).unwrap();
    fs::write(evidence::checkpoint_path(&out), older).unwrap();
    assert!(verify(&out, &k).findings.is_empty(), "self-consistent");
    let r = evidence::verify(&out, &k.verifying, Some(&kept)).unwrap();
    assert_found(&r, "but the checkpoint kept elsewhere covers");
    assert_found(&r, "truncated");
}

#[test]
fn a_checkpoint_signed_by_another_key_is_named() {
    let k = keys("pinhole.test/good");
    let other = keys("pinhole.test/bad");
    let (_d, out) = trail(&k.signing);
    // The attacker signs a checkpoint of the same log with a key of their own.
    session(&out, &other.signing, 1, 4000);
    let r = verify(&out, &k);
    assert_found(&r, "not signed by the key pinhole.test/good+");
    assert_found(&r, "signed by pinhole.test/bad+");
}

#[test]
fn a_line_cut_short_by_a_crash_is_dropped_and_the_trail_still_verifies() {
    let k = keys("pinhole.test/c");
    let (_d, out) = trail(&k.signing);
    let log = evidence::log_path(&out);
    let mut bytes = fs::read(&log).unwrap();
    bytes.extend_from_slice(br#"{"seq":99,"kind":"fi"#);
    fs::write(&log, bytes).unwrap();
    assert!(verify(&out, &k).notes[0].contains("cut short"));
    // The next writer drops it and goes on.
    session(&out, &k.signing, 1, 5000);
    let r = verify(&out, &k);
    assert!(r.findings.is_empty(), "{:?}", r.findings);
    assert!(r.notes.is_empty(), "{:?}", r.notes);
}

#[test]
fn a_writer_that_died_is_noted_and_its_staged_file_is_an_entry() {
    let k = keys("pinhole.test/k");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("events");
    let mut cfg = SinkConfig::new(&out, "alpha");
    cfg.signing_key = Some(k.signing.clone());
    let (mut sink, _) = Sink::open(cfg).unwrap();
    sink.append(&example_event(T0 - 1_000_000_000, 80)).unwrap();
    sink.flush().unwrap();
    // Killed: dropped without closing, nothing is published or marked stopped.
    drop(sink);
    session(&out, &k.signing, 1, 6000);
    let r = verify(&out, &k);
    assert!(r.findings.is_empty(), "{:?}", r.findings);
    assert_eq!(r.files_intact, 2, "the recovered file and the new one");
    assert!(
        r.notes.iter().any(|n| n.contains("never stopped")),
        "{:?}",
        r.notes
    );
}

#[test]
fn without_a_checkpoint_or_log_a_trail_cannot_be_verified() {
    let k = keys("pinhole.test/n");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("events");
    let err = evidence::verify(&out, &k.verifying, None).unwrap_err();
    assert!(err.to_string().contains("has no evidence log"), "{err}");
    // A writer without a key keeps the log, unsigned.
    let (sink, _) = Sink::open(SinkConfig::new(&out, "alpha")).unwrap();
    sink.close().unwrap();
    let err = evidence::verify(&out, &k.verifying, None).unwrap_err();
    assert!(err.to_string().contains("without --signing-key"), "{err}");
}

#[test]
fn retention_is_told_from_deletion() {
    use pinhole_recorder::retention::{apply, Retention};
    let k = keys("pinhole.test/retention");
    let (_d, out) = trail(&k.signing);
    let keep_none = Retention {
        max_age_days: Some(0),
        max_bytes: None,
    };
    let today = "2025-12-03".parse().unwrap();
    let removed = apply(&out, &keep_none, today, Some(&k.signing)).unwrap();
    assert_eq!(removed.len(), 2, "all but the newest file");
    let r = verify(&out, &k);
    assert!(r.findings.is_empty(), "{:?}", r.findings);
    assert_eq!((r.files_intact, r.files_retired), (1, 2));
    // Removed without an entry: a deletion.
    let last = &published_files(&out).unwrap()[0];
    fs::remove_file(last).unwrap();
    assert_found(&verify(&out, &k), &format!("removed: {}", rel(&out, last)));
}

#[test]
fn compaction_says_what_replaced_what_and_needs_the_key() {
    use pinhole_recorder::compact::{compact, CompactOptions};
    let k = keys("pinhole.test/compact");
    let (_d, out) = trail(&k.signing);
    let opts = |key: Option<SigningKey>| CompactOptions {
        before: "2025-12-02".parse().unwrap(),
        codec: pinhole_recorder::Codec::Lz4,
        signing_key: key,
    };
    let err = compact(&out, opts(None)).unwrap_err().to_string();
    assert!(err.contains("needs the signing key"), "{err}");
    let report = compact(&out, opts(Some(k.signing.clone()))).unwrap();
    assert_eq!(report.merged.len(), 1);
    let r = verify(&out, &k);
    assert!(r.findings.is_empty(), "{:?}", r.findings);
    assert_eq!((r.files_intact, r.files_retired), (1, 3));
}

#[test]
fn a_dataset_from_before_the_log_is_vouched_for_from_the_log_s_creation() {
    let k = keys("pinhole.test/upgrade");
    let (_d, out) = trail(&k.signing);
    // As a pinhole without the evidence trail left it.
    fs::remove_dir_all(out.join(evidence::EVIDENCE_DIR)).unwrap();
    session(&out, &k.signing, 1, 7000);
    let r = verify(&out, &k);
    assert!(r.findings.is_empty(), "{:?}", r.findings);
    assert_eq!(r.files_intact, 4);
}

#[test]
fn a_file_that_is_not_parquet_is_entered_by_its_bytes_and_keeps_no_writer_out() {
    let k = keys("pinhole.test/junk");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("events");
    let old = out.join("date=2020-01-01");
    fs::create_dir_all(&old).unwrap();
    fs::write(old.join("ancient.parquet"), b"not even parquet").unwrap();
    session(&out, &k.signing, 1, 8000);
    let r = verify(&out, &k);
    assert!(r.findings.is_empty(), "{:?}", r.findings);
    assert_eq!(r.files_intact, 2);
    fs::write(old.join("ancient.parquet"), b"not even parquet!").unwrap();
    assert_found(
        &verify(&out, &k),
        "modified: date=2020-01-01/ancient.parquet",
    );
}

#[test]
fn a_trail_verified_while_its_writer_publishes_shows_no_false_finding() {
    let k = keys("pinhole.test/live");
    let (_d, out) = trail(&k.signing);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (out, key, stop) = (out.clone(), k.signing.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut cfg = SinkConfig::new(&out, "alpha");
            cfg.signing_key = Some(key);
            let (mut sink, _) = Sink::open(cfg).unwrap();
            let mut n = 0i64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let ts = T0 + 5_000_000_000_000 + n * 1_000_000_000;
                sink.append(&example_event(ts, 9000)).unwrap();
                sink.rotate().unwrap();
                n += 1;
            }
            sink.close().unwrap();
            n
        })
    };
    let started = std::time::Instant::now();
    let mut verified = 0;
    while started.elapsed() < std::time::Duration::from_secs(3) {
        let r = verify(&out, &k);
        assert!(r.findings.is_empty(), "verify {verified}: {:?}", r.findings);
        verified += 1;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let published = writer.join().unwrap();
    assert!(
        published > 20 && verified > 5,
        "{published} files, {verified} runs"
    );
    let r = verify(&out, &k);
    assert!(r.findings.is_empty(), "{:?}", r.findings);
}

/// A checkpoint is replaced by exchanging it with a spare written in place, so that
/// signing needs no free block once a trail exists (a full disk cannot leave entries
/// unsigned): two files, whose inodes trade places at every append.
#[test]
fn checkpoints_alternate_between_two_files_and_the_live_one_is_the_newest() {
    use std::os::unix::fs::MetadataExt;
    let k = keys("alternate");
    let (_dir, out) = trail(&k.signing);
    let live = evidence::checkpoint_path(&out);
    let spare = live.with_extension("tmp");
    let ino = |p: &Path| fs::metadata(p).unwrap().ino();
    let mut log = evidence::EvidenceLog::open(&out, Some(k.signing.clone())).unwrap();
    let inodes = BTreeSet::from([ino(&live), ino(&spare)]);
    for pid in 0..4 {
        let before = (ino(&live), fs::read(&live).unwrap());
        log.append(evidence::Entry::Start {
            at: evidence::now(),
            writer: "test".into(),
            pid,
        })
        .unwrap();
        assert_eq!(
            ino(&spare),
            before.0,
            "the spare is the checkpoint replaced"
        );
        assert_eq!(fs::read(&spare).unwrap(), before.1);
        assert_eq!(BTreeSet::from([ino(&live), ino(&spare)]), inodes);
        assert!(!verify(&out, &k).tampered());
    }
}
