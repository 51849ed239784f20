//! Crash safety under repeated SIGKILL, and a full disk.

use crate::support::*;
use ampsim::pb;
use std::collections::BTreeSet;
use std::time::Duration;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_sigkills_at_random_moments_lose_and_duplicate_nothing() {
    // Enough days that 20 kills (each after at most a few days' progress) never finish the run.
    const DAYS: u32 = 300;
    let dir = tempfile::tempdir().unwrap();
    let reference = reference_run(dir.path(), "k", 21, 0.01, DAYS).await;
    let db = dir.path().join("k.db");
    let mut rng = 0x2545_f491_4f6c_dd1du64; // fixed xorshift: reproducible kill moments
    let mut kills = 0;
    let mut created = false;
    let mut last_days = 0;
    while kills < 20 {
        let p = ServerProcess::spawn(&db);
        let mut c = connect(p.addr).await;
        if !created {
            create(&mut c, "k", 21, 0.01).await;
            created = true;
        }
        let sim = c
            .get_simulation(pb::GetSimulationRequest {
                simulation_id: "k".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(
            sim.days_generated >= last_days,
            "committed days never go back"
        );
        last_days = sim.days_generated;
        if sim.days_generated == DAYS {
            break;
        }
        let mut stream = c
            .generate_days(pb::GenerateDaysRequest {
                simulation_id: "k".into(),
                days: DAYS - sim.days_generated,
            })
            .await
            .unwrap()
            .into_inner();
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        // Between 0 and 20 ms after the first committed day: often mid-day, sometimes mid-commit.
        let _ = stream.message().await;
        tokio::time::sleep(Duration::from_micros(rng % 20_000)).await;
        p.kill9();
        kills += 1;
    }
    assert_eq!(kills, 20);
    let p = ServerProcess::spawn(&db);
    let mut c = connect(p.addr).await;
    let sim = c
        .get_simulation(pb::GetSimulationRequest {
            simulation_id: "k".into(),
        })
        .await
        .unwrap()
        .into_inner();
    if sim.days_generated < DAYS {
        generate(&mut c, "k", DAYS - sim.days_generated).await;
    }
    let got = pull_all(&mut c, "k").await;
    let days: BTreeSet<i64> = got.iter().map(|e| e.time / 86_400_000).collect();
    assert_eq!(days.len() as u32, DAYS, "every day exactly once");
    assert_eq!(got.len(), reference.len());
    assert_eq!(digest(&got), digest(&reference));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_stops_generation_cleanly_and_it_resumes_when_space_is_back() {
    const DAYS: u32 = 60;
    let dir = tempfile::tempdir().unwrap();
    let reference = reference_run(dir.path(), "d", 8, 0.02, DAYS).await;
    let db = dir.path().join("full.db");
    // A 2 MiB "disk": enough for some days, not for all (the first day, with the warm start's
    // users, takes about 0.95 MB; the 60 days about 5.4 MB).
    {
        let store = ampsim::store::Store::open_with_limit(&db, Some(2 * 1024 * 1024)).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = tokio_util::sync::CancellationToken::new();
        let server = tokio::spawn(ampsim::server::serve(
            store,
            listener,
            Default::default(),
            stop.clone(),
        ));
        let mut c = connect(addr).await;
        create(&mut c, "d", 8, 0.02).await;
        let mut s = c
            .generate_days(pb::GenerateDaysRequest {
                simulation_id: "d".into(),
                days: DAYS,
            })
            .await
            .unwrap()
            .into_inner();
        let mut committed = 0;
        let err = loop {
            match s.message().await {
                Ok(Some(d)) => committed = d.days_generated,
                Ok(None) => panic!("all {DAYS} days fit in 2 MiB; the test needs a smaller limit"),
                Err(e) => break e,
            }
        };
        assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
        assert!(err.message().contains("full"), "{}", err.message());
        assert!(committed > 0);
        // Consistent: the marker says exactly the days that are stored.
        let sim = c
            .get_simulation(pb::GetSimulationRequest {
                simulation_id: "d".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(sim.days_generated, committed);
        let events = pull_all(&mut c, "d").await;
        let days: BTreeSet<i64> = events.iter().map(|e| e.time / 86_400_000).collect();
        assert_eq!(days.len() as u32, committed);
        stop.cancel();
        server.await.unwrap().unwrap();
    }
    // Space is back: resume and get exactly the uninterrupted run.
    let s = TestServer::start(&db).await;
    let mut c = s.client().await;
    let sim = c
        .get_simulation(pb::GetSimulationRequest {
            simulation_id: "d".into(),
        })
        .await
        .unwrap()
        .into_inner();
    generate(&mut c, "d", DAYS - sim.days_generated).await;
    assert_eq!(digest(&pull_all(&mut c, "d").await), digest(&reference));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_every_rpc_but_health_needs_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_with(
        &dir.path().join("a.db"),
        ampsim::server::ServeOptions {
            auth_token: Some("s3cret-token".into()),
            ..Default::default()
        },
    )
    .await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", s.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    // No token, and a wrong token: UNAUTHENTICATED.
    let mut plain = pb::simulation_service_client::SimulationServiceClient::new(channel.clone());
    let e = plain
        .list_simulations(pb::ListSimulationsRequest {})
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    for token in [
        "Bearer wrong",
        "Bearer s3cret-token-but-longer",
        "s3cret-token",
        "Bearer s3cret-toke",
    ] {
        let mut req = tonic::Request::new(pb::ListSimulationsRequest {});
        req.metadata_mut()
            .insert("authorization", token.parse().unwrap());
        assert_eq!(
            plain.list_simulations(req).await.unwrap_err().code(),
            Code::Unauthenticated,
            "{token}"
        );
    }
    // Health answers without a token.
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let h = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "ampsim.v1.SimulationService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        h.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    // The right token works.
    let mut req = tonic::Request::new(pb::ListSimulationsRequest {});
    req.metadata_mut()
        .insert("authorization", "Bearer s3cret-token".parse().unwrap());
    assert!(plain.list_simulations(req).await.is_ok());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_during_generation_see_whole_days_only() {
    const DAYS: u32 = 120;
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(&dir.path().join("r.db")).await;
    let mut c = s.client().await;
    create(&mut c, "r", 4, 0.01).await;
    let mut gen_client = s.client().await;
    let mut progress = gen_client
        .generate_days(pb::GenerateDaysRequest {
            simulation_id: "r".into(),
            days: DAYS,
        })
        .await
        .unwrap()
        .into_inner();
    // The generator runs ahead of this reader by at most the stream's buffer (32 days), so
    // snapshots taken early in the stream overlap it for sure.
    let mut full = std::collections::BTreeMap::<u32, u64>::new();
    let mut snapshots = Vec::new();
    while let Some(d) = progress.message().await.unwrap() {
        full.insert(d.day_index, d.events);
        if d.day_index < 5 || d.day_index % 5 != 0 || snapshots.len() >= 8 {
            continue;
        }
        let sim = c
            .get_simulation(pb::GetSimulationRequest {
                simulation_id: "r".into(),
            })
            .await
            .unwrap()
            .into_inner();
        let last = sim.days_generated;
        let from = chrono::NaiveDate::parse_from_str(&sim.last_generated_date, "%Y-%m-%d").unwrap()
            - chrono::Days::new(2);
        let events = pull(
            &mut c,
            pb::StreamEventsRequest {
                simulation_id: "r".into(),
                from_date: from.format("%Y-%m-%d").to_string(),
                to_date: sim.last_generated_date.clone(),
                ..Default::default()
            },
        )
        .await;
        let mut per_day = std::collections::BTreeMap::<i64, u64>::new();
        for e in &events {
            *per_day.entry(e.time / 86_400_000).or_default() += 1;
        }
        snapshots.push((last, per_day));
    }
    assert_eq!(full.len() as u32, DAYS);
    assert!(
        snapshots.iter().any(|(days, _)| *days < DAYS),
        "a snapshot overlapped the generator"
    );
    for (days, per_day) in snapshots {
        // The last three committed days, each complete.
        assert_eq!(per_day.len(), 3);
        for (i, (_, n)) in per_day.iter().enumerate() {
            let day = days - 3 + i as u32;
            assert_eq!(
                *n, full[&day],
                "day {day} complete in a snapshot of {days} days"
            );
        }
    }
    s.stop().await;
}

/// Every RPC with empty, huge, malformed and hostile inputs: INVALID_ARGUMENT naming the field
/// (or NOT_FOUND / RESOURCE_EXHAUSTED where that is the answer), never a panic or a hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_inputs_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(&dir.path().join("h.db")).await;
    let mut c = s.client().await;
    create(&mut c, "ok", 1, 0.002).await;
    generate(&mut c, "ok", 2).await;
    let mut tried = 0;
    let mut expect = |r: Result<(), tonic::Status>, code: Code, field: &str| {
        tried += 1;
        let e = r.expect_err(field);
        assert_eq!(e.code(), code, "{field}: {e:?}");
        assert!(e.message().contains(field), "{field}: {}", e.message());
    };
    let create_req = |f: &dyn Fn(&mut pb::CreateSimulationRequest)| {
        let mut r = pb::CreateSimulationRequest {
            simulation_id: "x".into(),
            start_date: "2025-01-01".into(),
            ..Default::default()
        };
        f(&mut r);
        r
    };
    let cases: Vec<(pb::CreateSimulationRequest, &str)> = vec![
        (
            create_req(&|r| r.population_scale = -1.0),
            "population_scale",
        ),
        (
            create_req(&|r| r.population_scale = f64::NAN),
            "population_scale",
        ),
        (
            create_req(&|r| r.population_scale = f64::INFINITY),
            "population_scale",
        ),
        (
            create_req(&|r| r.population_scale = 1e300),
            "population_scale",
        ),
        (
            create_req(&|r| r.start_date = "1969-12-31".into()),
            "start_date",
        ),
        (
            create_req(&|r| r.start_date = "10000-01-01".into()),
            "start_date",
        ),
        (
            create_req(&|r| r.start_date = "2025-02-30".into()),
            "start_date",
        ),
        (
            create_req(&|r| r.start_date = "'; DROP TABLE simulations; --".into()),
            "start_date",
        ),
        (
            create_req(&|r| r.simulation_id = "a/../../b".into()),
            "simulation_id",
        ),
        (
            create_req(&|r| r.simulation_id = "x".repeat(65)),
            "simulation_id",
        ),
        (
            create_req(&|r| r.simulation_id = "sim'; DROP TABLE simulations; --".into()),
            "simulation_id",
        ),
        (
            create_req(&|r| r.scenario_toml = "not = [toml".into()),
            "scenario_toml",
        ),
        (
            create_req(&|r| r.scenario_toml = "[forms]\nreach_probability = nan\n".into()),
            "scenario_toml.forms.reach_probability",
        ),
        (
            create_req(&|r| r.scenario_toml = "[bogus]\nx = 1\n".into()),
            "scenario_toml.bogus",
        ),
        (
            create_req(&|r| {
                r.scenario_toml = format!("a = {}1{}", "[".repeat(100_000), "]".repeat(100_000))
            }),
            "scenario_toml",
        ),
        (
            create_req(&|r| r.scenario_toml = format!("# {}\n", "x".repeat(300_000))),
            "scenario_toml",
        ),
        (
            create_req(&|r| r.scenario_toml = "[traffic]\nnew_users_per_day = 1e12\n".into()),
            "scenario_toml.traffic.new_users_per_day",
        ),
    ];
    for (req, field) in cases {
        expect(
            c.create_simulation(req).await.map(|_| ()),
            Code::InvalidArgument,
            field,
        );
    }
    for days in [0u32, 36_501, u32::MAX] {
        expect(
            c.generate_days(pb::GenerateDaysRequest {
                simulation_id: "ok".into(),
                days,
            })
            .await
            .map(|_| ()),
            Code::InvalidArgument,
            "days",
        );
    }
    let stream = |f: &dyn Fn(&mut pb::StreamEventsRequest)| {
        let mut r = pb::StreamEventsRequest {
            simulation_id: "ok".into(),
            ..Default::default()
        };
        f(&mut r);
        r
    };
    for (req, field) in [
        (stream(&|r| r.batch_size = 1_000_000), "batch_size"),
        (stream(&|r| r.user_properties = 7), "user_properties"),
        (
            stream(&|r| r.device_id = "\u{0}\u{ffff}".into()),
            "device_id",
        ),
        (stream(&|r| r.user_id = "x".repeat(10_000)), "user_id"),
        (
            stream(&|r| r.event_types = vec!["page_view".into(); 1000]),
            "event_types",
        ),
        (
            stream(&|r| r.event_types = vec!["purchase".into(), "no_such_event".into()]),
            "no_such_event",
        ),
        (stream(&|r| r.from_date = "2024-12-31".into()), "from_date"),
        (
            stream(&|r| r.simulation_id = String::new()),
            "simulation_id",
        ),
    ] {
        expect(
            c.stream_events(req).await.map(|_| ()),
            Code::InvalidArgument,
            field,
        );
    }
    // A request over the size limit.
    let e = c
        .create_simulation(pb::CreateSimulationRequest {
            scenario_toml: "#".repeat(2 * 1024 * 1024),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("1 MiB"), "{e:?}");
    expect(
        c.query_cohort(pb::QueryCohortRequest {
            simulation_id: "ok".into(),
            max_members: u32::MAX,
            ..Default::default()
        })
        .await
        .map(|_| ()),
        Code::InvalidArgument,
        "max_members",
    );
    expect(
        c.get_report(pb::GetReportRequest {
            simulation_id: "nope".into(),
        })
        .await
        .map(|_| ()),
        Code::NotFound,
        "nope",
    );
    assert!(tried >= 28, "{tried}");
    // Nothing stored was harmed.
    let list = c
        .list_simulations(pb::ListSimulationsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.simulations.len(), 1);
    assert_eq!(list.simulations[0].days_generated, 2);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bounded_load_test_has_no_errors() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(&dir.path().join("l.db")).await;
    let mut c = s.client().await;
    create(&mut c, "load", 2, 0.01).await;
    generate(&mut c, "load", 30).await;
    let r = ampsim::cli::loadtest::load(&ampsim::cli::loadtest::LoadTestArgs {
        simulation: "load".into(),
        clients: 20,
        seconds: 3,
        max_requests: 500,
        // Ten streams that never read run alongside: the load's calls are still all answered.
        stalled: 10,
        client: ampsim::cli::ClientOpts {
            server: format!("http://{}", s.addr),
            auth_token: None,
            tls_ca: None,
        },
    })
    .await
    .unwrap();
    assert!(r.requests >= 100, "{r:?}");
    assert_eq!(r.errors, 0, "{r:?}");
    assert!(r.p99_ms >= r.p50_ms);
    s.stop().await;
}

/// A memory budget: a simulation whose first day cannot fit is refused at creation, and a day
/// that outgrows the budget later is refused before it is generated, naming the limit and the
/// estimate; the days before it stay committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn days_over_the_memory_budget_are_refused_before_they_allocate() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_with(
        &dir.path().join("m.db"),
        ampsim::server::ServeOptions {
            memory_budget: Some(100 << 20),
            ..Default::default()
        },
    )
    .await;
    let mut c = s.client().await;
    // Scale 1000 of the default year: about 45M users on day 0.
    let e = c
        .create_simulation(pb::CreateSimulationRequest {
            simulation_id: "huge".into(),
            population_scale: 1000.0,
            start_date: "2025-03-03".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    for part in ["population_scale", "memory budget", "100 MiB", "MiB for"] {
        assert!(e.message().contains(part), "{part}: {e:?}");
    }
    // A two-line scenario with five million visitors a day.
    let e = c
        .create_simulation(pb::CreateSimulationRequest {
            simulation_id: "flood".into(),
            population_scale: 1.0,
            start_date: "2025-03-03".into(),
            scenario_toml: "[traffic]\nnew_users_per_day = 5000000\n".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("memory budget"), "{e:?}");
    // A site launch (no warm start): day 0 fits (about 7,000 candidate new users); returning
    // users make later days outgrow 100 MiB.
    c.create_simulation(pb::CreateSimulationRequest {
        simulation_id: "grows".into(),
        seed: 3,
        population_scale: 0.1,
        start_date: "2025-03-03".into(),
        scenario_toml: "[traffic]\nwarm_start_days = 0\n".into(),
    })
    .await
    .unwrap();
    let mut st = c
        .generate_days(pb::GenerateDaysRequest {
            simulation_id: "grows".into(),
            days: 60,
        })
        .await
        .unwrap()
        .into_inner();
    let mut done = 0;
    let e = loop {
        match st.message().await {
            Ok(Some(_)) => done += 1,
            Ok(None) => panic!("all 60 days fit in 100 MiB"),
            Err(e) => break e,
        }
    };
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("memory budget"), "{e:?}");
    assert!(done >= 3, "{done} days");
    let sim = c
        .get_simulation(pb::GetSimulationRequest {
            simulation_id: "grows".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(sim.days_generated, done);
    s.stop().await;
}

/// Clients that open streams and never read: each holds a slot and at most its byte budget;
/// one stream too many is refused at once; cheap calls are still answered; health says
/// NOT_SERVING while the slots are all taken; and a stalled stream ends with ABORTED after the
/// send timeout, which frees its slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_readers_hold_bounded_resources_and_are_ended() {
    use tonic_health::pb::health_check_response::ServingStatus;
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_with(
        &dir.path().join("st.db"),
        ampsim::server::ServeOptions {
            stream_limits: ampsim::rpc::StreamLimits {
                max_streams: 4,
                buffer_bytes: 1 << 20,
                send_timeout: Duration::from_secs(2),
            },
            ..Default::default()
        },
    )
    .await;
    let mut c = s.client().await;
    create(&mut c, "st", 5, 0.05).await;
    generate(&mut c, "st", 8).await;
    let total = pull_all(&mut c, "st").await.len();
    let health = || async {
        let channel = tonic::transport::Channel::from_shared(format!("http://{}", s.addr))
            .unwrap()
            .connect()
            .await
            .unwrap();
        tonic_health::pb::health_client::HealthClient::new(channel)
            .check(tonic_health::pb::HealthCheckRequest {
                service: "ampsim.v1.SimulationService".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status
    };
    assert_eq!(health().await, ServingStatus::Serving as i32);

    // Four streams of 10,000-event batches, none read.
    let mut stalled = Vec::new();
    for _ in 0..4 {
        let mut c = s.client().await;
        let st = c
            .stream_events(pb::StreamEventsRequest {
                simulation_id: "st".into(),
                batch_size: 10_000,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        stalled.push((c, st));
    }
    // The fifth is refused at once, naming the limit.
    let e = c
        .stream_events(pb::StreamEventsRequest {
            simulation_id: "st".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("stream slots"), "{e:?}");
    // Cheap calls are answered meanwhile, and health reports the saturation.
    let sim = tokio::time::timeout(
        Duration::from_secs(1),
        c.get_simulation(pb::GetSimulationRequest {
            simulation_id: "st".into(),
        }),
    )
    .await
    .expect("GetSimulation answered while the streams are stalled")
    .unwrap();
    assert_eq!(sim.into_inner().days_generated, 8);
    tokio::time::timeout(
        Duration::from_secs(1),
        c.list_simulations(pb::ListSimulationsRequest {}),
    )
    .await
    .expect("ListSimulations answered")
    .unwrap();
    assert_eq!(health().await, ServingStatus::NotServing as i32);

    // After the send timeout the stalled streams end with ABORTED after what they held.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for (_c, mut st) in stalled {
        let mut n = 0;
        let end = loop {
            match st.message().await {
                Ok(Some(b)) => n += b.len(),
                Ok(None) => break None,
                Err(e) => break Some(e),
            }
        };
        let e = end.expect("a stalled stream ended OK");
        assert_eq!(e.code(), Code::Aborted, "{e:?}");
        assert!(e.message().contains("read nothing"), "{e:?}");
        assert!(n < total, "{n} of {total}");
    }
    // The slots are free again.
    assert_eq!(health().await, ServingStatus::Serving as i32);
    assert_eq!(pull_all(&mut c, "st").await.len(), total);
    s.stop().await;
}
