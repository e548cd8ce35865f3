//! The pooling options other frameworks accept beyond Keras's, for
//! [`PoolShape`]: window dilation (PyTorch `MaxPool2d(dilation=)`),
//! `ceil_mode` (output size rounded up, PyTorch's rule that the last window
//! must start inside the input or its leading padding), and average pooling
//! that counts the padding in the divisor (PyTorch's `count_include_pad`,
//! its default; Keras excludes padding).
//!
//! [`PoolShape::with_options`] sets them; every pooling entry point of
//! [`crate::pool`] routes a shape with non-default options here. The
//! kernels are the same shape as the default ones (one batch item per
//! rayon task, channels contiguous so the per-tap loops vectorise, one body
//! instantiated per SIMD level), with per-axis tap lists in place of
//! contiguous window ranges. Scalar versions, element by element from the
//! definition, are the oracle ([`crate::pool::reference`] dispatches to
//! them), and fast and scalar perform the same operations in the same order,
//! so they agree bit for bit.
//!
//! Average divisor: with `count_include_pad`, the number of taps inside the
//! padded input (taps that only exist because of `ceil_mode`, beyond the
//! trailing padding, are not counted, as in PyTorch); without it, the
//! number of taps inside the input.

use super::PoolShape;
use crate::arch::Token;
use crate::{Error, Result};
use rayon::prelude::*;

/// Pooling options beyond window, stride and padding. The default is
/// Keras's behaviour: no dilation, floor rounding, padding not counted.
///
/// ```
/// use convnet_kernels::conv::Padding;
/// use convnet_kernels::pool::{PoolOptions, PoolShape};
/// let o = PoolOptions::default().dilation(2, 2).ceil_mode(true);
/// let s = PoolShape::new(1, 8, 8, 1, (2, 2), (2, 2), Padding::Valid)?.with_options(o)?;
/// // Dilated window spans 3; ceil((8 - 3) / 2) + 1 = 4 outputs per axis.
/// assert_eq!((s.out_h(), s.out_w()), (4, 4));
/// # Ok::<(), convnet_kernels::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PoolOptions {
    /// `(vertical, horizontal)` distance between window taps (1 = dense).
    pub dilation: (usize, usize),
    /// Round the output size up instead of down.
    pub ceil_mode: bool,
    /// Average pooling divides by every tap inside the padded input, padding included.
    pub count_include_pad: bool,
}

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions { dilation: (1, 1), ceil_mode: false, count_include_pad: false }
    }
}

impl PoolOptions {
    /// Sets the dilation.
    pub fn dilation(mut self, h: usize, w: usize) -> Self {
        self.dilation = (h, w);
        self
    }
    /// Sets `ceil_mode`.
    pub fn ceil_mode(mut self, on: bool) -> Self {
        self.ceil_mode = on;
        self
    }
    /// Sets `count_include_pad`.
    pub fn count_include_pad(mut self, on: bool) -> Self {
        self.count_include_pad = on;
        self
    }
    /// Whether these are the defaults (the kernels of [`crate::pool`] run them directly).
    pub fn is_default(&self) -> bool {
        *self == PoolOptions::default()
    }
}

/// One axis of a pooling problem.
#[derive(Clone, Copy, Debug)]
pub(super) struct Axis {
    pub size: usize,
    pub window: usize,
    pub stride: usize,
    pub dilation: usize,
    pub pad_before: usize,
    pub pad_after: usize,
    pub ceil: bool,
}

impl Axis {
    /// Output length, or `None` when the dilated window does not fit the
    /// padded input or sizes overflow.
    pub(in crate::pool) fn out_len(&self) -> Option<usize> {
        let eff = (self.window - 1).checked_mul(self.dilation)?.checked_add(1)?;
        let padded = self.size.checked_add(self.pad_before)?.checked_add(self.pad_after)?;
        let span = padded.checked_sub(eff)?;
        let mut out = if self.ceil { span.div_ceil(self.stride) + 1 } else { span / self.stride + 1 };
        // PyTorch: the last window must start inside the input or the leading padding.
        if self.ceil && out > 1 && (out - 1) * self.stride >= self.size + self.pad_before {
            out -= 1;
        }
        Some(out)
    }

    /// Input coordinate of tap `k` of output `o`, if inside the input.
    #[inline(always)]
    fn tap(&self, o: usize, k: usize) -> Option<usize> {
        (o * self.stride + k * self.dilation).checked_sub(self.pad_before).filter(|&i| i < self.size)
    }

    /// Taps of output `o` inside the padded input (beyond it only through `ceil_mode`).
    #[inline(always)]
    fn padded_taps(&self, o: usize) -> usize {
        let limit = self.size + self.pad_before + self.pad_after;
        (0..self.window).filter(|&k| o * self.stride + k * self.dilation < limit).count()
    }

    /// Taps of output `o` inside the input.
    #[inline(always)]
    fn inside_taps(&self, o: usize) -> usize {
        (0..self.window).filter(|&k| self.tap(o, k).is_some()).count()
    }
}

/// The vertical and horizontal axes of `s`.
pub(super) fn axes(s: &PoolShape) -> (Axis, Axis) {
    let o = s.options;
    (
        Axis {
            size: s.h,
            window: s.ph,
            stride: s.stride_h,
            dilation: o.dilation.0,
            pad_before: s.pad_top,
            pad_after: s.pad_bottom,
            ceil: o.ceil_mode,
        },
        Axis {
            size: s.w,
            window: s.pw,
            stride: s.stride_w,
            dilation: o.dilation.1,
            pad_before: s.pad_left,
            pad_after: s.pad_right,
            ceil: o.ceil_mode,
        },
    )
}

/// Checks that every output window has at least one tap inside the input
/// (on each axis): a window of padding only has no maximum.
pub(super) fn check_windows(s: &PoolShape) -> std::result::Result<(), String> {
    let (ay, ax) = axes(s);
    for (name, a) in [("rows", ay), ("columns", ax)] {
        let out = a.out_len().ok_or_else(|| format!("dilated window larger than the padded {name}"))?;
        // With dilation <= size, a window has an inside tap iff its first
        // tap is before the input's end and its last at or after its start;
        // both move forward with the output, so only the two ends can fail.
        // A larger dilation can jump over the input: check every window,
        // which is cheap because such inputs are small (bounded here).
        let suspects: Vec<usize> = if a.dilation <= a.size {
            vec![0, out - 1]
        } else if out <= 1 << 16 {
            (0..out).collect()
        } else {
            return Err(format!("{out} outputs along the {name} with a dilation larger than the input"));
        };
        if let Some(o) = suspects.into_iter().find(|&o| a.inside_taps(o) == 0) {
            return Err(format!("output {o} along the {name} sees only padding"));
        }
    }
    Ok(())
}

/// The divisor of average output `(oy, ox)`.
#[inline(always)]
fn divisor(s: &PoolShape, ay: &Axis, ax: &Axis, oy: usize, ox: usize) -> f32 {
    if s.options.count_include_pad {
        (ay.padded_taps(oy) * ax.padded_taps(ox)) as f32
    } else {
        (ay.inside_taps(oy) * ax.inside_taps(ox)) as f32
    }
}

/// Whether input element `a` (index within an item) is a tap of output
/// element `o` (index within an item): same channel, inside the window.
fn argmax_in_window(s: &PoolShape, ay: &Axis, ax: &Axis, o: usize, a: usize) -> bool {
    let (ow, c) = (s.out_w(), s.c);
    let (p, ch) = (o / c, o % c);
    let (oy, ox) = (p / ow, p % ow);
    let (pix, ach) = (a / c, a % c);
    let (iy, ix) = (pix / s.w, pix % s.w);
    ach == ch
        && iy < s.h
        && (0..ay.window).any(|k| ay.tap(oy, k) == Some(iy))
        && (0..ax.window).any(|k| ax.tap(ox, k) == Some(ix))
}

// ---------------------------------------------------------------------------
// Per-item bodies (vectorised over channels), instantiated per SIMD level.

#[inline(always)]
fn max_forward_item(s: &PoolShape, x: &[f32], y: &mut [f32], am: &mut [u32]) {
    let (ay, ax) = axes(s);
    let (ow, c) = (s.out_w(), s.c);
    for (p, (yrow, arow)) in y.chunks_exact_mut(c).zip(am.chunks_exact_mut(c)).enumerate() {
        let (oy, ox) = (p / ow, p % ow);
        let mut first = true;
        for iy in (0..ay.window).filter_map(|k| ay.tap(oy, k)) {
            for ix in (0..ax.window).filter_map(|k| ax.tap(ox, k)) {
                let base = (iy * s.w + ix) * c;
                let xrow = &x[base..][..c];
                if first {
                    yrow.copy_from_slice(xrow);
                    arow.iter_mut().enumerate().for_each(|(ch, a)| *a = (base + ch) as u32);
                    first = false;
                    continue;
                }
                for (ch, ((b, a), &v)) in yrow.iter_mut().zip(arow.iter_mut()).zip(xrow).enumerate() {
                    let greater = v > *b;
                    *b = if greater { v } else { *b };
                    *a = if greater { (base + ch) as u32 } else { *a };
                }
            }
        }
    }
}

#[inline(always)]
fn avg_forward_item(s: &PoolShape, x: &[f32], y: &mut [f32]) {
    let (ay, ax) = axes(s);
    let (ow, c) = (s.out_w(), s.c);
    for (p, yrow) in y.chunks_exact_mut(c).enumerate() {
        let (oy, ox) = (p / ow, p % ow);
        yrow.fill(0.0);
        for iy in (0..ay.window).filter_map(|k| ay.tap(oy, k)) {
            for ix in (0..ax.window).filter_map(|k| ax.tap(ox, k)) {
                let xrow = &x[(iy * s.w + ix) * c..][..c];
                yrow.iter_mut().zip(xrow).for_each(|(o, &v)| *o += v);
            }
        }
        let d = divisor(s, &ay, &ax, oy, ox);
        yrow.iter_mut().for_each(|o| *o /= d);
    }
}

#[inline(always)]
fn avg_backward_item(s: &PoolShape, gy: &[f32], gx: &mut [f32]) {
    let (ay, ax) = axes(s);
    let (ow, c) = (s.out_w(), s.c);
    gx.fill(0.0);
    for (p, grow) in gy.chunks_exact(c).enumerate() {
        let (oy, ox) = (p / ow, p % ow);
        let inv = 1.0 / divisor(s, &ay, &ax, oy, ox);
        for iy in (0..ay.window).filter_map(|k| ay.tap(oy, k)) {
            for ix in (0..ax.window).filter_map(|k| ax.tap(ox, k)) {
                let gxrow = &mut gx[(iy * s.w + ix) * c..][..c];
                gxrow.iter_mut().zip(grow).for_each(|(d, &g)| *d += g * inv);
            }
        }
    }
}

crate::arch::multiversion!(fn max_forward_item_at(s: &PoolShape, x: &[f32], y: &mut [f32], am: &mut [u32]) => max_forward_item);
crate::arch::multiversion!(fn avg_forward_item_at(s: &PoolShape, x: &[f32], y: &mut [f32]) => avg_forward_item);
crate::arch::multiversion!(fn avg_backward_item_at(s: &PoolShape, gy: &[f32], gx: &mut [f32]) => avg_backward_item);

/// Max pooling forward with options (shape validated, lengths checked).
pub(super) fn max_forward(token: Token, s: &PoolShape, input: &[f32], output: &mut [f32], argmax: &mut [u32]) {
    let (item, out_item) = (s.h * s.w * s.c, s.out_h() * s.out_w() * s.c);
    output.par_chunks_mut(out_item).zip(argmax.par_chunks_mut(out_item)).enumerate().for_each(|(n, (y, am))| {
        max_forward_item_at(token, s, &input[n * item..][..item], y, am);
    });
}

/// Max pooling backward with options: each output gradient added to its
/// argmax, per item in output order (overwrites `grad_input`). An argmax
/// outside its window is an error.
pub(super) fn max_backward(s: &PoolShape, grad_output: &[f32], argmax: &[u32], grad_input: &mut [f32]) -> Result<()> {
    let (ay, ax) = axes(s);
    let (item, out_item) = (s.h * s.w * s.c, s.out_h() * s.out_w() * s.c);
    let bad = argmax.iter().enumerate().find(|&(o, &a)| !argmax_in_window(s, &ay, &ax, o % out_item, a as usize));
    if let Some((_, &a)) = bad {
        return Err(Error::InvalidShape {
            shape: s.to_string(),
            reason: format!("argmax index {a} outside its window"),
        });
    }
    grad_input.par_chunks_mut(item).enumerate().for_each(|(n, gx)| {
        gx.fill(0.0);
        let r = n * out_item..(n + 1) * out_item;
        for (&g, &a) in grad_output[r.clone()].iter().zip(&argmax[r]) {
            gx[a as usize] += g;
        }
    });
    Ok(())
}

/// Average pooling forward with options (shape validated, lengths checked).
pub(super) fn avg_forward(token: Token, s: &PoolShape, input: &[f32], output: &mut [f32]) {
    let (item, out_item) = (s.h * s.w * s.c, s.out_h() * s.out_w() * s.c);
    output.par_chunks_mut(out_item).enumerate().for_each(|(n, y)| {
        avg_forward_item_at(token, s, &input[n * item..][..item], y);
    });
}

/// Average pooling backward with options (overwrites `grad_input`).
pub(super) fn avg_backward(token: Token, s: &PoolShape, grad_output: &[f32], grad_input: &mut [f32]) {
    let (item, out_item) = (s.h * s.w * s.c, s.out_h() * s.out_w() * s.c);
    grad_input.par_chunks_mut(item).enumerate().for_each(|(n, gx)| {
        avg_backward_item_at(token, s, &grad_output[n * out_item..][..out_item], gx);
    });
}

/// Scalar versions, element by element from the definition: the oracle.
pub(super) mod reference {
    use super::*;

    /// Max pooling forward, one output element at a time.
    pub(in crate::pool) fn max_forward(
        s: &PoolShape,
        input: &[f32],
        output: &mut [f32],
        argmax: &mut [u32],
    ) -> Result<()> {
        let (ay, ax) = axes(s);
        let (oh, ow, item) = (s.out_h(), s.out_w(), s.h * s.w * s.c);
        for n in 0..s.n {
            for oy in 0..oh {
                for ox in 0..ow {
                    for ch in 0..s.c {
                        let mut best = (f32::NEG_INFINITY, u32::MAX);
                        for ky in 0..s.ph {
                            let Some(iy) = ay.tap(oy, ky) else { continue };
                            for kx in 0..s.pw {
                                let Some(ix) = ax.tap(ox, kx) else { continue };
                                let i = (iy * s.w + ix) * s.c + ch;
                                let v = input[n * item + i];
                                if best.1 == u32::MAX || v > best.0 {
                                    best = (v, i as u32);
                                }
                            }
                        }
                        let o = ((n * oh + oy) * ow + ox) * s.c + ch;
                        (output[o], argmax[o]) = best;
                    }
                }
            }
        }
        Ok(())
    }

    /// Max pooling backward: scatter to the argmax, checked.
    pub(in crate::pool) fn max_backward(
        s: &PoolShape,
        grad_output: &[f32],
        argmax: &[u32],
        grad_input: &mut [f32],
    ) -> Result<()> {
        let (ay, ax) = axes(s);
        let (item, out_item) = (s.h * s.w * s.c, s.out_h() * s.out_w() * s.c);
        grad_input.fill(0.0);
        for (o, (&g, &a)) in grad_output.iter().zip(argmax).enumerate() {
            if !argmax_in_window(s, &ay, &ax, o % out_item, a as usize) {
                return Err(Error::InvalidShape {
                    shape: s.to_string(),
                    reason: format!("argmax index {a} outside its window"),
                });
            }
            grad_input[o / out_item * item + a as usize] += g;
        }
        Ok(())
    }

    /// Average pooling forward.
    pub(in crate::pool) fn avg_forward(s: &PoolShape, input: &[f32], output: &mut [f32]) -> Result<()> {
        let (ay, ax) = axes(s);
        let (oh, ow, item) = (s.out_h(), s.out_w(), s.h * s.w * s.c);
        for n in 0..s.n {
            for oy in 0..oh {
                for ox in 0..ow {
                    for ch in 0..s.c {
                        let mut sum = 0.0f32;
                        for ky in 0..s.ph {
                            let Some(iy) = ay.tap(oy, ky) else { continue };
                            for kx in 0..s.pw {
                                let Some(ix) = ax.tap(ox, kx) else { continue };
                                sum += input[n * item + (iy * s.w + ix) * s.c + ch];
                            }
                        }
                        output[((n * oh + oy) * ow + ox) * s.c + ch] = sum / divisor(s, &ay, &ax, oy, ox);
                    }
                }
            }
        }
        Ok(())
    }

    /// Average pooling backward.
    pub(in crate::pool) fn avg_backward(s: &PoolShape, grad_output: &[f32], grad_input: &mut [f32]) -> Result<()> {
        let (ay, ax) = axes(s);
        let (oh, ow, item) = (s.out_h(), s.out_w(), s.h * s.w * s.c);
        grad_input.fill(0.0);
        for n in 0..s.n {
            for oy in 0..oh {
                for ox in 0..ow {
                    let inv = 1.0 / divisor(s, &ay, &ax, oy, ox);
                    for ch in 0..s.c {
                        let g = grad_output[((n * oh + oy) * ow + ox) * s.c + ch];
                        for ky in 0..s.ph {
                            let Some(iy) = ay.tap(oy, ky) else { continue };
                            for kx in 0..s.pw {
                                let Some(ix) = ax.tap(ox, kx) else { continue };
                                grad_input[n * item + (iy * s.w + ix) * s.c + ch] += g * inv;
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }
}
