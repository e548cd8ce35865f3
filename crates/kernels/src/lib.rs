//! `convnet-kernels`: CPU kernels for convolutional networks.
//!
//! Plain functions over slices plus a shape descriptor; NHWC activations and
//! HWIO filters (Keras layouts). Each public entry point validates its shape and
//! checks slice lengths once, then runs the chosen algorithm.
//!
//! - [`conv`]: 2-D convolution forward / backward-data / backward-filter / bias,
//!   behind [`conv::ConvAlgo`].
//! - [`pool`]: max, average and global average pooling.
//! - [`dense`], [`gemm`]: fully connected layers on sgemm.
//! - [`activation`]: relu and bias add; [`loss`]: fused softmax cross-entropy.
//! - [`image`]: the fused affine warp of data augmentation (Keras's random
//!   rotation, zoom, translation, shear and flip), NHWC, every fill mode.
//! - [`simd`]: the run-time instruction-set choice (`CONVNET_SIMD`).
#![warn(missing_docs)]

pub mod activation;
mod arch;
pub mod conv;
pub mod dense;
mod error;
pub mod gemm;
pub mod image;
pub mod loss;
pub mod pool;
pub mod simd;

pub use error::{Error, Result};

// The README's example runs as a doc test, so the front page a user reads on
// crates.io cannot go stale.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
