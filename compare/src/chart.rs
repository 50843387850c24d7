//! The SVG chart.
//!
//! Two panels of absolute figures for durable appends (appends/s against threads; latency of
//! one writer), a legend, then every operation of the run as zerodur's ratio against each
//! peer on a log scale, where above 1× zerodur is better.

use std::fmt::Write as _;

use crate::environment::Environment;
use crate::harness::{Contender, Measure, Skip, Stats, TaskResult};
use crate::raw::{self, Floor};
use crate::report::{better_of, headline, times_better};
use crate::zerodur_peer;

/// Colours per contender, in contender order.
const COLORS: [&str; 5] = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#7f7f7f"];

/// Width of the whole chart.
const WIDTH: f64 = 1000.0;

/// Where the ratio panel starts, below the absolute panels and the legend.
const RATIO_TOP: f64 = 470.0;

/// Height of one bar of the ratio panel, and of the step from one bar to the next.
const RATIO_BAR: f64 = 8.0;
const RATIO_STEP: f64 = 11.0;

/// `text` made safe inside SVG text and attributes.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A round axis maximum at or above `max`: 1, 2, 2.5 or 5 times a power of ten.
fn nice_ceiling(max: f64) -> f64 {
    if max <= 0.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(max.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|step| step * magnitude)
        .find(|candidate| *candidate >= max)
        .unwrap_or(10.0 * magnitude)
}

/// Short axis labels: 1500 → "1.5k".
fn short(value: f64) -> String {
    if value >= 1e6 {
        format!("{}M", trim(value / 1e6))
    } else if value >= 1e3 {
        format!("{}k", trim(value / 1e3))
    } else {
        trim(value)
    }
}

fn trim(value: f64) -> String {
    let text = format!("{value:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// How values map to heights in a panel.
#[derive(Clone, Copy)]
enum Axis {
    /// From 0 to `max`.
    Linear { max: f64 },
    /// From `low` to `high`, both powers of ten.
    Log { low: f64, high: f64 },
}

impl Axis {
    /// A log axis from the power of ten at or below `min` to the one at or above `max`.
    fn log_covering(min: f64, max: f64) -> Axis {
        let low = 10f64.powf(min.max(1e-3).log10().floor());
        let high = 10f64.powf(max.max(min).log10().ceil()).max(low * 10.0);
        Axis::Log { low, high }
    }

    /// Where `value` sits, from 0 (bottom) to 1 (top).
    fn fraction(self, value: f64) -> f64 {
        match self {
            Axis::Linear { max } => value / max,
            Axis::Log { low, high } => (value.max(low) / low).ln() / (high / low).ln(),
        }
    }

    /// Values that get a grid line and a label.
    fn ticks(self) -> Vec<f64> {
        match self {
            Axis::Linear { max } => (0..=5).map(|t| max * f64::from(t) / 5.0).collect(),
            Axis::Log { low, high } => {
                let mut ticks = Vec::new();
                let mut decade = low;
                while decade <= high * 1.001 {
                    ticks.extend(
                        [1.0, 2.0, 5.0]
                            .iter()
                            .map(|m| decade * m)
                            .filter(|v| *v <= high * 1.001),
                    );
                    decade *= 10.0;
                }
                ticks
            }
        }
    }
}

/// Plot area of one panel.
struct Panel {
    left: f64,
    top: f64,
    width: f64,
    height: f64,
}

impl Panel {
    /// One of the two panels side by side at the top of the chart.
    fn top_row(left: f64) -> Panel {
        Panel {
            left,
            top: 60.0,
            width: 380.0,
            height: 300.0,
        }
    }

    fn y(&self, value: f64, axis: Axis) -> f64 {
        self.top + self.height * (1.0 - axis.fraction(value))
    }

    /// Title, horizontal grid lines with labels, and the axes.
    fn frame(&self, svg: &mut String, title: &str, y_label: &str, axis: Axis) {
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" font-size="15" font-weight="bold">{}</text>"#,
            self.left,
            self.top - 28.0,
            escape(title)
        );
        for value in axis.ticks() {
            let y = self.y(value, axis);
            let _ = writeln!(
                svg,
                r##"<line x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end">{}</text>"##,
                self.left,
                self.left + self.width,
                self.left - 6.0,
                y + 4.0,
                short(value)
            );
        }
        let _ = writeln!(
            svg,
            r##"<line x1="{l:.1}" y1="{t:.1}" x2="{l:.1}" y2="{b:.1}" stroke="#333"/><line x1="{l:.1}" y1="{b:.1}" x2="{r:.1}" y2="{b:.1}" stroke="#333"/>"##,
            l = self.left,
            t = self.top,
            b = self.top + self.height,
            r = self.left + self.width
        );
        let _ = writeln!(
            svg,
            r#"<text transform="translate({:.1},{:.1}) rotate(-90)" font-size="12" text-anchor="middle">{}</text>"#,
            self.left - 52.0,
            self.top + self.height / 2.0,
            escape(y_label)
        );
    }

    fn no_data(&self, svg: &mut String) {
        let _ = writeln!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" font-size="14" text-anchor="middle" fill="#888">no data</text>"##,
            self.left + self.width / 2.0,
            self.top + self.height / 2.0
        );
    }
}

/// The SVG chart of a run.
pub fn svg(env: &Environment, contenders: &[&dyn Contender], results: &[TaskResult]) -> String {
    let names: Vec<&str> = contenders.iter().map(|c| c.name()).collect();
    let mut body = String::new();
    throughput_panel(&mut body, &names, results);
    latency_panel(&mut body, &names, results);
    legend(&mut body, &names);
    let bottom = ratio_panel(&mut body, &names, results);
    let height = footer(&mut body, env, bottom);
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height:.0}" viewBox="0 0 {WIDTH} {height:.0}" font-family="sans-serif">"#
    );
    let _ = writeln!(
        svg,
        r#"<rect width="{WIDTH}" height="{height:.0}" fill="white"/>"#
    );
    svg.push_str(&body);
    svg.push_str("</svg>\n");
    svg
}

fn color(index: usize) -> &'static str {
    COLORS[index % COLORS.len()]
}

/// Left panel: durable appends/s against threads, one line per contender.
fn throughput_panel(svg: &mut String, names: &[&str], results: &[TaskResult]) {
    let threads: Vec<(usize, &TaskResult)> = results
        .iter()
        .filter_map(|result| {
            let count = result.key.strip_prefix("threads-")?.parse().ok()?;
            Some((count, result))
        })
        .collect();
    let panel = Panel::top_row(80.0);
    let max_rate = threads
        .iter()
        .flat_map(|(_, result)| (0..names.len()).filter_map(|i| headline(result, i)))
        .fold(0.0, f64::max);
    let axis = Axis::Linear {
        max: nice_ceiling(max_rate),
    };
    panel.frame(
        svg,
        "Durable appends/s (128 B) vs threads",
        "appends/s",
        axis,
    );
    let step = panel.width / threads.len().max(1) as f64;
    let x_of = |slot: usize| panel.left + step * (slot as f64 + 0.5);
    for (slot, (count, _)) in threads.iter().enumerate() {
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="middle">{count}</text>"#,
            x_of(slot),
            panel.top + panel.height + 16.0
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="middle">threads (the floor has no group commit: 1 thread only)</text>"#,
        panel.left + panel.width / 2.0,
        panel.top + panel.height + 34.0
    );
    if max_rate <= 0.0 {
        panel.no_data(svg);
    }
    for index in 0..names.len() {
        let points: Vec<(f64, f64)> = threads
            .iter()
            .enumerate()
            .filter_map(|(slot, (_, result))| {
                Some((x_of(slot), panel.y(headline(result, index)?, axis)))
            })
            .collect();
        if points.is_empty() {
            continue;
        }
        let path: Vec<String> = points
            .iter()
            .map(|(x, y)| format!("{x:.1},{y:.1}"))
            .collect();
        let _ = writeln!(
            svg,
            r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2"/>"#,
            path.join(" "),
            color(index)
        );
        for (x, y) in &points {
            let _ = writeln!(
                svg,
                r#"<circle cx="{x:.1}" cy="{y:.1}" r="3.5" fill="{}"/>"#,
                color(index)
            );
        }
    }
}

/// Right panel: durable append latency of one writer, p50 and p99 bars per contender.
fn latency_panel(svg: &mut String, names: &[&str], results: &[TaskResult]) {
    let latency = results
        .iter()
        .find(|result| matches!(result.measure, Measure::Latency));
    let latencies: Vec<Option<Stats>> = (0..names.len())
        .map(|index| {
            let result = latency?;
            let values: Vec<f64> = match &result.samples[index].1 {
                Ok(samples) => samples
                    .iter()
                    .filter_map(|sample| match sample {
                        crate::harness::Sample::Latencies(l) => Some(l),
                        _ => None,
                    })
                    .flatten()
                    .map(|d| d.as_secs_f64() * 1e6)
                    .collect(),
                Err(_) => Vec::new(),
            };
            Stats::of(&values)
        })
        .collect();
    let panel = Panel::top_row(590.0);
    let max_latency = latencies
        .iter()
        .flatten()
        .map(|s| s.p99)
        .fold(0.0, f64::max);
    let min_latency = latencies
        .iter()
        .flatten()
        .map(|s| s.p50)
        .fold(f64::INFINITY, f64::min);
    // Log scale: a p99 of milliseconds must not flatten p50 bars of tens of microseconds.
    let axis = if max_latency > 0.0 {
        Axis::log_covering(min_latency, max_latency)
    } else {
        Axis::Linear { max: 1.0 }
    };
    panel.frame(
        svg,
        "Durable append latency, 128 B, 1 writer",
        "µs, log scale (solid p50, light p99)",
        axis,
    );
    if max_latency <= 0.0 {
        panel.no_data(svg);
    }
    let group = panel.width / names.len().max(1) as f64;
    let bar = group * 0.3;
    for (index, name) in names.iter().enumerate() {
        let center = panel.left + group * (index as f64 + 0.5);
        // Names alternate between two lines so long ones do not run into each other.
        let _ = writeln!(
            svg,
            r#"<text x="{center:.1}" y="{:.1}" font-size="10" text-anchor="middle">{}</text>"#,
            panel.top + panel.height + 14.0 + 12.0 * (index % 2) as f64,
            escape(name)
        );
        let Some(s) = latencies[index] else {
            let _ = writeln!(
                svg,
                r##"<text x="{center:.1}" y="{:.1}" font-size="11" text-anchor="middle" fill="#888">n/a</text>"##,
                panel.top + panel.height - 6.0
            );
            continue;
        };
        for (offset, value, opacity) in [(-bar, s.p50, 1.0), (0.0, s.p99, 0.45)] {
            let y = panel.y(value, axis);
            let _ = writeln!(
                svg,
                r#"<rect x="{:.1}" y="{y:.1}" width="{bar:.1}" height="{:.1}" fill="{}" fill-opacity="{opacity}"/><text x="{:.1}" y="{:.1}" font-size="10" text-anchor="middle">{:.0}</text>"#,
                center + offset,
                panel.top + panel.height - y,
                color(index),
                center + offset + bar / 2.0,
                y - 3.0,
                value
            );
        }
    }
}

/// One colour swatch per contender.
fn legend(svg: &mut String, names: &[&str]) {
    let step = (WIDTH - 100.0) / names.len().max(1) as f64;
    for (index, name) in names.iter().enumerate() {
        let x = 80.0 + step * index as f64;
        let _ = writeln!(
            svg,
            r#"<rect x="{x:.1}" y="418" width="14" height="14" fill="{}"/><text x="{:.1}" y="430" font-size="12">{}</text>"#,
            color(index),
            x + 20.0,
            escape(name)
        );
    }
}

/// One cell of the ratio panel: zerodur's ratio against one peer on one operation.
enum Cell {
    Ratio(f64),
    Missing(String),
}

/// Zerodur's ratio against contender `peer` on `result`, or why there is none.
fn cell(result: &TaskResult, zerodur: Option<usize>, peer: usize) -> Cell {
    let (name, samples) = &result.samples[peer];
    if *name == raw::NAME {
        if let Floor::Without { short, .. } = raw::floor_of(&result.key) {
            return Cell::Missing(format!("no floor: {short}"));
        }
    }
    if let Err(skip) = samples {
        return Cell::Missing(match skip {
            // The reason's first clause ("no checkpoint API: ..." → "no checkpoint API").
            Skip::Unsupported(why) => why.split([':', ';']).next().unwrap_or(why).to_string(),
            Skip::Failed(_) => "failed (see the report)".to_string(),
        });
    }
    let Some(zerodur) = zerodur else {
        return Cell::Missing("no zerodur figure".to_string());
    };
    let ours = headline(result, zerodur);
    match times_better(ours, headline(result, peer), better_of(result.measure)) {
        Some(ratio) => Cell::Ratio(ratio),
        None if ours.is_none() => Cell::Missing("no zerodur figure".to_string()),
        None => Cell::Missing("no figure".to_string()),
    }
}

/// A power of ten written out: `0.001`, `0.1`, `1`, `100`.
fn decade_label(decade: f64) -> String {
    let decimals = (-decade.log10().round()).max(0.0) as usize;
    format!("{decade:.decimals$}")
}

/// `1.23×`, `12.3×`, `123×`, `0.062×`: three significant digits at most.
fn times(ratio: f64) -> String {
    if ratio >= 100.0 {
        format!("{ratio:.0}×")
    } else if ratio >= 10.0 {
        format!("{ratio:.1}×")
    } else if ratio >= 0.1 {
        format!("{ratio:.2}×")
    } else {
        format!("{ratio:.3}×")
    }
}

/// Every operation of the run: zerodur's ratio against each peer, as a bar from 1× on a
/// log axis. Returns the y where the panel ends.
fn ratio_panel(svg: &mut String, names: &[&str], results: &[TaskResult]) -> f64 {
    let zerodur = names.iter().position(|n| *n == zerodur_peer::NAME);
    let peers: Vec<usize> = (0..names.len()).filter(|&i| Some(i) != zerodur).collect();
    let cells: Vec<Vec<Cell>> = results
        .iter()
        .map(|result| peers.iter().map(|&p| cell(result, zerodur, p)).collect())
        .collect();
    let ratios = cells.iter().flatten().filter_map(|c| match c {
        Cell::Ratio(r) => Some(*r),
        Cell::Missing(_) => None,
    });
    let (min, max) = ratios.fold((1.0f64, 1.0f64), |(lo, hi), r| (lo.min(r), hi.max(r)));
    let axis = Axis::log_covering(min.max(1e-3), max.min(1e4));
    let Axis::Log { low, high } = axis else {
        unreachable!("log_covering makes a log axis")
    };
    let (left, width) = (330.0, 560.0);
    let x = |value: f64| left + width * axis.fraction(value.clamp(low, high));
    let row_height = RATIO_STEP * peers.len().max(1) as f64 + 10.0;
    let top = RATIO_TOP + 62.0;
    let bottom = top + row_height * results.len() as f64;

    let _ = writeln!(
        svg,
        r#"<text x="20" y="{:.1}" font-size="15" font-weight="bold">zerodur against each peer, every operation (median figures; log scale; right of 1× = zerodur better)</text>"#,
        RATIO_TOP + 10.0
    );
    let _ = writeln!(
        svg,
        r##"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end" fill="#555">← peer better</text><text x="{:.1}" y="{:.1}" font-size="11" fill="#555">zerodur better →</text>"##,
        x(1.0) - 6.0,
        RATIO_TOP + 32.0,
        x(1.0) + 6.0,
        RATIO_TOP + 32.0
    );
    for (row, (result, row_cells)) in results.iter().zip(&cells).enumerate() {
        let y0 = top + row_height * row as f64;
        if row % 2 == 0 {
            let _ = writeln!(
                svg,
                r##"<rect x="15" y="{y0:.1}" width="{:.1}" height="{row_height:.1}" fill="#f4f4f4"/>"##,
                WIDTH - 30.0
            );
        }
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="end">{}</text>"#,
            left - 12.0,
            y0 + row_height / 2.0 + 4.0,
            escape(&result.label)
        );
        for (slot, (&peer, cell)) in peers.iter().zip(row_cells).enumerate() {
            let y = y0 + 5.0 + RATIO_STEP * slot as f64;
            match cell {
                Cell::Ratio(ratio) => {
                    let (from, to) = (x(1.0), x(*ratio));
                    let _ = writeln!(
                        svg,
                        r#"<rect x="{:.1}" y="{y:.1}" width="{:.1}" height="{RATIO_BAR}" fill="{}"/>"#,
                        from.min(to),
                        (to - from).abs().max(1.0),
                        color(peer)
                    );
                    let (text_x, anchor) = if *ratio >= 1.0 {
                        (to + 4.0, "start")
                    } else {
                        (to - 4.0, "end")
                    };
                    let _ = writeln!(
                        svg,
                        r#"<text x="{text_x:.1}" y="{:.1}" font-size="9" text-anchor="{anchor}">{}</text>"#,
                        y + RATIO_BAR,
                        times(*ratio)
                    );
                }
                Cell::Missing(why) => {
                    let _ = writeln!(
                        svg,
                        r##"<text x="{:.1}" y="{:.1}" font-size="9" fill="#888">{}: n/a ({})</text>"##,
                        x(1.0) + 4.0,
                        y + RATIO_BAR,
                        escape(names[peer]),
                        escape(why)
                    );
                }
            }
        }
    }
    if results.is_empty() {
        let _ = writeln!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" font-size="14" text-anchor="middle" fill="#888">no data</text>"##,
            left + width / 2.0,
            top + 20.0
        );
    }
    let bottom = bottom.max(top + 30.0);
    // Grid over the rows: a line per 1, 2, 5 × 10^k, labels at each power of ten, 1× bold.
    for tick in axis.ticks() {
        let decade = (tick.log10() - tick.log10().round()).abs() < 1e-9;
        let (stroke, width_px) = if (tick - 1.0).abs() < 1e-9 {
            ("#333", 1.5)
        } else if decade {
            ("#bbb", 1.0)
        } else {
            ("#e2e2e2", 1.0)
        };
        let _ = writeln!(
            svg,
            r#"<line x1="{0:.1}" y1="{top:.1}" x2="{0:.1}" y2="{bottom:.1}" stroke="{stroke}" stroke-width="{width_px}"/>"#,
            x(tick)
        );
        if decade {
            for y in [top - 6.0, bottom + 14.0] {
                let _ = writeln!(
                    svg,
                    r#"<text x="{:.1}" y="{y:.1}" font-size="11" text-anchor="middle">{}×</text>"#,
                    x(tick),
                    decade_label(tick)
                );
            }
        }
    }
    bottom + 14.0
}

/// Notes on how to read the chart, the run's environment, and a warning when the scratch
/// directory was in memory. Returns the chart's height.
fn footer(svg: &mut String, env: &Environment, top: f64) -> f64 {
    let mut y = top + 24.0;
    for note in [
        "Each bar: zerodur's median figure against the peer's, as peer/zerodur for times and latencies, zerodur/peer for rates.",
        "raw floor = the least work the operation needs on this machine (what each floor does: see the report); several threads have no floor.",
    ] {
        let _ = writeln!(
            svg,
            r##"<text x="20" y="{y:.1}" font-size="11" fill="#555">{}</text>"##,
            escape(note)
        );
        y += 16.0;
    }
    let _ = writeln!(
        svg,
        r##"<text x="20" y="{y:.1}" font-size="11" fill="#555">{} · {} mode · kernel {} · {} · {} cores · {}</text>"##,
        escape(&env.date),
        env.mode,
        escape(&env.kernel),
        escape(&env.cpu),
        env.cores,
        escape(&env.filesystem)
    );
    if let Some(kind) = env.memory_filesystem {
        y += 20.0;
        let _ = writeln!(
            svg,
            r##"<text x="20" y="{y:.1}" font-size="14" font-weight="bold" fill="#d62728">WARNING: scratch directory on {kind}: syncs write nothing, durability figures mean nothing</text>"##
        );
    }
    y + 16.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::{one_second_of as rate, result_of, Sample};
    use std::time::Duration;

    fn time(ms: u64) -> Sample {
        Sample::Time(Duration::from_millis(ms))
    }

    #[test]
    fn nice_ceiling_rounds_up_to_a_round_number() {
        assert_eq!(nice_ceiling(7.3), 10.0);
        assert_eq!(nice_ceiling(180.0), 200.0);
        assert_eq!(nice_ceiling(2100.0), 2500.0);
        assert_eq!(nice_ceiling(0.0), 1.0);
    }

    #[test]
    fn decades_are_labelled_in_full() {
        let labels: Vec<String> = [0.001, 0.01, 0.1, 1.0, 10.0, 1000.0]
            .iter()
            .map(|&d| decade_label(d))
            .collect();
        assert_eq!(labels, ["0.001", "0.01", "0.1", "1", "10", "1000"]);
        assert_eq!(decade_label(10f64.powf(-3.0)), "0.001");
    }

    #[test]
    fn log_axis_spans_whole_decades() {
        let axis = Axis::log_covering(70.0, 8000.0);
        assert!(matches!(axis, Axis::Log { low, high } if low == 10.0 && high == 10_000.0));
        assert_eq!(axis.fraction(10.0), 0.0);
        assert!((axis.fraction(100.0) - 1.0 / 3.0).abs() < 1e-9);
        assert_eq!(axis.ticks().len(), 10);
    }

    #[test]
    fn report_and_chart_without_any_data_still_render() {
        let contenders: [&dyn Contender; 1] = [&crate::zerodur_peer::Zerodur];
        let results = [result_of(
            "append-latency",
            Measure::Latency,
            vec![(zerodur_peer::NAME, Err(Skip::Unsupported("test")))],
        )];
        let chart = svg(&Environment::for_tests(), &contenders, &results);
        assert_eq!(chart.matches("no data").count(), 2);
        assert!(chart.ends_with("</svg>\n"));
        let text = crate::report::markdown(
            &Environment::for_tests(),
            &contenders,
            &results,
            std::time::Duration::ZERO,
        );
        assert!(text.contains("| append-latency p50 | n/a |"));
        assert!(!text.contains("WARNING"));
    }

    #[test]
    fn every_operation_gets_a_ratio_or_a_reason_per_peer() {
        let contenders: [&dyn Contender; 3] = [
            &crate::zerodur_peer::Zerodur,
            &crate::okaywal_peer::Okaywal,
            &raw::Raw,
        ];
        let results = [
            result_of(
                "replay",
                Measure::Time,
                vec![
                    (zerodur_peer::NAME, Ok(vec![time(10)])),
                    ("okaywal 0.3", Ok(vec![time(40)])),
                    (raw::NAME, Ok(vec![time(5)])),
                ],
            ),
            result_of(
                "threads-4",
                Measure::RateAndLatency,
                vec![
                    (zerodur_peer::NAME, Ok(vec![rate(300)])),
                    ("okaywal 0.3", Ok(vec![rate(100)])),
                    (raw::NAME, Err(Skip::Unsupported("no floor: x"))),
                ],
            ),
            result_of(
                "checkpoint-load-blob",
                Measure::Time,
                vec![
                    (zerodur_peer::NAME, Ok(vec![time(2)])),
                    (
                        "okaywal 0.3",
                        Err(Skip::Unsupported("no checkpoint API: x")),
                    ),
                    (raw::NAME, Ok(vec![time(2)])),
                ],
            ),
        ];
        let chart = svg(&Environment::for_tests(), &contenders, &results);
        for label in ["replay", "threads-4", "checkpoint-load-blob"] {
            assert!(chart.contains(label), "{label} missing");
        }
        // Times: peer/zerodur; rates: zerodur/peer; both above 1 when zerodur is better.
        assert!(chart.contains(">4.00×<"), "replay vs okaywal");
        assert!(chart.contains(">0.50×<"), "replay vs floor");
        assert!(chart.contains(">3.00×<"), "threads vs okaywal");
        assert!(chart.contains(">1.00×<"), "blob load vs floor");
        assert!(chart.contains("raw floor: n/a (no floor: no group commit)"));
        assert!(chart.contains("okaywal 0.3: n/a (no checkpoint API)"));
        assert!(!chart.contains("WARNING"));
        let on_tmpfs = Environment {
            memory_filesystem: Some("tmpfs"),
            ..Environment::for_tests()
        };
        assert!(
            svg(&on_tmpfs, &contenders, &results).contains("WARNING: scratch directory on tmpfs")
        );
    }
}
