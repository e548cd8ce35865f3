//! The 2x2 max pool on its own, for inference: no argmax (nothing will
//! route a gradient back), one vector load per tap and three `max` per
//! output vector. Used where the pool cannot fold into the conv before it
//! (that conv ran on Winograd or im2col). Values are exactly
//! `pool::max_pool2d_forward`'s: the first strict maximum in row-major
//! window order (`v.max(m)` is `v > m ? v : m`; channel remainders use the
//! same comparison in scalar code).

use super::Threading;
#[cfg(target_arch = "x86_64")]
use crate::arch::{Avx2, Avx512};
use crate::arch::{FtzGuard, Isa, Token, Vf32};
use crate::error::check_len;
use crate::simd::SimdLevel;
use crate::{Error, Result};
use rayon::prelude::*;

/// Output rows (of one image) per rayon task.
const ROWS_PER_TASK: usize = 8;

/// Keras `MaxPooling2D((2, 2))` (window 2, stride 2, `valid`) over NHWC
/// `input` `[n, h, w, c]` into `output` `[n, h / 2, w / 2, c]`, on an
/// explicit SIMD level.
///
/// ```
/// use convnet_kernels::conv::fused::{max_pool_2x2_at, Threading};
/// use convnet_kernels::simd::SimdLevel;
/// let x = [1.0, 5.0, 3.0, 2.0]; // 2x2, one channel
/// let mut y = [0.0];
/// max_pool_2x2_at(SimdLevel::Portable, 1, 2, 2, 1, &x, &mut y, Threading::CallingThread)?;
/// assert_eq!(y, [5.0]);
/// # Ok::<(), convnet_kernels::Error>(())
/// ```
#[allow(clippy::too_many_arguments)] // the NHWC sizes, the buffers, level and threading
pub fn max_pool_2x2_at(
    level: SimdLevel,
    n: usize,
    h: usize,
    w: usize,
    c: usize,
    input: &[f32],
    output: &mut [f32],
    threading: Threading,
) -> Result<()> {
    let token = Token::new(level)?;
    let what = format!("max pool 2x2 of {n}x{h}x{w}x{c}");
    let too_big = || Error::InvalidShape { shape: what.clone(), reason: "sizes overflow".into() };
    let in_len = n.checked_mul(h).and_then(|v| v.checked_mul(w)).and_then(|v| v.checked_mul(c)).ok_or_else(too_big)?;
    let (oh, ow) = (h / 2, w / 2);
    let out_len = n * oh * ow * c; // at most in_len / 4
    check_len("input", input.len(), in_len, &what)?;
    check_len("output", output.len(), out_len, &what)?;
    if out_len == 0 {
        return Ok(());
    }
    let _ftz = FtzGuard::new();
    let rows = n * oh;
    let row_len = ow * c;
    let task = |(t, out): (usize, &mut [f32])| {
        let first = t * ROWS_PER_TASK;
        for (i, y) in out.chunks_exact_mut(row_len).enumerate() {
            let (img, py) = ((first + i) / oh, (first + i) % oh);
            let top = &input[((img * h + 2 * py) * w) * c..][..2 * w * c];
            pool_row_at(token, top, w * c, c, y);
        }
    };
    let chunk = ROWS_PER_TASK * row_len;
    match threading {
        Threading::CallingThread => output.chunks_mut(chunk).enumerate().for_each(task),
        Threading::Pool => output.par_chunks_mut(chunk).enumerate().for_each(|a| {
            let _ftz = FtzGuard::new();
            debug_assert!(a.0 * ROWS_PER_TASK < rows);
            task(a)
        }),
    }
    Ok(())
}

/// [`max_pool_2x2_at`] on the process-wide SIMD level.
pub fn max_pool_2x2(
    n: usize,
    h: usize,
    w: usize,
    c: usize,
    input: &[f32],
    output: &mut [f32],
    threading: Threading,
) -> Result<()> {
    max_pool_2x2_at(crate::simd::try_level()?, n, h, w, c, input, output, threading)
}

fn pool_row_at(token: Token, top: &[f32], stride: usize, c: usize, y: &mut [f32]) {
    match token {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the token proves AVX-512F/AVX2/FMA.
        Token::Avx512(isa) => unsafe { pool_row_avx512(isa, top, stride, c, y) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the token proves AVX2/FMA.
        Token::Avx2(isa) => unsafe { pool_row_avx2(isa, top, stride, c, y) },
        Token::Portable(isa) => pool_row(isa, top, stride, c, y),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
fn pool_row_avx512(isa: Avx512, top: &[f32], stride: usize, c: usize, y: &mut [f32]) {
    pool_row(isa, top, stride, c, y)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn pool_row_avx2(isa: Avx2, top: &[f32], stride: usize, c: usize, y: &mut [f32]) {
    pool_row(isa, top, stride, c, y)
}

/// One output row: `top` holds the two input rows (`stride` floats apart),
/// `y` the `ow * c` outputs.
#[inline(always)]
fn pool_row<S: Isa>(isa: S, top: &[f32], stride: usize, c: usize, y: &mut [f32]) {
    let (row0, row1) = top.split_at(stride);
    for (px, out) in y.chunks_exact_mut(c).enumerate() {
        let a = &row0[2 * px * c..][..2 * c];
        let b = &row1[2 * px * c..][..2 * c];
        let taps = [&a[..c], &a[c..], &b[..c], &b[c..]];
        let vec_end = c - c % S::LANES;
        let mut ch = 0;
        while ch < vec_end {
            // SAFETY: ch + LANES <= c, the length of every tap and of `out`.
            unsafe {
                let mut m = isa.load(taps[0].as_ptr().add(ch));
                for t in &taps[1..] {
                    m = isa.load(t.as_ptr().add(ch)).max(m);
                }
                m.store(out.as_mut_ptr().add(ch));
            }
            ch += S::LANES;
        }
        for ch in vec_end..c {
            let mut m = taps[0][ch];
            for t in &taps[1..] {
                if t[ch] > m {
                    m = t[ch];
                }
            }
            out[ch] = m;
        }
    }
}
