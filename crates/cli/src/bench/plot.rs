//! Line charts for docs/benchmarks.md, drawn with `plotters`' SVG backend only
//! (no fonts, no bitmaps): a few series of measured points on linear or
//! logarithmic axes. Plots show measurements; they never compute them.

use std::path::Path;

use plotters::coord::combinators::IntoLogRange;
use plotters::prelude::*;

/// One line on a chart.
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
    /// Drawn dashed-looking (thin, no markers): a reference such as the ideal.
    pub reference: bool,
}

pub struct Chart<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    /// Logarithmic x axis (batch sizes, concurrency).
    pub log_x: bool,
    pub series: Vec<Series>,
}

const WIDTH_PX: u32 = 720;
const HEIGHT_PX: u32 = 420;
const COLOURS: [RGBColor; 5] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
];

/// Writes `chart` as an SVG file at `path`.
pub fn write_svg(path: &Path, chart: &Chart<'_>) -> anyhow::Result<()> {
    let points = || chart.series.iter().flat_map(|s| s.points.iter());
    let x_min = points().map(|p| p.0).fold(f64::INFINITY, f64::min);
    let x_max = points().map(|p| p.0).fold(f64::NEG_INFINITY, f64::max);
    let y_max = points().map(|p| p.1).fold(0.0, f64::max);
    anyhow::ensure!(
        x_min.is_finite() && x_max.is_finite() && x_min > 0.0,
        "a chart needs points with positive x"
    );
    let y_top = y_max * 1.1 + f64::EPSILON;
    let root = SVGBackend::new(path, (WIDTH_PX, HEIGHT_PX)).into_drawing_area();
    root.fill(&WHITE).map_err(draw_error)?;
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(chart.title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70);
    if chart.log_x {
        let mut context = builder
            .build_cartesian_2d((x_min..x_max * 1.05).log_scale(), 0.0..y_top)
            .map_err(draw_error)?;
        context
            .configure_mesh()
            .x_desc(chart.x_label)
            .y_desc(chart.y_label)
            .draw()
            .map_err(draw_error)?;
        draw_series(&mut context, &chart.series)?;
    } else {
        let mut context = builder
            .build_cartesian_2d(0.0..x_max * 1.05, 0.0..y_top)
            .map_err(draw_error)?;
        context
            .configure_mesh()
            .x_desc(chart.x_label)
            .y_desc(chart.y_label)
            .draw()
            .map_err(draw_error)?;
        draw_series(&mut context, &chart.series)?;
    }
    root.present().map_err(draw_error)?;
    Ok(())
}

fn draw_series<'a, X, Y>(
    context: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>,
    series: &[Series],
) -> anyhow::Result<()>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    for (index, line) in series.iter().enumerate() {
        let colour = COLOURS[index % COLOURS.len()];
        let width = if line.reference { 1 } else { 2 };
        context
            .draw_series(LineSeries::new(
                line.points.iter().copied(),
                colour.stroke_width(width),
            ))
            .map_err(draw_error)?
            .label(line.label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour));
        if !line.reference {
            context
                .draw_series(
                    line.points
                        .iter()
                        .map(|p| Circle::new(*p, 3, colour.filled())),
                )
                .map_err(draw_error)?;
        }
    }
    context
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(draw_error)?;
    Ok(())
}

fn draw_error<E: std::fmt::Debug>(error: E) -> anyhow::Error {
    anyhow::anyhow!("drawing a chart: {error:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_is_an_svg_with_its_title_and_series() {
        let dir = std::env::temp_dir().join(format!("settle-plot-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("chart.svg");
        write_svg(
            &path,
            &Chart {
                title: "throughput vs batch size",
                x_label: "batch",
                y_label: "transfers/s",
                log_x: true,
                series: vec![
                    Series {
                        label: "ours".into(),
                        points: vec![(1.0, 100.0), (16.0, 900.0), (256.0, 4_000.0)],
                        reference: false,
                    },
                    Series {
                        label: "baseline".into(),
                        points: vec![(1.0, 120.0), (256.0, 120.0)],
                        reference: true,
                    },
                ],
            },
        )
        .unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..80.min(svg.len())]);
        assert!(svg.contains("throughput vs batch size"));
        assert!(svg.contains("baseline"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
