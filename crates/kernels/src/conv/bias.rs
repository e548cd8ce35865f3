//! The bias gradient of every algorithm: per-channel sums of
//! `grad_output`, in fixed chunks of rows whose f32 partial sums are added
//! in chunk order (bit-identical for any number of threads).

use super::ConvShape;
use crate::arch::{scratch_f32, FtzGuard, Slot};
use rayon::prelude::*;

/// Rows of `grad_output` per bias-gradient chunk (fixed: the partial sums
/// are added in chunk order, so the result never depends on the pool).
const BIAS_CHUNK_ROWS: usize = 2048;

/// Bias gradient: per-channel sums of `grad_output` (overwrites
/// `grad_bias`). f32 partial sums over fixed chunks of rows, added in order.
pub(crate) fn backward_bias(s: &ConvShape, grad_output: &[f32], grad_bias: &mut [f32]) {
    let _ftz = FtzGuard::new();
    let c = s.c_out;
    let rows = grad_output.len() / c;
    let chunks = rows.div_ceil(BIAS_CHUNK_ROWS);
    let mut partials = scratch_f32(Slot::Partial, chunks * c);
    partials.par_chunks_mut(c).enumerate().for_each(|(i, p)| {
        p.fill(0.0);
        let part = &grad_output[i * BIAS_CHUNK_ROWS * c..((i + 1) * BIAS_CHUNK_ROWS).min(rows) * c];
        for row in part.chunks_exact(c) {
            p.iter_mut().zip(row).for_each(|(a, &g)| *a += g);
        }
    });
    grad_bias.fill(0.0);
    for p in partials.chunks_exact(c) {
        grad_bias.iter_mut().zip(p).for_each(|(a, &g)| *a += g);
    }
}
