//! Pooling over NHWC tensors: max (with argmax for backward), average
//! (padding excluded from the count, as Keras/TensorFlow do) and global average.
//! Dilation, `ceil_mode` and averages that count padding (PyTorch's options)
//! are [`PoolOptions`], run by the kernels in `pool_options.rs`.
//!
//! Layout: NHWC `[n, h, w, c]`, so the channels of one pixel are contiguous and
//! every kernel here vectorises over channels: for each output pixel it walks
//! the window in row-major order and updates a whole row of `c` channels per
//! tap (compare-and-blend for max, add for average).
//!
//! Fast paths: one generic `#[inline(always)]` body per kernel, instantiated for
//! AVX-512, AVX2+FMA and the portable baseline (SSE2 on x86-64) and chosen by
//! [`crate::simd::try_level`], so `CONVNET_SIMD` / [`crate::simd::force`] select
//! each path. Work is split over the batch with rayon, one batch item per task:
//! every item is computed by one thread in a fixed order, so results are
//! bit-identical for any thread count. No kernel allocates.
//!
//! Every fast kernel performs the same floating-point operations in the same
//! order as the scalar loops in [`reference`](mod@reference), so fast and reference agree
//! bit for bit (the property suite in `tests/tests/pool.rs` checks this under
//! every SIMD level).
//!
//! Tie-breaking in max pooling is deterministic: the FIRST maximum in
//! row-major window order wins (top row first, left to right), because a later
//! element replaces the running maximum only when strictly greater. A NaN never
//! wins a comparison, so it is selected only when it is the window's first
//! element.

use crate::conv::{pad_amounts, Padding};
use crate::error::check_len;
use crate::pool_options;
pub use crate::pool_options::PoolOptions;
use crate::{Error, Result};
use rayon::prelude::*;

/// A 2-D pooling problem over NHWC `[n, h, w, c]`.
///
/// ```
/// use convnet_kernels::conv::Padding;
/// use convnet_kernels::pool::PoolShape;
/// let p = PoolShape::new(64, 26, 26, 32, (2, 2), (2, 2), Padding::Valid).unwrap();
/// assert_eq!((p.out_h(), p.out_w()), (13, 13));
/// assert!(PoolShape::new(1, 1, 1, 1, (2, 2), (2, 2), Padding::Valid).is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PoolShape {
    /// Batch size.
    pub n: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Channels.
    pub c: usize,
    /// Window height.
    pub ph: usize,
    /// Window width.
    pub pw: usize,
    /// Vertical stride.
    pub stride_h: usize,
    /// Horizontal stride.
    pub stride_w: usize,
    /// Rows of padding above.
    pub pad_top: usize,
    /// Rows of padding below.
    pub pad_bottom: usize,
    /// Columns of padding to the left.
    pub pad_left: usize,
    /// Columns of padding to the right.
    pub pad_right: usize,
    /// Dilation, `ceil_mode`, `count_include_pad` (default: Keras's behaviour);
    /// see [`PoolOptions`].
    pub options: PoolOptions,
}

impl PoolShape {
    /// A validated pooling shape from a window, strides and Keras padding.
    pub fn new(
        n: usize,
        h: usize,
        w: usize,
        c: usize,
        window: (usize, usize),
        stride: (usize, usize),
        padding: Padding,
    ) -> Result<Self> {
        let mut s = PoolShape {
            n,
            h,
            w,
            c,
            ph: window.0,
            pw: window.1,
            stride_h: stride.0,
            stride_w: stride.1,
            pad_top: 0,
            pad_bottom: 0,
            pad_left: 0,
            pad_right: 0,
            options: PoolOptions::default(),
        };
        if [n, h, w, c, window.0, window.1, stride.0, stride.1].contains(&0) {
            return Err(s.invalid("a dimension, window or stride is zero"));
        }
        let ((t, b), (l, r)) = match padding {
            Padding::Explicit { top, bottom, left, right } => ((top, bottom), (left, right)),
            p => (pad_amounts(p, h, window.0, stride.0, 1), pad_amounts(p, w, window.1, stride.1, 1)),
        };
        (s.pad_top, s.pad_bottom, s.pad_left, s.pad_right) = (t, b, l, r);
        s.validate()?;
        Ok(s)
    }

    /// The same problem with pooling options (dilation, `ceil_mode`,
    /// `count_include_pad`); validated: every window must keep at least one
    /// tap inside the input.
    ///
    /// ```
    /// use convnet_kernels::conv::Padding;
    /// use convnet_kernels::pool::{avg_pool2d_forward, PoolOptions, PoolShape};
    /// // PyTorch AvgPool2d(2, stride=2, padding=1, count_include_pad=True) on a 2x2 image.
    /// let s = PoolShape::new(1, 2, 2, 1, (2, 2), (2, 2), Padding::Explicit { top: 1, bottom: 1, left: 1, right: 1 })?
    ///     .with_options(PoolOptions::default().count_include_pad(true))?;
    /// let mut y = [0.0; 4];
    /// avg_pool2d_forward(&s, &[4.0, 8.0, 12.0, 16.0], &mut y)?;
    /// assert_eq!(y, [1.0, 2.0, 3.0, 4.0]); // each window holds one pixel and three zeros
    /// # Ok::<(), convnet_kernels::Error>(())
    /// ```
    pub fn with_options(mut self, options: PoolOptions) -> Result<Self> {
        self.options = options;
        self.validate()?;
        Ok(self)
    }

    fn invalid(&self, reason: &str) -> Error {
        Error::InvalidShape { shape: self.to_string(), reason: reason.to_string() }
    }

    /// Checks the window fits the padded input, padding is smaller than the
    /// window (so no window is all padding) and sizes fit in `usize`.
    pub fn validate(&self) -> Result<()> {
        if [self.n, self.h, self.w, self.c, self.ph, self.pw, self.stride_h, self.stride_w].contains(&0) {
            return Err(self.invalid("a dimension, window or stride is zero"));
        }
        [self.n, self.h, self.w, self.c, 4]
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| self.invalid("size overflows"))?;
        if self.h * self.w * self.c > u32::MAX as usize {
            return Err(self.invalid("an image has more than u32::MAX elements"));
        }
        if !self.options.is_default() {
            if self.options.dilation.0 == 0 || self.options.dilation.1 == 0 {
                return Err(self.invalid("a dilation is zero"));
            }
            pool_options::check_windows(self).map_err(|r| self.invalid(&r))?;
        } else {
            let ph = self.pad_top.checked_add(self.pad_bottom).and_then(|p| self.h.checked_add(p));
            let pw = self.pad_left.checked_add(self.pad_right).and_then(|p| self.w.checked_add(p));
            match (ph, pw) {
                (Some(ph), Some(pw)) if self.ph <= ph && self.pw <= pw => {}
                _ => return Err(self.invalid("window larger than the padded input")),
            }
            if self.pad_top.max(self.pad_bottom) >= self.ph || self.pad_left.max(self.pad_right) >= self.pw {
                return Err(self.invalid("padding as large as the window"));
            }
        }
        [self.n, self.out_h(), self.out_w(), self.c, 4]
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| self.invalid("output size overflows"))?;
        Ok(())
    }

    /// Output height.
    pub fn out_h(&self) -> usize {
        if !self.options.is_default() {
            return pool_options::axes(self).0.out_len().unwrap_or(0);
        }
        (self.h + self.pad_top + self.pad_bottom - self.ph) / self.stride_h + 1
    }

    /// Output width.
    pub fn out_w(&self) -> usize {
        if !self.options.is_default() {
            return pool_options::axes(self).1.out_len().unwrap_or(0);
        }
        (self.w + self.pad_left + self.pad_right - self.pw) / self.stride_w + 1
    }

    /// Elements of the input.
    pub fn input_len(&self) -> usize {
        self.n * self.h * self.w * self.c
    }

    /// Elements of the output.
    pub fn output_len(&self) -> usize {
        self.n * self.out_h() * self.out_w() * self.c
    }

    /// The input rows (or columns) window `o` covers along one axis.
    fn span(o: usize, stride: usize, pad: usize, window: usize, size: usize) -> std::ops::Range<usize> {
        let start = (o * stride).saturating_sub(pad);
        let end = (o * stride + window).saturating_sub(pad).min(size);
        start..end
    }

    /// The input rows and columns output pixel `(oy, ox)` covers.
    fn window(&self, oy: usize, ox: usize) -> (std::ops::Range<usize>, std::ops::Range<usize>) {
        (
            PoolShape::span(oy, self.stride_h, self.pad_top, self.ph, self.h),
            PoolShape::span(ox, self.stride_w, self.pad_left, self.pw, self.w),
        )
    }
}

impl std::fmt::Display for PoolShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pool {}x{}x{}x{} window {}x{} stride {}x{} pad (t{} b{} l{} r{})",
            self.n,
            self.h,
            self.w,
            self.c,
            self.ph,
            self.pw,
            self.stride_h,
            self.stride_w,
            self.pad_top,
            self.pad_bottom,
            self.pad_left,
            self.pad_right
        )?;
        let o = self.options;
        if !o.is_default() {
            write!(f, " dilation {}x{}", o.dilation.0, o.dilation.1)?;
            if o.ceil_mode {
                f.write_str(" ceil_mode")?;
            }
            if o.count_include_pad {
                f.write_str(" count_include_pad")?;
            }
        }
        Ok(())
    }
}

fn check_max_forward(s: &PoolShape, input: &[f32], output: &[f32], argmax: &[u32]) -> Result<()> {
    s.validate()?;
    check_len("input", input.len(), s.input_len(), s)?;
    check_len("output", output.len(), s.output_len(), s)?;
    check_len("argmax", argmax.len(), s.output_len(), s)
}

fn check_max_backward(s: &PoolShape, grad_output: &[f32], argmax: &[u32], grad_input: &[f32]) -> Result<()> {
    s.validate()?;
    check_len("grad_output", grad_output.len(), s.output_len(), s)?;
    check_len("argmax", argmax.len(), s.output_len(), s)?;
    check_len("grad_input", grad_input.len(), s.input_len(), s)
}

fn check_avg(s: &PoolShape, input: &[f32], output: &[f32], names: (&'static str, &'static str)) -> Result<()> {
    s.validate()?;
    check_len(names.0, input.len(), s.input_len(), s)?;
    check_len(names.1, output.len(), s.output_len(), s)
}

fn check_global(n: usize, hw: usize, c: usize, big: (&'static str, usize), small: (&'static str, usize)) -> Result<()> {
    let shape = format!("global average pool {n}x{hw}x{c}");
    if hw == 0 || c == 0 {
        return Err(Error::InvalidShape { shape, reason: "zero spatial size or channels".into() });
    }
    let Some(len) = n.checked_mul(hw).and_then(|x| x.checked_mul(c)).filter(|x| x.checked_mul(4).is_some()) else {
        return Err(Error::InvalidShape { shape, reason: "size overflows".into() });
    };
    check_len(big.0, big.1, len, &shape)?;
    check_len(small.0, small.1, n * c, &shape)
}

/// The first argmax that is not an element of its own output's window
/// (right channel included), as [`max_pool2d_forward`] never writes.
fn first_bad_argmax(s: &PoolShape, argmax: &[u32]) -> Option<u32> {
    let (ow, c, out_item) = (s.out_w(), s.c, s.out_h() * s.out_w() * s.c);
    argmax.iter().enumerate().find_map(|(o, &a)| {
        let (p, ch) = (o % out_item / c, o % c);
        let (ys, xs) = s.window(p / ow, p % ow);
        let (pix, a_ch) = (a as usize / c, a as usize % c);
        let inside = a_ch == ch && ys.contains(&(pix / s.w)) && xs.contains(&(pix % s.w));
        (!inside).then_some(a)
    })
}

fn argmax_outside(s: &PoolShape, a: u32) -> Error {
    Error::InvalidShape { shape: s.to_string(), reason: format!("argmax index {a} outside its window") }
}

// ---------------------------------------------------------------------------
// Per-item bodies: one batch item each, written so the channel loops vectorise
// (branch-free selects over contiguous rows), instantiated per SIMD level.

/// Max pooling of one batch item. `x` is `[h, w, c]`, `y` and `am` are `[oh, ow, c]`.
#[inline(always)]
fn max_forward_item(s: &PoolShape, x: &[f32], y: &mut [f32], am: &mut [u32]) {
    let (ow, c) = (s.out_w(), s.c);
    for (p, (yrow, arow)) in y.chunks_exact_mut(c).zip(am.chunks_exact_mut(c)).enumerate() {
        let (ys, xs) = s.window(p / ow, p % ow);
        // The first tap seeds the running maximum, the rest replace it only when strictly greater.
        let first = (ys.start * s.w + xs.start) * c;
        yrow.copy_from_slice(&x[first..][..c]);
        for (ch, a) in arow.iter_mut().enumerate() {
            *a = (first + ch) as u32;
        }
        for iy in ys {
            for ix in xs.clone() {
                let base = (iy * s.w + ix) * c;
                if base == first {
                    continue;
                }
                let xrow = &x[base..][..c];
                for (ch, ((b, a), &v)) in yrow.iter_mut().zip(arow.iter_mut()).zip(xrow).enumerate() {
                    let greater = v > *b;
                    *b = if greater { v } else { *b };
                    *a = if greater { (base + ch) as u32 } else { *a };
                }
            }
        }
    }
}

/// Max pooling backward for one batch item (overwrites `gx`), vectorised over
/// channels: each output pixel's gradient row is added to every tap of its
/// window through a select on the stored argmax (`am == index ? g : -0.0`).
/// `-0.0` is the exact identity of IEEE addition, so every input element sees
/// the same additions in the same (output) order as the scalar scatter and
/// the result is bit-identical to it. Argmax values are checked to lie in their
/// window by the caller through the returned match count.
///
/// Returns how many (output element, tap) pairs matched: every output element
/// whose argmax lies in its own window matches exactly once (the taps of a
/// window are distinct elements), so the count equals the output size exactly
/// when every argmax is valid.
#[inline(always)]
fn max_backward_item(s: &PoolShape, gy: &[f32], am: &[u32], gx: &mut [f32]) -> usize {
    let (ow, c) = (s.out_w(), s.c);
    let mut matched = 0usize;
    gx.fill(0.0);
    for (p, (grow, arow)) in gy.chunks_exact(c).zip(am.chunks_exact(c)).enumerate() {
        let (ys, xs) = s.window(p / ow, p % ow);
        for iy in ys {
            for ix in xs.clone() {
                let base = (iy * s.w + ix) * c;
                let gxrow = &mut gx[base..][..c];
                for (ch, ((d, &g), &a)) in gxrow.iter_mut().zip(grow).zip(arow).enumerate() {
                    let hit = a == (base + ch) as u32;
                    *d += if hit { g } else { -0.0 };
                    matched += hit as usize;
                }
            }
        }
    }
    matched
}

/// Average pooling of one batch item.
#[inline(always)]
fn avg_forward_item(s: &PoolShape, x: &[f32], y: &mut [f32]) {
    let (ow, c) = (s.out_w(), s.c);
    for (p, yrow) in y.chunks_exact_mut(c).enumerate() {
        let (ys, xs) = s.window(p / ow, p % ow);
        let count = (ys.len() * xs.len()) as f32;
        yrow.fill(0.0);
        for iy in ys {
            for ix in xs.clone() {
                let xrow = &x[(iy * s.w + ix) * c..][..c];
                yrow.iter_mut().zip(xrow).for_each(|(o, &v)| *o += v);
            }
        }
        yrow.iter_mut().for_each(|o| *o /= count);
    }
}

/// Average pooling backward for one batch item (overwrites `gx`).
#[inline(always)]
fn avg_backward_item(s: &PoolShape, gy: &[f32], gx: &mut [f32]) {
    let (ow, c) = (s.out_w(), s.c);
    gx.fill(0.0);
    for (p, grow) in gy.chunks_exact(c).enumerate() {
        let (ys, xs) = s.window(p / ow, p % ow);
        let inv = 1.0 / (ys.len() * xs.len()) as f32;
        for iy in ys {
            for ix in xs.clone() {
                let gxrow = &mut gx[(iy * s.w + ix) * c..][..c];
                gxrow.iter_mut().zip(grow).for_each(|(d, &g)| *d += g * inv);
            }
        }
    }
}

/// Global average of one item `[hw, c]` into `[c]`.
#[inline(always)]
fn global_forward_item(c: usize, x: &[f32], y: &mut [f32]) {
    let hw = x.len() / c;
    y.fill(0.0);
    for px in x.chunks_exact(c) {
        y.iter_mut().zip(px).for_each(|(o, &v)| *o += v);
    }
    y.iter_mut().for_each(|o| *o /= hw as f32);
}

/// Global average backward for one item (overwrites `gx`).
#[inline(always)]
fn global_backward_item(c: usize, gy: &[f32], gx: &mut [f32]) {
    let inv = 1.0 / (gx.len() / c) as f32;
    for px in gx.chunks_exact_mut(c) {
        px.iter_mut().zip(gy).for_each(|(d, &g)| *d = g * inv);
    }
}

crate::arch::multiversion!(fn max_forward_item_at(s: &PoolShape, x: &[f32], y: &mut [f32], am: &mut [u32]) => max_forward_item);
crate::arch::multiversion!(fn max_backward_item_at(s: &PoolShape, gy: &[f32], am: &[u32], gx: &mut [f32]) -> usize => max_backward_item);
crate::arch::multiversion!(fn avg_forward_item_at(s: &PoolShape, x: &[f32], y: &mut [f32]) => avg_forward_item);
crate::arch::multiversion!(fn avg_backward_item_at(s: &PoolShape, gy: &[f32], gx: &mut [f32]) => avg_backward_item);
crate::arch::multiversion!(fn global_forward_item_at(c: usize, x: &[f32], y: &mut [f32]) => global_forward_item);
crate::arch::multiversion!(fn global_backward_item_at(c: usize, gy: &[f32], gx: &mut [f32]) => global_backward_item);

// ---------------------------------------------------------------------------
// Public entry points.

/// Max pooling. `argmax[i]` receives, for output element `i`, the index of the
/// winning element within its batch item (`(y * w + x) * c + ch`); ties go to
/// the first element in row-major window order (see the module doc).
///
/// ```
/// use convnet_kernels::conv::Padding;
/// use convnet_kernels::pool::{max_pool2d_forward, PoolShape};
/// let s = PoolShape::new(1, 2, 2, 1, (2, 2), (2, 2), Padding::Valid)?;
/// let (mut y, mut am) = ([0.0], [0]);
/// max_pool2d_forward(&s, &[1.0, 3.0, 3.0, 2.0], &mut y, &mut am)?;
/// assert_eq!((y, am), ([3.0], [1])); // the first of the two 3s
/// # Ok::<(), convnet_kernels::Error>(())
/// ```
pub fn max_pool2d_forward(s: &PoolShape, input: &[f32], output: &mut [f32], argmax: &mut [u32]) -> Result<()> {
    check_max_forward(s, input, output, argmax)?;
    if !s.options.is_default() {
        return pool_options::max_forward(s, input, output, argmax);
    }
    let level = crate::arch::Token::current()?;
    let (item, out_item) = (s.h * s.w * s.c, s.out_h() * s.out_w() * s.c);
    output.par_chunks_mut(out_item).zip(argmax.par_chunks_mut(out_item)).enumerate().for_each(|(n, (y, am))| {
        max_forward_item_at(level, s, &input[n * item..][..item], y, am);
    });
    Ok(())
}

/// Max pooling backward: routes each output gradient to its argmax (overwrites
/// `grad_input`). Overlapping windows that share a winner accumulate, in output
/// order. An argmax that is not an element of its own window (channel
/// included), as [`max_pool2d_forward`] never writes, is an error.
pub fn max_pool2d_backward(s: &PoolShape, grad_output: &[f32], argmax: &[u32], grad_input: &mut [f32]) -> Result<()> {
    check_max_backward(s, grad_output, argmax, grad_input)?;
    if !s.options.is_default() {
        return pool_options::max_backward(s, grad_output, argmax, grad_input);
    }
    let level = crate::arch::Token::current()?;
    let (item, out_item) = (s.h * s.w * s.c, s.out_h() * s.out_w() * s.c);
    let all_matched = grad_input.par_chunks_mut(item).enumerate().all(|(n, gx)| {
        let range = n * out_item..(n + 1) * out_item;
        max_backward_item_at(level, s, &grad_output[range.clone()], &argmax[range], gx) == out_item
    });
    if all_matched {
        return Ok(());
    }
    // Slow path, errors only: find the first offender for the message.
    Err(argmax_outside(s, first_bad_argmax(s, argmax).unwrap_or(u32::MAX)))
}

/// Average pooling; padded positions are not counted (Keras semantics).
pub fn avg_pool2d_forward(s: &PoolShape, input: &[f32], output: &mut [f32]) -> Result<()> {
    check_avg(s, input, output, ("input", "output"))?;
    if !s.options.is_default() {
        return pool_options::avg_forward(s, input, output);
    }
    let level = crate::arch::Token::current()?;
    let (item, out_item) = (s.h * s.w * s.c, s.out_h() * s.out_w() * s.c);
    output.par_chunks_mut(out_item).enumerate().for_each(|(n, y)| {
        avg_forward_item_at(level, s, &input[n * item..][..item], y);
    });
    Ok(())
}

/// Average pooling backward (overwrites `grad_input`).
pub fn avg_pool2d_backward(s: &PoolShape, grad_output: &[f32], grad_input: &mut [f32]) -> Result<()> {
    check_avg(s, grad_input, grad_output, ("grad_input", "grad_output"))?;
    if !s.options.is_default() {
        return pool_options::avg_backward(s, grad_output, grad_input);
    }
    let level = crate::arch::Token::current()?;
    let (item, out_item) = (s.h * s.w * s.c, s.out_h() * s.out_w() * s.c);
    grad_input.par_chunks_mut(item).enumerate().for_each(|(n, gx)| {
        avg_backward_item_at(level, s, &grad_output[n * out_item..][..out_item], gx);
    });
    Ok(())
}

/// Global average pooling: `[n, h, w, c] -> [n, c]`.
pub fn global_avg_pool_forward(n: usize, hw: usize, c: usize, input: &[f32], output: &mut [f32]) -> Result<()> {
    check_global(n, hw, c, ("input", input.len()), ("output", output.len()))?;
    let level = crate::arch::Token::current()?;
    output.par_chunks_mut(c).zip(input.par_chunks(hw * c)).for_each(|(y, x)| global_forward_item_at(level, c, x, y));
    Ok(())
}

/// Global average pooling backward (overwrites `grad_input`).
pub fn global_avg_pool_backward(
    n: usize,
    hw: usize,
    c: usize,
    grad_output: &[f32],
    grad_input: &mut [f32],
) -> Result<()> {
    check_global(n, hw, c, ("grad_input", grad_input.len()), ("grad_output", grad_output.len()))?;
    let level = crate::arch::Token::current()?;
    grad_input
        .par_chunks_mut(hw * c)
        .zip(grad_output.par_chunks(c))
        .for_each(|(gx, gy)| global_backward_item_at(level, c, gy, gx));
    Ok(())
}

/// The scalar pooling loops: one thread, no SIMD dispatch, obviously right.
/// The oracle the fast kernels are tested against (bit for bit); same
/// signatures, same checks and same results as the functions above.
pub mod reference {
    use super::*;

    /// Scalar [`super::max_pool2d_forward`].
    pub fn max_pool2d_forward(s: &PoolShape, input: &[f32], output: &mut [f32], argmax: &mut [u32]) -> Result<()> {
        check_max_forward(s, input, output, argmax)?;
        if !s.options.is_default() {
            return pool_options::reference::max_forward(s, input, output, argmax);
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

    /// Scalar [`super::max_pool2d_backward`].
    pub fn max_pool2d_backward(
        s: &PoolShape,
        grad_output: &[f32],
        argmax: &[u32],
        grad_input: &mut [f32],
    ) -> Result<()> {
        check_max_backward(s, grad_output, argmax, grad_input)?;
        if !s.options.is_default() {
            return pool_options::reference::max_backward(s, grad_output, argmax, grad_input);
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

    /// Scalar [`super::avg_pool2d_forward`].
    pub fn avg_pool2d_forward(s: &PoolShape, input: &[f32], output: &mut [f32]) -> Result<()> {
        check_avg(s, input, output, ("input", "output"))?;
        if !s.options.is_default() {
            return pool_options::reference::avg_forward(s, input, output);
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

    /// Scalar [`super::avg_pool2d_backward`].
    pub fn avg_pool2d_backward(s: &PoolShape, grad_output: &[f32], grad_input: &mut [f32]) -> Result<()> {
        check_avg(s, grad_input, grad_output, ("grad_input", "grad_output"))?;
        if !s.options.is_default() {
            return pool_options::reference::avg_backward(s, grad_output, grad_input);
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

    /// Scalar [`super::global_avg_pool_forward`].
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

    /// Scalar [`super::global_avg_pool_backward`].
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simd::SimdLevel;

    #[test]
    fn ties_go_to_the_first_in_row_major_order() {
        let s = PoolShape::new(1, 2, 2, 2, (2, 2), (2, 2), Padding::Valid).unwrap();
        // channel 0: all equal -> index 0; channel 1: max 5 at (0,1) and (1,0) -> (0,1).
        let x = [1.0, 0.0, 1.0, 5.0, 1.0, 5.0, 1.0, 4.0];
        for level in SimdLevel::available() {
            let (mut y, mut am) = ([f32::NAN; 2], [u32::MAX; 2]);
            max_forward_item_at(crate::arch::Token::new(level).unwrap(), &s, &x, &mut y, &mut am);
            assert_eq!((y, am), ([1.0, 5.0], [0, 3]), "{level:?}");
        }
    }

    #[test]
    fn global_pool_rejects_zero_and_overflow() {
        assert!(global_avg_pool_forward(1, 0, 1, &[], &mut [0.0]).is_err());
        assert!(global_avg_pool_forward(usize::MAX, 2, 2, &[], &mut []).is_err());
        assert!(global_avg_pool_backward(1, 4, 1, &[1.0], &mut [0.0; 3]).is_err());
    }
}
