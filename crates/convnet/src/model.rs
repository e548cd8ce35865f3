//! [`Sequential`] (the model definition) and [`Model`] (built: shapes inferred,
//! weights initialised), with what every other part reads: its layers,
//! weights, summary, and the training configuration `compile` fixes.
//!
//! This file depends only on modules below it (`layers`, `built`, `compile`,
//! `summary`, and the `infer` engine, whose scratch buffers a model keeps).
//! The rest of `impl Model` lives in files above it, one concern each, that
//! depend on this one and never the reverse: `evaluate.rs` (evaluate,
//! predict), `train.rs` (fit), `weights.rs` (save, load).

use crate::built::BuiltLayer;
use crate::compile::{Compiled, Loss, Metric};
use crate::infer::Scratch;
use crate::layers::{fmt_dims, Initializer, InputShape, Layer};
use crate::{Error, Result};
use convnet_autodiff::Params;
use convnet_kernels::conv::ConvAlgo;
use convnet_optim::Optimizer;
use convnet_tensor::{Rng, Shape, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Seed of the weight initialisers when none is given.
pub const DEFAULT_SEED: u64 = 42;

/// A stack of layers, each feeding the next (Keras `Sequential`). Build it with
/// [`Sequential::add`], then [`Sequential::build`] infers every shape and
/// initialises the weights.
///
/// ```
/// use convnet::{Activation::{Relu, Softmax}, Conv2D, Dense, Flatten, MaxPooling2D, Sequential};
/// let model = Sequential::new()
///     .add(Conv2D::new(32, (3, 3)).activation(Relu).input_shape((28, 28, 1)))
///     .add(MaxPooling2D::new((2, 2)))
///     .add(Flatten::new())
///     .add(Dense::new(10).activation(Softmax))
///     .build()?;
/// assert_eq!(model.param_count(), 320 + 54_090);
/// # Ok::<(), convnet::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sequential {
    /// The model's name (`sequential` by default), shown by `summary`.
    pub name: String,
    /// The layers, in order.
    pub layers: Vec<Layer>,
    /// Seed of the weight initialisers.
    #[serde(default = "default_seed")]
    pub seed: u64,
}

fn default_seed() -> u64 {
    DEFAULT_SEED
}

impl Default for Sequential {
    fn default() -> Self {
        Self::new()
    }
}

impl Sequential {
    /// An empty model named `sequential`.
    pub fn new() -> Self {
        Sequential { name: "sequential".into(), layers: Vec::new(), seed: DEFAULT_SEED }
    }

    /// Renames the model.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Appends a layer.
    #[allow(clippy::should_implement_trait)]
    pub fn add(mut self, layer: impl Into<Layer>) -> Self {
        self.layers.push(layer.into());
        self
    }

    /// Sets the seed of the weight initialisers (default [`DEFAULT_SEED`]).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Names the layers (Keras's `conv2d`, `conv2d_1`, ... unless named),
    /// infers every output shape and initialises the weights from the seed.
    /// A layer that cannot take its input is an [`Error::Build`] naming it.
    pub fn build(self) -> Result<Model> {
        let Sequential { name, layers, seed } = self;
        if layers.is_empty() {
            return Err(Error::invalid("model", "a Sequential model needs at least one layer"));
        }
        let mut counters: HashMap<&'static str, usize> = HashMap::new();
        let mut seen = std::collections::HashSet::new();
        let mut rng = Rng::new(seed);
        let mut built = Vec::with_capacity(layers.len());
        let mut params = Params::new();
        let mut current: Option<Vec<usize>> = None;
        for (i, mut layer) in layers.into_iter().enumerate() {
            let lname = match layer.user_name() {
                Some(n) => n.to_string(),
                None => {
                    let prefix = layer.auto_name_prefix();
                    let k = counters.entry(prefix).or_insert(0);
                    let n = if *k == 0 { prefix.to_string() } else { format!("{prefix}_{k}") };
                    *k += 1;
                    n
                }
            };
            if lname.is_empty() || lname.contains('/') {
                return Err(Error::build(&lname, "a layer name must be non-empty and contain no '/'"));
            }
            if !seen.insert(lname.clone()) {
                return Err(Error::build(&lname, "two layers have this name"));
            }
            layer.set_name(lname.clone());
            let input = match (i, layer.declared_input_shape(), current.take()) {
                (0, Some(InputShape(d)), _) => d.clone(),
                (0, None, _) => {
                    return Err(Error::build(
                        &lname,
                        "the first layer needs an input_shape, e.g. .input_shape((28, 28, 1))",
                    ))
                }
                (_, Some(InputShape(d)), Some(cur)) if *d != cur => {
                    return Err(Error::build(
                        &lname,
                        format!("declared input_shape {} but receives {}", fmt_dims(d), fmt_dims(&cur)),
                    ))
                }
                (_, _, Some(cur)) => cur,
                (_, _, None) => unreachable!("every built layer sets an output shape"),
            };
            if input.is_empty() || input.len() > 3 {
                return Err(Error::build(
                    &lname,
                    format!("input shape {} must have 1 to 3 dimensions", fmt_dims(&input)),
                ));
            }
            let output = layer.output_shape(&lname, &input)?;
            let mut ids = Vec::new();
            let mut count = 0usize;
            for spec in layer.params(&input) {
                let shape = Shape::new(&spec.dims).map_err(|e| Error::build(&lname, e.to_string()))?;
                let value = match spec.init {
                    Initializer::GlorotUniform => Tensor::glorot_uniform(shape, &mut rng)?,
                    Initializer::HeNormal => Tensor::he_normal(shape, &mut rng)?,
                    Initializer::Zeros => Tensor::zeros(shape),
                };
                count =
                    count.checked_add(shape.len()).ok_or_else(|| Error::build(&lname, "parameter count overflows"))?;
                ids.push(params.add(format!("{lname}/{}", spec.kind), value)?);
            }
            built.push(BuiltLayer {
                name: lname,
                layer,
                input,
                output: output.clone(),
                params: ids,
                param_count: count,
            });
            current = Some(output);
        }
        Ok(Model {
            name,
            seed,
            layers: built,
            params,
            algo: ConvAlgo::Auto,
            compiled: None,
            infer_scratch: Default::default(),
        })
    }
}

/// A built model: layers with inferred shapes and initialised weights.
pub struct Model {
    pub(crate) name: String,
    pub(crate) seed: u64,
    pub(crate) layers: Vec<BuiltLayer>,
    pub(crate) params: Params,
    pub(crate) algo: ConvAlgo,
    pub(crate) compiled: Option<Compiled>,
    /// Activation buffers of the tape-free inference pass, kept between
    /// `evaluate` / `predict` calls (batch-1 latency without allocation).
    pub(crate) infer_scratch: std::sync::Mutex<Scratch>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("name", &self.name)
            .field("layers", &self.layers)
            .field("algo", &self.algo)
            .field("compiled", &self.compiled.as_ref().map(|c| c.loss))
            .finish()
    }
}

impl Model {
    /// The model's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The built layers, in order.
    pub fn layers(&self) -> &[BuiltLayer] {
        &self.layers
    }

    /// The parameters (values and gradients), in layer order, kernel before
    /// bias, named `conv2d/kernel`, `conv2d/bias`, ... as Keras lists `model.weights`.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// `(name, value)` of every weight, in layer order (Keras's `model.weights`).
    pub fn weights(&self) -> Vec<(&str, &Tensor)> {
        self.params.iter().map(|(_, name, value, _)| (name, value)).collect()
    }

    /// Total number of scalar parameters.
    pub fn param_count(&self) -> usize {
        self.layers.iter().map(|l| l.param_count).sum()
    }

    /// Input shape without the batch axis (`[28, 28, 1]`).
    pub fn input_shape(&self) -> &[usize] {
        &self.layers[0].input
    }

    /// Output shape without the batch axis (`[10]`).
    pub fn output_shape(&self) -> &[usize] {
        &self.layers[self.layers.len() - 1].output
    }

    /// The Keras 2 summary table (the text `model.summary()` prints), each
    /// row padded to 65 columns, ending in a newline.
    pub fn summary(&self) -> String {
        crate::summary::summary(&self.name, &self.layers, self.param_count())
    }

    /// The architecture as the [`Sequential`] definition that builds this model
    /// (layer names filled in).
    pub fn to_sequential(&self) -> Sequential {
        Sequential {
            name: self.name.clone(),
            layers: self.layers.iter().map(|l| l.layer.clone()).collect(),
            seed: self.seed,
        }
    }

    /// The architecture as JSON (what whole-model files store).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(&self.to_sequential()).expect("layer configs serialise")
    }

    /// Builds a model from architecture JSON written by [`Model::to_json`].
    pub fn from_json(json: &str) -> Result<Model> {
        let seq: Sequential = serde_json::from_str(json).map_err(|e| Error::invalid("model JSON", e.to_string()))?;
        seq.build()
    }

    /// Runs every convolution with `algo` unless a layer pins its own
    /// (default [`ConvAlgo::Auto`]). The forward pass runs exactly that
    /// algorithm (one that cannot run a layer's shape is an error when the
    /// layer runs); the backward passes use it where it runs both of them
    /// for the layer's shape, else `Auto`.
    pub fn set_conv_algo(&mut self, algo: ConvAlgo) {
        self.algo = algo;
    }

    /// Replaces every weight (in [`Model::weights`] order) after checking all
    /// lengths; on error nothing changes.
    pub fn set_weights(&mut self, values: &[Vec<f32>]) -> Result<()> {
        let ids: Vec<_> = self.params.iter().map(|(id, name, v, _)| (id, name.to_string(), v.len())).collect();
        if values.len() != ids.len() {
            return Err(Error::invalid(
                "weights",
                format!("{} tensors given, the model has {}", values.len(), ids.len()),
            ));
        }
        for ((_, name, len), v) in ids.iter().zip(values) {
            if v.len() != *len {
                return Err(Error::invalid("weights", format!("{name} needs {len} values, got {}", v.len())));
            }
        }
        for ((id, _, _), v) in ids.into_iter().zip(values) {
            self.params.set_value(id, v)?;
        }
        Ok(())
    }

    /// The model-wide convolution algorithm.
    pub fn conv_algo(&self) -> ConvAlgo {
        self.algo
    }

    /// Configures training: the optimizer, the loss and the metrics (Keras's
    /// `compile`). Checks that the loss fits the last layer.
    pub fn compile(
        &mut self,
        optimizer: impl Optimizer + Send + 'static,
        loss: Loss,
        metrics: &[Metric],
    ) -> Result<()> {
        let last = &self.layers[self.layers.len() - 1];
        self.compiled = Some(Compiled::new(Box::new(optimizer), loss, metrics, last)?);
        Ok(())
    }

    /// The training configuration, or [`Error::NotCompiled`] naming `what` needed it.
    pub(crate) fn compiled(&self, what: &'static str) -> Result<&Compiled> {
        self.compiled.as_ref().ok_or(Error::NotCompiled(what))
    }

    /// Runs the tape-free inference engine on `n` inputs `x` (NHWC); see
    /// [`crate::infer::run`]. With `logits`, the last activation is left out.
    pub(crate) fn infer<'s>(&self, s: &'s mut Scratch, x: &[f32], n: usize, logits: bool) -> Result<&'s [f32]> {
        crate::infer::run(&self.layers, &self.params, self.algo, s, x, n, logits)
    }

    /// The cached inference buffers (a poisoned lock only means an earlier
    /// call panicked mid-pass: the buffers are overwritten before use anyway).
    pub(crate) fn scratch(&self) -> std::sync::MutexGuard<'_, Scratch> {
        self.infer_scratch.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The chapter's model (Listing 5.1 plus the classifier of 5.2): three 3x3
/// ReLU convolutions (32, 64, 64 filters) with 2x2 max pooling between them,
/// then `Flatten`, `Dense(64, relu)`, `Dense(10, softmax)`; 93,322 parameters.
pub fn mnist_convnet() -> Sequential {
    use crate::layers::Activation::{Relu, Softmax};
    use crate::layers::{Conv2D, Dense, Flatten, MaxPooling2D};
    Sequential::new()
        .add(Conv2D::new(32, (3, 3)).activation(Relu).input_shape((28, 28, 1)))
        .add(MaxPooling2D::new((2, 2)))
        .add(Conv2D::new(64, (3, 3)).activation(Relu))
        .add(MaxPooling2D::new((2, 2)))
        .add(Conv2D::new(64, (3, 3)).activation(Relu))
        .add(Flatten::new())
        .add(Dense::new(64).activation(Relu))
        .add(Dense::new(10).activation(Softmax))
}
