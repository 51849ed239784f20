//! The report as one self-contained HTML page (`ampsim report --html FILE`): the acceptance
//! table and charts of the report's series, drawn as inline SVG with plotters' SVG backend. The
//! page fetches nothing (no scripts, fonts or style sheets from elsewhere) and is well-formed
//! XML (XHTML syntax), so that a test can parse it.

use ampsim_engine::report::{Report, RowStatus, Series, RETENTION_WEEKS};
use chrono::{Days, NaiveDate};
use plotters::coord::Shift;
use plotters::prelude::*;

/// What a chart could not draw (a plotters drawing error, as text).
#[derive(Debug, thiserror::Error)]
#[error("drawing the {chart} chart: {message}")]
pub struct ChartError {
    chart: &'static str,
    message: String,
}

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

const WIDTH: u32 = 960;
const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

/// The page of `report`, titled with `title` (the simulation's id).
///
/// # Errors
/// [`ChartError`] if a chart cannot be drawn (a bug: the series come from the report).
pub fn render(report: &Report, title: &str) -> Result<String, ChartError> {
    let s = &report.series;
    let mut page = String::with_capacity(256 * 1024);
    page.push_str("<!DOCTYPE html>\n<html xmlns=\"http://www.w3.org/1999/xhtml\" lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n");
    page.push_str(&format!(
        "<title>ampsim report: {}</title>\n",
        escape(title)
    ));
    page.push_str(STYLE);
    page.push_str("</head>\n<body>\n");
    page.push_str(&format!(
        "<h1>ampsim report: {}</h1>\n<p class=\"meta\">{} days from {} at population scale {} &#8212; <strong>{}</strong></p>\n",
        escape(title),
        report.days,
        escape(&s.first_date),
        report.population_scale,
        escape(&report.verdict())
    ));

    page.push_str("<h2>Daily sessions by channel</h2>\n");
    page.push_str(&chart("sessions", 380, |a| daily_sessions(a, s))?);
    page.push_str("<h2>Funnel: visited &#8594; identified &#8594; trial &#8594; paid</h2>\n");
    page.push_str(&chart("funnel", 340, |a| funnel(a, s))?);
    page.push_str(&format!(
        "<h2>Weekly retention (share of each weekly cohort with a session in week 0&#8211;{RETENTION_WEEKS})</h2>\n"
    ));
    let rows = s.retention.len().max(1) as u32;
    page.push_str(&chart("retention", (120 + 14 * rows).min(820), |a| {
        retention(a, s)
    })?);
    page.push_str("<h2>Trial &#8594; paid by path and by activation level</h2>\n");
    page.push_str(&chart("conversion", 340, |a| conversion(a, s))?);
    page.push_str("<h2>Monthly recurring revenue (from the revenue events)</h2>\n");
    page.push_str(&chart("mrr", 340, |a| mrr(a, s))?);

    page.push_str("<h2>Acceptance table</h2>\n");
    page.push_str(&table(report));
    page.push_str("</body>\n</html>\n");
    Ok(page)
}

const STYLE: &str = "<style>\nbody{font-family:sans-serif;margin:2em;color:#222;max-width:1000px}\nh1{font-size:1.5em}h2{font-size:1.15em;margin-top:2em}\n.meta{color:#555}\ntable{border-collapse:collapse;font-size:0.85em}\nth,td{border-bottom:1px solid #ddd;padding:3px 8px;text-align:right}\nth:first-child,td:first-child{text-align:left}\ntd.pass{color:#1a7f37;font-weight:bold}td.fail{color:#cf222e;font-weight:bold}\ntd.info,td.insufficient{color:#777}\nfigure{margin:0}\n</style>\n";

/// One chart as a `<figure>` holding its SVG.
fn chart(
    name: &'static str,
    height: u32,
    draw: impl FnOnce(&Area<'_>) -> Result<(), Box<dyn std::error::Error>>,
) -> Result<String, ChartError> {
    let mut svg = String::new();
    {
        let area = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        let err = |e: &dyn std::fmt::Display| ChartError {
            chart: name,
            message: e.to_string(),
        };
        area.fill(&WHITE).map_err(|e| err(&e))?;
        draw(&area).map_err(|e| err(&e))?;
        area.present().map_err(|e| err(&e))?;
    }
    Ok(format!(
        "<figure class=\"chart\" id=\"chart-{name}\">\n{svg}\n</figure>\n"
    ))
}

fn date_after(first: &str, days: u64) -> String {
    NaiveDate::parse_from_str(first, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.checked_add_days(Days::new(days)))
        .map_or_else(
            || format!("day {days}"),
            |d| d.format("%Y-%m-%d").to_string(),
        )
}

fn daily_sessions<'a>(area: &Area<'a>, s: &Series) -> Result<(), Box<dyn std::error::Error>> {
    let days = s
        .daily_sessions
        .iter()
        .map(|x| x.values.len())
        .max()
        .unwrap_or(0)
        .max(1) as u32;
    let top = s
        .daily_sessions
        .iter()
        .flat_map(|x| x.values.iter().copied())
        .max()
        .unwrap_or(0)
        .max(1);
    let mut c = ChartBuilder::on(area)
        .margin(12)
        .x_label_area_size(32)
        .y_label_area_size(70)
        .build_cartesian_2d(0u32..days.saturating_sub(1).max(1), 0u64..top + top / 10)?;
    let first = s.first_date.clone();
    c.configure_mesh()
        .x_labels(8)
        .x_label_formatter(&|d| date_after(&first, u64::from(*d)))
        .y_desc("sessions")
        .draw()?;
    for (i, x) in s.daily_sessions.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        c.draw_series(LineSeries::new(
            x.values.iter().enumerate().map(|(d, v)| (d as u32, *v)),
            color.stroke_width(2),
        ))?
        .label(x.name.clone())
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
    }
    c.configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()?;
    Ok(())
}

/// Bars on a categorical axis, each labelled with its name and `text`; `log` draws the values
/// on a log scale (a funnel spans several orders of magnitude).
fn bars<'a>(
    area: &Area<'a>,
    bars: &[(String, f64, String)],
    y_desc: &str,
    log: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let n = bars.len().max(1) as f64;
    let top = bars.iter().map(|b| b.1).fold(0.0, f64::max).max(1e-9);
    let names: Vec<String> = bars.iter().map(|b| b.0.clone()).collect();
    let label = move |x: &f64| {
        let i = x.floor() as usize;
        if (x - x.floor() - 0.5).abs() < 1e-6 {
            names.get(i).cloned().unwrap_or_default()
        } else {
            String::new()
        }
    };
    let style = ("sans-serif", 13).into_font().color(&BLACK);
    if log {
        let mut c = ChartBuilder::on(area)
            .margin(12)
            .x_label_area_size(32)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..n, (0.8f64..top * 3.0).log_scale())?;
        c.configure_mesh()
            .disable_x_mesh()
            .x_labels(bars.len() * 2 + 1)
            .x_label_formatter(&label)
            .y_label_formatter(&|v| format!("{v:.0}"))
            .y_desc(y_desc)
            .draw()?;
        c.draw_series(bars.iter().enumerate().map(|(i, b)| {
            let color = COLORS[i % COLORS.len()];
            Rectangle::new(
                [(i as f64 + 0.2, 0.8), (i as f64 + 0.8, b.1.max(0.8))],
                color.filled(),
            )
        }))?;
        c.draw_series(bars.iter().enumerate().map(|(i, b)| {
            Text::new(
                b.2.clone(),
                (i as f64 + 0.22, b.1.max(0.8) * 1.35),
                style.clone(),
            )
        }))?;
    } else {
        let mut c = ChartBuilder::on(area)
            .margin(12)
            .x_label_area_size(32)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..n, 0.0..top * 1.2)?;
        c.configure_mesh()
            .disable_x_mesh()
            .x_labels(bars.len() * 2 + 1)
            .x_label_formatter(&label)
            .y_desc(y_desc)
            .draw()?;
        c.draw_series(bars.iter().enumerate().map(|(i, b)| {
            let color = COLORS[i % COLORS.len()];
            Rectangle::new(
                [(i as f64 + 0.2, 0.0), (i as f64 + 0.8, b.1)],
                color.filled(),
            )
        }))?;
        c.draw_series(bars.iter().enumerate().map(|(i, b)| {
            Text::new(
                b.2.clone(),
                (i as f64 + 0.22, b.1 + top * 0.06),
                style.clone(),
            )
        }))?;
    }
    Ok(())
}

fn funnel<'a>(area: &Area<'a>, s: &Series) -> Result<(), Box<dyn std::error::Error>> {
    let first = s.funnel.first().map_or(0, |x| x.users);
    let rows: Vec<(String, f64, String)> = s
        .funnel
        .iter()
        .map(|x| {
            let share = if first > 0 {
                format!(" ({:.2}%)", 100.0 * x.users as f64 / first as f64)
            } else {
                String::new()
            };
            (
                x.name.clone(),
                x.users as f64,
                format!("{}{share}", x.users),
            )
        })
        .collect();
    bars(area, &rows, "users (log scale)", true)
}

fn mrr<'a>(area: &Area<'a>, s: &Series) -> Result<(), Box<dyn std::error::Error>> {
    let rows: Vec<(String, f64, String)> = s
        .mrr
        .iter()
        .map(|m| {
            let short = if m.mrr >= 1e6 {
                format!("{:.1}M", m.mrr / 1e6)
            } else {
                format!("{:.0}k", m.mrr / 1e3)
            };
            (
                m.month.get(2..).unwrap_or(&m.month).to_string(),
                m.mrr,
                short,
            )
        })
        .collect();
    bars(area, &rows, "MRR", false)
}

fn conversion<'a>(area: &Area<'a>, s: &Series) -> Result<(), Box<dyn std::error::Error>> {
    let rows: Vec<(String, f64, String)> = s
        .conversion
        .iter()
        .map(|x| {
            let rate = if x.trials > 0 {
                100.0 * x.converted as f64 / x.trials as f64
            } else {
                0.0
            };
            (x.name.clone(), rate, format!("{rate:.1}% of {}", x.trials))
        })
        .collect();
    bars(area, &rows, "converted (%)", false)
}

fn retention<'a>(area: &Area<'a>, s: &Series) -> Result<(), Box<dyn std::error::Error>> {
    let cohorts = s.retention.len().max(1) as u32;
    let weeks = (RETENTION_WEEKS + 1) as u32;
    // Segmented axes: a label at the middle of each week's column and each cohort's row.
    let mut c = ChartBuilder::on(area)
        .margin(12)
        .x_label_area_size(32)
        .y_label_area_size(90)
        .build_cartesian_2d(
            (0u32..weeks - 1).into_segmented(),
            (0u32..cohorts - 1).into_segmented(),
        )?;
    let starts: Vec<String> = s.retention.iter().map(|x| x.week_start.clone()).collect();
    let center = |v: &SegmentValue<u32>| match v {
        SegmentValue::CenterOf(i) => Some(*i),
        _ => None,
    };
    c.configure_mesh()
        .disable_mesh()
        .x_labels(weeks as usize)
        .x_label_formatter(&|w| center(w).map_or_else(String::new, |w| format!("week {w}")))
        .y_labels(cohorts as usize)
        .y_label_formatter(&|i| {
            // Row 0 (the first cohort) is drawn at the top.
            center(i)
                .and_then(|i| starts.get(cohorts.saturating_sub(1 + i) as usize).cloned())
                .unwrap_or_default()
        })
        .draw()?;
    // Week 0 is 100% by construction; the colour scale is set by the later weeks.
    let peak = s
        .retention
        .iter()
        .flat_map(|x| {
            x.active
                .iter()
                .skip(1)
                .map(move |a| *a as f64 / x.users.max(1) as f64)
        })
        .fold(0.0, f64::max)
        .max(1e-9);
    c.draw_series(s.retention.iter().enumerate().flat_map(|(row, x)| {
        let y = cohorts - 1 - row as u32;
        x.active.iter().enumerate().map(move |(k, a)| {
            let share = *a as f64 / x.users.max(1) as f64;
            let t = if k == 0 { 1.0 } else { (share / peak).min(1.0) };
            let shade = |full: u8| (255.0 - t * (255.0 - f64::from(full))) as u8;
            let k = k as u32;
            Rectangle::new(
                [
                    (SegmentValue::Exact(k), SegmentValue::Exact(y)),
                    (SegmentValue::Exact(k + 1), SegmentValue::Exact(y + 1)),
                ],
                RGBColor(shade(8), shade(81), shade(156)).filled(),
            )
        })
    }))?;
    Ok(())
}

fn table(report: &Report) -> String {
    let mut t = String::from(
        "<table id=\"acceptance\">\n<tr><th>figure</th><th>target</th><th>tolerance</th><th>measured</th><th>sample</th><th>result</th></tr>\n",
    );
    for r in &report.rows {
        let [target, tolerance, measured] = r.cells().map(|c| escape(&c));
        let class = match r.status {
            RowStatus::Pass => "pass",
            RowStatus::Fail => "fail",
            RowStatus::Info => "info",
            RowStatus::Insufficient => "insufficient",
        };
        t.push_str(&format!(
            "<tr><td>{}</td><td>{target}</td><td>{tolerance}</td><td>{measured}</td><td>{}</td><td class=\"{class}\">{}</td></tr>\n",
            escape(&r.name),
            r.sample,
            escape(r.status.label())
        ));
    }
    t.push_str("</table>\n");
    t
}

/// Text for HTML (and XML): the five special characters as entities.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
