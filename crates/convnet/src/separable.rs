//! The depthwise-separable layers of MobileNet and Xception, configured as
//! Keras configures them: [`DepthwiseConv2D`] (one `kh x kw` filter per input
//! channel and multiplier, weights `depthwise_kernel` `[kh, kw, c_in,
//! depth_multiplier]`) and [`SeparableConv2D`] (that depthwise convolution,
//! then a 1x1 `pointwise_kernel` `[1, 1, c_in * depth_multiplier, filters]`
//! and a bias). Both run on the kernels crate's depthwise kernel.

use crate::options::{algo_name, Activation, Initializer, InputShape, Padding, Size2};
use convnet_kernels::conv::ConvAlgo;
use serde::{Deserialize, Serialize};

fn one() -> usize {
    1
}

/// Depthwise 2-D convolution (Keras `DepthwiseConv2D`): each input channel
/// convolved with its own `depth_multiplier` filters; output channel
/// `ci * depth_multiplier + m`.
///
/// ```
/// use convnet::{DepthwiseConv2D, Padding, Sequential};
/// let model = Sequential::new()
///     .add(DepthwiseConv2D::new((3, 3)).padding(Padding::Same).input_shape((8, 8, 4)))
///     .build()?;
/// assert_eq!(model.layers()[0].output, vec![8, 8, 4]);
/// assert_eq!(model.layers()[0].param_count, 3 * 3 * 4 + 4);
/// # Ok::<(), convnet::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DepthwiseConv2D {
    /// Layer name; `None` lets the model name it `depthwise_conv2d`, ...
    pub name: Option<String>,
    /// `(kh, kw)`.
    pub kernel_size: Size2,
    /// `(stride_h, stride_w)`, default `(1, 1)`.
    #[serde(default = "crate::options::defaults::unit_strides")]
    pub strides: Size2,
    /// `valid` (default) or `same`.
    #[serde(default = "crate::options::defaults::valid")]
    pub padding: Padding,
    /// Filters per input channel, default 1.
    #[serde(default = "one")]
    pub depth_multiplier: usize,
    /// Applied after the bias.
    #[serde(default = "crate::options::defaults::linear")]
    pub activation: Activation,
    /// Whether the layer has a bias (default true).
    #[serde(default = "crate::options::defaults::yes")]
    pub use_bias: bool,
    /// Depthwise kernel initialiser, default `glorot_uniform`.
    #[serde(default = "crate::options::defaults::glorot")]
    pub depthwise_initializer: Initializer,
    /// Bias initialiser, default `zeros`.
    #[serde(default = "crate::options::defaults::zeros")]
    pub bias_initializer: Initializer,
    /// The convolution algorithm; `None` means [`ConvAlgo::Auto`] (the depthwise kernel).
    #[serde(with = "algo_name", default)]
    pub algo: Option<ConvAlgo>,
    /// The input shape `(h, w, c)`, needed on the first layer.
    pub input_shape: Option<InputShape>,
}

impl DepthwiseConv2D {
    /// A `kernel_size` depthwise convolution: multiplier 1, stride 1, valid
    /// padding, linear activation, bias, `glorot_uniform` kernel.
    pub fn new(kernel_size: impl Into<Size2>) -> Self {
        DepthwiseConv2D {
            name: None,
            kernel_size: kernel_size.into(),
            strides: Size2(1, 1),
            padding: Padding::Valid,
            depth_multiplier: 1,
            activation: Activation::Linear,
            use_bias: true,
            depthwise_initializer: Initializer::GlorotUniform,
            bias_initializer: Initializer::Zeros,
            algo: None,
            input_shape: None,
        }
    }
    /// Sets the channel multiplier.
    pub fn depth_multiplier(mut self, m: usize) -> Self {
        self.depth_multiplier = m;
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
    /// Sets the depthwise kernel initialiser.
    pub fn depthwise_initializer(mut self, i: Initializer) -> Self {
        self.depthwise_initializer = i;
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

/// Depthwise-separable 2-D convolution (Keras `SeparableConv2D`): a
/// depthwise convolution (strides and padding apply here, no bias), then a
/// 1x1 convolution to `filters` channels with the bias and activation.
///
/// ```
/// use convnet::{SeparableConv2D, Sequential};
/// let model = Sequential::new()
///     .add(SeparableConv2D::new(16, (3, 3)).depth_multiplier(2).input_shape((10, 10, 8)))
///     .build()?;
/// assert_eq!(model.layers()[0].output, vec![8, 8, 16]);
/// // depthwise 3*3*8*2, pointwise 16*16, bias 16: as Keras counts them.
/// assert_eq!(model.layers()[0].param_count, 144 + 256 + 16);
/// # Ok::<(), convnet::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeparableConv2D {
    /// Layer name; `None` lets the model name it `separable_conv2d`, ...
    pub name: Option<String>,
    /// Output channels of the pointwise convolution.
    pub filters: usize,
    /// `(kh, kw)` of the depthwise convolution.
    pub kernel_size: Size2,
    /// `(stride_h, stride_w)` of the depthwise convolution, default `(1, 1)`.
    #[serde(default = "crate::options::defaults::unit_strides")]
    pub strides: Size2,
    /// `valid` (default) or `same`.
    #[serde(default = "crate::options::defaults::valid")]
    pub padding: Padding,
    /// Depthwise filters per input channel, default 1.
    #[serde(default = "one")]
    pub depth_multiplier: usize,
    /// Applied after the bias.
    #[serde(default = "crate::options::defaults::linear")]
    pub activation: Activation,
    /// Whether the layer has a bias (default true).
    #[serde(default = "crate::options::defaults::yes")]
    pub use_bias: bool,
    /// Depthwise kernel initialiser, default `glorot_uniform`.
    #[serde(default = "crate::options::defaults::glorot")]
    pub depthwise_initializer: Initializer,
    /// Pointwise kernel initialiser, default `glorot_uniform`.
    #[serde(default = "crate::options::defaults::glorot")]
    pub pointwise_initializer: Initializer,
    /// Bias initialiser, default `zeros`.
    #[serde(default = "crate::options::defaults::zeros")]
    pub bias_initializer: Initializer,
    /// The input shape `(h, w, c)`, needed on the first layer.
    pub input_shape: Option<InputShape>,
}

impl SeparableConv2D {
    /// `filters` outputs after a `kernel_size` depthwise convolution:
    /// multiplier 1, stride 1, valid padding, linear activation, bias,
    /// `glorot_uniform` kernels.
    pub fn new(filters: usize, kernel_size: impl Into<Size2>) -> Self {
        SeparableConv2D {
            name: None,
            filters,
            kernel_size: kernel_size.into(),
            strides: Size2(1, 1),
            padding: Padding::Valid,
            depth_multiplier: 1,
            activation: Activation::Linear,
            use_bias: true,
            depthwise_initializer: Initializer::GlorotUniform,
            pointwise_initializer: Initializer::GlorotUniform,
            bias_initializer: Initializer::Zeros,
            input_shape: None,
        }
    }
    /// Sets the channel multiplier of the depthwise step.
    pub fn depth_multiplier(mut self, m: usize) -> Self {
        self.depth_multiplier = m;
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
