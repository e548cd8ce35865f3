//! `convnet`: the Keras convnet workflow in Rust.
//!
//! Build a [`Sequential`] model of [`Conv2D`] / [`MaxPooling2D`] / [`Flatten`] /
//! [`Dense`] layers, print its Keras [`summary`](Model::summary), compile it
//! with an optimizer and a loss, `fit` it with a Keras progress bar,
//! `evaluate` and `predict`, save and load its weights (safetensors, Keras
//! names and layouts). Activations are NHWC, conv kernels HWIO, dense kernels
//! `[in, out]`, exactly as Keras stores them, so weights move between the two.
//!
//! ```no_run
//! use convnet::Activation::{Relu, Softmax};
//! use convnet::{Conv2D, Dense, FitOptions, Flatten, Loss, MaxPooling2D, Metric, Sequential};
//! use convnet_datasets::Mnist;
//! use convnet_optim::RMSprop;
//!
//! // model = models.Sequential([layers.Conv2D(32, (3, 3), activation="relu", input_shape=(28, 28, 1)), ...])
//! let mut model = Sequential::new()
//!     .add(Conv2D::new(32, (3, 3)).activation(Relu).input_shape((28, 28, 1)))
//!     .add(MaxPooling2D::new((2, 2)))
//!     .add(Conv2D::new(64, (3, 3)).activation(Relu))
//!     .add(MaxPooling2D::new((2, 2)))
//!     .add(Conv2D::new(64, (3, 3)).activation(Relu))
//!     .add(Flatten::new())
//!     .add(Dense::new(64).activation(Relu))
//!     .add(Dense::new(10).activation(Softmax))
//!     .build()?;
//! print!("{}", model.summary()); // model.summary()
//! let mnist = Mnist::load_default()?; // mnist.load_data(), scaled by 1/255 per batch
//! // model.compile(optimizer="rmsprop", loss="categorical_crossentropy", metrics=["accuracy"])
//! model.compile(RMSprop::default(), Loss::CategoricalCrossentropy, &[Metric::Accuracy])?;
//! // model.fit(train_images, train_labels, epochs=5, batch_size=64)
//! model.fit_examples(&mnist.train, FitOptions { epochs: 5, batch_size: 64, ..Default::default() })?;
//! // test_loss, test_acc = model.evaluate(test_images, test_labels)
//! let (_test_loss, test_acc) = model.evaluate_examples(&mnist.test, 64)?;
//! println!("test accuracy: {test_acc:.4}");
//! model.save_weights("convnet.safetensors")?; // conv2d/kernel (HWIO), conv2d/bias, ...
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The same calls run anywhere without data; here a small model's untrained
//! predictions (each row a softmax, summing to 1):
//!
//! ```
//! use convnet::Activation::{Relu, Softmax};
//! use convnet::{Conv2D, Dense, Flatten, MaxPooling2D, Sequential};
//! use convnet_tensor::{Shape, Tensor};
//!
//! let model = Sequential::new()
//!     .add(Conv2D::new(4, (3, 3)).activation(Relu).input_shape((8, 8, 1)))
//!     .add(MaxPooling2D::new((2, 2)))
//!     .add(Flatten::new())
//!     .add(Dense::new(3).activation(Softmax))
//!     .build()?;
//! assert_eq!(model.param_count(), 40 + 111);
//! let x = Tensor::full(Shape::nhwc(2, 8, 8, 1), 0.5);
//! let probs = model.predict(&x, 32)?; // [2, 3]
//! for row in probs.data().chunks(3) {
//!     assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
//! }
//! # Ok::<(), convnet::Error>(())
//! ```
//!
//! **Threads.** The kernels run on rayon's global pool. Calling `fit` from a
//! thread outside the pool (such as `main`) hands every parallel kernel call
//! to the pool through its global queue and waits on a latch; making the
//! calling thread one of the pool's workers avoids that, and made a training
//! step of the chapter's model about 9% faster here. The `convnet` CLI does
//! this; in a program of your own, build the pool before the model:
//!
//! ```no_run
//! rayon::ThreadPoolBuilder::new().use_current_thread().build_global()?;
//! # Ok::<(), rayon::ThreadPoolBuildError>(())
//! ```
//!
//! Modules: [`layers`] (configuration and shape inference), [`Model`]
//! (built weights, [`summary`](Model::summary); `compile` in `compile.rs`,
//! `fit` in `train.rs`, `evaluate`/`predict` in `evaluate.rs` on the
//! tape-free engine in `infer.rs`), [`data`] (where batches come from),
//! [`callbacks`], [`progress`] (Keras's bar), [`plot`] (training curves), [`weights`] (safetensors
//! files), [`files`] (bounded reads, atomic saves), [`images`] (images as
//! input), [`limits`] (the resource limits, `docs/LIMITS.md`), [`keras`] (Keras `.keras` /
//! `.h5` files in), [`applications`] (VGG16). The modules
//! form a one-way graph, drawn in `docs/ARCHITECTURE.md`.
#![warn(missing_docs)]

// The module graph is one way (docs/ARCHITECTURE.md draws it). Layer by
// layer, each module uses only modules of the layers above its own:
//   error, progress, logs, data, options     (leaves; data and options use error)
//   limits, files, images                    (files uses limits; images uses files, limits)
//   separable, augment, global_pool -> options (DepthwiseConv2D, SeparableConv2D; Rescaling, Random*;
//                                            GlobalAveragePooling2D, GlobalMaxPooling2D)
//   layers -> options, separable, augment, global_pool (the Layer enum, shape inference)
//   plan -> layers, limits
//   built -> layers
//   summary, infer, compile -> built, layers (compile also data)
//   batch -> compile, data
//   model -> built, compile, infer, layers, limits, plan, summary
//   evaluate, weights -> model (evaluate also batch, compile, infer, plan; weights also files, limits, plan)
//   plot -> logs, files                      (History::plot, the training curves)
//   callbacks -> logs, model
//   train -> augment, batch, callbacks, compile, infer, layers, logs, model, progress
//   gradients -> infer, layers, model, train   (activations, gradients w.r.t. inputs and layer outputs)
//   keras -> augment, files, layers, limits, model, weights (Keras files in and out, any-format load/save)
//   applications -> keras, layers, model   (VGG16)
//   visualize -> files, gradients, layers, model (activation grids, filter patterns, Grad-CAM)
pub mod applications;
mod augment;
mod batch;
mod built;
pub mod callbacks;
mod compile;
pub mod data;
pub mod distributed;
mod error;
mod evaluate;
pub mod files;
mod global_pool;
pub mod gradients;
pub mod images;
mod infer;
pub mod keras;
pub mod layers;
pub mod limits;
mod logs;
mod model;
mod options;
mod plan;
pub mod plot;
pub mod profile;
pub mod progress;
mod separable;
mod shards;
mod summary;
mod train;
pub mod visualize;
pub mod weights;

pub use built::BuiltLayer;
pub use callbacks::{
    Callback, Control, EarlyStopping, ModelCheckpoint, Monitor, OnBatchEnd, OnEpochEnd, TerminateOnNaN,
};
pub use compile::{Loss, Metric};
pub use data::{Examples, TargetForm, XY};
pub use error::{Error, Result};
pub use layers::{
    Activation, AveragePooling2D, Conv2D, Dense, DepthwiseConv2D, Dropout, Factor, FillMode, Flatten, FlipMode,
    GlobalAveragePooling2D, GlobalMaxPooling2D, Initializer, InputShape, Interpolation, Layer, MaxPooling2D, Padding,
    RandomFlip, RandomRotation, RandomShear, RandomTranslation, RandomZoom, Rescaling, SeparableConv2D,
};
pub use logs::{BatchLogs, EpochLogs, History};
pub use model::{
    mnist_convnet, small_data_convnet, Model, Sequential, CLASS_NAMES_KEY, DEFAULT_SEED, MAX_METADATA_BYTES,
    PIXEL_SCALE_KEY,
};
pub use train::{FitOptions, Verbose, DEFAULT_SHARDS, MAX_SHARDS};

/// The optimizers (`convnet-optim`), as Keras's `keras.optimizers`.
pub mod optimizers {
    pub use convnet_optim::{Adam, AdamW, LearningRate, Optimizer, RMSprop, Sgd};
}
/// The datasets crate (`convnet-datasets`): MNIST, batches.
pub use convnet_datasets as datasets;

// The README's example runs as a doc test, so the front page a user reads on
// crates.io cannot go stale.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
