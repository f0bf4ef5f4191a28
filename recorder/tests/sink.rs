//! The sink's promises, tested on a real filesystem: rotation, atomic publishing,
//! recovery after a crash, and the metadata every file carries.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, UInt16Type};
use arrow_array::{Array, RecordBatch};
use pinhole_recorder::event::ExeRef;
use pinhole_recorder::layout::{published_files, staging_dir};
use pinhole_recorder::schema::{meta, SCHEMA_VERSION};
use pinhole_recorder::{Event, ExeStatus, Hook, Protocol, Sink, SinkConfig, SinkError, Verdict};

const DAY_NS: i64 = 86_400_000_000_000;
/// 2026-11-22T00:00:00Z
const T0: i64 = 1_795_305_600_000_000_000;
use pinhole_recorder::synth::EXAMPLE_SHA as SHA;

fn event(ts_ns: i64, port: u16) -> Event<'static> {
    pinhole_recorder::synth::example_event(ts_ns, port)
}

/// Cuts `bytes` off the end of a staged log: a crash in the middle of a flush.
fn cut_tail(log: &Path, bytes: u64) {
    let len = fs::metadata(log).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(log)
        .unwrap()
        .set_len(len - bytes)
        .unwrap();
}

fn config(dir: &Path) -> SinkConfig {
    SinkConfig::new(dir, "test-host")
}

fn read(path: &Path) -> (Vec<RecordBatch>, std::collections::BTreeMap<String, String>) {
    pinhole_recorder::readback::read_file(path).unwrap()
}

fn rows(path: &Path) -> usize {
    read(path).0.iter().map(|b| b.num_rows()).sum()
}

#[test]
fn close_publishes_one_readable_file_with_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let (mut sink, report) = Sink::open(config(dir.path())).unwrap();
    assert!(report.files_published.is_empty());
    for i in 0..1000 {
        sink.append(&event(T0 + i * 1_000_000, 443)).unwrap();
    }
    sink.set_lost_total(5);
    let stats = sink.close().unwrap();
    assert_eq!(
        stats
            .files_published
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );

    let files = published_files(dir.path()).unwrap();
    assert_eq!(files.len(), 1);
    assert!(files[0].starts_with(dir.path().join("date=2026-11-22")));
    let (batches, kv) = read(&files[0]);
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 1000);
    assert_eq!(kv[meta::SCHEMA_VERSION], SCHEMA_VERSION.to_string());
    assert_eq!(kv[meta::LOST_EVENTS], "5");
    assert_eq!(kv[meta::HOST], "test-host");
    assert_eq!(kv[meta::FIRST_TS], "2026-11-22T00:00:00.000000000Z");
    assert_eq!(kv[meta::LAST_TS], "2026-11-22T00:00:00.999000000Z");
    // The mapped address is stored in IPv4 form, with ip_version 4.
    let b = &batches[0];
    let addr = b
        .column_by_name("dst_addr")
        .unwrap()
        .as_dictionary::<Int32Type>();
    let values = addr.values().as_string::<i32>();
    assert_eq!(values.value(addr.keys().value(0) as usize), "10.1.2.3");
    assert_eq!(
        b.column_by_name("ip_version")
            .unwrap()
            .as_primitive::<arrow_array::types::UInt8Type>()
            .value(0),
        4
    );
    assert_eq!(
        b.column_by_name("dst_port")
            .unwrap()
            .as_primitive::<UInt16Type>()
            .value(0),
        443
    );
    assert_eq!(
        b.column_by_name("exe_sha256")
            .unwrap()
            .as_fixed_size_binary()
            .value(0),
        SHA
    );
    // Staging is empty after a clean close.
    assert_eq!(fs::read_dir(staging_dir(dir.path())).unwrap().count(), 0);
}

#[test]
fn rotates_by_size_and_by_time() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.rotate_bytes = 1; // every flush that wrote something closes the file
    let (mut sink, _) = Sink::open(cfg).unwrap();
    for round in 0..3 {
        sink.append(&event(T0 + round, 80)).unwrap();
        sink.flush().unwrap();
        sink.tick(Instant::now()).unwrap();
    }
    sink.close().unwrap();
    assert_eq!(published_files(dir.path()).unwrap().len(), 3);

    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.rotate_interval = Duration::from_millis(0);
    let (mut sink, _) = Sink::open(cfg).unwrap();
    sink.append(&event(T0, 80)).unwrap();
    sink.flush().unwrap();
    sink.tick(Instant::now() + Duration::from_millis(1))
        .unwrap();
    assert_eq!(
        published_files(dir.path()).unwrap().len(),
        1,
        "time rotation publishes without close"
    );
    sink.close().unwrap();
}

#[test]
fn a_burst_is_flushed_by_size_before_the_interval() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.flush_interval = Duration::from_secs(3600);
    cfg.flush_rows = 100;
    let (mut sink, _) = Sink::open(cfg).unwrap();
    for i in 0..250 {
        sink.append(&event(T0 + i, 80)).unwrap();
    }
    assert_eq!(
        sink.stats()
            .events_written
            .load(std::sync::atomic::Ordering::Relaxed),
        200
    );
    assert_eq!(sink.buffered(), 50);
    drop(sink);
    let (sink, report) = Sink::open(config(dir.path())).unwrap();
    assert_eq!(
        report.events_recovered, 200,
        "size-triggered flushes are durable"
    );
    sink.close().unwrap();
}

#[test]
fn a_new_utc_date_starts_a_new_partition() {
    let dir = tempfile::tempdir().unwrap();
    let (mut sink, _) = Sink::open(config(dir.path())).unwrap();
    sink.append(&event(T0 + DAY_NS - 1, 53)).unwrap();
    sink.append(&event(T0 + DAY_NS, 53)).unwrap();
    sink.close().unwrap();
    let files = published_files(dir.path()).unwrap();
    assert_eq!(files.len(), 2);
    assert!(files[0].to_str().unwrap().contains("date=2026-11-22"));
    assert!(files[1].to_str().unwrap().contains("date=2026-11-23"));
}

#[test]
fn crash_after_flush_is_recovered_on_next_open() {
    let dir = tempfile::tempdir().unwrap();
    let (mut sink, _) = Sink::open(config(dir.path())).unwrap();
    for i in 0..100 {
        sink.append(&event(T0 + i, 80)).unwrap();
    }
    sink.set_lost_total(3);
    sink.flush().unwrap();
    // Buffered but never flushed: the at-most-one-interval that a crash may lose.
    sink.append(&event(T0 + 1000, 80)).unwrap();
    drop(sink); // no close: what kill -9 leaves behind
    assert!(
        published_files(dir.path()).unwrap().is_empty(),
        "nothing half-written is visible"
    );

    let (sink, report) = Sink::open(config(dir.path())).unwrap();
    assert_eq!(report.events_recovered, 100);
    assert_eq!(report.files_published.len(), 1);
    let (_, kv) = read(&report.files_published[0]);
    assert_eq!(kv[meta::RECOVERED], "true");
    assert_eq!(kv[meta::LOST_EVENTS], "3");
    sink.close().unwrap();
    assert_eq!(published_files(dir.path()).unwrap().len(), 1);
    // Temporaries of the crashed writer are gone.
    let partition = dir.path().join("date=2026-11-22");
    assert!(fs::read_dir(partition).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .starts_with('.')));
}

#[test]
fn a_torn_last_message_loses_only_that_message() {
    let dir = tempfile::tempdir().unwrap();
    let (mut sink, _) = Sink::open(config(dir.path())).unwrap();
    for flush in 0..3 {
        for i in 0..10 {
            sink.append(&event(T0 + flush * 100 + i, 80)).unwrap();
        }
        sink.flush().unwrap();
    }
    drop(sink);
    let log = fs::read_dir(staging_dir(dir.path()))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().unwrap() == "arrowz")
        .unwrap();
    cut_tail(&log, 7);

    let (sink, report) = Sink::open(config(dir.path())).unwrap();
    assert_eq!(report.torn_logs, 1);
    assert_eq!(report.events_recovered, 20);
    assert_eq!(rows(&report.files_published[0]), 20);
    sink.close().unwrap();
}

#[test]
fn staging_already_published_is_not_duplicated() {
    let dir = tempfile::tempdir().unwrap();
    let (mut sink, _) = Sink::open(config(dir.path())).unwrap();
    sink.append(&event(T0, 80)).unwrap();
    sink.flush().unwrap();
    // Keep a copy of the staged log, publish, then put the copy back: the state after
    // a crash between the rename and the staging cleanup.
    let staged: Vec<_> = fs::read_dir(staging_dir(dir.path()))
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            (p.clone(), fs::read(&p).unwrap())
        })
        .collect();
    sink.close().unwrap();
    for (p, bytes) in staged {
        fs::write(p, bytes).unwrap();
    }
    let (sink, report) = Sink::open(config(dir.path())).unwrap();
    assert_eq!(report.already_published, 1);
    assert!(report.files_published.is_empty());
    sink.close().unwrap();
    let files = published_files(dir.path()).unwrap();
    assert_eq!(files.len(), 1);
    assert_eq!(rows(&files[0]), 1);
}

#[test]
fn losses_without_events_still_reach_the_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let (mut sink, _) = Sink::open(config(dir.path())).unwrap();
    sink.set_lost_total(9);
    sink.close().unwrap();
    let files = published_files(dir.path()).unwrap();
    assert_eq!(files.len(), 1);
    let (batches, kv) = read(&files[0]);
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 0);
    assert_eq!(kv[meta::LOST_EVENTS], "9");
}

#[test]
fn a_second_writer_on_the_same_dataset_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_sink, _) = Sink::open(config(dir.path())).unwrap();
    match Sink::open(config(dir.path())) {
        Err(SinkError::Locked { path }) => assert_eq!(path, dir.path()),
        other => panic!("expected Locked, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn unwritable_output_directory_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    fs::write(&file, b"x").unwrap();
    let err = Sink::open(config(&file.join("events")))
        .err()
        .expect("must fail");
    assert!(matches!(err, SinkError::OutDir { .. }), "{err}");
    assert!(err.to_string().contains("not-a-dir"), "{err}");
}

#[test]
fn string_columns_read_back_as_dictionaries() {
    let dir = tempfile::tempdir().unwrap();
    let (mut sink, _) = Sink::open(config(dir.path())).unwrap();
    sink.append(&event(T0, 80)).unwrap();
    sink.close().unwrap();
    let (batches, _) = read(&published_files(dir.path()).unwrap()[0]);
    let comm = batches[0].column_by_name("comm").unwrap();
    assert!(matches!(
        comm.data_type(),
        arrow_schema::DataType::Dictionary(..)
    ));
    assert_eq!(comm.len(), 1);
}

/// A realistic mix: 60 apps (hash, path, name, pids), 2,000 destinations, ports,
/// rising times and cookies, flushed every 200 events (one second at 200 events/s).
fn realistic(sink: &mut Sink, events: u64, per_flush: u64) {
    let shas: Vec<[u8; 32]> = (0..60u8).map(|i| [i.wrapping_mul(37); 32]).collect();
    let paths: Vec<String> = (0..60).map(|i| format!("/usr/bin/app-{i}")).collect();
    let comms: Vec<String> = (0..60).map(|i| format!("app-{i}")).collect();
    let dests: Vec<String> = (0..2000)
        .map(|i| format!("10.{}.{}.{}", i % 7, (i * 13) % 251, (i * 7) % 253))
        .collect();
    let mut x: u64 = 1;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut ts = 1_795_305_600_000_000_000i64;
    for n in 0..events {
        let r = next();
        // Popular apps and destinations come up more often.
        let app = ((r % 60) * (r % 60) / 60) as usize;
        let dest = ((r >> 8) % 2000 * ((r >> 8) % 2000) / 2000) as usize;
        ts += 5_000_000 + (r >> 40) as i64 % 1_000_000;
        let e = Event {
            ts_ns: ts,
            pid: 1000 + app as u32 * 3 + (r >> 20) as u32 % 3,
            tid: 1000 + app as u32 * 3,
            ppid: 1,
            uid: [0, 1000, 33][app % 3],
            gid: [0, 1000, 33][app % 3],
            comm: &comms[app],
            exe: ExeRef {
                path: Some(&paths[app]),
                sha256: Some(&shas[app]),
                status: ExeStatus::Ok,
                dev: 2049,
                ino: 4000 + app as u64,
            },
            cgroup_id: 7,
            cgroup: None,
            netns: 4026531840,
            dst_addr: dests[dest].parse().unwrap(),
            dst_port: [443, 80, 53, 8080, 5432][(r >> 30) as usize % 5],
            protocol: if r % 9 == 0 {
                Protocol::Udp
            } else {
                Protocol::Tcp
            },
            hook: Hook::Connect,
            verdict: Verdict::Observed,
            sock_cookie: 10_000 + n * 3,
            rule_id: None,
            app: None,
            note: None,
            dst_name: None,
            dst_name_from_host: false,
            dns: None,
        };
        sink.append(&e).unwrap();
        if n % per_flush == per_flush - 1 {
            sink.flush().unwrap();
        }
    }
    sink.flush().unwrap();
}

fn dir_bytes(dir: &Path, ext: &str) -> u64 {
    walk(dir)
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(ext))
        .map(|p| fs::metadata(p).unwrap().len())
        .sum()
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Regression (bounded resources, 2): staging cost about 140 bytes per event, 45 to 59
/// times the Parquet it becomes. Target: at most 10 times.
#[test]
fn staging_costs_at_most_ten_times_the_parquet_it_becomes() {
    // A recorder flushes once a second: one event per flush is a quiet host.
    for (events, per_flush) in [(4_000, 1), (10_000, 10), (40_000, 200)] {
        let dir = tempfile::tempdir().unwrap();
        let (mut sink, _) = Sink::open(config(dir.path())).unwrap();
        realistic(&mut sink, events, per_flush);
        let staged = dir_bytes(&staging_dir(dir.path()), ".arrowz");
        sink.close().unwrap();
        let parquet = dir_bytes(dir.path(), ".parquet");
        let ratio = staged as f64 / parquet as f64;
        eprintln!(
            "{per_flush} per flush: staged {staged} bytes ({:.1} per event), published {parquet} bytes ({:.1} per event): {ratio:.1}x",
            staged as f64 / events as f64,
            parquet as f64 / events as f64
        );
        assert!(ratio <= 10.0, "{per_flush} per flush: {ratio:.1}x");
    }
}

/// A log staged by an older pinhole (a plain IPC stream, `.arrows`) is still recovered
/// after an upgrade, torn tail and all.
#[test]
fn a_plain_stream_log_of_an_older_pinhole_is_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let staging = staging_dir(dir.path());
    fs::create_dir_all(&staging).unwrap();
    let mut builder = pinhole_recorder::BatchBuilder::new("test-host");
    let mut w = arrow_ipc::writer::StreamWriter::try_new(
        fs::File::create(staging.join("old-1.arrows")).unwrap(),
        &pinhole_recorder::schema::schema(),
    )
    .unwrap();
    for flush in 0..3 {
        for i in 0..10 {
            builder.append(&event(T0 + flush * 100 + i, 80));
        }
        w.write(&builder.finish().unwrap()).unwrap();
    }
    drop(w);
    let log = staging.join("old-1.arrows");
    cut_tail(&log, 7);
    fs::write(
        staging.join("old-1.meta"),
        "date=2026-11-22\nlost_events=3\n",
    )
    .unwrap();
    let (sink, report) = Sink::open(config(dir.path())).unwrap();
    assert_eq!(report.torn_logs, 1);
    assert_eq!(report.events_recovered, 20);
    let (batches, kv) = read(&report.files_published[0]);
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 20);
    assert_eq!(kv[meta::LOST_EVENTS], "3");
    sink.close().unwrap();
}

/// Bit-packed integer columns carry no zstd (a reader would pay a codec per column
/// chunk for a few percent); strings and hashes keep it.
#[test]
fn integer_columns_are_stored_without_a_codec_and_strings_with_lz4_or_zstd() {
    for zstd in [false, true] {
        let codec = match zstd {
            false => Compression::LZ4_RAW,
            true => Compression::ZSTD(parquet::basic::ZstdLevel::try_new(5).unwrap()),
        };
        check_codecs(zstd, codec);
    }
}

use parquet::basic::Compression;

fn check_codecs(zstd: bool, strings: Compression) {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    if zstd {
        cfg.compression = pinhole_recorder::Codec::Zstd(5);
    }
    let (mut sink, _) = Sink::open(cfg).unwrap();
    realistic(&mut sink, 2_000, 500);
    sink.close().unwrap();
    let file = fs::File::open(&published_files(dir.path()).unwrap()[0]).unwrap();
    let reader = SerializedFileReader::new(file).unwrap();
    let group = reader.metadata().row_group(0);
    let codec = |name: &str| {
        (0..group.num_columns())
            .map(|i| group.column(i))
            .find(|c| c.column_path().string() == name)
            .unwrap()
            .compression()
    };
    for c in [
        "ts",
        "ts_ns",
        "sock_cookie",
        "pid",
        "uid",
        "dst_port",
        "protocol",
        "hook",
    ] {
        assert_eq!(codec(c), Compression::UNCOMPRESSED, "{c}");
    }
    for c in ["comm", "exe_path", "exe_sha256", "dst_addr", "cgroup"] {
        // The level is not written into the file: only the codec can be compared.
        assert_eq!(
            std::mem::discriminant(&codec(c)),
            std::mem::discriminant(&strings),
            "{c}"
        );
    }
}

/// A log staged by yesterday's pinhole (nanosecond `ts`, unsigned 64-bit ids, no DNS
/// columns, no `ts_ns`) is published in today's schema after an upgrade, nothing lost.
#[test]
fn a_log_staged_in_an_older_schema_is_published_in_the_current_one() {
    use arrow_array::cast::AsArray;
    use arrow_array::types::Int64Type;
    use arrow_schema::{DataType, Field, Schema, TimeUnit};
    let dir = tempfile::tempdir().unwrap();
    let staging = staging_dir(dir.path());
    fs::create_dir_all(&staging).unwrap();
    let mut builder = pinhole_recorder::BatchBuilder::new("test-host");
    for i in 0..10 {
        builder.append(&event(T0 + i * 1_000, 80));
    }
    let now = builder.finish().unwrap();
    let older = |f: &Field| match f.name().as_str() {
        "ts" => Some(Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
            false,
        )),
        "exe_dev" | "exe_ino" | "cgroup_id" | "sock_cookie" => {
            Some(Field::new(f.name(), DataType::UInt64, false))
        }
        n if n == "dst_name" || n == "cgroup" || n.starts_with("dns_") || n == "ts_ns" => None,
        _ => Some(f.clone()),
    };
    let fields: Vec<Field> = now
        .schema()
        .fields()
        .iter()
        .filter_map(|f| older(f))
        .collect();
    let columns = fields
        .iter()
        .map(|f| {
            let c = now.column_by_name(f.name()).unwrap();
            arrow_cast::cast(c, f.data_type()).unwrap()
        })
        .collect();
    let old = arrow_array::RecordBatch::try_new(std::sync::Arc::new(Schema::new(fields)), columns)
        .unwrap();
    let log = staging.join("old-2.arrows");
    let mut w =
        arrow_ipc::writer::StreamWriter::try_new(fs::File::create(&log).unwrap(), &old.schema())
            .unwrap();
    w.write(&old).unwrap();
    w.finish().unwrap();
    fs::write(
        staging.join("old-2.meta"),
        "date=2026-11-22\nlost_events=0\n",
    )
    .unwrap();
    let (sink, report) = Sink::open(config(dir.path())).unwrap();
    assert_eq!(report.events_recovered, 10);
    let (batches, _) = read(&report.files_published[0]);
    assert_eq!(batches[0].schema(), pinhole_recorder::schema::schema());
    let ts_ns = batches[0]
        .column_by_name("ts_ns")
        .unwrap()
        .as_primitive::<Int64Type>();
    assert_eq!(ts_ns.value(3), T0 + 3_000, "the exact nanoseconds kept");
    assert_eq!(
        batches[0].column_by_name("dst_name").unwrap().null_count(),
        10
    );
    sink.close().unwrap();
}

/// The trail is evidence: nothing of it is readable by others, whatever the umask
/// leaves (files 0640, directories 0750; staged data too).
#[test]
fn the_trail_is_not_world_readable() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("events");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let (mut sink, _) = Sink::open(config(&out)).unwrap();
    for i in 0..10 {
        sink.append(&event(T0 + i, 443)).unwrap();
    }
    sink.flush().unwrap();
    let staging = out.join(".staging");
    for entry in std::fs::read_dir(&staging).unwrap() {
        let p = entry.unwrap().path();
        assert_eq!(mode(&p), 0o640, "{}", p.display());
    }
    sink.close().unwrap();
    let files = published_files(&out).unwrap();
    assert_eq!(mode(&files[0]), 0o640);
    assert_eq!(mode(files[0].parent().unwrap()), 0o750);
    assert_eq!(mode(&out), 0o750);
    assert_eq!(mode(&staging), 0o750);
    assert_eq!(mode(&out.join(".pinhole.lock")), 0o640);
}
