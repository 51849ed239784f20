//! Trials happen in the product (issue 16, items 3-4), checked from the rendered event stream
//! alone: trialists' sessions hold in-app events (milestones in order, usage), the outcome
//! follows what they did there, and the conversion and purchase happen inside a product session
//! on a day that agrees with the trial's announced length and grace period.

use ampsim_engine::memory::MemorySim;
use ampsim_engine::render::Prop;
use ampsim_engine::{Engine, Scenario, SimConfig};
use chrono::NaiveDate;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::OnceLock;

const DAY_MS: i64 = 86_400_000;

/// One event of a trialist, as the stream shows it.
#[derive(Clone)]
struct Seen {
    event_type: String,
    time: i64,
    session_id: i64,
    /// Integer properties (`conversion_day`, `trial_length_days`, `grace_days`).
    ints: BTreeMap<&'static str, i64>,
    trial_path: String,
}

/// A device whose trial started in the emitted days, with every event of it from its trial
/// form on.
struct Trialist {
    start: Seen,
    events: Vec<Seen>,
}

struct World {
    trialists: Vec<Trialist>,
    app_types: Vec<String>,
    milestones: Vec<String>,
    /// Days emitted: a trial needs 17 days after its start to have ended.
    last_start_ms: i64,
}

/// 200 days at scale 0.05 (seed 21): about 800 trials.
fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let start = NaiveDate::from_ymd_opt(2025, 2, 3).unwrap();
        let cfg = SimConfig {
            scenario: Scenario::from_toml("").unwrap(),
            seed: 21,
            start_date: start,
            population_scale: 0.05,
        };
        let engine = Engine::new(cfg);
        let app_types: Vec<String> = engine.app_event_types().map(str::to_string).collect();
        let milestones: Vec<String> = engine
            .scenario()
            .app
            .milestones
            .iter()
            .map(|m| m.event_type.clone())
            .collect();
        let days = 200;
        let first_ms = engine.day_start_ms(engine.first_day());
        let mut sim = MemorySim::new(engine);
        let mut by_device: HashMap<String, Trialist> = HashMap::new();
        for _ in 0..days {
            let out = sim.step();
            for e in sim.engine.render_day(&out) {
                // A trialist's second device is the trialist.
                let person = crate::support::person_device_id(&sim.engine, &e.device_id);
                let seen = Seen {
                    event_type: e.event_type.to_string(),
                    time: e.time,
                    session_id: e.session_id,
                    ints: e
                        .event_properties
                        .iter()
                        .filter_map(|(k, v)| match v {
                            Prop::Int(i) => Some((*k, *i)),
                            _ => None,
                        })
                        .collect(),
                    trial_path: e
                        .event_properties
                        .iter()
                        .find(|(k, _)| *k == "trial_path")
                        .map(|(_, v)| v.to_string_value())
                        .unwrap_or_default(),
                };
                if e.event_type == "trial_started" {
                    let t = Trialist {
                        start: seen.clone(),
                        events: Vec::new(),
                    };
                    assert!(
                        by_device.insert(person.clone(), t).is_none(),
                        "two trials of one person"
                    );
                }
                if let Some(t) = by_device.get_mut(&person) {
                    t.events.push(seen);
                }
            }
        }
        let last_start_ms = first_ms + (days as i64 - 17) * DAY_MS;
        let mut trialists: Vec<Trialist> = by_device
            .into_values()
            .filter(|t| t.start.time >= first_ms)
            .collect();
        trialists.sort_by_key(|t| t.start.time);
        World {
            trialists,
            app_types,
            milestones,
            last_start_ms,
        }
    })
}

/// Whole UTC days from the day of `from` to the day of `to`.
fn days_between(from: i64, to: i64) -> i64 {
    to.div_euclid(DAY_MS) - from.div_euclid(DAY_MS)
}

#[test]
fn outcomes_happen_in_product_sessions_on_days_that_agree_with_the_trial() {
    let w = world();
    let app: HashSet<&str> = w.app_types.iter().map(String::as_str).collect();
    let (mut converted, mut expired, mut in_grace) = (0, 0, 0);
    for t in w
        .trialists
        .iter()
        .filter(|t| t.start.time < w.last_start_ms)
    {
        let len = t.start.ints["trial_length_days"];
        let grace = t.start.ints["grace_days"];
        assert_eq!((len, grace), (14, 2), "announced on trial_started");
        let ends: Vec<&Seen> = t
            .events
            .iter()
            .filter(|e| e.event_type == "trial_converted" || e.event_type == "trial_expired")
            .collect();
        assert_eq!(ends.len(), 1, "exactly one terminal event");
        let end = ends[0];
        let day = days_between(t.start.time, end.time);
        if end.event_type == "trial_converted" {
            converted += 1;
            assert!(end.session_id >= 0, "a conversion happens in a session");
            assert_eq!(end.ints["conversion_day"], day);
            assert_eq!(end.ints["trial_length_days"], len);
            assert!((10..=len + grace).contains(&day), "converted on day {day}");
            in_grace += usize::from(day > len);
            // The purchase follows in the same session, and the trialist was in the product
            // in that session before paying.
            let purchase = t
                .events
                .iter()
                .find(|e| e.event_type == "purchase")
                .expect("a purchase");
            assert_eq!(purchase.session_id, end.session_id);
            assert!(purchase.time > end.time);
            assert!(t.events.iter().any(|e| e.session_id == end.session_id
                && app.contains(e.event_type.as_str())
                && e.time < end.time));
            if t.start.trial_path == "self_service" {
                assert!(t.events.iter().any(|e| e.session_id == end.session_id
                    && e.event_type == "upgrade_button_clicked"
                    && e.time < end.time));
            }
        } else {
            expired += 1;
            assert_eq!(end.session_id, -1, "trial_expired is a server-side event");
            assert_eq!(day, len);
            assert_eq!(end.ints["trial_length_days"], len);
            assert!(!t.events.iter().any(|e| e.event_type == "purchase"));
        }
        // In-app events only while the trial runs, in product sessions that hold no website
        // pages; milestones in order, each once.
        let mut reached = Vec::new();
        let mut product_sessions = HashSet::new();
        // (A converted trialist's later in-app events are a customer's product use.)
        let customer_from = (end.event_type == "trial_converted").then_some(end.time);
        for e in t
            .events
            .iter()
            .filter(|e| app.contains(e.event_type.as_str()))
            .filter(|e| customer_from.is_none_or(|t| e.time <= t || e.session_id == end.session_id))
        {
            assert!(e.time > t.start.time && e.time <= end.time);
            assert_ne!(
                e.session_id, t.start.session_id,
                "the signup session is a website's"
            );
            product_sessions.insert(e.session_id);
            if w.milestones.contains(&e.event_type) {
                reached.push(e.event_type.as_str());
            }
        }
        assert_eq!(
            reached,
            w.milestones[..reached.len()]
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
        );
        assert!(!t.events.iter().any(
            |e| product_sessions.contains(&e.session_id) && e.event_type.ends_with("page_view")
        ));
    }
    println!(
        "{converted} converted ({in_grace} in the grace period), {expired} expired, of {} trials",
        converted + expired
    );
    assert!(
        converted >= 150 && expired >= 300,
        "{converted} / {expired}"
    );
    // The window reaches past the trial's length: some buy in the grace period, most before.
    assert!(
        in_grace > 0 && in_grace * 3 < converted,
        "{in_grace} of {converted}"
    );
}

/// What a trial's first 10 days (before its outcome is decided) show: counts of each event
/// type of the trialist, and of its sessions.
fn features(w: &World, t: &Trialist) -> Vec<f64> {
    let horizon = t.start.time.div_euclid(DAY_MS) * DAY_MS + 10 * DAY_MS;
    let early: Vec<&Seen> = t
        .events
        .iter()
        .filter(|e| e.time > t.start.time && e.time < horizon)
        .collect();
    let mut f: Vec<f64> = w
        .app_types
        .iter()
        .map(|a| early.iter().filter(|e| &e.event_type == a).count() as f64)
        .collect();
    for signal in [
        "upgrade_button_clicked",
        "contact_sales_clicked",
        "page_view",
    ] {
        f.push(early.iter().filter(|e| e.event_type == signal).count() as f64);
    }
    let sessions: HashSet<i64> = early
        .iter()
        .map(|e| e.session_id)
        .filter(|&s| s >= 0)
        .collect();
    f.push(sessions.len() as f64);
    f.push(f64::from(u8::from(t.start.trial_path == "sales_assisted")));
    f.iter().map(|x| x.ln_1p()).collect()
}

/// A plain logistic regression (intercept plus features), fitted by gradient descent on
/// standardised features with a little L2 shrinkage.
fn fit(x: &[Vec<f64>], y: &[bool]) -> impl Fn(&[f64]) -> f64 {
    let k = x[0].len();
    let n = x.len() as f64;
    let mean: Vec<f64> = (0..k)
        .map(|j| x.iter().map(|r| r[j]).sum::<f64>() / n)
        .collect();
    let sd: Vec<f64> = (0..k)
        .map(|j| {
            let v = x.iter().map(|r| (r[j] - mean[j]).powi(2)).sum::<f64>() / n;
            v.sqrt().max(1e-9)
        })
        .collect();
    let z = move |r: &[f64]| -> Vec<f64> { (0..k).map(|j| (r[j] - mean[j]) / sd[j]).collect() };
    let xs: Vec<Vec<f64>> = x.iter().map(|r| z(r)).collect();
    let mut b = vec![0.0; k + 1];
    for _ in 0..2000 {
        let mut g = vec![0.0; k + 1];
        for (r, &yi) in xs.iter().zip(y) {
            let s = b[0] + (0..k).map(|j| b[j + 1] * r[j]).sum::<f64>();
            let err = 1.0 / (1.0 + (-s).exp()) - f64::from(u8::from(yi));
            g[0] += err;
            for j in 0..k {
                g[j + 1] += err * r[j];
            }
        }
        for j in 0..=k {
            let l2 = if j == 0 { 0.0 } else { 0.01 * b[j] };
            b[j] -= 0.5 * (g[j] / n + l2);
        }
    }
    move |r: &[f64]| {
        let r = z(r);
        b[0] + (0..k).map(|j| b[j + 1] * r[j]).sum::<f64>()
    }
}

/// The rank AUC: the chance that a random converter scores above a random non-converter.
fn auc(scores: &[(f64, bool)]) -> f64 {
    let pos: Vec<f64> = scores.iter().filter(|s| s.1).map(|s| s.0).collect();
    let neg: Vec<f64> = scores.iter().filter(|s| !s.1).map(|s| s.0).collect();
    let mut wins = 0.0;
    for p in &pos {
        for q in &neg {
            wins += if p > q {
                1.0
            } else if p == q {
                0.5
            } else {
                0.0
            };
        }
    }
    wins / (pos.len() * neg.len()) as f64
}

#[test]
fn in_trial_usage_predicts_conversion() {
    let w = world();
    let trials: Vec<(Vec<f64>, bool)> = w
        .trialists
        .iter()
        .filter(|t| t.start.time < w.last_start_ms)
        .map(|t| {
            let converted = t.events.iter().any(|e| e.event_type == "trial_converted");
            (features(w, t), converted)
        })
        .collect();
    // Fitted on every other trial, judged on the rest.
    let (train, test): (Vec<_>, Vec<_>) = trials.iter().enumerate().partition(|(i, _)| i % 2 == 0);
    let x: Vec<Vec<f64>> = train.iter().map(|(_, t)| t.0.clone()).collect();
    let y: Vec<bool> = train.iter().map(|(_, t)| t.1).collect();
    let model = fit(&x, &y);
    let scored: Vec<(f64, bool)> = test.iter().map(|(_, t)| (model(&t.0), t.1)).collect();
    let a = auc(&scored);
    // One event type alone: the activation milestones reached in the first 10 days.
    let m = w.milestones.len();
    let milestones: Vec<(f64, bool)> = trials
        .iter()
        .map(|t| (t.0[..m].iter().sum::<f64>(), t.1))
        .collect();
    let a_milestones = auc(&milestones);
    // The trial path alone (the model's only input the website already shows).
    let path = trials
        .iter()
        .map(|t| (t.0[t.0.len() - 1], t.1))
        .collect::<Vec<_>>();
    let a_path = auc(&path);
    // Intent signals alone, within their path: clicking upgrade (self-service) or contact
    // sales (sales-assisted) in the first 10 days predicts the outcome.
    let signal_auc = |sales: f64, col: usize| {
        auc(&trials
            .iter()
            .filter(|t| t.0[t.0.len() - 1] == sales)
            .map(|t| (t.0[col], t.1))
            .collect::<Vec<_>>())
    };
    let a_upgrade = signal_auc(0.0, w.app_types.len());
    let a_contact = signal_auc(2f64.ln(), w.app_types.len() + 1);
    println!(
        "{} trials ({} held out): AUC {a:.3} (logistic regression on event counts), \
         {a_milestones:.3} (milestones alone), {a_path:.3} (path alone), {a_upgrade:.3} \
         (upgrade clicks, self-service), {a_contact:.3} (contact-sales clicks, sales-assisted)",
        trials.len(),
        scored.len()
    );
    assert!(
        a_upgrade > 0.55 && a_contact > 0.55,
        "{a_upgrade} {a_contact}"
    );
    assert!(scored.len() >= 300);
    assert!(a > 0.70, "AUC {a}");
    assert!(a_milestones > 0.62, "AUC of milestones {a_milestones}");
    assert!(a > a_path + 0.05, "usage adds to the path: {a} vs {a_path}");
}
