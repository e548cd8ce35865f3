//! The one error type of `convnet`.

/// Everything a user of the `convnet` crate can get wrong: model definitions,
/// data that does not fit the model, weight files, options.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A layer cannot be built on the shape it receives (or has no input shape).
    #[error("layer {layer}: {reason}")]
    Build {
        /// The layer's name (`conv2d_1`, ...).
        layer: String,
        /// What does not fit.
        reason: String,
    },
    /// A layer or model option out of range (zero filters, dropout rate 1.5, ...).
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// The option.
        what: String,
        /// Why it is rejected.
        reason: String,
    },
    /// Data whose shape does not match the model (wrong image size, labels that disagree).
    #[error("data: {0}")]
    Data(String),
    /// `fit` / `evaluate` called before `compile`.
    #[error("the model must be compiled before {0}")]
    NotCompiled(&'static str),
    /// The loss became NaN or infinite during training.
    #[error("loss is {value} at epoch {epoch}, batch {batch}: training diverged (try a lower learning rate)")]
    NonFiniteLoss {
        /// The loss value.
        value: f32,
        /// 1-based epoch.
        epoch: usize,
        /// 1-based batch within the epoch.
        batch: usize,
    },
    /// A gradient or a weight became NaN or infinite during training; the
    /// weights were left (or put back) as they were after the last good step.
    #[error(
        "{what} at epoch {epoch}, batch {batch}: training diverged (try a lower learning rate); the weights are \
         those before this batch"
    )]
    NonFiniteParameter {
        /// Which parameter, and whether its gradient or its value.
        what: String,
        /// 1-based epoch.
        epoch: usize,
        /// 1-based batch within the epoch.
        batch: usize,
    },
    /// A weights or model file that does not fit the model, or is corrupt.
    #[error("{path}: {reason}")]
    WeightsFile {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// An image that cannot be used as input (too large, corrupt, unsupported).
    #[error("{name}: {reason}")]
    Image {
        /// The file (or the name given to bytes in memory).
        name: String,
        /// What is wrong, in plain words.
        reason: String,
    },
    /// An I/O error, with the path involved.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// From `convnet-tensor`.
    #[error(transparent)]
    Tensor(#[from] convnet_tensor::Error),
    /// From `convnet-kernels`.
    #[error(transparent)]
    Kernels(#[from] convnet_kernels::Error),
    /// From `convnet-autodiff`.
    #[error(transparent)]
    Autodiff(#[from] convnet_autodiff::Error),
    /// From `convnet-optim`.
    #[error(transparent)]
    Optim(#[from] convnet_optim::Error),
    /// From `convnet-datasets`.
    #[error(transparent)]
    Datasets(#[from] convnet_datasets::Error),
    /// A user callback asked to stop with an error.
    #[error("callback: {0}")]
    Callback(String),
    /// Data-parallel training: the ranks disagree (model, seed, data), a
    /// rank failed, or the communication failed.
    #[error("distributed: {0}")]
    Distributed(String),
}

impl Error {
    pub(crate) fn build(layer: &str, reason: impl Into<String>) -> Self {
        Error::Build { layer: layer.to_string(), reason: reason.into() }
    }
    pub(crate) fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Invalid { what: what.into(), reason: reason.into() }
    }
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        Error::Io { path: path.display().to_string(), source }
    }
    pub(crate) fn weights(path: &std::path::Path, reason: impl Into<String>) -> Self {
        Error::WeightsFile { path: path.display().to_string(), reason: reason.into() }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
