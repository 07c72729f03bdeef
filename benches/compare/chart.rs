//! The report's two SVG charts: grouped bars, one group per scenario and
//! one bar per server.

use std::path::Path;

use plotters::prelude::*;

use crate::plan::{SubjectId, SCENARIOS};
use crate::results::{Results, Run};

/// Each subject's colour, the same in every chart.
fn colour(subject: SubjectId) -> RGBColor {
    match subject {
        SubjectId::Mio => RGBColor(31, 119, 180),
        SubjectId::Tokio => RGBColor(255, 127, 14),
        SubjectId::TokioMt => RGBColor(190, 190, 190),
        SubjectId::Floor => RGBColor(44, 160, 44),
        SubjectId::Nginx => RGBColor(148, 103, 189),
    }
}

/// Short scenario labels for the x axis.
fn label(name: &str) -> String {
    name.replace(" connections", "").replace(
        "churn: one request per connection, 50 at a time",
        "churn, 50",
    )
}

/// Requests per second spans tens of thousands to millions across
/// scenarios, so each is drawn relative to the floor's in that scenario.
pub fn throughput(results: &Results, path: &Path) {
    draw(
        results,
        path,
        "requests per second, relative to the floor",
        "× the floor's requests/s",
        |results, scenario, run| {
            let floor = results.run(scenario, SubjectId::Floor)?.rps;
            (floor > 0.0).then(|| run.rps / floor)
        },
    );
}

pub fn cpu(results: &Results, path: &Path) {
    draw(
        results,
        path,
        "server CPU per request",
        "µs per request (user + system)",
        |_, _, run| Some(run.cpu_us()),
    );
}

fn draw(
    results: &Results,
    path: &Path,
    title: &str,
    axis: &str,
    value: impl Fn(&Results, crate::plan::ScenarioId, &Run) -> Option<f64>,
) {
    let subjects = &results.subjects;
    let bars: Vec<(usize, usize, f64)> = SCENARIOS
        .iter()
        .enumerate()
        .flat_map(|(i, scenario)| {
            let value = &value;
            subjects.iter().enumerate().filter_map(move |(k, &s)| {
                let run = results.run(scenario.id, s)?;
                Some((i, k, value(results, scenario.id, run)?))
            })
        })
        .collect();
    let top = bars.iter().map(|b| b.2).fold(0.0f64, f64::max) * 1.35;
    let root = SVGBackend::new(path, (1000, 440)).into_drawing_area();
    root.fill(&WHITE).expect("svg");
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..SCENARIOS.len() as f64, 0f64..top.max(1e-9))
        .expect("chart");
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(SCENARIOS.len() * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            if (x - x.floor() - 0.5).abs() < 0.01 && i < SCENARIOS.len() {
                label(SCENARIOS[i].name)
            } else {
                String::new()
            }
        })
        .y_desc(axis)
        .draw()
        .expect("axes");
    let width = 0.8 / subjects.len().max(1) as f64;
    for (k, &subject) in subjects.iter().enumerate() {
        let c = colour(subject);
        let rects = bars.iter().filter(|b| b.1 == k).map(|&(i, _, v)| {
            let x0 = i as f64 + 0.1 + k as f64 * width;
            Rectangle::new([(x0, 0.0), (x0 + width * 0.92, v)], c.filled())
        });
        chart
            .draw_series(rects)
            .expect("bars")
            .label(subject.name())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], c.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .border_style(BLACK)
        .background_style(WHITE)
        .draw()
        .expect("legend");
    root.present().expect("svg written");
}
