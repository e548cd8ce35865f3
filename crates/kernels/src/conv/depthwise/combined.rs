//! Depthwise backward-data and backward-filter in one sweep: the output
//! gradient, read by both, comes from memory once.
//!
//! The tasks are backward-filter's chunks of output rows (a function of the
//! shape only, see [`FilterJob::chunks`]); chunk `j` also writes the input
//! gradient rows that "start" in its output rows (input row `iy` belongs to
//! the output row `oy` with `oy * stride_h <= iy < (oy + 1) * stride_h`, the
//! last output row takes the rest of the image), so every input-gradient
//! row has exactly one writer. Within a chunk, after the filter
//! contribution of output row `oy`, every input-gradient row whose output
//! gradient rows are all `<= oy` is gathered while those rows are still in
//! the cache. Each input-gradient row is the same gather as
//! [`super::backward_data`]'s and each chunk adds the same rows in the same
//! order as [`super::backward_filter`]'s, so both results are bit-identical
//! to the separate passes, for any number of threads.

use super::filter::{self, FilterJob};
use super::gather::{self, Gather};
use crate::arch::par::par_chunks_mut;
use crate::arch::{scratch_f32, scratch_f32_task, store_fence, FtzGuard, Slot};
#[cfg(target_arch = "x86_64")]
use crate::arch::{Avx2, Avx512};
use crate::arch::{Isa, Token};

/// Runs the input-gradient gather `g` (backward-data tables) and the
/// filter-gradient job `job` over the same output gradient, into
/// `g.dst` and `grad_filter` (`kh * kw * ce`, overwritten); `stride_h` is
/// the vertical stride.
///
/// The caller guarantees both are consistent (see [`gather::run`] and
/// [`filter::run`]) and describe the same shape.
pub(super) fn run(token: Token, g: &Gather, job: &FilterJob, stride_h: usize, grad_filter: &mut [f32]) {
    let len = grad_filter.len();
    let chunks = job.chunks();
    let mut partials = scratch_f32(Slot::Partial, chunks * len);
    let buf_len = job.expand_len() + gather::staged_len(g);
    par_chunks_mut(&mut partials, len, |j, part| {
        let _ftz = FtzGuard::new();
        part.fill(0.0);
        let mut buf = scratch_f32_task(Slot::Column, buf_len, buf_len);
        match token {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the token proves AVX-512F/AVX2/FMA;
            // `g` and `job` are consistent (the caller's contract above).
            Token::Avx512(isa) => unsafe { chunk_avx512(isa, g, job, stride_h, j, part, &mut buf) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above.
            Token::Avx2(isa) => unsafe { chunk_avx2(isa, g, job, stride_h, j, part, &mut buf) },
            // SAFETY: `g` and `job` are consistent.
            Token::Portable(isa) => unsafe { chunk(isa, g, job, stride_h, j, part, &mut buf) },
        }
        if g.stream {
            store_fence();
        }
    });
    filter::sum_partials(&partials, chunks, grad_filter);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn chunk_avx512(
    isa: Avx512,
    g: &Gather,
    job: &FilterJob,
    stride_h: usize,
    j: usize,
    part: &mut [f32],
    buf: &mut [f32],
) {
    // SAFETY: forwarded from `run`.
    unsafe { chunk::<_>(isa, g, job, stride_h, j, part, buf) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn chunk_avx2(
    isa: Avx2,
    g: &Gather,
    job: &FilterJob,
    stride_h: usize,
    j: usize,
    part: &mut [f32],
    buf: &mut [f32],
) {
    // SAFETY: forwarded from `run`.
    unsafe { chunk::<_>(isa, g, job, stride_h, j, part, buf) }
}

/// First input row owned by output row `oy` of an `oh`-row output over an
/// `h`-row input at `stride`: `oy * stride`, and `h` for `oy == oh`.
pub(super) fn first_input_row(oy: usize, oh: usize, h: usize, stride: usize) -> usize {
    if oy >= oh {
        h
    } else {
        (oy * stride).min(h)
    }
}

/// Chunk `j`: its output rows' filter contributions into `part`, and the
/// input-gradient rows they own.
///
/// # Safety
///
/// As [`run`]; `buf` holds `job.expand_len() + gather::staged_len(g)` floats.
#[inline(always)]
unsafe fn chunk<S: Isa>(
    isa: S,
    g: &Gather,
    job: &FilterJob,
    stride_h: usize,
    j: usize,
    part: &mut [f32],
    buf: &mut [f32],
) {
    let (_, h, _, _) = job.in_dims;
    let oh = job.out_hw.0;
    let (expanded, reduce) = buf.split_at_mut(job.expand_len());
    let (g0, g1) = job.chunk_rows(j);
    let mut row = g0;
    while row < g1 {
        // The chunk's output rows of image b: oy0 .. oy1.
        let b = row / oh;
        let (oy0, oy1) = (row % oh, (g1 - b * oh).min(oh));
        let (mut next, end) = (first_input_row(oy0, oh, h, stride_h), first_input_row(oy1, oh, h, stride_h));
        for oy in oy0..oy1 {
            // SAFETY: `b * oh + oy < n * oh`; `expanded` holds `expand_len()` floats.
            unsafe { filter::row::<S>(isa, job, b * oh + oy, part, expanded) };
            // Input rows whose gradient rows are all in by now.
            while next < end && g.rows.taps(next).chunks_exact(2).all(|t| t[1] as usize <= oy) {
                // SAFETY: row `next` of image b is owned by this chunk only.
                unsafe { gather::rows::<S>(isa, g, b, next, next + 1, reduce) };
                next += 1;
            }
        }
        // SAFETY: as above (these read output-gradient rows past the chunk).
        unsafe { gather::rows::<S>(isa, g, b, next, end, reduce) };
        row = b * oh + oy1;
    }
}
