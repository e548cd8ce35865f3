//! Pooling over NHWC tensors: max (with argmax for backward), average
//! (padding excluded from the count, as Keras/TensorFlow do) and global average.

use crate::conv::{pad_amounts, Padding};
use crate::error::check_len;
use crate::{Error, Result};

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

    fn invalid(&self, reason: &str) -> Error {
        Error::InvalidShape { shape: self.to_string(), reason: reason.to_string() }
    }

    /// Checks the window fits the padded input, padding is smaller than the
    /// window (so no window is all padding) and sizes fit in `usize`.
    pub fn validate(&self) -> Result<()> {
        if [self.n, self.h, self.w, self.c, self.ph, self.pw, self.stride_h, self.stride_w].contains(&0) {
            return Err(self.invalid("a dimension, window or stride is zero"));
        }
        let ph = self.h.checked_add(self.pad_top + self.pad_bottom);
        let pw = self.w.checked_add(self.pad_left + self.pad_right);
        match (ph, pw) {
            (Some(ph), Some(pw)) if self.ph <= ph && self.pw <= pw => {}
            _ => return Err(self.invalid("window larger than the padded input")),
        }
        if self.pad_top.max(self.pad_bottom) >= self.ph || self.pad_left.max(self.pad_right) >= self.pw {
            return Err(self.invalid("padding as large as the window"));
        }
        [self.n, self.h, self.w, self.c, 4]
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| self.invalid("size overflows"))?;
        if self.h * self.w * self.c > u32::MAX as usize {
            return Err(self.invalid("an image has more than u32::MAX elements"));
        }
        Ok(())
    }

    /// Output height.
    pub fn out_h(&self) -> usize {
        (self.h + self.pad_top + self.pad_bottom - self.ph) / self.stride_h + 1
    }

    /// Output width.
    pub fn out_w(&self) -> usize {
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
        )
    }
}

/// Max pooling. `argmax[i]` receives, for output element `i`, the index of the
/// winning element within its batch item (`(y * w + x) * c + ch`); ties go to
/// the first element in row-major window order.
pub fn max_pool2d_forward(s: &PoolShape, input: &[f32], output: &mut [f32], argmax: &mut [u32]) -> Result<()> {
    s.validate()?;
    check_len("input", input.len(), s.input_len(), s)?;
    check_len("output", output.len(), s.output_len(), s)?;
    check_len("argmax", argmax.len(), s.output_len(), s)?;
    let (oh, ow, item) = (s.out_h(), s.out_w(), s.h * s.w * s.c);
    for n in 0..s.n {
        let x = &input[n * item..][..item];
        for oy in 0..oh {
            for ox in 0..ow {
                let o = ((n * oh + oy) * ow + ox) * s.c;
                for ch in 0..s.c {
                    let mut best = f32::NEG_INFINITY;
                    let mut best_i = u32::MAX;
                    for iy in PoolShape::span(oy, s.stride_h, s.pad_top, s.ph, s.h) {
                        for ix in PoolShape::span(ox, s.stride_w, s.pad_left, s.pw, s.w) {
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

/// Max pooling backward: routes each output gradient to its argmax (overwrites `grad_input`).
pub fn max_pool2d_backward(s: &PoolShape, grad_output: &[f32], argmax: &[u32], grad_input: &mut [f32]) -> Result<()> {
    s.validate()?;
    check_len("grad_output", grad_output.len(), s.output_len(), s)?;
    check_len("argmax", argmax.len(), s.output_len(), s)?;
    check_len("grad_input", grad_input.len(), s.input_len(), s)?;
    let (item, out_item) = (s.h * s.w * s.c, s.out_h() * s.out_w() * s.c);
    grad_input.fill(0.0);
    for n in 0..s.n {
        let gi = &mut grad_input[n * item..][..item];
        for (&g, &a) in grad_output[n * out_item..][..out_item].iter().zip(&argmax[n * out_item..][..out_item]) {
            let slot = gi.get_mut(a as usize).ok_or_else(|| Error::InvalidShape {
                shape: s.to_string(),
                reason: format!("argmax index {a} outside the image"),
            })?;
            *slot += g;
        }
    }
    Ok(())
}

/// Average pooling; padded positions are not counted (Keras semantics).
pub fn avg_pool2d_forward(s: &PoolShape, input: &[f32], output: &mut [f32]) -> Result<()> {
    s.validate()?;
    check_len("input", input.len(), s.input_len(), s)?;
    check_len("output", output.len(), s.output_len(), s)?;
    let (oh, ow) = (s.out_h(), s.out_w());
    for n in 0..s.n {
        for oy in 0..oh {
            for ox in 0..ow {
                let o = &mut output[((n * oh + oy) * ow + ox) * s.c..][..s.c];
                o.fill(0.0);
                let (ys, xs) = (
                    PoolShape::span(oy, s.stride_h, s.pad_top, s.ph, s.h),
                    PoolShape::span(ox, s.stride_w, s.pad_left, s.pw, s.w),
                );
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

/// Average pooling backward (overwrites `grad_input`).
pub fn avg_pool2d_backward(s: &PoolShape, grad_output: &[f32], grad_input: &mut [f32]) -> Result<()> {
    s.validate()?;
    check_len("grad_output", grad_output.len(), s.output_len(), s)?;
    check_len("grad_input", grad_input.len(), s.input_len(), s)?;
    let (oh, ow) = (s.out_h(), s.out_w());
    grad_input.fill(0.0);
    for n in 0..s.n {
        for oy in 0..oh {
            for ox in 0..ow {
                let g = &grad_output[((n * oh + oy) * ow + ox) * s.c..][..s.c];
                let (ys, xs) = (
                    PoolShape::span(oy, s.stride_h, s.pad_top, s.ph, s.h),
                    PoolShape::span(ox, s.stride_w, s.pad_left, s.pw, s.w),
                );
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

/// Global average pooling: `[n, h, w, c] -> [n, c]`.
pub fn global_avg_pool_forward(n: usize, hw: usize, c: usize, input: &[f32], output: &mut [f32]) -> Result<()> {
    let shape = format!("global average pool {n}x{hw}x{c}");
    if hw == 0 || c == 0 {
        return Err(Error::InvalidShape { shape, reason: "zero spatial size or channels".into() });
    }
    check_len("input", input.len(), n * hw * c, &shape)?;
    check_len("output", output.len(), n * c, &shape)?;
    for (x, o) in input.chunks_exact(hw * c).zip(output.chunks_exact_mut(c)) {
        o.fill(0.0);
        for px in x.chunks_exact(c) {
            o.iter_mut().zip(px).for_each(|(o, &x)| *o += x);
        }
        o.iter_mut().for_each(|o| *o /= hw as f32);
    }
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
    let shape = format!("global average pool {n}x{hw}x{c}");
    if hw == 0 || c == 0 {
        return Err(Error::InvalidShape { shape, reason: "zero spatial size or channels".into() });
    }
    check_len("grad_output", grad_output.len(), n * c, &shape)?;
    check_len("grad_input", grad_input.len(), n * hw * c, &shape)?;
    let inv = 1.0 / hw as f32;
    for (gi, g) in grad_input.chunks_exact_mut(hw * c).zip(grad_output.chunks_exact(c)) {
        for px in gi.chunks_exact_mut(c) {
            px.iter_mut().zip(g).for_each(|(d, &g)| *d = g * inv);
        }
    }
    Ok(())
}
