//! [`ConvShape`]: the one place that owns convolution size arithmetic.

use crate::{Error, Result};
use std::fmt;

/// Keras-style padding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Padding {
    /// No padding: the window stays inside the input.
    Valid,
    /// Output size `ceil(in / stride)`; the total padding is split with the
    /// extra row/column at the bottom/right, exactly as TensorFlow does.
    Same,
    /// Explicit padding per side.
    Explicit {
        /// Rows of zeros above.
        top: usize,
        /// Rows of zeros below.
        bottom: usize,
        /// Columns of zeros to the left.
        left: usize,
        /// Columns of zeros to the right.
        right: usize,
    },
}

/// Padding `(before, after)` along one axis for a Keras padding mode.
pub fn pad_amounts(padding: Padding, input: usize, window: usize, stride: usize, dilation: usize) -> (usize, usize) {
    match padding {
        Padding::Valid => (0, 0),
        Padding::Same => {
            let effective = (window.saturating_sub(1)).saturating_mul(dilation).saturating_add(1);
            let out = input.div_ceil(stride.max(1));
            let needed = (out.saturating_sub(1)).saturating_mul(stride).saturating_add(effective).saturating_sub(input);
            (needed / 2, needed - needed / 2)
        }
        Padding::Explicit { .. } => unreachable!("explicit padding is stored as given"),
    }
}

/// A 2-D convolution problem: NHWC input `[n, h, w, c_in]`, HWIO filter
/// `[kh, kw, c_in / groups, c_out]`, NHWC output `[n, out_h, out_w, c_out]`.
///
/// Padding is stored per side, so Keras `same` with stride 2 (extra row at the
/// bottom) is exact.
///
/// With `groups > 1` (grouped convolution, PyTorch's `groups=`, Keras's
/// `Conv2D(groups=)`), input channel `ci` and output channel `co` are
/// connected only when `ci / (c_in / groups) == co / (c_out / groups)`, and
/// the filter holds, for each output channel, the weights of its group's
/// `c_in / groups` inputs: `[kh, kw, c_in / groups, c_out]`, as Keras stores
/// grouped kernels. `groups == c_in` is a depthwise convolution with channel
/// multiplier `c_out / c_in`; its filter `[kh, kw, 1, c_in * multiplier]`
/// is Keras's `depthwise_kernel` `[kh, kw, c_in, multiplier]` read flat.
///
/// Build one with [`ConvShape::nhwc`] (named parts, validated by
/// [`build`](super::ConvShapeBuilder::build)), or [`ConvShape::new`] plus the
/// `with_*` setters.
///
/// ```
/// use convnet_kernels::conv::{ConvShape, Padding};
/// // The chapter's first layer: 64 images of 28x28x1, 32 filters of 3x3.
/// let s = ConvShape::nhwc(64, 28, 28, 1).filter(3, 3, 32).build()?;
/// assert_eq!((s.out_h(), s.out_w()), (26, 26));
/// assert_eq!(s.flops(), 2 * 64 * 26 * 26 * 32 * 9);
/// let same = ConvShape::nhwc(1, 5, 5, 1).filter(3, 3, 1).stride(2, 2).padding(Padding::Same).build()?;
/// assert_eq!((same.out_h(), same.out_w()), (3, 3));
/// assert!(ConvShape::nhwc(1, 2, 2, 1).filter(3, 3, 1).build().is_err()); // window larger than input
/// // The positional constructor: n, h, w, c_in, c_out, kh, kw.
/// assert_eq!(ConvShape::new(64, 28, 28, 1, 32, 3, 3)?, s);
/// # Ok::<(), convnet_kernels::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConvShape {
    /// Batch size.
    pub n: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Input channels.
    pub c_in: usize,
    /// Output channels (filters).
    pub c_out: usize,
    /// Window height.
    pub kh: usize,
    /// Window width.
    pub kw: usize,
    /// Vertical stride.
    pub stride_h: usize,
    /// Horizontal stride.
    pub stride_w: usize,
    /// Vertical dilation (1 = none).
    pub dilation_h: usize,
    /// Horizontal dilation (1 = none).
    pub dilation_w: usize,
    /// Zero rows above the input.
    pub pad_top: usize,
    /// Zero rows below the input.
    pub pad_bottom: usize,
    /// Zero columns left of the input.
    pub pad_left: usize,
    /// Zero columns right of the input.
    pub pad_right: usize,
    /// Channel groups (1 = an ordinary dense convolution); divides `c_in`
    /// and `c_out`.
    pub groups: usize,
}

impl ConvShape {
    /// A stride-1, undilated, `valid` convolution; validated. The arguments
    /// are positional (`n, h, w, c_in, c_out, kh, kw`: note `c_out` before
    /// the window, unlike the HWIO filter); [`ConvShape::nhwc`] names them
    /// and takes stride, dilation, padding and groups in any order.
    pub fn new(n: usize, h: usize, w: usize, c_in: usize, c_out: usize, kh: usize, kw: usize) -> Result<Self> {
        let s = ConvShape {
            n,
            h,
            w,
            c_in,
            c_out,
            kh,
            kw,
            stride_h: 1,
            stride_w: 1,
            dilation_h: 1,
            dilation_w: 1,
            pad_top: 0,
            pad_bottom: 0,
            pad_left: 0,
            pad_right: 0,
            groups: 1,
        };
        s.validate()?;
        Ok(s)
    }

    /// Sets the number of channel groups; validated (`groups` must divide
    /// both channel counts).
    ///
    /// ```
    /// use convnet_kernels::conv::ConvShape;
    /// let g = ConvShape::new(8, 56, 56, 128, 128, 3, 3)?.with_groups(4)?;
    /// assert_eq!(g.filter_len(), 3 * 3 * 32 * 128);
    /// assert!(g.with_groups(3).is_err()); // 3 does not divide 128
    /// let dw = ConvShape::new(8, 112, 112, 32, 64, 3, 3)?.with_groups(32)?;
    /// assert_eq!(dw.depthwise_multiplier(), Some(2));
    /// # Ok::<(), convnet_kernels::Error>(())
    /// ```
    pub fn with_groups(mut self, groups: usize) -> Result<Self> {
        self.groups = groups;
        self.validate()?;
        Ok(self)
    }

    /// Input channels per group, `c_in / groups`.
    pub fn c_in_per_group(&self) -> usize {
        self.c_in / self.groups
    }

    /// Output channels per group, `c_out / groups`.
    pub fn c_out_per_group(&self) -> usize {
        self.c_out / self.groups
    }

    /// `Some(c_out / c_in)` when the shape is depthwise (one input channel
    /// per group, `groups == c_in`), else `None`.
    pub fn depthwise_multiplier(&self) -> Option<usize> {
        (self.groups == self.c_in).then(|| self.c_out / self.c_in)
    }

    /// Sets the strides, then recomputes nothing else (call [`with_padding`]
    /// after it for `same`); validated.
    ///
    /// [`with_padding`]: ConvShape::with_padding
    pub fn with_stride(mut self, stride_h: usize, stride_w: usize) -> Result<Self> {
        self.stride_h = stride_h;
        self.stride_w = stride_w;
        self.validate()?;
        Ok(self)
    }

    /// Sets the dilation; validated. Call before [`ConvShape::with_padding`].
    pub fn with_dilation(mut self, dilation_h: usize, dilation_w: usize) -> Result<Self> {
        self.dilation_h = dilation_h;
        self.dilation_w = dilation_w;
        self.validate()?;
        Ok(self)
    }

    /// Sets the padding from a Keras mode using the current strides and
    /// dilation; validated.
    pub fn with_padding(mut self, padding: Padding) -> Result<Self> {
        let ((t, b), (l, r)) = match padding {
            Padding::Explicit { top, bottom, left, right } => ((top, bottom), (left, right)),
            p => (
                pad_amounts(p, self.h, self.kh, self.stride_h, self.dilation_h),
                pad_amounts(p, self.w, self.kw, self.stride_w, self.dilation_w),
            ),
        };
        self.pad_top = t;
        self.pad_bottom = b;
        self.pad_left = l;
        self.pad_right = r;
        self.validate()?;
        Ok(self)
    }

    /// The same problem with another batch size; validated.
    pub fn with_batch(mut self, n: usize) -> Result<Self> {
        self.n = n;
        self.validate()?;
        Ok(self)
    }

    fn invalid(&self, reason: impl Into<String>) -> Error {
        Error::InvalidShape { shape: self.to_string(), reason: reason.into() }
    }

    /// Checks every invariant the kernels rely on: no zero dimension, strides
    /// and dilations >= 1, the (dilated) window fits in the padded input, and
    /// every buffer size and the FLOP count fit in `usize`.
    pub fn validate(&self) -> Result<()> {
        let dims = [
            ("n", self.n),
            ("h", self.h),
            ("w", self.w),
            ("c_in", self.c_in),
            ("c_out", self.c_out),
            ("kh", self.kh),
            ("kw", self.kw),
            ("stride_h", self.stride_h),
            ("stride_w", self.stride_w),
            ("dilation_h", self.dilation_h),
            ("dilation_w", self.dilation_w),
            ("groups", self.groups),
        ];
        for (name, v) in dims {
            if v == 0 {
                return Err(self.invalid(format!("{name} is zero")));
            }
        }
        if !self.c_in.is_multiple_of(self.groups) || !self.c_out.is_multiple_of(self.groups) {
            return Err(self.invalid(format!(
                "groups {} must divide both c_in {} and c_out {}",
                self.groups, self.c_in, self.c_out
            )));
        }
        let eff_h = self.effective_kh().ok_or_else(|| self.invalid("dilated window overflows"))?;
        let eff_w = self.effective_kw().ok_or_else(|| self.invalid("dilated window overflows"))?;
        let ph = self.h.checked_add(self.pad_top).and_then(|x| x.checked_add(self.pad_bottom));
        let pw = self.w.checked_add(self.pad_left).and_then(|x| x.checked_add(self.pad_right));
        let (ph, pw) = match (ph, pw) {
            (Some(a), Some(b)) => (a, b),
            _ => return Err(self.invalid("padded size overflows")),
        };
        if eff_h > ph || eff_w > pw {
            return Err(self.invalid(format!("window {eff_h}x{eff_w} is larger than the padded input {ph}x{pw}")));
        }
        let sizes = [
            [self.n, self.h, self.w, self.c_in],
            [self.n, self.out_h(), self.out_w(), self.c_out],
            [self.kh, self.kw, self.c_in / self.groups, self.c_out],
        ];
        for s in sizes {
            s.iter()
                .try_fold(1usize, |a, &d| a.checked_mul(d))
                .and_then(|x| x.checked_mul(4)) // bytes
                .ok_or_else(|| self.invalid("buffer size overflows"))?;
        }
        [2, self.n, self.out_h(), self.out_w(), self.c_out, self.c_in / self.groups, self.kh, self.kw]
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| self.invalid("FLOP count overflows"))?;
        Ok(())
    }

    fn effective_kh(&self) -> Option<usize> {
        (self.kh - 1).checked_mul(self.dilation_h)?.checked_add(1)
    }

    fn effective_kw(&self) -> Option<usize> {
        (self.kw - 1).checked_mul(self.dilation_w)?.checked_add(1)
    }

    /// Output height: `(h + pad_top + pad_bottom - ((kh-1)*dh + 1)) / stride_h + 1`.
    pub fn out_h(&self) -> usize {
        (self.h + self.pad_top + self.pad_bottom - ((self.kh - 1) * self.dilation_h + 1)) / self.stride_h + 1
    }

    /// Output width.
    pub fn out_w(&self) -> usize {
        (self.w + self.pad_left + self.pad_right - ((self.kw - 1) * self.dilation_w + 1)) / self.stride_w + 1
    }

    /// Elements of the NHWC input.
    pub fn input_len(&self) -> usize {
        self.n * self.h * self.w * self.c_in
    }

    /// Elements of the HWIO filter, `kh * kw * (c_in / groups) * c_out`.
    pub fn filter_len(&self) -> usize {
        self.kh * self.kw * self.c_in_per_group() * self.c_out
    }

    /// Elements of the NHWC output.
    pub fn output_len(&self) -> usize {
        self.n * self.out_h() * self.out_w() * self.c_out
    }

    /// Direct-convolution FLOPs of the forward pass,
    /// `2*N*Ho*Wo*Cout*(Cin/groups)*Kh*Kw` (also the FLOPs of each backward
    /// pass). Used for GFLOP/s of every algorithm, so faster algorithms show
    /// as higher throughput.
    pub fn flops(&self) -> usize {
        2 * self.n * self.out_h() * self.out_w() * self.c_out * self.c_in_per_group() * self.kh * self.kw
    }

    /// True when the shape has no padding, stride or dilation.
    pub fn is_plain_valid(&self) -> bool {
        self.pad_top + self.pad_bottom + self.pad_left + self.pad_right == 0
            && self.stride_h == 1
            && self.stride_w == 1
            && self.dilation_h == 1
            && self.dilation_w == 1
    }
}

impl fmt::Display for ConvShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "conv {}x{}x{}x{} -> {} window {}x{} stride {}x{} dilation {}x{} pad (t{} b{} l{} r{})",
            self.n,
            self.h,
            self.w,
            self.c_in,
            self.c_out,
            self.kh,
            self.kw,
            self.stride_h,
            self.stride_w,
            self.dilation_h,
            self.dilation_w,
            self.pad_top,
            self.pad_bottom,
            self.pad_left,
            self.pad_right
        )?;
        if self.groups > 1 {
            write!(f, " groups {}", self.groups)?;
        }
        Ok(())
    }
}
