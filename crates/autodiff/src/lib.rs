//! `convnet-autodiff`: define-by-run reverse-mode differentiation over the
//! convnet kernels.
//!
//! # The API in one screen
//!
//! - [`Params`] owns a model's persistent parameters: `add(name, Tensor) ->
//!   ParamId`, `value`, `value_mut`, `grad`, `zero_grad`, `iter`, and
//!   `update_with(|index, value, grad| ..)`, the allocation-free hook an
//!   optimizer (such as `convnet-optim`'s, which knows nothing of this crate)
//!   updates through. Gradients accumulate across `backward` calls until
//!   `zero_grad`; a gradient buffer exists only once a `backward` has reached
//!   its parameter, so frozen weights cost no gradient memory and no
//!   optimizer state.
//! - [`Tape`] records one forward pass. Leaves: [`Tape::input`] (data, copied
//!   into a pooled buffer, no gradient), [`Tape::param`] (a parameter, its
//!   gradient goes to `Params`), [`Tape::constant`] (a parameter shared with
//!   `Params`, not copied, and given no gradient: frozen weights),
//!   [`Tape::variable`] (a leaf whose gradient you read with [`Tape::grad`]). Ops return [`Var`] handles:
//!   [`conv2d`](Tape::conv2d) (any `ConvAlgo`, fused relu),
//!   [`max_pool2d`](Tape::max_pool2d), [`avg_pool2d`](Tape::avg_pool2d),
//!   [`global_avg_pool2d`](Tape::global_avg_pool2d),
//!   [`relu`](Tape::relu), [`sigmoid`](Tape::sigmoid), [`tanh`](Tape::tanh),
//!   [`bias_add`](Tape::bias_add), [`dense`](Tape::dense) (fused relu),
//!   [`reshape`](Tape::reshape), [`flatten`](Tape::flatten),
//!   [`dropout`](Tape::dropout), [`softmax`](Tape::softmax),
//!   [`softmax_cross_entropy`](Tape::softmax_cross_entropy) (fused),
//!   [`sparse_softmax_cross_entropy`](Tape::sparse_softmax_cross_entropy),
//!   [`binary_cross_entropy`](Tape::binary_cross_entropy) (from
//!   probabilities), [`binary_cross_entropy_with_logits`](Tape::binary_cross_entropy_with_logits),
//!   [`add`](Tape::add), [`mul`](Tape::mul), [`mean`](Tape::mean), [`sum`](Tape::sum),
//!   [`channel_means`](Tape::channel_means) (one channel's mean per example).
//! - [`Tape::backward`] walks the tape in reverse and adds parameter
//!   gradients into `Params`; it returns [`Error::NonFiniteLoss`] (and touches
//!   nothing) when the loss is NaN or infinite, the signal a training loop
//!   stops on. [`Tape::reset`] returns every buffer to the tape's pool: after
//!   the first step, the tape, pool, parameters and optimizer make no heap
//!   allocation (a counting allocator proves it in `tests/no_alloc.rs`; the
//!   one allocation left per GEMM call is `matrixmultiply`'s packing buffer).
//! - [`Tape::inference`] records no backward rules (evaluate / predict).
//! - Gradients beyond the parameters: record the input (or any value you
//!   want the gradient of, such as a layer's output fed back in) with
//!   [`Tape::variable`] instead of [`Tape::input`], and weights you do not
//!   want gradients for with [`Tape::constant`]: `backward` then computes the input's
//!   gradient and no parameter work at all ([`Tape::grad`] reads it). Data
//!   recorded with `input` still costs nothing extra, so training is unchanged.
//!
//! Layouts are Keras's: NHWC activations, HWIO conv filters, `[in, out]`
//! dense weights; `flatten` keeps (h, w, c) order.
//!
//! # What backward does not do
//!
//! Work nothing needs is skipped: no gradient for data inputs (so the first
//! conv layer never computes `dX`), none for values that depend on no
//! parameter. The first gradient an input receives is written in place, not
//! added to zeros; element-wise rules (relu, reshape, dropout, bias add)
//! hand their gradient buffer to their input instead of copying it; reshape
//! and flatten alias their input's buffer. A fused relu feeding max pooling is
//! masked on the pooled gradient (a quarter of the size), not the full one.
//! The framework's cost, measured against the same kernel calls made
//! directly, is within noise of zero, at most about 2% of a step of the
//! chapter's model (`docs/BENCHMARKS.md`).
//!
//! # A training step
//!
//! A tiny convnet (conv-relu, max-pool, flatten, dense, softmax
//! cross-entropy): forward, loss, backward, and a Keras-style RMSprop update
//! from `convnet-optim` (which works on plain slices, through
//! [`Params::update_with`]):
//!
//! ```
//! use convnet_autodiff::{Activation, Conv2dSpec, Params, PoolSpec, Tape};
//! use convnet_optim::{Optimizer, RMSprop};
//! use convnet_tensor::{Rng, Shape, Tensor};
//!
//! let mut rng = Rng::new(0);
//! let mut params = Params::new();
//! let k = params.add("conv/kernel", Tensor::glorot_uniform(Shape::new(&[3, 3, 1, 4])?, &mut rng)?)?;
//! let kb = params.add("conv/bias", Tensor::zeros(Shape::vector(4)))?;
//! let d = params.add("dense/kernel", Tensor::glorot_uniform(Shape::matrix(3 * 3 * 4, 10), &mut rng)?)?;
//! let db = params.add("dense/bias", Tensor::zeros(Shape::vector(10)))?;
//!
//! // A batch of two 8x8 grey images and one-hot targets.
//! let images = Tensor::uniform(Shape::nhwc(2, 8, 8, 1), 0.0, 1.0, &mut rng)?;
//! let mut targets = Tensor::zeros(Shape::matrix(2, 10));
//! targets.data_mut()[3] = 1.0;
//! targets.data_mut()[10 + 7] = 1.0;
//!
//! let mut tape = Tape::new();
//! let mut opt = RMSprop::new(0.01); // rho 0.9, epsilon 1e-7: Keras's defaults
//! let mut losses = Vec::new();
//! for _step in 0..5 {
//!     tape.reset(); // the previous step's buffers go back to the pool
//!     params.zero_grad();
//!     let x = tape.input(images.view())?;
//!     let (wk, wb) = (tape.param(&params, k)?, tape.param(&params, kb)?);
//!     let h = tape.conv2d(x, wk, Some(wb), Conv2dSpec::new().relu())?; // [2, 6, 6, 4]
//!     let h = tape.max_pool2d(h, PoolSpec::new(2, 2))?; // [2, 3, 3, 4]
//!     let h = tape.flatten(h)?; // [2, 36], no copy
//!     let (wd, wdb) = (tape.param(&params, d)?, tape.param(&params, db)?);
//!     let logits = tape.dense(h, wd, Some(wdb), Activation::Linear)?;
//!     let t = tape.input(targets.view())?;
//!     let loss = tape.softmax_cross_entropy(logits, t)?;
//!     losses.push(tape.scalar(loss)?);
//!     tape.backward(loss, &mut params)?; // adds into the parameters' gradients
//!
//!     opt.begin_step()?;
//!     params.update_with(|i, w, g| opt.update(i, w, g))?;
//! }
//! assert!(losses[4] < losses[0], "{losses:?}");
//! // After backward, the recording is spent: backward again (or a new op)
//! // before `reset` is an error, never a silent double update.
//! # let loss = tape.len(); let _ = loss;
//! assert!(tape.input(images.view()).is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod backward;
mod buffers;
mod error;
mod node;
mod ops;
mod params;
mod profile;
mod spec;
mod tape;

pub use convnet_kernels::loss::BCE_EPSILON;
pub use error::{Error, Result};
pub use params::{Gradients, ParamId, Params};
pub use profile::{Profile, ProfileEntry, ProfilePass};
pub use spec::{Conv2dSpec, PoolSpec};
pub use tape::{BackwardWork, Tape, Var};

// Re-exported so users of the ops need not depend on the kernels crate for
// the types in their signatures.
pub use convnet_kernels::activation::Activation;
pub use convnet_kernels::conv::{ConvAlgo, Padding};

// The README's example runs as a doc test, so the front page a user reads on
// crates.io cannot go stale.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
