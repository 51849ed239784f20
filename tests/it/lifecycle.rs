//! The customer lifecycle (issue 17, item 4), checked from the rendered event stream: paying
//! customers keep using the product, renew each billing period on the purchase's date with a
//! server-side revenue event (quantity = seats) until they churn, change seats at renewals, and
//! churn less when they use the product more; the report's MRR is the revenue events' and its
//! lifecycle rows hold against the model.

use ampsim_engine::memory::MemorySim;
use ampsim_engine::report::{Report, ReportBuilder, RowStatus};
use ampsim_engine::{Engine, Scenario, SimConfig};
use chrono::{DateTime, Months, NaiveDate};
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// What the stream shows of one event of a paying customer.
struct Ev {
    event_type: String,
    time: i64,
    session_id: i64,
    props: BTreeMap<String, String>,
    user_props: BTreeMap<String, String>,
    /// (price, quantity, revenue, revenue_type, currency)
    revenue: Option<(f64, i64, f64, String, String)>,
}

impl Ev {
    fn prop(&self, key: &str) -> Option<&str> {
        self.props.get(key).map(String::as_str)
    }

    fn int(&self, key: &str) -> i64 {
        self.prop(key)
            .unwrap_or_else(|| panic!("{} has no {key}: {:?}", self.event_type, self.props))
            .parse()
            .expect("an integer property")
    }

    fn date(&self) -> NaiveDate {
        DateTime::from_timestamp_millis(self.time)
            .expect("valid time")
            .date_naive()
    }
}

struct Run {
    engine: Engine,
    /// Per device: its events from its purchase day on (devices that paid in the warm start:
    /// from the first emitted day).
    customers: BTreeMap<u64, Vec<Ev>>,
    report: Report,
    last_date: NaiveDate,
}

const DAYS: u32 = 400;

/// 400 days at scale 0.08 (seed 23), with the 120-day warm start.
fn run() -> &'static Run {
    static RUN: OnceLock<Run> = OnceLock::new();
    RUN.get_or_init(|| {
        let cfg = SimConfig {
            scenario: Scenario::from_toml("").unwrap(),
            seed: 23,
            start_date: NaiveDate::from_ymd_opt(2025, 1, 6).unwrap(),
            population_scale: 0.08,
        };
        let judge = Engine::new(cfg.clone());
        let mut sim = MemorySim::new(Engine::new(cfg));
        let last_day = judge.first_day() + DAYS - 1;
        let mut b = ReportBuilder::new(&judge, last_day);
        let mut customers: BTreeMap<u64, Vec<Ev>> = BTreeMap::new();
        for _ in 0..DAYS {
            let out = sim.step();
            for r in &out.records {
                b.add_user_day(r);
                if r.plan.is_none() {
                    continue;
                }
                let mut evs = Vec::new();
                sim.engine.render_user_day(r, &mut evs);
                let list = customers.entry(r.device).or_default();
                for e in evs {
                    let text = |p: &[(&str, ampsim_engine::Prop<'_>)]| {
                        p.iter()
                            .map(|(k, v)| (k.to_string(), v.to_string_value()))
                            .collect()
                    };
                    list.push(Ev {
                        event_type: e.event_type.to_string(),
                        time: e.time,
                        session_id: e.session_id,
                        props: text(&e.event_properties),
                        user_props: text(&e.user_properties),
                        revenue: e.revenue.as_ref().map(|r| {
                            (
                                r.price,
                                r.quantity,
                                r.revenue,
                                r.revenue_type.to_string(),
                                r.currency.to_string(),
                            )
                        }),
                    });
                }
            }
        }
        for st in sim.states() {
            b.add_state(&st);
        }
        let report = b.finish();
        let last_date = judge.date_of(last_day);
        Run {
            engine: judge,
            customers,
            report,
            last_date,
        }
    })
}

fn billing(evs: &[Ev]) -> impl Iterator<Item = &Ev> {
    evs.iter().filter(|e| {
        matches!(
            e.event_type.as_str(),
            "purchase" | "subscription_renewed" | "subscription_canceled" | "subscription_changed"
        )
    })
}

fn months_of(period: &str) -> u32 {
    match period {
        "monthly" => 1,
        "annual" => 12,
        other => panic!("unknown billing period {other:?}"),
    }
}

#[test]
fn subscribers_renew_each_period_on_the_purchase_date_until_they_churn() {
    let r = run();
    let (mut monthly, mut annual_renewals, mut churned, mut renewals) = (0, 0, 0, 0);
    for (device, evs) in &r.customers {
        let Some(purchase) = evs.iter().find(|e| e.event_type == "purchase") else {
            continue;
        };
        let period = purchase.prop("billing_period").unwrap().to_string();
        let months = months_of(&period);
        monthly += usize::from(months == 1);
        let bought = purchase.date();
        let anchor = purchase.time.rem_euclid(86_400_000);
        let mut k = 0u32;
        let mut seats = purchase.int("seats");
        let mut ended = false;
        for e in billing(evs).skip(1) {
            assert!(!ended, "device {device}: {} after the churn", e.event_type);
            assert_eq!(
                e.session_id, -1,
                "device {device}: {} in a session",
                e.event_type
            );
            assert_eq!(
                e.time.rem_euclid(86_400_000),
                anchor,
                "device {device}: {} not at the purchase's time of day",
                e.event_type
            );
            let due = bought
                .checked_add_months(Months::new(months * (k + 1)))
                .unwrap();
            assert_eq!(
                e.date(),
                due,
                "device {device}: {} of period {} on the wrong date (bought {bought}, {period})",
                e.event_type,
                k + 1
            );
            match e.event_type.as_str() {
                "subscription_changed" => {
                    assert_eq!(e.int("previous_seats"), seats, "device {device}: seats");
                    let now = e.int("seats");
                    match e.prop("change") {
                        Some("expansion") => assert!(now > seats),
                        Some("contraction") => assert!((1..seats).contains(&now)),
                        other => panic!("device {device}: change {other:?}"),
                    }
                    seats = now;
                }
                "subscription_renewed" => {
                    k += 1;
                    renewals += 1;
                    annual_renewals += usize::from(months == 12);
                    assert_eq!(e.int("renewal_number"), i64::from(k));
                    assert_eq!(e.int("seats"), seats, "device {device}: renewal's seats");
                    let (price, quantity, revenue, kind, currency) =
                        e.revenue.as_ref().expect("a renewal is a revenue event");
                    assert_eq!(*quantity, seats, "device {device}: quantity = seats");
                    assert!((revenue - price * *quantity as f64).abs() < 1e-9);
                    assert_eq!(kind, "renewal");
                    assert_eq!(currency, "USD");
                    assert_eq!(e.user_props.get("seats"), Some(&seats.to_string()));
                    assert_eq!(
                        e.user_props.get("lifecycle_stage").map(String::as_str),
                        Some("customer")
                    );
                }
                "subscription_canceled" => {
                    ended = true;
                    churned += 1;
                    assert_eq!(e.int("renewals"), i64::from(k));
                    assert_eq!(
                        e.user_props.get("lifecycle_stage").map(String::as_str),
                        Some("churned")
                    );
                }
                other => panic!("device {device}: {other} among the billing events"),
            }
        }
        if ended {
            // A churned customer is gone: nothing after the cancellation.
            let cancel = evs
                .iter()
                .find(|e| e.event_type == "subscription_canceled")
                .unwrap();
            assert!(
                evs.iter().all(|e| e.time <= cancel.time),
                "device {device}: events after the churn"
            );
        } else {
            // Still paying: the next renewal is after the last day.
            let next = bought
                .checked_add_months(Months::new(months * (k + 1)))
                .unwrap();
            assert!(
                next > r.last_date,
                "device {device}: no renewal or churn on {next} (bought {bought}, {period})"
            );
        }
        let (_, quantity, _, kind, _) = purchase.revenue.as_ref().unwrap();
        assert_eq!(*quantity, purchase.int("seats"));
        assert_eq!(kind, "purchase");
    }
    assert!(monthly > 200, "too few monthly subscribers: {monthly}");
    assert!(renewals > 1000, "too few renewals: {renewals}");
    assert!(annual_renewals > 0, "no annual renewal was exercised");
    assert!(churned > 30, "too few churned customers: {churned}");
}

#[test]
fn the_reports_mrr_is_the_revenue_events() {
    let r = run();
    // From the events alone: on a month's last day, a subscription pays the MRR of its latest
    // revenue event if it has not been canceled since.
    let series = &r.report.series.mrr;
    assert!(series.len() >= 13, "months: {}", series.len());
    for m in series {
        let first = NaiveDate::parse_from_str(&format!("{}-01", m.month), "%Y-%m-%d").unwrap();
        let end = first
            .checked_add_months(Months::new(1))
            .unwrap()
            .pred_opt()
            .unwrap()
            .min(r.last_date);
        let (mut mrr, mut paying) = (0.0, 0u64);
        for evs in r.customers.values() {
            let mut current = None;
            for e in evs.iter().filter(|e| e.date() <= end) {
                match e.event_type.as_str() {
                    "purchase" | "subscription_renewed" => {
                        let (_, _, revenue, _, _) = e.revenue.as_ref().unwrap();
                        let months = months_of(e.prop("billing_period").unwrap());
                        current = Some(revenue / f64::from(months));
                    }
                    "subscription_canceled" => current = None,
                    _ => {}
                }
            }
            if let Some(x) = current {
                mrr += x;
                paying += 1;
            }
        }
        assert_eq!(m.paying, paying, "{}: paying subscriptions", m.month);
        assert!(
            (m.mrr - mrr).abs() < 1e-6 * mrr.max(1.0),
            "{}: the report's MRR {} ≠ the revenue events' {mrr}",
            m.month,
            m.mrr
        );
    }
    assert!(
        series.last().unwrap().mrr > series[0].mrr,
        "MRR does not grow"
    );
    let row = r.report.row("mrr_last_day").unwrap();
    assert_eq!(row.measured, series.last().unwrap().mrr);
    for key in ["mrr_mismatch", "period_use_mismatch"] {
        let row = r.report.row(key).unwrap();
        assert!(
            row.status == RowStatus::Pass && row.sample > 100,
            "{key}\n{}",
            r.report.to_table()
        );
    }
}

#[test]
fn churn_and_expansion_depend_on_use_as_the_model_says() {
    let r = run();
    let median = r.engine.scenario().lifecycle.active_days_per_week;
    // From the events: monthly plans' renewal decisions by the period's use.
    let mut by_use = [(0u64, 0u64); 2];
    for evs in r.customers.values() {
        let mut period_start = None;
        for e in billing(evs) {
            let monthly = e.prop("billing_period") == Some("monthly");
            match e.event_type.as_str() {
                "purchase" => period_start = Some(e.date()),
                "subscription_renewed" | "subscription_canceled" => {
                    if let (true, Some(start)) = (monthly, period_start) {
                        let days = (e.date() - start).num_days() as f64;
                        let active = e.int("period_active_days") as f64;
                        let high = usize::from(active * 7.0 / days >= median);
                        by_use[high].0 += 1;
                        by_use[high].1 += u64::from(e.event_type == "subscription_canceled");
                    }
                    period_start = Some(e.date());
                }
                _ => {}
            }
        }
    }
    let rate = |(n, c): (u64, u64)| c as f64 / n as f64;
    let (lo, hi) = (rate(by_use[0]), rate(by_use[1]));
    let se = (lo * (1.0 - lo) / by_use[0].0 as f64 + hi * (1.0 - hi) / by_use[1].0 as f64).sqrt();
    assert!(
        lo - hi > 3.0 * se,
        "low-use churn {lo:.4} (n {}) is not above high-use churn {hi:.4} (n {}) by 3 SE {se:.4}",
        by_use[0].0,
        by_use[1].0
    );
    // And the report's lifecycle rows hold against the model's chances.
    for key in [
        "churn_monthly",
        "churn_monthly_low_use",
        "churn_monthly_high_use",
        "churn_annual",
        "expansion",
        "contraction",
        "nrr_monthly",
        "nrr_annual",
    ] {
        let row = r
            .report
            .row(key)
            .unwrap_or_else(|| panic!("no row {key}\n{}", r.report.to_table()));
        let holds = row.sample > 0
            && match row.status {
                RowStatus::Pass => true,
                RowStatus::Insufficient => (row.measured - row.target).abs() <= row.tolerance,
                RowStatus::Fail | RowStatus::Info => false,
            };
        assert!(holds, "row {key} does not hold\n{}", r.report.to_table());
    }
    let low = r.report.row("churn_monthly_low_use").unwrap();
    let high = r.report.row("churn_monthly_high_use").unwrap();
    assert!(
        low.target > 2.0 * high.target,
        "the model's churn hardly depends on use"
    );
}

#[test]
fn paying_customers_keep_using_the_product() {
    let r = run();
    // Of the customers who bought in the range at least five weeks before the end and still
    // paid four weeks later, the share with in-app events in week 4 after the purchase.
    let (mut n, mut active) = (0, 0);
    for evs in r.customers.values() {
        let Some(p) = evs.iter().find(|e| e.event_type == "purchase") else {
            continue;
        };
        let bought = p.date();
        if bought + chrono::Duration::days(35) > r.last_date {
            continue;
        }
        let churned_by = evs.iter().any(|e| {
            e.event_type == "subscription_canceled" && (e.date() - bought).num_days() < 35
        });
        if churned_by {
            continue;
        }
        n += 1;
        active += usize::from(evs.iter().any(|e| {
            let d = (e.date() - bought).num_days();
            (28..35).contains(&d) && e.session_id != -1
        }));
    }
    assert!(n > 200, "too few customers: {n}");
    let share = active as f64 / n as f64;
    assert!(
        share > 0.75,
        "only {share:.3} of {n} customers active in week 4"
    );
}

#[test]
fn lifecycle_settings_are_validated_with_their_key_paths() {
    let cases = [
        (
            "[lifecycle]\nactive_days_per_week = 9.0\n",
            "lifecycle.active_days_per_week",
        ),
        (
            "[lifecycle.monthly]\nchurn = 1.5\n",
            "lifecycle.monthly.churn",
        ),
        (
            "[lifecycle.annual]\nexpansion_share = [0.5, 0.1]\n",
            "lifecycle.annual.expansion_share",
        ),
    ];
    for (toml, path) in cases {
        let err = Scenario::from_toml(toml).expect_err(toml);
        assert!(
            err.to_string().contains(path),
            "{toml}: error {err} does not name {path}"
        );
    }
    let mut s = Scenario::default_scenario();
    s.products[0].billing_period = "weekly".into();
    let err = s.validate().expect_err("weekly billing");
    assert!(
        err.to_string().contains("products[0].billing_period"),
        "{err}"
    );
    let mut s = Scenario::default_scenario();
    s.accounts.size_bands[1].seats = [0, 3];
    let err = s.validate().expect_err("zero seats");
    assert!(
        err.to_string().contains("accounts.size_bands[1].seats"),
        "{err}"
    );
}
