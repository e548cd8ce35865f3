//! Average pooling, forward and backward, with padded positions left out of
//! the divisor (Keras/TensorFlow semantics; PyTorch's `count_include_pad`
//! is a [`PoolOptions`](super::PoolOptions) option).
//!
//! For each output pixel, a row of `c` sums gathers the window's taps (one
//! contiguous add per tap, vectorised over channels) and is divided by the
//! tap count; backward adds `g / count` to every tap of the window, in output
//! order. Same operations in the same order as the scalar
//! [`reference`](mod@super::reference), so the two agree bit for bit.

use super::shape::check_avg;
use super::{options, PoolShape};
use crate::arch::Token;
use crate::simd::SimdLevel;
use crate::Result;
use rayon::prelude::*;

/// Average pooling of one batch item.
#[inline(always)]
fn forward_item(s: &PoolShape, x: &[f32], y: &mut [f32]) {
    let (ow, c) = (s.out_w(), s.c);
    for (p, yrow) in y.chunks_exact_mut(c).enumerate() {
        let (ys, xs) = s.window(p / ow, p % ow);
        let count = (ys.len() * xs.len()) as f32;
        yrow.fill(0.0);
        for iy in ys {
            for ix in xs.clone() {
                let xrow = &x[(iy * s.w + ix) * c..][..c];
                yrow.iter_mut().zip(xrow).for_each(|(o, &v)| *o += v);
            }
        }
        yrow.iter_mut().for_each(|o| *o /= count);
    }
}

/// Average pooling backward for one batch item (overwrites `gx`).
#[inline(always)]
fn backward_item(s: &PoolShape, gy: &[f32], gx: &mut [f32]) {
    let (ow, c) = (s.out_w(), s.c);
    gx.fill(0.0);
    for (p, grow) in gy.chunks_exact(c).enumerate() {
        let (ys, xs) = s.window(p / ow, p % ow);
        let inv = 1.0 / (ys.len() * xs.len()) as f32;
        for iy in ys {
            for ix in xs.clone() {
                let gxrow = &mut gx[(iy * s.w + ix) * c..][..c];
                gxrow.iter_mut().zip(grow).for_each(|(d, &g)| *d += g * inv);
            }
        }
    }
}

crate::arch::multiversion!(fn forward_item_at(s: &PoolShape, x: &[f32], y: &mut [f32]) => forward_item);
crate::arch::multiversion!(fn backward_item_at(s: &PoolShape, gy: &[f32], gx: &mut [f32]) => backward_item);

/// Average pooling; padded positions are not counted (Keras semantics).
///
/// ```
/// use convnet_kernels::conv::Padding;
/// use convnet_kernels::pool::{avg_pool2d_forward, PoolShape};
/// // 3x3 input, 2x2 window, stride 2, `same`: the right and bottom windows are cut by the edge.
/// let s = PoolShape::new(1, 3, 3, 1, (2, 2), (2, 2), Padding::Same)?;
/// let mut y = [0.0; 4];
/// avg_pool2d_forward(&s, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0], &mut y)?;
/// assert_eq!(y, [3.0, 4.5, 7.5, 9.0]);
/// # Ok::<(), convnet_kernels::Error>(())
/// ```
pub fn avg_pool2d_forward(s: &PoolShape, input: &[f32], output: &mut [f32]) -> Result<()> {
    avg_pool2d_forward_at(crate::simd::try_level()?, s, input, output)
}

/// [`avg_pool2d_forward`] on an explicit SIMD level (an
/// [`Error::Simd`](crate::Error::Simd) if this CPU cannot run it).
pub fn avg_pool2d_forward_at(level: SimdLevel, s: &PoolShape, input: &[f32], output: &mut [f32]) -> Result<()> {
    let token = Token::new(level)?;
    check_avg(s, input, output, ("input", "output"))?;
    if !s.options.is_default() {
        options::avg_forward(token, s, input, output);
        return Ok(());
    }
    let (item, out_item) = (s.h * s.w * s.c, s.out_h() * s.out_w() * s.c);
    output.par_chunks_mut(out_item).enumerate().for_each(|(n, y)| {
        forward_item_at(token, s, &input[n * item..][..item], y);
    });
    Ok(())
}

/// Average pooling backward (overwrites `grad_input`).
pub fn avg_pool2d_backward(s: &PoolShape, grad_output: &[f32], grad_input: &mut [f32]) -> Result<()> {
    avg_pool2d_backward_at(crate::simd::try_level()?, s, grad_output, grad_input)
}

/// [`avg_pool2d_backward`] on an explicit SIMD level (an
/// [`Error::Simd`](crate::Error::Simd) if this CPU cannot run it).
pub fn avg_pool2d_backward_at(
    level: SimdLevel,
    s: &PoolShape,
    grad_output: &[f32],
    grad_input: &mut [f32],
) -> Result<()> {
    let token = Token::new(level)?;
    check_avg(s, grad_input, grad_output, ("grad_input", "grad_output"))?;
    if !s.options.is_default() {
        options::avg_backward(token, s, grad_output, grad_input);
        return Ok(());
    }
    let (item, out_item) = (s.h * s.w * s.c, s.out_h() * s.out_w() * s.c);
    grad_input.par_chunks_mut(item).enumerate().for_each(|(n, gx)| {
        backward_item_at(token, s, &grad_output[n * out_item..][..out_item], gx);
    });
    Ok(())
}
