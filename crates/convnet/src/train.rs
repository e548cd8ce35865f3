//! `fit`: the Keras training loop on the autodiff tape.
//!
//! One training step: gather the batch into a reused buffer, record the
//! forward pass on a [`Tape`] (reset, not reallocated, between steps), the
//! loss, `backward` into the model's [`Params`](convnet_autodiff::Params),
//! then one optimizer update through `Params::update_with`. A softmax last
//! layer with categorical (or sparse) cross-entropy never computes the
//! softmax: the logits go to the fused, log-sum-exp softmax-cross-entropy op,
//! as Keras does with `from_logits`; a sigmoid last layer with binary
//! cross-entropy likewise goes to the fused logits form.
//!
//! The validation pass records no tape: it is `evaluate`'s (`evaluate.rs`),
//! on the tape-free engine in `infer.rs`; dropout is the identity there.
//!
//! The loss and accuracy shown per epoch are running means over the examples
//! seen so far in the epoch, weighted by batch size, as Keras prints them.

use crate::batch::{check_data, correct, BatchBuf, Running};
use crate::callbacks::{Callback, Control};
use crate::compile::Loss;
use crate::data::{Examples, TargetForm, XY};
use crate::layers::{conv_shape, Activation, Conv2D, Layer};
use crate::logs::{BatchLogs, EpochLogs, History};
use crate::model::Model;
use crate::profile::StepProfiler;
use crate::progress::Progbar;
use crate::{Error, Result};
use convnet_autodiff::{Conv2dSpec, PoolSpec, Tape, Var};
use convnet_kernels::activation::Activation as KernelActivation;
use convnet_kernels::conv::{self, ConvAlgo, ConvPass};
use convnet_tensor::{first_non_finite, Rng, Shape, Tensor, TensorView};
use std::io::IsTerminal;
use std::time::Instant;

/// How `fit` reports progress.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Verbose {
    /// Nothing.
    Silent,
    /// A live bar on a terminal, one line per epoch otherwise (the default).
    #[default]
    Auto,
    /// Always the live bar (carriage returns).
    Live,
    /// Always one line per epoch.
    Lines,
}

/// Options of [`Model::fit`] (Keras's keyword arguments).
pub struct FitOptions<'a> {
    /// Passes over the training data (default 1).
    pub epochs: usize,
    /// Examples per gradient step (default 32, as Keras).
    pub batch_size: usize,
    /// Reshuffle the training examples every epoch (default true).
    pub shuffle: bool,
    /// Seed of the shuffles and of dropout masks (default 0).
    pub seed: u64,
    /// Fraction of the examples, taken from the end before shuffling as
    /// Keras does, held out for validation (default 0).
    pub validation_split: f64,
    /// Separate validation examples (overrides `validation_split`).
    pub validation_data: Option<&'a dyn Examples>,
    /// Called after every batch and epoch (early stopping, checkpoints, closures).
    pub callbacks: Vec<Box<dyn Callback + 'a>>,
    /// Progress reporting.
    pub verbose: Verbose,
    /// Stop with an error when the loss, a gradient or a weight becomes NaN
    /// or infinite, naming the epoch and batch, with the model's weights
    /// left as they were after the last good step (default true). Checking
    /// costs one pass over the gradients and the weights and a copy of the
    /// weights per step: linear in the parameter count, where a step's
    /// forward and backward passes cost that times the batch size (and, for
    /// a convolution, its output pixels); not measured separately. Off: a
    /// batch whose loss is NaN or infinite is skipped (not learned from: the
    /// tape cannot differentiate it) and reported to the callbacks with that
    /// loss, and non-finite gradients and weights are not checked; add
    /// [`TerminateOnNaN`](crate::callbacks::TerminateOnNaN) to stop at the
    /// first such batch, as in Keras.
    pub check_finite: bool,
    /// Train data-parallel over this group of ranks (default `None`: this
    /// process alone): each rank computes its share of every batch and the
    /// gradients are summed in rank order, so every rank ends with the same
    /// weights; see [`crate::distributed`]. Every rank calls `fit` with the
    /// same model, seed, options and data; only rank 0 prints progress.
    pub distributed: Option<&'a mut dyn crate::distributed::Collective>,
    /// Time every layer's passes, the optimizer update and data loading,
    /// into [`History::profile`] (default false; see `profile.rs`). Off, it
    /// costs one branch per step and no clock reads.
    pub profile: bool,
    /// Split every batch into this many shards of consecutive examples
    /// (default [`DEFAULT_SHARDS`]; fewer when the batch has fewer
    /// examples): each shard runs its forward and backward pass on its own
    /// tape, into its own gradient buffers, one shard per rayon worker, and
    /// the shards' gradients, each weighted by its share of the batch, are
    /// added in shard order before the one optimizer update. The loss is the
    /// mean over the whole batch as before; the split depends on this
    /// number and never on the thread count, so a run is bit-identical on
    /// 1, 2 or 3 threads. Dropout masks and random augmentation are drawn
    /// per shard (shard 0 keeps the step's seed, the others mix in their
    /// index). 1: the whole batch on one tape, every kernel call split over
    /// the threads instead. See `docs/ALGORITHMS.md` and `docs/BENCHMARKS.md`
    /// (issue 13). At most [`MAX_SHARDS`]: every shard holds its own copy
    /// of the gradients, so the count is checked before they are allocated.
    pub shards: usize,
}

/// The most shards [`FitOptions::shards`] accepts. Each shard owns a full
/// set of gradient buffers (the model's trainable weights once more), so an
/// unchecked count from a command line would turn into that many copies;
/// the split pays for itself only up to a few shards per core.
pub const MAX_SHARDS: usize = 64;

/// [`FitOptions::shards`]' default: 2. On the chapter's model on 2 cores
/// (Dec 2, calm, alternated) the split step fits 5 epochs 10-23% faster
/// than one tape and scales 1.81-1.92x from the second core against the
/// one tape's 1.68-1.69x (`docs/BENCHMARKS.md`, issue 13); on 1 thread its
/// step is 1-6% slower than one tape's. A fixed number, not the thread
/// count, so a run gives the same bits on any number of threads; with more
/// threads than shards, each shard's kernels split over the threads left.
/// Set 1 for the one-tape step (a `--profile` whose rows add up to the
/// step's wall time).
pub const DEFAULT_SHARDS: usize = 2;

impl Default for FitOptions<'_> {
    fn default() -> Self {
        FitOptions {
            epochs: 1,
            batch_size: 32,
            shuffle: true,
            seed: 0,
            validation_split: 0.0,
            validation_data: None,
            callbacks: Vec::new(),
            verbose: Verbose::Auto,
            check_finite: true,
            distributed: None,
            profile: false,
            shards: DEFAULT_SHARDS,
        }
    }
}

impl Model {
    /// Records the forward pass of every layer on `tape`. With `logits`, the
    /// last layer's activation is left out (it is fused into the loss).
    pub(crate) fn forward(&self, tape: &mut Tape, h: Var, logits: bool, dropout_seed: u64) -> Result<Var> {
        self.forward_layers(tape, h, 0..self.layers.len(), logits, dropout_seed, false)
    }

    /// Records the forward pass of `layers` (a range of layer indices) on
    /// `tape`, from `h`, the input of the first of them. With `logits`, the
    /// activation of the range's last layer is left out. With `constants`
    /// (the gradients of `gradients.rs`), the weights are recorded as shared
    /// constants, so backward does no parameter work, and dropout and the random
    /// layers are the identity, as at inference.
    pub(crate) fn forward_layers(
        &self,
        tape: &mut Tape,
        mut h: Var,
        layers: std::ops::Range<usize>,
        logits: bool,
        dropout_seed: u64,
        constants: bool,
    ) -> Result<Var> {
        let last = layers.end.saturating_sub(1);
        let mut fused_until = 0;
        for (i, l) in self.layers.iter().enumerate().take(layers.end).skip(layers.start) {
            if i < fused_until {
                continue; // warped or pooled together with an earlier layer
            }
            tape.set_scope(i as u32); // the profiler's row for this layer
            let mut act = l.layer.activation();
            if i == last && logits {
                act = Activation::Linear;
            }
            // A frozen layer's weights go on the tape as constants, shared
            // with the model's parameters (no copy): no gradient is computed
            // for them, and when nothing below needs one either, none for
            // its input (the tape skips the whole op).
            let param = |tape: &mut Tape, k: usize| -> Result<Option<Var>> {
                let Some(&id) = l.params.get(k) else { return Ok(None) };
                // Trainable weights are shared with the tape too (no copy):
                // `fit` resets the tape before its optimizer update.
                let var = if l.trainable && !constants {
                    tape.param_shared(&self.params, id)?
                } else {
                    tape.constant(&self.params, id)?
                };
                Ok(Some(var))
            };
            h = match &l.layer {
                Layer::Conv2D(c) => {
                    // The model-wide algorithm is for dense convolutions.
                    let algo = c.algo.unwrap_or(if c.groups > 1 { ConvAlgo::Auto } else { self.algo });
                    let mut spec = Conv2dSpec::new()
                        .stride(c.strides.0, c.strides.1)
                        .padding(c.padding.into())
                        .groups(c.groups)
                        .algo(algo)
                        .backward_algo(self.backward_algo(c, algo, tape.shape(h)?)?);
                    if act == Activation::Relu {
                        spec = spec.relu();
                        act = Activation::Linear;
                    }
                    let w = param(tape, 0)?.expect("conv kernel");
                    let b = param(tape, 1)?;
                    // A 2x2 max pool next: one fused node when the tape can
                    // (the first layer: pooled map and argmax, no conv map).
                    let pool = self.layers.get(i + 1).filter(|_| i + 1 < layers.end).and_then(|p| match &p.layer {
                        Layer::MaxPooling2D(m) => Some(m),
                        _ => None,
                    });
                    let fused = match pool {
                        Some(m) if m.strides.unwrap_or(m.pool_size) == m.pool_size => {
                            let pool = PoolSpec::new(m.pool_size.0, m.pool_size.1).padding(m.padding.into());
                            tape.conv2d_max_pool2d(h, w, b, spec, pool)?
                        }
                        _ => None,
                    };
                    match fused {
                        Some(y) => {
                            fused_until = i + 2;
                            y
                        }
                        None => tape.conv2d(h, w, b, spec)?,
                    }
                }
                Layer::DepthwiseConv2D(d) => {
                    let (_, _, _, ch) = tape.shape(h)?.as_nhwc()?;
                    let mut spec = Conv2dSpec::new()
                        .stride(d.strides.0, d.strides.1)
                        .padding(d.padding.into())
                        .groups(ch)
                        .algo(d.algo.unwrap_or(ConvAlgo::Auto));
                    if act == Activation::Relu {
                        spec = spec.relu();
                        act = Activation::Linear;
                    }
                    let w = param(tape, 0)?.expect("depthwise kernel");
                    let b = param(tape, 1)?;
                    tape.conv2d(h, w, b, spec)?
                }
                Layer::SeparableConv2D(c) => {
                    let (_, _, _, ch) = tape.shape(h)?.as_nhwc()?;
                    let depthwise =
                        Conv2dSpec::new().stride(c.strides.0, c.strides.1).padding(c.padding.into()).groups(ch);
                    let mut pointwise = Conv2dSpec::new().algo(self.algo);
                    if act == Activation::Relu {
                        pointwise = pointwise.relu();
                        act = Activation::Linear;
                    }
                    let dw = param(tape, 0)?.expect("depthwise kernel");
                    let pw = param(tape, 1)?.expect("pointwise kernel");
                    let b = param(tape, 2)?;
                    let mid = tape.conv2d(h, dw, None, depthwise)?;
                    tape.conv2d(mid, pw, b, pointwise)?
                }
                Layer::MaxPooling2D(p) | Layer::AveragePooling2D(p) => {
                    let s = p.strides.unwrap_or(p.pool_size);
                    let spec = PoolSpec::new(p.pool_size.0, p.pool_size.1).stride(s.0, s.1).padding(p.padding.into());
                    if matches!(l.layer, Layer::MaxPooling2D(_)) {
                        tape.max_pool2d(h, spec)?
                    } else {
                        tape.avg_pool2d(h, spec)?
                    }
                }
                Layer::Flatten(_) => tape.flatten(h)?,
                Layer::GlobalAveragePooling2D(g) => {
                    let (n, _, _, ch) = tape.shape(h)?.as_nhwc()?;
                    let y = tape.global_avg_pool2d(h)?; // [n, c]
                    if g.keepdims {
                        tape.reshape(y, Shape::nhwc(n, 1, 1, ch))?
                    } else {
                        y
                    }
                }
                Layer::GlobalMaxPooling2D(g) => {
                    // A max pool whose window is the whole map: [n, 1, 1, c].
                    let (n, hh, ww, ch) = tape.shape(h)?.as_nhwc()?;
                    let y = tape.max_pool2d(h, PoolSpec::new(hh, ww))?;
                    if g.keepdims {
                        y
                    } else {
                        tape.reshape(y, Shape::matrix(n, ch))?
                    }
                }
                Layer::Dense(_) => {
                    let kact = if act == Activation::Relu {
                        act = Activation::Linear;
                        KernelActivation::Relu
                    } else {
                        KernelActivation::Linear
                    };
                    let w = param(tape, 0)?.expect("dense kernel");
                    let b = param(tape, 1)?;
                    tape.dense(h, w, b, kact)?
                }
                Layer::Dropout(_) if constants => h,
                Layer::Dropout(d) => {
                    tape.dropout(h, d.rate, dropout_seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))?
                }
                Layer::Rescaling(r) => rescale(tape, h, r.scale, r.offset, &l.name)?,
                Layer::RandomFlip(_)
                | Layer::RandomRotation(_)
                | Layer::RandomZoom(_)
                | Layer::RandomTranslation(_)
                | Layer::RandomShear(_) => {
                    if !tape.is_training() || constants {
                        h
                    } else {
                        let (out, end) = self.augment(tape, h, i, dropout_seed)?;
                        fused_until = end;
                        out
                    }
                }
            };
            h = match act {
                Activation::Linear => h,
                Activation::Relu => tape.relu(h)?,
                Activation::Sigmoid => tape.sigmoid(h)?,
                Activation::Tanh => tape.tanh(h)?,
                Activation::Softmax => tape.softmax(h)?,
            };
        }
        Ok(h)
    }

    /// Warps the batch `h` by the random layers from `first` on (a run of
    /// consecutive random layers with the same fill and interpolation is
    /// composed into one transform per image and resampled once); returns the
    /// warped batch and the index after the run.
    fn augment(&self, tape: &mut Tape, h: Var, first: usize, batch_seed: u64) -> Result<(Var, usize)> {
        if tape.requires_grad(h)? {
            return Err(Error::invalid(
                "layers",
                format!(
                    "{}: random augmentation layers must come before every layer with parameters",
                    self.layers[first].name
                ),
            ));
        }
        let (n, hh, ww, c) = tape.shape(h)?.as_nhwc()?;
        let seed_of = |k: usize| augment_seed(batch_seed, k);
        let (mut transforms, options) =
            crate::augment::transforms(self.layers[first].layer.as_random(), n, hh, ww, seed_of(first))
                .expect("a random layer");
        let mut end = first + 1;
        while let Some(next) = self.layers.get(end) {
            match crate::augment::transforms(next.layer.as_random(), n, hh, ww, seed_of(end)) {
                Some((t, o)) if o == options => {
                    for (a, b) in transforms.iter_mut().zip(t) {
                        *a = a.then(b);
                    }
                    end += 1;
                }
                _ => break,
            }
        }
        let x = tape.value(h)?;
        let shape = x.shape();
        let mut out = vec![0.0; x.data().len()];
        let warp_shape = convnet_kernels::image::WarpShape { n, h: hh, w: ww, c };
        convnet_kernels::image::affine_warp(x.data(), warp_shape, &transforms, options, &mut out)?;
        let view = convnet_tensor::TensorView::new(shape, &out).map_err(|e| Error::Data(e.to_string()))?;
        Ok((tape.input(view)?, end))
    }

    /// The algorithm of a conv layer's backward passes: the chosen one when
    /// it runs both backward passes of this shape, else `Auto`. (The forward
    /// pass always runs exactly the chosen algorithm, or fails.)
    fn backward_algo(&self, c: &Conv2D, algo: ConvAlgo, input: Shape) -> Result<ConvAlgo> {
        if algo == ConvAlgo::Auto {
            return Ok(algo);
        }
        let (n, h, w, ch) = input.as_nhwc()?;
        let shape = conv_shape(c, n, h, w, ch)?;
        let runs = |pass| conv::supports(algo, &shape, pass).is_ok();
        Ok(if runs(ConvPass::BackwardData) && runs(ConvPass::BackwardFilter) { algo } else { ConvAlgo::Auto })
    }

    /// The loss node for `out` (logits when fused) against the batch's targets.
    fn loss_node(&self, tape: &mut Tape, out: Var, buf: &BatchBuf, b: usize, form: TargetForm) -> Result<Var> {
        self.loss_node_rows(tape, out, &buf.y, &buf.labels, b, form)
    }

    /// [`Model::loss_node`] against the targets `y` (one-hot or values) or
    /// `labels` (sparse) of `b` examples: a shard of a batch.
    pub(crate) fn loss_node_rows(
        &self,
        tape: &mut Tape,
        out: Var,
        y: &[f32],
        labels: &[u32],
        b: usize,
        form: TargetForm,
    ) -> Result<Var> {
        let c = self.compiled("fit or evaluate")?;
        let w = form.width();
        tape.set_scope(self.layers.len() as u32); // the profiler's `loss` row
        Ok(match c.loss {
            Loss::SparseCategoricalCrossentropy => tape.sparse_softmax_cross_entropy(out, &labels[..b])?,
            Loss::CategoricalCrossentropy => {
                let t = tape.input(TensorView::new(Shape::matrix(b, w), &y[..b * w])?)?;
                tape.softmax_cross_entropy(out, t)?
            }
            Loss::BinaryCrossentropy => {
                let t = tape.input(TensorView::new(Shape::matrix(b, w), &y[..b * w])?)?;
                if c.logits {
                    tape.binary_cross_entropy_with_logits(out, t)?
                } else {
                    tape.binary_cross_entropy(out, t)?
                }
            }
        })
    }

    /// Trains on `x`, `y` (Keras's `model.fit(x, y, ...)`); see [`Model::fit_examples`].
    pub fn fit(&mut self, x: &Tensor, y: &Tensor, options: FitOptions<'_>) -> Result<History> {
        self.fit_examples(&XY::new(x, y)?, options)
    }

    /// Trains on any [`Examples`] (such as an MNIST `Dataset`, converted per
    /// batch) for `options.epochs` epochs, printing Keras's progress bar.
    pub fn fit_examples(&mut self, data: &dyn Examples, mut options: FitOptions<'_>) -> Result<History> {
        let form = self.compiled("fit or evaluate")?.target_form();
        check_data(self.input_shape(), data, "fit")?;
        if options.batch_size == 0 {
            return Err(Error::invalid("batch_size", "must be at least 1"));
        }
        if options.shards == 0 || options.shards > MAX_SHARDS {
            return Err(Error::invalid("shards", format!("must be 1 to {MAX_SHARDS}, got {}", options.shards)));
        }
        if options.epochs == 0 {
            return Ok(History::default());
        }
        if !(0.0..1.0).contains(&options.validation_split) {
            return Err(Error::invalid(
                "validation_split",
                format!("must be in [0, 1), got {}", options.validation_split),
            ));
        }
        let n = data.len();
        let n_val =
            if options.validation_data.is_some() { 0 } else { (n as f64 * options.validation_split).round() as usize };
        let n_train = n - n_val;
        if n_train == 0 {
            return Err(Error::invalid("validation_split", "leaves no training examples"));
        }
        let val_indices: Vec<usize> = (n_train..n).collect();
        if let Some(v) = options.validation_data {
            check_data(self.input_shape(), v, "validation_data")?;
        }
        let has_val = options.validation_data.is_some() || n_val > 0;
        let bs = options.batch_size.min(n_train);
        let steps = n_train.div_ceil(bs);
        let mut order: Vec<usize> = (0..n_train).collect();
        let mut rng = Rng::new(options.seed);
        let mut buf = BatchBuf::new(self.input_shape(), bs, Some(form));
        let mut tape = Tape::new();
        // The batch size the tape's pooled buffers were sized for.
        let mut tape_batch = bs;
        // Parameters of frozen layers, by index: the optimizer skips them.
        // Their gradients are never computed, so their buffers are released
        // (a layer trained before and frozen now): no gradient memory, no
        // optimizer state, and `update_with` does not visit their values.
        // Every trainable parameter gets its buffer now, so the optimizer
        // updates each of them every step, as Keras does (also a step whose
        // loss did not reach one, or a data-parallel rank that had no
        // examples in a batch: ranks stay alike).
        let mut frozen = vec![false; self.params.len()];
        for l in &self.layers {
            for &id in &l.params {
                frozen[id.index()] = !l.trainable;
                if l.trainable {
                    self.params.ensure_grad(id)?;
                } else {
                    self.params.release_grad(id)?;
                }
            }
        }
        // The batch split by examples (`shards.rs`); one shard: the one tape above.
        // No more shards than examples in a batch: the extra ones would never run.
        let mut shards = crate::shards::Shards::new(&self.params, options.shards.min(bs), options.profile);
        let mut profiler = match options.profile {
            true => Some(StepProfiler::new(&mut tape, self.compiled("fit")?.optimizer_name)),
            false => None,
        };
        let accuracy = self.compiled.as_ref().is_some_and(|c| c.accuracy);
        let mut dp = match options.distributed.take() {
            Some(group) => Some(self.start_data_parallel(group, data, &options, &frozen, form)?),
            None => None,
        };
        if dp.as_ref().is_some_and(|d| d.rank() != 0) {
            options.verbose = Verbose::Silent; // rank 0 reports
        }
        let live = match options.verbose {
            Verbose::Silent => None,
            Verbose::Auto => Some(std::io::stdout().is_terminal()),
            Verbose::Live => Some(true),
            Verbose::Lines => Some(false),
        };
        let mut history = History::default();
        let mut callbacks = std::mem::take(&mut options.callbacks);
        let check = options.check_finite;
        // The weights before the step in progress (reused buffer), to put
        // back if the update makes one non-finite.
        let mut last_good: Vec<f32> = Vec::new();
        'epochs: for epoch in 1..=options.epochs {
            let started = Instant::now();
            if live.is_some() {
                println!("Epoch {epoch}/{}", options.epochs);
            }
            let mut bar = live.map(|l| Progbar::new(std::io::stdout(), steps, l));
            if options.shuffle {
                rng.shuffle(&mut order);
            }
            let mut run = Running::default();
            for (bi, batch) in order.chunks(bs).enumerate() {
                // Data-parallel: this rank's share of the batch, and how many of its examples count.
                let (idx, counted) = dp.as_ref().map_or((batch, batch.len()), |d| d.shard(batch));
                let b = idx.len();
                let clock = profiler.as_mut().map(|p| {
                    p.begin();
                    Instant::now()
                });
                buf.fill(data, idx, Some(form))?;
                if let (Some(p), Some(t)) = (profiler.as_mut(), clock) {
                    p.add(0, t);
                }
                let fused = self.compiled.as_ref().is_some_and(|c| c.fused);
                let mut step_seed =
                    options.seed ^ ((epoch as u64) << 32 | bi as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
                if let Some(d) = &dp {
                    step_seed = d.step_seed(step_seed);
                }
                let sharded = shards.count_for(b) > 1;
                let (mut loss, mut batch_correct, loss_var) = if sharded {
                    // Forward, loss and backward of every shard, then the
                    // gradients summed into the parameters' own (zeros when
                    // the loss is not finite: nothing to learn from).
                    let (loss, correct) = shards.step(self, &buf, b, form, fused, accuracy, step_seed)?;
                    if loss.is_finite() {
                        shards.sum_into(&mut self.params, b)?;
                        self.last_backward = shards.work();
                    } else {
                        self.params.zero_grad();
                    }
                    (loss, correct, None)
                } else {
                    if b != tape_batch {
                        // The tape pools its buffers by exact length, so the
                        // smaller last batch of an epoch would allocate a second
                        // set of activations beside the idle full-size set (on
                        // the small-data model at batch 32, peak RSS 897 MB
                        // instead of 700 MB). A fresh tape frees the idle set
                        // first; the next epoch's first batch refills it.
                        tape = Tape::new();
                        tape.set_profiling(profiler.is_some());
                        tape_batch = b;
                    }
                    tape.reset();
                    self.params.zero_grad();
                    let x = tape.input(TensorView::new(buf.shape(b)?, &buf.x[..b * buf.item_len])?)?;
                    let out = self.forward(&mut tape, x, fused, step_seed)?;
                    let loss_var = self.loss_node(&mut tape, out, &buf, b, form)?;
                    let mut batch_correct = 0.0;
                    if accuracy {
                        let c = self.compiled("fit")?;
                        batch_correct = correct(c, tape.value(out)?.data(), &buf, b, form);
                    }
                    (tape.scalar(loss_var)?, batch_correct, Some(loss_var))
                };
                let mut b = b;
                if let Some(d) = dp.as_mut() {
                    // Every rank differentiates its share, then the shares are
                    // summed: from here on every rank holds the global batch's
                    // loss and gradients, and decides alike.
                    if let (true, Some(v)) = (loss.is_finite(), loss_var) {
                        tape.backward(v, &mut self.params)?;
                        self.last_backward = tape.backward_work();
                    }
                    let clock = profiler.as_ref().map(|_| Instant::now());
                    let (loss_sum, correct_sum, global) =
                        d.reduce_step(&self.params, counted, batch.len(), loss, batch_correct)?;
                    if let (Some(p), Some(t)) = (profiler.as_mut(), clock) {
                        p.add(3, t);
                    }
                    (b, batch_correct) = (global, correct_sum);
                    loss = (loss_sum / global as f64) as f32;
                }
                if check && !loss.is_finite() {
                    return Err(Error::NonFiniteLoss { value: loss, epoch, batch: bi + 1 });
                }
                // With the check off, a batch whose loss is not finite is not
                // learned from (the tape cannot differentiate it) but is
                // reported to the callbacks (TerminateOnNaN stops there).
                if loss.is_finite() {
                    if let (None, Some(v)) = (&dp, loss_var) {
                        tape.backward(v, &mut self.params)?;
                        self.last_backward = tape.backward_work();
                    }
                    // The tape shares the weights (no copy); released here,
                    // the update below writes them in place.
                    tape.reset();
                    let clock = profiler.as_ref().map(|_| Instant::now());
                    if check {
                        match &dp {
                            Some(d) => {
                                if let Some(what) = d.non_finite_gradient(&self.params) {
                                    return Err(Error::NonFiniteParameter { what, epoch, batch: bi + 1 });
                                }
                            }
                            None => self.check_grads_finite(epoch, bi + 1)?,
                        }
                        snapshot_weights(self, &frozen, &mut last_good);
                    }
                    if let (Some(p), Some(t)) = (profiler.as_mut(), clock) {
                        p.add(2, t);
                    }
                    let clock = profiler.as_ref().map(|_| Instant::now());
                    let c = self.compiled.as_mut().ok_or(Error::NotCompiled("fit"))?;
                    let opt = c.optimizer_mut();
                    opt.begin_step()?;
                    let frozen = &frozen;
                    let dp = &dp;
                    self.params.update_with(|i, w, g| match (frozen[i], dp) {
                        (true, _) => Ok(()),
                        (false, Some(d)) => opt.update(i, w, d.gradient(i).unwrap_or(g)),
                        (false, None) => opt.update(i, w, g),
                    })?;
                    if let (Some(p), Some(t)) = (profiler.as_mut(), clock) {
                        p.add(1, t);
                    }
                    let clock = profiler.as_ref().map(|_| Instant::now());
                    if check {
                        self.check_weights_finite(epoch, bi + 1, frozen, &last_good)?;
                    }
                    if let (Some(p), Some(t)) = (profiler.as_mut(), clock) {
                        p.add(2, t);
                    }
                }
                run.loss += loss as f64 * b as f64;
                run.seen += b;
                run.correct += batch_correct;
                let metrics = epoch_metrics(&run, accuracy, None);
                if let Some(bar) = bar.as_mut() {
                    bar.update(bi + 1, &metrics);
                }
                if let Some(p) = profiler.as_mut() {
                    for t in shards.tapes_mut() {
                        p.absorb(t);
                    }
                    p.end(&mut tape);
                }
                let logs = BatchLogs {
                    epoch,
                    batch: bi + 1,
                    batch_loss: loss as f64,
                    loss: run.loss(),
                    accuracy: accuracy.then(|| run.accuracy()),
                };
                for cb in callbacks.iter_mut() {
                    if cb.on_batch_end(&logs)? == Control::Stop {
                        history.epochs.push(EpochLogs {
                            epoch,
                            loss: run.loss(),
                            accuracy: accuracy.then(|| run.accuracy()),
                            seconds: started.elapsed().as_secs_f64(),
                            ..EpochLogs::default()
                        });
                        break 'epochs;
                    }
                }
            }
            let val = if has_val {
                let (l, a) = match (options.validation_data, dp.as_mut()) {
                    (Some(v), None) => self.evaluate_on(v, None, bs.max(64))?,
                    (None, None) => self.evaluate_on(data, Some(&val_indices), bs.max(64))?,
                    (v, Some(d)) => {
                        // Each rank evaluates its block; the sums are added in rank order.
                        let all: Vec<usize>;
                        let (set, idx) = match v {
                            Some(v) => {
                                all = (0..v.len()).collect();
                                (v, &all[..])
                            }
                            None => (data, &val_indices[..]),
                        };
                        let own = d.block(idx);
                        let local = self.evaluate_on(set, Some(own), bs.max(64))?;
                        d.reduce_validation(local, own.len())?
                    }
                };
                Some((l, a))
            } else {
                None
            };
            let logs = EpochLogs {
                epoch,
                loss: run.loss(),
                accuracy: accuracy.then(|| run.accuracy()),
                val_loss: val.map(|v| v.0),
                val_accuracy: if accuracy { val.map(|v| v.1) } else { None },
                seconds: started.elapsed().as_secs_f64(),
            };
            if let Some(bar) = bar.as_mut() {
                bar.finish(&epoch_metrics(&run, accuracy, val.map(|v| (v.0, v.1))));
            }
            history.epochs.push(logs.clone());
            let mut stop = false;
            for cb in callbacks.iter_mut() {
                stop |= cb.on_epoch_end(&logs, self)? == Control::Stop;
            }
            if stop {
                break;
            }
        }
        for cb in callbacks.iter_mut() {
            cb.on_train_end(self)?;
        }
        history.profile = profiler.map(|p| p.report(self));
        Ok(history)
    }
}

/// Copies every weight the optimizer may change (not `frozen`), in parameter
/// order, into `buf` (reused): frozen weights cannot change in a step, so
/// fine-tuning VGG16 from block 5 copies 37 MB per step, not 67 MB.
fn snapshot_weights(model: &Model, frozen: &[bool], buf: &mut Vec<f32>) {
    buf.clear();
    for (id, _, value, _) in model.params.iter() {
        if !frozen[id.index()] {
            buf.extend_from_slice(value.data());
        }
    }
}

impl Model {
    /// `Err` naming the first parameter whose gradient holds a NaN or an
    /// infinity; checked before the update, so the weights stay good.
    fn check_grads_finite(&self, epoch: usize, batch: usize) -> Result<()> {
        for (_, name, _, grad) in self.params.iter() {
            if let Some(v) = grad.and_then(|g| first_non_finite(g.data())) {
                return Err(Error::NonFiniteParameter {
                    what: format!("the gradient of {name} holds {v}"),
                    epoch,
                    batch,
                });
            }
        }
        Ok(())
    }

    /// After an update: `Err` naming the first weight that became NaN or
    /// infinite, with every weight that is not `frozen` first put back from
    /// `last_good` (the copy taken before the update).
    fn check_weights_finite(&mut self, epoch: usize, batch: usize, frozen: &[bool], last_good: &[f32]) -> Result<()> {
        let bad = self
            .params
            .iter()
            .filter(|(id, ..)| !frozen[id.index()])
            .find_map(|(_, name, value, _)| first_non_finite(value.data()).map(|v| format!("{name} became {v}")));
        let Some(what) = bad else { return Ok(()) };
        let ids: Vec<_> = self.params.ids().filter(|id| !frozen[id.index()]).collect();
        let mut offset = 0;
        for id in ids {
            let value = self.params.value_mut(id)?.data_mut();
            let n = value.len();
            value.copy_from_slice(&last_good[offset..offset + n]);
            offset += n;
        }
        Err(Error::NonFiniteParameter { what, epoch, batch })
    }
}

fn epoch_metrics(run: &Running, accuracy: bool, val: Option<(f64, f64)>) -> Vec<(&'static str, f64)> {
    let mut m = vec![("loss", run.loss())];
    if accuracy {
        m.push(("accuracy", run.accuracy()));
    }
    if let Some((l, a)) = val {
        m.push(("val_loss", l));
        if accuracy {
            m.push(("val_accuracy", a));
        }
    }
    m
}

/// `x * scale + offset` on the tape: a new input when `x` needs no gradient
/// (the usual first layer), else products and sums the gradient flows through.
fn rescale(tape: &mut Tape, x: Var, scale: f32, offset: f32, name: &str) -> Result<Var> {
    let shape = tape.shape(x)?;
    let value = tape.value(x)?;
    if !tape.requires_grad(x)? {
        let out: Vec<f32> = value.data().iter().map(|&v| v * scale + offset).collect();
        let view = convnet_tensor::TensorView::new(shape, &out).map_err(|e| Error::Data(format!("{name}: {e}")))?;
        return Ok(tape.input(view)?);
    }
    let len = value.data().len();
    let scales = vec![scale; len];
    let offsets = vec![offset; len];
    let s = tape.input(convnet_tensor::TensorView::new(shape, &scales).map_err(|e| Error::Data(e.to_string()))?)?;
    let o = tape.input(convnet_tensor::TensorView::new(shape, &offsets).map_err(|e| Error::Data(e.to_string()))?)?;
    let scaled = tape.mul(x, s)?;
    Ok(tape.add(scaled, o)?)
}

/// The seed of random layer `layer`'s draws in the batch of `batch_seed`.
pub(crate) fn augment_seed(batch_seed: u64, layer: usize) -> u64 {
    batch_seed ^ (layer as u64 + 1).wrapping_mul(0xA24B_AED4_963E_E407)
}

#[cfg(test)]
mod tests {
    use crate::layers::Activation::{Relu, Sigmoid, Softmax, Tanh};
    use crate::{
        AveragePooling2D, Conv2D, Dense, Dropout, Flatten, FlipMode, MaxPooling2D, Padding, RandomFlip, RandomRotation,
        RandomTranslation, RandomZoom, Rescaling, Sequential,
    };
    use convnet_autodiff::Tape;
    use convnet_tensor::{Rng, Shape, Tensor};

    /// The tape-free inference pass gives the tape's forward pass bit for bit.
    #[test]
    fn inference_path_matches_the_tape() {
        let models = [
            crate::mnist_convnet().build().unwrap(),
            Sequential::new()
                .add(Conv2D::new(3, 3).activation(Tanh).padding(Padding::Same).input_shape((7, 7, 2)))
                .add(AveragePooling2D::new(2).padding(Padding::Same))
                .add(Conv2D::new(4, (2, 2)).strides(2).use_bias(false))
                .add(Flatten::new())
                .add(Dropout::new(0.5))
                .add(Dense::new(5).activation(Sigmoid))
                .add(Dense::new(3).activation(Softmax))
                .build()
                .unwrap(),
            Sequential::new()
                .add(Flatten::new().input_shape((2, 3, 1)))
                .add(Dense::new(4).activation(Relu))
                .add(Dropout::new(0.1))
                .add(Dense::new(2))
                .build()
                .unwrap(),
            Sequential::new()
                .add(MaxPooling2D::new(2).strides(1).input_shape((3, 3, 2)))
                .add(Flatten::new())
                .add(Dense::new(2).activation(Softmax))
                .build()
                .unwrap(),
        ];
        for model in &models {
            let mut rng = Rng::new(5);
            let mut dims = vec![3];
            dims.extend_from_slice(model.input_shape());
            let x = Tensor::uniform(Shape::new(&dims).unwrap(), -1.0, 1.0, &mut rng).unwrap();
            for logits in [false, true] {
                let mut tape = Tape::inference();
                let v = tape.input(x.view()).unwrap();
                let y = model.forward(&mut tape, v, logits, 0).unwrap();
                let taped: Vec<u32> = tape.value(y).unwrap().data().iter().map(|v| v.to_bits()).collect();
                let mut s = crate::infer::Scratch::default();
                let direct: Vec<u32> =
                    model.infer(&mut s, x.data(), 3, logits).unwrap().iter().map(|v| v.to_bits()).collect();
                assert_eq!(taped, direct, "{} logits={logits}", model.summary());
            }
        }
    }

    /// Random layers: identity at inference, active and deterministic per
    /// seed in training, one fused warp for a run of them, refused after a
    /// layer with parameters; Rescaling in both.
    #[test]
    fn augmentation_layers() {
        let model = Sequential::new()
            .add(RandomFlip::new(FlipMode::Horizontal).input_shape((6, 9, 3)))
            .add(RandomRotation::new(0.1))
            .add(RandomZoom::new(0.2))
            .add(RandomTranslation::new(0.1, 0.2))
            .add(Rescaling::new(0.5, 1.0))
            .build()
            .unwrap();
        assert_eq!(model.params().len(), 0);
        let mut rng = Rng::new(5);
        let x = Tensor::uniform(Shape::new(&[4, 6, 9, 3]).unwrap(), 0.0, 255.0, &mut rng).unwrap();
        let rescaled: Vec<u32> = x.data().iter().map(|&v| (v * 0.5 + 1.0).to_bits()).collect();
        let bits = |tape: &Tape, y| -> Vec<u32> { tape.value(y).unwrap().data().iter().map(|v| v.to_bits()).collect() };
        // Inference: the random layers are the identity, on the tape and off it.
        let mut tape = Tape::inference();
        let v = tape.input(x.view()).unwrap();
        let y = model.forward(&mut tape, v, false, 9).unwrap();
        assert_eq!(bits(&tape, y), rescaled);
        let mut s = crate::infer::Scratch::default();
        let direct: Vec<u32> = model.infer(&mut s, x.data(), 4, false).unwrap().iter().map(|v| v.to_bits()).collect();
        assert_eq!(direct, rescaled);
        // Training: the batch is warped, the same way for the same seed.
        let train = |seed: u64| {
            let mut tape = Tape::new();
            let v = tape.input(x.view()).unwrap();
            let y = model.forward(&mut tape, v, false, seed).unwrap();
            bits(&tape, y)
        };
        assert_eq!(train(3), train(3));
        assert_ne!(train(3), train(4));
        assert_ne!(train(3), rescaled);
        // ... by one warp with the four layers' transforms composed.
        let mut composed = vec![convnet_kernels::image::Affine::IDENTITY; 4];
        let mut options = None;
        for k in 0..4 {
            let (t, o) =
                crate::augment::transforms(model.layers[k].layer.as_random(), 4, 6, 9, super::augment_seed(3, k))
                    .unwrap();
            options = Some(o);
            for (a, b) in composed.iter_mut().zip(t) {
                *a = a.then(b);
            }
        }
        let mut warped = vec![0.0; x.data().len()];
        let shape = convnet_kernels::image::WarpShape { n: 4, h: 6, w: 9, c: 3 };
        convnet_kernels::image::affine_warp(x.data(), shape, &composed, options.unwrap(), &mut warped).unwrap();
        let want: Vec<u32> = warped.iter().map(|&v| (v * 0.5 + 1.0).to_bits()).collect();
        assert_eq!(train(3), want);
        // Rescaling after a layer with parameters: on the tape's products
        // and sums, the same values as the inference pass.
        let scaled = Sequential::new()
            .add(Conv2D::new(2, 3).input_shape((6, 6, 1)))
            .add(Rescaling::new(2.0, 1.0))
            .build()
            .unwrap();
        let xs = Tensor::uniform(Shape::new(&[2, 6, 6, 1]).unwrap(), 0.0, 1.0, &mut rng).unwrap();
        let mut tape = Tape::new();
        let v = tape.input(xs.view()).unwrap();
        let y = scaled.forward(&mut tape, v, false, 1).unwrap();
        assert!(tape.requires_grad(y).unwrap());
        let direct: Vec<u32> = scaled.infer(&mut s, xs.data(), 2, false).unwrap().iter().map(|v| v.to_bits()).collect();
        assert_eq!(bits(&tape, y), direct);
        // After a layer with parameters: refused, with the layer named.
        let late = Sequential::new()
            .add(Conv2D::new(2, 3).input_shape((6, 6, 1)))
            .add(RandomRotation::new(0.2).name("spin"))
            .build()
            .unwrap();
        let xs = Tensor::uniform(Shape::new(&[2, 6, 6, 1]).unwrap(), 0.0, 1.0, &mut rng).unwrap();
        let mut tape = Tape::new();
        let v = tape.input(xs.view()).unwrap();
        let err = late.forward(&mut tape, v, false, 1).unwrap_err().to_string();
        assert!(err.contains("spin") && err.contains("before every layer with parameters"), "{err}");
    }
}
