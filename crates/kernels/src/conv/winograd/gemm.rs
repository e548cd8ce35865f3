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
//! | portable | our packed GEMM (`crate::gemm`, 4x8 micro-kernel) on the unpadded `U[e]` (`nr = c_out`) | |
//!
//! The AVX-512 and AVX2 micro-kernels are one generic [`tile`] over the
//! vector layer (`crate::arch::vector`), instantiated with 12 rows of two zmm
//! and 6 rows of two ymm.
//!
//! Each output element is one FMA chain over `c_in` in a fixed order, so the
//! result does not depend on how tiles are grouped into blocks or threads.

use crate::arch::{prefetch, Isa, Token, Vf32};
#[cfg(target_arch = "x86_64")]
use crate::arch::{Avx2, Avx512};
use crate::gemm::{sgemm_strided, Gemm};

/// How many `k` steps ahead the micro-kernels prefetch their filter panel
/// (8 steps = 1 KiB of a 32-wide AVX-512 panel). The panels stream from L3
/// on each block's first row tile, faster than the hardware prefetcher
/// ramps up; measured on 8x28x28x256->256 F(4x4) forward, single-threaded
/// CPU time per call 23.6 ms with it vs 25.6 ms without (three alternated
/// runs each, `perf stat -e task-clock`).
const PREFETCH_K: usize = 8;

/// The panel width (output channels per packed column panel) for `token`.
pub(super) fn panel_width(token: Token, c_out: usize) -> usize {
    match token {
        #[cfg(target_arch = "x86_64")]
        Token::Avx512(_) => 32,
        #[cfg(target_arch = "x86_64")]
        Token::Avx2(_) => 16,
        Token::Portable(_) => c_out,
    }
}

/// Row strides of a GEMM's tile side: `a` rows `lda` floats apart, `c` rows
/// `ldc` apart. A dense layer's GEMM reads all of `V[e]` (`lda = k`); a
/// grouped layer's reads its group's `k` channels of each `c_in`-channel row
/// of `V[e]` and writes its group's columns of `M[e]`.
#[derive(Clone, Copy)]
pub(super) struct Strides {
    pub(super) lda: usize,
    pub(super) ldc: usize,
}

/// `c[r][0..ldm] = sum_k a[r][k] * b[k][..]` for `rows` rows, with `a`
/// `[rows][k]` (row stride `st.lda >= k`), `b` packed `[ldm / nr][k][nr]` and
/// `c` `[rows][ldm]` (row stride `st.ldc >= ldm`), `ldm` the padded `c_out`.
/// `c` is not read past its `ldm` columns. `token` must be the one `b` was
/// packed for.
#[allow(clippy::too_many_arguments)] // the GEMM's shape, operands and strides
pub(super) fn gemm(
    token: Token,
    rows: usize,
    k: usize,
    c_out: usize,
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
    st: Strides,
) {
    let nr = panel_width(token, c_out);
    let ldm = c_out.div_ceil(nr) * nr;
    let Strides { lda, ldc } = st;
    // The last row need not be followed by a full stride.
    let span = |ld: usize, cols: usize| rows.saturating_sub(1) * ld + if rows > 0 { cols } else { 0 };
    assert!(lda >= k && ldc >= ldm, "winograd gemm strides shorter than a row");
    assert!(
        a.len() >= span(lda, k) && b.len() >= k * ldm && c.len() >= span(ldc, ldm),
        "winograd gemm operands too short"
    );
    let (a, b, c) = (a.as_ptr(), b.as_ptr(), c.as_mut_ptr());
    match token {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the token proves AVX-512F/AVX2/FMA; the lengths asserted
        // above bound every address the kernel forms (rows of k floats lda
        // apart in a, k*ldm of b, rows of ldm floats ldc apart in c).
        Token::Avx512(isa) => unsafe { gemm_avx512(isa, &Panels { rows, k, panels: ldm / 32, a, lda, b, c, ldc }) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above, for AVX2 + FMA with 16-wide panels.
        Token::Avx2(isa) => unsafe { gemm_avx2(isa, &Panels { rows, k, panels: ldm / 16, a, lda, b, c, ldc }) },
        Token::Portable(_) => {
            // SAFETY: `b` is the unpadded `[k][c_out]` (ldm == c_out here),
            // `a` `[rows][k]` with row stride lda, `c` `[rows][c_out]` with
            // row stride ldc: the lengths asserted above cover every element.
            unsafe {
                sgemm_strided(
                    token,
                    &Gemm {
                        m: rows,
                        k,
                        n: c_out,
                        alpha: 1.0,
                        a,
                        rsa: lda,
                        csa: 1,
                        b,
                        rsb: c_out,
                        csb: 1,
                        beta: 0.0,
                        c,
                        rsc: ldc,
                        csc: 1,
                    },
                )
            }
        }
    }
}

/// Emits `tile::<_, $mr, NV>` for a run-time `rows < $max` (the row remainder).
macro_rules! dispatch_rows {
    ($isa:expr, $rows:expr, $k:expr, $a:expr, $lda:expr, $b:expr, $c:expr, $ldc:expr, [$($mr:literal),*]) => {
        match $rows {
            $($mr => tile::<_, $mr, 2>($isa, $k, $a, $lda, $b, $c, $ldc),)*
            _ => {}
        }
    };
}

/// One element-wise GEMM on raw operands: `a` `[rows][lda]` (its first `k`
/// columns read), `b` `panels` packed column panels `[k][nr]`, `c` `[rows][ldc]`.
#[derive(Clone, Copy)]
struct Panels {
    rows: usize,
    k: usize,
    panels: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
}

/// The GEMM over `g.panels` column panels of `2 * LANES` channels: panels
/// outer (one `k x nr` panel of `U[e]`, 32 KiB for k = 256 on AVX-512, stays
/// in L1/L2 while every row block of `V[e]` passes it), row tiles of `MR`
/// inner, then the `rows % MR` remainder.
///
/// # Safety
/// `g.a` valid for `rows` rows of `k` reads `lda` apart, `g.b` for `panels *
/// k * nr`, `g.c` for `rows` rows of `panels * nr` writes `ldc` apart, where
/// `nr = 2 * S::LANES`.
#[inline(always)]
unsafe fn panels<S: Isa, const MR: usize>(isa: S, g: &Panels) {
    let Panels { rows, k, panels, a, lda, b, c, ldc } = *g;
    let nr = 2 * S::LANES;
    for p in 0..panels {
        // SAFETY: panel p of b starts at p*k*nr < panels*k*nr; c column offset p*nr < ldc.
        let (bp, cp) = unsafe { (b.add(p * k * nr), c.add(p * nr)) };
        let mut r = 0;
        while r + MR <= rows {
            // SAFETY: rows r..r+MR exist in a and c (r + MR <= rows).
            unsafe { tile::<S, MR, 2>(isa, k, a.add(r * lda), lda, bp, cp.add(r * ldc), ldc) };
            r += MR;
        }
        // SAFETY: the remaining rows - r < MR rows exist in a and c.
        let (ar, cr) = unsafe { (a.add(r * lda), cp.add(r * ldc)) };
        let rest = rows - r;
        if MR == 12 {
            // SAFETY: `rest` rows exist in a and c.
            unsafe { dispatch_rows!(isa, rest, k, ar, lda, bp, cr, ldc, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]) };
        } else {
            // SAFETY: `rest` rows exist in a and c.
            unsafe { dispatch_rows!(isa, rest, k, ar, lda, bp, cr, ldc, [1, 2, 3, 4, 5]) };
        }
    }
}

/// AVX-512: 12 tiles x 32 channels, 24 zmm accumulators.
///
/// # Safety
/// As [`panels`] with `nr = 32`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn gemm_avx512(isa: Avx512, g: &Panels) {
    // SAFETY: forwarded contract.
    unsafe { panels::<_, 12>(isa, g) }
}

/// AVX2: 6 tiles x 16 channels, 12 ymm accumulators.
///
/// # Safety
/// As [`panels`] with `nr = 16`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn gemm_avx2(isa: Avx2, g: &Panels) {
    // SAFETY: forwarded contract.
    unsafe { panels::<_, 6>(isa, g) }
}

/// `MR x (NV * LANES)` register tile: `c[r][0..nr] = sum_k a[r][k] * b[k][0..nr]`,
/// one FMA chain per output in `k` order.
///
/// # Safety
/// `a` valid for `MR` rows of `k` reads (row stride `lda`), `b` for `k * nr`
/// reads, `c` for `MR` rows of `nr` writes (row stride `ldc`), with
/// `nr = NV * S::LANES`.
#[inline(always)]
#[allow(clippy::needless_range_loop)]
unsafe fn tile<S: Isa, const MR: usize, const NV: usize>(
    isa: S,
    k: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
) {
    let nr = NV * S::LANES;
    let mut acc = [[isa.zero(); NV]; MR];
    for kk in 0..k {
        // Prefetch the panel row PREFETCH_K steps ahead, one hint per
        // 64-byte line; wrapping_add keeps the address arithmetic defined
        // past the end of the panel (a prefetch never faults).
        let ahead = b.wrapping_add((kk + PREFETCH_K) * nr);
        for line in (0..nr).step_by(16) {
            prefetch(ahead.wrapping_add(line));
        }
        let mut bv = [isa.zero(); NV];
        for j in 0..NV {
            // SAFETY: row kk of the panel holds nr floats.
            bv[j] = unsafe { isa.load(b.add(kk * nr + j * S::LANES)) };
        }
        for r in 0..MR {
            // SAFETY: row r < MR of a holds k floats.
            let av = isa.splat(unsafe { *a.add(r * lda + kk) });
            for j in 0..NV {
                acc[r][j] = av.mul_add(bv[j], acc[r][j]);
            }
        }
    }
    for r in 0..MR {
        for j in 0..NV {
            // SAFETY: row r < MR of c holds nr writable floats.
            unsafe { acc[r][j].store(c.add(r * ldc + j * S::LANES)) };
        }
    }
}
