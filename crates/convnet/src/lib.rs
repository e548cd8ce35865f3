//! `convnet`: the Keras convnet workflow in Rust.
//!
//! Build a [`Sequential`] model of [`Conv2D`] / [`MaxPooling2D`] / [`Flatten`] /
//! [`Dense`] layers, print its Keras [`summary`](Model::summary), compile it
//! with an optimizer and a loss, `fit` it with a Keras progress bar,
//! `evaluate` and `predict`, save and load its weights (safetensors, Keras
//! names and layouts). Activations are NHWC, conv kernels HWIO, dense kernels
//! `[in, out]`, exactly as Keras stores them, so weights move between the two.
#![warn(missing_docs)]

pub mod callbacks;
pub mod data;
mod error;
mod infer;
pub mod layers;
mod model;
pub mod progress;
mod summary;
mod train;
pub mod weights;

pub use callbacks::{Callback, Control, EarlyStopping, ModelCheckpoint, Monitor, OnBatchEnd, OnEpochEnd};
pub use data::{Examples, TargetForm, XY};
pub use error::{Error, Result};
pub use layers::{
    Activation, AveragePooling2D, Conv2D, Dense, Dropout, Flatten, Initializer, InputShape, Layer, MaxPooling2D,
    Padding,
};
pub use model::{mnist_convnet, BuiltLayer, Model, Sequential, DEFAULT_SEED};
pub use train::{BatchLogs, EpochLogs, FitOptions, History, Loss, Metric, Verbose};
