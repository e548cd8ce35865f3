//! [`ConvShapeBuilder`]: a [`ConvShape`] by named parts, in the order of the
//! tensors it describes (`nhwc` input, then the HWIO filter's window and
//! output channels), instead of seven positional `usize`s.

use super::shape::{pad_amounts, ConvShape, Padding};
use crate::{Error, Result};

/// Builds a [`ConvShape`] from named parts; started by [`ConvShape::nhwc`].
///
/// Each setter records its argument; [`build`](ConvShapeBuilder::build)
/// applies them in one order (padding last, from the final strides and
/// dilation, so the setters may come in any order) and validates the result.
/// Defaults: stride 1, dilation 1, `valid` padding, 1 group; the filter has
/// no default.
///
/// ```
/// use convnet_kernels::conv::{ConvShape, Padding};
/// // VGG16's conv3_1 at batch 8: [8, 56, 56, 128] input, 3x3 window, 256 filters, `same`.
/// let s = ConvShape::nhwc(8, 56, 56, 128).filter(3, 3, 256).padding(Padding::Same).build()?;
/// assert_eq!((s.out_h(), s.out_w(), s.c_out), (56, 56, 256));
/// assert_eq!(s.filter_len(), 3 * 3 * 128 * 256); // HWIO [kh, kw, c_in, c_out]
/// // A strided, dilated depthwise layer; padding follows the stride wherever it is set.
/// let dw = ConvShape::nhwc(1, 15, 15, 32).padding(Padding::Same).filter(3, 3, 32).groups(32).stride(2, 2).build()?;
/// assert_eq!((dw.out_h(), dw.depthwise_multiplier()), (8, Some(1)));
/// // Anything invalid is an error naming the problem, not a panic.
/// assert!(ConvShape::nhwc(1, 2, 2, 1).filter(3, 3, 1).build().is_err()); // window larger than the input
/// assert!(ConvShape::nhwc(1, 8, 8, 6).filter(3, 3, 4).groups(4).build().is_err()); // 4 does not divide 6
/// assert!(ConvShape::nhwc(1, 8, 8, 1).build().is_err()); // no filter
/// # Ok::<(), convnet_kernels::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[must_use = "a builder does nothing until `.build()`"]
pub struct ConvShapeBuilder {
    n: usize,
    h: usize,
    w: usize,
    c_in: usize,
    /// `(kh, kw, c_out)`, once set.
    filter: Option<(usize, usize, usize)>,
    stride: (usize, usize),
    dilation: (usize, usize),
    padding: Padding,
    groups: usize,
}

impl ConvShape {
    /// Starts a [`ConvShapeBuilder`] for an NHWC input `[n, h, w, c_in]`.
    pub fn nhwc(n: usize, h: usize, w: usize, c_in: usize) -> ConvShapeBuilder {
        ConvShapeBuilder {
            n,
            h,
            w,
            c_in,
            filter: None,
            stride: (1, 1),
            dilation: (1, 1),
            padding: Padding::Valid,
            groups: 1,
        }
    }
}

impl ConvShapeBuilder {
    /// The filter: a `kh x kw` window and `c_out` output channels (HWIO
    /// `[kh, kw, c_in / groups, c_out]`, in that order).
    pub fn filter(mut self, kh: usize, kw: usize, c_out: usize) -> Self {
        self.filter = Some((kh, kw, c_out));
        self
    }

    /// Vertical and horizontal strides (default 1).
    pub fn stride(mut self, stride_h: usize, stride_w: usize) -> Self {
        self.stride = (stride_h, stride_w);
        self
    }

    /// Vertical and horizontal dilation (default 1, none).
    pub fn dilation(mut self, dilation_h: usize, dilation_w: usize) -> Self {
        self.dilation = (dilation_h, dilation_w);
        self
    }

    /// Keras `valid` (the default) or `same`, or explicit rows and columns per side.
    pub fn padding(mut self, padding: Padding) -> Self {
        self.padding = padding;
        self
    }

    /// Channel groups (default 1); must divide `c_in` and `c_out`
    /// (`groups == c_in` is a depthwise convolution).
    pub fn groups(mut self, groups: usize) -> Self {
        self.groups = groups;
        self
    }

    /// The validated shape: an [`Error::InvalidShape`] naming the problem
    /// when the filter is missing or any part is invalid (see
    /// [`ConvShape::validate`]).
    pub fn build(self) -> Result<ConvShape> {
        let Some((kh, kw, c_out)) = self.filter else {
            return Err(Error::InvalidShape {
                shape: format!("conv {}x{}x{}x{} (no filter)", self.n, self.h, self.w, self.c_in),
                reason: "no filter: call .filter(kh, kw, c_out)".into(),
            });
        };
        let ((pad_top, pad_bottom), (pad_left, pad_right)) = match self.padding {
            Padding::Explicit { top, bottom, left, right } => ((top, bottom), (left, right)),
            p => (
                pad_amounts(p, self.h, kh, self.stride.0, self.dilation.0),
                pad_amounts(p, self.w, kw, self.stride.1, self.dilation.1),
            ),
        };
        let s = ConvShape {
            n: self.n,
            h: self.h,
            w: self.w,
            c_in: self.c_in,
            c_out,
            kh,
            kw,
            stride_h: self.stride.0,
            stride_w: self.stride.1,
            dilation_h: self.dilation.0,
            dilation_w: self.dilation.1,
            pad_top,
            pad_bottom,
            pad_left,
            pad_right,
            groups: self.groups,
        };
        s.validate()?;
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The builder gives what the positional constructor and the `with_*`
    /// chain give, whatever order its setters come in.
    #[test]
    fn builder_equals_the_with_chain_in_any_order() {
        let chained = ConvShape::new(2, 17, 15, 8, 12, 5, 5)
            .and_then(|s| s.with_stride(2, 2))
            .and_then(|s| s.with_dilation(1, 2))
            .and_then(|s| s.with_padding(Padding::Same))
            .and_then(|s| s.with_groups(4))
            .unwrap();
        let a = ConvShape::nhwc(2, 17, 15, 8).filter(5, 5, 12).stride(2, 2).dilation(1, 2).padding(Padding::Same);
        let b = ConvShape::nhwc(2, 17, 15, 8).padding(Padding::Same).groups(4).dilation(1, 2).stride(2, 2);
        assert_eq!(a.groups(4).build().unwrap(), chained);
        assert_eq!(b.filter(5, 5, 12).build().unwrap(), chained);
        assert_eq!(
            ConvShape::nhwc(1, 9, 9, 3).filter(3, 3, 4).build().unwrap(),
            ConvShape::new(1, 9, 9, 3, 4, 3, 3).unwrap()
        );
    }

    #[test]
    fn invalid_parts_are_errors_that_say_why() {
        let no_filter = ConvShape::nhwc(1, 8, 8, 1).build().unwrap_err().to_string();
        assert!(no_filter.contains("no filter"), "{no_filter}");
        let zero_stride = ConvShape::nhwc(1, 8, 8, 1).filter(3, 3, 1).stride(0, 1).build().unwrap_err().to_string();
        assert!(zero_stride.contains("stride_h is zero"), "{zero_stride}");
        let huge = ConvShape::nhwc(usize::MAX, 8, 8, 1).filter(3, 3, 1).build().unwrap_err().to_string();
        assert!(huge.contains("overflows"), "{huge}");
    }
}
