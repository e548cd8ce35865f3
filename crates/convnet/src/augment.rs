//! Preprocessing layers: `Rescaling`, and the data-augmentation layers
//! `RandomFlip`, `RandomRotation`, `RandomZoom`, `RandomTranslation` and `RandomShear`, with
//! Keras 3's arguments, defaults and meanings.
//!
//! The random layers are active only in training (`fit`): there each image of
//! a batch gets its own random transform, drawn from the batch's seed (so a run
//! is repeatable), and the transforms of consecutive random layers act as Keras
//! chains them; each layer warps the batch with the kernels' fused affine warp
//! (`convnet_kernels::image`, TensorFlow's arithmetic to the bit). In
//! `evaluate` and `predict` they are the identity. They have no parameters,
//! keep the shape, and must come before any layer with parameters (nothing
//! needs their gradient there, and nothing computes it); a model that puts one
//! later is refused when it is trained.
//!
//! Keras's meanings: `RandomRotation(factor)` turns by a uniform fraction of a
//! full circle in `[lower, upper]` (`factor = 0.1` is `[-0.1, 0.1]`, up to 36
//! degrees either way) about the image centre; `RandomZoom(height_factor,
//! width_factor)` scales by `1 + uniform(lower, upper)` (positive zooms out,
//! negative zooms in; without `width_factor` the width follows the height);
//! `RandomTranslation(height_factor, width_factor)` shifts by a uniform
//! fraction of the height and width; `RandomShear(x_factor, y_factor)` shears
//! by Keras's matrix `[[1, sx, 0], [sy, 1, 0]]` (output pixel `(x, y)` reads
//! the input at `(x + sx * y, sy * x + y)`: about the top-left corner, in
//! pixels), with `sx` uniform in the `x_factor` range, `sy` in the `y_factor`
//! range and one random sign for both (a single number `f` is the range
//! `[-f, f]`; Keras allows magnitudes up to 1); `RandomFlip(mode)` flips each image with
//! probability 1/2 (`horizontal_and_vertical` flips both ways at once, as
//! Keras 3 draws one decision per image). Fill mode `reflect` and bilinear
//! interpolation are the defaults, as in Keras. The random numbers are convnet's
//! own generator, not TensorFlow's: the same seed gives the same augmentations
//! run to run, not the images Keras would draw.

use crate::options::InputShape;
use crate::{Error, Result};
use convnet_kernels::image::{self, Affine, WarpOptions};
use convnet_tensor::Rng;
use serde::{Deserialize, Serialize};

/// Keras's `fill_mode`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FillMode {
    /// `dcba|abcd|dcba` (the default).
    #[default]
    Reflect,
    /// Tiles (TensorFlow's arithmetic).
    Wrap,
    /// `fill_value` outside.
    Constant,
    /// The nearest edge pixel.
    Nearest,
}

/// Keras's `interpolation` for the random layers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Interpolation {
    /// Bilinear (the default).
    #[default]
    Bilinear,
    /// Nearest pixel.
    Nearest,
}

/// `RandomFlip`'s `mode`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlipMode {
    /// Left-right.
    Horizontal,
    /// Top-bottom.
    Vertical,
    /// Both at once (the default).
    #[default]
    HorizontalAndVertical,
}

/// A `[lower, upper]` range from Keras's `factor` argument: a single number
/// `f` means `[-|f|, |f|]`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Factor(pub f32, pub f32);

impl From<f32> for Factor {
    fn from(f: f32) -> Self {
        Factor(-f.abs(), f.abs())
    }
}

impl From<(f32, f32)> for Factor {
    fn from((a, b): (f32, f32)) -> Self {
        Factor(a.min(b), a.max(b))
    }
}

/// `x * scale + offset` on every value (Keras `Rescaling`; the book's
/// `Rescaling(1./255)`). Active in training and inference.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rescaling {
    /// Layer name.
    pub name: Option<String>,
    /// Multiplier.
    pub scale: f32,
    /// Added after scaling (default 0).
    #[serde(default)]
    pub offset: f32,
    /// The input shape, when this is the first layer.
    pub input_shape: Option<InputShape>,
}

impl Rescaling {
    /// `x * scale + offset`.
    ///
    /// ```
    /// use convnet::{Rescaling, Sequential};
    /// let model = Sequential::new().add(Rescaling::new(1.0 / 255.0, 0.0).input_shape((4, 4, 3))).build()?;
    /// assert_eq!(model.params().len(), 0); // no parameters
    /// # Ok::<(), convnet::Error>(())
    /// ```
    pub fn new(scale: f32, offset: f32) -> Self {
        Rescaling { name: None, scale, offset, input_shape: None }
    }
}

macro_rules! random_layer {
    ($(#[$doc:meta])* $name:ident { $($(#[$fdoc:meta])* $field:ident: $ty:ty),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            /// Layer name.
            pub name: Option<String>,
            $($(#[$fdoc])* pub $field: $ty,)*
            /// What positions outside the image read (default `reflect`).
            #[serde(default)]
            pub fill_mode: FillMode,
            /// Bilinear (default) or nearest.
            #[serde(default)]
            pub interpolation: Interpolation,
            /// The value `constant` fill reads (default 0).
            #[serde(default)]
            pub fill_value: f32,
            /// Mixed into the batch seed, so two such layers draw differently.
            #[serde(default)]
            pub seed: Option<u64>,
            /// The input shape, when this is the first layer.
            pub input_shape: Option<InputShape>,
        }

        impl $name {
            /// The fill mode.
            pub fn fill_mode(mut self, m: FillMode) -> Self {
                self.fill_mode = m;
                self
            }
            /// The interpolation.
            pub fn interpolation(mut self, i: Interpolation) -> Self {
                self.interpolation = i;
                self
            }
            /// The constant fill value.
            pub fn fill_value(mut self, v: f32) -> Self {
                self.fill_value = v;
                self
            }
            /// A seed of its own.
            pub fn seed(mut self, s: u64) -> Self {
                self.seed = Some(s);
                self
            }
            /// Declares the input shape (first layer).
            pub fn input_shape(mut self, s: impl Into<InputShape>) -> Self {
                self.input_shape = Some(s.into());
                self
            }
            /// Names the layer.
            pub fn name(mut self, n: impl Into<String>) -> Self {
                self.name = Some(n.into());
                self
            }
        }
    };
}

random_layer! {
    /// Flips each image with probability 1/2 in training (Keras `RandomFlip`).
    RandomFlip {
        /// Which flips (default both).
        mode: FlipMode,
    }
}

random_layer! {
    /// Rotates each image by a random fraction of a turn in training (Keras `RandomRotation`).
    RandomRotation {
        /// The range of the turn, in fractions of 2 pi.
        factor: Factor,
    }
}

random_layer! {
    /// Zooms each image in or out at random in training (Keras `RandomZoom`).
    RandomZoom {
        /// The range of the vertical zoom (`1 + uniform(lower, upper)`; positive zooms out).
        height_factor: Factor,
        /// The horizontal range; `None` keeps the aspect ratio (Keras's default).
        width_factor: Option<Factor>,
    }
}

random_layer! {
    /// Shifts each image at random in training (Keras `RandomTranslation`).
    RandomTranslation {
        /// The range of the vertical shift, as a fraction of the height.
        height_factor: Factor,
        /// The range of the horizontal shift, as a fraction of the width.
        width_factor: Factor,
    }
}

random_layer! {
    /// Shears each image at random in training (Keras `RandomShear`): output
    /// pixel `(x, y)` reads the input at `(x + sx * y, sy * x + y)`, with
    /// `sx` drawn from `x_factor`, `sy` from `y_factor` and one random sign
    /// applied to both (Keras's `invert`).
    ///
    /// ```
    /// use convnet::{RandomShear, Sequential};
    /// use convnet_tensor::{Shape, Tensor};
    /// let model = Sequential::new().add(RandomShear::new(0.2, 0.0).input_shape((4, 4, 1))).build()?;
    /// let x = Tensor::full(Shape::nhwc(1, 4, 4, 1), 3.0);
    /// assert_eq!(model.predict(&x, 1)?.data(), x.data()); // the identity outside training
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    RandomShear {
        /// The range of the horizontal shear factor `sx` (a single number
        /// `f` is `[-f, f]`); magnitudes at most 1.
        x_factor: Factor,
        /// The range of the vertical shear factor `sy`.
        y_factor: Factor,
    }
}

fn defaults() -> (FillMode, Interpolation, f32, Option<u64>, Option<InputShape>) {
    (FillMode::Reflect, Interpolation::Bilinear, 0.0, None, None)
}

impl RandomFlip {
    /// `RandomFlip(mode)`.
    pub fn new(mode: FlipMode) -> Self {
        let (fill_mode, interpolation, fill_value, seed, input_shape) = defaults();
        RandomFlip { name: None, mode, fill_mode, interpolation, fill_value, seed, input_shape }
    }
}

impl RandomRotation {
    /// `RandomRotation(factor)`: `0.1` or `(-0.1, 0.2)` (fractions of a turn).
    pub fn new(factor: impl Into<Factor>) -> Self {
        let (fill_mode, interpolation, fill_value, seed, input_shape) = defaults();
        RandomRotation { name: None, factor: factor.into(), fill_mode, interpolation, fill_value, seed, input_shape }
    }
}

impl RandomZoom {
    /// `RandomZoom(height_factor)`: the width follows the height.
    pub fn new(height_factor: impl Into<Factor>) -> Self {
        let (fill_mode, interpolation, fill_value, seed, input_shape) = defaults();
        RandomZoom {
            name: None,
            height_factor: height_factor.into(),
            width_factor: None,
            fill_mode,
            interpolation,
            fill_value,
            seed,
            input_shape,
        }
    }

    /// A horizontal zoom range of its own.
    pub fn width_factor(mut self, f: impl Into<Factor>) -> Self {
        self.width_factor = Some(f.into());
        self
    }
}

impl RandomTranslation {
    /// `RandomTranslation(height_factor, width_factor)`.
    pub fn new(height_factor: impl Into<Factor>, width_factor: impl Into<Factor>) -> Self {
        let (fill_mode, interpolation, fill_value, seed, input_shape) = defaults();
        RandomTranslation {
            name: None,
            height_factor: height_factor.into(),
            width_factor: width_factor.into(),
            fill_mode,
            interpolation,
            fill_value,
            seed,
            input_shape,
        }
    }
}

impl RandomShear {
    /// `RandomShear(x_factor, y_factor)`: `0.2` or `(0.1, 0.3)` each (Keras's
    /// defaults are 0, no shear).
    pub fn new(x_factor: impl Into<Factor>, y_factor: impl Into<Factor>) -> Self {
        let (fill_mode, interpolation, fill_value, seed, input_shape) = defaults();
        RandomShear {
            name: None,
            x_factor: x_factor.into(),
            y_factor: y_factor.into(),
            fill_mode,
            interpolation,
            fill_value,
            seed,
            input_shape,
        }
    }
}

impl Rescaling {
    /// Declares the input shape (first layer).
    pub fn input_shape(mut self, s: impl Into<InputShape>) -> Self {
        self.input_shape = Some(s.into());
        self
    }
    /// Names the layer.
    pub fn name(mut self, n: impl Into<String>) -> Self {
        self.name = Some(n.into());
        self
    }
}

/// Checks a random layer's arguments for layer `name` on `input`.
pub(crate) fn check(name: &str, class: &str, input: &[usize], factors: &[Factor]) -> Result<()> {
    if input.len() != 3 {
        return Err(Error::build(name, format!("{class} needs an (h, w, c) input, got {input:?}")));
    }
    for f in factors {
        if !(f.0.is_finite() && f.1.is_finite()) {
            return Err(Error::build(name, format!("{class} factor {f:?} is not finite")));
        }
    }
    Ok(())
}

/// The kernels' warp options of a random layer.
fn options(fill_mode: FillMode, interpolation: Interpolation, fill_value: f32) -> WarpOptions {
    WarpOptions {
        fill_mode: match fill_mode {
            FillMode::Reflect => image::FillMode::Reflect,
            FillMode::Wrap => image::FillMode::Wrap,
            FillMode::Constant => image::FillMode::Constant,
            FillMode::Nearest => image::FillMode::Nearest,
        },
        interpolation: match interpolation {
            Interpolation::Bilinear => image::Interpolation::Bilinear,
            Interpolation::Nearest => image::Interpolation::Nearest,
        },
        fill_value,
    }
}

fn draw(rng: &mut Rng, f: Factor) -> f32 {
    if f.0 == f.1 {
        f.0
    } else {
        rng.uniform(f.0, f.1)
    }
}

/// A random augmentation layer's configuration, as [`transforms`] reads it
/// (`Layer::as_random` makes one), so this file needs nothing of `Layer`.
#[derive(Clone, Copy, Debug)]
pub(crate) enum RandomLayer<'a> {
    /// `RandomFlip`.
    Flip(&'a RandomFlip),
    /// `RandomRotation`.
    Rotation(&'a RandomRotation),
    /// `RandomZoom`.
    Zoom(&'a RandomZoom),
    /// `RandomTranslation`.
    Translation(&'a RandomTranslation),
    /// `RandomShear`.
    Shear(&'a RandomShear),
}

/// One transform per image for a random layer, and its warp options; `None`
/// for a layer that is not a random one.
pub(crate) fn transforms(
    layer: Option<RandomLayer<'_>>,
    n: usize,
    h: usize,
    w: usize,
    seed: u64,
) -> Option<(Vec<Affine>, WarpOptions)> {
    let mix = |s: Option<u64>| seed ^ s.unwrap_or(0).wrapping_mul(0xD6E8_FEB8_6659_FD93);
    Some(match layer {
        Some(RandomLayer::Flip(l)) => {
            let mut rng = Rng::new(mix(l.seed));
            let t = (0..n)
                .map(|_| {
                    if rng.uniform(0.0, 1.0) > 0.5 {
                        return Affine::IDENTITY;
                    }
                    match l.mode {
                        FlipMode::Horizontal => Affine::flip_horizontal(w),
                        FlipMode::Vertical => Affine::flip_vertical(h),
                        FlipMode::HorizontalAndVertical => Affine::flip_horizontal(w).then(Affine::flip_vertical(h)),
                    }
                })
                .collect();
            (t, options(l.fill_mode, l.interpolation, l.fill_value))
        }
        Some(RandomLayer::Rotation(l)) => {
            let mut rng = Rng::new(mix(l.seed));
            let t = (0..n)
                .map(|_| {
                    let angle = draw(&mut rng, Factor(l.factor.0 * 360.0, l.factor.1 * 360.0));
                    Affine::keras(0.5, 0.5, angle, 0.0, 0.0, 1.0, 0.0, 0.0, h, w)
                })
                .collect();
            (t, options(l.fill_mode, l.interpolation, l.fill_value))
        }
        Some(RandomLayer::Zoom(l)) => {
            let mut rng = Rng::new(mix(l.seed));
            let t = (0..n)
                .map(|_| {
                    let zy = 1.0 + draw(&mut rng, l.height_factor);
                    let zx = match l.width_factor {
                        Some(f) => 1.0 + draw(&mut rng, f),
                        None => zy,
                    };
                    // Keras's _get_zoom_matrix.
                    let x_offset = ((w as f32 - 1.0) / 2.0) * (1.0 - zx);
                    let y_offset = ((h as f32 - 1.0) / 2.0) * (1.0 - zy);
                    Affine { a0: zx, a1: 0.0, a2: x_offset, b0: 0.0, b1: zy, b2: y_offset }
                })
                .collect();
            (t, options(l.fill_mode, l.interpolation, l.fill_value))
        }
        Some(RandomLayer::Translation(l)) => {
            let mut rng = Rng::new(mix(l.seed));
            let t = (0..n)
                .map(|_| {
                    let dy = draw(&mut rng, l.height_factor) * h as f32;
                    let dx = draw(&mut rng, l.width_factor) * w as f32;
                    // Keras's _get_translation_matrix: [1, 0, -dx, 0, 1, -dy].
                    Affine { a2: -dx, b2: -dy, ..Affine::IDENTITY }
                })
                .collect();
            (t, options(l.fill_mode, l.interpolation, l.fill_value))
        }
        Some(RandomLayer::Shear(l)) => {
            let mut rng = Rng::new(mix(l.seed));
            let t = (0..n)
                .map(|_| {
                    // Keras draws the sign, then the vertical factor, then the horizontal one.
                    let sign = if rng.uniform(0.0, 1.0) > 0.5 { -1.0 } else { 1.0 };
                    let sy = draw(&mut rng, l.y_factor) * sign;
                    let sx = draw(&mut rng, l.x_factor) * sign;
                    // Keras's _get_shear_matrix: [1, sx, 0, sy, 1, 0].
                    Affine { a1: sx, b0: sy, ..Affine::IDENTITY }
                })
                .collect();
            (t, options(l.fill_mode, l.interpolation, l.fill_value))
        }
        None => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Conv2D, Layer, Sequential};

    #[test]
    fn keras_defaults_summary_rows_and_json() {
        let flip = RandomFlip::new(FlipMode::default());
        assert_eq!(flip.mode, FlipMode::HorizontalAndVertical);
        let rot = RandomRotation::new(0.1);
        assert_eq!(
            (rot.factor, rot.fill_mode, rot.interpolation, rot.fill_value),
            (Factor(-0.1, 0.1), FillMode::Reflect, Interpolation::Bilinear, 0.0)
        );
        assert_eq!(RandomZoom::new((0.3, -0.2)).height_factor, Factor(-0.2, 0.3));
        let model = Sequential::new()
            .add(Rescaling::new(1.0 / 255.0, 0.0).input_shape((150, 150, 3)))
            .add(RandomFlip::new(FlipMode::Horizontal))
            .add(RandomRotation::new(0.1))
            .add(RandomZoom::new(0.2))
            .add(RandomTranslation::new(0.1, 0.1).fill_mode(FillMode::Constant).fill_value(0.5))
            .add(Conv2D::new(4, 3))
            .build()
            .unwrap();
        let summary = model.summary();
        for row in [
            "rescaling (Rescaling)",
            "random_flip (RandomFlip)",
            "random_rotation (RandomRotation)",
            "random_zoom (RandomZoom)",
            "random_translation (RandomTranslation)",
        ] {
            // Keras 2's table cuts the first column at 28 characters ("random_rotation (RandomRotat").
            let shown = &row[..row.len().min(28)];
            let line = summary.lines().find(|l| l.starts_with(shown)).unwrap_or_else(|| panic!("{row} in\n{summary}"));
            assert!(line.contains("(None, 150, 150, 3)") && line.trim_end().ends_with('0'), "{line}");
        }
        assert_eq!(model.params().len(), 2); // the conv kernel and bias only
        for l in [
            Layer::from(RandomTranslation::new(0.1, (-0.2, 0.3)).seed(4).name("t")),
            Layer::from(RandomZoom::new(0.2).width_factor(0.1).interpolation(Interpolation::Nearest)),
            Layer::from(Rescaling::new(2.0, -1.0)),
            Layer::from(RandomFlip::new(FlipMode::Vertical)),
        ] {
            let json = serde_json::to_string(&l).unwrap();
            assert_eq!(serde_json::from_str::<Layer>(&json).unwrap(), l, "{json}");
        }
        let bad = Sequential::new().add(RandomZoom::new(-1.0).input_shape((8, 8, 1))).build();
        assert!(bad.unwrap_err().to_string().contains("above -1"));
        let flat = Sequential::new().add(RandomFlip::new(FlipMode::Horizontal).input_shape(10)).build();
        assert!(flat.is_err());
    }

    #[test]
    fn shear_draws_kerass_matrix_with_one_sign_for_both_factors() {
        let l = RandomShear::new((0.3, 0.3), (0.1, 0.1));
        let draw = |seed| transforms(Some(RandomLayer::Shear(&l)), 64, 10, 12, seed).unwrap().0;
        let t = draw(7);
        let mut signs = [0; 2];
        for a in &t {
            assert_eq!((a.a0, a.b1, a.a2, a.b2), (1.0, 1.0, 0.0, 0.0), "{a:?}");
            let sign = a.a1 / 0.3;
            assert!((sign.abs() - 1.0).abs() < 1e-6 && (a.b0 - 0.1 * sign).abs() < 1e-6, "{a:?}");
            signs[(sign > 0.0) as usize] += 1;
        }
        assert!(signs[0] > 10 && signs[1] > 10, "both signs drawn: {signs:?}");
        assert_eq!(t, draw(7), "same seed, same shears");
        assert_ne!(t, draw(8), "another seed, other shears");
        let range = RandomShear::new(0.2, 0.0);
        let (t, _) = transforms(Some(RandomLayer::Shear(&range)), 64, 10, 12, 1).unwrap();
        assert!(t.iter().all(|a| a.a1.abs() <= 0.2 && a.b0 == 0.0));
        assert!(t.iter().any(|a| a.a1.abs() < 0.1) && t.iter().any(|a| a.a1.abs() > 0.1), "spread over the range");
    }
}
