//! `convnet-optim`: SGD (momentum, Nesterov), RMSprop, Adam and AdamW with
//! Keras 3 semantics and defaults, learning-rate schedules, and saved state,
//! over plain `f32` buffers: an optimizer knows nothing of tapes or layers, so
//! anything that holds parameters and gradients can use it.
//!
//! # Interface
//!
//! An [`Optimizer`] updates parameters one at a time, keyed by a stable index
//! (0, 1, 2, ... in a fixed order), so callers need no temporary list:
//!
//! ```
//! use convnet_optim::{Optimizer, RMSprop};
//! let mut opt = RMSprop::default(); // lr 0.001, rho 0.9, eps 1e-7: Keras's defaults
//! let mut weights = vec![vec![0.5f32; 10], vec![0.0f32; 3]];
//! let grads = vec![vec![0.1f32; 10], vec![-0.2f32; 3]];
//! opt.begin_step()?; // evaluates the schedule, advances the step count
//! for (i, (w, g)) in weights.iter_mut().zip(&grads).enumerate() {
//!     opt.update(i, w, g)?;
//! }
//! assert!(weights[0][0] < 0.5 && weights[1][0] > 0.0);
//! // The same in one call:
//! let (w0, w1) = weights.split_at_mut(1);
//! opt.step(&mut [(&mut w0[0][..], &grads[0][..]), (&mut w1[0][..], &grads[1][..])])?;
//! assert_eq!(opt.iterations(), 2);
//! # Ok::<(), convnet_optim::Error>(())
//! ```
//!
//! Slot buffers (velocity, momentum, ...) are created on a parameter's first
//! update; after that a step allocates nothing. The element-wise rules are
//! written once over a `Lane` abstraction and run eight lanes at a time with
//! `wide::f32x8`, with a scalar tail.
//!
//! # Saving and resuming
//!
//! [`Optimizer::state`] returns an [`OptimizerState`] (step count and every
//! slot buffer), serialisable as JSON or as exact little-endian bytes;
//! [`Optimizer::load_state`] into an optimizer of the same configuration
//! continues the run identically.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod adam;
mod core;
mod lanes;
mod rmsprop;
mod schedule;
mod sgd;
mod state;

pub use adam::{Adam, AdamW};
pub use rmsprop::RMSprop;
pub use schedule::LearningRate;
pub use sgd::Sgd;
pub use state::OptimizerState;

/// Everything a caller of an optimizer can get wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// A parameter and its gradient (or its saved slots) differ in length.
    #[error("parameter {index}: expected {expected} elements, got {actual}")]
    LengthMismatch {
        /// The parameter index.
        index: usize,
        /// Elements expected.
        expected: usize,
        /// Elements given.
        actual: usize,
    },
    /// `update` called before the first `begin_step`.
    #[error("update called before begin_step")]
    NotBegun,
    /// A hyper-parameter out of its domain.
    #[error("invalid hyper-parameter: {0}")]
    BadHyperParameter(String),
    /// A saved state that does not fit this optimizer, or is malformed.
    #[error("optimizer state: {0}")]
    BadState(String),
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// A first-order optimizer over `f32` parameter buffers.
///
/// A step is [`begin_step`](Optimizer::begin_step) (evaluate the learning
/// rate schedule at the current step count, then advance it) followed by
/// [`update`](Optimizer::update) of each parameter, identified by an index
/// that must stay the same from step to step. [`step`](Optimizer::step) does
/// both over a slice.
pub trait Optimizer {
    /// Keras's name of the optimizer (`"sgd"`, `"rmsprop"`, `"adam"`, `"adamw"`).
    fn name(&self) -> &'static str;

    /// What each per-parameter slot holds, for the current configuration.
    fn slot_names(&self) -> &'static [&'static str];

    /// Starts a step: validates the hyper-parameters, fixes the learning rate
    /// for this step and increments [`iterations`](Optimizer::iterations).
    fn begin_step(&mut self) -> Result<()>;

    /// Updates parameter `index` in place from its gradient.
    fn update(&mut self, index: usize, value: &mut [f32], grad: &[f32]) -> Result<()>;

    /// A whole step over `(value, grad)` pairs, parameter `i` at position `i`.
    fn step(&mut self, params: &mut [(&mut [f32], &[f32])]) -> Result<()> {
        self.begin_step()?;
        for (i, (value, grad)) in params.iter_mut().enumerate() {
            self.update(i, value, grad)?;
        }
        Ok(())
    }

    /// Steps begun so far.
    fn iterations(&self) -> u64;

    /// The learning rate of the step in progress (or of the next step, before
    /// the first `begin_step` and after `load_state`).
    fn current_learning_rate(&self) -> f32;

    /// A copy of the accumulated state.
    fn state(&self) -> OptimizerState;

    /// Restores a state saved from an optimizer of the same kind and slot
    /// layout; the next step continues exactly where that one stopped.
    fn load_state(&mut self, state: &OptimizerState) -> Result<()>;
}

// The README's example runs as a doc test, so the front page a user reads on
// crates.io cannot go stale.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
