//! Fully connected layers via sgemm: `x [batch, in]`, `w [in, out]` (Keras
//! layout), `y [batch, out]`.

use crate::activation::Activation;
use crate::error::check_len;
use crate::gemm::{sgemm, MatLayout};
use crate::Result;

/// Sizes of a dense layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DenseShape {
    /// Rows of the batch.
    pub batch: usize,
    /// Input features.
    pub inputs: usize,
    /// Output units.
    pub outputs: usize,
}

impl std::fmt::Display for DenseShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "dense {}x{} -> {}", self.batch, self.inputs, self.outputs)
    }
}

/// `out[j] = sum over rows of m[row, j]`, rows in order (overwrites `out`).
#[inline(always)]
fn column_sums(m: &[f32], out: &mut [f32]) {
    out.fill(0.0);
    for row in m.chunks_exact(out.len()) {
        out.iter_mut().zip(row).for_each(|(g, &r)| *g += r);
    }
}

crate::arch::multiversion!(fn column_sums_at(m: &[f32], out: &mut [f32]) => column_sums);

/// `y = activation(x w + b)` (overwrites `y`).
///
/// ```
/// use convnet_kernels::activation::Activation;
/// use convnet_kernels::dense::{dense_forward, DenseShape};
/// let s = DenseShape { batch: 1, inputs: 2, outputs: 1 };
/// let mut y = [0.0];
/// dense_forward(&s, &[1.0, 2.0], &[3.0, 4.0], Some(&[0.5]), Activation::Linear, &mut y)?;
/// assert_eq!(y, [11.5]);
/// # Ok::<(), convnet_kernels::Error>(())
/// ```
pub fn dense_forward(
    s: &DenseShape,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    activation: Activation,
    y: &mut [f32],
) -> Result<()> {
    check_len("x", x.len(), s.batch * s.inputs, s)?;
    check_len("w", w.len(), s.inputs * s.outputs, s)?;
    check_len("y", y.len(), s.batch * s.outputs, s)?;
    sgemm(1.0, x, MatLayout::dense(s.batch, s.inputs), false, w, MatLayout::dense(s.inputs, s.outputs), false, 0.0, y)?;
    if let Some(b) = bias {
        check_len("bias", b.len(), s.outputs, s)?;
        crate::activation::bias_add(y, b)?;
    }
    activation.apply_inplace(y)?;
    Ok(())
}

/// `grad_x = grad_y w^T` (overwrites).
pub fn dense_backward_data(s: &DenseShape, grad_y: &[f32], w: &[f32], grad_x: &mut [f32]) -> Result<()> {
    check_len("grad_y", grad_y.len(), s.batch * s.outputs, s)?;
    check_len("w", w.len(), s.inputs * s.outputs, s)?;
    check_len("grad_x", grad_x.len(), s.batch * s.inputs, s)?;
    sgemm(
        1.0,
        grad_y,
        MatLayout::dense(s.batch, s.outputs),
        false,
        w,
        MatLayout::dense(s.inputs, s.outputs),
        true,
        0.0,
        grad_x,
    )
}

/// `grad_w = x^T grad_y` and, if asked, `grad_b = sum over rows of grad_y` (overwrite).
pub fn dense_backward_weights(
    s: &DenseShape,
    x: &[f32],
    grad_y: &[f32],
    grad_w: &mut [f32],
    grad_b: Option<&mut [f32]>,
) -> Result<()> {
    check_len("x", x.len(), s.batch * s.inputs, s)?;
    check_len("grad_y", grad_y.len(), s.batch * s.outputs, s)?;
    check_len("grad_w", grad_w.len(), s.inputs * s.outputs, s)?;
    sgemm(
        1.0,
        x,
        MatLayout::dense(s.batch, s.inputs),
        true,
        grad_y,
        MatLayout::dense(s.batch, s.outputs),
        false,
        0.0,
        grad_w,
    )?;
    if let Some(gb) = grad_b {
        check_len("grad_b", gb.len(), s.outputs, s)?;
        column_sums_at(crate::arch::Token::current()?, grad_y, gb);
    }
    Ok(())
}
