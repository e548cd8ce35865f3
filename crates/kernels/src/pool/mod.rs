//! Pooling over NHWC tensors: max (with argmax for backward), average
//! (padding excluded from the count, as Keras/TensorFlow do) and global average.
//! Dilation, `ceil_mode` and averages that count padding (PyTorch's options)
//! are [`PoolOptions`].
//!
//! One job per file: [`PoolShape`] and its checks (`shape.rs`), max pooling
//! (`max.rs`), average pooling (`average.rs`), global average pooling
//! (`global.rs`), the kernels for shapes with options (`options.rs`, to which
//! every entry point hands such a shape) and the scalar oracle
//! ([`reference`](mod@reference)).
//!
//! Layout: NHWC `[n, h, w, c]`, so the channels of one pixel are contiguous and
//! every kernel here vectorises over channels: for each output pixel it walks
//! the window in row-major order and updates a whole row of `c` channels per
//! tap (compare-and-blend for max, add for average).
//!
//! Fast paths: one generic `#[inline(always)]` body per kernel, instantiated for
//! AVX-512, AVX2+FMA and the portable baseline (SSE2 on x86-64). Each entry
//! point comes in two forms: `max_pool2d_forward(..)` runs on the process's
//! level ([`crate::simd::try_level`]: `CONVNET_SIMD`, else the best
//! detected), `max_pool2d_forward_at(level, ..)` on an explicit one, which is
//! how the tests run every path without touching process-global state; a
//! level this CPU cannot run is an [`Error::Simd`](crate::Error::Simd). Work is split over the
//! batch with rayon, one batch item per task: every item is computed by one
//! thread in a fixed order, so results are bit-identical for any thread
//! count. No kernel allocates.
//!
//! Every fast kernel performs the same floating-point operations in the same
//! order as the scalar loops in [`reference`](mod@reference), so fast and reference agree
//! bit for bit (the property suite in `crates/kernels/tests/pool.rs` checks
//! this under every SIMD level).
//!
//! Tie-breaking in max pooling is deterministic: the FIRST maximum in
//! row-major window order wins (top row first, left to right), because a later
//! element replaces the running maximum only when strictly greater. A NaN never
//! wins a comparison, so it is selected only when it is the window's first
//! element.

mod average;
mod global;
mod max;
mod options;
pub mod reference;
mod shape;

pub use average::{avg_pool2d_backward, avg_pool2d_backward_at, avg_pool2d_forward, avg_pool2d_forward_at};
pub use global::{
    global_avg_pool_backward, global_avg_pool_backward_at, global_avg_pool_forward, global_avg_pool_forward_at,
};
pub use max::{max_pool2d_backward, max_pool2d_backward_at, max_pool2d_forward, max_pool2d_forward_at};
pub use options::PoolOptions;
pub use shape::PoolShape;
