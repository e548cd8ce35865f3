//! The `winograd` convolution algorithm (being written; see the issue tracker).
//!
//! Contract with `conv/mod.rs` (lengths and shape are already checked there):
//! `supports` says whether a shape and pass can run; the pass functions
//! overwrite their output and must be correct for every shape `supports` accepts.

use super::{ConvAlgo, ConvPass, ConvShape};
use crate::activation::Activation;

/// `Ok` when `algo` can run `pass` on `shape`, else the reason.
pub(crate) fn supports(_algo: ConvAlgo, _shape: &ConvShape, _pass: ConvPass) -> Result<(), String> {
    Err("not implemented yet".into())
}

/// Forward pass with the activation fused into the epilogue.
pub(crate) fn forward(
    _algo: ConvAlgo,
    _s: &ConvShape,
    _input: &[f32],
    _filter: &[f32],
    _bias: Option<&[f32]>,
    _activation: Activation,
    _output: &mut [f32],
) {
    unreachable!("supports() rejects every shape")
}

/// Backward-data pass (overwrites `grad_input`).
pub(crate) fn backward_data(
    _algo: ConvAlgo,
    _s: &ConvShape,
    _grad_output: &[f32],
    _filter: &[f32],
    _grad_input: &mut [f32],
) {
    unreachable!("supports() rejects every shape")
}

/// Backward-filter pass (overwrites `grad_filter`).
pub(crate) fn backward_filter(
    _algo: ConvAlgo,
    _s: &ConvShape,
    _input: &[f32],
    _grad_output: &[f32],
    _grad_filter: &mut [f32],
) {
    unreachable!("supports() rejects every shape")
}
