//! Real time and a real population, checked from the rendered event stream of one default year
//! (scale 0.01): sessions follow each city's local hours through daylight saving time, the week
//! shapes returning visits as well as arrivals, public holidays and the year-end lull dip
//! traffic where they apply, and the site grows.

use ampsim_engine::memory::MemorySim;
use ampsim_engine::{Engine, Scenario, SimConfig};
use chrono::{Datelike, NaiveDate, TimeZone, Timelike, Weekday};
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// One session, as the stream shows it.
struct Session {
    /// Its start (the session_id) and its last event, ms.
    start: i64,
    end: i64,
    city: String,
    /// The device had a session before.
    returning: bool,
    /// The device (index in first-seen order).
    device: u32,
    /// Page-level events (page views, searches, button clicks).
    events: u32,
    /// The landing page's path.
    landing: String,
    /// `utm_source/utm_medium` and `utm_campaign` (empty for none).
    source: String,
    campaign: String,
    /// Browser, its version and the device model.
    browser: String,
    version: String,
    model: String,
}

/// A string event property.
fn prop<'a>(e: &'a ampsim_engine::render::Event<'_>, key: &str) -> &'a str {
    e.event_properties
        .iter()
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| match v {
            ampsim_engine::render::Prop::Str(s) => Some(s.as_ref()),
            _ => None,
        })
        .unwrap_or("")
}

/// Page-level events: what a session is made of.
fn page_level(event_type: &str) -> bool {
    matches!(
        event_type,
        "page_view" | "pricing_page_view" | "features_page_view" | "search" | "button_click"
    )
}

struct Year {
    scenario: Scenario,
    sessions: Vec<Session>,
    /// `trial_converted` and `trial_expired` events of the first week.
    trials_ending_in_week_one: u32,
    /// Milliseconds between consecutive page-level events of a session.
    gaps_ms: Vec<i64>,
    /// Every user id with its country.
    users: BTreeMap<String, String>,
}

const START: (i32, u32, u32) = (2025, 1, 1);

fn year() -> &'static Year {
    static YEAR: OnceLock<Year> = OnceLock::new();
    YEAR.get_or_init(|| {
        let cfg = SimConfig {
            scenario: Scenario::from_toml("").unwrap(),
            seed: 15,
            start_date: NaiveDate::from_ymd_opt(START.0, START.1, START.2).unwrap(),
            population_scale: 0.01,
        };
        let mut sim = MemorySim::new(Engine::new(cfg.clone()));
        // (device id, session id) seen -> index of the session, and devices with a session.
        let mut seen: std::collections::HashMap<(String, i64), usize> = Default::default();
        let mut devices: std::collections::HashMap<String, u32> = Default::default();
        let mut sessions: Vec<Session> = Vec::new();
        let mut trials_ending_in_week_one = 0;
        let mut gaps_ms = Vec::new();
        let mut users = BTreeMap::new();
        // The time of each session's last page-level event so far.
        let mut last: std::collections::HashMap<usize, i64> = Default::default();
        for day in 0..365 {
            let out = sim.step();
            for e in sim.engine.render_day(&out) {
                if day < 7 && matches!(e.event_type, "trial_converted" | "trial_expired") {
                    trials_ending_in_week_one += 1;
                }
                if let Some(u) = &e.user_id {
                    users
                        .entry(u.clone())
                        .or_insert_with(|| e.country.to_string());
                }
                if e.session_id < 0 {
                    continue;
                }
                let key = (e.device_id.clone(), e.session_id);
                let index = match seen.get(&key) {
                    Some(&i) => i,
                    None => {
                        let n = devices.len() as u32;
                        let returning = devices.contains_key(&e.device_id);
                        let device = *devices.entry(e.device_id.clone()).or_insert(n);
                        sessions.push(Session {
                            start: e.session_id,
                            end: e.time,
                            city: e.city.to_string(),
                            returning,
                            device,
                            events: 0,
                            landing: prop(&e, "page_path").to_string(),
                            source: format!(
                                "{}/{}",
                                prop(&e, "utm_source"),
                                prop(&e, "utm_medium")
                            ),
                            campaign: prop(&e, "utm_campaign").to_string(),
                            browser: e.os_name.to_string(),
                            version: e.os_version.to_string(),
                            model: format!("{} {}", e.device_manufacturer, e.device_model),
                        });
                        seen.insert(key, sessions.len() - 1);
                        sessions.len() - 1
                    }
                };
                sessions[index].end = e.time;
                if page_level(e.event_type) {
                    sessions[index].events += 1;
                    // The stream interleaves devices: the previous event of this session.
                    if let Some(t) = last.insert(index, e.time) {
                        gaps_ms.push(e.time - t);
                    }
                }
            }
        }
        Year {
            scenario: cfg.scenario,
            sessions,
            trials_ending_in_week_one,
            gaps_ms,
            users,
        }
    })
}

fn utc_date(ms: i64) -> NaiveDate {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .date_naive()
}

fn d(m: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2025, m, day).unwrap()
}

fn tz_of(y: &Year, city: &str) -> chrono_tz::Tz {
    let g = y
        .scenario
        .geography
        .iter()
        .find(|g| g.city == city)
        .unwrap();
    g.time_zone.parse().unwrap()
}

/// Every city's sessions start in its local office hours: the busiest local hour is between 9
/// and 16 on working days, and fewer than 8% start between midnight and 6 am local time.
#[test]
fn sessions_follow_each_citys_local_hours() {
    let y = year();
    let mut by_city: BTreeMap<&str, [u32; 24]> = BTreeMap::new();
    for s in &y.sessions {
        let local = tz_of(y, &s.city).timestamp_millis_opt(s.start).unwrap();
        if local.weekday().num_days_from_monday() < 5 {
            by_city.entry(&s.city).or_default()[local.hour() as usize] += 1;
        }
    }
    assert_eq!(
        by_city.len(),
        y.scenario.geography.len(),
        "every city has sessions"
    );
    for (city, hours) in &by_city {
        let total: u32 = hours.iter().sum();
        assert!(total > 1000, "{city}: {total} sessions");
        let peak = (0..24).max_by_key(|&h| hours[h]).unwrap();
        assert!(
            (9..=16).contains(&peak),
            "{city}: busiest local hour {peak}: {hours:?}"
        );
        let night: u32 = hours[..6].iter().sum();
        assert!(
            f64::from(night) / f64::from(total) < 0.08,
            "{city}: {night} of {total} sessions between 0 and 6 local"
        );
    }
    // Daylight saving time moves New York's sessions by an hour in UTC, not in local time.
    let ny = tz_of(y, "New York");
    let mean_hour = |month: u32, local: bool| {
        let (mut sum, mut n) = (0.0, 0.0);
        for s in y.sessions.iter().filter(|s| s.city == "New York") {
            let t = chrono::DateTime::from_timestamp_millis(s.start).unwrap();
            if t.month() == month && t.weekday().num_days_from_monday() < 5 {
                // UTC hours from 6 to 29: New York's night is the wrap, not its working day.
                sum += f64::from(if local {
                    t.with_timezone(&ny).hour()
                } else {
                    (t.hour() + 18) % 24 + 6
                });
                n += 1.0;
            }
        }
        sum / n
    };
    let (jan_utc, jul_utc) = (mean_hour(1, false), mean_hour(7, false));
    let (jan_local, jul_local) = (mean_hour(1, true), mean_hour(7, true));
    // The UTC shift beyond the local one is the hour DST moves (local hours may differ a
    // little between the months by chance and season; the assert below bounds that).
    assert!(
        ((jan_utc - jul_utc) - (jan_local - jul_local) - 1.0).abs() < 0.35,
        "UTC {jan_utc} vs {jul_utc}; local {jan_local} vs {jul_local}"
    );
    assert!(
        (jan_local - jul_local).abs() < 0.35,
        "local {jan_local} vs {jul_local}"
    );
}

/// Weekends dip for returning visitors as for new ones.
#[test]
fn the_week_shapes_returning_sessions_too() {
    let y = year();
    let mut per_day: BTreeMap<NaiveDate, [u32; 2]> = BTreeMap::new();
    for s in &y.sessions {
        per_day.entry(utc_date(s.start)).or_default()[usize::from(s.returning)] += 1;
    }
    // Weeks 10-40: past the first weeks, before the year-end.
    for returning in [false, true] {
        let (mut mid, mut weekend) = (Vec::new(), Vec::new());
        for (date, n) in per_day.range(d(3, 10)..d(10, 6)) {
            let n = f64::from(n[usize::from(returning)]);
            match date.weekday() {
                Weekday::Tue | Weekday::Wed | Weekday::Thu => mid.push(n),
                Weekday::Sat | Weekday::Sun => weekend.push(n),
                _ => {}
            }
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let ratio = mean(&weekend) / mean(&mid);
        assert!(
            ratio < 0.7,
            "{} sessions: weekend/mid-week {ratio:.2}",
            if returning { "returning" } else { "new" }
        );
    }
}

/// Sessions of a country's cities on its public holidays, against the same weekday a week
/// before and after; and every city's sessions in the year-end lull against early December.
#[test]
fn holidays_and_the_year_end_dip_where_they_apply() {
    let y = year();
    let country = |city: &str| {
        y.scenario
            .geography
            .iter()
            .find(|g| g.city == city)
            .unwrap()
            .country_code
            .clone()
    };
    // Per country and local date.
    let mut per: BTreeMap<(String, NaiveDate), u32> = BTreeMap::new();
    for s in &y.sessions {
        let local = tz_of(y, &s.city)
            .timestamp_millis_opt(s.start)
            .unwrap()
            .date_naive();
        *per.entry((country(&s.city), local)).or_default() += 1;
    }
    let n = |c: &str, date: NaiveDate| f64::from(*per.get(&(c.to_string(), date)).unwrap_or(&0));
    for (c, holiday) in [
        ("US", d(5, 26)),  // Memorial Day
        ("US", d(11, 27)), // Thanksgiving
        ("GB", d(4, 21)),  // Easter Monday
        ("DE", d(10, 3)),  // Tag der Deutschen Einheit (a Friday)
        ("FR", d(7, 14)),  // Fête nationale
    ] {
        let week = chrono::Duration::days(7);
        let around = (n(c, holiday - week) + n(c, holiday + week)) / 2.0;
        let ratio = n(c, holiday) / around;
        assert!(around > 25.0, "{c} {holiday}: {around} sessions around");
        assert!(
            ratio < 0.6,
            "{c} {holiday}: {ratio:.2} of the same weekday around it"
        );
    }
    // A holiday of one country is an ordinary day elsewhere.
    // (Countries without a holiday on US Memorial Day 2025: the UK has a bank holiday then.)
    let others = |date: NaiveDate| {
        ["DE", "FR", "NL", "IN", "AU", "CA", "ES", "SE"]
            .iter()
            .map(|c| n(c, date))
            .sum::<f64>()
    };
    let elsewhere = others(d(5, 26)) / ((others(d(5, 19)) + others(d(6, 2))) / 2.0);
    assert!(
        elsewhere > 0.85,
        "other countries on US Memorial Day: {elsewhere:.2}"
    );
    // The year-end lull, everywhere.
    let all = |from: NaiveDate, to: NaiveDate| {
        y.sessions
            .iter()
            .filter(|s| (from..=to).contains(&utc_date(s.start)))
            .count() as f64
            / ((to - from).num_days() + 1) as f64
    };
    let lull = all(d(12, 26), d(12, 30));
    let december = all(d(12, 1), d(12, 12));
    assert!(
        lull / december < 0.65,
        "year-end {lull:.0}/day vs early December {december:.0}/day"
    );
}

/// The site existed before the start date (the warm start): the first two weeks already have
/// the steady volume of sessions, returning visitors included (a site launch would show a
/// climb over weeks), and trials started before day 1 end in week one.
#[test]
fn the_first_weeks_are_already_in_steady_state() {
    let y = year();
    let per_day = |from: NaiveDate, to: NaiveDate| {
        y.sessions
            .iter()
            .filter(|s| (from..to).contains(&utc_date(s.start)))
            .count() as f64
            / (to - from).num_days() as f64
    };
    // Two whole weeks each (Monday to Sunday), past the new year's holiday and lull.
    let first = per_day(d(1, 6), d(1, 20));
    let later = per_day(d(2, 3), d(2, 17));
    let ratio = first / later;
    assert!(
        (0.92..1.04).contains(&ratio),
        "sessions a day: January 6-19 {first:.0}, February 3-16 {later:.0} ({ratio:.3})"
    );
    assert!(
        y.trials_ending_in_week_one > 0,
        "trials in flight at the start end in the first week"
    );
}

/// The site grows: first visits in October and November against February and March.
#[test]
fn the_site_grows_over_the_year() {
    let y = year();
    let new_in = |months: [u32; 2]| {
        y.sessions
            .iter()
            .filter(|s| !s.returning && months.contains(&utc_date(s.start).month()))
            .count() as f64
    };
    let ratio = new_in([10, 11]) / new_in([2, 3]);
    // 20% a year: about 14% over eight months, less the holidays of November.
    assert!(
        (1.07..1.25).contains(&ratio),
        "first visits Oct-Nov / Feb-Mar: {ratio:.3}"
    );
}

/// The `q` quantile of sorted values.
fn quantile<T: Copy>(sorted: &[T], q: f64) -> T {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

#[test]
fn sessions_have_a_heavy_tail_of_events() {
    let y = year();
    let mut n: Vec<u32> = y.sessions.iter().map(|s| s.events).collect();
    n.sort_unstable();
    let share =
        |f: &dyn Fn(u32) -> bool| n.iter().filter(|&&x| f(x)).count() as f64 / n.len() as f64;
    let one = share(&|x| x == 1);
    let over_15 = share(&|x| x > 15);
    let over_50 = share(&|x| x > 50);
    let mean = n.iter().map(|&x| f64::from(x)).sum::<f64>() / n.len() as f64;
    // Mode at one event, a median of 2-3, and a long smooth tail (lognormal, median 2, sigma
    // 1.3: 30% single-event, 6% over 15, 0.7% over 50), no cap at 15.
    assert!((0.26..0.34).contains(&one), "single-event sessions {one}");
    assert!(
        (2..=3).contains(&quantile(&n, 0.5)),
        "median {}",
        quantile(&n, 0.5)
    );
    assert!((0.04..0.09).contains(&over_15), "over 15 events {over_15}");
    assert!(
        (0.003..0.012).contains(&over_50),
        "over 50 events {over_50}"
    );
    assert!((4.0..6.5).contains(&mean), "mean events {mean}");
    // Smooth: counts fall off from each length to the next, without plateaus.
    let count = |k: u32| n.iter().filter(|&&x| x == k).count();
    for k in 1..15 {
        assert!(
            count(k) > count(k + 1),
            "{k} events: {} vs {} at {}",
            count(k),
            count(k + 1),
            k + 1
        );
    }
}

#[test]
fn gaps_between_events_are_weibull_like() {
    let mut g = year().gaps_ms.clone();
    g.sort_unstable();
    assert!(g.len() > 100_000, "{} gaps", g.len());
    let secs = |ms: i64| ms as f64 / 1000.0;
    let median = secs(quantile(&g, 0.5));
    let mean = g.iter().map(|&x| secs(x)).sum::<f64>() / g.len() as f64;
    // Weibull(scale 45 s, shape 0.7): median 27 s, mean 57 s; short gaps are common and a few
    // last over 10 minutes (no floor at 4 s, no ceiling at 240 s).
    assert!((22.0..33.0).contains(&median), "median gap {median} s");
    assert!((48.0..66.0).contains(&mean), "mean gap {mean} s");
    let short = g.iter().filter(|&&x| x < 4_000).count() as f64 / g.len() as f64;
    let long = g.iter().filter(|&&x| x > 600_000).count() as f64 / g.len() as f64;
    assert!((0.08..0.2).contains(&short), "gaps under 4 s: {short}");
    assert!((0.0005..0.005).contains(&long), "gaps over 10 min: {long}");
    assert!(
        secs(*g.last().unwrap()) <= 1800.0,
        "a gap beyond the session timeout"
    );
}

#[test]
fn returns_have_a_long_tail_of_months() {
    let y = year();
    // Each device's session days, in order.
    let mut by_device: BTreeMap<u32, Vec<i64>> = BTreeMap::new();
    for s in &y.sessions {
        by_device
            .entry(s.device)
            .or_default()
            .push(s.start / 86_400_000);
    }
    let mut delays: Vec<i64> = by_device
        .values()
        .flat_map(|d| d.windows(2).map(|w| w[1] - w[0]))
        .collect();
    delays.sort_unstable();
    let share = |f: &dyn Fn(i64) -> bool| {
        delays.iter().filter(|&&x| f(x)).count() as f64 / delays.len() as f64
    };
    let within_3 = share(&|x| x <= 3);
    let over_30 = share(&|x| x > 30);
    let over_90 = share(&|x| x > 90);
    // Mixed over the tiers and trials (trialists return within days): about a third of returns
    // within 3 days, several percent after a month and some after three months.
    assert!(
        (0.3..0.55).contains(&within_3),
        "returns within 3 days {within_3}"
    );
    assert!(
        (0.03..0.09).contains(&over_30),
        "returns after 30 days {over_30}"
    );
    assert!(
        (0.002..0.015).contains(&over_90),
        "returns after 90 days {over_90}"
    );
    assert!(
        *delays.last().unwrap() > 150,
        "longest return {} days",
        delays.last().unwrap()
    );
}

/// A device may come back later the same day (a second session at least Amplitude's 30-minute
/// timeout after the first ended, two hours later in the median), and a session that runs past
/// midnight keeps its session_id: its events after midnight are the next day's events.
#[test]
fn several_sessions_a_day_and_sessions_across_midnight() {
    let y = year();
    let mut by_device: BTreeMap<u32, Vec<&Session>> = BTreeMap::new();
    for s in &y.sessions {
        by_device.entry(s.device).or_default().push(s);
    }
    let day = |ms: i64| ms.div_euclid(86_400_000);
    let mut later_same_day = 0usize;
    let mut gaps_min: Vec<f64> = Vec::new();
    for list in by_device.values_mut() {
        list.sort_by_key(|s| s.start);
        for w in list.windows(2) {
            // Never overlapping, never closer than the session timeout.
            let gap = w[1].start - w[0].end;
            assert!(gap >= 30 * 60_000, "sessions {} ms apart", gap);
            if day(w[1].start) == day(w[0].start) {
                later_same_day += 1;
                gaps_min.push(gap as f64 / 60_000.0);
            }
        }
    }
    let share = later_same_day as f64 / y.sessions.len() as f64;
    // About 41% of sessions are returns and 15% of returns are meant for the same day (fewer
    // fit before midnight): about 5% of sessions are a device's second or later of its day.
    assert!(
        (0.03..0.08).contains(&share),
        "later same-day sessions {share}"
    );
    gaps_min.sort_by(f64::total_cmp);
    let median = quantile(&gaps_min, 0.5);
    assert!(
        (75.0..180.0).contains(&median),
        "median same-day gap {median} min"
    );
    // Sessions across midnight: the stream shows their events on both days under one id.
    let crossing: Vec<&Session> = y
        .sessions
        .iter()
        .filter(|s| day(s.end) != day(s.start))
        .collect();
    let share = crossing.len() as f64 / y.sessions.len() as f64;
    assert!(
        (0.0005..0.02).contains(&share),
        "sessions across midnight {share}"
    );
    assert!(crossing.iter().all(|s| day(s.end) == day(s.start) + 1));
}

/// Shares of the values of `key` among `sessions`, largest first.
fn shares<'a>(
    sessions: impl Iterator<Item = &'a Session>,
    key: impl Fn(&Session) -> &str,
) -> Vec<(String, f64)> {
    let mut n: BTreeMap<String, u32> = BTreeMap::new();
    let mut total = 0;
    for s in sessions {
        *n.entry(key(s).to_string()).or_default() += 1;
        total += 1;
    }
    let mut v: Vec<(String, f64)> = n
        .into_iter()
        .map(|(k, c)| (k, f64::from(c) / f64::from(total)))
        .collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1));
    v
}

fn share_of(v: &[(String, f64)], key: &str) -> f64 {
    v.iter().find(|(k, _)| k == key).map_or(0.0, |(_, x)| *x)
}

#[test]
fn browser_versions_advance_during_the_year() {
    let y = year();
    let chrome_in = |from: NaiveDate, to: NaiveDate| {
        shares(
            y.sessions.iter().filter(|s| {
                let d = utc_date(s.start);
                s.browser == "Chrome" && d >= from && d <= to
            }),
            |s| &s.version,
        )
    };
    // Chrome ships every 4 weeks (131 on 2024-11-12); devices update within 3 weeks, so in a
    // week the versions seen are those released from 3 weeks before it to its end, and two
    // overlap.
    let chrome_131 = NaiveDate::from_ymd_opt(2024, 11, 12).unwrap();
    let released = |date: NaiveDate| 131 + (date - chrome_131).num_days().div_euclid(28);
    assert_eq!(released(d(1, 6)), 132);
    assert_eq!(released(d(1, 7)), 133);
    for (from, to) in [
        (d(1, 13), d(1, 19)),
        (d(6, 2), d(6, 8)),
        (d(12, 15), d(12, 21)),
    ] {
        let seen = chrome_in(from, to);
        let allowed = released(from - chrono::Duration::days(21))..=released(to);
        assert!(seen.len() >= 2, "{from}: {seen:?}");
        for (v, _) in &seen {
            let v: i64 = v.parse().unwrap();
            assert!(
                allowed.contains(&v),
                "{from}: version {v} outside {allowed:?}"
            );
        }
    }
    let top = |from, to| chrome_in(from, to)[0].0.parse::<i64>().unwrap();
    assert!(top(d(12, 15), d(12, 21)) - top(d(1, 13), d(1, 19)) >= 11);
    // Safari follows Apple's releases: 18.x in spring, 26.x at the end of the year.
    let safari = |from, to| {
        shares(
            y.sessions.iter().filter(|s| {
                let dt = utc_date(s.start);
                s.browser == "Safari" && dt >= from && dt <= to
            }),
            |s| &s.version,
        )
    };
    assert!(safari(d(5, 1), d(5, 31))[0].0.starts_with("18."));
    assert!(safari(d(12, 1), d(12, 31))[0].0.starts_with("26."));
}

#[test]
fn android_devices_are_many_models() {
    let y = year();
    let models = shares(
        y.sessions.iter().filter(|s| s.browser == "Chrome Mobile"),
        |s| &s.model,
    );
    assert!(models.len() >= 10, "{models:?}");
    assert!(models[0].1 < 0.25, "{models:?}");
    assert!(models.iter().any(|(m, _)| m.starts_with("Google Pixel")));
}

#[test]
fn landing_pages_follow_the_source_and_campaign() {
    let y = year();
    // Website sessions (a trialist's product sessions start in the product, on no page).
    let landing = |f: &dyn Fn(&Session) -> bool| {
        shares(
            y.sessions.iter().filter(|s| !s.landing.is_empty() && f(s)),
            |s| &s.landing,
        )
    };
    let direct = landing(&|s| s.source == "direct/none");
    assert_eq!(direct[0].0, "/", "{direct:?}");
    assert!(direct[0].1 > 0.6, "{direct:?}");
    let organic = landing(&|s| s.source == "google/organic");
    let blog: f64 = organic
        .iter()
        .filter(|(p, _)| p.starts_with("/blog/"))
        .map(|(_, x)| x)
        .sum();
    assert!(blog > 0.45, "{organic:?}");
    // A campaign's ads link to one page.
    assert_eq!(
        landing(&|s| s.campaign == "brand_search"),
        [("/".to_string(), 1.0)]
    );
    assert_eq!(
        landing(&|s| s.campaign == "abm_enterprise"),
        [("/pricing/enterprise".to_string(), 1.0)]
    );
    // Paid traffic lands on pricing far more often than organic search does.
    let retargeting = landing(&|s| s.campaign == "retargeting_pricing");
    assert!(share_of(&retargeting, "/pricing") > 10.0 * share_of(&organic, "/pricing"));
}

#[test]
fn names_and_email_domains_fit_the_country() {
    let y = year();
    assert!(y.users.len() > 300, "{} users", y.users.len());
    let tld = |u: &str| {
        let domain = u.split('@').nth(1).unwrap();
        domain.split_once('.').unwrap().1.to_string()
    };
    let in_country = |c: &'static str| y.users.iter().filter(move |(_, k)| k.as_str() == c);
    let german: Vec<&String> = in_country("Germany").map(|(u, _)| u).collect();
    assert!(german.len() > 20, "{} German users", german.len());
    let de = german.iter().filter(|u| tld(u) == "de").count() as f64 / german.len() as f64;
    assert!(de > 0.55, ".de share of German users {de}");
    // A national domain belongs to its country: no .de, .co.uk or .co.jp address elsewhere.
    for (u, c) in &y.users {
        match tld(u).as_str() {
            "de" => assert!(c == "Germany", "{u} in {c}"),
            "co.uk" => assert_eq!(c, "United Kingdom", "{u}"),
            "co.jp" => assert_eq!(c, "Japan", "{u}"),
            _ => {}
        }
    }
    // Names are the country's: a German user is not called olivia.nguyen.
    let first = |u: &str| u.split('.').next().unwrap().to_string();
    let german_first: std::collections::BTreeSet<String> =
        german.iter().map(|u| first(u)).collect();
    let us_first: std::collections::BTreeSet<String> =
        in_country("United States").map(|(u, _)| first(u)).collect();
    assert!(
        german_first.contains("lukas")
            || german_first.contains("anna")
            || german_first.contains("felix"),
        "{german_first:?}"
    );
    assert!(
        german_first.intersection(&us_first).count() <= 3,
        "{german_first:?} vs {us_first:?}"
    );
}
