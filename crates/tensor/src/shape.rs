//! Tensor shapes of rank 1 to 4.

use crate::{Error, Result};
use std::fmt;

/// The dimensions of a tensor, rank 1 to 4, outermost first.
///
/// Activations are NHWC (`[batch, height, width, channels]`), conv weights HWIO
/// (`[kh, kw, c_in, c_out]`), dense weights `[in, out]`, as Keras stores them.
///
/// ```
/// use convnet_tensor::Shape;
/// let s = Shape::nhwc(64, 28, 28, 1);
/// assert_eq!(s.len(), 64 * 28 * 28);
/// assert_eq!(s.dims(), &[64, 28, 28, 1]);
/// assert_eq!(s.to_string(), "(64, 28, 28, 1)");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shape {
    dims: [usize; 4],
    rank: u8,
}

impl Shape {
    /// A shape from its dimensions; rank 1 to 4, element count must fit in `usize`.
    ///
    /// ```
    /// use convnet_tensor::Shape;
    /// assert!(Shape::new(&[3, 4]).is_ok());
    /// assert!(Shape::new(&[]).is_err());
    /// assert!(Shape::new(&[usize::MAX, 2]).is_err());
    /// ```
    pub fn new(dims: &[usize]) -> Result<Self> {
        if dims.is_empty() || dims.len() > 4 {
            return Err(Error::BadRank(dims.len()));
        }
        dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)).ok_or_else(|| Error::Overflow(dims.to_vec()))?;
        let mut all = [1usize; 4];
        all[..dims.len()].copy_from_slice(dims);
        Ok(Shape { dims: all, rank: dims.len() as u8 })
    }

    /// A rank-4 NHWC shape. Panics only if the element count overflows `usize`;
    /// use [`Shape::new`] for untrusted sizes.
    pub fn nhwc(n: usize, h: usize, w: usize, c: usize) -> Self {
        Shape::new(&[n, h, w, c]).expect("NHWC shape overflows usize")
    }

    /// A rank-2 `[rows, cols]` shape. Panics only on overflow, like [`Shape::nhwc`].
    pub fn matrix(rows: usize, cols: usize) -> Self {
        Shape::new(&[rows, cols]).expect("matrix shape overflows usize")
    }

    /// A rank-1 shape.
    pub fn vector(len: usize) -> Self {
        Shape { dims: [len, 1, 1, 1], rank: 1 }
    }

    /// The dimensions, outermost first.
    pub fn dims(&self) -> &[usize] {
        &self.dims[..self.rank as usize]
    }

    /// The rank (1 to 4).
    pub fn rank(&self) -> usize {
        self.rank as usize
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.dims().iter().product()
    }

    /// True when some dimension is zero.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The size of the first (batch) axis.
    pub fn batch(&self) -> usize {
        self.dims[0]
    }

    /// Elements per item of the batch axis (the product of all but the first dimension).
    pub fn item_len(&self) -> usize {
        self.dims()[1..].iter().product()
    }

    /// The size of the last axis.
    pub fn last(&self) -> usize {
        self.dims[self.rank as usize - 1]
    }

    /// The same shape with its first axis set to `n`. Errors on overflow.
    pub fn with_batch(&self, n: usize) -> Result<Self> {
        let mut d = self.dims;
        d[0] = n;
        Shape::new(&d[..self.rank as usize])
    }

    /// `(n, h, w, c)` of a rank-4 shape.
    pub fn as_nhwc(&self) -> Result<(usize, usize, usize, usize)> {
        if self.rank != 4 {
            return Err(Error::WrongRank { op: "as_nhwc", expected: 4, shape: *self });
        }
        Ok((self.dims[0], self.dims[1], self.dims[2], self.dims[3]))
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "(")?;
        for (i, d) in self.dims().iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{d}")?;
        }
        if self.rank == 1 {
            write!(f, ",")?;
        }
        write!(f, ")")
    }
}

impl fmt::Debug for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Shape{self}")
    }
}
