//! The scalar pooling loops: one thread, no SIMD dispatch, obviously right.
//! The oracle the fast kernels are tested against (bit for bit); same
//! signatures, same checks and same results as the functions of
//! [`crate::pool`].

use super::global::check_global;
use super::max::{argmax_outside, first_bad_argmax};
use super::shape::{check_avg, check_max_backward, check_max_forward};
use super::{options, PoolShape};
use crate::Result;

/// Scalar [`max_pool2d_forward`](crate::pool::max_pool2d_forward).
pub fn max_pool2d_forward(s: &PoolShape, input: &[f32], output: &mut [f32], argmax: &mut [u32]) -> Result<()> {
    check_max_forward(s, input, output, argmax)?;
    if !s.options.is_default() {
        return options::reference::max_forward(s, input, output, argmax);
    }
    let (oh, ow, item) = (s.out_h(), s.out_w(), s.h * s.w * s.c);
    for n in 0..s.n {
        let x = &input[n * item..][..item];
        for oy in 0..oh {
            for ox in 0..ow {
                let o = ((n * oh + oy) * ow + ox) * s.c;
                let (ys, xs) = s.window(oy, ox);
                for ch in 0..s.c {
                    let mut best = f32::NEG_INFINITY;
                    let mut best_i = u32::MAX;
                    for iy in ys.clone() {
                        for ix in xs.clone() {
                            let i = (iy * s.w + ix) * s.c + ch;
                            if x[i] > best || best_i == u32::MAX {
                                best = x[i];
                                best_i = i as u32;
                            }
                        }
                    }
                    output[o + ch] = best;
                    argmax[o + ch] = best_i;
                }
            }
        }
    }
    Ok(())
}

/// Scalar [`max_pool2d_backward`](crate::pool::max_pool2d_backward).
pub fn max_pool2d_backward(s: &PoolShape, grad_output: &[f32], argmax: &[u32], grad_input: &mut [f32]) -> Result<()> {
    check_max_backward(s, grad_output, argmax, grad_input)?;
    if !s.options.is_default() {
        return options::reference::max_backward(s, grad_output, argmax, grad_input);
    }
    if let Some(bad) = first_bad_argmax(s, argmax) {
        return Err(argmax_outside(s, bad));
    }
    let (item, out_item) = (s.h * s.w * s.c, s.out_h() * s.out_w() * s.c);
    grad_input.fill(0.0);
    for n in 0..s.n {
        let gi = &mut grad_input[n * item..][..item];
        for (&g, &a) in grad_output[n * out_item..][..out_item].iter().zip(&argmax[n * out_item..][..out_item]) {
            *gi.get_mut(a as usize).ok_or_else(|| argmax_outside(s, a))? += g;
        }
    }
    Ok(())
}

/// Scalar [`avg_pool2d_forward`](crate::pool::avg_pool2d_forward).
pub fn avg_pool2d_forward(s: &PoolShape, input: &[f32], output: &mut [f32]) -> Result<()> {
    check_avg(s, input, output, ("input", "output"))?;
    if !s.options.is_default() {
        return options::reference::avg_forward(s, input, output);
    }
    let (oh, ow) = (s.out_h(), s.out_w());
    for n in 0..s.n {
        for oy in 0..oh {
            for ox in 0..ow {
                let o = &mut output[((n * oh + oy) * ow + ox) * s.c..][..s.c];
                o.fill(0.0);
                let (ys, xs) = s.window(oy, ox);
                let count = (ys.len() * xs.len()) as f32;
                for iy in ys {
                    for ix in xs.clone() {
                        let x = &input[((n * s.h + iy) * s.w + ix) * s.c..][..s.c];
                        o.iter_mut().zip(x).for_each(|(o, &x)| *o += x);
                    }
                }
                o.iter_mut().for_each(|o| *o /= count);
            }
        }
    }
    Ok(())
}

/// Scalar [`avg_pool2d_backward`](crate::pool::avg_pool2d_backward).
pub fn avg_pool2d_backward(s: &PoolShape, grad_output: &[f32], grad_input: &mut [f32]) -> Result<()> {
    check_avg(s, grad_input, grad_output, ("grad_input", "grad_output"))?;
    if !s.options.is_default() {
        return options::reference::avg_backward(s, grad_output, grad_input);
    }
    let (oh, ow) = (s.out_h(), s.out_w());
    grad_input.fill(0.0);
    for n in 0..s.n {
        for oy in 0..oh {
            for ox in 0..ow {
                let g = &grad_output[((n * oh + oy) * ow + ox) * s.c..][..s.c];
                let (ys, xs) = s.window(oy, ox);
                let inv = 1.0 / (ys.len() * xs.len()) as f32;
                for iy in ys {
                    for ix in xs.clone() {
                        let gi = &mut grad_input[((n * s.h + iy) * s.w + ix) * s.c..][..s.c];
                        gi.iter_mut().zip(g).for_each(|(d, &g)| *d += g * inv);
                    }
                }
            }
        }
    }
    Ok(())
}

/// Scalar [`global_avg_pool_forward`](crate::pool::global_avg_pool_forward).
pub fn global_avg_pool_forward(n: usize, hw: usize, c: usize, input: &[f32], output: &mut [f32]) -> Result<()> {
    check_global(n, hw, c, ("input", input.len()), ("output", output.len()))?;
    for (x, o) in input.chunks_exact(hw * c).zip(output.chunks_exact_mut(c)) {
        o.fill(0.0);
        for px in x.chunks_exact(c) {
            o.iter_mut().zip(px).for_each(|(o, &x)| *o += x);
        }
        o.iter_mut().for_each(|o| *o /= hw as f32);
    }
    Ok(())
}

/// Scalar [`global_avg_pool_backward`](crate::pool::global_avg_pool_backward).
pub fn global_avg_pool_backward(
    n: usize,
    hw: usize,
    c: usize,
    grad_output: &[f32],
    grad_input: &mut [f32],
) -> Result<()> {
    check_global(n, hw, c, ("grad_input", grad_input.len()), ("grad_output", grad_output.len()))?;
    let inv = 1.0 / hw as f32;
    for (gi, g) in grad_input.chunks_exact_mut(hw * c).zip(grad_output.chunks_exact(c)) {
        for px in gi.chunks_exact_mut(c) {
            px.iter_mut().zip(g).for_each(|(d, &g)| *d = g * inv);
        }
    }
    Ok(())
}
