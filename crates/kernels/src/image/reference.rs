//! The scalar oracle: TensorFlow's `ImageProjectiveTransformV3` generator
//! (`tensorflow/core/kernels/image/image_ops.h`), which Keras 3's
//! `keras.ops.image.affine_transform` runs on the TensorFlow backend,
//! transcribed one output value at a time in its own order of f32 operations.
//! Slow and obviously the same as TensorFlow; the fast path is tested against it.

use super::{Affine, FillMode, Interpolation, WarpShape};

/// TensorFlow's `MapCoordinate<mode>`: an input coordinate outside `[0, len - 1]`
/// mapped back inside (reflect, wrap, nearest) or left alone (constant).
///
/// The integer arithmetic is TensorFlow's: `static_cast<DenseIndex>` of a
/// float quotient (truncation), an int64 product converted back to float
/// (saturating here where TensorFlow's would overflow, for coordinates beyond
/// 2^62). For `len <= 1` reflect and wrap give 0. Note TensorFlow's wrap
/// divides by `len - 1` where `len` would be the period, so a coordinate
/// just outside wraps to the clamped edge rather than to the other side; this
/// is what Keras computes on TensorFlow, and what is reproduced.
pub fn map_coordinate(mode: FillMode, coord: f32, len: usize) -> f32 {
    let lenf = len as f32;
    let len_i = len as i64;
    let mut c = coord;
    match mode {
        FillMode::Constant => return coord,
        FillMode::Nearest => {}
        FillMode::Reflect => {
            if c < 0.0 {
                if len <= 1 {
                    c = 0.0;
                } else {
                    let sz2 = 2 * len_i;
                    // TensorFlow tests `in_coord < sz2`, true for every negative coordinate.
                    if c < sz2 as f32 {
                        c += sz2.saturating_mul((-c / sz2 as f32) as i64) as f32;
                    }
                    c = if c < -lenf { c + sz2 as f32 } else { -c - 1.0 };
                }
            } else if c > lenf - 1.0 {
                if len <= 1 {
                    c = 0.0;
                } else {
                    let sz2 = 2 * len_i;
                    c -= sz2.saturating_mul((c / sz2 as f32) as i64) as f32;
                    if c >= lenf {
                        c = sz2 as f32 - c - 1.0;
                    }
                }
            }
        }
        FillMode::Wrap => {
            if c < 0.0 {
                if len <= 1 {
                    c = 0.0;
                } else {
                    let sz = len_i - 1;
                    c += len_i.saturating_mul(((-c / sz as f32) as i64).saturating_add(1)) as f32;
                }
            } else if c > lenf - 1.0 {
                if len <= 1 {
                    c = 0.0;
                } else {
                    let sz = len_i - 1;
                    c -= len_i.saturating_mul((c / sz as f32) as i64) as f32;
                }
            }
        }
    }
    clamp_01(c, lenf)
}

/// Eigen's `scalar_clamp_op(0, len - 1)`: `min(max(c, 0), len - 1)` with
/// `max(a, b) = a < b ? b : a` and `min(a, b) = b < a ? b : a`.
#[inline]
pub(crate) fn clamp_01(c: f32, lenf: f32) -> f32 {
    let lo = if c < 0.0 { 0.0 } else { c };
    let hi = lenf - 1.0;
    if hi < lo {
        hi
    } else {
        lo
    }
}

/// Warps a batch value by value, as TensorFlow does (see the module doc).
pub fn affine_warp_reference(
    input: &[f32],
    shape: WarpShape,
    transforms: &[Affine],
    interpolation: Interpolation,
    fill_mode: FillMode,
    fill_value: f32,
    output: &mut [f32],
) {
    let WarpShape { n, h, w, c } = shape;
    let read = |b: usize, y: f32, x: f32, ch: usize| -> f32 {
        // DenseIndex(y) truncates; in-bounds test on the integers.
        if y >= 0.0 && y < h as f32 && x >= 0.0 && x < w as f32 {
            let (yi, xi) = (y as usize, x as usize);
            input[((b * h + yi) * w + xi) * c + ch]
        } else {
            fill_value
        }
    };
    for b in 0..n {
        let t = if transforms.len() == 1 { transforms[0] } else { transforms[b] };
        for oy in 0..h {
            for ox in 0..w {
                let (oxf, oyf) = (ox as f32, oy as f32);
                let ix = t.a0 * oxf + t.a1 * oyf + t.a2;
                let iy = t.b0 * oxf + t.b1 * oyf + t.b2;
                let x = map_coordinate(fill_mode, ix, w);
                let y = map_coordinate(fill_mode, iy, h);
                for ch in 0..c {
                    let v = match interpolation {
                        Interpolation::Nearest => read(b, y.round(), x.round(), ch),
                        Interpolation::Bilinear => {
                            let (yf, xf) = (y.floor(), x.floor());
                            let (yc, xc) = (yf + 1.0, xf + 1.0);
                            let top = (xc - x) * read(b, yf, xf, ch) + (x - xf) * read(b, yf, xc, ch);
                            let bottom = (xc - x) * read(b, yc, xf, ch) + (x - xf) * read(b, yc, xc, ch);
                            (yc - y) * top + (y - yf) * bottom
                        }
                    };
                    output[((b * h + oy) * w + ox) * c + ch] = v;
                }
            }
        }
    }
}
