//! The report's charts as SVG text (plotters' SVG backend): lines over time and
//! horizontal stacked bars. Text is drawn as SVG `<text>`, so no font is needed here and
//! the browser renders it; plotters escapes it.

use anyhow::{anyhow, Result};
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;

/// Series colours (Tableau 10): distinct for people with common colour blindness, and
/// what the browser test looks for in the rendered page.
pub const PALETTE: [(u8, u8, u8); 9] = [
    (0x4e, 0x79, 0xa7),
    (0xf2, 0x8e, 0x2b),
    (0xe1, 0x57, 0x59),
    (0x76, 0xb7, 0xb2),
    (0x59, 0xa1, 0x4f),
    (0xed, 0xc9, 0x48),
    (0xb0, 0x7a, 0xa1),
    (0xff, 0x9d, 0xa7),
    (0x9c, 0x75, 0x5f),
];

const WIDTH: u32 = 900;
const HOUR_NS: i64 = 3_600_000_000_000;

fn time(ns: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_nanos(ns)
}

fn color(i: usize) -> RGBColor {
    let (r, g, b) = PALETTE[i % PALETTE.len()];
    RGBColor(r, g, b)
}

fn drawing<E: std::error::Error + Send + Sync>(e: DrawingAreaErrorKind<E>) -> anyhow::Error {
    anyhow!("drawing a chart: {e}")
}

/// The series' names and colours in a box at `at`.
fn legend<'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, CT>,
    at: SeriesLabelPosition,
) -> Result<()> {
    chart
        .configure_series_labels()
        .position(at)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .label_font(("sans-serif", 12))
        .draw()
        .map_err(drawing)
}

/// One line: a name and its (time in ns since the epoch, value) points, in time order.
pub struct Series {
    pub name: String,
    pub points: Vec<(i64, f64)>,
}

/// Lines over time, one per series, with a legend; `y_desc` names the values.
pub fn time_lines(caption: &str, y_desc: &str, series: &[Series]) -> Result<String> {
    let xs = series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
    let (lo, hi) = xs.fold((i64::MAX, i64::MIN), |(lo, hi), x| (lo.min(x), hi.max(x)));
    let (lo, hi) = match lo <= hi {
        true => (lo, hi),
        false => (0, 0),
    };
    // At least an hour shown, so one period is a point in a chart, not an empty range.
    let pad = (HOUR_NS - (hi - lo)).max(0) / 2;
    let (x0, x1) = (time(lo - pad), time(hi + pad));
    let top = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(1.0f64, f64::max)
        * 1.1;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, 340)).into_drawing_area();
        root.fill(&WHITE).map_err(drawing)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(caption, ("sans-serif", 17))
            .margin(12)
            .x_label_area_size(32)
            .y_label_area_size(64)
            .build_cartesian_2d(x0..x1, 0f64..top)
            .map_err(drawing)?;
        chart
            .configure_mesh()
            .x_labels(6)
            .y_labels(6)
            .x_label_formatter(&|t| match t.timestamp() % 86_400 {
                0 => t.format("%Y-%m-%d").to_string(),
                _ => t.format("%m-%d %H:%M").to_string(),
            })
            .y_label_formatter(&|v| format!("{v:.0}"))
            .y_desc(y_desc)
            .light_line_style(RGBColor(240, 240, 240))
            .draw()
            .map_err(drawing)?;
        for (i, s) in series.iter().enumerate() {
            let c = color(i);
            let points = s.points.iter().map(|&(t, v)| (time(t), v));
            chart
                .draw_series(LineSeries::new(points, c.stroke_width(2)).point_size(2))
                .map_err(drawing)?
                .label(s.name.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], c.stroke_width(2))
                });
        }
        legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
        root.present().map_err(drawing)?;
    }
    Ok(svg)
}

/// Horizontal bars, largest first from the top; each bar stacks the values of
/// `stacks` (name, one value per label) left to right.
pub fn bars(
    caption: &str,
    x_desc: &str,
    labels: &[String],
    stacks: &[(&str, Vec<u64>)],
) -> Result<String> {
    let n = labels.len().max(1);
    let total = |i: usize| stacks.iter().map(|s| s.1[i]).sum::<u64>();
    let max = (0..labels.len()).map(total).max().unwrap_or(0).max(1) as f64 * 1.05;
    let height = 90 + 26 * n as u32;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(drawing)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(caption, ("sans-serif", 17))
            .margin(12)
            .x_label_area_size(32)
            .y_label_area_size(300)
            .build_cartesian_2d(0f64..max, (0..n as i32).into_segmented())
            .map_err(drawing)?;
        // Row 0 is drawn at the bottom: the first label goes on the top row.
        let row = |i: usize| (n - 1 - i) as i32;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(n)
            .y_label_formatter(&|v| match v {
                SegmentValue::CenterOf(r) if (*r as usize) < labels.len() => {
                    labels[n - 1 - *r as usize].clone()
                }
                _ => String::new(),
            })
            .x_label_formatter(&|v| format!("{v:.0}"))
            .x_desc(x_desc)
            .light_line_style(RGBColor(240, 240, 240))
            .draw()
            .map_err(drawing)?;
        for (k, (name, values)) in stacks.iter().enumerate() {
            let c = color(k);
            let rects = (0..labels.len()).filter(|&i| values[i] > 0).map(|i| {
                let before: u64 = stacks[..k].iter().map(|s| s.1[i]).sum();
                let (a, b) = (before as f64, (before + values[i]) as f64);
                let mut r = Rectangle::new(
                    [
                        (a, SegmentValue::Exact(row(i))),
                        (b, SegmentValue::Exact(row(i) + 1)),
                    ],
                    c.filled(),
                );
                r.set_margin(4, 4, 0, 0);
                r
            });
            let series = chart.draw_series(rects).map_err(drawing)?;
            if stacks.len() > 1 {
                series.label(*name).legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 12, y + 5)], c.filled())
                });
            }
        }
        if stacks.len() > 1 {
            legend(&mut chart, SeriesLabelPosition::LowerRight)?;
        }
        root.present().map_err(drawing)?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_bars_draw_their_data_in_the_palette() {
        let s = Series {
            name: "curl <&>".into(),
            points: vec![(0, 1.0), (3_600_000_000_000, 5.0), (7_200_000_000_000, 2.0)],
        };
        let svg = time_lines("t", "events", &[s]).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..60]);
        assert!(svg.contains("#4E79A7"), "the series colour is drawn");
        assert!(svg.contains("curl &lt;&amp;&gt;"), "labels are escaped");
        let labels = vec!["a".to_string(), "b".to_string()];
        let svg = bars(
            "b",
            "events",
            &labels,
            &[("denied", vec![3, 0]), ("would-deny", vec![1, 2])],
        )
        .unwrap();
        assert_eq!(
            svg.matches("fill=\"#F28E2B\"").count(),
            3,
            "two bars and the legend"
        );
        // Nothing to draw is still a chart, not an error.
        assert!(time_lines("empty", "x", &[]).is_ok());
        assert!(bars("empty", "x", &[], &[]).is_ok());
    }
}
