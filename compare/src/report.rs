//! The markdown report and the SVG chart.
//!
//! Every figure is a median over rounds (latency percentiles are over all appends of all
//! rounds). "zerodur vs X" is how many times better zerodur is than X: X / zerodur for times
//! and latencies, zerodur / X for rates. The floor table shows how many times the floor's
//! cost each contender pays.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::harness::{Contender, Measure, Sample, Stats, TaskResult};
use crate::{raw, zerodur_peer, Scale};

/// A 1-minute load average from which the report warns that figures are noisy.
const BUSY_LOAD: f64 = 1.0;

/// Line colours per contender, in contender order.
const COLORS: [&str; 5] = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#7f7f7f"];

/// Where and how the run happened.
pub struct Environment {
    pub date: String,
    pub kernel: String,
    pub cpu: String,
    pub cores: usize,
    pub filesystem: String,
    pub scratch: String,
    pub mode: &'static str,
    pub rounds: usize,
    /// 1-minute load average when the run started (other work on the machine adds noise).
    pub load_at_start: String,
}

impl Environment {
    pub fn probe(scratch: &Path, scale: &Scale) -> Environment {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find(|line| line.starts_with("model name"))
            .and_then(|line| line.split_once(':'))
            .map_or("unknown", |(_, model)| model.trim())
            .to_string();
        Environment {
            date: utc_now(),
            kernel: fs::read_to_string("/proc/sys/kernel/osrelease")
                .map_or_else(|_| "unknown".to_string(), |text| text.trim().to_string()),
            cpu,
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            filesystem: filesystem_of(scratch),
            scratch: scratch.display().to_string(),
            mode: scale.name,
            rounds: scale.rounds,
            load_at_start: load_average(),
        }
    }
}

/// The 1-minute load average.
pub fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".to_string())
}

/// `YYYY-MM-DD HH:MM UTC` from the system clock.
fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let days = (secs / 86_400) as i64;
    let (hour, minute) = ((secs % 86_400) / 3600, (secs % 3600) / 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {hour:02}:{minute:02} UTC")
}

/// Type and device of the mount holding `path` (longest matching mount point).
fn filesystem_of(path: &Path) -> String {
    let path = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mounts = fs::read_to_string("/proc/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let device = fields.next()?;
            let mount_point = fields.next()?.replace("\\040", " ");
            let fs_type = fields.next()?;
            path.starts_with(&mount_point)
                .then(|| (mount_point, format!("{fs_type} on {device}")))
        })
        .max_by_key(|(mount_point, _)| mount_point.len())
        .map_or_else(|| "unknown".to_string(), |(_, description)| description)
}

#[derive(Clone, Copy, PartialEq)]
enum Better {
    Lower,
    Higher,
}

#[derive(Clone, Copy)]
enum Unit {
    Micros,
    Millis,
    Rate,
    Times,
}

/// One line of the summary table: a figure per contender.
struct Row {
    label: String,
    unit: Unit,
    better: Better,
    values: Vec<Option<f64>>,
}

/// The values behind a contender's figures for a task, in the task's display unit:
/// every append's latency in µs, or one rate or one time in ms per round.
fn values(result: &TaskResult, index: usize) -> Option<Vec<f64>> {
    let samples = result.samples[index].1.as_ref().ok()?;
    let mut values = Vec::new();
    for sample in samples {
        match sample {
            Sample::Latencies(latencies) => {
                values.extend(latencies.iter().map(|d| d.as_secs_f64() * 1e6));
            }
            Sample::Work(work) => values.push(work.ops as f64 / work.elapsed.as_secs_f64()),
            Sample::Time(time) => values.push(time.as_secs_f64() * 1e3),
        }
    }
    Some(values)
}

fn stats(result: &TaskResult, index: usize) -> Option<Stats> {
    Stats::of(&values(result, index)?)
}

/// Every timed operation of a contender's rate samples, pooled over rounds, in µs.
fn work_latencies(result: &TaskResult, index: usize) -> Option<Stats> {
    let samples = result.samples[index].1.as_ref().ok()?;
    let micros: Vec<f64> = samples
        .iter()
        .filter_map(|sample| match sample {
            Sample::Work(work) => Some(&work.latencies),
            _ => None,
        })
        .flatten()
        .map(|d| d.as_secs_f64() * 1e6)
        .collect();
    Stats::of(&micros)
}

fn unit_of(measure: Measure) -> (Unit, Better) {
    match measure {
        Measure::Latency => (Unit::Micros, Better::Lower),
        Measure::Rate | Measure::RateAndLatency => (Unit::Rate, Better::Higher),
        Measure::Time => (Unit::Millis, Better::Lower),
    }
}

fn rows(results: &[TaskResult]) -> Vec<Row> {
    let mut rows = Vec::new();
    for result in results {
        let (unit, better) = unit_of(result.measure);
        let figure = |pick: fn(Stats) -> f64, label: String| Row {
            label,
            unit,
            better,
            values: (0..result.samples.len())
                .map(|i| stats(result, i).map(pick))
                .collect(),
        };
        match result.measure {
            Measure::Latency => {
                rows.push(figure(|s| s.p50, format!("{} p50", result.title)));
                rows.push(figure(|s| s.p99, format!("{} p99", result.title)));
            }
            Measure::RateAndLatency => {
                rows.push(figure(|s| s.p50, result.title.clone()));
                let latency = |pick: fn(Stats) -> f64, name: &str| Row {
                    label: format!("{}: latency {name}", result.title),
                    unit: Unit::Micros,
                    better: Better::Lower,
                    values: (0..result.samples.len())
                        .map(|i| work_latencies(result, i).map(pick))
                        .collect(),
                };
                rows.push(latency(|s| s.p50, "p50"));
                rows.push(latency(|s| s.p99, "p99"));
            }
            Measure::Rate | Measure::Time => rows.push(figure(|s| s.p50, result.title.clone())),
        }
    }
    if let Some(growth) = resume_growth(results, &rows) {
        rows.push(growth);
    }
    rows
}

/// Resume time with the most sealed segments over resume time with the fewest (1.00× means
/// the cost does not grow with the number of sealed segments).
fn resume_growth(results: &[TaskResult], rows: &[Row]) -> Option<Row> {
    let resumes: Vec<(&str, &Row)> = results
        .iter()
        .filter_map(|result| {
            let sealed = result.key.strip_prefix("resume-")?;
            let row = rows.iter().find(|row| row.label == result.title)?;
            Some((sealed, row))
        })
        .collect();
    let [(few_label, few), .., (many_label, many)] = resumes.as_slice() else {
        return None;
    };
    Some(Row {
        label: format!("resume growth, {many_label} vs {few_label} sealed segments"),
        unit: Unit::Times,
        better: Better::Lower,
        values: few
            .values
            .iter()
            .zip(&many.values)
            .map(|(few, many)| Some(many.as_ref()? / few.as_ref()?))
            .collect(),
    })
}

fn format_value(value: Option<f64>, unit: Unit) -> String {
    let Some(v) = value else {
        return "n/a".to_string();
    };
    match unit {
        Unit::Micros if v >= 1000.0 => format!("{v:.0} µs"),
        Unit::Micros => format!("{v:.1} µs"),
        Unit::Millis if v >= 100.0 => format!("{v:.0} ms"),
        Unit::Millis if v >= 10.0 => format!("{v:.1} ms"),
        Unit::Millis => format!("{v:.2} ms"),
        Unit::Rate if v >= 1e6 => format!("{:.2} M/s", v / 1e6),
        Unit::Rate if v >= 1e3 => format!("{:.1} k/s", v / 1e3),
        Unit::Rate => format!("{v:.0} /s"),
        Unit::Times => format!("{v:.2}×"),
    }
}

/// How many times better `ours` is than `theirs`.
fn ratio(ours: Option<f64>, theirs: Option<f64>, better: Better) -> String {
    match (ours, theirs) {
        (Some(ours), Some(theirs)) if ours > 0.0 && theirs > 0.0 => {
            let r = match better {
                Better::Lower => theirs / ours,
                Better::Higher => ours / theirs,
            };
            format!("{r:.2}×")
        }
        _ => "n/a".to_string(),
    }
}

/// The markdown report.
pub fn markdown(
    env: &Environment,
    contenders: &[&dyn Contender],
    results: &[TaskResult],
    elapsed: Duration,
) -> String {
    let names: Vec<&str> = contenders.iter().map(|c| c.name()).collect();
    let zerodur = names.iter().position(|n| *n == zerodur_peer::NAME);
    let raw = names.iter().position(|n| *n == raw::NAME);
    let rows = rows(results);
    let load_at_end = load_average();
    let mut out = String::new();

    let _ = writeln!(out, "# zerodur vs peers ({} mode)\n", env.mode);
    let _ = writeln!(
        out,
        "- date: {}\n- kernel: {}\n- CPU: {} ({} cores available)\n- filesystem: {} ({})\n\
         - rounds: {}, round-robin (every contender once per round, first contender rotated)\n\
         - run time: {:.0} s; 1-minute load average {} at start, {} at end\n",
        env.date,
        env.kernel,
        env.cpu,
        env.cores,
        env.filesystem,
        env.scratch,
        env.rounds,
        elapsed.as_secs_f64(),
        env.load_at_start,
        load_at_end
    );
    let busy = [env.load_at_start.as_str(), load_at_end.as_str()]
        .iter()
        .any(|load| load.parse::<f64>().is_ok_and(|load| load >= BUSY_LOAD));
    if busy {
        let _ = writeln!(
            out,
            "> **The machine was busy** (load average ≥ {BUSY_LOAD} during the run): \
             fsync-bound figures include CPU wake-up delays and vary from round to round. \
             Rerun on an idle machine before quoting them.\n"
        );
    }

    // Summary table.
    let others: Vec<usize> = (0..names.len()).filter(|&i| Some(i) != zerodur).collect();
    let mut header = String::from("| operation |");
    let mut rule = String::from("|---|");
    for name in &names {
        let _ = write!(header, " {name} |");
        rule.push_str("---:|");
    }
    for &i in &others {
        let _ = write!(header, " zerodur vs {} |", names[i]);
        rule.push_str("---:|");
    }
    let _ = writeln!(out, "## Results\n\n{header}\n{rule}");
    for row in &rows {
        let mut line = format!("| {} |", row.label);
        for value in &row.values {
            let _ = write!(line, " {} |", format_value(*value, row.unit));
        }
        let ours = zerodur.and_then(|i| row.values[i]);
        for &i in &others {
            let _ = write!(line, " {} |", ratio(ours, row.values[i], row.better));
        }
        let _ = writeln!(out, "{line}");
    }
    let _ = writeln!(
        out,
        "\nFigures are medians over rounds (latency percentiles pool every append of every \
         round). \"zerodur vs X\" = how many times better zerodur is: X/zerodur for times and \
         latencies, zerodur/X for rates.\n"
    );

    // Cost against the floor.
    if let Some(raw) = raw {
        let _ = writeln!(
            out,
            "## Cost against the raw floor\n\nHow many times the floor's cost each contender \
             pays (1.00× = at the floor).\n"
        );
        let peers: Vec<usize> = (0..names.len()).filter(|&i| i != raw).collect();
        let mut header = String::from("| operation |");
        let mut rule = String::from("|---|");
        for &i in &peers {
            let _ = write!(header, " {} |", names[i]);
            rule.push_str("---:|");
        }
        let _ = writeln!(out, "{header}\n{rule}");
        for row in rows.iter().filter(|row| row.values[raw].is_some()) {
            let mut line = format!("| {} |", row.label);
            for &i in &peers {
                // The floor "beats" the contender by this factor.
                let _ = write!(
                    line,
                    " {} |",
                    ratio(row.values[raw], row.values[i], row.better)
                );
            }
            let _ = writeln!(out, "{line}");
        }
        out.push('\n');
    }

    // Per-contender detail.
    let _ = writeln!(
        out,
        "## Detail\n\nPer round (one figure per round), or per append for latency.\n\n\
         | operation | contender | samples | min | median | mean | max | p99 |\n\
         |---|---|---:|---:|---:|---:|---:|---:|"
    );
    for result in results {
        let (unit, _) = unit_of(result.measure);
        for (index, (name, _)) in result.samples.iter().enumerate() {
            let Some(values) = values(result, index) else {
                continue;
            };
            let Some(s) = Stats::of(&values) else {
                continue;
            };
            let cell = |v: f64| format_value(Some(v), unit);
            let _ = writeln!(
                out,
                "| {} | {name} | {} | {} | {} | {} | {} | {} |",
                result.title,
                values.len(),
                cell(s.min),
                cell(s.p50),
                cell(s.mean),
                cell(s.max),
                cell(s.p99)
            );
        }
    }

    // Why figures are missing.
    let _ = writeln!(out, "\n## Missing figures\n");
    let mut reasons: Vec<(&str, String, Vec<&str>)> = Vec::new();
    for result in results {
        for (name, samples) in &result.samples {
            if let Err(skip) = samples {
                let reason = skip.describe();
                match reasons
                    .iter_mut()
                    .find(|(n, r, _)| n == name && *r == reason)
                {
                    Some((_, _, tasks)) => tasks.push(&result.title),
                    None => reasons.push((name, reason, vec![&result.title])),
                }
            }
        }
    }
    if reasons.is_empty() {
        let _ = writeln!(out, "None.");
    }
    for (name, reason, tasks) in reasons {
        let scope = if tasks.len() == results.len() {
            "every operation".to_string()
        } else {
            tasks.join("; ")
        };
        let _ = writeln!(out, "- **{name}**: {reason} ({scope})");
    }

    let _ = writeln!(out, "\n## How each contender is driven\n");
    for contender in contenders {
        let _ = writeln!(out, "- **{}**: {}", contender.name(), contender.method());
    }
    out
}

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

/// The SVG chart: durable appends/s against threads, and durable append latency bars.
pub fn svg(env: &Environment, contenders: &[&dyn Contender], results: &[TaskResult]) -> String {
    let names: Vec<&str> = contenders.iter().map(|c| c.name()).collect();
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="1000" height="470" viewBox="0 0 1000 470" font-family="sans-serif">"#
    );
    let _ = writeln!(svg, r#"<rect width="1000" height="470" fill="white"/>"#);

    // Left: throughput against threads.
    let threads: Vec<(usize, &TaskResult)> = results
        .iter()
        .filter_map(|result| {
            let count = result.key.strip_prefix("threads-")?.parse().ok()?;
            Some((count, result))
        })
        .collect();
    let rate = |result: &TaskResult, index: usize| stats(result, index).map(|s| s.p50);
    let left = Panel {
        left: 80.0,
        top: 60.0,
        width: 380.0,
        height: 300.0,
    };
    let max_rate = threads
        .iter()
        .flat_map(|(_, result)| (0..names.len()).filter_map(|i| rate(result, i)))
        .fold(0.0, f64::max);
    let rate_axis = Axis::Linear {
        max: nice_ceiling(max_rate),
    };
    left.frame(
        &mut svg,
        "Durable appends/s (128 B) vs threads",
        "appends/s",
        rate_axis,
    );
    let step = left.width / threads.len().max(1) as f64;
    let x_of = |slot: usize| left.left + step * (slot as f64 + 0.5);
    for (slot, (count, _)) in threads.iter().enumerate() {
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="middle">{count}</text>"#,
            x_of(slot),
            left.top + left.height + 16.0
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="middle">threads</text>"#,
        left.left + left.width / 2.0,
        left.top + left.height + 34.0
    );
    if max_rate <= 0.0 {
        left.no_data(&mut svg);
    }
    for index in 0..names.len() {
        let color = COLORS[index % COLORS.len()];
        let points: Vec<(f64, f64)> = threads
            .iter()
            .enumerate()
            .filter_map(|(slot, (_, result))| {
                Some((x_of(slot), left.y(rate(result, index)?, rate_axis)))
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
            r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"/>"#,
            path.join(" ")
        );
        for (x, y) in &points {
            let _ = writeln!(
                svg,
                r#"<circle cx="{x:.1}" cy="{y:.1}" r="3.5" fill="{color}"/>"#
            );
        }
    }

    // Right: latency bars.
    let latency = results
        .iter()
        .find(|result| matches!(result.measure, Measure::Latency));
    let latencies: Vec<Option<Stats>> = (0..names.len())
        .map(|index| stats(latency?, index))
        .collect();
    let right = Panel {
        left: 590.0,
        top: 60.0,
        width: 380.0,
        height: 300.0,
    };
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
    let latency_axis = if max_latency > 0.0 {
        Axis::log_covering(min_latency, max_latency)
    } else {
        Axis::Linear { max: 1.0 }
    };
    right.frame(
        &mut svg,
        "Durable append latency, 128 B, 1 writer",
        "µs, log scale (solid p50, light p99)",
        latency_axis,
    );
    if max_latency <= 0.0 {
        right.no_data(&mut svg);
    }
    let group = right.width / names.len() as f64;
    let bar = group * 0.3;
    for (index, name) in names.iter().enumerate() {
        let color = COLORS[index % COLORS.len()];
        let center = right.left + group * (index as f64 + 0.5);
        let _ = writeln!(
            svg,
            r#"<text x="{center:.1}" y="{:.1}" font-size="11" text-anchor="middle">{}</text>"#,
            right.top + right.height + 16.0,
            escape(name)
        );
        let Some(s) = latencies[index] else {
            let _ = writeln!(
                svg,
                r##"<text x="{center:.1}" y="{:.1}" font-size="11" text-anchor="middle" fill="#888">n/a</text>"##,
                right.top + right.height - 6.0
            );
            continue;
        };
        for (offset, value, opacity) in [(-bar, s.p50, 1.0), (0.0, s.p99, 0.45)] {
            let y = right.y(value, latency_axis);
            let _ = writeln!(
                svg,
                r#"<rect x="{:.1}" y="{y:.1}" width="{bar:.1}" height="{:.1}" fill="{color}" fill-opacity="{opacity}"/><text x="{:.1}" y="{:.1}" font-size="10" text-anchor="middle">{:.0}</text>"#,
                center + offset,
                right.top + right.height - y,
                center + offset + bar / 2.0,
                y - 3.0,
                value
            );
        }
    }

    // Legend and footer.
    for (index, name) in names.iter().enumerate() {
        let x = 80.0 + 180.0 * index as f64;
        let has_data = latencies[index].is_some()
            || threads
                .iter()
                .any(|(_, result)| rate(result, index).is_some());
        let name = if has_data {
            name.to_string()
        } else {
            format!("{name} (n/a)")
        };
        let _ = writeln!(
            svg,
            r#"<rect x="{x:.1}" y="412" width="14" height="14" fill="{}"/><text x="{:.1}" y="424" font-size="12">{}</text>"#,
            COLORS[index % COLORS.len()],
            x + 20.0,
            escape(&name)
        );
    }
    let _ = writeln!(
        svg,
        r##"<text x="80" y="452" font-size="11" fill="#555">{} · {} mode · kernel {} · {} · {} cores · {}</text>"##,
        escape(&env.date),
        env.mode,
        escape(&env.kernel),
        escape(&env.cpu),
        env.cores,
        escape(&env.filesystem)
    );
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_ceiling_rounds_up_to_a_round_number() {
        assert_eq!(nice_ceiling(7.3), 10.0);
        assert_eq!(nice_ceiling(180.0), 200.0);
        assert_eq!(nice_ceiling(2100.0), 2500.0);
        assert_eq!(nice_ceiling(0.0), 1.0);
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
    fn chart_without_any_data_still_renders() {
        let env = Environment {
            date: String::new(),
            kernel: String::new(),
            cpu: String::new(),
            cores: 2,
            filesystem: String::new(),
            scratch: String::new(),
            mode: "quick",
            rounds: 1,
            load_at_start: String::new(),
        };
        let contenders: [&dyn Contender; 1] = [&crate::zerodur_peer::Zerodur];
        let results = [TaskResult {
            key: "append-latency".to_string(),
            title: "durable append".to_string(),
            measure: Measure::Latency,
            samples: vec![(
                zerodur_peer::NAME,
                Err(crate::harness::Skip::Unsupported("test")),
            )],
        }];
        let chart = svg(&env, &contenders, &results);
        assert_eq!(chart.matches("no data").count(), 2);
        let text = markdown(&env, &contenders, &results, Duration::ZERO);
        assert!(text.contains("| durable append p50 | n/a |"));
    }

    #[test]
    fn ratio_is_times_better_for_both_directions() {
        assert_eq!(ratio(Some(100.0), Some(200.0), Better::Lower), "2.00×");
        assert_eq!(ratio(Some(300.0), Some(100.0), Better::Higher), "3.00×");
        assert_eq!(ratio(None, Some(1.0), Better::Lower), "n/a");
    }

    #[test]
    fn values_are_formatted_with_units() {
        assert_eq!(format_value(Some(123.44), Unit::Micros), "123.4 µs");
        assert_eq!(format_value(Some(2_910_000.0), Unit::Rate), "2.91 M/s");
        assert_eq!(format_value(Some(5.123), Unit::Millis), "5.12 ms");
        assert_eq!(format_value(None, Unit::Millis), "n/a");
    }
}
