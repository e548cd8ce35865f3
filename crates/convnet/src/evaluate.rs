//! `evaluate` and `predict`: Keras's inference calls, on the tape-free
//! engine beside this file (`infer.rs`). No tape is recorded; dropout is the
//! identity; the activation buffers are the model's cached [`Scratch`], reused
//! across calls. `fit` runs its validation pass through [`Model::evaluate_on`].

use crate::batch::{check_data, correct, BatchBuf, Running};
use crate::compile::Loss;
use crate::data::{Examples, XY};
use crate::infer::Scratch;
use crate::model::Model;
use crate::Result;
use convnet_kernels::loss;
use convnet_tensor::{Shape, Tensor};

impl Model {
    /// Loss and accuracy over `indices` of `data` (all when `None`), on the
    /// tape-free inference path.
    pub(crate) fn evaluate_on(
        &self,
        scratch: &mut Scratch,
        data: &dyn Examples,
        indices: Option<&[usize]>,
        batch_size: usize,
    ) -> Result<(f64, f64)> {
        let c = self.compiled("fit or evaluate")?;
        let form = c.target_form();
        let all: Vec<usize>;
        let idx = match indices {
            Some(i) => i,
            None => {
                all = (0..data.len()).collect();
                &all
            }
        };
        let bs = batch_size.max(1).min(idx.len().max(1));
        let mut buf = BatchBuf::new(self.input_shape(), bs, Some(form));
        let k = c.outputs;
        let mut run = Running::default();
        for chunk in idx.chunks(bs) {
            let b = chunk.len();
            buf.fill(data, chunk, Some(form))?;
            let y = self.infer(scratch, &buf.x[..b * buf.item_len], b, c.fused)?;
            buf.out.clear();
            buf.out.extend_from_slice(y);
            let out = &buf.out;
            let loss = match c.loss {
                Loss::CategoricalCrossentropy => scratch.cross_entropy(k, out, &buf.y[..b * k])?,
                Loss::SparseCategoricalCrossentropy => scratch.sparse_cross_entropy(k, out, &buf.labels[..b])?,
                Loss::BinaryCrossentropy if c.logits => loss::binary_cross_entropy_with_logits(out, &buf.y[..b * k])?,
                Loss::BinaryCrossentropy => loss::binary_cross_entropy(out, &buf.y[..b * k])?,
            };
            run.loss += loss as f64 * b as f64;
            run.correct += correct(c, out, &buf, b, form);
            run.seen += b;
        }
        Ok((run.loss(), run.accuracy()))
    }

    /// Test loss and accuracy of `x`, `y` in inference mode (Keras's
    /// `evaluate`), in batches of `batch_size`.
    pub fn evaluate(&self, x: &Tensor, y: &Tensor, batch_size: usize) -> Result<(f64, f64)> {
        self.evaluate_examples(&XY::new(x, y)?, batch_size)
    }

    /// [`Model::evaluate`] over any [`Examples`].
    pub fn evaluate_examples(&self, data: &dyn Examples, batch_size: usize) -> Result<(f64, f64)> {
        check_data(self.input_shape(), data, "evaluate")?;
        self.evaluate_on(&mut self.scratch(), data, None, batch_size)
    }

    /// The model's outputs for `x` (class probabilities after a softmax last
    /// layer), `[n, outputs]`, in inference mode, in batches of `batch_size`.
    pub fn predict(&self, x: &Tensor, batch_size: usize) -> Result<Tensor> {
        self.predict_examples(&XY::inputs(x), batch_size)
    }

    /// [`Model::predict`] over any [`Examples`] (targets, if any, are ignored).
    pub fn predict_examples(&self, data: &dyn Examples, batch_size: usize) -> Result<Tensor> {
        check_data(self.input_shape(), data, "predict")?;
        let n = data.len();
        let k: usize = self.output_shape().iter().product();
        let bs = batch_size.max(1).min(n);
        let mut buf = BatchBuf::new(self.input_shape(), bs, None);
        let mut out = Tensor::zeros(Shape::matrix(n, k));
        let mut scratch = self.scratch();
        let idx: Vec<usize> = (0..n).collect();
        for (ci, chunk) in idx.chunks(bs).enumerate() {
            let b = chunk.len();
            buf.fill(data, chunk, None)?;
            let y = self.infer(&mut scratch, &buf.x[..b * buf.item_len], b, false)?;
            out.data_mut()[ci * bs * k..(ci * bs + b) * k].copy_from_slice(y);
        }
        Ok(out)
    }
}

impl Model {
    /// Activation values per example: the input plus every layer's output
    /// (what [`Limits::max_activations`](crate::limits::Limits::max_activations) bounds). Multiply by the batch size
    /// and 4 bytes for one copy of a batch's activations.
    pub fn activations_per_example(&self) -> usize {
        let layers = self.layers();
        let input = crate::plan::elements(self.input_shape()).unwrap_or(usize::MAX);
        layers.iter().fold(input, |a, l| a.saturating_add(crate::plan::elements(&l.output).unwrap_or(usize::MAX)))
    }

    /// The largest batch size, at most `requested` and at least 1, whose
    /// inference activations (two buffers of the largest output per
    /// example, counted as twice the sum of all outputs) fit in
    /// `budget_bytes`.
    ///
    /// ```
    /// let model = convnet::mnist_convnet().build()?;
    /// assert_eq!(model.inference_batch(64, convnet::limits::INFERENCE_BATCH_BYTES), 64);
    /// assert_eq!(model.inference_batch(64, 1), 1);
    /// # Ok::<(), convnet::Error>(())
    /// ```
    pub fn inference_batch(&self, requested: usize, budget_bytes: u64) -> usize {
        let per_example = (self.activations_per_example() as u64).saturating_mul(8).max(1);
        let fits = usize::try_from(budget_bytes / per_example).unwrap_or(usize::MAX);
        requested.min(fits).max(1)
    }
}
