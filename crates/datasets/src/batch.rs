//! Mini-batches: a seeded shuffle per epoch, then batches gathered into reused buffers.
//!
//! Each epoch visits every example exactly once, in an order that depends only
//! on the seed and the epoch number (a Fisher-Yates shuffle driven by
//! [`convnet_tensor::Rng`]), so a run can be repeated exactly, or resumed at any
//! epoch. The last batch of an epoch is partial when the batch size does not
//! divide the dataset. The image (`[b, rows, cols, 1]` f32 in `[0, 1]`) and
//! one-hot label (`[b, 10]`) buffers are allocated once, for a full batch, and
//! overwritten by every batch: the steady state allocates nothing.

use crate::dataset::{bytes_to_unit_f32, CLASSES};
use crate::{Dataset, Error, Result};
use convnet_tensor::{Rng, Shape, Tensor, TensorView};

/// One mini-batch, borrowed from the [`BatchIter`] that made it.
#[derive(Clone, Copy, Debug)]
pub struct Batch<'a> {
    /// Images, NHWC `[b, rows, cols, 1]`, scaled to `[0, 1]`.
    pub images: TensorView<'a>,
    /// One-hot labels `[b, 10]`.
    pub labels_onehot: TensorView<'a>,
    /// Labels as digits.
    pub labels: &'a [u8],
    /// Labels as `u32` class indices (for sparse cross-entropy).
    pub labels_sparse: &'a [u32],
    /// Which examples of the dataset these are, in batch order.
    pub indices: &'a [usize],
}

impl Batch<'_> {
    /// Number of examples in the batch (the batch size, or fewer for the last one).
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True for an empty batch (never produced by [`BatchIter`]).
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// Iterates over a dataset in mini-batches, reshuffled each epoch when seeded.
///
/// ```
/// use convnet_datasets::{BatchIter, Dataset};
/// let ds = Dataset::from_vecs(2, 2, (0..20).map(|i| i as u8 * 10).collect(), vec![0, 1, 2, 3, 4])?;
/// let mut it = BatchIter::new(&ds, 2, Some(42))?;
/// for epoch in 0..2 {
///     it.epoch(epoch);
///     let mut seen = Vec::new();
///     while let Some(batch) = it.next_batch() {
///         assert_eq!(batch.images.shape().dims()[1..], [2, 2, 1]);
///         assert_eq!(batch.labels_onehot.shape().dims(), &[batch.len(), 10]);
///         seen.extend_from_slice(batch.indices);
///     }
///     seen.sort();
///     assert_eq!(seen, [0, 1, 2, 3, 4]); // batches of 2, 2 and 1
/// }
/// # Ok::<(), convnet_datasets::Error>(())
/// ```
#[derive(Debug)]
pub struct BatchIter<'d> {
    data: &'d Dataset,
    batch_size: usize,
    order: EpochOrder,
    images: Tensor,
    onehot: Tensor,
    labels: Vec<u8>,
    sparse: Vec<u32>,
}

/// The shuffle seed of `epoch` under `seed`: distinct epochs get unrelated
/// streams (the generator's SplitMix64 seeding decorrelates nearby seeds).
fn epoch_seed(seed: u64, epoch: u64) -> u64 {
    seed ^ epoch.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// The order in which one epoch visits `len` examples, handed out a batch at
/// a time: a Fisher-Yates shuffle seeded by `(seed, epoch)`, or dataset order
/// without a seed. Both batch iterators ([`BatchIter`] for MNIST-format data,
/// [`ImageBatches`](crate::folder::ImageBatches) for image folders) walk one,
/// so a seed gives the same order whatever the data; a data-parallel trainer
/// can take the whole [`order`](Self::order) and split it across workers.
///
/// ```
/// use convnet_datasets::EpochOrder;
/// let mut o = EpochOrder::new(5, Some(42));
/// o.epoch(3);
/// let first = o.order().to_vec();
/// let mut seen: Vec<usize> = std::iter::from_fn(|| o.next_batch(2).map(|b| b.to_vec())).flatten().collect();
/// assert_eq!(seen, first); // batches of 2, 2 and 1, in the epoch's order
/// seen.sort();
/// assert_eq!(seen, [0, 1, 2, 3, 4]);
/// o.epoch(3);
/// assert_eq!(o.order(), first); // the same (seed, epoch), the same order
/// ```
#[derive(Clone, Debug)]
pub struct EpochOrder {
    seed: Option<u64>,
    order: Vec<usize>,
    pos: usize,
}

impl EpochOrder {
    /// An order over `0..len`, positioned at the start of epoch 0.
    pub fn new(len: usize, seed: Option<u64>) -> Self {
        let mut o = EpochOrder { seed, order: (0..len).collect(), pos: 0 };
        o.epoch(0);
        o
    }

    /// Restarts at the beginning of `epoch`, in that epoch's order (the same
    /// order whenever the same seed and epoch are given).
    pub fn epoch(&mut self, epoch: u64) {
        self.pos = 0;
        for (i, o) in self.order.iter_mut().enumerate() {
            *o = i;
        }
        if let Some(seed) = self.seed {
            Rng::new(epoch_seed(seed, epoch)).shuffle(&mut self.order);
        }
    }

    /// The next `batch_size` indices of the epoch (fewer at its end), or
    /// `None` when the epoch is done. `batch_size` 0 is taken as 1.
    pub fn next_batch(&mut self, batch_size: usize) -> Option<&[usize]> {
        let n = self.order.len();
        if self.pos >= n {
            return None;
        }
        let b = batch_size.max(1).min(n - self.pos);
        let indices = &self.order[self.pos..self.pos + b];
        self.pos += b;
        Some(indices)
    }

    /// This epoch's whole order: `order()[k]` is the index visited k-th.
    pub fn order(&self) -> &[usize] {
        &self.order
    }
}

impl<'d> BatchIter<'d> {
    /// Batches of `batch_size` (at least 1) over `data`, positioned at the start
    /// of epoch 0. With a seed, every epoch is shuffled; without, examples come
    /// in dataset order.
    pub fn new(data: &'d Dataset, batch_size: usize, seed: Option<u64>) -> Result<Self> {
        if batch_size == 0 {
            return Err(Error::InvalidArgument("batch size must be at least 1".into()));
        }
        let cap = batch_size.min(data.len().max(1));
        let shape = Shape::new(&[cap, data.rows(), data.cols(), 1])
            .map_err(|e| Error::InvalidArgument(format!("batch of {cap}: {e}")))?;
        let it = BatchIter {
            data,
            batch_size,
            order: EpochOrder::new(data.len(), seed),
            images: Tensor::zeros(shape),
            onehot: Tensor::zeros(Shape::matrix(cap, CLASSES)),
            labels: Vec::with_capacity(cap),
            sparse: Vec::with_capacity(cap),
        };
        Ok(it)
    }

    /// Restarts at the beginning of `epoch`, in that epoch's order (the same
    /// order whenever the same seed and epoch are given).
    pub fn epoch(&mut self, epoch: u64) {
        self.order.epoch(epoch);
    }

    /// The next batch of the current epoch, or `None` when the epoch is done.
    pub fn next_batch(&mut self) -> Option<Batch<'_>> {
        let indices = self.order.next_batch(self.batch_size)?;
        let b = indices.len();
        let per = self.data.pixels_per_image();
        let pixels = self.data.pixels();
        let labels = self.data.labels();
        let images = &mut self.images.data_mut()[..b * per];
        for (dst, &i) in images.chunks_exact_mut(per.max(1)).zip(indices) {
            bytes_to_unit_f32(&pixels[i * per..(i + 1) * per], dst);
        }
        let onehot = &mut self.onehot.data_mut()[..b * CLASSES];
        onehot.fill(0.0);
        self.labels.clear();
        self.sparse.clear();
        for (row, &i) in onehot.chunks_exact_mut(CLASSES).zip(indices) {
            let l = labels[i];
            row[l as usize] = 1.0;
            self.labels.push(l);
            self.sparse.push(u32::from(l));
        }
        let image_shape = Shape::new(&[b, self.data.rows(), self.data.cols(), 1]).expect("smaller than the buffer");
        Some(Batch {
            images: TensorView::new(image_shape, &self.images.data()[..b * per]).expect("lengths agree"),
            labels_onehot: TensorView::new(Shape::matrix(b, CLASSES), &self.onehot.data()[..b * CLASSES])
                .expect("lengths agree"),
            labels: &self.labels,
            labels_sparse: &self.sparse,
            indices,
        })
    }

    /// The batch size asked for.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// Batches per epoch (the last one possibly partial).
    pub fn batches_per_epoch(&self) -> usize {
        self.data.len().div_ceil(self.batch_size)
    }

    /// The dataset being iterated.
    pub fn dataset(&self) -> &'d Dataset {
        self.data
    }

    /// This epoch's order: `order()[k]` is the dataset index visited k-th.
    pub fn order(&self) -> &[usize] {
        self.order.order()
    }
}
