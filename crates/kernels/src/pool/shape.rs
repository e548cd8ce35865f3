//! [`PoolShape`]: one pooling problem over NHWC `[n, h, w, c]`, with all of
//! its size arithmetic (output size, padding from Keras's `valid`/`same`,
//! overflow checks) and the argument checks every entry point runs first.

use super::options::{self, PoolOptions};
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
            options::check_windows(self).map_err(|r| self.invalid(&r))?;
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
            return options::axes(self).0.out_len().unwrap_or(0);
        }
        (self.h + self.pad_top + self.pad_bottom - self.ph) / self.stride_h + 1
    }

    /// Output width.
    pub fn out_w(&self) -> usize {
        if !self.options.is_default() {
            return options::axes(self).1.out_len().unwrap_or(0);
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
    pub(super) fn span(o: usize, stride: usize, pad: usize, window: usize, size: usize) -> std::ops::Range<usize> {
        let start = (o * stride).saturating_sub(pad);
        let end = (o * stride + window).saturating_sub(pad).min(size);
        start..end
    }

    /// The input rows and columns output pixel `(oy, ox)` covers.
    pub(super) fn window(&self, oy: usize, ox: usize) -> (std::ops::Range<usize>, std::ops::Range<usize>) {
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

/// Validates `s` and the slice lengths of a max-pooling forward call.
pub(super) fn check_max_forward(s: &PoolShape, input: &[f32], output: &[f32], argmax: &[u32]) -> Result<()> {
    s.validate()?;
    check_len("input", input.len(), s.input_len(), s)?;
    check_len("output", output.len(), s.output_len(), s)?;
    check_len("argmax", argmax.len(), s.output_len(), s)
}

/// Validates `s` and the slice lengths of a max-pooling backward call.
pub(super) fn check_max_backward(s: &PoolShape, grad_output: &[f32], argmax: &[u32], grad_input: &[f32]) -> Result<()> {
    s.validate()?;
    check_len("grad_output", grad_output.len(), s.output_len(), s)?;
    check_len("argmax", argmax.len(), s.output_len(), s)?;
    check_len("grad_input", grad_input.len(), s.input_len(), s)
}

/// Validates `s` and the lengths of an average-pooling call's input-sized
/// and output-sized slices (named for the message).
pub(super) fn check_avg(
    s: &PoolShape,
    input: &[f32],
    output: &[f32],
    names: (&'static str, &'static str),
) -> Result<()> {
    s.validate()?;
    check_len(names.0, input.len(), s.input_len(), s)?;
    check_len(names.1, output.len(), s.output_len(), s)
}
