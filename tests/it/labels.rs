//! Ground-truth labels (`ampsim export --format labels`, ExportLabels) against the event
//! stream of the same simulation: every user of the events is labelled, identification and
//! trial outcomes agree with the events, the milestones and usage a trial was decided on are
//! the ones its events show, `p_convert` is the documented function of them with the
//! coefficients of the file's effects metadata, and it is calibrated (the decided outcomes
//! average to it).

use crate::support::*;
use ampsim::cli::export::ExportArgs;
use ampsim::cli::ClientOpts;
use ampsim::export::Format;
use arrow_array::cast::AsArray;
use arrow_array::types::{Date32Type, Float64Type, Int64Type};
use arrow_array::{Array, RecordBatch};
use std::collections::{BTreeMap, BTreeSet};

const SIM: &str = "lab";
const DAYS: u32 = 70;
const DAY_MS: i64 = 86_400_000;

#[derive(Default)]
struct Seen {
    user_id: Option<String>,
    /// The `company` group of its events.
    company: Option<String>,
    converted: bool,
    expired: bool,
    sessions: BTreeSet<i64>,
    /// (session_id, event_type) of product events.
    app: Vec<(i64, String)>,
}

/// A labels row, read back.
#[derive(Debug)]
struct Row {
    user_id: Option<String>,
    company: String,
    first_seen: i32,
    sessions: i64,
    identified: bool,
    identified_date: Option<i32>,
    path: Option<String>,
    start: Option<i32>,
    decision: Option<i32>,
    milestones: Option<i64>,
    usage: Option<i64>,
    p: Option<f64>,
    converts: Option<bool>,
    end: Option<i32>,
    outcome: String,
    intent: f64,
    intent_mean: f64,
    source: String,
    /// The second device: its id, first-seen date and login date.
    second: Option<(String, i32, Option<i32>)>,
}

fn rows(b: &RecordBatch) -> BTreeMap<String, Row> {
    let s = |n: &str| b.column_by_name(n).unwrap().as_string::<i32>().clone();
    let d = |n: &str| {
        b.column_by_name(n)
            .unwrap()
            .as_primitive::<Date32Type>()
            .clone()
    };
    let i = |n: &str| {
        b.column_by_name(n)
            .unwrap()
            .as_primitive::<Int64Type>()
            .clone()
    };
    let f = |n: &str| {
        b.column_by_name(n)
            .unwrap()
            .as_primitive::<Float64Type>()
            .clone()
    };
    let bo = |n: &str| b.column_by_name(n).unwrap().as_boolean().clone();
    let company = s("company");
    let (dev, uid, path, outcome, source) = (
        s("device_id"),
        s("user_id"),
        s("trial_path"),
        s("trial_outcome"),
        s("first_touch_source"),
    );
    let ident_date = d("identified_date");
    let (second_id, second_seen, second_login) = (
        s("second_device_id"),
        d("second_device_first_seen_date"),
        d("second_device_login_date"),
    );
    let (first, start, decision, end) = (
        d("first_seen_date"),
        d("trial_start_date"),
        d("trial_decision_date"),
        d("trial_end_date"),
    );
    let (sessions, milestones, usage) = (
        i("sessions"),
        i("milestones_at_decision"),
        i("usage_at_decision"),
    );
    let (p, intent, intent_mean) = (f("p_convert"), f("intent"), f("intent_mean"));
    let (identified, converts) = (bo("identified"), bo("trial_converts"));
    let opt_s =
        |a: &arrow_array::StringArray, k: usize| a.is_valid(k).then(|| a.value(k).to_string());
    let mut out = BTreeMap::new();
    for k in 0..b.num_rows() {
        let row = Row {
            user_id: opt_s(&uid, k),
            company: company.value(k).to_string(),
            first_seen: first.value(k),
            sessions: sessions.value(k),
            identified: identified.value(k),
            identified_date: ident_date.is_valid(k).then(|| ident_date.value(k)),
            path: opt_s(&path, k),
            start: start.is_valid(k).then(|| start.value(k)),
            decision: decision.is_valid(k).then(|| decision.value(k)),
            milestones: milestones.is_valid(k).then(|| milestones.value(k)),
            usage: usage.is_valid(k).then(|| usage.value(k)),
            p: p.is_valid(k).then(|| p.value(k)),
            converts: converts.is_valid(k).then(|| converts.value(k)),
            end: end.is_valid(k).then(|| end.value(k)),
            outcome: outcome.value(k).to_string(),
            intent: intent.value(k),
            intent_mean: intent_mean.value(k),
            source: source.value(k).to_string(),
            second: opt_s(&second_id, k).map(|id| {
                (
                    id,
                    second_seen.value(k),
                    second_login.is_valid(k).then(|| second_login.value(k)),
                )
            }),
        };
        assert!(
            out.insert(dev.value(k).to_string(), row).is_none(),
            "one row per device"
        );
    }
    out
}

fn args(addr: std::net::SocketAddr, out: &std::path::Path) -> ExportArgs {
    ExportArgs {
        simulation: SIM.into(),
        from: None,
        to: None,
        format: Format::Labels,
        out: out.to_path_buf(),
        overwrite: false,
        project_id: 100_000,
        part_size: None,
        gzip_level: None,
        user_properties: None,
        generate_missing: false,
        quiet: true,
        client: ClientOpts {
            server: format!("http://{addr}"),
            auth_token: None,
            tls_ca: None,
        },
    }
}

/// The summary of the journey GetUserJourney gives for a device id.
async fn journey_summary(c: &mut Client, device_id: &str) -> ampsim::pb::JourneySummary {
    let mut s = c
        .get_user_journey(ampsim::pb::GetUserJourneyRequest {
            simulation_id: SIM.into(),
            user_id: String::new(),
            device_id: device_id.to_string(),
            company: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut summary = None;
    while let Some(item) = s.message().await.unwrap() {
        if let Some(ampsim::pb::journey_item::Item::Summary(x)) = item.item {
            summary = Some(x);
        }
    }
    summary.expect("a summary ends the journey")
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_agree_with_the_events_and_the_outcome_model() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("l.db")).await;
    let mut c = server.client().await;
    let sim = create(&mut c, SIM, 13, 0.03).await;
    // Before any day: nothing to label.
    let out = dir.path().join("out");
    let err = ampsim::cli::export::export(&args(server.addr, &out))
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("no generated days"), "{err:#}");
    generate(&mut c, SIM, DAYS).await;
    let events = pull_all(&mut c, SIM).await;

    let summary = ampsim::cli::export::export(&args(server.addr, &out))
        .await
        .unwrap();
    let path = out.join(format!("{SIM}_labels.parquet"));
    assert_eq!(summary.files.len(), 1);
    assert_eq!(summary.files[0].path, path);
    // Options that do not apply, and an existing file, are refused.
    let mut a = args(server.addr, &out);
    let again = ampsim::cli::export::export(&a).await.unwrap_err();
    assert!(format!("{again:#}").contains("--overwrite"), "{again:#}");
    a.from = Some(chrono::NaiveDate::from_ymd_opt(2025, 3, 4).unwrap());
    let e = ampsim::cli::export::export(&a).await.unwrap_err();
    assert!(
        format!("{e:#}").contains("--from/--to do not apply"),
        "{e:#}"
    );

    let batches = read_parquet(&path);
    let batch = arrow_select::concat::concat_batches(&batches[0].schema(), &batches).unwrap();
    assert_eq!(batch.num_rows() as u64, summary.events);
    let file_schema = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        std::fs::File::open(&path).unwrap(),
    )
    .unwrap()
    .schema()
    .clone();
    assert_eq!(file_schema.metadata()["ampsim.simulation_id"], SIM);
    let effects: serde_json::Value =
        serde_json::from_str(&file_schema.metadata()["ampsim.effects"]).unwrap();
    let labels = rows(&batch);

    let start = chrono::NaiveDate::parse_from_str(&sim.start_date, "%Y-%m-%d").unwrap();
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
    let start32 = (start - epoch).num_days() as i32;

    let scenario = ampsim_engine::Scenario::default_scenario();
    let milestones: BTreeSet<&str> = scenario
        .app
        .milestones
        .iter()
        .map(|m| m.event_type.as_str())
        .collect();
    let usage: BTreeSet<&str> = scenario
        .app
        .usage
        .iter()
        .map(|u| u.event_type.as_str())
        .collect();
    let mut seen: BTreeMap<&str, Seen> = BTreeMap::new();
    // A second device's events are its person's; what the stream shows of each second device:
    // the dates of its first event and of its first event with the user id.
    let person: BTreeMap<&str, &str> = labels
        .iter()
        .filter_map(|(d, l)| {
            l.second
                .as_ref()
                .map(|(id, _, _)| (id.as_str(), d.as_str()))
        })
        .collect();
    let mut second_seen: BTreeMap<&str, (i32, Option<i32>)> = BTreeMap::new();
    let date_of = |t: i64| t.div_euclid(DAY_MS) as i32;
    for e in &events {
        let device = match person.get(e.device_id.as_str()) {
            Some(p) => {
                let s = second_seen
                    .entry(e.device_id.as_str())
                    .or_insert((date_of(e.time), None));
                if !e.user_id.is_empty() && s.1.is_none() {
                    s.1 = Some(date_of(e.time));
                }
                p
            }
            None => e.device_id.as_str(),
        };
        let s = seen.entry(device).or_default();
        if !e.user_id.is_empty() {
            assert!(s.user_id.get_or_insert(e.user_id.clone()) == &e.user_id);
            let group = e.groups.get("company").map(crate::support::prop_text);
            assert!(
                group.is_some(),
                "{}: an identified event without a group",
                e.insert_id
            );
            assert!(s.company.get_or_insert_with(|| group.clone().unwrap()) == &group.unwrap());
        }
        if e.session_id >= 0 {
            s.sessions.insert(e.session_id);
        }
        match e.event_type.as_str() {
            "trial_converted" => s.converted = true,
            "trial_expired" => s.expired = true,
            t if milestones.contains(t) || usage.contains(t) => {
                s.app.push((e.session_id, t.to_string()))
            }
            _ => {}
        }
    }

    // Every device of the events is labelled; every user who arrived in the emitted days
    // has events, and its sessions are the events' sessions.
    for d in seen.keys() {
        assert!(
            labels.contains_key(*d),
            "device {d} has events but no label"
        );
    }
    // Second devices: every one the labels name is in the stream from its first-seen date, and
    // logs in on its login date; first-seen people's second devices appear only after their
    // identification.
    let mut seconds = 0;
    for (d, l) in &labels {
        let Some((id, first, login)) = &l.second else {
            continue;
        };
        let s = second_seen.get(id.as_str());
        if *first >= start32 {
            seconds += 1;
            let &(seen_first, seen_login) =
                s.unwrap_or_else(|| panic!("{d}: second device {id} has no events"));
            assert_eq!(seen_first, *first, "{d}: second device first seen");
            assert_eq!(seen_login, *login, "{d}: second device login");
            assert!(l.identified_date.is_some_and(|i| i <= *first), "{d}: {l:?}");
        }
    }
    assert!(seconds > 20, "{seconds} second devices to check");
    let (mut new_users, mut checked_trials, mut identified) = (0, 0, 0);
    let (mut p_sum, mut p_var, mut converts) = (0.0, 0.0, 0.0);
    let mut decided = 0;
    for (d, l) in &labels {
        let s = seen.get(d.as_str());
        if l.first_seen >= start32 {
            new_users += 1;
            let s = s.unwrap_or_else(|| panic!("{d} arrived on an emitted day without events"));
            assert_eq!(l.sessions, s.sessions.len() as i64, "{d}: sessions");
            assert_eq!(l.user_id, s.user_id, "{d}: user_id");
            assert_eq!(l.identified, s.user_id.is_some(), "{d}");
            identified += usize::from(l.identified);
            assert_eq!(l.identified, l.identified_date.is_some(), "{d}");
            assert!(l.identified_date.is_none_or(|i| i >= l.first_seen), "{d}");
        }
        if let Some(s) = s {
            if s.user_id.is_some() {
                assert_eq!(l.user_id, s.user_id, "{d}");
                assert_eq!(
                    Some(&l.company),
                    s.company.as_ref(),
                    "{d}: the true company"
                );
            }
        }
        // Outcomes agree with the terminal events of the emitted days.
        if l.end.is_some_and(|e| e >= start32) && l.outcome != "active" {
            let s = s.unwrap();
            assert_eq!(l.outcome == "converted", s.converted, "{d}: {l:?}");
            assert_eq!(l.outcome == "expired", s.expired, "{d}: {l:?}");
            assert_eq!(l.converts, Some(l.outcome == "converted"));
        }
        if let Some(s) = s {
            if s.converted {
                assert_eq!(l.outcome, "converted", "{d}");
            }
        }
        let Some(p) = l.p else {
            assert!(l.decision.is_none() && l.milestones.is_none() && l.converts.is_none());
            continue;
        };
        decided += 1;
        let path = l.path.as_deref().unwrap();
        // p_convert is the documented function of what the trial was decided on.
        let t = &effects["trials"];
        let rate = t["conversion_rate"][path].as_f64().unwrap();
        let o = &t["outcome"];
        let want = sigmoid(
            (rate / (1.0 - rate)).ln()
                + o["calibration"][path].as_f64().unwrap()
                + o["per_milestone"].as_f64().unwrap() * l.milestones.unwrap() as f64
                + o["per_log_usage"].as_f64().unwrap() * (l.usage.unwrap() as f64).ln_1p(),
        );
        assert!(
            (p - want).abs() < 1e-12,
            "{d}: p_convert {p} against {want}"
        );
        p_sum += p;
        p_var += p * (1.0 - p);
        converts += f64::from(u8::from(l.converts.unwrap()));
        // What it was decided on is what the events show: the product events of sessions
        // that started before the decision day.
        if l.start.unwrap() >= start32 {
            checked_trials += 1;
            let cut = i64::from(l.decision.unwrap()) * DAY_MS;
            let app = &s.unwrap().app;
            let before = |set: &BTreeSet<&str>| {
                app.iter()
                    .filter(|(sid, t)| *sid < cut && set.contains(t.as_str()))
                    .count() as i64
            };
            assert_eq!(l.milestones, Some(before(&milestones)), "{d}: milestones");
            assert_eq!(l.usage, Some(before(&usage)), "{d}: usage");
            assert_eq!(
                l.decision,
                Some(l.start.unwrap() + scenario.trials.conversion_window[0] as i32)
            );
        }
    }
    // Intent follows the first touch's mean: the labelled means order the channels as
    // the sample means of intent do.
    let mut by_source: BTreeMap<&str, (f64, f64, f64)> = BTreeMap::new();
    for l in labels.values() {
        let x = by_source.entry(l.source.as_str()).or_default();
        x.0 += 1.0;
        x.1 += l.intent;
        x.2 += l.intent_mean;
    }
    for (src, (n, sum, mean_sum)) in &by_source {
        if *n > 500.0 {
            let sd = effects["intent"]["sd"].as_f64().unwrap();
            let (got, want) = (sum / n, mean_sum / n);
            assert!(
                (got - want).abs() < 4.0 * sd / n.sqrt(),
                "{src}: intent {got} against {want}"
            );
        }
    }
    eprintln!(
        "{} labels, {new_users} new users ({identified} identified), {decided} decided trials \
         ({checked_trials} checked against events): converted {converts} against sum p {p_sum:.1}",
        labels.len()
    );
    assert!(
        decided >= 200 && checked_trials >= 100,
        "{decided} {checked_trials}"
    );
    // Calibrated: the outcomes drawn with p average to p (4 standard deviations).
    assert!(
        (converts - p_sum).abs() < 4.0 * p_var.sqrt(),
        "converted {converts}, expected {p_sum:.1} ± {:.1}",
        p_var.sqrt()
    );
    // The journey summary carries the same ground truth.
    let mut journeys = 0;
    for (d, l) in labels
        .iter()
        .filter(|(_, l)| l.p.is_some() && l.first_seen >= start32)
        .take(5)
    {
        let summary = journey_summary(&mut c, d).await;
        assert_eq!(
            summary.company, l.company,
            "{d}: decided trialists are identified"
        );
        let g = summary.ground_truth.expect("ground truth in the summary");
        assert_eq!(g.company, l.company, "{d}");
        assert!(!g.company_name.is_empty() && !g.company_size_band.is_empty());
        assert_eq!(g.intent, l.intent, "{d}");
        assert_eq!(g.intent_mean, l.intent_mean, "{d}");
        assert!(g.trial_decided, "{d}");
        assert_eq!(Some(g.p_convert), l.p, "{d}");
        assert_eq!(
            Some(i64::from(g.milestones_at_decision)),
            l.milestones,
            "{d}"
        );
        assert_eq!(Some(i64::from(g.usage_at_decision)), l.usage, "{d}");
        assert_eq!(Some(g.trial_converts), l.converts, "{d}");
        journeys += 1;
    }
    assert_eq!(journeys, 5);
    // A journey asked for by a second device's id is its person's, and its ground truth names
    // the second device as the labels do.
    let date = |d: i32| (epoch + chrono::Duration::days(i64::from(d))).to_string();
    let mut by_second = 0;
    // (People with events in the emitted days: a journey holds those.)
    for (d, l) in labels
        .iter()
        .filter(|(d, l)| l.second.is_some() && seen.contains_key(d.as_str()))
        .take(5)
    {
        let (id, first, login) = l.second.clone().unwrap();
        let summary = journey_summary(&mut c, &id).await;
        assert_eq!(&summary.device_id, d, "the person of {id}");
        let g = summary.ground_truth.expect("ground truth in the summary");
        assert_eq!(g.second_device_id, id);
        assert_eq!(g.second_device_first_seen_date, date(first));
        assert_eq!(
            g.second_device_login_date,
            login.map(date).unwrap_or_default()
        );
        by_second += 1;
    }
    assert_eq!(by_second, 5);
    server.stop().await;
}
