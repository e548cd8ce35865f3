//! Training curves: the chapter's two figures, "Training and validation
//! accuracy" and "Training and validation loss", drawn from a [`History`] as
//! PNG files (Keras users draw them with matplotlib from `history.history`).
//!
//! As in the book, training values are blue dots and validation values a
//! blue line, one point per epoch, the x axis counting epochs from 1.
//! [`History::plot`] writes both figures side by side in one PNG (what
//! `convnet train --plot FILE.png` writes); [`History::plot_accuracy`] and
//! [`History::plot_loss`] write each figure to a file of its own, as the
//! book's two `plt.figure()` calls show them. Each figure is 640x480 pixels
//! (matplotlib's default size at 100 dpi).
//!
//! Drawing is `plotters` on its pure-Rust bitmap backend, with text from a
//! font compiled into the library (DejaVu Sans cut down to ASCII,
//! `assets/DejaVuSans-ascii.ttf`, its license beside it) through `ab_glyph`,
//! so nothing on the system (fontconfig, FreeType, fonts) is needed to build
//! or run; the PNG is encoded by the `png` crate and written atomically.

use crate::logs::History;
use crate::{Error, Result};
use plotters::prelude::*;
use std::path::Path;
use std::sync::OnceLock;

/// Width and height of one figure, in pixels.
pub const FIGURE_SIZE: (u32, u32) = (640, 480);

/// The font family name the embedded font is registered under.
const FONT: &str = "sans-serif";

/// The embedded font (see the module docs).
static FONT_BYTES: &[u8] = include_bytes!("../assets/DejaVuSans-ascii.ttf");

/// Registers the embedded font with plotters once per process.
fn register_font() -> Result<()> {
    static DONE: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, FONT_BYTES)
            .map_err(|_| "the embedded font does not parse".to_string())
    })
    .clone()
    .map_err(|e| Error::invalid("plot", e))
}

/// One figure: its title, y-axis name and the two series.
struct Figure<'a> {
    title: &'static str,
    y_name: &'static str,
    train_label: &'static str,
    val_label: &'static str,
    train: &'a [f64],
    val: &'a [f64],
    /// Where the legend goes: where the curves usually are not (accuracy
    /// rises to the top right, loss falls to the bottom right).
    legend: SeriesLabelPosition,
}

fn plot_err<E: std::fmt::Debug>(e: E) -> Error {
    Error::invalid("plot", format!("drawing failed: {e:?}"))
}

impl History {
    /// Writes the chapter's two figures side by side (accuracy left, loss
    /// right: 1280x480 pixels) to the PNG file `path`; without an accuracy
    /// metric, the loss figure alone (640x480). Validation curves appear
    /// when `fit` had validation data.
    ///
    /// ```no_run
    /// # fn f(history: convnet::History) -> convnet::Result<()> {
    /// // history = model.fit(...); then the book's matplotlib code becomes:
    /// history.plot("curves.png")?;
    /// # Ok(()) }
    /// ```
    ///
    /// An empty history (no epoch run) or a non-finite value is an error,
    /// as is a path that cannot be written.
    pub fn plot(&self, path: impl AsRef<Path>) -> Result<()> {
        let (acc, val_acc) = (self.accuracy(), self.val_accuracy());
        let (loss, val_loss) = (self.loss(), self.val_loss());
        let mut figures = Vec::new();
        if !acc.is_empty() {
            figures.push(accuracy(&acc, &val_acc));
        }
        figures.push(loss_figure(&loss, &val_loss));
        self.write(path.as_ref(), &figures)
    }

    /// Writes the accuracy figure alone ("Training and validation
    /// accuracy", 640x480) to the PNG file `path`; an error without the
    /// accuracy metric.
    pub fn plot_accuracy(&self, path: impl AsRef<Path>) -> Result<()> {
        let (acc, val_acc) = (self.accuracy(), self.val_accuracy());
        if acc.is_empty() && !self.epochs.is_empty() {
            return Err(Error::invalid("plot", "no accuracy recorded: compile with Metric::Accuracy"));
        }
        self.write(path.as_ref(), &[accuracy(&acc, &val_acc)])
    }

    /// Writes the loss figure alone ("Training and validation loss",
    /// 640x480) to the PNG file `path`.
    pub fn plot_loss(&self, path: impl AsRef<Path>) -> Result<()> {
        let (loss, val_loss) = (self.loss(), self.val_loss());
        self.write(path.as_ref(), &[loss_figure(&loss, &val_loss)])
    }

    /// Draws `figures` side by side and writes the PNG.
    fn write(&self, path: &Path, figures: &[Figure<'_>]) -> Result<()> {
        if self.epochs.is_empty() {
            return Err(Error::invalid("plot", "the history is empty (no epoch was run)"));
        }
        let png = render_png(figures)?;
        crate::files::write_atomic(path, &png)
    }
}

fn accuracy<'a>(train: &'a [f64], val: &'a [f64]) -> Figure<'a> {
    Figure {
        title: "Training and validation accuracy",
        y_name: "Accuracy",
        train_label: "Training acc",
        val_label: "Validation acc",
        train,
        val,
        legend: SeriesLabelPosition::LowerRight,
    }
}

fn loss_figure<'a>(train: &'a [f64], val: &'a [f64]) -> Figure<'a> {
    Figure {
        title: "Training and validation loss",
        y_name: "Loss",
        train_label: "Training loss",
        val_label: "Validation loss",
        train,
        val,
        legend: SeriesLabelPosition::UpperRight,
    }
}

/// The figures drawn side by side, as PNG bytes.
fn render_png(figures: &[Figure<'_>]) -> Result<Vec<u8>> {
    register_font()?;
    let (fw, fh) = FIGURE_SIZE;
    let width = fw * figures.len() as u32;
    let mut rgb = vec![0u8; width as usize * fh as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (width, fh)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let panels = root.split_evenly((1, figures.len()));
        for (area, fig) in panels.iter().zip(figures) {
            draw(area, fig)?;
        }
        root.present().map_err(plot_err)?;
    }
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, width, fh);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header().map_err(|e| Error::invalid("plot", e.to_string()))?;
        w.write_image_data(&rgb).map_err(|e| Error::invalid("plot", e.to_string()))?;
    }
    Ok(out)
}

/// The y range: the data's, padded by 5% (a flat series gets +-0.05).
fn y_range(values: impl Iterator<Item = f64>) -> Result<(f64, f64)> {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values {
        if !v.is_finite() {
            return Err(Error::invalid("plot", format!("a value to plot is not finite ({v})")));
        }
        lo = lo.min(v);
        hi = hi.max(v);
    }
    let pad = if hi > lo { (hi - lo) * 0.05 } else { 0.05 };
    Ok((lo - pad, hi + pad))
}

fn draw<DB: DrawingBackend>(area: &DrawingArea<DB, plotters::coord::Shift>, fig: &Figure<'_>) -> Result<()> {
    let epochs = fig.train.len().max(fig.val.len());
    let (lo, hi) = y_range(fig.train.iter().chain(fig.val).copied())?;
    let mut chart = ChartBuilder::on(area)
        .caption(fig.title, (FONT, 22))
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(0.5f64..epochs as f64 + 0.5, lo..hi)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc("Epochs")
        .y_desc(fig.y_name)
        .x_labels(epochs.min(10))
        .x_label_formatter(&|x| format!("{}", x.round() as i64))
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 16))
        .light_line_style(WHITE)
        .draw()
        .map_err(plot_err)?;
    let at = |s: &[f64]| -> Vec<(f64, f64)> { s.iter().enumerate().map(|(i, &v)| ((i + 1) as f64, v)).collect() };
    let train = at(fig.train);
    chart
        .draw_series(train.iter().map(|&p| Circle::new(p, 4, BLUE.filled())))
        .map_err(plot_err)?
        .label(fig.train_label)
        .legend(|(x, y)| Circle::new((x + 10, y), 4, BLUE.filled()));
    if !fig.val.is_empty() {
        chart
            .draw_series(LineSeries::new(at(fig.val), BLUE.stroke_width(2)))
            .map_err(plot_err)?
            .label(fig.val_label)
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .label_font((FONT, 15))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .position(fig.legend.clone())
        .draw()
        .map_err(plot_err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::EpochLogs;

    fn history(epochs: usize, with_val: bool, with_acc: bool) -> History {
        History {
            epochs: (1..=epochs)
                .map(|e| {
                    let t = e as f64;
                    EpochLogs {
                        epoch: e,
                        loss: 0.7 / t,
                        accuracy: with_acc.then_some(1.0 - 0.4 / t),
                        val_loss: with_val.then_some(0.5 + 0.02 * t),
                        val_accuracy: (with_val && with_acc).then_some(0.7 + 0.005 * t),
                        seconds: 1.0,
                    }
                })
                .collect(),
            profile: None,
        }
    }

    /// Decodes a PNG: (width, height, RGB bytes).
    fn decode(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
        let img = image::load_from_memory_with_format(bytes, image::ImageFormat::Png).expect("a valid PNG").to_rgb8();
        (img.width(), img.height(), img.into_raw())
    }

    #[test]
    fn plots_are_valid_pngs_of_the_stated_size_and_not_blank() {
        let dir = std::env::temp_dir().join(format!("convnet-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cases = [
            (history(30, true, true), 2 * FIGURE_SIZE.0),
            (history(1, true, true), 2 * FIGURE_SIZE.0),
            (history(5, false, false), FIGURE_SIZE.0),
        ];
        for (i, (h, width)) in cases.iter().enumerate() {
            let path = dir.join(format!("curves{i}.png"));
            h.plot(&path).unwrap();
            let (w, hh, rgb) = decode(&std::fs::read(&path).unwrap());
            assert_eq!((w, hh), (*width, FIGURE_SIZE.1), "case {i}");
            // Mostly white, with blue data and dark text on it.
            let px: Vec<&[u8]> = rgb.chunks(3).collect();
            let white = px.iter().filter(|p| p == &&[255, 255, 255]).count();
            let blue = px.iter().filter(|p| p[2] > 200 && p[0] < 80 && p[1] < 80).count();
            let dark = px.iter().filter(|p| p.iter().all(|&c| c < 90)).count();
            assert!(white > px.len() / 2, "case {i}: {white} white of {}", px.len());
            assert!(blue > 50, "case {i}: only {blue} blue pixels");
            assert!(dark > 300, "case {i}: only {dark} dark pixels (no text?)");
        }
        let h = history(4, true, true);
        h.plot_accuracy(dir.join("acc.png")).unwrap();
        h.plot_loss(dir.join("loss.png")).unwrap();
        for f in ["acc.png", "loss.png"] {
            let (w, hh, _) = decode(&std::fs::read(dir.join(f)).unwrap());
            assert_eq!((w, hh), FIGURE_SIZE, "{f}");
        }
        // The two single figures differ (different data and titles).
        assert_ne!(std::fs::read(dir.join("acc.png")).unwrap(), std::fs::read(dir.join("loss.png")).unwrap());
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn bad_histories_and_paths_are_errors() {
        let dir = std::env::temp_dir().join(format!("convnet-plot-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let e = History::default().plot(dir.join("x.png")).unwrap_err();
        assert!(e.to_string().contains("empty"), "{e}");
        let mut h = history(3, true, true);
        h.epochs[1].loss = f64::NAN;
        let e = h.plot(dir.join("x.png")).unwrap_err();
        assert!(e.to_string().contains("not finite"), "{e}");
        let e = history(3, false, false).plot_accuracy(dir.join("x.png")).unwrap_err();
        assert!(e.to_string().contains("no accuracy"), "{e}");
        assert!(history(3, true, true).plot(dir.join("missing/dir/x.png")).is_err());
        assert!(!dir.join("x.png").exists());
        std::fs::remove_dir_all(&dir).ok();
    }
}
