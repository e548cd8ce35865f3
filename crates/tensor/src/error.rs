//! The one error type of `convnet-tensor`.

use crate::Shape;

/// Everything a user of this crate can get wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A shape must have rank 1 to 4.
    #[error("a tensor shape has rank 1 to 4, got rank {0}")]
    BadRank(usize),
    /// The number of elements of a shape does not fit in `usize`.
    #[error("shape {0:?} has more elements than fit in memory")]
    Overflow(Vec<usize>),
    /// The data given does not hold as many elements as the shape needs.
    #[error("shape {shape} needs {expected} elements, got {actual}")]
    LengthMismatch {
        /// The shape asked for.
        shape: Shape,
        /// Elements the shape needs.
        expected: usize,
        /// Elements given.
        actual: usize,
    },
    /// Two tensors of an element-wise operation have different shapes.
    #[error("{op}: shapes {left} and {right} differ")]
    ShapeMismatch {
        /// The operation.
        op: &'static str,
        /// Shape of the left operand.
        left: Shape,
        /// Shape of the right operand.
        right: Shape,
    },
    /// A reshape to a shape with a different number of elements.
    #[error("cannot reshape {from} ({from_len} elements) to {to} ({to_len} elements)")]
    BadReshape {
        /// The original shape.
        from: Shape,
        /// Its element count.
        from_len: usize,
        /// The requested shape.
        to: Shape,
        /// Its element count.
        to_len: usize,
    },
    /// A batch range outside the tensor's first axis.
    #[error("batch range {start}..{end} is outside 0..{len}")]
    BadRange {
        /// Start of the range.
        start: usize,
        /// End of the range.
        end: usize,
        /// Length of the batch axis.
        len: usize,
    },
    /// The operation needs a tensor of another rank.
    #[error("{op} needs a rank-{expected} tensor, got shape {shape}")]
    WrongRank {
        /// The operation.
        op: &'static str,
        /// The rank it needs.
        expected: usize,
        /// The shape given.
        shape: Shape,
    },
    /// An initialiser got an argument it cannot use (a negative standard deviation, a zero fan).
    #[error("invalid initialiser argument: {0}")]
    BadInit(String),
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
