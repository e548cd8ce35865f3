//! Element-wise activations and bias add, forward and backward.
//!
//! Every loop here is branch-free over contiguous slices, written once as an
//! `#[inline(always)]` body and instantiated for AVX-512, AVX2+FMA and the
//! portable baseline through [`multiversion!`], chosen by the cached
//! [`crate::simd`] level. Each performs one IEEE operation per element
//! (`max`, select, add), so every level gives bit-identical results. Slices
//! longer than [`PARALLEL_MIN`] are split over rayon in fixed chunks.
//!
//! `max(x, 0)` follows `f32::max`: a NaN input gives 0.

use crate::error::check_len;
use crate::simd::SimdLevel;
use crate::Result;
use rayon::prelude::*;

/// Elements below which the element-wise kernels stay on the calling thread:
/// below about 64 Ki floats (256 KiB) the rayon hand-off costs more than the
/// loop, which runs at memory speed.
pub const PARALLEL_MIN: usize = 1 << 16;

/// Instantiates an `#[inline(always)]` body once per SIMD level and adds a
/// dispatcher that takes the level as its first argument:
/// `multiversion!(fn name(a: A, b: B) -> R => body)` defines
/// `fn name(level: SimdLevel, a: A, b: B) -> R` running `body(a, b)` compiled
/// for AVX-512, AVX2+FMA or the baseline.
macro_rules! multiversion {
    ($vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? => $body:path) => {
        #[allow(clippy::too_many_arguments)]
        $vis fn $name(level: $crate::simd::SimdLevel, $($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                fn avx2($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                #[target_feature(enable = "avx512f,avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                fn avx512($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                match level {
                    // SAFETY: a level is only ever detected or forced when
                    // `SimdLevel::is_available` says this CPU has its features.
                    $crate::simd::SimdLevel::Avx512 => return unsafe { avx512($($arg),*) },
                    // SAFETY: as above.
                    $crate::simd::SimdLevel::Avx2 => return unsafe { avx2($($arg),*) },
                    $crate::simd::SimdLevel::Portable => {}
                }
            }
            #[cfg(not(target_arch = "x86_64"))]
            let _ = level;
            $body($($arg),*)
        }
    };
}
pub(crate) use multiversion;

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
    pub fn apply_inplace(self, data: &mut [f32]) {
        if self == Activation::Relu {
            relu_inplace(data);
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

multiversion!(fn relu_inplace_at(data: &mut [f32]) => relu_inplace_body);
multiversion!(fn relu_forward_at(x: &[f32], y: &mut [f32]) => relu_forward_body);
multiversion!(fn relu_backward_at(y: &[f32], grad_y: &[f32], grad_x: &mut [f32]) => relu_backward_body);
multiversion!(fn relu_backward_inplace_at(y: &[f32], grad: &mut [f32]) => relu_backward_inplace_body);
multiversion!(fn bias_add_at(data: &mut [f32], bias: &[f32]) => bias_add_body);

/// Chunk length for splitting `len` elements over rayon: a multiple of `row`
/// (so rows stay whole) of at least [`PARALLEL_MIN`] / 4 elements.
fn chunk_len(row: usize) -> usize {
    (PARALLEL_MIN / 4).div_ceil(row) * row
}

/// The cached SIMD level; portable if `CONVNET_SIMD` is unusable (these
/// infallible element-wise ops give the same bits on every level).
fn simd_level() -> SimdLevel {
    crate::simd::try_level().unwrap_or(SimdLevel::Portable)
}

/// `data = max(data, 0)`, in place.
pub fn relu_inplace(data: &mut [f32]) {
    let level = simd_level();
    if data.len() < PARALLEL_MIN {
        return relu_inplace_at(level, data);
    }
    data.par_chunks_mut(chunk_len(1)).for_each(|d| relu_inplace_at(level, d));
}

/// `y = max(x, 0)`.
pub fn relu_forward(x: &[f32], y: &mut [f32]) -> Result<()> {
    check_len("y", y.len(), x.len(), &"relu")?;
    let level = simd_level();
    if x.len() < PARALLEL_MIN {
        relu_forward_at(level, x, y);
    } else {
        let chunk = chunk_len(1);
        y.par_chunks_mut(chunk).zip(x.par_chunks(chunk)).for_each(|(y, x)| relu_forward_at(level, x, y));
    }
    Ok(())
}

/// `grad_x = grad_y` where the relu's output `y > 0`, else 0 (overwrites).
pub fn relu_backward(y: &[f32], grad_y: &[f32], grad_x: &mut [f32]) -> Result<()> {
    check_len("grad_y", grad_y.len(), y.len(), &"relu_backward")?;
    check_len("grad_x", grad_x.len(), y.len(), &"relu_backward")?;
    let level = simd_level();
    if y.len() < PARALLEL_MIN {
        relu_backward_at(level, y, grad_y, grad_x);
    } else {
        let chunk = chunk_len(1);
        grad_x
            .par_chunks_mut(chunk)
            .zip(grad_y.par_chunks(chunk).zip(y.par_chunks(chunk)))
            .for_each(|(gx, (gy, y))| relu_backward_at(level, y, gy, gx));
    }
    Ok(())
}

/// In place, `grad *= (y > 0)`: relu backward folded into an existing gradient.
pub fn relu_backward_inplace(y: &[f32], grad: &mut [f32]) -> Result<()> {
    check_len("grad", grad.len(), y.len(), &"relu_backward_inplace")?;
    let level = simd_level();
    if y.len() < PARALLEL_MIN {
        relu_backward_inplace_at(level, y, grad);
    } else {
        let chunk = chunk_len(1);
        grad.par_chunks_mut(chunk).zip(y.par_chunks(chunk)).for_each(|(g, y)| relu_backward_inplace_at(level, y, g));
    }
    Ok(())
}

/// Adds `bias` (length `c`) to every row of `data` (`[rows, c]`), in place.
pub fn bias_add(data: &mut [f32], bias: &[f32]) -> Result<()> {
    if data.len().checked_rem(bias.len()) != Some(0) {
        return Err(crate::Error::LengthMismatch {
            what: "data",
            expected: bias.len(),
            actual: data.len(),
            shape: "rows x bias.len()".into(),
        });
    }
    let level = simd_level();
    if data.len() < PARALLEL_MIN {
        bias_add_at(level, data, bias);
    } else {
        data.par_chunks_mut(chunk_len(bias.len())).for_each(|d| bias_add_at(level, d, bias));
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
                crate::simd::force(level).unwrap();
                let mut y = vec![f32::NAN; len];
                relu_forward(&x, &mut y).unwrap();
                assert_eq!(y, relu, "{level:?}");
                let mut z = x.clone();
                relu_inplace(&mut z);
                assert_eq!(z, relu, "{level:?}");
                let mut gx = vec![f32::NAN; len];
                relu_backward(&relu, &g, &mut gx).unwrap();
                assert_eq!(gx, back, "{level:?}");
                let mut gi = g.clone();
                relu_backward_inplace(&relu, &mut gi).unwrap();
                assert_eq!(gi, back, "{level:?}");
                if len % bias.len() == 0 {
                    let mut b = x.clone();
                    bias_add(&mut b, &bias).unwrap();
                    let want: Vec<f32> = x.iter().enumerate().map(|(i, &v)| v + bias[i % bias.len()]).collect();
                    assert_eq!(b, want, "{level:?}");
                }
            }
        }
        crate::simd::force(SimdLevel::detect()).unwrap();
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
