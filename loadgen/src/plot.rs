//! An SVG plot of latency percentiles over a run, second by second, so a slow start,
//! a stall or a drift shows up where one summary line would hide it.

use hdrhistogram::Histogram;
use plotters::prelude::*;
use std::path::Path;

/// One latency measured through a run: a histogram (µs) per second.
pub struct Series {
    pub name: &'static str,
    pub per_second: Vec<Histogram<u64>>,
}

/// One line of the plot: label, stroke width, colour index, (second, ms) points.
type Line = (String, u32, usize, Vec<(f64, f64)>);

/// Percentiles drawn for every series, with their line style (solid, then thinner).
const QUANTILES: [(f64, &str, u32); 2] = [(0.50, "p50", 1), (0.99, "p99", 2)];

/// Writes `series` as lines of p50 and p99 (ms, log scale) against seconds.
pub fn svg(path: &Path, title: &str, series: &[Series]) -> anyhow::Result<()> {
    let lines: Vec<Line> = series
        .iter()
        .enumerate()
        .flat_map(|(i, s)| {
            QUANTILES.iter().map(move |&(q, label, width)| {
                let points = s
                    .per_second
                    .iter()
                    .enumerate()
                    .filter(|(_, h)| !h.is_empty())
                    .map(|(sec, h)| (sec as f64 + 0.5, h.value_at_quantile(q) as f64 / 1000.0))
                    .collect();
                (format!("{} {label}", s.name), width, i, points)
            })
        })
        .collect();
    let values = lines.iter().flat_map(|l| l.3.iter().map(|p| p.1));
    let (lo, hi) = values.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo > hi {
        anyhow::bail!("nothing was measured, so there is nothing to plot");
    }
    let seconds = series.iter().map(|s| s.per_second.len()).max().unwrap_or(1).max(1) as f64;

    let root = SVGBackend::new(path, (960, 540)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..seconds, ((lo / 2.0).max(0.001)..hi * 2.0).log_scale())?;
    chart.configure_mesh().x_desc("seconds into the run").y_desc("latency (ms)").draw()?;
    for (name, width, colour, points) in lines {
        let style = Palette99::pick(colour).stroke_width(width);
        chart
            .draw_series(LineSeries::new(points, style))?
            .label(name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], style));
    }
    chart.configure_series_labels().border_style(BLACK).background_style(WHITE.mix(0.9)).draw()?;
    root.present()?;
    Ok(())
}
