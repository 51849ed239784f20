//! `ampsim upload` against the local Amplitude ingestion double: every event arrives exactly
//! once through throttling, oversize answers and injected 5xx; invalid events are dropped and
//! reported; an interrupted upload resumes from its checkpoint; and the double itself keeps
//! the documented contract.

use crate::support::*;
use ampsim::cli::ClientOpts;
use ampsim::pb;
use ampsim::upload::double::{AmplitudeDouble, DoubleConfig};
use ampsim::upload::{upload, Api, Checkpoint, UploadOptions};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

/// A server with one generated simulation, the CLI's client to it, and all its events.
async fn simulation(
    dir: &Path,
    id: &str,
    days: u32,
) -> (TestServer, ampsim::cli::client::Client, Vec<pb::Event>) {
    let s = TestServer::start(&dir.join("u.db")).await;
    let mut c = s.client().await;
    create(&mut c, id, 17, 0.004).await;
    generate(&mut c, id, days).await;
    let events = pull_all(&mut c, id).await;
    let client = ampsim::cli::client::connect(&ClientOpts {
        server: format!("http://{}", s.addr),
        auth_token: None,
        tls_ca: None,
    })
    .await
    .unwrap();
    (s, client, events)
}

fn options(dir: &Path, sim: &str, base_url: String) -> UploadOptions {
    UploadOptions {
        simulation: sim.into(),
        from: None,
        to: None,
        api_key: "0123456789abcdef0123456789abcdef".into(),
        base_url,
        api: Api::HttpV2,
        concurrency: 4,
        batch_events: 2000,
        throttle_pause: Duration::from_millis(200),
        max_attempts: 8,
        backoff: Duration::from_millis(10),
        checkpoint: dir.join("upload.json"),
        restart: false,
        rejected: dir.join("rejected.jsonl"),
        progress: false,
    }
}

fn insert_ids(events: &[pb::Event]) -> HashSet<String> {
    events.iter().map(|e| e.insert_id.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_arrives_exactly_once_through_throttling_413_and_5xx() {
    let dir = tempfile::tempdir().unwrap();
    let (s, client, events) = simulation(dir.path(), "up", 6).await;
    assert!(events.len() > 5_000, "{}", events.len());
    let double = AmplitudeDouble::start(
        "127.0.0.1:0".parse().unwrap(),
        DoubleConfig {
            // 20 events/s over 100 ms: an id with more than 2 events in one request, or in
            // 100 ms, is throttled (a session has more), and 429s name it.
            eps_http: 20,
            eps_window: Duration::from_millis(100),
            // Far below the uploader's 1 MB: the first full batches get 413 and are split.
            max_bytes_http: 150_000,
            // Every 5th request fails with 500 after ingesting: the retry must be deduped.
            fail_every: 5,
            fail_status: 500,
            fail_after_ingest: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let opts = options(dir.path(), "up", double.base_url());
    let r = upload(&client, &opts).await.expect("upload");

    let ingested = double.ingested();
    let want = insert_ids(&events);
    assert_eq!(want.len(), events.len(), "insert_ids are unique");
    let got: HashSet<String> = ingested.keys().cloned().collect();
    assert_eq!(got.len(), want.len(), "missing or extra events");
    assert_eq!(got, want);
    assert!(
        ingested.values().all(|&n| n == 1),
        "an event was ingested twice"
    );

    let st = double.stats();
    assert_eq!(st.events_ingested, events.len() as u64);
    assert!(
        st.duplicates_ignored > 0,
        "no retry after an ingesting 500: {st:?}"
    );
    assert!(st.responses.get(&429).copied().unwrap_or(0) > 0, "{st:?}");
    assert!(st.responses.get(&413).copied().unwrap_or(0) > 0, "{st:?}");
    assert!(st.responses.get(&500).copied().unwrap_or(0) > 0, "{st:?}");
    assert_eq!(r.events_read, events.len() as u64);
    assert_eq!(r.acknowledged, events.len() as u64);
    assert_eq!(r.dropped, 0);
    assert!(
        r.throttled > 0 && r.too_large > 0 && r.server_errors > 0,
        "{r:?}"
    );
    assert!(
        r.batch_events < 2000,
        "413 did not shrink the batches: {r:?}"
    );

    let ck: Checkpoint =
        serde_json::from_slice(&std::fs::read(dir.path().join("upload.json")).unwrap()).unwrap();
    assert!(ck.complete);
    assert_eq!(ck.acknowledged, events.len() as u64);

    // Run again: the checkpoint says done, nothing is sent.
    let again = upload(&client, &opts).await.unwrap();
    assert!(again.already_complete);
    assert_eq!(double.stats().requests, st.requests);
    double.stop().await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_the_server_calls_invalid_are_dropped_and_reported_the_rest_arrive() {
    let dir = tempfile::tempdir().unwrap();
    let (s, client, events) = simulation(dir.path(), "bad", 3).await;
    // Amplitude silences spammy devices: a request holding their events gets a 400 naming the
    // events by index. Silence every fourth device.
    let mut devices: Vec<&str> = events.iter().map(|e| e.device_id.as_str()).collect();
    devices.sort_unstable();
    devices.dedup();
    let silenced: HashSet<String> = devices.iter().step_by(4).map(|d| d.to_string()).collect();
    let double = AmplitudeDouble::start(
        "127.0.0.1:0".parse().unwrap(),
        DoubleConfig {
            silenced_devices: silenced.clone(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let r = upload(&client, &options(dir.path(), "bad", double.base_url()))
        .await
        .expect("upload");
    let (drop, keep): (Vec<_>, Vec<_>) =
        events.iter().partition(|e| silenced.contains(&e.device_id));
    assert!(!keep.is_empty() && !drop.is_empty());

    let got: HashSet<String> = double.ingested().keys().cloned().collect();
    let want_kept: HashSet<String> = keep.iter().map(|e| e.insert_id.clone()).collect();
    assert_eq!(got, want_kept);

    let rejected: Vec<Value> = std::fs::read_to_string(dir.path().join("rejected.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let dropped: HashSet<String> = rejected
        .iter()
        .map(|v| v["insert_id"].as_str().unwrap().to_owned())
        .collect();
    let want_dropped: HashSet<String> = drop.iter().map(|e| e.insert_id.clone()).collect();
    assert_eq!(dropped, want_dropped);
    assert_eq!(rejected.len(), drop.len(), "an event reported twice");
    assert!(rejected.iter().all(|v| v["reason"] == "silenced device"));
    assert_eq!(r.dropped, drop.len() as u64);
    assert_eq!(r.acknowledged, keep.len() as u64);
    double.stop().await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_upload_resumes_from_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let (s, client, events) = simulation(dir.path(), "res", 8).await;
    // A slow server (20 ms a request, one request at a time, 50 events each): the upload takes
    // seconds, so it is still running when its checkpoint first moves, on any machine.
    let double = AmplitudeDouble::start(
        "127.0.0.1:0".parse().unwrap(),
        DoubleConfig {
            response_delay: Duration::from_millis(20),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let mut opts = options(dir.path(), "res", double.base_url());
    opts.api = Api::Batch;
    opts.concurrency = 1;
    opts.batch_events = 50;
    let ck_path = opts.checkpoint.clone();

    // Stop the upload (drop it mid-flight, as a kill would) once its checkpoint has moved.
    let first = upload(&client, &opts);
    let moved = async {
        loop {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if let Ok(b) = std::fs::read(&ck_path) {
                if let Ok(ck) = serde_json::from_slice::<Checkpoint>(&b) {
                    if ck.acknowledged > 0 && (ck.next_index > 0 || ck.next_date > ck.from) {
                        return ck;
                    }
                }
            }
        }
    };
    let ck = tokio::select! {
        r = first => panic!("upload finished before the interruption: {r:?}"),
        ck = moved => ck,
    };
    assert!(!ck.complete);
    let before = double.stats().events_ingested;
    assert!(before > 0 && before < events.len() as u64, "{before}");

    // The same command again resumes where the checkpoint says, and completes.
    let r = upload(&client, &opts).await.expect("resumed upload");
    let (day, index) = r.resumed_at.clone().expect("resumed");
    assert!(day > ck.from.to_string() || index > 0, "{day} {index}");
    assert!(
        r.events_read < events.len() as u64,
        "re-read everything: {r:?}"
    );
    let ingested = double.ingested();
    let got: HashSet<String> = ingested.keys().cloned().collect();
    assert_eq!(got, insert_ids(&events));
    assert!(ingested.values().all(|&n| n == 1));

    // Another range with the same checkpoint file is refused, naming the flag.
    let mut other = opts.clone();
    other.to = Some(chrono::NaiveDate::from_ymd_opt(2025, 3, 5).unwrap());
    let e = upload(&client, &other).await.unwrap_err();
    assert!(format!("{e:#}").contains("--checkpoint"), "{e:#}");
    double.stop().await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fatal_answers_and_bad_options_stop_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let (s, client, _) = simulation(dir.path(), "err", 1).await;
    let double = AmplitudeDouble::start(
        "127.0.0.1:0".parse().unwrap(),
        DoubleConfig {
            api_key: Some("the-right-key".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let opts = options(dir.path(), "err", double.base_url());
    let e = upload(&client, &opts).await.unwrap_err();
    assert!(format!("{e:#}").contains("Invalid API key"), "{e:#}");
    assert_eq!(
        double.stats().requests,
        1,
        "a 400 without event indexes is not retried"
    );

    let mut bad = opts.clone();
    bad.base_url = "ftp://example.com".into();
    let e = upload(&client, &bad).await.unwrap_err();
    assert!(format!("{e:#}").contains("--endpoint"), "{e:#}");

    let mut bad = opts.clone();
    bad.batch_events = 2001;
    let e = upload(&client, &bad).await.unwrap_err();
    assert!(format!("{e:#}").contains("--batch-events"), "{e:#}");

    let mut bad = opts.clone();
    bad.simulation = "nope".into();
    let e = upload(&client, &bad).await.unwrap_err();
    assert!(format!("{e:#}").contains("--simulation nope"), "{e:#}");

    // Always failing with 503: gives up after max_attempts, saying so.
    let down = AmplitudeDouble::start(
        "127.0.0.1:0".parse().unwrap(),
        DoubleConfig {
            fail_every: 1,
            fail_status: 503,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let mut o = options(dir.path(), "err", down.base_url());
    o.checkpoint = dir.path().join("down.json");
    o.max_attempts = 3;
    let e = upload(&client, &o).await.unwrap_err();
    assert!(
        format!("{e:#}").contains("giving up after 3 attempts"),
        "{e:#}"
    );
    assert_eq!(down.stats().events_ingested, 0);
    down.stop().await;
    double.stop().await;
    s.stop().await;
}

/// POSTs `body` (gzipped when `gzip`) to the double; returns the status and JSON answer.
async fn post(url: &str, body: &Value, gzip: bool, content_type: &str) -> (u16, Value) {
    use std::io::Write;
    let raw = serde_json::to_vec(body).unwrap();
    let http = ampsim::upload::http_client().unwrap();
    let mut req = http.post(url).header("Content-Type", content_type);
    let payload = if gzip {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&raw).unwrap();
        req = req.header("Content-Encoding", "gzip");
        gz.finish().unwrap()
    } else {
        raw
    };
    let resp = req.body(payload).send().await.unwrap();
    let status = resp.status().as_u16();
    (
        status,
        serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_double_keeps_amplitudes_contract() {
    let d = AmplitudeDouble::start("127.0.0.1:0".parse().unwrap(), DoubleConfig::default())
        .await
        .unwrap();
    let url = format!("{}/2/httpapi", d.base_url());
    let ev = |i: u32| json!({"event_type": "Page Viewed", "device_id": "device-0001", "time": 1_700_000_000_000u64 + u64::from(i), "insert_id": format!("iid-{i}")});

    let (st, b) = post(&url, &json!({"events": [ev(1)]}), true, "application/json").await;
    assert_eq!((st, b["missing_field"].as_str()), (400, Some("api_key")));
    let (st, b) = post(&url, &json!({"api_key": "k"}), false, "application/json").await;
    assert_eq!((st, b["missing_field"].as_str()), (400, Some("events")));
    let (st, _) = post(
        &url,
        &json!({"api_key": "k", "events": [ev(1)]}),
        false,
        "text/plain",
    )
    .await;
    assert_eq!(st, 400);

    let many: Vec<Value> = (0..2001).map(ev).collect();
    let (st, _) = post(
        &url,
        &json!({"api_key": "k", "events": many}),
        true,
        "application/json",
    )
    .await;
    assert_eq!(st, 413, "2,001 events");

    // Bad events are named by index; nothing of the request is ingested.
    let bad = json!({"api_key": "k", "events": [
        ev(1),
        {"event_type": "x", "time": 1},
        {"event_type": "x", "device_id": "dev", "time": 1},
        {"device_id": "device-0002", "time": 1},
        {"event_type": "x", "device_id": "device-0003", "time": "2025-01-01T00:00:00Z"},
        {"event_type": "x", "device_id": "null", "time": 1},
    ]});
    let (st, b) = post(&url, &bad, true, "application/json").await;
    assert_eq!(st, 400, "{b}");
    assert_eq!(
        b["events_with_missing_fields"]["user_id"],
        json!([1]),
        "{b}"
    );
    assert_eq!(
        b["events_with_invalid_id_lengths"]["device_id"],
        json!([2]),
        "{b}"
    );
    assert_eq!(
        b["events_with_missing_fields"]["event_type"],
        json!([3]),
        "{b}"
    );
    assert_eq!(b["events_with_invalid_fields"]["time"], json!([4]), "{b}");
    assert_eq!(
        b["events_with_invalid_fields"]["device_id"],
        json!([5]),
        "{b}"
    );
    assert_eq!(d.stats().events_ingested, 0);

    // A short id next to a valid one is just removed; a repeated insert_id is ignored.
    let ok = json!({"api_key": "k", "events": [ev(1), {"event_type": "x", "device_id": "d", "user_id": "user-12345", "insert_id": "iid-u"}]});
    let (st, b) = post(&url, &ok, true, "application/json").await;
    assert_eq!((st, b["events_ingested"].as_u64()), (200, Some(2)), "{b}");
    let (st, _) = post(
        &url,
        &json!({"api_key": "k", "events": [ev(1)]}),
        false,
        "application/json",
    )
    .await;
    assert_eq!(st, 200);
    let stats = d.stats();
    assert_eq!((stats.events_ingested, stats.duplicates_ignored), (2, 1));

    // 30 events/s over 30 s per device: the 901st event of one device in the window is throttled.
    let burst: Vec<Value> = (100..1000).map(ev).collect();
    let (st, _) = post(
        &url,
        &json!({"api_key": "k", "events": burst[..898].to_vec()}),
        true,
        "application/json",
    )
    .await;
    assert_eq!(st, 200);
    let (st, b) = post(
        &url,
        &json!({"api_key": "k", "events": burst[898..900].to_vec()}),
        true,
        "application/json",
    )
    .await;
    assert_eq!(st, 429, "{b}");
    assert!(
        b["throttled_devices"]["device-0001"].as_u64().is_some(),
        "{b}"
    );
    assert_eq!(b["throttled_events"], json!([0, 1]), "{b}");
    assert_eq!(b["eps_threshold"], json!(30));

    // /batch takes 1,000 events/s per id.
    let (st, _) = post(
        &format!("{}/batch", d.base_url()),
        &json!({"api_key": "k", "events": burst[898..900].to_vec()}),
        true,
        "application/json",
    )
    .await;
    assert_eq!(st, 200);
    let ids: HashMap<String, u32> = d.ingested();
    assert!(ids.values().all(|&n| n == 1));
    // GET /ingested serves the same record to clients outside the process (the Node SDK test).
    let served = ampsim::upload::http_client()
        .unwrap()
        .get(format!("{}/ingested", d.base_url()))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let served: HashMap<String, u32> = serde_json::from_slice(&served).unwrap();
    assert!(!served.is_empty());
    assert_eq!(served, ids);
    d.stop().await;
}
