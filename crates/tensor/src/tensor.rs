//! The owned tensor and its borrowed views.

use crate::{AlignedBuf, Error, Result, Rng, Shape};
use std::ops::Range;

/// An owned f32 tensor: a [`Shape`] of rank 1 to 4 over 64-byte aligned,
/// row-major storage.
///
/// ```
/// use convnet_tensor::{Shape, Tensor};
/// let mut t = Tensor::zeros(Shape::nhwc(2, 2, 2, 1));
/// t.data_mut()[3] = 1.5;
/// assert_eq!(t.sum(), 1.5);
/// let flat = t.reshape(Shape::matrix(2, 4)).unwrap(); // no copy
/// assert_eq!(flat.argmax_last().unwrap(), vec![3, 0]);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    buf: AlignedBuf,
    shape: Shape,
}

/// A borrowed, read-only tensor: a shape over a slice (for example a range of
/// the batch axis of a [`Tensor`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TensorView<'a> {
    data: &'a [f32],
    shape: Shape,
}

/// A borrowed, mutable tensor.
#[derive(Debug, PartialEq)]
pub struct TensorViewMut<'a> {
    data: &'a mut [f32],
    shape: Shape,
}

fn check_len(shape: Shape, actual: usize) -> Result<()> {
    if shape.len() != actual {
        return Err(Error::LengthMismatch { shape, expected: shape.len(), actual });
    }
    Ok(())
}

/// A reshape keeps the element count.
fn check_reshape(from: Shape, to: Shape) -> Result<()> {
    if from.len() != to.len() {
        return Err(Error::BadReshape { from, from_len: from.len(), to, to_len: to.len() });
    }
    Ok(())
}

fn batch_range(shape: Shape, range: &Range<usize>) -> Result<(Shape, Range<usize>)> {
    if range.start > range.end || range.end > shape.batch() {
        return Err(Error::BadRange { start: range.start, end: range.end, len: shape.batch() });
    }
    let item = shape.item_len();
    Ok((shape.with_batch(range.end - range.start)?, range.start * item..range.end * item))
}

/// `(fan_in, fan_out)` of a weight shape as Keras computes them: a dense
/// `[in, out]` kernel has fans `in`, `out`; a conv HWIO kernel
/// `[kh, kw, in, out]` has `kh*kw*in`, `kh*kw*out`; a vector has its length twice.
pub fn fans(shape: Shape) -> (usize, usize) {
    let d = shape.dims();
    match d.len() {
        1 => (d[0], d[0]),
        2 => (d[0], d[1]),
        _ => {
            let receptive: usize = d[..d.len() - 2].iter().product();
            (receptive * d[d.len() - 2], receptive * d[d.len() - 1])
        }
    }
}

impl Tensor {
    /// A tensor of zeros.
    pub fn zeros(shape: Shape) -> Self {
        Tensor { buf: AlignedBuf::zeros(shape.len()), shape }
    }

    /// A tensor of ones.
    pub fn ones(shape: Shape) -> Self {
        Self::full(shape, 1.0)
    }

    /// A tensor filled with `value`.
    pub fn full(shape: Shape, value: f32) -> Self {
        Tensor { buf: AlignedBuf::filled(shape.len(), value), shape }
    }

    /// A tensor holding a copy of `data`, which must have `shape.len()` elements.
    ///
    /// ```
    /// use convnet_tensor::{Shape, Tensor};
    /// assert!(Tensor::from_slice(Shape::matrix(2, 2), &[1.0, 2.0, 3.0]).is_err());
    /// ```
    pub fn from_slice(shape: Shape, data: &[f32]) -> Result<Self> {
        check_len(shape, data.len())?;
        Ok(Tensor { buf: AlignedBuf::from_slice(data), shape })
    }

    /// Uniform values in `[lo, hi)` from a seeded generator.
    pub fn uniform(shape: Shape, lo: f32, hi: f32, rng: &mut Rng) -> Result<Self> {
        if !lo.is_finite() || !hi.is_finite() || lo >= hi {
            return Err(Error::BadInit(format!("uniform needs finite lo < hi, got {lo}..{hi}")));
        }
        let mut t = Self::zeros(shape);
        t.data_mut().iter_mut().for_each(|x| *x = rng.uniform(lo, hi));
        Ok(t)
    }

    /// Normal values with the given mean and standard deviation.
    pub fn normal(shape: Shape, mean: f32, std: f32, rng: &mut Rng) -> Result<Self> {
        if !std.is_finite() || std < 0.0 || !mean.is_finite() {
            return Err(Error::BadInit(format!("normal needs finite mean and std >= 0, got {mean}, {std}")));
        }
        let mut t = Self::zeros(shape);
        for x in t.data_mut() {
            *x = (mean as f64 + std as f64 * rng.standard_normal()) as f32;
        }
        Ok(t)
    }

    /// Keras's default kernel initialiser for `Conv2D` and `Dense`:
    /// uniform in `[-l, l)` with `l = sqrt(6 / (fan_in + fan_out))` (see [`fans`]).
    ///
    /// ```
    /// use convnet_tensor::{Rng, Shape, Tensor};
    /// let w = Tensor::glorot_uniform(Shape::new(&[3, 3, 1, 32]).unwrap(), &mut Rng::new(0)).unwrap();
    /// let limit = (6.0f32 / (9.0 + 288.0)).sqrt();
    /// assert!(w.data().iter().all(|x| x.abs() <= limit));
    /// ```
    pub fn glorot_uniform(shape: Shape, rng: &mut Rng) -> Result<Self> {
        let (fan_in, fan_out) = fans(shape);
        if fan_in + fan_out == 0 {
            return Err(Error::BadInit(format!("glorot_uniform on {shape}: zero fans")));
        }
        let limit = (6.0 / (fan_in + fan_out) as f64).sqrt() as f32;
        Self::uniform(shape, -limit, limit, rng)
    }

    /// Keras's `he_normal`: a normal truncated at two standard deviations, scaled
    /// so the result has standard deviation `sqrt(2 / fan_in)`.
    pub fn he_normal(shape: Shape, rng: &mut Rng) -> Result<Self> {
        let (fan_in, _) = fans(shape);
        if fan_in == 0 {
            return Err(Error::BadInit(format!("he_normal on {shape}: zero fan_in")));
        }
        // Std of a standard normal truncated to [-2, 2].
        const TRUNCATED_STD: f64 = 0.879_625_661_034_239_8;
        let std = (2.0 / fan_in as f64).sqrt() / TRUNCATED_STD;
        let mut t = Self::zeros(shape);
        for x in t.data_mut() {
            let z = loop {
                let z = rng.standard_normal();
                if z.abs() <= 2.0 {
                    break z;
                }
            };
            *x = (std * z) as f32;
        }
        Ok(t)
    }

    /// The shape.
    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// The elements, row-major.
    pub fn data(&self) -> &[f32] {
        self.buf.as_slice()
    }

    /// The elements, mutable.
    pub fn data_mut(&mut self) -> &mut [f32] {
        self.buf.as_mut_slice()
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.len()
    }

    /// True when the tensor holds no element.
    pub fn is_empty(&self) -> bool {
        self.shape.is_empty()
    }

    /// The same data under another shape with as many elements; no copy.
    pub fn reshape(self, shape: Shape) -> Result<Self> {
        check_reshape(self.shape, shape)?;
        Ok(Tensor { buf: self.buf, shape })
    }

    /// Changes the shape in place, reusing the allocation where it is large
    /// enough (so a buffer that cycles through sizes it has held never
    /// allocates again). Contents are unspecified afterwards except that new
    /// elements are zero.
    pub fn resize(&mut self, shape: Shape) {
        self.buf.resize(shape.len());
        self.shape = shape;
    }

    /// A read-only view of the whole tensor.
    pub fn view(&self) -> TensorView<'_> {
        TensorView { data: self.data(), shape: self.shape }
    }

    /// A mutable view of the whole tensor.
    pub fn view_mut(&mut self) -> TensorViewMut<'_> {
        let shape = self.shape;
        TensorViewMut { data: self.data_mut(), shape }
    }

    /// A view of items `range` of the batch (first) axis; no copy.
    ///
    /// ```
    /// use convnet_tensor::{Shape, Tensor};
    /// let t = Tensor::from_slice(Shape::matrix(3, 2), &[1., 2., 3., 4., 5., 6.]).unwrap();
    /// let v = t.batch(1..3).unwrap();
    /// assert_eq!(v.data(), &[3., 4., 5., 6.]);
    /// assert!(t.batch(2..4).is_err());
    /// ```
    pub fn batch(&self, range: Range<usize>) -> Result<TensorView<'_>> {
        let (shape, r) = batch_range(self.shape, &range)?;
        Ok(TensorView { data: &self.data()[r], shape })
    }

    /// A mutable view of items `range` of the batch axis.
    pub fn batch_mut(&mut self, range: Range<usize>) -> Result<TensorViewMut<'_>> {
        let (shape, r) = batch_range(self.shape, &range)?;
        Ok(TensorViewMut { data: &mut self.data_mut()[r], shape })
    }

    fn same_shape(&self, other: &Tensor, op: &'static str) -> Result<()> {
        if self.shape != other.shape {
            return Err(Error::ShapeMismatch { op, left: self.shape, right: other.shape });
        }
        Ok(())
    }

    fn zip_with(&self, other: &Tensor, op: &'static str, f: impl Fn(f32, f32) -> f32) -> Result<Tensor> {
        self.same_shape(other, op)?;
        let mut out = Tensor::zeros(self.shape);
        for ((o, &a), &b) in out.data_mut().iter_mut().zip(self.data()).zip(other.data()) {
            *o = f(a, b);
        }
        Ok(out)
    }

    /// Element-wise sum.
    pub fn add(&self, other: &Tensor) -> Result<Tensor> {
        self.zip_with(other, "add", |a, b| a + b)
    }

    /// Element-wise difference.
    pub fn sub(&self, other: &Tensor) -> Result<Tensor> {
        self.zip_with(other, "sub", |a, b| a - b)
    }

    /// Element-wise product.
    pub fn mul(&self, other: &Tensor) -> Result<Tensor> {
        self.zip_with(other, "mul", |a, b| a * b)
    }

    /// `self += other`, element-wise.
    pub fn add_assign(&mut self, other: &Tensor) -> Result<()> {
        self.axpy(1.0, other)
    }

    /// `self += alpha * x`, element-wise.
    pub fn axpy(&mut self, alpha: f32, x: &Tensor) -> Result<()> {
        self.same_shape(x, "axpy")?;
        for (y, &x) in self.data_mut().iter_mut().zip(x.data()) {
            *y += alpha * x;
        }
        Ok(())
    }

    /// Multiplies every element by `alpha`, in place.
    pub fn scale(&mut self, alpha: f32) {
        self.data_mut().iter_mut().for_each(|x| *x *= alpha);
    }

    /// Sets every element to `value`.
    pub fn fill(&mut self, value: f32) {
        self.data_mut().fill(value);
    }

    /// Sum of all elements, accumulated in f64.
    pub fn sum(&self) -> f32 {
        self.view().sum()
    }

    /// Mean of all elements (NaN for an empty tensor).
    pub fn mean(&self) -> f32 {
        self.view().mean()
    }

    /// Index of the largest element along the last axis, for each row
    /// (the first index on ties; NaN never wins).
    pub fn argmax_last(&self) -> Result<Vec<usize>> {
        self.view().argmax_last()
    }

    /// True when every pair of elements satisfies
    /// `|a - b| <= atol + rtol * |b|` and the shapes are equal.
    ///
    /// ```
    /// use convnet_tensor::{Shape, Tensor};
    /// let a = Tensor::full(Shape::vector(3), 1.0);
    /// let b = Tensor::full(Shape::vector(3), 1.0 + 1e-6);
    /// assert!(a.approx_eq(&b, 1e-5, 0.0));
    /// assert!(!a.approx_eq(&b, 0.0, 1e-7));
    /// ```
    pub fn approx_eq(&self, other: &Tensor, rtol: f32, atol: f32) -> bool {
        self.view().approx_eq(&other.view(), rtol, atol)
    }
}

impl<'a> TensorView<'a> {
    /// A view of `data` under `shape` (lengths must agree).
    pub fn new(shape: Shape, data: &'a [f32]) -> Result<Self> {
        check_len(shape, data.len())?;
        Ok(TensorView { data, shape })
    }

    /// The shape.
    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// The elements.
    pub fn data(&self) -> &'a [f32] {
        self.data
    }

    /// The same data under another shape with as many elements.
    pub fn reshape(self, shape: Shape) -> Result<Self> {
        check_reshape(self.shape, shape)?;
        Ok(TensorView { data: self.data, shape })
    }

    /// A view of items `range` of the batch axis.
    pub fn batch(&self, range: Range<usize>) -> Result<TensorView<'a>> {
        let (shape, r) = batch_range(self.shape, &range)?;
        Ok(TensorView { data: &self.data[r], shape })
    }

    /// An owned copy.
    pub fn to_tensor(&self) -> Tensor {
        Tensor { buf: AlignedBuf::from_slice(self.data), shape: self.shape }
    }

    /// Sum of all elements, accumulated in f64.
    pub fn sum(&self) -> f32 {
        self.data.iter().map(|&x| x as f64).sum::<f64>() as f32
    }

    /// Mean of all elements (NaN for an empty view).
    pub fn mean(&self) -> f32 {
        (self.data.iter().map(|&x| x as f64).sum::<f64>() / self.data.len() as f64) as f32
    }

    /// Index of the largest element along the last axis, for each row.
    pub fn argmax_last(&self) -> Result<Vec<usize>> {
        let cols = self.shape.last();
        if cols == 0 {
            return Err(Error::LengthMismatch { shape: self.shape, expected: 1, actual: 0 });
        }
        Ok(self
            .data
            .chunks_exact(cols)
            .map(|row| {
                let mut best = 0;
                for (i, &x) in row.iter().enumerate() {
                    if x > row[best] || row[best].is_nan() && !x.is_nan() {
                        best = i;
                    }
                }
                best
            })
            .collect())
    }

    /// See [`Tensor::approx_eq`].
    pub fn approx_eq(&self, other: &TensorView<'_>, rtol: f32, atol: f32) -> bool {
        self.shape == other.shape
            && self.data.iter().zip(other.data).all(|(&a, &b)| (a - b).abs() <= atol + rtol * b.abs())
    }
}

impl<'a> TensorViewMut<'a> {
    /// A mutable view of `data` under `shape` (lengths must agree).
    pub fn new(shape: Shape, data: &'a mut [f32]) -> Result<Self> {
        check_len(shape, data.len())?;
        Ok(TensorViewMut { data, shape })
    }

    /// The shape.
    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// The elements.
    pub fn data(&self) -> &[f32] {
        self.data
    }

    /// The elements, mutable.
    pub fn data_mut(&mut self) -> &mut [f32] {
        self.data
    }

    /// A read-only view.
    pub fn as_view(&self) -> TensorView<'_> {
        TensorView { data: self.data, shape: self.shape }
    }
}
