//! Layer definitions, built Keras-style: `Conv2D::new(32, (3, 3)).activation(Relu)`.
//!
//! A layer here is configuration only (what Keras calls `get_config()`); the
//! weights live in the built [`Model`](crate::Model). Every layer serialises to
//! the architecture JSON that whole-model files carry.
//!
//! Shape inference ([`Layer::output_shape`]) works on shapes without the batch
//! axis, as Keras prints them after `None`: `(h, w, c)` for images, `(units,)`
//! after `Flatten` / `Dense`.

use crate::{Error, Result};
use convnet_kernels::conv::{ConvAlgo, ConvShape};
use convnet_kernels::pool::PoolShape;
use serde::{Deserialize, Serialize};

pub use crate::augment::{
    Factor, FillMode, FlipMode, Interpolation, RandomFlip, RandomRotation, RandomShear, RandomTranslation, RandomZoom,
    Rescaling,
};
pub use crate::global_pool::{GlobalAveragePooling2D, GlobalMaxPooling2D, GlobalPool2D};
use crate::options::algo_name;
pub use crate::options::{Activation, Initializer, InputShape, Padding, Size2};
pub use crate::separable::{DepthwiseConv2D, SeparableConv2D};

/// 2-D convolution over NHWC input with an HWIO kernel (Keras `Conv2D`).
///
/// ```
/// use convnet::{Conv2D, Activation::Relu};
/// let c = Conv2D::new(32, (3, 3)).activation(Relu).input_shape((28, 28, 1));
/// assert_eq!(c.filters, 32);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conv2D {
    /// Layer name; `None` lets the model name it `conv2d`, `conv2d_1`, ...
    pub name: Option<String>,
    /// Output channels.
    pub filters: usize,
    /// `(kh, kw)`.
    pub kernel_size: Size2,
    /// `(stride_h, stride_w)`, default `(1, 1)`.
    #[serde(default = "crate::options::defaults::unit_strides")]
    pub strides: Size2,
    /// `valid` (default) or `same`.
    #[serde(default = "crate::options::defaults::valid")]
    pub padding: Padding,
    /// Applied after the bias.
    #[serde(default = "crate::options::defaults::linear")]
    pub activation: Activation,
    /// Whether the layer has a bias (default true).
    #[serde(default = "crate::options::defaults::yes")]
    pub use_bias: bool,
    /// Kernel initialiser, default `glorot_uniform`.
    #[serde(default = "crate::options::defaults::glorot")]
    pub kernel_initializer: Initializer,
    /// Bias initialiser, default `zeros`.
    #[serde(default = "crate::options::defaults::zeros")]
    pub bias_initializer: Initializer,
    /// The convolution algorithm; `None` means [`ConvAlgo::Auto`] (or the model-wide choice).
    #[serde(with = "algo_name", default)]
    pub algo: Option<ConvAlgo>,
    /// Channel groups (Keras `groups`, default 1): input and output channels
    /// split into `groups` blocks, block `g` of the output seeing only block
    /// `g` of the input; the kernel is `[kh, kw, c_in / groups, filters]`.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub groups: usize,
    /// The input shape `(h, w, c)`, needed on the first layer.
    pub input_shape: Option<InputShape>,
}

fn one() -> usize {
    1
}

fn is_one(v: &usize) -> bool {
    *v == 1
}

impl Conv2D {
    /// `filters` output channels with a `kernel_size` window; stride 1, valid
    /// padding, linear activation, bias, `glorot_uniform` kernel.
    pub fn new(filters: usize, kernel_size: impl Into<Size2>) -> Self {
        Conv2D {
            name: None,
            filters,
            kernel_size: kernel_size.into(),
            strides: Size2(1, 1),
            padding: Padding::Valid,
            activation: Activation::Linear,
            use_bias: true,
            kernel_initializer: Initializer::GlorotUniform,
            bias_initializer: Initializer::Zeros,
            algo: None,
            groups: 1,
            input_shape: None,
        }
    }
    /// Sets the number of channel groups (must divide the input channels and `filters`).
    ///
    /// ```
    /// use convnet::{Conv2D, Sequential};
    /// let model = Sequential::new().add(Conv2D::new(8, (3, 3)).groups(4).input_shape((6, 6, 8))).build()?;
    /// assert_eq!(model.layers()[0].param_count, 3 * 3 * 2 * 8 + 8);
    /// # Ok::<(), convnet::Error>(())
    /// ```
    pub fn groups(mut self, g: usize) -> Self {
        self.groups = g;
        self
    }
    /// Sets the activation.
    pub fn activation(mut self, a: Activation) -> Self {
        self.activation = a;
        self
    }
    /// Sets the strides.
    pub fn strides(mut self, s: impl Into<Size2>) -> Self {
        self.strides = s.into();
        self
    }
    /// Sets the padding.
    pub fn padding(mut self, p: Padding) -> Self {
        self.padding = p;
        self
    }
    /// With or without bias.
    pub fn use_bias(mut self, b: bool) -> Self {
        self.use_bias = b;
        self
    }
    /// Sets the kernel initialiser.
    pub fn kernel_initializer(mut self, i: Initializer) -> Self {
        self.kernel_initializer = i;
        self
    }
    /// Sets the bias initialiser.
    pub fn bias_initializer(mut self, i: Initializer) -> Self {
        self.bias_initializer = i;
        self
    }
    /// Pins the convolution algorithm for this layer.
    pub fn algo(mut self, a: ConvAlgo) -> Self {
        self.algo = Some(a);
        self
    }
    /// Sets the input shape (first layer only).
    pub fn input_shape(mut self, s: impl Into<InputShape>) -> Self {
        self.input_shape = Some(s.into());
        self
    }
    /// Names the layer.
    pub fn name(mut self, n: impl Into<String>) -> Self {
        self.name = Some(n.into());
        self
    }
}

/// Max or average pooling configuration (Keras `MaxPooling2D` / `AveragePooling2D`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pool2D {
    /// Layer name; `None` lets the model name it.
    pub name: Option<String>,
    /// `(ph, pw)`, default `(2, 2)`.
    #[serde(default = "crate::options::defaults::pool_size")]
    pub pool_size: Size2,
    /// Strides; `None` means the pool size (Keras's default).
    pub strides: Option<Size2>,
    /// `valid` (default) or `same`.
    #[serde(default = "crate::options::defaults::valid")]
    pub padding: Padding,
    /// The input shape `(h, w, c)`, needed on the first layer.
    pub input_shape: Option<InputShape>,
}

macro_rules! pool_layer {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq)]
        pub struct $name(pub Pool2D);

        impl $name {
            /// A `pool_size` window with strides equal to the pool size and valid padding.
            pub fn new(pool_size: impl Into<Size2>) -> Self {
                $name(Pool2D { name: None, pool_size: pool_size.into(), strides: None, padding: Padding::Valid, input_shape: None })
            }
            /// Sets the strides (default: the pool size).
            pub fn strides(mut self, s: impl Into<Size2>) -> Self {
                self.0.strides = Some(s.into());
                self
            }
            /// Sets the padding.
            pub fn padding(mut self, p: Padding) -> Self {
                self.0.padding = p;
                self
            }
            /// Sets the input shape (first layer only).
            pub fn input_shape(mut self, s: impl Into<InputShape>) -> Self {
                self.0.input_shape = Some(s.into());
                self
            }
            /// Names the layer.
            pub fn name(mut self, n: impl Into<String>) -> Self {
                self.0.name = Some(n.into());
                self
            }
        }
    };
}

pool_layer!(
    /// Max pooling over `pool_size` windows (Keras `MaxPooling2D`).
    ///
    /// ```
    /// use convnet::MaxPooling2D;
    /// let p = MaxPooling2D::new((2, 2));
    /// assert_eq!(p.0.strides, None); // strides default to the pool size
    /// ```
    MaxPooling2D
);
pool_layer!(
    /// Average pooling over `pool_size` windows (Keras `AveragePooling2D`);
    /// padded cells are not counted in the average.
    AveragePooling2D
);

/// Flattens `(h, w, c)` to `(h * w * c,)` in Keras order (h, then w, then c).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Flatten {
    /// Layer name; `None` lets the model name it.
    pub name: Option<String>,
    /// The input shape, needed on the first layer.
    pub input_shape: Option<InputShape>,
}

impl Flatten {
    /// A flatten layer.
    pub fn new() -> Self {
        Flatten::default()
    }
    /// Sets the input shape (first layer only).
    pub fn input_shape(mut self, s: impl Into<InputShape>) -> Self {
        self.input_shape = Some(s.into());
        self
    }
    /// Names the layer.
    pub fn name(mut self, n: impl Into<String>) -> Self {
        self.name = Some(n.into());
        self
    }
}

/// Fully connected layer `y = activation(x W + b)`, `W` stored `[in, out]` (Keras `Dense`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dense {
    /// Layer name; `None` lets the model name it `dense`, `dense_1`, ...
    pub name: Option<String>,
    /// Output units.
    pub units: usize,
    /// Applied after the bias.
    #[serde(default = "crate::options::defaults::linear")]
    pub activation: Activation,
    /// Whether the layer has a bias (default true).
    #[serde(default = "crate::options::defaults::yes")]
    pub use_bias: bool,
    /// Kernel initialiser, default `glorot_uniform`.
    #[serde(default = "crate::options::defaults::glorot")]
    pub kernel_initializer: Initializer,
    /// Bias initialiser, default `zeros`.
    #[serde(default = "crate::options::defaults::zeros")]
    pub bias_initializer: Initializer,
    /// The input shape `(features,)`, needed on the first layer.
    pub input_shape: Option<InputShape>,
}

impl Dense {
    /// `units` outputs, linear activation, bias, `glorot_uniform` kernel.
    pub fn new(units: usize) -> Self {
        Dense {
            name: None,
            units,
            activation: Activation::Linear,
            use_bias: true,
            kernel_initializer: Initializer::GlorotUniform,
            bias_initializer: Initializer::Zeros,
            input_shape: None,
        }
    }
    /// Sets the activation.
    pub fn activation(mut self, a: Activation) -> Self {
        self.activation = a;
        self
    }
    /// With or without bias.
    pub fn use_bias(mut self, b: bool) -> Self {
        self.use_bias = b;
        self
    }
    /// Sets the kernel initialiser.
    pub fn kernel_initializer(mut self, i: Initializer) -> Self {
        self.kernel_initializer = i;
        self
    }
    /// Sets the input shape (first layer only).
    pub fn input_shape(mut self, s: impl Into<InputShape>) -> Self {
        self.input_shape = Some(s.into());
        self
    }
    /// Names the layer.
    pub fn name(mut self, n: impl Into<String>) -> Self {
        self.name = Some(n.into());
        self
    }
}

/// Zeroes a fraction `rate` of its inputs during training and scales the rest
/// by `1 / (1 - rate)` (inverted dropout); the identity in inference.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dropout {
    /// Layer name; `None` lets the model name it.
    pub name: Option<String>,
    /// Fraction dropped, in `[0, 1)`.
    pub rate: f32,
    /// The input shape, needed on the first layer.
    pub input_shape: Option<InputShape>,
}

impl Dropout {
    /// Drops a fraction `rate` of the inputs in training.
    pub fn new(rate: f32) -> Self {
        Dropout { name: None, rate, input_shape: None }
    }
    /// Names the layer.
    pub fn name(mut self, n: impl Into<String>) -> Self {
        self.name = Some(n.into());
        self
    }
}

/// Any layer of a [`Sequential`](crate::Sequential) model; the JSON form of the architecture.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "class_name", content = "config")]
pub enum Layer {
    /// See [`Conv2D`].
    Conv2D(Conv2D),
    /// See [`DepthwiseConv2D`].
    DepthwiseConv2D(DepthwiseConv2D),
    /// See [`SeparableConv2D`].
    SeparableConv2D(SeparableConv2D),
    /// See [`MaxPooling2D`].
    MaxPooling2D(Pool2D),
    /// See [`AveragePooling2D`].
    AveragePooling2D(Pool2D),
    /// See [`GlobalAveragePooling2D`].
    GlobalAveragePooling2D(GlobalPool2D),
    /// See [`GlobalMaxPooling2D`].
    GlobalMaxPooling2D(GlobalPool2D),
    /// See [`Flatten`].
    Flatten(Flatten),
    /// See [`Dense`].
    Dense(Dense),
    /// See [`Dropout`].
    Dropout(Dropout),
    /// See [`Rescaling`].
    Rescaling(Rescaling),
    /// See [`RandomFlip`].
    RandomFlip(RandomFlip),
    /// See [`RandomRotation`].
    RandomRotation(RandomRotation),
    /// See [`RandomZoom`].
    RandomZoom(RandomZoom),
    /// See [`RandomTranslation`].
    RandomTranslation(RandomTranslation),
    /// See [`RandomShear`].
    RandomShear(RandomShear),
}

macro_rules! into_layer {
    ($($t:ident),*) => {$(
        impl From<$t> for Layer {
            fn from(l: $t) -> Self {
                Layer::$t(l)
            }
        }
    )*};
}
into_layer!(Rescaling, RandomFlip, RandomRotation, RandomZoom, RandomTranslation, RandomShear);

impl From<Conv2D> for Layer {
    fn from(l: Conv2D) -> Self {
        Layer::Conv2D(l)
    }
}
impl From<DepthwiseConv2D> for Layer {
    fn from(l: DepthwiseConv2D) -> Self {
        Layer::DepthwiseConv2D(l)
    }
}
impl From<SeparableConv2D> for Layer {
    fn from(l: SeparableConv2D) -> Self {
        Layer::SeparableConv2D(l)
    }
}
impl From<MaxPooling2D> for Layer {
    fn from(l: MaxPooling2D) -> Self {
        Layer::MaxPooling2D(l.0)
    }
}
impl From<AveragePooling2D> for Layer {
    fn from(l: AveragePooling2D) -> Self {
        Layer::AveragePooling2D(l.0)
    }
}
impl From<GlobalAveragePooling2D> for Layer {
    fn from(l: GlobalAveragePooling2D) -> Self {
        Layer::GlobalAveragePooling2D(l.0)
    }
}
impl From<GlobalMaxPooling2D> for Layer {
    fn from(l: GlobalMaxPooling2D) -> Self {
        Layer::GlobalMaxPooling2D(l.0)
    }
}
impl From<Flatten> for Layer {
    fn from(l: Flatten) -> Self {
        Layer::Flatten(l)
    }
}
impl From<Dense> for Layer {
    fn from(l: Dense) -> Self {
        Layer::Dense(l)
    }
}
impl From<Dropout> for Layer {
    fn from(l: Dropout) -> Self {
        Layer::Dropout(l)
    }
}

/// The parameters a layer owns, with their shapes (Keras order: kernel, then bias).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamSpec {
    /// `kernel` or `bias`; `depthwise_kernel` and `pointwise_kernel` for the
    /// separable layers (Keras's weight names).
    pub kind: &'static str,
    /// HWIO for conv kernels, `[in, out]` for dense kernels, `[out]` for biases.
    pub dims: Vec<usize>,
    /// How it is initialised.
    pub init: Initializer,
}

impl Layer {
    /// The layer as a random augmentation layer, if it is one (what
    /// `augment::transforms` draws from).
    pub(crate) fn as_random(&self) -> Option<crate::augment::RandomLayer<'_>> {
        use crate::augment::RandomLayer;
        Some(match self {
            Layer::RandomFlip(l) => RandomLayer::Flip(l),
            Layer::RandomRotation(l) => RandomLayer::Rotation(l),
            Layer::RandomZoom(l) => RandomLayer::Zoom(l),
            Layer::RandomTranslation(l) => RandomLayer::Translation(l),
            Layer::RandomShear(l) => RandomLayer::Shear(l),
            _ => return None,
        })
    }
}

impl Layer {
    /// Keras's class name (`Conv2D`, `MaxPooling2D`, ...), shown in the summary.
    pub fn class_name(&self) -> &'static str {
        match self {
            Layer::Conv2D(_) => "Conv2D",
            Layer::DepthwiseConv2D(_) => "DepthwiseConv2D",
            Layer::SeparableConv2D(_) => "SeparableConv2D",
            Layer::MaxPooling2D(_) => "MaxPooling2D",
            Layer::AveragePooling2D(_) => "AveragePooling2D",
            Layer::GlobalAveragePooling2D(_) => "GlobalAveragePooling2D",
            Layer::GlobalMaxPooling2D(_) => "GlobalMaxPooling2D",
            Layer::Flatten(_) => "Flatten",
            Layer::Dense(_) => "Dense",
            Layer::Dropout(_) => "Dropout",
            Layer::Rescaling(_) => "Rescaling",
            Layer::RandomFlip(_) => "RandomFlip",
            Layer::RandomRotation(_) => "RandomRotation",
            Layer::RandomZoom(_) => "RandomZoom",
            Layer::RandomTranslation(_) => "RandomTranslation",
            Layer::RandomShear(_) => "RandomShear",
        }
    }

    /// The prefix Keras derives from the class name for automatic names (`max_pooling2d`).
    pub fn auto_name_prefix(&self) -> &'static str {
        match self {
            Layer::Conv2D(_) => "conv2d",
            Layer::DepthwiseConv2D(_) => "depthwise_conv2d",
            Layer::SeparableConv2D(_) => "separable_conv2d",
            Layer::MaxPooling2D(_) => "max_pooling2d",
            Layer::AveragePooling2D(_) => "average_pooling2d",
            Layer::GlobalAveragePooling2D(_) => "global_average_pooling2d",
            Layer::GlobalMaxPooling2D(_) => "global_max_pooling2d",
            Layer::Flatten(_) => "flatten",
            Layer::Dense(_) => "dense",
            Layer::Dropout(_) => "dropout",
            Layer::Rescaling(_) => "rescaling",
            Layer::RandomFlip(_) => "random_flip",
            Layer::RandomRotation(_) => "random_rotation",
            Layer::RandomZoom(_) => "random_zoom",
            Layer::RandomTranslation(_) => "random_translation",
            Layer::RandomShear(_) => "random_shear",
        }
    }

    /// The name the user gave, if any.
    pub fn user_name(&self) -> Option<&str> {
        match self {
            Layer::Conv2D(l) => l.name.as_deref(),
            Layer::DepthwiseConv2D(l) => l.name.as_deref(),
            Layer::SeparableConv2D(l) => l.name.as_deref(),
            Layer::MaxPooling2D(l) | Layer::AveragePooling2D(l) => l.name.as_deref(),
            Layer::GlobalAveragePooling2D(l) | Layer::GlobalMaxPooling2D(l) => l.name.as_deref(),
            Layer::Flatten(l) => l.name.as_deref(),
            Layer::Dense(l) => l.name.as_deref(),
            Layer::Dropout(l) => l.name.as_deref(),
            Layer::Rescaling(l) => l.name.as_deref(),
            Layer::RandomFlip(l) => l.name.as_deref(),
            Layer::RandomRotation(l) => l.name.as_deref(),
            Layer::RandomZoom(l) => l.name.as_deref(),
            Layer::RandomTranslation(l) => l.name.as_deref(),
            Layer::RandomShear(l) => l.name.as_deref(),
        }
    }

    pub(crate) fn set_name(&mut self, name: String) {
        let slot = match self {
            Layer::Conv2D(l) => &mut l.name,
            Layer::DepthwiseConv2D(l) => &mut l.name,
            Layer::SeparableConv2D(l) => &mut l.name,
            Layer::MaxPooling2D(l) | Layer::AveragePooling2D(l) => &mut l.name,
            Layer::GlobalAveragePooling2D(l) | Layer::GlobalMaxPooling2D(l) => &mut l.name,
            Layer::Flatten(l) => &mut l.name,
            Layer::Dense(l) => &mut l.name,
            Layer::Dropout(l) => &mut l.name,
            Layer::Rescaling(l) => &mut l.name,
            Layer::RandomFlip(l) => &mut l.name,
            Layer::RandomRotation(l) => &mut l.name,
            Layer::RandomZoom(l) => &mut l.name,
            Layer::RandomTranslation(l) => &mut l.name,
            Layer::RandomShear(l) => &mut l.name,
        };
        *slot = Some(name);
    }

    /// The input shape declared on this layer, if any.
    pub fn declared_input_shape(&self) -> Option<&InputShape> {
        match self {
            Layer::Conv2D(l) => l.input_shape.as_ref(),
            Layer::DepthwiseConv2D(l) => l.input_shape.as_ref(),
            Layer::SeparableConv2D(l) => l.input_shape.as_ref(),
            Layer::MaxPooling2D(l) | Layer::AveragePooling2D(l) => l.input_shape.as_ref(),
            Layer::GlobalAveragePooling2D(l) | Layer::GlobalMaxPooling2D(l) => l.input_shape.as_ref(),
            Layer::Flatten(l) => l.input_shape.as_ref(),
            Layer::Dense(l) => l.input_shape.as_ref(),
            Layer::Dropout(l) => l.input_shape.as_ref(),
            Layer::Rescaling(l) => l.input_shape.as_ref(),
            Layer::RandomFlip(l) => l.input_shape.as_ref(),
            Layer::RandomRotation(l) => l.input_shape.as_ref(),
            Layer::RandomZoom(l) => l.input_shape.as_ref(),
            Layer::RandomTranslation(l) => l.input_shape.as_ref(),
            Layer::RandomShear(l) => l.input_shape.as_ref(),
        }
    }

    /// The declared input shape's slot (set on a model's first layer).
    pub(crate) fn input_shape_slot(&mut self) -> &mut Option<InputShape> {
        match self {
            Layer::Conv2D(l) => &mut l.input_shape,
            Layer::DepthwiseConv2D(l) => &mut l.input_shape,
            Layer::SeparableConv2D(l) => &mut l.input_shape,
            Layer::MaxPooling2D(l) | Layer::AveragePooling2D(l) => &mut l.input_shape,
            Layer::GlobalAveragePooling2D(l) | Layer::GlobalMaxPooling2D(l) => &mut l.input_shape,
            Layer::Flatten(l) => &mut l.input_shape,
            Layer::Dense(l) => &mut l.input_shape,
            Layer::Dropout(l) => &mut l.input_shape,
            Layer::Rescaling(l) => &mut l.input_shape,
            Layer::RandomFlip(l) => &mut l.input_shape,
            Layer::RandomRotation(l) => &mut l.input_shape,
            Layer::RandomZoom(l) => &mut l.input_shape,
            Layer::RandomTranslation(l) => &mut l.input_shape,
            Layer::RandomShear(l) => &mut l.input_shape,
        }
    }

    /// The activation applied to the layer's output.
    pub fn activation(&self) -> Activation {
        match self {
            Layer::Conv2D(l) => l.activation,
            Layer::DepthwiseConv2D(l) => l.activation,
            Layer::SeparableConv2D(l) => l.activation,
            Layer::Dense(l) => l.activation,
            _ => Activation::Linear,
        }
    }

    /// Output shape (without batch) for `input` (without batch), or an error naming `name`.
    pub fn output_shape(&self, name: &str, input: &[usize]) -> Result<Vec<usize>> {
        let shown = fmt_dims(input);
        if input.contains(&0) {
            return Err(Error::build(name, format!("input shape {shown} has a zero dimension")));
        }
        match self {
            Layer::Conv2D(c) => {
                let [h, w, ch] = rank3(name, "Conv2D", input)?;
                if c.filters == 0 {
                    return Err(Error::build(name, "filters must be at least 1"));
                }
                let s = conv_shape(c, 1, h, w, ch).map_err(|e| Error::build(name, cannot_fit(&shown, &e)))?;
                Ok(vec![s.out_h(), s.out_w(), c.filters])
            }
            Layer::DepthwiseConv2D(d) => {
                let [h, w, ch] = rank3(name, "DepthwiseConv2D", input)?;
                if d.depth_multiplier == 0 {
                    return Err(Error::build(name, "depth_multiplier must be at least 1"));
                }
                let s = depthwise_shape(d, 1, h, w, ch).map_err(|e| Error::build(name, cannot_fit(&shown, &e)))?;
                Ok(vec![s.out_h(), s.out_w(), s.c_out])
            }
            Layer::SeparableConv2D(c) => {
                let [h, w, ch] = rank3(name, "SeparableConv2D", input)?;
                if c.filters == 0 || c.depth_multiplier == 0 {
                    return Err(Error::build(name, "filters and depth_multiplier must be at least 1"));
                }
                let (d, _) =
                    separable_shapes(c, 1, h, w, ch).map_err(|e| Error::build(name, cannot_fit(&shown, &e)))?;
                Ok(vec![d.out_h(), d.out_w(), c.filters])
            }
            Layer::MaxPooling2D(p) | Layer::AveragePooling2D(p) => {
                let [h, w, ch] = rank3(name, self.class_name(), input)?;
                let s = pool_shape(p, 1, h, w, ch).map_err(|e| Error::build(name, cannot_fit(&shown, &e)))?;
                Ok(vec![s.out_h(), s.out_w(), ch])
            }
            Layer::GlobalAveragePooling2D(g) | Layer::GlobalMaxPooling2D(g) => {
                let [_, _, ch] = rank3(name, self.class_name(), input)?;
                Ok(if g.keepdims { vec![1, 1, ch] } else { vec![ch] })
            }
            Layer::Flatten(_) => {
                let n = input
                    .iter()
                    .try_fold(1usize, |a, &d| a.checked_mul(d))
                    .ok_or_else(|| Error::build(name, format!("input shape {shown} overflows")))?;
                Ok(vec![n])
            }
            Layer::Dense(d) => {
                if input.len() != 1 {
                    return Err(Error::build(
                        name,
                        format!("Dense needs a flat input (units,), got {shown}: add a Flatten layer before it"),
                    ));
                }
                if d.units == 0 {
                    return Err(Error::build(name, "units must be at least 1"));
                }
                Ok(vec![d.units])
            }
            Layer::Dropout(d) => {
                if !(0.0..1.0).contains(&d.rate) {
                    return Err(Error::build(name, format!("dropout rate must be in [0, 1), got {}", d.rate)));
                }
                Ok(input.to_vec())
            }
            Layer::Rescaling(r) => {
                if !(r.scale.is_finite() && r.offset.is_finite()) {
                    return Err(Error::build(name, format!("Rescaling({}, {}) is not finite", r.scale, r.offset)));
                }
                Ok(input.to_vec())
            }
            Layer::RandomFlip(_) => {
                crate::augment::check(name, "RandomFlip", input, &[])?;
                Ok(input.to_vec())
            }
            Layer::RandomRotation(l) => {
                crate::augment::check(name, "RandomRotation", input, &[l.factor])?;
                Ok(input.to_vec())
            }
            Layer::RandomZoom(l) => {
                let w = l.width_factor.unwrap_or(l.height_factor);
                crate::augment::check(name, "RandomZoom", input, &[l.height_factor, w])?;
                if l.height_factor.0 <= -1.0 || w.0 <= -1.0 {
                    return Err(Error::build(name, "RandomZoom factors must be above -1 (a zoom of 1 + factor > 0)"));
                }
                Ok(input.to_vec())
            }
            Layer::RandomTranslation(l) => {
                crate::augment::check(name, "RandomTranslation", input, &[l.height_factor, l.width_factor])?;
                Ok(input.to_vec())
            }
            Layer::RandomShear(l) => {
                crate::augment::check(name, "RandomShear", input, &[l.x_factor, l.y_factor])?;
                if [l.x_factor.0, l.x_factor.1, l.y_factor.0, l.y_factor.1].iter().any(|f| f.abs() > 1.0) {
                    return Err(Error::build(
                        name,
                        format!(
                            "RandomShear factors must be within [-1, 1] (Keras's range), got x_factor {:?}, y_factor {:?}",
                            l.x_factor, l.y_factor
                        ),
                    ));
                }
                Ok(input.to_vec())
            }
        }
    }

    /// Whether this is one of the random augmentation layers (active only in training).
    pub fn is_random_augmentation(&self) -> bool {
        matches!(
            self,
            Layer::RandomFlip(_)
                | Layer::RandomRotation(_)
                | Layer::RandomZoom(_)
                | Layer::RandomTranslation(_)
                | Layer::RandomShear(_)
        )
    }

    /// The parameters of this layer on `input` (without batch); call after
    /// [`Layer::output_shape`] succeeded.
    pub fn params(&self, input: &[usize]) -> Vec<ParamSpec> {
        let mut v = Vec::new();
        match self {
            Layer::Conv2D(c) => {
                let (kh, kw, cin) = (c.kernel_size.0, c.kernel_size.1, input[input.len() - 1]);
                let dims = vec![kh, kw, cin / c.groups.max(1), c.filters];
                v.push(ParamSpec { kind: "kernel", dims, init: c.kernel_initializer });
                if c.use_bias {
                    v.push(ParamSpec { kind: "bias", dims: vec![c.filters], init: c.bias_initializer });
                }
            }
            Layer::DepthwiseConv2D(d) => {
                let (kh, kw, cin, m) = (d.kernel_size.0, d.kernel_size.1, input[input.len() - 1], d.depth_multiplier);
                v.push(ParamSpec {
                    kind: "depthwise_kernel",
                    dims: vec![kh, kw, cin, m],
                    init: d.depthwise_initializer,
                });
                if d.use_bias {
                    v.push(ParamSpec { kind: "bias", dims: vec![cin * m], init: d.bias_initializer });
                }
            }
            Layer::SeparableConv2D(c) => {
                let (kh, kw, cin, m) = (c.kernel_size.0, c.kernel_size.1, input[input.len() - 1], c.depth_multiplier);
                v.push(ParamSpec {
                    kind: "depthwise_kernel",
                    dims: vec![kh, kw, cin, m],
                    init: c.depthwise_initializer,
                });
                v.push(ParamSpec {
                    kind: "pointwise_kernel",
                    dims: vec![1, 1, cin * m, c.filters],
                    init: c.pointwise_initializer,
                });
                if c.use_bias {
                    v.push(ParamSpec { kind: "bias", dims: vec![c.filters], init: c.bias_initializer });
                }
            }
            Layer::Dense(d) => {
                v.push(ParamSpec { kind: "kernel", dims: vec![input[0], d.units], init: d.kernel_initializer });
                if d.use_bias {
                    v.push(ParamSpec { kind: "bias", dims: vec![d.units], init: d.bias_initializer });
                }
            }
            _ => {}
        }
        v
    }
}

fn cannot_fit(shown: &str, e: &convnet_kernels::Error) -> String {
    let reason = match e {
        convnet_kernels::Error::InvalidShape { reason, .. } => reason.clone(),
        other => other.to_string(),
    };
    format!("cannot be applied to input shape (None, {}: {reason}", shown.trim_start_matches('('))
}

fn rank3(name: &str, class: &str, input: &[usize]) -> Result<[usize; 3]> {
    match input {
        &[h, w, c] => Ok([h, w, c]),
        _ => Err(Error::build(name, format!("{class} needs an (h, w, c) input, got {}", fmt_dims(input)))),
    }
}

/// The kernels' shape of a conv layer on a batch of `n` `(h, w, c)` images.
pub(crate) fn conv_shape(c: &Conv2D, n: usize, h: usize, w: usize, ch: usize) -> convnet_kernels::Result<ConvShape> {
    window_shape(c.kernel_size, c.strides, c.padding, c.groups, c.filters, (n, h, w, ch))
}

/// The kernels' shape of a depthwise layer on a batch of `n` `(h, w, c)` images.
pub(crate) fn depthwise_shape(
    d: &DepthwiseConv2D,
    n: usize,
    h: usize,
    w: usize,
    ch: usize,
) -> convnet_kernels::Result<ConvShape> {
    let c_out = ch.checked_mul(d.depth_multiplier).unwrap_or(0);
    window_shape(d.kernel_size, d.strides, d.padding, ch, c_out, (n, h, w, ch))
}

/// The kernels' shapes of a separable layer's two steps: the depthwise
/// convolution and the 1x1 pointwise convolution on its output.
pub(crate) fn separable_shapes(
    c: &SeparableConv2D,
    n: usize,
    h: usize,
    w: usize,
    ch: usize,
) -> convnet_kernels::Result<(ConvShape, ConvShape)> {
    let mid = ch.checked_mul(c.depth_multiplier).unwrap_or(0);
    let d = window_shape(c.kernel_size, c.strides, c.padding, ch, mid, (n, h, w, ch))?;
    let p = ConvShape::new(n, d.out_h(), d.out_w(), mid, c.filters, 1, 1)?;
    Ok((d, p))
}

/// A validated shape from a layer's window, strides, padding, groups and
/// output channels.
fn window_shape(
    kernel: Size2,
    strides: Size2,
    padding: Padding,
    groups: usize,
    c_out: usize,
    (n, h, w, ch): (usize, usize, usize, usize),
) -> convnet_kernels::Result<ConvShape> {
    // Built field by field (not `ConvShape::new`, which validates the unpadded
    // window first) so that `same` on a map smaller than the kernel works as in Keras.
    let (kh, kw, sh, sw) = (kernel.0, kernel.1, strides.0, strides.1);
    let padding = padding.into();
    let (pad_top, pad_bottom) = convnet_kernels::conv::pad_amounts(padding, h, kh, sh.max(1), 1);
    let (pad_left, pad_right) = convnet_kernels::conv::pad_amounts(padding, w, kw, sw.max(1), 1);
    let s = ConvShape {
        n,
        h,
        w,
        c_in: ch,
        c_out,
        kh,
        kw,
        stride_h: sh,
        stride_w: sw,
        dilation_h: 1,
        dilation_w: 1,
        pad_top,
        pad_bottom,
        pad_left,
        pad_right,
        groups,
    };
    s.validate()?;
    Ok(s)
}

/// The kernels' shape of a pool layer on a batch of `n` `(h, w, c)` images.
pub(crate) fn pool_shape(p: &Pool2D, n: usize, h: usize, w: usize, ch: usize) -> convnet_kernels::Result<PoolShape> {
    let strides = p.strides.unwrap_or(p.pool_size);
    PoolShape::new(n, h, w, ch, (p.pool_size.0, p.pool_size.1), (strides.0, strides.1), p.padding.into())
}

/// A shape as a Python tuple: `(26, 26, 32)`, `(576,)`.
pub(crate) fn fmt_dims(d: &[usize]) -> String {
    let inner: Vec<String> = d.iter().map(|x| x.to_string()).collect();
    if d.len() == 1 {
        format!("({},)", inner[0])
    } else {
        format!("({})", inner.join(", "))
    }
}
