//! The markdown report, and the figures it shares with the chart.
//!
//! Every figure is a median over rounds (latency percentiles are over all appends of all
//! rounds). "zerodur vs X" is how many times better zerodur is than X: X / zerodur for times
//! and latencies, zerodur / X for rates. The floor table shows how many times the floor's
//! cost each contender pays, and the floors section says what each floor does.

use std::fmt::Write as _;
use std::time::Duration;

use crate::environment::{load_average, Environment};
use crate::harness::{Contender, Measure, Sample, Stats, TaskResult};
use crate::raw::{self, Floor};
use crate::zerodur_peer;

/// A 1-minute load average from which the report warns that figures are noisy.
const BUSY_LOAD: f64 = 1.0;

/// Which way a figure is better.
#[derive(Clone, Copy, PartialEq)]
pub enum Better {
    /// Times and latencies.
    Lower,
    /// Rates.
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
    /// The key of the task the row belongs to.
    key: String,
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

/// The figure that stands for a contender's result on a task (the first row of the task in
/// the table): median latency, median rate or median time.
pub fn headline(result: &TaskResult, index: usize) -> Option<f64> {
    stats(result, index).map(|s| s.p50)
}

/// Which way the headline figure of a task is better.
pub fn better_of(measure: Measure) -> Better {
    unit_of(measure).1
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
            key: result.key.clone(),
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
                    key: result.key.clone(),
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
        key: "resume-growth".to_string(),
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

/// How many times better `ours` is than `theirs` (above 1: `ours` is better).
pub fn times_better(ours: Option<f64>, theirs: Option<f64>, better: Better) -> Option<f64> {
    match (ours?, theirs?) {
        (ours, theirs) if ours > 0.0 && theirs > 0.0 => Some(match better {
            Better::Lower => theirs / ours,
            Better::Higher => ours / theirs,
        }),
        _ => None,
    }
}

/// [`times_better`] as a table cell.
fn ratio(ours: Option<f64>, theirs: Option<f64>, better: Better) -> String {
    times_better(ours, theirs, better).map_or_else(|| "n/a".to_string(), |r| format!("{r:.2}×"))
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
    if let Some(warning) = env.memory_filesystem_warning() {
        let _ = writeln!(
            out,
            "> **WARNING: durability figures are meaningless here.** {warning}\n"
        );
    }
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

    results_table(&mut out, &names, zerodur, raw, &rows);
    if let Some(raw) = raw {
        floor_table(&mut out, &names, raw, &rows);
    }
    floors(&mut out, results);
    detail(&mut out, results);
    missing(&mut out, results);

    let _ = writeln!(out, "\n## How each contender is driven\n");
    for contender in contenders {
        let _ = writeln!(out, "- **{}**: {}", contender.name(), contender.method());
    }
    out
}

/// The summary table: every figure, then zerodur's ratio against each other contender.
fn results_table(
    out: &mut String,
    names: &[&str],
    zerodur: Option<usize>,
    raw: Option<usize>,
    rows: &[Row],
) {
    let others: Vec<usize> = (0..names.len()).filter(|&i| Some(i) != zerodur).collect();
    let mut header = String::from("| operation |");
    let mut rule = String::from("|---|");
    for name in names {
        let _ = write!(header, " {name} |");
        rule.push_str("---:|");
    }
    for &i in &others {
        let _ = write!(header, " zerodur vs {} |", names[i]);
        rule.push_str("---:|");
    }
    let _ = writeln!(out, "## Results\n\n{header}\n{rule}");
    for row in rows {
        let mut line = format!("| {} |", row.label);
        for value in &row.values {
            let _ = write!(line, " {} |", format_value(*value, row.unit));
        }
        let ours = zerodur.and_then(|i| row.values[i]);
        for &i in &others {
            let cell = match raw::floor_of(&row.key) {
                Floor::Without { short, .. } if Some(i) == raw => format!("n/a ({short})"),
                _ => ratio(ours, row.values[i], row.better),
            };
            let _ = write!(line, " {cell} |");
        }
        let _ = writeln!(out, "{line}");
    }
    let _ = writeln!(
        out,
        "\nFigures are medians over rounds (latency percentiles pool every append of every \
         round). \"zerodur vs X\" = how many times better zerodur is: X/zerodur for times and \
         latencies, zerodur/X for rates. The floors are explained under the next table.\n"
    );
}

/// How many times the floor's cost each contender pays, for operations with a floor.
fn floor_table(out: &mut String, names: &[&str], raw: usize, rows: &[Row]) {
    let _ = writeln!(
        out,
        "## Cost against the raw floor\n\nHow many times the floor's cost each contender \
         pays (1.00× = at the floor). What each floor is follows the table.\n"
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

/// What the floor of every operation of the run is, or why it has none.
fn floors(out: &mut String, results: &[TaskResult]) {
    let _ = writeln!(out, "### The floors\n");
    for result in results {
        match raw::floor_of(&result.key) {
            Floor::Is(text) => {
                let _ = writeln!(out, "- **{}**: {text}.", result.title);
            }
            Floor::Without { why, .. } => {
                let _ = writeln!(out, "- **{}**: no floor ({why}).", result.title);
            }
        }
    }
    out.push('\n');
}

/// Per contender and operation: every statistic over the samples.
fn detail(out: &mut String, results: &[TaskResult]) {
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
}

/// Why figures are missing, grouped by contender and reason.
fn missing(out: &mut String, results: &[TaskResult]) {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::{one_second_of as rate, result_of};

    #[test]
    fn several_threads_show_why_there_is_no_floor_ratio() {
        let contenders: [&dyn Contender; 2] = [&crate::zerodur_peer::Zerodur, &raw::Raw];
        let results = [result_of(
            "threads-8",
            Measure::Rate,
            vec![
                (zerodur_peer::NAME, Ok(vec![rate(80_000)])),
                (raw::NAME, Ok(vec![rate(10_000)])),
            ],
        )];
        let text = markdown(
            &Environment::for_tests(),
            &contenders,
            &results,
            Duration::ZERO,
        );
        assert!(
            text.contains("| 80.0 k/s | 10.0 k/s | n/a (no group commit) |"),
            "{text}"
        );
        assert!(text.contains("- **threads-8**: no floor (no floor for several writers"));
    }

    #[test]
    fn memory_filesystems_are_flagged_in_the_report() {
        let contenders: [&dyn Contender; 1] = [&crate::zerodur_peer::Zerodur];
        let env = Environment {
            memory_filesystem: Some("tmpfs"),
            ..Environment::for_tests()
        };
        let text = markdown(&env, &contenders, &[], Duration::ZERO);
        assert!(text.contains("WARNING: durability figures are meaningless here"));
        assert!(text.contains("on tmpfs"));
    }

    #[test]
    fn ratio_is_times_better_for_both_directions() {
        assert_eq!(ratio(Some(100.0), Some(200.0), Better::Lower), "2.00×");
        assert_eq!(ratio(Some(300.0), Some(100.0), Better::Higher), "3.00×");
        assert_eq!(ratio(None, Some(1.0), Better::Lower), "n/a");
        assert_eq!(times_better(Some(1.0), Some(0.0), Better::Lower), None);
    }

    #[test]
    fn values_are_formatted_with_units() {
        assert_eq!(format_value(Some(123.44), Unit::Micros), "123.4 µs");
        assert_eq!(format_value(Some(2_910_000.0), Unit::Rate), "2.91 M/s");
        assert_eq!(format_value(Some(5.123), Unit::Millis), "5.12 ms");
        assert_eq!(format_value(None, Unit::Millis), "n/a");
    }
}
