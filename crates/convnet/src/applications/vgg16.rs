//! VGG16 (Simonyan & Zisserman, "Very Deep Convolutional Networks for
//! Large-Scale Image Recognition", arXiv:1409.1556) as
//! `keras.applications.VGG16` builds it: five blocks of 3x3 `same` ReLU
//! convolutions (64, 128, 256, 512, 512 filters; two, two, three, three and
//! three of them) each ending in 2x2 max pooling, named `block1_conv1` ...
//! `block5_pool`; with the top, `flatten`, `fc1` and `fc2` (4096, ReLU) and
//! `predictions` (1000, softmax).
//!
//! The ImageNet weights Keras downloads (`vgg16_weights_tf_dim_ordering_tf_kernels.h5`
//! and `..._notop.h5`) load with [`Vgg16::load_imagenet`]; the network expects
//! inputs prepared by [`preprocess_input`] (Keras's "caffe" mode).
//!
//! ```
//! use convnet::applications::vgg16::Vgg16;
//! // conv_base = VGG16(weights=None, include_top=False, input_shape=(150, 150, 3))
//! let conv_base = Vgg16::new().include_top(false).input_shape((150, 150, 3)).build()?;
//! assert_eq!(conv_base.param_count(), 14_714_688);
//! assert_eq!(conv_base.output_shape(), &[4, 4, 512]);
//! # Ok::<(), convnet::Error>(())
//! ```

use crate::layers::Activation::{Relu, Softmax};
use crate::layers::{
    Activation, Conv2D, Dense, Flatten, GlobalAveragePooling2D, GlobalMaxPooling2D, MaxPooling2D, Padding,
};
use crate::model::{Model, Sequential};
use crate::{Error, Result};
use std::path::Path;

/// The per-channel means "caffe" preprocessing subtracts, in BGR order
/// (ImageNet's training-set means, as Keras's `imagenet_utils` has them).
pub const IMAGENET_MEANS_BGR: [f32; 3] = [103.939, 116.779, 123.68];

/// The smallest input side VGG16 accepts (five 2x2 poolings), as in Keras.
pub const MIN_INPUT_SIDE: usize = 32;

/// The filters of each block's convolutions.
const BLOCKS: [&[usize]; 5] = [&[64, 64], &[128, 128], &[256, 256, 256], &[512, 512, 512], &[512, 512, 512]];

/// Keras's `pooling` argument of the applications: what follows the
/// convolutional base when `include_top` is false.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pooling {
    /// `pooling="avg"`: a `GlobalAveragePooling2D`, output `(512,)`.
    Avg,
    /// `pooling="max"`: a `GlobalMaxPooling2D`, output `(512,)`.
    Max,
}

impl std::str::FromStr for Pooling {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "avg" => Ok(Pooling::Avg),
            "max" => Ok(Pooling::Max),
            other => Err(Error::invalid("VGG16 pooling", format!("{other:?} is not avg or max"))),
        }
    }
}

/// The configuration of a VGG16 model (Keras's `VGG16(...)` arguments); build
/// it with [`Vgg16::build`] or load ImageNet weights with [`Vgg16::load_imagenet`].
#[derive(Clone, Debug, PartialEq)]
pub struct Vgg16 {
    /// With the three dense layers on top (default `true`).
    pub include_top: bool,
    /// `(height, width, channels)`, default `(224, 224, 3)`.
    pub input_shape: (usize, usize, usize),
    /// Output classes of `predictions` (default 1000).
    pub classes: usize,
    /// The activation of `predictions` (default softmax).
    pub classifier_activation: Activation,
    /// Global pooling after the base when `include_top` is false (default
    /// `None`: the 4D output of `block5_pool`); ignored with the top, as in Keras.
    pub pooling: Option<Pooling>,
}

impl Default for Vgg16 {
    fn default() -> Self {
        Self::new()
    }
}

impl Vgg16 {
    /// Keras's defaults: with the top, 224x224x3 input, 1000 classes, softmax.
    pub fn new() -> Self {
        Vgg16 {
            include_top: true,
            input_shape: (224, 224, 3),
            classes: 1000,
            classifier_activation: Softmax,
            pooling: None,
        }
    }
    /// With or without the dense classifier on top.
    pub fn include_top(mut self, include: bool) -> Self {
        self.include_top = include;
        self
    }
    /// The input shape `(h, w, c)`; each side at least 32.
    pub fn input_shape(mut self, shape: (usize, usize, usize)) -> Self {
        self.input_shape = shape;
        self
    }
    /// The number of classes of `predictions`.
    pub fn classes(mut self, classes: usize) -> Self {
        self.classes = classes;
        self
    }
    /// The activation of `predictions`.
    pub fn classifier_activation(mut self, a: Activation) -> Self {
        self.classifier_activation = a;
        self
    }
    /// Global pooling after the base (Keras's `pooling=None|"avg"|"max"`),
    /// used when `include_top` is false.
    ///
    /// ```
    /// use convnet::applications::vgg16::{Pooling, Vgg16};
    /// let v = Vgg16::new().include_top(false).input_shape((64, 64, 3)).pooling(Some(Pooling::Avg));
    /// assert_eq!(v.build()?.output_shape(), &[512]);
    /// # Ok::<(), convnet::Error>(())
    /// ```
    pub fn pooling(mut self, pooling: Option<Pooling>) -> Self {
        self.pooling = pooling;
        self
    }

    /// The model definition (named `vgg16`, as in Keras).
    pub fn sequential(&self) -> Result<Sequential> {
        let (h, w, c) = self.input_shape;
        if h < MIN_INPUT_SIDE || w < MIN_INPUT_SIDE || c == 0 {
            return Err(Error::invalid(
                "VGG16 input_shape",
                format!("({h}, {w}, {c}): height and width must be at least {MIN_INPUT_SIDE} and channels at least 1"),
            ));
        }
        let mut s = Sequential::new().named("vgg16");
        for (b, filters) in BLOCKS.iter().enumerate() {
            for (i, &f) in filters.iter().enumerate() {
                let mut conv = Conv2D::new(f, (3, 3)).padding(Padding::Same).activation(Relu).name(format!(
                    "block{}_conv{}",
                    b + 1,
                    i + 1
                ));
                if b == 0 && i == 0 {
                    conv = conv.input_shape(self.input_shape);
                }
                s = s.add(conv);
            }
            s = s.add(MaxPooling2D::new((2, 2)).strides((2, 2)).name(format!("block{}_pool", b + 1)));
        }
        if self.include_top && self.classes == 0 {
            return Err(Error::invalid("VGG16 classes", "must be at least 1"));
        }
        if !self.include_top {
            s = match self.pooling {
                None => s,
                Some(Pooling::Avg) => s.add(GlobalAveragePooling2D::new().name("global_average_pooling2d")),
                Some(Pooling::Max) => s.add(GlobalMaxPooling2D::new().name("global_max_pooling2d")),
            };
        }
        if self.include_top {
            s = s
                .add(Flatten::new().name("flatten"))
                .add(Dense::new(4096).activation(Relu).name("fc1"))
                .add(Dense::new(4096).activation(Relu).name("fc2"))
                .add(Dense::new(self.classes).activation(self.classifier_activation).name("predictions"));
        }
        Ok(s)
    }

    /// Builds the model (weights initialised as Keras does without `weights=`).
    pub fn build(&self) -> Result<Model> {
        self.sequential()?.build()
    }

    /// Builds the model with every weight zero, for a loader to overwrite:
    /// skips the initialisation (a quarter of a second for the base) that
    /// loading would throw away.
    pub(crate) fn build_uninitialised(&self) -> Result<Model> {
        self.sequential()?.build_uninitialised()
    }

    /// Builds the model and loads Keras's ImageNet weights from `path`:
    /// `vgg16_weights_tf_dim_ordering_tf_kernels.h5` with the top (input
    /// 224x224x3, 1000 classes), `..._notop.h5` without it (any input of at
    /// least 32x32x3), or the same weights in any Keras layout
    /// ([`Model::load_keras_weights`]).
    pub fn load_imagenet(&self, path: impl AsRef<Path>) -> Result<Model> {
        if self.input_shape.2 != 3 {
            return Err(Error::invalid("VGG16 input_shape", "ImageNet weights need 3 input channels (RGB)"));
        }
        if self.include_top && (self.input_shape != (224, 224, 3) || self.classes != 1000) {
            return Err(Error::invalid(
                "VGG16",
                "ImageNet weights with the top need input_shape (224, 224, 3) and 1000 classes; use include_top(false) \
                 for other sizes",
            ));
        }
        let mut model = self.build_uninitialised()?;
        model.load_keras_weights(path)?;
        Ok(model)
    }
}

/// Keras's `keras.applications.vgg16.preprocess_input` ("caffe" mode) in
/// place on NHWC RGB images with values in `[0, 255]`: channels reversed to
/// BGR, then [`IMAGENET_MEANS_BGR`] subtracted (no scaling).
///
/// ```
/// let mut pixel = [255.0, 128.0, 0.0]; // R, G, B
/// convnet::applications::vgg16::preprocess_input(&mut pixel)?;
/// assert_eq!(pixel, [0.0 - 103.939, 128.0 - 116.779, 255.0 - 123.68]);
/// # Ok::<(), convnet::Error>(())
/// ```
pub fn preprocess_input(images: &mut [f32]) -> Result<()> {
    if !images.len().is_multiple_of(3) {
        return Err(Error::Data(format!(
            "preprocess_input needs RGB pixels (a multiple of 3 values), got {} values",
            images.len()
        )));
    }
    for px in images.chunks_exact_mut(3) {
        let (r, g, b) = (px[0], px[1], px[2]);
        px[0] = b - IMAGENET_MEANS_BGR[0];
        px[1] = g - IMAGENET_MEANS_BGR[1];
        px[2] = r - IMAGENET_MEANS_BGR[2];
    }
    Ok(())
}
