//! Global average pooling: `[n, h, w, c] -> [n, c]`, the mean of each
//! channel over all pixels, and its backward (the output gradient spread
//! evenly). One batch item per rayon task; each item sums its pixels' rows of
//! `c` channels in order (vectorised over channels), as the scalar
//! [`reference`](mod@super::reference) does, so the two agree bit for bit.

use crate::arch::Token;
use crate::error::check_len;
use crate::simd::SimdLevel;
use crate::{Error, Result};
use rayon::prelude::*;

/// Checks the sizes of a global pooling call: `big` is the `[n, hw, c]`
/// slice, `small` the `[n, c]` one (name and length each).
pub(super) fn check_global(
    n: usize,
    hw: usize,
    c: usize,
    big: (&'static str, usize),
    small: (&'static str, usize),
) -> Result<()> {
    let shape = format!("global average pool {n}x{hw}x{c}");
    if hw == 0 || c == 0 {
        return Err(Error::InvalidShape { shape, reason: "zero spatial size or channels".into() });
    }
    let Some(len) = n.checked_mul(hw).and_then(|x| x.checked_mul(c)).filter(|x| x.checked_mul(4).is_some()) else {
        return Err(Error::InvalidShape { shape, reason: "size overflows".into() });
    };
    check_len(big.0, big.1, len, &shape)?;
    check_len(small.0, small.1, n * c, &shape)
}

/// Global average of one item `[hw, c]` into `[c]`.
#[inline(always)]
fn forward_item(c: usize, x: &[f32], y: &mut [f32]) {
    let hw = x.len() / c;
    y.fill(0.0);
    for px in x.chunks_exact(c) {
        y.iter_mut().zip(px).for_each(|(o, &v)| *o += v);
    }
    y.iter_mut().for_each(|o| *o /= hw as f32);
}

/// Global average backward for one item (overwrites `gx`).
#[inline(always)]
fn backward_item(c: usize, gy: &[f32], gx: &mut [f32]) {
    let inv = 1.0 / (gx.len() / c) as f32;
    for px in gx.chunks_exact_mut(c) {
        px.iter_mut().zip(gy).for_each(|(d, &g)| *d = g * inv);
    }
}

crate::arch::multiversion!(fn forward_item_at(c: usize, x: &[f32], y: &mut [f32]) => forward_item);
crate::arch::multiversion!(fn backward_item_at(c: usize, gy: &[f32], gx: &mut [f32]) => backward_item);

/// Global average pooling: `input` `[n, h, w, c]` (with `hw = h * w`) to
/// `output` `[n, c]`.
///
/// ```
/// use convnet_kernels::pool::global_avg_pool_forward;
/// let x = [1.0, 10.0, 3.0, 30.0]; // one image of 2 pixels, 2 channels
/// let mut y = [0.0; 2];
/// global_avg_pool_forward(1, 2, 2, &x, &mut y)?;
/// assert_eq!(y, [2.0, 20.0]);
/// # Ok::<(), convnet_kernels::Error>(())
/// ```
pub fn global_avg_pool_forward(n: usize, hw: usize, c: usize, input: &[f32], output: &mut [f32]) -> Result<()> {
    global_avg_pool_forward_at(crate::simd::try_level()?, n, hw, c, input, output)
}

/// [`global_avg_pool_forward`] on an explicit SIMD level (an
/// [`Error::Simd`] if this CPU cannot run it).
pub fn global_avg_pool_forward_at(
    level: SimdLevel,
    n: usize,
    hw: usize,
    c: usize,
    input: &[f32],
    output: &mut [f32],
) -> Result<()> {
    let token = Token::new(level)?;
    check_global(n, hw, c, ("input", input.len()), ("output", output.len()))?;
    output.par_chunks_mut(c).zip(input.par_chunks(hw * c)).for_each(|(y, x)| forward_item_at(token, c, x, y));
    Ok(())
}

/// Global average pooling backward (overwrites `grad_input`).
pub fn global_avg_pool_backward(
    n: usize,
    hw: usize,
    c: usize,
    grad_output: &[f32],
    grad_input: &mut [f32],
) -> Result<()> {
    global_avg_pool_backward_at(crate::simd::try_level()?, n, hw, c, grad_output, grad_input)
}

/// [`global_avg_pool_backward`] on an explicit SIMD level (an
/// [`Error::Simd`] if this CPU cannot run it).
pub fn global_avg_pool_backward_at(
    level: SimdLevel,
    n: usize,
    hw: usize,
    c: usize,
    grad_output: &[f32],
    grad_input: &mut [f32],
) -> Result<()> {
    let token = Token::new(level)?;
    check_global(n, hw, c, ("grad_input", grad_input.len()), ("grad_output", grad_output.len()))?;
    grad_input
        .par_chunks_mut(hw * c)
        .zip(grad_output.par_chunks(c))
        .for_each(|(gx, gy)| backward_item_at(token, c, gy, gx));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_pool_rejects_zero_overflow_and_bad_lengths() {
        assert!(global_avg_pool_forward(1, 0, 1, &[], &mut [0.0]).is_err());
        assert!(global_avg_pool_forward(usize::MAX, 2, 2, &[], &mut []).is_err());
        assert!(global_avg_pool_backward(1, 4, 1, &[1.0], &mut [0.0; 3]).is_err());
    }
}
