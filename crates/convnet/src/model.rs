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
use crate::layers::{Initializer, Layer};
use crate::limits::Limits;
use crate::{Error, Result};
use convnet_autodiff::Params;
use convnet_kernels::conv::ConvAlgo;
use convnet_optim::Optimizer;
use convnet_tensor::{Rng, Shape, Tensor};
use serde::{Deserialize, Serialize};

/// Seed of the weight initialisers when none is given.
pub const DEFAULT_SEED: u64 = 42;

/// Metadata key of the class names, a JSON array of strings, label `k`
/// being entry `k` (`["cats", "dogs"]`); `convnet train` stores the image
/// folder's class names here and `convnet predict` prints them.
pub const CLASS_NAMES_KEY: &str = "convnet.class_names";

/// Metadata key of the factor the training data's 0-255 pixel values were
/// multiplied by before they reached the model, as a decimal number:
/// `0.00392156862745098` (1/255) for MNIST-format data, `1` for image folders
/// (whose scaling, if any, is a `Rescaling` layer inside the model).
/// `convnet predict` scales images the same way.
pub const PIXEL_SCALE_KEY: &str = "convnet.pixel_scale";

/// Largest total size of a model's metadata keys and values (1 MiB).
pub const MAX_METADATA_BYTES: usize = 1 << 20;

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
#[serde(deny_unknown_fields)]
pub struct Sequential {
    /// The model's name (`sequential` by default), shown by `summary`.
    #[serde(default = "default_name")]
    pub name: String,
    /// The layers, in order.
    pub layers: Vec<Layer>,
    /// Seed of the weight initialisers.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Names of the layers training leaves alone (Keras's `trainable=False`
    /// layers); see [`Model::set_trainable`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub frozen: Vec<String>,
}

fn default_name() -> String {
    "sequential".into()
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
        Sequential { name: default_name(), layers: Vec::new(), seed: DEFAULT_SEED, frozen: Vec::new() }
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

    /// Parses architecture JSON (what [`Model::to_json`] writes) without
    /// building anything.
    pub fn from_json(json: &str) -> Result<Sequential> {
        serde_json::from_str(json).map_err(|e| Error::invalid("model JSON", e.to_string()))
    }

    /// Declares `shape` as the model's input shape (on its first layer),
    /// replacing whatever shape any layer declared: the same definition at
    /// another image size or channel count.
    ///
    /// ```
    /// let m = convnet::mnist_convnet().with_input_shape((32, 32, 3)).build()?;
    /// assert_eq!(m.input_shape(), &[32, 32, 3]);
    /// # Ok::<(), convnet::Error>(())
    /// ```
    pub fn with_input_shape(mut self, shape: impl Into<crate::layers::InputShape>) -> Self {
        for l in &mut self.layers {
            *l.input_shape_slot() = None;
        }
        if let Some(first) = self.layers.first_mut() {
            *first.input_shape_slot() = Some(shape.into());
        }
        self
    }

    /// The input shape the first layer declares, if any.
    pub fn input_shape(&self) -> Option<&[usize]> {
        self.layers.first().and_then(|l| l.declared_input_shape()).map(|s| s.0.as_slice())
    }

    /// Sets the seed of the weight initialisers (default [`DEFAULT_SEED`]).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Names the layers (Keras's `conv2d`, `conv2d_1`, ... unless named),
    /// infers every output shape and initialises the weights from the seed,
    /// within the default [`Limits`]. A layer that cannot take its input is
    /// an [`Error::Build`] naming it; a model over a limit is an
    /// [`Error::Invalid`] saying which and how to raise it.
    pub fn build(self) -> Result<Model> {
        self.build_with(&Limits::default())
    }

    /// Builds the model with every weight zero instead of initialised, for
    /// a caller that overwrites them all at once (a weights loader): the
    /// initialisers' random draws cost as much as reading a large file.
    pub(crate) fn build_uninitialised(self) -> Result<Model> {
        let Sequential { name, layers, seed, frozen } = self;
        let mut model = Model::from_plan(crate::plan::plan(name, layers, seed, &Limits::default())?, false)?;
        model.freeze_named(&frozen)?;
        Ok(model)
    }

    /// [`Sequential::build`] within `limits`: the layer count, the
    /// parameter count and the activation values per example are computed
    /// with checked arithmetic and compared with the limits before any
    /// weight is allocated.
    ///
    /// ```
    /// use convnet::{limits::Limits, Dense, Sequential};
    /// let wide = Sequential::new().add(Dense::new(1 << 30).input_shape(1000));
    /// let err = wide.clone().build().unwrap_err(); // 10^12 parameters: refused before allocating
    /// assert!(err.to_string().contains("more than the limit"), "{err}");
    /// let tiny = Sequential::new().add(Dense::new(3).input_shape(2));
    /// assert!(tiny.build_with(&Limits::default().max_params(9)).is_ok());
    /// ```
    pub fn build_with(self, limits: &Limits) -> Result<Model> {
        let Sequential { name, layers, seed, frozen } = self;
        let mut model = Model::from_plan(crate::plan::plan(name, layers, seed, limits)?, true)?;
        model.freeze_named(&frozen)?;
        Ok(model)
    }
}

impl Model {
    /// Allocates the planned model's weights: initialised from the seed, or
    /// zeros when `init` is false (a loader overwrites them anyway).
    pub(crate) fn from_plan(plan: crate::plan::Plan, init: bool) -> Result<Model> {
        let crate::plan::Plan { name, seed, layers, .. } = plan;
        let mut rng = Rng::new(seed);
        let mut built = Vec::with_capacity(layers.len());
        let mut params = Params::new();
        for l in layers {
            let mut ids = Vec::with_capacity(l.params.len());
            for spec in &l.params {
                let shape = Shape::new(&spec.dims).map_err(|e| Error::build(&l.name, e.to_string()))?;
                let value = match spec.init {
                    _ if !init => Tensor::zeros(shape),
                    Initializer::GlorotUniform => Tensor::glorot_uniform(shape, &mut rng)?,
                    Initializer::HeNormal => Tensor::he_normal(shape, &mut rng)?,
                    Initializer::Zeros => Tensor::zeros(shape),
                };
                ids.push(params.add(format!("{}/{}", l.name, spec.kind), value)?);
            }
            built.push(BuiltLayer {
                name: l.name,
                layer: l.layer,
                input: l.input,
                output: l.output,
                params: ids,
                param_count: l.param_count,
                trainable: true,
            });
        }
        Ok(Model {
            name,
            seed,
            layers: built,
            params,
            algo: ConvAlgo::Auto,
            compiled: None,
            infer_scratch: Default::default(),
            lanes: Default::default(),
            last_backward: Default::default(),
            metadata: std::collections::BTreeMap::new(),
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
    /// The workers' buffers of batch-parallel `evaluate` / `predict` passes
    /// (a free list: a pass takes one per rayon job and gives it back).
    pub(crate) lanes: std::sync::Mutex<Vec<crate::evaluate::Lane>>,
    /// The gradient work of `fit`'s last step (see [`Model::last_backward_work`]).
    pub(crate) last_backward: convnet_autodiff::BackwardWork,
    /// Facts about the model's inputs and outputs that are not layers (class
    /// names, the pixel scale its data had), saved with it; see [`Model::metadata`].
    pub(crate) metadata: std::collections::BTreeMap<String, String>,
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

    /// Parameters training updates (Keras's "Trainable params").
    pub fn trainable_param_count(&self) -> usize {
        self.layers.iter().filter(|l| l.trainable).map(|l| l.param_count).sum()
    }

    /// Parameters of frozen layers (Keras's "Non-trainable params").
    pub fn non_trainable_param_count(&self) -> usize {
        self.param_count() - self.trainable_param_count()
    }

    /// Freezes (`false`) or unfreezes (`true`) every layer, as Keras's
    /// `model.trainable = False` does for a model and all its layers (the
    /// book's `conv_base.trainable = False`). Takes effect at the next `fit`;
    /// the optimizer's state of a frozen parameter is kept, not updated.
    ///
    /// ```
    /// use convnet::applications::vgg16::Vgg16;
    /// let mut conv_base = Vgg16::new().include_top(false).input_shape((32, 32, 3)).build()?;
    /// conv_base.set_trainable(false);
    /// assert_eq!(conv_base.trainable_param_count(), 0);
    /// conv_base.set_trainable_from("block5_conv1")?; // the book's fine-tuning: block 5 only
    /// assert_eq!(conv_base.trainable_param_count(), 3 * (3 * 3 * 512 * 512 + 512));
    /// # Ok::<(), convnet::Error>(())
    /// ```
    pub fn set_trainable(&mut self, trainable: bool) {
        self.layers.iter_mut().for_each(|l| l.trainable = trainable);
    }

    /// Freezes or unfreezes the layer called `name` (Keras's
    /// `model.get_layer(name).trainable = ...`); an unknown name is an error
    /// and changes nothing.
    pub fn set_layer_trainable(&mut self, name: &str, trainable: bool) -> Result<()> {
        let i = self.layer_index(name)?;
        self.layers[i].trainable = trainable;
        Ok(())
    }

    /// Freezes every layer before `name` and unfreezes `name` and every layer
    /// after it: the book's fine-tuning loop (`set_trainable = True` from
    /// `block5_conv1` on). An unknown name is an error and changes nothing.
    pub fn set_trainable_from(&mut self, name: &str) -> Result<()> {
        let first = self.layer_index(name)?;
        for (i, l) in self.layers.iter_mut().enumerate() {
            l.trainable = i >= first;
        }
        Ok(())
    }

    /// Copies the weights of every layer of `other` into this model's layer
    /// of the same name (Keras's `layer.set_weights(other_layer.get_weights())`
    /// for each): how a pretrained base goes into a bigger model, such as the
    /// book's VGG16 base below a new classifier. Every matching layer's
    /// shapes are checked before anything is copied; a layer of `other` that
    /// this model lacks is an error. Returns the number of layers copied.
    ///
    /// ```
    /// use convnet::applications::vgg16::Vgg16;
    /// use convnet::{Activation::{Relu, Sigmoid}, Dense, Flatten};
    /// let v = Vgg16::new().include_top(false).input_shape((32, 32, 3));
    /// let conv_base = v.build()?; // or v.load_imagenet("..._notop.h5")?
    /// let mut model = v.sequential()?
    ///     .add(Flatten::new())
    ///     .add(Dense::new(256).activation(Relu))
    ///     .add(Dense::new(1).activation(Sigmoid))
    ///     .build()?;
    /// assert_eq!(model.copy_weights_from(&conv_base)?, 13);
    /// # Ok::<(), convnet::Error>(())
    /// ```
    pub fn copy_weights_from(&mut self, other: &Model) -> Result<usize> {
        let mut pairs = Vec::new();
        for theirs in other.layers.iter().filter(|l| !l.params.is_empty()) {
            let mine = self.layer_index(&theirs.name)?;
            let ours = &self.layers[mine];
            if ours.params.len() != theirs.params.len() {
                return Err(Error::invalid(
                    "copy_weights_from",
                    format!(
                        "layer {} has {} weights here, {} there",
                        theirs.name,
                        ours.params.len(),
                        theirs.params.len()
                    ),
                ));
            }
            for (&a, &b) in ours.params.iter().zip(&theirs.params) {
                let (sa, sb) = (self.params.shape(a)?, other.params.shape(b)?);
                if sa != sb {
                    return Err(Error::invalid(
                        "copy_weights_from",
                        format!("layer {}: a weight of shape {sa} here, {sb} there", theirs.name),
                    ));
                }
                pairs.push((a, b));
            }
        }
        for (a, b) in pairs {
            self.params.set_value(a, other.params.value(b)?.data())?;
        }
        Ok(other.layers.iter().filter(|l| !l.params.is_empty()).count())
    }

    /// The gradient kernels `fit`'s last training step ran: weight gradients
    /// (backward-filter passes) of trainable conv and dense layers only, input
    /// gradients (backward-data passes) only above the lowest trainable layer.
    ///
    /// ```
    /// use convnet::{Activation::Sigmoid, Dense, FitOptions, Loss, Sequential, Verbose, optimizers::Sgd};
    /// # use convnet_tensor::{Shape, Tensor};
    /// let mut m = Sequential::new().add(Dense::new(3).input_shape(2)).add(Dense::new(1).activation(Sigmoid)).build()?;
    /// m.set_trainable_from("dense_1")?; // the first Dense is frozen
    /// m.compile(Sgd::new(0.1), Loss::BinaryCrossentropy, &[])?;
    /// let x = Tensor::zeros(Shape::new(&[4, 2])?);
    /// let y = Tensor::zeros(Shape::new(&[4, 1])?);
    /// m.fit(&x, &y, FitOptions { epochs: 1, verbose: Verbose::Silent, ..Default::default() })?;
    /// let work = m.last_backward_work();
    /// assert_eq!((work.weight_gradients, work.input_gradients), (1, 0));
    /// # Ok::<(), convnet::Error>(())
    /// ```
    pub fn last_backward_work(&self) -> convnet_autodiff::BackwardWork {
        self.last_backward
    }

    /// Whether the layer called `name` is trainable (false for an unknown name).
    pub fn is_trainable(&self, name: &str) -> bool {
        self.layers.iter().any(|l| l.name == name && l.trainable)
    }

    /// The index of the layer called `name`, or an [`Error::Invalid`]
    /// listing the model's layer names.
    ///
    /// ```
    /// let model = convnet::mnist_convnet().build()?;
    /// assert_eq!(model.layer_index("conv2d_2")?, 4);
    /// let err = model.layer_index("conv9").unwrap_err().to_string();
    /// assert!(err.contains("no layer \"conv9\"") && err.contains("max_pooling2d_1"), "{err}");
    /// # Ok::<(), convnet::Error>(())
    /// ```
    pub fn layer_index(&self, name: &str) -> Result<usize> {
        self.layers.iter().position(|l| l.name == name).ok_or_else(|| {
            let names: Vec<&str> = self.layers.iter().map(|l| l.name.as_str()).collect();
            Error::invalid(
                "layer name",
                format!("model {} has no layer {name:?} (it has {})", self.name, names.join(", ")),
            )
        })
    }

    /// Freezes the layers named in `frozen` (a [`Sequential`]'s list), every
    /// name checked first.
    pub(crate) fn freeze_named(&mut self, frozen: &[String]) -> Result<()> {
        for name in frozen {
            self.layer_index(name)?;
        }
        for l in &mut self.layers {
            if frozen.contains(&l.name) {
                l.trainable = false;
            }
        }
        Ok(())
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
            frozen: self.layers.iter().filter(|l| !l.trainable).map(|l| l.name.clone()).collect(),
        }
    }

    /// The architecture as JSON (what whole-model files store).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(&self.to_sequential()).expect("layer configs serialise")
    }

    /// Builds a model from architecture JSON written by [`Model::to_json`].
    pub fn from_json(json: &str) -> Result<Model> {
        Model::from_json_with(json, &Limits::default())
    }

    /// [`Model::from_json`] within `limits` (see [`Sequential::build_with`]).
    pub fn from_json_with(json: &str, limits: &Limits) -> Result<Model> {
        Sequential::from_json(json)?.build_with(limits)
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

    /// The value stored under `key` in the model's metadata: text saved with
    /// the model (in the safetensors header, beside the architecture) and
    /// read back by [`Model::load`]. The `convnet` CLI stores
    /// [`CLASS_NAMES_KEY`] and [`PIXEL_SCALE_KEY`] there (docs/MODEL_FILES.md).
    pub fn metadata(&self, key: &str) -> Option<&str> {
        self.metadata.get(key).map(String::as_str)
    }

    /// Every metadata entry, sorted by key.
    pub fn metadata_entries(&self) -> impl Iterator<Item = (&str, &str)> {
        self.metadata.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Stores `value` under `key` in the model's metadata (saved by
    /// [`Model::save`]). The keys the file format itself uses
    /// (`format`, `convnet.model`) are refused, as are keys and values over
    /// [`MAX_METADATA_BYTES`] bytes together.
    ///
    /// ```
    /// let mut m = convnet::mnist_convnet().build()?;
    /// m.set_metadata(convnet::CLASS_NAMES_KEY, r#"["0","1","2","3","4","5","6","7","8","9"]"#)?;
    /// assert!(m.metadata(convnet::CLASS_NAMES_KEY).unwrap().starts_with("[\"0\""));
    /// assert!(m.set_metadata("format", "x").is_err());
    /// # Ok::<(), convnet::Error>(())
    /// ```
    pub fn set_metadata(&mut self, key: impl Into<String>, value: impl Into<String>) -> Result<()> {
        let (key, value) = (key.into(), value.into());
        // The keys `weights.rs` writes itself (FORMAT_METADATA_KEY, MODEL_METADATA_KEY).
        if key == "format" || key == "convnet.model" {
            return Err(Error::invalid("metadata", format!("{key:?} is the file format's own key")));
        }
        let used: usize = self.metadata.iter().filter(|(k, _)| **k != key).map(|(k, v)| k.len() + v.len()).sum();
        if used.saturating_add(key.len()).saturating_add(value.len()) > MAX_METADATA_BYTES {
            return Err(Error::invalid("metadata", format!("more than {MAX_METADATA_BYTES} bytes of metadata")));
        }
        self.metadata.insert(key, value);
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
    #[cfg(test)] // evaluate.rs runs the engine through its `Sync` view of the model
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

/// The chapter's small-data convnet (section 5.2, the cats-vs-dogs model
/// with dropout, Listing 5.13): four 3x3 ReLU convolutions (32, 64, 128, 128
/// filters) each followed by 2x2 max pooling, then `Flatten`,
/// `Dropout(0.5)`, `Dense(512, relu)` and `Dense(1, sigmoid)` on 150x150 RGB
/// input; 3,453,121 parameters. Compile it as the book does, with
/// `RMSprop(1e-4)` and binary cross-entropy; feed it images scaled to
/// `[0, 1]` (put a `Rescaling(1/255)` in front for raw 0-255 pixels, as
/// `examples/5_2_small_data.rs` does).
///
/// ```
/// let model = convnet::small_data_convnet().build()?;
/// assert_eq!(model.param_count(), 3_453_121);
/// assert_eq!(model.output_shape(), [1]);
/// # Ok::<(), convnet::Error>(())
/// ```
pub fn small_data_convnet() -> Sequential {
    use crate::layers::Activation::{Relu, Sigmoid};
    use crate::layers::{Conv2D, Dense, Dropout, Flatten, MaxPooling2D};
    Sequential::new()
        .add(Conv2D::new(32, (3, 3)).activation(Relu).input_shape((150, 150, 3)))
        .add(MaxPooling2D::new((2, 2)))
        .add(Conv2D::new(64, (3, 3)).activation(Relu))
        .add(MaxPooling2D::new((2, 2)))
        .add(Conv2D::new(128, (3, 3)).activation(Relu))
        .add(MaxPooling2D::new((2, 2)))
        .add(Conv2D::new(128, (3, 3)).activation(Relu))
        .add(MaxPooling2D::new((2, 2)))
        .add(Flatten::new())
        .add(Dropout::new(0.5))
        .add(Dense::new(512).activation(Relu))
        .add(Dense::new(1).activation(Sigmoid))
}
