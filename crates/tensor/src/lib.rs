//! `convnet-tensor`: the owned f32 tensor every convnet crate shares.
//!
//! - [`Tensor`]: a [`Shape`] of rank 1 to 4 over 64-byte aligned storage
//!   ([`AlignedBuf`]), row-major. Activations are NHWC, conv weights HWIO,
//!   dense weights `[in, out]`, exactly as Keras lays them out.
//! - [`TensorView`] / [`TensorViewMut`]: borrowed views, e.g. a range of the
//!   batch axis, at no cost.
//! - Seeded initialisers (`zeros`, `ones`, `uniform`, `normal`,
//!   `glorot_uniform`, `he_normal`) driven by [`Rng`], so the same seed gives
//!   the same weights everywhere.
//! - Element-wise arithmetic, reductions, `argmax_last`, `approx_eq`, and
//!   vectorised finite checks ([`all_finite`], [`first_non_finite`]).
//!
//! Shape errors are [`Error`] values, never panics.
//!
//! ```
//! use convnet_tensor::{Rng, Shape, Tensor};
//! let mut rng = Rng::new(7);
//! let x = Tensor::uniform(Shape::nhwc(4, 28, 28, 1), 0.0, 1.0, &mut rng)?;
//! let first_two = x.batch(0..2)?;
//! assert_eq!(first_two.shape(), Shape::nhwc(2, 28, 28, 1));
//! let y = x.add(&x)?;
//! assert!(y.approx_eq(&{ let mut z = x.clone(); z.scale(2.0); z }, 1e-6, 0.0));
//! # Ok::<(), convnet_tensor::Error>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod error;
mod finite;
mod rng;
mod shape;
mod storage;
mod tensor;

pub use error::{Error, Result};
pub use finite::{all_finite, first_non_finite};
pub use rng::Rng;
pub use shape::Shape;
pub use storage::AlignedBuf;
pub use tensor::{fans, Tensor, TensorView, TensorViewMut};

// The README's example runs as a doc test, so the front page a user reads on
// crates.io cannot go stale.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
