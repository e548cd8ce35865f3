//! 2-D convolution: NHWC activations, HWIO filters (Keras layouts), forward,
//! backward-data, backward-filter and bias gradient, for every algorithm.
//!
//! | algorithm | module | runs |
//! |---|---|---|
//! | [`ConvAlgo::Reference`] | [`reference`](mod@reference) | every shape; f64 accumulation; the oracle |
//! | [`ConvAlgo::Direct`] | [`direct`] | every shape; register-tiled SIMD, no column buffer |
//! | [`ConvAlgo::Im2col`] | [`im2col`] | every shape; bounded column tiles times our GEMM |
//! | [`ConvAlgo::WinogradF2`], [`ConvAlgo::WinogradF4`] | [`winograd`] | 3x3, stride 1, undilated |
//! | [`ConvAlgo::Depthwise`] | [`depthwise`] | depthwise shapes (`groups == c_in`), any multiplier, stride, padding |
//!
//! Inference adds [`fused`]: conv + bias + ReLU (+ 2x2 max pool) in one pass
//! on the `direct` micro-kernel, planned once per shape (bit-identical to
//! `direct` followed by the max pool), and [`blocked`]: the same on the
//! calling thread with tiles of several pixels by two channel vectors, for
//! batch-1 inference (bit-identical too).
//!
//! Grouped shapes (`groups > 1`) run on `Reference`, `Im2col` (one GEMM per
//! group), Winograd (each group's channels gathered into a dense tensor and
//! run on the dense kernel, `grouped_winograd`) and, when depthwise,
//! `Depthwise`; `Direct` refuses them.
//!
//! Entry points are safe: they validate the shape and check every slice
//! length once, then dispatch. An explicitly requested algorithm that cannot
//! run a shape is an [`Error::Unsupported`], never a silent fallback;
//! [`ConvAlgo::Auto`] resolves through [`select`].
//!
//! Every entry point runs on the process-wide SIMD level
//! ([`crate::simd::try_level`]); its `*_at` twin takes the level explicitly
//! (tests run every path this way). A level this CPU cannot run is an
//! [`Error::Simd`].

mod bias;
pub mod blocked;
mod builder;
pub mod depthwise;
pub mod direct;
pub mod fused;
mod grouped;
mod grouped_winograd;
pub mod im2col;
pub mod reference;
mod select;
mod shape;
pub mod winograd;

pub use builder::ConvShapeBuilder;
pub use select::select;
pub use shape::{pad_amounts, ConvShape, Padding};

use crate::activation::Activation;
use crate::arch::Token;
use crate::error::check_len;
use crate::simd::SimdLevel;
use crate::{Error, Result};

/// Which convolution algorithm to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum ConvAlgo {
    /// Let [`select`] choose per shape and pass.
    #[default]
    Auto,
    /// Plain loops in f64 (the test oracle).
    Reference,
    /// Register-blocked SIMD loops over channels, no column buffer.
    Direct,
    /// Patches packed into a bounded column buffer, multiplied by sgemm.
    Im2col,
    /// Winograd F(2x2, 3x3).
    WinogradF2,
    /// Winograd F(4x4, 3x3).
    WinogradF4,
    /// The depthwise kernel (`groups == c_in`): channels on the vector lanes.
    Depthwise,
}

impl ConvAlgo {
    /// Every concrete (non-`Auto`) algorithm.
    pub const ALL: [ConvAlgo; 6] = [
        ConvAlgo::Reference,
        ConvAlgo::Direct,
        ConvAlgo::Im2col,
        ConvAlgo::WinogradF2,
        ConvAlgo::WinogradF4,
        ConvAlgo::Depthwise,
    ];

    /// The snake_case name used by the CLI and JSON output.
    pub fn name(self) -> &'static str {
        match self {
            ConvAlgo::Auto => "auto",
            ConvAlgo::Reference => "reference",
            ConvAlgo::Direct => "direct",
            ConvAlgo::Im2col => "im2col",
            ConvAlgo::WinogradF2 => "winograd_f2",
            ConvAlgo::WinogradF4 => "winograd_f4",
            ConvAlgo::Depthwise => "depthwise",
        }
    }
}

impl std::fmt::Display for ConvAlgo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for ConvAlgo {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "auto" => ConvAlgo::Auto,
            "reference" => ConvAlgo::Reference,
            "direct" => ConvAlgo::Direct,
            "im2col" => ConvAlgo::Im2col,
            "winograd_f2" | "winograd-f2" => ConvAlgo::WinogradF2,
            "winograd" | "winograd_f4" | "winograd-f4" => ConvAlgo::WinogradF4,
            "depthwise" => ConvAlgo::Depthwise,
            other => {
                return Err(Error::Unsupported {
                    algo: "unknown",
                    pass: "any",
                    shape: String::new(),
                    reason: format!("unknown algorithm {other:?}"),
                })
            }
        })
    }
}

/// The three passes of a convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConvPass {
    /// `y = conv(x, w) + b`.
    Forward,
    /// Gradient with respect to the input.
    BackwardData,
    /// Gradient with respect to the filter.
    BackwardFilter,
}

impl ConvPass {
    /// `forward`, `backward_data` or `backward_filter`.
    pub fn name(self) -> &'static str {
        match self {
            ConvPass::Forward => "forward",
            ConvPass::BackwardData => "backward_data",
            ConvPass::BackwardFilter => "backward_filter",
        }
    }
}

/// Whether `algo` (not `Auto`) can run `pass` on `shape`; the error says why not.
pub fn supports(algo: ConvAlgo, shape: &ConvShape, pass: ConvPass) -> Result<()> {
    let verdict = match algo {
        ConvAlgo::Direct if shape.groups > 1 => Err(format!(
            "{} groups: grouped convolution runs on im2col, winograd, depthwise or reference",
            shape.groups
        )),
        ConvAlgo::WinogradF2 | ConvAlgo::WinogradF4 if shape.groups > 1 => grouped_winograd::supports(shape),
        ConvAlgo::Auto => Ok(()),
        // Fully general: every validated shape, every pass.
        ConvAlgo::Reference | ConvAlgo::Direct | ConvAlgo::Im2col => Ok(()),
        ConvAlgo::WinogradF2 | ConvAlgo::WinogradF4 => winograd::supports(shape),
        ConvAlgo::Depthwise => depthwise::supports(shape),
    };
    verdict.map_err(|reason| Error::Unsupported {
        algo: algo.name(),
        pass: pass.name(),
        shape: shape.to_string(),
        reason,
    })
}

fn resolve(algo: ConvAlgo, shape: &ConvShape, pass: ConvPass) -> Result<ConvAlgo> {
    let algo = if algo == ConvAlgo::Auto { select(shape, pass) } else { algo };
    supports(algo, shape, pass)?;
    Ok(algo)
}

/// Forward convolution: `output = activation(conv(input, filter) + bias)`.
///
/// `input` is NHWC `[n, h, w, c_in]`, `filter` HWIO `[kh, kw, c_in / groups, c_out]`,
/// `bias` `[c_out]`, `output` NHWC `[n, out_h, out_w, c_out]` (overwritten).
///
/// ```
/// use convnet_kernels::activation::Activation;
/// use convnet_kernels::conv::{conv2d_forward, ConvAlgo, ConvShape};
/// let s = ConvShape::new(1, 3, 3, 1, 1, 3, 3)?;
/// let x = [1.0; 9];
/// let w = [2.0; 9];
/// let mut y = [0.0; 1];
/// conv2d_forward(ConvAlgo::Auto, &s, &x, &w, Some(&[0.5]), Activation::Linear, &mut y)?;
/// assert_eq!(y, [18.5]);
/// # Ok::<(), convnet_kernels::Error>(())
/// ```
pub fn conv2d_forward(
    algo: ConvAlgo,
    shape: &ConvShape,
    input: &[f32],
    filter: &[f32],
    bias: Option<&[f32]>,
    activation: Activation,
    output: &mut [f32],
) -> Result<()> {
    conv2d_forward_at(crate::simd::try_level()?, algo, shape, input, filter, bias, activation, output)
}

/// [`conv2d_forward`] on an explicit SIMD level.
#[allow(clippy::too_many_arguments)] // conv2d_forward's arguments, plus the level
pub fn conv2d_forward_at(
    level: SimdLevel,
    algo: ConvAlgo,
    shape: &ConvShape,
    input: &[f32],
    filter: &[f32],
    bias: Option<&[f32]>,
    activation: Activation,
    output: &mut [f32],
) -> Result<()> {
    let token = Token::new(level)?;
    shape.validate()?;
    check_len("input", input.len(), shape.input_len(), shape)?;
    check_len("filter", filter.len(), shape.filter_len(), shape)?;
    if let Some(b) = bias {
        check_len("bias", b.len(), shape.c_out, shape)?;
    }
    check_len("output", output.len(), shape.output_len(), shape)?;
    match resolve(algo, shape, ConvPass::Forward)? {
        ConvAlgo::Reference => {
            reference::forward(shape, input, filter, bias, output);
            activation.apply_with(token, output);
        }
        ConvAlgo::Direct => direct::forward(token, shape, input, filter, bias, activation, output),
        ConvAlgo::Im2col if shape.groups > 1 => grouped::forward(token, shape, input, filter, bias, activation, output),
        ConvAlgo::Im2col => im2col::forward(token, shape, input, filter, bias, activation, output),
        a @ (ConvAlgo::WinogradF2 | ConvAlgo::WinogradF4) if shape.groups > 1 => {
            grouped_winograd::forward(token, a, shape, input, filter, bias, activation, output)
        }
        a @ (ConvAlgo::WinogradF2 | ConvAlgo::WinogradF4) => {
            winograd::forward(token, a, shape, input, filter, bias, activation, output)
        }
        ConvAlgo::Depthwise => depthwise::forward(token, shape, input, filter, bias, activation, output),
        ConvAlgo::Auto => unreachable!("resolve never returns Auto"),
    }
    Ok(())
}

/// Gradient with respect to the input: `grad_input` (NHWC, overwritten) from
/// `grad_output` (NHWC) and `filter` (HWIO).
pub fn conv2d_backward_data(
    algo: ConvAlgo,
    shape: &ConvShape,
    grad_output: &[f32],
    filter: &[f32],
    grad_input: &mut [f32],
) -> Result<()> {
    conv2d_backward_data_at(crate::simd::try_level()?, algo, shape, grad_output, filter, grad_input)
}

/// [`conv2d_backward_data`] on an explicit SIMD level.
pub fn conv2d_backward_data_at(
    level: SimdLevel,
    algo: ConvAlgo,
    shape: &ConvShape,
    grad_output: &[f32],
    filter: &[f32],
    grad_input: &mut [f32],
) -> Result<()> {
    let token = Token::new(level)?;
    shape.validate()?;
    check_len("grad_output", grad_output.len(), shape.output_len(), shape)?;
    check_len("filter", filter.len(), shape.filter_len(), shape)?;
    check_len("grad_input", grad_input.len(), shape.input_len(), shape)?;
    match resolve(algo, shape, ConvPass::BackwardData)? {
        ConvAlgo::Reference => reference::backward_data(shape, grad_output, filter, grad_input),
        ConvAlgo::Direct => direct::backward_data(token, shape, grad_output, filter, grad_input),
        ConvAlgo::Im2col if shape.groups > 1 => grouped::backward_data(token, shape, grad_output, filter, grad_input),
        ConvAlgo::Im2col => im2col::backward_data(token, shape, grad_output, filter, grad_input),
        a @ (ConvAlgo::WinogradF2 | ConvAlgo::WinogradF4) if shape.groups > 1 => {
            grouped_winograd::backward_data(token, a, shape, grad_output, filter, grad_input)
        }
        a @ (ConvAlgo::WinogradF2 | ConvAlgo::WinogradF4) => {
            winograd::backward_data(token, a, shape, grad_output, filter, grad_input)
        }
        ConvAlgo::Depthwise => depthwise::backward_data(token, shape, grad_output, filter, grad_input),
        ConvAlgo::Auto => unreachable!("resolve never returns Auto"),
    }
    Ok(())
}

/// Gradient with respect to the filter: `grad_filter` (HWIO, overwritten)
/// from `input` (NHWC) and `grad_output` (NHWC).
pub fn conv2d_backward_filter(
    algo: ConvAlgo,
    shape: &ConvShape,
    input: &[f32],
    grad_output: &[f32],
    grad_filter: &mut [f32],
) -> Result<()> {
    conv2d_backward_filter_at(crate::simd::try_level()?, algo, shape, input, grad_output, grad_filter)
}

/// [`conv2d_backward_filter`] on an explicit SIMD level.
pub fn conv2d_backward_filter_at(
    level: SimdLevel,
    algo: ConvAlgo,
    shape: &ConvShape,
    input: &[f32],
    grad_output: &[f32],
    grad_filter: &mut [f32],
) -> Result<()> {
    let token = Token::new(level)?;
    shape.validate()?;
    check_len("input", input.len(), shape.input_len(), shape)?;
    check_len("grad_output", grad_output.len(), shape.output_len(), shape)?;
    check_len("grad_filter", grad_filter.len(), shape.filter_len(), shape)?;
    match resolve(algo, shape, ConvPass::BackwardFilter)? {
        ConvAlgo::Reference => reference::backward_filter(shape, input, grad_output, grad_filter),
        ConvAlgo::Direct => direct::backward_filter(token, shape, input, grad_output, grad_filter),
        ConvAlgo::Im2col if shape.groups > 1 => grouped::backward_filter(token, shape, input, grad_output, grad_filter),
        ConvAlgo::Im2col => im2col::backward_filter(token, shape, input, grad_output, grad_filter),
        a @ (ConvAlgo::WinogradF2 | ConvAlgo::WinogradF4) if shape.groups > 1 => {
            grouped_winograd::backward_filter(token, a, shape, input, grad_output, grad_filter)
        }
        a @ (ConvAlgo::WinogradF2 | ConvAlgo::WinogradF4) => {
            winograd::backward_filter(token, a, shape, input, grad_output, grad_filter)
        }
        ConvAlgo::Depthwise => depthwise::backward_filter(token, shape, input, grad_output, grad_filter),
        ConvAlgo::Auto => unreachable!("resolve never returns Auto"),
    }
    Ok(())
}

/// Gradient with respect to the bias: per-channel sums of `grad_output` (overwrites `grad_bias`).
pub fn conv2d_backward_bias(shape: &ConvShape, grad_output: &[f32], grad_bias: &mut [f32]) -> Result<()> {
    shape.validate()?;
    check_len("grad_output", grad_output.len(), shape.output_len(), shape)?;
    check_len("grad_bias", grad_bias.len(), shape.c_out, shape)?;
    bias::backward_bias(shape, grad_output, grad_bias);
    Ok(())
}
