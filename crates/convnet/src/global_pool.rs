//! Global pooling layers: [`GlobalAveragePooling2D`] and
//! [`GlobalMaxPooling2D`] (Keras's names, arguments and output shapes).
//!
//! Each reduces an `(h, w, c)` feature map to one value per channel: `(c,)`,
//! or `(1, 1, c)` with `keepdims` (Keras's `keepdims=True`). They have no
//! parameters. The average runs on the kernels' global average pool; the
//! maximum is a max pool whose window is the whole map, so it shares that
//! kernel's forward pass, its arg-max bookkeeping and its gradient (which
//! goes to the first maximal position of each channel, as in max pooling).
//!
//! The configuration lives here (a leaf below `layers.rs`, as `separable.rs`
//! is); `layers.rs` does the shape inference, `train.rs` and `infer.rs` run them.

use crate::options::InputShape;
use serde::{Deserialize, Serialize};

/// The configuration both global pooling layers share.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalPool2D {
    /// Layer name; `None` lets the model name it (`global_average_pooling2d`, ...).
    pub name: Option<String>,
    /// Keep the spatial axes as size 1: output `(1, 1, c)` instead of `(c,)`
    /// (Keras's `keepdims`, default false).
    #[serde(default)]
    pub keepdims: bool,
    /// The input shape `(h, w, c)`, needed on the first layer.
    pub input_shape: Option<InputShape>,
}

macro_rules! global_pool_layer {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, Default, PartialEq)]
        pub struct $name(pub GlobalPool2D);

        impl $name {
            /// The layer with Keras's defaults (`keepdims=False`: output `(c,)`).
            pub fn new() -> Self {
                $name(GlobalPool2D::default())
            }
            /// Keeps the spatial axes: output `(1, 1, c)`.
            pub fn keepdims(mut self, keep: bool) -> Self {
                self.0.keepdims = keep;
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

global_pool_layer!(
    /// The mean of each channel over all positions (Keras `GlobalAveragePooling2D`):
    /// `(h, w, c) -> (c,)`. VGG16's `pooling="avg"` ends in it.
    ///
    /// ```
    /// use convnet::{Conv2D, Dense, GlobalAveragePooling2D, Sequential};
    /// let model = Sequential::new()
    ///     .add(Conv2D::new(8, (3, 3)).input_shape((10, 10, 3)))
    ///     .add(GlobalAveragePooling2D::new())
    ///     .add(Dense::new(2))
    ///     .build()?;
    /// assert_eq!(model.layers()[1].output, [8]);
    /// assert_eq!(model.layers()[1].name, "global_average_pooling2d");
    /// # Ok::<(), convnet::Error>(())
    /// ```
    GlobalAveragePooling2D
);
global_pool_layer!(
    /// The maximum of each channel over all positions (Keras `GlobalMaxPooling2D`):
    /// `(h, w, c) -> (c,)`. VGG16's `pooling="max"` ends in it.
    ///
    /// ```
    /// use convnet::{GlobalMaxPooling2D, Sequential};
    /// use convnet_tensor::{Shape, Tensor};
    /// let model = Sequential::new().add(GlobalMaxPooling2D::new().input_shape((2, 2, 1))).build()?;
    /// let x = Tensor::from_slice(Shape::nhwc(1, 2, 2, 1), &[1.0, 5.0, -2.0, 3.0])?;
    /// assert_eq!(model.predict(&x, 1)?.data(), [5.0]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    GlobalMaxPooling2D
);
