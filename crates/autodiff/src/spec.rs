//! Op configurations: [`Conv2dSpec`] and [`PoolSpec`].

use convnet_kernels::activation::Activation;
use convnet_kernels::conv::{ConvAlgo, Padding};
use convnet_kernels::pool::PoolOptions;

/// How a [`Tape::conv2d`](crate::Tape::conv2d) convolves: stride, Keras
/// padding, dilation, the kernel algorithm for each pass, and an activation
/// fused into the forward epilogue (its backward uses the output as mask).
///
/// ```
/// use convnet_autodiff::Conv2dSpec;
/// use convnet_kernels::conv::{ConvAlgo, Padding};
/// let spec = Conv2dSpec::new().relu().stride(2, 2).padding(Padding::Same).algo(ConvAlgo::Auto);
/// assert_eq!(spec.stride, (2, 2));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Conv2dSpec {
    /// `(vertical, horizontal)` stride; default `(1, 1)`.
    pub stride: (usize, usize),
    /// Keras padding; default `Valid`.
    pub padding: Padding,
    /// `(vertical, horizontal)` dilation; default `(1, 1)`.
    pub dilation: (usize, usize),
    /// Algorithm of the forward pass; default `Auto`.
    pub algo: ConvAlgo,
    /// Algorithm of both backward passes (data and filter); default `Auto`.
    /// An explicit algorithm that cannot run a pass is an error, never a
    /// silent fallback.
    pub backward_algo: ConvAlgo,
    /// Activation fused into the forward pass; default `Linear`.
    pub activation: Activation,
    /// Channel groups; default 1 (dense). With `groups == c_in` the
    /// convolution is depthwise.
    pub groups: usize,
}

impl Default for Conv2dSpec {
    fn default() -> Self {
        Conv2dSpec {
            stride: (1, 1),
            padding: Padding::Valid,
            dilation: (1, 1),
            algo: ConvAlgo::Auto,
            backward_algo: ConvAlgo::Auto,
            activation: Activation::Linear,
            groups: 1,
        }
    }
}

impl Conv2dSpec {
    /// Stride 1, `valid`, no dilation, `Auto` algorithms, linear.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the stride.
    pub fn stride(mut self, h: usize, w: usize) -> Self {
        self.stride = (h, w);
        self
    }

    /// Sets the padding.
    pub fn padding(mut self, padding: Padding) -> Self {
        self.padding = padding;
        self
    }

    /// Sets the dilation.
    pub fn dilation(mut self, h: usize, w: usize) -> Self {
        self.dilation = (h, w);
        self
    }

    /// Sets the algorithm of all three passes.
    pub fn algo(mut self, algo: ConvAlgo) -> Self {
        self.algo = algo;
        self.backward_algo = algo;
        self
    }

    /// Sets the algorithm of the two backward passes only.
    pub fn backward_algo(mut self, algo: ConvAlgo) -> Self {
        self.backward_algo = algo;
        self
    }

    /// Sets the fused activation.
    pub fn activation(mut self, activation: Activation) -> Self {
        self.activation = activation;
        self
    }

    /// Sets the number of channel groups (grouped or, with `c_in` groups,
    /// depthwise convolution).
    pub fn groups(mut self, groups: usize) -> Self {
        self.groups = groups;
        self
    }

    /// Fuses a relu into the forward pass.
    pub fn relu(self) -> Self {
        self.activation(Activation::Relu)
    }
}

/// A pooling window: size, stride and Keras padding.
///
/// ```
/// use convnet_autodiff::PoolSpec;
/// let p = PoolSpec::new(2, 2); // Keras MaxPooling2D(2): stride = window
/// assert_eq!(p.stride, (2, 2));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PoolSpec {
    /// `(height, width)` of the window.
    pub window: (usize, usize),
    /// `(vertical, horizontal)` stride.
    pub stride: (usize, usize),
    /// Keras padding.
    pub padding: Padding,
    /// PyTorch's options: dilation, `ceil_mode`, `count_include_pad`
    /// (default: Keras's behaviour).
    pub options: PoolOptions,
}

impl PoolSpec {
    /// A `valid` window whose stride equals its size (the Keras default).
    pub fn new(h: usize, w: usize) -> Self {
        PoolSpec { window: (h, w), stride: (h, w), padding: Padding::Valid, options: PoolOptions::default() }
    }

    /// Sets the pooling options (dilation, `ceil_mode`, `count_include_pad`).
    ///
    /// ```
    /// use convnet_autodiff::PoolSpec;
    /// use convnet_kernels::pool::PoolOptions;
    /// let p = PoolSpec::new(3, 3).stride(2, 2).options(PoolOptions::default().ceil_mode(true));
    /// assert!(p.options.ceil_mode);
    /// ```
    pub fn options(mut self, options: PoolOptions) -> Self {
        self.options = options;
        self
    }

    /// Sets the stride.
    pub fn stride(mut self, h: usize, w: usize) -> Self {
        self.stride = (h, w);
        self
    }

    /// Sets the padding.
    pub fn padding(mut self, padding: Padding) -> Self {
        self.padding = padding;
        self
    }
}
