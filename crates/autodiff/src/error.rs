//! The one error type of `convnet-autodiff`.

use convnet_tensor::Shape;

/// Everything a user of the tape can get wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// The inputs of an op do not fit together; `op` names the op and
    /// `detail` gives the shapes involved.
    #[error("{op}: {detail}")]
    Shape {
        /// The op that was recorded.
        op: &'static str,
        /// The shapes and what is wrong with them.
        detail: String,
    },
    /// A kernel rejected its arguments (an explicit conv algorithm that cannot
    /// run a shape, for instance).
    #[error("{op}: {source}")]
    Kernel {
        /// The op whose kernel failed.
        op: &'static str,
        /// The kernel's error.
        source: convnet_kernels::Error,
    },
    /// A tensor-level error (bad shape construction).
    #[error(transparent)]
    Tensor(#[from] convnet_tensor::Error),
    /// A [`Var`](crate::Var) recorded on another tape, or before the last
    /// [`Tape::reset`](crate::Tape::reset).
    #[error("variable #{index} does not belong to this recording (it is stale or from another tape)")]
    StaleVar {
        /// The node index the handle pointed at.
        index: usize,
    },
    /// A [`ParamId`](crate::ParamId) that does not belong to the [`Params`](crate::Params) given.
    #[error("parameter #{index} does not belong to this parameter set")]
    UnknownParam {
        /// The parameter index the handle pointed at.
        index: usize,
    },
    /// Two parameters with one name in a [`Params`](crate::Params).
    #[error("a parameter named {0:?} already exists")]
    DuplicateParam(String),
    /// [`Tape::backward`](crate::Tape::backward) on a tape that was already
    /// back-propagated (its gradients are released): call `reset` and record again.
    #[error("backward was already called on this recording; reset the tape and record a new step")]
    BackwardTwice,
    /// An op recorded after `backward` without a `reset` in between.
    #[error("{op}: the tape was already back-propagated; reset it before recording a new step")]
    Spent {
        /// The op that was attempted.
        op: &'static str,
    },
    /// `backward` on a tape in inference mode (which records no backward rules).
    #[error("backward on an inference-mode tape, which records no gradients")]
    InferenceMode,
    /// A gradient asked of a tensor that does not require one (an input, or a
    /// value computed only from inputs), or whose gradient was released.
    #[error("{0}")]
    NoGrad(String),
    /// `backward` from a tensor with more than one element.
    #[error("backward needs a scalar loss, got shape {0}")]
    NotScalar(Shape),
    /// The loss is NaN or infinite: `backward` refuses to propagate it and
    /// leaves every parameter gradient untouched. This is the signal a
    /// training loop stops on.
    #[error("the loss is not finite ({0}); gradients were not computed")]
    NonFiniteLoss(f32),
    /// An argument out of its domain (a dropout rate outside `[0, 1)`, ...).
    #[error("{op}: {detail}")]
    BadArgument {
        /// The op.
        op: &'static str,
        /// What is wrong.
        detail: String,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

pub(crate) fn shape_err(op: &'static str, detail: String) -> Error {
    Error::Shape { op, detail }
}

pub(crate) fn kernel_err(op: &'static str) -> impl FnOnce(convnet_kernels::Error) -> Error {
    move |source| Error::Kernel { op, source }
}
