//! A labelled set of grey images: `u8` pixels and digit labels, shared cheaply.
//!
//! A [`Dataset`] points into shared storage (a memory-mapped IDX file, a
//! decompressed buffer, an npz array), so [`Dataset::take`],
//! [`Dataset::slice`] and [`Dataset::split_validation`] copy no pixels. The
//! conversions to f32 follow Keras: NHWC `[n, rows, cols, 1]` scaled by `1/255`
//! (`x.astype("float32") / 255`), one-hot labels `[n, 10]`.

use crate::bytes::Bytes;
use crate::idx::{IdxImages, IdxLabels};
use crate::{Error, Result};
use convnet_tensor::{Shape, Tensor};
use std::ops::Range;
use std::sync::Arc;

/// Number of classes (the digits 0-9).
pub const CLASSES: usize = 10;

/// Labelled grey images: `len` images of `rows x cols` `u8` pixels, each with a
/// label in `0..10`. Cloning is cheap (reference counts).
///
/// ```
/// use convnet_datasets::Dataset;
/// let ds = Dataset::from_vecs(2, 2, vec![0, 255, 51, 102, 1, 2, 3, 4], vec![3, 9])?;
/// assert_eq!(ds.len(), 2);
/// assert_eq!(ds.image(0), Some(&[0, 255, 51, 102][..]));
/// let x = ds.images_f32();
/// assert_eq!(x.shape().dims(), &[2, 2, 2, 1]);
/// assert_eq!(&x.data()[..4], &[0.0, 1.0, 0.2, 0.4]);
/// let y = ds.labels_onehot();
/// assert_eq!(y.argmax_last().unwrap(), vec![3, 9]);
/// # Ok::<(), convnet_datasets::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Dataset {
    images: Arc<Bytes>,
    /// Byte offset of image 0 in `images`.
    image_start: usize,
    labels: Arc<Bytes>,
    /// Byte offset of label 0 in `labels`.
    label_start: usize,
    len: usize,
    rows: usize,
    cols: usize,
}

/// Checks that every label is a digit.
pub(crate) fn check_labels(file: &str, labels: &[u8]) -> Result<()> {
    match labels.iter().position(|&l| l as usize >= CLASSES) {
        Some(index) => Err(Error::BadLabel { file: file.to_string(), index, label: labels[index] }),
        None => Ok(()),
    }
}

impl Dataset {
    /// Pairs an image file with a label file: counts must agree and labels be digits.
    ///
    /// ```
    /// use convnet_datasets::idx::{encode_images, encode_labels, IdxImages, IdxLabels};
    /// use convnet_datasets::{Dataset, Error};
    /// let images = IdxImages::from_bytes("x", encode_images(2, 1, 1, &[0, 1])?)?;
    /// let labels = IdxLabels::from_bytes("y", encode_labels(&[4])?)?;
    /// let err = Dataset::new(&images, &labels).unwrap_err();
    /// assert_eq!(err.to_string(), "x: 2 images, but y: 1 labels");
    /// # Ok::<(), convnet_datasets::Error>(())
    /// ```
    pub fn new(images: &IdxImages, labels: &IdxLabels) -> Result<Self> {
        if images.len() != labels.len() {
            return Err(Error::CountMismatch {
                images: images.name().to_string(),
                n_images: images.len(),
                labels: labels.name().to_string(),
                n_labels: labels.len(),
            });
        }
        check_labels(labels.name(), labels.labels())?;
        let (images_buf, image_start) = images.storage();
        let (labels_buf, label_start) = labels.storage();
        Ok(Dataset {
            images: images_buf,
            image_start,
            labels: labels_buf,
            label_start,
            len: images.len(),
            rows: images.rows(),
            cols: images.cols(),
        })
    }

    /// A dataset from owned pixels (`len * rows * cols`, image after image) and labels.
    pub fn from_vecs(rows: usize, cols: usize, pixels: Vec<u8>, labels: Vec<u8>) -> Result<Self> {
        let per = rows.checked_mul(cols).ok_or_else(|| Error::InvalidArgument(format!("{rows}x{cols} overflows")))?;
        if per == 0 || !pixels.len().is_multiple_of(per) || pixels.len() / per != labels.len() {
            return Err(Error::InvalidArgument(format!(
                "{} pixels are not {} images of {rows}x{cols}",
                pixels.len(),
                labels.len()
            )));
        }
        check_labels("labels", &labels)?;
        Ok(Dataset {
            images: Arc::new(Bytes::Owned(pixels)),
            image_start: 0,
            len: labels.len(),
            labels: Arc::new(Bytes::Owned(labels)),
            label_start: 0,
            rows,
            cols,
        })
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there is no example.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Rows per image (28 for MNIST).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Columns per image (28 for MNIST).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Pixels per image (`rows * cols`).
    pub fn pixels_per_image(&self) -> usize {
        self.rows * self.cols
    }

    /// All pixels, image after image (`len * rows * cols` bytes); for a raw IDX
    /// file, a slice of its memory mapping.
    pub fn pixels(&self) -> &[u8] {
        &self.images[self.image_start..self.image_start + self.len * self.pixels_per_image()]
    }

    /// The labels (`len` bytes, each `< 10`).
    pub fn labels(&self) -> &[u8] {
        &self.labels[self.label_start..self.label_start + self.len]
    }

    /// The pixels of image `i`, or `None` past the end.
    pub fn image(&self, i: usize) -> Option<&[u8]> {
        let n = self.pixels_per_image();
        (i < self.len).then(|| &self.pixels()[i * n..(i + 1) * n])
    }

    /// How many examples each class has.
    ///
    /// ```
    /// use convnet_datasets::Dataset;
    /// let ds = Dataset::from_vecs(1, 1, vec![0; 3], vec![2, 2, 7])?;
    /// assert_eq!(ds.class_counts(), [0, 0, 2, 0, 0, 0, 0, 1, 0, 0]);
    /// # Ok::<(), convnet_datasets::Error>(())
    /// ```
    pub fn class_counts(&self) -> [usize; CLASSES] {
        let mut counts = [0; CLASSES];
        for &l in self.labels() {
            counts[l as usize] += 1;
        }
        counts
    }

    /// Examples `range` as a new dataset sharing the same storage (no copy).
    ///
    /// ```
    /// use convnet_datasets::Dataset;
    /// let ds = Dataset::from_vecs(1, 1, vec![10, 20, 30], vec![1, 2, 3])?;
    /// assert_eq!(ds.slice(1..3)?.labels(), &[2, 3]);
    /// assert!(ds.slice(2..4).is_err());
    /// # Ok::<(), convnet_datasets::Error>(())
    /// ```
    pub fn slice(&self, range: Range<usize>) -> Result<Dataset> {
        if range.start > range.end || range.end > self.len {
            return Err(Error::InvalidArgument(format!(
                "range {}..{} outside a dataset of {} examples",
                range.start, range.end, self.len
            )));
        }
        Ok(Dataset {
            image_start: self.image_start + range.start * self.pixels_per_image(),
            label_start: self.label_start + range.start,
            len: range.end - range.start,
            ..self.clone()
        })
    }

    /// The first `min(n, len)` examples (for `--limit`), sharing storage.
    pub fn take(&self, n: usize) -> Dataset {
        Dataset { len: n.min(self.len), ..self.clone() }
    }

    /// Splits off the last `fraction` of the examples (rounded to nearest) as a
    /// validation set, as Keras's `validation_split` does; returns
    /// `(train, validation)`, both sharing storage.
    ///
    /// ```
    /// use convnet_datasets::Dataset;
    /// let ds = Dataset::from_vecs(1, 1, vec![0; 10], vec![0; 10])?;
    /// let (train, val) = ds.split_validation(0.2)?;
    /// assert_eq!((train.len(), val.len()), (8, 2));
    /// assert!(ds.split_validation(1.5).is_err());
    /// # Ok::<(), convnet_datasets::Error>(())
    /// ```
    pub fn split_validation(&self, fraction: f64) -> Result<(Dataset, Dataset)> {
        if !(0.0..=1.0).contains(&fraction) {
            return Err(Error::InvalidArgument(format!("validation fraction {fraction} is not in [0, 1]")));
        }
        let val = ((self.len as f64) * fraction).round() as usize;
        let cut = self.len - val.min(self.len);
        Ok((self.slice(0..cut)?, self.slice(cut..self.len)?))
    }

    /// All images as an f32 NHWC tensor `[len, rows, cols, 1]` scaled to `[0, 1]`.
    pub fn images_f32(&self) -> Tensor {
        let mut t = Tensor::zeros(Shape::nhwc(self.len, self.rows, self.cols, 1));
        bytes_to_unit_f32(self.pixels(), t.data_mut());
        t
    }

    /// All labels one-hot, `[len, 10]`.
    pub fn labels_onehot(&self) -> Tensor {
        let mut t = Tensor::zeros(Shape::matrix(self.len, CLASSES));
        for (row, &l) in t.data_mut().chunks_exact_mut(CLASSES).zip(self.labels()) {
            row[l as usize] = 1.0;
        }
        t
    }

    /// All labels as class indices (what `sparse_softmax_cross_entropy` takes).
    pub fn labels_sparse(&self) -> Vec<u32> {
        self.labels().iter().map(|&l| u32::from(l)).collect()
    }
}

/// `out[i] = bytes[i] / 255` (exactly Keras's `astype("float32") / 255`).
pub(crate) fn bytes_to_unit_f32(bytes: &[u8], out: &mut [f32]) {
    debug_assert_eq!(bytes.len(), out.len());
    for (o, &b) in out.iter_mut().zip(bytes) {
        *o = f32::from(b) / 255.0;
    }
}
