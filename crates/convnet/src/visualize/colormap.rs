//! Colormaps: a value in `[0, 1]` to an RGB colour.
//!
//! [`Colormap::Viridis`] is matplotlib's perceptually uniform default (what
//! the book's `imshow` calls use), interpolated linearly between its nine
//! published key colours (`#440154` ... `#fde725`, the 9-class viridis
//! palette); [`Colormap::Jet`] is matplotlib's `jet`, computed from its
//! piecewise-linear segment data (the colormap of the book's Grad-CAM).

/// How a heat or activation value becomes a colour.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Colormap {
    /// matplotlib's `viridis`: dark purple (low) through teal to yellow (high),
    /// perceptually uniform and readable in grey.
    #[default]
    Viridis,
    /// matplotlib's `jet`: dark blue through cyan, yellow to dark red.
    Jet,
    /// Black to white.
    Gray,
}

impl std::str::FromStr for Colormap {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "viridis" => Ok(Colormap::Viridis),
            "jet" => Ok(Colormap::Jet),
            "gray" | "grey" => Ok(Colormap::Gray),
            other => Err(format!("unknown colormap {other:?} (expected viridis, jet or gray)")),
        }
    }
}

/// viridis at 0, 1/8, ..., 1 (the 9-class palette of matplotlib's viridis).
const VIRIDIS: [[u8; 3]; 9] = [
    [0x44, 0x01, 0x54],
    [0x47, 0x2d, 0x7b],
    [0x3b, 0x52, 0x8b],
    [0x2c, 0x72, 0x8e],
    [0x21, 0x91, 0x8c],
    [0x28, 0xae, 0x80],
    [0x5e, 0xc9, 0x62],
    [0xad, 0xdc, 0x30],
    [0xfd, 0xe7, 0x25],
];

/// `(x, y)` breakpoints of a piecewise-linear channel on `[0, 1]`.
fn piecewise(points: &[(f32, f32)], t: f32) -> f32 {
    for w in points.windows(2) {
        let ((x0, y0), (x1, y1)) = (w[0], w[1]);
        if t <= x1 {
            return y0 + (y1 - y0) * ((t - x0) / (x1 - x0)).clamp(0.0, 1.0);
        }
    }
    points[points.len() - 1].1
}

impl Colormap {
    /// The colour of `t` (clamped to `[0, 1]`; NaN counts as 0).
    ///
    /// ```
    /// use convnet::visualize::Colormap;
    /// assert_eq!(Colormap::Viridis.rgb(0.0), [68, 1, 84]);
    /// assert_eq!(Colormap::Viridis.rgb(1.0), [253, 231, 37]);
    /// assert_eq!(Colormap::Jet.rgb(0.0), [0, 0, 128]);
    /// assert_eq!(Colormap::Gray.rgb(0.5), [128, 128, 128]);
    /// ```
    pub fn rgb(self, t: f32) -> [u8; 3] {
        let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) };
        let byte = |v: f32| (v * 255.0).round().clamp(0.0, 255.0) as u8;
        match self {
            Colormap::Viridis => {
                let x = t * 8.0;
                let i = (x.floor() as usize).min(7);
                let f = x - i as f32;
                let (a, b) = (VIRIDIS[i], VIRIDIS[i + 1]);
                std::array::from_fn(|k| (a[k] as f32 + (b[k] as f32 - a[k] as f32) * f).round() as u8)
            }
            Colormap::Jet => [
                byte(piecewise(&[(0.0, 0.0), (0.35, 0.0), (0.66, 1.0), (0.89, 1.0), (1.0, 0.5)], t)),
                byte(piecewise(&[(0.0, 0.0), (0.125, 0.0), (0.375, 1.0), (0.64, 1.0), (0.91, 0.0), (1.0, 0.0)], t)),
                byte(piecewise(&[(0.0, 0.5), (0.11, 1.0), (0.34, 1.0), (0.65, 0.0), (1.0, 0.0)], t)),
            ],
            Colormap::Gray => [byte(t); 3],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Colormap;

    #[test]
    fn colormaps_are_continuous_and_ordered() {
        for map in [Colormap::Viridis, Colormap::Jet, Colormap::Gray] {
            let mut prev = map.rgb(0.0);
            for i in 1..=1000 {
                let c = map.rgb(i as f32 / 1000.0);
                let step: i32 = c.iter().zip(prev).map(|(&a, b)| (a as i32 - b as i32).abs()).max().unwrap();
                assert!(step <= 3, "{map:?} jumps at {i}: {prev:?} -> {c:?}");
                prev = c;
            }
        }
        // Viridis gets brighter all the way (perceptual order survives greyscale printing).
        let luma = |c: [u8; 3]| 0.299 * c[0] as f32 + 0.587 * c[1] as f32 + 0.114 * c[2] as f32;
        for i in 0..100 {
            let (a, b) = (Colormap::Viridis.rgb(i as f32 / 100.0), Colormap::Viridis.rgb((i + 1) as f32 / 100.0));
            assert!(luma(b) >= luma(a) - 0.5, "{i}");
        }
        assert_eq!(Colormap::Jet.rgb(1.0), [128, 0, 0]);
        assert_eq!(Colormap::Jet.rgb(0.5)[1], 255);
        assert_eq!("jet".parse::<Colormap>(), Ok(Colormap::Jet));
        assert!("hot".parse::<Colormap>().unwrap_err().contains("viridis"));
    }
}
