//! SVG charts (plotters) for the HTML report: rates with Wilson whiskers per provider, mail
//! ports compared, IPv4 vs IPv6, and the trend across crawls.

use crate::aggregate::Row;
use plotters::prelude::*;
use plotters::style::FontStyle;
use std::sync::Once;

static FONT: Once = Once::new();

fn font() {
    // Embedded so charts render the same on any machine (no fontconfig needed).
    FONT.call_once(|| {
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, include_bytes!("../assets/DejaVuSans.ttf"));
    });
}

const COLORS: [RGBColor; 4] = [RGBColor(31, 119, 180), RGBColor(255, 127, 14), RGBColor(44, 160, 44), RGBColor(214, 39, 40)];

/// One labelled line of a dot-and-whisker chart: series index → (rate, ci_low, ci_high).
pub struct Line {
    pub label: String,
    pub points: Vec<Option<(f64, f64, f64)>>,
}

/// Horizontal dot-and-whisker chart: one row per line, one coloured series per point index.
pub fn whiskers(title: &str, series: &[&str], lines: &[Line]) -> String {
    font();
    let mut svg = String::new();
    let h = 90 + 28 * lines.len().max(1) as u32;
    {
        let root = SVGBackend::with_string(&mut svg, (900, h)).into_drawing_area();
        root.fill(&WHITE).ok();
        let n = lines.len().max(1) as f64;
        let labels: Vec<String> = lines.iter().map(|l| l.label.clone()).collect();
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(36)
            .y_label_area_size(260)
            .build_cartesian_2d(0f64..1f64, -0.5f64..(n - 0.5))
            .expect("chart");
        chart
            .configure_mesh()
            .y_labels(lines.len().max(1))
            .y_label_formatter(&|y| {
                let i = y.round();
                if (y - i).abs() < 0.01 && i >= 0.0 {
                    labels.get(i as usize).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .x_desc("share of informative hosts filtered (95 % Wilson interval)")
            .x_label_formatter(&|x| format!("{:.0} %", x * 100.0))
            .draw()
            .ok();
        for (si, name) in series.iter().enumerate() {
            let color = COLORS[si % COLORS.len()];
            let off = if series.len() > 1 { (si as f64 - (series.len() - 1) as f64 / 2.0) * 0.22 } else { 0.0 };
            let pts: Vec<(f64, f64, f64, f64)> = lines
                .iter()
                .enumerate()
                .filter_map(|(i, l)| l.points.get(si).copied().flatten().map(|(r, lo, hi)| (i as f64 + off, r, lo, hi)))
                .collect();
            chart
                .draw_series(pts.iter().map(|(y, r, lo, hi)| ErrorBar::new_horizontal(*y, *lo, *r, *hi, color.stroke_width(2), 8)))
                .ok()
                .map(|s| s.label(*name).legend(move |(x, y)| Circle::new((x + 10, y), 5, color.filled())));
            chart.draw_series(pts.iter().map(|(y, r, _, _)| Circle::new((*r, *y), 5, color.filled()))).ok();
        }
        if series.len() > 1 {
            chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).position(SeriesLabelPosition::LowerRight).draw().ok();
        }
        root.present().ok();
    }
    svg
}

/// Trend: one line per provider over crawls (x = crawl index, labelled).
pub fn trend(title: &str, crawls: &[String], lines: &[(String, Vec<Option<f64>>)]) -> String {
    font();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 420)).into_drawing_area();
        root.fill(&WHITE).ok();
        let n = crawls.len().max(2) as f64;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(-0.2f64..(n - 0.8), 0f64..1f64)
            .expect("chart");
        chart
            .configure_mesh()
            .x_labels(crawls.len().max(1))
            .x_label_formatter(&|x| {
                let i = x.round();
                if (x - i).abs() < 0.01 && i >= 0.0 { crawls.get(i as usize).cloned().unwrap_or_default() } else { String::new() }
            })
            .y_label_formatter(&|y| format!("{:.0} %", y * 100.0))
            .y_desc("port 25 filtered (informative hosts)")
            .draw()
            .ok();
        for (i, (name, vals)) in lines.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let pts: Vec<(f64, f64)> = vals.iter().enumerate().filter_map(|(x, v)| v.map(|v| (x as f64, v))).collect();
            chart
                .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
                .ok()
                .map(|s| s.label(name.clone()).legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))));
            chart.draw_series(pts.iter().map(|p| Circle::new(*p, 4, color.filled()))).ok();
        }
        chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).position(SeriesLabelPosition::UpperLeft).draw().ok();
        root.present().ok();
    }
    svg
}

/// Lines for a chart from provider rows: one line per provider, one point per (family, port).
/// One line per provider with data, one point per (direction, family, port) of `pick`.
pub fn lines_from(rows: &[Row], pick: &[(&str, &str, u16)]) -> Vec<Line> {
    let mut names: Vec<String> = rows.iter().filter(|r| r.informative > 0 && r.method != "egress").map(|r| r.provider.clone()).collect();
    names.sort();
    names.dedup();
    // Each (provider, direction, family, port)'s first row with a verdict, found by key (a scan
    // of the rows per provider was quadratic in the number of providers).
    let mut first: hashbrown::HashMap<(&str, &str, &str, u16), &Row> = hashbrown::HashMap::new();
    for r in rows.iter().filter(|r| r.method != "egress" && r.verdict != "insufficient") {
        first.entry((r.provider.as_str(), r.direction, r.family, r.port)).or_insert(r);
    }
    names
        .into_iter()
        .map(|name| Line {
            label: format!("{name}"),
            points: pick
                .iter()
                .map(|(dir, fam, port)| {
                    // Rates of hosts only: the vantages inside are too few for an interval.
                    first.get(&(name.as_str(), *dir, *fam, *port)).and_then(|r| Some((r.rate?, r.ci_low?, r.ci_high?)))
                })
                .collect(),
        })
        .filter(|l| l.points.iter().any(|p| p.is_some()))
        .collect()
}
