//! Filter transform of the Winograd driver: `U = G g G^T` of the whole HWIO
//! filter, stored in the column panels the element-wise GEMM streams
//! (`[e][panel][c_in][nr]`), and the 180-degree rotation backward-data needs.

use super::transforms::filter_transform;
use super::{gemm, padded_c_out, Variant};
#[cfg(target_arch = "x86_64")]
use crate::arch::{Avx2, Avx512};
use crate::arch::{FtzGuard, Isa, Scalar, SendPtr, Token};
use rayon::prelude::*;

/// HWIO `[3][3][c_in][c_out]` -> rotated by 180 degrees with channels swapped,
/// `rotated[ky][kx][co][ci] = filter[2 - ky][2 - kx][ci][co]`.
pub(super) fn rotate_and_swap(filter: &[f32], c_in: usize, c_out: usize, rotated: &mut [f32]) {
    for tap in 0..9 {
        let src = &filter[(8 - tap) * c_in * c_out..][..c_in * c_out];
        let dst = &mut rotated[tap * c_in * c_out..][..c_in * c_out];
        for (ci, row) in src.chunks_exact(c_out).enumerate() {
            for (co, &w) in row.iter().enumerate() {
                dst[co * c_in + ci] = w;
            }
        }
    }
}

/// Filter transform of the whole HWIO filter into `packed` (`[e][panel][c_in][nr]`).
///
/// Parallel over fixed groups of input channels; for each channel and each
/// `S::LANES` output channels the 9 taps are loaded once and `G g G^T` is
/// applied separably in registers (`G` along ky, then along kx), then the
/// `t*t` results are stored to their panel rows.
pub(super) fn pack_filter(
    variant: Variant,
    token: Token,
    filter: &[f32],
    c_in: usize,
    c_out: usize,
    packed: &mut [f32],
) {
    const CHANNELS_PER_TASK: usize = 8;
    let ldm = padded_c_out(token, c_out);
    debug_assert_eq!(packed.len(), variant.elems() * c_in * ldm);
    debug_assert_eq!(filter.len(), 9 * c_in * c_out);
    let args = PackArgs {
        f4: variant == Variant::F4,
        filter,
        c_in,
        c_out,
        nr: gemm::panel_width(token, c_out),
        ldm,
        packed: SendPtr(packed.as_mut_ptr()),
    };
    (0..c_in.div_ceil(CHANNELS_PER_TASK)).into_par_iter().for_each(|task| {
        let _ftz = FtzGuard::new();
        let channels = task * CHANNELS_PER_TASK..c_in.min((task + 1) * CHANNELS_PER_TASK);
        // Soundness of every arm below: this task alone writes the rows of `packed` that
        // belong to its input channels (rows (e, panel, ci) for ci in
        // `channels`), which lie inside `packed` (t*t * c_in * ldm floats,
        // asserted above), and reads the filter (9 * c_in * c_out, asserted);
        // each SIMD arm's token proves its instruction set.
        match token {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as noted above; the token proves AVX-512F, AVX2 and FMA.
            Token::Avx512(isa) => unsafe { filter_rows_avx512(isa, &args, channels) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as noted above; the token proves AVX2 and FMA.
            Token::Avx2(isa) => unsafe { filter_rows_avx2(isa, &args, channels) },
            // SAFETY: as noted above (the portable code needs no CPU feature).
            Token::Portable(isa) => unsafe { filter_rows(isa, &args, channels) },
        }
    });
}

#[derive(Clone, Copy)]
struct PackArgs<'a> {
    f4: bool,
    filter: &'a [f32],
    c_in: usize,
    c_out: usize,
    nr: usize,
    ldm: usize,
    packed: SendPtr<f32>,
}

/// Writes `U[e][panel][ci][..]` for every tile element and each `ci` in
/// `channels`, zeroing the padding columns of the last panel.
///
/// # Safety
/// As described in `pack_filter`; the token `isa` proves the instruction set, and
/// `S::LANES` divides `nr` (or `nr == c_out`), so a vector never straddles panels.
#[inline(always)]
unsafe fn filter_rows<S: Isa>(isa: S, a: &PackArgs, channels: core::ops::Range<usize>) {
    let (c_in, c_out, nr) = (a.c_in, a.c_out, a.nr);
    let t2 = if a.f4 { 36 } else { 16 };
    let estride = c_in * a.ldm;
    for ci in channels {
        // Element 0's row for output channel `co` (panel co / nr, column co % nr).
        // SAFETY: (p*c_in + ci)*nr + j < c_in * ldm for co < ldm.
        let row0 = |co: usize| unsafe { a.packed.get().add(((co / nr) * c_in + ci) * nr + co % nr) };
        let mut co = 0;
        // SAFETY: co + LANES <= c_out, so the filter loads are in
        // bounds and the stores stay within one panel row of every element.
        unsafe {
            while co + S::LANES <= c_out {
                if a.f4 {
                    filter_transform::<S, true>(isa, a.filter.as_ptr(), ci, c_in, c_out, co, row0(co), estride);
                } else {
                    filter_transform::<S, false>(isa, a.filter.as_ptr(), ci, c_in, c_out, co, row0(co), estride);
                }
                co += S::LANES;
            }
            for co in co..c_out {
                if a.f4 {
                    filter_transform::<Scalar, true>(
                        isa.scalar(),
                        a.filter.as_ptr(),
                        ci,
                        c_in,
                        c_out,
                        co,
                        row0(co),
                        estride,
                    );
                } else {
                    filter_transform::<Scalar, false>(
                        isa.scalar(),
                        a.filter.as_ptr(),
                        ci,
                        c_in,
                        c_out,
                        co,
                        row0(co),
                        estride,
                    );
                }
            }
        }
        for co in c_out..a.ldm {
            for e in 0..t2 {
                // SAFETY: padding column co < ldm of the last panel, row (e, ci), inside `packed`.
                unsafe { *row0(co).add(e * estride) = 0.0 };
            }
        }
    }
}

/// # Safety
/// As [`filter_rows`], on a CPU with AVX-512F, AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn filter_rows_avx512(isa: Avx512, a: &PackArgs, channels: core::ops::Range<usize>) {
    // SAFETY: forwarded contract; 16 divides the 32-wide panels.
    unsafe { filter_rows(isa, a, channels) }
}

/// # Safety
/// As [`filter_rows`], on a CPU with AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn filter_rows_avx2(isa: Avx2, a: &PackArgs, channels: core::ops::Range<usize>) {
    // SAFETY: forwarded contract; 8 divides the 16-wide panels.
    unsafe { filter_rows(isa, a, channels) }
}
