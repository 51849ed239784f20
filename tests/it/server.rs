//! The gRPC server against a real client: resume, kill -9, streams and filters, isolation,
//! errors.

use crate::support::*;
use ampsim::pb;
use std::collections::BTreeSet;
use tonic::Code;

const SCALE: f64 = 0.004;

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_across_graceful_restart_gives_the_same_events() {
    let dir = tmp();
    // Reference: 20 days in one call.
    let a = TestServer::start(&dir.path().join("a.db")).await;
    let mut ca = a.client().await;
    create(&mut ca, "s", 11, SCALE).await;
    let progress = generate(&mut ca, "s", 20).await;
    assert_eq!(progress.len(), 20);
    assert_eq!(progress.last().unwrap().days_generated, 20);
    let reference = pull_all(&mut ca, "s").await;
    a.stop().await;

    // 8 days, graceful stop, restart on the same file, 12 more.
    let db = dir.path().join("b.db");
    let b = TestServer::start(&db).await;
    let mut cb = b.client().await;
    create(&mut cb, "s", 11, SCALE).await;
    generate(&mut cb, "s", 8).await;
    b.stop().await;
    let b2 = TestServer::start(&db).await;
    let mut cb2 = b2.client().await;
    let sim = cb2
        .get_simulation(pb::GetSimulationRequest {
            simulation_id: "s".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(sim.days_generated, 8);
    generate(&mut cb2, "s", 12).await;
    let resumed = pull_all(&mut cb2, "s").await;
    b2.stop().await;

    assert!(reference.len() > 1000, "a real run: {}", reference.len());
    assert_eq!(reference.len(), resumed.len());
    assert_eq!(digest(&reference), digest(&resumed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_generation_loses_at_most_the_day_in_progress() {
    let dir = tmp();
    // Far more days than the stream buffers (32), so the kill lands mid-run.
    const DAYS: u32 = 120;
    let reference = reference_run(dir.path(), "k", 5, 0.01, DAYS).await;

    let db = dir.path().join("killed.db");
    let p = ServerProcess::spawn(&db);
    let mut c = connect(p.addr).await;
    create(&mut c, "k", 5, 0.01).await;
    let mut stream = c
        .generate_days(pb::GenerateDaysRequest {
            simulation_id: "k".into(),
            days: DAYS,
        })
        .await
        .unwrap()
        .into_inner();
    // Let a few days commit, then kill the process in the middle of the run.
    for _ in 0..3 {
        stream.message().await.unwrap().expect("a day");
    }
    p.kill9();
    drop(stream);

    let p2 = ServerProcess::spawn(&db);
    let mut c2 = connect(p2.addr).await;
    let sim = c2
        .get_simulation(pb::GetSimulationRequest {
            simulation_id: "k".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        sim.days_generated >= 3 && sim.days_generated < DAYS,
        "{}",
        sim.days_generated
    );
    // Every committed day is there exactly once.
    let partial = pull_all(&mut c2, "k").await;
    let days: BTreeSet<i64> = partial.iter().map(|e| e.time / 86_400_000).collect();
    assert_eq!(
        days.len() as u32,
        sim.days_generated,
        "no day missing or partial"
    );
    generate(&mut c2, "k", DAYS - sim.days_generated).await;
    let resumed = pull_all(&mut c2, "k").await;
    assert_eq!(reference.len(), resumed.len());
    assert_eq!(digest(&reference), digest(&resumed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_are_time_ordered_and_filters_match_an_unfiltered_pull() {
    let dir = tmp();
    let s = TestServer::start(&dir.path().join("f.db")).await;
    let mut c = s.client().await;
    create(&mut c, "f", 3, 0.01).await;
    generate(&mut c, "f", 30).await;
    let all = pull_all(&mut c, "f").await;
    assert!(all.windows(2).all(|w| w[0].time <= w[1].time), "time order");

    // event_types
    let types = vec!["pricing_page_view".to_string(), "trial_started".to_string()];
    let got = pull(
        &mut c,
        pb::StreamEventsRequest {
            simulation_id: "f".into(),
            event_types: types.clone(),
            ..Default::default()
        },
    )
    .await;
    let want: Vec<_> = all
        .iter()
        .filter(|e| types.contains(&e.event_type))
        .cloned()
        .collect();
    assert!(!want.is_empty());
    assert_eq!(digest(&got), digest(&want));

    // device_id: a device with several days of activity
    let mut by_device = std::collections::BTreeMap::<&str, BTreeSet<i64>>::new();
    for e in &all {
        by_device
            .entry(&e.device_id)
            .or_default()
            .insert(e.time / 86_400_000);
    }
    let (device, _) = by_device.iter().max_by_key(|(_, d)| d.len()).unwrap();
    let got = pull(
        &mut c,
        pb::StreamEventsRequest {
            simulation_id: "f".into(),
            device_id: device.to_string(),
            ..Default::default()
        },
    )
    .await;
    let want: Vec<_> = all
        .iter()
        .filter(|e| e.device_id == *device)
        .cloned()
        .collect();
    assert_eq!(digest(&got), digest(&want));

    // user_id: an identified user
    let user = all
        .iter()
        .find(|e| e.event_type == "trial_started")
        .map(|e| e.user_id.clone())
        .unwrap();
    let got = pull(
        &mut c,
        pb::StreamEventsRequest {
            simulation_id: "f".into(),
            user_id: user.clone(),
            ..Default::default()
        },
    )
    .await;
    let want: Vec<_> = all.iter().filter(|e| e.user_id == user).cloned().collect();
    assert!(!want.is_empty());
    assert_eq!(digest(&got), digest(&want));

    // a day range, and the batch size is respected
    let mut stream = c
        .stream_events(pb::StreamEventsRequest {
            simulation_id: "f".into(),
            from_date: "2025-03-10".into(),
            to_date: "2025-03-11".into(),
            batch_size: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let (mut got, mut short) = (Vec::new(), 0);
    while let Some(b) = stream.message().await.unwrap() {
        assert!(b.len() <= 100);
        short += usize::from(b.len() < 100);
        got.extend(b.to_events().unwrap());
    }
    assert!(
        short <= 2,
        "batches are full except each day's last: {short} short"
    );
    let lo = chrono::NaiveDate::from_ymd_opt(2025, 3, 10)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp_millis();
    let hi = lo + 2 * 86_400_000;
    let want: Vec<_> = all
        .iter()
        .filter(|e| e.time >= lo && e.time < hi)
        .cloned()
        .collect();
    assert_eq!(digest(&got), digest(&want));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_simulations_in_one_file_do_not_interfere() {
    let dir = tmp();
    let shared = TestServer::start(&dir.path().join("shared.db")).await;
    let mut c = shared.client().await;
    create(&mut c, "one", 1, SCALE).await;
    create(&mut c, "two", 2, SCALE).await;
    // Interleave their days.
    for _ in 0..3 {
        generate(&mut c, "one", 4).await;
        generate(&mut c, "two", 3).await;
    }
    let one = pull_all(&mut c, "one").await;
    let two = pull_all(&mut c, "two").await;
    // Deleting one leaves the other intact.
    c.delete_simulation(pb::DeleteSimulationRequest {
        simulation_id: "one".into(),
    })
    .await
    .unwrap();
    let two_after = pull_all(&mut c, "two").await;
    shared.stop().await;

    let alone = TestServer::start(&dir.path().join("alone.db")).await;
    let mut c = alone.client().await;
    create(&mut c, "one", 1, SCALE).await;
    create(&mut c, "two", 2, SCALE).await;
    generate(&mut c, "one", 12).await;
    generate(&mut c, "two", 9).await;
    assert_eq!(digest(&one), digest(&pull_all(&mut c, "one").await));
    assert_eq!(digest(&two), digest(&pull_all(&mut c, "two").await));
    assert_eq!(digest(&two), digest(&two_after));
    assert_ne!(digest(&one), digest(&two));
    alone.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_have_the_right_codes() {
    let dir = tmp();
    let s = TestServer::start(&dir.path().join("e.db")).await;
    let mut c = s.client().await;

    let e = c
        .get_simulation(pb::GetSimulationRequest {
            simulation_id: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = c
        .generate_days(pb::GenerateDaysRequest {
            simulation_id: "nope".into(),
            days: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);

    create(&mut c, "e", 1, SCALE).await;
    let e = c
        .create_simulation(pb::CreateSimulationRequest {
            simulation_id: "e".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);
    generate(&mut c, "e", 3).await;

    for (from, to, field) in [
        ("2025-13-01", "2025-03-04", "from_date"),
        ("2025-03-03", "not-a-date", "to_date"),
        ("2025-03-05", "2025-03-03", "from_date"),
        ("1969-12-31", "2025-03-03", "from_date"),
        ("2025-03-03", "10000-01-01", "to_date"),
    ] {
        let e = c
            .stream_events(pb::StreamEventsRequest {
                simulation_id: "e".into(),
                from_date: from.into(),
                to_date: to.into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{from}..{to}: {e:?}");
        assert!(e.message().contains(field), "{from}..{to}: {}", e.message());
        // ExportParquet checks its range the same way.
        let e = c
            .export_parquet(pb::ExportParquetRequest {
                simulation_id: "e".into(),
                from_date: from.into(),
                to_date: to.into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{from}..{to}: {e:?}");
        assert!(e.message().contains(field), "{from}..{to}: {}", e.message());
    }
    for (id, code) in [("nope", Code::NotFound), ("bad id!", Code::InvalidArgument)] {
        let e = c
            .export_parquet(pb::ExportParquetRequest {
                simulation_id: id.into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), code, "{id}: {e:?}");
    }
    let e = c
        .export_parquet(pb::ExportParquetRequest {
            simulation_id: "e".into(),
            from_date: "2025-03-03".into(),
            to_date: "2025-03-10".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    // Beyond the last generated day.
    let e = c
        .stream_events(pb::StreamEventsRequest {
            simulation_id: "e".into(),
            from_date: "2025-03-03".into(),
            to_date: "2025-03-10".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    // ... unless the request asks for the missing days.
    let got = pull(
        &mut c,
        pb::StreamEventsRequest {
            simulation_id: "e".into(),
            from_date: "2025-03-10".into(),
            to_date: "2025-03-10".into(),
            generate_missing: true,
            ..Default::default()
        },
    )
    .await;
    assert!(!got.is_empty());
    let sim = c
        .get_simulation(pb::GetSimulationRequest {
            simulation_id: "e".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(sim.days_generated, 8);
    assert_eq!(sim.last_generated_date, "2025-03-10");

    // Scenario errors name the key.
    let e = c
        .create_simulation(pb::CreateSimulationRequest {
            simulation_id: "bad".into(),
            scenario_toml: "[trials.conversion_rate]\nself_service = 2.0\n".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message()
            .contains("scenario_toml.trials.conversion_rate.self_service"),
        "{}",
        e.message()
    );

    // A second GenerateDays while one runs is ABORTED; the running one is unaffected.
    create(&mut c, "busy", 4, 0.02).await;
    let mut first = c
        .generate_days(pb::GenerateDaysRequest {
            simulation_id: "busy".into(),
            days: 30,
        })
        .await
        .unwrap()
        .into_inner();
    first.message().await.unwrap().expect("first day");
    let e = c
        .generate_days(pb::GenerateDaysRequest {
            simulation_id: "busy".into(),
            days: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Aborted);
    let e = c
        .delete_simulation(pb::DeleteSimulationRequest {
            simulation_id: "busy".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Aborted);
    let mut n = 1;
    while first.message().await.unwrap().is_some() {
        n += 1;
    }
    assert_eq!(n, 30);
    s.stop().await;
}

#[test]
fn foreign_or_newer_database_files_are_refused_and_left_untouched() {
    let dir = tmp();
    // Not SQLite at all.
    let junk = dir.path().join("junk.db");
    std::fs::write(
        &junk,
        b"this is not a database, it is a text file with enough bytes to look like one...."
            .repeat(100),
    )
    .unwrap();
    let before = std::fs::read(&junk).unwrap();
    let e = ampsim::store::Store::open(&junk).unwrap_err();
    assert!(e.to_string().contains("not an ampsim database"), "{e}");
    assert_eq!(std::fs::read(&junk).unwrap(), before);

    // SQLite, but somebody else's.
    let other = dir.path().join("other.db");
    {
        let c = rusqlite::Connection::open(&other).unwrap();
        c.execute_batch("CREATE TABLE notes (x TEXT); INSERT INTO notes VALUES ('mine');")
            .unwrap();
    }
    let before = std::fs::read(&other).unwrap();
    let e = ampsim::store::Store::open(&other).unwrap_err();
    assert!(e.to_string().contains("not an ampsim database"), "{e}");
    assert_eq!(std::fs::read(&other).unwrap(), before);

    // An ampsim database from a newer schema.
    let newer = dir.path().join("newer.db");
    ampsim::store::Store::open(&newer).unwrap();
    {
        let c = rusqlite::Connection::open(&newer).unwrap();
        c.pragma_update(None, "user_version", ampsim::store::SCHEMA_VERSION + 1)
            .unwrap();
        c.pragma_update(None, "journal_mode", "DELETE").unwrap();
    }
    let before = std::fs::read(&newer).unwrap();
    let e = ampsim::store::Store::open(&newer).unwrap_err();
    assert!(e.to_string().contains("newer"), "{e}");
    assert_eq!(std::fs::read(&newer).unwrap(), before);
}

/// A database with one simulation of a few days, its WAL folded into the file.
fn small_database(path: &std::path::Path) {
    let store = ampsim::store::Store::open(path).unwrap();
    let app = std::sync::Arc::new(ampsim::app::App::new(
        store,
        tokio_util::sync::CancellationToken::new(),
    ));
    app.create(&ampsim::app::CreateParams {
        simulation_id: "t".into(),
        seed: 1,
        start_date: "2025-03-03".into(),
        population_scale: 0.01,
        scenario_toml: String::new(),
    })
    .unwrap();
    app.generate("t", 3, |_| true).unwrap();
    app.store().checkpoint().unwrap();
}

#[test]
fn a_truncated_or_read_only_database_is_refused_naming_the_cause() {
    let dir = tmp();
    let good = dir.path().join("good.db");
    small_database(&good);
    assert!(ampsim::store::Store::open(&good).is_ok());

    let cut = dir.path().join("cut.db");
    let bytes = std::fs::read(&good).unwrap();
    assert!(bytes.len() > 8192, "{} bytes", bytes.len());
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let e = ampsim::store::Store::open(&cut).unwrap_err().to_string();
    assert!(
        e.contains("truncated") && !e.contains("not an ampsim database"),
        "{e}"
    );
    assert_eq!(std::fs::read(&cut).unwrap(), bytes[..bytes.len() / 2]);

    let ro = dir.path().join("ro.db");
    std::fs::copy(&good, &ro).unwrap();
    let mut perms = std::fs::metadata(&ro).unwrap().permissions();
    perms.set_readonly(true);
    std::fs::set_permissions(&ro, perms).unwrap();
    let e = ampsim::store::Store::open(&ro).unwrap_err().to_string();
    assert!(
        e.contains("read-only") && !e.contains("not an ampsim database"),
        "{e}"
    );
}

/// The store keeps its `-wal` and `-shm` files while it is open, so that a full disk cannot
/// stop reads: a connection opened when they are gone must create them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_files_stay_while_the_server_runs_so_reads_survive_a_full_disk() {
    let dir = tmp();
    let db = dir.path().join("w.db");
    let s = TestServer::start(&db).await;
    let mut c = s.client().await;
    create(&mut c, "w", 2, 0.01).await;
    generate(&mut c, "w", 2).await;
    assert!(!pull_all(&mut c, "w").await.is_empty());
    drop(c);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let side = |ext: &str| {
        let mut p = db.clone().into_os_string();
        p.push(ext);
        std::path::PathBuf::from(p)
    };
    assert!(
        side("-wal").exists(),
        "the -wal file was removed while serving"
    );
    assert!(
        side("-shm").exists(),
        "the -shm file was removed while serving"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_and_sigint_shut_down_gracefully_mid_generation() {
    for sig in ["TERM", "INT"] {
        let dir = tmp();
        let db = dir.path().join("g.db");
        let p = ServerProcess::spawn(&db);
        let mut c = connect(p.addr).await;
        create(&mut c, "g", 9, 0.01).await;
        let mut stream = c
            .generate_days(pb::GenerateDaysRequest {
                simulation_id: "g".into(),
                days: 200,
            })
            .await
            .unwrap()
            .into_inner();
        stream.message().await.unwrap().expect("a day");
        let status = tokio::task::spawn_blocking(move || p.signal_and_wait(sig))
            .await
            .unwrap();
        assert!(status.success(), "SIG{sig}: exit status {status:?}");
        // The stream ends with UNAVAILABLE (or just ends) after the last committed day.
        let mut last = 0;
        loop {
            match stream.message().await {
                Ok(Some(d)) => last = d.days_generated,
                Ok(None) => break,
                Err(e) => {
                    assert!(
                        matches!(
                            e.code(),
                            Code::Unavailable | Code::Unknown | Code::Cancelled
                        ),
                        "{e:?}"
                    );
                    break;
                }
            }
        }
        // Restart: the marker matches the days actually stored, and generation continues.
        let p2 = ServerProcess::spawn(&db);
        let mut c2 = connect(p2.addr).await;
        let sim = c2
            .get_simulation(pb::GetSimulationRequest {
                simulation_id: "g".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(
            sim.days_generated >= last && sim.days_generated < 200,
            "{} vs {last}",
            sim.days_generated
        );
        let events = pull_all(&mut c2, "g").await;
        let days: BTreeSet<i64> = events.iter().map(|e| e.time / 86_400_000).collect();
        assert_eq!(days.len() as u32, sim.days_generated);
        generate(&mut c2, "g", 2).await;
    }
}

/// `ampsim events` (which writes JSON straight from the received bytes) prints exactly the
/// `event_json` lines of the streamed events, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_events_verb_prints_the_stream_as_json_lines() {
    let dir = tmp();
    let s = TestServer::start(&dir.path().join("cli.db")).await;
    let mut c = s.client().await;
    create(&mut c, "cli", 4, SCALE).await;
    generate(&mut c, "cli", 3).await;
    let want: Vec<String> = pull_all(&mut c, "cli")
        .await
        .iter()
        .map(|e| serde_json::to_string(&crate::support::event_json(e)).unwrap())
        .collect();
    assert!(want.len() > 100, "{} events", want.len());
    let server = format!("http://{}", s.addr);
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_ampsim"))
            .args(["events", "--server", &server, "--simulation", "cli"])
            .output()
            .expect("ampsim runs")
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Vec<&str> = std::str::from_utf8(&out.stdout).unwrap().lines().collect();
    assert_eq!(got.len(), want.len());
    assert!(got == want, "the printed lines differ from event_json");
    s.stop().await;
}
