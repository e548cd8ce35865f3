//! `compile`, `fit`, `evaluate`, `predict`: the Keras training loop on the
//! autodiff tape.
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
//! `evaluate` and `predict` record no tape: they call the same kernels
//! directly on reused activation buffers (see `infer.rs`); dropout is the identity.
//!
//! The loss and accuracy shown per epoch are running means over the examples
//! seen so far in the epoch, weighted by batch size, as Keras prints them.

use crate::callbacks::{Callback, Control};
use crate::data::{Examples, TargetForm, XY};
use crate::infer::Scratch;
use crate::layers::{Activation, Layer};
use crate::model::Model;
use crate::progress::Progbar;
use crate::{Error, Result};
use convnet_autodiff::{Conv2dSpec, PoolSpec, Tape, Var};
use convnet_kernels::activation::Activation as KernelActivation;
use convnet_kernels::conv::{self, ConvAlgo, ConvPass};
use convnet_optim::Optimizer;
use convnet_tensor::{Rng, Shape, Tensor, TensorView};
use std::io::IsTerminal;
use std::time::Instant;

/// Loss functions (Keras names). A softmax (or, for binary, sigmoid) last
/// layer is fused into the loss; a linear last layer is taken as logits
/// (Keras's `from_logits=True`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loss {
    /// `categorical_crossentropy`: one-hot targets `[n, classes]`.
    CategoricalCrossentropy,
    /// `sparse_categorical_crossentropy`: class-index targets `[n]`.
    SparseCategoricalCrossentropy,
    /// `binary_crossentropy`: targets in `[0, 1]`, same shape as the output.
    BinaryCrossentropy,
}

impl Loss {
    /// Keras's name.
    pub fn name(self) -> &'static str {
        match self {
            Loss::CategoricalCrossentropy => "categorical_crossentropy",
            Loss::SparseCategoricalCrossentropy => "sparse_categorical_crossentropy",
            Loss::BinaryCrossentropy => "binary_crossentropy",
        }
    }
}

/// Metrics reported besides the loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// Fraction of examples whose arg-max matches the target's (binary: of
    /// outputs on the right side of 0.5), Keras's `"accuracy"`.
    Accuracy,
}

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

pub(crate) struct Compiled {
    pub(crate) optimizer: Box<dyn Optimizer + Send>,
    pub(crate) loss: Loss,
    pub(crate) accuracy: bool,
    /// Whether the last layer's activation is folded into the loss.
    pub(crate) fused: bool,
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
}

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
        }
    }
}

/// Metrics of one epoch.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EpochLogs {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean training loss over the epoch (weighted by batch size).
    pub loss: f64,
    /// Mean training accuracy, if compiled with [`Metric::Accuracy`].
    pub accuracy: Option<f64>,
    /// Validation loss, when there is validation data.
    pub val_loss: Option<f64>,
    /// Validation accuracy, when there is validation data and the metric.
    pub val_accuracy: Option<f64>,
    /// Wall time of the epoch (training and validation).
    pub seconds: f64,
}

/// Running metrics after one batch, given to [`Callback::on_batch_end`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchLogs {
    /// 1-based epoch.
    pub epoch: usize,
    /// 1-based batch within the epoch.
    pub batch: usize,
    /// Loss of this batch.
    pub batch_loss: f64,
    /// Running mean loss of the epoch so far.
    pub loss: f64,
    /// Running mean accuracy of the epoch so far.
    pub accuracy: Option<f64>,
}

/// What `fit` returns: the metrics of every epoch run (Keras's `History`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct History {
    /// One entry per epoch, in order.
    pub epochs: Vec<EpochLogs>,
}

impl History {
    /// Training loss per epoch.
    pub fn loss(&self) -> Vec<f64> {
        self.epochs.iter().map(|e| e.loss).collect()
    }
    /// Training accuracy per epoch (empty without the metric).
    pub fn accuracy(&self) -> Vec<f64> {
        self.epochs.iter().filter_map(|e| e.accuracy).collect()
    }
    /// Validation loss per epoch (empty without validation data).
    pub fn val_loss(&self) -> Vec<f64> {
        self.epochs.iter().filter_map(|e| e.val_loss).collect()
    }
    /// Validation accuracy per epoch.
    pub fn val_accuracy(&self) -> Vec<f64> {
        self.epochs.iter().filter_map(|e| e.val_accuracy).collect()
    }
}

/// Sums of a pass over examples: loss and correct predictions, weighted by count.
#[derive(Clone, Copy, Debug, Default)]
struct Running {
    loss: f64,
    correct: f64,
    seen: usize,
}

impl Running {
    fn loss(&self) -> f64 {
        self.loss / self.seen.max(1) as f64
    }
    fn accuracy(&self) -> f64 {
        self.correct / self.seen.max(1) as f64
    }
}

/// Reused batch buffers: inputs, targets, sparse labels.
struct BatchBuf {
    x: Vec<f32>,
    y: Vec<f32>,
    labels: Vec<u32>,
    /// Outputs of an inference batch (evaluate).
    out: Vec<f32>,
    item_shape: Vec<usize>,
    item_len: usize,
}

impl BatchBuf {
    fn new(model: &Model, batch: usize, form: Option<TargetForm>) -> Self {
        let item_shape = model.input_shape().to_vec();
        let item_len = item_shape.iter().product();
        BatchBuf {
            x: vec![0.0; batch * item_len],
            y: vec![0.0; form.map_or(0, |f| batch * f.width())],
            labels: Vec::with_capacity(batch),
            out: Vec::new(),
            item_shape,
            item_len,
        }
    }

    fn shape(&self, b: usize) -> Result<Shape> {
        let mut d = Vec::with_capacity(4);
        d.push(b);
        d.extend_from_slice(&self.item_shape);
        Ok(Shape::new(&d)?)
    }

    fn fill(&mut self, data: &dyn Examples, idx: &[usize], form: Option<TargetForm>) -> Result<()> {
        let b = idx.len();
        match form {
            Some(f) => {
                let w = f.width();
                data.gather(idx, &mut self.x[..b * self.item_len], Some((&mut self.y[..b * w], f)))?;
                if let TargetForm::Index(_) = f {
                    self.labels.clear();
                    self.labels.extend(self.y[..b].iter().map(|&v| v as u32));
                }
            }
            None => data.gather(idx, &mut self.x[..b * self.item_len], None)?,
        }
        Ok(())
    }
}

fn check_data(model: &Model, data: &dyn Examples, what: &str) -> Result<()> {
    if data.input_shape() != model.input_shape() {
        return Err(Error::Data(format!(
            "{what}: examples have shape {:?} but the model takes {:?}",
            data.input_shape(),
            model.input_shape()
        )));
    }
    if data.is_empty() {
        return Err(Error::Data(format!("{what}: no examples")));
    }
    Ok(())
}

fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best
}

impl Model {
    /// Configures training: the optimizer, the loss and the metrics (Keras's
    /// `compile`). Checks that the loss fits the last layer.
    pub fn compile(
        &mut self,
        optimizer: impl Optimizer + Send + 'static,
        loss: Loss,
        metrics: &[Metric],
    ) -> Result<()> {
        let last = &self.layers[self.layers.len() - 1];
        if last.output.len() != 1 {
            return Err(Error::invalid(
                "loss",
                format!("{} needs a flat output (units,), the model outputs {:?}", loss.name(), last.output),
            ));
        }
        let act = last.layer.activation();
        let fused = match (loss, act) {
            (Loss::CategoricalCrossentropy | Loss::SparseCategoricalCrossentropy, Activation::Softmax) => true,
            (Loss::CategoricalCrossentropy | Loss::SparseCategoricalCrossentropy, Activation::Linear) => false,
            (Loss::CategoricalCrossentropy | Loss::SparseCategoricalCrossentropy, other) => {
                return Err(Error::invalid(
                    "loss",
                    format!(
                        "{} needs a softmax (or linear, read as logits) last layer, {} ends in {}",
                        loss.name(),
                        last.name,
                        other.name()
                    ),
                ))
            }
            (Loss::BinaryCrossentropy, Activation::Sigmoid) => true,
            (Loss::BinaryCrossentropy, _) => false,
        };
        self.compiled = Some(Compiled {
            optimizer: Box::new(optimizer),
            loss,
            accuracy: metrics.contains(&Metric::Accuracy),
            fused,
        });
        Ok(())
    }

    fn target_form(&self) -> Result<TargetForm> {
        let c = self.compiled.as_ref().ok_or(Error::NotCompiled("fit or evaluate"))?;
        let k = self.output_shape()[0];
        Ok(match c.loss {
            Loss::CategoricalCrossentropy => TargetForm::OneHot(k),
            Loss::SparseCategoricalCrossentropy => TargetForm::Index(k),
            Loss::BinaryCrossentropy => TargetForm::Values(k),
        })
    }

    /// Records the forward pass of every layer on `tape`. With `logits`, the
    /// last layer's activation is left out (it is fused into the loss).
    fn forward(&self, tape: &mut Tape, mut h: Var, logits: bool, dropout_seed: u64) -> Result<Var> {
        let last = self.layers.len() - 1;
        for (i, l) in self.layers.iter().enumerate() {
            let mut act = l.layer.activation();
            if i == last && logits {
                act = Activation::Linear;
            }
            let param = |tape: &mut Tape, k: usize| -> Result<Option<Var>> {
                l.params.get(k).map(|&id| tape.param(&self.params, id)).transpose().map_err(Error::from)
            };
            h = match &l.layer {
                Layer::Conv2D(c) => {
                    let algo = c.algo.unwrap_or(self.algo);
                    let mut spec = Conv2dSpec::new()
                        .stride(c.strides.0, c.strides.1)
                        .padding(c.padding.into())
                        .algo(algo)
                        .backward_algo(self.backward_algo(c, algo, tape.shape(h)?)?);
                    if act == Activation::Relu {
                        spec = spec.relu();
                        act = Activation::Linear;
                    }
                    let w = param(tape, 0)?.expect("conv kernel");
                    let b = param(tape, 1)?;
                    tape.conv2d(h, w, b, spec)?
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
                Layer::Dropout(d) => {
                    tape.dropout(h, d.rate, dropout_seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))?
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

    /// The algorithm of a conv layer's backward passes: the chosen one when
    /// it runs both backward passes of this shape, else `Auto`. (The forward
    /// pass always runs exactly the chosen algorithm, or fails.)
    fn backward_algo(&self, c: &crate::layers::Conv2D, algo: ConvAlgo, input: Shape) -> Result<ConvAlgo> {
        if algo == ConvAlgo::Auto {
            return Ok(algo);
        }
        let (n, h, w, ch) = input.as_nhwc()?;
        let shape = crate::layers::conv_shape(c, n, h, w, ch)?;
        let runs = |pass| conv::supports(algo, &shape, pass).is_ok();
        Ok(if runs(ConvPass::BackwardData) && runs(ConvPass::BackwardFilter) { algo } else { ConvAlgo::Auto })
    }

    /// The loss node for `out` (logits when fused) against the batch's targets.
    fn loss_node(&self, tape: &mut Tape, out: Var, buf: &BatchBuf, b: usize, form: TargetForm) -> Result<Var> {
        let c = self.compiled.as_ref().ok_or(Error::NotCompiled("fit or evaluate"))?;
        let w = form.width();
        Ok(match c.loss {
            Loss::SparseCategoricalCrossentropy => tape.sparse_softmax_cross_entropy(out, &buf.labels[..b])?,
            Loss::CategoricalCrossentropy => {
                let t = tape.input(TensorView::new(Shape::matrix(b, w), &buf.y[..b * w])?)?;
                tape.softmax_cross_entropy(out, t)?
            }
            Loss::BinaryCrossentropy => {
                let t = tape.input(TensorView::new(Shape::matrix(b, w), &buf.y[..b * w])?)?;
                if c.fused || self.layers[self.layers.len() - 1].layer.activation() == Activation::Linear {
                    tape.binary_cross_entropy_with_logits(out, t)?
                } else {
                    tape.binary_cross_entropy(out, t)?
                }
            }
        })
    }

    /// Number of correct predictions in a batch (`out` holds logits or outputs).
    fn correct(&self, out: &[f32], buf: &BatchBuf, b: usize, form: TargetForm) -> Result<f64> {
        let c = self.compiled.as_ref().ok_or(Error::NotCompiled("fit or evaluate"))?;
        let k = self.output_shape()[0];
        Ok(match form {
            TargetForm::OneHot(_) => {
                out.chunks_exact(k).zip(buf.y.chunks_exact(k)).take(b).filter(|(o, t)| argmax(o) == argmax(t)).count()
                    as f64
            }
            TargetForm::Index(_) => {
                out.chunks_exact(k).zip(&buf.labels[..b]).filter(|(o, &l)| argmax(o) == l as usize).count() as f64
            }
            TargetForm::Values(_) => {
                // Outputs are logits when fused or linear: threshold 0; probabilities: 0.5.
                let logit = c.fused || self.layers[self.layers.len() - 1].layer.activation() == Activation::Linear;
                let thr = if logit { 0.0 } else { 0.5 };
                let hits = out[..b * k].iter().zip(&buf.y[..b * k]).filter(|(&o, &t)| (o > thr) == (t > 0.5)).count();
                hits as f64 / k as f64
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
        let form = self.target_form()?;
        check_data(self, data, "fit")?;
        if options.batch_size == 0 {
            return Err(Error::invalid("batch_size", "must be at least 1"));
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
            check_data(self, v, "validation_data")?;
        }
        let has_val = options.validation_data.is_some() || n_val > 0;
        let bs = options.batch_size.min(n_train);
        let steps = n_train.div_ceil(bs);
        let mut order: Vec<usize> = (0..n_train).collect();
        let mut rng = Rng::new(options.seed);
        let mut buf = BatchBuf::new(self, bs, Some(form));
        let mut tape = Tape::new();
        let mut scratch = Scratch::default();
        let accuracy = self.compiled.as_ref().is_some_and(|c| c.accuracy);
        let live = match options.verbose {
            Verbose::Silent => None,
            Verbose::Auto => Some(std::io::stdout().is_terminal()),
            Verbose::Live => Some(true),
            Verbose::Lines => Some(false),
        };
        let mut history = History::default();
        let mut callbacks = std::mem::take(&mut options.callbacks);
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
            for (bi, idx) in order.chunks(bs).enumerate() {
                let b = idx.len();
                buf.fill(data, idx, Some(form))?;
                tape.reset();
                self.params.zero_grad();
                let x = tape.input(TensorView::new(buf.shape(b)?, &buf.x[..b * buf.item_len])?)?;
                let step_seed = options.seed ^ ((epoch as u64) << 32 | bi as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
                let fused = self.compiled.as_ref().is_some_and(|c| c.fused);
                let out = self.forward(&mut tape, x, fused, step_seed)?;
                let loss_var = self.loss_node(&mut tape, out, &buf, b, form)?;
                let loss = tape.scalar(loss_var)?;
                if !loss.is_finite() {
                    return Err(Error::NonFiniteLoss { value: loss, epoch, batch: bi + 1 });
                }
                tape.backward(loss_var, &mut self.params)?;
                let c = self.compiled.as_mut().ok_or(Error::NotCompiled("fit"))?;
                c.optimizer.begin_step()?;
                let opt = &mut c.optimizer;
                self.params.update_with(|i, w, g| opt.update(i, w, g))?;
                run.loss += loss as f64 * b as f64;
                run.seen += b;
                if accuracy {
                    run.correct += self.correct(tape.value(out)?.data(), &buf, b, form)?;
                }
                let metrics = epoch_metrics(&run, accuracy, None);
                if let Some(bar) = bar.as_mut() {
                    bar.update(bi + 1, &metrics);
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
                let (l, a) = match options.validation_data {
                    Some(v) => self.evaluate_on(&mut scratch, v, None, bs.max(64))?,
                    None => self.evaluate_on(&mut scratch, data, Some(&val_indices), bs.max(64))?,
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
        Ok(history)
    }

    /// Loss and accuracy over `indices` of `data` (all when `None`), on the
    /// tape-free inference path.
    fn evaluate_on(
        &self,
        scratch: &mut Scratch,
        data: &dyn Examples,
        indices: Option<&[usize]>,
        batch_size: usize,
    ) -> Result<(f64, f64)> {
        let form = self.target_form()?;
        let c = self.compiled.as_ref().ok_or(Error::NotCompiled("evaluate"))?;
        let all: Vec<usize>;
        let idx = match indices {
            Some(i) => i,
            None => {
                all = (0..data.len()).collect();
                &all
            }
        };
        let bs = batch_size.max(1).min(idx.len().max(1));
        let mut buf = BatchBuf::new(self, bs, Some(form));
        let k = self.output_shape()[0];
        let logits = c.fused || self.layers[self.layers.len() - 1].layer.activation() == Activation::Linear;
        let mut run = Running::default();
        for chunk in idx.chunks(bs) {
            let b = chunk.len();
            buf.fill(data, chunk, Some(form))?;
            let y = self.infer(scratch, &buf.x[..b * buf.item_len], b, c.fused)?;
            buf.out.clear();
            buf.out.extend_from_slice(y);
            let out = &buf.out;
            let loss = match c.loss {
                Loss::CategoricalCrossentropy => Model::infer_ce(scratch, k, out, &buf.y[..b * k])?,
                Loss::SparseCategoricalCrossentropy => Model::infer_sparse_ce(scratch, k, out, &buf.labels[..b])?,
                Loss::BinaryCrossentropy => crate::infer::binary_ce(out, &buf.y[..b * k], logits),
            };
            run.loss += loss as f64 * b as f64;
            run.correct += self.correct(out, &buf, b, form)?;
            run.seen += b;
        }
        Ok((run.loss(), run.accuracy()))
    }

    /// The cached inference buffers (a poisoned lock only means an earlier
    /// call panicked mid-pass: the buffers are overwritten before use anyway).
    fn scratch(&self) -> std::sync::MutexGuard<'_, Scratch> {
        self.infer_scratch.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Test loss and accuracy of `x`, `y` in inference mode (Keras's
    /// `evaluate`), in batches of `batch_size`.
    pub fn evaluate(&self, x: &Tensor, y: &Tensor, batch_size: usize) -> Result<(f64, f64)> {
        self.evaluate_examples(&XY::new(x, y)?, batch_size)
    }

    /// [`Model::evaluate`] over any [`Examples`].
    pub fn evaluate_examples(&self, data: &dyn Examples, batch_size: usize) -> Result<(f64, f64)> {
        check_data(self, data, "evaluate")?;
        self.evaluate_on(&mut self.scratch(), data, None, batch_size)
    }

    /// The model's outputs for `x` (class probabilities after a softmax last
    /// layer), `[n, outputs]`, in inference mode, in batches of `batch_size`.
    pub fn predict(&self, x: &Tensor, batch_size: usize) -> Result<Tensor> {
        self.predict_examples(&XY::inputs(x), batch_size)
    }

    /// [`Model::predict`] over any [`Examples`] (targets, if any, are ignored).
    pub fn predict_examples(&self, data: &dyn Examples, batch_size: usize) -> Result<Tensor> {
        check_data(self, data, "predict")?;
        let n = data.len();
        let k: usize = self.output_shape().iter().product();
        let bs = batch_size.max(1).min(n);
        let mut buf = BatchBuf::new(self, bs, None);
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

#[cfg(test)]
mod tests {
    use crate::layers::Activation::{Relu, Sigmoid, Softmax, Tanh};
    use crate::{AveragePooling2D, Conv2D, Dense, Dropout, Flatten, MaxPooling2D, Padding, Sequential};
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
}
