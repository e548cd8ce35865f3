//! Element-wise activations and bias add, forward and backward.
//!
//! Every loop here is branch-free over contiguous slices, written once as an
//! `#[inline(always)]` body and instantiated for AVX-512, AVX2+FMA and the
//! portable baseline through the crate's `multiversion!` macro, on the
//! cached [`crate::simd`] level or, in the `*_at` twins, an explicit one (a
//! level this CPU cannot run is an [`crate::Error::Simd`]). Each performs one IEEE operation per element
//! (`max`, select, add), so every level gives bit-identical results. Slices
//! longer than [`PARALLEL_MIN`] are split over rayon in fixed chunks.
//!
//! `max(x, 0)` follows `f32::max`: a NaN input gives 0.

use crate::arch::{multiversion, Token};
use crate::error::check_len;
use crate::simd::SimdLevel;
use crate::Result;
use rayon::prelude::*;

/// Elements below which the element-wise kernels stay on the calling thread:
/// below about 64 Ki floats (256 KiB) the rayon hand-off costs more than the
/// loop, which runs at memory speed.
pub const PARALLEL_MIN: usize = 1 << 16;

/// An activation fused into a kernel's epilogue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Activation {
    /// Identity.
    #[default]
    Linear,
    /// `max(x, 0)`.
    Relu,
}

impl Activation {
    /// Applies the activation to every element of `data`, in place.
    pub fn apply_inplace(self, data: &mut [f32]) -> Result<()> {
        self.apply_with(Token::current()?, data);
        Ok(())
    }

    /// [`Activation::apply_inplace`] with a proven instruction set.
    pub(crate) fn apply_with(self, token: Token, data: &mut [f32]) {
        if self == Activation::Relu {
            relu_inplace_with(token, data);
        }
    }
}

#[inline(always)]
fn relu_inplace_body(data: &mut [f32]) {
    data.iter_mut().for_each(|x| *x = x.max(0.0));
}

#[inline(always)]
fn relu_forward_body(x: &[f32], y: &mut [f32]) {
    y.iter_mut().zip(x).for_each(|(y, &x)| *y = x.max(0.0));
}

#[inline(always)]
fn relu_backward_body(y: &[f32], grad_y: &[f32], grad_x: &mut [f32]) {
    for ((gx, &gy), &y) in grad_x.iter_mut().zip(grad_y).zip(y) {
        *gx = if y > 0.0 { gy } else { 0.0 };
    }
}

#[inline(always)]
fn relu_backward_inplace_body(y: &[f32], grad: &mut [f32]) {
    for (g, &y) in grad.iter_mut().zip(y) {
        *g = if y > 0.0 { *g } else { 0.0 };
    }
}

#[inline(always)]
fn bias_add_body(data: &mut [f32], bias: &[f32]) {
    for row in data.chunks_exact_mut(bias.len()) {
        row.iter_mut().zip(bias).for_each(|(x, &b)| *x += b);
    }
}

multiversion!(fn relu_inplace_kernel(data: &mut [f32]) => relu_inplace_body);
multiversion!(fn relu_forward_kernel(x: &[f32], y: &mut [f32]) => relu_forward_body);
multiversion!(fn relu_backward_kernel(y: &[f32], grad_y: &[f32], grad_x: &mut [f32]) => relu_backward_body);
multiversion!(fn relu_backward_inplace_kernel(y: &[f32], grad: &mut [f32]) => relu_backward_inplace_body);
multiversion!(fn bias_add_kernel(data: &mut [f32], bias: &[f32]) => bias_add_body);

/// Chunk length for splitting `len` elements over rayon: a multiple of `row`
/// (so rows stay whole) of at least [`PARALLEL_MIN`] / 4 elements.
fn chunk_len(row: usize) -> usize {
    (PARALLEL_MIN / 4).div_ceil(row) * row
}

/// `data = max(data, 0)`, in place.
pub fn relu_inplace(data: &mut [f32]) -> Result<()> {
    relu_inplace_at(crate::simd::try_level()?, data)
}

/// [`relu_inplace`] on an explicit SIMD level.
pub fn relu_inplace_at(level: SimdLevel, data: &mut [f32]) -> Result<()> {
    relu_inplace_with(Token::new(level)?, data);
    Ok(())
}

fn relu_inplace_with(token: Token, data: &mut [f32]) {
    if data.len() < PARALLEL_MIN {
        return relu_inplace_kernel(token, data);
    }
    data.par_chunks_mut(chunk_len(1)).for_each(|d| relu_inplace_kernel(token, d));
}

/// `y = max(x, 0)`.
pub fn relu_forward(x: &[f32], y: &mut [f32]) -> Result<()> {
    relu_forward_at(crate::simd::try_level()?, x, y)
}

/// [`relu_forward`] on an explicit SIMD level.
pub fn relu_forward_at(level: SimdLevel, x: &[f32], y: &mut [f32]) -> Result<()> {
    check_len("y", y.len(), x.len(), &"relu")?;
    let token = Token::new(level)?;
    if x.len() < PARALLEL_MIN {
        relu_forward_kernel(token, x, y);
    } else {
        let chunk = chunk_len(1);
        y.par_chunks_mut(chunk).zip(x.par_chunks(chunk)).for_each(|(y, x)| relu_forward_kernel(token, x, y));
    }
    Ok(())
}

/// `grad_x = grad_y` where the relu's output `y > 0`, else 0 (overwrites).
pub fn relu_backward(y: &[f32], grad_y: &[f32], grad_x: &mut [f32]) -> Result<()> {
    relu_backward_at(crate::simd::try_level()?, y, grad_y, grad_x)
}

/// [`relu_backward`] on an explicit SIMD level.
pub fn relu_backward_at(level: SimdLevel, y: &[f32], grad_y: &[f32], grad_x: &mut [f32]) -> Result<()> {
    check_len("grad_y", grad_y.len(), y.len(), &"relu_backward")?;
    check_len("grad_x", grad_x.len(), y.len(), &"relu_backward")?;
    let token = Token::new(level)?;
    if y.len() < PARALLEL_MIN {
        relu_backward_kernel(token, y, grad_y, grad_x);
    } else {
        let chunk = chunk_len(1);
        grad_x
            .par_chunks_mut(chunk)
            .zip(grad_y.par_chunks(chunk).zip(y.par_chunks(chunk)))
            .for_each(|(gx, (gy, y))| relu_backward_kernel(token, y, gy, gx));
    }
    Ok(())
}

/// In place, `grad *= (y > 0)`: relu backward folded into an existing gradient.
pub fn relu_backward_inplace(y: &[f32], grad: &mut [f32]) -> Result<()> {
    relu_backward_inplace_at(crate::simd::try_level()?, y, grad)
}

/// [`relu_backward_inplace`] on an explicit SIMD level.
pub fn relu_backward_inplace_at(level: SimdLevel, y: &[f32], grad: &mut [f32]) -> Result<()> {
    check_len("grad", grad.len(), y.len(), &"relu_backward_inplace")?;
    let token = Token::new(level)?;
    if y.len() < PARALLEL_MIN {
        relu_backward_inplace_kernel(token, y, grad);
    } else {
        let chunk = chunk_len(1);
        grad.par_chunks_mut(chunk)
            .zip(y.par_chunks(chunk))
            .for_each(|(g, y)| relu_backward_inplace_kernel(token, y, g));
    }
    Ok(())
}

/// Adds `bias` (length `c`) to every row of `data` (`[rows, c]`), in place.
pub fn bias_add(data: &mut [f32], bias: &[f32]) -> Result<()> {
    bias_add_at(crate::simd::try_level()?, data, bias)
}

/// [`bias_add`] on an explicit SIMD level.
pub fn bias_add_at(level: SimdLevel, data: &mut [f32], bias: &[f32]) -> Result<()> {
    if data.len().checked_rem(bias.len()) != Some(0) {
        return Err(crate::Error::LengthMismatch {
            what: "data",
            expected: bias.len(),
            actual: data.len(),
            shape: "rows x bias.len()".into(),
        });
    }
    let token = Token::new(level)?;
    if data.len() < PARALLEL_MIN {
        bias_add_kernel(token, data, bias);
    } else {
        data.par_chunks_mut(chunk_len(bias.len())).for_each(|d| bias_add_kernel(token, d, bias));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every level, serial and parallel sizes, against the plain definitions.
    #[test]
    fn every_level_matches_the_definition() {
        let mut rng = convnet_tensor::Rng::new(7);
        for len in [0usize, 1, 7, 33, PARALLEL_MIN + 37] {
            let x: Vec<f32> = (0..len).map(|_| rng.uniform(-1.0, 1.0)).collect();
            let g: Vec<f32> = (0..len).map(|_| rng.uniform(-1.0, 1.0)).collect();
            let bias: Vec<f32> = (0..(len.max(1) % 7).max(1)).map(|i| i as f32 * 0.25 - 0.5).collect();
            let relu: Vec<f32> = x.iter().map(|&v| if v > 0.0 { v } else { 0.0 }).collect();
            let back: Vec<f32> = g.iter().zip(&relu).map(|(&g, &y)| if y > 0.0 { g } else { 0.0 }).collect();
            for level in SimdLevel::available() {
                let mut y = vec![f32::NAN; len];
                relu_forward_at(level, &x, &mut y).unwrap();
                assert_eq!(y, relu, "{level:?}");
                let mut z = x.clone();
                relu_inplace_at(level, &mut z).unwrap();
                assert_eq!(z, relu, "{level:?}");
                let mut gx = vec![f32::NAN; len];
                relu_backward_at(level, &relu, &g, &mut gx).unwrap();
                assert_eq!(gx, back, "{level:?}");
                let mut gi = g.clone();
                relu_backward_inplace_at(level, &relu, &mut gi).unwrap();
                assert_eq!(gi, back, "{level:?}");
                if len % bias.len() == 0 {
                    let mut b = x.clone();
                    bias_add_at(level, &mut b, &bias).unwrap();
                    let want: Vec<f32> = x.iter().enumerate().map(|(i, &v)| v + bias[i % bias.len()]).collect();
                    assert_eq!(b, want, "{level:?}");
                }
            }
        }
    }

    #[test]
    fn bad_lengths_are_errors() {
        assert!(relu_forward(&[1.0], &mut []).is_err());
        assert!(relu_backward(&[1.0], &[1.0, 2.0], &mut [0.0]).is_err());
        assert!(relu_backward_inplace(&[1.0], &mut []).is_err());
        assert!(bias_add(&mut [1.0, 2.0, 3.0], &[1.0, 2.0]).is_err());
        assert!(bias_add(&mut [1.0], &[]).is_err());
    }
}
