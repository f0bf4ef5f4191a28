//! `pinhole report` rendered by a real browser: headless Chromium (Debian's `chromium`,
//! which setup.sh installs) lays the page out and runs it offline; every chart is drawn
//! and coloured where the browser put it, and every figure on the page equals what
//! `analyze --format json`, `verify` and `policy replay` say of the same data.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use common::{pinhole, run};
use serde_json::Value;

const SYNTH: &str = env!("CARGO_BIN_EXE_pinhole-synth");
/// The chart colours (src/report/charts.rs).
const PALETTE: [(u8, u8, u8); 9] = [
    (0x4e, 0x79, 0xa7),
    (0xf2, 0x8e, 0x2b),
    (0xe1, 0x57, 0x59),
    (0x76, 0xb7, 0xb2),
    (0x59, 0xa1, 0x4f),
    (0xed, 0xc9, 0x48),
    (0xb0, 0x7a, 0xa1),
    (0xff, 0x9d, 0xa7),
    (0x9c, 0x75, 0x5f),
];
const WIDTH: u32 = 1100;

fn chromium() -> String {
    let exe = std::env::var("PINHOLE_TEST_CHROMIUM").unwrap_or_else(|_| "chromium".into());
    let found = Command::new(&exe).arg("--version").output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "{exe} not found: the report test renders in Debian's chromium (setup.sh installs it)"
    );
    exe
}

/// Runs headless Chromium on `page` with `args`, offline, with its own profile, bounded
/// in time; returns its standard output.
fn browse(page: &Path, profile: &Path, args: &[&str]) -> String {
    let out = run(Command::new("timeout")
        .arg("120")
        .arg(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            // Nothing may be fetched: a name lookup fails, a proxy leads nowhere.
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--proxy-server=127.0.0.1:9",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(format!("file://{}", page.display())));
    String::from_utf8(out.stdout).unwrap()
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// Every `data-fig="key">value<` of the page the browser built.
fn figures(dom: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for part in dom.split("data-fig=\"").skip(1) {
        let (key, rest) = part.split_once('"').unwrap();
        let value = rest.split_once('>').unwrap().1.split('<').next().unwrap();
        out.insert(unescape(key), unescape(value));
    }
    out
}

/// Each chart's id and the box the browser drew it in (x, y, width, height).
fn chart_boxes(dom: &str) -> Vec<(String, [u32; 4])> {
    dom.split("<figure ")
        .skip(1)
        .map(|f| {
            let tag = f.split_once('>').unwrap().0;
            let attr = |name: &str| {
                let v = tag.split(&format!("{name}=\"")).nth(1).unwrap_or_else(|| {
                    panic!("a chart without {name}: <figure {tag}>");
                });
                v.split('"').next().unwrap().to_owned()
            };
            let b: Vec<u32> = attr("data-box")
                .split(',')
                .map(|n| n.parse().unwrap())
                .collect();
            (attr("data-chart"), [b[0], b[1], b[2], b[3]])
        })
        .collect()
}

fn num(figs: &BTreeMap<String, String>, key: &str) -> u64 {
    figs.get(key)
        .unwrap_or_else(|| panic!("the report shows no {key}"))
        .parse()
        .unwrap()
}

fn apps(doc: &Value) -> Vec<&Value> {
    doc["apps"]
        .as_array()
        .unwrap()
        .iter()
        .chain(doc["unresolved"].as_array().unwrap())
        .collect()
}

/// `app`'s activity count `what` for the period starting at `start` (0 if none).
fn activity(app: &Value, start: &str, what: &str) -> u64 {
    app["activity"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["start"] == start)
        .map_or(0, |p| p[what].as_u64().unwrap())
}

fn sum(values: impl Iterator<Item = u64>) -> u64 {
    values.sum()
}

/// The page's per-app figures, learning counts and the events chart's series against
/// the profiles.
fn check_app_figures(figs: &BTreeMap<String, String>, doc: &Value) {
    assert_eq!(
        num(figs, "dataset/events"),
        doc["dataset"]["events"].as_u64().unwrap()
    );
    assert_eq!(
        num(figs, "dataset/files"),
        doc["dataset"]["files"].as_u64().unwrap()
    );
    assert_eq!(
        num(figs, "dataset/apps"),
        doc["apps"].as_array().unwrap().len() as u64
    );
    for a in apps(doc) {
        let id = a["id"].as_str().unwrap();
        let refused = a["refused"].as_array().unwrap();
        assert_eq!(
            num(figs, &format!("app/{id}/events")),
            a["events"].as_u64().unwrap()
        );
        assert_eq!(
            num(figs, &format!("app/{id}/destinations")),
            a["destinations"].as_array().unwrap().len() as u64
        );
        let denied = sum(refused.iter().map(|r| r["denied"].as_u64().unwrap()));
        let would = sum(refused.iter().map(|r| r["would_deny"].as_u64().unwrap()));
        assert_eq!(num(figs, &format!("app/{id}/denied")), denied);
        assert_eq!(num(figs, &format!("app/{id}/would_deny")), would);
        assert_eq!(figs[&format!("app/{id}/verdict")], a["learning"]["verdict"]);
        if a["sha256"].is_string() {
            for p in a["learning"]["new_destinations"].as_array().unwrap() {
                let key = format!("learn/{id}/{}", p["start"].as_str().unwrap());
                assert_eq!(num(figs, &key), p["count"].as_u64().unwrap(), "{key}");
            }
        }
    }
    // The events chart: the busiest apps each as a series, the rest summed.
    let mut by_events = apps(doc);
    by_events.sort_by(|a, b| {
        (b["events"].as_u64(), a["id"].as_str()).cmp(&(a["events"].as_u64(), b["id"].as_str()))
    });
    let charted: BTreeSet<&str> = by_events
        .iter()
        .take(8)
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    let mut cells = 0;
    for (key, value) in figs.iter().filter(|(k, _)| k.starts_with("events/")) {
        let (series, start) = key["events/".len()..].rsplit_once('/').unwrap();
        let expect = match series {
            "other" => sum(by_events[8..].iter().map(|a| activity(a, start, "events"))),
            id => {
                assert!(charted.contains(id), "{id} is not among the busiest 8");
                activity(
                    by_events.iter().find(|a| a["id"] == id).unwrap(),
                    start,
                    "events",
                )
            }
        };
        assert_eq!(value.parse::<u64>().unwrap(), expect, "{key}");
        cells += 1;
    }
    let periods: BTreeSet<&str> = apps(doc)
        .iter()
        .flat_map(|a| a["activity"].as_array().unwrap())
        .map(|p| p["start"].as_str().unwrap())
        .collect();
    assert_eq!(
        cells,
        9 * periods.len(),
        "8 apps and the others, every {}",
        doc["activity_period"]
    );
}

/// Denials over time and by app, and the busiest destinations, against the profiles.
fn check_refusals_and_destinations(figs: &BTreeMap<String, String>, doc: &Value) {
    for (key, value) in figs.iter().filter(|(k, _)| k.starts_with("refused/")) {
        let (what, start) = key["refused/".len()..].split_once('/').unwrap();
        let field = if what == "denied" {
            "denied"
        } else {
            "would_deny"
        };
        let expect = sum(apps(doc).iter().map(|a| activity(a, start, field)));
        assert_eq!(value.parse::<u64>().unwrap(), expect, "{key}");
    }
    let shown = figs
        .keys()
        .filter(|k| k.starts_with("refused-by-app/"))
        .count();
    assert!(shown >= 2, "denials by app are shown");
    for a in apps(doc) {
        let id = a["id"].as_str().unwrap();
        let total = |f: &str| {
            sum(a["activity"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p[f].as_u64().unwrap()))
        };
        if let Some(v) = figs.get(&format!("refused-by-app/{id}/denied")) {
            assert_eq!(v.parse::<u64>().unwrap(), total("denied"));
            assert_eq!(
                num(figs, &format!("refused-by-app/{id}/would_deny")),
                total("would_deny")
            );
        }
    }
    let mut dests: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for a in apps(doc) {
        for d in a["destinations"].as_array().unwrap() {
            let key = format!(
                "dest/{}/{}/{}",
                d["protocol"].as_str().unwrap(),
                d["address"].as_str().unwrap(),
                d["port"]
            );
            let e = dests.entry(key).or_default();
            e.0 += d["events"].as_u64().unwrap();
            e.1 += 1;
        }
    }
    let shown: Vec<&String> = figs
        .keys()
        .filter(|k| k.starts_with("dest/") && k.ends_with("/events"))
        .collect();
    assert_eq!(shown.len(), 15);
    let least_shown = shown.iter().map(|k| num(figs, k)).min().unwrap();
    for (key, (events, apps)) in &dests {
        match figs.get(&format!("{key}/events")) {
            Some(v) => {
                assert_eq!(v.parse::<u64>().unwrap(), *events, "{key}");
                assert_eq!(num(figs, &format!("{key}/apps")), *apps, "{key}");
            }
            None => assert!(*events <= least_shown, "{key} ({events} events) is missing"),
        }
    }
}

/// Pixels of the chart colours inside `b` of the screenshot.
fn coloured_pixels(img: &Screenshot, b: [u32; 4]) -> usize {
    let Screenshot {
        pixels,
        width,
        height,
        channels,
    } = img;
    let mut n = 0;
    for y in b[1]..(b[1] + b[3]).min(*height) {
        for x in b[0]..(b[0] + b[2]).min(*width) {
            let i = ((y * width + x) * channels) as usize;
            let (r, g, bl) = (pixels[i] as i32, pixels[i + 1] as i32, pixels[i + 2] as i32);
            if PALETTE.iter().any(|&(pr, pg, pb)| {
                (r - pr as i32).abs() + (g - pg as i32).abs() + (bl - pb as i32).abs() < 30
            }) {
                n += 1;
            }
        }
    }
    n
}

struct Screenshot {
    pixels: Vec<u8>,
    width: u32,
    height: u32,
    channels: u32,
}

fn screenshot(path: &Path) -> Screenshot {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = match info.color_type {
        png::ColorType::Rgba => 4,
        png::ColorType::Rgb => 3,
        other => panic!("a screenshot in {other:?}"),
    };
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    buf.truncate(info.buffer_size());
    Screenshot {
        pixels: buf,
        width: info.width,
        height: info.height,
        channels,
    }
}

/// A signed synthetic trail with refusals and names, its policy, and the report.
fn dataset(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let keys = dir.join("keys");
    let ds = dir.join("ds");
    let policy = dir.join("policy.toml");
    assert!(
        pinhole(["trail", "keygen", "--out", keys.to_str().unwrap()])
            .status
            .success()
    );
    run(Command::new(SYNTH)
        .args([
            "--events",
            "30000",
            "--apps",
            "25",
            "--destinations",
            "500",
            "--days",
            "4",
        ])
        .args(["--refused", "0.05", "--names", "0.3", "--files", "6"])
        .arg("--signing-key")
        .arg(keys.join("pinhole.key"))
        .arg("--out")
        .arg(&ds));
    run(Command::new(common::PINHOLE)
        .args(["policy", "generate"])
        .arg(&ds)
        .arg("-o")
        .arg(&policy));
    (keys, ds, policy)
}

#[test]
fn the_report_renders_in_chromium_with_analyze_s_figures() {
    let dir = tempfile::tempdir().unwrap();
    let (keys, ds, policy) = dataset(dir.path());
    let page = dir.path().join("report.html");
    let out = pinhole([
        "report".as_ref(),
        ds.as_os_str(),
        "--policy".as_ref(),
        policy.as_os_str(),
        "--key".as_ref(),
        keys.join("pinhole.pub").as_os_str(),
        "-o".as_ref(),
        page.as_os_str(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let html = std::fs::read_to_string(&page).unwrap();
    for fetch in [" src=", " href=", "url(", "@import", "<link", "<iframe"] {
        assert!(
            !html.contains(fetch),
            "the page would fetch something: {fetch}"
        );
    }

    let profile = dir.path().join("chromium");
    let size = format!("--window-size={WIDTH},1000");
    let dom = browse(&page, &profile, &["--dump-dom", &size]);
    let figs = figures(&dom);
    let doc: Value = serde_json::from_slice(
        &run(Command::new(common::PINHOLE)
            .args(["analyze", "--format", "json"])
            .arg(&ds))
        .stdout,
    )
    .unwrap();
    check_app_figures(&figs, &doc);
    check_refusals_and_destinations(&figs, &doc);

    // The trail and the policy as `verify` and `policy replay` report them.
    let verify: Value = serde_json::from_slice(
        &run(Command::new(common::PINHOLE)
            .arg("verify")
            .arg(&ds)
            .arg("--key")
            .arg(keys.join("pinhole.pub"))
            .args(["--format", "json"]))
        .stdout,
    )
    .unwrap();
    assert_eq!(figs["trail/verdict"], "verified");
    assert_eq!(
        num(&figs, "trail/entries"),
        verify["entries"].as_u64().unwrap()
    );
    assert_eq!(
        num(&figs, "trail/files_intact"),
        verify["files_intact"].as_u64().unwrap()
    );
    let replay: Value = serde_json::from_slice(
        &run(Command::new(common::PINHOLE)
            .args(["policy", "replay"])
            .arg(&policy)
            .arg(&ds)
            .arg("--json"))
        .stdout,
    )
    .unwrap();
    assert_eq!(
        num(&figs, "replay/events"),
        replay["events"].as_u64().unwrap()
    );
    assert_eq!(
        num(&figs, "replay/denied"),
        replay["denied"].as_u64().unwrap()
    );
    let text = std::fs::read_to_string(&policy).unwrap();
    assert_eq!(
        num(&figs, "policy/apps"),
        text.matches("\n[[app]]\n").count() as u64
    );
    assert_eq!(
        num(&figs, "policy/rules") + num(&figs, "policy/name_rules"),
        text.matches("\n[[app.allow]]\n").count() as u64
    );

    // Every chart laid out at its size, and drawn: its data in the chart colours where
    // the browser put it (a chart with its legend only would have a few hundred).
    let boxes = chart_boxes(&dom);
    let ids: Vec<&str> = boxes.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "events",
            "learning",
            "refused",
            "refused-by-app",
            "destinations"
        ]
    );
    let bottom = boxes.iter().map(|(_, b)| b[1] + b[3]).max().unwrap() + 50;
    let shot = dir.path().join("report.png");
    browse(
        &page,
        &profile,
        &[
            &format!("--screenshot={}", shot.display()),
            &format!("--window-size={WIDTH},{bottom}"),
        ],
    );
    let img = screenshot(&shot);
    for (id, b) in &boxes {
        assert!(b[2] >= 800 && b[3] >= 300, "{id} drawn at {b:?}");
        let n = coloured_pixels(&img, *b);
        assert!(n > 1500, "{id}: only {n} pixels of data drawn in {b:?}");
    }
}

#[test]
fn a_tampered_trail_is_reported_and_bad_input_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (keys, ds, _) = dataset(dir.path());
    let victim = pinhole_recorder::layout::published_files(&ds)
        .unwrap()
        .remove(0);
    let mut bytes = std::fs::read(&victim).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&victim, bytes).unwrap();
    let page = dir.path().join("report.html");
    let key = keys.join("pinhole.pub");
    let out = pinhole([
        "report".as_ref(),
        ds.as_os_str(),
        "--key".as_ref(),
        key.as_os_str(),
        "--skip-bad".as_ref(),
        "-o".as_ref(),
        page.as_os_str(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("data-fig=\"trail/verdict\">tampered<"));
    let name = victim.file_name().unwrap().to_str().unwrap();
    assert!(
        html.lines()
            .any(|l| l.contains("TAMPERED") && l.contains(name)),
        "the finding names {name}"
    );

    // Without a key the page says what the trail is; a missing dataset is an error that
    // names it, and no page is written.
    let out = pinhole([
        "report".as_ref(),
        ds.as_os_str(),
        "--skip-bad".as_ref(),
        "-o".as_ref(),
        page.as_os_str(),
    ]);
    assert!(out.status.success());
    assert!(std::fs::read_to_string(&page)
        .unwrap()
        .contains("give --key PUBKEY"));
    let missing = dir.path().join("nothing-here");
    let other = dir.path().join("other.html");
    let out = pinhole([
        "report".as_ref(),
        missing.as_os_str(),
        "-o".as_ref(),
        other.as_os_str(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("nothing-here") && !err.contains("panicked"),
        "{err}"
    );
    assert!(!other.exists());
}
