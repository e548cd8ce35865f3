//! The one error type of `convnet-kernels`.

/// Everything a caller of the kernels can get wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A shape that does not validate (zero dimension, window larger than the
    /// padded input, overflow, ...). `shape` is the shape's `Display`.
    #[error("invalid shape {shape}: {reason}")]
    InvalidShape {
        /// The shape, as displayed.
        shape: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A slice argument whose length does not match the shape.
    #[error("{what}: expected {expected} elements for {shape}, got {actual}")]
    LengthMismatch {
        /// Which argument.
        what: &'static str,
        /// Elements the shape needs.
        expected: usize,
        /// Elements given.
        actual: usize,
        /// The shape, as displayed.
        shape: String,
    },
    /// An explicitly requested algorithm that cannot run this shape or pass.
    #[error("{algo} cannot run {pass} on {shape}: {reason}")]
    Unsupported {
        /// The algorithm.
        algo: &'static str,
        /// The pass (forward, backward_data, backward_filter).
        pass: &'static str,
        /// The shape, as displayed.
        shape: String,
        /// Why not.
        reason: String,
    },
    /// A SIMD level that this CPU lacks, or a bad `CONVNET_SIMD` value.
    #[error("SIMD: {0}")]
    Simd(String),
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// Checks that a slice argument has exactly `expected` elements.
pub(crate) fn check_len(
    what: &'static str,
    actual: usize,
    expected: usize,
    shape: &dyn std::fmt::Display,
) -> Result<()> {
    if actual != expected {
        return Err(Error::LengthMismatch { what, expected, actual, shape: shape.to_string() });
    }
    Ok(())
}
