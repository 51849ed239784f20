//! `ampsim generate --out` (offline shards to date-partitioned Parquet): each shard's files hold
//! exactly the engine's events of the devices it owns, in stream order and with the one Arrow
//! schema; the shards together are the whole simulation; a run killed mid-way resumes to the same
//! bytes as a straight run; another definition's output and bad flags are refused by name.

use crate::support::{one_batch, read_parquet};
use ampsim::offline::{self, OfflineOptions};
use ampsim_engine::columns::{BatchBuilder, BatchPlan};
use ampsim_engine::memory::MemorySim;
use ampsim_engine::{Engine, Scenario, Shard, SimConfig};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn config(seed: u64, scale: f64) -> SimConfig {
    SimConfig {
        scenario: Scenario::from_toml("").unwrap(),
        seed,
        start_date: chrono::NaiveDate::from_ymd_opt(2025, 3, 3).unwrap(),
        population_scale: scale,
    }
}

fn options(cfg: &SimConfig, shard: Shard, days: u32, out: &Path) -> OfflineOptions {
    OfflineOptions {
        config: cfg.clone(),
        shard,
        days,
        out: out.to_path_buf(),
        checkpoint_days: 2,
        threads: 2,
        zstd_level: 1,
    }
}

/// `day_batches` is the row-by-row builder over `render_sorted`, for any batch size.
#[test]
fn day_batches_are_the_rendered_stream_in_order() {
    let engine = Engine::new(config(11, 0.005));
    let mut sim = MemorySim::new(Engine::new(config(11, 0.005)));
    sim.step();
    let records = sim.step().records;
    let mut b = BatchBuilder::with_capacity(0);
    let mut n: usize = 0;
    for e in engine.render_sorted(&records) {
        b.push(&e);
        n += 1;
    }
    assert!(n > 1000, "a day with events: {n}");
    let expected = b.finish();
    for rows in [1, 1000, 1 << 30] {
        let batches = engine.day_batches(&records, rows);
        assert_eq!(
            batches.len(),
            n.div_ceil(rows.min(n)),
            "{rows} rows a batch"
        );
        assert_eq!(one_batch(&batches), expected, "{rows} rows a batch");
    }
    // A plan rendered a few batches at a time (what the Python reader does) is the same.
    let plan = BatchPlan::new(&records, 300);
    assert_eq!(plan.events(), n);
    let mut pieces = Vec::new();
    let mut next = 0usize;
    for step in [1, 3, 2, usize::MAX] {
        let end = next.saturating_add(step).min(plan.batches());
        pieces.extend(engine.render_batches(&records, &plan, next..end));
        next = end;
    }
    assert_eq!(pieces.len(), plan.batches());
    assert!(plan.batches() > 4);
    assert!(pieces[..pieces.len() - 1]
        .iter()
        .all(|b| b.num_rows() == 300));
    assert_eq!(one_batch(&pieces), expected, "rendered in pieces");
}

/// For N in {1, 3}: each shard's day file is the engine's day of the devices the shard owns, and
/// the shards together have every event of the whole simulation.
#[test]
fn each_shards_files_are_its_devices_days_and_together_the_whole() {
    let cfg = config(7, 0.005);
    let days = 5;
    let engine = Engine::new(cfg.clone());
    let mut whole = MemorySim::new(Engine::new(cfg.clone()));
    let whole_days: Vec<_> = (0..days).map(|_| whole.step().records).collect();
    for n in [1u32, 3] {
        let dir = tempfile::tempdir().unwrap();
        let mut per_day = vec![0u64; days as usize];
        for k in 0..n {
            let shard = Shard::new(k, n).unwrap();
            let s = offline::generate(&options(&cfg, shard, days, dir.path()), |_, _| {}).unwrap();
            assert_eq!((s.days_written, s.manifest.days_complete), (days, days));
            assert_eq!(s.manifest.files.len(), days as usize);
            for (day, file) in s.manifest.files.iter().enumerate() {
                let date = engine
                    .date_of(engine.first_day() + day as u32)
                    .format("%Y-%m-%d")
                    .to_string();
                assert_eq!(
                    file.path,
                    format!("date={date}/part-{k:05}-of-{n:05}.parquet")
                );
                let path = dir.path().join(&file.path);
                assert_eq!(file.bytes, std::fs::metadata(&path).unwrap().len());
                let got = one_batch(&read_parquet(&path));
                let mine: Vec<_> = whole_days[day]
                    .iter()
                    .filter(|r| shard.owns(r.device))
                    .cloned()
                    .collect();
                let expected = one_batch(&engine.day_batches(&mine, 1 << 30));
                assert!(
                    expected.num_rows() > 0,
                    "shard {shard} day {day} has events"
                );
                assert_eq!(got.num_rows() as u64, file.events);
                assert_eq!(got, expected, "shard {shard} day {day}");
                per_day[day] += file.events;
            }
        }
        let whole_counts: Vec<u64> = whole_days
            .iter()
            .map(|rs| rs.iter().map(|r| r.events.len() as u64).sum())
            .collect();
        assert_eq!(per_day, whole_counts, "{n} shards together");
        // Hive-style partitions: one directory per day, and nothing else without a leading _.
        let mut dirs: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('_'))
            .collect();
        dirs.sort();
        assert_eq!(dirs.len(), days as usize);
        assert!(dirs.iter().all(|d| d.starts_with("date=2025-03-")));
    }
}

/// Asking for more days extends an output; the same days again write nothing; another
/// definition in the same directory is refused, naming what differs.
#[test]
fn an_output_extends_and_refuses_another_definition() {
    let cfg = config(3, 0.003);
    let dir = tempfile::tempdir().unwrap();
    let straight = tempfile::tempdir().unwrap();
    offline::generate(&options(&cfg, Shard::WHOLE, 6, straight.path()), |_, _| {}).unwrap();
    let first = offline::generate(&options(&cfg, Shard::WHOLE, 3, dir.path()), |_, _| {}).unwrap();
    assert_eq!(first.days_written, 3);
    let more = offline::generate(&options(&cfg, Shard::WHOLE, 6, dir.path()), |_, _| {}).unwrap();
    // The first run ended with a checkpoint of its last day: nothing to replay.
    assert_eq!((more.days_written, more.days_replayed), (3, 0));
    let again = offline::generate(&options(&cfg, Shard::WHOLE, 6, dir.path()), |_, _| {}).unwrap();
    assert_eq!((again.days_written, again.events_written), (0, 0));
    assert_eq!(
        tree(dir.path()),
        tree(straight.path()),
        "extended = straight"
    );

    let err = offline::generate(
        &options(&config(4, 0.003), Shard::WHOLE, 6, dir.path()),
        |_, _| {},
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, offline::Error::Mismatch { .. }), "{msg}");
    assert!(msg.contains("seed 3") && msg.contains("seed 4"), "{msg}");
    let err = offline::generate(
        &options(&cfg, Shard::new(1, 2).unwrap(), 6, dir.path()),
        |_, _| {},
    );
    assert!(
        err.is_ok(),
        "another shard of the same definition shares the directory"
    );
}

/// Every file under `dir` (relative path -> bytes), leftovers of killed writes included.
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    out
}

fn cli(out: &Path, days: u32, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ampsim"));
    c.args(["generate", "--out"])
        .arg(out)
        .args([
            "--start",
            "2025-03-03",
            "--days",
            &days.to_string(),
            "--quiet",
        ])
        .args(extra);
    c
}

/// The kill test's run: 30 days of about 20K events each.
const RUN: [&str; 6] = ["--seed", "9", "--scale", "0.05", "--checkpoint-days", "4"];

fn days_complete(out: &Path) -> u32 {
    std::fs::read(out.join("_manifests/part-00000-of-00001.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|m| m["days_complete"].as_u64())
        .unwrap_or(0) as u32
}

/// SIGKILL of the CLI mid-run, then the same command again: the output is byte for byte a
/// straight run's (files, manifest and last checkpoint), and the rerun wrote only the rest.
#[test]
fn a_killed_run_resumes_to_the_bytes_of_a_straight_run() {
    let days = 30;
    let straight = tempfile::tempdir().unwrap();
    let st = cli(straight.path(), days, &RUN)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let killed = tempfile::tempdir().unwrap();
    let mut child = cli(killed.path(), days, &RUN)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while days_complete(killed.path()) < 10 {
        assert!(Instant::now() < deadline, "no progress");
        assert!(
            child.try_wait().unwrap().is_none(),
            "finished before the kill"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let at_kill = days_complete(killed.path());
    assert!(
        (10..days).contains(&at_kill),
        "killed mid-run, at day {at_kill}"
    );

    let out = cli(killed.path(), days, &RUN).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        summary["days_written"].as_u64(),
        Some(u64::from(days - at_kill))
    );
    assert!(summary["days_replayed"].as_u64().unwrap() < 4, "{summary}");
    let (a, b) = (tree(straight.path()), tree(killed.path()));
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "the same files"
    );
    for (path, bytes) in &a {
        assert!(bytes == &b[path], "{} differs", path.display());
    }
}

/// Bad flags fail before anything is written, naming the flag.
#[test]
fn bad_offline_flags_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o");
    let cases: [(Vec<&str>, &str); 6] = [
        (vec!["--shard", "3/3"], "--shard"),
        (vec!["--shard", "1-3"], "--shard"),
        (vec!["--scale=-1"], "--scale"),
        (vec!["--checkpoint-days", "0"], "--checkpoint-days"),
        (vec!["--zstd-level", "23"], "--zstd-level"),
        (vec!["--simulation", "1"], "--simulation"),
    ];
    for (extra, flag) in cases {
        let o = cli(&out, 3, &extra).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{extra:?} accepted");
        assert!(err.contains(flag), "{extra:?}: {err}");
    }
    let o = Command::new(env!("CARGO_BIN_EXE_ampsim"))
        .args(["generate", "--days", "3", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--start"));
    assert!(!out.exists(), "nothing written on a bad flag");
}
