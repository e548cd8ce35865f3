//! Keras's progress bar (`keras.utils.Progbar`, verbose=1), character for character:
//!
//! ```text
//! Epoch 1/5
//! 938/938 [==============================] - 9s 10ms/step - loss: 0.1701 - accuracy: 0.9470
//! ```
//!
//! On a terminal the line is redrawn in place (`\r`), at most every 50 ms as
//! Keras does, with `ETA: 5s` while the epoch runs; otherwise (a pipe, a file)
//! only the final line of each epoch is written.

use std::io::Write;
use std::time::{Duration, Instant};

/// Keras's minimum interval between two redraws.
const INTERVAL: Duration = Duration::from_millis(50);
/// Width of the bar between the brackets.
const WIDTH: usize = 30;

/// Formats a metric value as Keras does: `%.4f`, or `%.4e` for tiny values
/// (Python's exponent has at least two digits: `1.0000e-05`).
pub fn format_value(v: f64) -> String {
    if v.abs() > 1e-3 || !v.is_finite() {
        return format!("{v:.4}");
    }
    let s = format!("{v:.4e}");
    match s.split_once('e') {
        Some((mantissa, exp)) => {
            let (sign, digits) = match exp.strip_prefix('-') {
                Some(d) => ('-', d),
                None => ('+', exp),
            };
            format!("{mantissa}e{sign}{digits:0>2}")
        }
        None => s,
    }
}

/// Keras's `_format_time` for the time per step: `10ms/step`, `2s/step`, `850us/step`.
pub fn format_per_step(seconds: f64) -> String {
    if seconds >= 1.0 || seconds == 0.0 {
        format!("{seconds:.0}s/step")
    } else if seconds >= 1e-3 {
        format!("{:.0}ms/step", seconds * 1e3)
    } else {
        format!("{:.0}us/step", seconds * 1e6)
    }
}

fn format_eta(eta: f64) -> String {
    let e = eta.max(0.0) as u64;
    if eta > 3600.0 {
        format!("{}:{:02}:{:02}", e / 3600, (e % 3600) / 60, e % 60)
    } else if eta > 60.0 {
        format!("{}:{:02}", e / 60, e % 60)
    } else {
        format!("{e}s")
    }
}

/// `current/target [====>.....]` with Keras's digit padding.
pub fn format_bar(current: usize, target: usize) -> String {
    let digits = target.max(1).to_string().len();
    let mut bar = format!("{current:>digits$}/{target} [");
    let prog_width = (WIDTH as f64 * current as f64 / target.max(1) as f64) as usize;
    let prog_width = prog_width.min(WIDTH);
    if prog_width > 0 {
        bar.push_str(&"=".repeat(prog_width - 1));
        bar.push(if current < target { '>' } else { '=' });
    }
    bar.push_str(&".".repeat(WIDTH - prog_width));
    bar.push(']');
    bar
}

/// The final line of an epoch, without the newline:
/// `938/938 [==============================] - 9s 10ms/step - loss: 0.1701 - accuracy: 0.9470`.
pub fn final_line(steps: usize, elapsed: Duration, metrics: &[(&str, f64)]) -> String {
    let secs = elapsed.as_secs_f64();
    let mut line =
        format!("{} - {:.0}s {}", format_bar(steps, steps), secs, format_per_step(secs / steps.max(1) as f64));
    for (k, v) in metrics {
        line.push_str(&format!(" - {k}: {}", format_value(*v)));
    }
    line
}

/// A live or per-epoch progress bar writing to a sink.
pub struct Progbar<W: Write> {
    out: W,
    target: usize,
    live: bool,
    start: Instant,
    last_draw: Option<Instant>,
    drawn_width: usize,
}

impl<W: Write> Progbar<W> {
    /// A bar for `target` steps; `live` redraws in place (a terminal).
    pub fn new(out: W, target: usize, live: bool) -> Self {
        Progbar { out, target, live, start: Instant::now(), last_draw: None, drawn_width: 0 }
    }

    /// Reports `current` steps done with the running metrics; redraws if live
    /// and 50 ms have passed since the last redraw.
    pub fn update(&mut self, current: usize, metrics: &[(&str, f64)]) {
        if !self.live || current >= self.target {
            return;
        }
        let now = Instant::now();
        if self.last_draw.is_some_and(|t| now - t < INTERVAL) {
            return;
        }
        self.last_draw = Some(now);
        let per_step = (now - self.start).as_secs_f64() / current.max(1) as f64;
        let mut line = format!(
            "{} - ETA: {}",
            format_bar(current, self.target),
            format_eta(per_step * (self.target - current) as f64)
        );
        for (k, v) in metrics {
            line.push_str(&format!(" - {k}: {}", format_value(*v)));
        }
        let width = line.len();
        if width < self.drawn_width {
            line.push_str(&" ".repeat(self.drawn_width - width));
        }
        self.drawn_width = width;
        let _ = write!(self.out, "\r{line}");
        let _ = self.out.flush();
    }

    /// Writes the epoch's final line and a newline.
    pub fn finish(&mut self, metrics: &[(&str, f64)]) {
        let mut line = final_line(self.target, self.start.elapsed(), metrics);
        if self.live {
            if line.len() < self.drawn_width {
                line.push_str(&" ".repeat(self.drawn_width - line.len()));
            }
            line.insert(0, '\r');
        }
        let _ = writeln!(self.out, "{line}");
        let _ = self.out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_line_matches_keras() {
        let line = final_line(938, Duration::from_millis(9380), &[("loss", 0.17012), ("accuracy", 0.94697)]);
        assert_eq!(line, "938/938 [==============================] - 9s 10ms/step - loss: 0.1701 - accuracy: 0.9470");
    }

    #[test]
    fn bars_and_values() {
        assert_eq!(format_bar(1, 938), "  1/938 [..............................]");
        assert_eq!(format_bar(469, 938), "469/938 [==============>...............]");
        assert_eq!(format_value(0.00001), "1.0000e-05");
        assert_eq!(format_value(2.5), "2.5000");
        assert_eq!(format_per_step(0.0005), "500us/step");
        assert_eq!(format_per_step(2.0), "2s/step");
        assert_eq!(format_eta(75.0), "1:15");
        assert_eq!(format_eta(3.9), "3s");
    }

    #[test]
    fn live_bar_redraws_with_carriage_returns_and_pipes_get_one_line() {
        let mut live = Progbar::new(Vec::new(), 4, true);
        live.update(1, &[("loss", 1.0)]);
        live.finish(&[("loss", 0.5)]);
        let s = String::from_utf8(live.out).unwrap();
        assert!(s.starts_with("\r1/4 [======>.......................] - ETA: "), "{s:?}");
        assert!(s.contains("\r4/4 [==============================] - 0s"), "{s:?}");
        assert!(s.ends_with(" - loss: 0.5000\n"), "{s:?}");

        let mut pipe = Progbar::new(Vec::new(), 4, false);
        pipe.update(1, &[("loss", 1.0)]);
        pipe.finish(&[("loss", 0.5)]);
        let s = String::from_utf8(pipe.out).unwrap();
        assert_eq!(s.lines().count(), 1);
        assert!(!s.contains('\r'));
    }
}
