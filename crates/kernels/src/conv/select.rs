//! [`select`]: the algorithm [`ConvAlgo::Auto`] runs, as one pure function of
//! the shape and pass.

use super::{ConvAlgo, ConvPass, ConvShape};

/// The algorithm [`ConvAlgo::Auto`] runs for `shape` and `pass`: a pure function.
///
/// Currently im2col for every shape (fully general, GEMM-speed on large layers).
pub fn select(_shape: &ConvShape, _pass: ConvPass) -> ConvAlgo {
    ConvAlgo::Im2col
}
