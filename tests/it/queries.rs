//! Journeys, cohorts and the report over gRPC, checked against independent computations on
//! the streamed events.

use crate::support::*;
use ampsim::pb;
use std::collections::{BTreeMap, BTreeSet};
use tokio::sync::OnceCell;
use tonic::Code;

const DAY_MS: i64 = 86_400_000;

/// One shared server with a 120-day simulation at scale 0.01, and all its events.
struct Fixture {
    server: TestServer,
    events: Vec<pb::Event>,
    _dir: tempfile::TempDir,
}

static FIXTURE: OnceCell<Fixture> = OnceCell::const_new();

async fn fixture() -> &'static Fixture {
    FIXTURE
        .get_or_init(|| async {
            let dir = tempfile::tempdir().unwrap();
            let db = dir.path().join("q.db");
            let server = TestServer::start_detached(db);
            let mut c = server.client().await;
            create(&mut c, "q", 17, 0.01).await;
            generate(&mut c, "q", 120).await;
            let events = pull_all(&mut c, "q").await;
            Fixture {
                server,
                events,
                _dir: dir,
            }
        })
        .await
}

async fn journey(
    c: &mut Client,
    user: &str,
    device: &str,
) -> Result<(Vec<pb::Event>, pb::JourneySummary), tonic::Status> {
    let mut s = c
        .get_user_journey(pb::GetUserJourneyRequest {
            simulation_id: "q".into(),
            user_id: user.into(),
            device_id: device.into(),
            company: String::new(),
        })
        .await?
        .into_inner();
    let mut events = Vec::new();
    let mut summary = None;
    while let Some(item) = s.message().await? {
        match item.item.unwrap() {
            pb::journey_item::Item::Events(b) => events.extend(b.to_events().expect("decodes")),
            pb::journey_item::Item::Summary(x) => summary = Some(x),
        }
    }
    Ok((events, summary.expect("a summary ends the journey")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journeys_match_the_event_stream_event_for_event() {
    let f = fixture().await;
    let mut c = f.server.client().await;
    // A paying user, an expired trial, an identified non-trial user, and an anonymous one.
    let pick = |ty: &str| {
        f.events
            .iter()
            .find(|e| e.event_type == ty)
            .map(|e| e.device_id.clone())
            .unwrap()
    };
    // An anonymous person (a second device that has not logged in is not one: its person is
    // identified).
    let anonymous = f
        .events
        .iter()
        .find(|e| {
            e.user_id.is_empty()
                && person(&e.device_id) == e.device_id
                && !f
                    .events
                    .iter()
                    .any(|x| x.device_id == e.device_id && !x.user_id.is_empty())
        })
        .map(|e| e.device_id.clone())
        .unwrap();
    // A person with a second device, asked for by the second device's id.
    let second = f
        .events
        .iter()
        .find(|e| person(&e.device_id) != e.device_id)
        .map(|e| e.device_id.clone())
        .expect("a second device in the fixture");
    for (device, outcome) in [
        (pick("purchase"), "converted"),
        (pick("trial_expired"), "expired"),
        (pick("demo_requested"), ""),
        (anonymous, "none"),
        (second, ""),
    ] {
        // The journey is the person's: both devices' events.
        let who = person(&device);
        let want: Vec<_> = f
            .events
            .iter()
            .filter(|e| person(&e.device_id) == who)
            .cloned()
            .collect();
        let (got, summary) = journey(&mut c, "", &device).await.unwrap();
        assert_eq!(digest(&got), digest(&want), "device {device}");
        assert!(got.windows(2).all(|w| w[0].time <= w[1].time));
        assert_eq!(summary.event_count as usize, want.len());
        let sessions: BTreeSet<i64> = want
            .iter()
            .map(|e| e.session_id)
            .filter(|&s| s != -1)
            .collect();
        assert_eq!(summary.session_count as usize, sessions.len());
        if !outcome.is_empty() {
            assert_eq!(summary.trial_outcome, outcome);
        }
        if outcome == "converted" {
            let p = want.iter().find(|e| e.event_type == "purchase").unwrap();
            assert_eq!(summary.product_sku, p.product_id);
            // The purchase's and the renewals' revenue.
            let total: f64 = want.iter().filter_map(|e| e.revenue).sum();
            assert!(
                (summary.revenue - total).abs() < 1e-6,
                "{} vs {total}",
                summary.revenue
            );
            assert_eq!(summary.stages.last().unwrap(), "paid");
        }
        // The same journey by user id, for identified users.
        if let Some(uid) = want
            .iter()
            .find(|e| !e.user_id.is_empty())
            .map(|e| e.user_id.clone())
        {
            let (by_user, s2) = journey(&mut c, &uid, "").await.unwrap();
            assert_eq!(digest(&by_user), digest(&want));
            assert_eq!(s2, summary);
            assert!(summary.is_identified);
        } else {
            assert!(!summary.is_identified);
            assert_eq!(summary.stages, vec!["anonymous".to_string()]);
        }
    }
}

/// A user who arrived in the warm start and was identified there: the journey holds only the
/// emitted events (all with the user id), the summary still starts anonymous and says when the
/// user was first seen, before the start date.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_start_users_journey_starts_anonymous() {
    let f = fixture().await;
    let mut c = f.server.client().await;
    let device = f
        .events
        .iter()
        .find(|e| {
            !first_seen_in_range(&e.device_id)
                && f.events
                    .iter()
                    .filter(|x| person(&x.device_id) == person(&e.device_id))
                    .all(|x| !x.user_id.is_empty())
        })
        .map(|e| e.device_id.clone())
        .expect("a user identified in the warm start");
    let (got, summary) = journey(&mut c, "", &device).await.unwrap();
    assert!(got.iter().all(|e| !e.user_id.is_empty()));
    assert!(summary.is_identified);
    assert_eq!(summary.stages[..2], ["anonymous", "identified"]);
    assert!(
        summary.first_seen_date.as_str() < "2025-03-03",
        "{}",
        summary.first_seen_date
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journey_errors() {
    let f = fixture().await;
    let mut c = f.server.client().await;
    let e = journey(&mut c, "nobody@example.com", "").await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = journey(&mut c, "", "00000000-0000-0000-0000-000000000000")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = journey(&mut c, "", "").await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
}

/// What the test derives per device from the events alone.
#[derive(Default, Debug)]
struct Derived {
    first_day: i64,
    source: String,
    medium: String,
    sessions: BTreeSet<i64>,
    identified: bool,
    form_type: String,
    trial_path: String,
    outcome: String,
}

/// The engine of the fixture's simulation.
fn engine() -> &'static ampsim_engine::Engine {
    static ENGINE: std::sync::OnceLock<ampsim_engine::Engine> = std::sync::OnceLock::new();
    ENGINE.get_or_init(|| crate::support::engine_of(17, 0.01))
}

/// The person of a device id (its first device's id): journeys and cohorts are per person,
/// a second device's events included.
fn person(device_id: &str) -> String {
    crate::support::person_device_id(engine(), device_id)
}

/// Whether a device's person was first seen in the emitted days of the fixture's simulation
/// (cohorts leave out the warm start's users, first seen before the start date).
fn first_seen_in_range(device_id: &str) -> bool {
    let device = engine().ids().parse_device_id(device_id).unwrap();
    let person = ampsim_engine::ids::person_of(device);
    ampsim_engine::ids::first_day_of(person) >= engine().first_day()
}

fn derive(events: &[pb::Event]) -> BTreeMap<String, Derived> {
    let mut m: BTreeMap<String, Derived> = BTreeMap::new();
    for e in events.iter().filter(|e| first_seen_in_range(&e.device_id)) {
        let d = m.entry(person(&e.device_id)).or_insert_with(|| Derived {
            first_day: e.time / DAY_MS,
            outcome: "none".into(),
            ..Default::default()
        });
        if e.session_id != -1 {
            if d.sessions.is_empty() {
                d.source = crate::support::prop_text(&e.event_properties["utm_source"]);
                d.medium = crate::support::prop_text(&e.event_properties["utm_medium"]);
            }
            d.sessions.insert(e.session_id);
        }
        if !e.user_id.is_empty() && !d.identified {
            d.identified = true;
            d.form_type = crate::support::prop_text(&e.event_properties["form_type"]);
        }
        match e.event_type.as_str() {
            "trial_started" => {
                d.trial_path = crate::support::prop_text(&e.event_properties["trial_path"]);
                d.outcome = "active".into();
            }
            "trial_converted" => d.outcome = "converted".into(),
            "trial_expired" => d.outcome = "expired".into(),
            _ => {}
        }
    }
    m
}

async fn cohort(
    c: &mut Client,
    mut req: pb::QueryCohortRequest,
) -> Result<(Vec<pb::CohortMember>, pb::CohortSummary), tonic::Status> {
    req.simulation_id = "q".into();
    let mut s = c.query_cohort(req).await?.into_inner();
    let mut members = Vec::new();
    let mut summary = None;
    while let Some(item) = s.message().await? {
        match item.item.unwrap() {
            pb::cohort_item::Item::Members(m) => members.extend(m.members),
            pb::cohort_item::Item::Summary(x) => summary = Some(x),
        }
    }
    Ok((members, summary.unwrap()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cohort_counts_match_a_direct_pass_over_the_events() {
    let f = fixture().await;
    let mut c = f.server.client().await;
    let derived = derive(&f.events);
    let start = chrono::NaiveDate::from_ymd_opt(2025, 3, 3)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp_millis()
        / DAY_MS;

    // Everyone.
    let (_, all) = cohort(&mut c, pb::QueryCohortRequest::default())
        .await
        .unwrap();
    assert_eq!(all.users as usize, derived.len());
    assert_eq!(
        all.sessions as usize,
        derived.values().map(|d| d.sessions.len()).sum::<usize>()
    );
    assert_eq!(
        all.identified as usize,
        derived.values().filter(|d| d.identified).count()
    );
    assert_eq!(
        all.paid as usize,
        derived
            .values()
            .filter(|d| d.outcome == "converted")
            .count()
    );
    assert_eq!(
        all.funnel
            .iter()
            .map(|s| s.step.as_str())
            .collect::<Vec<_>>(),
        ["visited", "identified", "trial", "paid"]
    );

    // Filtered cohorts, with members.
    type Pred = Box<dyn Fn(&Derived) -> bool>;
    let cases: Vec<(pb::QueryCohortRequest, Pred)> = vec![
        (
            pb::QueryCohortRequest {
                source: "google".into(),
                medium: "cpc".into(),
                ..Default::default()
            },
            Box::new(|d: &Derived| d.source == "google" && d.medium == "cpc"),
        ),
        (
            pb::QueryCohortRequest {
                trial_path: "sales_assisted".into(),
                trial_outcome: "converted".into(),
                ..Default::default()
            },
            Box::new(|d: &Derived| d.trial_path == "sales_assisted" && d.outcome == "converted"),
        ),
        (
            pb::QueryCohortRequest {
                identified: Some(true),
                form_type: "demo_request".into(),
                ..Default::default()
            },
            Box::new(|d: &Derived| d.identified && d.form_type == "demo_request"),
        ),
        (
            pb::QueryCohortRequest {
                first_seen_from: "2025-03-10".into(),
                first_seen_to: "2025-03-23".into(),
                min_sessions: Some(2),
                max_sessions: Some(3),
                ..Default::default()
            },
            Box::new(move |d: &Derived| {
                (start + 7..=start + 20).contains(&d.first_day)
                    && (2..=3).contains(&d.sessions.len())
            }),
        ),
    ];
    for (mut req, pred) in cases {
        req.max_members = 1_000_000;
        let (members, summary) = cohort(&mut c, req.clone()).await.unwrap();
        let want: BTreeSet<&String> = derived
            .iter()
            .filter(|(_, d)| pred(d))
            .map(|(k, _)| k)
            .collect();
        assert!(!want.is_empty(), "{req:?}");
        assert_eq!(summary.users as usize, want.len(), "{req:?}");
        let got: BTreeSet<&String> = members.iter().map(|m| &m.device_id).collect();
        assert_eq!(got, want, "{req:?}");
        for m in &members {
            assert_eq!(
                m.session_count as usize,
                derived[&m.device_id].sessions.len()
            );
        }
    }

    // Retention: week-0 share is 1, and week-1 share matches a direct count.
    let (_, s) = cohort(
        &mut c,
        pb::QueryCohortRequest {
            first_seen_to: "2025-03-09".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let row = &s.retention[0];
    assert_eq!(row.week_start, "2025-03-03");
    assert_eq!(row.active_share[0], 1.0);
    let week0: Vec<&Derived> = derived
        .values()
        .filter(|d| d.first_day < start + 7)
        .collect();
    let active1 = week0
        .iter()
        .filter(|d| {
            d.sessions
                .iter()
                .any(|s| (start + 7..start + 14).contains(&(s / DAY_MS)))
        })
        .count();
    assert_eq!(row.users as usize, week0.len());
    assert!((row.active_share[1] - active1 as f64 / week0.len() as f64).abs() < 1e-12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cohort_filters_are_checked() {
    let f = fixture().await;
    let mut c = f.server.client().await;
    for (req, field) in [
        (
            pb::QueryCohortRequest {
                identified: Some(false),
                trial_path: "self_service".into(),
                ..Default::default()
            },
            "identified",
        ),
        (
            pb::QueryCohortRequest {
                min_sessions: Some(5),
                max_sessions: Some(2),
                ..Default::default()
            },
            "min_sessions",
        ),
        (
            pb::QueryCohortRequest {
                first_seen_from: "2025-05-01".into(),
                first_seen_to: "2025-04-01".into(),
                ..Default::default()
            },
            "first_seen_from",
        ),
        (
            pb::QueryCohortRequest {
                trial_outcome: "maybe".into(),
                ..Default::default()
            },
            "trial_outcome",
        ),
        (
            pb::QueryCohortRequest {
                source: "altavista".into(),
                ..Default::default()
            },
            "source",
        ),
        (
            pb::QueryCohortRequest {
                product_sku: "AMP-GROWTH-M".into(),
                trial_outcome: "expired".into(),
                ..Default::default()
            },
            "trial_outcome",
        ),
    ] {
        let e = cohort(&mut c, req).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(e.message().starts_with(field), "{field}: {}", e.message());
    }
    let e = c
        .query_cohort(pb::QueryCohortRequest {
            simulation_id: "missing".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cohorts_filter_by_company_and_size_band() {
    let f = fixture().await;
    let mut c = f.server.client().await;
    // From the events: each identified user's company group, and each company's band (from
    // its `$groupidentify`), for users first seen in the emitted days.
    let mut company_of: BTreeMap<String, String> = BTreeMap::new();
    let mut band_of: BTreeMap<String, String> = BTreeMap::new();
    for e in f
        .events
        .iter()
        .filter(|e| first_seen_in_range(&e.device_id))
    {
        if let Some(g) = e.groups.get("company") {
            company_of.insert(person(&e.device_id), crate::support::prop_text(g));
        }
        if e.event_type == "$groupidentify" {
            band_of.insert(
                crate::support::prop_text(&e.groups["company"]),
                crate::support::prop_text(&e.group_properties["size_band"]),
            );
        }
    }
    let mut people: BTreeMap<&str, usize> = BTreeMap::new();
    for co in company_of.values() {
        *people.entry(co.as_str()).or_default() += 1;
    }
    let (&busiest, &n) = people.iter().max_by_key(|(_, n)| **n).unwrap();
    assert!(n >= 3, "the busiest company has {n} identified people");
    let (members, summary) = cohort(
        &mut c,
        pb::QueryCohortRequest {
            company: busiest.into(),
            identified: Some(true),
            max_members: 1000,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(summary.identified as usize, n, "{busiest}");
    assert_eq!(members.len(), n);
    let want: BTreeSet<&str> = company_of
        .iter()
        .filter(|(_, co)| co.as_str() == busiest)
        .map(|(d, _)| d.as_str())
        .collect();
    let got: BTreeSet<&str> = members.iter().map(|m| m.device_id.as_str()).collect();
    assert_eq!(got, want);
    for m in &members {
        assert!(m.user_id.ends_with(&format!("@{busiest}")), "{}", m.user_id);
    }
    // The true account counts anonymous colleagues too.
    let (_, everyone) = cohort(
        &mut c,
        pb::QueryCohortRequest {
            company: busiest.into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(everyone.users >= summary.users && everyone.identified == summary.identified);
    // A size band: its identified users are those whose company's $groupidentify names it.
    let band = &band_of[busiest];
    let (_, in_band) = cohort(
        &mut c,
        pb::QueryCohortRequest {
            company_size_band: band.clone(),
            identified: Some(true),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let want = company_of
        .values()
        .filter(|co| band_of.get(*co) == Some(band))
        .count();
    assert_eq!(in_band.identified as usize, want, "band {band}");
    // Errors name the field.
    let other_band = if band == "1-19" { "5000+" } else { "1-19" };
    for (req, field) in [
        (
            pb::QueryCohortRequest {
                company: "nosuchcompany.com".into(),
                ..Default::default()
            },
            "company",
        ),
        (
            pb::QueryCohortRequest {
                company_size_band: "huge".into(),
                ..Default::default()
            },
            "company_size_band",
        ),
        (
            pb::QueryCohortRequest {
                company: busiest.into(),
                company_size_band: other_band.into(),
                ..Default::default()
            },
            "company_size_band",
        ),
    ] {
        let e = cohort(&mut c, req).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(e.message().starts_with(field), "{field}: {}", e.message());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accounts_journey_is_its_identified_users_journeys() {
    let f = fixture().await;
    let mut c = f.server.client().await;
    // From the events: the identified users (first seen in the range) of each company.
    let mut company_of: BTreeMap<String, String> = BTreeMap::new();
    for e in f
        .events
        .iter()
        .filter(|e| first_seen_in_range(&e.device_id))
    {
        if let Some(g) = e.groups.get("company") {
            company_of.insert(person(&e.device_id), crate::support::prop_text(g));
        }
    }
    let mut people: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (d, co) in &company_of {
        people.entry(co.as_str()).or_default().insert(d.as_str());
    }
    let (busiest, devices) = people.iter().max_by_key(|(_, d)| d.len()).unwrap();
    assert!(devices.len() >= 3, "{busiest}: {} people", devices.len());
    let mut s = c
        .get_user_journey(pb::GetUserJourneyRequest {
            simulation_id: "q".into(),
            company: busiest.to_string(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let (mut got, mut summaries) = (Vec::new(), Vec::new());
    while let Some(item) = s.message().await.unwrap() {
        match item.item.unwrap() {
            pb::journey_item::Item::Events(b) => {
                assert!(summaries.is_empty(), "events after a summary");
                got.extend(b.to_events().unwrap())
            }
            pb::journey_item::Item::Summary(x) => summaries.push(x),
        }
    }
    // Every event of those people (their anonymous beginnings and second devices too), in
    // stream order.
    let want: Vec<pb::Event> = f
        .events
        .iter()
        .filter(|e| devices.contains(person(&e.device_id).as_str()))
        .cloned()
        .collect();
    assert_eq!(got.len(), want.len());
    assert_eq!(digest(&got), digest(&want), "{busiest}");
    let summarized: BTreeSet<&str> = summaries.iter().map(|x| x.device_id.as_str()).collect();
    assert_eq!(&summarized, devices);
    for x in &summaries {
        assert_eq!(&x.company, busiest);
        let n = want
            .iter()
            .filter(|e| person(&e.device_id) == x.device_id)
            .count();
        assert_eq!(x.event_count as usize, n);
    }
    // Errors name the field.
    for (req, code) in [
        (
            pb::GetUserJourneyRequest {
                simulation_id: "q".into(),
                company: "nosuchcompany.com".into(),
                ..Default::default()
            },
            Code::InvalidArgument,
        ),
        (
            pb::GetUserJourneyRequest {
                simulation_id: "q".into(),
                company: busiest.to_string(),
                device_id: devices.first().unwrap().to_string(),
                ..Default::default()
            },
            Code::InvalidArgument,
        ),
    ] {
        let e = c.get_user_journey(req).await.unwrap_err();
        assert_eq!(e.code(), code);
        assert!(e.message().starts_with("company"), "{}", e.message());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cohorts_filter_by_lifecycle_stage_and_plan() {
    let f = fixture().await;
    let mut c = f.server.client().await;
    // The fixture's simulation run for a whole year ("lc": the same definition, so the same
    // devices), long enough for customers to churn.
    create(&mut c, "lc", 17, 0.01).await;
    generate(&mut c, "lc", 365).await;
    let billing = pull(
        &mut c,
        pb::StreamEventsRequest {
            simulation_id: "lc".into(),
            event_types: vec![
                "purchase".into(),
                "subscription_renewed".into(),
                "subscription_canceled".into(),
            ],
            ..Default::default()
        },
    )
    .await;
    // From the events (users first seen in the emitted days, as cohorts count): who paid, who
    // churned, and the plan tier of each one's last payment.
    // (A purchase may be on a person's second device: key by person.)
    let mut paid: BTreeMap<String, String> = BTreeMap::new();
    let mut churned: BTreeSet<String> = BTreeSet::new();
    for e in billing.iter().filter(|e| first_seen_in_range(&e.device_id)) {
        if e.event_type == "subscription_canceled" {
            churned.insert(person(&e.device_id));
        } else {
            let tier = crate::support::prop_text(&e.event_properties["plan_tier"]);
            paid.insert(person(&e.device_id), tier);
        }
    }
    let mut query = async |mut req: pb::QueryCohortRequest| {
        req.simulation_id = "lc".into();
        req.max_members = 100_000;
        let mut s = c.query_cohort(req).await?.into_inner();
        let (mut members, mut summary) = (BTreeSet::new(), None);
        while let Some(item) = s.message().await? {
            match item.item.unwrap() {
                pb::cohort_item::Item::Members(m) => {
                    members.extend(m.members.into_iter().map(|m| m.device_id))
                }
                pb::cohort_item::Item::Summary(x) => summary = Some(x),
            }
        }
        Ok::<_, tonic::Status>((members, summary.unwrap()))
    };
    let ids = |it: &mut dyn Iterator<Item = &String>| -> BTreeSet<String> {
        it.map(|d| d.to_string()).collect()
    };
    let customers = ids(&mut paid.keys().filter(|d| !churned.contains(*d)));
    assert!(customers.len() >= 30, "{} customers", customers.len());
    assert!(churned.len() >= 3, "{} churned", churned.len());
    for (stage, want) in [
        ("customer", customers.clone()),
        ("churned", ids(&mut churned.iter())),
    ] {
        let (m, summary) = query(pb::QueryCohortRequest {
            lifecycle_stage: stage.into(),
            ..Default::default()
        })
        .await
        .unwrap();
        assert_eq!(m, want, "{stage}");
        assert_eq!(summary.users as usize, want.len());
    }
    let (_, prospects) = query(pb::QueryCohortRequest {
        lifecycle_stage: "prospect".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let (_, all) = query(pb::QueryCohortRequest::default()).await.unwrap();
    assert_eq!(prospects.users as usize + paid.len(), all.users as usize);
    // A plan tier: the tier of each customer's last payment.
    for tier in paid.values().collect::<BTreeSet<_>>() {
        let (m, _) = query(pb::QueryCohortRequest {
            plan: tier.clone(),
            lifecycle_stage: "customer".into(),
            ..Default::default()
        })
        .await
        .unwrap();
        let want = ids(&mut paid
            .iter()
            .filter(|(d, t)| *t == tier && !churned.contains(*d))
            .map(|(d, _)| d));
        assert_eq!(m, want, "plan {tier}");
    }
    for (req, field) in [
        (
            pb::QueryCohortRequest {
                plan: "platinum".into(),
                ..Default::default()
            },
            "plan",
        ),
        (
            pb::QueryCohortRequest {
                lifecycle_stage: "lead".into(),
                ..Default::default()
            },
            "lifecycle_stage",
        ),
    ] {
        let e = query(req).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(e.message().starts_with(field), "{field}: {}", e.message());
    }
    eprintln!(
        "lifecycle cohorts: {} customers, {} churned, {} prospects",
        customers.len(),
        churned.len(),
        prospects.users
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_passes_at_small_scale() {
    let f = fixture().await;
    let mut c = f.server.client().await;
    let r = c
        .get_report(pb::GetReportRequest {
            simulation_id: "q".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.days, 120);
    let row = |k: &str| {
        r.rows
            .iter()
            .find(|x| x.key == k)
            .unwrap_or_else(|| panic!("row {k}"))
    };
    // Rates pass, or hold within their band when the sample is too small to judge.
    for r in r
        .rows
        .iter()
        .filter(|r| r.unit != "count" && r.status != "info")
    {
        let holds = match r.status.as_str() {
            "pass" => r.pass,
            "insufficient data" => (r.measured - r.target).abs() <= r.tolerance,
            _ => false,
        };
        assert!(
            holds,
            "{} ({}) measured {} target {} ± {}",
            r.key, r.status, r.measured, r.target, r.tolerance
        );
    }
    assert!(r.all_pass);
    for k in [
        "reengagement_on_new_users",
        "purchases_without_sku",
        "journeys_out_of_order",
    ] {
        assert_eq!(row(k).measured, 0.0);
    }
    // Counts agree with the events: the website's sessions, without customers' product
    // sessions (whose first event sets lifecycle_stage "customer").
    let customer_sessions = f
        .events
        .iter()
        .filter(|e| {
            e.session_id != -1
                && e.time == e.session_id
                && e.user_properties
                    .get("lifecycle_stage")
                    .map(prop_text)
                    .as_deref()
                    == Some("customer")
        })
        .map(|e| (person(&e.device_id), e.session_id))
        .collect::<BTreeSet<_>>();
    assert!(!customer_sessions.is_empty(), "no customer session");
    assert_eq!(
        row("sessions").measured as usize,
        f.events
            .iter()
            .map(|e| (person(&e.device_id), e.session_id))
            .filter(|x| x.1 != -1 && !customer_sessions.contains(x))
            .collect::<BTreeSet<_>>()
            .len()
    );
    assert_eq!(
        row("paid_subscriptions").measured as usize,
        f.events
            .iter()
            .filter(|e| e.event_type == "purchase")
            .count()
    );
}
