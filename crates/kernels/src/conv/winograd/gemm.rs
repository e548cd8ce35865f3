//! The element-wise stage: for each tile element `e`, `M[e] = V[e] * U[e]`,
//! a `[tiles x c_in] * [c_in x c_out]` GEMM.
//!
//! The filter side `U[e]` is transformed once per call, so it is stored
//! directly in the layout the micro-kernel streams (no per-GEMM packing):
//! column panels of `nr` output channels, `U[e][panel][c_in][nr]`, zero
//! padded past `c_out`. The tile side `V[e]` is read in place (row-major
//! `[tiles][c_in]`) with broadcasts, and `M[e]` is written row-major with
//! the padded row length `ldm = panels * nr`.
//!
//! | level | micro-kernel | registers |
//! |---|---|---|
//! | AVX-512 | 12 tiles x 32 channels, 24 zmm accumulators | 24 + 2 (U) + 1 (broadcast) of 32 |
//! | AVX2 | 6 tiles x 16 channels, 12 ymm accumulators | 12 + 2 + 1 of 16 |
//! | portable | `crate::gemm::sgemm` (matrixmultiply) on the unpadded `U[e]` (`nr = c_out`) | |
//!
//! Each output element is one FMA chain over `c_in` in a fixed order, so the
//! result does not depend on how tiles are grouped into blocks or threads.

use crate::gemm::{sgemm, MatLayout};
use crate::simd::SimdLevel;

#[cfg(target_arch = "x86_64")]
use core::arch::x86_64::*;

/// How many `k` steps ahead the micro-kernels prefetch their filter panel
/// (8 steps = 1 KiB of a 32-wide AVX-512 panel). The panels stream from L3
/// on each block's first row tile, faster than the hardware prefetcher
/// ramps up; measured on 8x28x28x256->256 F(4x4) forward, single-threaded
/// CPU time per call 23.6 ms with it vs 25.6 ms without (three alternated
/// runs each, `perf stat -e task-clock`).
const PREFETCH_K: usize = 8;

/// The panel width (output channels per packed column panel) for `level`.
pub(super) fn panel_width(level: SimdLevel, c_out: usize) -> usize {
    match level {
        SimdLevel::Avx512 => 32,
        SimdLevel::Avx2 => 16,
        SimdLevel::Portable => c_out,
    }
}

/// `c[r][0..ldm] = sum_k a[r][k] * b[k][..]` for `rows` rows, with `a` dense
/// `[rows][k]`, `b` packed `[ldm / nr][k][nr]` and `c` dense `[rows][ldm]`.
/// `c` is not read. `level` must be the one `b` was packed for.
pub(super) fn gemm(level: SimdLevel, rows: usize, k: usize, c_out: usize, a: &[f32], b: &[f32], c: &mut [f32]) {
    let nr = panel_width(level, c_out);
    let ldm = c_out.div_ceil(nr) * nr;
    debug_assert!(a.len() >= rows * k && b.len() >= k * ldm && c.len() >= rows * ldm);
    match level {
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx512 => {
            // SAFETY: the driver selects Avx512 only when the CPU has AVX-512F
            // (simd::level checks availability); the lengths asserted above
            // bound every address the kernel forms (rows*k of a, k*ldm of b,
            // rows*ldm of c).
            unsafe { gemm_avx512(rows, k, ldm / 32, a.as_ptr(), b.as_ptr(), c.as_mut_ptr(), ldm) }
        }
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx2 => {
            // SAFETY: as above, for AVX2 + FMA with 16-wide panels.
            unsafe { gemm_avx2(rows, k, ldm / 16, a.as_ptr(), b.as_ptr(), c.as_mut_ptr(), ldm) }
        }
        _ => {
            let r = sgemm(
                1.0,
                &a[..rows * k],
                MatLayout::dense(rows, k),
                false,
                &b[..k * c_out],
                MatLayout::dense(k, c_out),
                false,
                0.0,
                &mut c[..rows * c_out],
            );
            debug_assert!(r.is_ok(), "winograd gemm operands are consistent by construction");
        }
    }
}

/// Emits `$kernel::<MR>` for a run-time `rows < $max` (the row remainder).
macro_rules! dispatch_rows {
    ($kernel:ident, $rows:expr, $k:expr, $a:expr, $b:expr, $c:expr, $ldc:expr, [$($mr:literal),*]) => {
        match $rows {
            $($mr => $kernel::<$mr>($k, $a, $b, $c, $ldc),)*
            _ => {}
        }
    };
}

/// AVX-512 GEMM: panels outer (one `k x 32` panel of `U[e]`, 32 KiB for
/// k = 256, stays in L1/L2 while every row block of `V[e]` passes it), rows
/// of 12 inner.
///
/// # Safety
/// AVX-512F and FMA are available; `a` valid for `rows * k` reads, `b` for
/// `panels * k * 32`, `c` for `rows * ldc` writes with `ldc >= panels * 32`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn gemm_avx512(rows: usize, k: usize, panels: usize, a: *const f32, b: *const f32, c: *mut f32, ldc: usize) {
    const MR: usize = 12;
    for p in 0..panels {
        // SAFETY: panel p of b starts at p*k*32 < panels*k*32; c column offset p*32 < ldc.
        let (bp, cp) = unsafe { (b.add(p * k * 32), c.add(p * 32)) };
        let mut r = 0;
        while r + MR <= rows {
            // SAFETY: rows r..r+MR exist in a and c (r + MR <= rows).
            unsafe { tile_avx512::<MR>(k, a.add(r * k), bp, cp.add(r * ldc), ldc) };
            r += MR;
        }
        // SAFETY: the remaining rows - r < MR rows exist in a and c.
        unsafe {
            let (ar, cr) = (a.add(r * k), cp.add(r * ldc));
            dispatch_rows!(tile_avx512, rows - r, k, ar, bp, cr, ldc, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
        }
    }
}

/// `MR x 32` register tile: `c[r][0..32] = sum_k a[r][k] * b[k][0..32]`.
///
/// # Safety
/// As [`gemm_avx512`] for `MR` rows of `a` (row stride `k`) and `c` (row stride `ldc`).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn tile_avx512<const MR: usize>(k: usize, a: *const f32, b: *const f32, c: *mut f32, ldc: usize) {
    // SAFETY: every address is inside the ranges the caller guarantees:
    // a[r*k + kk] for r < MR, kk < k; b[kk*32 .. kk*32+32]; c[r*ldc .. +32].
    unsafe {
        let mut acc0 = [_mm512_setzero_ps(); MR];
        let mut acc1 = [_mm512_setzero_ps(); MR];
        for kk in 0..k {
            // Prefetches never fault; wrapping_add keeps the address
            // arithmetic defined past the end of the panel.
            let ahead = b.wrapping_add((kk + PREFETCH_K) * 32) as *const i8;
            _mm_prefetch::<_MM_HINT_T0>(ahead);
            _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64));
            let b0 = _mm512_loadu_ps(b.add(kk * 32));
            let b1 = _mm512_loadu_ps(b.add(kk * 32 + 16));
            for r in 0..MR {
                let av = _mm512_set1_ps(*a.add(r * k + kk));
                acc0[r] = _mm512_fmadd_ps(av, b0, acc0[r]);
                acc1[r] = _mm512_fmadd_ps(av, b1, acc1[r]);
            }
        }
        for r in 0..MR {
            _mm512_storeu_ps(c.add(r * ldc), acc0[r]);
            _mm512_storeu_ps(c.add(r * ldc + 16), acc1[r]);
        }
    }
}

/// AVX2 GEMM: as [`gemm_avx512`] with 16-wide panels and 6-row tiles.
///
/// # Safety
/// AVX2 and FMA are available; `a` valid for `rows * k` reads, `b` for
/// `panels * k * 16`, `c` for `rows * ldc` writes with `ldc >= panels * 16`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn gemm_avx2(rows: usize, k: usize, panels: usize, a: *const f32, b: *const f32, c: *mut f32, ldc: usize) {
    const MR: usize = 6;
    for p in 0..panels {
        // SAFETY: panel p of b starts at p*k*16 < panels*k*16; c column offset p*16 < ldc.
        let (bp, cp) = unsafe { (b.add(p * k * 16), c.add(p * 16)) };
        let mut r = 0;
        while r + MR <= rows {
            // SAFETY: rows r..r+MR exist in a and c.
            unsafe { tile_avx2::<MR>(k, a.add(r * k), bp, cp.add(r * ldc), ldc) };
            r += MR;
        }
        // SAFETY: the remaining rows - r < MR rows exist in a and c.
        unsafe {
            let (ar, cr) = (a.add(r * k), cp.add(r * ldc));
            dispatch_rows!(tile_avx2, rows - r, k, ar, bp, cr, ldc, [1, 2, 3, 4, 5]);
        }
    }
}

/// `MR x 16` register tile of [`gemm_avx2`].
///
/// # Safety
/// As [`gemm_avx2`] for `MR` rows.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn tile_avx2<const MR: usize>(k: usize, a: *const f32, b: *const f32, c: *mut f32, ldc: usize) {
    // SAFETY: addresses stay inside a[..MR*k], b[..k*16] and the MR rows of c.
    unsafe {
        let mut acc0 = [_mm256_setzero_ps(); MR];
        let mut acc1 = [_mm256_setzero_ps(); MR];
        for kk in 0..k {
            _mm_prefetch::<_MM_HINT_T0>(b.wrapping_add((kk + PREFETCH_K) * 16) as *const i8);
            let b0 = _mm256_loadu_ps(b.add(kk * 16));
            let b1 = _mm256_loadu_ps(b.add(kk * 16 + 8));
            for r in 0..MR {
                let av = _mm256_set1_ps(*a.add(r * k + kk));
                acc0[r] = _mm256_fmadd_ps(av, b0, acc0[r]);
                acc1[r] = _mm256_fmadd_ps(av, b1, acc1[r]);
            }
        }
        for r in 0..MR {
            _mm256_storeu_ps(c.add(r * ldc), acc0[r]);
            _mm256_storeu_ps(c.add(r * ldc + 8), acc1[r]);
        }
    }
}
