//! [`BuiltLayer`]: one layer of a built model, with its resolved name,
//! shapes and parameter handles.
//!
//! It sits between the layer configurations (`layers`) and everything that
//! runs a built model (the summary table, the tape-free inference engine,
//! `Model` itself), so none of those needs `Model` to describe a layer.

use crate::layers::Layer;
use convnet_autodiff::ParamId;

/// A layer of a built model: its resolved name, shapes (without the batch axis)
/// and where its parameters sit in [`Model::params`](crate::Model::params).
#[derive(Clone, Debug, PartialEq)]
pub struct BuiltLayer {
    /// Keras-style name (`conv2d_1`).
    pub name: String,
    /// The layer's configuration (with the name filled in).
    pub layer: Layer,
    /// Input shape without the batch axis.
    pub input: Vec<usize>,
    /// Output shape without the batch axis.
    pub output: Vec<usize>,
    /// Its parameters in [`Model::params`](crate::Model::params) (kernel, then bias).
    pub params: Vec<ParamId>,
    /// Number of scalar parameters.
    pub param_count: usize,
    /// Whether training updates its parameters (Keras's `layer.trainable`,
    /// default true); set with [`Model::set_trainable`](crate::Model::set_trainable)
    /// and its siblings.
    pub trainable: bool,
}
