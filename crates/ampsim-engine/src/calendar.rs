//! Local time and the calendar: when each geography's visitors are online.
//!
//! Every geography has an IANA time zone (`chrono-tz`, so daylight saving time is the real
//! one) and a country whose public holidays the scenario lists. A geography's traffic on a
//! local date is the weekly curve's factor for its weekday, times the holiday factor on a
//! public holiday, times the factor of any seasonal lull (the year-end weeks); within the date
//! it follows the working-day or the weekend hour curve in local time (weekends and holidays
//! take the weekend shape). [`Calendar::day_shape`] turns that into, for one UTC day, each
//! geography's weight for each UTC hour: the engine draws a session's hour from it and accepts
//! a candidate arrival with the geography's share of the day's peak.

use crate::rng::Weighted;
use crate::scenario::{HolidayRule, Scenario};
use chrono::{Datelike, Duration, NaiveDate, TimeZone, Timelike, Weekday};
use chrono_tz::Tz;

/// A public holiday's rule, resolved from the scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    /// The same month and day every year.
    Fixed { month: u32, day: u32 },
    /// One date.
    Once(NaiveDate),
    /// The n-th (1-5) or, for `n = -1`, the last weekday of a month.
    Nth {
        month: u32,
        weekday: Weekday,
        n: i32,
    },
    /// Easter Sunday (Gregorian) plus `days`.
    Easter(i32),
    /// The weekday on or before (`before`) or on or after a month and day.
    Around {
        month: u32,
        day: u32,
        weekday: Weekday,
        before: bool,
    },
}

impl Rule {
    /// The rule's date in `year`, if it has one.
    fn date_in(self, year: i32) -> Option<NaiveDate> {
        match self {
            Rule::Fixed { month, day } => NaiveDate::from_ymd_opt(year, month, day),
            Rule::Once(d) => (d.year() == year).then_some(d),
            Rule::Nth { month, weekday, n } => {
                if n > 0 {
                    NaiveDate::from_weekday_of_month_opt(year, month, weekday, n as u8)
                } else {
                    let next = if month == 12 {
                        NaiveDate::from_ymd_opt(year + 1, 1, 1)
                    } else {
                        NaiveDate::from_ymd_opt(year, month + 1, 1)
                    }?;
                    let mut d = next.pred_opt()?;
                    while d.weekday() != weekday {
                        d = d.pred_opt()?;
                    }
                    Some(d)
                }
            }
            Rule::Easter(days) => easter(year).map(|e| e + Duration::days(i64::from(days))),
            Rule::Around {
                month,
                day,
                weekday,
                before,
            } => {
                let mut d = NaiveDate::from_ymd_opt(year, month, day)?;
                while d.weekday() != weekday {
                    d = if before { d.pred_opt()? } else { d.succ_opt()? };
                }
                Some(d)
            }
        }
    }
}

/// Gregorian Easter Sunday (the anonymous Gregorian algorithm, "Meeus/Jones/Butcher").
fn easter(year: i32) -> Option<NaiveDate> {
    let a = year % 19;
    let b = year / 100;
    let c = year % 100;
    let d = b / 4;
    let e = b % 4;
    let f = (b + 8) / 25;
    let g = (b - f + 1) / 3;
    let h = (19 * a + b - d - g + 15) % 30;
    let i = c / 4;
    let k = c % 4;
    let l = (32 + 2 * e + 2 * i - h - k) % 7;
    let m = (a + 11 * h + 22 * l) / 451;
    let month = (h + l - 7 * m + 114) / 31;
    let day = (h + l - 7 * m + 114) % 31 + 1;
    NaiveDate::from_ymd_opt(year, month as u32, day as u32)
}

/// Parses `mon`..`sun`.
pub fn parse_weekday(s: &str) -> Option<Weekday> {
    Some(match s {
        "mon" => Weekday::Mon,
        "tue" => Weekday::Tue,
        "wed" => Weekday::Wed,
        "thu" => Weekday::Thu,
        "fri" => Weekday::Fri,
        "sat" => Weekday::Sat,
        "sun" => Weekday::Sun,
        _ => return None,
    })
}

/// Parses `MM-DD` into (month, day), checking that the day exists in a leap year.
pub fn parse_month_day(s: &str) -> Option<(u32, u32)> {
    let (m, d) = s.split_once('-')?;
    if m.len() != 2 || d.len() != 2 {
        return None;
    }
    let (m, d) = (m.parse().ok()?, d.parse().ok()?);
    NaiveDate::from_ymd_opt(2024, m, d).map(|_| (m, d))
}

/// Resolves a scenario holiday into a rule.
///
/// # Errors
/// What is wrong with it (named for the scenario's validation).
pub fn resolve_rule(h: &HolidayRule) -> Result<(), String> {
    rule_of(h).map(|_| ())
}

fn rule_of(h: &HolidayRule) -> Result<Rule, String> {
    let weekday = |w: &str| {
        parse_weekday(w)
            .ok_or_else(|| format!("weekday {w:?}: want mon, tue, wed, thu, fri, sat or sun"))
    };
    let md =
        |s: &str| parse_month_day(s).ok_or_else(|| format!("{s:?}: want MM-DD, a day that exists"));
    let kinds = [
        h.date.is_some(),
        h.nth.is_some(),
        h.easter.is_some(),
        h.on_or_before.is_some(),
        h.on_or_after.is_some(),
    ];
    if kinds.iter().filter(|k| **k).count() != 1 {
        return Err(
            "give exactly one of date, nth (with month and weekday), easter, on_or_before or on_or_after (with weekday)"
                .into(),
        );
    }
    if let Some(d) = &h.date {
        if d.len() == 10 {
            return NaiveDate::parse_from_str(d, "%Y-%m-%d")
                .map(Rule::Once)
                .map_err(|_| format!("date {d:?}: want MM-DD or YYYY-MM-DD"));
        }
        let (month, day) = md(d)?;
        return Ok(Rule::Fixed { month, day });
    }
    if let Some(n) = h.nth {
        if !(n == -1 || (1..=5).contains(&n)) {
            return Err(format!("nth {n}: want 1 to 5, or -1 for the last"));
        }
        let month = h.month.ok_or("nth needs month (1-12)")?;
        if !(1..=12).contains(&month) {
            return Err(format!("month {month}: want 1 to 12"));
        }
        let wd = weekday(h.weekday.as_deref().ok_or("nth needs weekday")?)?;
        return Ok(Rule::Nth {
            month,
            weekday: wd,
            n,
        });
    }
    if let Some(e) = h.easter {
        if !(-100..=100).contains(&e) {
            return Err(format!("easter {e}: want an offset of at most 100 days"));
        }
        return Ok(Rule::Easter(e));
    }
    let (s, before) = match (&h.on_or_before, &h.on_or_after) {
        (Some(s), _) => (s, true),
        (_, Some(s)) => (s, false),
        _ => unreachable!("one kind is set"),
    };
    let (month, day) = md(s)?;
    let wd = weekday(
        h.weekday
            .as_deref()
            .ok_or("on_or_before/on_or_after needs weekday")?,
    )?;
    Ok(Rule::Around {
        month,
        day,
        weekday: wd,
        before,
    })
}

/// A seasonal lull: every geography's traffic times `factor` from one month-day to another
/// (inclusive; `to` before `from` wraps over the new year).
#[derive(Debug, Clone, Copy)]
struct Lull {
    from: (u32, u32),
    to: (u32, u32),
    factor: f64,
}

impl Lull {
    fn covers(&self, d: NaiveDate) -> bool {
        let md = (d.month(), d.day());
        if self.from <= self.to {
            self.from <= md && md <= self.to
        } else {
            md >= self.from || md <= self.to
        }
    }
}

/// The calendar of a scenario: time zones, holidays, lulls and the hour curves.
#[derive(Debug, Clone)]
pub struct Calendar {
    zones: Vec<Tz>,
    /// Per geography, the rules of its country's holidays.
    rules: Vec<Vec<Rule>>,
    /// Per geography, its holidays' dates in [`Calendar::years`], sorted: a lookup instead of
    /// evaluating every rule for each planned return.
    dates: Vec<Vec<NaiveDate>>,
    /// The years `dates` covers; other years evaluate the rules.
    years: std::ops::RangeInclusive<i32>,
    /// Working-day and weekend hour curves (local hours), each summing to 1.
    hours: [[f64; 24]; 2],
    /// Monday..Sunday factors, mean 1.
    weekly: [f64; 7],
    holiday_factor: f64,
    lulls: Vec<Lull>,
    /// An upper bound of any geography's weight over a UTC day ([`DayShape::total`]).
    bound: f64,
    /// The largest factor of a local date: the bound for accepting a return date.
    date_bound: f64,
}

/// One UTC day: per geography, the weight of each UTC hour and their total.
#[derive(Debug, Clone)]
pub struct DayShape {
    /// Per geography: the UTC hour of a session (a choice among 24).
    pub hours: Vec<Weighted>,
    /// Per geography: the day's total weight, in units where an ordinary working day is about
    /// its weekly factor.
    pub total: Vec<f64>,
}

impl Calendar {
    /// The calendar of a validated scenario, for a simulation starting in `start_year`.
    ///
    /// # Panics
    /// On a scenario that did not pass validation (an unknown time zone or a bad rule).
    pub fn new(s: &Scenario, start_year: i32) -> Calendar {
        let t = &s.traffic;
        let mean_week = t.weekly_curve.iter().sum::<f64>() / 7.0;
        let mut weekly = [1.0; 7];
        for (w, x) in weekly.iter_mut().zip(&t.weekly_curve) {
            *w = x / mean_week;
        }
        let norm = |curve: &[f64]| {
            let total: f64 = curve.iter().sum();
            let mut out = [0.0; 24];
            for (o, x) in out.iter_mut().zip(curve) {
                *o = x / total;
            }
            out
        };
        let hours = [norm(&t.weekday_hours), norm(&t.weekend_hours)];
        let lulls: Vec<Lull> = s
            .seasons
            .lulls
            .iter()
            .map(|l| Lull {
                from: parse_month_day(&l.from).expect("validated"),
                to: parse_month_day(&l.to).expect("validated"),
                factor: l.factor,
            })
            .collect();
        let max_lull = lulls.iter().map(|l| l.factor).fold(1.0, f64::max);
        let max_week = weekly.iter().copied().fold(0.0, f64::max);
        let peak_hours: f64 = (0..24).map(|h| hours[0][h].max(hours[1][h])).sum();
        let rules: Vec<Vec<Rule>> = s
            .geography
            .iter()
            .map(|g| {
                s.holidays
                    .get(&g.country_code)
                    .map(|hs| hs.iter().map(|h| rule_of(h).expect("validated")).collect())
                    .unwrap_or_default()
            })
            .collect();
        // Two years back (the longest warm start) to a dozen ahead of the start date.
        let years = start_year - 3..=start_year + 12;
        let dates = rules
            .iter()
            .map(|rs| {
                let mut v: Vec<NaiveDate> = years
                    .clone()
                    .flat_map(|y| rs.iter().filter_map(move |r| r.date_in(y)))
                    .collect();
                v.sort_unstable();
                v.dedup();
                v
            })
            .collect();
        Calendar {
            zones: s
                .geography
                .iter()
                .map(|g| g.time_zone.parse::<Tz>().expect("validated time zone"))
                .collect(),
            rules,
            dates,
            years,
            hours,
            weekly,
            holiday_factor: s.seasons.holiday_factor,
            lulls,
            bound: max_week * max_lull * peak_hours,
            date_bound: max_week * max_lull,
        }
    }

    /// Whether a date is a public holiday of a geography's country.
    pub fn is_holiday(&self, geo: usize, date: NaiveDate) -> bool {
        let y = date.year();
        if self.years.contains(&y) {
            self.dates[geo].binary_search(&date).is_ok()
        } else {
            self.rules[geo].iter().any(|r| r.date_in(y) == Some(date))
        }
    }

    /// A geography's traffic factor on a local date, and whether the date has the weekend
    /// shape (a Saturday, a Sunday or a public holiday).
    pub fn date_factor(&self, geo: usize, date: NaiveDate) -> (f64, bool) {
        let dow = date.weekday().num_days_from_monday() as usize;
        let holiday = self.is_holiday(geo, date);
        let mut f = self.weekly[dow];
        if holiday {
            f *= self.holiday_factor;
        }
        for l in &self.lulls {
            if l.covers(date) {
                f *= l.factor;
            }
        }
        (f, dow >= 5 || holiday)
    }

    /// The chance of keeping a return visit planned for `date` (a geography's factor on it
    /// relative to the largest any date can have): returns follow the week and the holidays
    /// as arrivals do.
    pub fn return_acceptance(&self, geo: usize, date: NaiveDate) -> f64 {
        self.date_factor(geo, date).0 / self.date_bound
    }

    /// An upper bound of [`DayShape::total`] over every geography and day.
    pub fn bound(&self) -> f64 {
        self.bound
    }

    /// The shape of the UTC day that starts at `day_start_ms`: each UTC hour of each geography
    /// weighted by the local date's factor and the local hour's share of that date.
    pub fn day_shape(&self, day_start_ms: i64) -> DayShape {
        let mut hours = Vec::with_capacity(self.zones.len());
        let mut total = Vec::with_capacity(self.zones.len());
        for (g, tz) in self.zones.iter().enumerate() {
            let mut w = [0.0; 24];
            let mut sum = 0.0;
            for (h, slot) in w.iter_mut().enumerate() {
                // The middle of the UTC hour, in local time.
                let ms = day_start_ms + h as i64 * 3_600_000 + 1_800_000;
                let local = tz
                    .timestamp_millis_opt(ms)
                    .single()
                    .expect("a UTC instant has one local time");
                let (f, weekend) = self.date_factor(g, local.date_naive());
                *slot = f * self.hours[usize::from(weekend)][local.hour() as usize];
                sum += *slot;
            }
            hours.push(if sum > 0.0 {
                Weighted::new(w)
            } else {
                Weighted::new([1.0; 24])
            });
            total.push(sum);
        }
        DayShape { hours, total }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn rules_give_the_published_dates() {
        // Easter Sunday: 2024-03-31, 2025-04-20, 2026-04-05 (a known table).
        assert_eq!(easter(2024), Some(d(2024, 3, 31)));
        assert_eq!(easter(2025), Some(d(2025, 4, 20)));
        assert_eq!(easter(2026), Some(d(2026, 4, 5)));
        // Good Friday 2025, Whit Monday 2025.
        assert_eq!(Rule::Easter(-2).date_in(2025), Some(d(2025, 4, 18)));
        assert_eq!(Rule::Easter(50).date_in(2025), Some(d(2025, 6, 9)));
        // US Thanksgiving (4th Thursday of November) and Memorial Day (last Monday of May).
        let thanksgiving = Rule::Nth {
            month: 11,
            weekday: Weekday::Thu,
            n: 4,
        };
        assert_eq!(thanksgiving.date_in(2025), Some(d(2025, 11, 27)));
        let memorial = Rule::Nth {
            month: 5,
            weekday: Weekday::Mon,
            n: -1,
        };
        assert_eq!(memorial.date_in(2025), Some(d(2025, 5, 26)));
        assert_eq!(memorial.date_in(2024), Some(d(2024, 5, 27)));
        // Canada's Victoria Day: the Monday on or before May 24.
        let victoria = Rule::Around {
            month: 5,
            day: 24,
            weekday: Weekday::Mon,
            before: true,
        };
        assert_eq!(victoria.date_in(2025), Some(d(2025, 5, 19)));
        // Sweden's Midsummer Eve: the Friday on or after June 19.
        let midsummer = Rule::Around {
            month: 6,
            day: 19,
            weekday: Weekday::Fri,
            before: false,
        };
        assert_eq!(midsummer.date_in(2025), Some(d(2025, 6, 20)));
        assert_eq!(Rule::Once(d(2025, 1, 29)).date_in(2026), None);
    }

    #[test]
    fn the_default_calendar_follows_local_time_and_holidays() {
        let s = Scenario::default_scenario();
        let cal = Calendar::new(&s, 2025);
        // The precomputed years and the rules agree.
        let far = Calendar::new(&s, 1990);
        for day in 0..400 {
            let date = d(2025, 1, 1) + Duration::days(day);
            for g in 0..s.geography.len() {
                assert_eq!(cal.is_holiday(g, date), far.is_holiday(g, date), "{date}");
            }
        }
        let geo = |city: &str| s.geography.iter().position(|g| g.city == city).unwrap();
        let (sf, sydney) = (geo("San Francisco"), geo("Sydney"));
        // Memorial Day is a holiday in San Francisco, not in Sydney.
        assert!(cal.is_holiday(sf, d(2025, 5, 26)));
        assert!(!cal.is_holiday(sydney, d(2025, 5, 26)));
        // Tuesday 2025-03-04 UTC: San Francisco's busiest UTC hours are its local working
        // hours (UTC-8: 17-01 UTC), Sydney's are the early UTC hours (UTC+11: 22-06 UTC).
        let day = d(2025, 3, 4)
            .and_hms_opt(0, 0, 0)
            .unwrap()
            .and_utc()
            .timestamp_millis();
        let shape = cal.day_shape(day);
        let busiest = |g: usize| {
            let mut counts = [0u32; 24];
            let mut rng = crate::rng::KeyedRng::new(1, 0, g as u64, crate::rng::Purpose::Session);
            for _ in 0..20_000 {
                counts[shape.hours[g].pick(&mut rng)] += 1;
            }
            (0..24).max_by_key(|&h| counts[h]).unwrap()
        };
        let sf_peak = busiest(sf);
        assert!((17..=23).contains(&sf_peak) || sf_peak == 0, "{sf_peak}");
        let syd_peak = busiest(sydney);
        assert!(syd_peak <= 6 || syd_peak >= 22, "{syd_peak}");
        assert!(shape.total.iter().all(|&t| t <= cal.bound()));
    }
}
