//! The option types every layer configuration shares: [`Activation`],
//! [`Padding`], [`Initializer`], [`InputShape`], [`Size2`], and the JSON form
//! of a pinned convolution algorithm. A leaf below the layer modules
//! (`separable.rs`, `layers.rs`), so they share these without importing each
//! other; `layers` re-exports them under their public paths.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// An element-wise activation applied to a layer's output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// Identity (Keras `"linear"`, the default).
    #[default]
    Linear,
    /// `max(x, 0)`.
    Relu,
    /// `1 / (1 + exp(-x))`.
    Sigmoid,
    /// `tanh(x)`.
    Tanh,
    /// Row-wise softmax over the last axis. With categorical cross-entropy it
    /// is fused into the loss (Keras's `from_logits` path), so it is stable.
    Softmax,
}

impl Activation {
    /// Keras's name for it (`"relu"`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Activation::Linear => "linear",
            Activation::Relu => "relu",
            Activation::Sigmoid => "sigmoid",
            Activation::Tanh => "tanh",
            Activation::Softmax => "softmax",
        }
    }
}

impl std::str::FromStr for Activation {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "linear" | "none" => Activation::Linear,
            "relu" => Activation::Relu,
            "sigmoid" => Activation::Sigmoid,
            "tanh" => Activation::Tanh,
            "softmax" => Activation::Softmax,
            other => return Err(Error::invalid("activation", format!("unknown activation {other:?}"))),
        })
    }
}

/// Keras padding modes for convolution and pooling.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Padding {
    /// No padding (the default): windows stay inside the input.
    #[default]
    Valid,
    /// Output size `ceil(input / stride)`, TensorFlow's split of the padding.
    Same,
}

impl From<Padding> for convnet_kernels::conv::Padding {
    fn from(p: Padding) -> Self {
        match p {
            Padding::Valid => convnet_kernels::conv::Padding::Valid,
            Padding::Same => convnet_kernels::conv::Padding::Same,
        }
    }
}

/// Weight initialisers (Keras names).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Initializer {
    /// Uniform in `±sqrt(6 / (fan_in + fan_out))` (Keras's default kernel initialiser).
    #[default]
    GlorotUniform,
    /// Truncated normal with std `sqrt(2 / fan_in)`.
    HeNormal,
    /// All zeros (Keras's default bias initialiser).
    Zeros,
}

/// The shape a layer expects, without the batch axis: `(28, 28, 1)` or `784`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct InputShape(pub Vec<usize>);

impl From<(usize, usize, usize)> for InputShape {
    fn from((h, w, c): (usize, usize, usize)) -> Self {
        InputShape(vec![h, w, c])
    }
}
impl From<usize> for InputShape {
    fn from(n: usize) -> Self {
        InputShape(vec![n])
    }
}
impl From<(usize,)> for InputShape {
    fn from((n,): (usize,)) -> Self {
        InputShape(vec![n])
    }
}
impl From<&[usize]> for InputShape {
    fn from(d: &[usize]) -> Self {
        InputShape(d.to_vec())
    }
}

/// A kernel or pool size / strides: `3`, `(3, 3)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Size2(pub usize, pub usize);

impl From<usize> for Size2 {
    fn from(k: usize) -> Self {
        Size2(k, k)
    }
}
impl From<(usize, usize)> for Size2 {
    fn from((a, b): (usize, usize)) -> Self {
        Size2(a, b)
    }
}

/// Keras's defaults for the fields an architecture JSON may leave out
/// (`#[serde(default = "...")]` on the layer configs): a layer written as
/// `{"filters": 32, "kernel_size": [3, 3]}` means what `Conv2D(32, 3)` means.
pub(crate) mod defaults {
    use super::{Activation, Initializer, Padding, Size2};

    /// `strides` of a convolution: `(1, 1)`.
    pub(crate) fn unit_strides() -> Size2 {
        Size2(1, 1)
    }
    /// `pool_size` of a pooling layer: `(2, 2)`.
    pub(crate) fn pool_size() -> Size2 {
        Size2(2, 2)
    }
    /// `padding`: `valid`.
    pub(crate) fn valid() -> Padding {
        Padding::Valid
    }
    /// `activation`: linear (none).
    pub(crate) fn linear() -> Activation {
        Activation::Linear
    }
    /// `use_bias`: true.
    pub(crate) fn yes() -> bool {
        true
    }
    /// Kernel initialisers: `glorot_uniform`.
    pub(crate) fn glorot() -> Initializer {
        Initializer::GlorotUniform
    }
    /// `bias_initializer`: `zeros`.
    pub(crate) fn zeros() -> Initializer {
        Initializer::Zeros
    }
}

pub(crate) mod algo_name {
    //! `Option<ConvAlgo>` as its CLI name in JSON.
    use convnet_kernels::conv::ConvAlgo;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(a: &Option<ConvAlgo>, s: S) -> Result<S::Ok, S::Error> {
        match a {
            Some(a) => s.serialize_some(a.name()),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<ConvAlgo>, D::Error> {
        let name: Option<String> = Option::deserialize(d)?;
        name.map(|n| n.parse().map_err(serde::de::Error::custom)).transpose()
    }
}
