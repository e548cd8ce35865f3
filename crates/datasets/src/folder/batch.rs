//! Mini-batches of an [`ImageDataset`]: the same seeded per-epoch shuffle as
//! [`crate::BatchIter`] (so a seed gives the same order for MNIST and image
//! folders), images converted from `u8` to f32 NHWC as each batch is gathered,
//! into buffers allocated once.

use super::{ImageDataset, LabelMode};
use crate::{EpochOrder, Error, Result};
use convnet_tensor::{Shape, Tensor, TensorView};

/// One mini-batch, borrowed from the [`ImageBatches`] that made it.
#[derive(Clone, Copy, Debug)]
pub struct ImageBatch<'a> {
    /// Images, NHWC `[b, height, width, channels]`, unscaled (0-255) or scaled.
    pub images: TensorView<'a>,
    /// Labels in the dataset's label mode: `[b]` class indices (`Int`),
    /// `[b, 1]` (`Binary`) or `[b, classes]` (`Categorical`); `None` without labels.
    pub labels: Option<TensorView<'a>>,
    /// Class indices.
    pub labels_sparse: &'a [u32],
    /// Which examples of the dataset these are, in batch order.
    pub indices: &'a [usize],
}

impl ImageBatch<'_> {
    /// Number of examples (the batch size, or fewer for the last batch).
    pub fn len(&self) -> usize {
        self.indices.len()
    }

    /// True for an empty batch (never produced).
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }
}

/// Iterates over an [`ImageDataset`] in mini-batches, reshuffled each epoch when seeded.
///
/// ```
/// # fn demo(ds: &convnet_datasets::folder::ImageDataset) -> convnet_datasets::Result<()> {
/// let mut batches = ds.batches(32, Some(7))?.scale(1.0 / 255.0); // the book's rescale=1./255
/// for epoch in 0..2 {
///     batches.epoch(epoch);
///     while let Some(batch) = batches.next_batch() {
///         let _ = (batch.images, batch.labels);
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct ImageBatches<'d> {
    data: &'d ImageDataset,
    batch_size: usize,
    scale: Option<f32>,
    order: EpochOrder,
    images: Tensor,
    labels: Tensor,
    sparse: Vec<u32>,
}

impl<'d> ImageBatches<'d> {
    /// Batches of `batch_size` (at least 1), unscaled, positioned at epoch 0.
    pub fn new(data: &'d ImageDataset, batch_size: usize, seed: Option<u64>) -> Result<Self> {
        if batch_size == 0 {
            return Err(Error::InvalidArgument("batch size must be at least 1".into()));
        }
        let cap = batch_size.min(data.len().max(1));
        let [h, w, c] = data.input_shape();
        let shape = Shape::new(&[cap, h, w, c]).map_err(|e| Error::InvalidArgument(format!("batch of {cap}: {e}")))?;
        let label_len = cap
            .checked_mul(data.label_width())
            .ok_or_else(|| Error::InvalidArgument("label buffer overflows".into()))?;
        let it = ImageBatches {
            data,
            batch_size,
            scale: None,
            order: EpochOrder::new(data.len(), seed),
            images: Tensor::zeros(shape),
            labels: Tensor::zeros(Shape::new(&[label_len.max(1)]).map_err(|e| Error::InvalidArgument(e.to_string()))?),
            sparse: Vec::with_capacity(cap),
        };
        Ok(it)
    }

    /// Multiplies every pixel by `scale` as it is converted (`1.0 / 255.0` for
    /// the book's `rescale=1./255`).
    pub fn scale(mut self, scale: f32) -> Self {
        self.scale = Some(scale);
        self
    }

    /// Restarts at the beginning of `epoch`, in that epoch's order.
    pub fn epoch(&mut self, epoch: u64) {
        self.order.epoch(epoch);
    }

    /// The next batch of the current epoch, or `None` when the epoch is done.
    pub fn next_batch(&mut self) -> Option<ImageBatch<'_>> {
        let indices = self.order.next_batch(self.batch_size)?;
        let b = indices.len();
        let per = self.data.image_len();
        let [h, w, c] = self.data.input_shape();
        let images = &mut self.images.data_mut()[..b * per];
        self.data.gather_images(indices, self.scale, images).expect("indices come from the dataset");
        let image_shape = Shape::new(&[b, h, w, c]).expect("smaller than the buffer");
        let images = TensorView::new(image_shape, &self.images.data()[..b * per]).expect("lengths agree");
        self.sparse.clear();
        let labels = match self.data.labels() {
            None => None,
            Some(all) => {
                self.sparse.extend(indices.iter().map(|&i| all[i]));
                let width = self.data.label_width();
                let buf = &mut self.labels.data_mut()[..b * width];
                self.data.gather_labels(indices, buf).expect("indices come from the dataset");
                let dims: Vec<usize> = match self.data.label_mode() {
                    LabelMode::Int => vec![b],
                    LabelMode::Binary => vec![b, 1],
                    LabelMode::Categorical => vec![b, width],
                };
                let shape = Shape::new(&dims).expect("smaller than the buffer");
                Some(TensorView::new(shape, &self.labels.data()[..b * width]).expect("lengths agree"))
            }
        };
        Some(ImageBatch { images, labels, labels_sparse: &self.sparse, indices })
    }

    /// Batches per epoch (the last one possibly partial).
    pub fn batches_per_epoch(&self) -> usize {
        self.data.len().div_ceil(self.batch_size)
    }

    /// This epoch's order: `order()[k]` is the dataset index visited k-th.
    pub fn order(&self) -> &[usize] {
        self.order.order()
    }
}
