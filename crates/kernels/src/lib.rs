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
//! - [`activation`]: relu and bias add; [`loss`]: fused softmax cross-entropy,
//!   binary cross-entropy and the stable sigmoid.
//! - [`image`]: the fused affine warp of data augmentation (Keras's random
//!   rotation, zoom, translation, shear and flip), NHWC, every fill mode.
//! - [`simd`]: the run-time instruction-set choice (`CONVNET_SIMD`).
//!
//! A 3x3 convolution of a 4x4 image with a filter of ones, ReLU fused: each
//! output is the sum of its window (`examples/conv_basic.rs` runs every
//! algorithm against a plain loop, then pooling and a dense layer).
//!
//! ```
//! use convnet_kernels::activation::Activation;
//! use convnet_kernels::conv::{conv2d_forward, ConvAlgo, ConvShape};
//!
//! let shape = ConvShape::new(1, 4, 4, 1, 1, 3, 3)?; // n, h, w, c_in, c_out, kh, kw; `valid`, stride 1
//! let image: Vec<f32> = (0..16).map(|i| i as f32).collect(); // NHWC [1, 4, 4, 1]
//! let filter = [1.0f32; 9]; // HWIO [3, 3, 1, 1]
//! let mut out = vec![f32::NAN; shape.output_len()]; // NHWC [1, 2, 2, 1]
//! conv2d_forward(ConvAlgo::Auto, &shape, &image, &filter, None, Activation::Relu, &mut out)?;
//! for (got, want) in out.iter().zip([45.0, 54.0, 81.0, 90.0]) {
//!     assert!((got - want).abs() < 1e-4, "{got} vs {want}");
//! }
//! # Ok::<(), convnet_kernels::Error>(())
//! ```
#![warn(missing_docs)]

pub mod activation;
mod arch;
pub mod conv;
pub mod dense;
mod error;
pub mod gemm;
mod gemv;
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
