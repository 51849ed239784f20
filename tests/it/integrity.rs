//! No silent short reads: corrupt stored data, a simulation deleted or replaced under a reader,
//! and a second server on the same file all end in an error status (or the right data), never
//! in a stream that ends OK early or in another simulation's events.

use crate::support::*;
use ampsim::pb;
use ampsim::upload::double::{AmplitudeDouble, DoubleConfig};
use ampsim::upload::{upload, Api, Checkpoint, UploadOptions};
use ampsim_engine::state::EventKind;
use std::path::Path;
use std::time::Duration;
use tonic::Code;

const START: &str = "2025-03-03";

/// Midnight (UTC) of simulation day `day` of a simulation starting on [`START`], in ms.
fn day_start_ms(day: u32) -> i64 {
    let d = chrono::NaiveDate::parse_from_str(START, "%Y-%m-%d").unwrap();
    d.and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp_millis() + i64::from(day) * 86_400_000
}

fn date(day: u32) -> String {
    let d = chrono::NaiveDate::parse_from_str(START, "%Y-%m-%d").unwrap();
    (d + chrono::Days::new(u64::from(day))).to_string()
}

/// The stored day number of emitted day 0 (the default scenario's warm start comes first).
fn first_day() -> u32 {
    ampsim_engine::Scenario::default_scenario()
        .traffic
        .warm_start_days
}

/// Rewrites one `event_chunks` blob of emitted day `day` (the server must be stopped): its records decode,
/// but one page view points past the scenario's page catalogue, as a flipped bit would make
/// it. Returns a device id whose records are in that blob.
fn corrupt_a_day_chunk(db: &Path, day: u32) -> u64 {
    let conn = rusqlite::Connection::open(db).unwrap();
    let stored = first_day() + day;
    let (rowid, blob): (i64, Vec<u8>) = conn
        .query_row(
            "SELECT rowid, data FROM event_chunks WHERE day = ?1 ORDER BY chunk DESC LIMIT 1",
            [stored],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let raw = zstd::decode_all(blob.as_slice()).unwrap();
    let mut records =
        ampsim_engine::codec::decode_user_days(&raw, stored, day_start_ms(day)).unwrap();
    let r = records
        .iter_mut()
        .find(|r| r.events.iter().any(|e| e.kind == EventKind::Page))
        .expect("a record with a page view");
    let device = r.device;
    let e = r
        .events
        .iter_mut()
        .find(|e| e.kind == EventKind::Page)
        .unwrap();
    e.aux = 250;
    let bad = ampsim_engine::codec::encode_user_days(day_start_ms(day), &records);
    let bad = zstd::bulk::compress(&bad, 3).unwrap();
    conn.execute(
        "UPDATE event_chunks SET data = ?1 WHERE rowid = ?2",
        rusqlite::params![bad, rowid],
    )
    .unwrap();
    device
}

/// Flips bytes in the middle of one `user_states` blob (the server must be stopped).
fn corrupt_a_state_blob(db: &Path) {
    let conn = rusqlite::Connection::open(db).unwrap();
    let (rowid, mut blob): (i64, Vec<u8>) = conn
        .query_row(
            "SELECT rowid, data FROM user_states ORDER BY length(data) DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let mid = blob.len() / 2;
    for b in &mut blob[mid..mid + 4] {
        *b ^= 0x5a;
    }
    conn.execute(
        "UPDATE user_states SET data = ?1 WHERE rowid = ?2",
        rusqlite::params![blob, rowid],
    )
    .unwrap();
}

/// Reads a stream to its end: the events, and the status it ended with (None for OK).
async fn pull_to_end(
    c: &mut Client,
    req: pb::StreamEventsRequest,
) -> (usize, Option<tonic::Status>) {
    let mut s = match c.stream_events(req).await {
        Ok(s) => s.into_inner(),
        Err(e) => return (0, Some(e)),
    };
    let mut n = 0;
    loop {
        match s.message().await {
            Ok(Some(b)) => n += b.len(),
            Ok(None) => return (n, None),
            Err(e) => return (n, Some(e)),
        }
    }
}

fn all(id: &str) -> pb::StreamEventsRequest {
    pb::StreamEventsRequest {
        simulation_id: id.into(),
        ..Default::default()
    }
}

fn ampsim(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_ampsim"))
        .args(args)
        .output()
        .expect("ampsim runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_event_record_ends_every_read_with_data_loss() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.db");
    let s = TestServer::start(&db).await;
    let mut c = s.client().await;
    create(&mut c, "c", 3, 0.01).await;
    generate(&mut c, "c", 4).await;
    let total = pull_all(&mut c, "c").await.len();
    s.stop().await;
    let device = corrupt_a_day_chunk(&db, 2);

    let s = TestServer::start(&db).await;
    let mut c = s.client().await;
    let server = format!("http://{}", s.addr);

    // StreamEvents: the two good days, then DATA_LOSS naming the day; never OK.
    let (n, err) = pull_to_end(&mut c, all("c")).await;
    let err = err.expect("the stream ends with an error, not OK");
    assert_eq!(err.code(), Code::DataLoss, "{err:?}");
    assert!(err.message().contains(&date(2)), "{err:?}");
    assert!(n < total, "{n} of {total}");
    // Only that day's stream fails.
    let (n0, err0) = pull_to_end(
        &mut c,
        pb::StreamEventsRequest {
            to_date: date(1),
            ..all("c")
        },
    )
    .await;
    assert!(err0.is_none() && n0 > 0, "{err0:?}");

    // A journey through the corrupt chunk, and the report (which reads every chunk).
    let engine = ampsim_engine::Engine::new(ampsim_engine::SimConfig {
        scenario: ampsim_engine::Scenario::from_toml("").unwrap(),
        seed: 3,
        start_date: chrono::NaiveDate::parse_from_str(START, "%Y-%m-%d").unwrap(),
        population_scale: 0.01,
    });
    let device_id = engine.ids().device_id(device);
    let j = c
        .get_user_journey(pb::GetUserJourneyRequest {
            simulation_id: "c".into(),
            device_id: device_id.clone(),
            ..Default::default()
        })
        .await;
    let code = match j {
        Err(e) => e.code(),
        Ok(r) => {
            let mut r = r.into_inner();
            loop {
                match r.message().await {
                    Ok(Some(_)) => {}
                    Ok(None) => panic!("the journey of {device_id} ended OK"),
                    Err(e) => break e.code(),
                }
            }
        }
    };
    assert_eq!(code, Code::DataLoss);
    let e = c
        .get_report(pb::GetReportRequest {
            simulation_id: "c".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::DataLoss, "{e:?}");

    // The CLI's verbs exit non-zero with the message.
    let out = tokio::task::spawn_blocking({
        let server = server.clone();
        move || ampsim(&["events", "--server", &server, "--simulation", "c"])
    })
    .await
    .unwrap();
    assert!(!out.status.success(), "ampsim events exited 0");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("corrupt"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out_dir = dir.path().join("export");
    let out = tokio::task::spawn_blocking({
        let (server, out_dir) = (server.clone(), out_dir.clone());
        move || {
            ampsim(&[
                "export",
                "--server",
                &server,
                "--simulation",
                "c",
                "--format",
                "jsonl",
                "--out",
                out_dir.to_str().unwrap(),
            ])
        }
    })
    .await
    .unwrap();
    assert!(!out.status.success(), "ampsim export exited 0");
    let files: Vec<String> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    assert!(
        !files
            .iter()
            .any(|f| f.contains(&date(2)) || f.contains(&date(3))),
        "a file of the corrupt day or after it is named as complete: {files:?}"
    );

    // Upload: fails, and its checkpoint neither says complete nor moves past the bad day.
    let double = AmplitudeDouble::start("127.0.0.1:0".parse().unwrap(), DoubleConfig::default())
        .await
        .unwrap();
    let client = ampsim::cli::client::connect(&ampsim::cli::ClientOpts {
        server: server.clone(),
        auth_token: None,
        tls_ca: None,
    })
    .await
    .unwrap();
    let opts = UploadOptions {
        simulation: "c".into(),
        from: None,
        to: None,
        api_key: "0123456789abcdef0123456789abcdef".into(),
        base_url: double.base_url(),
        api: Api::HttpV2,
        concurrency: 2,
        batch_events: 500,
        throttle_pause: Duration::from_millis(100),
        max_attempts: 3,
        backoff: Duration::from_millis(10),
        checkpoint: dir.path().join("upload.json"),
        restart: false,
        rejected: dir.path().join("rejected.jsonl"),
        progress: false,
    };
    let e = upload(&client, &opts)
        .await
        .expect_err("upload of a corrupt day succeeded");
    assert!(format!("{e:#}").contains("corrupt"), "{e:#}");
    let ck: Checkpoint = serde_json::from_slice(&std::fs::read(&opts.checkpoint).unwrap()).unwrap();
    assert!(!ck.complete);
    assert!(ck.next_date.to_string() <= date(2), "{ck:?}");
    double.stop().await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_state_blob_is_data_loss_for_cohorts_and_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.db");
    let s = TestServer::start(&db).await;
    let mut c = s.client().await;
    create(&mut c, "s", 4, 0.01).await;
    generate(&mut c, "s", 5).await;
    s.stop().await;
    corrupt_a_state_blob(&db);

    let s = TestServer::start(&db).await;
    let mut c = s.client().await;
    let e = c
        .get_report(pb::GetReportRequest {
            simulation_id: "s".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::DataLoss, "{e:?}");
    let code = match c
        .query_cohort(pb::QueryCohortRequest {
            simulation_id: "s".into(),
            ..Default::default()
        })
        .await
    {
        Err(e) => e.code(),
        Ok(r) => {
            let mut r = r.into_inner();
            loop {
                match r.message().await {
                    Ok(Some(_)) => {}
                    Ok(None) => panic!("the cohort query ended OK"),
                    Err(e) => break e.code(),
                }
            }
        }
    };
    assert_eq!(code, Code::DataLoss);
    s.stop().await;
}

/// Two servers on one file: B deletes the simulation A has cached and creates another, which
/// SQLite gives the same rowid. A must serve and extend the new one as B would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_simulation_is_never_served_with_the_old_one_s_engine() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("two.db");
    let a = TestServer::start(&db).await;
    let b = TestServer::start(&db).await;
    let (mut ca, mut cb) = (a.client().await, b.client().await);
    create(&mut ca, "x", 1, 0.01).await;
    generate(&mut ca, "x", 3).await;
    assert!(!pull_all(&mut ca, "x").await.is_empty()); // A caches x's engine
    let rowid = |db: &Path| -> i64 {
        rusqlite::Connection::open(db)
            .unwrap()
            .query_row("SELECT max(sim) FROM simulations", [], |r| r.get(0))
            .unwrap()
    };
    let x_key = rowid(&db);
    cb.delete_simulation(pb::DeleteSimulationRequest {
        simulation_id: "x".into(),
    })
    .await
    .unwrap();
    create(&mut cb, "y", 2, 0.02).await;
    assert_eq!(
        rowid(&db),
        x_key,
        "the test needs SQLite to reuse the rowid"
    );

    // A generates y's days and streams them; B streams them too; both equal a fresh run of y.
    generate(&mut ca, "y", 3).await;
    let from_a = pull_all(&mut ca, "y").await;
    let from_b = pull_all(&mut cb, "y").await;
    let fresh = tempfile::tempdir().unwrap();
    let reference = reference_run(fresh.path(), "y", 2, 0.02, 3).await;
    assert_eq!(digest(&from_a), digest(&reference));
    assert_eq!(digest(&from_b), digest(&reference));
    a.stop().await;
    b.stop().await;
}

/// DeleteSimulation while a StreamEvents of it runs: the stream ends with NOT_FOUND (or
/// delivers everything), never OK after part of the range, even when the id is recreated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulation_deleted_under_a_stream_ends_it_with_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(&dir.path().join("d.db")).await;
    let mut c = s.client().await;
    create(&mut c, "d", 6, 0.02).await;
    generate(&mut c, "d", 20).await;
    let total = pull_all(&mut c, "d").await.len();
    let mut stream = c
        .stream_events(pb::StreamEventsRequest {
            batch_size: 100,
            ..all("d")
        })
        .await
        .unwrap()
        .into_inner();
    let mut n = stream.message().await.unwrap().unwrap().len();
    let mut other = s.client().await;
    other
        .delete_simulation(pb::DeleteSimulationRequest {
            simulation_id: "d".into(),
        })
        .await
        .unwrap();
    create(&mut other, "d", 7, 0.05).await;
    generate(&mut other, "d", 20).await;
    let end = loop {
        match stream.message().await {
            Ok(Some(b)) => n += b.len(),
            Ok(None) => break None,
            Err(e) => break Some(e),
        }
    };
    match end {
        Some(e) => {
            assert!(matches!(e.code(), Code::NotFound | Code::Aborted), "{e:?}");
            assert!(n < total);
        }
        None => assert_eq!(n, total, "the stream ended OK after {n} of {total} events"),
    }
    s.stop().await;
}

/// A simulation deleted by another server while this one generates it: generation stops with
/// NOT_FOUND saying so, not with "already committed by another writer".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulation_deleted_by_another_server_stops_generation_with_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("g.db");
    let a = TestServer::start(&db).await;
    let b = TestServer::start(&db).await;
    let (mut ca, mut cb) = (a.client().await, b.client().await);
    create(&mut ca, "g", 9, 0.01).await;
    // Far more days than the progress stream buffers (32): the generator waits for this reader
    // after 32 days, so the delete lands mid-run.
    let mut progress = ca
        .generate_days(pb::GenerateDaysRequest {
            simulation_id: "g".into(),
            days: 400,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(progress.message().await.unwrap().is_some());
    cb.delete_simulation(pb::DeleteSimulationRequest {
        simulation_id: "g".into(),
    })
    .await
    .unwrap();
    let e = loop {
        match progress.message().await {
            Ok(Some(_)) => {}
            Ok(None) => panic!("generation of a deleted simulation ended OK"),
            Err(e) => break e,
        }
    };
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    assert!(e.message().contains("deleted"), "{e:?}");
    a.stop().await;
    b.stop().await;
}

/// A simulation written by another engine version (its stored records and scenario mean other
/// events) is never read or extended by this one: every read and generation answers
/// FAILED_PRECONDITION naming both versions, and it can still be listed and deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulation_of_another_engine_version_is_refused_not_misread() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("v.db");
    let s = TestServer::start(&db).await;
    let mut c = s.client().await;
    create(&mut c, "old", 4, 0.005).await;
    generate(&mut c, "old", 2).await;
    s.stop().await;
    let older = ampsim_engine::ENGINE_VERSION - 1;
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute(
            "UPDATE simulations SET engine_version = ?1 WHERE simulation_id = 'old'",
            [older],
        )
        .unwrap();

    let s = TestServer::start(&db).await;
    let mut c = s.client().await;
    let check = |e: tonic::Status| {
        assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
        assert!(
            e.message().contains(&format!("engine version {older}"))
                && e.message()
                    .contains(&ampsim_engine::ENGINE_VERSION.to_string()),
            "{}",
            e.message()
        );
    };
    let stream = c
        .stream_events(pb::StreamEventsRequest {
            simulation_id: "old".into(),
            ..Default::default()
        })
        .await;
    check(stream.map(|_| ()).unwrap_err());
    check(
        c.get_report(pb::GetReportRequest {
            simulation_id: "old".into(),
        })
        .await
        .unwrap_err(),
    );
    let generated = c
        .generate_days(pb::GenerateDaysRequest {
            simulation_id: "old".into(),
            days: 1,
        })
        .await;
    match generated {
        Err(e) => check(e),
        Ok(r) => check(r.into_inner().message().await.unwrap_err()),
    }
    let listed = c
        .list_simulations(pb::ListSimulationsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.simulations[0].engine_version, older);
    c.delete_simulation(pb::DeleteSimulationRequest {
        simulation_id: "old".into(),
    })
    .await
    .unwrap();
    s.stop().await;
}
