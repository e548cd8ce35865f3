//! The oracle: plain loops over the definition of convolution, accumulating
//! in f64. Slow and obviously right; every fast algorithm is tested against it.
//!
//! `y[n, oy, ox, co] = sum_{ky, kx, ci} x[n, oy*sh + ky*dh - pt, ox*sw + kx*dw - pl, g*cig + ci] * w[ky, kx, ci, co]`
//! with zeros outside the input, where `cig = c_in / groups` and
//! `g = co / (c_out / groups)` is the group of output channel `co` (`ci`
//! runs over the `cig` channels of that group; with one group, all of them).

use super::ConvShape;

/// Input coordinate of output `o` and window tap `k` along one axis, if inside.
#[inline]
fn tap(o: usize, k: usize, stride: usize, dilation: usize, pad: usize, size: usize) -> Option<usize> {
    (o * stride + k * dilation).checked_sub(pad).filter(|&i| i < size)
}

/// The filter row of input channel `ci` at tap `(ky, kx)` (the weights to
/// the `c_out / groups` outputs of `ci`'s group) and the matching slice of
/// the per-pixel accumulator `acc` (`[c_out]`).
fn group_row<'a>(
    s: &ConvShape,
    ky: usize,
    kx: usize,
    ci: usize,
    filter: &'a [f32],
    acc: &'a mut [f64],
) -> (&'a [f32], &'a mut [f64]) {
    let (cig, cog) = (s.c_in_per_group(), s.c_out_per_group());
    let (grp, cil) = (ci / cig, ci % cig);
    (&filter[((ky * s.kw + kx) * cig + cil) * s.c_out + grp * cog..][..cog], &mut acc[grp * cog..][..cog])
}

/// Forward: `output = conv(input, filter) + bias`. Lengths are checked by the caller.
pub fn forward(s: &ConvShape, input: &[f32], filter: &[f32], bias: Option<&[f32]>, output: &mut [f32]) {
    let (oh, ow) = (s.out_h(), s.out_w());
    let mut acc = vec![0f64; s.c_out];
    for n in 0..s.n {
        for oy in 0..oh {
            for ox in 0..ow {
                for (co, a) in acc.iter_mut().enumerate() {
                    *a = bias.map_or(0.0, |b| b[co] as f64);
                }
                for ky in 0..s.kh {
                    let Some(iy) = tap(oy, ky, s.stride_h, s.dilation_h, s.pad_top, s.h) else { continue };
                    for kx in 0..s.kw {
                        let Some(ix) = tap(ox, kx, s.stride_w, s.dilation_w, s.pad_left, s.w) else { continue };
                        for ci in 0..s.c_in {
                            let x = input[((n * s.h + iy) * s.w + ix) * s.c_in + ci] as f64;
                            let (wrow, arow) = group_row(s, ky, kx, ci, filter, &mut acc);
                            for (a, &w) in arow.iter_mut().zip(wrow) {
                                *a += x * w as f64;
                            }
                        }
                    }
                }
                let out = &mut output[((n * oh + oy) * ow + ox) * s.c_out..][..s.c_out];
                for (o, &a) in out.iter_mut().zip(&acc) {
                    *o = a as f32;
                }
            }
        }
    }
}

/// Backward-data: `grad_input = d(sum(grad_output * y)) / d input` (overwrites).
pub fn backward_data(s: &ConvShape, grad_output: &[f32], filter: &[f32], grad_input: &mut [f32]) {
    let (oh, ow) = (s.out_h(), s.out_w());
    let mut acc = vec![0f64; s.input_len()];
    for n in 0..s.n {
        for oy in 0..oh {
            for ox in 0..ow {
                let g = &grad_output[((n * oh + oy) * ow + ox) * s.c_out..][..s.c_out];
                for ky in 0..s.kh {
                    let Some(iy) = tap(oy, ky, s.stride_h, s.dilation_h, s.pad_top, s.h) else { continue };
                    for kx in 0..s.kw {
                        let Some(ix) = tap(ox, kx, s.stride_w, s.dilation_w, s.pad_left, s.w) else { continue };
                        for ci in 0..s.c_in {
                            let (cig, cog) = (s.c_in_per_group(), s.c_out_per_group());
                            let (grp, cil) = (ci / cig, ci % cig);
                            let wrow = &filter[((ky * s.kw + kx) * cig + cil) * s.c_out + grp * cog..][..cog];
                            let g = &g[grp * cog..][..cog];
                            let dot: f64 = g.iter().zip(wrow).map(|(&g, &w)| g as f64 * w as f64).sum();
                            acc[((n * s.h + iy) * s.w + ix) * s.c_in + ci] += dot;
                        }
                    }
                }
            }
        }
    }
    for (o, a) in grad_input.iter_mut().zip(acc) {
        *o = a as f32;
    }
}

/// Backward-filter: `grad_filter = d(sum(grad_output * y)) / d filter` (overwrites).
pub fn backward_filter(s: &ConvShape, input: &[f32], grad_output: &[f32], grad_filter: &mut [f32]) {
    let (oh, ow) = (s.out_h(), s.out_w());
    let mut acc = vec![0f64; s.filter_len()];
    for n in 0..s.n {
        for oy in 0..oh {
            for ox in 0..ow {
                let g = &grad_output[((n * oh + oy) * ow + ox) * s.c_out..][..s.c_out];
                for ky in 0..s.kh {
                    let Some(iy) = tap(oy, ky, s.stride_h, s.dilation_h, s.pad_top, s.h) else { continue };
                    for kx in 0..s.kw {
                        let Some(ix) = tap(ox, kx, s.stride_w, s.dilation_w, s.pad_left, s.w) else { continue };
                        for ci in 0..s.c_in {
                            let x = input[((n * s.h + iy) * s.w + ix) * s.c_in + ci] as f64;
                            let (cig, cog) = (s.c_in_per_group(), s.c_out_per_group());
                            let (grp, cil) = (ci / cig, ci % cig);
                            let arow = &mut acc[((ky * s.kw + kx) * cig + cil) * s.c_out + grp * cog..][..cog];
                            let g = &g[grp * cog..][..cog];
                            for (a, &g) in arow.iter_mut().zip(g) {
                                *a += x * g as f64;
                            }
                        }
                    }
                }
            }
        }
    }
    for (o, a) in grad_filter.iter_mut().zip(acc) {
        *o = a as f32;
    }
}

/// Bias gradient: the sum of `grad_output` over batch and space, per channel (overwrites).
pub fn backward_bias(s: &ConvShape, grad_output: &[f32], grad_bias: &mut [f32]) {
    let mut acc = vec![0f64; s.c_out];
    for row in grad_output.chunks_exact(s.c_out) {
        for (a, &g) in acc.iter_mut().zip(row) {
            *a += g as f64;
        }
    }
    for (o, a) in grad_bias.iter_mut().zip(acc) {
        *o = a as f32;
    }
}
