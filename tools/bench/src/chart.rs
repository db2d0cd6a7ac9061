//! The fan-out chart (`fanout.svg`), drawn with plotters' SVG backend.

use plotters::prelude::*;

/// One line of a panel: its name and its (step index, value) points.
pub type Series<'a> = (&'a str, Vec<(usize, f64)>);

/// Colours and dashes of the stacks, in legend order.
const STYLES: [(&str, RGBColor, bool); 5] = [
    ("tower-sse", RGBColor(0x1b, 0x7f, 0x5f), false),
    ("axum", RGBColor(0xd9, 0x5f, 0x02), false),
    ("warp", RGBColor(0x6a, 0x5a, 0xcd), false),
    ("hyper-floor", RGBColor(0x88, 0x88, 0x88), true),
    ("raw-floor", RGBColor(0xbb, 0xbb, 0xbb), true),
];

/// Panels side by side, each a title and its series, against subscribers (`steps`,
/// evenly spaced).
pub fn svg(
    title: &str,
    steps: &[usize],
    panels: &[(&str, Vec<Series<'_>>)],
) -> Result<String, String> {
    let mut out = String::new();
    draw(&mut out, title, steps, panels).map_err(|e| format!("chart: {e}"))?;
    Ok(out)
}

fn draw(
    out: &mut String,
    title: &str,
    steps: &[usize],
    panels: &[(&str, Vec<Series<'_>>)],
) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::with_string(out, (900, 380)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", 20))?;
    let label = |x: &f64| {
        let i = x.round();
        let step = (i >= 0.0 && (x - i).abs() < 1e-6)
            .then(|| steps.get(i as usize))
            .flatten();
        step.map_or(String::new(), usize::to_string)
    };
    let areas = root.split_evenly((1, panels.len()));
    for (index, (area, (panel, series))) in areas.iter().zip(panels).enumerate() {
        let top = series
            .iter()
            .flat_map(|(_, p)| p.iter().map(|p| p.1))
            .fold(0.0, f64::max);
        let mut chart = ChartBuilder::on(area)
            .caption(*panel, ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(48)
            .build_cartesian_2d(-0.5..steps.len() as f64 - 0.5, 0.0..(top * 1.1).max(1e-3))?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .light_line_style(WHITE)
            .x_labels(steps.len().max(2) * 2)
            .x_label_formatter(&label)
            .x_desc("subscribers")
            .draw()?;
        for (name, points) in series {
            let Some(&(_, color, dashed)) = STYLES.iter().find(|s| s.0 == *name) else {
                continue;
            };
            let style = color.stroke_width(2);
            let line = points.iter().map(|&(x, y)| (x as f64, y));
            let drawn = if dashed {
                chart.draw_series(DashedLineSeries::new(line, 6, 4, style))?
            } else {
                chart.draw_series(LineSeries::new(line, style))?
            };
            drawn
                .label(*name)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], style));
            let dots = points
                .iter()
                .map(|&(x, y)| Circle::new((x as f64, y), 3, color.filled()));
            chart.draw_series(dots)?;
        }
        if index > 0 {
            continue;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK.mix(0.3))
            .draw()?;
    }
    root.present()?;
    Ok(())
}
