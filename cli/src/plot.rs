//! The recall/QPS plot of `bench`, as PNG and SVG.
//!
//! Text is drawn with a font compiled into the binary (DejaVu Sans, `cli/assets/`), so the PNG
//! does not depend on fonts installed on the machine, and the build needs no fontconfig or
//! freetype.

use std::path::{Path, PathBuf};
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{register_font, FontStyle};

use crate::error::{CliError, Result};

static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

/// One line of the plot.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend text.
    pub label: String,
    /// (recall, QPS) points, in ef order.
    pub points: Vec<(f64, f64)>,
    /// Drawn dashed (multi-thread figures).
    pub dashed: bool,
}

const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

fn register() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for style in [FontStyle::Normal, FontStyle::Bold] {
            // The embedded font is known to parse; a failure would only lose the text.
            let _ = register_font("sans-serif", style, FONT);
        }
    });
}

/// The PNG and SVG paths for `--plot FILE`: FILE with its extension set to `.png` and `.svg`.
pub fn plot_paths(file: &Path) -> (PathBuf, PathBuf) {
    (file.with_extension("png"), file.with_extension("svg"))
}

/// Draws `series` into `FILE.png` and `FILE.svg`.
pub fn write_plot(file: &Path, title: &str, x_label: &str, series: &[Series]) -> Result<(PathBuf, PathBuf)> {
    register();
    let (png, svg) = plot_paths(file);
    if let Some(dir) = png.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| CliError::index(crate::error::io_message("create directory", dir, &e)))?;
    }
    let fail = |p: &Path, e: String| CliError::index(format!("cannot draw `{}`: {e}", p.display()));
    {
        let root = BitMapBackend::new(&png, (1200, 800)).into_drawing_area();
        draw(&root, title, x_label, series).map_err(|e| fail(&png, e))?;
        root.present().map_err(|e| fail(&png, e.to_string()))?;
    }
    {
        let root = SVGBackend::new(&svg, (1200, 800)).into_drawing_area();
        draw(&root, title, x_label, series).map_err(|e| fail(&svg, e))?;
        root.present().map_err(|e| fail(&svg, e.to_string()))?;
    }
    Ok((png, svg))
}

/// Label positions of a log axis over `lo..hi`: 1-2-5 steps, or 1 per decade over a wide range,
/// or 1-2-3-5 steps over a narrow one.
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let within = |mults: &[f64]| -> Vec<f64> {
        let mut out = Vec::new();
        let mut decade = 10f64.powf(lo.log10().floor());
        while decade <= hi {
            out.extend(mults.iter().map(|m| m * decade).filter(|v| *v >= lo && *v <= hi));
            decade *= 10.0;
        }
        out
    };
    let ticks = within(&[1.0, 2.0, 5.0]);
    if ticks.len() > 12 {
        within(&[1.0])
    } else if ticks.len() < 4 {
        within(&[1.0, 2.0, 3.0, 5.0, 7.0])
    } else {
        ticks
    }
}

/// `20k`, `500`.
fn qps_label(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.0}k", v / 1000.0)
    } else {
        format!("{v:.0}")
    }
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    x_label: &str,
    series: &[Series],
) -> std::result::Result<(), String> {
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(e)?;
    let all: Vec<(f64, f64)> = series.iter().flat_map(|s| s.points.iter().copied()).collect();
    let min_recall = all.iter().map(|p| p.0).fold(1.0f64, f64::min);
    let x_lo = ((min_recall - 0.02) * 20.0).floor() / 20.0;
    let x_lo = x_lo.clamp(0.0, 0.95);
    let qps: Vec<f64> = all.iter().map(|p| p.1).filter(|q| *q > 0.0).collect();
    let y_lo = qps.iter().copied().fold(f64::INFINITY, f64::min);
    let y_hi = qps.iter().copied().fold(0.0f64, f64::max);
    let (y_lo, y_hi) = if qps.is_empty() { (1.0, 10.0) } else { (y_lo / 1.5, y_hi * 1.5) };

    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 26))
        .margin(20)
        .x_label_area_size(55)
        .y_label_area_size(90)
        .build_cartesian_2d(x_lo..1.0f64, (y_lo..y_hi).log_scale())
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc("queries per second (log scale)")
        .x_labels(12)
        .y_labels(12)
        .x_label_formatter(&|x| format!("{x:.2}"))
        .y_label_formatter(&|_| String::new())
        .disable_y_mesh()
        .label_style(("sans-serif", 18))
        .axis_desc_style(("sans-serif", 20))
        .light_line_style(RGBColor(235, 235, 235))
        .bold_line_style(RGBColor(205, 205, 205))
        .draw()
        .map_err(e)?;
    // The mesh labels a log axis inconsistently (powers of ten only, or every multiple once
    // the range is narrow): the QPS labels are drawn here, at 1-2-5 steps.
    let label_style =
        TextStyle::from(("sans-serif", 18).into_font()).pos(Pos::new(HPos::Right, VPos::Center));
    let ticks = log_ticks(y_lo, y_hi);
    chart
        .draw_series(
            ticks.iter().map(|&v| PathElement::new(vec![(x_lo, v), (1.0, v)], RGBColor(215, 215, 215))),
        )
        .map_err(e)?;
    for &v in &ticks {
        let (px, py) = chart.backend_coord(&(x_lo, v));
        root.draw(&PathElement::new(vec![(px - 5, py), (px, py)], BLACK)).map_err(e)?;
        root.draw(&Text::new(qps_label(v), (px - 8, py), label_style.clone())).map_err(e)?;
    }

    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let pts: Vec<(f64, f64)> = s.points.iter().copied().filter(|p| p.1 > 0.0 && p.0 >= x_lo).collect();
        let style = color.stroke_width(3);
        let anno = if s.dashed {
            chart.draw_series(DashedLineSeries::new(pts.clone(), 10, 6, style)).map_err(e)?
        } else {
            chart.draw_series(LineSeries::new(pts.clone(), style)).map_err(e)?
        };
        let dashed = s.dashed;
        anno.label(s.label.clone()).legend(move |(x, y)| {
            if dashed {
                PathElement::new(vec![(x, y), (x + 8, y)], color.stroke_width(3))
            } else {
                PathElement::new(vec![(x, y), (x + 22, y)], color.stroke_width(3))
            }
        });
        chart.draw_series(pts.iter().map(|&p| Circle::new(p, 4, color.filled()))).map_err(e)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerLeft)
        .label_font(("sans-serif", 18))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(e)?;
    Ok(())
}
