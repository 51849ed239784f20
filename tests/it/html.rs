//! `ampsim report --html`: one self-contained page with the acceptance table and a chart per
//! series of GetReport, well-formed (parsed as XML here) and loaded by a real browser
//! (headless Chromium, which `.ci/run` installs).

use crate::support::*;
use ampsim::pb;
use std::path::Path;

/// The elements named `tag` (any namespace) under `node`.
fn all<'a, 'i>(node: roxmltree::Node<'a, 'i>, tag: &str) -> Vec<roxmltree::Node<'a, 'i>> {
    node.descendants()
        .filter(|n| n.is_element() && n.tag_name().name() == tag)
        .collect()
}

fn chart<'a, 'i>(doc: &'a roxmltree::Document<'i>, name: &str) -> roxmltree::Node<'a, 'i> {
    let fig = doc
        .descendants()
        .find(|n| n.attribute("id") == Some(&format!("chart-{name}")[..]))
        .unwrap_or_else(|| panic!("no chart {name}"));
    let svgs = all(fig, "svg");
    assert_eq!(svgs.len(), 1, "chart {name} has one svg");
    svgs[0]
}

/// Filled rectangles drawn in a colour other than the background and the axes (the bars and
/// heat-map cells).
fn coloured_rects(svg: roxmltree::Node<'_, '_>) -> usize {
    all(svg, "rect")
        .into_iter()
        .filter(|r| {
            r.attribute("fill")
                .is_some_and(|f| !matches!(f, "#FFFFFF" | "#000000" | "none"))
        })
        .count()
}

#[test]
fn the_html_report_is_one_well_formed_page_with_data_in_every_chart() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::spawn(&dir.path().join("h.db"));
    let url = format!("http://{}", server.addr);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let series = rt.block_on(async {
        let mut c = connect(server.addr).await;
        create(&mut c, "h1", 3, 0.02).await;
        generate(&mut c, "h1", 63).await;
        c.get_report(pb::GetReportRequest {
            simulation_id: "h1".into(),
        })
        .await
        .expect("report")
        .into_inner()
        .series
        .expect("GetReport carries the series")
    });
    let file = dir.path().join("report.html");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ampsim"))
        .args(["report", "--simulation", "h1", "--server", &url, "--html"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let html = std::fs::read_to_string(&file).unwrap();

    // Self-contained: nothing is fetched.
    for needle in [
        "<script", "<link", "<img", "src=", "href=", "@import", "url(",
    ] {
        assert!(
            !html.contains(needle),
            "the page fetches something: {needle}"
        );
    }
    let doc = roxmltree::Document::parse(html.trim_start_matches("<!DOCTYPE html>\n"))
        .expect("the page is well-formed");

    // The table: a row per report row, with its result.
    let rows = all(doc.root(), "tr").len() - 1;
    let report_rows = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.trim_end().ends_with("PASS") || l.contains("insufficient data"))
        .count();
    assert!(rows >= report_rows && rows > 20, "{rows} table rows");

    // Daily sessions: a line per channel, a point per day.
    let sessions = chart(&doc, "sessions");
    let lines: Vec<_> = all(sessions, "polyline")
        .into_iter()
        .filter(|p| {
            p.attribute("points")
                .is_some_and(|x| x.split(' ').count() > 60)
        })
        .collect();
    assert_eq!(
        lines.len(),
        series.daily_sessions.len(),
        "a line per channel"
    );
    for name in series.daily_sessions.iter().map(|x| &x.name) {
        assert!(
            all(sessions, "text")
                .iter()
                .any(|t| t.text().map(str::trim) == Some(name.as_str())),
            "legend names {name}"
        );
    }
    // The funnel: a bar per stage, labelled with its count.
    let funnel = chart(&doc, "funnel");
    assert_eq!(coloured_rects(funnel), 4);
    for stage in &series.funnel {
        assert!(stage.users > 0, "{stage:?}");
        assert!(
            all(funnel, "text").iter().any(|t| t
                .text()
                .is_some_and(|x| x.trim().starts_with(&stage.users.to_string()))),
            "the funnel shows {stage:?}"
        );
    }
    // Retention: a cell per cohort and week.
    let cells: usize = series.retention.iter().map(|c| c.active.len()).sum();
    assert_eq!(series.retention.len(), 9);
    assert_eq!(coloured_rects(chart(&doc, "retention")), cells);
    // Conversion: a bar per group with trials.
    let groups = series.conversion.iter().filter(|c| c.trials > 0).count();
    assert!(groups >= 2);
    assert!(coloured_rects(chart(&doc, "conversion")) >= groups);
    // MRR: a bar per month with revenue.
    let months = series.mrr.iter().filter(|m| m.mrr > 0.0).count();
    assert!(
        months >= 1,
        "no month with recurring revenue: {:?}",
        series.mrr
    );
    assert!(coloured_rects(chart(&doc, "mrr")) >= months);

    // A real browser loads it: Chromium's DOM holds the five charts and the table.
    let dom = chromium_dom(&file);
    assert_eq!(dom.matches("<svg").count(), 5, "charts in Chromium's DOM");
    assert!(dom.contains("id=\"acceptance\""));
    drop(server);
}

/// The DOM headless Chromium builds from a local file.
fn chromium_dom(file: &Path) -> String {
    let out = std::process::Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--dump-dom"])
        .arg(format!("file://{}", file.display()))
        .output()
        .expect("chromium (.ci/run installs the Debian package) runs");
    assert!(
        out.status.success(),
        "chromium: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
