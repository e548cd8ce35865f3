//! Max pooling, forward (with the argmax backward needs) and backward.
//!
//! Forward: for each output pixel, the window's first tap seeds a row of `c`
//! running maxima and argmaxes, and every later tap replaces them lane by
//! lane only where it is strictly greater (a branch-free select over the
//! contiguous channels, which LLVM vectorises): the FIRST maximum in
//! row-major window order wins, as in the scalar [`reference`](mod@super::reference).
//!
//! Backward: every output pixel's gradient row is added to every tap of its
//! window through a select on the stored argmax (`argmax == index ? g : -0.0`),
//! again vectorised over channels. `-0.0` is the exact identity of IEEE
//! addition, so each input element sees the same additions in the same
//! (output) order as the scalar scatter, bit for bit. The same pass counts
//! the matches, which proves every argmax lies in its own window without a
//! second walk (an invalid one is an error, found by a slow scan only then).

use super::shape::{check_max_backward, check_max_forward};
use super::{options, PoolShape};
use crate::arch::Token;
use crate::simd::SimdLevel;
use crate::{Error, Result};
use rayon::prelude::*;

/// The first argmax that is not an element of its own output's window
/// (right channel included), as [`max_pool2d_forward`] never writes.
pub(super) fn first_bad_argmax(s: &PoolShape, argmax: &[u32]) -> Option<u32> {
    let (ow, c, out_item) = (s.out_w(), s.c, s.out_h() * s.out_w() * s.c);
    argmax.iter().enumerate().find_map(|(o, &a)| {
        let (p, ch) = (o % out_item / c, o % c);
        let (ys, xs) = s.window(p / ow, p % ow);
        let (pix, a_ch) = (a as usize / c, a as usize % c);
        let inside = a_ch == ch && ys.contains(&(pix / s.w)) && xs.contains(&(pix % s.w));
        (!inside).then_some(a)
    })
}

/// The error for an argmax outside its window.
pub(super) fn argmax_outside(s: &PoolShape, a: u32) -> Error {
    Error::InvalidShape { shape: s.to_string(), reason: format!("argmax index {a} outside its window") }
}

/// Max pooling of one batch item. `x` is `[h, w, c]`, `y` and `am` are `[oh, ow, c]`.
#[inline(always)]
fn forward_item(s: &PoolShape, x: &[f32], y: &mut [f32], am: &mut [u32]) {
    let (ow, c) = (s.out_w(), s.c);
    for (p, (yrow, arow)) in y.chunks_exact_mut(c).zip(am.chunks_exact_mut(c)).enumerate() {
        let (ys, xs) = s.window(p / ow, p % ow);
        // The first tap seeds the running maximum, the rest replace it only when strictly greater.
        let first = (ys.start * s.w + xs.start) * c;
        yrow.copy_from_slice(&x[first..][..c]);
        for (ch, a) in arow.iter_mut().enumerate() {
            *a = (first + ch) as u32;
        }
        for iy in ys {
            for ix in xs.clone() {
                let base = (iy * s.w + ix) * c;
                if base == first {
                    continue;
                }
                let xrow = &x[base..][..c];
                for (ch, ((b, a), &v)) in yrow.iter_mut().zip(arow.iter_mut()).zip(xrow).enumerate() {
                    let greater = v > *b;
                    *b = if greater { v } else { *b };
                    *a = if greater { (base + ch) as u32 } else { *a };
                }
            }
        }
    }
}

/// Max pooling backward for one batch item (overwrites `gx`), vectorised over
/// channels (see the module doc).
///
/// Returns how many (output element, tap) pairs matched: every output element
/// whose argmax lies in its own window matches exactly once (the taps of a
/// window are distinct elements), so the count equals the output size exactly
/// when every argmax is valid.
#[inline(always)]
fn backward_item(s: &PoolShape, gy: &[f32], am: &[u32], gx: &mut [f32]) -> usize {
    let (ow, c) = (s.out_w(), s.c);
    let mut matched = 0usize;
    gx.fill(0.0);
    for (p, (grow, arow)) in gy.chunks_exact(c).zip(am.chunks_exact(c)).enumerate() {
        let (ys, xs) = s.window(p / ow, p % ow);
        for iy in ys {
            for ix in xs.clone() {
                let base = (iy * s.w + ix) * c;
                let gxrow = &mut gx[base..][..c];
                for (ch, ((d, &g), &a)) in gxrow.iter_mut().zip(grow).zip(arow).enumerate() {
                    let hit = a == (base + ch) as u32;
                    *d += if hit { g } else { -0.0 };
                    matched += hit as usize;
                }
            }
        }
    }
    matched
}

crate::arch::multiversion!(fn forward_item_at(s: &PoolShape, x: &[f32], y: &mut [f32], am: &mut [u32]) => forward_item);
crate::arch::multiversion!(fn backward_item_at(s: &PoolShape, gy: &[f32], am: &[u32], gx: &mut [f32]) -> usize => backward_item);

/// Max pooling. `argmax[i]` receives, for output element `i`, the index of the
/// winning element within its batch item (`(y * w + x) * c + ch`); ties go to
/// the first element in row-major window order (see the module doc of
/// [`crate::pool`]).
///
/// ```
/// use convnet_kernels::conv::Padding;
/// use convnet_kernels::pool::{max_pool2d_forward, PoolShape};
/// let s = PoolShape::new(1, 2, 2, 1, (2, 2), (2, 2), Padding::Valid)?;
/// let (mut y, mut am) = ([0.0], [0]);
/// max_pool2d_forward(&s, &[1.0, 3.0, 3.0, 2.0], &mut y, &mut am)?;
/// assert_eq!((y, am), ([3.0], [1])); // the first of the two 3s
/// # Ok::<(), convnet_kernels::Error>(())
/// ```
pub fn max_pool2d_forward(s: &PoolShape, input: &[f32], output: &mut [f32], argmax: &mut [u32]) -> Result<()> {
    max_pool2d_forward_at(crate::simd::try_level()?, s, input, output, argmax)
}

/// [`max_pool2d_forward`] on an explicit SIMD level (an [`Error::Simd`] if
/// this CPU cannot run it).
///
/// ```
/// use convnet_kernels::conv::Padding;
/// use convnet_kernels::pool::{max_pool2d_forward_at, PoolShape};
/// use convnet_kernels::simd::SimdLevel;
/// let s = PoolShape::new(1, 2, 2, 1, (2, 2), (2, 2), Padding::Valid)?;
/// for level in SimdLevel::available() {
///     let (mut y, mut am) = ([0.0], [0]);
///     max_pool2d_forward_at(level, &s, &[1.0, 3.0, 3.0, 2.0], &mut y, &mut am)?;
///     assert_eq!((y, am), ([3.0], [1]));
/// }
/// # Ok::<(), convnet_kernels::Error>(())
/// ```
pub fn max_pool2d_forward_at(
    level: SimdLevel,
    s: &PoolShape,
    input: &[f32],
    output: &mut [f32],
    argmax: &mut [u32],
) -> Result<()> {
    let token = Token::new(level)?;
    check_max_forward(s, input, output, argmax)?;
    if !s.options.is_default() {
        options::max_forward(token, s, input, output, argmax);
        return Ok(());
    }
    let (item, out_item) = (s.h * s.w * s.c, s.out_h() * s.out_w() * s.c);
    output.par_chunks_mut(out_item).zip(argmax.par_chunks_mut(out_item)).enumerate().for_each(|(n, (y, am))| {
        forward_item_at(token, s, &input[n * item..][..item], y, am);
    });
    Ok(())
}

/// Max pooling backward: routes each output gradient to its argmax (overwrites
/// `grad_input`). Overlapping windows that share a winner accumulate, in output
/// order. An argmax that is not an element of its own window (channel
/// included), as [`max_pool2d_forward`] never writes, is an error.
pub fn max_pool2d_backward(s: &PoolShape, grad_output: &[f32], argmax: &[u32], grad_input: &mut [f32]) -> Result<()> {
    max_pool2d_backward_at(crate::simd::try_level()?, s, grad_output, argmax, grad_input)
}

/// [`max_pool2d_backward`] on an explicit SIMD level (an [`Error::Simd`] if
/// this CPU cannot run it).
pub fn max_pool2d_backward_at(
    level: SimdLevel,
    s: &PoolShape,
    grad_output: &[f32],
    argmax: &[u32],
    grad_input: &mut [f32],
) -> Result<()> {
    let token = Token::new(level)?;
    check_max_backward(s, grad_output, argmax, grad_input)?;
    if !s.options.is_default() {
        return options::max_backward(s, grad_output, argmax, grad_input);
    }
    let (item, out_item) = (s.h * s.w * s.c, s.out_h() * s.out_w() * s.c);
    let all_matched = grad_input.par_chunks_mut(item).enumerate().all(|(n, gx)| {
        let range = n * out_item..(n + 1) * out_item;
        backward_item_at(token, s, &grad_output[range.clone()], &argmax[range], gx) == out_item
    });
    if all_matched {
        return Ok(());
    }
    // Slow path, errors only: find the first offender for the message.
    Err(argmax_outside(s, first_bad_argmax(s, argmax).unwrap_or(u32::MAX)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conv::Padding;

    #[test]
    fn ties_go_to_the_first_in_row_major_order() {
        let s = PoolShape::new(1, 2, 2, 2, (2, 2), (2, 2), Padding::Valid).unwrap();
        // channel 0: all equal -> index 0; channel 1: max 5 at (0,1) and (1,0) -> (0,1).
        let x = [1.0, 0.0, 1.0, 5.0, 1.0, 5.0, 1.0, 4.0];
        for token in Token::every() {
            let (mut y, mut am) = ([f32::NAN; 2], [u32::MAX; 2]);
            forward_item_at(token, &s, &x, &mut y, &mut am);
            assert_eq!((y, am), ([1.0, 5.0], [0, 3]), "{:?}", token.level());
        }
    }
}
